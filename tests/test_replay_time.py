"""Replay never writes a point without a time: meter clock, receive times, log start or --start."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from p1_testkit import simulated

from agent.cli import main
from agent.formats.lineparse import parse as parse_line
from agent.sinks.rawcapture import RawCapture, compress, times_path

RECEIVED = [1717200000.25, 1717200010.5, 1717200020.75]  # 2024-06-01 00:00:00 UTC on


# A DSMR 2.2 telegram: no clock line, no checksum; its gas value captured at 2024-06-01 00:00 UTC.
(CLOCKLESS,) = simulated("dsmr22")


def _replay(tmp_path: Path, *args: str, fmt: str = "line-protocol") -> list[str]:
    out = tmp_path / f"out.{fmt}"
    assert main(["replay", *args, "--format", fmt, "-o", str(out), "--no-progress"]) == 0
    return out.read_text().splitlines()


def _times(lines: list[str], measurement: str = "p1") -> list[int | None]:
    points = [parse_line(line) for line in lines]
    return [p.time for p in points if p.measurement == measurement]


def _capture(tmp_path: Path, telegram: bytes) -> Path:
    """A raw capture as the live agent writes it: each telegram in two reads."""
    capture = RawCapture(tmp_path, "ttyUSB0")
    for now in RECEIVED:
        capture.write(telegram[:100], now)
        capture.write(telegram[100:], now + 0.05)
    capture.close()
    return capture.path("2024-06-01")


def test_clockless_meter_from_a_raw_capture_gets_receive_times(tmp_path: Path) -> None:
    path = _capture(tmp_path, CLOCKLESS)
    # The capture stays the meter's bytes, nothing added; the times live beside it.
    assert path.read_bytes() == CLOCKLESS * 3
    assert times_path(path).exists()
    lines = _replay(tmp_path, str(path))
    assert _times(lines) == [int(t) for t in RECEIVED]
    # The gas reading keeps its own capture time.
    assert set(_times(lines, "p1_mbus")) == {int(datetime(2024, 6, 1, 0, tzinfo=UTC).timestamp())}


def test_receive_times_survive_the_daily_gzip(tmp_path: Path) -> None:
    path = _capture(tmp_path, CLOCKLESS)
    compress(path)
    compress(times_path(path))
    lines = _replay(tmp_path, str(path) + ".gz")
    assert _times(lines) == [int(t) for t in RECEIVED]


def test_csv_and_jsonl_say_where_the_time_came_from(tmp_path: Path) -> None:
    path = _capture(tmp_path, CLOCKLESS)
    rows = list(csv.DictReader(_replay(tmp_path, str(path), fmt="csv")))
    # Meter-local time, as for meter clocks (CEST in June).
    assert [(r["meter_time"], r["utc_offset"], r["time_source"]) for r in rows] == [
        ("2024-06-01 02:00:00", "+02:00", "received"),
        ("2024-06-01 02:00:10", "+02:00", "received"),
        ("2024-06-01 02:00:20", "+02:00", "received"),
    ]
    records = [json.loads(line) for line in _replay(tmp_path, str(path), fmt="jsonl")]
    assert records[0]["meter_time"] is None
    assert records[0]["time_source"] == "received"
    assert records[0]["time"] == "2024-06-01T02:00:00+02:00"


def _putty_log(tmp_path: Path, telegram: bytes) -> Path:
    log = tmp_path / "putty.log"
    header = b"=~=~=~=~=~=~=~=~=~=~=~= PuTTY log 2024.06.01 12:00:00 =~=~=~=~=~=~=~=~=~=~=~=\r\n"
    later = header.replace(b"12:00:00", b"18:30:00")
    log.write_bytes(header + telegram * 3 + later + telegram * 2)
    return log


def test_putty_log_counts_from_its_header_with_the_interval(tmp_path: Path) -> None:
    log = _putty_log(tmp_path, CLOCKLESS)
    lines = _replay(tmp_path, str(log), "--interval", "10")
    noon = int(datetime(2024, 6, 1, 10, tzinfo=UTC).timestamp())  # 12:00 CEST
    evening = int(datetime(2024, 6, 1, 16, 30, tzinfo=UTC).timestamp())
    assert _times(lines) == [noon, noon + 10, noon + 20, evening, evening + 10]


def test_start_and_interval_stamp_a_plain_dump(tmp_path: Path) -> None:
    dump = tmp_path / "dump.bin"
    dump.write_bytes(CLOCKLESS * 4)
    lines = _replay(
        tmp_path, str(dump), "--start", "2020-01-01T00:00:00+00:00", "--interval", "2.5"
    )
    start = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp())
    assert _times(lines) == [start, start + 2, start + 5, start + 7]


@pytest.mark.parametrize(
    ("args", "hint"),
    [((), "give --start TIME and --interval SECONDS"), (("--interval", "10"), "--start")],
)
def test_without_a_time_replay_refuses_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    hint: str,
) -> None:
    dump = tmp_path / "dump.bin"
    dump.write_bytes(CLOCKLESS)
    out = tmp_path / "out.lp"
    status = main(["replay", str(dump), *args, "-o", str(out), "--format", "line-protocol"])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and hint in err[0] and str(dump) in err[0], err
    assert "Traceback" not in err[0]


def test_putty_log_without_interval_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _putty_log(tmp_path, CLOCKLESS)
    assert main(["replay", str(log), "-o", str(tmp_path / "o.csv")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--interval" in line and "log's start" in line


def test_meter_clock_wins_over_every_stand_in(tmp_path: Path) -> None:
    (telegram,) = simulated("dsmr5", start=datetime(2023, 3, 1, tzinfo=UTC))
    path = _capture(tmp_path, telegram)
    lines = _replay(tmp_path, str(path), "--start", "2020-01-01T00:00:00+00:00", "--interval", "1")
    assert len(set(_times(lines))) == 1  # the same telegram three times: its one meter time
    assert _times(lines)[0] not in [int(t) for t in RECEIVED]
