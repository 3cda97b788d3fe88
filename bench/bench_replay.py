"""`p1-agent replay` end to end as a user runs it: against dsmr_parser, a day, a year in parallel.

    python bench/bench_replay.py [--count 10000] [--rounds 2] [--repeat 5]
                                 [--year [--jobs 2] [--year-dir DIR] [--only-year]]
    python bench/bench_replay.py --instructions [--count 1000]

Every figure is the CPU time (user + sys, os.wait4) of a child process, start-up included.
1. Against dsmr_parser: `--count` simulated hu telegrams in one file; per round, the reference
   (dsmr_parser's `TelegramParser(EON_HUNGARY, apply_checksum_validation=True).parse` of every
   telegram, cut from the file by a regular expression, no output at all) and then
   `p1-agent replay FILE --format F -o OUT` for csv, jsonl and line protocol, alternated so that
   the load of a shared machine hits both alike; the best of `--rounds` runs of each, and the
   ratio reference / ours.
2. A day of hu telegrams (8640) and its gzip copy, median of `--repeat` runs, with wall time and
   peak RSS; an empty file gives the start-up cost every row includes.
3. With `--year`: a year of 10-s telegrams (3.15 million, as 365 daily files in a directory)
   replayed to line protocol with `--jobs N`: wall time, CPU time and the summary line.
With `--instructions` instead: both sides counted in instructions executed (valgrind), which
load does not change, for start-up and per telegram (`--count` telegrams of ours, a twentieth
of that for dsmr_parser).
The markdown sections go to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchenv import header, instructions, log, p1_agent
from childproc import Run, floor_mib, measure

DAY = 8640
MEASURE = 10_000  # telegrams of the comparison with dsmr_parser (issue 18's measure)
FORMATS = ("csv", "jsonl", "line-protocol")
# The reference: dsmr_parser's bare parse of every telegram of the file, nothing written. Its
# logger is silenced: it logs a traceback for every Hungarian telegram (the 0xFF message line).
REFERENCE = """
import logging, re, sys
from dsmr_parser import telegram_specifications
from dsmr_parser.parsers import TelegramParser
logging.getLogger("dsmr_parser").setLevel(logging.CRITICAL)
parse = TelegramParser(telegram_specifications.EON_HUNGARY, apply_checksum_validation=True).parse
with open(sys.argv[1], "rb") as capture:
    text = capture.read().decode("latin-1")
count = 0
for match in re.finditer(r"/[^/]*?![0-9A-F]{4}\\r\\n", text):
    parse(match.group(0))
    count += 1
