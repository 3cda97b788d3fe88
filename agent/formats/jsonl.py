"""Results → JSONL records as design.md specifies (one per frame, in input order)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from agent.core.pipeline import Result
from agent.core.telegram import Reading


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


def record(result: Result, time: tuple[datetime, str] | None = None) -> dict[str, Any]:
    """`time`: for a meter without a usable clock, the time that stands in and its source
    (`received`, `start`, `log`), written as `time` and `time_source`."""
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
    rec["telegram"] = result.frame.text.decode("latin-1")
    if result.repair is not None:
        rec["repair"] = result.repair.record()
    rec["readings"] = {obis: _reading(r) for obis, r in telegram.readings.items()}
    if telegram.unknown_lines:
        rec["unknown_lines"] = telegram.unknown_lines
    if result.derived:
        rec["derived"] = result.derived
    return rec


def dumps(result: Result, time: tuple[datetime, str] | None = None) -> str:
    return json.dumps(record(result, time), ensure_ascii=False, separators=(",", ":"))
