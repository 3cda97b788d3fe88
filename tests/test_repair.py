"""The repair engine: each failure mode of the line, the safety rules, and what it reports."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.pipeline import INTERNAL_ERROR, MeterPipeline, Result
from agent.core.telegram import Telegram
from agent.formats import jsonl
from agent.simulate import SimulatedMeter
from agent.sinks.damagelog import record
from agent.sinks.prometheus import Metrics

Corrupt = Callable[[bytes], bytes]


def warm(flavour: str, seed: int = 1) -> tuple[MeterPipeline, SimulatedMeter]:
    """A pipeline that has seen a few clean telegrams of the meter (its profile is ready)."""
    meter = SimulatedMeter(flavour, seed=seed)
    pipeline = MeterPipeline()
    for _ in range(4):
        assert [r.status for r in pipeline.feed(meter.next_telegram())] == ["valid"]
    return pipeline, meter


def sent(telegram: bytes) -> bytes:
    """The telegram as the meter sent it, `/` through the checksum: what an accepted frame holds."""
    return telegram[: telegram.rindex(b"!") + 5]


def run_one(flavour: str, corrupt: Corrupt, seed: int = 1) -> tuple[list[Result], bytes]:
    pipeline, meter = warm(flavour, seed)
    original = meter.next_telegram()
    results = pipeline.feed(corrupt(original))
    results += pipeline.feed(meter.next_telegram())  # the next telegram settles held frames
    results += pipeline.close()
    return results, original


def at(marker: bytes, offset: int = 0) -> Callable[[bytes], int]:
    return lambda t: t.index(marker) + offset


def substitute(position: Callable[[bytes], int], byte: int) -> Corrupt:
    def corrupt(t: bytes) -> bytes:
        b = bytearray(t)
        b[position(t)] = byte
        return bytes(b)

    return corrupt


def insert(position: Callable[[bytes], int], data: bytes) -> Corrupt:
    return lambda t: t[: position(t)] + data + t[position(t) :]


def drop(position: Callable[[bytes], int]) -> Corrupt:
    return lambda t: t[: position(t)] + t[position(t) + 1 :]


# (flavour, corruption, method the engine must report)
MODES: dict[str, tuple[str, Corrupt, str]] = {
    "start byte mangled": ("hu", substitute(lambda t: 0, 0x0E), "start"),
    "start byte lost": ("hu", drop(lambda t: 0), "start"),
    "garbage before start": ("dsmr5", lambda t: b"\x00\x8c\xfe" + t, ""),
    "garbage before pause line": ("hu", insert(at(b"0-0:96.13.0("), b"\x13\xe7\x00"), "delete"),
    "first 0 of pause line as space": ("hu", substitute(at(b"0-0:96.13.0("), 0x20), "template"),
    "bytes inside the 0xFF run": (
        "hu",
        lambda t: t.replace(b"\xff" * 6, b"\xff\x7f\xff\x00\xffZ", 1),
        "template",
    ),
    "digit to digit in a register": ("hu", substitute(at(b"1-0:1.8.0(", 17), ord("9")), "syndrome"),
    "digit to letter": ("dsmr5", substitute(at(b"1-0:32.7.0(", 12), ord("x")), "erasure"),
    "bit flip in OBIS code": ("dsmr5", substitute(at(b"1-0:52.7.0(", 2), ord("1")), "template"),
    "CR lost": ("dsmr5", drop(at(b"\r\n1-0:1.7.0")), "insert"),
    "LF inserted": ("hu", insert(at(b"*kWh)", 2), b"\n"), "delete"),
    "! damaged": ("dsmr5", substitute(lambda t: t.rindex(b"!"), ord("#")), "frame_end"),
    "digit dropped": ("hu", drop(at(b"1-0:32.7.0(", 12)), "insert"),
    "byte inserted": ("dsmr5", insert(at(b"1-0:1.8.1(", 14), b"7"), "delete"),
    "checksum digit damaged": (
        "hu",
        lambda t: t[:-3] + (b"Z" if t[-3:-2] != b"Z" else b"Y") + t[-2:],
        "checksum",
    ),
    "checksum hex to hex": (
        "dsmr5",
        lambda t: t[:-6] + (b"0" if t[-6:-5] != b"0" else b"1") + t[-5:],
        "checksum",
    ),
    ". turned into / (split frame)": ("hu", substitute(at(b"1-0:1.8.1(", 16), ord("/")), "join"),
    ") turned into ! (early end)": ("dsmr5", substitute(at(b"*kWh)", 4), ord("!")), "join"),
    "two errors, one predicted": (
        "hu",
        lambda t: substitute(at(b"1-0:2.8.0(", 18), ord("3"))(
            substitute(at(b"*kvarh)", 2), ord("x"))(t)
        ),
        "template+syndrome",
    ),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_failure_mode_recovers_exact_telegram(mode: str) -> None:
    flavour, corrupt, method = MODES[mode]
    results, original = run_one(flavour, corrupt)
    assert corrupt(original) != original
    accepted = [r for r in results if r.accepted]
    first = accepted[0]
    assert first.frame.text == sent(original)
    if method:
        assert first.status == "repaired"
        assert first.repair is not None and method in first.repair.method
        assert first.failure is not None
        assert first.repair.changes
    else:  # garbage before `/` is skipped by the framer: nothing to repair
        assert first.status == "valid"
    assert not [r for r in results if r.status == "rejected"]


def test_change_records_offset_line_and_bytes() -> None:
    flavour, corrupt, _ = MODES["first 0 of pause line as space"]
    results, original = run_one(flavour, corrupt)
    repaired = next(r for r in results if r.status == "repaired")
    assert repaired.repair is not None
    (repair,) = repaired.repair.changes
    change = repair.record()
    assert change == {
        "offset": original.index(b"0-0:96.13.0("),
        "from": "20",
        "to": "30",
        "line": "0-0:96.13.0",
    }
    rec = json.loads(jsonl.dumps(repaired))
    assert rec["status"] == "repaired" and rec["repair"]["changes"] == [change]
    assert rec["telegram"].encode("latin-1") == sent(original)
    log = record(repaired, "m", 1_700_000_000.0)
    assert log["method"] == "template" and log["changes"] == [change] and log["failure"] == "crc"
    metrics = Metrics()
    metrics.observe("m", repaired, 0.0)
    text = "\n".join(str(m) for m in metrics.collect())
    assert "0-0:96.13.0" in text and "template" in text


def test_two_digit_errors_in_values_are_rejected_not_guessed() -> None:
    # Two digit-for-digit errors: the CRC can locate neither, and the engine must not guess.
    def corrupt(t: bytes) -> bytes:
        t = substitute(
            at(b"1-0:32.7.0(", 12),
            ord("1") if t[t.index(b"1-0:32.7.0(") + 12] != ord("1") else ord("2"),
        )(t)
        return substitute(
            at(b"1-0:1.7.0(", 14),
            ord("5") if t[t.index(b"1-0:1.7.0(") + 14] != ord("5") else ord("6"),
        )(t)

    results, original = run_one("dsmr5", corrupt)
    first = results[0]
    assert first.status == "rejected"
    assert first.reason in ("unrepairable", "ambiguous")
    assert all(r.frame.text in (sent(original),) or r.status != "repaired" for r in results)


def test_many_errors_are_rejected() -> None:
    def corrupt(t: bytes) -> bytes:
        b = bytearray(t)
        for i in range(40, 400, 30):
            b[i] = 0x00
        return bytes(b)

    results, _ = run_one("hu", corrupt)
    assert results[0].status == "rejected" and results[0].reason == "too_many_errors"


def test_no_repair_before_the_meter_is_known() -> None:
    meter = SimulatedMeter("dsmr5")
    pipeline = MeterPipeline()
    broken = substitute(at(b"1-0:52.7.0(", 2), ord("1"))(meter.next_telegram())
    (result,) = pipeline.feed(broken)
    assert result.status == "rejected" and result.reason == "crc"


def test_implausible_candidate_is_refused() -> None:
    # The clock going backwards cannot be what the meter sent, even with a matching CRC.
    pipeline, _ = warm("dsmr5")
    old = SimulatedMeter("dsmr5", seed=1).next_telegram()  # the meter's first telegram again
    assert pipeline.feed(old)[0].status == "valid"  # valid telegrams are never second-guessed
    broken = substitute(at(b"1-0:52.7.0(", 2), ord("1"))(old)
    (result,) = pipeline.feed(broken)
    assert result.status == "rejected"


CORRUPTIONS = st.sampled_from(["substitute", "flip", "drop", "insert"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flavour=st.sampled_from(["hu", "dsmr5"]),
    seed=st.integers(0, 50),
    kind=CORRUPTIONS,
    where=st.floats(0, 1, exclude_max=True),
    byte=st.integers(0, 255),
    bit=st.integers(0, 7),
)
def test_any_single_corruption_gives_the_original_or_a_rejection(
    flavour: str, seed: int, kind: str, where: float, byte: int, bit: int
) -> None:
    pipeline, meter = warm(flavour, seed)
    original = meter.next_telegram()
    end = len(sent(original))
    position = int(where * end)
    data = bytearray(original)
    if kind == "substitute":
        data[position] = byte if byte != data[position] else byte ^ 0x55
    elif kind == "flip":
        data[position] ^= 1 << bit
    elif kind == "drop":
        del data[position]
    else:
        data.insert(position, byte)
    follower = meter.next_telegram()
    results = pipeline.feed(bytes(data)) + pipeline.feed(follower) + pipeline.close()
    for result in results:
        if result.accepted:
            assert result.frame.text in (sent(original), sent(follower))
    assert any(r.accepted and r.frame.text == sent(follower) for r in results)


def test_header_and_checksum_both_damaged_is_not_a_new_meter() -> None:
    # A damaged identification line and a lost checksum must not pass as an unchecked meter.
    pipeline, meter = warm("dsmr5")
    original = meter.next_telegram()
    broken = original.replace(b"/ISK5\\2M550T", b"/ISK5\\2M5%0T", 1)
    broken = broken[: broken.rindex(b"!") + 1] + b"\r\n"
    (result,) = pipeline.feed(broken)
    assert result.status != "valid"


def test_physically_inconsistent_candidate_is_refused() -> None:
    from agent.core.repair.plausible import implausible
    from agent.core.telegram import Decoder

    meter = SimulatedMeter("dsmr5")
    body = sent(meter.next_telegram())
    telegram = Decoder().decode(body[: body.rindex(b"!") + 1])
    assert implausible(telegram, None) is None
    line = next(x for x in body.split(b"\r\n") if x.startswith(b"1-0:21.7.0("))
    inflated = body.replace(line, b"1-0:21.7.0(54.209*kW)")
    assert "power_import_l1_kw" in str(
        implausible(Decoder().decode(inflated[: inflated.rindex(b"!") + 1]), None)
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flavour=st.sampled_from(["hu", "dsmr5"]),
    seed=st.integers(0, 30),
    where=st.floats(0, 1, exclude_max=True),
    digit=st.integers(0, 3),
    hexdigit=st.sampled_from(b"0123456789ABCDEF"),
)
def test_checksum_damage_with_a_body_error_is_never_fitted(
    flavour: str, seed: int, where: float, digit: int, hexdigit: int
) -> None:
    # The checksum no longer says what the body should be: a search that "fits" the body to it
    # would invent a value. The exact telegram (when the damage is undone) or a rejection only.
    pipeline, meter = warm(flavour, seed)
    original = meter.next_telegram()
    data = bytearray(original)
    checksum_at = original.rindex(b"!") + 1 + digit
    data[checksum_at] = (
        hexdigit if hexdigit != data[checksum_at] else ord("F") ^ ord("0") ^ hexdigit
    )
    position = int(where * (checksum_at - digit - 2)) + 1
    data[position] = ord("x") if data[position] != ord("x") else ord("y")
    follower = meter.next_telegram()
    results = pipeline.feed(bytes(data)) + pipeline.feed(follower) + pipeline.close()
    for result in results:
        if result.accepted:
            assert result.frame.text in (sent(original), sent(follower))


def test_a_bug_in_the_core_is_an_internal_error_not_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    # A decoder that raises: the frame is rejected as internal_error with the traceback, the
    # stream goes on, and nothing calls it damage on the line.
    telegrams = [SimulatedMeter("dsmr5").next_telegram() for _ in range(3)]
    pipeline = MeterPipeline()
    results = pipeline.feed(telegrams[0])
    original = pipeline.decoder.decode

    def broken(body: bytes) -> Telegram:
        raise KeyError("a decoder bug")

    monkeypatch.setattr(pipeline.decoder, "decode", broken)
    (failed,) = pipeline.feed(telegrams[1])
    monkeypatch.setattr(pipeline.decoder, "decode", original)
    results += pipeline.feed(telegrams[2]) + pipeline.close()
    assert failed.status == "rejected" and failed.reason == INTERNAL_ERROR
    assert failed.failure is None  # it arrived intact
    assert failed.error is not None and "KeyError: 'a decoder bug'" in failed.error
    assert "Traceback" in failed.error
    assert [r.status for r in results] == ["valid", "valid"]
    assert pipeline.rejections == {INTERNAL_ERROR: 1}
