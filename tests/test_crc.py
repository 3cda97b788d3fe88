"""CRC-16/ARC and CRC-16/X25: known vectors, backend against fallback, variant learning."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from p1_testkit import seal

from agent.core import crc
from agent.core.crc import (
    FUNCTIONS,
    CrcChecker,
    CrcKind,
    crc16_arc,
    crc16_arc_pure,
    crc16_x25,
    crc16_x25_pure,
)

ARC_FUNCS = [crc16_arc, crc16_arc_pure, FUNCTIONS[CrcKind.ARC]]
X25_FUNCS = [crc16_x25, crc16_x25_pure, FUNCTIONS[CrcKind.X25]]


@pytest.mark.parametrize("fn", ARC_FUNCS)
def test_arc_check_value(fn: Callable[[bytes], int]) -> None:
    # The catalogue's check value of CRC-16/ARC.
    assert fn(b"123456789") == 0xBB3D
    assert fn(b"") == 0x0000


@pytest.mark.parametrize("fn", X25_FUNCS)
def test_x25_check_value(fn: Callable[[bytes], int]) -> None:
    # The catalogue's check value of CRC-16/IBM-SDLC: init and xorout 0xFFFF.
    assert fn(b"123456789") == 0x906E
    assert fn(b"") == 0x0000


def test_backend_is_known() -> None:
    assert crc.BACKEND in ("fastcrc", "python")


@pytest.mark.parametrize(
    ("name", "published"),
    [
        ("dsmr42-kaifa.txt", 0x6796),
        ("dsmr5-iskra.txt", 0x6EEE),
        ("dsmr5-iskra-two-mbus.txt", 0x56DD),
        ("dsmr5-warmtelink-unpadded-crc.txt", 0x0B9F),
        ("eon-hu-sagemcom.txt", 0x99DA),
        ("fluvius-v171.txt", 0x3AD7),
        ("fluvius-v171-alt.txt", 0xC4B0),
        ("iskra-ie.txt", 0xAD3B),
        ("sagemcom-t210-d-r.txt", 0x7EF9),
    ],
)
def test_real_meters_use_arc(
    name: str, published: int, read_telegram: Callable[[str], bytes]
) -> None:
    data = read_telegram(name)
    bang = data.index(b"!")
    body, written = data[: bang + 1], data[bang + 1 :].split(b"\r\n")[0]
    assert int(written, 16) == published
    assert crc16_arc(body) == published
    assert crc16_arc_pure(body) == published
    assert crc16_x25(body) != published


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_backend_equals_pure_python(data: bytes) -> None:
    assert crc16_arc(data) == crc16_arc_pure(data)
    assert crc16_x25(data) == crc16_x25_pure(data)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=512), st.integers(min_value=0), st.integers(1, 255))
def test_single_byte_error_always_detected(data: bytes, where: int, flip: int) -> None:
    # A CRC-16 detects every error burst of up to 16 bits.
    i = where % len(data)
    corrupted = data[:i] + bytes([data[i] ^ flip]) + data[i + 1 :]
    assert crc16_arc(corrupted) != crc16_arc(data)
    assert crc16_x25(corrupted) != crc16_x25(data)


BODY_A = b"/TST5\\2METER\r\n\r\n0-0:1.0.0(230101120000W)\r\n1-0:1.8.0(000123.456*kWh)\r\n!"
BODY_B = b"/TST5\\2METER\r\n\r\n0-0:1.0.0(230101120010W)\r\n1-0:1.8.0(000123.457*kWh)\r\n!"


def _sealed(body: bytes, kind: CrcKind) -> int:
    return int(seal(body, kind)[len(body) : len(body) + 4], 16)


def test_vectors_distinguish_variants() -> None:
    for body in (BODY_A, BODY_B):
        assert _sealed(body, CrcKind.ARC) != _sealed(body, CrcKind.X25)


def test_checker_learns_x25_then_rejects_arc() -> None:
    checker = CrcChecker()
    assert checker.kind is None
    assert checker.check(BODY_A, _sealed(BODY_A, CrcKind.X25)) is CrcKind.X25
    assert checker.kind is CrcKind.X25
    # Now an ARC-sealed telegram is a failure, not a second variant.
    assert checker.check(BODY_B, _sealed(BODY_B, CrcKind.ARC)) is None
    assert checker.kind is CrcKind.X25
    assert checker.check(BODY_B, _sealed(BODY_B, CrcKind.X25)) is CrcKind.X25


def test_checker_learns_arc_then_rejects_x25() -> None:
    checker = CrcChecker()
    assert checker.check(BODY_A, _sealed(BODY_A, CrcKind.ARC)) is CrcKind.ARC
    assert checker.kind is CrcKind.ARC
    assert checker.check(BODY_B, _sealed(BODY_B, CrcKind.X25)) is None
    assert checker.check(BODY_B, _sealed(BODY_B, CrcKind.ARC)) is CrcKind.ARC


def test_checker_does_not_learn_from_a_failure() -> None:
    checker = CrcChecker()
    wrong = _sealed(BODY_A, CrcKind.ARC) ^ 0x0100
    assert wrong != _sealed(BODY_A, CrcKind.X25)
    assert checker.check(BODY_A, wrong) is None
    assert checker.kind is None
    assert checker.check(BODY_A, _sealed(BODY_A, CrcKind.X25)) is CrcKind.X25


def test_checker_with_a_configured_variant_never_tries_the_other() -> None:
    checker = CrcChecker(CrcKind.ARC)
    assert checker.check(BODY_A, _sealed(BODY_A, CrcKind.X25)) is None
    assert checker.kind is CrcKind.ARC
