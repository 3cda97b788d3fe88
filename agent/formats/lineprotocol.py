"""Points → InfluxDB line protocol, second precision (a re-sent telegram overwrites its point)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Final

from agent.core.fields import FieldValue
from agent.core.memo import remember
from agent.core.points import Point
from agent.formats.floats import TEXTS, float_text

_KEY_ESCAPES: Final = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})
_MEASUREMENT_ESCAPES: Final = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})
# A backslash at the end of a name or before a character that needs escaping would escape the
# delimiter after it, and InfluxDB 1.x refuses `\\` there too: it is written as `/` instead
# (a meter named `north\` is stored as `north/`; every other backslash stays as it is).
_DANGLING_BACKSLASH: Final = re.compile(r"\\(?=[ ,=\n]|$)")


@functools.lru_cache(maxsize=4096)  # field names and meters repeat in every point
def _key(text: str) -> str:
    return _DANGLING_BACKSLASH.sub("/", text).translate(_KEY_ESCAPES)


@functools.lru_cache(maxsize=1024)
def _head(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """`measurement,tag=value…` with the tags sorted; the same few heads repeat in every point."""
    head = _DANGLING_BACKSLASH.sub("/", measurement).translate(_MEASUREMENT_ESCAPES)
    for key, value in sorted(tags):
        if value:
            head += f",{_key(key)}={_key(value)}"
    return head


# Field name → its escaped form and `=`: a dict lookup per field instead of a cache call.
_PREFIXES: Final[dict[str, str]] = {}
_PREFIX_LIMIT: Final = 4096


def _prefix(key: str) -> str:
    prefix = _PREFIXES.get(key)
    if prefix is None:
        return remember(_PREFIXES, key, _key(key) + "=", _PREFIX_LIMIT)
    return prefix


def _field_value(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _field(prefix: str, value: FieldValue) -> str:
    """`key=value` after the key's `prefix`, or "" for a value InfluxDB refuses the whole point
    for (`inf`, `nan`): the one reading is left out instead. (`_fields` writes finite floats,
    the common case, itself.)"""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return prefix + _field_value(value)


# Per line head (a meter's point, a device's) and number of fields: the field names, their
# `key=` prefixes, the values of the last such point (the objects themselves) with their
# `key=value` pieces, whether a piece is empty (a value left out), and the text they made. Most
# values are the very objects of the point before (the decoder hands out again what did not
# change), so only the other values are formatted, found by identity. Keyed by the count of
# fields and checked by their names, as fields come and go (the average power, every other
# telegram): a tuple of all the names as the key, hashed twice a point, was a tenth of the
# encoding. Entries are tuples replaced whole: reader threads sharing the table never pair a
# value with another's piece.
_Layout = tuple[str, int]
_Last = tuple[list[str], list[str], list[FieldValue], list[str], bool, str]
_LAST: Final[dict[_Layout, _Last]] = {}
_LAST_LIMIT: Final = 1024


def _fields(head: str, fields: dict[str, FieldValue]) -> str:
    keys = list(fields)
    values = list(fields.values())
    layout = (head, len(keys))
    last = _LAST.get(layout)
    if last is not None and last[0] == keys:
        prefixes, old, pieces, holes = last[1], last[2], last[3].copy(), last[4]
    else:
        prefixes, old, pieces, holes = [_prefix(key) for key in keys], [], [""] * len(keys), False
        last = None
        if len(_LAST) >= _LAST_LIMIT:
            _LAST.clear()
    texts = TEXTS
    changed = last is None
    # An index loop: compiled (setup.py), it costs less than the iterators that find the changed
    # values in C for the interpreter.
    for i in range(len(values)):
        value = values[i]
        if old and value is old[i]:
            continue
        changed = True
        # A finite float, inline: this runs for most values.
        if type(value) is float and value - value == 0.0:  # inf - inf is nan
            pieces[i] = prefixes[i] + (texts.get(value) or float_text(value))
        else:
            pieces[i] = piece = _field(prefixes[i], value)
            holes = holes or not piece
    if last is not None and not changed:
        return last[5]  # the same values: the same text (a billing profile, most of a month)
    text = ",".join(filter(None, pieces) if holes else pieces)
    _LAST[layout] = (keys, prefixes, values, pieces, holes, text)
    return text


# Per line head, the last time stamped and its Unix time. A meter's next point comes some
# seconds later at the same offset, and the difference of two such times is cheap to take, where
# `timestamp()` of a time with an offset costs many times as much. Entries are tuples replaced
# whole (reader threads).
_STAMPS: Final[dict[str, tuple[datetime, int]]] = {}
_STAMPS_LIMIT: Final = 1024


def _seconds(head: str, time: datetime) -> int:
    """`int(time.timestamp())`."""
    last = _STAMPS.get(head)
    if last is not None and time is last[0]:
        return last[1]  # a billing profile's time, the same all month
    # Only whole seconds at a fixed offset: a ZoneInfo's offset may change in between.
    if type(time.tzinfo) is not timezone or time.microsecond:
        return int(time.timestamp())
    if last is not None and time.tzinfo is last[0].tzinfo:
        delta = time - last[0]
        seconds = last[1] + delta.days * 86400 + delta.seconds
    else:
        seconds = int(time.timestamp())
        if len(_STAMPS) >= _STAMPS_LIMIT:
            _STAMPS.clear()
    _STAMPS[head] = (time, seconds)
    return seconds


def encode(point: Point) -> str | None:
    """One line (without newline), or None when the point has no fields."""
    if not point.fields:
        return None
    head = _head(point.measurement, tuple(point.tags.items()))
    body = _fields(head, point.fields)
    if not body:
        return None
    if point.time is None:
        return f"{head} {body}"
    return f"{head} {body} {_seconds(head, point.time)}"


def encode_all(points: Iterable[Point]) -> list[str]:
    return [line for point in points if (line := encode(point)) is not None]
