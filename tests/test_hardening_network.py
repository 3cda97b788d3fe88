"""Hardening against a hostile network (issue 12, items 1, 3, 5 and 12's /healthz).

The agent runs as users run it (`p1-agent run`, a process); the peers are what the items found:
idle TCP connections to the metrics port, HTTP servers that answer a write with an endless body,
trickled headers or a web page (written for the test, since no real server can be made to),
a TCP bridge that sends telegrams and hangs up at once, a bridge that goes away, and a real
InfluxDB 1.x that refuses the agent's user. Each test records its figure for RELIABILITY.md.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from agentproc import (
    AgentProcess,
    run_cli,
    start_agent,
    stop_cleanly,
    store_lines,
    wait_counted,
    wait_for,
)
from faultkit import (
    METER,
    Answer,
    MeterStream,
    StoringInflux,
    expected_p1,
    landed_p1,
    record_hardening,
)
from meters import TcpMeter
from servers import RawReply, ScriptedHTTP, free_port, http, influxdb1

from agent.sinks.influx import InfluxTarget, WriteError, make_writer

pytestmark = pytest.mark.integration

LINES = ["p1,meter=m energy_import_kwh=1.5 1717200000"]


def healthcheck(address: str) -> tuple[int, float, str]:
    """`p1-agent healthcheck`: its exit status, how long it took, its stderr."""
    started = time.monotonic()
    result = run_cli("healthcheck", "--metrics-address", address)
    return result.returncode, time.monotonic() - started, result.stderr.decode()


def peak_rss_mib(agent: AgentProcess) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    for line in Path(f"/proc/{agent.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


# --- item 1: one idle connection silences the metrics ------------------------------------------

IDLE = 100


def test_idle_connections_do_not_silence_the_metrics(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    agent = start_agent(tmp_path / "data")
    idle: list[socket.socket] = []
    try:
        for n in range(IDLE):
            conn = socket.create_connection(("127.0.0.1", agent.port), timeout=5)
            if n % 2:
                conn.sendall(b"GET /metr")  # half a request line, then nothing
            idle.append(conn)
        opened = time.monotonic()
        started = time.monotonic()
        status, text = agent.get("/metrics", timeout=10)
        metrics_ms = (time.monotonic() - started) * 1000
        assert status == 200 and "p1_telegrams_total" in text
        started = time.monotonic()
        assert agent.get("/healthz", timeout=10) == (200, "ok\n")
        healthz_ms = (time.monotonic() - started) * 1000
        code, took, err = healthcheck(f"127.0.0.1:{agent.port}")
        assert code == 0, err
        assert agent.get("/nothing-here")[0] == 404
        assert agent.get("/metrics/../x")[0] == 404
        # The agent hangs up on them (a generous bound: its timeout is seconds).
        for conn in idle:
            conn.settimeout(max(1.0, opened + 60 - time.monotonic()))
            assert conn.recv(1) == b"", "an idle connection got an answer"
        closed_after = time.monotonic() - opened
    finally:
        for conn in idle:
            conn.close()
        log = stop_cleanly(agent)
    record_hardening(
        request.node.nodeid,
        item=1,
        checked=f"/metrics, /healthz and `p1-agent healthcheck` answer with {IDLE} idle "
        "connections open (half of them stopped mid request line); unknown paths get 404; "
        "the agent closes the idle connections itself",
        figure=f"/metrics in {metrics_ms:.0f} ms, /healthz in {healthz_ms:.0f} ms, healthcheck "
        f"in {took:.1f} s with {IDLE} idle connections open; all {IDLE} closed by the agent "
        f"after {closed_after:.0f} s",
    )
    assert "Traceback" not in log


@pytest.mark.parametrize("host", ["::1", "::"])
def test_metrics_and_healthcheck_over_ipv6(
    tmp_path: Path, request: pytest.FixtureRequest, host: str
) -> None:
    agent = start_agent(tmp_path / "data", metrics_host=host)
    try:
        assert "p1_telegrams_total" in agent.scrape()
        code, took, err = healthcheck(f"[{host}]:{agent.port}")
        assert code == 0, err
        if host == "::":  # every interface: IPv4 clients too
            assert http("GET", f"http://127.0.0.1:{agent.port}/healthz")[0] == 200
    finally:
        stop_cleanly(agent)
    record_hardening(
        request.node.nodeid,
        item=1,
        checked=f"--metrics-address [{host}]:PORT serves /metrics; `p1-agent healthcheck` "
        f"reaches it" + (" (and 127.0.0.1: one dual-stack socket)" if host == "::" else ""),
        figure=f"/metrics served over [{host}]; healthcheck answered in {took:.1f} s",
    )


# --- item 3: a misbehaving server can exhaust memory or hang delivery -------------------------

ENDLESS_CAP = 512 << 20  # what the endless server sends at most, so the unfixed agent survives


def endless(sent: list[int]) -> RawReply:
    """200 OK and a body that never ends (close-delimited), as fast as the client reads it."""

    def answer(out: BinaryIO) -> None:
        chunk = b"x" * 65536
        count = 0
        try:
            out.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
            while count < ENDLESS_CAP:
                out.write(chunk)
                count += len(chunk)
        finally:
            sent.append(count)

    return answer


def trickle(held: list[float], cap: float = 60.0) -> RawReply:
    """A status line, then a header a byte every 0.1 s, until the client hangs up (or `cap`)."""

    def answer(out: BinaryIO) -> None:
        started = time.monotonic()
        try:
            out.write(b"HTTP/1.1 204 No Content\r\n")
            while time.monotonic() - started < cap:
                out.write(b"X")
                time.sleep(0.1)
        finally:
            held.append(time.monotonic() - started)

    return answer


def influx_env(api: str, url: str, timeout: str = "2s") -> dict[str, str]:
    env = {"P1_INFLUX_URL": url, "P1_INFLUX_API": api, "P1_INFLUX_TIMEOUT": timeout}
    if api == "v2":
        env |= {"P1_INFLUX_ORG": "home", "P1_INFLUX_BUCKET": "p1", "P1_INFLUX_TOKEN": "tok-1"}
    return env


@contextlib.contextmanager
def meter_into(
    tmp_path: Path, server: StoringInflux, api: str, *args: str, timeout: str = "2s"
) -> Iterator[tuple[AgentProcess, MeterStream]]:
    """An agent reading a TCP meter that has sent 40 telegrams, delivering to `server`."""
    meter = TcpMeter()
    stream = MeterStream()
    agent = start_agent(
        tmp_path / "data",
        "--source",
        f"{METER}={meter.url}",
        *args,
        env=influx_env(api, server.url, timeout),
    )
    try:
        stream.send(meter.accept().sendall, 40)
        wait_counted(agent, 40)
        yield agent, stream
    finally:
        if agent.proc.poll() is None:
            agent.stop()
        meter.close()


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_an_endless_answer_is_cut_and_keeps_the_points(
    tmp_path: Path, request: pytest.FixtureRequest, api: str
) -> None:
    sent: list[int] = []
    server = StoringInflux([Answer(200, raw=endless(sent))] * 2)
    try:
        with meter_into(tmp_path, server, api) as (agent, stream):
            want = expected_p1(stream.results())
            wait_for(lambda: server.p1() == want, timeout=60, what="every telegram landed")
            wait_for(
                lambda: agent.value("p1_influx_write_errors_total", kind="server") >= 2,
                what="the refused answers counted",
            )
            peak = peak_rss_mib(agent)
    finally:
        server.close()
    record_hardening(
        request.node.nodeid,
        item=3,
        checked=f"{api}: two writes answered 200 with an endless body: memory stays bounded, "
        "the answer is no acknowledgement, the points stay in the spool and land afterwards",
        figure=f"peak RSS {peak:.0f} MiB; the server could push {sum(sent) / 2**20:.1f} MiB "
        f"into 2 answers before the agent hung up (it would have sent {ENDLESS_CAP >> 20} MiB "
        f"each); {len(want)} of {len(want)} telegrams landed",
    )
    assert peak < 200, f"peak RSS {peak:.0f} MiB"
    assert sum(sent) < 2 * ENDLESS_CAP


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_trickled_headers_end_within_the_timeout_and_do_not_hold_shutdown(
    tmp_path: Path, request: pytest.FixtureRequest, api: str
) -> None:
    held: list[float] = []
    server = StoringInflux([Answer(0, raw=trickle(held))] * 3)
    try:
        with meter_into(tmp_path, server, api, timeout="1s") as (agent, stream):
            want = expected_p1(stream.results())
            wait_for(lambda: len(server.answers) == 3, timeout=60, what="the third write")
            time.sleep(0.3)  # well inside the third trickled answer
            started = time.monotonic()
            log = agent.stop(timeout=60)
            shutdown = time.monotonic() - started
            assert agent.proc.returncode == 0, log
            kept = len(store_lines(agent.data_dir))
        writes = sorted(held[:2])
        # The same data directory, a server that answers now: everything lands.
        again = start_agent(agent.data_dir, env=influx_env(api, server.url))
        try:
            wait_for(lambda: server.p1() == want, timeout=60, what="every telegram landed")
        finally:
            stop_cleanly(again)
    finally:
        server.close()
    record_hardening(
        request.node.nodeid,
        item=3,
        checked=f"{api}: writes answered with headers trickled a byte every 0.1 s (timeout "
        "1 s): each write ends in time, SIGTERM during one exits promptly, the points stay "
        "in the spool and land after a restart",
        figure=f"writes held {writes[0]:.1f} s and {writes[1]:.1f} s; exit {shutdown:.1f} s "
        f"after SIGTERM; {kept} points kept, {len(want)} of {len(want)} telegrams landed",
    )
    assert all(seconds < 5 for seconds in writes), writes
    assert shutdown < 10
    assert kept > 0


PAGE = b"<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head></html>"


@pytest.mark.parametrize(
    ("status", "headers", "body", "acknowledged"),
    [
        (204, {}, b"", True),
        (200, {}, b"", True),
        (200, {"Content-Type": "application/json"}, b'{"results":[{"statement_id":0}]}', True),
        (200, {"Content-Type": "text/html"}, PAGE, False),
        (200, {"Content-Type": "text/plain"}, b"OK", False),
        (202, {}, b"", False),
    ],
)
@pytest.mark.parametrize("api", ["v1", "v2"])
def test_only_an_influxdb_answer_acknowledges_a_write(
    api: str, status: int, headers: dict[str, str], body: bytes, acknowledged: bool
) -> None:
    with ScriptedHTTP(lambda request: (status, headers, body)) as server:
        target = InfluxTarget(server.url, api=api, org="home", bucket="p1", database="p1")
        writer = make_writer(target)
        try:
            if acknowledged:
                writer.write(LINES)
            else:
                with pytest.raises(WriteError) as caught:
                    writer.write(LINES)
                assert caught.value.kind == "server"
                assert "not an InfluxDB" in str(caught.value)
        finally:
            writer.close()


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_a_web_page_does_not_take_the_points_out_of_the_spool(
    tmp_path: Path, request: pytest.FixtureRequest, api: str
) -> None:
    page = Answer(200, {"Content-Type": "text/html"}, body=PAGE)
    server = StoringInflux([page] * 3)
    try:
        with meter_into(tmp_path, server, api) as (agent, stream):
            want = expected_p1(stream.results())
            wait_for(lambda: server.p1() == want, timeout=60, what="every telegram landed")
            wait_for(
                lambda: agent.value("p1_influx_write_errors_total", kind="server") == 3,
                what="the refused answers counted",
            )
            errors = agent.value("p1_influx_write_errors_total", kind="server")
            log = agent.stop()
    finally:
        server.close()
    record_hardening(
        request.node.nodeid,
        item=3,
        checked=f"{api}: three writes answered `200 text/html` (a web server at the URL): no "
        "acknowledgement, the points stay in the spool, counted and logged, then land",
        figure=f"{len(want)} of {len(want)} telegrams landed after {int(errors)} refused "
        "acknowledgements",
    )
    assert errors == 3
    assert "not an InfluxDB write acknowledgement" in log


# --- item 5: bytes read just before a TCP bridge closes are lost -------------------------------

BURSTS = 12
PER_BURST = 10


@pytest.mark.parametrize("how", ["close", "reset"])
def test_telegrams_sent_just_before_the_bridge_hangs_up_are_kept(
    tmp_path: Path, request: pytest.FixtureRequest, how: str
) -> None:
    """On every connection the bridge sends what it had buffered, at once, and hangs up."""
    meter = TcpMeter()
    stream = MeterStream()
    agent = start_agent(tmp_path / "data", "--source", f"{METER}={meter.url}")
    served = 0

    def bridge() -> None:
        nonlocal served
        for _ in range(BURSTS):
            stream.send(meter.accept(timeout=60).sendall, PER_BURST)
            if how == "reset":
                meter.reset()
            else:
                meter.hang_up()
            served += 1

    thread = threading.Thread(target=bridge, daemon=True)
    thread.start()
    try:
        thread.join(timeout=90)
        sent = stream.sent
        wait_for(
            lambda: agent.value("p1_telegrams_total") >= served * PER_BURST,
            timeout=15,
            what="the telegrams counted",
        )
        valid = int(agent.value("p1_telegrams_total", result="valid"))
        rejected = int(agent.value("p1_telegrams_total", result="rejected"))
    finally:
        log = stop_cleanly(agent)
        meter.close()
    record_hardening(
        request.node.nodeid,
        item=5,
        checked=f"a TCP bridge that sends {PER_BURST} telegrams on connecting and at once "
        f"{'resets' if how == 'reset' else 'closes'} the connection, {BURSTS} times: every "
        "telegram kept",
        figure=f"{valid} of {sent} telegrams kept ({rejected} rejected)",
    )
    assert served == BURSTS, f"the agent connected {served} times in 90 s"
    assert (valid, rejected) == (BURSTS * PER_BURST, 0)
    assert "lost socket://" in log


# --- item 12: /healthz says what is wrong ---------------------------------------------------------


def test_healthz_is_degraded_while_the_source_is_disconnected(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    meter = TcpMeter()
    stream = MeterStream()
    agent = start_agent(
        tmp_path / "data", "--source", f"{METER}={meter.url}", "--read-timeout", "1s"
    )
    try:
        stream.send(meter.accept().sendall, 5)
        wait_counted(agent, 5)
        assert agent.get("/healthz") == (200, "ok\n")
        meter.close()  # the bridge is gone: the connection closed, new ones refused
        gone = time.monotonic()
        wait_for(lambda: agent.get("/healthz")[0] == 503, timeout=30, what="degraded")
        degraded_after = time.monotonic() - gone
        status, text = agent.get("/healthz")
        assert status == 503 and text.startswith("degraded\n")
        assert f"source {METER} disconnected for" in text and meter.url in text
        assert agent.get("/healthz/live") == (200, "ok\n")
        assert healthcheck(f"127.0.0.1:{agent.port}")[0] == 0  # liveness: no restart for this
        meter.come_back()
        stream.send(meter.accept(timeout=90).sendall, 5)
        back = time.monotonic()
        wait_for(lambda: agent.get("/healthz")[0] == 200, timeout=30, what="ok again")
        ok_after = time.monotonic() - back
    finally:
        stop_cleanly(agent)
        meter.close()
    record_hardening(
        request.node.nodeid,
        item=12,
        checked="/healthz answers 503 `degraded` naming the source while a TCP bridge is gone "
        "longer than --read-timeout (1 s), and ok once it is back; /healthz/live and "
        "`p1-agent healthcheck` stay ok",
        figure=f"degraded {degraded_after:.1f} s after the bridge went away, ok again "
        f"{ok_after:.1f} s after it came back",
    )


def test_healthz_is_degraded_while_influxdb_refuses_the_writes(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with influxdb1(tmp_path / "influx", auth=True) as influx:
        influx.create_database("p1")
        meter = TcpMeter()
        stream = MeterStream()
        env = {
            "P1_INFLUX_URL": influx.url,
            "P1_INFLUX_API": "v1",
            "P1_INFLUX_DATABASE": "p1",
            "P1_INFLUX_USERNAME": "writer",
            "P1_INFLUX_PASSWORD": "pw-writer-1",  # no such user yet: 401
        }
        agent = start_agent(
            tmp_path / "data",
            "--source",
            f"{METER}={meter.url}",
            "--influx-degraded-after",
            "2s",
            env=env,
        )
        try:
            stream.send(meter.accept().sendall, 10)
            wait_counted(agent, 10)
            wait_for(lambda: agent.get("/healthz")[0] == 503, timeout=30, what="degraded")
            status, text = agent.get("/healthz")
            assert status == 503 and text.startswith("degraded\n")
            assert "InfluxDB has refused writes for" in text and "writer" in text
            assert agent.get("/healthz/live") == (200, "ok\n")
            influx.query("CREATE USER writer WITH PASSWORD 'pw-writer-1'")
            influx.query('GRANT WRITE ON "p1" TO writer')
            fixed = time.monotonic()
            wait_for(lambda: agent.get("/healthz")[0] == 200, timeout=60, what="ok again")
            ok_after = time.monotonic() - fixed
            want = expected_p1(stream.results())
            wait_for(lambda: landed_p1(influx, "p1") == want, what="every telegram landed")
        finally:
            stop_cleanly(agent)
            meter.close()
    record_hardening(
        request.node.nodeid,
        item=12,
        checked="/healthz answers 503 `degraded` with InfluxDB's reason while a real InfluxDB "
        "1.x refuses the writes (401) longer than --influx-degraded-after (2 s); ok once the "
        "user exists; liveness stays ok",
        figure=f"degraded with `{text.splitlines()[1][:60]}…`; ok {ok_after:.1f} s after the "
        f"user was created, {len(want)} of {len(want)} telegrams landed",
    )


class Bug(BaseException):
    """What no `except Exception` catches: the deliverer's thread ends."""


