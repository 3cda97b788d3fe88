"""The noise log: one JSONL record per frame that failed its check, in the data directory.

It shows where (byte offset, line) and when the noise hits, and what was received and restored,
so a user can fix the hardware. Daily files, each capped, so a hopeless cable cannot fill the disk.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.core.pipeline import Result
from agent.sinks.retention import expire

DAILY_CAP = 16 * 1024 * 1024


def record(result: Result, meter: str, now: float) -> dict[str, Any]:
    """The log record of a frame that did not check out on arrival (repaired or rejected)."""
    rec: dict[str, Any] = {
        "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        "meter": meter,
        "status": result.status,
        "failure": result.failure,
        "offset": result.frame.offset,
    }
    if result.repair is not None:
        record = result.repair.record()
        rec["method"], rec["changes"] = record["method"], record["changes"]
    else:
        rec["reason"] = result.reason
    return rec


class DamageLog:
    def __init__(self, directory: Path, cap: int = DAILY_CAP, max_age: float = 0.0) -> None:
        self.directory = directory
        self.cap = cap
        self.max_age = max_age  # seconds a day's log is kept; 0: forever
        self.dropped = 0  # records not written: past the day's cap, or refused by the disk
        self._day: str | None = None

    def write(self, result: Result, meter: str, now: float) -> None:
        day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        if day != self._day:
            self._day = day
            expire(self.directory, "noise-*.jsonl", self.max_age, now)
        path = self.directory / f"noise-{day}.jsonl"
        line = json.dumps(record(result, meter, now), separators=(",", ":")) + "\n"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size + len(line) > self.cap:
            self.dropped += 1
            return
        try:
            # Owner-only, like the spool: the records hold raw telegram bytes.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with open(fd, "a", encoding="utf-8") as out:
                out.write(line)
        except OSError:
            # A full or failing disk costs this diagnostic record, not the reader thread (and the
            # telegrams it holds); the spool reports the disk (p1_spool_write_errors_total).
            self.dropped += 1
