"""The shipped Grafana dashboards and Prometheus rules as data, for the tests and for
`docs/render_dashboards.py`: their queries with Grafana's macros filled in, and simulated days of
meter readings to run them against.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from servers import InfluxDB1, http

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
RULE_FILES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))

Board = dict[str, Any]


def boards() -> dict[str, Board]:
    """Every dashboard by file name."""
    return {
        path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))
    }


def panels(board: Board) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


@dataclass(frozen=True)
class Query:
    board: str  # dashboard title
    panel: str  # panel or annotation title
    ref: str
    language: str  # "influxql" or "promql"
    text: str  # as written in the dashboard, macros and all
    instant: bool = False
    time_from: str | None = None  # the panel's relative time override ("1y"), if any
    annotation: bool = False

    @property
    def name(self) -> str:
        return f"{self.board} / {self.panel} / {self.ref}"


_LANGUAGE = {"influxdb": "influxql", "prometheus": "promql"}


def queries(board: Board) -> list[Query]:
    """The query of every panel target and annotation, by the data source type it goes to."""
    found = []
    for panel in panels(board):
        for target in panel.get("targets", []):
            source = target.get("datasource") or panel["datasource"]
            language = _LANGUAGE[source["type"]]
            text = target["query"] if language == "influxql" else target["expr"]
            found.append(
                Query(
                    board["title"],
                    panel["title"],
                    target["refId"],
                    language,
                    text,
                    instant=bool(target.get("instant")),
                    time_from=panel.get("timeFrom"),
                )
            )
    for annotation in board["annotations"]["list"]:
        if annotation.get("builtIn"):
            continue
        language = _LANGUAGE[annotation["datasource"]["type"]]
        target = annotation["target"]
        text = target["query"] if language == "influxql" else target["expr"]
        found.append(
            Query(board["title"], annotation["name"], "Anno", language, text, annotation=True)
        )
    return found


def rule_exprs() -> list[tuple[str, str]]:
    """(alert or record name, expression) of every rule in prometheus/rules."""
    import yaml

    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append((rule.get("alert") or rule["record"], rule["expr"]))
    return found


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of prometheus/rules, as written."""
    import yaml

    return [
        rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"] if "alert" in rule
    ]  # fmt: skip


def rules_without_waiting(workdir: Path, alerts: set[str] | None = None) -> list[Path]:
    """Copies of the shipped rule files in `workdir` whose alerts (those named, or all) fire at
    once, without their `for:`: promtool's unit tests cover the waiting, a live Prometheus the
    expressions on real data."""
    import yaml

    copies = []
    for path in RULE_FILES:
        document = yaml.safe_load(path.read_text())
        for group in document["groups"]:
            for rule in group["rules"]:
                if alerts is None or rule.get("alert") in alerts:
                    rule.pop("for", None)
        copies.append(workdir / path.name)
        copies[-1].write_text(yaml.safe_dump(document))
    return copies


_DURATION = re.compile(r"^(\d+)([smhdwy])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> int:
    """Seconds of a Grafana/Prometheus duration such as `7d` or `1y`."""
    match = _DURATION.match(duration)
    assert match, duration
    return int(match[1]) * _SECONDS[match[2]]


# A Grafana variable or macro that is still in a query after substitution.
UNRESOLVED = re.compile(r"\$(\{|[A-Za-z_])")


def influxql(
    text: str,
    *,
    meter: str,
    start: datetime,
    end: datetime,
    interval: str = "10m",
    tz: str = "Europe/Amsterdam",
) -> str:
    """An InfluxQL query as Grafana sends it for this meter and time range."""
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    values = {
        "timeFilter": f"time >= {start_ms}ms and time <= {end_ms}ms",
        "__from": str(start_ms),
        "__to": str(end_ms),
        "__interval": interval,
        "meter": re.escape(meter),
        "tz": tz,
    }
    filled = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m[1] or m[2]], text)
    assert not UNRESOLVED.search(filled), filled
    return filled


def promql(text: str, *, meter: str, range_: str = "5m", rate_interval: str = "1m") -> str:
    """A PromQL expression as Grafana sends it for this `meter` (a regex for `=~`)."""
    values = {"meter": meter, "__range": range_, "__rate_interval": rate_interval}
    filled = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m[1] or m[2]], text)
    assert not UNRESOLVED.search(filled), filled
    return filled


def simulated_lines(flavour: str, start: datetime, days: int, interval: int = 10) -> list[bytes]:
    """Line protocol of `days` of a simulated meter, one telegram per `interval` seconds, as
    `p1-agent replay` writes it."""
    count = str(days * 86400 // interval)
    agent = [sys.executable, "-m", "agent.cli"]
    meter = ["--flavour", flavour, "--count", count, "--interval", str(interval)]
    simulate = subprocess.Popen(
        [*agent, "simulate", *meter, "--start", start.isoformat()], stdout=subprocess.PIPE
    )
    replay = subprocess.run(
        [*agent, "replay", "-", "--format", "line-protocol", "--output", "-", "--no-progress"],
        stdin=simulate.stdout,
        capture_output=True,
        check=True,
    )
    assert simulate.wait() == 0
    return replay.stdout.splitlines()


def write_lines(influx: InfluxDB1, database: str, lines: list[bytes], chunk: int = 5000) -> None:
    for i in range(0, len(lines), chunk):
        status, body = http(
            "POST",
            f"{influx.url}/write?db={database}&precision=s",
            b"\n".join(lines[i : i + chunk]),
            timeout=60,
        )
        assert status == 204, body
