"""Flavours without a published fixture here, laid out as their specifications describe them."""

from __future__ import annotations

from agent.core.pipeline import MeterPipeline
from agent.simulate import seal


def telegram(*lines: str) -> bytes:
    return seal(("\r\n".join(lines) + "\r\n!").encode("latin-1"))


def test_luxembourg_smarty() -> None:
    data = telegram(
        "/Lux5\\253833635_A",
        "",
        "1-3:0.2.8(42)",
        "0-0:1.0.0(170102161005W)",
        "0-0:42.0.0(53414733303832323030303032313630)",
        "1-0:1.8.0(000003.153*kWh)",
        "1-0:2.8.0(000000.000*kWh)",
        "1-0:3.8.0(000001.069*kvarh)",
        "1-0:4.8.0(000000.017*kvarh)",
        "1-0:1.7.0(00.021*kW)",
        "1-0:2.7.0(00.000*kW)",
        "1-0:3.7.0(00.000*kvar)",
        "1-0:4.7.0(00.006*kvar)",
        "0-0:17.0.0(999.9*kVA)",
        "0-0:96.3.10(1)",
        "1-0:32.7.0(233.4*V)",
        "1-0:31.7.0(000*A)",
    )
    (result,) = MeterPipeline().feed(data)
    assert result.status == "valid"
    assert result.telegram is not None
    assert result.telegram.meter == "SAG3082200002160"
    fields = result.fields
    assert fields["energy_reactive_import_kvarh"] == 1.069
    assert fields["power_reactive_export_kvar"] == 0.006
    assert fields["limiter_threshold_kva"] == 999.9  # unit suffix follows the meter's unit
    assert fields["voltage_l1_v"] == 233.4


def test_sweden_per_phase_reactive_power() -> None:
    data = telegram(
        "/ELL5\\253833635_A",
        "",
        "0-0:1.0.0(210311124522W)",
        "1-0:1.8.0(00006678.394*kWh)",
        "1-0:2.8.0(00000000.000*kWh)",
        "1-0:1.7.0(0001.727*kW)",
        "1-0:23.7.0(0000.015*kvar)",
        "1-0:43.7.0(0000.000*kvar)",
        "1-0:64.7.0(0000.122*kvar)",
        "1-0:32.7.0(240.3*V)",
        "1-0:51.7.0(001.2*A)",
    )
    (result,) = MeterPipeline().feed(data)
    assert result.status == "valid"
    fields = result.fields
    assert fields["energy_import_kwh"] == 6678.394
    assert fields["power_reactive_import_l1_kvar"] == 0.015
    assert fields["power_reactive_export_l3_kvar"] == 0.122
    assert fields["current_l2_a"] == 1.2
    assert result.telegram is not None and result.telegram.meter == "ELL5\\253833635_A"
