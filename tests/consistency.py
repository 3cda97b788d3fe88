"""What every real telegram of one meter satisfies, as a checker for accepted telegrams.

Truth is unknown for a capture from a bad line, so a telegram the pipeline accepted is judged by
what every telegram the meter really sent satisfies:

- it has the meter's full set of lines (learned from telegrams known to be whole, such as a
  good-line capture of the same meter, or from the layout most accepted telegrams share), with
  the units and value types the meter writes, its own identifiers and limiter, and the text
  message line;
- its registers add up (`IDENTITIES`, each one shown to hold on every good-line telegram by
  tests/test_bad_line_capture.py before it is used here);
- from one accepted telegram to the next, registers never go down and grow no faster than the
  limiter allows over the elapsed meter time (plus one last digit);
- its meter time is on the meter's 10-s grid and strictly increasing;
- voltages, power factors and frequency are what a grid delivers;
- its billing profile changes only when a month begins;
- when the accepted bytes are known, they are sealed with a checksum that matches them and say
  what the readings say.

The checker returns the problems it finds (which telegram, what is wrong), never raises, so a
failing test can say exactly what was accepted that should not have been.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.core.crc import FUNCTIONS
from agent.core.pipeline import Result
from agent.core.telegram import Decoder, Reading, Telegram

REGISTER_UNITS = frozenset({"kWh", "kvarh"})
RESOLUTION = 0.001  # the meter writes its registers with three decimals: one last digit
SUM_TOLERANCE = 0.0015  # a sum of registers may differ by the rounding of its parts
GRID_SECONDS = 10  # the meter sends a telegram every 10 s, on the 10-s grid of its clock
LIMITER = "0-0:17.0.0"  # the limiter threshold in kW (90 kW on the seed meter)
TEXT_MESSAGE = "0-0:96.13.0"
BILLING_PROFILE = "0-0:98.1.0"  # rewritten by the meter at the start of a month, never between
# The meter's constants: its identifiers, its limiter and its (empty, 0xFF-padded) text message.
IDENTIFIERS = ("0-0:42.0.0", "0-0:96.1.0", LIMITER, TEXT_MESSAGE)
VOLTAGES = ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0")
POWER_FACTORS = ("1-0:13.7.0", "1-0:33.7.0", "1-0:53.7.0", "1-0:73.7.0")
FREQUENCY = "1-0:14.7.0"
RANGES: dict[str, tuple[float, float]] = {
    **dict.fromkeys(VOLTAGES, (180.0, 260.0)),
    **dict.fromkeys(POWER_FACTORS, (0.0, 1.0)),
    FREQUENCY: (49.0, 51.0),
}
_EPSILON = 1e-9  # float noise in sums and differences of three-decimal values


@dataclass(frozen=True, slots=True)
class Identity:
    """A register that is the sum of others."""

    total: str
    parts: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.total} = {' + '.join(self.parts)}"

    def error(self, values: Mapping[str, object]) -> float | None:
        """total − sum(parts), or None when a line is missing or not a number."""
        numbers = [values.get(code) for code in (self.total, *self.parts)]
        if not all(isinstance(n, float) for n in numbers):
            return None
        floats = [float(n) for n in numbers if isinstance(n, float)]
        return floats[0] - sum(floats[1:])


IDENTITIES = (
    Identity("1-0:1.8.0", ("1-0:1.8.1", "1-0:1.8.2", "1-0:1.8.3", "1-0:1.8.4")),  # import, T1–T4
    Identity("1-0:2.8.0", ("1-0:2.8.1", "1-0:2.8.2", "1-0:2.8.3", "1-0:2.8.4")),  # export, T1–T4
    Identity("1-0:3.8.0", ("1-0:5.8.0", "1-0:6.8.0")),  # reactive import = Q1 + Q2
    Identity("1-0:4.8.0", ("1-0:7.8.0", "1-0:8.8.0")),  # reactive export = Q3 + Q4
)
# Looked at and not used: it fails on good-line telegrams (the meter counts |A+| + |A−| on a
# register of its own, which runs ahead of import + export by a few Wh). The tests show it fails.
NOT_IDENTITIES = (Identity("1-0:15.8.0", ("1-0:1.8.0", "1-0:2.8.0")),)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One accepted telegram as the checker sees it, from a pipeline Result or a JSONL record."""

    label: str  # which telegram, for messages
    meter_time: datetime | None
    values: Mapping[str, object]  # OBIS reference → float | str | list | None (None: unparsed)
    units: Mapping[str, str | None]
    text: bytes | None = None  # the accepted bytes (`/` … `!` and checksum digits), if known


