"""Hardening: per-meter state and metric series stay bounded (issue 12, item 7).

A source without a name labels its readings with the equipment identifier each telegram carries,
so a source whose telegrams name ever new meters (noise forging identifiers, a bridge mixing
garbage into the stream) made the agent keep a state and a full set of series per identifier:
20 000 identifiers made /metrics 60 MB and a scrape 8 s, and the idle agent probed its spool once
per meter every second. Now a source has at most `max_meters` meters in the metrics (the rest
counted, their readings still delivered), meters silent for `meter_expiry` leave, the core's
per-meter tables make room only by forgetting silent meters, and the spool answers its per-meter
figures from running totals.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from agentproc import AgentProcess, core, spooled_lines, start_agent, stop_cleanly, wait_for
from faultkit import StoringInflux, record_hardening
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.config import load
from agent.core.pipeline import MeterPipeline, Result
from agent.simulate import SimulatedMeter
from agent.sinks.prometheus import Metrics
from agent.sinks.spool import Spool

FORGED = 20_000  # distinct equipment identifiers on one source, as in the issue
DEFAULTS = load({}, env={})


def _n(n: float) -> str:
    return f"{n:,.0f}".replace(",", " ")


def telegrams_of(count: int, start: int = 0) -> list[bytes]:
    """One telegram each of `count` meters with distinct equipment identifiers."""
    return [
        SimulatedMeter("dsmr5", serial=f"{i:07d}").next_telegram()
        for i in range(start, start + count)
    ]


def meters_of(results: list[Result]) -> list[str]:
    return [r.telegram.meter for r in results if r.telegram is not None]


def scraped_meters(text: str) -> tuple[set[str], int]:
    """The `meter` labels in a scrape, and how many series it holds."""
    meters: set[str] = set()
    series = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series += 1
            if "meter" in sample.labels:
                meters.add(sample.labels["meter"])
    return meters, series


def cpu_seconds(agent: AgentProcess) -> float:
    fields = Path(f"/proc/{agent.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary_at_stop(log: str) -> str:
    """The status summary of the agent's `stopped` line: every meter it holds state for."""
    for line in log.splitlines():
        if line.startswith("{") and json.loads(line).get("event") == "stopped":
            return str(json.loads(line)["summary"])
    raise AssertionError(f"no `stopped` line in {log[-2000:]}")


