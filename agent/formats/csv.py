"""Results → CSV: one row per accepted telegram, a column per reading, for Excel and friends.

The columns are only known once every telegram has been seen (an M-Bus device may appear later),
so rows go to a temporary file first and the header is written in front of them at the end.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from datetime import datetime
from typing import TextIO

from agent.core.fields import FieldValue
from agent.core.pipeline import Result
from agent.core.points import billing_points, mbus_points

FIXED = ["meter_time", "utc_offset", "meter", "status"]


def _local(stamp: datetime) -> tuple[str, str]:
    """Excel reads `2024-03-31 03:00:10` as a date; the offset goes to its own column."""
    text = stamp.isoformat(sep=" ")
    return text[:19], text[19:]


class CsvWriter:
    SETTLE = 16  # rows held in memory before the columns are taken as settled

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._columns = list(FIXED)
        self._index = {name: i for i, name in enumerate(self._columns)}
        self._tmp = tempfile.TemporaryFile("w+", newline="", encoding="utf-8")  # noqa: SIM115
        self._rows = csv.writer(self._tmp)
        self._width: int | None = None  # column count when rows started going to the file
        # The first rows wait in memory: derived columns (average power) only appear with the
        # second telegram, and padding rows already on disk means reading them all back.
        self._first: list[list[FieldValue | None]] = []
        self._profile: object = None
        self._billing: list[tuple[str, FieldValue]] = []

    def _column(self, name: str) -> int:
        index = self._index.get(name)
        if index is None:
            index = self._index[name] = len(self._columns)
            self._columns.append(name)
        return index

    def _cells(self, result: Result) -> list[tuple[str, FieldValue]]:
        """M-Bus and billing cells; billing cells are reused while the profile line is unchanged."""
        telegram = result.telegram
        assert telegram is not None
        cells: list[tuple[str, FieldValue]] = []
        seen: set[str] = set()
        for point in mbus_points(telegram, telegram.meter):
            kind = point.tags["kind"]
            prefix = kind if kind not in seen else f"{kind}_{point.tags['device']}"
            seen.add(kind)
            for name, value in point.fields.items():
                cells.append((prefix + name[len(kind) :], value))
            if point.time is not None:
                cells.append((f"{prefix}_time", _local(point.time)[0]))
        profile = telegram.readings.get("0-0:98.1.0")
        if profile is not self._profile:
            self._profile = profile
            self._billing = []
            for point in billing_points(telegram, telegram.meter)[:1]:
                if "peak_time" in point.fields:
                    break  # Belgian monthly peaks: a history, not one row's worth of columns
                if point.time is not None:
                    self._billing.append(("billing_time", _local(point.time)[0]))
                self._billing.extend(
                    (f"billing_{name}", value) for name, value in point.fields.items()
                )
        cells.extend(self._billing)
        return cells

    def write(self, result: Result, time: tuple[datetime, str] | None = None) -> None:
        """`time`: for a meter without a usable clock, the time that stands in (in the meter's
        zone) and its source; it fills `meter_time` and a `time_source` column says so."""
        telegram = result.telegram
        if telegram is None:
            return
        row: list[FieldValue | None] = [None] * len(self._columns)
        if telegram.meter_time is not None:
            row[0], row[1] = _local(telegram.meter_time)
        elif time is not None:
            row[0], row[1] = _local(time[0])
            source = self._column("time_source")
            row += [None] * (len(self._columns) - len(row))
            row[source] = time[1]
        row[2] = telegram.meter
        row[3] = result.status
        index = self._index
        for name, value in (*result.fields.items(), *self._cells(result)):
            i = index.get(name)
            if i is None:
                i = self._column(name)
                row.append(None)
            row[i] = value
        if self._width is None:
            self._first.append(row)
            if len(self._first) >= self.SETTLE:
                self._settle()
            return
        self._rows.writerow(row)

    def _settle(self) -> None:
        width = self._width = len(self._columns)
        for row in self._first:
            self._rows.writerow(row + [None] * (width - len(row)))
        self._first = []

    def close(self) -> None:
        if self._width is None:
            self._settle()
        csv.writer(self._out).writerow(self._columns)
        self._tmp.seek(0)
        if self._width is None or self._width == len(self._columns):
            shutil.copyfileobj(self._tmp, self._out)
        else:  # columns appeared after the first rows: pad those rows to the full width
            writer = csv.writer(self._out)
            width = len(self._columns)
            for row in csv.reader(self._tmp):
                writer.writerow(row + [""] * (width - len(row)))
        self._tmp.close()
        self._out.flush()