def _value(reading: Reading) -> object:
    value = reading.value
    if isinstance(value, list):
        return [_value(entry) for entry in value]
    if value is None and reading.time is not None and reading.raw is None:
        return reading.time.isoformat()  # a timestamp object such as 0-0:1.0.0 (as JSONL has it)
    return value


def snapshot_from_telegram(telegram: Telegram, label: str, text: bytes | None) -> Snapshot:
    return Snapshot(
        label=label,
        meter_time=telegram.meter_time,
        values={code: _value(r) for code, r in telegram.readings.items()},
        units={code: r.unit for code, r in telegram.readings.items()},
        text=text,
    )


def snapshot_from_result(result: Result, label: str) -> Snapshot:
    assert result.telegram is not None, f"{label}: a rejected result has no telegram"
    return snapshot_from_telegram(result.telegram, label, result.frame.text)


def _record_value(value: Any) -> object:
    if isinstance(value, list):
        return [_record_value(entry.get("value")) for entry in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # JSON writes 90.0 as 90.0, but be lenient with integers
    return value


def snapshot_from_record(record: Mapping[str, Any], label: str) -> Snapshot:
    """A JSONL record of `p1-agent replay --format jsonl` (an accepted one)."""
    readings: Mapping[str, Mapping[str, Any]] = record.get("readings") or {}
    stamp = record.get("meter_time")
    text = record.get("telegram")
    return Snapshot(
        label=label,
        meter_time=datetime.fromisoformat(stamp) if stamp else None,
        values={code: _record_value(r.get("value")) for code, r in readings.items()},
        units={code: r.get("unit") for code, r in readings.items()},
        text=text.encode("latin-1") if isinstance(text, str) else None,
    )


def accepted_snapshots(results: Iterable[Result]) -> list[Snapshot]:
    """The accepted results of a run, in stream order, labelled with their position."""
    out = []
    for index, result in enumerate(results):
        if result.accepted:
            stamp = result.telegram.meter_time if result.telegram else None
            label = (
                f"result #{index} ({result.status}, offset {result.frame.offset}, "
                f"meter time {stamp.isoformat() if stamp else None})"
            )
            out.append(snapshot_from_result(result, label))
    return out


@dataclass(frozen=True, slots=True)
class Problem:
    index: int  # position in the checked sequence
    label: str
    kind: str  # missing_lines, extra_lines, no_text_message, unparsed, type, unit, identifier,
    # sum, range, no_time, off_grid, time_order, decrease, rate, profile, seal, text
    detail: str

    def __str__(self) -> str:
        return f"{self.label}: {self.kind}: {self.detail}"


def _kind(value: object) -> str:
    return type(value).__name__


def _sealed(text: bytes) -> bool:
    bang = text.rfind(b"!")
    checksum = text[bang + 1 :]
    if bang < 0 or not 3 <= len(checksum) <= 4:
        return False
    try:
        expected = int(checksum, 16)
    except ValueError:
        return False
    body = text[: bang + 1]
    return any(crc(body) == expected for crc in FUNCTIONS.values())


@dataclass(frozen=True, slots=True)
class MeterReference:
    """One meter's layout and constants, learned from telegrams known to be whole."""

    codes: frozenset[str]
    order: tuple[str, ...]  # the lines in the order the meter writes them
    units: Mapping[str, str | None]
    kinds: Mapping[str, str]  # value type per line: float, str, list
    identifiers: Mapping[str, object]
    limiter_kw: float
    registers: tuple[str, ...]  # energy registers: never down, no faster than the limiter
    sealed: bool  # the meter writes a checksum

    @classmethod
    def learn(cls, snapshots: Sequence[Snapshot]) -> MeterReference:
        """From telegrams that are all whole (a good-line capture): they must agree on every line,
        unit, type, identifier and the limiter, or this raises ValueError."""
        if not snapshots:
            raise ValueError("no telegrams to learn from")
        layouts = {frozenset(s.values) for s in snapshots}
        if len(layouts) != 1:
            raise ValueError(f"{len(layouts)} different sets of lines: not all whole")
        first = snapshots[0]
        codes = frozenset(first.values)
        units = dict(first.units)
        kinds = {code: _kind(value) for code, value in first.values.items()}
        identifiers = {code: first.values[code] for code in IDENTIFIERS if code in codes}
        for s in snapshots:
            if dict(s.units) != units:
                raise ValueError(f"{s.label}: units differ")
            if {code: _kind(v) for code, v in s.values.items()} != kinds:
                raise ValueError(f"{s.label}: value types differ")
            if any(s.values[code] != value for code, value in identifiers.items()):
                raise ValueError(f"{s.label}: identifiers differ")
        limiter = identifiers.get(LIMITER)
        if not isinstance(limiter, float) or limiter <= 0:
            raise ValueError("no limiter threshold to bound the registers' rate")
        registers = tuple(
            sorted(c for c in codes if units.get(c) in REGISTER_UNITS and kinds[c] == "float")
        )
        sealed = all(s.text is not None and _sealed(s.text) for s in snapshots)
        order = tuple(first.values)
        return cls(codes, order, units, kinds, identifiers, limiter, registers, sealed)

    @classmethod
    def majority(cls, snapshots: Sequence[Snapshot]) -> MeterReference:
        """From accepted telegrams of unknown quality: learned from the set of lines more than half
        of them share (ValueError when no set of lines has a majority)."""
        layouts = Counter(frozenset(s.values) for s in snapshots)
        if not layouts:
            raise ValueError("no telegrams to learn from")
        layout, count = layouts.most_common(1)[0]
        if 2 * count <= len(snapshots):
            raise ValueError(f"no majority layout ({count} of {len(snapshots)} share the top one)")
        return cls.learn([s for s in snapshots if frozenset(s.values) == layout])


def check_telegram(snapshot: Snapshot, reference: MeterReference, index: int = 0) -> list[Problem]:
    """What is wrong with one accepted telegram on its own."""
    problems: list[Problem] = []

    def report(kind: str, detail: str) -> None:
        problems.append(Problem(index, snapshot.label, kind, detail))

    values = snapshot.values
    present = frozenset(values)
    missing = [code for code in reference.order if code not in present]
    extra = present - reference.codes
    if missing:
        report(
            "missing_lines",
            f"{len(missing)} of the meter's {len(reference.codes)} lines missing "
            f"({', '.join(missing[:6])}{', …' if len(missing) > 6 else ''})",
        )
    if extra:
        report("extra_lines", f"lines the meter does not send: {', '.join(sorted(extra)[:6])}")
    if TEXT_MESSAGE in reference.codes and TEXT_MESSAGE not in present:
        report("no_text_message", f"{TEXT_MESSAGE} missing")
    for code in sorted(present & reference.codes):
        value = values[code]
        if value is None:
            report("unparsed", f"{code} did not parse")
            continue
        if _kind(value) != reference.kinds[code]:
            report("type", f"{code} is {_kind(value)}, the meter writes {reference.kinds[code]}")
        if snapshot.units.get(code) != reference.units[code]:
            report(
                "unit", f"{code} unit {snapshot.units.get(code)!r}, not {reference.units[code]!r}"
            )
    for code, expected in reference.identifiers.items():
        if code in present and values[code] != expected:
            report("identifier", f"{code} is {values[code]!r}, the meter's is {expected!r}")
    for identity in IDENTITIES:
        error = identity.error(values)
        if error is not None and abs(error) > SUM_TOLERANCE + _EPSILON:
            report("sum", f"{identity} is off by {error:+.4f}")
    for code, (low, high) in RANGES.items():
        value = values.get(code)
        if isinstance(value, float) and not low <= value <= high:
            report("range", f"{code} = {value} outside {low}–{high}")
    stamp = snapshot.meter_time
    if stamp is None:
        report("no_time", "no meter time")
    elif stamp.second % GRID_SECONDS or stamp.microsecond:
        report("off_grid", f"meter time {stamp.isoformat()} is off the {GRID_SECONDS}-s grid")
    text = snapshot.text
    if text is not None:
        if reference.sealed and not _sealed(text):
            report("seal", f"no checksum that matches the accepted bytes ({text[-8:]!r})")
        if _decoded_values(text) != dict(values):
            report("text", "the readings are not what the accepted bytes say")
    return problems


def _decoded_values(text: bytes) -> dict[str, object] | None:
    bang = text.rfind(b"!")
    try:
        telegram = _DECODER.decode(text[: bang + 1])
    except Exception:
        return None
    return {code: _value(r) for code, r in telegram.readings.items()}


_DECODER = Decoder()


def check_step(
    previous: Snapshot, snapshot: Snapshot, reference: MeterReference, index: int = 1
) -> list[Problem]:
    """What is wrong with a telegram given the accepted telegram before it."""
    problems: list[Problem] = []

    def report(kind: str, detail: str) -> None:
        problems.append(Problem(index, snapshot.label, kind, detail))

    hours: float | None = None
    if previous.meter_time is not None and snapshot.meter_time is not None:
        seconds = (snapshot.meter_time - previous.meter_time).total_seconds()
        if seconds <= 0:
            report(
                "time_order",
                f"meter time {snapshot.meter_time.isoformat()} not after "
                f"{previous.meter_time.isoformat()} ({previous.label})",
            )
        else:
            hours = seconds / 3600.0
    for code in reference.registers:
        old, new = previous.values.get(code), snapshot.values.get(code)
        if not isinstance(old, float) or not isinstance(new, float):
            continue
        if new < old - _EPSILON:
            report("decrease", f"{code} went down {old} → {new} ({previous.label})")
        elif hours is not None:
            limit = reference.limiter_kw * hours + RESOLUTION
            if new - old > limit + _EPSILON:
                report(
                    "rate",
                    f"{code} grew {new - old:.3f} in {hours * 3600:.0f} s, more than "
                    f"{reference.limiter_kw} kW allows ({limit:.3f}; {previous.label})",
                )
    old, new = previous.values.get(BILLING_PROFILE), snapshot.values.get(BILLING_PROFILE)
    if old is not None and new is not None and old != new:
        before, after = previous.meter_time, snapshot.meter_time
        if (
            before is None
            or after is None
            or (before.year, before.month)
            == (
                after.year,
                after.month,
            )
        ):
            report("profile", f"{BILLING_PROFILE} changed within a month ({previous.label})")
    return problems


def check_sequence(snapshots: Sequence[Snapshot], reference: MeterReference) -> list[Problem]:
    """Every problem of a sequence of one meter's accepted telegrams, in stream order."""
    problems: list[Problem] = []
    for index, snapshot in enumerate(snapshots):
        problems += check_telegram(snapshot, reference, index)
        if index:
            problems += check_step(snapshots[index - 1], snapshot, reference, index)
    return problems


def describe(problems: Sequence[Problem], limit: int = 12) -> str:
    """A failure message: how many problems of each kind, and the first few."""
    kinds = Counter(p.kind for p in problems)
    telegrams = len({p.index for p in problems})
    lines = [
        f"{len(problems)} problems in {telegrams} accepted telegrams: "
        + ", ".join(f"{kind} {n}" for kind, n in kinds.most_common())
    ]
    lines += [f"  {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  … and {len(problems) - limit} more")
    return "\n".join(lines)


# -- the seed meter's captures (read through the `data_dir` fixture; nothing is copied) ----------

GOOD_LINE = "captures/seed-eon-hu-aux-putty-good-line-20230502.log"
BAD_LINE = "captures/seed-eon-hu-aux-putty-bad-line-20230427.log"
HEADER = b"AUX5990"  # the identification line's start, with or without its `/`
_LOG_END = re.compile(rb"![0-9A-F]{4}\n")


def good_line_telegrams(raw: bytes) -> list[bytes]:
    """The good-line log's telegrams as the meter sent them (`/` … `!XXXX` and CRLF, CRLF put
    back), without the pipeline: split at each end of frame, garbage before the identification
    line replaced by the `/` it stands for (one telegram), every checksum verified (ValueError
    if not)."""
    telegrams = []
    start = 0
    for end in _LOG_END.finditer(raw):
        piece = raw[start : end.end()]
        start = end.end()
        at = piece.find(HEADER)
        if at < 0:
            raise ValueError(f"no identification line before offset {end.start()}")
        telegram = (b"/" + piece[at:]).replace(b"\n", b"\r\n")
        bang = telegram.rindex(b"!")
        if not _sealed(telegram[: bang + 5]):
            raise ValueError(f"checksum fails for the telegram ending at offset {end.start()}")
        telegrams.append(telegram)
    return telegrams


def decoded_snapshots(telegrams: Sequence[bytes], what: str = "telegram") -> list[Snapshot]:
    """Snapshots of whole telegrams decoded directly (no pipeline, no repair)."""
    decoder = Decoder()
    out = []
    for index, telegram in enumerate(telegrams):
        bang = telegram.rindex(b"!")
        decoded = decoder.decode(telegram[: bang + 1])
        stamp = decoded.meter_time.isoformat() if decoded.meter_time else None
        out.append(
            snapshot_from_telegram(decoded, f"{what} #{index} ({stamp})", telegram.rstrip(b"\r\n"))
        )
    return out
