"""The local store: accepted readings as line protocol in SQLite (WAL), committed per telegram.

Without an InfluxDB this is where readings live; with one it is the durable spool in front of it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    meter TEXT NOT NULL,
    received REAL NOT NULL,
    line TEXT NOT NULL
);
"""


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # One connection shared by the reader threads; callers serialise access.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        path.chmod(0o600)

    def append(self, meter: str, received: float, lines: list[str]) -> None:
        """Commit one telegram's lines atomically; they count as accepted only after this."""
        with self._db:
            self._db.executemany(
                "INSERT INTO points (meter, received, line) VALUES (?, ?, ?)",
                [(meter, received, line) for line in lines],
            )

    def depth(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM points").fetchone()
        return int(row[0])

    def depth_by_meter(self) -> dict[str, int]:
        rows = self._db.execute("SELECT meter, COUNT(*) FROM points GROUP BY meter")
        return {str(meter): int(count) for meter, count in rows}

    def oldest(self) -> float | None:
        row = self._db.execute("SELECT MIN(received) FROM points").fetchone()
        return float(row[0]) if row[0] is not None else None

    def lines(self) -> Iterator[str]:
        for (line,) in self._db.execute("SELECT line FROM points ORDER BY id"):
            yield line

    def close(self) -> None:
        self._db.close()
