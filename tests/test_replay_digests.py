"""Replay writes the same bytes as the encoders it replaced (issue 18: the speed-up changed how
CSV, JSONL and line protocol are produced, never what).

`replay_digests.json` holds sha256 digests of what `replay` wrote, per input and format, made by
the code before the optimisation (digests only: the published data stays beside the repository).
The inputs: every file of the published data, and simulated streams of every flavour, clean and
through a noisy line (repaired and rejected frames). Each input's own digest is kept as well, so
a failure says whether the output changed or its input did (a simulator change).

    python tests/test_replay_digests.py   # rewrite the digests: only when the output is meant
                                          # to change, and say why in the commit
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from shareddata import DATA_DIR

from agent.core.pipeline import MeterPipeline
from agent.noisyline import NoisyChannel, spread_rate
from agent.replay import FORMATS, TimeOptions, replay
from agent.simulate import SimulatedMeter

DIGESTS = Path(__file__).with_name("replay_digests.json")
# Meters without a clock need a time for CSV rows and points; every input gets the same one.
TIMES = TimeOptions(datetime(2024, 1, 1, tzinfo=UTC), 10.0)
SIMULATED = 40  # telegrams per simulated stream


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def simulated_stream(flavour: str, noisy: bool) -> bytes:
    meter = SimulatedMeter(flavour, seed=7)
    line = NoisyChannel(spread_rate(0.3), rng=f"digest-{flavour}") if noisy else None
    telegrams = (meter.next_telegram() for _ in range(SIMULATED))
    return b"".join(t if line is None else line.transmit(t) for t in telegrams)


def published_inputs() -> list[Path]:
    return sorted(
        path
        for folder in ("telegrams", "realworld", "captures")
        for path in (DATA_DIR / folder).glob("*")
        if path.suffix in (".txt", ".log")
    )


def outputs(path: Path) -> Iterator[tuple[str, bytes]]:
    """(format, bytes written) for each format, and ("summary", the summary's lines)."""
    for fmt in FORMATS:
        out = io.StringIO(newline="")
        summary = replay([str(path)], fmt, out, MeterPipeline(), times=TIMES)
        yield fmt, out.getvalue().encode("utf-8")
    yield "summary", "\n".join(summary.lines()).encode()


def digests(path: Path) -> dict[str, str]:
    return {"input": _sha(path.read_bytes()), **{k: _sha(v) for k, v in outputs(path)}}


# The flavours the digests were recorded for (a flavour added later has no old output).
RECORDED_FLAVOURS = (
    "dsmr22",
    "dsmr3",
    "dsmr4",
    "dsmr5",
    "fluvius",
    "lux",
    "se",
    "t210dr",
    "iskra-ie",
    "easymeter",
    "hu",
    "hu-sagemcom",
    "holley",
)


def simulated_names() -> list[str]:
    return [f"simulated/{f}{suffix}" for f in RECORDED_FLAVOURS for suffix in ("", "-noisy")]


def _simulated_file(name: str, folder: Path) -> Path:
    flavour = name.removeprefix("simulated/").removesuffix("-noisy")
    path = folder / f"{flavour}.p1"
    path.write_bytes(simulated_stream(flavour, name.endswith("-noisy")))
    return path


def _expected(name: str) -> dict[str, str]:
    table: dict[str, dict[str, str]] = json.loads(DIGESTS.read_text())
    if name not in table:
        pytest.fail(f"{name}: no recorded digests (a new input? see the module's docstring)")
    return table[name]


def _compare(name: str, path: Path) -> None:
    expected = _expected(name)
    got = digests(path)
    assert got["input"] == expected["input"], f"{name}: the input itself changed"
    assert got == expected


@pytest.mark.parametrize("name", simulated_names())
def test_simulated_replay_bytes_unchanged(name: str, tmp_path: Path) -> None:
    _compare(name, _simulated_file(name, tmp_path))


def test_published_replay_bytes_unchanged(data_dir: Path) -> None:
    inputs = published_inputs()
    recorded = {n for n in json.loads(DIGESTS.read_text()) if not n.startswith("simulated/")}
    assert {str(p.relative_to(data_dir)) for p in inputs} == recorded
    for path in inputs:
        _compare(str(path.relative_to(data_dir)), path)


def main() -> None:
    import tempfile

    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in simulated_names():
            table[name] = digests(_simulated_file(name, Path(tmp)))
    for path in published_inputs():
        name = str(path.relative_to(DATA_DIR))
        table[name] = digests(path)
        print(name, file=sys.stderr)
    DIGESTS.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
