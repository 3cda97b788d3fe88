"""Real telegrams of two dozen meter models from nine countries (`../shared/data/realworld/`).

Every file has a row of EXPECTED: the values that matter, read off the file by hand (times
converted from the meter's local time to UTC by hand, hex identifiers decoded). A file without a
row fails `test_realworld_file_decodes_to_expected_values`, so the corpus stays covered.

Then: the checksums behave as MANIFEST.tsv says (through the real pipeline), and the invariants of
what `p1-agent replay --format line-protocol` writes hold over this corpus and `telegrams/`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import REALWORLD_NAMES, TELEGRAM_NAMES
from p1_testkit import body_and_checksum, frame_all, reseal, run_pipeline

from agent.core.crc import CrcKind, crc16_arc
from agent.core.fields import field_for
from agent.core.framing import Frame
from agent.core.obis import lookup
from agent.core.pipeline import MeterPipeline, Result
from agent.core.points import billing_points, mbus_points, telegram_points
from agent.core.telegram import Decoder, MeterZone, Telegram
from agent.formats import lineparse, lineprotocol

Read = Callable[[str], bytes]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


X30 = "x" * 30  # identifiers anonymised by the publisher as 30 × `x`
D32 = "12345678901234567890123456789012"  # … or as these digits (not hex of ASCII: kept)
D30 = "012345678901234567890123456789"

# name → the file's values:
#   header: identification line without `/` (bytes as latin-1)
#   meter_time: the meter clock in UTC, or None (no clock line, or a placeholder / unset clock)
#   equipment_id: Telegram.equipment_id (None when absent, blank or all zeros)
#   fields: `p1` fields (Telegram.fields) as the file states them
#   mbus: [(channel, kind, equipment id, value, unit, capture time in UTC)] of the devices the
#         telegram describes (a channel with only a valve/breaker line is no device)
#   events: entries of the power failure log 1-0:99.97.0, None when the line is absent
#   billing: number of p1_billing points (Belgian monthly peaks, Hungarian billing profile)
#   frames / frame: frames in the file (a short stream) and which one the row describes
EXPECTED: dict[str, dict[str, Any]] = {
    "amshan-ellevio-ell5-se-c.txt": {
        "header": "ELL5\\253833635_A",
        # `W` in October: outside the repeated hour the zone's rules decide (CEST).
        "meter_time": utc(2020, 10, 20, 6, 52, 22),
        "equipment_id": None,
        "fields": {
            "energy_import_kwh": 1605.055,
            "energy_export_kwh": 0.131,
            "energy_reactive_import_kvarh": 3.642,
            "energy_reactive_export_kvarh": 185.707,
            "power_import_kw": 6.0,
            "power_export_kw": 0.0,
            "power_reactive_import_kvar": 0.2,
            "power_reactive_export_kvar": 0.47,
            "power_import_l1_kw": 3.172,
            "power_reactive_export_l3_kvar": 0.247,
            "voltage_l1_v": 234.4,
            "current_l1_a": 13.6,
            "current_l3_a": 10.2,
        },
        "mbus": [],
        "events": None,
    },
    "amshan-lg-e360-se-a.txt": {
        "header": "LGF5E360",
        "meter_time": utc(2021, 2, 22, 15, 19, 0),
        "equipment_id": None,
        "fields": {
            "energy_import_kwh": 896.02,
            "energy_export_kwh": 48.792,
            "energy_reactive_import_kvarh": 518.309,  # written kVArh
            "energy_reactive_export_kvarh": 23.732,
            "power_import_kw": 0.0,
            "power_export_kw": 0.02,
            "power_reactive_export_kvar": 0.308,  # written kVAr
            "power_export_l1_kw": 0.012,
            "power_import_l3_kw": 0.063,
            "voltage_l1_v": 230.1,
            "current_l1_a": 0.6,
        },
        "mbus": [],
        "events": None,
    },
    "amshan-lg-e360-se-d.txt": {
        "header": "LGF5E360",
        "meter_time": utc(2022, 2, 4, 10, 6, 50),
        "equipment_id": None,
        "fields": {
            "energy_import_kwh": 10501.076,
            "energy_export_kwh": 0.0,
            "energy_reactive_import_kvarh": 1761.087,
            "energy_reactive_export_kvarh": 8.391,
            "power_import_kw": 2.301,
            "power_export_kw": 0.0,
            "power_reactive_import_kvar": 0.135,
            "power_import_l3_kw": 1.011,
            "voltage_l1_v": 232.1,
            "current_l1_a": 2.8,
            "current_l3_a": 4.8,
        },
        "mbus": [],
        "events": None,
    },
    "amshan-lg-zcf-dsmr42-no-crc.txt": {
        "header": "XMX5LGBBFFB231314239",
        "meter_time": utc(2018, 9, 24, 11, 21, 32),
        "equipment_id": "E2206017647934515",
        "fields": {
            "energy_import_t1_kwh": 11522.839,
            "energy_import_t2_kwh": 10310.991,
            "energy_export_t1_kwh": 0.0,
            "energy_export_t2_kwh": 0.0,
            "tariff": 2.0,
            "power_import_kw": 0.503,
            "power_export_kw": 0.0,
            "power_failures": 15.0,
            "power_failures_long": 5.0,
            "voltage_sags_l1": 2.0,
            "current_l1_a": 1.0,
            "power_import_l2_kw": 0.25,
        },
        "mbus": [(1, "gas", "G1018340158872434", 4890.857, "m3", utc(2018, 9, 24, 11, 0, 0))],
        # The count says 5 but the meter lists 2 entries: the entries written are the log.
        "events": 2,
    },
    "arduino-dsmr-kaifa-dsmr40.txt": {
        "header": "KFM5KAIFA-METER",
        "meter_time": utc(2015, 1, 17, 17, 59, 16),
        "equipment_id": None,  # zeroed by the publisher
        "fields": {
            "energy_import_t1_kwh": 671.578,
            "energy_import_t2_kwh": 842.472,
            "energy_export_t1_kwh": 0.0,
            "energy_export_t2_kwh": 0.0,
            "tariff": 1.0,
            "power_import_kw": 0.333,
            "power_export_kw": 0.0,
            "limiter_threshold_kw": 999.9,
            "breaker_state": 1.0,
            "power_failures": 8.0,
            "power_failures_long": 7.0,
            "current_l1_a": 1.0,
            "power_import_l1_kw": 0.332,
        },
        "mbus": [(1, "gas", None, 473.789, "m3", utc(2015, 1, 17, 17, 0, 0))],
        "events": 1,  # a placeholder entry (000101000001W)(2147483647*s)
    },
    "athom-fluvius-emucs211-spec.txt": {
        "header": "FLU5\\253769484_A",
        "meter_time": utc(2020, 5, 12, 11, 54, 9),
        "equipment_id": "1SAG3101021605",  # 0-0:96.1.1 comes before the e-MUCS 0-0:96.1.2
        "fields": {
            "energy_import_t1_kwh": 0.034,
            "energy_import_t2_kwh": 15.758,
            "energy_export_t1_kwh": 0.0,
            "energy_export_t2_kwh": 0.011,
            "tariff": 1.0,
            "demand_import_kw": 2.351,
            "demand_import_month_max_kw": 2.589,
            "power_import_kw": 0.0,
            "power_export_kw": 0.0,
            "voltage_l1_v": 234.7,
            "current_l1_a": 0.0,
            "breaker_state": 1.0,
            "limiter_threshold_kw": 99.999,
            "current_limit_l1_a": 999.99,
            "obis_1_0_94_32_1": "400",  # unknown code without unit: text
        },
        "mbus": [
            (1, "gas", "7FLO2119033733", 112.384, "m3", utc(2020, 5, 12, 11, 45, 58)),
            (2, "water", "8SAG1234567890", 872.234, "m3", utc(2020, 5, 12, 11, 45, 58)),
        ],
        "events": None,
        "billing": 3,
    },
    "athom-iskra-am550-dsmr5.txt": {
        "header": "ISK5\\2M550T-1011",
        "meter_time": utc(2018, 11, 6, 13, 4, 29),
        "equipment_id": "E0034006810516416",
        "fields": {
            "energy_import_t1_kwh": 3808.351,
            "energy_import_t2_kwh": 2948.827,
            "energy_export_t1_kwh": 1285.951,
            "energy_export_t2_kwh": 2876.514,
            "tariff": 2.0,
            "power_import_kw": 0.0,
            "power_export_kw": 0.498,
            "voltage_l1_v": 236.0,
            "current_l1_a": 2.0,
            "power_export_l1_kw": 0.676,
        },
        "mbus": [(1, "gas", "G0039001700460117", 1569.646, "m3", utc(2018, 11, 6, 13, 0, 10))],
        "events": 1,
    },
    "athom-kaifa-dsmr42-export.txt": {
        "header": "KFM5KAIFA-METER",
        "meter_time": utc(2018, 3, 6, 11, 30, 56),
        "equipment_id": "E0003000002124813",
        "fields": {
            "energy_import_t1_kwh": 4726.494,
            "energy_import_t2_kwh": 4844.281,
            "energy_export_t1_kwh": 3284.32,
            "energy_export_t2_kwh": 7764.691,
            "power_import_kw": 0.0,
            "power_export_kw": 1.869,
            "current_l1_a": 3.0,
            "power_export_l2_kw": 0.778,
        },
        "mbus": [(1, "gas", "G0016561203580113", 5359.919, "m3", utc(2018, 3, 6, 11, 0, 0))],
        "events": 1,
    },
    "athom-kamstrup-dsmr22-no-blank-line.txt": {
        "header": "KMP5 ZABF001587315111",
        "meter_time": None,
        # 33 hex digits: not hex-encoded text, kept as written.
        "equipment_id": "205C4D246333034353537383234323121",
        "fields": {
            "energy_import_t1_kwh": 185.0,
            "energy_import_t2_kwh": 84.0,
            "energy_export_t1_kwh": 13.0,
            "energy_export_t2_kwh": 19.0,
            "tariff": 1.0,
            "power_import_kw": 0.98,
            "power_export_kw": 0.0,
            "limiter_threshold_a": 999.0,
            "breaker_state": 1.0,
        },
        # Hex with a 0x99 byte is no ASCII: kept as written. No flag: first occurrence (CEST).
        "mbus": [
            (
                1,
                "gas",
                "3238313031453631373038389930337131",
                124.477,
                "m3",
                utc(2012, 5, 17, 0, 0, 0),
            )
        ],
        "events": None,
    },
    "athom-kamstrup-omnia-kam5.txt": {
        "header": "KAM5",
        "meter_time": None,  # 250000000000W: month 00
        "equipment_id": None,
        "fields": {
            "energy_import_kwh": 123.321,
            "energy_export_kwh": 456.654,
            "energy_reactive_import_kvarh": 1234.432,
            "energy_reactive_export_kvarh": 5678.765,
            "power_import_kw": 2.424,
            "power_export_kw": 0.0,
            "power_reactive_import_kvar": 1.229,
            "power_import_l3_kw": 0.992,
            "voltage_l1_v": 225.4,
            "current_l1_a": 3.4,
        },
        "mbus": [],
        "events": None,
    },
    "athom-lg-xmx-dsmr22.txt": {
        "header": "XMX5XMXABCE000012345",
        "meter_time": None,
        "equipment_id": "0123456789ABCDEF",
        "fields": {
            "energy_import_t1_kwh": 11667.44,
            "energy_import_t2_kwh": 11781.558,
            "energy_export_t1_kwh": 0.0,
            "energy_export_t2_kwh": 0.0,
            "tariff": 1.0,
            "power_import_kw": 0.55,
            "power_export_kw": 0.0,
        },
        "mbus": [],
        "events": None,
    },
    "athom-lg-xmx-dsmr40-clock-unset.txt": {
        "header": "XMX5LGBBFFB231216240",
        "meter_time": None,  # 000101010000W: never set
        "equipment_id": "E0004001591092214",
        "fields": {
            "energy_import_t1_kwh": 1990.002,
            "energy_import_t2_kwh": 0.0,
            "energy_export_t1_kwh": 0.0,
            "energy_export_t2_kwh": 0.0,
            "power_import_kw": 0.0,
            "power_export_kw": 0.0,
            "limiter_threshold_kw": 999.9,
            "power_failures": 23.0,
        },
        "mbus": [],
        "events": 0,
    },
    "athom-lg-xmx-dsmr42-1phase.txt": {
        "header": "XMX5LGBBFG10",
        "meter_time": utc(2017, 1, 8, 15, 11, 7),
        "equipment_id": "E0031003001699515",
        "fields": {
            "energy_import_t1_kwh": 2074.842,
            "energy_import_t2_kwh": 881.383,
            "energy_export_t1_kwh": 10.981,
            "energy_export_t2_kwh": 28.031,
            "power_import_kw": 0.494,
            "power_export_kw": 0.0,
            "current_l1_a": 3.0,
            "power_import_l1_kw": 0.494,
        },
        "mbus": [(1, "gas", "G0019340221198415", 1234.0, "m3", utc(2017, 1, 8, 15, 0, 0))],
        "events": 3,
    },
    "athom-sagemcom-t210d-anon-1.txt": {
        "header": "Ene5\\T210-D ESMR5.0",
        "meter_time": utc(2021, 3, 30, 17, 23, 5),
        "equipment_id": "serienummer",
        "fields": {
            "energy_import_t1_kwh": 9.533,
            "energy_import_t2_kwh": 14.154,
            "energy_export_t1_kwh": 2248.911,
            "energy_export_t2_kwh": 5072.177,
            "power_import_kw": 0.0,
            "power_export_kw": 0.566,
            "power_failures": 220.0,
            "voltage_l1_v": 226.0,
            "current_l1_a": 4.0,
            "power_export_l3_kw": 0.257,
        },
        "mbus": [],
        "events": 9,
    },
    "athom-sagemcom-t210d-anon-gas.txt": {
        "header": "Ene5\\T210-D ESMR5.0",
        "meter_time": utc(2018, 1, 8, 19, 25, 37),
        "equipment_id": "serienummer",
        "fields": {
            "energy_import_t1_kwh": 0.855,
            "energy_import_t2_kwh": 0.693,
            "energy_export_t1_kwh": 0.084,
            "energy_export_t2_kwh": 0.0,
            "power_import_kw": 0.134,
            "power_export_kw": 0.0,
            "voltage_l1_v": 229.0,
            "current_l1_a": 0.0,
            "power_import_l1_kw": 0.094,
        },
        "mbus": [(1, "gas", "serienummer", 1.29, "m3", utc(2018, 1, 8, 19, 55, 0))],
        "events": 1,
    },
    "athom-sagemcom-t210dr-at-ffff.txt": {
        "header": "EST5\\123456789_A",
        "meter_time": utc(2025, 3, 19, 9, 28, 12),
        "equipment_id": None,
        # Wh, W, varh and var brought to kWh, kW, kvarh and kvar.
        "fields": {
            "energy_import_kwh": 201.282,
            "energy_import_t1_kwh": 134.904,
            "energy_import_t2_kwh": 66.378,
            "energy_export_kwh": 320.908,
            "energy_export_t1_kwh": 317.131,
            "energy_export_t2_kwh": 3.777,
            "energy_reactive_import_kvarh": 36.52,
            "energy_reactive_import_t1_kvarh": 32.377,
            "energy_reactive_export_kvarh": 259.742,
            "energy_reactive_export_t2_kvarh": 90.184,
            "power_import_kw": 0.0,
            "power_export_kw": 3.996,
            "power_reactive_import_kvar": 0.0,
            "power_reactive_export_kvar": 0.221,
        },
        "mbus": [],
        "events": None,
    },
    "athom-sagemcom-t211-42-1-0.txt": {
        "header": "Ene5\\T211 ESMR 5.0",
        "meter_time": utc(2024, 2, 20, 16, 9, 58),
        "equipment_id": "E0062000014526223",
        "fields": {
            "energy_import_t1_kwh": 565.971,
            "energy_import_t2_kwh": 694.269,
            "energy_export_t1_kwh": 6.754,
            "energy_export_t2_kwh": 7.849,
            "power_import_kw": 0.723,
            "power_export_kw": 0.0,
            "voltage_l1_v": 226.0,
            "current_l1_a": 3.0,
            "power_import_l1_kw": 0.654,
            "obis_1_0_42_1_0_kw": 0.0,  # unknown code with a unit: a number
            "power_export_l2_kw": 0.0,
        },
        "mbus": [(1, "gas", "G0072003964498719", 6362.12, "m3", utc(2024, 2, 20, 16, 10, 0))],
        "events": 0,
    },
    "athom-sagemcom-xt211-1-1-channel.txt": {
        "header": "GRE5\\\\12341234_A",
        "meter_time": None,  # 123412341234W, anonymised
        # 0-0:0.0.0, the meter serial; 0-0:96.1.2 is 48 spaces (blank).
        "equipment_id": "123412341234",
        "fields": {
            # Channel 1 (`1-1:`) means the same as channel 0.
            "energy_import_t1_kwh": 1595.07,
            "energy_import_t2_kwh": 5216.778,
            "energy_export_t1_kwh": 4478.038,
            "energy_export_t2_kwh": 4.648,
            "tariff": 1.0,
            "power_import_kw": 1.622,
            "power_export_kw": 0.0,
            "power_failures": 18.0,
            "voltage_l1_v": 238.9,
            "current_l1_a": 5.15,
            "power_export_l1_kw": 1.175,
            "demand_import_month_max_kw": 15.206,
            "demand_import_kw": 0.288,
        },
        "mbus": [],
        "events": 2,
        "billing": 0,  # 0-0:98.1.0(12): no entries
    },
    "athom-smarty-lux-spec.txt": {
        "header": "Lux5\\253694471_M",
        "meter_time": utc(2020, 7, 6, 8, 41, 57),
        "equipment_id": "SAG1030790002574",  # 0-0:42.0.0, the logical device name
        "fields": {
            "energy_import_kwh": 25.653,
            "energy_export_kwh": 0.04,
            "energy_reactive_import_kvarh": 0.835,
            "energy_reactive_export_kvarh": 63.781,
            "power_import_kw": 0.005,
            "power_export_kw": 0.0,
            "power_reactive_import_kvar": 0.0,
            "limiter_threshold_kva": 69.0,
            "power_apparent_import_kva": 0.021,
            "power_apparent_export_kva": 0.0,
            "current_limit_l1_a": 100.0,
            "current_limit_l1_2_a": -63.0,
            "breaker_state": 1.0,
            "power_failures": 99.0,
            "voltage_l1_v": 233.0,
            "voltage_l2_v": 0.0,
            "current_l1_a": 0.0,
        },
        "mbus": [
            (1, "gas", "FLO189900060355", 0.006, "m3", utc(2020, 7, 6, 8, 31, 40)),
            (2, "water", None, 0.0, None, None),  # (632525252525S)(00000.000)
            (3, "water", None, 0.0, None, None),
            (4, "gas", "ELS353589980300", 28.103, "m3", utc(2020, 7, 6, 8, 29, 0)),
        ],
        "events": None,
    },
    "avans-kaifa-ma304-dsmr42.txt": {
        "header": "KFM5KAIFA-METER",
        "meter_time": utc(2020, 2, 13, 16, 4, 57),
        "equipment_id": "E0026000033338416",
        "fields": {
            "energy_import_t1_kwh": 15001.164,
            "energy_import_t2_kwh": 12236.435,
            "energy_export_t1_kwh": 942.859,
            "energy_export_t2_kwh": 2395.253,
            "power_import_kw": 0.299,
            "power_export_kw": 0.0,
            "current_l1_a": 0.0,
            "power_import_l3_kw": 0.158,
        },
        "mbus": [(1, "gas", "G0032561281676416", 6136.485, "m3", utc(2020, 2, 13, 16, 0, 0))],
        "events": 2,
    },
    "basjes-iskra-am550-dsmr5.txt": {
        "header": "ISK5\\2M550T-1012",
        "meter_time": utc(2019, 3, 24, 14, 5, 41),
        "equipment_id": "E0044007131650618",
        "fields": {
            "energy_import_t1_kwh": 3432.829,
            "energy_import_t2_kwh": 3224.632,
            "energy_export_t1_kwh": 0.0,
            "energy_export_t2_kwh": 0.0,
            "tariff": 1.0,
            "power_import_kw": 0.433,
            "power_export_kw": 0.0,
            "voltage_l1_v": 236.7,
            "current_l1_a": 0.0,
            "current_l3_a": 2.0,
            "power_import_l3_kw": 0.379,
        },
        "mbus": [],
        "events": 1,
    },
    "basjes-iskra-am550-powerfail-log.txt": {
        "header": "ISK5\\2M550T-1012",
        "meter_time": utc(2022, 5, 28, 13, 17, 29),
        "equipment_id": "E0044007131650618",
        "fields": {
            "energy_import_t1_kwh": 16366.258,
            "energy_import_t2_kwh": 13315.593,
            "energy_export_t1_kwh": 2435.025,
            "energy_export_t2_kwh": 6153.962,
            "power_import_kw": 0.0,
            "power_export_kw": 0.098,
            "voltage_l1_v": 238.3,
            "current_l1_a": 0.0,
            "power_export_l2_kw": 0.842,
        },
        "mbus": [],
        "events": 2,
    },
    "basjes-iskra-mt382-1003-dsmr22-gas-ch2.txt": {
        "header": "ISk5\\2MT382-1003",
        "meter_time": None,
        "equipment_id": "ZBEV005106844912",
        "fields": {
            "energy_import_t1_kwh": 16719.94,
            "energy_import_t2_kwh": 19403.22,
            "energy_export_t1_kwh": 859.681,
            "energy_export_t2_kwh": 1817.057,
            "tariff": 2.0,
            "power_import_kw": 0.89,
            "power_export_kw": 0.0,
            "limiter_threshold_kw": 999.0,
            "breaker_state": 1.0,
        },
        "mbus": [(2, "gas", "28011008306429013", 13368.864, "m3", utc(2021, 11, 22, 20, 0, 0))],
        "events": None,
    },
    "basjes-kaifa-dsmr42-gas-ch2.txt": {
        "header": "KFM5KAIFA-METER",
        "meter_time": utc(2020, 4, 10, 8, 24, 33),
        "equipment_id": "E0123456789",
        "fields": {
            "energy_import_t1_kwh": 3000.497,
            "energy_import_t2_kwh": 1000.248,
            "energy_export_t1_kwh": 1000.458,
            "energy_export_t2_kwh": 3000.394,
            "power_import_kw": 0.105,
            "power_export_kw": 0.0,
            "power_failures": 0.0,
            "current_l1_a": 1.0,
            "power_import_l1_kw": 0.105,
        },
        "mbus": [(2, "gas", "E0123456789", 2000.671, "m3", utc(2020, 4, 10, 8, 0, 0))],
        "events": 1,
    },
    "basjes-kamstrup-ka6u-dsmr22.txt": {
        "header": "KMP5 KA6U001660297912",
        "meter_time": None,
        "equipment_id": " KA6U001660297912",  # the meter's own leading space, as decoded
        "fields": {
            "energy_import_t1_kwh": 7041.882,
            "energy_import_t2_kwh": 2351.565,
            "energy_export_t1_kwh": 3125.397,
            "energy_export_t2_kwh": 7729.108,
            "tariff": 1.0,
            "power_import_kw": 0.54,
            "power_export_kw": 0.0,
        },
        "mbus": [(1, "gas", "28101541004022211", 4083.631, "m3", utc(2016, 3, 15, 20, 0, 0))],
        "events": None,
    },
    "basjes-kamstrup-zabf-dsmr22-gas-ch2.txt": {
        "header": "KMP5 ZABF001551772711",
        "meter_time": None,
        "equipment_id": " ZABF00151772711",
        "fields": {
            "energy_import_t1_kwh": 5080.475,
            "energy_import_t2_kwh": 5008.385,
            "energy_export_t1_kwh": 0.0,
            "energy_export_t2_kwh": 0.0,
            "power_import_kw": 0.68,
            "power_export_kw": 0.0,
        },
        "mbus": [(2, "gas", "28101541007162412", 2025.003, "m3", utc(2016, 1, 17, 11, 0, 0))],
        "events": None,
    },
    "basjes-lg-e350-dsmr42-clock-unset.txt": {
        "header": "XMX5LGBBFG1009089532",
        "meter_time": None,  # 000101010000W: never set
        "equipment_id": "E0030003111959715",
        "fields": {
            "energy_import_t1_kwh": 24.487,
            "energy_import_t2_kwh": 30.536,
            "energy_export_t1_kwh": 0.528,
            "energy_export_t2_kwh": 0.0,
            "tariff": 2.0,
            "power_import_kw": 0.0,
            "power_export_kw": 0.0,
            "power_failures": 116.0,
            "voltage_sags_l2": 28.0,
            "current_l1_a": 0.0,
            "power_import_l1_kw": 0.004,
        },
        # The gas channel's capture time is the unset clock too, its value has no unit.
        "mbus": [(1, "gas", "G0002340157267314", 0.0, None, utc(2000, 1, 1, 0, 0, 0))],
        "events": 0,
    },
    "basjes-lg-e350-dsmr42-gas.txt": {
        "header": "XMX5LGBBFG1009325446",
        "meter_time": utc(2019, 9, 5, 19, 40, 3),
        "equipment_id": "E0031003239456716",
        "fields": {
            "energy_import_t1_kwh": 3235.689,
            "energy_import_t2_kwh": 6777.24,
            "energy_export_t1_kwh": 0.313,
            "energy_export_t2_kwh": 0.0,
            "power_import_kw": 0.374,
            "power_export_kw": 0.0,
            "current_l1_a": 2.0,
            "power_import_l1_kw": 0.374,
        },
        "mbus": [(1, "gas", "G0019340315370616", 1091.352, "m3", utc(2019, 9, 5, 19, 0, 0))],
        "events": 1,
    },
    "basjes-sagemcom-cx2000-dsmr5.txt": {
        "header": "Ene5\\SAGEMCOM CX2000-",
        "meter_time": utc(2018, 12, 2, 5, 9, 10),
        "equipment_id": "STTTT123450027317",
        "fields": {
            "energy_import_t1_kwh": 98.508,
            "energy_import_t2_kwh": 0.0,
            "energy_export_t1_kwh": 0.917,
            "energy_export_t2_kwh": 0.0,
            "tariff": 1.0,
            "power_import_kw": 0.004,
            "power_export_kw": 0.0,
            "power_failures": 933.0,
            "power_failures_long": 108.0,
            "voltage_l1_v": 227.0,
            "current_l1_a": 0.0,
        },
        "mbus": [],
        "events": 10,
    },
    "basjes-sagemcom-xs210-dsmr5-1phase.txt": {
        "header": "Ene5\\XS210 ESMR 5.0",
        "meter_time": utc(2017, 11, 5, 19, 13, 24),
        "equipment_id": "E0047000007630817",
        "fields": {
            "energy_import_t1_kwh": 51.775,
            "energy_import_t2_kwh": 0.0,
            "energy_export_t1_kwh": 24.413,
            "energy_export_t2_kwh": 0.0,
            "power_import_kw": 0.335,
            "power_export_kw": 0.0,
            "voltage_l1_v": 229.0,
            "current_l1_a": 1.0,
        },
        "mbus": [(1, "gas", "G0058530001163217", 16.713, "m3", utc(2017, 11, 5, 19, 10, 0))],
        "events": 0,
    },
    "basjes-xmx-dsmr22-gas-24-2-0.txt": {
        "header": "XMX5XMXABCE100103855",
        "meter_time": None,
        "equipment_id": "0123456789",
        "fields": {
            "energy_import_t1_kwh": 3687.771,
            "energy_import_t2_kwh": 4456.167,
            "energy_export_t1_kwh": 1450.36,
            "energy_export_t2_kwh": 3098.554,
            "tariff": 2.0,
            "power_import_kw": 0.0,
            "power_export_kw": 0.62,
        },
        "mbus": [(1, "gas", "0123456789", 5271.144, "m3", utc(2019, 2, 18, 11, 0, 0))],
        "events": None,
    },
    "dr-fluvius-1phase-S-header.txt": {
        "header": "FLU5S456789_A",
        "meter_time": utc(2020, 8, 7, 6, 27, 11),
        "equipment_id": D32,
        "fields": {
            "energy_import_t1_kwh": 1924.771,
            "energy_import_t2_kwh": 2549.919,
            "energy_export_t1_kwh": 1968.71,
            "energy_export_t2_kwh": 692.984,
            "tariff": 1.0,
            "power_import_kw": 0.0,
            "power_export_kw": 0.611,
            "voltage_l1_v": 235.6,
            "current_l1_a": 2.0,
            "breaker_state": 1.0,
            "limiter_threshold_kw": 999.9,
            "current_limit_l1_a": 999.0,
        },
        "mbus": [(1, "gas", D32, 1414.287, "m3", utc(2020, 8, 7, 6, 25, 2))],
        "events": None,
    },
    "dr-fluvius-no-gas-placeholder.txt": {
        "header": "FLU5\xab769484_A",
        "meter_time": utc(2020, 3, 5, 21, 29, 45),
        "equipment_id": D32,
        "fields": {
            "energy_import_t1_kwh": 172.987,
            "energy_import_t2_kwh": 160.643,
            "energy_export_t1_kwh": 23.457,
            "energy_export_t2_kwh": 4.819,
            "tariff": 2.0,
            "power_import_kw": 0.638,
            "power_export_kw": 0.0,
            "voltage_l1_v": 230.3,
            "current_l1_a": 0.0,
            "current_l3_a": 1.0,
        },
        "mbus": [(1, "gas", D32, 0.0, None, None)],  # (632525252525W)(00000.000)
        "events": None,
    },
    "dr-fluvius-peak-1phase-ab-header.txt": {
        "header": "FLU5\xab769484_A",
        "meter_time": utc(2023, 2, 1, 14, 50, 56),
        "equipment_id": D32,
        "fields": {
            "energy_import_t1_kwh": 143.608,
            "energy_import_t2_kwh": 170.853,
            "energy_export_t1_kwh": 2.963,
            "energy_export_t2_kwh": 0.427,
            "tariff": 1.0,
            "demand_import_kw": 0.078,
            "demand_import_month_max_kw": 1.566,
            "power_import_kw": 0.182,
            "power_export_kw": 0.0,
            "power_import_l1_kw": 0.23,
            "voltage_l1_v": 227.8,
            "voltage_l2_v": 0.0,
            "current_l1_a": 1.6,
            "current_limit_l1_a": 999.0,
        },
        "mbus": [],
        "events": None,
        "billing": 1,
    },
    "dr-fluvius-polyphase-S-header.txt": {
        "header": "FLU5S456789_A",
        "meter_time": utc(2019, 8, 21, 19, 0, 25),
        "equipment_id": D32,
        "fields": {
            "energy_import_t1_kwh": 260.129,
            "energy_import_t2_kwh": 338.681,
            "energy_export_t1_kwh": 0.01,
            "energy_export_t2_kwh": 0.425,
            "tariff": 2.0,
            "power_import_kw": 0.261,
            "power_export_kw": 0.0,
            "voltage_l1_v": 231.0,
            "voltage_l2_v": 0.0,
            "current_l1_a": 0.0,
        },
        "mbus": [(1, "gas", D32, 29.553, "m3", utc(2019, 8, 21, 19, 0, 11))],
        "events": None,
    },
    "dr-fluvius-two-gas-ab-header.txt": {
        "header": "FLU5\xab769484_A",
        "meter_time": utc(2023, 1, 19, 11, 46, 38),
        "equipment_id": D30,
        "fields": {
            "energy_import_t1_kwh": 4423.77,
            "energy_import_t2_kwh": 2607.237,
            "energy_export_t1_kwh": 1194.693,
            "energy_export_t2_kwh": 755.554,
            "tariff": 1.0,
            "demand_import_kw": 0.0,
            "demand_import_month_max_kw": 11.173,
            "power_import_kw": 0.0,
            "power_export_kw": 0.204,
            "power_export_l1_kw": 0.491,
            "voltage_l1_v": 234.3,
            "current_l1_a": 2.18,
        },
        "mbus": [
            (1, "gas", D30, 734.607, "m3", utc(2023, 1, 19, 11, 46, 16)),
            (2, "gas", D30, 0.0, "m3", utc(2023, 1, 19, 11, 40, 5)),
        ],
        "events": None,
        "billing": 1,
    },
    "dr-iskra-am550-cut-then-empty-eventlog.txt": {
        # A frame cut short (no `!`, ends on a lone LF), then the next telegram complete.
        "frames": 2,
        "frame": 1,
        "header": "ISK5\\2M550T-1011",
        "meter_time": utc(2017, 1, 10, 19, 40, 57),
        "equipment_id": "xxx",
        "fields": {
            "energy_import_t1_kwh": 9012.345,
            "energy_import_t2_kwh": 9067.89,
            "energy_export_t1_kwh": 9123.456,
            "energy_export_t2_kwh": 9789.012,
            "tariff": 2.0,
            "power_import_kw": 0.32,
            "power_export_kw": 0.0,
            "power_failures": 5.0,
            "voltage_l1_v": 227.0,
            "current_l1_a": 0.0,
            "power_import_l1_kw": 0.152,
        },
        "mbus": [(1, "gas", "xxx", 123.456, "m3", utc(2017, 1, 10, 19, 40, 9))],
        "events": 0,  # 1-0:99.97.0()
    },
    "dr-iskra-am550e-gas-ch2-empty-ch1.txt": {
        "header": "ISK5\x02M550E-1012",
        "meter_time": utc(2019, 11, 8, 13, 55, 19),
        "equipment_id": D32,
        "fields": {
            "energy_import_t1_kwh": 1043.936,
            "energy_import_t2_kwh": 870.706,
            "energy_export_t1_kwh": 0.0,
            "energy_export_t2_kwh": 0.0,
            "tariff": 2.0,
            "power_import_kw": 0.189,
            "power_export_kw": 0.0,
            "voltage_l1_v": 235.4,
            "current_l1_a": 1.0,
            "power_import_l1_kw": 0.19,
        },
        "mbus": [
            (1, "gas", None, 0.0, None, utc(1970, 1, 1, 0, 0, 0)),  # (700101010000W)(00000000)
            (2, "gas", D32, 241.773, "m3", utc(2019, 11, 8, 13, 55, 5)),
        ],
        "events": 1,
    },
    "dr-iskra-mt382-dsmr22-2C.txt": {
        "header": "ISk5\x02MT382-1003",
        "meter_time": None,
        "equipment_id": X30,
        "fields": {
            "energy_import_t1_kwh": 1234.784,
            "energy_import_t2_kwh": 4321.725,
            "energy_export_t1_kwh": 0.0,
            "energy_export_t2_kwh": 0.002,
            "tariff": 1.0,
            "power_import_kw": 0.36,
            "power_export_kw": 0.0,
            "limiter_threshold_kw": 999.0,
            "breaker_state": 1.0,
        },
        "mbus": [(1, "gas", X30, 7890.693, "m3", utc(2016, 4, 10, 11, 0, 0))],
        "events": None,
    },
    "dr-kaifa-dsmr42-1phase.txt": {
        "header": "KFM5KAIFA-METER",
        "meter_time": utc(2016, 3, 3, 15, 43, 47),
        "equipment_id": X30,
        "fields": {
            "energy_import_t1_kwh": 1073.079,
            "energy_import_t2_kwh": 1263.199,
            "energy_export_t1_kwh": 0.0,
            "energy_export_t2_kwh": 0.0,
            "tariff": 2.0,
            "power_import_kw": 0.143,
            "power_export_kw": 0.0,
            "current_l1_a": 0.0,
            "power_import_l1_kw": 0.143,
            "power_export_l1_kw": 0.321,
        },
        "mbus": [],
        "events": 1,
    },
    "dr-lg-dsmr40-no-mbus-type.txt": {
        "header": "XMX5LGBBFFB123456789",
        "meter_time": utc(2015, 11, 10, 18, 29, 59),
        "equipment_id": "123456789012345678901234567890",
        "fields": {
            "energy_import_t1_kwh": 510.747,
            "energy_export_t1_kwh": 0.123,
            "energy_import_t2_kwh": 500.013,
            "energy_export_t2_kwh": 123.456,
            "tariff": 1.0,
            "power_import_kw": 0.192,
            "power_export_kw": 0.123,
            "limiter_threshold_kw": 999.9,
            "power_failures": 3.0,
        },
        # No 0-1:24.1.0 line: a reading in m3 is gas.
        "mbus": [
            (
                1,
                "gas",
                "098765432109876543210987654321",
                845.206,
                "m3",
                utc(2015, 11, 10, 18, 0, 0),
            )
        ],
        "events": 0,
    },
    "dr-lg-e350-dsmr40-lowercase-s.txt": {
        "header": "XMX5LGBBFFB123456789",
        "meter_time": utc(2015, 7, 1, 17, 29, 59),
        "equipment_id": X30,
        "fields": {
            "energy_import_t1_kwh": 510.747,
            "energy_export_t1_kwh": 0.123,
            "energy_import_t2_kwh": 500.013,
            "energy_export_t2_kwh": 123.456,
            "power_import_kw": 0.192,
            "power_export_kw": 0.123,
            "current_l3_a": 1.0,
            "power_export_l3_kw": 0.999,
        },
        # 150701190000s: a lowercase summer flag keeps its time.
        "mbus": [(1, "gas", X30, 845.206, "m3", utc(2015, 7, 1, 17, 0, 0))],
        "events": 0,
    },
    "dr-lg-e350-dsmr42-gas-ch2.txt": {
        "header": "XMX5LGBBFFB231126481",
        "meter_time": utc(2016, 3, 17, 21, 10, 58),
        "equipment_id": X30,
        "fields": {
            "energy_import_t1_kwh": 1255.252,
            "energy_export_t1_kwh": 0.0,
            "energy_import_t2_kwh": 1284.838,
            "energy_export_t2_kwh": 0.0,
            "tariff": 2.0,
            "power_import_kw": 0.187,
            "power_export_kw": 0.0,
            "current_l1_a": 1.0,
            "power_export_l1_kw": 0.999,
        },
        "mbus": [(2, "gas", X30, 1438.997, "m3", utc(2016, 3, 17, 21, 0, 0))],
        "events": 0,
    },
    "dr-lg-e350-dsmr42.txt": {
        "header": "XMX5LGBBFFB123456789",
        "meter_time": utc(2016, 2, 10, 19, 30, 34),
        "equipment_id": X30,
        "fields": {
            "energy_import_t1_kwh": 756.849,
            "energy_export_t1_kwh": 0.0,
            "energy_import_t2_kwh": 714.405,
            "energy_export_t2_kwh": 0.0,
            "tariff": 2.0,
            "power_import_kw": 0.111,
            "power_export_kw": 0.0,
            "current_l1_a": 111.0,
            "current_l2_a": 222.0,
            "current_l3_a": 333.0,
            "power_import_l2_kw": 0.456,
        },
        "mbus": [(1, "gas", X30, 1197.484, "m3", utc(2016, 2, 10, 19, 0, 0))],
        "events": 0,
    },
    "dr-smarty-lux.txt": {
        "header": "Lux5\\ABCDEFG123_D",
        "meter_time": utc(2019, 10, 31, 13, 22, 39),
        "equipment_id": D32,  # 0-0:42.0.0 as written
        "fields": {
            "energy_import_kwh": 5675.956,
            "energy_export_kwh": 0.002,
            "energy_reactive_import_kvarh": 120.721,
            "energy_reactive_export_kvarh": 697.336,
            "power_import_kw": 3.074,
            "power_export_kw": 0.0,
            "power_reactive_import_kvar": 0.0,
            "limiter_threshold_kva": 27.6,
            "breaker_state": 1.0,
        },
        "mbus": [],
        "events": None,
    },
    "dr-sweden-kamstrup-kam5.txt": {
        "header": "KAM5",
        "meter_time": utc(2021, 11, 15, 9, 9, 40),
        "equipment_id": None,
        "fields": {
            "energy_import_kwh": 3.997,
            "energy_export_kwh": 0.0,
            "energy_reactive_import_kvarh": 0.0,
            "energy_reactive_export_kvarh": 0.0,
            "power_import_kw": 0.0,
            "power_export_kw": 0.0,
            "voltage_l1_v": 238.0,
            "voltage_l3_v": 240.7,
            "current_l1_a": 0.0,
        },
        "mbus": [],
        "events": None,
    },
    "homebridge-p1-i47-fluvius-1phase.txt": {
        "header": "FLU5\\253770234_A",
        "meter_time": utc(2021, 3, 21, 11, 25, 30),
        "equipment_id": "1SAG1100076616",
        "fields": {
            "energy_import_t1_kwh": 1311.025,
            "energy_import_t2_kwh": 1655.211,
            "energy_export_t1_kwh": 1885.818,
            "energy_export_t2_kwh": 751.167,
            "tariff": 2.0,
            "power_import_kw": 0.0,
            "power_export_kw": 0.207,
            "power_export_l1_kw": 0.207,
            "voltage_l1_v": 238.8,
            "current_l1_a": 1.53,
            "limiter_threshold_kw": 999.9,
            "current_limit_l1_a": 999.0,
        },
        "mbus": [(1, "gas", "7FLO2119031964", 2563.458, "m3", utc(2021, 3, 21, 11, 25, 2))],
        "events": None,
    },
    "hwapi-fluvius-1phase-be.txt": {
        "header": "FLU5\\253770234_A",
        "meter_time": utc(2021, 3, 20, 20, 46, 36),
        "equipment_id": "1SAG1100076616",
        "fields": {
            "energy_import_t1_kwh": 1311.025,
            "energy_import_t2_kwh": 1651.825,
            "energy_export_t1_kwh": 1885.818,
            "energy_export_t2_kwh": 750.923,
            "power_import_kw": 0.433,
            "power_export_kw": 0.0,
            "power_import_l1_kw": 0.438,
            "voltage_l1_v": 240.9,
            "current_l1_a": 2.22,
        },
        "mbus": [(1, "gas", "7FLO2119031964", 2559.077, "m3", utc(2021, 3, 20, 20, 46, 26))],
        "events": None,
    },
    "hwapi-iskra-am550-3ph-b.txt": {
        "header": "ISK5\\2M550T-1012",
        "meter_time": utc(2022, 12, 18, 21, 48, 20),
        "equipment_id": "E0044007018018117",
        "fields": {
            "energy_import_t1_kwh": 19068.038,
            "energy_import_t2_kwh": 19505.815,
            "energy_export_t1_kwh": 0.002,
            "energy_export_t2_kwh": 0.007,
            "tariff": 1.0,
            "power_import_kw": 0.768,
            "power_export_kw": 0.0,
            "voltage_swells_l2": 9.0,
            "voltage_l1_v": 222.0,
            "current_l1_a": 0.0,
            "current_l3_a": 3.0,
        },
        "mbus": [(1, "gas", "G0032565530972317", 6798.545, "m3", utc(2022, 12, 18, 21, 45, 1))],
        "events": 1,
    },
    "hwapi-iskra-am550-3ph.txt": {
        "header": "ISK5\\2M550T-1012",
        "meter_time": utc(2019, 12, 29, 22, 37, 14),
        "equipment_id": "E0044007118529318",
        "fields": {
            "energy_import_t1_kwh": 4000.647,
            "energy_import_t2_kwh": 1154.948,
            "energy_export_t1_kwh": 0.0,
            "energy_export_t2_kwh": 0.0,
            "power_import_kw": 1.765,
            "power_export_kw": 0.0,
            "voltage_l1_v": 236.9,
            "current_l1_a": 0.0,
            "current_l3_a": 6.0,
            "power_import_l3_kw": 1.596,
        },
        "mbus": [],
        "events": 2,
    },
    "hwapi-kaifa-dsmr42-1phase.txt": {
        "header": "KFM5KAIFA-METER",
        "meter_time": utc(2019, 2, 28, 19, 50, 19),
        "equipment_id": "E0025000077770016",
        "fields": {
            "energy_import_t1_kwh": 5945.778,
            "energy_import_t2_kwh": 4415.532,
            "energy_export_t1_kwh": 212.801,
            "energy_export_t2_kwh": 636.089,
            "power_import_kw": 2.992,
            "power_export_kw": 0.0,
            "current_l1_a": 12.0,
            "power_import_l1_kw": 2.992,
        },
        "mbus": [(2, "gas", "G0019340321222816", 3514.244, "m3", utc(2019, 2, 28, 19, 0, 0))],
        "events": 2,
    },
    "hwapi-kaifa-dsmr42-3ph.txt": {
        "header": "KFM5KAIFA-METER",
        "meter_time": utc(2022, 1, 7, 23, 2, 26),  # 00:02 local on the 8th
        "equipment_id": "E0026000030985316",
        "fields": {
            "energy_import_t1_kwh": 24575.366,
            "energy_import_t2_kwh": 13445.403,
            "energy_export_t1_kwh": 5595.177,
            "energy_export_t2_kwh": 14397.615,
            "tariff": 1.0,
            "power_import_kw": 0.712,
            "power_export_kw": 0.0,
            "current_l1_a": 2.0,
            "power_import_l1_kw": 0.4,
        },
        "mbus": [],
        "events": 2,
    },
    "hwapi-lg-e350-dsmr5-1phase.txt": {
        "header": "XMX5LGBBLA4415290514",
        "meter_time": utc(2018, 9, 1, 17, 42, 46),
        "equipment_id": "E0045004014698317",
        "fields": {
            "energy_import_t1_kwh": 1362.372,
            "energy_import_t2_kwh": 851.129,
            "energy_export_t1_kwh": 0.0,
            "energy_export_t2_kwh": 0.0,
            "power_import_kw": 0.276,
            "power_export_kw": 0.0,
            "voltage_l1_v": 230.0,
            "current_l1_a": 2.0,
        },
        "mbus": [(1, "gas", "G0039001767854117", 485.627, "m3", utc(2018, 9, 1, 17, 40, 4))],
        "events": 0,
    },
    "hwapi-lg-xmx-dsmr22-gas-24-2-0.txt": {
        "header": "XMX5XMXABCE000063181",
        "meter_time": None,
        "equipment_id": "13640030        ",  # hex of the digits and 8 spaces, as decoded
        "fields": {
            "energy_import_t1_kwh": 32586.251,
            "energy_import_t2_kwh": 36388.384,
            "energy_export_t1_kwh": 0.111,
            "energy_export_t2_kwh": 0.286,
            "tariff": 1.0,
            "power_import_kw": 5.01,
            "power_export_kw": 0.0,
        },
        "mbus": [(1, "gas", "28011008313167513", 12007.76, "m3", utc(2018, 9, 2, 9, 0, 0))],
        "events": None,
    },
    "kazhu-aux-hu-capture10.txt": {
        "frames": 10,  # consecutive telegrams, 10 s apart
        "frame": 0,
        "header": "AUX59903106618",
        "meter_time": utc(2023, 8, 17, 15, 14, 30),
        "equipment_id": "9903106618",  # 0-0:96.1.0 before the logical device name 42.0.0
        "fields": {
            "limiter_threshold_kw": 90.0,
            "breaker_status": "ON",
            "tariff": 1.0,
            "energy_import_kwh": 812.421,
            "energy_import_t1_kwh": 470.111,
            "energy_import_t2_kwh": 342.31,
            "energy_import_t3_kwh": 0.0,
            "energy_export_kwh": 1714.369,
            "energy_export_t1_kwh": 1233.413,
            "energy_export_t2_kwh": 480.956,
            "energy_reactive_import_kvarh": 18.858,
            "energy_reactive_export_kvarh": 439.269,
            "energy_reactive_q1_kvarh": 11.481,
            "energy_absolute_kwh": 2526.79,
            "voltage_l1_v": 234.0,
            "current_l1_a": 1.0,
            "power_factor": 0.336,
            "power_factor_l1": 0.842,
            "frequency_hz": 49.99,
            "power_import_kw": 0.25,
            "power_export_kw": 0.168,
            "power_reactive_q4_kvar": 0.159,
            "current_limit_l1_a": 200.0,
        },
        "mbus": [],
        "events": None,
        "billing": 1,
    },
    "kazhu-aux-hu-duplicate-clock-line.txt": {
        "header": "AUX59903218166",
        "meter_time": utc(2023, 8, 17, 15, 14, 30),
        "equipment_id": "9903218166",
        "fields": {
            "energy_import_kwh": 812.421,
            "energy_import_t1_kwh": 470.111,
            "energy_export_kwh": 1714.369,
            "power_import_kw": 0.25,
            "power_export_kw": 0.168,
            "voltage_l1_v": 234.0,
            "current_l1_a": 1.0,
            "frequency_hz": 49.99,
            "breaker_status": "ON",
        },
        "mbus": [],
        "events": None,
        "billing": 1,
    },
    "mthmulders-iskra-am550t-1013.txt": {
        "header": "ISK5\\2M550T-1013",
        "meter_time": utc(2023, 10, 26, 18, 40, 15),
        "equipment_id": "E0054008559129023",
        "fields": {
            "energy_import_t1_kwh": 32.159,
            "energy_import_t2_kwh": 2.167,
            "energy_export_t1_kwh": 2.376,
            "energy_export_t2_kwh": 0.0,
            "tariff": 2.0,
            "power_import_kw": 0.302,
            "power_export_kw": 0.0,
            "voltage_l1_v": 234.3,
            "current_l1_a": 1.0,
            "power_import_l1_kw": 0.25,
        },
        "mbus": [(1, "gas", "G0089565611198723", 4.381, "m3", utc(2023, 10, 26, 18, 40, 4))],
        "events": 1,
    },
    "psvanstrom-ellevio-ell5-se.txt": {
        "header": "ELL5\\253833635_A",
        "meter_time": utc(2021, 2, 17, 17, 40, 19),
        "equipment_id": None,
        "fields": {
            "energy_import_kwh": 6678.394,
            "energy_export_kwh": 0.0,
            "energy_reactive_import_kvarh": 21.988,
            "energy_reactive_export_kvarh": 1020.971,
            "power_import_kw": 1.727,
            "power_export_kw": 0.0,
            "power_reactive_export_kvar": 0.309,
            "power_import_l1_kw": 1.023,
            "voltage_l1_v": 240.3,
            "current_l1_a": 4.2,
        },
        "mbus": [],
        "events": None,
    },
    "wassasin-iskra-am550e-1phase-6events.txt": {
        "header": "ISK5\\2M550E-1012",
        "meter_time": utc(2019, 3, 20, 17, 14, 3),
        "equipment_id": "E0043007052870318",
        "fields": {
            "energy_import_t1_kwh": 576.239,
            "energy_import_t2_kwh": 465.162,
            "energy_export_t1_kwh": 0.0,
            "energy_export_t2_kwh": 0.0,
            "tariff": 2.0,
            "power_import_kw": 0.193,
            "power_export_kw": 0.0,
            "power_failures": 9.0,
            "power_failures_long": 8.0,
            "voltage_l1_v": 236.1,
            "current_l1_a": 1.0,
        },
        "mbus": [(1, "gas", "G0032565535520117", 304.089, "m3", utc(2019, 3, 20, 17, 10, 3))],
        "events": 6,
    },
    "wassasin-kaifa-dsmr42-7events-placeholders.txt": {
        "header": "KFM5KAIFA-METER",
        "meter_time": utc(2022, 9, 1, 13, 22, 1),
        "equipment_id": "E0026000024153615",
        "fields": {
            "energy_import_t1_kwh": 6285.065,
            "energy_import_t2_kwh": 6758.327,
            "energy_export_t1_kwh": 0.0,
            "energy_export_t2_kwh": 0.0,
            "power_import_kw": 0.335,
            "power_export_kw": 0.0,
            "current_l1_a": 1.0,
            "power_import_l1_kw": 0.254,
        },
        "mbus": [(1, "gas", "G0025003276855515", 4836.851, "m3", utc(2022, 9, 1, 13, 0, 0))],
        "events": 7,
    },
    "wassasin-mcs-dsmr5-odd-eventlog.txt": {
        "header": "MCS50000000000000",
        "meter_time": None,  # 000000000000W
        "equipment_id": None,  # 17 zeros
        "fields": {
            "energy_import_t1_kwh": 1.0,
            "energy_import_t2_kwh": 2.0,
            "energy_export_t1_kwh": 3.0,
            "energy_export_t2_kwh": 4.0,
            "tariff": 2.0,
            "power_import_kw": 0.096,
            "power_export_kw": 0.0,
            "power_failures": 0.0,
            "power_failures_long": 4.0,
            "voltage_l1_v": 232.4,
            "current_l1_a": 0.0,
            "power_import_l1_kw": 0.1,
        },
        # 0-1:24.1.0() and 0-1:96.1.0() empty, the reading without unit at 2000-01-01 local.
        "mbus": [(1, "unknown", None, 0.0, None, utc(1999, 12, 31, 23, 0, 0))],
        "events": 4,
    },
    "wassasin-sagemcom-t211.txt": {
        "header": "Ene5\\T211 ESMR 5.0",
        "meter_time": utc(2023, 11, 24, 20, 56, 58),
        "equipment_id": "E0062000013122923",
        "fields": {
            "energy_import_t1_kwh": 341.156,
            "energy_import_t2_kwh": 265.076,
            "energy_export_t1_kwh": 469.838,
            "energy_export_t2_kwh": 945.206,
            "power_import_kw": 0.499,
            "power_export_kw": 0.0,
            "voltage_l1_v": 233.0,
            "current_l1_a": 0.0,
            "current_l3_a": 1.0,
        },
        "mbus": [],
        "events": 1,
    },
}


# -- decoding ---------------------------------------------------------------------------------


def realworld_frames(data: bytes) -> list[Frame]:
    return frame_all(data)


def decode_row(name: str, data: bytes) -> Telegram:
    """The telegram a row describes: its frame of the file, decoded with the default zone."""
    row = EXPECTED[name]
    frames = realworld_frames(data)
    assert len(frames) == row.get("frames", 1), name
    return Decoder().decode(frames[row.get("frame", 0)].body)


def _devices(telegram: Telegram) -> list[tuple[object, ...]]:
    rows = []
    for device in telegram.mbus:
        reading = device.reading
        if device.device_type is None and device.equipment_id is None and reading is None:
            continue  # a channel with only a valve or breaker line (0-3:96.3.10)
        if reading is None:
            rows.append((device.channel, device.kind, device.equipment_id, None, None, None))
        else:
            rows.append(
                (
                    device.channel,
                    device.kind,
                    device.equipment_id,
                    reading.value,
                    reading.unit,
                    reading.time,
                )
            )
    return rows


def _events(telegram: Telegram) -> int | str | None:
    log = telegram.readings.get("1-0:99.97.0")
    if log is None:
        return None
    if not isinstance(log.value, list):
        return f"not decoded: {log!r}"
    return len(log.value)


def _aware_or_none(value: datetime | None) -> bool:
    return value is None or value.utcoffset() is not None


def test_every_realworld_file_has_a_row_and_a_manifest_line(
    realworld_dir: Path, realworld_manifest: dict[str, dict[str, str]]
) -> None:
    assert sorted(EXPECTED) == REALWORLD_NAMES
    assert sorted(realworld_manifest) == REALWORLD_NAMES


def test_realworld_file_decodes_to_expected_values(
    realworld_name: str, read_realworld: Read
) -> None:
    assert realworld_name in EXPECTED, f"{realworld_name}: add its row to EXPECTED"
    row = EXPECTED[realworld_name]
    telegram = decode_row(realworld_name, read_realworld(realworld_name))

    # Every difference at once: (decoded, expected).
    wrong: dict[str, tuple[object, object]] = {}

    def expect(what: str, decoded: object, expected: object) -> None:
        if decoded != expected or type(decoded) is not type(expected):
            wrong[what] = (decoded, expected)

    expect("header", telegram.header, row["header"])
    expect("meter_time", telegram.meter_time, row["meter_time"])
    expect("equipment_id", telegram.equipment_id, row["equipment_id"])
    expect("meter", telegram.meter, row["equipment_id"] or row["header"])
    for name, value in row["fields"].items():
        expect(name, telegram.fields.get(name, "<missing>"), value)
    expect("mbus", _devices(telegram), row["mbus"])
    expect("events", _events(telegram), row["events"])
    if "billing" in row:
        expect("billing points", len(billing_points(telegram, telegram.meter)), row["billing"])
    assert wrong == {}
    # Times are aware (an instant), whatever offset the decoder gives them.
    assert _aware_or_none(telegram.meter_time)
    assert all(_aware_or_none(d[5]) for d in _devices(telegram))  # type: ignore[arg-type]


def test_every_line_of_every_realworld_file_is_read(
    realworld_name: str, read_realworld: Read
) -> None:
    # Not an OBIS line, or an OBIS line whose value could not be read: both would lose data.
    for frame in realworld_frames(read_realworld(realworld_name)):
        if frame.truncated:
            continue
        telegram = Decoder().decode(frame.body)
        assert telegram.unknown_lines == []
        unread = {
            obis: reading.raw
            for obis, reading in telegram.readings.items()
            if reading.raw not in (None, "")  # `()` is an empty value, not an unread one
            # A placeholder clock (`000000000000W`) is read: it says there is no meter time.
            and not (obis == "0-0:1.0.0" and telegram.meter_time is None)
        }
        assert unread == {}


# -- values the rows do not show --------------------------------------------------------------


def _decode(name: str, read_realworld: Read) -> Telegram:
    return decode_row(name, read_realworld(name))


def test_mcs_event_log_keeps_placeholder_entries(read_realworld: Read) -> None:
    # (000000000000S)(23)(000000000000W)(00000000)(000000000000W)(8)(000000000000W)(14)
    log = _decode("wassasin-mcs-dsmr5-odd-eventlog.txt", read_realworld).readings["1-0:99.97.0"]
    assert isinstance(log.value, list)
    assert [(e.time, e.value, e.unit) for e in log.value] == [
        (None, 23.0, None),
        (None, 0.0, None),
        (None, 8.0, None),
        (None, 14.0, None),
    ]


def test_event_log_entries(read_realworld: Read) -> None:
    log = _decode("basjes-iskra-am550-powerfail-log.txt", read_realworld).readings["1-0:99.97.0"]
    assert isinstance(log.value, list)
    # (180417201458S)(0000000236*s)(220525094346S)(0000002936*s)
    assert [(e.time, e.value, e.unit) for e in log.value] == [
        (utc(2018, 4, 17, 18, 14, 58), 236.0, "s"),
        (utc(2022, 5, 25, 7, 43, 46), 2936.0, "s"),
    ]
    log = _decode("amshan-lg-zcf-dsmr42-no-crc.txt", read_realworld).readings["1-0:99.97.0"]
    assert isinstance(log.value, list)
    # (5)(0-0:96.7.19)(170520130938S)(0000005627*s)(170325044014W)(0043178677*s)
    assert [(e.time, e.value, e.unit) for e in log.value] == [
        (utc(2017, 5, 20, 11, 9, 38), 5627.0, "s"),
        (utc(2017, 3, 25, 3, 40, 14), 43178677.0, "s"),
    ]


def test_fluvius_monthly_peaks(read_realworld: Read) -> None:
    telegram = _decode("athom-fluvius-emucs211-spec.txt", read_realworld)
    points = billing_points(telegram, telegram.meter)
    # (200501000000S)(200423192538S)(03.695*kW) (200401000000S)(200305122139S)(05.980*kW)
    # (200301000000S)(200210035421W)(04.318*kW)
    assert [(p.time, p.fields["demand_import_month_max_kw"]) for p in points] == [
        (utc(2020, 4, 30, 22, 0, 0), 3.695),
        (utc(2020, 3, 31, 22, 0, 0), 5.98),
        (utc(2020, 2, 29, 23, 0, 0), 4.318),
    ]
    assert [p.fields["peak_time"] for p in points] == [
        "2020-04-23T19:25:38+02:00",
        "2020-03-05T12:21:39+01:00",
        "2020-02-10T03:54:21+01:00",
    ]


def test_hungarian_billing_profile(read_realworld: Read) -> None:
    telegram = _decode("kazhu-aux-hu-capture10.txt", read_realworld)
    (point,) = billing_points(telegram, telegram.meter)
    assert point.time == utc(2023, 7, 31, 22, 0, 0)  # 230801000000S
    assert point.fields["energy_import_kwh"] == 663.924
    assert point.fields["energy_export_t2_kwh"] == 397.238
    assert point.fields["energy_absolute_kwh"] == 1968.098
    assert point.fields["demand_import_max_kw"] == 12.212
    assert point.fields["demand_export_max_t2_kw"] == 5.144


def test_hungarian_capture_is_ten_telegrams_ten_seconds_apart(read_realworld: Read) -> None:
    frames = realworld_frames(read_realworld("kazhu-aux-hu-capture10.txt"))
    decoder = Decoder()
    telegrams = [decoder.decode(f.body) for f in frames]
    # 230817171430S … 230817171600S
    assert [t.meter_time for t in telegrams] == [
        utc(2023, 8, 17, 15, 14, 30),
        utc(2023, 8, 17, 15, 14, 40),
        utc(2023, 8, 17, 15, 14, 50),
        utc(2023, 8, 17, 15, 15, 0),
        utc(2023, 8, 17, 15, 15, 10),
        utc(2023, 8, 17, 15, 15, 20),
        utc(2023, 8, 17, 15, 15, 30),
        utc(2023, 8, 17, 15, 15, 40),
        utc(2023, 8, 17, 15, 15, 50),
        utc(2023, 8, 17, 15, 16, 0),
    ]
    last = telegrams[-1]
    assert last.fields["energy_import_kwh"] == 812.427
    assert last.fields["energy_export_kwh"] == 1714.374
    assert last.fields["energy_absolute_kwh"] == 2526.801
    assert last.fields["power_factor"] == 0.194
    # The 1024 bytes of 0xFF are padding: no message.
    assert "text_message" not in last.fields


def test_xt211_empty_profile_is_decoded(read_realworld: Read) -> None:
    telegram = _decode("athom-sagemcom-xt211-1-1-channel.txt", read_realworld)
    profile = telegram.readings["0-0:98.1.0"]
    assert profile.value == [] and profile.raw is None


def test_blank_and_empty_identifiers_are_absent(read_realworld: Read) -> None:
    # 0-0:96.1.2 of 48 spaces (XT211), 0-0:96.1.1 and 0-1:96.1.0 of zeros (Kaifa), `0-1:96.1.0()`.
    for name in (
        "athom-sagemcom-xt211-1-1-channel.txt",
        "arduino-dsmr-kaifa-dsmr40.txt",
        "wassasin-mcs-dsmr5-odd-eventlog.txt",
    ):
        telegram = _decode(name, read_realworld)
        assert telegram.equipment_id is None or telegram.equipment_id.strip(" 0") != ""
        assert all(d.equipment_id is None for d in telegram.mbus)


def test_empty_luxembourg_messages_give_no_field(read_realworld: Read) -> None:
    for name in ("dr-smarty-lux.txt", "athom-smarty-lux-spec.txt"):
        telegram = _decode(name, read_realworld)
        for code in ("0-0:96.13.0", "0-0:96.13.2", "0-0:96.13.3", "0-0:96.13.4", "0-0:96.13.5"):
            assert telegram.readings[code].raw is None, code
        assert not [f for f in telegram.fields if f.startswith(("text_message", "obis_0_0_96_13"))]


def test_identifiers_are_never_fields(read_realworld: Read) -> None:
    telegram = _decode("athom-fluvius-emucs211-spec.txt", read_realworld)
    assert not [f for f in telegram.fields if f.startswith("obis_0_0_96_1")]
    telegram = _decode("athom-sagemcom-xt211-1-1-channel.txt", read_realworld)
    assert not [f for f in telegram.fields if f.startswith(("obis_0_0_96_1", "obis_0_0_0_0_0"))]


def _without_line(data: bytes, prefix: bytes) -> bytes:
    (frame,) = frame_all(data)
    lines = frame.body.split(b"\r\n")
    kept = [line for line in lines if not line.startswith(prefix)]
    assert len(kept) == len(lines) - 1, prefix
    return b"\r\n".join(kept)


def test_emucs_serial_is_the_last_resort_identifier(read_realworld: Read) -> None:
    # Without 0-0:96.1.1 the e-MUCS 0-0:96.1.2 (hex of 541440012345678900) names the meter; without
    # 0-1:96.1.1 the gas meter's 0-1:96.1.2 names it.
    data = read_realworld("athom-fluvius-emucs211-spec.txt")
    telegram = Decoder().decode(_without_line(data, b"0-0:96.1.1("))
    assert telegram.equipment_id == "541440012345678900"
    telegram = Decoder().decode(_without_line(data, b"0-1:96.1.1("))
    assert [(d.channel, d.equipment_id) for d in telegram.mbus if d.reading is not None] == [
        (1, "541440012345678900"),
        (2, "8SAG1234567890"),
    ]
    assert not [f for f in telegram.fields if f.startswith("obis_0_0_96_1")]


def test_luxembourg_messages_2_to_5_are_text_like_96_13_0(read_realworld: Read) -> None:
    (frame,) = frame_all(read_realworld("dr-smarty-lux.txt"))
    message = b"(48656C6C6F)"
    plain = Decoder().decode(frame.body).fields
    first = Decoder().decode(frame.body.replace(b"0-0:96.13.0()", b"0-0:96.13.0" + message)).fields
    (text_field,) = set(first) - set(plain)
    for n in (2, 3, 4, 5):
        code = b"0-0:96.13.%d" % n
        fields = Decoder().decode(frame.body.replace(code + b"()", code + message)).fields
        (new,) = set(fields) - set(plain)
        assert new != text_field
        assert fields[new] == first[text_field] and isinstance(fields[new], str)


# -- rules of the decoder that no realworld meter shows ---------------------------------------

# German meters (eBZ, EasyMeter) write one signed active power, negative when exporting.
SIGNED_BODY = (
    b"/EBZ5DD3BZ06ETA_107\r\n\r\n"
    b"1-0:1.8.0(000125.25688570*kWh)\r\n"
    b"1-0:2.8.0(000010.00000000*kWh)\r\n"
    b"1-0:16.7.0(-000123.45*W)\r\n"
    b"1-0:36.7.0(000050.00*W)\r\n"
    b"1-0:56.7.0(-000173.45*W)\r\n"
    b"1-0:76.7.0(000000.00*W)\r\n"
    b"1-0:9.7.0(001234*VA)\r\n"
    b"!"
)
EASYMETER_BODY = (
    b"/ESY5Q3DA1004 V3.04\r\n\r\n"
    b"1-0:1.8.0*255(00012345.6789*kWh)\r\n"
    b"1-0:1.7.255*255(000001.23*kW)\r\n"
    b"1-0:21.7.255*255(-000000.40*kW)\r\n"
    b"1-0:41.7.255*255(000001.63*kW)\r\n"
    b"1-0:61.7.255*255(000000.00*kW)\r\n"
    b"!"
)


def test_signed_power_goes_to_import_or_export() -> None:
    fields = Decoder().decode(SIGNED_BODY).fields
    assert {k: fields.get(k) for k in fields if k.startswith("power_")} == {
        "power_import_kw": 0.0,
        "power_export_kw": 0.12345,
        "power_import_l1_kw": 0.05,
        "power_export_l1_kw": 0.0,
        "power_import_l2_kw": 0.0,
        "power_export_l2_kw": 0.17345,
        "power_import_l3_kw": 0.0,
        "power_export_l3_kw": 0.0,
        "power_apparent_import_kva": 1.234,
    }
    fields = Decoder().decode(EASYMETER_BODY).fields
    assert {k: fields.get(k) for k in fields if k.startswith("power_")} == {
        "power_import_kw": 1.23,
        "power_export_kw": 0.0,
        "power_import_l1_kw": 0.0,
        "power_export_l1_kw": 0.4,
        "power_import_l2_kw": 1.63,
        "power_export_l2_kw": 0.0,
        "power_import_l3_kw": 0.0,
        "power_export_l3_kw": 0.0,
    }


def test_irish_header_selects_irish_time(read_telegram: Read) -> None:
    # telegrams/iskra-ie.txt, `/ISk5\2MIE5T-200`, clock 230202132747S (the flag is wrong):
    # Irish time, GMT in February.
    (frame,) = frame_all(read_telegram("iskra-ie.txt"))
    assert Decoder().decode(frame.body).meter_time == utc(2023, 2, 2, 13, 27, 47)
    # A zone the user set wins.
    cet = Decoder(MeterZone("Europe/Amsterdam")).decode(frame.body)
    assert cet.meter_time == utc(2023, 2, 2, 12, 27, 47)


# -- checksums through the pipeline, as MANIFEST.tsv states them ------------------------------

_MATCHES = "checksum published, matches"
# Published with a bare `!` by someone who removed the checksum: a DSMR 4.2 meter (version line,
# clock) always seals its telegrams, so without one this is what the pipeline takes for a piece
# of a sealed telegram, and rightly rejects; sealed, as the meter sent it, it passes.
_CHECKSUM_REMOVED = {"amshan-lg-zcf-dsmr42-no-crc.txt"}
_NO_CHECKSUM = "no checksum"
_NOT_MATCHING = re.compile(r"checksum not matching as published \(computed ([0-9A-F]{4})\)")


def _checksum_note(notes: str) -> tuple[str, int | None]:
    computed = _NOT_MATCHING.search(notes)
    kinds = [
        kind
        for kind, present in (
            ("matches", _MATCHES in notes),
            ("none", notes.endswith(_NO_CHECKSUM) or f"{_NO_CHECKSUM};" in notes),
            ("not_matching", computed is not None),
        )
        if present
    ]
    assert len(kinds) == 1, notes
    return kinds[0], int(computed.group(1), 16) if computed else None


def _complete(results: list[Result]) -> list[Result]:
    return [r for r in results if not r.frame.truncated]


def test_checksum_as_the_manifest_states(
    realworld_name: str, read_realworld: Read, realworld_manifest: dict[str, dict[str, str]]
) -> None:
    data = read_realworld(realworld_name)
    kind, computed = _checksum_note(realworld_manifest[realworld_name]["notes"])
    _, results = run_pipeline(data)
    frames = EXPECTED[realworld_name].get("frames", 1)
    complete = _complete(results)
    assert len(results) == frames
    # A frame cut short is rejected as such, whatever comes after it.
    assert [r.reason for r in results if r.frame.truncated] == ["truncated"] * (
        len(results) - len(complete)
    )
    if kind == "matches":
        assert [(r.status, r.crc) for r in complete] == [("valid", CrcKind.ARC)] * len(complete)
        assert all(r.frame.checksum for r in complete)
    elif realworld_name in _CHECKSUM_REMOVED:
        assert kind == "none"
        assert [(r.status, r.reason) for r in results] == [("rejected", "fragment")]
        _, sealed = run_pipeline(reseal(data))
        assert [(r.status, r.crc) for r in sealed] == [("valid", CrcKind.ARC)]
    elif kind == "none":
        assert [(r.status, r.crc, r.frame.checksum) for r in complete] == [
            ("valid", None, None)
        ] * len(complete)
    else:
        # Rejected as published, for its checksum; the computed CRC is the manifest's, and the
        # same telegram sealed with it passes.
        assert [(r.status, r.reason) for r in complete] == [("rejected", "crc")]
        body, _ = body_and_checksum(data)
        assert crc16_arc(body) == computed
        _, resealed = run_pipeline(reseal(data))
        assert [(r.status, r.crc) for r in resealed] == [("valid", CrcKind.ARC)]


def test_manifest_covers_every_kind_of_checksum(
    realworld_manifest: dict[str, dict[str, str]],
) -> None:
    # Each row says exactly one of the three (`_checksum_note`), and each is tested on several.
    kinds = defaultdict(list)
    for name, row in realworld_manifest.items():
        kinds[_checksum_note(row["notes"])[0]].append(name)
    assert sorted(kinds) == ["matches", "none", "not_matching"]
    assert min(len(names) for names in kinds.values()) >= 5


# -- invariants of replay's line protocol over realworld/ and telegrams/ ----------------------

# What replay passes for a meter without a clock: the time the telegram arrived.
RECEIVED = utc(2024, 6, 1, 12, 0, 0)

# Identifiers and versions: never a float field.
_IDENTIFIER = re.compile(
    r"(0-\d:96\.1\.\d+|0-0:0\.0\.0|1-0:0\.0\.0|1-0:0\.2\.0|1-3:0\.2\.8|0-0:42\.0\.0)(\*255)?"
)


def _corpus() -> list[tuple[str, bytes]]:
    """Every telegram file, as the meter would have sent it: the publishers' stale or removed
    checksums resealed (the manifest says which), so every file yields accepted telegrams."""
    from conftest import REALWORLD_DIR, TELEGRAM_DIR

    stale = {
        line.split("\t")[0]
        for line in (REALWORLD_DIR / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()
        if _NOT_MATCHING.search(line)
    } | _CHECKSUM_REMOVED
    files = []
    for name in REALWORLD_NAMES:
        data = (REALWORLD_DIR / name).read_bytes()
        files.append((f"realworld/{name}", reseal(data) if name in stale else data))
    files += [(f"telegrams/{n}", (TELEGRAM_DIR / n).read_bytes()) for n in TELEGRAM_NAMES]
    return files


def _replay_lines(data: bytes) -> list[tuple[Result, list[str]]]:
    """What `replay --format line-protocol` writes for each accepted telegram of one file."""
    pipeline = MeterPipeline()
    _, results = run_pipeline(data, pipeline)
    out = []
    for result in results:
        if result.telegram is None:
            continue
        points = telegram_points(
            result.telegram,
            meter=result.telegram.meter,
            fields=result.fields,
            repaired=result.status == "repaired",
            time=RECEIVED,
        )
        out.append((result, lineprotocol.encode_all(points)))
    return out


def _obis_name(obis: str) -> str:
    return "obis_" + obis.translate(str.maketrans("-:.*", "____"))


def _identifier_names(obis: str, unit: str | None) -> set[str]:
    """Every field name an identifier line could end up under."""
    names = {_obis_name(obis), _obis_name(obis.partition("*")[0])}
    target = field_for(obis, unit)
    if target is not None:
        names.add(target[0])
    spec = lookup(obis)
    if spec is not None:
        names.add(spec.name)
    return names


@pytest.fixture(scope="module")
def replayed(realworld_dir: Path, telegram_dir: Path) -> list[tuple[str, Result, list[str]]]:
    out = []
    for name, data in _corpus():
        lines = _replay_lines(data)
        assert lines, f"{name}: no telegram accepted"
        out += [(name, result, text) for result, text in lines]
    return out


def test_corpus_replays_every_file(replayed: list[tuple[str, Result, list[str]]]) -> None:
    names = {name for name, _, _ in replayed}
    assert len(names) == len(REALWORLD_NAMES) + len(TELEGRAM_NAMES)
    # The two short streams: a telegram cut short (not accepted) before a whole one, and ten.
    assert len(replayed) == len(names) + 9


def test_every_point_has_a_timestamp(replayed: list[tuple[str, Result, list[str]]]) -> None:
    untimed = [
        (name, line[:60])
        for name, _, lines in replayed
        for line in lines
        if lineparse.parse(line).time is None
    ]
    assert untimed == []
    # A meter with a clock keeps its own time; RECEIVED stands in only where there is none.
    for name, result, lines in replayed:
        assert result.telegram is not None
        main = lineparse.parse(lines[0])
        assert main.measurement == "p1"
        expected = result.telegram.meter_time or RECEIVED
        assert main.time == int(expected.timestamp()), name


def test_every_field_has_one_type(replayed: list[tuple[str, Result, list[str]]]) -> None:
    types: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name, _, lines in replayed:
        for line in lines:
            point = lineparse.parse(line)
            for key, value in point.fields.items():
                types[(point.measurement, key)][type(value).__name__].append(name)
    mixed = {
        key: {kind: sorted(set(files))[:3] for kind, files in kinds.items()}
        for key, kinds in types.items()
        if len(kinds) > 1
    }
    assert mixed == {}
    assert types[("p1", "repaired")].keys() == {"bool"}
    assert types[("p1", "energy_import_t1_kwh")].keys() == {"float"}


def test_identifiers_are_never_float_fields(
    replayed: list[tuple[str, Result, list[str]]],
) -> None:
    floats = []
    checked = 0
    for name, result, lines in replayed:
        assert result.telegram is not None
        main = lineparse.parse(lines[0])
        for obis, reading in result.telegram.readings.items():
            if not _IDENTIFIER.fullmatch(obis):
                continue
            checked += 1
            for field in _identifier_names(obis, reading.unit):
                for key, value in main.fields.items():
                    if (key == field or key.startswith(field + "_")) and not isinstance(value, str):
                        floats.append((name, obis, key, value))
    assert floats == []
    assert checked > 150, checked  # not vacuous: most telegrams carry several identifiers


def test_mbus_points_carry_capture_times(replayed: list[tuple[str, Result, list[str]]]) -> None:
    # Every M-Bus point of the corpus has a capture time of its own, never the receive time.
    for name, result, _ in replayed:
        assert result.telegram is not None
        for point in mbus_points(result.telegram, result.telegram.meter):
            assert point.time is not None and point.time.year >= 2005, name


def test_reading_is_unchanged_by_the_pipeline(read_realworld: Read) -> None:
    # The pipeline decodes as the decoder does (same fields, derived values aside).
    name = "athom-smarty-lux-spec.txt"
    _, results = run_pipeline(reseal(read_realworld(name)))
    (result,) = results
    assert result.telegram is not None
    expected = EXPECTED[name]["fields"]
    assert {k: result.fields.get(k) for k in expected} == expected
