"""A 7E1 meter read as 8N1: DSMR 2.2, 3 and 5 telegrams with their even-parity bit in bit 7
decode exactly as the clean ones, through the pipeline, `replay` and the `auto` speed probe; a
genuine 8N1 stream (the Hungarian meter's 0xFF run included) and random bytes are never masked."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from p1_testkit import chunks, even_parity, simulated

from agent.cli import main
from agent.core.parity import HOLD, ParityMasker
from agent.core.pipeline import MeterPipeline, Result
from agent.formats import jsonl
from agent.simulate import SimulatedMeter
from agent.sources.serial import SerialSource
from agent.sources.speed import DSMR2, DSMR4, LineSettings, SpeedProbe

# Simulated meters of the flavours that sent 7E1 (DSMR 2.2/3), and a DSMR 5 one read the same way.
SEVEN_E1 = ["dsmr22", "dsmr3", "dsmr5"]


def random_chunks(data: bytes, seed: int, largest: int = 300) -> list[bytes]:
    rng = random.Random(seed)
    cuts, at = [], 0
    while at < len(data):
        at += rng.randint(1, largest)
        cuts.append(at)
    return chunks(data, cuts)


def records(results: list[Result]) -> list[str]:
    """Everything a frame decoded to (status, telegram, readings, meter time), as JSONL."""
    return [jsonl.dumps(result) for result in results]


def through(pipeline: MeterPipeline, pieces: list[bytes]) -> list[Result]:
    results = []
    for piece in pieces:
        results += pipeline.feed(piece)
    return results + pipeline.close()


@pytest.mark.parametrize("flavour", SEVEN_E1)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_7e1_read_as_8n1_decodes_exactly_as_the_clean_telegrams(flavour: str, seed: int) -> None:
    clean = b"".join(simulated(flavour, 5))
    expected = through(MeterPipeline(), [clean])
    assert [r.status for r in expected] == ["valid"] * 5
    pipeline = MeterPipeline()
    results = through(pipeline, random_chunks(even_parity(clean), seed))
    assert pipeline.parity.masking
    assert [r.status for r in results] == ["valid"] * 5  # the first telegram too: none is lost
    assert records(results) == records(expected)


def test_replay_of_a_7e1_capture_prints_what_the_clean_capture_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = b"".join(b"".join(simulated(flavour, 4)) for flavour in SEVEN_E1)
    outputs = {}
    for kind, data in (("clean", clean), ("7e1", even_parity(clean))):
        capture = tmp_path / f"{kind}.log"
        capture.write_bytes(data)
        out = tmp_path / f"{kind}.jsonl"
        argv = ["replay", str(capture), "--format", "jsonl", "-o", str(out), "--no-progress"]
        assert main(argv) == 0
        outputs[kind] = (out.read_text(), capsys.readouterr().err)
    assert outputs["7e1"][0] == outputs["clean"][0]
    assert outputs["clean"][0].count('"status":"valid"') == 12
    clean_summary, parity_summary = outputs["clean"][1], outputs["7e1"][1]
    assert "telegrams 12: valid 12, repaired 0, rejected 0" in parity_summary
    assert "link: a 7E1 meter (DSMR 2.2/3) is read as 8N1" in parity_summary
    assert "link:" not in clean_summary  # ok is not worth a line
    assert parity_summary.splitlines()[:-1] == clean_summary.splitlines()


@pytest.mark.parametrize("seed", [1, 2])
def test_a_genuine_8n1_meter_with_an_ff_run_is_never_masked(seed: int) -> None:
    meter = SimulatedMeter("hu", seed=seed)
    stream = b"".join(meter.next_telegram() for _ in range(20))
    run = stream.index(b"\xff" * 1024)
    # From the start, and from inside the 0xFF run (a link opened mid-telegram).
    for data in (stream, stream[run + 100 :]):
        pipeline = MeterPipeline()
        results = []
        for piece in random_chunks(data, seed, largest=3000):
            results += pipeline.feed(piece)
            assert not pipeline.parity.masking
        results += pipeline.close()
        assert not pipeline.parity.masking
        statuses = [r.status for r in results]
        assert statuses.count("valid") >= 19 and set(statuses) <= {"valid", "rejected"}


def test_bytes_with_no_text_in_them_are_held_a_bounded_amount_and_passed_on_unchanged() -> None:
    masker = ParityMasker()
    run = b"\xff" * (3 * HOLD)
    out = b""
    for piece in random_chunks(run, 4, largest=700):
        out += masker.feed(piece)
        assert masker.held < HOLD
    out += masker.close()
    assert out == run and not masker.masking


def test_masking_stops_when_plain_8n1_telegrams_follow() -> None:
    old = even_parity(b"".join(simulated("dsmr22", 3)))
    meter = SimulatedMeter("dsmr5")
    new = b"".join(meter.next_telegram() for _ in range(6))
    pipeline = MeterPipeline()
    first = through(pipeline, [old])
    assert pipeline.parity.masking and [r.status for r in first] == ["valid"] * 3
    results = through(pipeline, random_chunks(new, 5))
    assert not pipeline.parity.masking
    # The evidence takes part of a telegram to gather; the rest decode.
    assert [r.status for r in results][-5:] == ["valid"] * 5


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=6000), cuts=st.lists(st.integers(0, 6000), max_size=30))
def test_any_bytes_keep_their_count_and_order(data: bytes, cuts: list[int]) -> None:
    masker = ParityMasker()
    out = b""
    for piece in chunks(data, cuts):
        out += masker.feed(piece)
        assert masker.held <= HOLD + len(piece)
    out += masker.close()
    assert len(out) == len(data)
    assert all(o in (b, b & 0x7F) for o, b in zip(out, data, strict=True))


def test_random_bytes_are_not_masked_and_do_not_crash_the_pipeline() -> None:
    rng = random.Random(9)
    for _ in range(5):
        data = rng.randbytes(50_000)
        pipeline = MeterPipeline()
        results = through(pipeline, random_chunks(data, rng.randrange(100), largest=5000))
        assert not pipeline.parity.masking
        assert all(r.status == "rejected" for r in results)


# -- the `auto` speed probe -------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        return False


class SevenE1Port:
    """A DSMR 2.2 meter (9600 7E1) behind a bridge that runs the line itself: at 7 data bits the
    port strips the parity bit, at 8 it hands it over in bit 7."""

    def __init__(self, settings: LineSettings, clock: Clock, telegram: bytes) -> None:
        self.settings = settings
        self.clock = clock
        self.telegram = telegram

    def read(self, size: int) -> bytes:
        self.clock.wait(1.0)
        return self.telegram if self.settings.bytesize == 7 else even_parity(self.telegram)

    def apply_settings(self, d: dict[str, Any]) -> None:
        self.settings = LineSettings(**d)

    def reset_input_buffer(self) -> None: ...

    def close(self) -> None: ...


@pytest.mark.parametrize("line", [SpeedProbe(), DSMR2, DSMR4], ids=["auto", "7E1", "8N1"])
def test_a_7e1_meter_read_as_8n1_gives_telegrams_at_either_setting(
    line: LineSettings | SpeedProbe,
) -> None:
    clock = Clock()
    (telegram,) = simulated("dsmr3")

    def factory(url: str, settings: LineSettings, timeout: float) -> SevenE1Port:
        return SevenE1Port(settings, clock, telegram)

    source = SerialSource(
        "/dev/old-meter", threading.Event(), settings=line, factory=factory, clock=clock,
        wait=clock.wait,
    )  # fmt: skip
    pipeline = MeterPipeline()
    results: list[Result] = []
    for _ in range(6):
        for result in pipeline.feed(source.read()):
            results.append(result)
            if result.accepted:
                source.telegram_seen()
    assert [r.status for r in results] == ["valid"] * 6
    assert [r.frame.body for r in results] == [telegram[: telegram.rindex(b"!") + 1]] * 6
    assert pipeline.parity.masking == (source.settings.bytesize == 8)
    if isinstance(line, SpeedProbe):
        assert line.locked and source.settings == DSMR4  # no switch needed, none made
