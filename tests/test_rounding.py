"""`round_to` is `round`, bit for bit: derived values must not change by a last digit."""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.core.rounding import round_to

# Values derived values take (currents, powers, averages), halves and their neighbours, and
# any float at all.
NEAR_HALVES = st.builds(
    lambda k, n, nudge: k / 10**n + 0.5 / 10**n + nudge,
    st.integers(-(10**9), 10**9),
    st.integers(0, 6),
    st.sampled_from([0.0, 1e-12, -1e-12, 5e-17, -5e-17]),
)
RATIOS = st.builds(lambda w, v: w / v, st.floats(0, 60_000), st.floats(180, 260))
VALUES = st.one_of(st.floats(), NEAR_HALVES, RATIOS, st.floats(-1e12, 1e12))


def _same(a: float, b: float) -> bool:
    if math.isnan(a):
        return math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


@settings(max_examples=5000, deadline=None)  # cheap examples: many of them
@given(x=VALUES, n=st.integers(0, 15))
@example(x=-0.0001, n=3)  # rounds to -0.0
@example(x=2.675, n=2)  # 2.67499999…: not a half at all
@example(x=0.0005, n=3)
@example(x=-0.0, n=3)
@example(x=math.inf, n=3)
@example(x=1e11 / 1000 + 0.0005, n=3)
def test_round_to_equals_round(x: float, n: int) -> None:
    assert _same(round_to(x, n), round(x, n))
