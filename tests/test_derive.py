"""Derived values: average power over windows the energy register resolves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.core.derive import MAX_WINDOW, Deriver
from agent.core.fields import FieldValue

START = datetime(2024, 6, 1, tzinfo=UTC)


def _register_at(watts: float, second: int, start_kwh: float = 1234.0) -> float:
    """A DSMR 5 register: whole Wh, truncated, as the meter prints it."""
    wh = int(start_kwh * 1000 + watts * second / 3600.0)
    return round(wh / 1000, 3)


def _averages(watts: float, seconds: int, interval: int = 1) -> list[float]:
    deriver = Deriver()
    out = []
    for second in range(0, seconds, interval):
        fields: dict[str, FieldValue] = {"energy_import_kwh": _register_at(watts, second)}
        derived = deriver.derive(START + timedelta(seconds=second), fields)
        if "power_import_avg_kw" in derived:
            out.append(derived["power_import_avg_kw"])
    return out


@pytest.mark.parametrize("watts", [500.0, 2900.0, 5000.0, 11000.0])
def test_one_second_telegrams_average_within_a_tenth(watts: float) -> None:
    # Over one second a 1-Wh register moves 0, 1 or 2 steps: 0, 3.6 or 7.2 kW. The window
    # grows until it moved ten steps, so every average is within a tenth of the true power.
    averages = _averages(watts, 600)
    assert len(averages) >= 3
    for average in averages:
        assert average == pytest.approx(watts / 1000, rel=0.1)


def test_a_register_that_barely_moves_averages_over_the_longest_window() -> None:
    # 30 W moves a 1-Wh register once in two minutes: ten steps would take 20 minutes, so the
    # window closes at MAX_WINDOW with an error under one step over that time.
    averages = _averages(30.0, 1800, interval=10)
    assert averages
    for average in averages:
        assert abs(average - 0.030) <= 3.6 / MAX_WINDOW + 1e-9


def test_no_average_across_a_gap_or_a_register_gone_back() -> None:
    deriver = Deriver(max_gap_seconds=900.0)
    seen = []
    for second, kwh in ((0, 1.0), (1000, 1.5), (1200, 1.4), (1500, 1.45)):
        fields: dict[str, FieldValue] = {"energy_import_kwh": kwh}
        seen.append(deriver.derive(START + timedelta(seconds=second), fields))
    assert all("power_import_avg_kw" not in d for d in seen[:3])
    # From the register gone back (1.4 at 1200 s) to 1.45 at 1500 s: 50 Wh in 300 s.
    assert seen[3]["power_import_avg_kw"] == pytest.approx(0.6)
