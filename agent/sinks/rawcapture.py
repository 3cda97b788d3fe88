"""Raw capture: the bytes of one source exactly as read, one file per UTC day, old days gzipped.

Files are `DIRECTORY/raw/<name>-YYYY-MM-DD.p1` (the date in UTC, so a day has 24 hours and no
daylight-saving switch splits or doubles one), `<name>` a filesystem-safe slug of the source's
name. `p1-agent replay` reads the plain and the gzipped files alike, so any day can be processed
again later, with a better repair engine or into another format.

Beside each day's file, `<name>-YYYY-MM-DD.p1.times` says when the bytes arrived: lines
`OFFSET UNIX_TIME`, the bytes from OFFSET on were read at that time (one line a second at
most). The capture itself stays a plain P1 byte stream any tool can read; `replay` reads the
times back and stamps the telegrams of meters without a clock with them. Gzipped with its day.

Writes are buffered and flushed by a background thread every `flush_every` seconds (not per
write), so a crash of the agent loses at most about a second of raw bytes. When a write belongs
to a new day, the previous day's file is gzipped in the background (the reader never waits for
it); the plain file is removed only once its `.gz` is written and on disk. Plain files of earlier
days left by a previous run are compressed at the first write.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import BinaryIO

from agent.lazylog import LazyLogger
from agent.sinks.retention import expire

log = LazyLogger("p1-agent.rawcapture")

CHUNK = 1 << 20
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
TIMES = ".times"  # suffix of the receive-time file beside a capture
MARK_EVERY = 1.0  # seconds between receive-time lines: points have second precision


def times_path(capture: Path) -> Path:
    """The receive-time file of a capture (`x.p1` or `x.p1.gz` → `x.p1.times`)."""
    name = capture.name.removesuffix(".gz")
    return capture.with_name(name + TIMES)


def read_times(capture: Path) -> list[tuple[int, float]]:
    """(offset, Unix time) marks of a capture, from its `.times` file plain or gzipped; empty
    when there is none. Lines that do not parse (a crash mid-line) are skipped."""
    plain = times_path(capture)
    marks: list[tuple[int, float]] = []
    for path in (plain.with_name(plain.name + ".gz"), plain):
        try:
            with open(path, "rb") as raw:
                data = gzip.decompress(raw.read()) if path.suffix == ".gz" else raw.read()
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        for line in data.split(b"\n"):
            offset, _, when = line.partition(b" ")
            try:
                marks.append((int(offset), float(when)))
            except ValueError:
                continue
    marks.sort()
    return marks


def slug(name: str) -> str:
    """A file name part from a source name: `/dev/ttyUSB0` → `dev_ttyUSB0`."""
    return _UNSAFE.sub("_", name).strip("._-") or "source"


def compress(path: Path) -> Path:
    """Gzip `path` to `path.gz`, make it durable, then remove `path`.

    If `path.gz` already exists (the clock went back to a day already compressed, as on a board
    without a real-time clock that boots with the time it shut down at), the new bytes are
    added to it as another gzip member: readers see one stream, and nothing is lost.
    """
    target = path.with_name(path.name + ".gz")
    partial = path.with_name(path.name + ".gz.partial")
    with os.fdopen(_create(partial, os.O_TRUNC), "wb") as out:
        if target.exists():
            with open(target, "rb") as earlier:
                shutil.copyfileobj(earlier, out, CHUNK)
        with open(path, "rb") as source, gzip.GzipFile(fileobj=out, mode="wb") as packed:
            shutil.copyfileobj(source, packed, CHUNK)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, target)
    _sync_directory(path.parent)
    path.unlink()
    return target


def _compress(path: Path) -> None:
    try:
        target = compress(path)
        times = times_path(path)
        if times.exists():
            compress(times)
    except OSError as exc:
        log.error("cannot compress a raw capture; it stays plain", path=str(path), error=str(exc))
    else:
        log.info("raw capture compressed", path=str(target))


def packed_size(path: Path) -> int:
    """The bytes of a day gzipped already that a plain capture `path` continues (the clock went
    back to that day): its receive-time offsets count from the end of those."""
    packed = path.with_name(path.name + ".gz")
    if path.suffix != ".p1" or not packed.exists():
        return 0
    size = 0
    with gzip.open(packed, "rb") as stream:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
    return size


def _create(path: Path, flag: int) -> int:
    """A file descriptor for writing `path`, readable by its owner only (raw bytes carry the
    meter's identifiers)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | flag, 0o600)


def _sync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RawCapture:
    """`write(data, now)` the bytes of one source as read (`now`: Unix time, for the UTC date);
    `close()` at the end. Today's file stays plain; earlier days are gzipped."""

    def __init__(
        self, directory: Path, name: str, *, flush_every: float = 1.0, max_age: float = 0.0
    ) -> None:
        self.directory = directory / "raw"
        self.max_age = max_age  # seconds a day is kept; 0: forever
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.slug = slug(name)
        self.day: str | None = None
        self._file: BinaryIO | None = None
        self._times: BinaryIO | None = None
        self._offset = 0  # of the next byte in the day's stream (as `replay` will read it)
        self._marked = float("-inf")  # when the last receive-time line was written
        self._dirty = False
        self._failing = False
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._compressing: dict[Path, threading.Thread] = {}
        self._flusher = threading.Thread(
            target=self._flush_loop, args=(flush_every,), name=f"raw {self.slug}", daemon=True
        )
        self._flusher.start()

    def path(self, day: str) -> Path:
        return self.directory / f"{self.slug}-{day}.p1"

    def write(self, data: bytes, now: float) -> None:
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        with self._lock:
            try:
                file = self._file if day == self.day else None
                if file is None:
                    file = self._roll(day)
                    expire(self.directory, f"{self.slug}-*.p1*", self.max_age, now)
                if now - self._marked >= MARK_EVERY and self._times is not None:
                    self._times.write(b"%d %.3f\n" % (self._offset, now))
                    self._marked = now
                file.write(data)
                self._offset += len(data)
                self._dirty = True
            except OSError as exc:
                self._failed("cannot write the raw capture", exc)

    def close(self) -> None:
        self._closed.set()
        self._flusher.join()
        with self._lock:
            try:
                self._close_day()
            except OSError as exc:
                self._failed("cannot write the raw capture", exc)
        for thread in list(self._compressing.values()):
            thread.join()

    def _roll(self, day: str) -> BinaryIO:
        """Open the file of `day`; compress the day before and, at the first write, leftovers."""
        self._close_day()
        if self.day is None:
            for path in self.directory.glob(f"{self.slug}-*.p1"):
                rest = path.name[len(self.slug) + 1 : -len(".p1")]
                if _DAY.fullmatch(rest) and rest != day:
                    self._compress_later(path)
        elif self.day != day:
            self._compress_later(self.path(self.day))
        self.day = day
        path = self.path(day)
        running = self._compressing.get(path)
        if running is not None:
            running.join()  # the clock went back to a day being compressed: let it finish first
        self._file = os.fdopen(_create(path, os.O_APPEND), "ab")
        self._times = os.fdopen(_create(times_path(path), os.O_APPEND), "ab")
        self._offset = packed_size(path) + path.stat().st_size
        self._marked = float("-inf")
        return self._file

    def _close_day(self) -> None:
        for file in (self._file, self._times):
            if file is not None:
                file.close()
        self._file = self._times = None

    def _compress_later(self, path: Path) -> None:
        thread = threading.Thread(target=_compress, args=(path,), name=f"gzip {path.name}")
        self._compressing = {p: t for p, t in self._compressing.items() if t.is_alive()}
        self._compressing[path] = thread
        thread.start()

    def _flush_loop(self, every: float) -> None:
        while not self._closed.wait(every):
            with self._lock:
                if not self._dirty or self._file is None:
                    continue
                try:
                    self._file.flush()
                    if self._times is not None:
                        self._times.flush()
                    self._dirty = False
                    self._failing = False
                except OSError as exc:
                    self._failed("cannot write the raw capture", exc)

    def _failed(self, message: str, exc: OSError) -> None:
        # A full disk must not stop the meter being read; say so once until writing works again.
        if not self._failing:
            self._failing = True
            log.error(message, directory=str(self.directory), error=str(exc))
