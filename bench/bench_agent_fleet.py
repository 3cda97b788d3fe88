"""One agent process reading 200 simulated TCP meters at one telegram a second each.

    python bench/bench_agent_fleet.py [--meters 200] [--warmup 30] [--duration 180]
                                      [--sample 15]

`bench/meterfleet.py`, a separate process (its CPU is not the agent's), listens on one loopback
port per meter and writes one DSMR 5 telegram a second to each, the meters spread over the
second, each with its own serial. One `p1-agent run` reads them all (`P1_SOURCE` =
`m001=socket://127.0.0.1:PORT …`, so readings are tagged m001…m200) and delivers to InfluxDB 1.x
(v1 API), default settings otherwise. After `--warmup` seconds of telegrams, the agent's CPU
(utime + stime, /proc/PID/stat) is measured over `--duration` seconds; every `--sample` seconds
(a Prometheus scrape interval; the scrape's cost is part of the load) the benchmark records the
telegrams written per meter, the agent's counts per meter (`p1_telegrams_total`), the spool depth
(`p1_spool_points`), the points acknowledged and the agent's memory. Then the simulator stops and
every meter's count and its points in InfluxDB are checked against what was written (exit status
1 when any differ). Target: no growing backlog, ≤ 50 % of a core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from benchenv import REPO, header, log
from liveagent import (
    AgentProcess,
    CpuMeter,
    agent_process,
    command_line,
    influx_database,
    influx_env,
    machine_busy,
    memory,
    numpy_loaded,
    points_by_meter,
    wait_for,
)

TARGET_CPU = 50.0  # % of one core
TAIL = 10  # rounds the simulator goes on after the window, so the window ends under load


class FleetProgress(threading.Thread):
    """Follows the simulator's stdout: rounds written to every meter, lateness, the end."""

    def __init__(self, out: IO[bytes]) -> None:
        super().__init__(name="fleet progress", daemon=True)
        self.out = out
        self.rounds = 0
        self.late = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        for line in self.out:
            message = json.loads(line)
            if "round" in message:
                self.rounds, self.late = int(message["round"]), float(message["late"])
            elif "done" in message:
                self.done.set()


def by_meter(agent: AgentProcess, name: str) -> dict[str, float]:
    """A metric summed per `meter` label (over `result` and the like)."""
    totals: dict[str, float] = {}
    for labels, value in agent.samples(name).items():
        meter = dict(labels)["meter"]
        totals[meter] = totals.get(meter, 0.0) + value
    return totals


