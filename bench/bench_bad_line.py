"""Bad-line benchmark: the repair engine on a line that damages 4 telegrams of 5.

    python bench/bench_bad_line.py [--flavour hu|dsmr5|both] [--damaged N] [--segment N]
                                   [--seed S] [--jobs J] [--quick]

Per flavour, `SimulatedMeter` streams go through `agent.noisyline.NoisyChannel` with the bad-line
profile (`bad_line_rates`: bit clears, lost `/`, drop + substitution, overruns inside the 0xFF
run, noise-made `!` and `/`, merged telegrams; 4 of 5 telegrams damaged) and, in chunks of
64–512 bytes, through one `MeterPipeline` each, until `--damaged` damaged telegrams (default
100 000) have been sent. Each stream is a meter of its own (its own seed and start time) that
meets the bad line from its first telegram: `--segment` damaged telegrams per stream (default
2 000), the first 3 always damaged, so every stream starts cold, before any clean telegram.
Streams run in parallel over `--jobs` processes (default: every core).

Results are matched to what the meter sent as in `bench_repair.py`. A damaged telegram counts in
the row of its mode, or in `cold start` when it came before the stream's first clean telegram;
a clean telegram counts in the row of the damaged one before it (what that damage could take
with it). Reported per row: damaged, recovered % (accepted and byte-identical to what the meter
sent) against the engine's target, by repair %, rejected % (no accepted frame), miscorrected
(accepted frames that differ from what the meter sent: must be 0), clean lost (clean telegrams
not accepted as valid and identical), latency p50 / p99 per damaged telegram, rejection reasons
and repair methods. The markdown goes to stdout, progress to stderr; the exit status is 1 when
anything was miscorrected.
"""

from __future__ import annotations

import argparse
import gc
import math
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from random import Random

from bench_repair import CHUNK, Line, Matcher, ModeRun, counts, merged_run, pct, percentile, tally
from benchenv import header, log

from agent.noisyline import NoisyChannel, bad_line_rates
from agent.simulate import MEASURED_FLAVOURS, SimulatedMeter

TARGET = 100_000  # damaged telegrams per flavour by default
SEGMENT = 2_000  # damaged telegrams per meter stream by default
QUICK = (400, 200)  # --damaged and --segment of --quick
COLD = 3  # damaged telegrams that open every stream
COLD_ROW = "cold"
START = datetime(2024, 6, 1, tzinfo=UTC)
STAGGER = timedelta(hours=7, minutes=13)  # between the streams' starts: every time of day

# (mode, label, the recovered % the engine must reach or None), in table order.
ROWS: tuple[tuple[str, str, float | None], ...] = (
    ("bit_clear", "one bit-clear", 97),
    ("bit_clear_2", "two bit-clears", 75),
    ("bit_clear_3", "three bit-clears", 40),
    ("drop_substitution", "drop + substitution", 50),
    ("overrun_block", "lost block in the 0xFF run", 90),
    ("noise_bang", "noise `!`", None),
    ("noise_slash", "noise `/`", None),
    ("start_lost", "`/` lost", None),
    ("merged", "merged", None),
    (COLD_ROW, "cold start (before the first clean telegram)", None),
)


@dataclass(frozen=True, slots=True)
class Segment:
    """One meter's stream on the bad line."""

    flavour: str
    index: int
    damaged: int
    seed: int


@dataclass(slots=True)
class Outcome:
    """What became of one stream: its runs by row."""

    segment: Segment
    runs: dict[str, ModeRun]
    telegrams: int
    damaged: int
    seconds: float


