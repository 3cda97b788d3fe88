"""The live agent end to end against real servers: a simulated meter writing through a real
pseudo-terminal or a TCP connection into `p1-agent run`, and from the agent into a real InfluxDB
1.x (v1 API) and a real VictoriaMetrics (v2 API through influxdb-client).

Every telegram sent is checked: the agent's /metrics counts equal what the same bytes give in the
core (noisy telegrams included), and every accepted telegram is queryable with exact values that
equal the clean telegram's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from agentproc import (
    AgentProcess,
    core,
    spooled_lines,
    start_agent,
    store_lines,
    wait_counted,
    wait_for,
)
from meters import TcpMeter
from servers import VictoriaMetrics, influxdb1, victoria_metrics

from agent.core.pipeline import Result
from agent.core.points import Point, telegram_points
from agent.noisyline import NoisyChannel, applicable_modes, spread_rate
from agent.simulate import SimulatedMeter

pytestmark = pytest.mark.integration

Key = tuple[str, tuple[tuple[str, str], ...], int]


def noisy_telegrams(flavour: str, count: int, rate: float, seed: int) -> tuple[list[bytes], bytes]:
    """`count` clean telegrams and the bytes a noisy line makes of them (the last one clean, so
    the stream ends on a complete frame)."""
    meter = SimulatedMeter(flavour, seed=seed)
    clean = [meter.next_telegram() for _ in range(count)]
    channel = NoisyChannel(spread_rate(rate, applicable_modes(clean[0])), f"it-{seed}")
    sent = b"".join(channel.transmit(t) for t in clean[:-1]) + clean[-1]
    assert channel.corrupted > 0
    return clean, sent


def expected_points(results: list[Result], clean: list[bytes]) -> dict[Key, dict[str, object]]:
    """Every point the accepted telegrams give, after checking each accepted telegram carries the
    clean telegram's values (no wrong number, repaired or not)."""
    clean_fields = {}
    for result in core(b"".join(clean)):
        assert result.telegram is not None and result.telegram.meter_time is not None
        clean_fields[result.telegram.meter_time] = result.telegram.fields
    points: dict[Key, dict[str, object]] = {}
    for result in results:
        if not result.accepted:
            continue
        telegram = result.telegram
        assert telegram is not None and telegram.meter_time is not None
        assert telegram.fields == clean_fields[telegram.meter_time]
        for point in telegram_points(
            telegram,
            meter=telegram.meter,
            fields=result.fields,
            repaired=result.status == "repaired",
        ):
            points[key(point)] = dict(point.fields)
    return points


def key(point: Point) -> Key:
    assert point.time is not None
    return point.measurement, tuple(sorted(point.tags.items())), int(point.time.timestamp())


def check_metrics(agent: AgentProcess, results: list[Result]) -> None:
    for status in ("valid", "repaired", "rejected"):
        want = sum(r.status == status for r in results)
        assert agent.value("p1_telegrams_total", result=status) == want, status
    assert agent.value("p1_crc_failures_total") == sum(r.failure is not None for r in results)
    repaired = sum(r.status == "repaired" for r in results)
    assert agent.value("p1_corrected_frames_total") == repaired


