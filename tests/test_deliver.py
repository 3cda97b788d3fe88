"""The deliverer: the real spool drained into a real VictoriaMetrics (outage and restart included)
and into a scripted server for the answers that decide splitting, refusing and waiting."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import structlog
from agentproc import wait_for
from servers import Reply, Request, ScriptedHTTP, VictoriaMetrics, victoria_metrics

from agent import deliver
from agent.deliver import Deliverer
from agent.sinks.influx import InfluxTarget, make_writer
from agent.sinks.spool import Spool

T0 = 1717200000


def point(meter: str, n: int, extra: str = "") -> str:
    return (
        f"p1,meter={meter} power_import_kw={n / 1000},energy_import_kwh={1000 + n / 1000},"
        f"repaired=false{extra} {T0 + 10 * n}"
    )


def target(url: str) -> InfluxTarget:
    return InfluxTarget(
        url=url, api="v2", org="home", bucket="p1", token="tok-0123456789", timeout=5.0
    )


@contextmanager
def running(deliverer: Deliverer) -> Iterator[threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=deliverer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        deliverer.notify()
        thread.join(timeout=10)
        assert not thread.is_alive()


def append(spool: Spool, deliverer: Deliverer, meter: str, lines: list[str]) -> None:
    spool.append(meter, time.time(), lines)
    deliverer.notify()


def samples(vm: VictoriaMetrics, name: str) -> dict[str, list[int]]:
    """Timestamps (seconds) of every stored sample of one field, by meter; duplicates kept."""
    found: dict[str, list[int]] = {}
    for series in vm.export(f'{{__name__="{name}"}}'):
        meter = series["metric"]["meter"]
        found.setdefault(meter, []).extend(t // 1000 for t in series["timestamps"])
    return found


def lines_of(request: Request) -> list[str]:
    return request.body.decode().split("\n")


# --- real VictoriaMetrics ------------------------------------------------------------------------


@pytest.mark.integration
def test_concurrent_readers_everything_arrives_once(tmp_path: Path) -> None:
    meters, per_meter = ("E1", "E2", "E3"), 300
    with victoria_metrics(tmp_path / "vm") as vm:
        spool = Spool(tmp_path / "store.sqlite")
        deliverer = Deliverer(spool, make_writer(target(vm.url)), batch_size=100)
        with running(deliverer):

            def reader(meter: str) -> None:
                for n in range(per_meter):
                    append(spool, deliverer, meter, [point(meter, n)])

            threads = [threading.Thread(target=reader, args=(m,)) for m in meters]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wait_for(lambda: spool.stats(time.time()).depth == 0)
        stats = deliverer.stats
        assert stats.written == {meter: per_meter for meter in meters}
        assert not stats.failures and stats.last_error is None
        assert stats.last_success is not None
        expected = sorted(T0 + 10 * n for n in range(per_meter))
        for name in ("p1_power_import_kw", "p1_energy_import_kwh", "p1_repaired"):
            assert {m: sorted(ts) for m, ts in samples(vm, name).items()} == dict.fromkeys(
                meters, expected
            )
        [series] = vm.export('{__name__="p1_energy_import_kwh",meter="E2"}')
        assert series["values"][:3] == [1000.0, 1000.001, 1000.002]


@pytest.mark.integration
def test_outage_then_restart_on_the_same_port_and_data(tmp_path: Path) -> None:
    """Points appended while the server is down wait in the spool and land once it is back:
    every point exactly once (VictoriaMetrics keeps duplicate samples, so a resend would show)."""
    with victoria_metrics(tmp_path / "vm") as vm:
        spool = Spool(tmp_path / "store.sqlite")
        deliverer = Deliverer(spool, make_writer(target(vm.url)), batch_size=50, jitter=lambda: 0.1)
        with running(deliverer):
            for n in range(100):
                append(spool, deliverer, "E1", [point("E1", n)])
            wait_for(lambda: spool.stats(time.time()).depth == 0)
            vm.stop()
            for n in range(100, 250):
                append(spool, deliverer, "E1", [point("E1", n)])
                time.sleep(0.005)
            wait_for(lambda: deliverer.stats.failures[("E1", "connection")] >= 2)
            assert spool.stats(time.time()).depth > 0
            vm.restart()
            for n in range(250, 300):
                append(spool, deliverer, "E1", [point("E1", n)])
            wait_for(lambda: spool.stats(time.time()).depth == 0)
        stats = deliverer.stats
        assert stats.written == {"E1": 300}
        assert stats.last_error is not None and "cannot connect" in stats.last_error
        timestamps = samples(vm, "p1_power_import_kw")["E1"]
        assert sorted(timestamps) == [T0 + 10 * n for n in range(300)]  # all, none twice


# --- a scripted server ----------------------------------------------------------------------------


class Recorder:
    """A fake InfluxDB: `answer(lines) → (status, headers, body)`; 2xx records the lines."""

    def __init__(self, answer: Callable[[list[str]], Reply]) -> None:
        self.answer = answer
        self.accepted: list[str] = []
        self.writes: list[Request] = []
        self.statuses: list[int] = []

    def __call__(self, request: Request) -> Reply:
        self.writes.append(request)
        lines = lines_of(request)
        status, headers, body = self.answer(lines)
        self.statuses.append(status)
        if status < 300:
            self.accepted.extend(lines)
        return status, headers, body


def test_too_large_batches_are_halved_and_an_oversized_line_refused(tmp_path: Path) -> None:
    def answer(lines: list[str]) -> Reply:
        too_large = len(lines) > 4 or any(len(line) > 200 for line in lines)
        return (413, {}, b'{"error":"Request Entity Too Large"}') if too_large else (204, {}, b"")

    recorder = Recorder(answer)
    spool = Spool(tmp_path / "store.sqlite")
    huge = point("E1", 99, extra=',note="' + "x" * 300 + '"')
    expected = [point("E1", n) for n in range(30)]
    for n in range(0, 30, 3):
        spool.append("E1", time.time(), expected[n : n + 3])
    spool.append("E1", time.time(), [huge])
    spool.append("E2", time.time(), [point("E2", 0)])
    with ScriptedHTTP(recorder) as server:
        deliverer = Deliverer(spool, make_writer(target(server.url)), batch_size=100)
        with running(deliverer):
            wait_for(lambda: spool.stats(time.time()).depth == 0)
    assert recorder.accepted == [*expected, point("E2", 0)]  # in order, each once
    [(row, reason)] = spool.rejected()
    assert row.line == huge and "too large (413" in reason
    stats = deliverer.stats
    assert stats.dead_lettered == {"E1": 1}
    assert stats.written == {"E1": 30, "E2": 1}
    # Every refused request counts for the meters in it: E2's line sat in five of them
    # (32 lines, then 16, 8, 4 and 2 with the oversized line).
    refused = recorder.statuses.count(413)
    assert stats.failures == {("E1", "too_large"): refused, ("E2", "too_large"): 5}


def test_refused_lines_are_set_aside_and_the_rest_delivered(tmp_path: Path) -> None:
    def answer(lines: list[str]) -> Reply:
        for line in lines:
            if "bad" in line:  # like InfluxDB: the request is refused, naming the line
                error = {"error": f"partial write: unable to parse '{line}': invalid field"}
                return 400, {}, json.dumps(error).encode()
        return 204, {}, b""

    recorder = Recorder(answer)
    spool = Spool(tmp_path / "store.sqlite")
    lines = [point("E1", n) if n % 17 != 5 else f"p1,meter=E1 bad {n}" for n in range(60)]
    for n in range(0, 60, 2):
        spool.append("E1", time.time(), lines[n : n + 2])
    with ScriptedHTTP(recorder) as server:
        deliverer = Deliverer(spool, make_writer(target(server.url)), batch_size=1000)
        with running(deliverer):
            wait_for(lambda: spool.stats(time.time()).depth == 0)
    bad = [line for line in lines if "bad" in line]
    assert len(bad) == 4
    assert recorder.accepted == [line for line in lines if "bad" not in line]
    rejected = spool.rejected()
    assert [row.line for row, _ in rejected] == bad
    for row, reason in rejected:
        assert reason.startswith("InfluxDB rejected the data (400 Bad Request)")
        assert row.line in reason
    assert deliverer.stats.dead_lettered == {"E1": 4}
    assert deliverer.stats.written == {"E1": 56}


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    replies = iter([(429, {"Retry-After": "1"}, b"")])
    recorder = Recorder(lambda lines: next(replies, (204, {}, b"")))
    spool = Spool(tmp_path / "store.sqlite")
    with ScriptedHTTP(recorder) as server:
        deliverer = Deliverer(spool, make_writer(target(server.url)))
        with running(deliverer):
            append(spool, deliverer, "E1", [point("E1", 0)])
            wait_for(lambda: spool.stats(time.time()).depth == 0)
    first, second = recorder.writes
    assert second.at - first.at >= 1.0  # not before the server said
    assert deliverer.stats.retry_after_honoured == 1
    assert deliverer.stats.failures == {("E1", "throttled"): 1}
    assert recorder.accepted == [point("E1", 0)]


class FakeSleep:
    """Records the waits the deliverer asks for and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, stop: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        return stop.is_set()