def run_segment(segment: Segment) -> Outcome:
    flavour, index, seed = segment.flavour, segment.index, segment.seed
    meter = SimulatedMeter(flavour, seed=seed * 10_000 + index, start=START + index * STAGGER)
    telegram = meter.next_telegram()
    channel = NoisyChannel(bad_line_rates(telegram, 1.0), f"bad-line-{seed}-{flavour}-{index}")
    steady = bad_line_rates(telegram)
    runs: dict[str, ModeRun] = {}
    rows: list[str] = []  # each telegram's row
    hits = bytearray()  # each telegram: damaged or not
    damaged = 0
    match = Matcher(lambda owner: runs[rows[owner]])
    line = Line(match, Random(f"chunks-{seed}-{flavour}-{index}"))
    cold, row = True, COLD_ROW
    began = time.monotonic()
    gc.collect()
    while damaged < segment.damaged or channel.merging:
        if len(rows) == COLD:
            channel.set_rates(steady)
        corruption = channel.corrupt(telegram)
        if corruption is None:  # keeps the row of the damaged telegram before it
            data, note = telegram, None
            cold = False
        else:
            data, note = corruption.data, corruption.describe()
            row = COLD_ROW if cold else corruption.mode
            damaged += 1
        if row not in runs:
            runs[row] = ModeRun(flavour, row)
        rows.append(row)
        hits.append(corruption is not None)
        line.send(len(rows) - 1, telegram, data, note)
        telegram = meter.next_telegram()
    line.close()
    for number, name in enumerate(rows):
        tally(runs[name], match, number, bool(hits[number]))
    return Outcome(segment, runs, len(rows), damaged, time.monotonic() - began)


def segments(flavour: str, damaged: int, per_segment: int, seed: int) -> list[Segment]:
    """Streams of `per_segment` damaged telegrams (the last one the rest) adding up to `damaged`."""
    count = math.ceil(damaged / per_segment)
    sizes = [per_segment] * (count - 1) + [damaged - per_segment * (count - 1)]
    return [Segment(flavour, index, size, seed) for index, size in enumerate(sizes)]


def run_all(todo: list[Segment], jobs: int) -> list[Outcome]:
    """Every stream, `jobs` at a time, with progress on stderr; in `todo` order."""
    done: list[Outcome] = []
    began = time.monotonic()
    totals = {
        flavour: sum(1 for s in todo if s.flavour == flavour) for flavour in MEASURED_FLAVOURS
    }
    with multiprocessing.Pool(jobs) as pool:
        for outcome in pool.imap_unordered(run_segment, todo):
            done.append(outcome)
            run = merged_run(outcome.runs.values(), outcome.segment.flavour, "stream")
            finished = sum(1 for o in done if o.segment.flavour == outcome.segment.flavour)
            log(
                f"{outcome.segment.flavour} stream {finished}/{totals[outcome.segment.flavour]}: "
                f"{outcome.damaged} damaged of {outcome.telegrams}, recovered "
                f"{pct(run.recovered, run.corrupted)} %, miscorrected {run.miscorrected} "
                f"({outcome.seconds:.1f} s; {time.monotonic() - began:.0f} s in all)"
            )
    return sorted(done, key=lambda o: todo.index(o.segment))


def target_cell(recovered: int, damaged: int, target: float | None) -> str:
    if target is None:
        return "–"
    met = damaged > 0 and 100 * recovered / damaged >= target
    return f"≥ {target:g} ({'met' if met else 'not met'})"


def row(label: str, run: ModeRun, target: str) -> str:
    return (
        f"| {label} | {run.corrupted} | {pct(run.recovered, run.corrupted)} | {target} "
        f"| {pct(run.repaired, run.corrupted)} | {pct(run.rejected, run.corrupted)} "
        f"| {run.miscorrected} | {run.clean_lost} "
        f"| {percentile(run.latency_ns, 0.5):.3f} | {percentile(run.latency_ns, 0.99):.3f} "
        f"| {counts(run.reasons)} | {counts(run.methods)} |"
    )


