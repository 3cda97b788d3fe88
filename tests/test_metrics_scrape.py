"""The metrics read the state the spool, the deliverer and the readers own when Prometheus
scrapes: nothing is copied in between, and their counts by meter stay bounded by the metrics'."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.deliver import DeliveryStats
from agent.sinks.prometheus import Link, Metrics
from agent.sinks.spool import Spool

SOURCE = "socket://bridge:23"


def owned(tmp_path: Path) -> tuple[Metrics, Spool, DeliveryStats, dict[str, Link]]:
    metrics = Metrics(max_meters=2, meter_expiry=100.0)
    spool = Spool(tmp_path / "store.sqlite", max_bytes=0, max_age=100.0)
    delivery = DeliveryStats()
    links = {"A": Link(True, 2, 500, "ok")}  # the reader labelling A, as it is now
    metrics.read_from(lambda: links, spool, delivery)
    metrics.add_source(SOURCE)
    for meter in ("A", "B"):
        assert metrics.admit(SOURCE, meter, 0.0)
        metrics.meter(meter).telegrams["valid"] += 1
    assert not metrics.admit(SOURCE, "X", 0.0)  # over the cap: stored, no metrics
    return metrics, spool, delivery, links


def test_a_scrape_asks_the_owners(tmp_path: Path) -> None:
    metrics, spool, delivery, links = owned(tmp_path)

    def value(name: str, meter: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"meter": meter, **labels})

    for meter in ("A", "X"):
        spool.append(meter, 1000.0, [f"p1,meter={meter} a=1 1"])
    assert value("p1_spool_points", "A") == 1.0  # at once: no tick copies it
    assert value("p1_spool_points", "B") == 0.0
    assert (value("p1_source_connected", "A"), value("p1_source_connected", "B")) == (1.0, 0.0)
    assert value("p1_source_reconnects_total", "A") == 2.0
    assert value("p1_link_diagnosis", "A", cause="ok") == 1.0

    assert spool.enforce(1200.0) == {("A", "age"): 1, ("X", "age"): 1}
    assert value("p1_spool_evicted_points_total", "A", reason="age") == 1.0
    assert spool.evictions() == {("A", "age"): 1}  # X has no metrics: not kept
    with delivery.lock:
        delivery.written.count({"A": 3, "X": 5})
        delivery.failures.count([("A", "server"), ("X", "server")])
    assert value("p1_influx_points_written_total", "A") == 3.0
    assert value("p1_influx_write_errors_total", "A", kind="server") == 1.0
    assert value("p1_influx_write_errors_total", "A", kind="auth") == 0.0  # every kind from 0
    assert dict(delivery.written) == {"A": 3} and dict(delivery.failures) == {("A", "server"): 1}

    # The reader leaves A (its telegrams name C now): A keeps its link as it was, disconnected.
    metrics.rename("A", "C", links.pop("A"))
    assert value("p1_source_connected", "A") == 0.0
    assert value("p1_source_bytes_total", "A") == 500.0
    spool.close()


def test_a_meter_that_expires_is_forgotten_by_the_owners(tmp_path: Path) -> None:
    metrics, spool, delivery, _ = owned(tmp_path)
    spool.append("A", 1000.0, ["p1,meter=A a=1 1"])
    spool.enforce(1200.0)
    with delivery.lock:
        delivery.written.count(["A", "B"])
    assert metrics.expire(SOURCE, 100.0, keep="B") == ["A"]
    assert spool.evictions() == {} and dict(delivery.written) == {"B": 1}
    spool.close()


def test_the_age_bound_looks_at_no_meter_while_nothing_is_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "store.sqlite", max_bytes=0, max_age=100.0)
    for i in range(50):
        spool.append(f"m{i}", 1000.0 + i, [f"p1,meter=m{i} a=1 {i}"])
    spool.enforce(1050.0)
    probed: list[str] = []
    probe = spool._oldest_received
    monkeypatch.setattr(spool, "_oldest_received", lambda m: probed.append(m) or probe(m))
    for now in (1050.0, 1080.0, 1099.0):  # what the agent without InfluxDB does every second
        assert spool.enforce(now) == {}
    assert probed == []
    assert spool.enforce(1101.0) == {("m0", "age"): 1}  # due: found
    spool.close()
