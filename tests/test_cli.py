"""The command line as a user meets it: replay, simulate, errors, --help."""

from __future__ import annotations

import csv
import gzip
import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.cli import main


def p1(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def fixture_paths(telegram_dir: Path, telegram_names: list[str]) -> list[Path]:
    """Every fixture telegram file of the published data."""
    return [telegram_dir / name for name in telegram_names]


def test_replay_all_fixtures_jsonl(tmp_path: Path, fixture_paths: list[Path]) -> None:
    out = tmp_path / "out.jsonl"
    proc = p1("replay", *map(str, fixture_paths), "--format", "jsonl", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(fixture_paths)
    assert all(r["status"] == "valid" for r in records)
    summary = proc.stderr.decode()
    count = len(fixture_paths)
    assert f"telegrams {count}: valid {count}, repaired 0, rejected 0" in summary
    # The EasyMeter trailing lines after `!` are skipped bytes, not telegrams.
    assert "skipped 94" in summary
    by_meter = {r["meter"]: r for r in records}
    hu = by_meter["890082200002160"]
    assert hu["meter_time"] == "2023-07-24T15:07:30+02:00"
    assert hu["readings"]["1-0:1.8.0"] == {"value": 173.64, "unit": "kWh"}
    assert hu["telegram"].startswith("/SAG5SAG-METER\r\n") and hu["telegram"].endswith("!99DA")


def test_replay_gzip_and_stdin_agree(tmp_path: Path, fixture_paths: list[Path]) -> None:
    raw = b"".join(p.read_bytes() for p in fixture_paths)
    packed = tmp_path / "all.txt.gz"
    packed.write_bytes(gzip.compress(raw))
    # DSMR 2.2/3 and EasyMeter send no clock: their points are counted from --start.
    clock = ("--start", "2024-06-01T00:00:00+00:00", "--interval", "10")
    from_gzip = p1("replay", str(packed), "--format", "line-protocol", *clock)
    from_stdin = p1("replay", "-", "--format", "line-protocol", *clock, stdin=raw)
    assert from_gzip.returncode == 0 and from_stdin.returncode == 0
    assert from_gzip.stdout == from_stdin.stdout
    lines = from_gzip.stdout.decode().splitlines()
    assert all(line.rsplit(" ", 1)[1].isdigit() for line in lines)
    assert sum(line.startswith("p1,") for line in lines) == len(fixture_paths)
    assert any(line.startswith("p1_mbus,") and "gas_m3=246.138" in line for line in lines)


def test_replay_csv_day_of_simulated_hungarian(tmp_path: Path) -> None:
    capture = tmp_path / "day.txt"
    assert main(["simulate", "--flavour", "hu", "--count", "360", "-o", str(capture)]) == 0
    out = tmp_path / "day.csv"
    assert main(["replay", str(capture), "-o", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader(out.open(newline="")))
    assert len(rows) == 360
    assert rows[0]["meter_time"] == "2024-06-01 02:00:00" and rows[0]["utc_offset"] == "+02:00"
    assert rows[-1]["meter_time"] == "2024-06-01 02:59:50"
    imports = [float(r["energy_import_kwh"]) for r in rows]
    assert imports == sorted(imports) and imports[-1] > imports[0]
    averaged = [r for r in rows if r["power_import_avg_kw"]]
    assert averaged and not rows[0]["power_import_avg_kw"]
    assert float(rows[0]["billing_energy_import_kwh"]) == 7823.105


def test_replay_summary_reports_peaks_and_rejections(
    tmp_path: Path, read_telegram: Callable[[str], bytes]
) -> None:
    good = read_telegram("dsmr5-iskra-two-mbus.txt")
    broken = good.replace(b"229.9*V", b"299.9*V")  # checksum no longer matches
    capture = tmp_path / "mixed.log"
    capture.write_bytes(b"garbage\r\n" + broken + good + good[:300])
    proc = p1("replay", str(capture), "--format", "jsonl")
    assert proc.returncode == 0
    summary = proc.stderr.decode()
    assert "telegrams 3: valid 1, repaired 0, rejected 2 (crc 1, truncated 1)" in summary
    assert "highest voltage_l1_v: 229.9 at 2020-04-26T22:33:25+02:00" in summary
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["status"] for r in records] == ["rejected", "valid", "rejected"]
    assert "telegram" not in records[0] and records[0]["reason"] == "crc"


def test_replay_missing_file_is_one_line_error(tmp_path: Path) -> None:
    proc = p1("replay", str(tmp_path / "nope.log"))
    assert proc.returncode == 2
    assert proc.stderr.decode().count("\n") == 1
    assert "No such file or directory" in proc.stderr.decode()
    assert b"Traceback" not in proc.stderr


def test_replay_random_bytes_is_clean(tmp_path: Path) -> None:
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(range(256)) * 4000 + b"/" + b"x" * 50_000)
    proc = p1("replay", str(noise), "--format", "jsonl")
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr
    assert "valid 0" in proc.stderr.decode()


@pytest.mark.parametrize(
    "args", [["--help"], ["run", "--help"], ["replay", "--help"], ["simulate", "--help"]]
)
def test_help(args: list[str]) -> None:
    proc = p1(*args)
    assert proc.returncode == 0
    assert b"usage: p1-agent" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--source", "bogus://x"], "source 'bogus://x' is not supported"),
        (["run", "--metrics-address", "nowhere"], "is not HOST:PORT"),
        (["run", "--meter-timezone", "Mars/Olympus"], "unknown meter time zone"),
        (["run", "--source", "file:/does/not/exist"], "does not exist"),
        (["simulate", "--start", "yesterday"], "is not ISO 8601"),
        (["replay", "-", "--meter-timezone", "Nowhere/Land"], "unknown meter time zone"),
    ],
)
def test_bad_settings_are_one_line_errors(args: list[str], message: str) -> None:
    proc = p1(*args, stdin=b"")
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert message in err and err.startswith("p1-agent: error:") and err.count("\n") == 1


def test_simulate_is_deterministic_and_valid() -> None:
    first = p1("simulate", "--flavour", "dsmr5", "--count", "5", "--seed", "7").stdout
    again = p1("simulate", "--flavour", "dsmr5", "--count", "5", "--seed", "7").stdout
    assert first == again and first.count(b"/ISK5") == 5
    proc = p1("replay", "-", "--format", "jsonl", stdin=first)
    statuses = [json.loads(line)["status"] for line in io.BytesIO(proc.stdout)]
    assert statuses == ["valid"] * 5
