"""The link diagnosis: byte streams and frames that show each cause get it, said once; a clean line
is `ok`. Then the wiring: the gauge through the Prometheus collector, one log line from the
reader however many frames it reads, and the line `check-config` prints."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dashboards import boards, panels
from p1_testkit import even_parity, simulated
from structlog.testing import capture_logs

from agent.config import Settings
from agent.core.diagnose import (
    BIT_SLIP,
    CAUSES,
    NO_FRAMES,
    NO_FRAMES_EITHER,
    NO_FRAMES_INVERTED,
    NO_FRAMES_SPEED,
    NOISE,
    OK,
    OVERRUN,
    PARITY,
    TOO_EARLY,
    WEAK_PULLUP,
    Diagnosis,
    LinkDiagnosis,
)
from agent.core.framing import Framer
from agent.core.pipeline import REPAIRED, VALID, MeterPipeline, Result
from agent.core.repair import Change, Repair
from agent.run import Agent
from agent.simulate import SimulatedMeter
from agent.sinks.prometheus import Metrics

Damage = Callable[[int], int]  # a sent byte → the byte received


def telegrams(count: int, flavour: str = "dsmr5") -> Iterator[bytes]:
    meter = SimulatedMeter(flavour)
    for _ in range(count):
        yield meter.next_telegram()


def diagnose(pieces: Iterator[bytes], pipeline: MeterPipeline | None = None) -> list[Diagnosis]:
    """The changes the diagnosis reports, reading `pieces` as the agent reads a source."""
    pipeline = pipeline or MeterPipeline()
    link = LinkDiagnosis()
    changes = []
    for piece in pieces:
        results = pipeline.feed(piece)
        change = link.update(
            results,
            bytes_in=pipeline.framer.bytes_in,
            masking=pipeline.parity.masking,
            data=piece,
        )
        if change is not None:
            changes.append(change)
    return changes


def causes(changes: list[Diagnosis]) -> list[str]:
    return [change.cause for change in changes]


def damaged(
    pieces: Iterator[bytes], damage: Damage, seed: int, rate: float = 0.3
) -> Iterator[bytes]:
    """Every telegram after the first few, at `rate`, with one or two of its bytes that are not
    digits (OBIS codes, units, punctuation) damaged; never into `/` or `!`, which would split
    the frame."""
    rng = random.Random(seed)
    for i, telegram in enumerate(pieces):
        data = bytearray(telegram)
        if i >= 3 and rng.random() < rate:
            end = data.rindex(b"!")
            spots = [
                k
                for k in range(1, end)
                if not 0x30 <= data[k] <= 0x39 and damage(data[k]) not in (data[k], *b"/!\r\n")
            ]
            for k in rng.sample(spots, rng.randint(1, 2)):
                data[k] = damage(data[k])
        yield bytes(data)


def weak_pullup(rng: random.Random) -> Damage:
    """A bit that should have been set stays cleared."""
    return lambda b: b & ~rng.choice([1 << j for j in range(8) if b >> j & 1])


def slip(b: int) -> int:
    """A port sampling a little fast reads bit 7 from bit 6 (set in letters: `kWh` → `kWè`)."""
    return b | (b << 1 & 0x80)


def noise(rng: random.Random) -> Damage:
    return lambda b: rng.choice([x for x in range(256) if x != b])


# -- each cause from a byte stream ------------------------------------------------------------


def test_a_clean_line_is_ok_said_once() -> None:
    changes = diagnose(telegrams(150))
    assert causes(changes) == [OK]
    assert changes[0].evidence == {"frames": 10, "damaged": 0}


def test_a_7e1_meter_read_as_8n1() -> None:
    stream = even_parity(b"".join(simulated("dsmr22", 30)))
    changes = diagnose(iter([stream[i : i + 100] for i in range(0, len(stream), 100)]))
    assert causes(changes) == [PARITY]
    assert "9600-7E1" in changes[0].message


@pytest.mark.parametrize(
    ("noise_bytes", "message"),
    [
        (lambda rng: rng.randbytes(20_000), NO_FRAMES_EITHER),
        # A port faster than the line: each slow bit fills a byte with zeros, then ones.
        (
            lambda rng: bytes(
                rng.choice(b"\x00\x00\x00\x80\xc0\xe0\xf0\xf8") for _ in range(20_000)
            ),
            NO_FRAMES_SPEED,
        ),
        # An uninverted signal at the right speed: the high bit is set in nearly every byte.
        (lambda rng: bytes(b | 0x80 for b in rng.randbytes(20_000)), NO_FRAMES_INVERTED),
    ],
    ids=["random", "too-fast", "not-inverted"],
)
def test_bytes_that_never_frame_say_which_hint_applies(
    noise_bytes: Callable[[random.Random], bytes], message: str
) -> None:
    garbage = noise_bytes(random.Random(1))
    pieces = [garbage[i : i + 512] for i in range(0, len(garbage), 512)]
    changes = diagnose(iter(pieces))
    assert causes(changes) == [NO_FRAMES]
    assert changes[0].message == message
    assert changes[0].evidence["bytes_without_telegram"] >= 4096


def test_telegrams_after_no_frames_are_ok_at_once() -> None:
    pipeline = MeterPipeline()
    link = LinkDiagnosis()
    garbage = random.Random(2).randbytes(8192)
    assert link.update(pipeline.feed(garbage), bytes_in=len(garbage), masking=False) is not None
    assert link.cause == NO_FRAMES
    telegram = next(telegrams(1))
    change = link.update(pipeline.feed(telegram), bytes_in=pipeline.framer.bytes_in, masking=False)
    assert change is not None and change.cause == OK


def test_blocks_lost_to_an_overrun() -> None:
    """Tens to hundreds of bytes missing here and there, telegrams merged where the hole took
    one's end and the next one's start."""
    stream = b"".join(telegrams(120))
    rng = random.Random(3)
    kept, at = bytearray(), 0
    while at < len(stream):
        kept += stream[at : at + 900]
        at += 900
        if at > 5000 and rng.random() < 0.3:
            at += rng.randint(20, 300)
    changes = diagnose(iter([bytes(kept[i : i + 4096]) for i in range(0, len(kept), 4096)]))
    assert causes(changes)[-1] == OVERRUN and len(changes) <= 2
    assert changes[-1].evidence["holes"] >= 2


@pytest.mark.parametrize(
    ("damage", "cause"),
    [
        (weak_pullup(random.Random(4)), WEAK_PULLUP),
        (slip, BIT_SLIP),
        (noise(random.Random(5)), NOISE),
    ],
    ids=["weak-pullup", "bit-slip", "noise"],
)
def test_damaged_bytes_of_rejected_frames_show_the_pattern(damage: Damage, cause: str) -> None:
    """Without repair every damaged frame is rejected; its bytes that are not digits are
    compared with the meter's last telegram."""
    changes = diagnose(damaged(telegrams(150), damage, seed=6), MeterPipeline(repair=False))
    assert causes(changes)[-1] == cause
    assert len(changes) <= 2  # ok first, maybe; then the cause, once
    assert changes[-1].evidence["bytes_changed"] >= 6


