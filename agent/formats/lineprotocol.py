"""Points → InfluxDB line protocol, second precision (a re-sent telegram overwrites its point)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable

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


def _field_value(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def encode(point: Point) -> str | None:
    """One line (without newline), or None when the point has no fields."""
    if not point.fields:
        return None
    head = _DANGLING_BACKSLASH.sub("/", point.measurement).translate(_MEASUREMENT_ESCAPES)
    for key in sorted(point.tags):
        value = point.tags[key]
        if value:
            head += f",{_key(key)}={_key(value)}"
    body = ",".join(
        f"{_key(key)}={_field_value(value)}"
        for key, value in point.fields.items()
        # InfluxDB refuses the whole point for one `inf`; the one reading is left out instead.
        if not isinstance(value, float) or math.isfinite(value)
    )
    if not body:
        return None
    if point.time is None:
        return f"{head} {body}"
    return f"{head} {body} {int(point.time.timestamp())}"


def encode_all(points: Iterable[Point]) -> list[str]:
    return [line for point in points if (line := encode(point)) is not None]
