"""The Grafana dashboards: their structure and data source references, and every InfluxQL query
run against a real InfluxDB 1.x holding two simulated days of a Hungarian and a DSMR 5 meter.

The PromQL queries are run against a real Prometheus in test_prometheus.py.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from dashboards import (
    ROOT,
    Board,
    Query,
    boards,
    influxql,
    panels,
    queries,
    seconds,
    simulated_lines,
    write_lines,
)
from servers import InfluxDB1, influxdb1

BOARDS = boards()
SCHEMA_VERSION = 39  # Grafana 10.4 / 11
# Grafana's built-in panel plugins: a dashboard must not need one installed.
CORE_PANELS = {
    "alertlist", "annolist", "barchart", "bargauge", "candlestick", "canvas", "dashlist",
    "datagrid", "flamegraph", "gauge", "geomap", "heatmap", "histogram", "logs", "news",
    "nodeGraph", "piechart", "row", "stat", "state-timeline", "status-history", "table", "text",
    "timeseries", "traces", "trend", "xychart",
}  # fmt: skip
BUILTIN_SOURCES = {"-- Grafana --": "grafana", "-- Mixed --": "datasource"}

TZ = ZoneInfo("Europe/Amsterdam")
START = datetime(2024, 5, 31, tzinfo=TZ)  # local midnight: days in the data are whole days
DAYS = 2
END = START + timedelta(days=DAYS)
HU, DSMR5 = "9901234567", "E0044007123456719"  # the simulators' equipment identifiers
# Panels whose readings only one of the two simulated meters has.
ONLY = {
    "Power per phase": DSMR5,
    "Gas and water per day": DSMR5,
    "Reactive energy per day": HU,
    "Power factor": HU,
    "Frequency": HU,
}
INFLUXQL = [q for board in BOARDS.values() for q in queries(board) if q.language == "influxql"]


def provisioned_sources() -> dict[str, str]:
    """uid → plugin type of every data source Grafana is provisioned with."""
    found = {}
    for path in sorted((ROOT / "grafana" / "provisioning" / "datasources").glob("*.yml")):
        for source in yaml.safe_load(path.read_text())["datasources"]:
            found[source["uid"]] = source["type"]
    return found


def source_refs(node: Any) -> Iterator[Any]:
    """Every `datasource` value anywhere in a dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from source_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from source_refs(item)


def variables(board: Board) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in board["templating"]["list"]}


@pytest.mark.parametrize("name", BOARDS)
def test_dashboard_structure(name: str) -> None:
    board = BOARDS[name]
    assert board["schemaVersion"] >= SCHEMA_VERSION
    assert board["uid"] and board["title"] and "p1-agent" in board["tags"]
    assert "id" not in board or board["id"] is None  # provisioned: Grafana assigns the id
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = [panel["title"] for panel in panels(board) if panel["type"] != "row"]
    assert len(titles) == len(set(titles)), "panel titles must be unique"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(board):
        assert panel["type"] in CORE_PANELS, (panel["title"], panel["type"])
        assert panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        if panel["type"] != "row":
            assert panel.get("description"), f"{panel['title']}: say what the panel shows"
            assert panel["targets"], panel["title"]
    assert variables(board)["meter"]["type"] == "query"


def test_dashboard_uids_and_titles_are_unique() -> None:
    assert len({b["uid"] for b in BOARDS.values()}) == len(BOARDS)
    assert len({b["title"] for b in BOARDS.values()}) == len(BOARDS)


