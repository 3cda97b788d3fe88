"""Telegram → points: the InfluxDB schema of design.md, shared by line protocol and CSV.

Measurement `p1`: one point per telegram at meter time, fields named by meaning with the unit as
suffix (`energy_import_kwh`); numbers are floats. `p1_mbus`: gas, water and heat devices at their
own capture time, tagged by equipment identifier so a series survives a channel change.
`p1_billing`: the monthly billing profile (Hungary) or monthly peaks (Belgium).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from agent.core.fields import FieldValue, scaled, unit_field
from agent.core.obis import BILLING_PROFILE_CODES, billing_name
from agent.core.telegram import Reading, Telegram, clock_set


@dataclass(slots=True)
class Point:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time: datetime | None  # aware; None when the meter sends no clock


def telegram_fields(telegram: Telegram) -> dict[str, FieldValue]:
    """The `p1` fields of a telegram (without `repaired` and derived values)."""
    return dict(telegram.fields)


def mbus_points(telegram: Telegram, meter: str, time: datetime | None = None) -> list[Point]:
    """`time` stands in for a capture time the device does not give (or gives unset)."""
    points = []
    for device in telegram.mbus:
        reading = device.reading
        if reading is None or not isinstance(reading.value, float) or not reading.unit:
            continue  # empty channel (`(700101010000W)(00000000)`)
        name, factor = unit_field(device.kind, reading.unit)
        tags = {
            "meter": meter,
            "kind": device.kind,
            "device": device.equipment_id or f"channel-{device.channel}",
        }
        stamp = reading.time
        if stamp is None or not clock_set(stamp):
            stamp = time
        points.append(Point("p1_mbus", tags, {name: scaled(reading.value, factor)}, stamp))
    return points


def billing_points(telegram: Telegram, meter: str) -> list[Point]:
    profile = telegram.readings.get("0-0:98.1.0")
    if profile is None or not isinstance(profile.value, list):
        return []
    tags = {"meter": meter}
    if profile.time is not None:  # Hungarian billing profile
        entries = _entry_fields(profile)
        return [Point("p1_billing", tags, dict(entries), profile.time)] if entries else []
    points = []
    for peak in profile.value:  # Belgian monthly peaks, one point per month
        if isinstance(peak.value, float) and peak.start is not None:
            name, factor = unit_field("demand_import_month_max", peak.unit)
            fields: dict[str, FieldValue] = {name: scaled(peak.value, factor)}
            if peak.time is not None:
                fields["peak_time"] = peak.time.isoformat()
            points.append(Point("p1_billing", tags, fields, peak.start))
    return points


# The profile changes once a month and its line is decoded once while it repeats (the
# decoder's line cache hands out the same Reading): its fields are made once per Reading,
# which the entry holds, so that its id cannot be reused.
_BILLING: Final[dict[int, tuple[Reading, dict[str, FieldValue]]]] = {}
_BILLING_LIMIT: Final = 256


def _entry_fields(profile: Reading) -> dict[str, FieldValue]:
    """The billing profile's fields; shared, so callers copy them."""
    cached = _BILLING.get(id(profile))
    if cached is not None and cached[0] is profile:
        return cached[1]
    assert isinstance(profile.value, list)
    fields: dict[str, FieldValue] = {}
    for code, entry in zip(BILLING_PROFILE_CODES, profile.value, strict=False):
        if isinstance(entry.value, float):
            name, factor = unit_field(billing_name(code), entry.unit)
            fields[name] = scaled(entry.value, factor)
    if len(_BILLING) >= _BILLING_LIMIT:
        _BILLING.clear()
    _BILLING[id(profile)] = (profile, fields)
    return fields


def telegram_points(
    telegram: Telegram,
    *,
    meter: str,
    fields: dict[str, FieldValue],
    repaired: bool = False,
    time: datetime | None = None,
) -> list[Point]:
    """All points for one accepted telegram; `fields` from `telegram_fields` plus derived values.
    `time` stands in when the meter sends no clock."""
    stamp = telegram.meter_time or time
    main = Point("p1", {"meter": meter}, {**fields, "repaired": repaired}, stamp)
    return [main, *mbus_points(telegram, meter, stamp), *billing_points(telegram, meter)]
