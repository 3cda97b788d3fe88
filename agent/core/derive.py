"""Values derived from consecutive telegrams, as the seed's scripts computed them. Sans-I/O.

- Average import/export power from the energy registers: shows whether the instantaneous power
  the meter reports represents the whole time. A register counts in steps (1 Wh on DSMR 5), so
  over one second the average is 0 W or 3 600 W; the window therefore grows until the register
  moved by at least `STEPS` of its steps (the error is then under 1/`STEPS`) or spans
  `MAX_WINDOW` seconds (the error under one step over that time, 12 W for 1 Wh in 5 minutes).
  The step is the smallest move seen. No average is written until a window is complete.
- Current estimated from active power and voltage: meters truncate current to whole amperes, so
  a 10 A reading may be anything from 10 to 10.99 A.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from agent.core.fields import FieldValue
from agent.core.rounding import round_to

# Field names, spelled out once rather than per telegram: per register its key, its total's
# field, its tariffs' fields and its average's field.
_AVERAGES: Final = tuple(
    (name, f"{name}_kwh", tuple(f"{name}_t{t}_kwh" for t in range(1, 5)), average)
    for name, average in (
        ("energy_import", "power_import_avg_kw"),
        ("energy_export", "power_export_avg_kw"),
    )
)
_PHASES: Final = tuple(
    (f"voltage_{p}_v", f"power_import_{p}_kw", f"power_export_{p}_kw", f"current_estimated_{p}_a")
    for p in ("l1", "l2", "l3")
)


def _total(get: Callable[[str], FieldValue | None], tariffs: tuple[str, ...]) -> float | None:
    """A register without its total: the tariffs present, added in order."""
    found = False
    summed = 0.0
    for tariff in tariffs:
        value = get(tariff)
        if isinstance(value, float):
            summed += value
            found = True
    return summed if found else None


STEPS: Final = 10
MAX_WINDOW: Final = 300.0


@dataclass(slots=True)
class _Window:
    """Where one register's average window starts, and the register's step."""

    time: datetime
    value: float
    step: float | None = None  # smallest move seen: the register's resolution

    def average(self, time: datetime, value: float, max_gap: float) -> float | None:
        seconds = (time - self.time).total_seconds()
        moved = value - self.value
        if seconds <= 0 or seconds > max_gap or moved < 0:
            self.time, self.value = time, value  # a gap, a clock or register gone back
            return None
        if moved > 0 and (self.step is None or moved < self.step):
            self.step = moved
        wide = self.step is not None and moved >= STEPS * self.step * (1 - 1e-9)
        if not wide and seconds < MAX_WINDOW:
            return None
        self.time, self.value = time, value
        return round_to(moved * 3600.0 / seconds, 6)


class Deriver:
    """Keeps the average windows of one meter's registers. `max_gap` bounds the time over which
    an average is still meaningful (a gap after an outage would smear it)."""

    def __init__(self, max_gap_seconds: float = 900.0) -> None:
        self.max_gap = max_gap_seconds
        self._windows: dict[str, _Window] = {}

    def derive(
        self, meter_time: datetime | None, fields: dict[str, FieldValue]
    ) -> dict[str, float]:
        derived: dict[str, float] = {}
        if meter_time is not None:
            get = fields.get
            windows = self._windows
            for register, total, tariffs, name in _AVERAGES:
                value = get(total)
                if not isinstance(value, float):
                    value = _total(get, tariffs)
                    if value is None:
                        continue
                window = windows.get(register)
                if window is None:
                    windows[register] = _Window(meter_time, value)
                    continue
                average = window.average(meter_time, value, self.max_gap)
                if average is not None:
                    derived[name] = average
        _estimated_current(fields, derived)
        return derived


def _float(fields: dict[str, FieldValue], name: str) -> float | None:
    value = fields.get(name)
    return value if isinstance(value, float) else None


def _estimated_current(fields: dict[str, FieldValue], derived: dict[str, float]) -> None:
    """Into `derived`: the current of each phase with a voltage and a power, and their total."""
    currents = []
    voltages = []
    get = fields.get  # inlined _float: this runs for every phase of every telegram
    for voltage, power_in, power_out, estimate in _PHASES:
        volts = get(voltage)
        if not isinstance(volts, float) or volts <= 0:
            continue
        voltages.append(volts)
        imported = get(power_in)
        exported = get(power_out)
        if not isinstance(imported, float):
            imported = None
        if not isinstance(exported, float):
            exported = None
        if imported is not None or exported is not None:
            watts = ((imported or 0.0) + (exported or 0.0)) * 1000.0
            current = derived[estimate] = round_to(watts / volts, 3)
            currents.append(current)
    if currents:
        derived["current_estimated_total_a"] = round_to(sum(currents), 3)
    elif voltages:
        imported = _float(fields, "power_import_kw")
        exported = _float(fields, "power_export_kw")
        if imported is not None or exported is not None:
            watts = ((imported or 0.0) + (exported or 0.0)) * 1000.0
            average = sum(voltages) / len(voltages)
            derived["current_estimated_total_a"] = round_to(watts / average, 3)
