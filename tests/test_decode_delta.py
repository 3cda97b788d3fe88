"""The decoder's short cuts give what a full decode gives.

A warm Decoder redoes only the lines that changed since the telegram before, and a number line
in its code's known layout, or the clock, from its value alone. Whatever the lines changed into,
the telegram must equal a fresh Decoder's of the same body: readings, fields in their order
(output columns follow it), clock, meter and devices.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from p1_testkit import simulated
from test_properties import PROPERTY_SETTINGS

from agent.core.telegram import Decoder, MeterZone, Telegram
from agent.simulate import FLAVOURS

# What a changed value may become: other digits and widths, signs, points, noise, nothing.
VALUES = st.one_of(
    st.from_regex(rb"\A-?[0-9]{0,8}(\.[0-9]{0,4})?\Z"),
    st.binary(max_size=12),
    st.sampled_from([b"", b".", b"1.2.3", b"1_0", b" 1", b"inf", b"nan", b"1e3", b"\xff"]),
)
CLOCKS = st.one_of(
    st.from_regex(rb"\A[0-9]{12}[SWsw]?\Z"),
    st.sampled_from([b"", b"240601020075S", b"241301020000W", b"632525252525W", b"2406010200S"]),
)


def _shape(telegram: Telegram) -> tuple[object, ...]:
    return (
        telegram.header,
        list(telegram.readings.items()),
        list(telegram.fields.items()),
        telegram.meter_time,
        telegram.equipment_id,
        telegram.mbus,
        telegram.unknown_lines,
    )


def _mutate(body: bytes, data: st.DataObject) -> bytes:
    """Some lines of `body` with another value (the clock another time), or their unit, or
    the whole line, changed."""
    lines = body.split(b"\r\n")
    for _ in range(data.draw(st.integers(0, 3))):
        i = data.draw(st.integers(1, len(lines) - 2))
        code, sep, rest = lines[i].partition(b"(")
        if not sep:
            continue
        how = data.draw(st.sampled_from(["value", "unit", "line"]))
        if how == "line":
            lines[i] = data.draw(st.binary(max_size=30))
        elif code == b"0-0:1.0.0":
            lines[i] = code + b"(" + data.draw(CLOCKS) + b")"
        else:
            value, star, unit = rest.partition(b"*")
            if how == "value":
                lines[i] = code + b"(" + data.draw(VALUES) + star + unit
            else:
                lines[i] = code + b"(" + value + b"*" + data.draw(st.binary(max_size=5)) + b")"
    return b"\r\n".join(lines)


@PROPERTY_SETTINGS
@given(flavour=st.sampled_from(FLAVOURS), data=st.data())
def test_warm_decoder_equals_a_fresh_one(flavour: str, data: st.DataObject) -> None:
    telegrams = simulated(flavour, 8)
    warm = Decoder()
    for telegram in telegrams:
        body = telegram[: telegram.rindex(b"!") + 1]
        if data.draw(st.booleans()):
            body = _mutate(body, data)
        assert _shape(warm.decode(body)) == _shape(Decoder().decode(body))


def _reference_time(zone: MeterZone, text: str) -> datetime | None:
    """A meter timestamp as its fields say, the flag choosing the repeated autumn hour."""
    if len(text) not in (12, 13) or not text[:12].isdigit() or text[12:] not in "SWsw":
        return None
    year, month, day, hour, minute, second = (int(text[i : i + 2]) for i in range(0, 12, 2))
    year += 2000 if year < 69 else 1900
    fold = 1 if text[12:] in ("W", "w") else 0
    try:
        local = datetime(year, month, day, hour, minute, tzinfo=zone.zone, fold=fold)
        offset = local.utcoffset()
        assert offset is not None
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        return None


@settings(max_examples=2000, deadline=None)  # cheap examples, rare invalid dates among them
@given(
    # Each field up to just past its limit, where a date stops being one.
    fields=st.tuples(*(st.integers(0, top) for top in (99, 13, 32, 24, 60, 60))),
    flag=st.sampled_from(["", "S", "W", "s", "w", "X"]),
)
def test_meter_times_made_per_minute_equal_their_fields(fields: tuple[int, ...], flag: str) -> None:
    zone = MeterZone()
    text = "".join(f"{n:02d}" for n in fields) + flag
    expected = _reference_time(zone, text)
    got = zone.parse_optional(text)
    assert got == expected
    assert repr(got) == repr(expected)  # the same fixed offset, not only the same instant


@PROPERTY_SETTINGS
@given(flavour=st.sampled_from(FLAVOURS), data=st.data())
def test_a_decoder_with_shapes_equals_a_fresh_one(flavour: str, data: st.DataObject) -> None:
    """Shapes made as often as the decoder would make them (at every telegram here): whatever
    lines change, inside a shape's groups or outside, the telegram is a fresh Decoder's."""
    warm = Decoder()
    warm.SHAPE_EVERY = data.draw(st.sampled_from([1, 2, 3]))
    for telegram in simulated(flavour, 16):
        body = telegram[: telegram.rindex(b"!") + 1]
        if data.draw(st.integers(0, 3)) == 0:
            body = _mutate(body, data)
        assert _shape(warm.decode(body)) == _shape(Decoder().decode(body))


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_flavour_takes_a_shape(flavour: str) -> None:
    """The property above proves something only if shapes are made and matched: on a clean
    stream of every flavour, most telegrams take the shape (each line that starts to change
    costs one telegram that does not, and a new shape)."""
    warm = Decoder()
    warm.SHAPE_EVERY = 1
    shaped = 0
    for telegram in simulated(flavour, 16):
        body = telegram[: telegram.rindex(b"!") + 1]
        previous = warm._previous
        decoded = warm.decode(body)
        # The shape matched: the telegram kept it, and its lines were not split.
        if previous is not None and previous.shape is not None and warm._previous is not None:
            shaped += warm._previous.lines is None
        assert _shape(decoded) == _shape(Decoder().decode(body))
    assert shaped >= 8
