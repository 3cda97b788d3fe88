"""Bytes → frames: fixtures, simulated telegrams, garbage, truncation, oversized frames, LF-only
logs, chunking."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from p1_testkit import chunks, frame_all, run_pipeline, seal, simulated

from agent.core.crc import crc16_arc
from agent.core.framing import Frame, Framer
from agent.simulate import FLAVOURS

# Checksum text as each meter writes it; None where the meter sends none.
CHECKSUMS: dict[str, bytes | None] = {
    "dsmr22-iskra.txt": None,
    "dsmr3-iskra.txt": None,
    "dsmr42-kaifa.txt": b"6796",
    "dsmr5-iskra-two-mbus.txt": b"56DD",
    "dsmr5-iskra.txt": b"6EEE",
    "dsmr5-warmtelink-unpadded-crc.txt": b"B9F",
    "easymeter-q3da1004.txt": None,
    "easymeter-q3db1024.txt": None,
    "eon-hu-sagemcom.txt": b"99DA",
    "fluvius-v171-alt.txt": b"C4B0",
    "fluvius-v171.txt": b"3AD7",
    "iskra-ie.txt": b"AD3B",
    "sagemcom-t210-d-r.txt": b"7EF9",
}

PUTTY_HEADER = b"=~=~=~=~=~=~=~=~=~=~=~= PuTTY log 2023.08.24 01:21:30 =~=~=~=~=~=~=~=~=~=~=~=\n"


def _body(data: bytes) -> bytes:
    """A fixture's body as the meter sent it: `/` through `!`."""
    return data[: data.index(b"!") + 1]


def _feed_counting(framer: Framer, pieces: list[bytes]) -> list[Frame]:
    frames: list[Frame] = []
    for piece in pieces:
        frames += framer.feed(piece)
    return frames


def test_every_fixture_yields_one_frame(
    telegram_name: str, read_telegram: Callable[[str], bytes]
) -> None:
    assert telegram_name in CHECKSUMS, "describe the new fixture in CHECKSUMS"
    data = read_telegram(telegram_name)
    framer = Framer()
    frames = framer.feed(data) + framer.close()
    assert len(frames) == 1
    frame = frames[0]
    assert frame.body == _body(data)
    assert frame.checksum == CHECKSUMS[telegram_name]
    assert frame.offset == 0 and frame.skipped == 0
    assert not (frame.truncated or frame.headless or frame.lf_only)
    if frame.checksum is None:
        assert frame.expected_crc is None
        assert frame.text == frame.body
    else:
        assert frame.text == data[: len(frame.body) + len(frame.checksum)]
        assert frame.expected_crc == crc16_arc(frame.body)
    assert framer.frames_truncated == framer.frames_headless == framer.frames_oversized == 0


def test_three_digit_checksum(read_telegram: Callable[[str], bytes]) -> None:
    (frame,) = frame_all(read_telegram("dsmr5-warmtelink-unpadded-crc.txt"))
    assert frame.checksum == b"B9F"
    assert frame.expected_crc == 0x0B9F == crc16_arc(frame.body)
    assert frame.text.endswith(b"\r\n!B9F")


@pytest.mark.parametrize("name", ["easymeter-q3da1004.txt", "easymeter-q3db1024.txt"])
def test_lines_after_the_end_are_skipped(name: str, read_telegram: Callable[[str], bytes]) -> None:
    data = read_telegram(name)
    trailer = data[len(_body(data)) :]
    assert trailer.startswith(b"\r\n  258")  # serial and status lines the gateway appends
    framer = Framer()
    frames = _feed_counting(framer, [data, data]) + framer.close()
    assert [f.body for f in frames] == [_body(data), _body(data)]
    assert all(f.checksum is None for f in frames)
    # The trailer (without the CRLF ending the `!` line) is skipped, twice.
    assert frames[1].skipped == len(trailer) - 2
    assert framer.bytes_skipped == 2 * (len(trailer) - 2)


def test_garbage_before_between_and_after_frames(read_telegram: Callable[[str], bytes]) -> None:
    a = read_telegram("dsmr42-kaifa.txt")
    b = read_telegram("fluvius-v171.txt")
    before, between, after = b"\x00\xff\x13noise\r\n", b"\xfe\xfe garbage \r\n\r\n", b"tail\xff"
    data = before + a + between + b + after
    framer = Framer()
    frames = framer.feed(data) + framer.close()
    assert [f.body for f in frames] == [_body(a), _body(b)]
    assert [f.checksum for f in frames] == [b"6796", b"3AD7"]
    assert [f.skipped for f in frames] == [len(before), len(between)]
    assert [f.offset for f in frames] == [len(before), len(before) + len(a) + len(between)]
    assert all(f.expected_crc == crc16_arc(f.body) for f in frames)
    assert framer.bytes_skipped == len(before) + len(between) + len(after)
    assert framer.bytes_in == len(data)


