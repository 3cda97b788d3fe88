"""Byte sources: real pseudo-terminals (via pyserial and socat), a real TCP peer, capture files,
the simulator, and the sans-I/O parts (backoff, speed probe, no-telegram watch) on a fake clock."""

from __future__ import annotations

import itertools
import os
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from servers import require_binary
from structlog.testing import capture_logs

from agent.core.pipeline import MeterPipeline, Result
from agent.redact import mask_url
from agent.simulate import SimulatedMeter
from agent.sources import Source, open_source
from agent.sources.file import (
    FileSource,
    FollowFileSource,
    RealtimeFileSource,
    TelegramSplitter,
    gap,
    meter_time,
)
from agent.sources.reconnect import Backoff, Reconnector, describe
from agent.sources.serial import SerialSource
from agent.sources.simulator import SimulatorSource
from agent.sources.speed import DSMR2, DSMR4, LineSettings, SpeedProbe, parse_settings
from agent.sources.watch import NO_BYTES, NO_TELEGRAM, NoTelegramWatch

DEADLINE = 20.0  # generous: only a broken source takes this long
FAST = Backoff(0.05, 0.2)  # real links in tests retry quickly


class FakeClock:
    """Time that moves only when something waits; records every wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


def read_until(source: Source, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not done():
        assert time.monotonic() < deadline, "the source did not get there in time"
        assert source.read() is not None


def next_results(source: Source, pipeline: MeterPipeline) -> list[Result]:
    """Read until the pipeline yields results; confirm accepted telegrams as the agent does."""
    deadline = time.monotonic() + DEADLINE
    results: list[Result] = []
    while not results:
        assert time.monotonic() < deadline, "no telegram came through"
        data = source.read()
        assert data is not None
        results = pipeline.feed(data)
    for result in results:
        if result.accepted:
            source.telegram_seen()
    return results


def deliver(
    source: Source, write: Callable[[bytes], object], meter: SimulatedMeter, count: int
) -> list[Result]:
    """Send `count` telegrams one at a time, each read back before the next is sent."""
    pipeline = MeterPipeline()
    results: list[Result] = []
    for _ in range(count):
        write(meter.next_telegram())
        results += next_results(source, pipeline)
    return results


def statuses(results: list[Result]) -> list[str]:
    return [result.status for result in results]


# -- configuration mistakes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("bogus://x", {}, "source 'bogus://x' is not supported"),
        ("ttyUSB0", {}, "is not supported"),
        ("socket://localhost", {}, "is not socket://HOST:PORT"),
        ("socket://:2001", {}, "is not socket://HOST:PORT"),
        ("rfc2217://host:99999", {}, "is not rfc2217://HOST:PORT"),
        ("socket://u:secret@host", {}, "socket://u:****@host"),
        ("/dev/ttyUSB0", {"serial_settings": "115200-9N1"}, "are not BAUD-"),
        ("/dev/ttyUSB0", {"serial_settings": "fast"}, "are not BAUD-"),
        ("/dev/ttyUSB0", {"serial_settings": "12345-8N1"}, "not a standard baud rate"),
        ("socket://host:2001", {"serial_settings": "auto"}, "cannot probe through socket://"),
        ("/dev/ttyUSB0", {"read_timeout": 0.0}, "read timeout must be positive"),
        ("file:/does/not/exist", {}, "capture file /does/not/exist does not exist"),
        ("file:/does/not/exist,realtime", {}, "does not exist"),
        ("file:/", {}, "is a directory"),
        ("file:/,follow", {}, "is a directory"),
        ("file:x,realtime,follow", {}, "choose one of realtime and follow"),
        ("file:", {}, "names no file"),
        ("simulator:gas", {}, "unknown simulator flavour 'gas'"),
        ("simulator,speed=2", {}, "unknown simulator option 'speed'"),
        ("simulator,interval=0", {}, "is not a positive number of seconds"),
        ("simulator,interval=soon", {}, "is not a positive number of seconds"),
        ("simulator,interval=1,interval=2", {}, "given twice"),
    ],
)
def test_configuration_mistakes_are_one_line_value_errors(
    url: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as raised:
        open_source(url, threading.Event(), **options)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)
    assert "secret" not in str(raised.value)


def test_serial_settings_syntax() -> None:
    assert parse_settings("9600-7e1") == LineSettings(9600, 7, "E", 1.0) == DSMR2
    assert parse_settings(" 115200-8N1 ") == DSMR4
    assert str(parse_settings("19200-8O1.5")) == "19200-8O1.5"
    assert DSMR2.as_pyserial() == {"baudrate": 9600, "bytesize": 7, "parity": "E", "stopbits": 1}


def test_a_device_that_is_not_there_is_waited_for(tmp_path: Path) -> None:
    device = tmp_path / "ttyUSB0"
    source = open_source(str(device), threading.Event(), name="garage")
    assert source.name == "garage"
    with capture_logs() as logs:
        assert source.read() == b""
    assert not source.connected
    assert source.last_error == f"cannot open {device}: No such file or directory"
    assert [entry["event"] for entry in logs] == [
        f"cannot open {device}: No such file or directory; retrying with backoff"
    ]
    source.close()


# -- serial devices: pseudo-terminals ---------------------------------------------------------


@pytest.mark.parametrize("settings", ["115200-8N1", "auto"])
def test_telegrams_through_a_pseudo_terminal(settings: str) -> None:
    master, slave = os.openpty()
    try:
        source = open_source(os.ttyname(slave), threading.Event(), serial_settings=settings)
        assert isinstance(source, SerialSource)
        read_until(source, lambda: source.connected)
        results = deliver(source, lambda data: os.write(master, data), SimulatedMeter("dsmr5"), 5)
        assert statuses(results) == ["valid"] * 5
        assert source.bytes_total == sum(len(r.frame.text) + 2 for r in results)
        if settings == "auto":
            assert source.probe is not None and source.probe.locked
            assert source.settings == DSMR4
        source.close()
    finally:
        os.close(master)
        os.close(slave)


@contextmanager
def socat_pair(device: Path, meter: Path) -> Iterator[int]:
    """A pty pair joined by socat at stable paths; yields a descriptor that writes as the meter."""
    proc = subprocess.Popen(
        [
            require_binary("socat"),
            f"pty,link={device},raw,echo=0",
            f"pty,link={meter},raw,echo=0",
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + DEADLINE
        while not (device.exists() and meter.exists()):
            assert proc.poll() is None, "socat exited"
            assert time.monotonic() < deadline, "socat made no links"
            time.sleep(0.02)
        fd = os.open(meter, os.O_RDWR | os.O_NOCTTY)
        try:
            yield fd
        finally:
            os.close(fd)
    finally:
        proc.terminate()
        proc.wait(timeout=DEADLINE)


def test_device_that_appears_later_and_comes_back_after_it_went_away(tmp_path: Path) -> None:
    device, meter_side = tmp_path / "ttyP1", tmp_path / "meter"
    require_binary("socat")
    meter = SimulatedMeter("dsmr5")
    source = SerialSource(str(device), threading.Event(), settings=DSMR4, backoff=FAST)
    with capture_logs() as logs:
        for _ in range(5):
            assert source.read() == b""
        assert not source.connected
        assert source.last_error is not None and str(device) in source.last_error
        with socat_pair(device, meter_side) as fd:  # the cable is plugged in
            read_until(source, lambda: source.connected)
            assert statuses(deliver(source, lambda d: os.write(fd, d), meter, 3)) == ["valid"] * 3
        read_until(source, lambda: not source.connected)  # ... and pulled out
        for _ in range(5):
            assert source.read() == b""
        with socat_pair(device, meter_side) as fd:  # ... and plugged in again
            read_until(source, lambda: source.connected)
            assert statuses(deliver(source, lambda d: os.write(fd, d), meter, 3)) == ["valid"] * 3
    source.close()
    assert source.reconnects == 1
    warnings = [entry["event"] for entry in logs if entry["log_level"] == "warning"]
    # One line per outage, however many attempts it took.
    assert len(warnings) == 2
    assert warnings[0].startswith(f"cannot open {device}: No such file or directory; retrying")
    assert warnings[1].startswith(f"lost {device}: ")
    assert warnings[1].endswith("; reconnecting with backoff")


# -- TCP (ser2net, ESP bridges) -------------------------------------------------------------


def test_tcp_peer_that_resets_or_goes_silent_is_reconnected() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(DEADLINE)
        port = listener.getsockname()[1]
        source = SerialSource(
            f"socket://127.0.0.1:{port}",
            threading.Event(),
            settings=DSMR4,
            read_timeout=1.0,
            backoff=FAST,
        )
        meter = SimulatedMeter("dsmr5")
        read_until(source, lambda: source.connected)
        peer, _ = listener.accept()
        assert statuses(deliver(source, peer.sendall, meter, 3)) == ["valid"] * 3
        peer.close()  # the bridge resets the connection
        read_until(source, lambda: source.reconnects == 1 and source.connected)
        assert source.last_error is not None and source.last_error.startswith("lost socket://")
        peer, _ = listener.accept()
        assert statuses(deliver(source, peer.sendall, meter, 3)) == ["valid"] * 3
        # The peer goes silent without closing (a bridge that lost power behind a NAT).
        read_until(source, lambda: source.reconnects == 2)
        assert source.last_error == f"lost socket://127.0.0.1:{port}: no bytes for 1 s"
        peer.close()
        peer, _ = listener.accept()
        assert statuses(deliver(source, peer.sendall, meter, 1)) == ["valid"]
        peer.close()
        source.close()
        assert not source.connected


def test_a_link_silent_since_it_opened_is_kept_and_explained() -> None:
    """No stall reconnect before the first byte: the no-bytes hint must get its chance."""
    clock = FakeClock()

    class Quiet:
        def read(self, size: int) -> bytes:
            clock.wait(0.2)
            return b""

        def apply_settings(self, d: dict[str, object]) -> None: ...

        def reset_input_buffer(self) -> None: ...

        def close(self) -> None: ...

    source = SerialSource(
        "/dev/quiet",
        threading.Event(),
        settings=DSMR4,
        read_timeout=5.0,
        factory=lambda url, settings, timeout: Quiet(),
        clock=clock,
        wait=clock.wait,
    )
    while clock.now < 1000.0 + 61:
        assert source.read() == b""
    assert source.connected and source.reconnects == 0
    assert source.hint == NO_BYTES.format(after=60.0)


# -- auto speed -----------------------------------------------------------------------------


class FakeMeterPort:
    """A DSMR 2.2-style meter behind a UART: telegrams at 9600-7E1, garbage at anything else."""

    def __init__(self, settings: LineSettings, clock: FakeClock, meter: SimulatedMeter) -> None:
        self.settings = settings
        self.clock = clock
        self.meter = meter
        self.rng = random.Random(7)

    def read(self, size: int) -> bytes:
        self.clock.wait(0.2)
        if self.settings == DSMR2:
            return self.meter.next_telegram()
        return bytes(self.rng.randrange(256) for _ in range(300)).replace(b"/", b"?")

    def apply_settings(self, d: dict[str, Any]) -> None:
        self.settings = LineSettings(**d)

    def reset_input_buffer(self) -> None: ...

    def close(self) -> None: ...


def test_auto_finds_9600_7e1_and_keeps_it() -> None:
    clock = FakeClock()
    meter = SimulatedMeter("dsmr5")
    ports: list[FakeMeterPort] = []

    def factory(url: str, settings: LineSettings, timeout: float) -> FakeMeterPort:
        ports.append(FakeMeterPort(settings, clock, meter))
        return ports[-1]

    source = SerialSource(
        "/dev/old-meter",
        threading.Event(),
        settings=SpeedProbe(),
        factory=factory,
        clock=clock,
        wait=clock.wait,
    )
    pipeline = MeterPipeline()
    with capture_logs() as logs:
        results = next_results(source, pipeline)
    assert source.settings == DSMR2 and ports[0].settings == DSMR2
    assert results[-1].status == "valid"
    assert source.probe is not None and source.probe.locked
    events = [entry["event"] for entry in logs]
    assert "/dev/old-meter: no telegram yet; trying serial settings 9600-7E1" in events
    assert "/dev/old-meter: serial settings 9600-7E1 work" in events
    # A long burst of noise on the working link does not make it leave the right speed.
    ports[0].settings = DSMR4
    for _ in range(1000):
        source.read()
    assert source.settings == DSMR2


def test_speed_probe_switches_on_bytes_or_time_and_locks_on_a_telegram() -> None:
    probe = SpeedProbe(window_bytes=4096, window_seconds=25.0, relearn=10)
    probe.connected(0.0)
    assert probe.settings == DSMR4
    assert probe.update(0, 100.0) is None  # no bytes at all: not a speed problem
    assert probe.update(4000, 100.0) is None
    assert probe.update(96, 101.0) == DSMR2  # 4 KiB without a telegram
    assert probe.update(10, 102.0) is None
    assert probe.update(0, 126.9) is None
    assert probe.update(0, 127.0) == DSMR4  # 25 s of bytes without a telegram: back again
    assert probe.update(5000, 128.0) == DSMR2
    assert probe.telegram() is True  # settled: worth a log line
    assert probe.telegram() is False
    assert probe.update(10**6, 10_000.0) is None  # locked on this link
    probe.connected(20_000.0)  # a reconnect: doubted only after 10 windows without a telegram
    assert probe.update(40_000, 20_001.0) is None
    assert probe.update(960, 20_002.0) == DSMR4
    assert not probe.locked
    probe.telegram()
    probe.connected(30_000.0)
    probe.telegram()  # the relearned speed works after the next reconnect too
    assert probe.update(10**6, 40_000.0) is None


# -- the no-telegram watch ------------------------------------------------------------------


def test_watch_says_no_bytes_once_per_connection() -> None:
    watch = NoTelegramWatch(after=60.0)
    watch.reset(0.0)
    assert watch.check(59.9) is None
    message = watch.check(60.0)
    assert message is not None and "no bytes" in message and "pin 2, RTS" in message
    assert watch.check(500.0) is None
    watch.reset(1000.0)
    assert watch.check(1059.0) is None
    assert watch.check(1060.0) == message


def test_watch_says_no_telegram_once_naming_the_causes() -> None:
    watch = NoTelegramWatch(after=60.0, min_bytes=256)
    watch.reset(0.0)
    watch.bytes(100, 10.0)
    assert watch.check(80.0) is None  # too few bytes to say anything
    watch.bytes(200, 20.0)
    assert watch.check(69.9) is None
    message = watch.check(70.0)
    assert message == NO_TELEGRAM.format(after=60.0)
    for cause in ("inverted", "9600-7E1", "auto", "pin 2, RTS"):
        assert cause in message
    watch.bytes(10_000, 80.0)
    assert watch.check(500.0) is None  # once per connection
    watch.reset(1000.0)
    watch.bytes(1000, 1000.0)
    watch.telegram(1030.0)  # a telegram starts the count again
    watch.bytes(1000, 1040.0)
    assert watch.check(1099.0) is None
    assert watch.check(1100.0) == message
    assert watch.check(2000.0) is None  # and bytes did arrive: no no-bytes message


def test_source_hint_comes_from_garbage_and_goes_with_a_telegram() -> None:
    clock = FakeClock()
    meter = SimulatedMeter("dsmr5")
    port = FakeMeterPort(DSMR4, clock, meter)  # garbage at 115200
    source = SerialSource(
        "/dev/inverted",
        threading.Event(),
        settings=DSMR4,
        factory=lambda url, settings, timeout: port,
        clock=clock,
        wait=clock.wait,
    )
    while source.hint is None:
        assert clock.now < 1000.0 + 61
        assert source.read()
    assert source.hint == NO_TELEGRAM.format(after=60.0)
    assert clock.now >= 1000.0 + 60
    port.settings = DSMR2  # the cable is fixed
    assert statuses(next_results(source, MeterPipeline())) == ["valid"]
    assert source.hint is None


# -- reconnect policy -----------------------------------------------------------------------


def test_backoff_is_full_jitter_doubling_to_the_cap() -> None:
    backoff = Backoff(1.0, 60.0, random.Random(3))
    ceilings = [1, 2, 4, 8, 16, 32, 60, 60, 60]
    delays = [backoff.next() for _ in ceilings]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len(set(delays)) == len(delays)  # jittered, not a fixed ladder
    assert max(delays[6:]) > 32  # the cap is reached, not just the old ceiling
    backoff.reset()
    assert backoff.next() <= 1.0
    with pytest.raises(ValueError):
        Backoff(5.0, 1.0)


def test_reconnector_waits_in_short_polls_and_logs_a_summary_a_minute() -> None:
    clock = FakeClock()
    link = Reconnector("/dev/p1", threading.Event(), clock=clock, wait=clock.wait)
    assert link.due()
    attempts = 0
    logged_at: list[float] = []
    with capture_logs() as logs:
        while clock.now < 1000.0 + 1200:
            if link.due():
                attempts += 1
                link.failed("No such file or directory")
                if len(logs) > len(logged_at):
                    logged_at.append(clock.now)
        link.opened()
        link.working()
    assert max(clock.waits) <= 0.5  # the caller gets control back often to notice a stop
    assert attempts > 20  # retried forever, at most a minute apart
    events = [entry["event"] for entry in logs]
    assert events[0] == "cannot open /dev/p1: No such file or directory; retrying with backoff"
    summaries = events[1:-1]
    assert 5 <= len(summaries) <= 20  # about one a minute over twenty minutes, never more
    assert all(later - earlier >= 60 for earlier, later in itertools.pairwise(logged_at))
    assert all(e.startswith("still cannot open /dev/p1 after ") for e in summaries)
    assert events[-1] == f"connected to /dev/p1 after {attempts} failures"
    assert link.connected and link.reconnects == 0  # the first connection is not a reconnect
    link.lost("socket disconnected")
    assert not link.connected
    assert link.last_error == "lost /dev/p1: socket disconnected"


def test_backoff_starts_over_only_after_a_telegram() -> None:
    clock = FakeClock()

    class Ceiling(Backoff):
        def next(self) -> float:
            self.seen = self._ceiling
            return super().next()

    backoff = Ceiling(1.0, 60.0, random.Random(1))
    link = Reconnector("x", threading.Event(), backoff=backoff, clock=clock, wait=clock.wait)
    for _ in range(4):  # a bridge that accepts and drops at once: no telegram, no reset
        link.opened()
        link.lost("socket disconnected")
    assert backoff.seen == 8
    link.opened()
    link.working()
    link.lost("socket disconnected")
    assert backoff.seen == 1
    assert link.reconnects == 4


def test_stop_cuts_the_wait_short_and_errors_are_one_line() -> None:
    stop = threading.Event()
    link = Reconnector("x", stop)
    assert link.wait == stop.wait
    assert mask_url("rfc2217://me:pw@host:2217") == "rfc2217://me:****@host:2217"
    try:
        os.open("/does/not/exist", os.O_RDONLY)
    except OSError as exc:
        assert describe(exc) == "No such file or directory"
    assert describe(RuntimeError("a\n  b")) == "a b"


# -- capture files --------------------------------------------------------------------------


def capture(tmp_path: Path, flavour: str, count: int, **meter: Any) -> tuple[Path, list[bytes]]:
    sim = SimulatedMeter(flavour, **meter)
    telegrams = [sim.next_telegram() for _ in range(count)]
    path = tmp_path / f"{flavour}.p1"
    path.write_bytes(b"".join(telegrams))
    return path, telegrams


def test_file_is_read_once_to_its_end(tmp_path: Path) -> None:
    path, telegrams = capture(tmp_path, "hu", 40)  # ~94 KiB: more than one chunk
    source = open_source(f"file:{path}", threading.Event())
    assert isinstance(source, FileSource)
    chunks = []
    while (data := source.read()) is not None:
        chunks.append(data)
    assert b"".join(chunks) == b"".join(telegrams)
    assert len(chunks) > 1 and source.bytes_total == path.stat().st_size
    source.close()


def test_realtime_replay_is_paced_by_the_meter_clock(tmp_path: Path) -> None:
    path, telegrams = capture(tmp_path, "hu", 5)
    path.write_bytes(b"garbage" + path.read_bytes())
    clock = FakeClock()
    source = RealtimeFileSource(path, threading.Event(), clock=clock, wait=clock.wait)
    sent: list[tuple[float, bytes]] = []
    while (data := source.read()) is not None:
        if data:
            sent.append((clock.now - 1000.0, data))
    assert [at for at, _ in sent] == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert [data for _, data in sent] == [b"garbage" + telegrams[0], *telegrams[1:]]
    assert max(clock.waits) <= 0.5  # waits in short polls, so a stop is noticed
    source.close()


@pytest.mark.parametrize(("interval", "expected"), [(3600.0, 60.0), (0.01, 0.1)])
def test_realtime_gaps_are_clamped(tmp_path: Path, interval: float, expected: float) -> None:
    path, _ = capture(tmp_path, "dsmr5", 3, interval=interval)
    clock = FakeClock()
    source = open_source(f"file:{path},realtime", threading.Event())
    assert isinstance(source, RealtimeFileSource)
    source = RealtimeFileSource(path, threading.Event(), clock=clock, wait=clock.wait)
    times = []
    while (data := source.read()) is not None:
        if data:
            times.append(clock.now - 1000.0)
    assert times == pytest.approx([0.0, expected, 2 * expected])


def test_meter_time_gaps_across_the_summer_time_switch() -> None:
    before = meter_time(b"/X\r\n0-0:1.0.0(241027025959S)\r\n!")
    after = meter_time(b"/X\r\n0-0:1.0.0(241027020000W)\r\n!")
    assert gap(before, after) == 1.0
    assert gap(None, after) == 1.0  # no meter clock: one a second
    assert meter_time(b"0-0:1.0.0(241399999999W)") is None


def test_realtime_without_frames_falls_back_to_chunks(tmp_path: Path) -> None:
    path = tmp_path / "noise.bin"
    path.write_bytes(bytes(range(256)).replace(b"!", b"?") * 1000)  # 256 KB, no frame end
    clock = FakeClock()
    source = RealtimeFileSource(path, threading.Event(), clock=clock, wait=clock.wait)
    pieces = []
    while (data := source.read()) is not None:
        if data:
            pieces.append((clock.now - 1000.0, len(data)))
    assert sum(n for _, n in pieces) == 256_000
    assert max(n for _, n in pieces) <= 65536
    assert [at for at, _ in pieces] == [float(i) for i in range(len(pieces))]


def test_splitter_cuts_after_frame_ends_split_anywhere() -> None:
    telegrams = [SimulatedMeter("dsmr5").next_telegram() for _ in range(3)]
    stream = b"".join(telegrams)
    for cut in (1, 7, 100, len(telegrams[0]) - 1, len(telegrams[0]) - 2):
        splitter = TelegramSplitter()
        pieces = splitter.feed(stream[:cut]) + splitter.feed(stream[cut:])
        assert pieces == telegrams, cut
        assert splitter.flush() == b""


def test_follow_reads_appends_truncation_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "p1.log"
    meter = SimulatedMeter("dsmr5")
    source = FollowFileSource(path, threading.Event(), wait=lambda seconds: None)
    with capture_logs() as logs:
        assert source.read() == b""  # not there yet: waited for
        assert source.read() == b""
    assert not source.connected and source.last_error is not None
    assert [entry["event"] for entry in logs] == [
        f"cannot open {path}: No such file or directory; waiting for it"
    ]

    def drain() -> bytes:
        got = b""
        while data := source.read():
            got += data
        return got

    first = meter.next_telegram()
    path.write_bytes(first)
    assert drain() == first and source.connected
    appended = meter.next_telegram()
    with path.open("ab") as file:
        file.write(appended)
    assert drain() == appended
    truncated = meter.next_telegram()[:100]
    path.write_bytes(truncated)  # shorter than what was read: truncated and rewritten
    assert drain() == b""  # noticed at the end, then read from the start
    assert drain() == truncated
    path.rename(tmp_path / "p1.log.1")
    assert drain() == b""  # rotated away, the new file not there yet
    rotated = meter.next_telegram()
    path.write_bytes(rotated)
    assert drain() == b""
    assert drain() == rotated
    assert source.reconnects == 2
    source.close()
    assert not source.connected


# -- the simulator --------------------------------------------------------------------------


def test_simulator_options_and_state() -> None:
    source = open_source("simulator:dsmr5,noise=0,interval=0.01", threading.Event())
    assert isinstance(source, SimulatorSource)
    assert source.name == "simulator:dsmr5" and source.meter.interval == 0.01
    pipeline = MeterPipeline()
    results: list[Result] = []
    while len(results) < 3:
        data = source.read()
        assert data is not None
        results += pipeline.feed(data)
    assert statuses(results) == ["valid"] * 3
    assert source.connected and source.reconnects == 0 and source.hint is None
    assert source.bytes_total == sum(len(r.frame.text) + 2 for r in results)
    hu = open_source("simulator:hu,interval=2.5", threading.Event(), name="garage")
    assert isinstance(hu, SimulatorSource)
    assert hu.name == "garage" and hu.meter.interval == 2.5
    default = open_source("simulator:hu", threading.Event())
    assert isinstance(default, SimulatorSource) and default.meter.interval == 10.0
    assert default.read()  # the first telegram at once
    assert default.read() == b""  # the next one is 10 s away: a short poll, not a 10 s block
