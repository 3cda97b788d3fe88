"""Output formats: JSONL records, InfluxDB line protocol and CSV, as design.md specifies them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from p1_testkit import run_pipeline, seal

from agent.core.pipeline import Result
from agent.core.points import Point, telegram_points
from agent.formats import jsonl, lineprotocol
from agent.formats.csv import CsvWriter

Read = Callable[[str], bytes]


def _results(*telegrams: bytes) -> list[Result]:
    _, results = run_pipeline(b"".join(telegrams))
    return results


def _lines(result: Result, repaired: bool = False) -> list[str]:
    telegram = result.telegram
    assert telegram is not None
    points = telegram_points(
        telegram, meter=telegram.meter, fields=result.fields, repaired=repaired
    )
    return lineprotocol.encode_all(points)


# -- JSONL -------------------------------------------------------------------------------------


def test_jsonl_valid_record(read_telegram: Read) -> None:
    data = read_telegram("dsmr5-iskra-two-mbus.txt")
    (result,) = _results(data)
    line = jsonl.dumps(result)
    assert "\n" not in line
    rec = json.loads(line)
    assert rec["status"] == "valid"
    assert rec["meter_time"] == "2020-04-26T22:33:25+02:00"
    # The telegram as latin-1 text from `/` through the checksum, no trailing line end.
    assert rec["telegram"] == data.decode("latin-1").rstrip("\r\n")
    assert rec["telegram"].startswith("/ISK5\\2M550T-1012\r\n") and rec["telegram"].endswith(
        "!56DD"
    )
    readings = rec["readings"]
    assert readings["1-0:1.8.1"] == {"value": 2130.115, "unit": "kWh"}
    assert readings["1-0:32.7.0"] == {"value": 229.9, "unit": "V"}
    assert readings["0-2:24.2.1"] == {
        "value": 246.138,
        "unit": "m3",
        "time": "2020-04-26T22:30:01+02:00",
    }
    assert readings["0-0:1.0.0"] == {"value": "2020-04-26T22:33:25+02:00"}
    assert readings["1-3:0.2.8"] == {"value": "50"}
    log = readings["1-0:99.97.0"]["value"]
    assert log == [{"value": 2014.0, "unit": "s", "time": "2019-03-26T09:50:15+01:00"}]
    # Keys are the OBIS references as written, in telegram order.
    assert list(readings)[:3] == ["1-3:0.2.8", "0-0:1.0.0", "0-0:96.1.1"]
    assert "repair" not in rec


def test_jsonl_text_values_and_legacy_gas(read_telegram: Read) -> None:
    (hu,) = _results(read_telegram("eon-hu-sagemcom.txt"))
    rec = json.loads(jsonl.dumps(hu))
    assert rec["readings"]["1-0:13.7.0"] == {"value": 4.556}
    assert rec["readings"]["0-0:96.13.0"] == {"value": ""}
    profile = rec["readings"]["0-0:98.1.0"]
    assert profile["time"] == "2023-07-01T00:00:00+02:00"
    assert profile["value"][0] == {"value": 40.777, "unit": "kWh"}
    (old,) = _results(read_telegram("dsmr22-iskra.txt"))
    rec = json.loads(jsonl.dumps(old))
    assert rec["meter_time"] is None
    assert rec["telegram"].endswith("0-1:24.4.0(1)\r\n!")
    assert rec["readings"]["0-1:24.3.0"] == {
        "value": 1.001,
        "unit": "m3",
        "time": "2016-11-07T19:00:00+01:00",
    }


def test_jsonl_peaks_and_placeholders(read_telegram: Read) -> None:
    (result,) = _results(read_telegram("fluvius-v171-alt.txt"))
    rec = json.loads(jsonl.dumps(result))
    peaks = rec["readings"]["0-0:98.1.0"]["value"]
    assert peaks[0] == {"value": 0.0, "unit": "kW", "start": "2023-08-01T00:00:00+02:00"}
    assert peaks[3] == {
        "value": 4.927,
        "unit": "kW",
        "time": "2023-10-16T13:00:00+02:00",
        "start": "2023-11-01T00:00:00+01:00",
    }


def test_jsonl_rejected_record_has_no_telegram(read_telegram: Read) -> None:
    data = read_telegram("dsmr42-kaifa.txt").replace(b"001581.123", b"001581.124")
    good = read_telegram("dsmr5-iskra.txt")
    rejected, valid, truncated = _results(data, good, good[:100])
    for result, reason in ((rejected, "crc"), (truncated, "truncated")):
        rec = json.loads(jsonl.dumps(result))
        assert rec["status"] == "rejected"
        assert rec["meter_time"] is None
        assert "telegram" not in rec and "readings" not in rec
        assert rec["reason"] == reason
    assert json.loads(jsonl.dumps(rejected))["received"].endswith("!6796")
    assert json.loads(jsonl.dumps(valid))["status"] == "valid"


def test_jsonl_keeps_latin1_bytes(read_telegram: Read) -> None:
    (result,) = _results(read_telegram("iskra-ie.txt"))
    rec = json.loads(jsonl.dumps(result))
    assert rec["telegram"].startswith("/ISk5\x02MIE5T-200\r\n")
    assert rec["telegram"].encode("latin-1") == read_telegram("iskra-ie.txt").rstrip(b"\r\n")


def test_jsonl_derived_and_unknown_lines(capture_resealed: list[bytes]) -> None:
    results = _results(*capture_resealed[:11])
    first, second = results[0], results[-1]
    assert "power_import_avg_kw" not in json.loads(jsonl.dumps(first)).get("derived", {})
    rec = json.loads(jsonl.dumps(second))
    assert rec["derived"]["power_import_avg_kw"] == pytest.approx(2.916)
    assert rec["readings"]["0-0:96.50.68"] == {"value": "ON"}
    assert rec["readings"]["1-0:1.8.0"] == {"value": 8234.605, "unit": "kWh"}
    assert rec["readings"]["0-0:96.13.0"] == {"value": ""}
    body = b"/XYZ5 T\r\n\r\n1-0:1.8.0(1.5*kWh)\r\ngarbled line\r\n!"
    (odd,) = _results(seal(body))
    assert json.loads(jsonl.dumps(odd))["unknown_lines"] == ["garbled line"]


# -- line protocol -----------------------------------------------------------------------------


def test_line_protocol_main_point(capture_resealed: list[bytes]) -> None:
    (result,) = _results(capture_resealed[0])
    lines = _lines(result)
    main = lines[0]
    head, fields, stamp = main.split(" ")
    assert head == "p1,meter=9901234567"
    # 2023-08-24T01:21:30+02:00 in seconds since the epoch (UTC).
    assert int(stamp) == int(datetime(2023, 8, 23, 23, 21, 30, tzinfo=UTC).timestamp())
    assert stamp == "1692832890"
    pairs = dict(pair.split("=", 1) for pair in fields.split(","))
    assert pairs["energy_import_kwh"] == "8234.524"
    assert pairs["voltage_l1_v"] == "235.3"
    assert pairs["current_l1_a"] == "0.0"  # `000*A` is a float, never an integer field
    assert pairs["current_l2_a"] == "10.0"
    assert pairs["tariff"] == "2.0"
    assert pairs["power_factor"] == "0.975"
    assert pairs["frequency_hz"] == "50.01"
    assert pairs["breaker_status"] == '"ON"'
    assert pairs["repaired"] == "false"
    assert not any(value.endswith("i") for value in pairs.values())
    # The billing profile goes to its own measurement at the billing time.
    (billing,) = [line for line in lines if line.startswith("p1_billing,")]
    head, fields, stamp = billing.split(" ")
    assert head == "p1_billing,meter=9901234567"
    assert "energy_import_kwh=7823.105" in fields.split(",")
    assert stamp == str(int(datetime(2023, 7, 31, 22, 0, tzinfo=UTC).timestamp()))
    assert len(lines) == 2


def test_line_protocol_repaired_flag(read_telegram: Read) -> None:
    (result,) = _results(read_telegram("eon-hu-sagemcom.txt"))
    assert ",repaired=true " in _lines(result, repaired=True)[0]


def test_line_protocol_mbus_points(read_telegram: Read) -> None:
    (result,) = _results(read_telegram("fluvius-v171.txt"))
    lines = _lines(result)
    mbus = [line for line in lines if line.startswith("p1_mbus,")]
    assert mbus == [
        "p1_mbus,device=7FLO2119033733,kind=gas,meter=1SAG3101021605 gas_m3=112.384 1589283958",
        "p1_mbus,device=8SAG1234567890,kind=water,meter=1SAG3101021605 water_m3=872.234 1589283958",
    ]
    billing = [line for line in lines if line.startswith("p1_billing,")]
    assert billing[0] == (
        "p1_billing,meter=1SAG3101021605 demand_import_month_max_kw=3.695,"
        'peak_time="2020-04-23T19:25:38+02:00" 1588284000'
    )
    assert len(billing) == 3
    assert lines[0].startswith("p1,meter=1SAG3101021605 ")
    assert lines[0].endswith(" 1589284449")  # 2020-05-12T13:54:09+02:00


def test_line_protocol_empty_mbus_channel_is_not_written(read_telegram: Read) -> None:
    (result,) = _results(read_telegram("dsmr5-iskra-two-mbus.txt"))
    mbus = [line for line in _lines(result) if line.startswith("p1_mbus")]
    assert mbus == [
        "p1_mbus,device=G0039001936990619,kind=gas,meter=E0044007382246019"
        " gas_m3=246.138 1587933001"
    ]


def test_line_protocol_without_meter_clock(read_telegram: Read) -> None:
    (result,) = _results(read_telegram("easymeter-q3da1004.txt"))
    (line,) = _lines(result)
    head, fields = line.split(" ")  # no timestamp: the writer's clock applies
    assert head == "p1,meter=1ESY1336001560"
    assert "energy_import_kwh=32549.5061662" in fields.split(",")
    assert "power_import_kw=1.68821" in fields.split(",")
    assert 'meter_status="80"' in fields.split(",")


def test_line_protocol_escaping() -> None:
    point = Point(
        "p1 test,x",
        {"meter": "my meter,a=b", "empty": ""},
        {"field name": 1.5, "text": 'say "hi"\\ now', "flag": True, "k=v": "a,b c"},
        datetime(2024, 3, 31, 3, 0, 10, tzinfo=UTC),
    )
    line = lineprotocol.encode(point)
    assert line == (
        r"p1\ test\,x,meter=my\ meter\,a\=b "
        r'field\ name=1.5,text="say \"hi\"\\ now",flag=true,k\=v="a,b c" 1711854010'
    )
    assert lineprotocol.encode(Point("p1", {"meter": "m"}, {}, None)) is None


def test_line_protocol_header_as_meter_tag(read_telegram: Read) -> None:
    # No equipment identifier: the identification line names the meter.
    (result,) = _results(read_telegram("sagemcom-t210-d-r.txt"))
    (line,) = _lines(result)
    assert line.startswith("p1,meter=EST5\\253710000_A energy_import_kwh=6545.766,")
    assert line.endswith(" 1665064214")


# -- CSV ---------------------------------------------------------------------------------------


def _csv(results: list[Result]) -> list[list[str]]:
    out = io.StringIO()
    writer = CsvWriter(out)
    for result in results:
        writer.write(result)
    writer.close()
    return list(csv.reader(io.StringIO(out.getvalue())))


def test_csv_rows_and_late_columns(read_telegram: Read) -> None:
    bad = read_telegram("dsmr5-iskra.txt").replace(b"000004.426", b"000004.427")
    results = _results(read_telegram("dsmr42-kaifa.txt"), bad, read_telegram("eon-hu-sagemcom.txt"))
    assert [r.status for r in results] == ["valid", "rejected", "valid"]
    rows = _csv(results)
    header, kaifa, hungary = rows  # rejected frames get no row
    assert header[:4] == ["meter_time", "utc_offset", "meter", "status"]
    assert len(set(header)) == len(header)
    assert all(len(row) == len(header) for row in rows)
    by_name = [dict(zip(header, row, strict=True)) for row in (kaifa, hungary)]
    k, h = by_name
    assert (k["meter_time"], k["utc_offset"]) == ("2016-11-13 20:57:57", "+01:00")
    assert k["meter"] == "3960221976967177082151037881335713"
    assert k["status"] == "valid"
    assert k["energy_import_t1_kwh"] == "1581.123"
    assert k["gas_m3"] == "981.443"
    assert k["gas_time"] == "2016-11-29 20:00:00"
    # Columns the first telegram did not have are padded empty in its row.
    assert header.index("voltage_l1_v") > header.index("gas_m3")
    assert k["voltage_l1_v"] == "" and k["billing_energy_import_kwh"] == ""
    assert (h["meter_time"], h["utc_offset"]) == ("2023-07-24 15:07:30", "+02:00")
    assert h["voltage_l1_v"] == "240.4"
    assert h["gas_m3"] == ""
    assert h["billing_time"] == "2023-07-01 00:00:00"
    assert h["billing_energy_import_kwh"] == "40.777"
    assert h["power_factor"] == "4.556"


def test_csv_capture(capture_resealed: list[bytes]) -> None:
    results = _results(*capture_resealed)
    rows = _csv(results)
    header, body = rows[0], rows[1:]
    assert len(body) == 54
    assert all(len(row) == len(header) for row in body)
    col = header.index
    assert body[0][col("meter_time")] == "2023-08-24 01:21:30"
    assert body[-1][col("meter_time")] == "2023-08-24 01:30:20"
    assert body[0][col("energy_import_kwh")] == "8234.524"
    assert body[0][col("breaker_status")] == "ON"
    averaged = [i for i, row in enumerate(body) if row[col("power_import_avg_kw")]]
    assert averaged[0] == 10  # once the register moved ten steps (100 s)
    assert {row[col("billing_energy_import_kwh")] for row in body} == {"7823.105"}


def test_csv_two_gas_meters_and_water(read_telegram: Read) -> None:
    rows = _csv(_results(read_telegram("fluvius-v171.txt"), read_telegram("dsmr5-iskra.txt")))
    header = rows[0]
    fluvius, iskra = (dict(zip(header, row, strict=True)) for row in rows[1:])
    assert fluvius["gas_m3"] == "112.384" and fluvius["water_m3"] == "872.234"
    assert fluvius["water_time"] == "2020-05-12 13:45:58"
    assert iskra["gas_m3"] == "0.107" and iskra["water_m3"] == ""
    assert "billing_time" not in header  # Belgian peaks are a history, not row columns


def test_csv_empty_input() -> None:
    assert _csv([]) == [["meter_time", "utc_offset", "meter", "status"]]
