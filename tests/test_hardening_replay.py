"""Hardening of replay and the daily files: a damaged gzip, and retention of captures and logs."""

from __future__ import annotations

import csv
import gzip
import subprocess
import sys
from calendar import timegm
from pathlib import Path

import pytest
from faultkit import record_hardening

from agent.core.pipeline import MeterPipeline
from agent.simulate import SimulatedMeter
from agent.sinks.damagelog import DamageLog
from agent.sinks.rawcapture import RawCapture

DAY = timegm((2024, 6, 1, 12, 0, 0, 0, 0, 0))


def _telegrams(count: int) -> list[bytes]:
    meter = SimulatedMeter("dsmr5")
    return [meter.next_telegram() for _ in range(count)]


def _replay_csv(path: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "replay", str(path), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_gzip_keeps_the_telegrams_before_the_damage(
    tmp_path: Path, damage: str, request: pytest.FixtureRequest
) -> None:
    sent = _telegrams(2000)
    packed = bytearray(gzip.compress(b"".join(sent)))
    if damage == "truncated":
        del packed[len(packed) * 7 // 10 :]
    else:
        packed[len(packed) * 7 // 10] ^= 0xFF
    capture = tmp_path / "day.p1.gz"
    capture.write_bytes(packed)
    out = tmp_path / "day.csv"
    proc = _replay_csv(capture, out)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert str(capture) in error and "damaged after" in error
    rows = list(csv.DictReader(out.open(newline="")))
    # Everything before the damage, as the meter sent it; a telegram cut by it is rejected.
    assert len(rows) >= len(sent) * 6 // 10
    assert len({row["meter_time"] for row in rows}) == len(rows)
    record_hardening(
        request.node.nodeid,
        9,
        f"replay of a {damage} gzip of {len(sent)} telegrams to CSV",
        f"{len(rows)} rows written, exit 1 with one line naming the file, no traceback",
    )


def test_days_older_than_the_max_age_are_deleted(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # A year of captures on an SD card: only the last 90 days stay, raw and noise logs alike.
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    days = [f"2023-{month:02d}-15" for month in range(6, 13)] + ["2024-03-04", "2024-05-01"]
    for day in days:
        for suffix in (".p1.gz", ".p1.times.gz"):
            (raw_dir / f"dev_ttyUSB0-{day}{suffix}").write_bytes(b"x")
        (tmp_path / f"noise-{day}.jsonl").write_text("{}\n")
    raw = RawCapture(tmp_path, "/dev/ttyUSB0", max_age=90 * 86400.0)
    raw.write(b"/ISK5\r\n", DAY)
    raw.close()
    (result,) = MeterPipeline().feed(_telegrams(1)[0])
    DamageLog(tmp_path, max_age=90 * 86400.0).write(result, "E1", DAY)
    assert sorted(p.name for p in raw_dir.iterdir()) == [
        "dev_ttyUSB0-2024-03-04.p1.gz",
        "dev_ttyUSB0-2024-03-04.p1.times.gz",
        "dev_ttyUSB0-2024-05-01.p1.gz",
        "dev_ttyUSB0-2024-05-01.p1.times.gz",
        "dev_ttyUSB0-2024-06-01.p1",
        "dev_ttyUSB0-2024-06-01.p1.times",
    ]
    assert sorted(p.name for p in tmp_path.glob("noise-*")) == [
        "noise-2024-03-04.jsonl",
        "noise-2024-05-01.jsonl",
        "noise-2024-06-01.jsonl",
    ]
    record_hardening(
        request.node.nodeid,
        13,
        "raw captures and noise logs of 9 days over a year, --raw-capture-max-age 90d",
        "7 days older than 90 days deleted (raw, receive times, noise log); 2 kept",
    )


def test_max_age_zero_keeps_every_day(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    ancient = tmp_path / "raw" / "dev_ttyUSB0-2001-01-01.p1.gz"
    ancient.write_bytes(b"x")
    raw = RawCapture(tmp_path, "/dev/ttyUSB0", max_age=0.0)
    raw.write(b"/ISK5\r\n", DAY)
    raw.close()
    assert ancient.exists()
