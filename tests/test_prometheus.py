"""Prometheus: the shipped configuration and alert rules pass promtool (checks and unit tests), and
every PromQL expression of the rules and dashboards runs on a real Prometheus scraping two live
agents: one on a noisy simulated line (whose InfluxDB is unreachable) and one on a clean line.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from agentproc import AgentProcess, start_agent, wait_for
from dashboards import (
    ROOT,
    RULE_FILES,
    Query,
    alert_rules,
    boards,
    promql,
    queries,
    rule_exprs,
    rules_without_waiting,
)
from servers import Prometheus, free_port, prometheus, require_binary

CONFIG = ROOT / "prometheus" / "prometheus.yml"
RULE_TESTS = sorted((ROOT / "prometheus" / "tests").glob("*.yml"))
PROMQL = [q for board in boards().values() for q in queries(board) if q.language == "promql"]
# Series that only exist after an event the live agents cannot be made to produce in seconds.
MAY_BE_EMPTY = {
    "Rejected frames by reason": "appears with the first unrepairable frame, rare even at 30 %",
}
ABSENT_METRICS = {
    "p1_demand_import_watts": "Belgian meters only",
    "p1_demand_import_month_peak_watts": "Belgian meters only",
}
SEVERITIES = {"critical", "warning", "info"}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *map(str, args)], capture_output=True, text=True
    )


def test_promtool_checks_config_and_rules() -> None:
    result = promtool("check", "config", CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(RULE_FILES)} rule files found" in result.stdout
    result = promtool("check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS
    result = promtool("test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_silent() -> None:
    cases: dict[str, list[int]] = {}
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(len(case.get("exp_alerts", [])))
    for rule in alert_rules():
        name = str(rule["alert"])
        assert any(cases.get(name, [])), f"{name}: no case where it fires"
        assert 0 in cases.get(name, []), f"{name}: no case where it stays silent"


def test_alerts_have_a_severity_and_a_runbook() -> None:
    for rule in alert_rules():
        labels, annotations = rule["labels"], rule["annotations"]
        assert isinstance(labels, dict) and isinstance(annotations, dict)
        assert labels["severity"] in SEVERITIES, rule["alert"]
        assert annotations["summary"], rule["alert"]
        # Runbook style: what it means, then what to check.
        assert len(str(annotations["description"]).splitlines()) >= 3, rule["alert"]


def test_every_promql_expression_parses(tmp_path: Path) -> None:
    """promtool parses every dashboard expression (macros filled in) as a recording rule."""
    exprs = [promql(q.text, meter="house") for q in PROMQL]
    assert len(exprs) >= 20
    rules = [{"record": f"p1:dashboard_expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboards.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


@dataclass
class Live:
    prometheus: Prometheus
    noisy: AgentProcess
    clean: AgentProcess


def ready(server: Prometheus) -> bool:
    """Enough scrapes for rates, and the noisy line has shown its damage and been diagnosed."""
    checks = [
        'sum(p1_crc_failures_total{meter="noisy"}) >= 3',
        'count(p1_link_diagnosis{meter="noisy"} == 1) > 0',
        'count(p1_line_errors_total{meter="noisy"}) > 0',
        'count(p1_influx_write_errors_total{meter="noisy"}) > 0',
        'count_over_time(p1_telegrams_total{meter="clean", result="valid"}[1m]) >= 10',
    ]
    return all(server.query(check) for check in checks)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    require_binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    rules = rules_without_waiting(workdir)
    config = yaml.safe_load(CONFIG.read_text())
    noisy = start_agent(
        tmp_path_factory.mktemp("noisy"),
        "--source",
        "noisy=simulator:dsmr5,noise=0.3",
        env={
            "P1_INFLUX_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens
            "P1_INFLUX_ORG": "home",
            "P1_INFLUX_TOKEN": "token",
        },
    )
    clean = start_agent(tmp_path_factory.mktemp("clean"), "--source", "clean=simulator:dsmr5")
    try:
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(path) for path in rules]
        (job,) = config["scrape_configs"]
        job["static_configs"] = [
            {"targets": [f"127.0.0.1:{noisy.port}", f"127.0.0.1:{clean.port}"]}
        ]
        with prometheus(workdir, yaml.safe_dump(config)) as server:
            wait_for(lambda: ready(server), timeout=60, what="damage on the noisy line")
            yield Live(server, noisy, clean)
    finally:
        noisy.stop()
        clean.stop()


def range_query(server: Prometheus, expr: str) -> list[dict[str, object]]:
    now = time.time()
    data = server.api("query_range", query=expr, start=str(now - 30), end=str(now), step="5")
    assert isinstance(data, dict)
    result = data["result"]
    assert isinstance(result, list)
    return result


@pytest.mark.integration
@pytest.mark.parametrize("query", PROMQL, ids=lambda q: q.name)
def test_dashboard_promql_returns_data(live: Live, query: Query) -> None:
    expr = promql(query.text, meter="noisy")
    result = live.prometheus.query(expr) if query.instant else range_query(live.prometheus, expr)
    if query.panel in MAY_BE_EMPTY:
        return
    assert result, f"{query.name}: no data for {expr}"


@pytest.mark.integration
def test_meter_variable_lists_the_live_meters(live: Live) -> None:
    variable = next(
        v for v in boards()["link-health.json"]["templating"]["list"] if v["name"] == "meter"
    )
    match = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["query"])
    assert match, variable["query"]
    metric, label = match.groups()
    series = live.prometheus.query(f"count by ({label}) ({metric})")
    assert {s["metric"][label] for s in series} == {"noisy", "clean"}


@pytest.mark.integration
@pytest.mark.parametrize(("name", "expr"), rule_exprs(), ids=[n for n, _ in rule_exprs()])
def test_rule_expression_evaluates_on_known_metrics(live: Live, name: str, expr: str) -> None:
    live.prometheus.query(expr)  # evaluates without error
    # A misspelt metric would make the rule silently never fire.
    for metric in sorted(set(re.findall(r"\b(p1_\w+|up)\b", expr)) - set(ABSENT_METRICS)):
        assert live.prometheus.query(f"count({metric})"), f"{name}: no series {metric}"


@pytest.mark.integration
def test_loaded_rules_are_healthy(live: Live) -> None:
    data = live.prometheus.api("rules")
    assert isinstance(data, dict)
    loaded = [rule for group in data["groups"] for rule in group["rules"]]
    assert len(loaded) == len(rule_exprs())
    for rule in loaded:
        assert rule["health"] == "ok" and not rule.get("lastError"), rule


@pytest.mark.integration
def test_crc_alert_fires_on_the_noisy_line_only(live: Live) -> None:
    def firing() -> dict[str, str]:
        data = live.prometheus.api("alerts")
        assert isinstance(data, dict)
        return {
            alert["labels"]["meter"]: alert["state"]
            for alert in data["alerts"]
            if alert["labels"]["alertname"] == "P1CrcFailureRateHigh"
        }

    wait_for(lambda: firing().get("noisy") == "firing", timeout=30, what="the CRC alert")
    assert "clean" not in firing()
    (expr,) = [e for n, e in rule_exprs() if n == "P1CrcFailureRateHigh"]
    assert [s["metric"]["meter"] for s in live.prometheus.query(expr)] == ["noisy"]


@pytest.mark.integration
def test_agent_metrics_pass_promtool(live: Live) -> None:
    result = subprocess.run(
        [require_binary("promtool"), "check", "metrics"],
        input=live.noisy.scrape(),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.integration
def test_render_link_health_picture(live: Live, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "docs"))
    import render_dashboards

    out = tmp_path / "link-health.png"
    now = time.time()
    render_dashboards.render_link_health(live.prometheus, now - 60, now, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
