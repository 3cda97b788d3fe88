"""The noisy line (agent.noisyline): every mode corrupts the way it says, deterministically, the
bad-line profile damages 4 telegrams of 5, and no corrupted frame ever comes out of the pipeline
as a telegram the meter did not send."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from agent.cli import main
from agent.core.crc import FUNCTIONS
from agent.core.framing import Frame, Framer
from agent.core.pipeline import MeterPipeline, Result
from agent.noisyline import (
    BAD_LINE_DAMAGE,
    BAD_LINE_MIX,
    BAD_LINE_MODES,
    MANGLED_STARTS,
    MERGED,
    MODES,
    START_MODES,
    Corruption,
    Edit,
    NoisyChannel,
    NotApplicable,
    applicable_modes,
    bad_line_rates,
    corrupt,
    parse_rates,
    predicted_spans,
    spread_rate,
)
from agent.simulate import MEASURED_FLAVOURS, SimulatedMeter
from agent.sources import open_source
from agent.sources.simulator import SimulatorSource

DRAWS = 150  # corruptions checked per mode and flavour
PAIRS = 60  # corrupted + clean pairs fed to the pipeline per mode and flavour
PAUSE_LINE = {"hu": b"0-0:96.13.0(", "dsmr5": b"0-1:24.1.0("}
_STAMP = re.compile(rb"0-0:1\.0\.0\(([^)]*)\)")


def telegrams(flavour: str, count: int, seed: int = 1) -> list[bytes]:
    meter = SimulatedMeter(flavour, seed=seed)
    return [meter.next_telegram() for _ in range(count)]


@pytest.fixture(scope="module", params=MEASURED_FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def clean(flavour: str) -> bytes:
    return telegrams(flavour, 1)[0]


def stamp_of(text: bytes) -> bytes:
    """The meter time `0-0:1.0.0(…)` as written; empty when the line is missing."""
    found = _STAMP.search(text)
    return found[1] if found else b""


def end_of(telegram: bytes) -> int:
    """One past the last checksum digit."""
    return len(telegram) - 2


def diff(a: bytes, b: bytes) -> list[int]:
    assert len(a) == len(b)
    return [i for i in range(len(a)) if a[i] != b[i]]


def replay_edits(telegram: bytes, corruption: Corruption) -> bytes:
    data = bytearray(telegram)
    for edit in reversed(corruption.edits):
        assert telegram[edit.offset : edit.offset + len(edit.old)] == edit.old
        data[edit.offset : edit.offset + len(edit.old)] = edit.new
    return bytes(data)


def check_mode(mode: str, flavour: str, t: bytes, c: Corruption) -> None:
    """The corruption `c` of clean telegram `t` is what `mode` promises."""
    data = c.data
    end = end_of(t)
    bang = t.rindex(b"!")
    line = t.find(b"\r\n" + PAUSE_LINE[flavour]) + 2
    if mode == "start_mangled":
        assert len(data) == len(t) and diff(data, t) == [0]
        assert data[0] not in b"/!"
    elif mode == "garbage_before_start":
        assert data.endswith(t) and 1 <= len(data) - len(t) <= 8
        assert not set(data[: len(data) - len(t)]) & set(b"/!")
    elif mode == "start_lost":
        assert data == t[1:]
    elif mode == "garbage_before_line":
        garbage = data[line : line + len(data) - len(t)]
        assert 1 <= len(garbage) <= 6 and not set(garbage) & set(b"/!")
        assert data == t[:line] + garbage + t[line:]
    elif mode == "line_zero_space":
        assert diff(data, t) == [line] and data[line] == 0x20 and t[line] == 0x30
    elif mode == "ff_run":
        run = t.index(b"\xff" * 1024)
        changed = diff(data, t)
        assert 1 <= len(changed) <= 4 and all(run <= i < run + 1024 for i in changed)
    elif mode == "bit_flip":
        [at] = diff(data, t)
        assert at < end and bin(data[at] ^ t[at]).count("1") == 1
    elif mode == "substitution":
        [at] = diff(data, t)
        assert at < end
    elif mode == "drop":
        [edit] = c.edits
        assert edit.offset < end and data == t[: edit.offset] + t[edit.offset + 1 :]
    elif mode == "insert":
        [edit] = c.edits
        assert 1 <= edit.offset <= end - 1 and len(edit.new) == 1
        assert data == t[: edit.offset] + edit.new + t[edit.offset :]
    elif mode == "checksum":
        [at] = diff(data, t)
        assert bang < at < end
    elif mode == "double_substitution":
        changed = diff(data, t)
        assert len(changed) == 2 and max(changed) < end
    elif mode == "double_predicted":
        changed = diff(data, t)
        assert len(changed) == 2 and max(changed) < end
        spans = [span for found in predicted_spans(t).values() for span in found]
        assert any(start <= i < end for i in changed for start, end in spans)
    else:  # pragma: no cover
        raise AssertionError(mode)


def corruptions(mode: str, clean: bytes, modes: Iterable[str] = MODES) -> list[Corruption]:
    """DRAWS corruptions of `clean` by `mode`, each its mode's and replayable from its edits; none
    (once the mode has refused) where the telegram has nothing for the mode to corrupt."""
    if mode not in applicable_modes(clean, modes):
        with pytest.raises(NotApplicable):
            corrupt(clean, mode, 1)
        return []
    rng = random.Random(mode)
    drawn = [corrupt(clean, mode, rng) for _ in range(DRAWS)]
    for c in drawn:
        assert c.mode == mode and c.data != clean
        assert replay_edits(clean, c) == c.data
    return drawn


@pytest.mark.parametrize("mode", MODES)
def test_mode_corrupts_as_it_says(mode: str, flavour: str, clean: bytes) -> None:
    for c in corruptions(mode, clean):
        # Nothing put in could start or end a frame; the real `/` is touched only by the start
        # modes and by the substitutions and flips that may hit any byte.
        for edit in c.edits:
            assert not set(edit.new) & set(b"/!")
        if c.data[:1] != b"/":
            assert mode in START_MODES or 0 in c.offsets
        # The checksum sees it: the frame as it arrives does not pass CRC-16/ARC nor X25.
        if c.data.startswith(b"/") and c.data.count(b"!") == 1 and c.data.endswith(b"\r\n"):
            text = c.data[:-2]
            body, digits = text[: text.rindex(b"!") + 1], text[text.rindex(b"!") + 1 :]
            if text != clean[:-2] and re.fullmatch(rb"[0-9A-Fa-f]{1,4}", digits):
                assert all(crc(body) != int(digits, 16) for crc in FUNCTIONS.values())
        check_mode(mode, flavour, clean, c)


def test_start_mangled_uses_the_seen_bytes(clean: bytes) -> None:
    rng = random.Random(3)
    seen = {corrupt(clean, "start_mangled", rng).data[0] for _ in range(300)}
    assert set(MANGLED_STARTS) <= seen and len(seen) > len(MANGLED_STARTS)


def test_double_predicted_reaches_every_kind(clean: bytes) -> None:
    spans = predicted_spans(clean)
    assert {"header", "obis", "unit"} <= set(spans)
    assert ("ff_run" in spans) == clean.startswith(b"/AUX")
    assert ("billing" in spans) == clean.startswith(b"/AUX")
    rng = random.Random(5)
    hit = set()
    for _ in range(400):
        offsets = corrupt(clean, "double_predicted", rng).offsets
        for kind, found in spans.items():
            if any(start <= i < end for i in offsets for start, end in found):
                hit.add(kind)
    assert hit == set(spans)


def test_applicable_modes() -> None:
    hu, dsmr5 = telegrams("hu", 1)[0], telegrams("dsmr5", 1)[0]
    assert applicable_modes(hu) == MODES
    assert applicable_modes(dsmr5) == tuple(m for m in MODES if m != "ff_run")
    with pytest.raises(NotApplicable):
        corrupt(dsmr5, "ff_run", 1)
    with pytest.raises(ValueError, match="unknown noise mode"):
        corrupt(hu, "lightning", 1)
    with pytest.raises(ValueError, match="not a sealed telegram"):
        corrupt(hu[:-8], "drop", 1)


def test_corrupt_is_deterministic_per_seed(clean: bytes) -> None:
    for mode in applicable_modes(clean):
        assert corrupt(clean, mode, 42) == corrupt(clean, mode, 42)
    draws = {corrupt(clean, "substitution", seed).data for seed in range(20)}
    assert len(draws) > 15


def test_channel_is_deterministic_per_seed(flavour: str) -> None:
    stream = telegrams(flavour, 200)
    rates = spread_rate(0.5, applicable_modes(stream[0]))

    def run(seed: int) -> list[bytes]:
        channel = NoisyChannel(rates, seed)
        return [channel.transmit(t) for t in stream]

    first = run(7)
    assert first == run(7) and first != run(8)
    corrupted = sum(a != b for a, b in zip(first, stream, strict=True))
    assert 60 < corrupted < 140  # 0.5 per telegram


def test_channel_at_rate_zero_passes_telegrams_unchanged(flavour: str) -> None:
    stream = telegrams(flavour, 50)
    for rates in ({}, dict.fromkeys(MODES, 0.0)):
        channel = NoisyChannel(rates, 1)
        assert [channel.transmit(t) for t in stream] == stream
        assert channel.corrupted == 0 and channel.telegrams == 50


def test_channel_rates_choose_modes() -> None:
    stream = telegrams("dsmr5", 400)
    channel = NoisyChannel({"drop": 0.5, "insert": 0.5}, 3)
    lengths = [len(channel.transmit(t)) - len(t) for t in stream]
    assert set(lengths) == {-1, 1}
    assert 150 < channel.counts["drop"] < 250 and channel.counts["drop"] == lengths.count(-1)
    # A mode the telegram has nothing for lets it through clean, counted as skipped.
    channel = NoisyChannel({"ff_run": 1.0}, 3)
    assert [channel.transmit(t) for t in stream[:10]] == stream[:10]
    assert channel.skipped["ff_run"] == 10 and "0 corrupted" in channel.summary()


def test_parse_rates() -> None:
    assert parse_rates("substitution=0.003, start_mangled=1e-3") == {
        "substitution": 0.003,
        "start_mangled": 0.001,
    }
    assert spread_rate(0.26, ("drop", "insert")) == {"drop": 0.13, "insert": 0.13}
    for spec, message in [
        ("substitution", "is not MODE=RATE"),
        ("substitution=", "is not MODE=RATE"),
        ("thunder=0.1", "unknown noise mode 'thunder'"),
        ("drop=x", "is not a number"),
        ("drop=-0.1", "between 0 and 1"),
        ("drop=inf", "between 0 and 1"),
        ("drop=0.1,drop=0.2", "given twice"),
        ("drop=0.7,insert=0.7", "add up to 1.4"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_rates(spec)


def test_simulate_noise_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def simulate(*extra: str) -> bytes:
        out = tmp_path / "out.bin"
        args = ["simulate", "--flavour", "hu", "--count", "30", "-o", str(out), *extra]
        assert main(args) == 0
        return out.read_bytes()

    plain = simulate()
    assert simulate("--noise-rate", "0") == plain
    assert capsys.readouterr().err == "simulate: 30 telegrams, 0 corrupted\n"
    noisy = simulate("--noise", "substitution=0.5,start_lost=0.2")
    assert noisy == simulate("--noise", "substitution=0.5,start_lost=0.2") != plain
    assert len(noisy) == len(plain) - noisy.count(b"\r\nAUX")  # start_lost drops one byte
    err = capsys.readouterr().err.splitlines()
    assert err[0] == err[1] and err[0].startswith("simulate: 30 telegrams, ")
    everything = simulate("--noise-rate", "1")
    assert everything.count(b"\r\n/AUX") < 30
    assert "30 corrupted" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--noise", "substitution"], "noise 'substitution' is not MODE=RATE"),
        (["--noise", "drop=2"], "noise rate for drop '2' must be between 0 and 1"),
        (["--noise-rate", "lots"], "noise rate 'lots' is not a number"),
        (["--noise", "ff_run=0.1"], "noise mode ff_run does not apply to dsmr5 telegrams"),
        (["--noise-rate", "0.6", "--noise", "drop=0.6"], "noise rates add up to"),
        (["--noise", "bad-line", "--noise-rate", "0.1"], "--noise bad-line is a whole line"),
        (["--noise", "noise_slash=0.1"], "noise mode noise_slash does not apply to dsmr5"),
    ],
)
def test_simulate_noise_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--flavour", "dsmr5", "--count", "1", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("p1-agent: error: ") and message in err and err.count("\n") == 1


# -- the bad line ------------------------------------------------------------------------------

SINGLE_BAD_MODES = tuple(m for m in BAD_LINE_MODES if m != MERGED)
CLEARS = {"bit_clear": 1, "bit_clear_2": 2, "bit_clear_3": 3}


def only_cleared(old: int, new: int) -> bool:
    """`new` is `old` with some 1-bits cleared and none set."""
    return new != old and new & ~old == 0


def frames_of(data: bytes) -> list[Frame]:
    framer = Framer()
    return framer.feed(data) + framer.close()


def check_crc_sees_it(data: bytes, t: bytes) -> None:
    """No frame of the damaged bytes but the clean telegram passes CRC-16/ARC or X25."""
    for frame in frames_of(data):
        if frame.checksum and not frame.headless and frame.text != t[:-2]:
            assert all(crc(frame.body) != frame.expected_crc for crc in FUNCTIONS.values())


def check_bad_mode(mode: str, t: bytes, c: Corruption) -> None:
    """The corruption `c` of clean telegram `t` is what bad-line `mode` promises."""
    data = c.data
    end = end_of(t)
    if mode in CLEARS:
        changed = diff(data, t)
        assert len(changed) == CLEARS[mode] and max(changed) < end
        assert all(only_cleared(t[i], data[i]) and data[i] not in b"/!" for i in changed)
    elif mode == "drop_substitution":
        dropped, cleared = sorted(c.edits, key=lambda e: len(e.new))
        assert len(dropped.old) == 1 and not dropped.new and dropped.offset != cleared.offset
        assert only_cleared(cleared.old[0], cleared.new[0]) and cleared.new not in (b"/", b"!")
        assert max(c.offsets) < end and len(data) == len(t) - 1
    elif mode == "overrun_block":
        run = t.index(b"\xff" * 1024)
        lost = len(t) - len(data)
        assert 16 <= lost <= 400
        assert data == t[:run] + b"\xff" * (1024 - lost) + t[run + 1024 :]
        [edit] = c.edits
        assert run <= edit.offset <= run + 1024 - lost
    elif mode == "noise_bang":
        [at] = diff(data, t)
        assert data[at] == ord("!") and only_cleared(t[at], data[at]) and at < t.rindex(b"!")
        # The framer takes the `!` for the end: a frame ends there, the rest comes headless.
        first, rest = frames_of(data)
        assert first.text == data[: at + 1 + len(first.checksum or b"")] and rest.headless
    elif mode == "noise_slash":
        [at] = diff(data, t)
        assert data[at] == ord("/") and only_cleared(t[at], data[at]) and 0 < at < end
        first, second = frames_of(data)
        assert first.truncated and second.offset == at
    else:  # pragma: no cover
        raise AssertionError(mode)


@pytest.mark.parametrize("mode", SINGLE_BAD_MODES)
def test_bad_line_mode_corrupts_as_it_says(mode: str, flavour: str, clean: bytes) -> None:
    for c in corruptions(mode, clean, BAD_LINE_MODES):
        check_crc_sees_it(c.data, clean)
        check_bad_mode(mode, clean, c)


def test_bad_line_applicable_modes() -> None:
    hu, dsmr5 = telegrams("hu", 1)[0], telegrams("dsmr5", 1)[0]
    assert applicable_modes(hu, BAD_LINE_MODES) == BAD_LINE_MODES
    # No 0xFF run to overrun, and no byte with the bits of a `/` in a DSMR 5 telegram.
    missing = {"overrun_block", "noise_slash"}
    assert applicable_modes(dsmr5, BAD_LINE_MODES) == tuple(
        m for m in BAD_LINE_MODES if m not in missing
    )
    assert applicable_modes(hu) == MODES  # the default stays the seed's modes
    with pytest.raises(ValueError, match="spans two telegrams"):
        corrupt(hu, MERGED, 1)


def test_bit_clear_picks_bytes_uniformly_and_mostly_one_bit() -> None:
    t = telegrams("hu", 1)[0]
    end, run = end_of(t), t.index(b"\xff" * 1024)
    rng = random.Random(9)
    draws = [corrupt(t, "bit_clear", rng).edits[0] for _ in range(3000)]
    in_run = sum(run <= e.offset < run + 1024 for e in draws) / len(draws)
    assert abs(in_run - 1024 / end) < 0.04
    one_bit = sum(bin(e.old[0] ^ e.new[0]).count("1") == 1 for e in draws) / len(draws)
    assert 0.7 < one_bit < 0.9


def test_noise_bang_hits_line_ends(clean: bytes) -> None:
    rng = random.Random(4)
    hits = [clean[corrupt(clean, "noise_bang", rng).offsets[0]] for _ in range(300)]
    assert hits.count(ord(")")) > 0.8 * len(hits)  # the `)` closing a line, mostly


def test_merged_runs_two_telegrams_into_one_frame(flavour: str) -> None:
    stream = telegrams(flavour, 60)
    channel = NoisyChannel({MERGED: 1.0}, 5)
    ends = set()
    for first, second in zip(stream[::2], stream[1::2], strict=True):
        head = channel.corrupt(first)
        assert head is not None and head.mode == MERGED and channel.merging
        assert replay_edits(first, head) == head.data
        [edit] = head.edits
        bang = first.rindex(b"!")
        assert edit.offset >= bang  # only the end is lost or damaged, and the framer sees none
        assert frames_of(head.data)[0].truncated
        ends.add("lost" if not edit.new else "!" if edit.offset == bang else "digit")
        if edit.new:
            assert only_cleared(edit.old[0], edit.new[0])
        tail = channel.corrupt(second)
        assert tail is not None and tail.mode == MERGED and not channel.merging
        assert replay_edits(second, tail) == tail.data and tail.edits[0] == Edit(0, b"/", b"")
        [frame] = frames_of(head.data + tail.data)
        assert frame.body.startswith(first[:40]) and frame.checksum == second[-6:-2]
        check_crc_sees_it(head.data + tail.data, second)
    assert ends == {"lost", "!", "digit"}
    assert channel.counts[MERGED] == 60 and channel.corrupted == 60


def test_bad_line_mode_is_deterministic_per_seed(clean: bytes) -> None:
    for mode in applicable_modes(clean, SINGLE_BAD_MODES):
        assert corrupt(clean, mode, 42) == corrupt(clean, mode, 42)
        assert len({corrupt(clean, mode, seed).data for seed in range(20)}) > 15


@pytest.fixture(scope="module")
def long_stream(flavour: str) -> list[bytes]:
    return telegrams(flavour, 3000, seed=3)


def test_bad_line_profile(flavour: str, long_stream: list[bytes]) -> None:
    rates = bad_line_rates(long_stream[0])
    assert set(rates) == set(applicable_modes(long_stream[0], BAD_LINE_MIX))
    assert sum(rates.values()) == pytest.approx(BAD_LINE_DAMAGE)
    assert sum(bad_line_rates(long_stream[0], 1.0).values()) == pytest.approx(1.0)
    channel = NoisyChannel(rates, f"profile-{flavour}")
    sent = [channel.transmit(t) for t in long_stream]
    damaged = sum(a != b for a, b in zip(sent, long_stream, strict=True))
    assert damaged == channel.corrupted
    assert 0.77 < damaged / len(long_stream) < 0.83  # 4 of 5
    assert set(channel.counts) == set(rates) and not channel.skipped
    lost_start = sum(not data.startswith(b"/") for data in sent) / len(sent)
    assert 0.2 < lost_start < 0.3  # `/` lost in about a quarter
    again = NoisyChannel(rates, f"profile-{flavour}")
    assert [again.transmit(t) for t in long_stream[:300]] == sent[:300]
    other = NoisyChannel(rates, "another seed")
    assert [other.transmit(t) for t in long_stream[:300]] != sent[:300]


def test_simulate_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def simulate(noise: str) -> bytes:
        out = tmp_path / "out.bin"
        args = ["simulate", "--flavour", "hu", "--count", "100", "--noise", noise, "-o", str(out)]
        assert main(args) == 0
        return out.read_bytes()

    assert simulate("bad-line") == simulate("bad-line")
    err = capsys.readouterr().err.splitlines()
    assert err[0] == err[1] and err[0].startswith("simulate: 100 telegrams, ")
    assert 70 <= int(err[0].split(", ")[1].split()[0]) <= 90  # corrupted: 4 of 5
    # A bit-clear keeps the length; a bad-line mode can be given on its own too.
    assert len(simulate("bit_clear=1")) == 100 * len(telegrams("hu", 1)[0])


def test_simulator_source_bad_line() -> None:
    source = open_source("simulator:dsmr5,noise=bad-line,interval=0.01", threading.Event())
    assert isinstance(source, SimulatorSource) and source.channel is not None
    assert source.channel.rates == bad_line_rates(telegrams("dsmr5", 1)[0])
    with pytest.raises(ValueError, match="simulator noise 'worse' is not a number"):
        open_source("simulator:hu,noise=worse", threading.Event())
    with pytest.raises(ValueError, match=re.escape("noise=RATE|bad-line")):
        open_source("simulator:hu,storm=1", threading.Event())


# -- the never-write-a-wrong-number property ------------------------------------------------------


def feed_in_chunks(sent: bytes, rng: random.Random) -> list[Result]:
    """The bytes through one pipeline in reads of 64–512 bytes."""
    pipeline = MeterPipeline()
    results = []
    pos = 0
    while pos < len(sent):
        size = rng.randint(64, 512)
        results += pipeline.feed(sent[pos : pos + size])
        pos += size
    return results + pipeline.close()


def accepted_as_valid(results: list[Result], stream: list[bytes]) -> set[bytes]:
    """The meter times of the telegrams accepted as valid; every accepted frame must be byte for
    byte the telegram the meter sent with its meter time."""
    by_stamp = {stamp_of(t): t[:-2] for t in stream}
    valid = set()
    for result in results:
        if result.accepted:
            text = result.frame.text
            assert text == by_stamp.get(stamp_of(text)), (result.status, result.repair, text[:80])
            if result.status == "valid":
                valid.add(stamp_of(text))
    return valid


@pytest.mark.parametrize(
    ("mode", "flavour"),
    # ff_run corrupts the Hungarian 0xFF text message, which DSMR 5 telegrams do not have.
    [(m, f) for m in MODES for f in ("hu", "dsmr5") if not (m == "ff_run" and f == "dsmr5")],
)
def test_pipeline_never_accepts_a_telegram_the_meter_did_not_send(mode: str, flavour: str) -> None:
    """20 clean telegrams, then corrupted and clean alternating, fed in chunks of 64–512 bytes.

    Whatever the repair engine does, every accepted frame must be byte for byte the telegram the
    meter sent with that meter time, and every clean telegram must come through as valid.
    """
    stream = telegrams(flavour, 20 + 2 * PAIRS, seed=11)
    assert mode in applicable_modes(stream[0])
    rng = random.Random(f"{mode}-{flavour}")
    sent = bytearray()
    for i, telegram in enumerate(stream):
        sent += corrupt(telegram, mode, rng).data if i >= 20 and i % 2 == 0 else telegram
    valid = accepted_as_valid(feed_in_chunks(bytes(sent), rng), stream)
    assert {stamp_of(t) for i, t in enumerate(stream) if i < 20 or i % 2} <= valid


def test_pipeline_never_accepts_a_telegram_the_meter_did_not_send_on_a_bad_line(
    flavour: str,
) -> None:
    """The bad line from the first telegram on (a cold start), 4 telegrams of 5 damaged."""
    stream = telegrams(flavour, 200, seed=13)
    channel = NoisyChannel(bad_line_rates(stream[0]), f"pipeline-{flavour}")
    sent = [channel.transmit(t) for t in stream]
    valid = accepted_as_valid(feed_in_chunks(b"".join(sent), random.Random(flavour)), stream)
    assert {stamp_of(t) for t, data in zip(stream, sent, strict=True) if t == data} <= valid
