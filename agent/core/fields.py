"""Field names for readings: the OBIS table's name plus the unit as suffix (`energy_import_kwh`).

Meters that count in Wh or W (Sagemcom T210-D-r, EasyMeter) are brought to the kWh/kW the other
meters use, so one field means one unit whatever the meter.
"""

from __future__ import annotations

from decimal import Decimal

from agent.core.obis import UNITS, Kind, lookup

FieldValue = float | str | bool

# Identifiers and versions describe the meter, they are not measurements.
_METADATA = {
    "equipment_id",
    "equipment_serial",
    "logical_device_name",
    "meter_serial",
    "dsmr_version",
    "version_info",
    "firmware_version",
}
_SKIP_KINDS = (Kind.TIMESTAMP, Kind.EVENT_LOG, Kind.PROFILE, Kind.LEGACY_GAS)


def unit_field(name: str, unit: str | None) -> tuple[str, int]:
    """Field name with its unit suffix, and the factor that brings the value to that unit."""
    if not unit:
        return name, 1
    suffix, factor = UNITS.get(unit, (unit.lower().replace("/", "_per_"), 1))
    return f"{name}_{suffix}", factor


def scaled(value: float, factor: int) -> float:
    # Decimal keeps 6545766 Wh → 6545.766 kWh exact instead of 6545.766000000001.
    return value if factor == 1 else float(Decimal(repr(value)) / factor)


def field_for(obis: str, unit: str | None) -> tuple[str, int] | None:
    """The `p1` field an OBIS reading goes to, or None (M-Bus, identifiers, timestamps, logs)."""
    if obis[:2] == "0-" and obis[2:3] in ("1", "2", "3", "4"):
        return None  # M-Bus devices have their own measurement
    spec = lookup(obis)
    if spec is None:
        # Unknown codes are kept under their OBIS reference.
        name = "obis_" + obis.translate(str.maketrans("-:.*", "____"))
        return unit_field(name, unit)
    if spec.kind in _SKIP_KINDS or spec.name in _METADATA:
        return None
    return unit_field(spec.name, unit)
