"""Points → InfluxDB line protocol, second precision (a re-sent telegram overwrites its point)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from itertools import compress
from operator import is_not

from agent.core.fields import FieldValue
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
        prefix = _key(key) + "="
        if len(_PREFIXES) < _PREFIX_LIMIT:
            _PREFIXES[key] = prefix
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


# Per measurement, the last point's field names, values and `key=value` pieces, in one tuple
# (replaced whole: reader threads share it). Most values are the very objects of the point
# before (the decoder hands out again what did not change), so only the others are formatted.
_LAST: dict[str, tuple[list[str], list[FieldValue], list[str]]] = {}


def _fields(measurement: str, fields: dict[str, FieldValue]) -> str:
    keys = list(fields)
    values = list(fields.values())
    last = _LAST.get(measurement)
    if last is not None and last[0] == keys:
        pieces = last[2].copy()
        # The values that are other objects than last time, found in C.
        for i in compress(range(len(values)), map(is_not, values, last[1])):
            pieces[i] = _field(keys[i], values[i])
    else:
        pieces = [_field(key, value) for key, value in fields.items()]
    if last is not None or len(_LAST) < _PREFIX_LIMIT:
        _LAST[measurement] = (keys, values, pieces)
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