def test_frame_cut_short_by_a_new_start(read_telegram: Callable[[str], bytes]) -> None:
    a = read_telegram("dsmr5-iskra.txt")
    b = read_telegram("dsmr5-iskra-two-mbus.txt")
    cut = a[:400]
    framer = Framer()
    frames = framer.feed(cut + b) + framer.close()
    assert len(frames) == 2
    assert frames[0].truncated and frames[0].checksum is None
    assert frames[0].body == cut
    assert not frames[1].truncated
    assert frames[1].body == _body(b) and frames[1].checksum == b"56DD"
    assert frames[1].offset == len(cut)
    assert framer.frames_truncated == 1

    _, results = run_pipeline(cut + b)
    assert [(r.status, r.reason) for r in results] == [("rejected", "truncated"), ("valid", None)]
    assert results[1].telegram is not None
    assert results[1].telegram.readings["1-0:1.8.1"].value == 2130.115


def test_frame_truncated_by_end_of_stream() -> None:
    (data,) = simulated("dsmr4")
    frames = frame_all(data[:500])
    assert len(frames) == 1 and frames[0].truncated and frames[0].body == data[:500]


def test_frame_complete_at_end_of_stream_without_line_end(
    read_telegram: Callable[[str], bytes],
) -> None:
    data = read_telegram("dsmr42-kaifa.txt").rstrip(b"\r\n")
    framer = Framer()
    assert framer.feed(data) == []  # the line end may still come
    (frame,) = framer.close()
    assert frame.checksum == b"6796" and not frame.truncated
    assert frame.expected_crc == crc16_arc(frame.body)


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096])
def test_frame_that_never_ends_is_dropped_with_memory_bounded(chunk: int) -> None:
    max_frame = 1024
    framer = Framer(max_frame=max_frame)
    endless = b"/XYZ5 endless\r\n" + b"1-0:1.8.0(000001.000*kWh)\r\n" * 400  # 10 KB, no `!`
    frames: list[Frame] = []
    for i in range(0, len(endless), chunk):
        frames += framer.feed(endless[i : i + chunk])
        assert len(framer._buf) <= max_frame + chunk
    assert frames == []
    assert framer.frames_oversized == 1
    # Afterwards the framer finds the next telegram intact.
    (good,) = simulated("t210dr")
    frames = framer.feed(good) + framer.close()
    assert [f.body for f in frames] == [_body(good)]
    assert frames[0].skipped == len(endless)  # everything since the last frame was dropped
    assert framer.frames_oversized == 1
    assert framer.bytes_skipped == len(endless)


def test_oversized_frame_is_dropped_however_it_arrives() -> None:
    (data,) = simulated("hu-sagemcom")  # 1423 bytes
    (small,) = simulated("t210dr")  # 481 bytes
    stream = small + data + small
    for pieces in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        framer = Framer(max_frame=1024)
        frames = _feed_counting(framer, pieces) + framer.close()
        assert [f.body for f in frames] == [_body(small), _body(small)]
        assert framer.frames_oversized == 1
        assert frames[1].skipped == len(data)
    assert len(frame_all(stream, max_frame=2048)) == 3


@pytest.mark.parametrize("size", [63, 64, 65])
def test_max_frame_boundary(size: int) -> None:
    # max_frame bounds the frame as sent: `/` through the checksum digits.
    body = b"/" + b"x" * (size - 8) + b"\r\n!"
    text = body + b"%04X" % crc16_arc(body)
    assert len(text) == size
    data = b"\r\n" + text + b"\r\n"
    expected = [body] if size <= 64 else []
    assert [f.body for f in frame_all(data, max_frame=64)] == expected
    byte_by_byte = [data[i : i + 1] for i in range(len(data))]
    assert [f.body for f in frame_all(byte_by_byte, max_frame=64)] == expected


def test_max_frame_must_hold_a_telegram() -> None:
    with pytest.raises(ValueError):
        Framer(max_frame=10)


@pytest.mark.parametrize("flavour", ["dsmr5", "hu-sagemcom", "iskra-ie"])
def test_lf_only_input_gets_crlf_restored(flavour: str) -> None:
    (data,) = simulated(flavour)
    lf_only = data.replace(b"\r\n", b"\n")
    (frame,) = frame_all(lf_only)
    assert frame.lf_only
    assert frame.body == _body(data)
    assert frame.expected_crc == crc16_arc(frame.body)
    _, results = run_pipeline(lf_only)
    assert [r.status for r in results] == ["valid"]


def test_crlf_frame_with_a_lone_lf_is_not_rewritten() -> None:
    # A stray LF in a CRLF frame is line noise; adding a CR would hide it from repair.
    data = simulated("dsmr5")[0].replace(b"\r\n1-0:1.8.2", b"\n1-0:1.8.2", 1)
    (frame,) = frame_all(data)
    assert not frame.lf_only
    assert frame.body == _body(data)
    assert frame.expected_crc != crc16_arc(frame.body)


