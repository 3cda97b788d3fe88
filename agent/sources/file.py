"""Capture files as sources.

- `file:PATH`: read once, as fast as the pipeline takes it;
- `file:PATH,realtime`: replayed paced like the meter, one telegram at a time, by the meter's own
  clock (`0-0:1.0.0`) of consecutive telegrams;
- `file:PATH,follow`: like `tail -f`: read to the end, then keep reading what is appended, across
  rotation and truncation; it never ends.

A FIFO (named pipe) is read as its writer writes, to the writer's end (`follow`: writer after
writer). It is opened without blocking, so an agent whose writer has not come yet still starts,
says that it waits, and notices a stop.

All read in chunks, so a capture of any size takes bounded memory.
"""

from __future__ import annotations

import os
import re
import select
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import structlog

from agent.sources.reconnect import describe

log = structlog.get_logger("p1-agent.source")

CHUNK = 65536
POLL = 0.5  # longest wait inside one `read()`, so the agent notices a stop
# Pacing between telegrams when replaying in real time: the meter's own gap, within reason.
MIN_GAP, MAX_GAP, DEFAULT_GAP = 0.1, 60.0, 1.0

# A frame ends with `!`, up to 4 checksum digits and a line end (LF alone in terminal logs).
_FRAME_END = re.compile(rb"![0-9A-Fa-f]{0,4}\r?\n")
_METER_TIME = re.compile(rb"0-0:1\.0\.0\((\d{12})([SW]?)\)")
_OPTIONS = ("realtime", "follow")


class _Capture:
    """What every file source reports; a file has no link to lose and no cable to hint about."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.connected = True
        self.reconnects = 0
        self.bytes_total = 0
        self.last_error: str | None = None
        self.hint: str | None = None

    def telegram_seen(self) -> None:
        pass


class FileSource(_Capture):
    """A capture file, read once."""

    def __init__(self, path: Path, name: str | None = None) -> None:
        super().__init__(name or f"file:{path}")
        self._file = path.open("rb")

    def read(self) -> bytes | None:
        data = self._file.read(CHUNK)
        self.bytes_total += len(data)
        return data or None

    def close(self) -> None:
        self._file.close()
        self.connected = False


class TelegramSplitter:
    """Cuts a byte stream after every frame end; without frame ends, into `limit`-byte pieces,
    so it never holds more than `limit` bytes. Sans-I/O."""

    def __init__(self, limit: int = CHUNK) -> None:
        self.limit = limit
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer + data
        pieces = []
        start = 0
        for end in _FRAME_END.finditer(buffer):
            pieces.append(buffer[start : end.end()])
            start = end.end()
        while len(buffer) - start > self.limit:
            pieces.append(buffer[start : start + self.limit])
            start += self.limit
        self._buffer = buffer[start:]
        return pieces

    def flush(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest


def meter_time(piece: bytes) -> datetime | None:
    """The meter's clock in a telegram, on one scale for summer and winter time (naive)."""
    found = _METER_TIME.search(piece)
    if found is None:
        return None
    try:
        local = datetime.strptime(found[1].decode(), "%y%m%d%H%M%S")
    except ValueError:
        return None
    # Summer time (S) runs an hour ahead of winter time (W); the gap across the switch is real.
    return local - timedelta(hours=1) if found[2] == b"S" else local


def gap(previous: datetime | None, current: datetime | None) -> float:
    """Seconds to wait between two telegrams with these meter times."""
    if previous is None or current is None:
        return DEFAULT_GAP
    return min(MAX_GAP, max(MIN_GAP, (current - previous).total_seconds()))


class RealtimeFileSource(_Capture):
    """A capture replayed one telegram at a time, paced by the meter's own clock."""

    def __init__(
        self,
        path: Path,
        stop: threading.Event,
        *,
        name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], object] | None = None,
    ) -> None:
        super().__init__(name or f"file:{path},realtime")
        self._file = path.open("rb")
        self._clock = clock
        self._wait = wait or stop.wait
        self._splitter = TelegramSplitter()
        self._pieces: deque[bytes] = deque()
        self._piece: bytes | None = None  # the next to hand out, once it is due
        self._due = 0.0
        self._stamp: datetime | None = None
        self._started = False

    def read(self) -> bytes | None:
        if self._piece is None:
            self._piece = self._next_piece()
            if self._piece is None:
                return None
        if self._due > self._clock():
            self._wait(min(self._due - self._clock(), POLL))
            if self._due > self._clock():
                return b""
        piece, self._piece = self._piece, None
        self.bytes_total += len(piece)
        return piece

    def _next_piece(self) -> bytes | None:
        while not self._pieces:
            chunk = self._file.read(CHUNK)
            if chunk:
                self._pieces.extend(self._splitter.feed(chunk))
                continue
            rest = self._splitter.flush()
            if not rest:
                return None
            self._pieces.append(rest)
        piece = self._pieces.popleft()
        stamp = meter_time(piece)
        if self._started:
            self._due += gap(self._stamp, stamp)  # from the schedule, so waits do not drift
        else:
            self._due = self._clock()
            self._started = True
        self._stamp = stamp
        return piece

    def close(self) -> None:
        self._file.close()
        self.connected = False


