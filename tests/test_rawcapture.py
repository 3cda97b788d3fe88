"""Raw capture: bytes as read, one file per UTC day, earlier days gzipped, and `replay` reading
them back to the same telegrams."""

from __future__ import annotations

import gzip
import io
import json
import time
from calendar import timegm
from pathlib import Path

from agent.core.pipeline import MeterPipeline
from agent.replay import replay
from agent.simulate import SimulatedMeter
from agent.sinks.rawcapture import RawCapture, compress, slug

DAY1 = timegm((2024, 6, 1, 23, 59, 0, 0, 0, 0))  # late evening UTC: already June 2 in Europe
DAY2 = DAY1 + 120


def telegrams(count: int) -> list[bytes]:
    meter = SimulatedMeter("hu")
    return [meter.next_telegram() for _ in range(count)]


def test_a_day_rolls_over_to_gzip_and_replays_to_the_same_telegrams(tmp_path: Path) -> None:
    sent = telegrams(12)
    raw = RawCapture(tmp_path, "/dev/ttyUSB0")
    stream = b"".join(sent[:10])
    for start in range(0, len(stream), 1000):  # as a serial link delivers: arbitrary pieces
        raw.write(stream[start : start + 1000], DAY1 + start / 1000)
    today = tmp_path / "raw" / "dev_ttyUSB0-2024-06-01.p1"
    assert today.exists()
    raw.write(b"".join(sent[10:]), DAY2)  # after midnight UTC
    raw.close()

    day1 = today.with_name(today.name + ".gz")
    day2 = tmp_path / "raw" / "dev_ttyUSB0-2024-06-02.p1"
    assert not today.exists(), "the plain file is removed once its .gz is complete"
    assert gzip.decompress(day1.read_bytes()) == stream
    assert day2.read_bytes() == b"".join(sent[10:]), "today's file stays plain"
    # Each day's receive times beside it, gzipped with it.
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == [
        day1.name,
        today.name + ".times.gz",
        day2.name,
        day2.name + ".times",
    ]
    assert oct(day1.stat().st_mode & 0o777) == "0o600"

    out = io.StringIO()
    summary = replay([str(day1), str(day2)], "jsonl", out, MeterPipeline())
    assert summary.valid == 12 and summary.rejected == 0 and summary.repaired == 0
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    expected = [t.rstrip(b"\r\n").decode("latin-1") for t in sent]
    assert [record["telegram"] for record in records] == expected


def test_leftover_days_are_compressed_at_start_and_today_is_appended(tmp_path: Path) -> None:
    directory = tmp_path / "raw"
    directory.mkdir()
    old = directory / "meter-2024-05-30.p1"
    old.write_bytes(b"may 30")
    today = directory / "meter-2024-06-01.p1"
    today.write_bytes(b"earlier today;")
    other = directory / "other-2024-05-30.p1"  # another source's file is left alone
    other.write_bytes(b"x")
    raw = RawCapture(tmp_path, "meter")
    raw.write(b" after a restart", DAY1)
    raw.close()
    assert not old.exists()
    assert gzip.decompress(old.with_name(old.name + ".gz").read_bytes()) == b"may 30"
    assert today.read_bytes() == b"earlier today; after a restart"
    assert other.read_bytes() == b"x"


def test_a_day_compressed_twice_keeps_both_parts(tmp_path: Path) -> None:
    """A clock set back to a finished day (a board booting with yesterday's time)."""
    plain = tmp_path / "m-2024-06-01.p1"
    plain.write_bytes(b"first part;")
    compress(plain)
    plain.write_bytes(b"second part")
    target = compress(plain)
    assert gzip.decompress(target.read_bytes()) == b"first part;second part"
    assert not plain.exists()
    assert not list(tmp_path.glob("*.partial"))


def test_bytes_reach_the_file_within_about_a_second_without_a_close(tmp_path: Path) -> None:
    raw = RawCapture(tmp_path, "meter", flush_every=0.05)
    raw.write(b"abc", DAY1)
    path = tmp_path / "raw" / "meter-2024-06-01.p1"
    deadline = time.monotonic() + 20
    while path.read_bytes() != b"abc":  # flushed by the background thread, not by the write
        assert time.monotonic() < deadline, "never flushed"
        time.sleep(0.01)
    raw.close()


def test_names_become_safe_file_names() -> None:
    assert slug("/dev/ttyUSB0") == "dev_ttyUSB0"
    assert slug("socket://10.0.0.5:2001") == "socket_10.0.0.5_2001"
    assert slug("../../etc") == "etc"
    assert slug("///") == "source"
