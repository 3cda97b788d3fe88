"""Fault injection against the running agent: break things on purpose and count.

A simulated DSMR 5 meter writes through a real TCP connection or pseudo-terminal into
`p1-agent run`, which delivers into a real InfluxDB 1.x (or, for the answers a real server cannot
be made to give, a local HTTP server that stores what it acknowledges). Every test counts the
telegrams the meter sent, the agent accepted and InfluxDB holds, and checks that every accepted
telegram landed with exactly the values the core decodes from the same bytes. The tallies become
RELIABILITY.md (`python bench/reliability.py`).

Meter time is compressed: the meter's clock advances 1 s per telegram while the wire carries
RATE telegrams a second, so a 10 s outage holds minutes of a real meter's readings.
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
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
from faultkit import (
    METER,
    Answer,
    Fields,
    MeterStream,
    SocatDevice,
    SpoolDisk,
    StoringInflux,
    Tally,
    expected_p1,
    landed_p1,
)
from meters import TcpMeter
from servers import InfluxDB1, influxdb1

from agent.formats.lineparse import parse

pytestmark = pytest.mark.integration

RATE = 40.0  # telegrams a second on the wire; the meter's clock still moves 1 s per telegram
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    """One InfluxDB for the tests that do not stop it; each test writes its own database."""
    with influxdb1(tmp_path_factory.mktemp("influx")) as server:
        yield server


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Iterator[Tally]:
    record = Tally(request.node.nodeid)
    yield record
    record.save()


def v1_env(influx: InfluxDB1, database: str) -> dict[str, str]:
    influx.create_database(database)
    return {"P1_INFLUX_URL": influx.url, "P1_INFLUX_API": "v1", "P1_INFLUX_DATABASE": database}


def accepted(agent: AgentProcess) -> int:
    """Telegrams the agent accepted (valid or repaired), committed or held while it cannot."""
    return int(
        agent.value("p1_telegrams_total", result="valid")
        + agent.value("p1_telegrams_total", result="repaired")
    )


def wait_delivered(agent: AgentProcess, lines: int, timeout: float = 60.0) -> None:
    """Until InfluxDB acknowledged `lines` points and the spool is empty."""
    wait_for(
        lambda: (
            agent.value("p1_influx_points_written_total") == lines
            and agent.value("p1_spool_points") == 0
        ),
        timeout=timeout,
        what=f"{lines} points delivered",
        proc=agent.proc,
    )


def stop_cleanly(agent: AgentProcess) -> str:
    """SIGTERM; the agent must exit 0 without a traceback. Its log."""
    log = agent.stop()
    assert agent.proc.returncode == 0, log
    assert "Traceback" not in log, log
    return log


# --- InfluxDB stopped, agent killed --------------------------------------------------------------


def test_influxdb_stopped_while_reading_then_restarted(tmp_path: Path, tally: Tally) -> None:
    tally.fault = "InfluxDB stopped for 400 telegrams (6.7 min of meter time), then restarted"
    tally.checked = (
        "reading goes on, points wait in the spool, every accepted telegram lands once with its"
        " values"
    )
    stream = MeterStream()
    meter = TcpMeter()
    with influxdb1(tmp_path / "influx") as influx:
        agent = start_agent(
            tmp_path / "data", "--source", f"{METER}={meter.url}", env=v1_env(influx, "p1")
        )
        try:
            conn = meter.accept()
            stream.send(conn.sendall, 40, RATE)
            wait_counted(agent, 40)
            wait_delivered(agent, spooled_lines(stream.results()))
            influx.stop()
            stream.send(conn.sendall, 400, RATE)
            wait_counted(agent, 440)
            # Still reading, and holding what InfluxDB has not taken: a p1 and a p1_mbus point
            # per telegram.
            wait_for(lambda: agent.value("p1_spool_points") == 800, proc=agent.proc)
            assert agent.value("p1_influx_write_errors_total", kind="connection") >= 1
            influx.restart()
            stream.send(conn.sendall, 40, RATE)
            wait_counted(agent, 480)
            # The backoff may have grown to its 60 s cap during the outage.
            wait_delivered(agent, spooled_lines(stream.results()), timeout=150)
            count = accepted(agent)
        finally:
            log = agent.stop()
            meter.close()
        landed = landed_p1(influx, "p1")
    want = expected_p1(stream.results())
    tally.count(stream.sent, count, want, landed)
    tally.note = "800 points (a p1 and a p1_mbus per telegram) waited in the spool"
    assert agent.proc.returncode == 0 and "Traceback" not in log, log
    assert "cannot deliver to InfluxDB; points stay in the spool" in log
    assert count == len(want) == stream.sent
    assert landed == want


def spool_p1(data_dir: Path) -> tuple[dict[int, Fields], int]:
    """The `p1` points of METER waiting in a (stopped) agent's spool, by time, and how many
    points wait in all."""
    lines = store_lines(data_dir)
    points = {}
    for line in lines:
        point = parse(line)
        if point.measurement == "p1" and point.tags["meter"] == METER:
            assert point.time is not None
            points[point.time] = dict(point.fields)
    return points, len(lines)


def test_sigkill_mid_stream_then_restart(tmp_path: Path, influx: InfluxDB1, tally: Tally) -> None:
    tally.fault = "agent killed with SIGKILL mid-stream, restarted on the same data directory"
    tally.checked = (
        "what it had accepted (in its spool or already in InfluxDB at the kill) lands, once,"
        " with its values; the stream goes on after the restart"
    )
    env = v1_env(influx, "sigkill")
    stream = MeterStream()
    meter = TcpMeter()
    data = tmp_path / "data"
    first = start_agent(data, "--source", f"{METER}={meter.url}", env=env)
    try:
        conn = meter.accept()
        stream.send(conn.sendall, 120, RATE)
        first.proc.send_signal(signal.SIGKILL)  # while telegrams are still arriving
        first.proc.communicate(timeout=30)
        assert first.proc.returncode == -signal.SIGKILL
        conn.close()
        # What the killed agent had accepted: committed to its spool, or delivered and deleted.
        in_spool, waiting = spool_p1(data)
        in_influx = landed_p1(influx, "sigkill")
        assert all(in_spool[t] == in_influx[t] for t in in_spool.keys() & in_influx.keys())
        before = {**in_influx, **in_spool}
        resumed = len(stream.data)

        second = start_agent(data, "--source", f"{METER}={meter.url}", env=env)
        try:
            conn = meter.accept()
            stream.send(conn.sendall, 40, RATE)
            results = core(bytes(stream.data[resumed:]))
            wait_counted(second, len(results))
            wait_delivered(second, waiting + spooled_lines(results))
            count = accepted(second)
        finally:
            stop_cleanly(second)
    finally:
        if first.proc.poll() is None:  # the test failed before the kill
            first.kill()
        meter.close()
    landed = landed_p1(influx, "sigkill")
    want = {**before, **expected_p1(results)}
    tally.count(stream.sent, len(before) + count, want, landed)
    unread = 120 - len(before)
    tally.note = (
        f"at the kill {len(in_influx)} accepted telegrams were in InfluxDB and {len(in_spool)}"
        f" still in the spool; {unread} of the 120 sent before it had not been read (in the"
        " socket buffer when the process died)"
    )
    assert len(before) >= 40 and in_influx  # it was killed mid-stream, not before
    assert set(before) <= set(stream.times[:120])
    assert count == 40
    assert landed == want


# --- the spool's disk ----------------------------------------------------------------------------


def test_spool_disk_full_then_space_returns(tmp_path: Path, tally: Tally) -> None:
    tally.fault = "the spool's disk full while InfluxDB is down, then space returns"
    tally.checked = (
        "a clear error (rate-limited), p1_spool_write_errors_total counts, no crash, telegrams"
        " held in memory and committed when space returns, then all land"
    )
    disk = SpoolDisk(tmp_path / "data")
    stream = MeterStream(noise=0.2)  # a noisy line: the noise log is written to the full disk too
    meter = TcpMeter()
    with influxdb1(tmp_path / "influx") as influx:
        agent = start_agent(
            disk.data_dir,
            "--source",
            f"{METER}={meter.url}",
            env=v1_env(influx, "p1"),
            prefix=disk.prefix(),
        )
        disk.pid = agent.proc.pid
        try:
            conn = meter.accept()
            stream.send(conn.sendall, 20, RATE)
            wait_counted(agent, len(stream.results()))
            wait_delivered(agent, spooled_lines(stream.results()))
            delivered = accepted(agent)
            influx.stop()  # points now stay in the spool, which has to grow

            def spooled() -> int:  # telegrams in the spool: a p1 and a p1_mbus point each
                return int(agent.value("p1_spool_points")) // 2

            disk.fill()
            stream.send(conn.sendall, 100, RATE)
            wait_counted(agent, len(stream.results()))
            wait_for(lambda: agent.value("p1_spool_write_errors_total") > 0, proc=agent.proc)
            errors = agent.value("p1_spool_write_errors_total")
            held = accepted(agent) - delivered - spooled()
            disk.free()
            stream.send(conn.sendall, 20, RATE)
            results = stream.results()
            wait_counted(agent, len(results))
            # Everything read is committed now, what was held first.
            wait_for(
                lambda: spooled() == accepted(agent) - delivered,
                what="the held telegrams committed",
                proc=agent.proc,
            )
            influx.restart()
            wait_delivered(agent, spooled_lines(results), timeout=150)  # after the backoff
            count = accepted(agent)
            repaired = int(agent.value("p1_telegrams_total", result="repaired"))
            dropped = agent.value("p1_spool_dropped_telegrams_total")
        finally:
            log = agent.stop()
            meter.close()
        landed = landed_p1(influx, "p1")
    want = expected_p1(results)
    tally.count(stream.sent, count, want, landed)
    tally.note = (
        f"{disk.method}: about {held} telegrams held in memory after {int(errors)} failed commits;"
        f" a noisy line ({repaired} repaired), so the noise log met the full disk too"
    )
    assert agent.proc.returncode == 0 and "Traceback" not in log, log
    assert "cannot write the spool; holding readings in memory" in log
    assert ("spool disk full" if disk.method == "tmpfs" else "spool error") in log
    assert held > 0 and dropped == 0
    assert count == len(want)
    assert landed == want
    # The alert on these errors (P1SpoolWriteErrors) watches the metric by this name.
    assert "p1_spool_write_errors_total" in (ROOT / "prometheus/rules/p1-agent.yml").read_text()


# --- the meter's link ----------------------------------------------------------------------------


def test_serial_device_disappears_and_comes_back(
    tmp_path: Path, influx: InfluxDB1, tally: Tally
) -> None:
    tally.fault = "serial device removed mid-telegram (socat pty killed), then back"
    tally.checked = (
        "the cut telegram is rejected, the agent reopens the device, every whole telegram lands"
    )
    device = SocatDevice(tmp_path / "ttyP1")
    device.plug()
    stream = MeterStream()
    agent = start_agent(
        tmp_path / "data", "--source", f"{METER}={device.path}", env=v1_env(influx, "serial")
    )
    try:
        wait_for(lambda: agent.value("p1_source_connected") == 1, proc=agent.proc)
        stream.send(device.write, 30, RATE)
        wait_counted(agent, 30)
        stream.send_part(device.write)
        wait_for(lambda: agent.value("p1_source_bytes_total") == len(stream.data))
        device.unplug()
        wait_for(lambda: agent.value("p1_source_connected") == 0, proc=agent.proc)
        device.plug()
        wait_for(
            lambda: (
                agent.value("p1_source_reconnects_total") == 1
                and agent.value("p1_source_connected") == 1
            ),
            what="the device reopened",
            proc=agent.proc,
        )
        stream.send(device.write, 30, RATE)
        results = stream.results()
        wait_counted(agent, len(results))
        wait_delivered(agent, spooled_lines(results))
        count = accepted(agent)
        rejected = agent.value("p1_telegrams_total", result="rejected")
    finally:
        log = stop_cleanly(agent)
        device.unplug()
    landed = landed_p1(influx, "serial")
    want = expected_p1(results)
    tally.count(stream.sent, count, want, landed)
    tally.note = "1 telegram cut by the removal: rejected (truncated) and counted"
    assert f"lost {device.path}" in log
    assert f"connected to {device.path} after" in log
    assert rejected == 1 and count == 60
    assert landed == want


def tcp_link_fault(
    tmp_path: Path, influx: InfluxDB1, database: str, fault: str, *args: str
) -> tuple[MeterStream, int, str, dict[int, Fields]]:
    """30 telegrams, half of one, the fault, then 30 more on the connection the agent makes
    again: the stream, the telegrams the agent accepted, its log and what landed."""
    stream = MeterStream()
    meter = TcpMeter()
    agent = start_agent(
        tmp_path / "data", "--source", f"{METER}={meter.url}", *args, env=v1_env(influx, database)
    )
    try:
        conn = meter.accept()
        stream.send(conn.sendall, 30, RATE)
        wait_counted(agent, 30)
        stream.send_part(conn.sendall)
        wait_for(lambda: agent.value("p1_source_bytes_total") == len(stream.data))
        if fault == "reset":
            meter.reset()
        # Silent: the connection stays open, and nothing comes.
        wait_for(
            lambda: agent.value("p1_source_reconnects_total") == 1,
            what="the agent connected again",
            proc=agent.proc,
        )
        old = conn
        conn = meter.accept()
        old.close()
        stream.send(conn.sendall, 30, RATE)
        results = stream.results()
        wait_counted(agent, len(results))
        wait_delivered(agent, spooled_lines(results))
        assert agent.value("p1_telegrams_total", result="rejected") == 1
        count = accepted(agent)
    finally:
        log = stop_cleanly(agent)
        meter.close()
    return stream, count, log, landed_p1(influx, database)


def test_tcp_peer_resets(tmp_path: Path, influx: InfluxDB1, tally: Tally) -> None:
    tally.fault = "TCP bridge resets the connection (RST) mid-telegram"
    tally.checked = "reconnect with backoff; the cut telegram is rejected; every whole one lands"
    stream, count, log, landed = tcp_link_fault(tmp_path, influx, "reset", "reset")
    want = expected_p1(stream.results())
    tally.count(stream.sent, count, want, landed)
    tally.note = "1 telegram cut by the reset: rejected (truncated) and counted"
    assert "Connection reset by peer; reconnecting with backoff" in log
    assert count == 60 and landed == want


def test_tcp_peer_goes_silent(tmp_path: Path, influx: InfluxDB1, tally: Tally) -> None:
    tally.fault = "TCP bridge goes silent mid-telegram, connection left open (read timeout 2 s)"
    tally.checked = "the stall is detected, the link reopened; every whole telegram lands"
    stream, count, log, landed = tcp_link_fault(
        tmp_path, influx, "silent", "silent", "--read-timeout", "2s"
    )
    want = expected_p1(stream.results())
    tally.count(stream.sent, count, want, landed)
    tally.note = "1 telegram cut by the stall: rejected (truncated) and counted"
    assert "no bytes for 2 s; reconnecting with backoff" in log
    assert count == 60 and landed == want


# --- what InfluxDB answers -----------------------------------------------------------------------

THROTTLE_429 = Answer(429, {"Retry-After": "2"}, body=b'{"code": "too many requests"}')
THROTTLE_503 = Answer(503, {"Retry-After": "1"}, body=b"")
HTTP_FAULTS: dict[str, tuple[str, list[Answer], str, str]] = {
    "401": (
        "InfluxDB answers 401 (bad token), then accepts",
        [Answer(401, body=b'{"code": "unauthorized", "message": "unauthorized access"}')],
        "auth",
        "InfluxDB refused the token (401 Unauthorized)",
    ),
    "404": (
        "InfluxDB answers 404 (missing bucket), then accepts",
        [Answer(404, body=b'{"code": "not found", "message": "bucket \\"p1\\" not found"}')],
        "not_found",
        # (the log is JSON: the server's quotes around the bucket name are escaped)
        "not found (404 Not Found): check --influx-org and --influx-bucket",
    ),
    "413": (
        "InfluxDB answers 413 to writes over 8 lines",
        [],
        "too_large",
        "InfluxDB refused a batch as too large; splitting it",
    ),
    "429": (
        "InfluxDB answers 429 with Retry-After: 2, twice",
        [THROTTLE_429, THROTTLE_429],
        "throttled",
        "InfluxDB is throttling writes (429 Too Many Requests, retry after 2 s)",
    ),
    "503": (
        "InfluxDB answers 503 with Retry-After: 1, twice",
        [THROTTLE_503, THROTTLE_503],
        "throttled",
        "InfluxDB is throttling writes (503 Service Unavailable, retry after 1 s)",
    ),
    "500": (
        "InfluxDB answers 500 three times",
        [Answer(500)] * 3,
        "server",
        "InfluxDB answered 500 Internal Server Error",
    ),
    "slow": (
        "InfluxDB stores but answers after 2 s, twice (agent timeout 0.5 s)",
        [Answer(204, delay=2.0)] * 2,
        "timeout",
        "no answer from InfluxDB at",
    ),
}


@pytest.mark.parametrize("case", list(HTTP_FAULTS))
def test_influxdb_answers(case: str, tmp_path: Path, tally: Tally) -> None:
    fault, script, kind, message = HTTP_FAULTS[case]
    tally.fault = fault
    tally.checked = f"error kind {kind} counted and logged, data kept and retried, all land"
    retry_after = {float(a.headers["Retry-After"]) for a in script if "Retry-After" in a.headers}
    if kind == "throttled":
        tally.checked += f"; no retry before Retry-After ({next(iter(retry_after)):g} s)"
    server = StoringInflux(script, max_lines=8 if case == "413" else None)
    stream = MeterStream()
    meter = TcpMeter()
    env = {
        "P1_INFLUX_URL": server.url,
        "P1_INFLUX_ORG": "home",
        "P1_INFLUX_BUCKET": "p1",
        "P1_INFLUX_TOKEN": "tok-5f0c2a9e7d",
        "P1_INFLUX_TIMEOUT": "0.5s",
    }
    agent = start_agent(tmp_path / "data", "--source", f"{METER}={meter.url}", env=env)
    try:
        conn = meter.accept()
        stream.send(conn.sendall, 40)  # at once: the deliverer gathers them into large batches
        results = stream.results()
        wait_counted(agent, len(results))
        wait_delivered(agent, spooled_lines(results))
        count = accepted(agent)
        errors = agent.value("p1_influx_write_errors_total", kind=kind)
        refused = agent.value("p1_influx_refused_points_total")
    finally:
        log = stop_cleanly(agent)
        meter.close()
        server.close()
    want = expected_p1(results)
    landed = server.p1()
    tally.count(stream.sent, count, want, landed)
    statuses = server.statuses()
    tally.note = f"the writes got {server.summary()}"
    assert message in log
    assert errors >= max(1, len(script))
    assert refused == 0
    assert count == len(want) == 40
    assert landed == want
    if case == "413":
        assert 413 in statuses
    writes = zip(server.answers, server.arrivals, strict=True)
    for (answer, at), (_, following) in itertools.pairwise(writes):
        if answer.status in (429, 503):
            assert following - at >= min(retry_after)  # not before the server said
    if case == "slow":
        # The slow answers came after the points were stored: they were sent again and landed
        # on themselves.
        again = server.stored_lines - spooled_lines(results)
        assert again > 0
        tally.note += f"; {again} lines written again (resent after a timeout), on the same points"


# --- the meter's clock ---------------------------------------------------------------------------


def local_stamps(stream: MeterStream) -> list[str]:
    """The meter's own time (`0-0:1.0.0`) of every telegram written, as it wrote it."""
    text = stream.data.decode("latin-1")
    return [part[:13] for part in text.split("0-0:1.0.0(")[1:]]