@pytest.mark.integration
def test_thousands_of_meter_ids_on_one_source_keep_the_metrics_bounded(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cap = DEFAULTS.max_meters
    data = b"".join(telegrams_of(FORGED))
    capture = tmp_path / "forged.p1"
    capture.write_bytes(data)
    results = core(data)
    ids = meters_of(results)
    assert len(set(ids)) == FORGED == len(results)
    server = StoringInflux([])
    env = {
        "P1_INFLUX_URL": server.url,
        "P1_INFLUX_ORG": "home",
        "P1_INFLUX_BUCKET": "p1",
        "P1_INFLUX_TOKEN": "tok-7e11a3",
    }
    agent = start_agent(tmp_path / "data", "--source", f"file:{capture},follow", env=env)
    try:
        lines = spooled_lines(results)
        wait_for(
            lambda: server.stored_lines >= lines,
            timeout=120,
            what="every point delivered",
            proc=agent.proc,
        )

        # The deliverer's counts reach the metrics of the meters that have them within a second.
        def settled() -> bool:
            shown = scraped_meters(agent.scrape())[0]
            mine = [r for r in results if r.telegram is not None and r.telegram.meter in shown]
            return agent.value("p1_influx_points_written_total") == spooled_lines(mine)

        wait_for(settled, what="the written points counted", proc=agent.proc)
        before = cpu_seconds(agent)
        time.sleep(5)
        idle = (cpu_seconds(agent) - before) / 5
        text = agent.scrape()
        dropped = agent.value("p1_meters_dropped_total", reason="cap")
        expired = agent.value("p1_meters_dropped_total", reason="expired")
        counted = agent.value("p1_telegrams_total")
    finally:
        log = stop_cleanly(agent)
        server.close()
    meters, series = scraped_meters(text)
    summary = summary_at_stop(log)  # the agent's own state: every meter it keeps one for
    record_hardening(
        request.node.nodeid,
        item=7,
        checked=(
            f"one source whose telegrams carry {_n(FORGED)} distinct equipment identifiers:"
            f" /metrics and the agent's state keep the first max_meters ({cap}), the others are"
            ' counted in p1_meters_dropped_total{reason="cap"} and their points still delivered'
        ),
        figure=(
            f"/metrics {len(text.encode()) / 1000:.0f} KB and {_n(series)} series"
            f" ({_n(len(meters))} meters) after {_n(FORGED)} ids; {_n(dropped)} meters dropped"
            f" (cap); {_n(server.stored_lines)} of {_n(lines)} points delivered; idle"
            f" {idle * 100:.1f} % of a core"
        ),
    )
    # The first meters the source named keep their metrics; no other meter has any.
    assert len(meters) <= cap, f"{_n(len(meters))} meters, {_n(series)} series in /metrics"
    assert meters == set(ids[:cap])
    one_meter = sum(
        1
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("meter") == ids[0]
    )
    assert series <= cap * one_meter + 10  # plus the few series without a meter label
    assert sum(meter in summary for meter in ids) == cap
    assert dropped == FORGED - cap and expired == 0
    assert counted + dropped == len(results)  # every frame counted once, by a meter or dropped
    # Nothing accepted was lost: every meter's points reached InfluxDB, with its own tag.
    assert server.stored_lines == lines
    delivered = {dict(tags)["meter"] for m, tags, _ in server.points if m == "p1"}
    assert delivered == set(ids)


@pytest.mark.integration
def test_meters_silent_for_meter_expiry_leave_the_metrics(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    count = 5
    capture = tmp_path / "meters.p1"
    data = b"".join(telegrams_of(count))
    capture.write_bytes(data)
    ids = meters_of(core(data))
    agent = start_agent(
        tmp_path / "data", "--source", f"file:{capture},follow", "--meter-expiry", "1s"
    )
    try:
        wait_for(
            lambda: agent.value("p1_meters_dropped_total", reason="expired") == count - 1,
            what="the meters that went silent expired",
            proc=agent.proc,
        )
        meters, _ = scraped_meters(agent.scrape())
        last_seen = agent.samples("p1_last_telegram_timestamp_seconds")
        expired = agent.value("p1_meters_dropped_total", reason="expired")
    finally:
        stop_cleanly(agent)
    record_hardening(
        request.node.nodeid,
        item=7,
        checked=(
            "meters of a source that sent nothing for meter_expiry leave /metrics with their"
            " series, counted as expired; the meter the source heard last stays"
        ),
        figure=(
            f"{count} meters, {expired:.0f} expired after 1 s of silence (meter_expiry 1s),"
            f" {len(meters)} left in /metrics"
        ),
    )
    # The source's last meter stays, so its alert for missing telegrams keeps firing.
    assert meters == {ids[-1]}
    assert list(last_seen) == [(("meter", ids[-1]),)]


def test_expiry_and_cap_of_the_metrics() -> None:
    metrics = Metrics(max_meters=3, meter_expiry=100.0)
    source = "socket://bridge:23"
    metrics.add_source(source)
    for meter, at in (("A", 0.0), ("B", 10.0), ("C", 20.0)):
        assert metrics.admit(source, meter, at)
        metrics.meter(meter).telegrams["valid"] += 1
    assert not metrics.admit(source, "D", 30.0)  # over the cap
    assert not metrics.admit(source, "D", 31.0)  # the same meter again: counted once
    assert metrics.admit(source, "A", 50.0)  # a meter it has keeps its place

    def exposed() -> tuple[set[str], dict[str, float]]:
        text = generate_latest(metrics.registry).decode()
        meters, _ = scraped_meters(text)
        dropped = {
            s.labels["reason"]: s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "p1_meters_dropped_total" and s.labels["source"] == source
        }
        return meters, dropped

    assert exposed() == ({"A", "B", "C"}, {"cap": 1.0, "expired": 0.0})
    assert metrics.expire(source, 109.0, keep="C") == []  # B silent 99 s: not yet
    assert metrics.expire(source, 110.0, keep="C") == ["B"]
    assert exposed() == ({"A", "C"}, {"cap": 1.0, "expired": 1.0})
    assert metrics.known("B") is None
    assert metrics.admit(source, "D", 111.0)  # the place B left
    # Silent long enough, all but the meter the source's link metrics are on.
    assert metrics.expire(source, 10_000.0, keep="C") == ["A", "D"]
    assert exposed() == ({"C"}, {"cap": 1.0, "expired": 3.0})
    # A meter that comes back starts afresh.
    assert metrics.admit(source, "B", 10_001.0)
    assert metrics.meter("B").telegrams["valid"] == 0


def test_the_core_keeps_meters_still_sending_and_forgets_silent_ones() -> None:
    pipeline = MeterPipeline()
    pipeline.MAX_METERS = 4  # small bounds, the real code paths
    pipeline.SILENT_TELEGRAMS = 20
    real = SimulatedMeter("dsmr5", serial="7777777")
    accepted: Counter[str] = Counter()

    def feed(data: bytes) -> None:
        for result in pipeline.feed(data):
            accepted[result.status] += 1

    # A flood of forged identifiers between the real meter's telegrams.
    for telegram in telegrams_of(200, start=1000):
        feed(real.next_telegram())
        feed(telegram)
    real_id = meters_of(pipeline.feed(real.next_telegram()))[0]
    assert accepted["rejected"] == 0
    assert len(pipeline._derivers) <= 4 and real_id in pipeline._derivers
    # A new meter after the flood: remembered once the forged ones have been silent long enough.
    late = SimulatedMeter("dsmr5", serial="8888888")
    for _ in range(pipeline.SILENT_TELEGRAMS):
        feed(real.next_telegram())
    late_id = meters_of(pipeline.feed(late.next_telegram()))[0]
    assert late_id in pipeline._derivers and real_id in pipeline._derivers
    assert len(pipeline._derivers) <= 4


def test_spool_figures_need_no_query_per_meter(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "store.sqlite", max_bytes=0, max_age=100.0)
    meters = [f"m{i}" for i in range(50)]
    for i, meter in enumerate(meters):
        spool.append(meter, 1000.0 + i, [f"p1,meter={meter} a=1 {i}"])
        spool.append(meter, 2000.0 + i, [f"p1,meter={meter} a=2 {i}"])
    statements: list[str] = []
    spool._db.set_trace_callback(statements.append)
    spool.stats(1100.0)
    spool.enforce(1100.0)
    first = len(statements)
    statements.clear()
    for _ in range(3):  # what the agent does once a second
        stats = spool.stats(1100.0)
        spool.enforce(1100.0)
    assert not [s for s in statements if "points" in s], statements[:5]
    assert first <= len(meters) + 10  # at most one probe per meter, once
    # Running figures stay exact through acks and evictions.
    rows = spool.batch(30)
    spool.ack([r.id for r in rows[::2]])
    spool.append("m3", 900.0, ["p1,meter=m3 a=3 0"])  # older than the rest (a held telegram)
    spool.enforce(1140.0)  # m3's held row and the first rows of m15 … m39 go
    stats = spool.stats(3000.0)
    spool._db.set_trace_callback(None)
    with sqlite3.connect(spool.path) as db:
        truth = dict(db.execute("SELECT meter, MIN(received) FROM points GROUP BY meter"))
    assert {m: 3000.0 - t for m, t in truth.items()} == {
        m: age for m, age in stats.oldest_age_by_meter.items() if stats.depth_by_meter[m]
    }
    spool.close()