@pytest.mark.parametrize("name", BOARDS)
def test_every_data_source_reference_resolves(name: str) -> None:
    board = BOARDS[name]
    provisioned = provisioned_sources()
    source_vars = {n: v for n, v in variables(board).items() if v["type"] == "datasource"}
    for variable in source_vars.values():
        # The default of a data source variable is the provisioned source of its type.
        assert provisioned[variable["current"]["value"]] == variable["query"], variable["name"]
    refs = list(source_refs(board))
    assert refs
    for ref in refs:
        assert isinstance(ref, dict) and set(ref) == {"type", "uid"}, ref
        uid = ref["uid"]
        if match := re.fullmatch(r"\$\{(\w+)\}", uid):
            assert match[1] in source_vars, f"{ref}: no data source variable {match[1]}"
            assert source_vars[match[1]]["query"] == ref["type"], ref
        elif uid in BUILTIN_SOURCES:
            assert BUILTIN_SOURCES[uid] == ref["type"], ref
        else:
            assert provisioned.get(uid) == ref["type"], f"{ref} is not provisioned"
    for panel in panels(board):
        if panel.get("datasource", {}).get("uid") == "-- Mixed --":
            # A mixed panel's targets each name their own source.
            assert all("datasource" in t for t in panel["targets"]), panel["title"]


def test_provisioning_loads_the_dashboards_folder() -> None:
    provider = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "dashboards" / "p1.yml").read_text()
    )["providers"][0]
    assert provider["type"] == "file"
    # docker-compose.yml mounts grafana/dashboards at this path (test_compose checks the mount).
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
    assert set(provisioned_sources().values()) == {"influxdb", "prometheus"}


def test_energy_comes_from_register_differences() -> None:
    """Energy, reactive energy and gas per day are differences of the meter's registers, never
    sums or integrals of power readings (which miss what happens between telegrams)."""
    registers = [q for q in INFLUXQL if re.search(r"_(kwh|kvarh|m3)\b|_m3\$", q.text)]
    assert len(registers) >= 5
    for query in registers:
        assert not re.search(r"\b(sum|integral|mean)\(", query.text), query.name
        wrapped = re.findall(r"(\w+)\(last\(([^()]+)\)\)", query.text)
        assert wrapped, query.name
        assert {outer for outer, _ in wrapped} == {"non_negative_difference"}, query.name
        assert "GROUP BY time(1d)" in query.text, query.name


def test_voltage_panels_mark_the_en50160_band() -> None:
    titles = ("Voltage per phase", "10-minute mean voltage")
    volts = [p for b in BOARDS.values() for p in panels(b) if p["title"] in titles]
    assert len(volts) == 2
    for panel in volts:
        defaults = panel["fieldConfig"]["defaults"]
        steps = [step["value"] for step in defaults["thresholds"]["steps"]]
        assert steps == [None, 207, 253], panel["title"]
        assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    assert "GROUP BY time(10m)" in volts[1]["targets"][0]["query"]


def test_sag_swell_and_failure_annotations() -> None:
    names = [a["name"] for a in BOARDS["energy.json"]["annotations"]["list"]]
    assert {"Power failures", "Voltage sags", "Voltage swells"} <= set(names)


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    """InfluxDB 1.x with two simulated days of both meters in database `p1`."""
    with influxdb1(tmp_path_factory.mktemp("influxdb")) as server:
        server.create_database("p1")
        for flavour in ("hu", "dsmr5"):
            write_lines(server, "p1", simulated_lines(flavour, START, DAYS))
        yield server


def run(influx: InfluxDB1, query: Query, meter: str) -> list[dict[str, object]]:
    start = END - timedelta(seconds=seconds(query.time_from)) if query.time_from else START
    return influx.query(influxql(query.text, meter=meter, start=start, end=END), db="p1")


TAGS = {"time", "_measurement", "meter", "kind", "device"}


def has_values(rows: list[dict[str, object]]) -> bool:
    return any(v is not None for row in rows for k, v in row.items() if k not in TAGS)


@pytest.mark.integration
def test_meter_variable_lists_both_meters(influx: InfluxDB1) -> None:
    variable = variables(BOARDS["energy.json"])["meter"]
    rows = influx.query(variable["query"], db="p1")
    assert {row["value"] for row in rows} == {HU, DSMR5}


