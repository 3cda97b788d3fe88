"""The OBIS table: what each code means, how its value is written, and its field name.

One table serves every flavour (DSMR 2.2–5, Fluvius, Luxembourg, Sweden, Sagemcom T210-D-r, Iskra
IE, EasyMeter, E.ON Hungary): the codes they share mean the same thing, and where a code's layout
differs between flavours (`0-0:98.1.0`) the decoder tells them apart by the layout itself.
M-Bus channel codes are stored with `*` for the channel (`0-*:24.2.1`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    NUMBER = "number"  # (value*unit) or (value)
    TEXT = "text"  # (anything), kept as written
    HEXTEXT = "hextext"  # identifiers written as hex-encoded ASCII on most meters
    SIGNED = "signed"  # (value*unit), negative in the opposite direction (German meters' power)
    TIMESTAMP = "timestamp"  # (YYMMDDhhmmssX)
    TIMED_NUMBER = "timed_number"  # (YYMMDDhhmmssX)(value*unit): M-Bus readings, peak demand
    LEGACY_GAS = "legacy_gas"  # DSMR 2.2/3: (ts)(00)(60)(1)(0-n:24.2.1)(unit) + value on next line
    EVENT_LOG = "event_log"  # (count)(0-0:96.7.19)(end)(duration*s)...
    PROFILE = "profile"  # 0-0:98.1.0, Hungarian billing profile or Belgian monthly peaks
    MESSAGE = "message"  # text message: hex on DSMR, raw bytes (0xFF padding) in Hungary


@dataclass(frozen=True, slots=True)
class Spec:
    name: str  # field name without the unit suffix
    kind: Kind = Kind.NUMBER
    negative: str | None = None  # SIGNED: the field a negative value goes to, as its magnitude


def _phases(template: str, codes: tuple[int, int, int], suffix: str, kind: Kind) -> dict[str, Spec]:
    return {
        f"1-0:{code}.{suffix}": Spec(template.format(phase=phase), kind)
        for phase, code in zip(("l1", "l2", "l3"), codes, strict=True)
    }


def _registers(code: int, name: str) -> dict[str, Spec]:
    specs = {f"1-0:{code}.8.0": Spec(name)}
    specs.update({f"1-0:{code}.8.{t}": Spec(f"{name}_t{t}") for t in range(1, 5)})
    return specs


def _signed(codes: tuple[str, ...], phase: str = "") -> dict[str, Spec]:
    names = (f"power_import{phase}", f"power_export{phase}")
    return {f"1-0:{code}": Spec(names[0], Kind.SIGNED, names[1]) for code in codes}


N = Kind.NUMBER

TABLE: dict[str, Spec] = {
    # Header-like lines.
    "1-3:0.2.8": Spec("dsmr_version", Kind.TEXT),
    "0-0:96.1.4": Spec("version_info", Kind.TEXT),
    "0-0:1.0.0": Spec("meter_time", Kind.TIMESTAMP),
    "0-0:96.1.1": Spec("equipment_id", Kind.HEXTEXT),
    "0-0:96.1.0": Spec("equipment_id", Kind.HEXTEXT),
    "0-0:96.1.255": Spec("equipment_id", Kind.TEXT),
    "0-0:42.0.0": Spec("logical_device_name", Kind.HEXTEXT),
    "0-0:96.1.2": Spec("equipment_serial", Kind.HEXTEXT),  # Belgian e-MUCS 2.x, Swiss Sagemcom
    "1-0:0.0.0": Spec("meter_serial", Kind.TEXT),
    "0-0:0.0.0": Spec("meter_serial", Kind.TEXT),
    "1-0:0.2.0": Spec("firmware_version", Kind.TEXT),
    "1-0:96.5.5": Spec("meter_status", Kind.TEXT),
    "0-0:96.14.0": Spec("tariff"),
    "0-0:96.3.10": Spec("breaker_state"),
    "0-0:96.50.68": Spec("breaker_status", Kind.TEXT),
    "0-0:17.0.0": Spec("limiter_threshold"),
    # Energy registers (total and per tariff).
    **_registers(1, "energy_import"),
    **_registers(2, "energy_export"),
    **_registers(3, "energy_reactive_import"),
    **_registers(4, "energy_reactive_export"),
    "1-0:5.8.0": Spec("energy_reactive_q1"),
    "1-0:6.8.0": Spec("energy_reactive_q2"),
    "1-0:7.8.0": Spec("energy_reactive_q3"),
    "1-0:8.8.0": Spec("energy_reactive_q4"),
    "1-0:15.8.0": Spec("energy_absolute"),
    # Instantaneous values.
    "1-0:1.7.0": Spec("power_import"),
    "1-0:2.7.0": Spec("power_export"),
    "1-0:3.7.0": Spec("power_reactive_import"),
    "1-0:4.7.0": Spec("power_reactive_export"),
    "1-0:5.7.0": Spec("power_reactive_q1"),
    "1-0:6.7.0": Spec("power_reactive_q2"),
    "1-0:7.7.0": Spec("power_reactive_q3"),
    "1-0:8.7.0": Spec("power_reactive_q4"),
    "1-0:9.7.0": Spec("power_apparent_import"),
    "1-0:10.7.0": Spec("power_apparent_export"),
    # German meters (eBZ, EasyMeter, Holley): signed active power, total and per phase.
    **_signed(("16.7.0", "1.7.255")),
    **_signed(("36.7.0", "21.7.255"), "_l1"),
    **_signed(("56.7.0", "41.7.255"), "_l2"),
    **_signed(("76.7.0", "61.7.255"), "_l3"),
    **_phases("power_import_{phase}", (21, 41, 61), "7.0", N),
    **_phases("power_export_{phase}", (22, 42, 62), "7.0", N),
    **_phases("power_reactive_import_{phase}", (23, 43, 63), "7.0", N),
    **_phases("power_reactive_export_{phase}", (24, 44, 64), "7.0", N),
    **_phases("voltage_{phase}", (32, 52, 72), "7.0", N),
    **_phases("current_{phase}", (31, 51, 71), "7.0", N),
    **_phases("power_factor_{phase}", (33, 53, 73), "7.0", N),
    **_phases("current_limit_{phase}", (31, 51, 71), "4.0", N),
    **_phases("voltage_sags_{phase}", (32, 52, 72), "32.0", N),
    **_phases("voltage_swells_{phase}", (32, 52, 72), "36.0", N),
    "1-0:13.7.0": Spec("power_factor"),
    "1-0:14.7.0": Spec("frequency"),
    # Belgian capacity tariff: current quarter-hour demand and this month's peak.
    "1-0:1.4.0": Spec("demand_import"),
    "1-0:1.6.0": Spec("demand_import_month_max", Kind.TIMED_NUMBER),
    # Events.
    "0-0:96.7.21": Spec("power_failures"),
    "0-0:96.7.9": Spec("power_failures_long"),
    "1-0:99.97.0": Spec("power_failure_log", Kind.EVENT_LOG),
    "0-0:96.13.0": Spec("text_message", Kind.MESSAGE),
    "0-0:96.13.1": Spec("text_message_code", Kind.MESSAGE),
    # Luxembourg's Smarty: four more message lines.
    **{f"0-0:96.13.{n}": Spec(f"text_message_{n}", Kind.MESSAGE) for n in range(2, 6)},
    "0-0:98.1.0": Spec("billing_profile", Kind.PROFILE),
    # M-Bus devices on channels 1–4.
    "0-*:24.1.0": Spec("mbus_device_type"),
    "0-*:96.1.0": Spec("mbus_equipment_id", Kind.HEXTEXT),
    "0-*:96.1.1": Spec("mbus_equipment_id", Kind.HEXTEXT),
    "0-*:96.1.2": Spec("mbus_equipment_serial", Kind.HEXTEXT),
    "0-*:24.2.1": Spec("mbus_reading", Kind.TIMED_NUMBER),
    "0-*:24.2.3": Spec("mbus_reading", Kind.TIMED_NUMBER),
    "0-*:24.3.0": Spec("mbus_reading", Kind.LEGACY_GAS),
    "0-*:24.4.0": Spec("mbus_valve_state"),
}


def lookup(obis: str) -> Spec | None:
    """The spec for an OBIS reference as written (`1-0:1.8.0`, `1-0:1.8.0*255`, `0-2:24.2.1`).

    Channel 1 of electricity (`1-1:1.8.1`, Swiss and Austrian Sagemcom meters) means the same as
    channel 0: those meters measure one supply and number it 1."""
    code = obis.partition("*")[0]
    if code[:2] == "0-" and code[2:3] in ("1", "2", "3", "4") and code[3:4] == ":":
        return TABLE.get("0-*:" + code[4:])
    if code[:4] == "1-1:":
        return TABLE.get("1-0:" + code[4:])
    return TABLE.get(code)


# M-Bus medium codes (EN 13757-3) as written in 0-n:24.1.0.
MBUS_KINDS: dict[int, str] = {
    2: "electricity",
    3: "gas",
    4: "heat",
    6: "warm_water",
    7: "water",
    10: "cooling",
    11: "cooling",
    12: "heat",
    13: "heat_cooling",
    21: "hot_water",
    22: "cold_water",
}

# Units as written → (suffix of the field name, factor to that unit). Meters that count in Wh or
# W (Sagemcom T210-D-r, EasyMeter) are brought to the kWh/kW every other meter uses, so one field
# means one unit whatever the meter.
UNITS: dict[str, tuple[str, int]] = {
    "kWh": ("kwh", 1),
    "Wh": ("kwh", 1000),
    "kW": ("kw", 1),
    "W": ("kw", 1000),
    "kvarh": ("kvarh", 1),
    "varh": ("kvarh", 1000),
    "kvar": ("kvar", 1),
    "VA": ("kva", 1000),
    "var": ("kvar", 1000),
    "V": ("v", 1),
    "A": ("a", 1),
    "Hz": ("hz", 1),
    "m3": ("m3", 1),
    "GJ": ("gj", 1),
    "s": ("s", 1),
}

# The Hungarian billing profile (0-0:98.1.0): the register values at the start of the month, in
# this order after the billing timestamp (E.ON specification; checked against live registers).
BILLING_PROFILE_CODES: tuple[str, ...] = (
    "1-0:1.8.0",
    "1-0:1.8.1",
    "1-0:1.8.2",
    "1-0:2.8.0",
    "1-0:2.8.1",
    "1-0:2.8.2",
    "1-0:3.8.0",
    "1-0:4.8.0",
    "1-0:5.8.0",
    "1-0:6.8.0",
    "1-0:7.8.0",
    "1-0:8.8.0",
    "1-0:15.8.0",
    "1-0:1.6.0",
    "1-0:1.6.1",
    "1-0:1.6.2",
    "1-0:2.6.0",
    "1-0:2.6.1",
    "1-0:2.6.2",
)

BILLING_DEMAND_NAMES: dict[str, str] = {
    "1-0:1.6.0": "demand_import_max",
    "1-0:1.6.1": "demand_import_max_t1",
    "1-0:1.6.2": "demand_import_max_t2",
    "1-0:2.6.0": "demand_export_max",
    "1-0:2.6.1": "demand_export_max_t1",
    "1-0:2.6.2": "demand_export_max_t2",
}


def billing_name(obis: str) -> str:
    """Field name of a billing-profile entry: the register's own name, or the monthly maximum."""
    if obis in BILLING_DEMAND_NAMES:
        return BILLING_DEMAND_NAMES[obis]
    return TABLE[obis].name
