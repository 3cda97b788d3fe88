"""The parity masker passes plain bytes (ASCII, 0xFF) on without counting them while they cannot
change its state. It must act exactly as the masker that counts every byte: same bytes out of
every feed and close, same `masking`, same `held`, its switches at the same byte, on any mix of
ASCII, 7E1 text, 0xFF runs, noise and random bytes, fed in any chunks."""

from __future__ import annotations

import copy
import random
from collections import deque
from functools import cache

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from p1_testkit import even_parity, simulated

from agent.core.parity import BLOCK, HOLD, MIN_TEXT, SPAN, WINDOW, ParityMasker, _plain


def _is_text(b: int) -> bool:
    low = b & 0x7F
    return 0x20 <= low < 0x7F or low in (0x0A, 0x0D)


def _is_odd(b: int) -> bool:
    return b.bit_count() % 2 == 1


# The bytes outside each class (odd, text, text with bit 7, odd text), for translate to delete.
_OUTSIDE = [
    bytes(b for b in range(256) if not keep(b))
    for keep in (
        _is_odd,
        _is_text,
        lambda b: _is_text(b) and b >= 0x80,
        lambda b: _is_text(b) and _is_odd(b),
    )
]

_LOW_7 = bytes(b & 0x7F for b in range(256))


def counts(data: bytes) -> list[int]:
    """size, odd, text, text with bit 7, odd text."""
    return [len(data), *(len(data.translate(None, outside)) for outside in _OUTSIDE)]


