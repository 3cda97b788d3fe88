"""`p1-agent replay`: raw captures and terminal logs → CSV, JSONL or line protocol.

The I/O shell around the pipeline: opens files (gzip detected by content, `-` for stdin), feeds
them through one MeterPipeline, writes the chosen format and keeps the summary.

No point is written without a time. A telegram is stamped with its meter's clock; a meter
without a usable one (DSMR 2.2/3, EasyMeter, a clock never set) gets, in this order, the time
the agent received it (the raw capture's `.times` file), `--start` plus `--interval` per
telegram, or a terminal log's own start (PuTTY's header, in the meter's zone) plus
`--interval`. With none of these, replay refuses with one line instead of writing points that
InfluxDB would stamp with the minute of the import.
"""

from __future__ import annotations

import bisect
import csv
import gc
import gzip
import io
import os
import re
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, TextIO

from agent.core.diagnose import OK, LinkDiagnosis
from agent.core.pipeline import MeterPipeline, Result
from agent.core.points import telegram_points
from agent.core.telegram import MeterZone
from agent.formats.output import copy_bytes, write_bytes
from agent.sinks.rawcapture import packed_size, read_times

if TYPE_CHECKING:
    from concurrent.futures import Future

    from agent.formats.csv import CsvWriter

CHUNK: Final = 1 << 20
# A replay makes some hundred short-lived containers per telegram, nearly all freed at once by
# their reference counts: the cycle collector, run every 700 allocations by default, found
# nothing and took 4 % of the work. A batch job lets it run 70 times less often.
COLLECT_EVERY = 50_000
FORMATS = ("csv", "jsonl", "line-protocol")
# The seed's scripts reported the highest phase voltage and current with their times.
PEAK_FIELDS: Final = tuple(
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
    reasons: dict[str, int] = field(default_factory=dict)  # rejected telegrams by reason
    bytes_read: int = 0
    bytes_skipped: int = 0
    frames_oversized: int = 0
    telegrams: int = 0
    valid: int = 0
    repaired: int = 0
    rejected: int = 0
    peaks: dict[str, Peak] = field(default_factory=dict)
    diagnosis: str | None = None  # what the link diagnosis says at the end, when not ok
    damaged: list[str] = field(default_factory=list)  # inputs that could not be read to the end

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

    def merge(self, other: Summary) -> None:
        """Add the summary of the next input (a file replayed on its own, `--jobs`)."""
        self.files += other.files
        for reason, count in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + count
        self.bytes_read += other.bytes_read
        self.bytes_skipped += other.bytes_skipped
        self.frames_oversized += other.frames_oversized
        self.telegrams += other.telegrams
        self.valid += other.valid
        self.repaired += other.repaired
        self.rejected += other.rejected
        for name, peak in other.peaks.items():
            if peak.value is not None:
                self.peaks.setdefault(name, Peak()).offer(peak.value, peak.time)
        if other.files:
            self.diagnosis = other.diagnosis  # what the link looks like at the end
        self.damaged += other.damaged

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
        return out + [f"error: {damage}" for damage in self.damaged]


# PuTTY starts every session's log with this line, in the local time of the logging computer.
_PUTTY_MARK = b"=~=~=~=~=~=~=~=~=~=~=~= PuTTY log "
_PUTTY = re.compile(re.escape(_PUTTY_MARK) + rb"(\d{4}\.\d\d\.\d\d \d\d:\d\d:\d\d) =~=")


@dataclass(slots=True)
class TimeOptions:
    """Where times come from for meters without a usable clock (see the module's docstring)."""

    start: datetime | None = None
    interval: float | None = None  # seconds between telegrams


@dataclass(slots=True)
class _Origin:
    """From this stream offset on, telegrams are counted from `time` every `interval`."""

    offset: int
    time: datetime
    source: str  # `start` or `log`
    count: int = 0


class Timeline:
    """Times for telegrams without a meter clock, in one run over all input files.

    Offsets are the pipeline's stream offsets (a frame's first byte); each file says where it
    starts (`begin_file`), its receive-time marks and the log headers seen in it."""

    def __init__(self, options: TimeOptions, zone: MeterZone) -> None:
        self.options = options
        self.zone = zone
        self._marks: list[tuple[int, float]] = []
        self._file = "-"
        self._origins: list[_Origin] = []
        self._tail = b""  # the end of the previous chunk, for a header cut in two
        if options.start is not None:
            self._origins.append(_Origin(0, options.start.astimezone(UTC), "start"))

    def begin_file(self, path: str, base: int, skipped: int) -> None:
        """A new input file starts at stream offset `base`; its receive times, if any, from
        file offset `skipped` on (the gzipped part of a day already counted)."""
        self._file = path
        self._tail = b""
        self._base = base - skipped
        marks = read_times(Path(path)) if path != "-" else []
        self._marks = [(self._base + offset, when) for offset, when in marks]
        self._mark_offsets = [offset for offset, _ in self._marks]

    def scan(self, chunk: bytes, offset: int) -> None:
        """Notice PuTTY log headers in a chunk starting at stream offset `offset`."""
        if self.options.start is not None:
            return  # an explicit start beats the log's own
        tail = self._tail
        data = tail + chunk
        self._tail = data[-100:]
        if _PUTTY_MARK not in data:  # a plain search, many times faster than the expression
            return
        for match in _PUTTY.finditer(data):
            local = datetime.strptime(match.group(1).decode(), "%Y.%m.%d %H:%M:%S")
            when = local.replace(tzinfo=self.zone.zone).astimezone(UTC)
            at = offset - len(tail) + match.start()
            if not self._origins or at > self._origins[-1].offset:
                self._origins.append(_Origin(at, when, "log"))

    def time(self, result: Result, required: bool = True) -> tuple[datetime, str] | None:
        """The time and its source for a telegram without a usable meter clock. When none is
        known: ValueError if the output needs one (points, CSV rows), else None (JSONL)."""
        offset = result.frame.offset
        at = bisect.bisect_right(self._mark_offsets, offset + len(result.frame.text) - 1)
        local = self.zone.zone  # CSV shows the meter's local time, as for meter clocks
        if at:
            # Second precision, as every point is written.
            when = datetime.fromtimestamp(int(self._marks[at - 1][1]), local)
            return when, "received"
        origin = next((o for o in reversed(self._origins) if o.offset <= offset), None)
        interval = self.options.interval
        if origin is not None and interval is not None:
            origin.count += 1
            when = origin.time + timedelta(seconds=interval * (origin.count - 1))
            return when.astimezone(local), origin.source
        if not required:
            return None
        where = f"{self._file}: the telegram at byte {max(offset - self._base, 0)}"
        if origin is not None:
            raise ValueError(
                f"{where} has no usable meter clock; give --interval SECONDS "
                "(the time between telegrams) to count from the log's start"
            )
        raise ValueError(
            f"{where} has no usable meter clock and the file no receive times "
            "(a raw capture's .times file): give --start TIME and --interval SECONDS"
        )


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
) -> Iterator[bytes | str | None]:
    """For each input its path, then its chunks; None marks the end of one file."""
    for path in paths:
        stream, raw = _open(path)
        summary.files += 1
        yield path
        position = 0
        done = 0
        # read1: a damaged gzip keeps what it decompressed before the damage.
        read = stream.read1 if isinstance(stream, gzip.GzipFile) else stream.read
        try:
            while chunk := read(CHUNK):
                summary.bytes_read += len(chunk)
                done += len(chunk)
                yield chunk
                if raw is not sys.stdin.buffer:
                    now = raw.tell()
                    progress(now - position)
                    position = now
        except (EOFError, OSError, zlib.error) as exc:
            reason = (
                "it ends early" if isinstance(exc, EOFError) else str(exc) or type(exc).__name__
            )
            summary.damaged.append(
                f"{path}: damaged after {done} bytes ({reason}); the telegrams before were written"
            )
        finally:
            if raw is not sys.stdin.buffer:
                stream.close()
                raw.close()
        yield None


