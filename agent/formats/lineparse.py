"""Our own line protocol back into points (for `p1-agent export`): the inverse of `lineprotocol`.

It reads what `lineprotocol.encode` writes: escaped `,` `=` space and newline in names and tag
values, double-quoted strings with `\\\\`, `\\"` and `\\n`, `true`/`false`, floats, and an
optional timestamp in seconds. A backslash in a name or tag value is only read as an escape when
the encoder could have written it; names with a literal backslash before such a character are
ambiguous in line protocol itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.fields import FieldValue

_MEASUREMENT_STOPS = frozenset(", ")
_KEY_STOPS = frozenset(",= ")
_UNESCAPE = {",": ",", "=": "=", " ": " ", "n": "\n"}
_STRING_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(frozen=True, slots=True)
class ParsedPoint:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time: int | None  # seconds since the epoch


def _name(line: str, pos: int, stops: frozenset[str], escapable: str) -> tuple[str, int]:
    """Read an escaped name up to an unescaped stop character; returns it and the stop's index."""
    out: list[str] = []
    end = len(line)
    while pos < end:
        char = line[pos]
        if char == "\\" and pos + 1 < end and line[pos + 1] in escapable:
            out.append(_UNESCAPE[line[pos + 1]])
            pos += 2
            continue
        if char in stops:
            break
        out.append(char)
        pos += 1
    return "".join(out), pos


def _string(line: str, pos: int) -> tuple[str, int]:
    """A double-quoted field value starting at `pos` (the quote); returns it and the index after."""
    out: list[str] = []
    pos += 1
    while pos < len(line):
        char = line[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\" and pos + 1 < len(line) and line[pos + 1] in _STRING_UNESCAPE:
            out.append(_STRING_UNESCAPE[line[pos + 1]])
            pos += 2
            continue
        out.append(char)
        pos += 1
    raise ValueError(f"unterminated string in {line!r}")


def _scalar(text: str, line: str) -> FieldValue:
    if text == "true":
        return True
    if text == "false":
        return False
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"unsupported field value {text!r} in {line!r}") from None


def parse(line: str) -> ParsedPoint:
    """One line (without its newline) → its point; ValueError when it is not our line protocol."""
    measurement, pos = _name(line, 0, _MEASUREMENT_STOPS, ", n")
    if not measurement:
        raise ValueError(f"no measurement in {line!r}")
    tags: dict[str, str] = {}
    while pos < len(line) and line[pos] == ",":
        key, pos = _name(line, pos + 1, _KEY_STOPS, ",= n")
        if pos >= len(line) or line[pos] != "=":
            raise ValueError(f"tag {key!r} without a value in {line!r}")
        tags[key], pos = _name(line, pos + 1, _KEY_STOPS, ",= n")
    fields: dict[str, FieldValue] = {}
    separator = " "  # before the first field; "," between fields
    while pos < len(line) and line[pos] == separator:
        key, pos = _name(line, pos + 1, _KEY_STOPS, ",= n")
        if pos >= len(line) or line[pos] != "=":
            raise ValueError(f"field {key!r} without a value in {line!r}")
        pos += 1
        if line.startswith('"', pos):
            fields[key], pos = _string(line, pos)
        else:
            end = pos
            while end < len(line) and line[end] not in ", ":
                end += 1
            fields[key] = _scalar(line[pos:end], line)
            pos = end
        separator = ","
    if not fields:
        raise ValueError(f"no fields in {line!r}")
    if pos == len(line):
        return ParsedPoint(measurement, tags, fields, None)
    if line[pos] != " ":
        raise ValueError(f"unexpected {line[pos]!r} at {pos} in {line!r}")
    try:
        return ParsedPoint(measurement, tags, fields, int(line[pos + 1 :]))
    except ValueError:
        raise ValueError(f"bad timestamp in {line!r}") from None
