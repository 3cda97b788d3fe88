"""Pictures of the two Grafana dashboards for the README, plotted from the dashboards' own
queries run on real servers:

- energy.png: the InfluxQL panels of grafana/dashboards/energy.json on a real InfluxDB 1.x holding
  a simulated week of a DSMR 5 meter (`p1-agent simulate | p1-agent replay`);
- link-health.png: the PromQL panels of grafana/dashboards/link-health.json on a real Prometheus
  that scraped a live agent reading the simulated meter through a noisy line for a few minutes.

Needs the servers the integration tests use (influxd, prometheus) and matplotlib
(`pip install -e '.[docs]'`). Run from the repository root:

    .venv/bin/python docs/render_dashboards.py [--minutes 10] [--days 7]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # files only, no display
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402
from agentproc import start_agent  # noqa: E402
from dashboards import boards, influxql, panels, promql, simulated_lines, write_lines  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from servers import InfluxDB1, Prometheus, influxdb1, prometheus  # noqa: E402

TZ = ZoneInfo("Europe/Amsterdam")
METER = "E0044007123456719"  # the DSMR 5 simulator's equipment identifier
ENERGY_PANELS = [
    "Power",
    "Instantaneous and interval-average power",
    "Energy imported per day",
    "Energy exported per day",
    "Voltage per phase",
    "10-minute mean voltage",
    "Current per phase and fuse limit",
    "Gas and water per day",
]
LINK_PANELS = [
    "Telegrams per minute by result",
    "CRC failure rate",
    "Repairs by method",
    "Where in the telegram errors hit",
    "Spool depth",
    "Oldest unsent point",
    "InfluxDB points written",
    "InfluxDB write errors",
]
# Grafana unit → (axis label, factor to it)
UNITS = {
    "watt": ("W", 1.0),
    "kwatth": ("kWh", 1.0),
    "kvarh": ("kvarh", 1.0),
    "m3": ("m³", 1.0),
    "volt": ("V", 1.0),
    "amp": ("A", 1.0),
    "percentunit": ("%", 100.0),
    "s": ("s", 1.0),
    "short": ("", 1.0),
}


@dataclass
class Series:
    name: str
    times: list[datetime] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


def panel(board: dict[str, Any], title: str) -> dict[str, Any]:
    return next(p for p in panels(board) if p["title"] == title and p["type"] != "row")


def influx_series(influx: InfluxDB1, text: str, database: str, alias: str | None) -> list[Series]:
    found: dict[str, Series] = {}
    rows: list[dict[str, Any]] = influx.query(text, db=database)
    for row in rows:
        tags = {k: v for k, v in row.items() if k in ("kind", "device")}
        when = datetime.fromtimestamp(float(row["time"]), UTC)
        for column, value in row.items():
            if column in ("time", "_measurement", *tags) or value is None:
                continue
            name = column
            if alias:
                name = alias
                for tag, tag_value in tags.items():
                    name = name.replace(f"$tag_{tag}", str(tag_value))
            series = found.setdefault(name, Series(name))
            series.times.append(when)
            series.values.append(float(value))
    return list(found.values())


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), template)


def prom_series(
    server: Prometheus, target: dict[str, Any], start: float, end: float, meter: str = ".+"
) -> list[Series]:
    """`meter` as Grafana fills it in: a regex for `=~`, the name for `=`."""
    window = f"{int(end - start)}s"
    expr = promql(target["expr"], meter=meter, range_=window)
    template = target.get("legendFormat", "")
    if target.get("instant"):
        samples: list[dict[str, Any]] = server.query(expr)
        return [Series(legend(template, s["metric"]), [], [float(s["value"][1])]) for s in samples]
    data = server.api("query_range", query=expr, start=str(start), end=str(end), step="15")
    assert isinstance(data, dict)
    return [
        Series(
            legend(template, s["metric"]) or "value",
            [datetime.fromtimestamp(float(t), UTC) for t, _ in s["values"]],
            [float(v) for _, v in s["values"]],
        )
        for s in data["result"]
    ]


def draw(ax: Axes, spec: dict[str, Any], series: list[Series]) -> None:
    """One panel as Grafana draws it, roughly: lines or stacked bars, export below zero,
    threshold lines, bar gauges as horizontal bars."""
    defaults = spec["fieldConfig"]["defaults"]
    label, factor = UNITS[defaults.get("unit", "short")]
    ax.set_title(spec["title"], fontsize=10, loc="left")
    ax.grid(True, alpha=0.3)
    if not series:
        ax.text(0.5, 0.5, "No data", ha="center", va="center", transform=ax.transAxes)
        return
    if spec["type"] == "bargauge":
        ranked = sorted(series, key=lambda s: s.values[0])[-12:]
        ax.barh([s.name for s in ranked], [s.values[0] * factor for s in ranked], color="#e0752d")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel(label)
        return
    negative = [
        re.compile(o["matcher"]["options"])
        for o in spec["fieldConfig"]["overrides"]
        if {"id": "custom.transform", "value": "negative-Y"} in o["properties"]
    ]
    custom = defaults.get("custom", {})
    bars = custom.get("drawStyle") == "bars"
    stacked = custom.get("stacking", {}).get("mode") == "normal"
    bottoms: dict[datetime, float] = {}
    times = sorted({t for s in series for t in s.times})
    steps = [(b - a).total_seconds() for a, b in pairwise(times)]
    width = 0.8 * min(steps, default=86400) / 86400  # in days, matplotlib's date unit
    for s in series:
        sign = -1.0 if any(p.search(s.name) for p in negative) else 1.0
        values = [v * factor * sign for v in s.values]
        if bars:
            base = [bottoms.get(t, 0.0) if stacked else 0.0 for t in s.times]
            ax.bar(s.times, values, bottom=base, width=width, label=s.name, align="edge")
            for t, b, v in zip(s.times, base, values, strict=True):
                bottoms[t] = b + v
        elif stacked:
            base = [bottoms.get(t, 0.0) for t in s.times]
            top = [b + v for b, v in zip(base, values, strict=True)]
            ax.fill_between(s.times, base, top, label=s.name, alpha=0.7, step="post")
            bottoms.update(zip(s.times, top, strict=True))
        else:
            ax.plot(s.times, values, label=s.name, linewidth=1)
    if custom.get("thresholdsStyle", {}).get("mode") == "line":
        for step in defaults["thresholds"]["steps"][1:]:
            ax.axhline(step["value"] * factor, color="red", linestyle="--", linewidth=0.8)
    if "axisSoftMin" in custom:
        low, high = ax.get_ylim()
        ax.set_ylim(min(low, custom["axisSoftMin"]), max(high, custom["axisSoftMax"]))
    ax.set_ylabel(label)
    long_names = max(len(s.name) for s in series) > 12
    ax.legend(fontsize=7, loc="upper left", ncols=2 if long_names else 4)
    days = (max(t for s in series for t in s.times) - min(t for s in series for t in s.times)).days
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b" if days > 1 else "%H:%M", tz=TZ))


def figure(title: str, count: int) -> tuple[Any, list[Axes]]:
    rows = (count + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(14, 3.2 * rows), layout="constrained")
    fig.suptitle(title, fontsize=13)
    return fig, list(axes.flat)


def render_energy(
    influx: InfluxDB1,
    meter: str,
    start: datetime,
    end: datetime,
    out: Path,
    server: Prometheus | None = None,
) -> None:
    """The energy dashboard's panels for `meter` from database `p1`; the fuse limit (a PromQL
    target) comes from `server` when given."""
    board = boards()["energy.json"]
    interval = f"{max(1, int((end - start).total_seconds() / 400 / 60))}m"
    last = end - timedelta(seconds=1)
    title = f"P1 energy — simulated DSMR 5 meter, {start:%-d %b} – {last:%-d %b %Y}"
    fig, axes = figure(title, len(ENERGY_PANELS))
    for ax, title in zip(axes, ENERGY_PANELS, strict=True):
        spec = panel(board, title)
        series: list[Series] = []
        for target in spec["targets"]:
            if "query" in target:
                text = influxql(
                    target["query"], meter=meter, start=start, end=end, interval=interval
                )
                series += influx_series(influx, text, "p1", target.get("alias"))
            elif server is not None:
                now = time.time()
                for s in prom_series(server, target, now - 60, now, meter):
                    s.times, s.values = [start, end], [s.values[-1]] * 2
                    series.append(s)
        draw(ax, spec, series)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def render_link_health(server: Prometheus, start: float, end: float, out: Path) -> None:
    """The link-health dashboard's panels over [start, end] (Unix seconds)."""
    board = boards()["link-health.json"]
    minutes = round((end - start) / 60)
    title = f"P1 link health — simulated meter on a noisy line, {minutes} minutes"
    fig, axes = figure(title, len(LINK_PANELS))
    for ax, title in zip(axes, LINK_PANELS, strict=True):
        spec = panel(board, title)
        series = [s for t in spec["targets"] for s in prom_series(server, t, start, end)]
        draw(ax, spec, series)
    fig.savefig(out, dpi=90)
    plt.close(fig)


