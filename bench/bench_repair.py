"""Repair benchmark: how many corrupted telegrams come back exactly, per failure mode of the line.

    python bench/bench_repair.py [--flavour hu|dsmr5|both] [--per-mode N] [--seed S] [--quick]
                                 [--modes MODE,MODE...]

For each flavour and each mode of `agent.noisyline` that applies to it, one `SimulatedMeter` stream
of 20 clean telegrams (warm-up) and then corrupted and clean telegrams alternating, so the line
profile and the register history stay warm as on a real line, goes through one `MeterPipeline`
in chunks of 64–512 bytes (the reads of a serial port). Chunks never span two telegrams (the
meter pauses between them), so the time of the `feed()` calls of a telegram's bytes is its
latency; the call that hands out a corrupted frame's result later (a frame that lost its `!` ends
at the next `/`) is added to that telegram's latency too, and the clean telegram whose bytes that
call carried is left out of the clean baseline.

Results are matched to what the meter sent: an accepted frame by its meter time `0-0:1.0.0`, whose
original telegram it must equal byte for byte (a corrupted frame may be split or merged by the
framer, so stream order alone cannot pair them); a rejected frame by its stream offset. Reported
per mode:
- recovered %: corrupted telegrams that came out accepted and byte-identical; `by repair %` is the
  part the repair engine restored (the rest came through valid: the noise hit outside the frame);
- rejected %: corrupted telegrams with no accepted frame (lost, but no wrong number written);
- miscorrected: accepted frames not byte-identical to the telegram the meter sent (must be 0);
- clean lost: clean telegrams not accepted as valid and identical (must be 0);
- latency p50 / p99 in ms per corrupted telegram, and the clean telegrams' p50 for comparison.

Without a repair engine every corrupted frame is rejected (recovered 0 % except where the noise
missed the frame); with `agent.core.repair` the same command measures it. The markdown goes
to stdout, progress to stderr; the exit status is 1 when anything was miscorrected or a clean
telegram was lost.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import importlib.util
import math
import random
import re
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from benchenv import header, log

from agent.core.pipeline import MeterPipeline, Result
from agent.noisyline import MODES, applicable_modes, corrupt
from agent.simulate import MEASURED_FLAVOURS, SimulatedMeter

WARMUP = 20  # clean telegrams before the first corrupted one
WINDOW = 256  # recent originals kept for matching accepted frames by meter time
TARGET = 100_000  # corrupted telegrams per flavour by default
QUICK = 300
CHUNK = (64, 512)
_STAMP = re.compile(rb"0-0:1\.0\.0\(([^)]*)\)")

# What became of a telegram.
NONE, VALID_SAME, REPAIRED_SAME = 0, 1, 2


def stamp_of(text: bytes) -> bytes:
    found = _STAMP.search(text)
    return found[1] if found else b""


def percentile(values: list[int], q: float) -> float:
    """The q-quantile (nearest rank) of nanosecond values, in ms."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] / 1e6


@dataclass(slots=True)
class ModeRun:
    flavour: str
    mode: str
    corrupted: int = 0
    recovered: int = 0
    repaired: int = 0
    rejected: int = 0
    miscorrected: int = 0
    clean: int = 0
    clean_lost: int = 0
    duplicates: int = 0  # a telegram accepted twice
    reasons: Counter[str] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    latency_ns: list[int] = field(default_factory=list)
    clean_ns: list[int] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Matcher:
    """Pairs the pipeline's results with the telegrams the meter sent. A frame's rejection reason,
    repair method or miscorrection is counted in `run_of(owner)`, the run of the telegram the frame
    starts in."""

    def __init__(self, run_of: Callable[[int], ModeRun]) -> None:
        self.run_of = run_of
        self.starts: list[int] = []  # stream offset of each telegram as sent
        self.originals: dict[bytes, tuple[int, bytes]] = {}  # meter time → index, text
        self.window: deque[tuple[bytes, int]] = deque()
        self.notes: dict[int, str] = {}  # recent corruptions, for the report of a miscorrection
        self.outcome = bytearray()
        self.accepted = bytearray()  # some accepted frame started within the telegram
        self.feed_ns: list[int] = []
        self.mixed = bytearray()  # a feed call of its bytes delivered an earlier one's result

    def sent(self, index: int, telegram: bytes, offset: int, note: str | None) -> None:
        stamp = stamp_of(telegram)
        self.starts.append(offset)
        self.outcome.append(NONE)
        self.accepted.append(0)
        self.feed_ns.append(0)
        self.mixed.append(0)
        self.originals[stamp] = (index, telegram[:-2])  # without the line end, as Frame.text
        if note is not None:
            self.notes[index] = note
        self.window.append((stamp, index))
        if len(self.window) > WINDOW:
            old_stamp, old_index = self.window.popleft()
            self.originals.pop(old_stamp, None)
            self.notes.pop(old_index, None)

    def owner(self, result: Result) -> int:
        return bisect.bisect_right(self.starts, result.frame.offset) - 1

    def take(self, results: list[Result], elapsed: int, current: int) -> None:
        owners = {current}
        for result in results:
            owner = self.owner(result)
            owners.add(owner)
            if result.accepted:
                self._accepted(result, owner)
            else:
                self.run_of(owner).reasons[result.reason or "?"] += 1
        for owner in owners:
            self.feed_ns[owner] += elapsed
        if len(owners) > 1:
            self.mixed[current] = 1

    def _accepted(self, result: Result, owner: int) -> None:
        run = self.run_of(owner)
        self.accepted[owner] = 1
        text = result.frame.text
        if result.repair is not None:
            run.methods[str(result.repair.get("method", "?"))] += 1
        found = self.originals.get(stamp_of(text))
        if found is None or found[1] != text:
            run.miscorrected += 1
            if len(run.examples) < 5:
                noise = self.notes.get(owner, "sent clean")
                run.examples.append(
                    f"telegram {owner} ({stamp_of(text).decode('latin-1')}, noise: {noise}): "
                    f"{result.status} {result.repair}"
                )
            return
        index = found[0]
        if self.outcome[index] != NONE:
            run.duplicates += 1
        self.outcome[index] = VALID_SAME if result.status == "valid" else REPAIRED_SAME