class _Output:
    """The chosen format; what a chunk's results make is written at once (`flush`)."""

    def __init__(self, fmt: str, out: TextIO) -> None:
        self.fmt = fmt
        self.out = out
        self.csv: CsvWriter | None = None
        # Imported here: start-up counts in every replay, which writes one format.
        if fmt == "csv":
            from agent.formats.csv import CsvWriter

            self.csv = CsvWriter(out)
        elif fmt == "jsonl":
            from agent.formats.jsonl import encode

            self._record = encode
        else:
            from agent.formats.lineprotocol import encode_all

            self._lines = encode_all
        self._pending: list[bytes] = []  # JSONL records in UTF-8
        self._text: list[str] = []  # line protocol lines

    def write(self, result: Result, time: tuple[datetime, str] | None) -> None:
        """`time`: the stand-in for a telegram without a meter clock, and where it came from."""
        if self.csv is not None:
            self.csv.write(result, time)
        elif self.fmt == "jsonl":
            self._pending.append(self._record(result, time))
        elif result.telegram is not None:
            points = telegram_points(
                result.telegram,
                meter=result.telegram.meter,
                fields=result.fields,
                repaired=result.status == "repaired",
                time=time[0] if time is not None else None,
            )
            self._text += self._lines(points)

    def flush(self) -> None:
        if self._pending:
            write_bytes(self.out, b"".join(self._pending))
            self._pending = []
        if self._text:
            self._text.append("")  # the last line's end
            self.out.write("\n".join(self._text))
            self._text = []

    def close(self) -> None:
        self.flush()
        if self.csv is not None:
            self.csv.close()
        self.out.flush()