print(f"telegrams {count}", file=sys.stderr)
"""


def simulate(agent: str, path: Path, count: int, start: datetime | None = None) -> None:
    command = [agent, "simulate", "--flavour", "hu", "--count", str(count), "-o", str(path)]
    if start is not None:
        command += ["--start", start.isoformat()]
    subprocess.run(command, check=True)


def checked(argv: list[str], expect: str) -> Run:
    run = measure(argv)
    if run.exit_code != 0 or "Traceback" in run.stderr or expect not in run.stderr:
        sys.exit(f"{' '.join(argv)} failed:\n{run.stderr}")
    return run


def replay_argv(agent: str, sources: list[Path], fmt: str, out: Path, *extra: str) -> list[str]:
    return [agent, "replay", *map(str, sources), "--format", fmt, "-o", str(out), *extra]


def against_dsmr_parser(agent: str, tmp: Path, count: int, rounds: int) -> str:
    source = tmp / "hu.p1"
    log(f"generating {count} hu telegrams into {source}")
    simulate(agent, source, count)
    out = tmp / "out"
    expect = f"telegrams {count}"
    cpu: dict[str, list[float]] = {name: [] for name in ("dsmr_parser", *FORMATS)}
    for i in range(rounds):
        reference = [sys.executable, "-c", REFERENCE, str(source)]
        cpu["dsmr_parser"].append(checked(reference, expect).cpu_s)
        for fmt in FORMATS:
            cpu[fmt].append(checked(replay_argv(agent, [source], fmt, out), expect).cpu_s)
        log(f"round {i + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in cpu.items()))
    best = {name: min(values) for name, values in cpu.items()}
    rows = [
        f"| {fmt} | {best[fmt]:.2f} | {best['dsmr_parser']:.2f} "
        f"| **{best['dsmr_parser'] / best[fmt]:.1f}×** |"
        for fmt in FORMATS
    ]
    command = f"python bench/bench_replay.py --count {count} --rounds {rounds}"
    return "\n".join(
        [
            header("Replay end to end against dsmr_parser", command),
            f"{count} simulated hu telegrams (2348 bytes each) in one file. CPU = user + sys of "
            "the child process, start-up included, best of "
            f"{rounds} runs alternated with the reference: `p1-agent replay FILE --format F "
            "-o OUT` against dsmr_parser's bare `TelegramParser(EON_HUNGARY, "
            "apply_checksum_validation=True).parse` of each telegram, with no output at all. "
            "Target: ≥ 15× in every format.\n",
            "| format | p1-agent replay CPU s | dsmr_parser parse CPU s | speed-up |",
            "|---|---:|---:|---:|",
            *rows,
            "",
        ]
    )


def counted(agent: str, tmp: Path, count: int, reference_count: int) -> str:
    """Start-up and per-telegram instructions of each side, from runs on an empty file and on
    `count` (ours) or `reference_count` (dsmr_parser, 20× slower under valgrind) telegrams."""
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install valgrind")
    ours, theirs, empty = tmp / "counted.p1", tmp / "reference.p1", tmp / "nothing.p1"
    simulate(agent, ours, count)
    simulate(agent, theirs, reference_count)
    empty.write_bytes(b"")
    out = tmp / "out"
    python = Path(agent).parent / "python"
    reference = [str(python), "-c", REFERENCE]
    log(f"valgrind: dsmr_parser on {reference_count} telegrams")
    ref_start = instructions([*reference, str(empty)])
    ref_each = (instructions([*reference, str(theirs)]) - ref_start) / reference_count
    rows = []
    for fmt in FORMATS:
        log(f"valgrind: replay --format {fmt} on {count} telegrams")
        replay = [str(python), agent, "replay", "--format", fmt, "-o", str(out)]
        start = instructions([*replay, str(empty)])
        each = (instructions([*replay, str(ours)]) - start) / count
        total, ref_total = start + MEASURE * each, ref_start + MEASURE * ref_each
        rows.append(
            f"| {fmt} | {start / 1e6:.0f} | {each / 1e3:.0f} | {ref_start / 1e6:.0f} "
            f"| {ref_each / 1e3:.0f} | **{ref_total / total:.1f}×** | {ref_each / each:.1f}× |"
        )
    command = f"python bench/bench_replay.py --instructions --count {count}"
    return "\n".join(
        [
            header("Replay end to end against dsmr_parser, in instructions", command),
            "The same comparison counted in instructions executed (valgrind --tool=callgrind), "
            "which load on a shared machine does not change: each side's start-up (a run on an "
            f"empty file) and its cost per telegram (from {count} simulated hu telegrams, "
            f"{reference_count} for dsmr_parser); the speed-up is for {MEASURE} telegrams "
            "with start-up (the measure above), and per telegram without.\n",
            "| format | ours start-up M | ours k per telegram | dsmr_parser start-up M "
            f"| dsmr_parser k per telegram | speed-up, {MEASURE} telegrams | per telegram |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )


def a_day(agent: str, tmp: Path, repeat: int) -> str:
    day = tmp / "day-hu.p1"
    log(f"generating {DAY} hu telegrams into {day}")
    simulate(agent, day, DAY)
    packed = tmp / "day-hu.p1.gz"
    packed.write_bytes(gzip.compress(day.read_bytes()))
    empty = tmp / "empty.p1"
    empty.write_bytes(b"")
    out = tmp / "out"
    floor = floor_mib()
    inputs = [
        (empty, "csv", "telegrams 0:"),
        *((day, fmt, f"telegrams {DAY}: valid {DAY},") for fmt in FORMATS),
        *((packed, fmt, f"telegrams {DAY}: valid {DAY},") for fmt in FORMATS),
    ]
    rows = []
    for source, fmt, expect in inputs:
        log(f"replay {source.name} --format {fmt} × {repeat}")
        runs = [checked(replay_argv(agent, [source], fmt, out), expect) for _ in range(repeat)]
        size = source.stat().st_size / 1e6
        rows.append(
            f"| `{source.name}` ({size:.1f} MB) | {fmt} "
            f"| {statistics.median(r.cpu_s for r in runs):.2f} "
            f"| {statistics.median(r.wall_s for r in runs):.2f} "
            f"| {max(r.max_rss_mib for r in runs):.0f} "
            f"| {out.stat().st_size / 1e6:.1f} | {runs[-1].stderr.splitlines()[1]} |"
        )
    return "\n".join(
        [
            header("Replay: a day of Hungarian telegrams", "python bench/bench_replay.py"),
            f"`p1-agent replay FILE --format F -o OUT` on {DAY} simulated hu telegrams (one day "
            f"at 10 s), median of {repeat} runs; CPU = user + sys of the child (os.wait4), peak "
            f"RSS = its ru_maxrss (largest of the runs; {floor:.0f} MiB is the launcher's floor, "
            "see bench/childproc.py). `empty.p1` is the start-up cost included in every row. "
            "Target: CSV < 1 s process time (the seed took about a minute).\n",
            "| input | format | CPU s | wall s | peak RSS MiB | output MB | summary |",
            "|---|---|---:|---:|---:|---:|---|",
            *rows,
            "",
        ]
    )


def a_year(agent: str, tmp: Path, jobs: int, folder: Path | None) -> str:
    """365 daily files of 8640 telegrams (the days simulated on every core, each from its own
    midnight, into `folder` unless they are there already), replayed with `--jobs`."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    folder = folder or tmp / "year"
    folder.mkdir(exist_ok=True)
    days = [folder / f"p1-{(start + timedelta(days=n)).date().isoformat()}.p1" for n in range(365)]
    missing = [n for n, day in enumerate(days) if not day.exists()]
    log(f"generating {len(missing)} days of {DAY} hu telegrams in {folder}")

    def generate(n: int) -> None:
        part = days[n].with_suffix(".part")  # a file cut short by ^C is not taken for a day
        simulate(agent, part, DAY, start + timedelta(days=n))
        part.rename(days[n])

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(generate, missing))
    total = DAY * len(days)
    out = tmp / "year.lp"
    log(f"replay of the year with --jobs {jobs}")
    argv = replay_argv(agent, [folder], "line-protocol", out, "--jobs", str(jobs))
    run = checked(argv, f"telegrams {total}: valid {total},")
    command = f"python bench/bench_replay.py --year --jobs {jobs}"
    return "\n".join(
        [
            header("Replay: a year of 10-s telegrams in parallel", command),
            f"{total} simulated hu telegrams in 365 daily files (`p1-YYYY-MM-DD.p1`, "
            f"{total * 2348 / 1e9:.1f} GB) in one directory, `p1-agent replay DIR --format "
            f"line-protocol -o OUT --jobs {jobs}` on {os.cpu_count()} cores; wall and CPU time "
            "(user + sys of the command and its workers) of one run. Target: < 2 min on 2 cores.\n",
            "| jobs | wall s | CPU s | output GB | summary |",
            "|---:|---:|---:|---:|---|",
            f"| {jobs} | {run.wall_s:.1f} | {run.cpu_s:.1f} | {out.stat().st_size / 1e9:.2f} "
            f"| {run.stderr.splitlines()[1]} |",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="telegrams against dsmr_parser")
    parser.add_argument("--rounds", type=int, default=2, help="alternated runs; best reported")
    parser.add_argument("--repeat", type=int, default=5, help="runs per row of the day table")
    parser.add_argument("--year", action="store_true", help="also replay a year (~13 GB temp)")
    parser.add_argument("--jobs", type=int, default=2, help="workers for the year")
    parser.add_argument(
        "--year-dir", type=Path, help="keep the year's files here and reuse them (7.4 GB)"
    )
    parser.add_argument(
        "--only-year", action="store_true", help="skip the comparison and the day (with --year)"
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="only count instructions (valgrind) of both sides, on --count telegrams of ours",
    )
    args = parser.parse_args()
    agent = p1_agent()
    with tempfile.TemporaryDirectory(prefix="p1-bench-") as name:
        tmp = Path(name)
        if args.instructions:
            print(counted(agent, tmp, args.count, max(args.count // 20, 10)))
            return
        if not (args.year and args.only_year):
            print(against_dsmr_parser(agent, tmp, args.count, args.rounds))
            print(a_day(agent, tmp, args.repeat))
        if args.year:
            print(a_year(agent, tmp, args.jobs, args.year_dir))


if __name__ == "__main__":
    main()
