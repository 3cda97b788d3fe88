"""Retention of the data directory's daily files (raw captures, noise logs): days older than the
configured age are deleted, so a capture kept on an SD card cannot fill it over the years. And
the rule by which the local store thins readings older than `--spool-downsample-after`."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from pathlib import Path

from agent.lazylog import LazyLogger
from agent.sinks.linepack import series

log = LazyLogger("p1-agent.retention")

_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2})\.")


def expire(directory: Path, pattern: str, max_age: float, now: float) -> list[Path]:
    """Delete the files matching `pattern` whose UTC date in the name (`-YYYY-MM-DD.`) is over
    `max_age` seconds before `now`; 0 keeps everything. The files deleted."""
    if max_age <= 0:
        return []
    oldest = time.strftime("%Y-%m-%d", time.gmtime(now - max_age))
    gone = []
    for path in sorted(directory.glob(pattern)):
        match = _DATED.search(path.name)
        if match is None or match.group(1) >= oldest:
            continue
        try:
            path.unlink()
        except OSError as exc:
            log.error("cannot delete an expired file", path=str(path), error=str(exc))
            continue
        gone.append(path)
    if gone:
        log.info("expired daily files deleted", directory=str(directory), files=len(gone))
    return gone


def last_per_minute(lines: Iterable[tuple[int, str]]) -> set[int]:
    """The store's downsampling rule: of lines (id, line protocol), the ids to keep, which are
    the last line (highest id) of each series in each minute of its point's time; a line
    without a time is kept. The last reading rather than a mean: energy registers stay exact
    and a kept point is one the meter sent."""
    last: dict[tuple[str, int], int] = {}
    keep: set[int] = set()
    for i, line in lines:
        try:
            minute = int(line.rpartition(" ")[2]) // 60
        except ValueError:
            keep.add(i)
            continue
        key = (series(line), minute)
        last[key] = max(i, last.get(key, i))
    return keep | set(last.values())
