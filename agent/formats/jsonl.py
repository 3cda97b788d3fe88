"""Results → JSONL records as design.md specifies (one per frame, in input order)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from itertools import compress
from operator import is_not
from typing import Any

from agent.core.memo import remember
from agent.core.pipeline import Result
from agent.core.telegram import Reading, Telegram
from agent.formats.floats import TEXTS, float_text

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
        # Per meter, the last telegram's OBIS keys, readings and pieces and the pieces' starts,
        # in one tuple: replaced whole, so that a thread never sees the keys of one telegram
        # with the pieces of another.
        self._last: dict[str, tuple[list[str], list[Reading], list[str], list[str]]] = {}

    def string(self, text: str) -> str:
        encoded = self.strings.get(text)
        if encoded is None:
            return remember(self.strings, text, _encode(text), self.LIMIT)
        return encoded

    def _start(self, obis: str) -> str:
        """`"obis":{"value":`"""
        start = self.starts.get(obis)
        if start is None:
            return remember(self.starts, obis, self.string(obis) + ':{"value":', self.LIMIT)
        return start

    def _end(self, unit: str | None) -> str:
        """`,"unit":"kWh"}`, or `}` without a unit."""
        end = ',"unit":' + self.string(unit) + "}" if unit else "}"
        return remember(self.ends, unit, end, self.LIMIT)

    def readings(self, telegram: Telegram, meter: str) -> str:
        keys = list(telegram.readings)
        values = list(telegram.readings.values())
        last = self._last.get(meter)
        changed: Iterable[int]
        if last is not None and keys == last[0]:
            starts, pieces = last[3], last[2].copy()
            # The readings that are other objects than last time, found in C.
            changed = compress(range(len(values)), map(is_not, values, last[1]))
        else:
            starts, pieces = [self._start(obis) for obis in keys], [""] * len(keys)
            changed = range(len(keys))
            if len(self._last) >= self.LIMIT:
                self._last.clear()
        ends, texts = self.ends, TEXTS
        for i in changed:
            reading = values[i]
            value, unit, time, start, raw = reading
            if value.__class__ is float and time is None and start is None and raw is None:
                if value - value == 0.0:  # finite: json writes NaN
                    # `"obis":{"value":1.5,"unit":"kWh"}` from remembered pieces, inline: this
                    # loop runs for most readings.
                    pieces[i] = (
                        starts[i]
                        + (texts.get(value) or float_text(value))
                        + (ends.get(unit) or self._end(unit))
                    )
                    continue
            elif value is None and time is not None and raw is None:
                # A timestamp object (the clock, 0-0:1.0.0): new in every telegram.
                pieces[i] = self.string(keys[i]) + ':{"value":"' + time.isoformat() + '"}'
                continue
            pieces[i] = self.string(keys[i]) + ":" + _encode(_reading(reading))
        self._last[meter] = (keys, values, pieces, starts)
        return "{" + ",".join(pieces) + "}"


_FRAGMENTS = _Fragments()


def _head_text(result: Result, time: tuple[datetime, str] | None) -> str:
    """`_encode(_head(result, time))` without its closing brace, for an accepted telegram built
    from remembered pieces (an ISO time holds nothing JSON escapes)."""
    telegram = result.telegram
    if telegram is None:
        return _encode(_head(result, time))[:-1]
    string = _FRAGMENTS.string
    stamp = telegram.meter_time
    text = '{"status":' + string(result.status)
    text += ',"meter_time":"' + stamp.isoformat() + '"' if stamp else ',"meter_time":null'
    if time is not None and stamp is None:
        text += ',"time":"' + time[0].isoformat() + '","time_source":' + string(time[1])
    return text + ',"meter":' + string(telegram.meter)


def encode(result: Result, time: tuple[datetime, str] | None = None) -> bytes:
    """One record and its line end in UTF-8: `dumps(result, time) + "\\n"`, encoded. The
    telegram's text goes from its bytes to UTF-8 directly; the rest is ASCII (or nearly), whose
    encoding is a copy."""
    head = _head_text(result, time)
    telegram = result.telegram
    if telegram is None:
        return (head + "}\n").encode()
    text = ',"readings":' + _FRAGMENTS.readings(telegram, telegram.meter)
    if result.repair is not None:
        text = ',"repair":' + _encode(result.repair.record()) + text
    tail = _tail(result, telegram)
    text += "," + _encode(tail)[1:] + "\n" if tail else "}\n"
    return b"".join(((head + ',"telegram":').encode(), _text(result.frame.text), text.encode()))


def dumps(result: Result, time: tuple[datetime, str] | None = None) -> str:
    """One record as JSON text: `json.dumps(record(result, time))`, compact, not ASCII-only."""
    return encode(result, time)[:-1].decode()


# Per byte: 0 for a control byte (after escaping, none is left but those JSON writes as \\u),
# 1 for ASCII, 2 for a byte that is two in UTF-8.
_KINDS = bytes(0 if b < 0x20 else 1 if b < 0x80 else 2 for b in range(256))
# What runs from the first byte from 0x80 on to the last becomes in UTF-8: a meter's bytes
# there repeat (the Hungarian meter's 1024 × 0xFF), and converting them is the slow part.
_UTF8: dict[bytes, bytes] = {}
_UTF8_LIMIT = 64


def _text(raw: bytes) -> bytes:
    """Latin-1 bytes as the JSON string the encoder writes, in UTF-8, by a few passes over the
    bytes (the encoder is slow on the 0xFF run): only `\\`, `"` and CR LF need escaping in a
    telegram, and only bytes from 0x80 on become two in UTF-8."""
    escaped = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
    escaped = escaped.replace(b"\r", b"\\r").replace(b"\n", b"\\n")
    kinds = escaped.translate(_KINDS)
    if 0 in kinds:
        return _encode(raw.decode("latin-1")).encode()  # other control bytes: its \\u escapes
    start = kinds.find(2)
    if start < 0:
        return b'"' + escaped + b'"'
    end = kinds.rfind(2) + 1
    high = escaped[start:end]
    utf8 = _UTF8.get(high)
    if utf8 is None:
        if len(_UTF8) >= _UTF8_LIMIT:
            _UTF8.clear()
        utf8 = _UTF8[high] = high.decode("latin-1").encode()
    return b"".join((b'"', escaped[:start], utf8, escaped[end:], b'"'))