class FollowFileSource(_Capture):
    """A growing file, read like `tail -f`: to the end, then what is appended. A rotated file
    (a new one under the same name) or a truncated one is reopened and read from its start; a
    missing one is waited for."""

    def __init__(
        self,
        path: Path,
        stop: threading.Event,
        *,
        name: str | None = None,
        wait: Callable[[float], object] | None = None,
    ) -> None:
        super().__init__(name or f"file:{path},follow")
        self.path = path
        self.connected = False
        self._wait = wait or stop.wait
        self._file: BinaryIO | None = None
        self._identity = (0, 0)
        self._opened_once = False
        self._said_missing = False

    def read(self) -> bytes:
        file = self._file or self._open()
        if file is None:
            self._wait(POLL)
            return b""
        try:
            data = file.read(CHUNK)
        except OSError as exc:  # a file on a network share can go stale: open it again
            self.last_error = f"cannot read {self.path}: {describe(exc)}"
            log.warning(f"{self.last_error}; opening it again", source=self.name)
            self.close()
            return b""
        if data:
            self.bytes_total += len(data)
            return data
        if self._replaced(file):
            log.info(f"{self.path} was rotated or truncated; reading it anew", source=self.name)
            self.close()
        else:
            self._wait(POLL)
        return b""

    def _open(self) -> BinaryIO | None:
        try:
            file = self.path.open("rb")
        except OSError as exc:
            self.last_error = f"cannot open {self.path}: {describe(exc)}"
            if not self._said_missing:
                self._said_missing = True
                log.warning(f"{self.last_error}; waiting for it", source=self.name)
            return None
        stat = os.fstat(file.fileno())
        self._identity = (stat.st_dev, stat.st_ino)
        self._file = file
        self.connected = True
        if self._opened_once:
            self.reconnects += 1
        self._opened_once = True
        self._said_missing = False
        return file

    def _replaced(self, file: BinaryIO) -> bool:
        try:
            stat = os.stat(self.path)
        except OSError:
            return False  # rotated away, no new file yet: the writer may still append to ours
        return (stat.st_dev, stat.st_ino) != self._identity or stat.st_size < file.tell()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.connected = False


class FifoSource(_Capture):
    """A FIFO: what its writer writes, until it closes (with `follow`, writer after writer)."""

    def __init__(self, path: Path, *, name: str | None = None, follow: bool = False) -> None:
        super().__init__(name or f"file:{path}" + (",follow" if follow else ""))
        self.path = path
        self.follow = follow
        self.connected = False  # a writer is there
        self._writers = 0
        self._said_waiting = False
        self._fd = -1
        self._open()

    def _writer_there(self) -> None:
        if not self.connected:
            self.connected = True
            self._writers += 1
            self.reconnects = self._writers - 1

    def _open(self) -> None:
        # O_NONBLOCK: a plain open would wait, uninterruptibly, until a writer opens the FIFO.
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)

    def read(self) -> bytes | None:
        # Linux wakes a poll on a FIFO when a writer writes or goes, not while none ever came.
        woken = bool(self._poll.poll(POLL * 1000))
        try:
            data = os.read(self._fd, CHUNK)
        except BlockingIOError:  # a writer that has not written yet
            self._writer_there()
            return b""
        if data:
            self._writer_there()
            self.bytes_total += len(data)
            return data
        if not woken:  # end of file without a wake-up: no writer yet
            self.last_error = f"no writer on the FIFO {self.path} yet"
            if not self._said_waiting:
                self._said_waiting = True
                log.info(f"{self.path} is a FIFO; waiting for a writer", source=self.name)
            return b""
        self.connected = False
        if not self.follow:
            return None
        log.info(f"the writer of {self.path} closed it; waiting for the next", source=self.name)
        os.close(self._fd)
        self._open()
        return b""

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.connected = False


def _is_fifo(path: Path) -> bool:
    try:
        return stat.S_ISFIFO(path.stat().st_mode)
    except OSError:
        return False


def open_file(
    url: str, stop: threading.Event, name: str | None = None
) -> FileSource | RealtimeFileSource | FollowFileSource | FifoSource:
    """`file:PATH[,realtime|,follow]`; ValueError with a one-line reason."""
    spec = url.removeprefix("file:")
    options = []
    head, comma, tail = spec.rpartition(",")
    while comma and tail in _OPTIONS:  # options trail; a comma elsewhere belongs to the path
        options.append(tail)
        spec = head
        head, comma, tail = spec.rpartition(",")
    if len(options) > 1:
        raise ValueError(f"source {url!r}: choose one of realtime and follow")
    if not spec:
        raise ValueError(f"source {url!r} names no file (file:PATH)")
    path = Path(spec)
    if path.is_dir():
        raise ValueError(f"capture file {path} is a directory")
    if _is_fifo(path):
        if options == ["realtime"]:
            raise ValueError(f"source {url!r}: {path} is a FIFO, read as it is written")
        return FifoSource(path, name=name, follow=options == ["follow"])
    if options == ["follow"]:
        return FollowFileSource(path, stop, name=name)
    if not path.exists():
        raise ValueError(f"capture file {path} does not exist")
    if options == ["realtime"]:
        return RealtimeFileSource(path, stop, name=name)
    return FileSource(path, name)