class Reference:
    """The masker as it was before the fast path: every byte counted, a verdict after every
    piece (up to a block boundary or the end of a feed)."""

    def __init__(self) -> None:
        self.masking = False
        self.blocks: deque[list[int]] = deque(maxlen=WINDOW // BLOCK)
        self.block = b""
        self.hold: bytearray | None = bytearray()

    @property
    def held(self) -> int:
        return len(self.hold) if self.hold is not None else 0

    def feed(self, data: bytes) -> bytes:
        out = b""
        pos = 0
        while pos < len(data):
            piece = data[pos : pos + BLOCK - len(self.block)]
            pos += len(piece)
            self.block += piece
            size, odd, text, high, text_odd = self.counts()
            verdict = None
            if text_odd >= 8 and text_odd * 4 > text:
                verdict = False
            elif text >= MIN_TEXT and odd * 64 <= size and high * 4 >= text:
                verdict = True
            if len(self.block) == BLOCK:
                self.blocks.append(counts(self.block))
                self.block = b""
            if verdict is not None:
                self.masking = verdict
            if self.hold is None:
                out += self.apply(piece)
                continue
            self.hold += piece
            if verdict is not None or len(self.hold) >= HOLD:
                out += self.apply(bytes(self.hold))
                self.hold = None
        return out

    def counts(self) -> list[int]:
        """The sums over the window and the block."""
        return [sum(c) for c in zip(*self.blocks, counts(self.block), strict=True)]

    def close(self) -> bytes:
        held, self.hold = self.hold, bytearray() if self.hold else self.hold
        return self.apply(bytes(held)) if held else b""

    def apply(self, data: bytes) -> bytes:
        return data.translate(_LOW_7) if self.masking else data


@cache
def telegrams(flavour: str) -> bytes:
    return b"".join(simulated(flavour, 3))


def text(rng: random.Random, size: int, odd: float = 0.5) -> bytes:
    """Telegram-like ASCII: printable characters in CRLF lines, `odd` of them of odd parity."""
    chars = [
        rng.choice(b"1247:*-/ACDFLMORT" if rng.random() < odd else b"03569.()BEGHJKNP")
        for _ in range(size)
    ]
    for at in range(rng.randrange(40), size - 1, 40):
        chars[at : at + 2] = b"\r\n"
    return bytes(chars)


def part(kind: str, size: int, seed: float) -> bytes:
    rng = random.Random(seed)
    if kind == "ascii":
        return text(rng, size)
    if kind == "7e1":  # of any share of bytes with bit 7 set
        return even_parity(text(rng, size, rng.random()))
    if kind == "ff":
        return b"\xff" * size
    if kind == "ffmix":  # short 0xFF runs between bits of the other kinds
        mix = b""
        while len(mix) < size:
            mix += b"\xff" * rng.randrange(1, 200) + part(
                rng.choice(KINDS), rng.randrange(1, 300), seed
            )
        return mix[:size]
    if kind == "random":
        return rng.randbytes(size)
    if kind == "noise":  # ASCII with a few text bytes that have bit 7 set, around the limit
        chars = bytearray(text(rng, size))
        for _ in range(min(size, rng.randrange(MIN_TEXT // 2))):
            chars[rng.randrange(size)] |= 0x80
        return bytes(chars)
    stream = telegrams(kind)
    start = rng.randrange(len(stream))
    return stream[start : start + size * 4]


KINDS = ["ascii", "7e1", "ff", "random", "noise", "hu", "dsmr5", "dsmr22"]
ALL_KINDS = [*KINDS, "ffmix"]
# Runs of a block's size and around it too: a block of 0xFF is checked in one go.
SHORT_OR_LONG = st.one_of(
    st.integers(1, 3), st.integers(1, 3 * BLOCK), st.sampled_from([BLOCK, 2 * BLOCK])
)
SIZES = st.one_of(st.integers(1, 80), st.integers(1, 3000), st.integers(1, 3 * SPAN))


def window_counts(masker: ParityMasker) -> list[int]:
    """The masker's sums over the window and the block, brought up to date if plain bytes passed
    uncounted (on a copy: the masker goes on as it was)."""
    if masker._stale:
        masker = copy.copy(masker)
        masker._blocks, masker._window, masker._block = copy.deepcopy(
            (masker._blocks, masker._window, masker._block)
        )
        masker._catch_up()
    window, block = masker._window, masker._block
    fields = ("size", "odd", "text", "text_high", "text_odd")
    return [getattr(window, f) + getattr(block, f) for f in fields]


def compare(data: bytes, feeds: list[tuple[int, bool]]) -> ParityMasker:
    masker, reference = ParityMasker(), Reference()
    pos = 0
    while pos < len(data):
        for size, close in feeds:
            piece = data[pos : pos + size]
            pos += len(piece)
            assert masker.feed(piece) == reference.feed(piece), pos
            assert (masker.masking, masker.held) == (reference.masking, reference.held), pos
            assert window_counts(masker) == reference.counts(), pos
            if close:  # replay's next file: the state goes on
                assert masker.close() == reference.close(), pos
    assert masker.close() == reference.close()
    assert masker.masking == reference.masking
    return masker


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(
        st.tuples(
            st.sampled_from(ALL_KINDS),
            st.one_of(SHORT_OR_LONG, st.integers(1, 4 * WINDOW)),
            st.integers(0, 2**32),
        ),
        min_size=1,
        max_size=16,
    ),
    feeds=st.lists(st.tuples(SIZES, st.booleans()), min_size=1, max_size=12),
)
# Counted up to inside a block, then plain bytes in one feed: more than are kept, not 2x that.
@example([("ascii", 500, 1), ("ascii", 7000, 2), ("random", 10, 3)], [(500, False), (7000, False)])
def test_the_masker_acts_as_the_one_that_counts_every_byte(
    parts: list[tuple[str, int, float]], feeds: list[tuple[int, bool]]
) -> None:
    compare(b"".join(part(*p) for p in parts), feeds)


def test_long_plain_streams_then_a_7e1_meter_then_plain_again() -> None:
    hu, d5, old = telegrams("hu") * 40, telegrams("dsmr5") * 40, even_parity(telegrams("dsmr22"))
    data = hu + d5 + old * 8 + d5 + old + hu
    for feeds in ([(len(data), False)], [(1 << 20, False)], [(2348, False)], [(700, True)]):
        compare(data, feeds)


def test_the_mask_verdict_reached_while_0xff_pushes_8n1_text_out_of_the_window() -> None:
    """8N1 text, then 7E1 text with `high` bytes that have bit 7 set among 4 times as many, then
    0xFF: once the 8N1 text has left the window, the 7E1 text alone decides."""
    for high in range(MIN_TEXT // 4 - 4, MIN_TEXT // 4 + 4):
        head = text(random.Random(high), 2 * BLOCK) + even_parity(b"a" * high + b"0" * 3 * high)
        data = head + b"\xff" * 2 * WINDOW
        masker = compare(data, [(len(head), False), (len(data), False)])
        assert masker.masking == (high * 4 >= MIN_TEXT)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([b"a", b"\r", b"\xff", b"\x80", b"\xfe"]), SHORT_OR_LONG),
        max_size=20,
    )
)
@example([(b"\xff", BLOCK), (b"\x80", 1)])
@example([(b"a", 5), (b"\xff", 2 * BLOCK), (b"\xfe", 1), (b"a", 1)])
@example([(b"\xff", BLOCK - 1), (b"\x80", 1), (b"\xff", 1)])
def test_plain_bytes_are_those_that_are_ascii_or_0xff(runs: list[tuple[bytes, int]]) -> None:
    data = b"".join(byte * size for byte, size in runs)
    assert _plain(data) == all(b < 0x80 or b == 0xFF for b in data)