def scripted_run(
    tmp_path: Path,
    statuses: list[tuple[int, dict[str, str]]],
    spooled: dict[str, list[str]],
    telegrams: list[tuple[str, list[str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Deliverer, FakeSleep, structlog.testing.CapturingLogger, Recorder]:
    """Answer the writes with `statuses` (then 204): first the `spooled` points (there before the
    deliverer starts), then each telegram once the previous one went through; with recorded
    sleeps, jitter 1 and a captured log."""
    replies = iter(statuses)
    recorder = Recorder(lambda lines: (*next(replies, (204, {})), b""))
    logger = structlog.testing.CapturingLogger()
    monkeypatch.setattr(deliver, "log", logger)
    spool = Spool(tmp_path / "store.sqlite")
    for meter, lines in spooled.items():
        spool.append(meter, time.time(), lines)
    sleep = FakeSleep()
    with ScriptedHTTP(recorder) as server:
        deliverer = Deliverer(
            spool,
            make_writer(target(server.url)),
            linger=0,
            sleep=sleep,
            jitter=lambda: 1.0,
        )
        with running(deliverer):
            wait_for(lambda: spool.stats(time.time()).depth == 0)
            for meter, lines in telegrams:
                append(spool, deliverer, meter, lines)
                wait_for(lambda: spool.stats(time.time()).depth == 0)
    return deliverer, sleep, logger, recorder


def test_backoff_doubles_resets_and_logs_once_per_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    statuses = [(500, {})] * 8 + [(204, {}), (503, {})]
    spooled = {"A": [point("A", 0)], "B": [point("B", 0)]}
    deliverer, sleep, logger, recorder = scripted_run(
        tmp_path, statuses, spooled, [("A", [point("A", 1)])], monkeypatch
    )
    assert sleep.waits == [1, 2, 4, 8, 16, 32, 60, 60, 1]  # reset after the success
    assert len(recorder.writes) == 11
    stats = deliverer.stats
    # Each failed request counts once for every meter in its batch (the batch held A's and B's).
    assert stats.failures == {("A", "server"): 8, ("B", "server"): 8, ("A", "throttled"): 1}
    assert stats.written == {"A": 2, "B": 1}
    assert stats.backoff == 0.0
    events = [(call.method_name, call.args[0]) for call in logger.calls]
    assert events == [
        ("warning", "cannot deliver to InfluxDB; points stay in the spool"),
        ("info", "delivering to InfluxDB again"),
        ("warning", "cannot deliver to InfluxDB; points stay in the spool"),
        ("info", "delivering to InfluxDB again"),
    ]
    assert logger.calls[0].kwargs["kind"] == "server"
    assert logger.calls[1].kwargs["failed_attempts"] == 8


def test_retry_after_is_capped_and_config_errors_wait_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    statuses = [
        (429, {"Retry-After": "7"}),
        (503, {"Retry-After": "86400"}),
        (401, {}),
        (401, {}),
        (404, {}),
    ] + [(403, {})] * 5
    _, sleep, logger, _ = scripted_run(tmp_path, statuses, {"A": [point("A", 0)]}, [], monkeypatch)
    # Retry-After as given (capped at 5 min); then auth and not-found from 5 s doubling to 5 min,
    # without jitter: the schedule counts every failure since the last success.
    assert sleep.waits == [7, 300, 20, 40, 80, 160, 300, 300, 300, 300]
    kinds = [call.kwargs["kind"] for call in logger.calls if call.method_name == "warning"]
    assert kinds == ["throttled", "auth", "not_found", "auth"]  # 401 and 403 differ in status


def test_stop_interrupts_a_long_backoff(tmp_path: Path) -> None:
    recorder = Recorder(lambda lines: (401, {}, b'{"error":"authorization failed"}'))
    spool = Spool(tmp_path / "store.sqlite")
    with ScriptedHTTP(recorder) as server:
        writer = make_writer(target(server.url))
        deliverer = Deliverer(spool, writer)
        stop = threading.Event()
        thread = threading.Thread(target=deliverer.run, args=(stop,))
        thread.start()
        append(spool, deliverer, "E1", [point("E1", 0)])
        wait_for(lambda: deliverer.stats.backoff == deliver.CONFIG[0])  # waiting 5 s now
        stop.set()
        thread.join(timeout=deliver.CONFIG[0] / 2)
        assert not thread.is_alive()
    assert len(recorder.writes) == 1
    assert [row.line for row in spool.batch(10)] == [point("E1", 0)]  # kept for later
    assert deliverer.stats.last_error is not None
    assert deliverer.stats.last_error.startswith("InfluxDB refused the token (401 Unauthorized)")


def test_notify_wakes_an_idle_deliverer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deliver, "IDLE_POLL", 3600.0)  # only notify() can end the idle wait
    monkeypatch.setattr(deliver, "ENFORCE_INTERVAL", 3600.0)
    recorder = Recorder(lambda lines: (204, {}, b""))
    spool = Spool(tmp_path / "store.sqlite")
    with ScriptedHTTP(recorder) as server:
        deliverer = Deliverer(spool, make_writer(target(server.url)))
        with running(deliverer):
            time.sleep(0.1)  # let it go idle
            append(spool, deliverer, "E1", [point("E1", 0)])
            wait_for(lambda: len(recorder.accepted) == 1, timeout=60)


def test_a_burst_travels_in_few_requests(tmp_path: Path) -> None:
    recorder = Recorder(lambda lines: (204, {}, b""))
    spool = Spool(tmp_path / "store.sqlite")
    with ScriptedHTTP(recorder) as server:
        deliverer = Deliverer(spool, make_writer(target(server.url)), linger=1.0)
        with running(deliverer):
            for n in range(20):
                append(spool, deliverer, "E1", [point("E1", n)])
            wait_for(lambda: spool.stats(time.time()).depth == 0)
    assert recorder.accepted == [point("E1", n) for n in range(20)]
    assert len(recorder.writes) <= 3  # the first at once, the rest gathered during the linger


def test_bounds_enforced_and_counted(tmp_path: Path) -> None:
    recorder = Recorder(lambda lines: (204, {}, b""))
    spool = Spool(tmp_path / "store.sqlite", max_age=3600.0)
    spool.append("E1", 1000.0, [point("E1", 0), point("E1", 1)])  # received long ago
    spool.append("E2", 1000.0, [point("E2", 0)])
    spool.append("E2", 9000.0, [point("E2", 1)])
    with ScriptedHTTP(recorder) as server:
        deliverer = Deliverer(spool, make_writer(target(server.url)), wall=lambda: 10_000.0)
        with running(deliverer):
            wait_for(lambda: spool.stats(time.time()).depth == 0)
    assert deliverer.stats.evicted == {("E1", "age"): 2, ("E2", "age"): 1}
    assert recorder.accepted == [point("E2", 1)]
    assert Counter(deliverer.stats.written) == {"E2": 1}