def replay(
    paths: list[str],
    fmt: str,
    out: TextIO,
    pipeline: MeterPipeline,
    progress: Callable[[int], None] = lambda n: None,
    times: TimeOptions | None = None,
) -> Summary:
    summary = Summary()
    output = _Output(fmt, out)
    link = LinkDiagnosis()
    timeline = Timeline(times or TimeOptions(), pipeline.decoder.zone)
    for chunk in _chunks(paths, summary, progress):
        if isinstance(chunk, str):
            skipped = packed_size(Path(chunk)) if chunk != "-" else 0
            timeline.begin_file(chunk, pipeline.framer.bytes_in, skipped)
            continue
        if chunk is not None:
            timeline.scan(chunk, pipeline.framer.bytes_in)
        results = pipeline.feed(chunk) if chunk is not None else pipeline.close()
        try:
            for result in results:
                summary.add(result)
                telegram = result.telegram
                stamp = None
                if telegram is not None and telegram.meter_time is None:
                    stamp = timeline.time(result, required=fmt != "jsonl")
                output.write(result, stamp)
        finally:
            output.flush()  # also what came before a telegram without a time (ValueError)
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


# --jobs: each worker process reports the bytes it read through this queue.
_progress_queue: Any = None


def collect_seldom() -> None:
    """The cycle collector's first threshold for a batch job (`COLLECT_EVERY`)."""
    gc.set_threshold(COLLECT_EVERY)


def _worker_start(queue: Any) -> None:
    global _progress_queue
    _progress_queue = queue
    collect_seldom()  # inherited when forked, not when spawned


def _worker_progress(done: int) -> None:
    _progress_queue.put(done)


@dataclass(slots=True)
class _Part:
    """One input replayed by a worker: its output in a temporary file and its summary."""

    path: str
    summary: Summary


def _replay_part(
    path: str,
    fmt: str,
    make_pipeline: Callable[[], MeterPipeline],
    times: TimeOptions,
    folder: str,
) -> _Part:
    descriptor, name = tempfile.mkstemp(dir=folder)
    with open(descriptor, "w", encoding="utf-8", newline="") as out:
        summary = replay([path], fmt, out, make_pipeline(), _worker_progress, times)
    return _Part(name, summary)


