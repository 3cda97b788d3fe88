"""Values derived from consecutive telegrams, as the seed's scripts computed them. Sans-I/O.

- Average import/export power over the interval, from the energy registers: shows whether the
  instantaneous power the meter reports represents the whole interval.
- Current estimated from active power and voltage: meters truncate current to whole amperes, so
  a 10 A reading may be anything from 10 to 10.99 A.
"""

from __future__ import annotations

from datetime import datetime

from agent.fields import FieldValue

# Field names, spelled out once rather than per telegram.
_REGISTERS = {
    name: (f"{name}_kwh", tuple(f"{name}_t{t}_kwh" for t in range(1, 5)))
    for name in ("energy_import", "energy_export")
}
_PHASES = tuple(
    (f"voltage_{p}_v", f"power_import_{p}_kw", f"power_export_{p}_kw", f"current_estimated_{p}_a")
    for p in ("l1", "l2", "l3")
)


def _total(fields: dict[str, FieldValue], name: str) -> float | None:
    total_name, tariff_names = _REGISTERS[name]
    total = fields.get(total_name)
    if isinstance(total, float):
        return total
    tariffs = [v for t in tariff_names if isinstance(v := fields.get(t), float)]
    return sum(tariffs) if tariffs else None


class Deriver:
    """Keeps the previous telegram's registers of one meter. `max_gap` bounds the interval over
    which an average is still meaningful (a gap after an outage would smear it)."""

    def __init__(self, max_gap_seconds: float = 900.0) -> None:
        self.max_gap = max_gap_seconds
        self._previous: tuple[datetime, float | None, float | None] | None = None

    def derive(
        self, meter_time: datetime | None, fields: dict[str, FieldValue]
    ) -> dict[str, float]:
        derived: dict[str, float] = {}
        imported = _total(fields, "energy_import")
        exported = _total(fields, "energy_export")
        if meter_time is not None:
            previous = self._previous
            if previous is not None:
                seconds = (meter_time - previous[0]).total_seconds()
                if 0 < seconds <= self.max_gap:
                    for name, now, before in (
                        ("power_import_avg_kw", imported, previous[1]),
                        ("power_export_avg_kw", exported, previous[2]),
                    ):
                        if now is not None and before is not None and now >= before:
                            derived[name] = round((now - before) * 3600.0 / seconds, 6)
            self._previous = (meter_time, imported, exported)
        derived.update(_estimated_current(fields))
        return derived


def _float(fields: dict[str, FieldValue], name: str) -> float | None:
    value = fields.get(name)
    return value if isinstance(value, float) else None


def _estimated_current(fields: dict[str, FieldValue]) -> dict[str, float]:
    result: dict[str, float] = {}
    voltages = []
    for voltage, power_in, power_out, estimate in _PHASES:
        volts = _float(fields, voltage)
        if volts is None or volts <= 0:
            continue
        voltages.append(volts)
        imported = _float(fields, power_in)
        exported = _float(fields, power_out)
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