class Line:
    """A meter's telegrams into one `MeterPipeline` as the line delivers them: in reads of CHUNK
    bytes (a serial port's) that never span two telegrams, since the meter pauses between them."""

    def __init__(self, match: Matcher, chunks: random.Random) -> None:
        self.match = match
        self.chunks = chunks
        self.pipeline = MeterPipeline()
        self.offset = 0

    def send(self, index: int, telegram: bytes, data: bytes, note: str | None) -> None:
        """Telegram `index` as the meter sent it, and as it arrives (`data`)."""
        self.match.sent(index, telegram, self.offset, note)
        self.offset += len(data)
        pos = 0
        while pos < len(data):
            chunk = data[pos : pos + self.chunks.randint(*CHUNK)]
            pos += len(chunk)
            start = time.perf_counter_ns()
            results = self.pipeline.feed(chunk)
            self.match.take(results, time.perf_counter_ns() - start, index)

    def close(self) -> None:
        start = time.perf_counter_ns()
        results = self.pipeline.close()
        self.match.take(results, time.perf_counter_ns() - start, len(self.match.starts) - 1)


def tally(run: ModeRun, match: Matcher, index: int, corrupted: bool) -> None:
    """Count what became of telegram `index` in `run`."""
    outcome = match.outcome[index]
    if corrupted:
        run.corrupted += 1
        run.latency_ns.append(match.feed_ns[index])
        if outcome != NONE:
            run.recovered += 1
            run.repaired += outcome == REPAIRED_SAME
        elif not match.accepted[index]:
            run.rejected += 1
    else:
        run.clean += 1
        if not match.mixed[index]:
            run.clean_ns.append(match.feed_ns[index])
        run.clean_lost += outcome != VALID_SAME


def run_mode(flavour: str, mode: str, per_mode: int, seed: int) -> ModeRun:
    run = ModeRun(flavour, mode)
    total = WARMUP + 2 * per_mode
    meter = SimulatedMeter(flavour, seed=seed)
    noise = random.Random(f"noise-{seed}-{flavour}-{mode}")
    match = Matcher(lambda owner: run)
    line = Line(match, random.Random(f"chunks-{seed}-{flavour}-{mode}"))
    corrupted = bytearray(total)
    began = time.monotonic()
    gc.collect()
    for index in range(total):
        telegram = meter.next_telegram()
        note = None
        if index >= WARMUP and (index - WARMUP) % 2 == 0:
            corrupted[index] = 1
            corruption = corrupt(telegram, mode, noise)
            data, note = corruption.data, corruption.describe()
        else:
            data = telegram
        line.send(index, telegram, data, note)
    line.close()
    for index in range(total):
        tally(run, match, index, bool(corrupted[index]))
    run.seconds = time.monotonic() - began
    return run


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else "–"


def counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in counter.most_common()) or "–"


def row(run: ModeRun) -> str:
    return (
        f"| {run.mode} | {run.corrupted} | {pct(run.recovered, run.corrupted)} "
        f"| {pct(run.repaired, run.corrupted)} | {pct(run.rejected, run.corrupted)} "
        f"| {run.miscorrected} | {run.clean_lost} "
        f"| {percentile(run.latency_ns, 0.5):.3f} | {percentile(run.latency_ns, 0.99):.3f} "
        f"| {percentile(run.clean_ns, 0.5):.3f} | {counts(run.reasons)} | {counts(run.methods)} |"
    )