def test_daylight_saving_both_ways(tmp_path: Path, influx: InfluxDB1, tally: Tally) -> None:
    tally.fault = "daylight saving time: spring forward and autumn back (Europe/Amsterdam)"
    tally.checked = (
        "the repeated autumn hour told apart by the S/W flag: every telegram its own UTC point,"
        " none lost or overwritten"
    )
    # A telegram every 30 s of meter time, from 1.5 h before each change to 1 h after it.
    autumn = MeterStream(start=datetime(2024, 10, 26, 23, 30, tzinfo=UTC), interval=30.0)
    spring = MeterStream(start=datetime(2024, 3, 31, 0, 30, tzinfo=UTC), interval=30.0, seed=2)
    meter = TcpMeter()
    agent = start_agent(
        tmp_path / "data", "--source", f"{METER}={meter.url}", env=v1_env(influx, "dst")
    )
    try:
        conn = meter.accept()
        spring.send(conn.sendall, 300)
        autumn.send(conn.sendall, 300)
        results = core(bytes(spring.data + autumn.data))
        wait_counted(agent, len(results))
        wait_delivered(agent, spooled_lines(results))
        count = accepted(agent)
    finally:
        stop_cleanly(agent)
        meter.close()
    landed = landed_p1(influx, "dst")
    want = expected_p1(results)
    tally.count(spring.sent + autumn.sent, count, want, landed)
    stamps = local_stamps(autumn)
    repeated = {s[:12] for s in stamps if s.endswith("S")} & {
        s[:12] for s in stamps if s.endswith("W")
    }
    skipped = [s for s in local_stamps(spring) if s[6:8] == "02"]
    tally.note = f"{len(repeated)} local times sent twice (S, then W) in the autumn hour"
    assert len(repeated) == 120 and not skipped  # the whole repeated hour, and no 02:xx in spring
    assert count == 600 and len(want) == 600
    assert sorted(want) == sorted(spring.times + autumn.times)  # meter time → UTC, one to one
    assert landed == want