def table(flavour: str, outcomes: list[Outcome]) -> tuple[str, ModeRun]:
    """The flavour's markdown section, and all its runs added up."""
    by_row: dict[str, list[ModeRun]] = {}
    for outcome in outcomes:
        for name, run in outcome.runs.items():
            by_row.setdefault(name, []).append(run)
    every = merged_run((run for runs in by_row.values() for run in runs), flavour, "all")
    lines = []
    for name, label, target in ROWS:
        if name in by_row:
            run = merged_run(by_row[name], flavour, name)
            lines.append(row(label, run, target_cell(run.recovered, run.corrupted, target)))
    wrong = "met" if every.miscorrected == 0 else "not met"
    lines.append(row("**all**", every, f"0 miscorrected ({wrong})"))
    telegrams = sum(o.telegrams for o in outcomes)
    size = len(SimulatedMeter(flavour).next_telegram())
    missing = [label for name, label, _ in ROWS if name not in by_row]
    note = f"\nNot applicable to {flavour} telegrams: {', '.join(missing)}.\n" if missing else ""
    section = (
        f"### {flavour} ({size}-byte telegrams; {len(outcomes)} streams, {every.corrupted} "
        f"damaged of {telegrams} telegrams, {pct(every.corrupted, telegrams)} %)\n\n"
        "| damage | damaged | recovered % | target % | by repair % | rejected % | miscorrected "
        "| clean lost | p50 ms | p99 ms | rejected frames | repair methods |\n"
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|\n"
        + "\n".join(lines)
        + "\n"
        + note
    )
    return section, every


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--flavour", choices=(*MEASURED_FLAVOURS, "both"), default="both")
    parser.add_argument(
        "--damaged",
        type=int,
        default=TARGET,
        metavar="N",
        help=f"damaged telegrams per flavour (default: {TARGET})",
    )
    parser.add_argument(
        "--segment",
        type=int,
        default=SEGMENT,
        metavar="N",
        help=f"damaged telegrams per meter stream, each starting cold (default: {SEGMENT})",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"--damaged {QUICK[0]} --segment {QUICK[1]}"
    )
    parser.add_argument("--seed", type=int, default=1, help="meter and noise seed (default: 1)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=len(os.sched_getaffinity(0)),
        metavar="J",
        help="processes (default: one per core)",
    )
    args = parser.parse_args()
    damaged, per_segment = QUICK if args.quick else (args.damaged, args.segment)
    if min(damaged, per_segment, args.jobs) < 1:
        parser.error("--damaged, --segment and --jobs must be at least 1")
    flavours = MEASURED_FLAVOURS if args.flavour == "both" else (args.flavour,)
    todo = [s for flavour in flavours for s in segments(flavour, damaged, per_segment, args.seed)]
    outcomes = run_all(todo, args.jobs)

    sections = []
    failed = False
    for flavour in flavours:
        section, every = table(flavour, [o for o in outcomes if o.segment.flavour == flavour])
        sections.append(section)
        for example in every.examples:
            log(f"  {flavour} miscorrected: {example}")
        failed |= every.miscorrected > 0

    command = " ".join(["python bench/bench_bad_line.py", *sys.argv[1:]])
    print(header("Repair on a bad line: 4 telegrams of 5 damaged", command))
    print(
        "Each stream: a `SimulatedMeter` of its own behind `agent.noisyline.NoisyChannel` with the "
        f"bad-line profile (`bad_line_rates`), its first {COLD} telegrams damaged and then 4 of 5 "
        f"on average, fed to a fresh `MeterPipeline` in chunks of {CHUNK[0]}–{CHUNK[1]} bytes; "
        f"{per_segment} damaged telegrams a stream. A damaged telegram counts in its mode's row, "
        "or in the cold start's when it came before the stream's first clean telegram; a clean "
        "telegram in the row of the damaged one before it. recovered = accepted and "
        "byte-identical to what the meter sent (by repair = status `repaired`); target = what "
        "the repair engine must reach; rejected = no accepted frame; miscorrected = accepted "
        "frames that differ from what the meter sent (must be 0); clean lost = clean telegrams "
        "not accepted as valid and identical. Latency: time in `feed()` for the telegram's "
        "chunks (and for the later call that delivered its result), per damaged telegram, with "
        f"{args.jobs} streams running at once.\n"
    )
    print("\n".join(sections))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
