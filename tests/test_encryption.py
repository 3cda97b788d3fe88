"""Encrypted meters (issue 14): DLMS general-global-ciphering, AES-128-GCM, tag-proven repair.

Frames are sealed by `dlms-cosem` (an independent implementation, the one dsmr_parser's own
tests use) around the simulator's Luxembourg telegrams, with the header written out byte by byte
as the Smarty's P1 specification lays it out; they must decrypt to exactly those telegrams, and
dsmr_parser's decryption of the same frames must agree value for value with ours. The failures
(wrong key, wrong authentication key, truncated frame, a replayed frame counter, random bytes)
are each counted under their own reason, and a repaired frame is the exact telegram or rejected.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from agentproc import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import ConfigError, describe, load
from agent.core.decrypting import (
    COUNTER_REPLAYED,
    NOISE,
    TAG_MISMATCH,
    TRUNCATED,
    WRONG_AUTHENTICATION_KEY,
    WRONG_KEY,
    DecryptingPipeline,
)
from agent.core.dlms import DlmsFramer
from agent.core.gcm import LUXEMBOURG_AUTHENTICATION_KEY, GcmKeys, GcmOpener
from agent.core.pipeline import Result
from agent.encryptedmeter import EncryptedMeter
from agent.formats import jsonl
from agent.meterkeys import env_keys, source_keys
from agent.simulate import SimulatedMeter
from agent.sinks import damagelog

dlms_security = pytest.importorskip("dlms_cosem.security")
from dlms_cosem.connection import XDlmsApduFactory  # noqa: E402

KEY_HEX = "5A8F3B0C9D2E14A7B6C3D4E5F6071829"
KEY = bytes.fromhex(KEY_HEX)
KEYS = GcmKeys(KEY)
TITLE = b"SAG\x10\x30\x12\x34\x56"
FIRST_COUNTER = 0x2A01


def cosem_frame(telegram: bytes, counter: int, key: bytes = KEY) -> bytes:
    """The frame dlms-cosem seals, in the Smarty's layout: 0xDB, 8, title, 0x82 and the length,
    0x30, the frame counter, ciphertext and tag."""
    control = dlms_security.SecurityControlField(
        security_suite=0, authenticated=True, encrypted=True
    )
    sealed = dlms_security.encrypt(
        control, TITLE, counter, key, telegram, LUXEMBOURG_AUTHENTICATION_KEY
    )
    content = b"\x30" + counter.to_bytes(4, "big") + sealed
    return b"\xdb\x08" + TITLE + b"\x82" + len(content).to_bytes(2, "big") + content


def telegrams(count: int, seed: int = 1) -> list[bytes]:
    meter = SimulatedMeter("lux", seed=seed)
    return [meter.next_telegram() for _ in range(count)]


def sealed(count: int, seed: int = 1) -> tuple[list[bytes], list[bytes]]:
    """(telegrams, their frames) with consecutive frame counters."""
    plain = telegrams(count, seed)
    return plain, [cosem_frame(t, FIRST_COUNTER + i) for i, t in enumerate(plain)]


def feed_all(pipeline: DecryptingPipeline, data: bytes, chunk: int = 4096) -> list[Result]:
    results = []
    for start in range(0, len(data), chunk):
        results += pipeline.feed(data[start : start + chunk])
    return results + pipeline.close()


# -- decryption ------------------------------------------------------------------------------


def test_dlms_cosem_frames_decrypt_to_the_exact_telegram() -> None:
    plain, frames = sealed(20)
    # The frame is what dlms-cosem itself reads back as general-global-ciphering.
    apdu = XDlmsApduFactory.apdu_from_bytes(frames[0])
    assert apdu.to_plain_apdu(KEY, LUXEMBOURG_AUTHENTICATION_KEY) == plain[0]
    results = DecryptingPipeline(KEYS).feed(b"".join(frames))
    assert [r.status for r in results] == ["valid"] * 20
    assert [r.frame.text + b"\r\n" for r in results] == plain
    assert results[0].telegram is not None and results[0].telegram.meter_time is not None


def test_our_seal_is_dlms_cosems() -> None:
    plain, frames = sealed(2)
    ours = EncryptedMeter("smarty", KEYS).opener.seal(TITLE, FIRST_COUNTER, plain[0])
    assert frames[0].endswith(ours)


def test_frames_split_anywhere_and_garbage_between_them() -> None:
    plain, frames = sealed(6)
    rng = random.Random(3)
    stream = b"".join(
        bytes(rng.randrange(256) for _ in range(rng.randrange(300))) + f for f in frames
    )
    for chunk in (1, 7, 500):
        results = feed_all(DecryptingPipeline(KEYS), stream, chunk)
        assert [r.frame.text + b"\r\n" for r in results if r.accepted] == plain, chunk


def test_differential_against_dsmr_parsers_decryption() -> None:
    """dsmr_parser (MSN: the Smarty, with its fixed authentication key) decrypts the same frames:
    every object it finds has our value, unit and time."""
    specs = pytest.importorskip("dsmr_parser.telegram_specifications")
    from dsmr_parser.parsers import TelegramParser
    from test_dsmr_parser_diff import _MSN_PLAIN, Comparison, compare

    _, frames = sealed(10, seed=7)
    results = DecryptingPipeline(KEYS).feed(b"".join(frames))
    parser = TelegramParser(specs.MSN)
    comparison = Comparison()
    for frame, result in zip(frames, results, strict=True):
        theirs = parser.parse(
            frame.hex(),
            encryption_key=KEY_HEX,
            authentication_key=LUXEMBOURG_AUTHENTICATION_KEY.hex(),
        )
        decrypted = TelegramParser(_MSN_PLAIN).parse(result.frame.text.decode() + "\r\n")
        assert theirs.to_json() == decrypted.to_json() and len(list(theirs)) > 30
        assert result.telegram is not None
        compare("smarty-simulated", result.frame.text, result.telegram, comparison, spec=_MSN_PLAIN)
    assert comparison.mismatches == []
    assert comparison.compared > 10 * 30


# -- what is refused, and why ----------------------------------------------------------------


def test_wrong_key_and_wrong_authentication_key_are_told_apart() -> None:
    _, frames = sealed(3)
    wrong = DecryptingPipeline(GcmKeys(bytes(16)))
    assert [r.reason for r in wrong.feed(b"".join(frames))] == [WRONG_KEY] * 3
    wrong_ak = DecryptingPipeline(GcmKeys(KEY, bytes(16)))
    assert [r.reason for r in wrong_ak.feed(b"".join(frames))] == [WRONG_AUTHENTICATION_KEY] * 3
    assert wrong_ak.rejections[WRONG_AUTHENTICATION_KEY] == 3
    assert wrong.crc_failures == 3  # each failed its check (the tag) on arrival


def test_truncated_frames_are_counted_and_the_next_one_survives() -> None:
    plain, frames = sealed(3)
    cut = frames[1][: len(frames[1]) - 200]
    pipeline = DecryptingPipeline(KEYS)
    results = feed_all(pipeline, frames[0] + cut + frames[2] + frames[0][:100])
    assert [r.status for r in results] == ["valid", "rejected", "valid", "rejected"]
    assert [r.reason for r in results if not r.accepted] == [TRUNCATED, TRUNCATED]
    assert results[2].frame.text + b"\r\n" == plain[2]
    assert pipeline.frames.frames_truncated == 2


def test_a_replayed_frame_counter_is_refused() -> None:
    _, frames = sealed(3)
    pipeline = DecryptingPipeline(KEYS)
    results = pipeline.feed(frames[0] + frames[1] + frames[1] + frames[0] + frames[2])
    assert [r.reason for r in results] == [None, None, COUNTER_REPLAYED, COUNTER_REPLAYED, None]
    assert pipeline.rejections[COUNTER_REPLAYED] == 2


def test_ten_megabytes_of_random_bytes() -> None:
    """No exception, nothing accepted, memory bounded by the frame limit, every byte counted."""
    rng = random.Random(14)
    pipeline = DecryptingPipeline(KEYS, max_frame=4096)
    results = []
    largest = 0
    for _ in range(160):
        results += pipeline.feed(rng.randbytes(65536))
        largest = max(largest, len(pipeline.frames._buf))
    results += pipeline.close()
    assert not any(r.accepted for r in results)
    assert all(r.error is None and r.reason in (NOISE, TRUNCATED) for r in results)
    assert largest <= 4096
    assert pipeline.framer.bytes_in == 160 * 65536
    assert pipeline.framer.bytes_skipped >= 160 * 65536 - 4096 * len(results)


def test_framer_bounds_a_frame_that_claims_too_much() -> None:
    framer = DlmsFramer(max_frame=256)
    header = b"\xdb\x08" + TITLE + b"\x82\xff\xff\x30"
    assert framer.feed(header + bytes(70000)) == []
    assert len(framer._buf) <= 256


_PLAIN, _FRAMES = sealed(4)


@settings(max_examples=150, deadline=None)
@given(
    garbage=st.lists(st.binary(max_size=80), min_size=5, max_size=5),
    cuts=st.lists(st.integers(1, 400), max_size=30),
    lost=st.one_of(st.none(), st.tuples(st.integers(0, 3), st.integers(1, 1100))),
)
def test_any_stream_of_frames_and_garbage(
    garbage: list[bytes], cuts: list[int], lost: tuple[int, int] | None
) -> None:
    """Whatever lies between the frames, however the stream is cut, and with a block of one
    frame lost: no exception, a bounded buffer, and every accepted telegram one the meter sealed,
    once (a frame that lost its last byte to the line and took the next frame's first is
    accepted only if the tag proves its telegram)."""
    frames = list(_FRAMES)
    if lost is not None:
        which, size = lost
        frames[which] = frames[which][:-size]
    stream = b"".join(g + f for g, f in zip(garbage, [*frames, b""], strict=True))
    pipeline = DecryptingPipeline(KEYS, max_frame=2048)
    results = []
    at = 0
    for cut in cuts:
        results += pipeline.feed(stream[at : at + cut])
        at += cut
        assert len(pipeline.frames._buf) <= 2048
    results += pipeline.feed(stream[at:]) + pipeline.close()
    accepted = [r.frame.text + b"\r\n" for r in results if r.accepted]
    assert all(r.error is None for r in results)
    assert set(accepted) <= set(_PLAIN) and len(set(accepted)) == len(accepted)


# -- repair proven by the tag ----------------------------------------------------------------


def _damage(frame: bytes, offsets: list[int], rng: random.Random, clear: bool = True) -> bytes:
    data = bytearray(frame)
    for at in offsets:
        ones = [bit for bit in range(8) if data[at] >> bit & 1]
        data[at] = (
            data[at] & ~(1 << rng.choice(ones))
            if clear and ones
            else data[at] ^ rng.randrange(1, 256)
        )
    return bytes(data)


def _repaired(frames: list[bytes], damaged: dict[int, bytes]) -> list[Result]:
    pipeline = DecryptingPipeline(KEYS)
    return pipeline.feed(b"".join(damaged.get(i, f) for i, f in enumerate(frames)))


def test_one_damaged_ciphertext_byte_is_repaired_exactly() -> None:
    plain, frames = sealed(60)
    rng = random.Random(5)
    start = 2 + 8 + 3 + 1 + 4  # the ciphertext's first byte
    damaged = {
        i: _damage(f, [rng.randrange(start, len(f))], rng, clear=False)
        for i, f in enumerate(frames)
        if i % 2
    }
    results = _repaired(frames, damaged)
    assert [r.frame.text + b"\r\n" for r in results] == plain
    repaired = [r for r in results if r.status == "repaired"]
    assert len(repaired) == 30
    assert {r.repair.method for r in repaired if r.repair} == {"gcm"}
    assert all(r.failure == "tag" and r.repair and len(r.repair.changes) == 1 for r in repaired)


def test_bit_clears_in_two_and_three_bytes_and_the_tag() -> None:
    plain, frames = sealed(40)
    rng = random.Random(8)
    start = 2 + 8 + 3 + 1 + 4
    damaged = {}
    for i, frame in enumerate(frames):
        if i % 4 == 1:
            damaged[i] = _damage(frame, rng.sample(range(start, len(frame)), 2), rng)
        elif i % 4 == 3:
            damaged[i] = _damage(frame, [len(frame) - 1 - rng.randrange(12)], rng)  # the tag
    results = _repaired(frames, damaged)
    assert [r.frame.text + b"\r\n" for r in results] == plain
    tag_lines = {c.line for r in results if r.repair for c in r.repair.changes}
    assert "tag" in tag_lines


def test_a_damaged_frame_counter_is_proven_from_the_last_one() -> None:
    plain, frames = sealed(4)
    damaged = {2: _damage(frames[2], [2 + 8 + 3 + 1 + 3], random.Random(1))}
    results = _repaired(frames, damaged)
    assert [r.frame.text + b"\r\n" for r in results] == plain
    assert results[2].repair is not None and results[2].repair.changes[0].line == "header"


def test_heavy_damage_is_rejected_never_miscorrected() -> None:
    plain, frames = sealed(30)
    rng = random.Random(9)
    start = 2 + 8 + 3 + 1 + 4
    damaged = {
        i: _damage(f, rng.sample(range(start, len(f)), 5), rng, clear=False)
        for i, f in enumerate(frames)
        if i % 2
    }
    results = _repaired(frames, damaged)
    for i, result in enumerate(results):
        if result.accepted:
            assert result.frame.text + b"\r\n" == plain[i]
        else:
            assert i in damaged and result.reason == TAG_MISMATCH


def test_repair_is_a_pure_function_of_bytes_and_key() -> None:
    plain = telegrams(2)
    opener = GcmOpener(KEYS)
    ciphertext = bytearray(opener.seal(TITLE, 7, plain[1]))
    ciphertext[100] ^= 0x10
    body, tag = bytes(ciphertext[:-12]), bytes(ciphertext[-12:])
    first = opener.repair(TITLE, 7, body, tag, plain[0])
    again = GcmOpener(KEYS).repair(TITLE, 7, body, tag, plain[0])
    assert first == again and first is not None and first.plaintext == plain[1]


def test_gcm_method_in_jsonl_and_the_noise_log() -> None:
    _, frames = sealed(3)
    damaged = {1: _damage(frames[1], [300], random.Random(2))}
    result = _repaired(frames, damaged)[1]
    record = json.loads(jsonl.dumps(result))
    assert record["status"] == "repaired" and record["repair"]["method"] == "gcm"
    assert record["repair"]["changes"][0]["offset"] == 300 - (2 + 8 + 3 + 1 + 4)
    noise = damagelog.record(result, "smarty", 0.0)
    assert noise["method"] == "gcm" and noise["failure"] == "tag"


# -- keys: settings, environment, check-config -----------------------------------------------


def test_keys_from_environment_and_files(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY_HEX.lower() + "\n")
    settings = load({}, {"P1_DECRYPTION_KEY": KEY_HEX})
    assert source_keys(settings, settings.sources[0]) == KEYS
    settings = load({}, {"P1_DECRYPTION_KEY_FILE": str(key_file)})
    assert source_keys(settings, settings.sources[0]) == KEYS
    assert env_keys({"P1_DECRYPTION_KEY": KEY_HEX, "P1_AUTHENTICATION_KEY": "00" * 16}) == GcmKeys(
        KEY, bytes(16)
    )
    assert env_keys({}) is None
    config = tmp_path / "p1.toml"
    config.write_text(
        f'[[source]]\nurl = "socket://meter:23"\ndecryption_key_file = "{key_file}"\n'
        '[[source]]\nurl = "/dev/ttyUSB0"\n'
    )
    settings = load({"config": str(config)}, {})
    assert [source_keys(settings, s) for s in settings.sources] == [KEYS, None]
    shown = "\n".join(describe(settings))
    assert f'decryption_key_file = "{key_file}"' in shown and KEY_HEX.lower() not in shown


def test_a_key_never_in_the_config_file_nor_in_a_message(tmp_path: Path) -> None:
    config = tmp_path / "p1.toml"
    config.write_text(f'decryption_key = "{KEY_HEX}"\n')
    with pytest.raises(ConfigError, match="must not be in the config file"):
        load({"config": str(config)}, {})
    bad = KEY_HEX[:-1] + "Z"
    settings = load({}, {"P1_DECRYPTION_KEY": bad})
    with pytest.raises(ConfigError) as error:
        source_keys(settings, settings.sources[0])
    assert bad not in str(error.value) and "P1_DECRYPTION_KEY" in str(error.value)
    assert repr(KEYS) == "GcmKeys(****)"


def test_simulate_then_replay_from_the_command_line(tmp_path: Path) -> None:
    capture = tmp_path / "smarty.bin"
    made = run_cli(
        "simulate", "--flavour", "smarty", "--key", KEY_HEX, "--count", "30",
        "--noise", "bit_clear=0.3", "--output", str(capture),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert b"corrupted" in made.stderr
    replayed = run_cli(
        "replay", str(capture), "--format", "jsonl", env={"P1_DECRYPTION_KEY": KEY_HEX}
    )
    assert replayed.returncode == 0, replayed.stderr
    records = [json.loads(line) for line in replayed.stdout.splitlines()]
    assert len(records) == 30 and all(r["status"] != "rejected" for r in records)
    assert any(r["status"] == "repaired" and r["repair"]["method"] == "gcm" for r in records)
    wrong = run_cli("replay", str(capture), env={"P1_DECRYPTION_KEY": "00" * 16})
    assert b"wrong_key 30" in wrong.stderr
    assert KEY_HEX.encode() not in wrong.stderr + replayed.stderr
    missing = run_cli("simulate", "--flavour", "smarty", "--count", "1")
    assert missing.returncode == 2 and b"--key" in missing.stderr


def test_check_config_says_whether_a_frame_decrypted(tmp_path: Path) -> None:
    _, frames = sealed(3)
    capture = tmp_path / "smarty.bin"
    capture.write_bytes(b"".join(frames))
    args = ("check-config", "--source", f"file:{capture}", "--wait", "5")
    good = run_cli(*args, env={"P1_DECRYPTION_KEY": KEY_HEX, "P1_DATA_DIR": str(tmp_path)})
    assert good.returncode == 0, good.stdout
    assert b"decrypted" in good.stdout
    bad = run_cli(*args, env={"P1_DECRYPTION_KEY": "11" * 16, "P1_DATA_DIR": str(tmp_path)})
    assert bad.returncode == 1
    assert b"decryption key is wrong" in bad.stdout
    for out in (good.stdout, bad.stdout):
        assert KEY_HEX.encode() not in out and b"11" * 16 not in out
        assert b"decryption_key" in out  # shown masked, with where it came from
    none = run_cli(*args, env={"P1_DATA_DIR": str(tmp_path)})
    assert none.returncode == 1 and b"sends encrypted frames" in none.stdout


def test_an_authentication_key_alone_is_refused_in_one_line(tmp_path: Path) -> None:
    settings = load({}, {"P1_AUTHENTICATION_KEY": KEY_HEX})
    with pytest.raises(ConfigError, match="no decryption key"):
        source_keys(settings, settings.sources[0])
    failed = run_cli("check-config", "--no-test", env={"P1_AUTHENTICATION_KEY": KEY_HEX})
    assert failed.returncode == 2 and failed.stderr.count(b"\n") == 1, failed.stderr
