"""Results → JSONL records as design.md specifies (one per frame, in input order)."""

from __future__ import annotations

import json
from typing import Any

from agent.pipeline import Result
from agent.telegram import Reading


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


def record(result: Result) -> dict[str, Any]:
    telegram = result.telegram
    rec: dict[str, Any] = {"status": result.status}
    if telegram is None:
        rec["meter_time"] = None
        rec["reason"] = result.reason
        rec["offset"] = result.frame.offset
        rec["received"] = result.frame.text.decode("latin-1")
        return rec
    rec["meter_time"] = telegram.meter_time.isoformat() if telegram.meter_time else None
    rec["meter"] = telegram.meter
    rec["telegram"] = result.frame.text.decode("latin-1")
    if result.repair is not None:
        rec["repair"] = result.repair
    rec["readings"] = {obis: _reading(r) for obis, r in telegram.readings.items()}
    if telegram.unknown_lines:
        rec["unknown_lines"] = telegram.unknown_lines
    if result.derived:
        rec["derived"] = result.derived
    return rec


def dumps(result: Result) -> str:
    return json.dumps(record(result), ensure_ascii=False, separators=(",", ":"))
