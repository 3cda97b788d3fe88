"""The output formats' fast paths write what their general paths write (issue 18): remembered
float texts, pieces reused while a value is the same object, CSV rows joined without the csv
module, JSONL telegram text converted from its bytes."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from p1_testkit import run_pipeline, simulated

from agent.core.fields import FieldValue
from agent.core.points import Point
from agent.formats import floats, jsonl, lineprotocol
from agent.formats.csv import _cell
from agent.noisyline import NoisyChannel, spread_rate

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 229.4, 1e16, 1e-5]),
    st.booleans(),
    st.text(max_size=8),
)


@given(st.lists(st.one_of(st.floats(), st.sampled_from([0.0, -0.0, 1.0])), max_size=50))
def test_float_texts_are_repr(numbers: list[float]) -> None:
    for number in numbers:
        assert (floats.TEXTS.get(number) or floats.float_text(number)) == repr(number)


# Registers, the fast path's case: thousandths up to 10¹⁵ (15 digits), their neighbours, and
# tenths and hundredths, in any sign.
thousandths = st.integers(-(10**15), 10**15).flatmap(
    lambda n: st.sampled_from(
        [n / 1000, n / 100, n / 10, math.nextafter(n / 1000, math.inf), -(n / 1000)]
    )
)


@given(st.one_of(thousandths, st.floats()))
def test_floats_made_from_integers_are_repr(number: float) -> None:
    text = floats._thousandths(number)
    assert text is None or text == repr(number)


def test_registers_take_the_fast_path() -> None:
    # That the test above is not passed by a fast path that never answers.
    for number in (8234.528, 230.6, 0.864, 90.0, -1.5, 999_999_999_999.999):
        assert floats._thousandths(number) == repr(number)
    for number in (0.0, -0.0, 1e-4, 1 / 3, 1e12 + 0.5, math.inf, math.nan):
        assert floats._thousandths(number) is None


# Each example is a whole sequence of points: slow to generate on a loaded machine.
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["a", "b", "c d", "e=f", "g"]), values, max_size=5),
        min_size=1,
        max_size=8,
    ),
    st.lists(st.booleans(), min_size=8, max_size=8),
)
def test_line_protocol_reuse_is_fresh_formatting(
    sequence: list[dict[str, FieldValue]], keep: list[bool]
) -> None:
    """Points whose values are partly the objects of the point before (as the decoder hands
    them out) encode as when nothing is remembered."""
    previous: dict[str, FieldValue] = {}
    for fields, same in zip(sequence, keep, strict=False):
        if same:  # the very objects of the last point where the names agree
            fields = {k: previous.get(k, v) for k, v in fields.items()}
        previous = fields
        point = Point("p1", {"meter": "m"}, fields, None)
        reused = lineprotocol.encode(point)
        lineprotocol._LAST.clear()
        floats.TEXTS.clear()
        assert reused == lineprotocol.encode(point)


# Offsets as the decoder's zones hand them out (one object per offset), an equal one made
# apart, and a zone whose offset changes.
ZONES = [timezone(timedelta(hours=1)), timezone(timedelta(hours=2)), timezone(timedelta(hours=1))]
ZONES += [UTC, ZoneInfo("Europe/Amsterdam")]


@given(
    st.lists(
        st.tuples(
            st.integers(0, 4_000_000_000),
            st.sampled_from(ZONES),
            st.sampled_from([0, 0, 0, 1, 999_999]),
            st.booleans(),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_line_protocol_times_are_their_timestamps(
    times: list[tuple[int, tzinfo, int, bool]],
) -> None:
    """Unix times taken from the time before at the same offset are the times' own."""
    lineprotocol._STAMPS.clear()
    last = None
    for seconds, zone, micro, again in times:
        when = datetime.fromtimestamp(seconds, zone).replace(microsecond=micro)
        if again and last is not None:
            when = last  # the very object, as a billing profile's time comes back
        assert lineprotocol._seconds("p1,meter=m", when) == int(when.timestamp())
        last = when


@given(st.one_of(st.none(), values))
def test_csv_cell_is_what_csv_writes(value: FieldValue | None) -> None:
    out = io.StringIO()
    csv.writer(out).writerow(["x", value, "y"])
    assert out.getvalue() == f"x,{_cell(value)},y\r\n"


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_jsonl_text_is_the_encoders(head: bytes, tail: bytes) -> None:
    raw = head + b"\xff" * 40 + tail  # the Hungarian meter's run, with anything around it
    for data in (raw, head):
        expected = json.dumps(data.decode("latin-1"), ensure_ascii=False).encode()
        assert jsonl._text(data) == expected


def test_jsonl_records_are_the_encoders() -> None:
    """Records of clean and damaged streams of every kind of reading, through the fast pieces,
    equal `json.dumps(record(…))`."""
    line = NoisyChannel(spread_rate(0.3), rng="fastpath")
    for flavour in ("dsmr5", "hu", "fluvius", "dsmr22"):
        telegrams = simulated(flavour, 30)
        data = b"".join(telegrams) + b"".join(line.transmit(t) for t in telegrams)
        _, results = run_pipeline(data)
        for result in results:
            record = json.dumps(jsonl.record(result), ensure_ascii=False, separators=(",", ":"))
            assert jsonl.encode(result) == (record + "\n").encode()


def test_line_protocol_leaves_out_what_influx_refuses() -> None:
    point = Point("p1", {"meter": "m"}, {"a": math.inf, "b": 1.5, "c": math.nan}, None)
    assert lineprotocol.encode(point) == "p1,meter=m b=1.5"
    assert lineprotocol.encode(point) == "p1,meter=m b=1.5"  # remembered: the same
