"""`p1-agent replay`: raw captures and terminal logs → CSV, JSONL or line protocol.

The I/O shell around the pipeline: opens files (gzip detected by content, `-` for stdin), feeds
them through one MeterPipeline, writes the chosen format and keeps the summary.
"""

from __future__ import annotations

import gzip
import io
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, TextIO

from agent.diagnose import OK, LinkDiagnosis
from agent.pipeline import MeterPipeline, Result
from agent.points import telegram_points
from agent.sinks import jsonl, lineprotocol
from agent.sinks.csv import CsvWriter

CHUNK = 1 << 20
FORMATS = ("csv", "jsonl", "line-protocol")
# The seed's scripts reported the highest phase voltage and current with their times.
PEAK_FIELDS = tuple(
    f"{q}_{p}_{u}" for q, u in (("voltage", "v"), ("current", "a")) for p in ("l1", "l2", "l3")
)


@dataclass(slots=True)
class Peak:
    value: float | None = None
    time: datetime | None = None

    def offer(self, value: float, time: datetime | None) -> None:
        if self.value is None or value > self.value:
            self.value = value
            self.time = time


@dataclass(slots=True)
class Summary:
    files: int = 0
    bytes_read: int = 0
    bytes_skipped: int = 0
    frames_oversized: int = 0
    telegrams: int = 0
    valid: int = 0
    repaired: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    peaks: dict[str, Peak] = field(default_factory=dict)
    diagnosis: str | None = None  # what the link diagnosis says at the end, when not ok

    def add(self, result: Result) -> None:
        self.telegrams += 1
        if result.status == "valid":
            self.valid += 1
        elif result.status == "repaired":
            self.repaired += 1
        else:
            self.rejected += 1
            reason = result.reason or "unknown"
            self.reasons[reason] = self.reasons.get(reason, 0) + 1
            return
        stamp = result.telegram.meter_time if result.telegram else None
        fields = result.fields
        for name in PEAK_FIELDS:
            value = fields.get(name)
            if isinstance(value, float):
                peak = self.peaks.get(name)
                if peak is None:
                    peak = self.peaks[name] = Peak()
                peak.offer(value, stamp)

    def lines(self) -> list[str]:
        out = [
            f"files {self.files}, bytes {self.bytes_read}, skipped {self.bytes_skipped}"
            + (
                f", oversized frames dropped {self.frames_oversized}"
                if self.frames_oversized
                else ""
            ),
            f"telegrams {self.telegrams}: valid {self.valid}, repaired {self.repaired}, "
            f"rejected {self.rejected}"
            + (
                " (" + ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items())) + ")"
                if self.reasons
                else ""
            ),
        ]
        for name in sorted(self.peaks):
            peak = self.peaks[name]
            when = peak.time.isoformat() if peak.time else "no meter time"
            out.append(f"highest {name}: {peak.value} at {when}")
        if self.diagnosis is not None:
            out.append(f"link: {self.diagnosis}")
        return out


def _open(path: str) -> tuple[BinaryIO, BinaryIO]:
    """(stream to read, raw file whose position tracks progress)."""
    raw: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    if path != "-" and raw.read(2) == b"\x1f\x8b":
        raw.seek(0)
        return gzip.GzipFile(fileobj=raw), raw  # type: ignore[return-value]
    if path != "-":
        raw.seek(0)
    return raw, raw


def _chunks(
    paths: list[str], summary: Summary, progress: Callable[[int], None]
) -> Iterator[bytes | None]:
    """Chunks of all inputs; None marks the end of one file."""
    for path in paths:
        stream, raw = _open(path)
        summary.files += 1
        position = 0
        try:
            while chunk := stream.read(CHUNK):
                summary.bytes_read += len(chunk)
                yield chunk
                if raw is not sys.stdin.buffer:
                    now = raw.tell()
                    progress(now - position)
                    position = now
        finally:
            if raw is not sys.stdin.buffer:
                stream.close()
                raw.close()
        yield None


class _Output:
    def __init__(self, fmt: str, out: TextIO) -> None:
        self.fmt = fmt
        self.out = out
        self.csv = CsvWriter(out) if fmt == "csv" else None

    def write(self, result: Result) -> None:
        if self.csv is not None:
            self.csv.write(result)
        elif self.fmt == "jsonl":
            self.out.write(jsonl.dumps(result) + "\n")
        elif result.telegram is not None:
            points = telegram_points(
                result.telegram,
                meter=result.telegram.meter,
                fields=result.fields,
                repaired=result.status == "repaired",
            )
            for line in lineprotocol.encode_all(points):
                self.out.write(line + "\n")

    def close(self) -> None:
        if self.csv is not None:
            self.csv.close()
        self.out.flush()


def replay(
    paths: list[str],
    fmt: str,
    out: TextIO,
    pipeline: MeterPipeline,
    progress: Callable[[int], None] = lambda n: None,
) -> Summary:
    summary = Summary()
    output = _Output(fmt, out)
    link = LinkDiagnosis()
    for chunk in _chunks(paths, summary, progress):
        results = pipeline.feed(chunk) if chunk is not None else pipeline.close()
        for result in results:
            summary.add(result)
            output.write(result)
        link.update(
            results,
            bytes_in=pipeline.framer.bytes_in,
            masking=pipeline.parity.masking,
            data=chunk or b"",
        )
    output.close()
    if link.cause not in (None, OK):
        summary.diagnosis = link.describe()
    summary.bytes_skipped = pipeline.framer.bytes_skipped
    summary.frames_oversized = pipeline.framer.frames_oversized
    return summary


def total_size(paths: list[str]) -> int | None:
    try:
        return sum(Path(p).stat().st_size for p in paths if p != "-")
    except OSError:
        return None


def open_output(path: str) -> TextIO:
    if path == "-":
        return io.TextIOWrapper(
            sys.stdout.buffer, encoding="utf-8", newline="", write_through=False
        )
    return open(path, "w", encoding="utf-8", newline="")
