"""Logs: secrets masked in every field, floods of the same warning capped, noise summarised."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from agent import logs
from agent.core.framing import Frame
from agent.core.pipeline import Result, Status
from agent.core.repair import Repair
from agent.damagesummary import DamageSummary


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("info", json=True, stream=stream)
    yield stream
    logs.redactor.secrets.clear()
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_secrets_are_masked_in_every_field(captured: io.StringIO) -> None:
    logs.register_secret("tok-abcdef123")
    log = structlog.get_logger("t")
    log.error("write failed with tok-abcdef123", url="http://x/?token=tok-abcdef123", n=3)
    (record,) = lines(captured)
    assert "tok-abcdef123" not in json.dumps(record)
    assert record["event"] == "write failed with ****"
    assert record["url"] == "http://x/?token=****"
    assert record["n"] == 3


def test_repeated_warnings_are_capped_and_counted() -> None:
    now = [0.0]
    limiter = logs.RateLimiter(burst=3, window=60.0, clock=lambda: now[0])
    passed = 0
    for _ in range(100):
        try:
            limiter(None, "warning", {"event": "cannot open /dev/ttyUSB0"})
            passed += 1
        except structlog.DropEvent:
            pass
    assert passed == 3
    now[0] = 61.0
    event = limiter(None, "warning", {"event": "cannot open /dev/ttyUSB0"})
    assert event["suppressed"] == 97
    # info lines are never held back, and other events have their own budget
    for _ in range(10):
        limiter(None, "info", {"event": "cannot open /dev/ttyUSB0"})
    assert "suppressed" not in limiter(None, "error", {"event": "other"})


def damaged(status: str, failure: str = "crc") -> Result:
    repair = Repair("template") if status == "repaired" else None
    reason = "ambiguous" if status == "rejected" else None
    return Result(
        Status(status),
        Frame(b"/X\r\n!", b"0000", 0, 0),
        reason=reason,
        failure=failure,
        repair=repair,
    )


def test_noise_summary_one_line_then_one_per_interval() -> None:
    summary = DamageSummary(interval=300.0)
    first = summary.observe("m1", damaged("repaired"), 1000.0)
    assert first is not None and "damaged telegram (crc), repaired" in first.event
    for i in range(36):
        status = "rejected" if i < 2 else "repaired"
        assert (
            summary.observe("m1", damaged(status, "crc" if i % 2 else "truncated"), 1001 + i)
            is None
        )
    assert (
        summary.observe("m1", Result(Status.VALID, Frame(b"/X\r\n!", b"0000", 0, 0)), 1050.0)
        is None
    )
    assert summary.due(1200.0) == []  # the window is not over yet
    (line,) = summary.due(1300.0)
    assert line.event.startswith("37 damaged telegrams in 5 min (crc 19, truncated 18): ")
    assert "35 repaired, 2 rejected; last at" in line.event
    assert line.fields["methods"] == {"template": 35}
    # still noisy: no new first line; a quiet window later makes the next damage say so again
    assert summary.observe("m1", damaged("repaired"), 1400.0) is None
    (line,) = summary.due(1600.0)
    assert line.event.startswith("1 damaged telegram in 5 min (crc 1): 1 repaired, 0 rejected")
    assert summary.due(1900.0) == []
    assert summary.observe("m1", damaged("repaired"), 2000.0) is not None
