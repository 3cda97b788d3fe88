"""Results → CSV: one row per accepted telegram, a column per reading, for Excel and friends.

The columns are only known once every telegram has been seen (an M-Bus device may appear later),
so rows go to a temporary file first and the header is written in front of them at the end.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator
from datetime import datetime
from typing import IO, TextIO

from agent.core.fields import FieldValue
from agent.core.pipeline import Result
from agent.core.points import billing_points, mbus_points
from agent.formats.output import CHUNK, copy_bytes, write_bytes

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
        self._data = tempfile.TemporaryFile()  # noqa: SIM115
        self._tmp = io.TextIOWrapper(self._data, encoding="utf-8", newline="")
        self._rows = csv.writer(self._tmp)
        self._width: int | None = None  # column count when rows started going to the file
        # Rows on file per width, in order: [width, rows]; more than one when columns appeared
        # after rows had gone to the file (the average power once its window is complete).
        self._widths: list[list[int]] = []
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
        self._file_row(row)

    def _file_row(self, row: list[FieldValue | None]) -> None:
        self._rows.writerow(row)
        widths = self._widths
        if widths and widths[-1][0] == len(row):
            widths[-1][1] += 1
        else:
            widths.append([len(row), 1])

    def _settle(self) -> None:
        width = self._width = len(self._columns)
        for row in self._first:
            self._file_row(row + [None] * (width - len(row)))
        self._first = []

    def close(self) -> None:
        if self._width is None:
            self._settle()
        csv.writer(self._out).writerow(self._columns)
        self._tmp.flush()
        data = self._data
        data.seek(0)
        width = len(self._columns)
        if all(w == width for w, _ in self._widths):
            copy_bytes(data, self._out)
        else:
            # Columns appeared after rows went to the file: those rows get empty cells at the
            # end, as commas, since CRLF ends rows and nothing else (no value holds one).
            batch: list[bytes] = []
            size = 0
            for w, count in self._widths:
                pad = b"," * (width - w) + b"\r\n"
                for row in _records(data, count):
                    batch.append(row + pad)
                    size += len(row)
                    if size >= CHUNK:  # in pieces: the rows of a year do not fit in memory
                        write_bytes(self._out, b"".join(batch))
                        batch, size = [], 0
            write_bytes(self._out, b"".join(batch))
        self._tmp.close()
        self._out.flush()


def _records(data: IO[bytes], count: int) -> Iterator[bytes]:
    """The next `count` CSV rows of `data`, without their CRLF."""
    for _ in range(count):
        row = b""
        while not row.endswith(b"\r\n"):
            line = data.readline()
            if not line:
                raise ValueError("a CSV row was cut short")
            row += line
        yield row[:-2]