def test_weak_pullup_from_repaired_frames() -> None:
    """The repair engine's record of what it changed: `0` received as a space, `)` as `!`…"""
    link = LinkDiagnosis()
    body = next(telegrams(1))
    frame = Framer().feed(body)[0]
    clean = [Result(VALID, frame) for _ in range(10)]
    assert link.update(clean, bytes_in=len(body), masking=False) is not None
    repairs = [
        Result(REPAIRED, frame, failure="crc", repair=Repair("m", (change,)))
        for change in (
            Change(40, b"\x20", b"\x30", "1-0:1.8.1"),
            Change(41, b"\x21", b"\x29", "1-0:1.8.1"),
            Change(42, b"\x20\x31", b"\x30\x35", "1-0:1.8.2"),
            Change(43, b"\x20", b"", "1-0:1.8.2"),  # lost: says nothing
            Change(44, b"\x22", b"\x32", "1-0:2.8.1"),
            Change(45, b"\x2a", b"\x2b", "1-0:2.8.2"),
        )
    ]
    change = link.update(repairs, bytes_in=len(body), masking=False)
    assert change is not None and change.cause == WEAK_PULLUP
    assert change.evidence["cleared"] == 6 and change.evidence["set"] == 0
    # Said once: more of the same changes nothing.
    assert link.update(repairs, bytes_in=len(body), masking=False) is None
    assert link.cause == WEAK_PULLUP


