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
from itertools import compress
from operator import is_not
from typing import IO, TextIO

from agent.core.fields import FieldValue
from agent.core.pipeline import Result
from agent.core.points import billing_points, mbus_points
from agent.formats.floats import TEXTS, float_text
from agent.formats.output import CHUNK, copy_bytes, write_bytes

FIXED = ["meter_time", "utc_offset", "meter", "status"]


def _local(stamp: datetime) -> tuple[str, str]:
    """Excel reads `2024-03-31 03:00:10` as a date; the offset goes to its own column."""
    text = stamp.isoformat(sep=" ")
    return text[:19], text[19:]


def _cell(value: FieldValue | None) -> str:
    """A value as `csv.writer` writes it (`,` `"` CRLF, minimal quoting): rows are joined here,
    so that a value the row before held is not formatted again."""
    if value.__class__ is float:
        return TEXTS.get(value) or float_text(value)
    if value is None:
        return ""
    if isinstance(value, str) and not any(map(value.__contains__, _QUOTED)):
        return value
    buffer = io.StringIO()  # quotes or another type: rare, the csv module says how
    csv.writer(buffer).writerow((value, None))
    return buffer.getvalue()[: -len(",\r\n")]


_QUOTED = (",", '"', "\r", "\n")  # what makes csv.writer quote a text
# A row's cells: (names, values), in the order their columns were made.
_Cells = tuple[list[str], list[FieldValue]]


class CsvWriter:
    SETTLE = 16  # rows held in memory before the columns are taken as settled
    LAYOUTS = 64  # row layouts remembered

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._columns = list(FIXED)
        self._index = {name: i for i, name in enumerate(self._columns)}
        self._data = tempfile.TemporaryFile()  # noqa: SIM115
        self._tmp = io.TextIOWrapper(self._data, encoding="utf-8", newline="")
        self._width: int | None = None  # column count when rows started going to the file
        # Rows on file per width, in order: [width, rows, offset of the first]; more than one
        # when columns appeared after rows had gone to the file (the average power once its
        # window is complete).
        self._widths: list[list[int]] = []
        # The first rows wait in memory: derived columns (average power) only appear with the
        # second telegram, and padding rows already on disk means reading them all back.
        self._first: list[list[str]] = []
        self._profile: object = None
        self._billing: _Cells = ([], [])
        # Per row layout (its cells' names), the last such row: its cells' values, their columns
        # and the row's texts. Only the cells whose value is another object than in that row are
        # formatted again (most are the very objects of the telegram before); layouts, as cells
        # come and go (the average power, every other telegram).
        self._last: dict[tuple[str, ...], tuple[list[FieldValue], list[int], list[str]]] = {}

    def _column(self, name: str) -> int:
        index = self._index.get(name)
        if index is None:
            index = self._index[name] = len(self._columns)
            self._columns.append(name)
        return index

    def _cells(self, result: Result, names: list[str], values: list[FieldValue]) -> None:
        """M-Bus and billing cells, added to `names` and `values`; billing cells are reused
        while the profile line is unchanged."""
        telegram = result.telegram
        assert telegram is not None
        seen: set[str] = set()
        for point in mbus_points(telegram, telegram.meter):
            kind = point.tags["kind"]
            prefix = kind if kind not in seen else f"{kind}_{point.tags['device']}"
            seen.add(kind)
            for name, value in point.fields.items():
                names.append(prefix + name[len(kind) :])
                values.append(value)
            if point.time is not None:
                names.append(f"{prefix}_time")
                values.append(_local(point.time)[0])
        profile = telegram.readings.get("0-0:98.1.0")
        if profile is not self._profile:
            self._profile = profile
            billing: _Cells = ([], [])
            self._billing = billing
            for point in billing_points(telegram, telegram.meter)[:1]:
                if "peak_time" in point.fields:
                    break  # Belgian monthly peaks: a history, not one row's worth of columns
                if point.time is not None:
                    billing[0].append("billing_time")
                    billing[1].append(_local(point.time)[0])
                billing[0].extend(f"billing_{name}" for name in point.fields)
                billing[1].extend(point.fields.values())
        names += self._billing[0]
        values += self._billing[1]

    def write(self, result: Result, time: tuple[datetime, str] | None = None) -> None:
        """`time`: for a meter without a usable clock, the time that stands in (in the meter's
        zone) and its source; it fills `meter_time` and a `time_source` column says so."""
        telegram = result.telegram
        if telegram is None:
            return
        stamp, offset = "", ""
        names: list[str] = []
        values: list[FieldValue] = []
        if telegram.meter_time is not None:
            stamp, offset = _local(telegram.meter_time)
        elif time is not None:
            stamp, offset = _local(time[0])
            names.append("time_source")
            values.append(time[1])
        names += result.fields
        values += result.fields.values()
        self._cells(result, names, values)
        layout = tuple(names)
        last = self._last.get(layout)
        if last is not None:
            _, where, row = last
            row = row.copy()
            texts = TEXTS
            for i in compress(range(len(values)), map(is_not, values, last[0])):
                value = values[i]  # a float inline: this loop runs for most values
                if value.__class__ is float:
                    row[where[i]] = texts.get(value) or float_text(value)
                else:
                    row[where[i]] = _cell(value)
            if len(row) < len(self._columns):  # columns made since by rows of other names
                row += [""] * (len(self._columns) - len(row))
            self._last[layout] = (values, where, row)
        else:
            where = [self._column(name) for name in names]
            row = [""] * len(self._columns)
            for i, value in zip(where, values, strict=True):
                row[i] = _cell(value)  # a name twice: the last value wins
            if len(self._last) >= self.LAYOUTS:
                self._last.clear()
            if len(set(where)) == len(where):  # reused only while each cell has its own column
                self._last[layout] = (values, where, row)
        row[0], row[1], row[2], row[3] = stamp, offset, _cell(telegram.meter), _cell(result.status)
        if self._width is None:
            self._first.append(row)
            if len(self._first) >= self.SETTLE:
                self._settle()
            return
        self._file_row(row)

    def _file_row(self, row: list[str]) -> None:
        widths = self._widths
        if widths and widths[-1][0] == len(row):
            widths[-1][1] += 1
        else:
            self._tmp.flush()
            widths.append([len(row), 1, self._data.tell()])
        self._tmp.write(",".join(row) + "\r\n")

    def _settle(self) -> None:
        width = self._width = len(self._columns)
        for row in self._first:
            self._file_row(row + [""] * (width - len(row)))
        self._first = []

    def close(self) -> None:
        if self._width is None:
            self._settle()
        csv.writer(self._out).writerow(self._columns)
        self._tmp.flush()
        data = self._data
        width = len(self._columns)
        # Rows filed before columns appeared get empty cells at the end, as commas, since CRLF
        # ends rows and nothing else (no value holds one); the others are copied as they are.
        ends = [start for _, _, start in self._widths[1:]] + [data.seek(0, 2)]
        data.seek(0)
        for (w, count, start), end in zip(self._widths, ends, strict=False):
            if w == width:
                copy_bytes(data, self._out, end - start)
                continue
            batch: list[bytes] = []
            size = 0
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
