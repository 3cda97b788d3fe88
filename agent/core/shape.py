"""A meter's telegram as one regular expression: the lines that stay as they were, and a group
for each line that changes. Sans-I/O.

A meter repeats its telegram with a few values changed. Once the decoder knows which lines
change, one `fullmatch` (in C) checks every other line byte for byte and cuts out the new
values, so a telegram costs a few C calls instead of Python steps for every line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Final, NamedTuple, TypeVar

T = TypeVar("T")

# A number line `_delta` redoes from its value alone: its start up to the value (`1-0:1.8.0(`),
# where the value starts, its end after the value (`*kWh)`), that end's negative length, and
# (OBIS reference, unit, field name, factor).
Known = tuple[str, str | None, str | None, int]
Plan = tuple[bytes, int, bytes, int, Known]
Pick = Callable[[Sequence[T]], tuple[T, ...]]

# More digits than any register has: a float would round them, or become inf, which InfluxDB
# refuses along with the whole point. The longest value the decoder takes as a number.
MAX_DIGITS: Final = 24
DECIMAL: Final = b"0123456789."  # what a number's value is made of: digits and its point
_WHOLE_LINE: Final = rb"([^\r\n]*)"
# Unchanging text this long or longer is matched as that many bytes of anything, in one step,
# and compared whole after the match (`match`): the engine compares literal text a byte at a
# time, which on the Hungarian meter's kilobyte of 0xFF cost more than all its numbers.
LONG_RUN: Final = 64
_RUN: Final = rb"((?s:.{%d}))"


def _picker(positions: Sequence[int]) -> Pick[T]:
    """`itemgetter(*positions)`, but a tuple for any number of positions."""
    if len(positions) == 1:
        only = positions[0]
        return lambda items: (items[only],)
    if not positions:
        return lambda items: ()
    return itemgetter(*positions)


def plan_value(plan: Plan, line: bytes) -> bytes | None:
    """The value of `line` when the line is in `plan`'s layout (its code's start and end)."""
    if line.startswith(plan[0]) and line.endswith(plan[2]):
        return line[plan[1] : plan[3]]
    return None


def number_pattern(value: bytes) -> bytes | None:
    """A group for values written like `value`: as many decimals, any integer digits, within
    MAX_DIGITS. Whatever it matches, `_delta` would read as a number too (digits, one point at
    most, not the point alone); None when `value` is not such a number."""
    if not value or len(value) > MAX_DIGITS or value.strip(DECIMAL) or value.count(b".") > 1:
        return None
    whole, point, decimals = value.partition(b".")
    if not point:
        return rb"(\d{1,%d})" % MAX_DIGITS
    if not whole and not decimals:
        return None
    least = 0 if decimals else 1  # `.5` and `5.` are numbers, `.` is not
    return rb"(\d{%d,%d}\.\d{%d})" % (least, MAX_DIGITS - 1 - len(decimals), len(decimals))


class Shape(NamedTuple):
    """A telegram layout: `pattern` fullmatches a body whose unchanging lines are the ones it
    was made from. Its groups are, in line order, the values of number lines (read as their plan
    says), whole lines (redone as `_delta` redoes a changed line) and long stretches of
    unchanging text (which `match` compares)."""

    pattern: re.Pattern[bytes]
    values: Pick[bytes]  # the number groups, of `groups()`
    numbers: tuple[Known, ...]  # and per number group, what its plan knows of the line
    texts: Pick[bytes]  # the whole-line groups, of `groups()`
    lines: tuple[int, ...]  # and their line indices
    runs: Pick[bytes]  # the groups of long unchanging text, of `groups()`
    run_texts: tuple[bytes, ...]  # and that text


def match(shape: Shape, body: bytes) -> tuple[bytes, ...] | None:
    """The groups of `body` when it takes `shape`, None when it does not."""
    found = shape.pattern.fullmatch(body)
    if found is None:
        return None
    groups: tuple[bytes, ...] = found.groups()
    return groups if shape.runs(groups) == shape.run_texts else None


def build(
    lines: Sequence[bytes],
    plans: Sequence[Plan | None],
    volatile: Collection[int],
    loose: Collection[int] = (),
) -> tuple[Shape, list[int]]:
    """The shape of telegrams like `lines` whose `volatile` lines change, and which of those
    lines are whole-line groups: the `loose` ones (whole-line groups of an earlier shape: a value
    that did not fit a number group once may not again), and those without a plan or whose
    value is not a number in their plan's layout."""
    # The pattern in pieces: (unchanging text, None) or (a group's pattern, its kind).
    pieces: list[tuple[bytes, str | None]] = []
    numbers: list[Known] = []
    whole: list[int] = []
    for i, line in enumerate(lines):
        if i:
            pieces.append((b"\r\n", None))
        if i not in volatile:
            pieces.append((line, None))
            continue
        plan = plans[i]
        value = None if plan is None or i in loose else plan_value(plan, line)
        group = None if value is None else number_pattern(value)
        if plan is None or group is None:
            whole.append(i)
            pieces.append((_WHOLE_LINE, "line"))
            continue
        numbers.append(plan[4])
        pieces += [(plan[0], None), (group, "number"), (plan[2], None)]
    # Adjacent unchanging text joined: a literal, or a run group when long.
    parts: list[bytes] = []
    kinds: list[str] = []  # per group, in order
    runs: list[bytes] = []
    for literal, stretch in groupby(pieces, key=lambda piece: piece[1] is None):
        if not literal:
            for pattern, kind in stretch:
                parts.append(pattern)
                kinds.append(str(kind))
            continue
        text = b"".join(piece for piece, _ in stretch)
        if len(text) < LONG_RUN:
            parts.append(re.escape(text))
        else:
            parts.append(_RUN % len(text))
            kinds.append("run")
            runs.append(text)
    shape = Shape(
        re.compile(b"".join(parts)),
        _picker(_positions(kinds, "number")),
        tuple(numbers),
        _picker(_positions(kinds, "line")),
        tuple(whole),
        _picker(_positions(kinds, "run")),
        tuple(runs),
    )
    return shape, whole


def _positions(order: list[str], kind: str) -> list[int]:
    return [n for n, each in enumerate(order) if each == kind]
