"""Points → InfluxDB line protocol, second precision (a re-sent telegram overwrites its point)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from itertools import compress, repeat
from operator import is_not, itemgetter

from agent.core.fields import FieldValue
from agent.core.memo import remember
from agent.core.points import Point

_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})
# A backslash at the end of a name or before a character that needs escaping would escape the
# delimiter after it, and InfluxDB 1.x refuses `\\` there too: it is written as `/` instead
# (a meter named `north\` is stored as `north/`; every other backslash stays as it is).
_DANGLING_BACKSLASH = re.compile(r"\\(?=[ ,=\n]|$)")


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
_PREFIXES: dict[str, str] = {}
_PREFIX_LIMIT = 4096


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


def _field(key: str, value: FieldValue) -> str:
    """`key=value`, or "" for a value InfluxDB refuses the whole point for (`inf`, `nan`): the
    one reading is left out instead."""
    prefix = _PREFIXES.get(key) or _prefix(key)
    if value.__class__ is float:  # the common case, without the calls of _field_value
        return prefix + repr(value) if value - value == 0.0 else ""  # inf - inf is nan
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return prefix + _field_value(value)


# Per measurement, field name → the last value written under it (the object itself) and its
# `key=value` piece. Most values are the very objects of the point before (the decoder hands
# out again what did not change), so only the others are formatted; the lookups and identity
# checks run in C (map), fields that come and go (average power) included. Each entry is one
# tuple, so reader threads sharing the table never pair a value with another's piece.
_LAST: dict[str, dict[str, tuple[FieldValue, str]]] = {}
_NOTHING: tuple[FieldValue, str] = (float("nan"), "")  # is no value: NaN is never `is` a value
_VALUE, _PIECE = itemgetter(0), itemgetter(1)


def _fields(measurement: str, fields: dict[str, FieldValue]) -> str:
    last = _LAST.get(measurement)
    if last is None or len(last) > _PREFIX_LIMIT:
        last = {} if len(_LAST) >= _PREFIX_LIMIT else _LAST.setdefault(measurement, {})
        last.clear()
    keys = list(fields)
    values = list(fields.values())
    seen = list(map(last.get, keys, repeat(_NOTHING)))
    pieces = list(map(_PIECE, seen))
    for i in compress(range(len(values)), map(is_not, values, map(_VALUE, seen))):
        pieces[i] = _field(keys[i], values[i])
    last.update(zip(keys, zip(values, pieces, strict=True), strict=True))
    return ",".join(filter(None, pieces))


def encode(point: Point) -> str | None:
    """One line (without newline), or None when the point has no fields."""
    if not point.fields:
        return None
    body = _fields(point.measurement, point.fields)
    if not body:
        return None
    head = _head(point.measurement, tuple(point.tags.items()))
    if point.time is None:
        return f"{head} {body}"
    return f"{head} {body} {int(point.time.timestamp())}"


def encode_all(points: Iterable[Point]) -> list[str]:
    return [line for point in points if (line := encode(point)) is not None]
