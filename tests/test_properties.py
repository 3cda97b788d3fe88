"""Properties of the core on arbitrary input (hypothesis): no exceptions, chunking invariance,
planted frames found exactly, consistent counters."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from p1_testkit import chunks, frame_all, seal, simulated

from agent.core.crc import CrcKind, crc16_arc, crc16_x25
from agent.core.framing import Framer
from agent.core.pipeline import MeterPipeline
from agent.core.telegram import Decoder, Reading
from agent.simulate import CRC_KINDS, FLAVOURS

# Telegrams of every simulated flavour: the sealed ones planted whole (a meter that writes its
# checksum with three hex digits among them), all of them cut into pieces for the soup.
SEALED_TELEGRAMS = [
    simulated(flavour, 3)[2] for flavour in FLAVOURS if CRC_KINDS[flavour] is CrcKind.ARC
]
ALL_TELEGRAMS = [simulated(flavour, 3)[2] for flavour in FLAVOURS]


def _unpadded_checksum() -> bytes:
    """A DSMR 5 telegram whose checksum is below 0x1000, written with three digits."""
    for telegram in simulated("dsmr5", 200):
        body = telegram[: telegram.rindex(b"!") + 1]
        if crc16_arc(body) < 0x1000:
            return body + b"%X\r\n" % crc16_arc(body)
    raise AssertionError("no checksum below 0x1000 in 200 telegrams")


SEALED_TELEGRAMS.append(_unpadded_checksum())

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# Pieces that reach the interesting states of the framer and decoder quickly.
TOKENS = [
    b"/", b"!", b"\r\n", b"\n", b"\r", b"(", b")", b"*", b"1-0:1.8.0", b"0-1:24.2.1",
    b"0-0:98.1.0", b"1-0:99.97.0", b"0-0:1.0.0", b"0-1:24.3.0", b"0-1:24.1.0",
    b"0-0:96.1.1", b"1-0:1.6.0", b"230101120000W", b"632525252525W", b"(3)", b"(1-0:1.6.0)",
    b"(0-0:96.7.19)", b"kWh", b"m3", b"inf", b"nan", b"-1e999", b"12.5", b"003", b"ABCD",
    b"B9F", b"\xff" * 8, b"\x00", b"\x0e", b" ",
]  # fmt: skip
token_soup = st.lists(st.sampled_from(TOKENS) | st.binary(max_size=6), max_size=80).map(b"".join)
fixture_soup = st.lists(
    st.sampled_from(ALL_TELEGRAMS).flatmap(
        lambda t: st.tuples(st.integers(0, len(t)), st.integers(0, len(t))).map(
            lambda ab: t[min(ab) : max(ab)]
        )
    )
    | st.binary(max_size=20),
    max_size=8,
).map(b"".join)
any_bytes = st.binary(max_size=600) | token_soup | fixture_soup
cut_points = st.lists(st.integers(min_value=0, max_value=6000), max_size=30)


@PROPERTY_SETTINGS
@given(data=any_bytes, cuts=cut_points)
def test_pipeline_never_raises_and_counts_add_up(data: bytes, cuts: list[int]) -> None:
    pipeline = MeterPipeline(max_frame=256)
    results = []
    for piece in chunks(data, cuts):
        results += pipeline.feed(piece)
        assert len(pipeline.framer._buf) <= 256 + len(piece)
    results += pipeline.close()
    assert pipeline.framer._buf == b""
    statuses = [r.status for r in results]
    assert set(statuses) <= {"valid", "repaired", "rejected"}
    for status in ("valid", "repaired", "rejected"):
        assert pipeline.counts[status] == statuses.count(status)
    assert sum(pipeline.counts.values()) == len(results)
    assert sum(pipeline.rejections.values()) == pipeline.counts["rejected"]
    # Every frame that did not check out on arrival is counted, repaired or not.
    assert pipeline.crc_failures == sum(r.failure is not None for r in results)
    for result in results:
        assert (result.telegram is None) == (result.status == "rejected")
        assert (result.reason is None) == (result.status != "rejected")
        if result.accepted and result.frame.checksum is not None:
            # Whatever was accepted, valid or repaired, carries a checksum that matches.
            expected = int(result.frame.checksum, 16)
            assert expected in (crc16_arc(result.frame.body), crc16_x25(result.frame.body))
    framer = pipeline.framer
    frames = [r.frame for r in results]
    assert framer.frames_truncated == sum(f.truncated for f in frames)
    assert framer.frames_headless == sum(f.headless for f in frames)
    assert framer.bytes_in == len(data)
    # Every byte is in a frame, skipped, or a line end eaten after a frame.
    sent = sum(len(f.text) for f in frames) - sum(f.body.count(b"\n") for f in frames if f.lf_only)
    assert sent + framer.bytes_skipped <= len(data)


@PROPERTY_SETTINGS
@given(data=any_bytes, cuts=cut_points)
def test_framer_result_does_not_depend_on_chunking(data: bytes, cuts: list[int]) -> None:
    whole = Framer(max_frame=64)
    expected = whole.feed(data) + whole.close()
    framer = Framer(max_frame=64)
    frames = []
    for piece in chunks(data, cuts):
        frames += framer.feed(piece)
    frames += framer.close()
    assert frames == expected
    for counter in ("bytes_skipped", "frames_oversized", "frames_truncated", "frames_headless"):
        assert getattr(framer, counter) == getattr(whole, counter), counter


def _no_markers(garbage: bytes) -> bytes:
    return garbage.replace(b"/", b"").replace(b"!", b"")


obis_value = st.from_regex(r"\A[0-9]{1,6}\.[0-9]{1,3}\Z", fullmatch=True)
synthetic_telegram = st.builds(
    lambda header, values: seal(
        b"/"
        + header.encode()
        + b"\r\n\r\n"
        + b"".join(b"1-0:%d.8.0(%s*kWh)\r\n" % (i + 1, v.encode()) for i, v in enumerate(values))
        + b"!"
    ),
    st.from_regex(r"\A[A-Z]{3}5[A-Za-z0-9 _-]{0,20}\Z", fullmatch=True),
    st.lists(obis_value, min_size=1, max_size=8),
)
planted_telegram = st.sampled_from(SEALED_TELEGRAMS) | synthetic_telegram


@PROPERTY_SETTINGS
@given(
    telegrams=st.lists(planted_telegram, min_size=1, max_size=5),
    garbage=st.lists(st.binary(max_size=300).map(_no_markers), min_size=6, max_size=6),
    cuts=cut_points,
)
def test_planted_frames_are_found_exactly(
    telegrams: list[bytes], garbage: list[bytes], cuts: list[int]
) -> None:
    stream = garbage[0]
    for i, telegram in enumerate(telegrams):
        stream += telegram + garbage[i + 1]
    pipeline = MeterPipeline()
    results = []
    for piece in chunks(stream, cuts):
        results += pipeline.feed(piece)
    results += pipeline.close()
    bodies = [t[: t.rindex(b"!") + 1] for t in telegrams]
    assert [r.frame.body for r in results] == bodies
    assert [r.status for r in results] == ["valid"] * len(telegrams)
    for i, result in enumerate(results):
        frame = result.frame
        assert frame.expected_crc == crc16_arc(frame.body)
        assert not (frame.truncated or frame.headless or frame.lf_only)
        # The garbage before a frame is what it skipped (the frame's own line end is not).
        assert frame.skipped == len(garbage[i])
    assert pipeline.framer.bytes_skipped == sum(len(g) for g in garbage[: len(telegrams) + 1])


@PROPERTY_SETTINGS
@given(
    telegrams=st.lists(planted_telegram, min_size=1, max_size=4),
    garbage=st.lists(st.binary(max_size=200).map(_no_markers), min_size=5, max_size=5),
    cuts=cut_points,
)
def test_planted_frames_in_an_lf_only_log(
    telegrams: list[bytes], garbage: list[bytes], cuts: list[int]
) -> None:
    # A terminal log that lost its CRs, with CR-free garbage: CRLF restored, checksums match.
    garbage = [g.replace(b"\r", b"") for g in garbage]
    stream = garbage[0]
    for i, telegram in enumerate(telegrams):
        stream += telegram.replace(b"\r\n", b"\n") + garbage[i + 1]
    frames = frame_all(chunks(stream, cuts))
    assert [f.body for f in frames] == [t[: t.rindex(b"!") + 1] for t in telegrams]
    assert all(f.lf_only and f.expected_crc == crc16_arc(f.body) for f in frames)


CODES = [
    b"0-0:1.0.0", b"1-0:1.8.0", b"1-0:1.8.1", b"1-0:32.7.0", b"0-0:96.1.1", b"0-0:96.13.0",
    b"0-0:98.1.0", b"1-0:99.97.0", b"1-0:1.6.0", b"0-1:24.1.0", b"0-2:24.2.1", b"0-1:24.3.0",
    b"0-3:96.1.0", b"1-0:1.8.0*255", b"0-0:96.99.9", b"1-3:0.2.8",
]  # fmt: skip
GROUPS = [
    b"", b"inf", b"nan", b"-1e999", b"1e999*kWh", b"12.5", b"003", b"000123.456*kWh", b"4.5*W",
    b"230101120000W", b"231029023000S", b"632525252525W", b"700101010000W", b"2", b"1-0:1.6.0",
    b"0-0:96.7.19", b"m3", b"00", b"60", b"1", b"\xff\xff", b"4B38", b"3*s", b"x)(y",
]  # fmt: skip
obis_line = st.builds(
    lambda code, groups: code + b"".join(b"(" + g + b")" for g in groups),
    st.sampled_from(CODES),
    st.lists(st.sampled_from(GROUPS), min_size=1, max_size=8),
)
line_soup = st.lists(
    obis_line
    | st.lists(st.sampled_from(TOKENS) | st.binary(max_size=4), max_size=12).map(b"".join),
    max_size=20,
).map(b"\r\n".join)


def _all_readings(readings: list[Reading]) -> list[Reading]:
    out = []
    for reading in readings:
        out.append(reading)
        if isinstance(reading.value, list):
            out += _all_readings(reading.value)
    return out


@PROPERTY_SETTINGS
@given(inner=st.binary(max_size=400) | line_soup)
@example(inner=b"\r\n0-1:24.1.0(inf)\r\n")  # int(inf) in the M-Bus device type
@example(inner=b"\r\n1-0:1.8.0(nan*kWh)\r\n")
def test_decoder_never_raises(inner: bytes) -> None:
    body = b"/" + inner + b"!"
    telegram = Decoder().decode(body)
    assert isinstance(telegram.header, str)
    for reading in _all_readings(list(telegram.readings.values())):
        if isinstance(reading.value, float):
            # A number the meter could have written: no inf or nan from line noise.
            assert math.isfinite(reading.value)
        if reading.time is not None:
            assert reading.time.utcoffset() is not None
    for device in telegram.mbus:
        assert 1 <= device.channel <= 4


@PROPERTY_SETTINGS
@given(inner=line_soup)
def test_decoder_is_deterministic_with_its_cache(inner: bytes) -> None:
    # The line cache must not change results: a fresh decoder and a warm one agree.
    body = b"/" + inner + b"!"
    warm = Decoder()
    first = warm.decode(body)
    second = warm.decode(body)
    fresh = Decoder().decode(body)
    assert first.readings == second.readings == fresh.readings
    assert first.meter_time == second.meter_time == fresh.meter_time
    assume(first.readings)