def test_a_few_damaged_frames_are_no_diagnosis_and_clean_frames_bring_ok_back() -> None:
    link = LinkDiagnosis()
    body = next(telegrams(1))
    frame = Framer().feed(body)[0]
    assert link.describe() == TOO_EARLY
    assert link.update([Result(VALID, frame)] * 9, bytes_in=0, masking=False) is None
    assert link.update([Result(VALID, frame)], bytes_in=0, masking=False) is not None
    bad = Result(REPAIRED, frame, failure="crc", repair=Repair("m"))
    assert link.update([bad, bad], bytes_in=0, masking=False) is None  # 2 in 100: still ok
    assert link.cause == OK
    assert link.update([bad] * 7, bytes_in=0, masking=False) is None  # no bytes to tell by
    change = link.update([bad], bytes_in=0, masking=False)
    assert change is not None and change.cause == NOISE  # 10 damaged frames: plain damage
    assert link.update([Result(VALID, frame)] * 90, bytes_in=0, masking=False) is None
    change = link.update([Result(VALID, frame)] * 10, bytes_in=0, masking=False)
    assert change is not None and change.cause == OK  # they have left the window


# -- the wiring --------------------------------------------------------------------------------


def test_the_gauge_has_every_cause_once_a_meter_has_one() -> None:
    metrics = Metrics()
    metrics.meter("house").diagnosis = WEAK_PULLUP
    metrics.meter("quiet")
    registry = metrics.registry
    for cause in CAUSES:
        value = registry.get_sample_value("p1_link_diagnosis", {"meter": "house", "cause": cause})
        assert value == (1.0 if cause == WEAK_PULLUP else 0.0), cause
        assert (
            registry.get_sample_value("p1_link_diagnosis", {"meter": "quiet", "cause": cause})
            is None
        )


def test_the_dashboard_says_every_cause_in_plain_words() -> None:
    board = boards()["link-health.json"]
    (panel,) = [p for p in panels(board) if p["title"] == "Link diagnosis"]
    assert panel["targets"][0]["expr"] == 'p1_link_diagnosis{meter=~"$meter"} == 1'
    (override,) = [
        o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == "Diagnosis"
    ]
    (mappings,) = [p["value"] for p in override["properties"] if p["id"] == "mappings"]
    assert set(mappings[0]["options"]) == set(CAUSES)


class ListSource:
    """A source that hands over one piece per read, then ends."""

    name = "list"
    connected = True
    reconnects = 0
    bytes_total = 0
    last_error = None
    hint = None

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def read(self) -> bytes | None:
        return self.pieces.pop(0) if self.pieces else None

    def telegram_seen(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_the_reader_logs_a_change_once_and_sets_the_gauge(tmp_path: Path) -> None:
    agent = Agent(Settings(data_dir=tmp_path))
    reader = agent.readers[0]
    reader.source = ListSource([even_parity(t) for t in simulated("dsmr3", 40)])
    with capture_logs() as logs:
        agent.start()
        agent.wait()
        agent.shutdown()
    said = [entry for entry in logs if "cause" in entry]
    assert [entry["cause"] for entry in said] == [PARITY]
    assert said[0]["log_level"] == "warning" and said[0]["meter"] == reader.meter
    assert agent.metrics.meters[reader.meter].telegrams["valid"] == 40
    value = agent.metrics.registry.get_sample_value(
        "p1_link_diagnosis", {"meter": reader.meter, "cause": PARITY}
    )
    assert value == 1.0


def test_check_config_says_the_diagnosis(tmp_path: Path) -> None:
    capture = tmp_path / "old-meter.log"
    capture.write_bytes(even_parity(b"".join(simulated("dsmr22", 3))))
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check-config", "--source", f"file:{capture}",
         "--data-dir", str(tmp_path / "data"), "--wait", "10"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("ok: source file:"))
    assert lines[at + 1].startswith("  link: a 7E1 meter (DSMR 2.2/3) is read as 8N1")
