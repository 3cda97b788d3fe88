"""`round(x, n)` for the derived values, without its cost. Sans-I/O.

`round(x, n)` rounds the exact binary value of x to n decimals through a decimal string, some
2 500 instructions. Scaled by 10ⁿ, x lies well away from a half almost always, and then the
nearest whole number of the scaled value carries that rounding's digits: the same float, in
float arithmetic alone. Near a half, or for huge values, `round` itself decides.
"""

from __future__ import annotations

from typing import Final

_SCALES: Final = tuple(10.0**n for n in range(16))
# |x·10ⁿ| below this is within 2⁻¹⁵ of the float product: 0.4999 keeps clear of every half.
_LARGEST: Final = 1e11
_CLEAR: Final = 0.4999
# Added and taken away again, it rounds a float below 2⁵¹ to a whole number (half to even).
_WHOLE: Final = 6755399441055744.0  # 2⁵² + 2⁵¹


def round_to(x: float, n: int) -> float:
    """Equal to `round(x, n)` for every float x and 0 ≤ n < 16, including -0.0, inf and nan."""
    scale = _SCALES[n]
    y = x * scale
    if -_LARGEST < y < _LARGEST:
        whole = y + _WHOLE - _WHOLE
        if -_CLEAR < y - whole < _CLEAR:
            # whole / 10ⁿ is the float nearest the decimal digits, as round's string conversion
            # gives; zero keeps the sign of x (round(-0.0001, 3) is -0.0).
            return whole / scale if whole else x * 0.0
    return round(x, n)
