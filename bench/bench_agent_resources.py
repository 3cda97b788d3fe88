"""The live agent's memory, CPU and disk writes at one telegram a second, with or without InfluxDB.

    python bench/bench_agent_resources.py [--duration 600] [--warmup 30] [--feed pty|tcp]
                                          [--scrape 15] [--mode influx|store] [--interval 1]
                                          [--sync-interval 60s] [--raw-capture]

A simulated DSMR 5 meter (in this process) writes one telegram a second into a pseudo-terminal,
which the agent opens as it would a USB P1 cable (`--feed tcp`: a TCP bridge it reaches through
`socket://`). `p1-agent run` delivers to InfluxDB 1.x (v1 API) (`--mode store`: no InfluxDB, the
local store keeps everything) with `--sync-interval` and default settings otherwise,
and its /metrics is scraped every `--scrape` seconds as Prometheus would, a load every real
installation has. After `--warmup` seconds of telegrams (start-up and the first writes left out),
the agent's CPU time (utime + stime, /proc/PID/stat) is measured over `--duration` seconds and
its memory (VmRSS, VmHWM, /proc/PID/status) is sampled every second, and the bytes it made the
kernel write to disk (`write_bytes`, /proc/PID/io: pages it dirtied, whichever file) are taken at
both ends of the window. Then the feed stops, the spool drains (or the store is closed), and the
telegrams counted and the points in InfluxDB or the store are checked against what was sent (exit
status 1 when they differ). Targets: ≤ 60 MB resident, ≤ 1 % of a core, ≤ 1 KiB per telegram.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

from benchenv import header, log
from liveagent import (
    MIB,
    CpuMeter,
    Feeder,
    agent_process,
    command_line,
    connect,
    cpu_seconds,
    influx_database,
    influx_env,
    memory,
    meter_link,
    numpy_loaded,
    points_by_meter,
    wait_for,
)

from agent.sinks.spool import Spool

ROW_EVERY = 60  # seconds between timeline rows
TARGET_RSS_MIB = 60e6 / MIB  # the target is 60 MB
TARGET_CPU = 1.0  # % of one core
TARGET_WRITTEN = 1024  # bytes written per telegram
DAY = 86400


def written(pid: int) -> int:
    """Bytes the process caused to be written to storage so far (`write_bytes`, /proc/PID/io)."""
    with open(f"/proc/{pid}/io", encoding="ascii") as io:
        for line in io:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/PID/io")


def stored_p1(data_dir: Path) -> int:
    """`p1` points in a stopped agent's store."""
    spool = Spool(data_dir / "store.sqlite", max_bytes=0, max_age=0, recover=False)
    try:
        return sum(line.startswith("p1,") for line in spool.lines())
    finally:
        spool.close()


