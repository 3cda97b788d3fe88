"""The durable spool: accepted points as line protocol in SQLite until InfluxDB acknowledged them.

Without an InfluxDB it is the local store. Readers append (one transaction per telegram); the
deliverer reads the oldest rows, writes them and deletes them only after the server's answer.
Because the line itself is stored, a point sent again after a lost answer carries the same series
and timestamp, and InfluxDB overwrites it instead of adding one (delivery is at least once,
storage is idempotent).

Durability: WAL with `synchronous=NORMAL` survives a crash of the process (a committed append is
in the WAL); a power cut may lose the last commits, never the consistency of the file.

With a `sync_interval` (the agent's default, for SD cards) a telegram is not a SQLite commit but
a record appended to the journal (`agent.sinks.journal`, beside the store), which survives the
process being killed and, fsynced every `sync_interval`, loses at most that much to a power cut.
`reader` reads both, as a user sees the store, without folding a running agent's journal. Those
rows wait in memory too ("held") and are delivered from there; they are folded into SQLite in one
transaction (`synchronous=FULL`, so it is on disk before the journal is emptied) every
`FOLD_EVERY`, when `FOLD_BYTES` wait, before an eviction, and at close. Rows InfluxDB
acknowledged meanwhile never reach SQLite. A journal found at start (the agent was killed) is
folded first, whatever the setting.

What bounds the file: the stored lines (`max_bytes`, counted as their UTF-8 bytes; rows, index and
page slack add roughly half again), plus free pages, which later appends reuse and `enforce`
hands back to the file system beyond `FREE_SLACK` (`auto_vacuum=INCREMENTAL`), plus at most
`MAX_REJECTED` refused lines, plus the WAL: `WAL_LIMIT` after a checkpoint, and while one big
transaction (a large eviction) is written, as much as that transaction changes.

Folded lines are stored packed (`agent.sinks.linepack`: about a seventh of their text), each
series' first line kept as text in `line_keys` as its dictionary; lines appended one commit per
telegram stay text. Both read alike; `max_bytes` counts what is stored.

With `downsample_after` (a local store: nothing is delivered), readings older than that are
thinned to the last of each minute (`retention.last_per_minute`), an hour of one meter per
transaction: its rows are deleted and the kept ones written back with their ids, so whole pages
are freed rather than each rewritten. Where each meter got to is kept in `downsampled`.

A damaged file (a power cut on an SD card) is moved aside by `open_store`, with its WAL, and
the points that still read are copied into a new one, so the agent starts again and loses only
what the damage took. A file deleted or replaced under
a running agent is noticed (`replaced`) and written anew (`rebuild`) from the open connection,
which still reads the deleted file.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import math
import os
import sqlite3
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import structlog

from agent.metercounts import MeterCounts
from agent.sinks import journal, linepack
from agent.sinks.retention import last_per_minute

T = TypeVar("T")
log = structlog.get_logger("p1-agent.spool")

SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    meter TEXT NOT NULL,
    received REAL NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS points_meter_received ON points (meter, received);
CREATE TABLE IF NOT EXISTS line_keys (
    id INTEGER PRIMARY KEY,
    line TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS downsampled (
    meter TEXT PRIMARY KEY,
    until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected_points (
    id INTEGER PRIMARY KEY,
    meter TEXT NOT NULL,
    received REAL NOT NULL,
    line TEXT NOT NULL,
    reason TEXT NOT NULL
);
"""

FREE_SLACK = 8 << 20  # free pages kept for the next appends instead of returned to the OS
WAL_LIMIT = 8 << 20  # the WAL is cut back to this after a checkpoint
MAX_REJECTED = 100_000  # refused lines kept for inspection; the oldest go first
FOLD_EVERY = 600.0  # seconds between folds of the journal into SQLite
FOLD_BYTES = 4 << 20  # of held lines: folded sooner (many meters), and memory bounded
DOWNSAMPLE_WINDOW = 3600.0  # seconds of one meter's readings thinned in one transaction
MAX_KEYS = 10_000  # dictionary lines (one per series); a series beyond them is stored as text
_CHUNK = 500  # ids per statement, well below SQLite's variable limit
_SIZE = "length(CAST(line AS BLOB))"  # UTF-8 bytes of a line, as counted on append
_TOTALS = f"SELECT meter, COUNT(*), SUM({_SIZE}) FROM points GROUP BY meter"
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_WAL_FILES = ("-wal", "-shm")  # beside the store; SQLite finds them by the store's name


