"""The live agent under measurement, shared by the bench_agent_*.py scripts.

A real InfluxDB 1.x (tests/servers.py) with the database `p1`, the agent as users start it
(`p1-agent run`, configured through P1_* variables, its log in a file), the meter's end of a TCP
or pseudo-terminal link, a paced telegram feeder, and the agent's CPU time and memory read from
/proc, so what is measured is the agent process alone and not the benchmark around it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from benchenv import REPO, p1_agent

sys.path.insert(0, str(REPO / "tests"))

# Re-exported (`as`): the scripts take them from here, since tests/ is on the path only now.
from agentproc import AgentProcess as AgentProcess
from agentproc import wait_for as wait_for
from servers import InfluxDB1, free_port, influxdb1

from agent.simulate import SimulatedMeter

DATABASE = "p1"
MIB = 1 << 20
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its threads included, children not)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # The command name in parentheses may hold spaces; the fields after it are fixed:
        # the first is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy() -> tuple[float, float]:
    """Busy and total CPU seconds of the whole machine so far, summed over its cores."""
    with open("/proc/stat", encoding="ascii") as stat:
        ticks = [int(n) for n in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks) - idle) / _TICK, sum(ticks) / _TICK


def command_line() -> str:
    """How the running benchmark was started, as typed from the repository root."""
    return shlex.join(["python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]])


@dataclass(frozen=True, slots=True)
class Memory:
    rss_mib: float  # VmRSS: resident now
    hwm_mib: float  # VmHWM: the highest VmRSS since the process started
    threads: int


def memory(pid: int) -> Memory:
    values: dict[str, str] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            values[key] = value.split()[0] if value.split() else ""
    return Memory(int(values["VmRSS"]) / 1024, int(values["VmHWM"]) / 1024, int(values["Threads"]))


def numpy_loaded(pid: int) -> bool:
    """Whether numpy is mapped into the process: influxdb-client imports it when it is installed,
    which adds about 15 MiB; the agent does not depend on it, so a plain install lacks it."""
    with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
        return any("/numpy/" in line for line in maps)


class CpuMeter:
    """CPU use of one process as % of one core between successive `lap()` calls."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cpu = cpu_seconds(pid)
        self._wall = time.monotonic()
        self.start_cpu, self.start_wall = self._cpu, self._wall

    def lap(self) -> float:
        cpu, wall = cpu_seconds(self.pid), time.monotonic()
        percent = 100 * (cpu - self._cpu) / (wall - self._wall)
        self._cpu, self._wall = cpu, wall
        return percent

    def total(self) -> tuple[float, float]:
        """CPU seconds and % of a core since the meter was created (up to the last lap)."""
        cpu = self._cpu - self.start_cpu
        return cpu, 100 * cpu / (self._wall - self.start_wall)


@contextmanager
def influx_database(workdir: Path) -> Iterator[InfluxDB1]:
    """InfluxDB 1.x on loopback with an empty database `p1`; default settings otherwise."""
    if shutil.which("influxd") is None:
        sys.exit("influxd (InfluxDB 1.x) is not installed: apt-get install influxdb")
    with influxdb1(workdir) as server:
        server.create_database(DATABASE)
        yield server


def influx_env(server: InfluxDB1) -> dict[str, str]:
    return {
        "P1_INFLUX_URL": server.url,
        "P1_INFLUX_API": "v1",
        "P1_INFLUX_DATABASE": DATABASE,
    }


def points_by_meter(server: InfluxDB1) -> dict[str, int]:
    """Points of measurement `p1` in InfluxDB per meter tag (one per accepted telegram)."""
    rows = server.query('SELECT count("power_import_kw") FROM "p1" GROUP BY "meter"', DATABASE)
    return {str(row["meter"]): int(str(row["count"])) for row in rows}


