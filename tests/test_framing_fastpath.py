"""The framer's fast path (whole clean telegrams framed in place, `Framer._whole`) gives exactly
what its general steps give: the same frames in the same order, every field equal, the same
counters, on any mix of telegrams, garbage, cut, oversized and headless frames, cut anywhere."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from p1_testkit import chunks, simulated

from agent.core.crc import crc16_arc
from agent.core.framing import Frame, Framer
from agent.simulate import FLAVOURS

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_FRAMES = (64, 300, 1024, 16 * 1024)  # small ones make the simulated telegrams oversized


class GeneralOnly(Framer):
    """The framer without its fast path: every byte goes through the general steps."""

    def _whole(self, frames: list[Frame]) -> None:
        pass


def _unpadded() -> bytes:
    """A sealed telegram with a three-digit checksum."""
    for i in range(1000):
        body = b"/TST5 unpadded\r\n\r\n1-0:1.8.0(%06d.%03d*kWh)\r\n!" % (i, i * 7 % 1000)
        if crc16_arc(body) < 0x1000:
            return body + b"%X\r\n" % crc16_arc(body)
    raise AssertionError("no checksum below 0x1000")


TELEGRAMS = [simulated(flavour, 2)[1] for flavour in FLAVOURS]
TELEGRAMS += [t.replace(b"\r\n", b"\n") for t in TELEGRAMS[:4]]  # LF-only logs
TELEGRAMS += [_unpadded(), b"/ISk5\x02MIE5T-200\r\n\r\n1-0:1.8.0(1.0*kWh)\r\n!\r\n"]
# Pieces that reach every state: markers, line ends, ends with bad or too many digits, a CR at
# the end of a chunk, a lost `/`, a line of garbage.
TOKENS = [
    b"/", b"!", b"\r\n", b"\n", b"\r", b"!ABCD\r\n", b"!B9F\n", b"!\r\n", b"!12345\r\n", b"!AB\rx",
    b"!ABCD\r", b"\x0e", b"\xff" * 8, b"garbage line\r\n", b"x" * 70,
]  # fmt: skip


def _sized(size: int, digits: int = 4) -> bytes:
    """A telegram of `size` bytes as sent (`/` through the checksum), with its CRLF."""
    body = b"/" + b"x" * (size - 4 - digits) + b"\r\n!"
    return body + (b"%04X" % crc16_arc(body))[:digits] + b"\r\n"


# Around each max_frame: the fast path must leave a frame that ends near it to the general steps.
TELEGRAMS += [_sized(m + d, n) for m in MAX_FRAMES[:3] for d in range(-9, 3) for n in (0, 4)]
telegram = st.sampled_from(TELEGRAMS)
piece = (
    telegram
    | telegram.map(lambda t: t[1:])  # the `/` lost
    | telegram.map(lambda t: b"\x0e" + t[1:])  # the `/` mangled
    | telegram.flatmap(
        lambda t: st.tuples(st.integers(0, len(t)), st.integers(0, len(t))).map(
            lambda ab: t[min(ab) : max(ab)]
        )
    )
    | telegram.map(lambda t: t.replace(b"\r\n", b"\r\n" * 40, 3))  # grown past max_frame
    | st.sampled_from(TOKENS)
    | st.binary(max_size=16)
)
streams = st.lists(piece, max_size=12).map(b"".join)
cut_points = st.lists(st.integers(min_value=0, max_value=30_000), max_size=40)


def _run(framer: Framer, pieces: list[bytes]) -> tuple[list[Frame], tuple[int, ...]]:
    frames: list[Frame] = []
    for data in pieces:
        frames += framer.feed(data)
    frames += framer.close()
    counters = (
        framer.bytes_in,
        framer.bytes_skipped,
        framer.frames_oversized,
        framer.frames_truncated,
        framer.frames_headless,
    )
    return frames, counters


@SETTINGS
@given(data=streams, cuts=cut_points, max_frame=st.sampled_from(MAX_FRAMES))
def test_fast_path_frames_what_the_general_steps_frame(
    data: bytes, cuts: list[int], max_frame: int
) -> None:
    byte_by_byte = [data[i : i + 1] for i in range(len(data))]
    expected = _run(GeneralOnly(max_frame), byte_by_byte)
    assert _run(Framer(max_frame), chunks(data, cuts)) == expected
    assert _run(Framer(max_frame), [data]) == expected
    assert _run(GeneralOnly(max_frame), chunks(data, cuts)) == expected


@SETTINGS
@given(telegrams=st.lists(piece, min_size=1, max_size=8))
def test_one_piece_per_feed(telegrams: list[bytes]) -> None:
    # As bench_decode and the live sources feed: a telegram (or whatever came) per call.
    data = b"".join(telegrams)
    expected = _run(GeneralOnly(), [data[i : i + 1] for i in range(len(data))])
    assert _run(Framer(), telegrams) == expected


@SETTINGS
@given(data=streams, cuts=cut_points)
def test_close_between_feeds(data: bytes, cuts: list[int]) -> None:
    # close() ends a file; the next feed goes on with the stream's offsets (replay of files).
    def run(framer: Framer) -> list[Frame]:
        frames: list[Frame] = []
        for piece in chunks(data, cuts):
            frames += framer.feed(piece)
            frames += framer.close()
        return frames

    fast, general = Framer(), GeneralOnly()
    assert run(fast) == run(general)
    assert _run(fast, []) == _run(general, [])


@pytest.mark.parametrize("max_frame", MAX_FRAMES)
def test_frames_near_max_frame(max_frame: int) -> None:
    for size in range(max_frame - 10, max_frame + 4):
        for digits in (0, 3, 4):
            data = _sized(size, digits) * 2 + b"\x00" + _sized(size, digits)
            expected = _run(GeneralOnly(max_frame), [data[i : i + 1] for i in range(len(data))])
            assert _run(Framer(max_frame), [data]) == expected, (size, digits)
            assert len(expected[0]) == (3 if size <= max_frame else 0), (size, digits)


def test_clean_telegrams_never_reach_the_general_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    # Otherwise the comparisons above would prove nothing about the fast path.
    def fail(self: Framer, frames: list[Frame]) -> bool:
        raise AssertionError("general step taken")

    monkeypatch.setattr(Framer, "_step", fail)
    telegrams = simulated("dsmr5", 3) + simulated("hu-sagemcom", 3)
    framer = Framer()
    frames = framer.feed(b"".join(telegrams))
    frames += [f for t in telegrams for f in framer.feed(t)]
    assert [f.body for f in frames] == [t[: t.rindex(b"!") + 1] for t in telegrams] * 2
    assert [f.offset for f in frames[:2]] == [0, len(telegrams[0])]


@pytest.mark.parametrize("garbage", [b"", b"\x00"])  # framed by the fast path, by the steps
def test_frames_are_frames_in_every_respect(garbage: bytes) -> None:
    (data,) = simulated("dsmr5")
    (frame,) = Framer().feed(garbage + data)
    built = Frame(**{name: getattr(frame, name) for name in Frame._fields})
    assert type(frame) is Frame
    assert frame == built and hash(frame) == hash(built) and repr(frame) == repr(built)
    assert frame.skipped == len(garbage) and frame.checksum == data[-6:-2]
    assert frame._replace(offset=7) == built._replace(offset=7)
    with pytest.raises(AttributeError):
        frame.offset = 2  # type: ignore[misc]


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_other_byte_types_are_framed_alike(kind: type) -> None:
    data = b"".join(simulated("t210dr", 3))
    expected = _run(Framer(), chunks(data, [100, 700, 1200]))
    assert _run(Framer(), [kind(c) for c in chunks(data, [100, 700, 1200])]) == expected
