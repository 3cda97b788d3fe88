"""How many hypotheses a repair weighs, and how many it may weigh. Sans-I/O.

Every hypothesis the CRC is asked about matches by chance with probability 2⁻¹⁶. A repair is
refused when the hypotheses of one frame, counted as below, exceed its budget: the chance that a
wrong candidate matched the checksum is then at most budget × 2⁻¹⁶ before the template, the decoder
and the meter's history (monotonic registers, register sums, the clock's steps) refuse it.

The CRC syndrome locates one digit-for-digit error without listing candidates, but it weighs every
single-digit change the template allows. Only those a real telegram could hold are counted: a
register digit whose change breaks a register sum the meter keeps, or moves the register further
than its connection can in the time since the last telegram, the hundreds of a voltage, the year
and month of the meter's clock; on a line that is known to clear bits, only digits with more
1-bits than the one received.
"""

from __future__ import annotations

import re
from datetime import datetime

from agent.core.fields import field_for
from agent.core.repair.plausible import SUMS, adds_up
from agent.core.repair.profile import DIGIT, FLAG, History, Template

MAX_HYPOTHESES = 1024  # per frame while the meter's last telegram was accepted: ≤ 1/64 by chance
MAX_HALVINGS = 4  # each telegram lost since the last accepted one halves the budget, down to 64
DEFAULT_LIMIT_KW = 100.0
_DIGITS = b"0123456789"
_EVENTS = ("power_failures", "voltage_sags", "voltage_swells")


def originals(received: int, clears: bool) -> bytes:
    """The digits the syndrome may put in place of a received digit: any other one, or on a line
    known to clear bits, those that lost exactly one 1-bit to become it."""
    if not clears:
        return bytes(d for d in _DIGITS if d != received)
    return bytes(d for d in _DIGITS if d & received == received and (d ^ received).bit_count() == 1)


_CLOCK = re.compile(rb"\r\n0-0:1\.0\.0\((\d{12})[SW]?\)")


def budget(stale: int) -> int:
    """Hypotheses allowed for a frame after `stale` telegrams of its meter were lost: the older
    the history, the less it excludes, so the stricter the bound."""
    return MAX_HYPOTHESES >> min(stale, MAX_HALVINGS)


_Place = tuple[str, int, int]  # field name with unit, decimal exponent, index in the value


def _places(template: Template) -> dict[int, _Place]:
    """DIGIT position → the field its line holds, the digit's decimal place and its index."""
    out: dict[int, _Place] = {}
    reference = template.reference
    for start, key in zip(template.line_starts, template.line_keys, strict=True):
        open_at = reference.find(b"(", start)
        end = reference.find(b"\r\n", start)
        if open_at < 0 or end < 0 or open_at > end:
            continue
        value_end = open_at + 1
        while value_end < end and reference[value_end] not in b")*(":
            value_end += 1
        number = reference[open_at + 1 : value_end]
        unit = reference[value_end + 1 : reference.find(b")", value_end)]
        target = field_for(key, unit.decode("latin-1") if reference[value_end] == 42 else None)
        name = target[0] if target is not None else key
        point = number.find(b".")
        whole = len(number) if point < 0 else point
        for index in range(len(number)):
            position = open_at + 1 + index
            if template.classes[position] != DIGIT:
                continue
            exponent = whole - 1 - index if index < whole else whole - index
            out[position] = (name, exponent, index)
    return out


_CACHE: dict[int, tuple[Template, dict[int, _Place]]] = {}


def _cached_places(template: Template) -> dict[int, _Place]:
    hit = _CACHE.get(id(template))
    if hit is None or hit[0] is not template:
        if len(_CACHE) > 64:
            _CACHE.clear()
        hit = _CACHE[id(template)] = (template, _places(template))
    return hit[1]


def _hours(body: bytes, history: History, parse: object) -> float:
    match = _CLOCK.search(body)
    if match is None or history.time is None or not callable(parse):
        return 1.0
    try:
        now = parse(match[1].decode())
    except ValueError:
        return 1.0
    if not isinstance(now, datetime):
        return 1.0
    seconds = (now - history.time).total_seconds()
    return seconds / 3600.0 if 0 < seconds <= 3600 else 1.0


def syndrome_space(
    template: Template,
    body: bytes,
    history: History | None,
    clears: bool,
    parse: object = None,
) -> int:
    """Single-digit changes of `body` the syndrome weighs that a real telegram could hold.
    `parse` turns the clock's 12 digits into a datetime (the decoder's zone), for the time since
    the last telegram."""
    if history is None:
        return template.hypotheses
    places = _cached_places(template)
    limit = history.fields.get("limiter_threshold_kw")
    limit_kw = limit if isinstance(limit, float) and 0 < limit < 1000 else DEFAULT_LIMIT_KW
    step_kwh = limit_kw * _hours(body, history, parse) + 0.002
    summed = {p for total, parts in SUMS if adds_up(history.fields, total, parts) for p in parts}
    summed |= {total for total, parts in SUMS if adds_up(history.fields, total, parts)}
    count = template.classes.count(FLAG)
    for position, (name, exponent, index) in places.items():
        if name.startswith("energy_"):
            if name in summed or 10.0**exponent > step_kwh:
                continue
        elif name.startswith("voltage_l") and exponent >= 2:
            continue
        elif name.startswith(_EVENTS):
            # Event counters grow by at most 10 between telegrams: the units digit, or a carry.
            count += 9 if exponent == 0 else int(exponent == 1)
            continue
        elif name == "0-0:1.0.0" and index < 4:
            continue
        count += len(originals(body[position], clears))
    return count