@contextmanager
def agent_process(workdir: Path, env: dict[str, str]) -> Iterator[AgentProcess]:
    """`p1-agent run` with `env` on top of P1_DATA_DIR and P1_METRICS_ADDRESS, its log (JSON
    lines, since stderr is no terminal) in workdir/agent.log. Stopped with SIGTERM on leaving;
    an exit status other than 0 ends the benchmark with the log's tail."""
    data_dir = workdir / "data"
    port = free_port()
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("P1_")},
        "P1_DATA_DIR": str(data_dir),
        "P1_METRICS_ADDRESS": f"127.0.0.1:{port}",
        **env,
    }
    agent_log = workdir / "agent.log"
    # A file, not a pipe: nobody reads the log while the agent runs, and a full pipe would block
    # the agent's status logging.
    with agent_log.open("wb") as out:
        proc = subprocess.Popen(
            [p1_agent(), "run"],
            env=full_env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    agent = AgentProcess(proc, port, data_dir)
    try:
        wait_for(lambda: agent.scrape() is not None, what="the agent's /metrics", proc=proc)
        yield agent
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        sys.exit(f"the agent exited with {proc.returncode}:\n{agent_log.read_text()[-3000:]}")


class MeterLink(Protocol):
    """The meter's end of the link the agent reads: what the benchmark writes telegrams into."""

    source: str  # the agent's --source for the other end

    def accept(self) -> None:
        """Wait for the agent's end to be there (a TCP bridge waits for its client)."""
        ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class TcpLink:
    """A P1-to-TCP bridge (ser2net, an ESP): the agent connects to `socket://…`."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.source = f"socket://127.0.0.1:{self._listener.getsockname()[1]}"
        self._conn: socket.socket | None = None

    def accept(self) -> None:
        self._listener.settimeout(30)
        self._conn, _ = self._listener.accept()

    def write(self, data: bytes) -> None:
        assert self._conn is not None, "accept() first"
        self._conn.sendall(data)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._listener.close()


class PtyLink:
    """A USB P1 cable as the agent sees one: a serial device, here a pseudo-terminal."""

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        self.source = os.ttyname(self._slave)

    def accept(self) -> None:
        pass  # the agent opens the device itself; callers wait for p1_source_connected

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # a pty takes a few KiB at a time
            view = view[os.write(self._master, view) :]

    def close(self) -> None:
        os.close(self._master)
        os.close(self._slave)


LINKS: dict[str, Callable[[], MeterLink]] = {"tcp": TcpLink, "pty": PtyLink}


@contextmanager
def meter_link(kind: str) -> Iterator[MeterLink]:
    link: MeterLink = LINKS[kind]()
    try:
        yield link
    finally:
        link.close()


def connect(agent: AgentProcess, link: MeterLink) -> None:
    link.accept()
    wait_for(lambda: agent.value("p1_source_connected") == 1, what="the agent on the link")


@dataclass(frozen=True, slots=True)
class Sent:
    at: float  # time.monotonic() just after the telegram's last byte was written
    stamp: int  # its meter time, Unix seconds: the timestamp of its point


class Feeder(threading.Thread):
    """Writes `count` simulated DSMR 5 telegrams into `link`, one every `interval` seconds on a
    fixed schedule, and records each one (`sent`). The meter's clock starts at the current
    second and advances 1 s per telegram, so points land near the present."""

    def __init__(self, link: MeterLink, count: int, interval: float = 1.0) -> None:
        super().__init__(name="feeder", daemon=True)
        self.link = link
        self.count = count
        self.interval = interval
        self.sent: list[Sent] = []  # appended by this thread; read by others (GIL-atomic)
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        meter = SimulatedMeter(
            "dsmr5", start=datetime.now(UTC), interval=1.0, serial="9000001", seed=7
        )
        start = time.monotonic()
        try:
            for i in range(self.count):
                if self.halt.wait(max(0.0, start + i * self.interval - time.monotonic())):
                    return
                telegram = meter.next_telegram()
                self.link.write(telegram)
                self.sent.append(Sent(time.monotonic(), int(meter.time.timestamp())))
        except OSError as exc:  # the agent went away; the benchmark reports it
            self.error = exc

    def stop(self) -> None:
        self.halt.set()
        self.join()
