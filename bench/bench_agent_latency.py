"""Time from a telegram's last byte on the link to its point being queryable in InfluxDB 1.x.

    python bench/bench_agent_latency.py [--count 300] [--interval 1.0] [--poll 0.005]
                                        [--feed tcp|pty] [--warmup 5]

A simulated DSMR 5 meter (in this process) writes telegrams on a fixed schedule into a TCP
connection that `p1-agent run` reads through `socket://` (`--feed pty`: a pseudo-terminal, as a
USB P1 cable appears), and the agent delivers to InfluxDB 1.x (v1 API) with default settings.
The clock starts when the telegram's last byte has been written (`sendall` returned) and stops
when a query to InfluxDB's /query first returns its point (by meter time); nothing is
subtracted. While a telegram is outstanding, InfluxDB is asked every `--poll` seconds plus the
query's own round trip, which is the resolution (reported). The first `--warmup` telegrams
(the agent's first connection to InfluxDB, the shard's creation) are not counted. Target:
p50 ≤ 1 s.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchenv import header, log
from liveagent import (
    DATABASE,
    Feeder,
    agent_process,
    command_line,
    connect,
    influx_database,
    influx_env,
    meter_link,
)

TITLE = "Live agent: latency from a telegram's last byte to its point in InfluxDB"
TARGET_P50 = 1.0  # seconds
GIVE_UP = 60.0  # a telegram not in InfluxDB this long after it was sent ends the run
BUCKETS_MS = (50, 100, 150, 200, 250, 300, 400, 500, 1000)


def histogram(latencies: list[float]) -> list[str]:
    rows = []
    for low, high in itertools.pairwise((0, *BUCKETS_MS, math.inf)):
        n = sum(low <= s * 1000 < high for s in latencies)
        label = f"{low}–{high}" if high < math.inf else f"≥ {low}"
        rows.append(f"| {label} | {n} | {100 * n / len(latencies):.1f} % |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--count", type=int, default=300, help="telegrams measured")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between telegrams")
    parser.add_argument("--poll", type=float, default=0.005, help="seconds between queries")
    parser.add_argument("--feed", choices=("tcp", "pty"), default="tcp", help="the meter link")
    parser.add_argument("--warmup", type=int, default=5, help="telegrams not counted")
    args = parser.parse_args()
    # The header names the code the agent runs: taken before the run, not minutes later.
    head = header(TITLE + (" (pty)" if args.feed == "pty" else ""), command_line())
    total = args.warmup + args.count

    latency: dict[int, float] = {}
    polls = 0
    polling = 0.0  # seconds spent in polls while a telegram was outstanding
    with (
        tempfile.TemporaryDirectory(prefix="p1-bench-latency-") as tmp,
        influx_database(Path(tmp, "influx")) as influx,
        meter_link(args.feed) as link,
        agent_process(Path(tmp), {"P1_SOURCE": link.source, **influx_env(influx)}) as agent,
    ):
        connect(agent, link)
        feeder = Feeder(link, count=total, interval=args.interval)
        feeder.start()
        log(f"{total} telegrams, one every {args.interval:g} s, into {link.source}")
        oldest = 0  # index of the oldest telegram not yet found
        while oldest < total:
            sent = feeder.sent[:]  # the feeder appends; work on what was sent so far
            if oldest >= len(sent):
                if feeder.error is not None:
                    sys.exit(f"writing to the agent failed: {feeder.error}")
                time.sleep(args.poll)
                continue
            # One query finds every outstanding telegram: they are the newest points.
            started = time.monotonic()
            rows = influx.query(
                f'SELECT "power_import_kw" FROM "p1" WHERE time >= {sent[oldest].stamp}s',
                DATABASE,
            )
            now = time.monotonic()
            polls += 1
            polling += now - started
            landed = {int(str(row["time"])) for row in rows}
            for i in range(oldest, len(sent)):
                if i not in latency and sent[i].stamp in landed:
                    latency[i] = now - sent[i].at
            while oldest in latency:
                oldest += 1
                if oldest % 50 == 0:
                    log(f"{oldest}/{total} in InfluxDB")
            if oldest < len(sent) and now - sent[oldest].at > GIVE_UP:
                sys.exit(f"telegram {oldest} not in InfluxDB after {GIVE_UP:.0f} s")
            sleep_start = time.monotonic()
            time.sleep(args.poll)
            polling += time.monotonic() - sleep_start
        feeder.join()

    measured = [latency[i] for i in range(args.warmup, total)]
    warm = [latency[i] for i in range(args.warmup)]
    cuts = statistics.quantiles(measured, n=100, method="inclusive")
    p50, p90, p99 = cuts[49], cuts[89], cuts[98]
    resolution = polling / polls
    query_ms = 1000 * (polling / polls - args.poll)

    link_text = (
        "a TCP connection the agent reads through `socket://` (a ser2net or ESP bridge)"
        if args.feed == "tcp"
        else "a pseudo-terminal the agent opens as a serial device (a USB P1 cable)"
    )
    print(head)
    print(
        f"{args.count} simulated DSMR 5 telegrams (924 bytes, one every {args.interval:g} s, "
        f"after {args.warmup} not counted) written in one piece into {link_text}; `p1-agent "
        "run` with default settings delivers to InfluxDB 1.6 (v1 API) on loopback. Latency = "
        "from the moment the telegram's last byte was written to the answer of the first "
        "InfluxDB query that returns its point; nothing subtracted. Resolution: while a "
        f"telegram is outstanding a query goes out every {1000 * resolution:.1f} ms on "
        f"average ({1000 * args.poll:g} ms pause + {query_ms:.1f} ms query), so a latency is "
        f"over-stated by up to that much. Target: p50 ≤ {TARGET_P50:g} s.\n"
    )
    ok = p50 <= TARGET_P50
    print("| telegrams | p50 ms | p90 ms | p99 ms | max ms | min ms | mean ms | target p50 ≤ 1 s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    print(
        f"| {len(measured)} | **{1000 * p50:.0f}** | {1000 * p90:.0f} | {1000 * p99:.0f} "
        f"| {1000 * max(measured):.0f} | {1000 * min(measured):.0f} "
        f"| {1000 * statistics.mean(measured):.0f} | {'met' if ok else '**not met**'} |"
    )
    print()
    print(
        "Warm-up telegrams (not counted): "
        + ", ".join(f"{1000 * s:.0f} ms" for s in warm)
        + ". Distribution:\n"
    )
    print("| latency ms | telegrams | share |")
    print("|---|---:|---:|")
    print("\n".join(histogram(measured)))
    print()


if __name__ == "__main__":
    main()
