"""The live agent's resident memory and CPU at one telegram a second, delivering to InfluxDB 1.x.

    python bench/bench_agent_resources.py [--duration 600] [--warmup 30] [--feed pty|tcp]
                                          [--scrape 15]

A simulated DSMR 5 meter (in this process) writes one telegram a second into a pseudo-terminal,
which the agent opens as it would a USB P1 cable (`--feed tcp`: a TCP bridge it reaches through
`socket://`). `p1-agent run` delivers to InfluxDB 1.x (v1 API) with default settings otherwise,
and its /metrics is scraped every `--scrape` seconds as Prometheus would, a load every real
installation has. After `--warmup` seconds of telegrams (start-up and the first writes left out),
the agent's CPU time (utime + stime, /proc/PID/stat) is measured over `--duration` seconds and
its memory (VmRSS, VmHWM, /proc/PID/status) is sampled every second. Then the feed stops, the
spool drains, and the telegrams counted and the points in InfluxDB are checked against what was
sent (exit status 1 when they differ). Targets: ≤ 60 MB resident, ≤ 1 % of a core.
"""

from __future__ import annotations

import argparse
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

ROW_EVERY = 60  # seconds between timeline rows
TARGET_RSS_MIB = 60e6 / MIB  # the target is 60 MB
TARGET_CPU = 1.0  # % of one core


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--duration", type=int, default=600, help="measured seconds")
    parser.add_argument("--warmup", type=int, default=30, help="seconds of telegrams before")
    parser.add_argument("--feed", choices=("pty", "tcp"), default="pty", help="the meter link")
    parser.add_argument("--scrape", type=int, default=15, help="seconds between /metrics scrapes")
    args = parser.parse_args()
    # The header names the code the agent runs: taken before the run, not minutes later.
    head = header("Live agent: memory and CPU at one telegram a second", command_line())

    with (
        tempfile.TemporaryDirectory(prefix="p1-bench-agent-") as tmp,
        influx_database(Path(tmp, "influx")) as influx,
        meter_link(args.feed) as link,
        agent_process(Path(tmp), {"P1_SOURCE": link.source, **influx_env(influx)}) as agent,
    ):
        pid = agent.proc.pid
        startup_cpu = cpu_seconds(pid)
        connect(agent, link)
        feeder = Feeder(link, count=args.warmup + args.duration + 1)
        feeder.start()
        log(f"agent pid {pid} on {link.source}; warm-up {args.warmup} s")
        wait_for(lambda: agent.value("p1_telegrams_total") >= 1, what="the first telegram")
        time.sleep(args.warmup)

        log(f"measuring for {args.duration} s")
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
        final = memory(pid)
        peak_rss = max(peak_rss, final.rss_mib)
        numpy = numpy_loaded(pid)
        feeder.stop()
        if feeder.error is not None:
            sys.exit(f"writing to the agent failed: {feeder.error}")
        sent = len(feeder.sent)

        log("feed stopped; waiting for every telegram to be counted and delivered")
        wait_for(lambda: agent.value("p1_telegrams_total") == sent, what="every telegram counted")
        wait_for(lambda: agent.value("p1_spool_points") == 0, timeout=60, what="spool drained")
        # The agent refreshes spool and delivery metrics once a second, and the spool can show
        # empty one refresh before the last batch's acknowledgement is counted.
        time.sleep(2.5)
        results = {r: agent.value("p1_telegrams_total", result=r) for r in ("valid", "repaired")}
        rejected = agent.value("p1_telegrams_total", result="rejected")
        acknowledged = agent.value("p1_influx_points_written_total")
        landed = sum(points_by_meter(influx).values())

    ok = rejected == 0 and results["valid"] == sent and landed == sent
    link_text = (
        "a pseudo-terminal (as a USB P1 cable appears)"
        if args.feed == "pty"
        else "a TCP connection (`socket://`, as from a ser2net or ESP bridge)"
    )
    print(head)
    print(
        f"`p1-agent run` reading a simulated DSMR 5 meter, {sent} telegrams of 924 bytes one a "
        f"second written by the benchmark process into {link_text}, and delivering to InfluxDB "
        f"1.6 (v1 API) on loopback, default settings otherwise; /metrics scraped every "
        f"{args.scrape} s. CPU = utime + stime of the agent process (/proc/PID/stat) over a "
        f"{args.duration} s window that starts {args.warmup} s after the first telegram, as % "
        "of one core; memory = VmRSS sampled every second and VmHWM (/proc/PID/status). The "
        "benchmark, the simulated meter and InfluxDB run in other processes and are not "
        "counted.\n"
    )
    print("| measure | value | target |")
    print("|---|---:|---|")
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
    )
    print(f"| spool depth, highest scraped | {spool_peak:.0f} points | |")
    print()
    print("Timeline (CPU % over the preceding interval, VmRSS at that moment):\n")
    print("| seconds into the window | telegrams counted | CPU % of one core | VmRSS MiB |")
    print("|---:|---:|---:|---:|")
    print("\n".join(timeline))
    print()
    if not ok:
        sys.exit(f"sent {sent}, counted {results} rejected {rejected:.0f}, in InfluxDB {landed}")


if __name__ == "__main__":
    main()