class SpoolError(OSError):
    """The spool could not be read or written (disk full, I/O error); one line for users."""

    def __init__(self, path: Path, exc: BaseException) -> None:
        # The primary code (the low byte of an extended one); errors of the module have none.
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        full = code == sqlite3.SQLITE_FULL or getattr(exc, "errno", None) == errno.ENOSPC
        self.full = full
        self.damaged = code in _DAMAGED  # not a database, or a page of it is garbage
        self.path = path
        super().__init__(f"spool {'disk full' if full else 'error'}: {path} ({exc})")


class SpoolRow(NamedTuple):
    id: int
    meter: str
    received: float
    line: str


@dataclass(frozen=True, slots=True)
class SpoolStats:
    depth: int
    bytes: int
    depth_by_meter: dict[str, int]
    oldest_age_by_meter: dict[str, float]  # seconds since the oldest point arrived; 0 when empty


def _create_private(path: Path) -> None:
    """Create the file owner-only before SQLite opens it, so it is never readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    path.chmod(0o600)  # an older file may have been created with the umask's mode


def _store_files(path: Path) -> list[Path]:
    return [path, *(Path(f"{path}{suffix}") for suffix in _WAL_FILES)]


def move_aside(path: Path, why: str) -> Path:
    """Rename the store and its WAL files to `store.sqlite.WHY-TIME` (`…-wal`, `…-shm`), so
    SQLite still reads them together; the new name of the store."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.{why}-{stamp}")
    n = 1
    while any(p.exists() for p in _store_files(aside)):
        n += 1
        aside = path.with_name(f"{path.name}.{why}-{stamp}-{n}")
    for source, target in zip(_store_files(path), _store_files(aside), strict=True):
        with contextlib.suppress(FileNotFoundError):
            os.replace(source, target)
    return aside


@dataclass(frozen=True, slots=True)
class Damage:
    """A damaged store found at start: what SQLite said, where it went, and how many of its
    points were copied into the new store."""

    error: str
    moved_to: Path
    salvaged: int


def open_store(
    path: Path,
    *,
    max_bytes: int = 1 << 30,
    max_age: float = 30 * 86400.0,
    sync_interval: float = 0.0,
    downsample_after: float = 0.0,
) -> tuple[Spool, Damage | None]:
    """The spool at `path`. A damaged one is moved aside and a new one started with the points
    that still read, so a power cut does not keep the agent from starting ever again."""

    def start() -> Spool:
        return Spool(
            path,
            max_bytes=max_bytes,
            max_age=max_age,
            sync_interval=sync_interval,
            downsample_after=downsample_after,
        )

    try:
        return start(), None
    except SpoolError as exc:
        if not exc.damaged:
            raise
        error = str(exc.__cause__)
    moved = move_aside(path, "damaged")
    spool = start()
    return spool, Damage(error, moved, spool.salvage(moved))


def reader(path: Path) -> Spool:
    """The store as a user sees it (`p1-agent export`): its rows and those of its journal, which
    is read, not folded, so an agent running meanwhile goes on undisturbed."""
    if not path.is_file():
        raise FileNotFoundError(f"no local store at {path}")
    return Spool(path, max_bytes=0, max_age=0, recover=False)


