"""Floats as the text `repr` writes, remembered: a meter's voltages, currents and power factors
come back again and again, and `repr` of a float costs many times a dict lookup.

Callers write `TEXTS.get(value) or float_text(value)`: the lookup inline, the call only for a
value not seen lately.
"""

from __future__ import annotations

TEXTS: dict[float, str] = {}
LIMIT = 8192  # values kept; then forgotten at once, the recurring ones come back soon


def float_text(value: float) -> str:
    """`repr(value)`, remembered for the next lookup in TEXTS when finite (TEXTS holds only
    numbers line protocol and JSON write as they are). Zero is not: `-0.0 == 0.0`, and the two
    would share one text."""
    text = repr(value)
    if value and value - value == 0.0:  # inf - inf is nan
        if len(TEXTS) >= LIMIT:
            TEXTS.clear()
        TEXTS[value] = text
    return text
