"""The README documents what the code does: every setting, and every metric the agent exposes."""

from __future__ import annotations

from pathlib import Path

from agent.config import OPTIONS, SECRETS
from agent.sinks.prometheus import Metrics

# Readings are documented by example; the link's health metrics one by one.
READING_PREFIXES = ("p1_power", "p1_phase", "p1_voltage", "p1_current", "p1_energy", "p1_gas")
README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    for option in OPTIONS:
        assert option.env in README, option.env
        assert f"`{option.key}" in README or f"`{option.key.rpartition('.')[2]}`" in README
    for var in SECRETS.values():
        assert var in README and f"{var}_FILE" in README


def test_every_link_health_metric_is_in_the_readme() -> None:
    metrics = Metrics()
    metrics.meter("m")  # one meter, so every link family has a sample
    names = {
        sample.name
        for family in metrics.registry.collect()
        for sample in family.samples
        if not family.name.startswith(READING_PREFIXES)
    }
    assert "p1_telegrams_total" in names and "p1_spool_points" in names
    for name in names:
        assert name in README, name