@pytest.mark.integration
@pytest.mark.parametrize("query", [q for q in INFLUXQL if not q.annotation], ids=lambda q: q.name)
def test_influxql_panel_returns_data(influx: InfluxDB1, query: Query) -> None:
    """Data for both meters (or the one that has the readings), and in every column: a
    misspelt field among several would otherwise go unnoticed."""
    rows = {meter: run(influx, query, meter) for meter in (HU, DSMR5)}
    for meter in [ONLY[query.panel]] if query.panel in ONLY else [HU, DSMR5]:
        assert has_values(rows[meter]), f"{query.name}: no data for meter {meter}"
    columns = {k for found in rows.values() for row in found for k in row} - TAGS
    empty = {c for c in columns if all(row.get(c) is None for f in rows.values() for row in f)}
    assert not empty, f"{query.name}: no data in {sorted(empty)}"
    panel = next(
        p
        for b in BOARDS.values()
        for p in panels(b)
        if p["title"] == query.panel and p["type"] != "row"
    )
    for transformation in panel.get("transformations", []):
        if transformation["id"] == "groupBy":  # it names the query's columns
            assert set(transformation["options"]["fields"]) - {"Time"} <= columns


@pytest.mark.integration
def test_daily_energy_equals_the_register_difference(influx: InfluxDB1) -> None:
    """The per-day bar of 1 June is the T1 register at the end of that day (local time) minus the
    register at the end of 31 May, exactly."""
    query = next(q for q in INFLUXQL if q.panel == "Energy imported per day")
    rows = run(influx, query, DSMR5)
    day = datetime(2024, 6, 1, tzinfo=TZ)
    (row,) = [r for r in rows if r["time"] == int(day.timestamp())]
    registers = dict(
        (int(r["time"]), r["energy_import_t1_kwh"])
        for r in influx.query(
            f"SELECT energy_import_t1_kwh FROM p1 WHERE meter = '{DSMR5}'", db="p1"
        )
    )
    last_before = max(t for t in registers if t < day.timestamp())
    last_of_day = max(t for t in registers if t < (day + timedelta(days=1)).timestamp())
    expected = registers[last_of_day] - registers[last_before]
    assert expected > 1
    assert row["T1"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.integration
def test_event_annotations_mark_counter_increments(influx: InfluxDB1) -> None:
    """The simulated days have no events, so the annotation queries run on a meter whose power
    failure counter goes up at 00:02 and whose L3 sag counter goes up at 00:03."""
    t0 = int(START.timestamp())
    lines = []
    for minute, (failures, sags_l3) in enumerate([(5, 192), (5, 192), (6, 192), (6, 193)]):
        fields = (
            f"power_failures={failures}.0,power_failures_long=3.0,voltage_sags_l1=1.0,"
            f"voltage_sags_l2=1.0,voltage_sags_l3={sags_l3}.0,voltage_swells_l1=1.0,"
            "voltage_swells_l2=1.0,voltage_swells_l3=1.0"
        )
        lines.append(f"p1,meter=events {fields} {t0 + 60 * minute}".encode())
    influx.create_database("events")
    write_lines(influx, "events", lines)
    found = {}
    for query in (q for q in INFLUXQL if q.annotation):
        text = influxql(query.text, meter="events", start=START, end=END, interval="1m")
        found[query.panel] = [row["time"] - t0 for row in influx.query(text, db="events")]
        # Nothing on the simulated meters, whose counters stand still.
        for meter in (HU, DSMR5):
            assert not run(influx, query, meter), query.name
    assert found == {"Power failures": [120], "Voltage sags": [180], "Voltage swells": []}


@pytest.mark.integration
def test_render_energy_picture(influx: InfluxDB1, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "docs"))
    import render_dashboards

    out = tmp_path / "energy.png"
    render_dashboards.render_energy(influx, DSMR5, START, END, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
