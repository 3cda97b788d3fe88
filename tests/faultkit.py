"""What the fault tests share: a simulated meter that counts what it sent, what InfluxDB (real or
scripted) holds, the tally each fault records for RELIABILITY.md, a serial device that comes and
goes, and a spool disk that fills up.

`python bench/reliability.py` sets P1_RELIABILITY_RECORD to a file; every tally (and the fuzz
run's statistics) is appended to it as one JSON line, also for a failing test, so the report
shows the numbers that failed.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import resource
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from agentproc import core
from servers import InfluxDB1, RawReply, Reply, Request, ScriptedHTTP, require_binary

from agent.core.fields import FieldValue
from agent.core.pipeline import Result
from agent.core.points import telegram_points
from agent.formats.lineparse import parse
from agent.noisyline import NoisyChannel, applicable_modes, spread_rate
from agent.simulate import SimulatedMeter

RECORD_ENV = "P1_RELIABILITY_RECORD"
METER = "meter1"  # the `meter` tag: sources are named, so every test queries the same tag
START = datetime(2024, 6, 1, tzinfo=UTC)

Fields = dict[str, FieldValue]


@dataclass
class Tally:
    """One fault's row: telegrams the meter sent, the agent accepted (valid or repaired) and
    InfluxDB holds; `lost` are accepted telegrams whose point is missing or holds other values."""

    test: str
    fault: str = ""
    checked: str = ""
    sent: int = 0
    accepted: int = 0
    landed: int = 0
    lost: int = 0
    note: str = ""

    def count(
        self, sent: int, accepted: int, expected: dict[int, Fields], landed: dict[int, Fields]
    ) -> None:
        """`expected`: the points the accepted telegrams must give, by meter time; an expected
        point missing from `landed`, or holding other values, is lost."""
        self.sent = sent
        self.accepted = accepted
        self.landed = len(landed)
        self.lost = sum(landed.get(stamp) != fields for stamp, fields in expected.items())

    def save(self) -> None:
        save_record("fault", **asdict(self))


def save_record(kind: str, **fields: object) -> None:
    """One line for RELIABILITY.md, when `python bench/reliability.py` asked for them."""
    path = os.environ.get(RECORD_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"kind": kind, **fields}) + "\n")


def record_hardening(nodeid: str, item: int, checked: str, figure: str) -> None:
    """One row of RELIABILITY.md's hardening table: what was checked and the figure measured
    (memory held, time to answer, telegrams kept). `nodeid`: `request.node.nodeid`."""
    save_record("hardening", test=nodeid, item=item, checked=checked, figure=figure)


@dataclass
class MeterStream:
    """A simulated DSMR 5 meter (meter time 1 s apart unless told) on some wire, remembering
    every byte it wrote and the meter time of every whole telegram."""

    start: datetime = START
    interval: float = 1.0
    noise: float = 0.0
    seed: int = 1
    data: bytearray = field(default_factory=bytearray, init=False)
    # UTC seconds of the whole telegrams written, in order.
    times: list[int] = field(default_factory=list, init=False)
    cut: int = field(default=0, init=False)  # telegrams of which only a part was written

    def __post_init__(self) -> None:
        self.meter = SimulatedMeter(
            "dsmr5", start=self.start, interval=self.interval, seed=self.seed
        )
        self.channel: NoisyChannel | None = None
        if self.noise:
            first = SimulatedMeter("dsmr5").next_telegram()
            rates = spread_rate(self.noise, applicable_modes(first))
            self.channel = NoisyChannel(rates, f"faults-{self.seed}")

    @property
    def sent(self) -> int:
        return len(self.times) + self.cut

    def next(self) -> bytes:
        telegram = self.meter.next_telegram()
        return self.channel.transmit(telegram) if self.channel else telegram

    def send(self, write: Callable[[bytes], object], count: int, rate: float | None = None) -> None:
        """Write `count` telegrams, `rate` a second (at once without)."""
        for _ in range(count):
            data = self.next()
            write(data)
            self.data += data
            self.times.append(int(self.meter.time.timestamp()))
            if rate:
                time.sleep(1.0 / rate)

    def send_part(self, write: Callable[[bytes], object]) -> None:
        """The first 400 bytes of a telegram (of about 1000), as when a link dies mid-telegram."""
        part = self.next()[:400]
        write(part)
        self.data += part
        self.cut += 1

    def results(self) -> list[Result]:
        return core(bytes(self.data))


def expected_p1(results: list[Result]) -> dict[int, Fields]:
    """The `p1` points InfluxDB must hold for these results, by meter time. Telegrams with the
    same timestamp land on one point, and a later one overwrites the fields it carries (InfluxDB
    merges the fields of points written to the same series and time)."""
    points: dict[int, Fields] = {}
    for result in results:
        if result.telegram is None:
            continue
        main = telegram_points(
            result.telegram,
            meter=METER,
            fields=result.fields,
            repaired=result.status == "repaired",
        )[0]
        assert main.time is not None
        points.setdefault(int(main.time.timestamp()), {}).update(main.fields)
    return points


def landed_p1(influx: InfluxDB1, db: str) -> dict[int, Fields]:
    """The `p1` points of METER in a real InfluxDB 1.x, by time, with the fields they hold."""
    points: dict[int, Fields] = {}
    for row in influx.query(f'SELECT * FROM "p1" WHERE "meter" = \'{METER}\'', db=db):
        stamp = int(str(row.pop("time")))
        skip = ("meter", "_measurement")
        points[stamp] = cast(
            Fields, {k: v for k, v in row.items() if v is not None and k not in skip}
        )
    return points


# --- a scripted InfluxDB that stores what it acknowledges -----------------------------------------


@dataclass
class Answer:
    """One scripted answer to a write: status, headers, and a delay before answering (after
    storing the points when the status is 204, as a slow server that did its work does)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: bytes = b'{"code": "internal error", "message": "scripted"}'
    raw: RawReply | None = None  # written instead (a hostile answer); `status` is what it claims


