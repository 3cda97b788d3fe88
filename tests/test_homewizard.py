"""`homewizard://HOST`: the HomeWizard P1 meter's local API, against a local HTTP server that
answers as the device does (the latest telegram as text/plain, 503 while it has none, 401 for a
wrong v2 token)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from agentproc import start_agent, stop_cleanly, store_lines, wait_for
from p1_testkit import simulated
from servers import Request, ScriptedHTTP

from agent import config
from agent.core.pipeline import MeterPipeline
from agent.sources import open_source
from agent.sources.homewizard import HomeWizardSource

TOKEN = "5A1C0FFEE0DDBA11DEADBEEF0D15EA5E"


class Device:
    """The P1 meter's telegram API: the latest of `telegrams`, advanced by `next()`."""

    def __init__(self, telegrams: list[bytes], token: str | None = None) -> None:
        self.telegrams = telegrams
        self.index = -1  # none received from the meter yet: 503
        self.token = token
        self.silent = False

    def next(self) -> None:
        self.index += 1

    def respond(self, request: Request) -> tuple[int, dict[str, str], bytes] | object:
        if self.silent:
            return _hang
        if self.token is None:
            if request.path != "/api/v1/telegram":
                return 404, {}, b""
        else:
            if request.path != "/api/telegram" or request.headers.get("X-Api-Version") != "2":
                return 404, {}, b""
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return 401, {"Content-Type": "application/json"}, b'{"error":"user:unauthorized"}'
        if self.index < 0:
            return 503, {}, b""
        return 200, {"Content-Type": "text/plain"}, self.telegrams[self.index]


def _hang(wfile: BinaryIO) -> None:
    time.sleep(3)  # a device that accepted the connection and says nothing


def serve(device: Device, **options: object) -> ScriptedHTTP:
    return ScriptedHTTP(device.respond, **options)  # type: ignore[arg-type]


def source_for(url: str, stop: threading.Event, **env: str) -> HomeWizardSource:
    settings = config.load({}, env)
    source = open_source(url, stop, settings=settings)
    assert isinstance(source, HomeWizardSource)
    source.interval, source.timeout = 0.05, 1.0
    return source


def read_telegrams(source: HomeWizardSource, count: int, timeout: float = 20) -> list[bytes]:
    """What the pipeline makes of the source's bytes: `count` accepted telegrams' frames."""
    pipeline = MeterPipeline()
    found: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        found += [r.frame.body for r in pipeline.feed(source.read()) if r.telegram is not None]
    return found


def body(telegram: bytes) -> bytes:
    return telegram[: telegram.rindex(b"!") + 1]


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_each_new_telegram_once_the_same_one_not_again(stop: threading.Event) -> None:
    device = Device(simulated("dsmr5", 3))
    with serve(device) as server:
        source = source_for(f"homewizard://{server.url.partition('//')[2]}", stop)
        try:
            wait_for(lambda: len(server.requests) >= 3, what="polls while the device has none")
            assert source.connected and source.read() == b""  # 503: no telegram yet
            device.next()
            first = read_telegrams(source, 1)
            polls = len(server.requests)
            wait_for(lambda: len(server.requests) >= polls + 5, what="more polls")
            assert source.read() == b""  # the same telegram is not passed on again
            device.next()
            device.next()
            second = read_telegrams(source, 1)
        finally:
            source.close()
    assert first + second == [body(device.telegrams[0]), body(device.telegrams[2])]
    assert all(r.headers.get("Accept") == "text/plain" for r in server.requests)


def test_device_going_away_and_returning_and_a_silent_one(stop: threading.Event) -> None:
    device = Device(simulated("dsmr5", 4))
    device.next()
    server = serve(device)
    port = int(server.url.rpartition(":")[2])
    source = source_for(f"homewizard://127.0.0.1:{port}", stop)
    try:
        assert len(read_telegrams(source, 1)) == 1
        source.telegram_seen()
        server.close()  # the dongle loses its Wi-Fi
        wait_for(lambda: not source.connected, what="noticed as gone")
        assert "refused" in (source.last_error or "").lower()
        device.next()
        server = serve(device, port=port)  # back, with a newer telegram
        wait_for(lambda: source.connected, timeout=60, what="back")
        assert len(read_telegrams(source, 1)) == 1
        assert source.reconnects == 1
        source.telegram_seen()
        device.silent = True  # answers nothing: the request's deadline ends it
        wait_for(lambda: not source.connected, what="a silent device noticed")
        assert "timed out" in (source.last_error or "")
    finally:
        source.close()
        server.close()


def test_v2_api_over_https_with_a_token(
    stop: threading.Event, self_signed: tuple[Path, Path]
) -> None:
    device = Device(simulated("fluvius", 2), token=TOKEN)
    device.next()
    with serve(device, tls=self_signed) as server:
        address = server.url.partition("//")[2]
        source = source_for(
            f"homewizard://{address}",
            stop,
            P1_HOMEWIZARD_TOKEN=TOKEN,
            P1_HOMEWIZARD_CA_FILE=str(self_signed[0]),
        )
        try:
            assert len(read_telegrams(source, 1)) == 1
        finally:
            source.close()
        wrong = source_for(f"homewizard://{address}", stop, P1_HOMEWIZARD_TOKEN="not-the-token")
        try:
            wait_for(lambda: wrong.last_error is not None, what="refused")
            assert "401" in str(wrong.last_error) and "token" in str(wrong.last_error)
            assert "not-the-token" not in str(wrong.last_error)
        finally:
            wrong.close()


def test_bad_urls_are_one_line_errors(stop: threading.Event) -> None:
    for url in ("homewizard://", "homewizard://host/path", "homewizard://host:99999"):
        with pytest.raises(ValueError, match="is not homewizard://HOST"):
            source_for(url, stop)


def test_agent_reads_a_homewizard_meter_into_its_store(tmp_path: Path) -> None:
    device = Device(simulated("dsmr5", 5))
    with serve(device) as server:
        agent = start_agent(
            tmp_path / "data",
            env={"P1_SOURCE": f"homewizard://{server.url.partition('//')[2]}"},
        )
        try:
            for want in range(1, 6):
                device.next()
                wait_for(lambda: agent.value("p1_telegrams_total") == want, proc=agent.proc)  # noqa: B023
            assert agent.value("p1_source_connected") == 1
        finally:
            stop_cleanly(agent)
    assert len([line for line in store_lines(tmp_path / "data") if line.startswith("p1,")]) == 5
