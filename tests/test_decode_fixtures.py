"""Frame → Telegram on every published fixture: header, meter time, identifiers, registers, M-Bus.

Expected values are read off the fixture files by hand, not produced by the decoder.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from p1_testkit import run_pipeline, seal

from agent.core.points import billing_points, mbus_points, telegram_fields
from agent.core.telegram import Decoder, MeterZone, Reading, Telegram

Decode = Callable[..., Telegram]

# name → header, meter time (ISO with offset), equipment id, {obis: (value, unit)},
# M-Bus [(channel, kind, equipment id, value, unit, capture time)].
EXPECTED: dict[str, dict[str, Any]] = {
    "dsmr22-iskra.txt": {
        "header": "ISk5\\2MT382-1004",
        "meter_time": None,
        "equipment_id": None,  # 0-0:96.1.1 is all zeros
        "readings": {
            "1-0:1.8.1": (1.001, "kWh"),
            "1-0:2.8.2": (1.001, "kWh"),
            "0-0:96.14.0": (1.0, None),
            "1-0:1.7.0": (1.01, "kW"),
            "1-0:2.7.0": (0.0, "kW"),
            "0-0:17.0.0": (999.0, "kW"),
            "0-0:96.3.10": (1.0, None),
            "0-0:96.13.0": ("", None),
            "0-1:24.4.0": (1.0, None),
        },
        # A gas meter id of zeros identifies nothing: the device is named by its channel.
        "mbus": [(1, "gas", None, 1.001, "m3", "2016-11-07T19:00:00+01:00")],
    },
    "dsmr3-iskra.txt": {
        "header": "ISk5\\2MT382-1000",
        "meter_time": None,
        "equipment_id": "K8EG004046395507",
        "readings": {
            "1-0:1.8.1": (12345.678, "kWh"),
            "1-0:2.8.2": (12345.678, "kWh"),
            "0-0:96.14.0": (2.0, None),
            "1-0:1.7.0": (1.19, "kW"),
            "0-0:17.0.0": (16.0, "A"),
            "0-0:96.13.1": ("303132333435363738", None),
        },
        "mbus": [(1, "gas", "2222ABCD123456789", 1.001, "m3", "2009-02-12T16:00:00+01:00")],
    },
    "dsmr42-kaifa.txt": {
        "header": "KFM5KAIFA-METER",
        "meter_time": "2016-11-13T20:57:57+01:00",
        # Hex that decodes to control characters stays as written.
        "equipment_id": "3960221976967177082151037881335713",
        "readings": {
            "1-3:0.2.8": ("42", None),
            "1-0:1.8.1": (1581.123, "kWh"),
            "1-0:1.8.2": (1435.706, "kWh"),
            "1-0:2.8.1": (0.0, "kWh"),
            "0-0:96.14.0": (2.0, None),
            "1-0:1.7.0": (2.027, "kW"),
            "0-0:96.7.21": (15.0, None),
            "0-0:96.7.9": (7.0, None),
            "1-0:32.32.0": (0.0, None),
            "1-0:31.7.0": (0.0, "A"),
            "1-0:51.7.0": (6.0, "A"),
            "1-0:71.7.0": (2.0, "A"),
            "1-0:41.7.0": (1.247, "kW"),
            "1-0:61.7.0": (0.209, "kW"),
        },
        "mbus": [
            (
                1,
                "gas",
                "4819243993373755377509728609491464",
                981.443,
                "m3",
                "2016-11-29T20:00:00+01:00",
            )
        ],
    },
    "dsmr5-iskra-two-mbus.txt": {
        "header": "ISK5\\2M550T-1012",
        "meter_time": "2020-04-26T22:33:25+02:00",
        "equipment_id": "E0044007382246019",
        "readings": {
            "1-3:0.2.8": ("50", None),
            "1-0:1.8.1": (2130.115, "kWh"),
            "1-0:1.8.2": (245.467, "kWh"),
            "1-0:1.7.0": (0.111, "kW"),
            "0-0:96.7.21": (5.0, None),
            "1-0:72.32.0": (192.0, None),
            "1-0:32.7.0": (229.9, "V"),
            "1-0:52.7.0": (229.2, "V"),
            "1-0:72.7.0": (222.9, "V"),
            "1-0:71.7.0": (1.0, "A"),
            "1-0:21.7.0": (0.056, "kW"),
            "1-0:61.7.0": (0.055, "kW"),
        },
        "mbus": [
            # An empty channel: its capture time is the 1970 epoch placeholder, its value 0.
            (1, "gas", None, 0.0, None, "1970-01-01T01:00:00+01:00"),
            (2, "gas", "G0039001936990619", 246.138, "m3", "2020-04-26T22:30:01+02:00"),
        ],
    },
    "dsmr5-iskra.txt": {
        "header": "ISk5\\2MT382-1000",
        "meter_time": "2017-01-02T19:20:02+01:00",
        "equipment_id": "K8EG004046395507",
        "readings": {
            "1-0:1.8.1": (4.426, "kWh"),
            "1-0:1.8.2": (2.399, "kWh"),
            "1-0:2.8.1": (2.444, "kWh"),
            "1-0:1.7.0": (0.244, "kW"),
            "0-0:96.7.21": (13.0, None),
            "1-0:32.7.0": (230.0, "V"),
            "1-0:72.7.0": (229.0, "V"),
            "1-0:31.7.0": (0.48, "A"),
            "1-0:71.7.0": (0.86, "A"),
            "1-0:61.7.0": (0.142, "kW"),
        },
        "mbus": [
            (1, "gas", "2222ABCD123456789", 0.107, "m3", "2017-01-02T16:10:05+01:00"),
            (2, "gas", None, None, None, None),  # announced, but nothing to read
        ],
    },
    "dsmr5-warmtelink-unpadded-crc.txt": {
        "header": "NWA-WARMTELINK",
        "meter_time": "2026-02-15T20:05:23+01:00",
        "equipment_id": "ADC3100000158491",
        "readings": {"1-3:0.2.8": ("50", None), "0-1:24.1.0": (4.0, None)},
        "mbus": [(1, "heat", "621848012D2C0B0C", 240.86, "GJ", "2026-02-15T20:05:23+01:00")],
    },
    "easymeter-q3da1004.txt": {
        "header": "ESY5Q3DA1004 V3.04",
        "meter_time": None,
        "equipment_id": "1ESY1336001560",
        "readings": {
            "1-0:0.0.0*255": ("1336001560", None),
            "1-0:1.8.0*255": (32549.5061662, "kWh"),
            "1-0:21.7.0*255": (557.29, "W"),
            "1-0:41.7.0*255": (521.62, "W"),
            "1-0:61.7.0*255": (609.30, "W"),
            "1-0:1.7.0*255": (1688.21, "W"),
            "1-0:96.5.5*255": ("80", None),
            "0-0:96.1.255*255": ("1ESY1336001560", None),
        },
        "mbus": [],
    },
    "easymeter-q3db1024.txt": {
        "header": "ESY5Q3DB1024 V3.04",
        "meter_time": None,
        "equipment_id": "1ESY1313002565",
        "readings": {
            "1-0:0.0.0*255": ("0272031312565", None),
            "1-0:1.8.0*255": (52185.7825309, "kWh"),
            "1-0:2.8.0*255": (19949.3221493, "kWh"),
            "1-0:21.7.0*255": (747.85, "W"),
            "1-0:1.7.0*255": (2124.86, "W"),
        },
        "mbus": [],
    },
    "eon-hu-sagemcom.txt": {
        "header": "SAG5SAG-METER",
        "meter_time": "2023-07-24T15:07:30+02:00",
        "equipment_id": "890082200002160",
        "readings": {
            "0-0:42.0.0": ("53414733303832323030303032313630", None),
            "0-0:96.14.0": (1.0, None),
            "0-0:17.0.0": (90.0, "kW"),
            "1-0:1.8.0": (173.64, "kWh"),
            "1-0:1.8.4": (0.0, "kWh"),
            "1-0:2.8.0": (627.177, "kWh"),
            "1-0:3.8.0": (0.123, "kvarh"),
            "1-0:4.8.0": (303.131, "kvarh"),
            "1-0:5.8.0": (0.668, "kvarh"),
            "1-0:6.8.0": (0.071, "kvarh"),
            "1-0:7.8.0": (160.487, "kvarh"),
            "1-0:8.8.0": (143.346, "kvarh"),
            "1-0:15.8.0": (800.817, "kWh"),
            "1-0:32.7.0": (240.4, "V"),
            "1-0:31.7.0": (3.0, "A"),
            "1-0:51.7.0": (4.0, "A"),
            "1-0:13.7.0": (4.556, None),
            "1-0:33.7.0": (4.591, None),
            "1-0:14.7.0": (50.0, "Hz"),
            "1-0:2.7.0": (2.601, "kW"),
            "1-0:7.7.0": (0.504, "kvar"),
            "1-0:31.4.0": (200.0, "A"),
            "1-0:71.4.0": (200.0, "A"),
            "0-0:96.13.0": ("", None),
        },
        "mbus": [],
    },
    "fluvius-v171-alt.txt": {
        "header": "FLU5\\253769484_A",
        "meter_time": "2023-11-02T12:15:48+01:00",
        "equipment_id": "1SAG3100721326",
        "readings": {
            "0-0:96.1.4": ("50217", None),
            "1-0:1.8.1": (301.548, "kWh"),
            "1-0:2.8.1": (0.005, "kWh"),
            "1-0:1.4.0": (0.052, "kW"),
            "1-0:1.6.0": (3.064, "kW"),
            "1-0:1.7.0": (0.338, "kW"),
            "1-0:31.7.0": (0.27, "A"),
            "1-0:51.7.0": (0.88, "A"),
            "0-0:17.0.0": (999.9, "kW"),
            "1-0:31.4.0": (999.0, "A"),
        },
        "mbus": [
            (1, "gas", "7FLO2123088027", 92.287, "m3", "2023-11-02T12:10:02+01:00"),
            (2, "water", "8SET0000961173", 8.579, "m3", "2023-11-02T12:15:32+01:00"),
        ],
    },
    "fluvius-v171.txt": {
        "header": "FLU5\\253769484_A",
        "meter_time": "2020-05-12T13:54:09+02:00",
        "equipment_id": "1SAG3101021605",
        "readings": {
            "1-0:1.8.1": (0.034, "kWh"),
            "1-0:1.8.2": (15.758, "kWh"),
            "1-0:2.8.2": (0.011, "kWh"),
            "1-0:1.4.0": (2.351, "kW"),
            "1-0:1.6.0": (2.589, "kW"),
            "1-0:32.7.0": (234.7, "V"),
            "1-0:31.7.0": (0.0, "A"),
            "0-1:24.4.0": (1.0, None),
        },
        "mbus": [
            (1, "gas", "7FLO2119033733", 112.384, "m3", "2020-05-12T13:45:58+02:00"),
            (2, "water", "8SAG1234567890", 872.234, "m3", "2020-05-12T13:45:58+02:00"),
        ],
    },
    "iskra-ie.txt": {
        "header": "ISk5\x02MIE5T-200",
        "meter_time": "2023-02-02T13:27:47+00:00",  # Irish time: auto knows the header
        "equipment_id": "09610",
        "readings": {
            "1-0:0.0.0": ("00000000", None),
            "1-0:1.8.1": (10.181, "kWh"),
            "1-0:1.8.2": (10.182, "kWh"),
            "1-0:2.8.1": (10.281, "kWh"),
            "1-0:2.8.2": (10.282, "kWh"),
            "1-0:1.7.0": (0.17, "kW"),
            "1-0:2.7.0": (0.27, "kW"),
            "1-0:62.7.0": (0.627, "kW"),
            "1-0:32.7.0": (242.5, "V"),
            "1-0:72.7.0": (243.3, "V"),
        },
        "mbus": [(1, "unknown", None, None, None, None)],  # `0-1:96.1.1()` only
    },
    "sagemcom-t210-d-r.txt": {
        "header": "EST5\\253710000_A",
        "meter_time": "2022-10-06T15:50:14+02:00",
        "equipment_id": None,
        "readings": {
            "1-3:0.2.8": ("50", None),
            "1-0:1.8.0": (6545766.0, "Wh"),
            "1-0:1.8.1": (5017120.0, "Wh"),
            "1-0:1.7.0": (286.0, "W"),
            "1-0:2.8.2": (58.0, "Wh"),
            "1-0:3.8.0": (747.0, "varh"),
            "1-0:3.7.0": (0.0, "var"),
            "1-0:4.8.0": (3897726.0, "varh"),
            "1-0:4.7.0": (166.0, "var"),
        },
        "mbus": [],
    },
}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def test_fixture_decodes_to_expected_values(telegram_name: str, decode_file: Decode) -> None:
    assert telegram_name in EXPECTED, "describe the new fixture in EXPECTED"
    expected = EXPECTED[telegram_name]
    telegram = decode_file(telegram_name)
    assert telegram.header == expected["header"]
    if expected["meter_time"] is None:
        assert telegram.meter_time is None
    else:
        assert telegram.meter_time is not None and telegram.meter_time.tzinfo is not None
        assert telegram.meter_time.isoformat() == expected["meter_time"]
    assert telegram.equipment_id == expected["equipment_id"]
    assert telegram.meter == (expected["equipment_id"] or expected["header"])
    for obis, (value, unit) in expected["readings"].items():
        reading = telegram.readings[obis]
        assert (reading.value, reading.unit) == (value, unit), obis
        assert type(reading.value) is type(value), obis
    devices = [
        (
            d.channel,
            d.kind,
            d.equipment_id,
            d.reading.value if d.reading else None,
            d.reading.unit if d.reading else None,
            _iso(d.reading.time) if d.reading else None,
        )
        for d in telegram.mbus
    ]
    assert devices == expected["mbus"]
    assert telegram.unknown_lines == []


def test_every_line_of_every_fixture_is_read(
    telegram_name: str, decode_file: Decode, read_telegram: Callable[[str], bytes]
) -> None:
    data = read_telegram(telegram_name)
    body = data[: data.index(b"!")]
    # OBIS lines (not the DSMR 2.2/3 gas value line, which belongs to the line before it).
    codes = [
        line.split(b"(")[0].decode("latin-1")
        for line in body.split(b"\r\n")[1:]
        if line and not line.startswith(b"(")
    ]
    telegram = decode_file(telegram_name)
    assert list(telegram.readings) == codes
    # Nothing failed to parse except where the meter writes placeholders.
    unparsed = [obis for obis, r in telegram.readings.items() if r.raw is not None]
    assert unparsed == []


def test_dsmr22_gas_value_on_next_line(decode_file: Decode) -> None:
    for name, time in (
        ("dsmr22-iskra.txt", "2016-11-07T19:00:00+01:00"),
        ("dsmr3-iskra.txt", "2009-02-12T16:00:00+01:00"),
    ):
        telegram = decode_file(name)
        gas = telegram.readings["0-1:24.3.0"]
        assert (gas.value, gas.unit, _iso(gas.time)) == (1.001, "m3", time)
        (point,) = mbus_points(telegram, telegram.meter)
        assert point.fields == {"gas_m3": 1.001}
        assert point.tags["kind"] == "gas"


def test_warmtelink_heat(decode_file: Decode) -> None:
    telegram = decode_file("dsmr5-warmtelink-unpadded-crc.txt")
    (point,) = mbus_points(telegram, telegram.meter)
    assert point.measurement == "p1_mbus"
    assert point.tags == {"meter": "ADC3100000158491", "kind": "heat", "device": "621848012D2C0B0C"}
    assert point.fields == {"heat_gj": 240.86}
    assert _iso(point.time) == "2026-02-15T20:05:23+01:00"


def test_sagemcom_t210_units_are_scaled_exactly(decode_file: Decode) -> None:
    fields = telegram_fields(decode_file("sagemcom-t210-d-r.txt"))
    assert fields["energy_import_kwh"] == 6545.766  # exactly, not 6545.766000000001
    assert fields["energy_import_t1_kwh"] == 5017.12
    assert fields["energy_import_t2_kwh"] == 1528.646
    assert fields["energy_export_kwh"] == 0.058
    assert fields["power_import_kw"] == 0.286
    assert fields["energy_reactive_import_kvarh"] == 0.747
    assert fields["energy_reactive_export_kvarh"] == 3897.726
    assert fields["power_reactive_export_kvar"] == 0.166
    assert "dsmr_version" not in fields  # metadata, not a measurement
    assert not any(name.endswith(("_wh", "_w", "_varh", "_var")) for name in fields)


def test_easymeter_star_255_codes(decode_file: Decode) -> None:
    telegram = decode_file("easymeter-q3da1004.txt")
    assert "1-0:1.8.0" not in telegram.readings  # kept as written…
    fields = telegram_fields(telegram)  # …but named by meaning
    assert fields["energy_import_kwh"] == 32549.5061662
    assert fields["power_import_kw"] == 1.68821
    assert fields["power_import_l1_kw"] == 0.55729
    assert fields["power_import_l3_kw"] == 0.6093
    assert fields["meter_status"] == "80"
    assert "equipment_id" not in fields


def test_eon_hungary_registers_and_fields(decode_file: Decode) -> None:
    fields = telegram_fields(decode_file("eon-hu-sagemcom.txt"))
    assert fields["power_factor"] == 4.556
    assert fields["power_factor_l1"] == 4.591
    assert fields["frequency_hz"] == 50.0
    assert fields["current_limit_l1_a"] == 200.0
    assert fields["energy_reactive_import_kvarh"] == 0.123
    assert fields["energy_reactive_export_kvarh"] == 303.131
    assert fields["energy_reactive_q1_kvarh"] == 0.668
    assert fields["energy_reactive_q2_kvarh"] == 0.071
    assert fields["energy_reactive_q3_kvarh"] == 160.487
    assert fields["energy_reactive_q4_kvarh"] == 143.346
    assert fields["energy_absolute_kwh"] == 800.817
    assert fields["power_reactive_q3_kvar"] == 0.504
    assert fields["current_l1_a"] == 3.0 and isinstance(fields["current_l1_a"], float)


def test_eon_hungary_billing_profile(decode_file: Decode) -> None:
    telegram = decode_file("eon-hu-sagemcom.txt")
    profile = telegram.readings["0-0:98.1.0"]
    assert _iso(profile.time) == "2023-07-01T00:00:00+02:00"
    assert isinstance(profile.value, list) and len(profile.value) == 19
    values = [(r.value, r.unit) for r in profile.value]
    assert values[0] == (40.777, "kWh")
    assert values[3] == (142.25, "kWh")
    assert values[6] == (0.03, "kvarh")
    assert values[11] == (35.02, "kvarh")
    assert values[12] == (183.027, "kWh")
    assert values[13] == (3.564, "kW")
    assert values[18] == (3.4, "kW")

    (point,) = billing_points(telegram, telegram.meter)
    assert point.measurement == "p1_billing"
    assert point.tags == {"meter": "890082200002160"}
    assert _iso(point.time) == "2023-07-01T00:00:00+02:00"
    assert point.fields["energy_import_kwh"] == 40.777
    assert point.fields["energy_import_t1_kwh"] == 8.95
    assert point.fields["energy_import_t2_kwh"] == 31.827
    assert point.fields["energy_export_kwh"] == 142.25
    assert point.fields["energy_reactive_import_kvarh"] == 0.03
    assert point.fields["energy_reactive_q4_kvarh"] == 35.02
    assert point.fields["energy_absolute_kwh"] == 183.027
    assert point.fields["demand_import_max_t1_kw"] == 2.156
    assert point.fields["demand_export_max_t2_kw"] == 3.4
    assert len(point.fields) == 19
    assert point.fields["demand_import_max_kw"] == 3.564


def _peaks(reading: Reading) -> list[tuple[str | None, str | None, Any, str | None]]:
    assert isinstance(reading.value, list)
    return [(_iso(p.start), _iso(p.time), p.value, p.unit) for p in reading.value]


def test_fluvius_demand_and_monthly_peaks(decode_file: Decode) -> None:
    telegram = decode_file("fluvius-v171.txt")
    demand = telegram.readings["1-0:1.6.0"]
    assert (demand.value, demand.unit, _iso(demand.time)) == (
        2.589,
        "kW",
        "2020-05-09T13:45:58+02:00",
    )
    assert _peaks(telegram.readings["0-0:98.1.0"]) == [
        ("2020-05-01T00:00:00+02:00", "2020-04-23T19:25:38+02:00", 3.695, "kW"),
        ("2020-04-01T00:00:00+02:00", "2020-03-05T12:21:39+01:00", 5.98, "kW"),
        ("2020-03-01T00:00:00+01:00", "2020-02-10T03:54:21+01:00", 4.318, "kW"),
    ]
    points = billing_points(telegram, telegram.meter)
    assert [(_iso(p.time), p.fields) for p in points] == [
        (
            "2020-05-01T00:00:00+02:00",
            {"demand_import_month_max_kw": 3.695, "peak_time": "2020-04-23T19:25:38+02:00"},
        ),
        (
            "2020-04-01T00:00:00+02:00",
            {"demand_import_month_max_kw": 5.98, "peak_time": "2020-03-05T12:21:39+01:00"},
        ),
        (
            "2020-03-01T00:00:00+01:00",
            {"demand_import_month_max_kw": 4.318, "peak_time": "2020-02-10T03:54:21+01:00"},
        ),
    ]
    fields = telegram_fields(telegram)
    assert fields["demand_import_kw"] == 2.351
    assert fields["demand_import_month_max_kw"] == 2.589


def test_fluvius_placeholder_peak_time(decode_file: Decode) -> None:
    telegram = decode_file("fluvius-v171-alt.txt")
    assert _peaks(telegram.readings["0-0:98.1.0"]) == [
        ("2023-08-01T00:00:00+02:00", None, 0.0, "kW"),  # `632525252525W`: no peak yet
        ("2023-09-01T00:00:00+02:00", "2023-08-31T18:15:00+02:00", 1.862, "kW"),
        ("2023-10-01T00:00:00+02:00", "2023-09-10T18:30:00+02:00", 4.229, "kW"),
        ("2023-11-01T00:00:00+01:00", "2023-10-16T13:00:00+02:00", 4.927, "kW"),
    ]
    points = billing_points(telegram, telegram.meter)
    assert len(points) == 4
    assert points[0].fields == {"demand_import_month_max_kw": 0.0}
    demand = telegram.readings["1-0:1.6.0"]
    assert _iso(demand.time) == "2023-11-02T11:45:00+01:00"


@pytest.mark.parametrize(
    ("name", "events"),
    [
        (
            "dsmr42-kaifa.txt",
            [
                (237126.0, "2000-01-04T18:03:20+01:00"),
                (2147583646.0, "2000-01-01T00:00:01+01:00"),
                (2317482647.0, "2000-01-02T00:00:03+01:00"),
            ],
        ),
        ("dsmr5-iskra-two-mbus.txt", [(2014.0, "2019-03-26T09:50:15+01:00")]),
        ("dsmr5-iskra.txt", []),
    ],
)
def test_power_failure_log(name: str, events: list[tuple[float, str]], decode_file: Decode) -> None:
    log = decode_file(name).readings["1-0:99.97.0"]
    assert isinstance(log.value, list)
    assert [(e.value, e.unit, _iso(e.time)) for e in log.value] == [
        (seconds, "s", time) for seconds, time in events
    ]


UNKNOWN_BODY = (
    b"/XYZ5 TEST-METER\r\n\r\n"
    b"0-0:1.0.0(230615120000S)\r\n"
    b"1-0:1.8.0(000100.500*kWh)\r\n"
    b"1-0:99.1.0(012.50*kWh)\r\n"
    b"0-0:96.99.9(hello)\r\n"
    b"1-0:0.9.1(1)(2)\r\n"
    b"this is not an OBIS line\r\n"
    b"!"
)


def test_unknown_codes_are_kept() -> None:
    telegram = Decoder().decode(UNKNOWN_BODY)
    assert telegram.readings["1-0:99.1.0"] == Reading(12.5, "kWh")
    assert telegram.readings["0-0:96.99.9"].value == "hello"
    several = telegram.readings["1-0:0.9.1"].value
    assert isinstance(several, list) and [r.value for r in several] == ["1", "2"]
    assert telegram.unknown_lines == ["this is not an OBIS line"]
    fields = telegram_fields(telegram)
    assert fields["obis_1_0_99_1_0_kwh"] == 12.5
    assert fields["obis_0_0_96_99_9"] == "hello"
    assert fields["energy_import_kwh"] == 100.5

    _, results = run_pipeline(seal(UNKNOWN_BODY))
    (result,) = results
    assert result.status == "valid"
    assert result.fields["obis_1_0_99_1_0_kwh"] == 12.5


def test_meter_zone_default_cet_vs_dublin(decode_file: Decode) -> None:
    cet = decode_file("iskra-ie.txt", MeterZone("Europe/Amsterdam"))
    dublin = decode_file("iskra-ie.txt", MeterZone("Europe/Dublin"))
    assert _iso(cet.meter_time) == "2023-02-02T13:27:47+01:00"
    assert _iso(dublin.meter_time) == "2023-02-02T13:27:47+00:00"
    # The default zone (auto) knows the Irish Iskra by its header.
    assert decode_file("iskra-ie.txt").meter_time == dublin.meter_time
    assert cet.meter_time is not None and dublin.meter_time is not None
    assert dublin.meter_time - cet.meter_time == timedelta(hours=1)


def test_meter_zone_repeated_autumn_hour() -> None:
    zone = MeterZone()
    summer = zone.parse("231029023000S")
    winter = zone.parse("231029023000W")
    assert summer.isoformat() == "2023-10-29T02:30:00+02:00"
    assert winter.isoformat() == "2023-10-29T02:30:00+01:00"
    assert winter - summer == timedelta(hours=1)
    assert summer.astimezone(UTC) == datetime(2023, 10, 29, 0, 30, tzinfo=UTC)
    # Outside the repeated hour the rules decide, whatever the flag says.
    assert zone.parse("230715120000W").utcoffset() == timedelta(hours=2)
    assert zone.parse("230115120000S").utcoffset() == timedelta(hours=1)
    # Without a flag (DSMR 2.2/3 gas) the first occurrence is taken.
    assert zone.parse("231029023000").utcoffset() == timedelta(hours=2)


def test_meter_zone_dublin_repeated_hour() -> None:
    zone = MeterZone("Europe/Dublin")
    summer = zone.parse("231029013000S")
    winter = zone.parse("231029013000W")
    assert summer.isoformat() == "2023-10-29T01:30:00+01:00"
    assert winter.isoformat() == "2023-10-29T01:30:00+00:00"
    assert winter - summer == timedelta(hours=1)


@pytest.mark.parametrize(
    "text", ["632525252525W", "231029023000X", "2310290230", "23102902300AS", "", "23102902300²S"]
)
def test_meter_zone_rejects_invalid_timestamps(text: str) -> None:
    zone = MeterZone()
    with pytest.raises(ValueError):
        zone.parse(text)
    assert zone.parse_optional(text) is None


def test_meter_zone_epoch_placeholder() -> None:
    stamp = MeterZone().parse("700101010000W")
    assert stamp.isoformat() == "1970-01-01T01:00:00+01:00"
    assert stamp.timestamp() == 0


def test_meter_zone_unknown_name() -> None:
    with pytest.raises(ValueError):
        MeterZone("Europe/Atlantis")


def test_decoder_cache_does_not_leak_between_zones(decode_file: Decode) -> None:
    # Same line, two decoders with different zones: each uses its own.
    a = decode_file("iskra-ie.txt", MeterZone("Europe/Dublin"))
    b = decode_file("iskra-ie.txt", MeterZone("Europe/Amsterdam"))
    assert a.meter_time != b.meter_time
