"""The README documents what the code does: every setting, and every metric the agent exposes."""

from __future__ import annotations

import re
from pathlib import Path

from agent.config import OPTIONS, SECRETS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    for option in OPTIONS:
        assert option.env in README, option.env
        assert f"`{option.key}" in README or f"`{option.key.rpartition('.')[2]}`" in README
    for var in SECRETS.values():
        assert var in README and f"{var}_FILE" in README


def test_every_link_health_metric_is_in_the_readme() -> None:
    source = (Path(__file__).resolve().parents[1] / "agent/sinks/prometheus.py").read_text()
    names = set(re.findall(r'"(p1_[a-z_]+)"', source))
    counters = set(re.findall(r'CounterMetricFamily\(\s*"(p1_[a-z_]+)"', source))
    link = {
        n
        for n in names
        if n.startswith(
            (
                "p1_telegram",
                "p1_crc",
                "p1_corrected",
                "p1_rejected",
                "p1_line",
                "p1_last",
                "p1_source",
                "p1_spool",
                "p1_influx",
                "p1_meter_clock",
            )
        )
    }
    assert link
    for name in link:
        shown = f"{name}_total" if name in counters else name
        assert shown in README, shown