class CrashingWriter:
    def write(self, lines: list[str]) -> None:
        raise Bug("a bug in the writer")

    def check(self) -> str:
        return "never"

    def close(self) -> None:
        pass


def test_healthz_is_degraded_and_not_live_when_the_deliverer_dies(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from agent.config import Settings
    from agent.httpserver import serve
    from agent.run import Agent

    # The built-in simulated meter; a writer with a bug, behind the real deliverer.
    target = InfluxTarget(f"http://127.0.0.1:{free_port()}", api="v1")
    agent = Agent(Settings(data_dir=tmp_path, influx=target))
    assert agent.deliverer is not None
    agent.deliverer.writer = CrashingWriter()
    port = free_port()
    server = serve(agent.metrics, "127.0.0.1", port, agent.health)
    url = f"http://127.0.0.1:{port}"
    try:
        assert http("GET", f"{url}/healthz/live") == (200, b"ok\n")
        agent.start()
        wait_for(lambda: http("GET", f"{url}/healthz")[0] == 503, what="degraded")
        status, body = http("GET", f"{url}/healthz")
        live = http("GET", f"{url}/healthz/live")
    finally:
        agent.stop.set()
        agent.shutdown()
        server.shutdown()
    text = body.decode()
    assert status == 503
    record_hardening(
        request.node.nodeid,
        item=12,
        checked="a deliverer thread that died (an exception no handler catches) turns /healthz "
        "and /healthz/live to 503 with the reason",
        figure=f"/healthz: `{text.splitlines()[1][:70]}`",
    )
    assert "the deliverer stopped" in text and "a bug in the writer" in text
    assert live[0] == 503 and b"the deliverer stopped" in live[1]