class StoringInflux:
    """A local HTTP server taking v2 and v1 writes: it answers them from a script (then 204) and
    keeps every point it answered 204 for, as InfluxDB does: one point per series and time,
    later fields overwriting earlier ones."""

    def __init__(self, script: list[Answer], max_lines: int | None = None) -> None:
        self.script = list(script)
        self.max_lines = max_lines  # larger writes get 413, as a server's body limit gives
        self.points: dict[tuple[str, tuple[tuple[str, str], ...], int], Fields] = {}
        self.stored_lines = 0  # lines stored, each time they came (a resent line counts again)
        self.answers: list[Answer] = []  # what each write got, in order
        self.arrivals: list[float] = []  # time.monotonic() of each write
        self._lock = threading.Lock()
        self.http = ScriptedHTTP(self._respond)
        self.url = self.http.url

    def _respond(self, request: Request) -> Reply | RawReply:
        if not request.path.startswith(("/api/v2/write", "/write")):
            return 404, {}, b'{"code": "not found", "message": "path not found"}'
        lines = [line for line in request.body.decode().split("\n") if line]
        with self._lock:
            answer = self.script.pop(0) if self.script else Answer(204)
            if self.max_lines is not None and len(lines) > self.max_lines:
                answer = Answer(413)
            self.answers.append(answer)
            self.arrivals.append(request.at)
            if answer.status == 204:
                for line in lines:
                    point = parse(line)
                    assert point.time is not None
                    key = (point.measurement, tuple(sorted(point.tags.items())), point.time)
                    self.points.setdefault(key, {}).update(point.fields)
                self.stored_lines += len(lines)
        if answer.raw is not None:
            return answer.raw
        time.sleep(answer.delay)
        return answer.status, answer.headers, b"" if answer.status == 204 else answer.body

    def p1(self) -> dict[int, Fields]:
        return {
            t: f for (m, tags, t), f in self.points.items() if m == "p1" and tags[0][1] == METER
        }

    def statuses(self) -> list[int]:
        return [answer.status for answer in self.answers]

    def summary(self) -> str:
        """The answers in order, repeats counted: `500 ×3, 204 ×2`."""
        said = (
            f"{a.status} after {a.delay:g} s" if a.delay else str(a.status) for a in self.answers
        )
        runs = [(answer, len(list(same))) for answer, same in itertools.groupby(said)]
        return ", ".join(f"{answer} ×{n}" if n > 1 else answer for answer, n in runs)

    def close(self) -> None:
        self.http.close()


