"""The live agent's CPU time per telegram, into InfluxDB 1.x alone and with MQTT as well.

    python bench/bench_live_cpu.py [--count 2000] [--interval 0.02] [--idle 10]

`p1-agent run` reads a TCP link (`socket://`) into which a simulated DSMR 5 meter (in this
process) writes `--count` telegrams, one every `--interval` seconds (faster than a meter, so that
the telegrams and not the agent's idle work fill the window), and delivers to InfluxDB 1.x (v1
API), in the second row also to Mosquitto (`P1_MQTT_URL`: a retained state message per
telegram). Measured: the agent's CPU time (utime + stime, /proc/PID/stat) from the first
telegram counted to the last, over the telegrams counted; and, before the feed starts, its CPU
time idle over `--idle` seconds, which the "net" column takes away (at the same rate). Every
telegram must be counted and land in InfluxDB, or the run fails.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchenv import header, log
from liveagent import (
    CpuMeter,
    Feeder,
    agent_process,
    command_line,
    connect,
    influx_database,
    influx_env,
    meter_link,
    points_by_meter,
    wait_for,
)
from servers import mosquitto


@contextlib.contextmanager
def broker(workdir: Path, wanted: bool) -> Iterator[dict[str, str]]:
    """The MQTT settings for the agent: none, or a Mosquitto on loopback."""
    if not wanted:
        yield {}
        return
    with mosquitto(workdir / "mosquitto") as server:
        yield {"P1_MQTT_URL": server.url}


def measure(workdir: Path, count: int, interval: float, idle: float, mqtt: bool) -> str:
    with (
        influx_database(workdir / "influx") as influx,
        broker(workdir, mqtt) as mqtt_env,
        meter_link("tcp") as link,
        agent_process(
            workdir, {**influx_env(influx), "P1_SOURCE": link.source, **mqtt_env}
        ) as agent,
    ):
        connect(agent, link)
        idle_meter = CpuMeter(agent.proc.pid)
        time.sleep(idle)
        idle_rate = idle_meter.lap() / 100  # CPU seconds per second
        feeder = Feeder(link, count, interval)
        feeder.start()
        wait_for(lambda: agent.value("p1_telegrams_total") >= 1, what="the first telegram")
        meter = CpuMeter(agent.proc.pid)
        first, started = agent.value("p1_telegrams_total"), time.monotonic()
        feeder.join()
        wait_for(
            lambda: agent.value("p1_telegrams_total") == count,
            timeout=120,
            what=f"{count} telegrams counted",
            proc=agent.proc,
        )
        meter.lap()
        cpu, _ = meter.total()
        seconds = time.monotonic() - started
        telegrams = count - first
        wait_for(
            lambda: sum(points_by_meter(influx).values()) == count,
            timeout=120,
            what=f"{count} points in InfluxDB",
        )
    gross = cpu / telegrams
    net = (cpu - idle_rate * seconds) / telegrams
    sinks = "InfluxDB 1.x + MQTT (Mosquitto)" if mqtt else "InfluxDB 1.x"
    return (
        f"| {sinks} | {telegrams:.0f} | {1000 * gross:.2f} | {1000 * net:.2f} "
        f"| {100 * idle_rate:.2f} | {count}/{count} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="telegrams fed")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between them")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds idle measured first")
    args = parser.parse_args()
    rows = []
    for mqtt in (False, True):
        log(f"agent into InfluxDB{' and MQTT' if mqtt else ''}: {args.count} telegrams")
        with tempfile.TemporaryDirectory(prefix="p1-bench-") as name:
            rows.append(measure(Path(name), args.count, args.interval, args.idle, mqtt))
    print(header("Live agent: CPU time per telegram", command_line()))
    print(
        f"`p1-agent run` reading {args.count} simulated DSMR 5 telegrams from a TCP link, one "
        f"every {args.interval:g} s; CPU = the agent's utime + stime (/proc/PID/stat) from the "
        "first telegram counted to the last, per telegram measured; net = less the agent's idle "
        f"CPU rate (measured over {args.idle:g} s before the feed) over the same time.\n"
    )
    print(
        "| sinks | telegrams measured | CPU ms per telegram | net ms | idle % of a core | landed |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print()


if __name__ == "__main__":
    main()
