"""The seed capture: 54 real Hungarian telegrams (PuTTY log, LF only, serial digits masked)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest
from p1_testkit import (
    CAPTURE_DIGITS,
    body_and_checksum,
    restore_capture_telegram,
    run_pipeline,
)

from agent.core.crc import crc16_arc, crc16_x25
from agent.core.pipeline import Result


def test_capture_layout(capture_published: list[bytes], capture_raw: bytes) -> None:
    assert capture_raw.startswith(b"=~=~=~=~=~=~=~=~=~=~=~= PuTTY log 2023.08.24 01:21:30")
    assert b"\r" not in capture_raw
    for telegram in capture_published:
        restored = restore_capture_telegram(telegram)
        body, _ = body_and_checksum(restored)
        assert len(body) == 2342
        assert body.startswith(b"/AUX5990" + CAPTURE_DIGITS + b"\r\n")
        assert b"0-0:42.0.0(AUX103030" + CAPTURE_DIGITS + b")" in body
        assert b"0-0:96.1.0(990" + CAPTURE_DIGITS + b")" in body
        assert b"0-0:96.13.0(" + b"\xff" * 1024 + b")\r\n!" in body


def test_our_crc_matches_the_published_checksums(capture_published: list[bytes]) -> None:
    # The published checksums were computed over the real digits, which we do not know. CRC-16/ARC
    # is linear (init 0, no final xor): for equal-length messages crc(a) ^ crc(b) == crc(a ^ b).
    # Our stand-in digits sit at the same offsets of every 2342-byte body, so a ^ b is the same
    # for all 54 telegrams, and so must crc(ours) ^ published be, if our CRC and CRLF are right.
    differences = set()
    wrong_variant = set()
    for telegram in capture_published:
        body, published = body_and_checksum(restore_capture_telegram(telegram))
        differences.add(crc16_arc(body) ^ published)
        wrong_variant.add(crc16_x25(body) ^ published)
    assert len(differences) == 1
    # The argument has teeth: the wrong CRC variant gives 54 unrelated differences.
    assert len(wrong_variant) > 40


def test_wrong_line_ends_break_the_constant(capture_published: list[bytes]) -> None:
    # Without CR restoration the bodies (and the CRC input) are not what the meter sealed.
    differences = set()
    for telegram in capture_published:
        body, published = body_and_checksum(telegram.replace(b"nnnnnnn", CAPTURE_DIGITS))
        differences.add(crc16_arc(body) ^ published)
    assert len(differences) > 40


@pytest.fixture(scope="module", params=["crlf", "lf", "lf-with-putty-header"])
def capture_results(request: pytest.FixtureRequest, capture_resealed: list[bytes]) -> list[Result]:
    data = b"".join(capture_resealed)
    if request.param != "crlf":
        data = data.replace(b"\r\n", b"\n")
    if request.param == "lf-with-putty-header":
        data = b"=~=~=~=~=~= PuTTY log 2023.08.24 01:21:30 =~=~=~=~=~=\n" + data
    pieces = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    pipeline, results = run_pipeline(pieces)
    assert pipeline.counts == {"valid": 54}
    assert pipeline.crc_failures == 0
    lf = request.param != "crlf"
    assert all(r.frame.lf_only is lf for r in results)
    return results


def test_resealed_capture_is_all_valid(capture_results: list[Result]) -> None:
    assert len(capture_results) == 54
    assert all(r.status == "valid" and r.telegram is not None for r in capture_results)
    assert all(r.crc is not None and r.crc.value == "arc" for r in capture_results)


def test_first_telegram_values(capture_results: list[Result]) -> None:
    first = capture_results[0]
    telegram = first.telegram
    assert telegram is not None
    assert telegram.header == "AUX59901234567"
    assert telegram.meter_time is not None
    assert telegram.meter_time.isoformat() == "2023-08-24T01:21:30+02:00"
    assert telegram.equipment_id == "9901234567"
    r = telegram.readings
    assert (r["1-0:1.8.0"].value, r["1-0:1.8.0"].unit) == (8234.524, "kWh")
    assert r["1-0:1.8.1"].value == 4129.862
    assert r["1-0:1.8.2"].value == 4104.662
    assert r["1-0:2.8.0"].value == 376.54
    assert r["0-0:96.50.68"].value == "ON"
    assert r["0-0:42.0.0"].value == "AUX1030301234567"
    assert [r[c].value for c in ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0")] == [235.3, 232.3, 232.3]
    assert [r[c].unit for c in ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0")] == ["V"] * 3
    assert (r["1-0:13.7.0"].value, r["1-0:13.7.0"].unit) == (0.975, None)
    assert r["1-0:33.7.0"].value == 0.29
    assert (r["1-0:14.7.0"].value, r["1-0:14.7.0"].unit) == (50.01, "Hz")
    assert (r["1-0:51.7.0"].value, r["1-0:51.7.0"].unit) == (10.0, "A")
    assert (r["1-0:8.7.0"].value, r["1-0:8.7.0"].unit) == (0.665, "kvar")
    # 0-0:96.13.0 is 1024 bytes of 0xFF padding: an empty message.
    assert first.frame.body.count(b"0-0:96.13.0(" + b"\xff" * 1024 + b")") == 1
    assert r["0-0:96.13.0"].value == ""
    profile = r["0-0:98.1.0"]
    assert profile.time is not None and profile.time.isoformat() == "2023-08-01T00:00:00+02:00"
    assert isinstance(profile.value, list)
    assert [v.value for v in profile.value] == [
        7823.105, 3971.715, 3851.39, 77.084, 77.048, 0.036,
        751.194, 1770.619, 749.112, 2.082, 1.573, 1769.046,
        7900.207, 4.792, 4.592, 4.792, 9.132, 9.132, 0.056,
    ]  # fmt: skip
    fields = first.fields
    assert fields["energy_import_kwh"] == 8234.524
    assert fields["voltage_l1_v"] == 235.3
    assert fields["power_factor"] == 0.975
    assert fields["breaker_status"] == "ON"
    assert fields["power_import_kw"] == 2.949
    assert "text_message" not in fields
    assert telegram.unknown_lines == []


def _meter_time(result: Result) -> datetime:
    assert result.telegram is not None and result.telegram.meter_time is not None
    return result.telegram.meter_time


def _float(result: Result, name: str) -> float:
    value = result.fields[name]
    assert isinstance(value, float), name
    return value


def test_meter_time_advances_by_ten_seconds(capture_results: list[Result]) -> None:
    times = [_meter_time(r) for r in capture_results]
    assert len(times) == 54
    steps = {b - a for a, b in itertools.pairwise(times)}
    assert steps == {timedelta(seconds=10)}
    assert times[-1].isoformat() == "2023-08-24T01:30:20+02:00"


REGISTERS = [
    "energy_import_kwh",
    "energy_import_t1_kwh",
    "energy_import_t2_kwh",
    "energy_export_kwh",
    "energy_reactive_import_kvarh",
    "energy_reactive_export_kvarh",
    "energy_reactive_q1_kvarh",
    "energy_reactive_q4_kvarh",
    "energy_absolute_kwh",
]


def test_registers_never_decrease(capture_results: list[Result]) -> None:
    for name in REGISTERS:
        series = [_float(r, name) for r in capture_results]
        assert series == sorted(series), name
    imported = [_float(r, "energy_import_kwh") for r in capture_results]
    assert imported[0] == 8234.524 and imported[-1] > imported[0]


def test_average_power_over_windows_the_register_resolves(
    capture_results: list[Result],
) -> None:
    # The register counts whole Wh (three decimals of kWh): an average over one 10-s interval
    # (8 Wh ± 1 Wh) would be off by an eighth, so a window closes once it moved ten steps.
    start = capture_results[0]
    assert "power_import_avg_kw" not in start.fields
    windows = 0
    for result in capture_results[1:]:
        average = result.fields.get("power_import_avg_kw")
        if average is None:
            continue
        assert result.derived["power_import_avg_kw"] == average
        assert result.telegram is not None and start.telegram is not None
        assert result.telegram.meter_time is not None and start.telegram.meter_time is not None
        seconds = (result.telegram.meter_time - start.telegram.meter_time).total_seconds()
        delta = _float(result, "energy_import_kwh") - _float(start, "energy_import_kwh")
        assert delta >= 10 * 0.001 - 1e-9
        assert average == pytest.approx(delta * 3600.0 / seconds, abs=1e-6)
        start = result
        windows += 1
    assert windows >= 4
    # First window: 8234.605 − 8234.524 kWh in 100 s.
    assert capture_results[10].fields["power_import_avg_kw"] == pytest.approx(2.916)