# --- a serial device that goes away and comes back --------------------------------------------


class SocatDevice:
    """A pseudo-terminal that socat links at `path`, fed from socat's stdin: killing socat
    removes the device, as pulling a USB cable removes /dev/ttyUSB0."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.binary = require_binary("socat")
        self.proc: subprocess.Popen[bytes] | None = None

    def plug(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-u", "STDIN", f"PTY,link={self.path},raw,echo=0"],
            stdin=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while not self.path.exists():
            assert time.monotonic() < deadline, "socat made no pseudo-terminal"
            time.sleep(0.02)

    def write(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def unplug(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc = None


# --- a spool disk that fills up ---------------------------------------------------------------


class SpoolDisk:
    """The agent's data directory on a disk the test fills and frees.

    `tmpfs`: a small tmpfs mounted in a private mount namespace of the agent (unshare makes a
    user namespace for it, so no root is needed where unprivileged user namespaces are allowed);
    the test reaches it through /proc/PID/root and fills it with a file: SQLite gets ENOSPC, the
    real disk-full path. `fsize`, where no namespace can be made (Ubuntu 24.04 restricts them):
    the kernel's file size limit (RLIMIT_FSIZE, set on the running agent with prlimit) at the
    spool files' current size: writes that would grow them fail with EFBIG. The agent cannot
    tell a limit from a full disk except by the error text (`disk I/O error`).
    P1_TEST_SPOOL_DISK=fsize forces the second where the first works.
    """

    SIZE = "16m"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.method = os.environ.get("P1_TEST_SPOOL_DISK") or (
            "tmpfs" if self._namespaces_work() else "fsize"
        )
        self.pid: int | None = None

    def _namespaces_work(self) -> bool:
        if shutil.which("unshare") is None:
            return False
        probe = subprocess.run([*self._unshare("1m"), "true"], capture_output=True)
        return probe.returncode == 0

    def _unshare(self, size: str) -> list[str]:
        """A command prefix: a tmpfs of `size` mounted on the data directory in a new mount
        namespace (owned by a new user namespace), then the command that follows."""
        mount = 'mount -t tmpfs -o size="$1",mode=0700 p1-spool "$2" && shift 2 && exec "$@"'
        user = ["unshare", "--user", "--map-root-user", "--mount"]
        return [*user, "sh", "-c", mount, "sh", size, str(self.data_dir)]

    def prefix(self) -> list[str]:
        return self._unshare(self.SIZE) if self.method == "tmpfs" else []

    @property
    def _filler(self) -> Path:
        return Path(f"/proc/{self.pid}/root{self.data_dir}/filler")

    def fill(self) -> None:
        assert self.pid is not None
        if self.method == "fsize":
            # No file of the store may grow: the journal (the default) grows with every telegram.
            journal = self.data_dir / "store.journal"
            files = [journal] if journal.exists() else self.data_dir.glob("store.sqlite*")
            sizes = [path.stat().st_size for path in files]
            resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (max(sizes), resource.RLIM_INFINITY))
            return
        chunk = 1 << 20
        with self._filler.open("wb", buffering=0) as out:
            while chunk >= 512:
                try:
                    out.write(b"\0" * chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    chunk //= 2
        free = os.statvfs(self._filler.parent)
        assert free.f_bavail == 0, free

    def free(self) -> None:
        assert self.pid is not None
        if self.method == "fsize":
            unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
            resource.prlimit(self.pid, resource.RLIMIT_FSIZE, unlimited)
        else:
            self._filler.unlink()
