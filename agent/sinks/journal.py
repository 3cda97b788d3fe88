"""The spool's journal: each accepted telegram appended as one compact record, one write() each.

Why: a SQLite commit writes whole pages (a telegram's two rows touch four 4-KiB pages), which
wears out an SD card; a record here is about 170 bytes. What a write() handed the kernel survives
the process being killed; an fsync every `sync_interval` bounds what a power cut costs. The spool
folds the records into SQLite in large batches and then empties the journal.

A record is `LENGTH CRC32 KIND BODY` (4 + 4 bytes big-endian, one byte, LENGTH bytes; the CRC
covers KIND and BODY):
- `K` (key): JSON `[first id, meter, received, lines]`, a meter's first record in the journal;
  its lines are that meter's dictionary;
- `P` (packed): JSON `[first id, meter, received]`, a newline, then the JSON list of lines
  deflated with the meter's key lines as preset dictionary (a DSMR 5 telegram's 854 bytes of
  line protocol become about 110: from one telegram to the next most of it repeats);
- `A` (ack): JSON list of ids InfluxDB acknowledged, so a restart does not send them again.
A record that does not check (a power cut mid-write) ends the reading: nothing after it is trusted.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import struct
import time
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from agent.sinks.linepack import deflate, inflate

_HEAD = struct.Struct(">II")
KEY, PACKED, ACK = b"K", b"P", b"A"


class JournalRow(NamedTuple):
    id: int
    meter: str
    received: float
    line: str


def journal_path(store: Path) -> Path:
    """Beside the store: `store.sqlite` → `store.journal`."""
    return store.with_suffix(".journal")


def _checked(lines: object) -> list[str]:
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise ValueError("not a list of lines")
    return lines


def _inflate(data: bytes, key: bytes) -> list[str]:
    return _checked(json.loads(inflate(data, key)))


def _rows(first: int, meter: str, received: float, lines: list[str]) -> list[JournalRow]:
    return [JournalRow(first + i, meter, received, line) for i, line in enumerate(lines)]


def read(path: Path) -> tuple[list[JournalRow], set[int]]:
    """The rows a journal holds and the ids acknowledged since; ([], set()) without one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], set()
    rows: list[JournalRow] = []
    acked: set[int] = set()
    keys: dict[str, bytes] = {}
    at = 0
    while at + _HEAD.size < len(data):
        length, crc = _HEAD.unpack_from(data, at)
        record = data[at + _HEAD.size : at + _HEAD.size + 1 + length]
        if len(record) != 1 + length or zlib.crc32(record) != crc:
            break  # the tail a power cut left
        at += _HEAD.size + 1 + length
        kind, body = record[:1], record[1:]
        try:
            if kind == ACK:
                acked.update(int(i) for i in json.loads(body))
            elif kind == KEY:
                first, meter, received, lines = json.loads(body)
                keys[meter] = json.dumps(lines).encode()
                rows += _rows(int(first), str(meter), float(received), _checked(lines))
            elif kind == PACKED:
                header, _, packed = body.partition(b"\n")
                first, meter, received = json.loads(header)
                lines = _inflate(packed, keys[meter])
                rows += _rows(int(first), str(meter), float(received), lines)
        except (ValueError, KeyError, TypeError, zlib.error):
            break  # checked but unreadable: written by a later version, or a bug; stop here
    return rows, acked


class Journal:
    """Appends records to `path` (owner-only), fsyncs at most every `sync_interval` seconds."""

    def __init__(self, path: Path, sync_interval: float) -> None:
        self.path = path
        self.sync_interval = sync_interval
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        stat = os.fstat(self._fd)
        self.size = stat.st_size
        self._identity = (stat.st_dev, stat.st_ino)
        self._keys: dict[str, bytes] = {}  # meter → its key record's lines, as JSON
        self._synced = time.monotonic()
        self._dirty = False
        self.started: float | None = None  # monotonic time of the first record since clear()

    def append(self, first: int, meter: str, received: float, lines: list[str]) -> None:
        key = self._keys.get(meter)
        if key is None:
            self._write(KEY, json.dumps([first, meter, received, lines]).encode())
            self._keys[meter] = json.dumps(lines).encode()
        else:
            header = json.dumps([first, meter, received]).encode()
            self._write(PACKED, header + b"\n" + deflate(json.dumps(lines).encode(), key))

    def ack(self, ids: Iterable[int]) -> None:
        self._write(ACK, json.dumps(sorted(ids), separators=(",", ":")).encode())

    def _write(self, kind: bytes, body: bytes) -> None:
        record = kind + body
        data = _HEAD.pack(len(body), zlib.crc32(record)) + record
        try:
            written = os.write(self._fd, data)
        except OSError:
            self._cut()
            raise
        if written != len(data):  # a disk filling up mid-record
            self._cut()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        self.size += written
        self._dirty = True
        if self.started is None:
            self.started = time.monotonic()
        # The record is the kernel's now, so the append stands (failing it would have it written
        # again); a failed fsync is maintain()'s to retry and say.
        with contextlib.suppress(OSError):
            self.sync_if_due()

    def _cut(self) -> None:
        """Take a partial record back off the end, so the records after it still read."""
        # If even that fails, a reader stops at the partial record; what follows waits in memory.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, self.size)

    def gone(self) -> bool:
        """Whether the file at `path` is no longer the one written (deleted or replaced): what is
        appended then would be lost with the process."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return True
        except OSError:
            return False  # cannot tell; writing will say what is wrong
        return (stat.st_dev, stat.st_ino) != self._identity

    def sync_if_due(self) -> None:
        if self._dirty and time.monotonic() - self._synced >= self.sync_interval:
            self.sync()

    def sync(self) -> None:
        os.fsync(self._fd)
        self._synced = time.monotonic()
        self._dirty = False

    def clear(self) -> None:
        """Empty the journal (its rows are in SQLite now), durably."""
        os.ftruncate(self._fd, 0)
        self.size = 0
        self._keys.clear()
        self.started = None
        self.sync()

    def close(self) -> None:
        if self._dirty:
            self.sync()
        os.close(self._fd)