@contextmanager
def pty_meter() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def send_paced(write: object, data: bytes, telegrams: int) -> None:
    """Write in chunks about a telegram long, so frames cross read boundaries as on a real line."""
    assert callable(write)
    size = max(64, len(data) // telegrams)
    for start in range(0, len(data), size):
        write(data[start : start + size])
        time.sleep(0.005)


def test_pty_meter_through_agent_into_influxdb_v1(tmp_path: Path) -> None:
    clean, sent = noisy_telegrams("dsmr5", 120, rate=0.25, seed=11)
    results = core(sent)
    want = expected_points(results, clean)
    with influxdb1(tmp_path / "influx") as influx, pty_meter() as (master, device):
        influx.create_database("energy")
        agent = start_agent(
            tmp_path / "data",
            "--source",
            device,
            env={
                "P1_INFLUX_URL": influx.url,
                "P1_INFLUX_API": "v1",
                "P1_INFLUX_DATABASE": "energy",
            },
        )
        try:
            wait_for(lambda: agent.value("p1_source_connected") == 1, what="pty open")
            send_paced(lambda chunk: os.write(master, chunk), sent, len(clean))
            wait_counted(agent, len(results))
            check_metrics(agent, results)

            def landed() -> list[dict[str, object]]:
                return influx.query('SELECT * FROM "p1", "p1_mbus"', db="energy")

            wait_for(lambda: len(landed()) == len(want), what="every point in InfluxDB")
            wait_for(lambda: agent.value("p1_spool_points") == 0, what="spool drained")
            # Every line the agent spooled was acknowledged, including a gas reading repeated by
            # each telegram at its capture time, which InfluxDB keeps as one point.
            assert agent.value("p1_influx_points_written_total") == spooled_lines(results)
            rows = landed()
        finally:
            err = agent.stop()
        assert agent.proc.returncode == 0, err
    for row in landed_rows(rows):
        measurement, tags, stamp, fields = row
        expected = want.pop((measurement, tags, stamp))
        assert fields == expected
    assert not want


def landed_rows(
    rows: list[dict[str, object]],
) -> Iterator[tuple[str, tuple[tuple[str, str], ...], int, dict[str, object]]]:
    """InfluxDB 1.x rows (tags and fields in one dict) back into measurement, tags, time, fields."""
    for row in rows:
        measurement = str(row.pop("_measurement"))
        stamp = int(str(row.pop("time")))
        tag_names = ("meter",) if measurement == "p1" else ("device", "kind", "meter")
        tags = tuple((name, str(row.pop(name))) for name in tag_names)
        yield measurement, tags, stamp, {k: v for k, v in row.items() if v is not None}


def vm_numbers(
    vm: VictoriaMetrics, meter: str
) -> dict[tuple[str, tuple[tuple[str, str], ...], int], float]:
    """One meter's samples in VictoriaMetrics as (series name, labels, unix seconds) → value."""
    found = {}
    for series in vm.export(f'{{meter="{meter}"}}'):
        metric = dict(series["metric"])  # type: ignore[call-overload]
        name = metric.pop("__name__")
        labels = tuple(sorted(metric.items()))
        for value, stamp in zip(series["values"], series["timestamps"], strict=True):  # type: ignore[call-overload]
            found[(name, labels, int(stamp) // 1000)] = float(value)
    return found


def test_tcp_meter_through_agent_into_victoriametrics_v2(tmp_path: Path) -> None:
    clean, sent = noisy_telegrams("hu", 60, rate=0.3, seed=12)
    results = core(sent)
    want = expected_points(results, clean)
    # VictoriaMetrics keeps numbers only, one series per measurement_field: booleans become 0/1
    # and text fields (the breaker status) 0.
    want_numbers = {
        (f"{measurement}_{name}", tags, stamp): 0.0 if isinstance(value, str) else float(value)
        for (measurement, tags, stamp), fields in want.items()
        for name, value in fields.items()
    }
    meter = TcpMeter()
    with victoria_metrics(tmp_path / "vm") as vm:
        agent = start_agent(
            tmp_path / "data",
            "--source",
            f"socket://127.0.0.1:{meter.port}",
            env={
                "P1_INFLUX_URL": vm.url,
                "P1_INFLUX_ORG": "home",
                "P1_INFLUX_BUCKET": "p1",
                "P1_INFLUX_TOKEN": "not-checked-by-victoriametrics",
            },
        )
        try:
            conn = meter.accept()
            send_paced(conn.sendall, sent, len(clean))
            wait_counted(agent, len(results))
            check_metrics(agent, results)
            wait_for(lambda: agent.value("p1_spool_points") == 0, what="spool drained")
            meter_id = next(r.telegram.meter for r in results if r.telegram is not None)
            wait_for(
                lambda: len(vm_numbers(vm, meter_id)) >= len(want_numbers), what="points in VM"
            )
            assert vm_numbers(vm, meter_id) == want_numbers
        finally:
            err = agent.stop()
            meter.close()
        assert agent.proc.returncode == 0, err


# Tried as a new user would: each mistake gives one clear line and the readings are kept.


def test_missing_device_is_retried_and_explained(tmp_path: Path) -> None:
    device = tmp_path / "ttyUSB7"
    agent = start_agent(tmp_path / "data", "--source", str(device))
    try:
        wait_for(lambda: agent.value("p1_source_connected") == 0, what="source state")
        time.sleep(1.0)
        assert agent.proc.poll() is None  # still running, waiting for the cable
    finally:
        err = agent.stop()
    assert agent.proc.returncode == 0, err
    assert f"cannot open {device}: No such file or directory; retrying with backoff" in err
    assert "Traceback" not in err


def test_wrong_token_keeps_the_data_until_the_credentials_are_fixed(tmp_path: Path) -> None:
    token = "wrong-token-8c1f2e"
    with victoria_metrics(tmp_path / "vm", auth=("p1", "s3cret-pw")) as vm:
        agent = start_agent(
            tmp_path / "data",
            env={"P1_INFLUX_URL": vm.url, "P1_INFLUX_ORG": "home", "P1_INFLUX_TOKEN": token},
        )
        try:
            wait_for(
                lambda: (
                    agent.value("p1_influx_write_errors_total", kind="auth") >= 1
                    and agent.value("p1_telegrams_total", result="valid") >= 3
                ),
                what="refused writes with telegrams read",
            )
        finally:
            err = agent.stop()
        assert agent.proc.returncode == 0, err
        assert "InfluxDB refused the token (401 Unauthorized)" in err
        assert token not in err
        kept = spooled_p1_stamps(tmp_path / "data")
        assert len(kept) >= 3

        # Fixed: the same spool drains once the credentials are right (v1 API, Basic auth).
        agent = start_agent(
            tmp_path / "data",
            env={
                "P1_INFLUX_URL": vm.url,
                "P1_INFLUX_API": "v1",
                "P1_INFLUX_USERNAME": "p1",
                "P1_INFLUX_PASSWORD": "s3cret-pw",
            },
        )
        try:
            wait_for(
                lambda: agent.value("p1_spool_points") == 0,
                what="the kept points delivered",
            )
        finally:
            err = agent.stop()
        assert "s3cret-pw" not in err

        def stamps() -> set[int]:
            numbers = vm_numbers(vm, "E0044007123456719")
            return {stamp for (name, _, stamp) in numbers if name == "p1_power_import_kw"}

        wait_for(lambda: kept <= stamps(), what="the kept points queryable")


def spooled_p1_stamps(data_dir: Path) -> set[int]:
    """The meter times of the telegrams waiting in an agent's spool."""
    lines = store_lines(data_dir)
    return {int(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("p1,")}


def test_unreachable_influxdb_then_reachable_lands_everything(tmp_path: Path) -> None:
    with influxdb1(tmp_path / "influx") as influx:
        influx.create_database("p1")
        influx.stop()  # down before the agent starts: nothing listens on its port
        agent = start_agent(
            tmp_path / "data",
            env={"P1_INFLUX_URL": influx.url, "P1_INFLUX_API": "v1"},
        )
        try:
            wait_for(
                lambda: (
                    agent.value("p1_influx_write_errors_total", kind="connection") >= 1
                    and agent.value("p1_spool_points") >= 3
                ),
                what="points held while InfluxDB is down",
            )
            influx.restart()
            wait_for(lambda: agent.value("p1_spool_points") == 0, timeout=60, what="drained")
            counted = agent.value("p1_telegrams_total", result="valid")
        finally:
            err = agent.stop()
        rows = influx.query('SELECT count("power_import_kw") FROM "p1"', db="p1")
    assert agent.proc.returncode == 0, err
    assert "cannot deliver to InfluxDB; points stay in the spool" in err
    assert rows[0]["count"] >= counted
