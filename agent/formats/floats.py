"""Floats as the text `repr` writes, remembered: a meter's voltages, currents and power factors
come back again and again, and `repr` of a float costs many times a dict lookup.

Callers write `TEXTS.get(value) or float_text(value)`: the lookup inline, the call only for a
value not seen lately.
"""

from __future__ import annotations

from typing import Final

TEXTS: Final[dict[float, str]] = {}
LIMIT: Final = 8192  # values kept; then forgotten at once, the recurring ones come back soon

# Below this many thousandths a decimal has at most 15 significant digits (see `_thousandths`).
_BOUND: Final = 1e15
# The text after the point of each number of thousandths, as `repr` ends a float: `.5`, `.001`.
_FRACTIONS: Final = tuple("." + (f"{n:03d}".rstrip("0") or "0") for n in range(1000))


def _thousandths(value: float) -> str | None:
    """`repr(value)` made from integers, or None, when `value` is the float nearest a decimal of
    at most three places under 10¹², as meters' registers are; repr's shortest digits search
    costs several times as much.

    That decimal has at most 15 significant digits, and no two such decimals round to the same
    float: it is the shortest text that reads back as `value`, which is what `repr` writes (in
    plain notation from 10⁻⁴ to 10¹⁶)."""
    scaled = value * 1000.0
    if not -_BOUND < scaled < _BOUND:
        return None  # also inf and nan
    whole = int(scaled + 0.5) if scaled >= 0.0 else -int(0.5 - scaled)
    if whole == 0 or whole / 1000 != value:  # zero: `-0.0` would read `0.0`
        return None
    sign = ""
    if whole < 0:
        sign, whole = "-", -whole
    return sign + str(whole // 1000) + _FRACTIONS[whole % 1000]


def float_text(value: float) -> str:
    """`repr(value)`, remembered for the next lookup in TEXTS when finite (TEXTS holds only
    numbers line protocol and JSON write as they are). Zero is not: `-0.0 == 0.0`, and the two
    would share one text."""
    text = _thousandths(value) or repr(value)
    if value and value - value == 0.0:  # inf - inf is nan
        if len(TEXTS) >= LIMIT:
            TEXTS.clear()
        TEXTS[value] = text
    return text