def replay_parallel(
    paths: list[str],
    fmt: str,
    out: TextIO,
    make_pipeline: Callable[[], MeterPipeline],
    jobs: int,
    progress: Callable[[int], None] = lambda n: None,
    times: TimeOptions | None = None,
) -> Summary:
    """`replay` with the inputs shared out among `jobs` worker processes, each input on its own
    pipeline (as if replayed alone: values derived across telegrams start afresh in each file),
    their outputs written in input order. `make_pipeline` must be picklable."""
    # Imported here: start-up counts in every replay, and most replay one file.
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    times = times or TimeOptions()
    if times.start is not None:
        raise ValueError("--start counts telegrams across all inputs: it takes --jobs 1")
    if "-" in paths:
        raise ValueError("standard input (-) is one stream: it takes --jobs 1")
    summary = Summary()
    context = multiprocessing.get_context()
    queue = context.SimpleQueue()
    with (
        tempfile.TemporaryDirectory(prefix="p1-replay-") as folder,
        ProcessPoolExecutor(
            jobs, mp_context=context, initializer=_worker_start, initargs=(queue,)
        ) as pool,
    ):
        futures = [
            pool.submit(_replay_part, path, fmt, make_pipeline, times, folder) for path in paths
        ]
        parts = _Parts(fmt, out)
        try:
            pending: set[Future[_Part]] = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                while not queue.empty():
                    progress(queue.get())
                while parts.done < len(futures) and futures[parts.done].done():
                    part = futures[parts.done].result()
                    summary.merge(part.summary)
                    parts.add(part)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        parts.close()
    return summary


class _Parts:
    """The workers' outputs, joined in input order. Line protocol and JSONL are copied as they
    come; CSV waits for all, since its header names the columns of every part."""

    def __init__(self, fmt: str, out: TextIO) -> None:
        self.fmt = fmt
        self.out = out
        self.done = 0
        self._csv: list[str] = []

    def add(self, part: _Part) -> None:
        self.done += 1
        if self.fmt == "csv":
            self._csv.append(part.path)
            return
        with open(part.path, "rb") as data:
            copy_bytes(data, self.out)
        os.unlink(part.path)

    def close(self) -> None:
        if self.fmt == "csv":
            _join_csv(self._csv, self.out)
        self.out.flush()


def _join_csv(paths: list[str], out: TextIO) -> None:
    """One CSV from parts with their own headers: the columns in order of first appearance
    (what one CsvWriter over all inputs makes), each part's rows moved to those columns."""
    headers: list[list[str]] = []
    for path in paths:
        with open(path, encoding="utf-8", newline="") as text:
            headers.append(next(csv.reader(text), []))
    columns: dict[str, int] = {}
    for header in headers:
        for name in header:
            columns.setdefault(name, len(columns))
    width = len(columns)
    writer = csv.writer(out)
    writer.writerow(columns)
    for path, header in zip(paths, headers, strict=True):
        if header == list(columns):  # the common case: the same columns in every part
            with open(path, "rb") as data:
                data.readline()  # the header: no line breaks in it (field names, OBIS codes)
                copy_bytes(data, out)
            os.unlink(path)
            continue
        where = [columns[name] for name in header]
        with open(path, encoding="utf-8", newline="") as text:
            reader = csv.reader(text)
            next(reader, None)
            for row in reader:
                cells = [""] * width
                for index, cell in zip(where, row, strict=False):
                    cells[index] = cell
                writer.writerow(cells)
        os.unlink(path)


def capture_files(paths: list[str]) -> list[str]:
    """The inputs, with a directory standing for the raw captures in it (`*.p1`, `*.p1.gz`), in
    order of their names: a day's gzipped part before the plain file that continues it."""
    files: list[str] = []
    for path in paths:
        if path == "-" or not os.path.isdir(path):
            files.append(path)
            continue
        found = [p for p in Path(path).iterdir() if p.name.endswith((".p1", ".p1.gz"))]
        found.sort(key=lambda p: (p.name.removesuffix(".gz"), not p.name.endswith(".gz")))
        if not found:
            raise ValueError(f"{path}: a directory without raw captures (*.p1, *.p1.gz)")
        files += map(str, found)
    return files


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
