"""`p1-agent replay` on a day of Hungarian telegrams: process CPU time, wall time, peak RSS.

    python bench/bench_replay.py [--repeat 5]

Generates 8640 telegrams (one day at 10 s) with `p1-agent simulate --flavour hu` into a
temporary directory, plus a gzip copy, then runs `p1-agent replay FILE --format F -o OUT` for
csv, jsonl and line-protocol `--repeat` times each as a child process. Reported: the medians of
the child's CPU time (user + sys) and wall time, and its largest peak RSS. A replay of an empty
file gives the start-up cost (interpreter and imports) that every row includes.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchenv import header, log, p1_agent
from childproc import Run, floor_mib, measure

COUNT = 8640
FORMATS = ("csv", "jsonl", "line-protocol")


def replay(agent: str, source: Path, fmt: str, out: Path, repeat: int, expect: str) -> list[Run]:
    runs = []
    for _ in range(repeat):
        run = measure([agent, "replay", str(source), "--format", fmt, "-o", str(out)])
        if run.exit_code != 0 or "Traceback" in run.stderr or expect not in run.stderr:
            sys.exit(f"replay {source.name} --format {fmt} failed:\n{run.stderr}")
        runs.append(run)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per row; medians reported")
    args = parser.parse_args()
    agent = p1_agent()
    rows = []
    floor = floor_mib()
    with tempfile.TemporaryDirectory(prefix="p1-bench-") as tmp:
        day = Path(tmp, "day-hu.p1")
        log(f"generating {COUNT} hu telegrams into {day}")
        subprocess.run(
            [agent, "simulate", "--flavour", "hu", "--count", str(COUNT), "-o", str(day)],
            check=True,
        )
        packed = Path(tmp, "day-hu.p1.gz")
        packed.write_bytes(gzip.compress(day.read_bytes()))
        empty = Path(tmp, "empty.p1")
        empty.write_bytes(b"")
        out = Path(tmp, "out")
        inputs = [
            (empty, "csv", "telegrams 0:"),
            *((day, fmt, f"telegrams {COUNT}: valid {COUNT},") for fmt in FORMATS),
            *((packed, fmt, f"telegrams {COUNT}: valid {COUNT},") for fmt in FORMATS),
        ]
        for source, fmt, expect in inputs:
            log(f"replay {source.name} --format {fmt} × {args.repeat}")
            runs = replay(agent, source, fmt, out, args.repeat, expect)
            size = source.stat().st_size / 1e6
            cpu = statistics.median(r.cpu_s for r in runs)
            rows.append(
                f"| `{source.name}` ({size:.1f} MB) | {fmt} | {cpu:.2f} "
                f"| {statistics.median(r.wall_s for r in runs):.2f} "
                f"| {max(r.max_rss_mib for r in runs):.0f} "
                f"| {out.stat().st_size / 1e6:.1f} | {runs[-1].stderr.splitlines()[1]} |"
            )

    command = "python bench/bench_replay.py"
    print(header("Replay: a day of Hungarian telegrams", command))
    print(
        f"`p1-agent replay FILE --format F -o OUT` on {COUNT} simulated hu telegrams (one day at "
        f"10 s), median of {args.repeat} runs; CPU = user + sys of the child (os.wait4), peak "
        f"RSS = its ru_maxrss (largest of the runs; {floor:.0f} MiB is the launcher's floor, see "
        "bench/childproc.py). `empty.p1` is the start-up cost included in every row. "
        "Target: CSV < 1 s process time (the seed took about a minute).\n"
    )
    print("| input | format | CPU s | wall s | peak RSS MiB | output MB | summary |")
    print("|---|---|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    print()


if __name__ == "__main__":
    main()