_COUNTS = (  # the counters of a ModeRun
    "corrupted",
    "recovered",
    "repaired",
    "rejected",
    "miscorrected",
    "clean",
    "clean_lost",
    "duplicates",
)


def merged_run(runs: Iterable[ModeRun], flavour: str, mode: str) -> ModeRun:
    """The runs added up, as one run named `mode`."""
    merged = ModeRun(flavour, mode)
    for run in runs:
        for name in _COUNTS:
            setattr(merged, name, getattr(merged, name) + getattr(run, name))
        merged.reasons.update(run.reasons)
        merged.methods.update(run.methods)
        merged.latency_ns += run.latency_ns
        merged.clean_ns += run.clean_ns
        merged.examples += run.examples[: 5 - len(merged.examples)]
        merged.seconds += run.seconds
    return merged


def total_row(runs: list[ModeRun]) -> str:
    return row(merged_run(runs, runs[0].flavour, "**all**"))


def default_per_mode(modes: int) -> int:
    """Enough per mode for TARGET corrupted telegrams per flavour, rounded up to 100."""
    return math.ceil(TARGET / modes / 100) * 100


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--flavour", choices=(*MEASURED_FLAVOURS, "both"), default="both")
    parser.add_argument(
        "--per-mode",
        type=int,
        metavar="N",
        help=f"corrupted telegrams per mode (default: ≥ {TARGET} per flavour over all modes)",
    )
    parser.add_argument("--quick", action="store_true", help=f"--per-mode {QUICK}")
    parser.add_argument("--seed", type=int, default=1, help="meter and noise seed (default: 1)")
    parser.add_argument("--modes", metavar="MODE,...", help="only these modes (default: all)")
    args = parser.parse_args()
    if args.per_mode is not None and args.per_mode < 1:
        parser.error("--per-mode must be at least 1")
    chosen = MODES
    if args.modes:
        chosen = tuple(m.strip() for m in args.modes.split(","))
        unknown = [m for m in chosen if m not in MODES]
        if unknown:
            parser.error(f"unknown modes {', '.join(unknown)} (choose from {', '.join(MODES)})")
    flavours = MEASURED_FLAVOURS if args.flavour == "both" else (args.flavour,)

    tables = []
    failed = False
    for flavour in flavours:
        sample = SimulatedMeter(flavour, seed=args.seed).next_telegram()
        applicable = applicable_modes(sample)
        modes = [m for m in chosen if m in applicable]
        per_mode = QUICK if args.quick else args.per_mode or default_per_mode(len(applicable))
        runs = []
        for mode in modes:
            run = run_mode(flavour, mode, per_mode, args.seed)
            runs.append(run)
            log(
                f"{flavour} {mode}: {run.corrupted} corrupted, recovered "
                f"{pct(run.recovered, run.corrupted)} %, miscorrected {run.miscorrected}, "
                f"clean lost {run.clean_lost} ({run.seconds:.1f} s)"
            )
            for example in run.examples:
                log(f"  miscorrected: {example}")
            failed |= run.miscorrected > 0 or run.clean_lost > 0
        size = len(sample)
        tables.append(
            f"### {flavour} ({size}-byte telegrams, {per_mode} corrupted per mode)\n\n"
            "| mode | corrupted | recovered % | by repair % | rejected % | miscorrected "
            "| clean lost | p50 ms | p99 ms | clean p50 ms | rejected frames | repair methods |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n"
            + "\n".join(row(run) for run in runs)
            + "\n"
            + total_row(runs)
            + "\n"
        )

    command = " ".join(["python bench/bench_repair.py", *sys.argv[1:]])
    engine = "present" if importlib.util.find_spec("agent.core.repair") else "absent"
    print(header("Repair: corrupted telegrams recovered per failure mode", command))
    print(
        f"Repair engine (`agent.core.repair`): {engine}. Each mode: {WARMUP} clean telegrams, then "
        "corrupted and clean alternating (`agent.noisyline.corrupt`, seeded), fed to one "
        f"`MeterPipeline` in chunks of {CHUNK[0]}–{CHUNK[1]} bytes. recovered = accepted and "
        "byte-identical to what the meter sent (by repair = status `repaired`); rejected = no "
        "accepted frame; miscorrected = accepted frames that differ from what the meter sent "
        "(must be 0); clean lost = clean telegrams not accepted as valid (must be 0). Latency: "
        "time in `feed()` for the telegram's chunks (and for the later call that delivered its "
        "result), per corrupted telegram; clean p50 is the same for the clean telegrams in between "
        "whose calls delivered no earlier telegram's result. Rejected frames: the pipeline's "
        "rejection reasons.\n"
    )
    print("\n".join(tables))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