def test_control_bytes_in_the_header(read_telegram: Callable[[str], bytes]) -> None:
    data = read_telegram("iskra-ie.txt")
    assert data.startswith(b"/ISk5\x02MIE5T-200\r\n")
    (frame,) = frame_all(data)
    assert frame.body.startswith(b"/ISk5\x02MIE5T-200\r\n")
    assert frame.expected_crc == 0xAD3B == crc16_arc(frame.body)


def test_exclamation_mark_inside_a_value_does_not_end_the_frame() -> None:
    body = (
        b"/TST5 METER\r\n\r\n0-0:96.13.0(Hello!AB)\r\n"
        b"0-0:96.13.1(x!\xff\xff)\r\n1-0:1.8.0(1.0*kWh)\r\n!"
    )
    (frame,) = frame_all(seal(body))
    assert frame.body == body
    assert frame.expected_crc == crc16_arc(body)


@pytest.fixture(params=["simulated", "published"])
def every_telegram(request: pytest.FixtureRequest) -> list[bytes]:
    """A telegram of every simulated flavour, or every fixture telegram of the published data."""
    if request.param == "simulated":
        return [simulated(flavour)[0] for flavour in FLAVOURS]
    read = request.getfixturevalue("read_telegram")
    return [read(name) for name in request.getfixturevalue("telegram_names")]


@pytest.mark.parametrize("step", [1, 2, 3, 5, 13, 64, 999])
def test_chunking_does_not_change_frames(step: int, every_telegram: list[bytes]) -> None:
    data = PUTTY_HEADER + b"\x00\xff"
    for i, telegram in enumerate(every_telegram):
        data += telegram + b"garbage %d\r\n" % i
    # Add a truncated frame, a headless one and LF-only ones to cover every path.
    (kaifa,) = simulated("dsmr4")
    data += kaifa + b"\x0e" + kaifa[1:]  # a complete frame, then a headless one
    data += kaifa[:300] + kaifa.replace(b"\r\n", b"\n") + b"/end"  # truncated, LF-only, at EOF

    whole = Framer()
    expected = whole.feed(data) + whole.close()
    assert len(expected) == len(every_telegram) + 5
    assert [whole.frames_headless, whole.frames_truncated] == [1, 2]

    framer = Framer()
    frames = _feed_counting(framer, [data[i : i + step] for i in range(0, len(data), step)])
    frames += framer.close()
    assert frames == expected  # bodies, checksums, offsets, skipped counts, flags
    counters = ("bytes_in", "bytes_skipped", "frames_oversized", "frames_truncated")
    for counter in (*counters, "frames_headless"):
        assert getattr(framer, counter) == getattr(whole, counter), counter


def test_feeding_at_every_split_point_gives_the_same_frame() -> None:
    data = b"".join(simulated("t210dr", 2))
    expected = frame_all(data)
    assert len(expected) == 2
    for cut in range(1, len(data)):
        assert frame_all(chunks(data, [cut])) == expected, cut


def test_headless_frame_after_a_previous_frame(read_telegram: Callable[[str], bytes]) -> None:
    a = read_telegram("dsmr5-iskra.txt")
    b = read_telegram("dsmr5-iskra-two-mbus.txt")
    mangled = b"\x0e" + b[1:]  # the `/` arrived as 0x0E after an idle gap
    framer = Framer()
    frames = framer.feed(a + mangled) + framer.close()
    assert len(frames) == 2
    assert not frames[0].headless
    headless = frames[1]
    assert headless.headless and not headless.truncated
    assert headless.body == b"\x0e" + _body(b)[1:]
    assert headless.checksum == b"56DD"
    # With the start byte restored the checksum matches: repair has what it needs.
    assert crc16_arc(b"/" + headless.body[1:]) == headless.expected_crc
    assert framer.frames_headless == 1

    _, results = run_pipeline(a + mangled)
    assert [(r.status, r.reason) for r in results] == [("valid", None), ("rejected", "no_start")]


def test_putty_header_line_is_skipped() -> None:
    data = simulated("dsmr4")[0].replace(b"\r\n", b"\n")
    framer = Framer()
    frames = framer.feed(PUTTY_HEADER + data) + framer.close()
    assert len(frames) == 1
    assert frames[0].skipped == len(PUTTY_HEADER)
    assert frames[0].offset == len(PUTTY_HEADER)
    assert frames[0].lf_only and frames[0].expected_crc == crc16_arc(frames[0].body)
    assert framer.bytes_skipped == len(PUTTY_HEADER)


def test_capture_frames(capture_raw: bytes) -> None:
    # The published capture: 54 frames of 2342 bytes after CRLF restoration; its header is skipped.
    framer = Framer()
    frames = framer.feed(capture_raw) + framer.close()
    assert len(frames) == 54
    assert frames[0].skipped == capture_raw.index(b"/")
    assert all(f.lf_only and len(f.body) == 2342 and len(f.checksum or b"") == 4 for f in frames)
    assert all(f.body.count(b"\xff") == 1024 for f in frames)
    assert framer.bytes_skipped == capture_raw.index(b"/")