def test_meter_clock_jumps_and_repeats(tmp_path: Path, influx: InfluxDB1, tally: Tally) -> None:
    tally.fault = "meter clock jumps 1 h forward, then back 1 h, then repeats a second"
    tally.checked = (
        "all accepted; one point per meter time: a telegram with a time already used overwrites"
        " the fields it carries (README: a re-sent telegram lands on its own point)"
    )
    # Telegrams 30 s apart, so the average power's windows close within the first pass and a
    # repeated time can land on a point that holds one (README: at most 5 minutes a window).
    step = timedelta(seconds=30)
    stream = MeterStream(interval=step.total_seconds())
    meter = TcpMeter()
    agent = start_agent(
        tmp_path / "data", "--source", f"{METER}={meter.url}", env=v1_env(influx, "clock")
    )
    try:
        conn = meter.accept()
        stream.send(conn.sendall, 20)  # T+0 … T+19 steps
        stream.meter.time += timedelta(hours=1)
        stream.send(conn.sendall, 20)  # 1 h later, 20 more
        stream.meter.time = stream.start + 9 * step
        stream.send(conn.sendall, 20)  # T+10 … T+29: ten times again, ten new
        stream.meter.time -= step
        stream.send(conn.sendall, 6)  # T+29 once more, then T+30 … T+34
        results = stream.results()
        wait_counted(agent, len(results))
        wait_delivered(agent, spooled_lines(results))
        count = accepted(agent)
    finally:
        stop_cleanly(agent)
        meter.close()
    landed = landed_p1(influx, "clock")
    want = expected_p1(results)
    tally.count(stream.sent, count, want, landed)
    repeats = len(stream.times) - len(set(stream.times))
    # Points holding a field the last telegram with their time did not carry: merged ones.
    last = {t: fields for r in results for t, fields in expected_p1([r]).items()}
    merged = sum(set(fields) != set(last[t]) for t, fields in want.items())
    tally.note = (
        f"{repeats} telegrams repeated a meter time, {len(want)} distinct points;"
        f" {merged} of them keep a field of an earlier telegram that the later one lacked"
    )
    assert count == 66 and repeats == 11 and len(want) == 55 and merged > 0
    assert landed == want
