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

from dataclasses import dataclass
from datetime import datetime

from agent.core.fields import FieldValue

# Field names, spelled out once rather than per telegram.
_REGISTERS = {
    name: (f"{name}_kwh", tuple(f"{name}_t{t}_kwh" for t in range(1, 5)))
    for name in ("energy_import", "energy_export")
}
_AVERAGES = (("energy_import", "power_import_avg_kw"), ("energy_export", "power_export_avg_kw"))
_PHASES = tuple(
    (f"voltage_{p}_v", f"power_import_{p}_kw", f"power_export_{p}_kw", f"current_estimated_{p}_a")
    for p in ("l1", "l2", "l3")
)


def _total(fields: dict[str, FieldValue], name: str) -> float | None:
    total_name, tariff_names = _REGISTERS[name]
    get = fields.get
    total = get(total_name)
    if isinstance(total, float):
        return total
    # As sum() over the tariffs present, without building the list.
    found = False
    summed: float = 0
    for tariff in tariff_names:
        value = get(tariff)
        if isinstance(value, float):
            summed += value
            found = True
    return summed if found else None


STEPS = 10
MAX_WINDOW = 300.0


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
        return round(moved * 3600.0 / seconds, 6)


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
            for register, name in _AVERAGES:
                value = _total(fields, register)
                if value is None:
                    continue
                window = self._windows.get(register)
                if window is None:
                    self._windows[register] = _Window(meter_time, value)
                    continue
                average = window.average(meter_time, value, self.max_gap)
                if average is not None:
                    derived[name] = average
        derived.update(_estimated_current(fields))
        return derived


def _float(fields: dict[str, FieldValue], name: str) -> float | None:
    value = fields.get(name)
    return value if isinstance(value, float) else None


def _estimated_current(fields: dict[str, FieldValue]) -> dict[str, float]:
    result: dict[str, float] = {}
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
            result[estimate] = round(watts / volts, 3)
    if result:
        result["current_estimated_total_a"] = round(sum(result.values()), 3)
    elif voltages:
        imported = _float(fields, "power_import_kw")
        exported = _float(fields, "power_export_kw")
        if imported is not None or exported is not None:
            watts = ((imported or 0.0) + (exported or 0.0)) * 1000.0
            result["current_estimated_total_a"] = round(watts / (sum(voltages) / len(voltages)), 3)
    return result