def live_stack(stack: ExitStack, workdir: Path, influx: InfluxDB1, noise: float) -> Prometheus:
    """An agent on the noisy simulated meter, writing to `influx` (database `live`, apart from
    the loaded days), scraped every 15 s by Prometheus with the shipped rules."""
    influx.create_database("live")
    agent = start_agent(
        workdir / "agent",
        "--source",
        f"simulator:dsmr5,noise={noise}",
        env={"P1_INFLUX_URL": influx.url, "P1_INFLUX_API": "v1", "P1_INFLUX_DATABASE": "live"},
    )
    stack.callback(agent.stop)
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    config["rule_files"] = [
        str(path) for path in sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
    ]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{agent.port}"]}]
    return stack.enter_context(prometheus(workdir / "prometheus", yaml.safe_dump(config)))


def wait(seconds: float, doing: str) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        print(f"{doing}; {int(left)} s to go", file=sys.stderr)
        time.sleep(min(left, 30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=7, help="simulated days in InfluxDB")
    parser.add_argument("--minutes", type=float, default=10, help="how long the agent runs")
    parser.add_argument("--noise", type=float, default=0.05, help="share of damaged telegrams")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    start = datetime(2024, 6, 1, tzinfo=TZ)
    end = start + timedelta(days=args.days)
    first = start - timedelta(days=1)  # the day before the first bar, for its difference
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        influx = stack.enter_context(influxdb1(workdir / "influxdb"))
        influx.create_database("p1")
        server = live_stack(stack, workdir, influx, args.noise)
        began = time.time()
        print(f"loading {args.days} simulated days into InfluxDB", file=sys.stderr)
        write_lines(influx, "p1", simulated_lines("dsmr5", first, args.days + 1))
        run = args.minutes * 60
        wait(0.4 * run - (time.time() - began), "agent delivering to InfluxDB")
        # An outage in the middle: the spool keeps the readings, the picture shows the backlog,
        # the write errors and the catching up.
        influx.stop()
        wait(0.2 * run, "InfluxDB stopped")
        influx.restart()
        wait(run - (time.time() - began), "InfluxDB back")
        render_energy(influx, METER, start, end, args.out / "energy.png", server)
        render_link_health(server, began, time.time(), args.out / "link-health.png")
    print(f"wrote {args.out / 'energy.png'} and {args.out / 'link-health.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