def _readable_rows(
    path: Path, table: str = "points", columns: str = "id, meter, received, line"
) -> Iterator[tuple[Any, ...]]:
    """The rows of a damaged store's table that still read: from the first until a damaged
    page, then from the last back to it (as sqlite3's `.dump` does)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return
    query = f"SELECT {columns} FROM {table} WHERE id > ? ORDER BY id"
    last = 0
    try:
        for sql in (query, query + " DESC"):
            try:
                for row in db.execute(sql, (last,)):
                    if all(isinstance(v, str | bytes) for v in row[1::2]):  # not garbage
                        last = max(last, int(row[0]))
                        yield tuple(row)
                return
            except (sqlite3.DatabaseError, TypeError, ValueError):
                continue
    finally:
        db.close()


def _unpacks(value: str | bytes, keys: dict[int, bytes]) -> bool:
    """Whether a stored line reads (a packed one's key may have gone with a damaged page)."""
    try:
        linepack.unpack(value, keys)
    except (KeyError, ValueError, zlib.error):
        return False
    return True


class Spool:
    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 1 << 30,
        max_age: float = 30 * 86400.0,
        sync_interval: float = 0.0,
        recover: bool = True,
        downsample_after: float = 0.0,
    ) -> None:
        """`sync_interval` > 0: appends go to the journal (module docstring). `recover=False`
        leaves a journal found as it is and only reads its rows (`export` while an agent runs)."""
        self.path = path
        self.max_bytes = max_bytes  # 0: unbounded
        self.max_age = max_age  # 0: unbounded
        self.sync_interval = sync_interval
        self.downsample_after = downsample_after  # 0: never
        self._downsampled: dict[str, float] = {}  # meter → received up to which it is thinned
        # With a journal SQLite commits are rare (folds, acks and evictions of folded rows), so
        # each may as well be on disk when it returns.
        self._synchronous = "FULL" if sync_interval > 0 else "NORMAL"
        # Journal rows not folded into SQLite nor acknowledged, by id (ascending), with sizes.
        self._held: dict[int, tuple[SpoolRow, int]] = {}
        self._held_bytes = 0
        self._next_id = 1  # of the next journal row: after every id SQLite ever gave
        self._journal: journal.Journal | None = None
        self._keys: dict[int, bytes] = {}  # dictionary lines by id (linepack)
        self._key_of: dict[str, int] = {}  # a series' dictionary line
        self._lock = threading.Lock()
        # Points evicted since the start, by (meter, reason); of every meter until count_only().
        self._evicted: MeterCounts[tuple[str, str]] = MeterCounts()
        # Running totals, so stats() and the size bound never count the rows again.
        self._depth: dict[str, int] = {}
        self._bytes = 0
        # The oldest `received` of a meter with rows, once probed: probed again only after some
        # of its rows went, so stats() and the age bound make no query per meter every second.
        self._oldest: dict[str, float] = {}
        # No row was received before this (a lower bound; None: not known), so the age bound
        # goes over the meters only once a row may be due.
        self._oldest_floor: float | None = None
        # (device, inode) of the file open, to notice it deleted; None: not open (rebuild failed)
        self._identity: tuple[int, int] | None = None
        self._connect()
        found, acked = journal.read(journal.journal_path(path))
        rows = [SpoolRow(*row) for row in found if row.id not in acked]
        if not recover:
            self._hold(rows)
            return
        folded = True
        try:
            with self._lock:
                self._fold_rows(rows)  # a killed agent's; before anything is appended after them
                self._count(self._read(_TOTALS))
                self._next_id = max(self._next_id, self._last_id() + 1)
        except SpoolError as exc:
            if sync_interval <= 0:
                raise
            log.error("cannot fold the journal into the store; holding it", error=str(exc))
            self._hold(rows)
            folded = False
        try:
            if sync_interval > 0:
                self._journal = journal.Journal(journal.journal_path(path), sync_interval)
                if folded:
                    self._journal.clear()
            elif found:
                journal.journal_path(path).unlink()
        except OSError as exc:
            raise SpoolError(path, exc) from exc

    def _hold(self, rows: Iterable[SpoolRow]) -> None:
        for row in rows:
            size = len(row.line.encode())
            self._held[row.id] = (row, size)
            self._held_bytes += size
            self._depth[row.meter] = self._depth.get(row.meter, 0) + 1
            self._bytes += size
            self._next_id = max(self._next_id, row.id + 1)

    def _fold_rows(self, rows: Sequence[SpoolRow]) -> int:
        """Commit journal rows to SQLite packed, durably: the journal is emptied next (caller
        holds the lock); the bytes stored. Ids are kept; one already there (folded before a
        crash) is skipped."""
        if not rows:
            return 0
        insert = "INSERT OR IGNORE INTO points (id, meter, received, line) VALUES (?, ?, ?, ?)"
        keys = dict(self._keys), dict(self._key_of)

        def fold(db: sqlite3.Connection) -> list[tuple[int, str, float, str | bytes]]:
            stored = [(r.id, r.meter, r.received, self._packed(db, r.line)) for r in rows]
            db.executemany(insert, stored)
            return stored

        try:
            self._db.execute("PRAGMA synchronous=FULL")
            stored = self._transaction(fold)
        except SpoolError:
            self._keys, self._key_of = keys  # the new keys were rolled back with the rows
            raise
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute(f"PRAGMA synchronous={self._synchronous}")
        log.info("journal folded into the store", points=len(rows))
        return sum(len(v) if isinstance(v, bytes) else len(v.encode()) for *_, v in stored)

    def _fold(self) -> None:
        """The held rows into SQLite and the journal emptied (caller holds the lock)."""
        if self._journal is None:
            return
        stored = self._fold_rows([row for row, _ in self._held.values()])
        self._bytes += stored - self._held_bytes  # counted as stored now
        self._held.clear()
        self._held_bytes = 0
        try:
            self._journal.clear()
        except OSError as exc:  # they are in SQLite now; a replay of them is skipped
            raise SpoolError(self.path, exc) from exc

    def maintain(self) -> None:
        """Once a second: fsync the journal when `sync_interval` is due, fold it every
        `FOLD_EVERY`, and start it anew if it was deleted under the agent."""
        with self._lock:
            record = self._journal
            if record is None:
                return
            try:
                if record.gone():
                    log.error(
                        "the journal was deleted or replaced while the agent ran; what it held"
                        " is folded into the store and a new one started",
                        path=str(record.path),
                    )
                    self._fold()
                    record.close()
                    self._journal = journal.Journal(record.path, self.sync_interval)
                elif record.started is not None and time.monotonic() - record.started >= FOLD_EVERY:
                    self._fold()
                else:
                    record.sync_if_due()
            except OSError as exc:
                raise SpoolError(self.path, exc) from exc

    def _connect(self) -> None:
        try:
            _create_private(self.path)
            # One connection shared by the reader threads and the deliverer, behind self._lock;
            # transactions are explicit (isolation_level=None).
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (sqlite3.Error, OSError) as exc:
            raise SpoolError(self.path, exc) from exc
        self._db = db
        try:
            self._open()
            totals = db.execute(_TOTALS).fetchall()
            stat = os.stat(self.path)
        except (sqlite3.Error, OSError) as exc:
            db.close()  # now: closing later would remove WAL files of whatever has this name
            raise SpoolError(self.path, exc) from exc
        self._count(totals)
        self._identity = (stat.st_dev, stat.st_ino)
        self._next_id = max(self._next_id, self._last_id() + 1)

    def _last_id(self) -> int:
        """The highest id SQLite gave or was given (AUTOINCREMENT remembers deleted ones)."""
        row = self._read("SELECT seq FROM sqlite_sequence WHERE name = 'points'")
        return int(row[0][0]) if row else 0

    def _count(self, totals: list[Any]) -> None:
        self._depth = {meter: int(count) for meter, count, _ in totals}
        self._bytes = sum(int(size) for _, _, size in totals)
        for row, size in self._held.values():
            self._depth[row.meter] = self._depth.get(row.meter, 0) + 1
            self._bytes += size
        self._oldest = {}
        self._oldest_floor = None

    def salvage(self, damaged: Path) -> int:
        """Copy the points of a damaged store that still read into this one, with their ids
        (so they keep their order and go out first); how many. A full disk ends it early."""
        copied = 0
        keys = list(_readable_rows(damaged, "line_keys", "id, line"))
        known = {int(i): str(line).encode() for i, line in keys}
        rows = (row for row in _readable_rows(damaged) if _unpacks(row[3], known))
        insert = "INSERT OR IGNORE INTO points (id, meter, received, line) VALUES (?, ?, ?, ?)"
        with self._lock:
            try:
                if keys:
                    self._transaction(
                        lambda db: db.executemany(
                            "INSERT OR IGNORE INTO line_keys (id, line) VALUES (?, ?)", keys
                        )
                    )
                    self._load_state()
                while batch := list(itertools.islice(rows, 1000)):
                    self._transaction(lambda db: db.executemany(insert, batch))
                    copied += len(batch)
            except SpoolError:
                pass
            self._count(self._read(_TOTALS))
            # Journal rows after them: an id given twice would be skipped when folded.
            self._next_id = max(self._next_id, self._last_id() + 1)
        return copied

    def _open(self) -> None:
        db = self._db
        if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            if db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
                db.execute("VACUUM")  # a store from before the spool: the mode needs a rebuild
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._synchronous}")
        db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
        db.executescript(SCHEMA)
        if self.sync_interval > 0:
            # Deleted rows are zeroed only where that costs no extra page write (the file is the
            # owner's only; the default overwrites every page a delete touches).
            db.execute("PRAGMA secure_delete=FAST")
        self._load_state()

    def _load_state(self) -> None:
        """What the store's own tables say: the dictionary lines, and how far downsampling got."""
        self._downsampled = dict(self._db.execute("SELECT meter, until FROM downsampled"))
        keys = self._db.execute("SELECT id, line FROM line_keys").fetchall()
        self._keys = {int(i): str(line).encode() for i, line in keys}
        self._key_of = {linepack.series(str(line)): int(i) for i, line in keys}

    def _text(self, value: str | bytes) -> str:
        """A stored line as text (packed or not)."""
        try:
            return linepack.unpack(value, self._keys)
        except (KeyError, ValueError, zlib.error) as exc:
            raise SpoolError(self.path, exc) from exc

    def _packed(self, db: sqlite3.Connection, line: str) -> str | bytes:
        """How a folded line is stored: packed with its series' key; the first of a series
        becomes the key, stored as text (within the caller's transaction)."""
        key = self._key_of.get(series := linepack.series(line))
        if key is not None:
            return linepack.pack(line, key, self._keys[key])
        if len(self._keys) < MAX_KEYS:
            key = max(self._keys, default=0) + 1
            db.execute("INSERT INTO line_keys (id, line) VALUES (?, ?)", (key, line))
            self._keys[key], self._key_of[series] = line.encode(), key
        return line

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in one write transaction (caller holds the lock); errors → SpoolError."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            result = work(db)
            db.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise SpoolError(self.path, exc) from exc
        return result

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise SpoolError(self.path, exc) from exc

    def _forget(self, removed: Iterable[tuple[str, int]]) -> Counter[str]:
        """Take deleted rows (meter, size) off the running totals; counts by meter."""
        counts: Counter[str] = Counter()
        for meter, size in removed:
            counts[meter] += 1
            self._bytes -= size
        for meter, n in counts.items():
            self._depth[meter] -= n
            self._oldest.pop(meter, None)
        return counts

    def _oldest_received(self, meter: str) -> float:
        """Of a meter with rows; a probe on the (meter, received) index only when not known."""
        oldest = self._oldest.get(meter)
        if oldest is None:
            sql = "SELECT MIN(received) FROM points WHERE meter = ?"
            stored = self._read(sql, (meter,))[0][0]
            times = [row.received for row, _ in self._held.values() if row.meter == meter]
            if stored is not None:
                times.append(float(stored))
            oldest = self._oldest[meter] = min(times)
        return oldest

    def append(self, meter: str, received: float, lines: list[str]) -> None:
        """Commit one telegram's lines atomically; they count as accepted only once this returns."""
        if not lines:
            return
        rows = [(meter, received, line) for line in lines]
        size = sum(len(line.encode()) for line in lines)
        with self._lock:
            if self._journal is None:
                self._transaction(
                    lambda db: db.executemany(
                        "INSERT INTO points (meter, received, line) VALUES (?, ?, ?)", rows
                    )
                )
            else:
                self._journal_append(meter, received, lines)
            if meter in self._oldest or not self._depth.get(meter):
                self._oldest[meter] = min(received, self._oldest.get(meter, received))
            if self._oldest_floor is not None:
                self._oldest_floor = min(self._oldest_floor, received)
            self._depth[meter] = self._depth.get(meter, 0) + len(lines)
            self._bytes += size
            if self._held_bytes >= FOLD_BYTES:
                try:
                    self._fold()
                except SpoolError as exc:  # the rows are in the journal; maintain() retries
                    log.error("cannot fold the journal into the store", error=str(exc))

    def _journal_append(self, meter: str, received: float, lines: list[str]) -> None:
        assert self._journal is not None
        first = self._next_id
        try:
            self._journal.append(first, meter, received, lines)
        except OSError as exc:
            raise SpoolError(self.path, exc) from exc
        self._next_id += len(lines)
        for i, line in enumerate(lines):
            size = len(line.encode())
            self._held[first + i] = (SpoolRow(first + i, meter, received, line), size)
            self._held_bytes += size

    def batch(self, limit: int) -> list[SpoolRow]:
        """The oldest `limit` rows, in the order they were appended."""
        with self._lock:
            rows = [
                SpoolRow(i, meter, received, self._text(line))
                for i, meter, received, line in self._read(
                    "SELECT id, meter, received, line FROM points ORDER BY id LIMIT ?", (limit,)
                )
            ]
            held = itertools.islice(self._held.values(), max(0, limit - len(rows)))
            return rows + [row for row, _ in held]

    def _delete(self, db: sqlite3.Connection, ids: Sequence[int], columns: str) -> list[Any]:
        removed: list[Any] = []
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"DELETE FROM points WHERE id IN ({marks}) RETURNING {columns}"
            removed += db.execute(sql, chunk).fetchall()
        return removed

    def ack(self, ids: Sequence[int]) -> None:
        """Delete rows the server acknowledged (rows already evicted are skipped)."""
        if not ids:
            return
        with self._lock:
            held = {i for i in ids if i in self._held}
            if held and self._journal is not None:
                self._forget(self._release(held))
                with contextlib.suppress(OSError):  # without the record, sent again after a crash
                    self._journal.ack(held)
            stored = [i for i in ids if i not in held] if held else ids
            if stored:
                removed = self._transaction(lambda db: self._delete(db, stored, f"meter, {_SIZE}"))
                self._forget(removed)

    def _release(self, ids: Iterable[int]) -> list[tuple[str, int]]:
        """Take held rows out; (meter, size) of each."""
        released = []
        for i in ids:
            row, size = self._held.pop(i)
            self._held_bytes -= size
            released.append((row.meter, size))
        return released

    def dead_letter(self, rows: Sequence[SpoolRow], reason: str) -> None:
        """Move lines the server refuses for good to `rejected_points`: kept, never resent."""
        if not rows:
            return

        def move(db: sqlite3.Connection) -> list[Any]:
            removed = self._delete(
                db, [row.id for row in rows], f"id, meter, received, line, {_SIZE}"
            )
            db.executemany(
                "INSERT INTO rejected_points (id, meter, received, line, reason)"
                " VALUES (?, ?, ?, ?, ?)",
                [(*row[:4], reason) for row in removed],
            )
            db.execute(
                "DELETE FROM rejected_points WHERE id <= "
                "(SELECT id FROM rejected_points ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (MAX_REJECTED,),
            )
            return removed

        with self._lock:
            if any(row.id in self._held for row in rows):
                self._fold()  # rare: refused lines are moved within SQLite
            removed = self._transaction(move)
            self._forget((row[1], row[4]) for row in removed)

    def rejected(self) -> list[tuple[SpoolRow, str]]:
        """The refused lines with the server's reason, oldest first (for inspection and tests)."""
        with self._lock:
            rows = self._read(
                "SELECT id, meter, received, line, reason FROM rejected_points ORDER BY id"
            )
            return [
                (SpoolRow(i, meter, received, self._text(line)), str(reason))
                for i, meter, received, line, reason in rows
            ]

    def enforce(self, now: float) -> Counter[tuple[str, str]]:
        """Evict the oldest points beyond `max_age` and `max_bytes`, say so and count them (the
        one place that does), then downsample; this pass's counts by (meter, reason)."""
        evicted: Counter[tuple[str, str]] = Counter()
        with self._lock:
            try:
                if self.max_age > 0:
                    self._evict_old(now - self.max_age, evicted)
                if 0 < self.max_bytes < self._bytes:
                    self._fold()
                    for meter, n in self._evict_size(self._bytes - self.max_bytes).items():
                        evicted[meter, "size"] += n
                self._release_free_pages()
            finally:  # what went before a failure, too
                self._evicted.count(evicted)
                for (meter, reason), n in sorted(evicted.items()):
                    log.warning(
                        "spool bound reached; oldest points dropped",
                        meter=meter,
                        reason=reason,
                        points=n,
                    )
        self.downsample(now)
        return evicted

    def downsample(self, now: float, windows: int = 24) -> int:
        """Thin one window (DOWNSAMPLE_WINDOW) of one meter's readings older than
        `downsample_after`, looking at `windows` at most, so a tick never holds the readers up
        for long; the points removed."""
        if self.downsample_after <= 0:
            return 0
        cutoff = (now - self.downsample_after) // 60 * 60
        with self._lock:
            first = next(iter(self._held.values()), None)
            if first is not None and first[0].received < cutoff:
                self._fold()  # thinning is SQLite's (only with a tiny downsample_after)
            for meter in [m for m, n in self._depth.items() if n]:
                since = self._downsampled.get(meter)
                if since is None:
                    since = self._oldest_received(meter) // 60 * 60
                while since < cutoff and windows > 0:
                    windows -= 1
                    until = min(cutoff, since + DOWNSAMPLE_WINDOW)
                    removed = self._thin(meter, since, until)
                    self._downsampled[meter] = since = until
                    if removed:
                        return removed
        return 0

    def _thin(self, meter: str, since: float, until: float) -> int:
        where = "meter = ? AND received >= ? AND received < ?"
        args = (meter, since, until)
        rows = self._read(f"SELECT id, line FROM points WHERE {where}", args)
        keep = last_per_minute((int(i), self._text(value)) for i, value in rows)
        if len(keep) == len(rows):
            return 0

        def thin(db: sqlite3.Connection) -> list[Any]:
            removed = db.execute(
                f"DELETE FROM points WHERE {where} RETURNING id, meter, received, line, {_SIZE}",
                args,
            ).fetchall()
            kept = [row[:4] for row in removed if row[0] in keep]
            db.executemany(
                "INSERT INTO points (id, meter, received, line) VALUES (?, ?, ?, ?)", kept
            )
            db.execute(
                "INSERT OR REPLACE INTO downsampled (meter, until) VALUES (?, ?)", (meter, until)
            )
            return removed

        removed = self._transaction(thin)
        self._forget((row[1], row[4]) for row in removed)
        for row in removed:
            if row[0] in keep:  # written back
                self._depth[meter] += 1
                self._bytes += row[4]
        gone = len(removed) - len(keep)
        log.info("readings downsampled to one a minute", meter=meter, points=gone)
        return gone

    def _evict_old(self, cutoff: float, evicted: Counter[tuple[str, str]]) -> None:
        if self._oldest_floor is not None and self._oldest_floor >= cutoff:
            return  # nothing can be due: no pass over the meters
        old = [m for m, n in self._depth.items() if n and self._oldest_received(m) < cutoff]
        if old and self._held:
            self._fold()  # evictions are SQLite's; a store at its bound churns anyway
        for meter in old:
            n = self._evict_age(meter, cutoff)
            if n:
                evicted[meter, "age"] += n
        self._oldest_floor = min(
            (self._oldest_received(m) for m, n in self._depth.items() if n), default=math.inf
        )

    def evictions(self) -> dict[tuple[str, str], int]:
        """Points evicted since the start, by (meter, reason), of the meters counted."""
        with self._lock:
            return dict(self._evicted)

    def count_only(self, counted: Callable[[str], bool]) -> None:
        """Count evictions of the meters `counted` admits only (the metrics': bounded)."""
        with self._lock:
            self._evicted.counted = counted

    def forget(self, meters: Collection[str]) -> None:
        """Drop these meters' eviction counts (they left the metrics)."""
        with self._lock:
            self._evicted.forget(meters)

    def _evict_age(self, meter: str, cutoff: float) -> int:
        # The (meter, received) index finds them without reading the younger rows.
        sql = f"DELETE FROM points WHERE meter = ? AND received < ? RETURNING meter, {_SIZE}"
        removed = self._transaction(lambda db: db.execute(sql, (meter, cutoff)).fetchall())
        return self._forget(removed)[meter]

    def _evict_size(self, excess: int) -> Counter[str]:
        def evict(db: sqlite3.Connection) -> list[Any]:
            freed, cut = 0, 0
            for row_id, size in db.execute(f"SELECT id, {_SIZE} FROM points ORDER BY id"):
                freed += size
                cut = row_id
                if freed >= excess:
                    break
            return db.execute(
                f"DELETE FROM points WHERE id <= ? RETURNING meter, {_SIZE}", (cut,)
            ).fetchall()

        return self._forget(self._transaction(evict))

    def _release_free_pages(self) -> None:
        page_size, free = (
            int(self._read(f"PRAGMA {name}")[0][0]) for name in ("page_size", "freelist_count")
        )
        excess = free - FREE_SLACK // page_size
        if excess > 0:
            try:
                # executescript steps the pragma to the end; execute() frees only one page.
                self._db.executescript(
                    f"PRAGMA incremental_vacuum({excess}); PRAGMA wal_checkpoint(PASSIVE);"
                )
            except sqlite3.Error as exc:
                raise SpoolError(self.path, exc) from exc

    def stats(self, now: float) -> SpoolStats:
        """Depth, bytes and oldest age per meter, from running totals."""
        with self._lock:
            depth = dict(self._depth)
            oldest = {
                meter: max(0.0, now - self._oldest_received(meter)) if n else 0.0
                for meter, n in depth.items()
            }
            size = self._bytes
        return SpoolStats(sum(depth.values()), size, depth, oldest)

    def rows(self) -> Iterator[SpoolRow]:
        """Every spooled row, oldest first, read in pages so appends are never held up."""
        last = 0
        while True:
            with self._lock:
                rows = self._read(
                    "SELECT id, meter, received, line FROM points WHERE id > ? ORDER BY id"
                    " LIMIT 1000",
                    (last,),
                )
            if not rows:
                break
            for i, meter, received, line in rows:
                yield SpoolRow(int(i), meter, received, self._text(line))
            last = int(rows[-1][0])
        with self._lock:
            held = [row for row, _ in self._held.values() if row.id > last]
        yield from held

    def lines(self) -> Iterator[str]:
        """Every spooled line, oldest first."""
        return (row.line for row in self.rows())

    def replaced(self) -> bool:
        """Whether the file at `path` is no longer the one open: deleted or replaced while the
        agent runs, its appends would go to a file nobody can open again."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return True
        except OSError:
            return False  # cannot tell; the next appends will say what is wrong
        return (stat.st_dev, stat.st_ino) != self._identity

    def rebuild(self) -> Path | None:
        """Write what the open file holds (it still reads a deleted one) to a new file at
        `path` and go on there. A file found at `path` instead is moved aside: its new name."""
        foreign = None
        with self._lock:
            if self._identity is not None:
                fresh = self.path.with_name(self.path.name + ".rebuild")
                try:
                    with contextlib.suppress(FileNotFoundError):
                        fresh.unlink()
                    _create_private(fresh)  # VACUUM INTO fills an empty file, keeping its mode
                    self._db.execute("VACUUM INTO ?", (str(fresh),))
                except (sqlite3.Error, OSError) as exc:
                    with contextlib.suppress(OSError):
                        fresh.unlink()
                    raise SpoolError(self.path, exc) from exc
                # Closed first: it removes its WAL files by name, which are the new file's next.
                self._db.close()
                self._identity = None
                if self.path.exists():
                    foreign = move_aside(self.path, "replaced")
                for stale in _store_files(self.path)[1:]:
                    with contextlib.suppress(FileNotFoundError):
                        stale.unlink()
                try:
                    os.replace(fresh, self.path)
                except OSError as exc:
                    raise SpoolError(self.path, exc) from exc
            self._connect()
        return foreign

    def close(self) -> None:
        """Fold the journal (a failure leaves it for the next start) and close."""
        with self._lock:
            if self._journal is not None:
                try:
                    self._fold()
                except SpoolError as exc:
                    log.error("cannot fold the journal; the next start will", error=str(exc))
                self._journal.close()
                self._journal = None
            self._db.close()
