"""Is a candidate telegram physically possible after the meter's previous one? Sans-I/O.

Every check is one a real meter cannot fail: its clock moves forward, its registers never go down
and cannot grow faster than the connection allows, its voltages and frequency stay within what
the grid delivers. A wrong candidate that slipped past the CRC usually changed a digit somewhere;
these checks catch it when that digit matters.
"""

from __future__ import annotations

from agent.fields import FieldValue
from agent.repair.profile import History
from agent.telegram import Telegram

DEFAULT_MAX_KW = 100.0  # when the meter states no limiter threshold
MAX_CLOCK_GAP = 86_400.0


def _float(fields: dict[str, FieldValue], name: str) -> float | None:
    value = fields.get(name)
    return value if isinstance(value, float) and not isinstance(value, bool) else None


def implausible(telegram: Telegram, history: History | None) -> str | None:
    """The reason the candidate cannot be what the meter sent, or None when it may be."""
    fields = telegram.fields
    for name, value in fields.items():
        if not isinstance(value, float):
            continue
        if name.startswith("voltage_l") and not 100.0 <= value <= 300.0:
            return f"{name} {value}"
        if name == "frequency_hz" and not 45.0 <= value <= 55.0:
            return f"{name} {value}"
    if history is None:
        return None
    seconds = None
    if history.time is not None:
        if telegram.meter_time is None:
            return "meter time missing"
        seconds = (telegram.meter_time - history.time).total_seconds()
        if not 0 < seconds <= MAX_CLOCK_GAP:
            return f"meter time moved {seconds:+.0f} s"
    limit_kw = _float(history.fields, "limiter_threshold_kw")
    if limit_kw is None or not 0 < limit_kw < 1000:
        limit_kw = DEFAULT_MAX_KW
    before = history.fields
    if set(fields) != set(before) and seconds is not None and seconds < 3600:
        return "different readings than the previous telegram"
    hours = (seconds or 3600.0) / 3600.0
    for name, value in fields.items():
        old = before.get(name)
        if not isinstance(value, float) or not isinstance(old, float):
            continue
        if name.startswith("energy_"):
            # Registers never go down and grow at most at the limiter's power (plus one digit).
            if value < old or value - old > limit_kw * hours + 0.002:
                return f"{name} {old} → {value}"
        elif name.startswith(("power_failures", "voltage_sags", "voltage_swells")):
            if value < old or value - old > 10:
                return f"{name} {old} → {value}"
        elif name.startswith("power_") and name.endswith("_kw") and not 0 <= value <= limit_kw:
            return f"{name} {value}"
        elif (
            name.startswith("voltage_l")
            and seconds is not None
            and seconds < 600
            and abs(value - old) > 60
        ):
            return f"{name} {old} → {value}"
    for device in telegram.mbus:
        reading = device.reading
        if reading is None or not isinstance(reading.value, float):
            continue
        previous = history.mbus.get(device.equipment_id or str(device.channel))
        if previous is None:
            continue
        value, stamp = previous
        if reading.value < value:
            return f"M-Bus {device.kind} {value} → {reading.value}"
        if stamp is not None and reading.time is not None and reading.time < stamp:
            return f"M-Bus {device.kind} time went back"
    return None