def spread(values: dict[str, float]) -> str:
    low, high = min(values.values(), default=0), max(values.values(), default=0)
    return f"{low:.0f}" if low == high else f"{low:.0f}–{high:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--meters", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=30, help="seconds of telegrams before")
    parser.add_argument("--duration", type=int, default=180, help="measured seconds")
    parser.add_argument("--sample", type=int, default=15, help="seconds between samples")
    args = parser.parse_args()
    # The header names the code the agent runs: taken before the run, not minutes later.
    title = f"Live agent: one process reading {args.meters} TCP meters for {args.duration} s"
    head = header(title, command_line())
    rounds = args.warmup + args.duration + TAIL
    names = [f"m{i:03d}" for i in range(1, args.meters + 1)]

    with (
        tempfile.TemporaryDirectory(prefix="p1-bench-fleet-") as tmp,
        influx_database(Path(tmp, "influx")) as influx,
        Path(tmp, "fleet.log").open("wb") as fleet_log,
    ):
        fleet = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench" / "meterfleet.py"),
                *("--meters", str(args.meters), "--rounds", str(rounds)),
            ],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=fleet_log,
        )
        assert fleet.stdout is not None and fleet.stdin is not None
        ports = json.loads(fleet.stdout.readline())["ports"]
        progress = FleetProgress(fleet.stdout)
        progress.start()
        sources = " ".join(
            f"{name}=socket://127.0.0.1:{port}" for name, port in zip(names, ports, strict=True)
        )
        with agent_process(Path(tmp), {"P1_SOURCE": sources, **influx_env(influx)}) as agent:
            pid = agent.proc.pid
            log(f"agent pid {pid}, simulator pid {fleet.pid}; warm-up {args.warmup} s")
            wait_for(lambda: progress.rounds >= 1, timeout=90, what="every meter connected")
            wait_for(
                lambda: progress.rounds >= args.warmup, timeout=args.warmup + 30, what="warm-up"
            )

            log(f"measuring for {args.duration} s")
            cpu = CpuMeter(pid)
            interval_cpu = CpuMeter(pid)
            influx_cpu = CpuMeter(influx.proc.pid) if influx.proc else None
            fleet_cpu = CpuMeter(fleet.pid)
            busy0, all0 = machine_busy()
            timeline = []
            worst_lag = spool_peak = 0.0
            for tick in range(args.sample, args.duration + 1, args.sample):
                time.sleep(max(0.0, cpu.start_wall + tick - time.monotonic()))
                sent = progress.rounds
                counted = by_meter(agent, "p1_telegrams_total")
                spool = by_meter(agent, "p1_spool_points")
                written = agent.value("p1_influx_points_written_total")
                lag = sent - min(counted.values(), default=0)
                worst_lag = max(worst_lag, lag)
                spool_peak = max(spool_peak, sum(spool.values()))
                timeline.append(
                    f"| {tick} | {sent}–{sent + 1} | {spread(counted)} | {len(counted)} "
                    f"| {sum(spool.values()):.0f} | {spread(spool)} | {written:.0f} "
                    f"| {interval_cpu.lap():.1f} | {memory(pid).rss_mib:.1f} |"
                )
                log(timeline[-1])
            cpu.lap()
            window_cpu, window_percent = cpu.total()
            influx_percent = influx_cpu.lap() if influx_cpu else float("nan")
            fleet_percent = fleet_cpu.lap()
            busy1, all1 = machine_busy()
            machine_percent = 100 * (busy1 - busy0) / (all1 - all0)
            final = memory(pid)
            numpy = numpy_loaded(pid)

            log("waiting for the simulator to finish and the agent to catch up")
            progress.done.wait(timeout=TAIL + 60)
            late = progress.late
            wait_for(
                lambda: (
                    all(n == rounds for n in by_meter(agent, "p1_telegrams_total").values())
                    and len(by_meter(agent, "p1_telegrams_total")) == args.meters
                ),
                timeout=120,
                what="every telegram counted",
            )
            wait_for(lambda: agent.value("p1_spool_points") == 0, timeout=120, what="spool drain")
            # Spool and delivery metrics are refreshed once a second; the spool can show empty
            # one refresh before the last batch's acknowledgement is counted.
            time.sleep(2.5)
            counted = by_meter(agent, "p1_telegrams_total")
            rejected = agent.value("p1_telegrams_total", result="rejected")
            acknowledged = agent.value("p1_influx_points_written_total")
            landed = points_by_meter(influx)
        fleet.stdin.close()
        fleet.wait(timeout=30)

    exact = sum(counted.get(name) == rounds and landed.get(name) == rounds for name in names)
    ok = exact == args.meters and rejected == 0
    print(head)
    print(
        f"`p1-agent run` with {args.meters} sources `m001=socket://127.0.0.1:PORT` … (one reader "
        "thread each), fed by `bench/meterfleet.py` in a separate process: one DSMR 5 telegram "
        "(924 bytes) a second per meter, spread over the second, each meter with its own serial; "
        "delivery to InfluxDB 1.6 (v1 API) on loopback, default settings otherwise. The "
        f"{args.duration} s window starts after {args.warmup} s of telegrams; CPU = utime + "
        "stime from /proc/PID/stat as % of one core; /metrics scraped every "
        f"{args.sample} s (its cost is included). **The machine has "
        f"{len(os.sched_getaffinity(0))} cores, shared by the agent, the "
        "simulator, InfluxDB and the benchmark**, so their shares are given too.\n"
    )
    print("| measure | value | target |")
    print("|---|---:|---|")
    verdict = "met" if window_percent <= TARGET_CPU else "**not met**"
    print(
        f"| agent CPU, % of one core ({args.duration} s window) | **{window_percent:.1f} %** "
        f"| ≤ {TARGET_CPU:g} %: {verdict} |"
    )
    print(f"| agent CPU time in the window | {window_cpu:.1f} s | |")
    print(
        f"| agent resident memory at the end (VmRSS) / peak (VmHWM) "
        f"| {final.rss_mib:.1f} / {final.hwm_mib:.1f} MiB | |"
    )
    print(f"| agent threads | {final.threads} | |")
    print(
        f"| numpy loaded (influxdb-client imports it when installed; not a dependency) "
        f"| {'yes' if numpy else 'no'} | |"
    )
    print(f"| InfluxDB CPU, % of one core (same window) | {influx_percent:.1f} % | |")
    print(f"| simulator CPU, % of one core (same window) | {fleet_percent:.1f} % | |")
    print(
        "| whole machine busy, % of all cores (same window, anything else running included) "
        f"| {machine_percent:.1f} % | |"
    )
    print(
        f"| telegrams written per meter / counted per meter | {rounds} / {spread(counted)} "
        f"| counted keeps up |"
    )
    print(
        f"| largest lag at a sample (written − counted, per meter) | {worst_lag:.0f} telegram(s) "
        "| bounded |"
    )
    print(f"| spool depth, largest sample (all meters) | {spool_peak:.0f} points | bounded |")
    print(f"| simulator behind schedule, at most | {1000 * late:.0f} ms | |")
    print(f"| telegrams rejected | {rejected:.0f} | 0 |")
    print(
        f"| points in InfluxDB (`p1`) per meter / total | {spread(dict(landed.items()))} / "
        f"{sum(landed.values())} | one per telegram |"
    )
    print(f"| lines acknowledged (`p1` and `p1_mbus`) | {acknowledged:.0f} | |")
    print(f"| meters with every telegram counted and in InfluxDB | {exact} / {args.meters} | all |")
    print()
    print(
        "Over the window (written = rounds the simulator had finished, a meter may have one "
        "more; spool = points waiting for InfluxDB; CPU % over the preceding interval):\n"
    )
    print(
        "| s | written per meter | counted per meter | meters | spool points | spool per meter "
        "| acknowledged | agent CPU % | VmRSS MiB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(timeline))
    print()
    if not ok:
        sys.exit(f"{args.meters - exact} meters lost telegrams; rejected {rejected:.0f}")


if __name__ == "__main__":
    main()
