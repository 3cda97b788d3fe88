"""`replay --jobs N`: files replayed in parallel give what one replay after another gives, in
input order, with the same summary; a raw-capture directory stands for its days."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from p1_testkit import simulated

from agent.core.pipeline import MeterPipeline
from agent.replay import FORMATS, TimeOptions, capture_files, replay, replay_parallel

START = datetime(2024, 3, 30, 22, tzinfo=UTC)


def _days(folder: Path, flavours: list[str]) -> list[str]:
    """One file per day, named as raw captures are; the meters change (new CSV columns)."""
    paths = []
    for n, flavour in enumerate(flavours):
        day = START + timedelta(days=n)
        path = folder / f"meter-{day.date().isoformat()}.p1"
        path.write_bytes(b"".join(simulated(flavour, 30, start=day, seed=n)))
        paths.append(str(path))
    return paths


def _sequential(paths: list[str], fmt: str) -> tuple[str, list[str]]:
    out = io.StringIO(newline="")
    summary = replay(paths, fmt, out, MeterPipeline())
    return out.getvalue(), summary.lines()


def _parallel(paths: list[str], fmt: str, jobs: int = 2) -> tuple[str, list[str]]:
    out = io.StringIO(newline="")
    done: list[int] = []
    summary = replay_parallel(paths, fmt, out, MeterPipeline, jobs, done.append)
    assert sum(done) == sum(Path(p).stat().st_size for p in paths)  # the progress bar's total
    return out.getvalue(), summary.lines()


@pytest.mark.parametrize("fmt", FORMATS)
def test_parallel_equals_one_after_another(tmp_path: Path, fmt: str) -> None:
    # hu, then a DSMR 5 meter with gas, then hu again: CSV columns appear in the middle part.
    paths = _days(tmp_path, ["hu", "dsmr5", "hu", "fluvius"])
    expected, summary = _sequential(paths, fmt)
    assert summary[1].startswith("telegrams 120: valid 120")
    assert _parallel(paths, fmt) == (expected, summary)
    assert _parallel(paths, fmt, jobs=3) == (expected, summary)


def test_directory_stands_for_its_captures_in_day_order(tmp_path: Path) -> None:
    paths = _days(tmp_path, ["hu", "hu", "hu"])
    (tmp_path / "meter-2024-03-31.p1.times").write_text("0 1711843200\n")
    (tmp_path / "notes.txt").write_text("not a capture")
    gz = tmp_path / "meter-2024-04-01.p1.gz"  # a day gzipped before its plain rest
    gz.write_bytes(b"")
    assert capture_files([str(tmp_path)]) == [paths[0], paths[1], str(gz), paths[2]]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="without raw captures"):
        capture_files([str(tmp_path / "empty")])


def test_cli_jobs_on_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "raw"
    folder.mkdir()
    paths = _days(folder, ["hu", "hu", "hu"])
    expected, summary = _sequential(paths, "line-protocol")
    out = tmp_path / "out.lp"
    agent = [sys.executable, "-m", "agent.cli", "replay", str(folder), "-o", str(out)]
    agent += ["--format", "line-protocol"]
    run = subprocess.run([*agent, "--jobs", "2"], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert out.read_text() == expected
    assert run.stderr.splitlines() == summary


def test_start_counts_across_files_so_it_refuses_jobs(tmp_path: Path) -> None:
    paths = _days(tmp_path, ["hu", "hu"])
    with pytest.raises(ValueError, match="--jobs 1"):
        replay_parallel(
            paths, "jsonl", io.StringIO(), MeterPipeline, 2, times=TimeOptions(START, 10.0)
        )
