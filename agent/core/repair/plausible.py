"""Is a candidate telegram physically possible after the meter's previous one? Sans-I/O.

Every check is one a real meter cannot fail: its clock moves forward, its registers never go down
and cannot grow faster than the connection allows, its voltages and frequency stay within what
the grid delivers. A wrong candidate that slipped past the CRC usually changed a digit somewhere;
these checks catch it when that digit matters.
"""

from __future__ import annotations

from datetime import timedelta

from agent.core.fields import FieldValue
from agent.core.repair.profile import History
from agent.core.telegram import Telegram

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
    inconsistent = _inconsistent(fields)
    if inconsistent is not None:
        return inconsistent
    future = _from_the_future(telegram)
    if future is not None:
        return future
    if history is None:
        return None
    seconds = None
    if history.time is not None:
        if telegram.meter_time is None:
            return "meter time missing"
        seconds = (telegram.meter_time - history.time).total_seconds()
        if not 0 < seconds <= MAX_CLOCK_GAP:
            return f"meter time moved {seconds:+.0f} s"
        if history.grid > 1 and seconds % history.grid:
            return f"meter time moved {seconds:+.0f} s, off its {history.grid}-s steps"
    limit_kw = _float(history.fields, "limiter_threshold_kw")
    if limit_kw is None or not 0 < limit_kw < 1000:
        limit_kw = DEFAULT_MAX_KW
    before = history.fields
    if set(fields) != set(before) and seconds is not None and seconds < 3600:
        return "different readings than the previous telegram"
    for total, parts in SUMS:
        if adds_up(before, total, parts) is True and adds_up(fields, total, parts) is False:
            return f"{total} is not the sum of {', '.join(parts)}"
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
        if stamp is not None and reading.time is not None:
            if reading.time < stamp:
                return f"M-Bus {device.kind} time went back"
            if reading.time == stamp and reading.value != value:
                # The device reports every few minutes; between reports the value stands still.
                return f"M-Bus {device.kind} {value} → {reading.value} at the same capture time"
    return None


# Registers whose total the meter writes beside its parts (the Hungarian meter: 1.8.0 = Σ 1.8.1–4,
# 2.8.0 likewise, 3.8.0 = 5.8.0 + 6.8.0, 4.8.0 = 7.8.0 + 8.8.0). Checked only where the meter's
# previous telegram satisfied the identity, so a meter that counts otherwise is never refused.
SUMS = (
    ("energy_import_kwh", tuple(f"energy_import_t{t}_kwh" for t in range(1, 5))),
    ("energy_export_kwh", tuple(f"energy_export_t{t}_kwh" for t in range(1, 5))),
    ("energy_reactive_import_kvarh", ("energy_reactive_q1_kvarh", "energy_reactive_q2_kvarh")),
    ("energy_reactive_export_kvarh", ("energy_reactive_q3_kvarh", "energy_reactive_q4_kvarh")),
)
_SUM_SLACK = 0.0015  # the parts are truncated to the last digit each


def adds_up(fields: dict[str, FieldValue], total: str, parts: tuple[str, ...]) -> bool | None:
    """Whether the total equals the sum of its parts; None when the meter does not send them."""
    whole = _float(fields, total)
    values = [v for v in (_float(fields, p) for p in parts) if v is not None]
    if whole is None or len(values) < 2:
        return None
    return abs(whole - sum(values)) <= _SUM_SLACK * len(values)


# M-Bus devices and demand peaks are captured by the meter's own clock: never after it.
_CLOCK_SLACK = timedelta(hours=1)


def _from_the_future(telegram: Telegram) -> str | None:
    now = telegram.meter_time
    if now is None:
        return None
    stamps = [(f"M-Bus {d.kind}", d.reading.time) for d in telegram.mbus if d.reading is not None]
    peak = telegram.readings.get("1-0:1.6.0")
    if peak is not None:
        stamps.append(("1-0:1.6.0", peak.time))
    for what, stamp in stamps:
        if stamp is not None and stamp > now + _CLOCK_SLACK:
            return f"{what} captured at {stamp.isoformat()}, after the meter's {now.isoformat()}"
    return None


# Power cannot exceed what the phase's voltage and current carry. Meters truncate current to whole
# amperes and sample power and current at slightly different moments, hence the margins.
_CURRENT_MARGIN_A = 1.0
_POWER_SLACK = 1.25
_POWER_SLACK_KW = 0.1
_PHASES = tuple(
    (f"voltage_{p}_v", f"current_{p}_a", f"power_import_{p}_kw", f"power_export_{p}_kw")
    for p in ("l1", "l2", "l3")
)


def _inconsistent(fields: dict[str, FieldValue]) -> str | None:
    """Instantaneous values that contradict each other within one telegram."""
    capacity_kw = 0.0
    phases = 0
    for voltage, current, imported, exported in _PHASES:
        volts = _float(fields, voltage)
        amps = _float(fields, current)
        if volts is None or amps is None:
            continue
        phases += 1
        limit = volts * (amps + _CURRENT_MARGIN_A) / 1000.0
        capacity_kw += limit
        for name in (imported, exported):
            power = _float(fields, name)
            if power is not None and power > limit * _POWER_SLACK + _POWER_SLACK_KW:
                return f"{name} {power} above {volts} V × {amps} A"
    if phases:
        for name in ("power_import_kw", "power_export_kw"):
            power = _float(fields, name)
            if power is not None and power > capacity_kw * _POWER_SLACK + _POWER_SLACK_KW:
                return f"{name} {power} above what the phases carry"
    return None
