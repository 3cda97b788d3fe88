"""`p1-agent export`: the points in the local store or spool, as line protocol, JSONL or CSV.

CSV has one row per point: `time` (ISO 8601, UTC), `measurement`, the tags (`meter`, `kind`,
`device`, then any other tag, sorted), then every field name seen, in order of first appearance;
a point leaves the cells of other measurements' fields empty. The columns are only known after
the last point, so the parsed points wait in a temporary file, and the store is read once (a
running agent may append or delete meanwhile; the export is one consistent pass).
"""

from __future__ import annotations

import csv
import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from agent.core.fields import FieldValue
from agent.formats.lineparse import ParsedPoint, parse
from agent.sinks.spool import Spool, reader

FORMATS = ("line-protocol", "jsonl", "csv")
TAG_COLUMNS = ["meter", "kind", "device"]


def _time(point: ParsedPoint) -> str | None:
    if point.time is None:
        return None
    return datetime.fromtimestamp(point.time, UTC).isoformat()


def _record(point: ParsedPoint) -> dict[str, object]:
    return {
        "measurement": point.measurement,
        "tags": point.tags,
        "fields": point.fields,
        "time": _time(point),
    }


def _cell(value: FieldValue | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else value


def _write_csv(spool: Spool, out: TextIO) -> int:
    tags: set[str] = set()
    fields: dict[str, None] = {}  # insertion-ordered set
    count = 0
    with tempfile.TemporaryFile("w+", encoding="utf-8") as held:
        for line in spool.lines():
            point = parse(line)
            tags.update(point.tags)
            fields.update(dict.fromkeys(point.fields))
            held.write(json.dumps(_record(point)) + "\n")
            count += 1
        tag_columns = TAG_COLUMNS + sorted(tags - set(TAG_COLUMNS))
        writer = csv.writer(out)
        writer.writerow(["time", "measurement", *tag_columns, *fields])
        held.seek(0)
        for text in held:
            record = json.loads(text)
            writer.writerow(
                [
                    record["time"] or "",
                    record["measurement"],
                    *(record["tags"].get(tag, "") for tag in tag_columns),
                    *(_cell(record["fields"].get(name)) for name in fields),
                ]
            )
    return count


def export(spool_path: Path, fmt: str, out: TextIO) -> int:
    """Write every spooled point to `out` in `fmt` (one of FORMATS); returns the point count."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)})")
    spool = reader(spool_path)
    try:
        if fmt == "csv":
            return _write_csv(spool, out)
        count = 0
        for line in spool.lines():
            out.write(
                line + "\n" if fmt == "line-protocol" else json.dumps(_record(parse(line))) + "\n"
            )
            count += 1
        return count
    finally:
        spool.close()
