"""Points → InfluxDB line protocol, second precision (a re-sent telegram overwrites its point)."""

from __future__ import annotations

from collections.abc import Iterable

from agent.fields import FieldValue
from agent.points import Point

_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n"})


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
    head = point.measurement.translate(_MEASUREMENT_ESCAPES)
    for key in sorted(point.tags):
        value = point.tags[key]
        if value:
            head += f",{key.translate(_KEY_ESCAPES)}={value.translate(_KEY_ESCAPES)}"
    body = ",".join(
        f"{key.translate(_KEY_ESCAPES)}={_field_value(value)}"
        for key, value in point.fields.items()
    )
    if point.time is None:
        return f"{head} {body}"
    return f"{head} {body} {int(point.time.timestamp())}"


def encode_all(points: Iterable[Point]) -> list[str]:
    return [line for point in points if (line := encode(point)) is not None]
