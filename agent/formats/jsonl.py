"""Results → JSONL records as design.md specifies (one per frame, in input order)."""

from __future__ import annotations

import json
from datetime import datetime
from itertools import compress
from operator import is_not
from typing import Any

from agent.core.memo import remember
from agent.core.pipeline import Result
from agent.core.telegram import Reading, Telegram

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_encode = _encoder.encode


def _reading(reading: Reading) -> dict[str, Any]:
    value = reading.value
    out: dict[str, Any]
    if isinstance(value, list):
        out = {"value": [_reading(entry) for entry in value]}
    elif value is None and reading.time is not None and reading.raw is None:
        return {"value": reading.time.isoformat()}  # a timestamp object such as 0-0:1.0.0
    else:
        out = {"value": value}
    if reading.unit:
        out["unit"] = reading.unit
    if reading.time is not None:
        out["time"] = reading.time.isoformat()
    if reading.start is not None:
        out["start"] = reading.start.isoformat()
    if reading.raw is not None:
        out["raw"] = reading.raw
    return out


def _head(result: Result, time: tuple[datetime, str] | None) -> dict[str, Any]:
    """The record of a frame up to its telegram (all of it for a rejected frame)."""
    telegram = result.telegram
    rec: dict[str, Any] = {"status": result.status}
    if telegram is None:
        rec["meter_time"] = None
        rec["reason"] = result.reason
        rec["offset"] = result.frame.offset
        rec["received"] = result.frame.text.decode("latin-1")
        return rec
    rec["meter_time"] = telegram.meter_time.isoformat() if telegram.meter_time else None
    if time is not None and telegram.meter_time is None:
        rec["time"], rec["time_source"] = time[0].isoformat(), time[1]
    rec["meter"] = telegram.meter
    return rec


def _tail(result: Result, telegram: Telegram) -> dict[str, Any]:
    """What follows the readings."""
    rec: dict[str, Any] = {}
    if telegram.unknown_lines:
        rec["unknown_lines"] = telegram.unknown_lines
    if result.derived:
        rec["derived"] = result.derived
    return rec


def record(result: Result, time: tuple[datetime, str] | None = None) -> dict[str, Any]:
    """`time`: for a meter without a usable clock, the time that stands in and its source
    (`received`, `start`, `log`), written as `time` and `time_source`."""
    rec = _head(result, time)
    telegram = result.telegram
    if telegram is None:
        return rec
    rec["telegram"] = result.frame.text.decode("latin-1")
    if result.repair is not None:
        rec["repair"] = result.repair.record()
    rec["readings"] = {obis: _reading(r) for obis, r in telegram.readings.items()}
    rec.update(_tail(result, telegram))
    return rec


class _Fragments:
    """Readings → their JSON text, the same bytes `json.dumps(record(…))` writes.

    Most readings of a telegram are the very objects of the one before (the decoder hands out
    again what did not change), so the pieces of the last telegram are kept and only those
    whose reading is another object are written anew; a number reading directly, anything else
    through `_reading`."""

    LIMIT = 4096

    def __init__(self) -> None:
        self.strings: dict[str, str] = {}  # OBIS keys and units as JSON strings
        self.starts: dict[str, str] = {}  # what comes before a number, per OBIS key
        self.ends: dict[str | None, str] = {}  # what comes after it, per unit
        # The last telegram's OBIS keys, readings and pieces, in one tuple: replaced whole,
        # so that a thread never sees the keys of one telegram with the pieces of another.
        self._last: tuple[list[str], list[Reading], list[str]] = ([], [], [])

    def string(self, text: str) -> str:
        encoded = self.strings.get(text)
        if encoded is None:
            return remember(self.strings, text, _encode(text), self.LIMIT)
        return encoded

    def piece(self, obis: str, reading: Reading) -> str:
        """`"obis":{…}`"""
        value = reading.value
        if (
            value.__class__ is float
            and value - value == 0.0  # finite: json writes NaN
            and reading.time is None
            and reading.start is None
            and reading.raw is None
        ):
            start = self.starts.get(obis) or self._start(obis)
            return start + repr(value) + (self.ends.get(reading.unit) or self._end(reading.unit))
        return self.string(obis) + ":" + _encode(_reading(reading))

    def _start(self, obis: str) -> str:
        """`"obis":{"value":`"""
        return remember(self.starts, obis, self.string(obis) + ':{"value":', self.LIMIT)

    def _end(self, unit: str | None) -> str:
        """`,"unit":"kWh"}`, or `}` without a unit."""
        end = ',"unit":' + self.string(unit) + "}" if unit else "}"
        return remember(self.ends, unit, end, self.LIMIT)

    def readings(self, telegram: Telegram) -> str:
        keys = list(telegram.readings)
        values = list(telegram.readings.values())
        last_keys, last_values, last_pieces = self._last
        if keys == last_keys:
            pieces = last_pieces.copy()
            # The readings that are other objects than last time, found in C.
            for i in compress(range(len(values)), map(is_not, values, last_values)):
                pieces[i] = self.piece(keys[i], values[i])
        else:
            pieces = [self.piece(obis, reading) for obis, reading in telegram.readings.items()]
        self._last = (keys, values, pieces)
        return "{" + ",".join(pieces) + "}"


_FRAGMENTS = _Fragments()


def dumps(result: Result, time: tuple[datetime, str] | None = None) -> str:
    """One record as JSON text: `json.dumps(record(result, time))`, compact, not ASCII-only."""
    head = _encode(_head(result, time))
    telegram = result.telegram
    if telegram is None:
        return head
    text = head[:-1] + ',"telegram":' + _text(result.frame.text)
    if result.repair is not None:
        text += ',"repair":' + _encode(result.repair.record())
    text += ',"readings":' + _FRAGMENTS.readings(telegram)
    tail = _tail(result, telegram)
    return text + ("," + _encode(tail)[1:] if tail else "}")


_NOT_CONTROL = bytes(range(0x20, 0x100))


def _text(raw: bytes) -> str:
    """Latin-1 bytes as the JSON string the encoder writes, by a few passes over the bytes (the
    encoder is slow on the 0xFF run): only `\\`, `"` and CR LF need escaping in a telegram."""
    if raw.translate(None, _NOT_CONTROL).strip(b"\r\n"):
        return _encode(raw.decode("latin-1"))  # other control bytes: its \u escapes
    escaped = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    return '"' + escaped.replace(b"\r", b"\\r").replace(b"\n", b"\\n").decode("latin-1") + '"'
