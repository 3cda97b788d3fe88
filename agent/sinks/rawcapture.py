"""Raw capture: the bytes of one source exactly as read, one file per UTC day, old days gzipped.

Files are `DIRECTORY/raw/<name>-YYYY-MM-DD.p1` (the date in UTC, so a day has 24 hours and no
daylight-saving switch splits or doubles one), `<name>` a filesystem-safe slug of the source's
name. `p1-agent replay` reads the plain and the gzipped files alike, so any day can be processed
again later, with a better repair engine or into another format.

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

import structlog

log = structlog.get_logger("p1-agent.rawcapture")

CHUNK = 1 << 20
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


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
    except OSError as exc:
        log.error("cannot compress a raw capture; it stays plain", path=str(path), error=str(exc))
    else:
        log.info("raw capture compressed", path=str(target))


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

    def __init__(self, directory: Path, name: str, *, flush_every: float = 1.0) -> None:
        self.directory = directory / "raw"
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.slug = slug(name)
        self.day: str | None = None
        self._file: BinaryIO | None = None
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
                file.write(data)
                self._dirty = True
            except OSError as exc:
                self._failed("cannot write the raw capture", exc)

    def close(self) -> None:
        self._closed.set()
        self._flusher.join()
        with self._lock:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError as exc:
                    self._failed("cannot write the raw capture", exc)
                self._file = None
        for thread in list(self._compressing.values()):
            thread.join()

    def _roll(self, day: str) -> BinaryIO:
        """Open the file of `day`; compress the day before and, at the first write, leftovers."""
        if self._file is not None:
            self._file.close()
            self._file = None
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
        return self._file

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
                    self._dirty = False
                    self._failing = False
                except OSError as exc:
                    self._failed("cannot write the raw capture", exc)

    def _failed(self, message: str, exc: OSError) -> None:
        # A full disk must not stop the meter being read; say so once until writing works again.
        if not self._failing:
            self._failing = True
            log.error(message, directory=str(self.directory), error=str(exc))