def files(data_dir: Path) -> str:
    """The data directory's files and their sizes at the end."""
    found = sorted(p for p in data_dir.rglob("*") if p.is_file())
    return ", ".join(f"`{p.relative_to(data_dir)}` {p.stat().st_size:,} B" for p in found)


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--duration", type=int, default=600, help="measured seconds")
    parser.add_argument("--warmup", type=int, default=30, help="seconds of telegrams before")
    parser.add_argument("--feed", choices=("pty", "tcp"), default="pty", help="the meter link")
    parser.add_argument("--scrape", type=int, default=15, help="seconds between /metrics scrapes")
    parser.add_argument("--mode", choices=("influx", "store"), default="influx")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between telegrams")
    parser.add_argument("--sync-interval", default="60s", help="the agent's --sync-interval")
    parser.add_argument("--raw-capture", action="store_true", help="the agent's --raw-capture")
    args = parser.parse_args()
    into = "delivering to InfluxDB" if args.mode == "influx" else "into its local store"
    rate = (
        "one telegram a second" if args.interval == 1 else f"one telegram every {args.interval:g} s"
    )
    # The header names the code the agent runs: taken before the run, not minutes later.
    head = header(f"Live agent: memory, CPU and disk writes, {into}, {rate}", command_line())
    env = {"P1_SYNC_INTERVAL": args.sync_interval}
    if args.raw_capture:
        env["P1_RAW_CAPTURE"] = "true"

    with (
        tempfile.TemporaryDirectory(prefix="p1-bench-agent-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        influx = None
        if args.mode == "influx":
            influx = stack.enter_context(influx_database(Path(tmp, "influx")))
            env.update(influx_env(influx))
        link = stack.enter_context(meter_link(args.feed))
        agent = stack.enter_context(agent_process(Path(tmp), {"P1_SOURCE": link.source, **env}))
        pid = agent.proc.pid
        startup_cpu = cpu_seconds(pid)
        connect(agent, link)
        ticks = int(args.duration / args.interval)
        feeder = Feeder(
            link, count=int(args.warmup / args.interval) + ticks + 1, interval=args.interval
        )
        feeder.start()
        log(f"agent pid {pid} on {link.source}; warm-up {args.warmup} s")
        wait_for(lambda: agent.value("p1_telegrams_total") >= 1, what="the first telegram")
        time.sleep(args.warmup)

        log(f"measuring for {args.duration} s")
        bytes_before, counted_before = written(pid), agent.value("p1_telegrams_total")
        cpu = CpuMeter(pid)
        minute = CpuMeter(pid)
        peak_rss = 0.0
        counted = spool_peak = 0.0
        timeline = []
        for tick in range(1, args.duration + 1):
            time.sleep(max(0.0, cpu.start_wall + tick - time.monotonic()))
            peak_rss = max(peak_rss, memory(pid).rss_mib)
            if tick % args.scrape == 0 or tick == args.duration:
                counted = agent.value("p1_telegrams_total")
                spool_peak = max(spool_peak, agent.value("p1_spool_points"))
            if tick % ROW_EVERY == 0 or tick == args.duration:
                timeline.append(
                    f"| {tick} | {counted:.0f} | {minute.lap():.2f} | {memory(pid).rss_mib:.1f} |"
                )
                log(timeline[-1])
        cpu.lap()
        window_cpu, window_percent = cpu.total()
        window_bytes = written(pid) - bytes_before
        window_telegrams = agent.value("p1_telegrams_total") - counted_before
        final = memory(pid)
        peak_rss = max(peak_rss, final.rss_mib)
        numpy = numpy_loaded(pid)
        feeder.stop()
        if feeder.error is not None:
            sys.exit(f"writing to the agent failed: {feeder.error}")
        sent = len(feeder.sent)

        log("feed stopped; waiting for every telegram to be counted and delivered")
        wait_for(lambda: agent.value("p1_telegrams_total") == sent, what="every telegram counted")
        if influx is not None:
            wait_for(lambda: agent.value("p1_spool_points") == 0, timeout=60, what="spool drained")
            # The agent refreshes spool and delivery metrics once a second, and the spool can
            # show empty one refresh before the last batch's acknowledgement is counted.
            time.sleep(2.5)
        results = {r: agent.value("p1_telegrams_total", result=r) for r in ("valid", "repaired")}
        rejected = agent.value("p1_telegrams_total", result="rejected")
        acknowledged = agent.value("p1_influx_points_written_total")
        landed = sum(points_by_meter(influx).values()) if influx is not None else 0
        stack.pop_all().close()  # the agent stopped (its store closed), InfluxDB too
        if influx is None:
            landed = stored_p1(Path(tmp, "data"))
        kept = files(Path(tmp, "data"))

    per_telegram = window_bytes / max(window_telegrams, 1)
    ok = rejected == 0 and results["valid"] == sent and landed == sent
    link_text = (
        "a pseudo-terminal (as a USB P1 cable appears)"
        if args.feed == "pty"
        else "a TCP connection (`socket://`, as from a ser2net or ESP bridge)"
    )
    sink = (
        "delivering to InfluxDB 1.6 (v1 API) on loopback"
        if influx is not None
        else "keeping them in its local store (no InfluxDB)"
    )
    options = f"`--sync-interval {args.sync_interval}`" + (
        ", `--raw-capture`" if args.raw_capture else ""
    )
    print(head)
    print(
        f"`p1-agent run` reading a simulated DSMR 5 meter, {sent} telegrams of 884 bytes, "
        f"{rate}, written by the benchmark process into {link_text}, and {sink}; {options}, "
        f"default settings otherwise; /metrics scraped every {args.scrape} s. CPU = utime + "
        f"stime of the agent process (/proc/PID/stat) over a {args.duration} s window that "
        f"starts {args.warmup} s after the first telegram, as % of one core; memory = VmRSS "
        "sampled every second and VmHWM (/proc/PID/status); written = `write_bytes` of "
        "/proc/PID/io over the same window (what the agent made the kernel send to the disk, "
        "in 4-KiB pages: every file of the data directory, and the agent's log, which goes to "
        "a file here), divided by the telegrams counted in it. The benchmark, the simulated "
        "meter and InfluxDB run in other processes and are not counted.\n"
    )
    print("| measure | value | target |")
    print("|---|---:|---|")
    print(
        f"| written per telegram ({window_bytes:,} B for {window_telegrams:.0f} telegrams) "
        f"| **{per_telegram:,.0f} B** "
        f"| ≤ {TARGET_WRITTEN} B: {verdict(per_telegram <= TARGET_WRITTEN)} |"
    )
    print(
        f"| written per day at this rate | {per_telegram * DAY / args.interval / 1e6:,.1f} MB | |"
    )
    print(f"| data directory at the end | {kept} | |")
    print(
        f"| CPU, % of one core ({args.duration} s window) | **{window_percent:.2f} %** "
        f"| ≤ {TARGET_CPU:g} %: {verdict(window_percent <= TARGET_CPU)} |"
    )
    print(f"| CPU time in the window | {window_cpu:.2f} s | |")
    print(f"| CPU time of the start-up (to the first /metrics answer) | {startup_cpu:.2f} s | |")
    print(
        f"| resident memory at the end (VmRSS) | **{final.rss_mib:.1f} MiB** "
        f"| ≤ 60 MB ({TARGET_RSS_MIB:.1f} MiB): {verdict(final.rss_mib <= TARGET_RSS_MIB)} |"
    )
    print(
        f"| resident memory, highest sample in the window and at the end | {peak_rss:.1f} MiB | |"
    )
    print(
        f"| resident memory, peak since start (VmHWM) | {final.hwm_mib:.1f} MiB "
        f"| {verdict(final.hwm_mib <= TARGET_RSS_MIB)} |"
    )
    print(f"| threads | {final.threads} | |")
    print(
        f"| numpy loaded (influxdb-client imports it when installed; not a dependency) "
        f"| {'yes' if numpy else 'no'} | |"
    )
    print(
        f"| telegrams sent / counted (valid, repaired, rejected) | {sent} / "
        f"{sum(results.values()) + rejected:.0f} ({results['valid']:.0f}, "
        f"{results['repaired']:.0f}, {rejected:.0f}) | all, none rejected |"
    )
    print(
        f"| points in InfluxDB (`p1`) / lines acknowledged (`p1` and `p1_mbus`) "
        f"| {landed} / {acknowledged:.0f} | one `p1` point per telegram |"
        if influx is not None
        else f"| `p1` points in the store after the agent stopped | {landed} | one per telegram |"
    )
    print(f"| spool depth, highest scraped | {spool_peak:.0f} points | |")
    print()
    print("Timeline (CPU % over the preceding interval, VmRSS at that moment):\n")
    print("| seconds into the window | telegrams counted | CPU % of one core | VmRSS MiB |")
    print("|---:|---:|---:|---:|")
    print("\n".join(timeline))
    print()
    if not ok:
        sys.exit(f"sent {sent}, counted {results} rejected {rejected:.0f}, landed {landed}")


if __name__ == "__main__":
    main()
