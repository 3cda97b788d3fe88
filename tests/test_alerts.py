"""Alertmanager: the shipped alertmanager.yml passes amtool, routes every severity the rules use
and names only real alerts in its inhibitions; and an alert reaches a person: a real Prometheus
scraping a noisy agent fires P1CrcFailureRateHigh from the shipped rules, a real Alertmanager with
the shipped routes delivers it to a webhook, and "agent down" silences "no telegram"."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from agentproc import start_agent, wait_for
from dashboards import ROOT, alert_rules, rules_without_waiting, seconds
from servers import Alertmanager, ScriptedHTTP, alertmanager, prometheus, require_binary

CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
SHIPPED: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
RULES = alert_rules()


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("amtool"), *args], capture_output=True, text=True)


def test_amtool_checks_the_config() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_severity_is_routed_critical_most_insistently() -> None:
    receivers = {receiver["name"] for receiver in SHIPPED["receivers"]}
    severities = {rule["labels"]["severity"] for rule in RULES}
    assert severities == {"critical", "warning", "info"}
    for severity in severities:
        result = amtool(
            "config", "routes", "test", f"--config.file={CONFIG}", f"severity={severity}"
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() in receivers, (severity, result.stdout)
    route = SHIPPED["route"]
    by_severity = {r["matchers"][0]: r for r in route["routes"]}
    critical, info = by_severity['severity="critical"'], by_severity['severity="info"']
    repeat = seconds(route["repeat_interval"])
    assert seconds(critical["repeat_interval"]) < repeat < seconds(info["repeat_interval"])
    assert seconds(critical["group_wait"]) < seconds(route["group_wait"])
    # One message per problem and meter, not one per phase.
    assert route["group_by"] == ["alertname", "meter"]


def test_inhibitions_name_alerts_the_rules_have() -> None:
    names = {rule["alert"] for rule in RULES}
    labels = {label for rule in RULES for label in rule["labels"]} | {"job", "instance", "meter"}
    (down, critical) = SHIPPED["inhibit_rules"]
    assert down["source_matchers"] == ['alertname="P1AgentDown"']
    pattern = re.fullmatch(r'alertname=~"(.+)"', down["target_matchers"][0])
    assert pattern is not None
    silenced = {name for name in names if re.fullmatch(pattern[1], name)}
    assert silenced == {"P1NoTelegrams", "P1NoTelegramsSinceStart"}
    for rule in SHIPPED["inhibit_rules"]:
        assert set(rule["equal"]) <= labels, rule
    assert critical["equal"] == ["job", "instance", "meter"]


@dataclass
class Stack:
    alertmanager: Alertmanager
    webhook: ScriptedHTTP

    def delivered(self) -> list[dict[str, Any]]:
        """Every alert in every webhook message so far, with the message's receiver and status."""
        found = []
        for request in list(self.webhook.requests):
            message = json.loads(request.body)
            for alert in message["alerts"]:
                found.append({**alert, "receiver": message["receiver"]})
        return found


def fast(route: dict[str, Any]) -> None:
    """The route tree with its waits cut to a second: with the webhook's URL, the test's only
    change to the shipped file."""
    for key in ("group_wait", "group_interval"):
        if key in route:
            route[key] = "1s"
    for child in route.get("routes", []):
        fast(child)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    workdir = tmp_path_factory.mktemp("alerts")
    # The shipped rules; only the CRC alert's 15 minutes of waiting are cut (its 1-hour rate
    # works from the second scrape on).
    rules = rules_without_waiting(workdir, {"P1CrcFailureRateHigh"})
    webhook = ScriptedHTTP(lambda request: (200, {}, b""))
    config = yaml.safe_load(CONFIG.read_text())
    fast(config["route"])
    (home,) = [r for r in config["receivers"] if r["name"] == config["route"]["receiver"]]
    home["webhook_configs"][0]["url"] = f"{webhook.url}/p1-agent"
    agent = start_agent(workdir / "agent", "--source", "noisy=simulator:dsmr5,noise=0.3")
    try:
        with alertmanager(workdir / "alertmanager", yaml.safe_dump(config)) as manager:
            scrape = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
            scrape["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
            scrape["rule_files"] = [str(path) for path in rules]
            (job,) = scrape["scrape_configs"]
            job["static_configs"] = [{"targets": [f"127.0.0.1:{agent.port}"]}]
            (targets,) = scrape["alerting"]["alertmanagers"]
            targets["static_configs"] = [{"targets": [f"127.0.0.1:{manager.port}"]}]
            with prometheus(workdir / "prometheus", yaml.safe_dump(scrape)):
                yield Stack(manager, webhook)
    finally:
        agent.stop()
        webhook.close()


@pytest.mark.integration
def test_crc_alert_reaches_the_webhook(stack: Stack) -> None:
    def crc_alerts() -> list[dict[str, Any]]:
        return [a for a in stack.delivered() if a["labels"]["alertname"] == "P1CrcFailureRateHigh"]

    wait_for(crc_alerts, timeout=60, what="P1CrcFailureRateHigh at the webhook")
    alert = crc_alerts()[0]
    assert alert["status"] == "firing" and alert["receiver"] == "home"
    assert alert["labels"]["meter"] == "noisy" and alert["labels"]["severity"] == "warning"
    assert "fail their CRC" in alert["annotations"]["summary"]
    assert stack.webhook.requests[0].path == "/p1-agent"


@pytest.mark.integration
def test_agent_down_silences_its_no_telegram_alerts(stack: Stack) -> None:
    down = {"alertname": "P1AgentDown", "job": "p1-agent", "instance": "house:9224"}
    silent = {"alertname": "P1NoTelegrams", "job": "p1-agent", "instance": "house:9224"}
    other = {**silent, "instance": "garage:9224", "meter": "garage"}
    stack.alertmanager.post(
        {**down, "severity": "critical"},
        {**silent, "meter": "house", "severity": "critical"},
        {**other, "severity": "critical"},
    )

    def state(instance: str, alertname: str) -> dict[str, Any]:
        (alert,) = [
            a["status"] for a in stack.alertmanager.alerts()
            if a["labels"]["instance"] == instance and a["labels"]["alertname"] == alertname
        ]  # fmt: skip
        return alert

    wait_for(
        lambda: state("house:9224", "P1NoTelegrams")["state"] == "suppressed",
        what="the house's P1NoTelegrams inhibited",
    )
    assert state("house:9224", "P1NoTelegrams")["inhibitedBy"]
    assert state("house:9224", "P1AgentDown")["state"] == "active"
    assert state("garage:9224", "P1NoTelegrams")["state"] == "active"

    def sent() -> set[tuple[str, str]]:
        return {(a["labels"]["alertname"], a["labels"]["instance"]) for a in stack.delivered()}

    # Once what is not inhibited has arrived, the inhibited one has had its chance too.
    wait_for(
        lambda: {("P1AgentDown", "house:9224"), ("P1NoTelegrams", "garage:9224")} <= sent(),
        what="the agent-down and the other meter's alert at the webhook",
    )
    assert ("P1NoTelegrams", "house:9224") not in sent()
