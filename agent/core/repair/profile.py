"""What a meter's recent valid telegrams say about the next one. Sans-I/O.

The profile keeps the last few valid bodies of one layout and, when a repair needs it, derives a
template: for every byte position, whether the byte is constant (OBIS codes, units, separators,
identifiers, the 0xFF text message, lines that did not change recently), a digit of a value, or an
S/W clock flag. A received frame is judged against that template.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from agent.core.crc import CrcKind
from agent.core.fields import FieldValue
from agent.core.obis import Kind, lookup
from agent.core.telegram import Telegram

CONST = 0
DIGIT = 1
FLAG = 2
_DIGITS = frozenset(b"0123456789")
_FLAGS = frozenset(b"SW")
# Lines that hold no measurement: identifiers, texts, settings, the billing profile and event
# logs. When unchanged over recent telegrams their digits are held constant too. Measurements
# never are: a register that sat still for a while may tick in exactly the corrupted telegram.
_STABLE_KINDS = {Kind.TEXT, Kind.HEXTEXT, Kind.MESSAGE, Kind.PROFILE, Kind.EVENT_LOG}
_STABLE_NAMES = {
    "limiter_threshold",
    "current_limit_l1",
    "current_limit_l2",
    "current_limit_l3",
    "mbus_device_type",
}


def _stable(key: str) -> bool:
    spec = lookup(key)
    return spec is not None and (spec.kind in _STABLE_KINDS or spec.name in _STABLE_NAMES)


@dataclass(frozen=True, slots=True)
class Run:
    """A long run of one constant byte (the Hungarian meter's 0xFF text message): where a
    receive-buffer overrun or a printable-only terminal log loses bytes, and the template alone
    says what they were."""

    before: bytes  # the bytes that lead up to the run (its line's OBIS code and `(`)
    byte: int
    length: int
    after: int  # the byte that follows the run


MIN_RUN = 16
CLEARS_EVIDENCE = 16  # bits seen cleared before the line counts as one that clears bits
GRID_EVIDENCE = 3  # clock steps seen before a telegram off the meter's grid is refused
_RUN_CONTEXT = 12


@dataclass(frozen=True, slots=True)
class Template:
    reference: bytes  # the latest valid body (`/` … `!`)
    classes: bytes  # CONST / DIGIT / FLAG per position
    line_starts: tuple[int, ...]  # offset of each line in the reference
    line_keys: tuple[str, ...]  # OBIS reference (or "header") of each line
    runs: tuple[Run, ...] = ()

    def restore_runs(self, body: bytes) -> bytes:
        """`body` with every run that lost bytes (a shorter run of the same byte, possibly
        empty, between the run's context and its next byte) made whole again; `body` itself
        when nothing was lost. All bytes of a run are equal, so where they went missing does not
        matter: one hypothesis per run."""
        for run in self.runs:
            at = body.find(run.before)
            if at < 0:
                continue
            start = at + len(run.before)
            end = start
            while end < len(body) and body[end] == run.byte:
                end += 1
            if end - start < run.length and end < len(body) and body[end] == run.after:
                body = body[:start] + bytes((run.byte,)) * run.length + body[end:]
        return body

    @property
    def hypotheses(self) -> int:
        """Single-byte changes the template allows: 9 other digits per digit, the other flag."""
        return 9 * self.classes.count(DIGIT) + self.classes.count(FLAG)

    def allowed(self, position: int) -> bytes:
        """The bytes a valid telegram may hold at `position`."""
        kind = self.classes[position]
        if kind == DIGIT:
            return b"0123456789"
        if kind == FLAG:
            return b"SW"
        return self.reference[position : position + 1]

    def fits(self, position: int, byte: int) -> bool:
        kind = self.classes[position]
        if kind == DIGIT:
            return byte in _DIGITS
        if kind == FLAG:
            return byte in _FLAGS
        return byte == self.reference[position]

    def violations(self, body: bytes, limit: int) -> list[int] | None:
        """Positions where an equal-length body breaks the template; None past `limit`."""
        found: list[int] = []
        reference = self.reference
        if body == reference:
            return found
        classes = self.classes
        for position in _differences(body, reference):
            kind = classes[position]
            byte = body[position]
            if (
                kind == CONST
                or (kind == DIGIT and byte not in _DIGITS)
                or (kind == FLAG and byte not in _FLAGS)
            ):
                found.append(position)
                if len(found) > limit:
                    return None
        return found

    def line_of(self, position: int) -> str:
        """The OBIS reference of the line holding `position`."""
        index = max(0, bisect_right(self.line_starts, position) - 1)
        return self.line_keys[index]


def _differences(a: bytes, b: bytes) -> list[int]:
    """Positions where two equal-length byte strings differ (fast for mostly-equal inputs)."""
    positions: list[int] = []
    start, end = 0, len(a)
    # Skip equal stretches in large steps; only differing blocks are scanned byte by byte.
    block = 64
    while start < end:
        stop = min(end, start + block)
        if a[start:stop] != b[start:stop]:
            positions.extend(i for i in range(start, stop) if a[i] != b[i])
        start = stop
    return positions


def _value_classes(line: bytes, classes: bytearray, offset: int) -> None:
    """Mark the digits of values (and S/W after a 12-digit timestamp) in one OBIS line."""
    open_at = line.find(b"(")
    if open_at < 0:
        return
    run = 0
    for i in range(open_at + 1, len(line)):
        byte = line[i]
        if byte in _DIGITS:
            classes[offset + i] = DIGIT
            run += 1
            continue
        if byte in _FLAGS and run == 12:
            classes[offset + i] = FLAG
        run = 0


def build_template(bodies: list[bytes]) -> Template:
    """Template from valid bodies of one layout, newest last."""
    reference = bodies[-1]
    classes = bytearray(len(reference))  # CONST everywhere to begin with
    starts: list[int] = []
    keys: list[str] = []
    position = 0
    for line in reference.split(b"\r\n"):
        starts.append(position)
        key = line.partition(b"(")[0].decode("latin-1") if line[:1] != b"/" else "header"
        keys.append(key or "blank")
        unchanged = (
            len(bodies) >= 3
            and _stable(keys[-1])
            and all(body[position : position + len(line)] == line for body in bodies[:-1])
        )
        if line[:1] != b"/" and not unchanged:
            _value_classes(line, classes, position)
        position += len(line) + 2
    return Template(reference, bytes(classes), tuple(starts), tuple(keys), _runs(reference))


_RUN = re.compile(rb"(.)\1{%d,}" % (MIN_RUN - 1), re.DOTALL)


def _runs(reference: bytes) -> tuple[Run, ...]:
    return tuple(
        Run(reference[m.start() - _RUN_CONTEXT : m.start()], m[0][0], len(m[0]), reference[m.end()])
        for m in _RUN.finditer(reference)
        if m.start() >= _RUN_CONTEXT and m.end() < len(reference)
    )


@dataclass(slots=True)
class History:
    """The latest accepted telegram of the meter, for plausibility checks."""

    time: datetime | None
    fields: dict[str, FieldValue]
    mbus: dict[str, tuple[float, datetime | None]]  # device → (value, capture time)
    grid: int = 0  # seconds every step of the meter's clock is a multiple of (0: not known)


class MeterProfile:
    """Learned from one meter's valid telegrams; updated in O(1) per telegram."""

    KEEP = 8  # bodies kept for the template

    def __init__(self) -> None:
        self.bodies: deque[bytes] = deque(maxlen=self.KEEP)
        self.checksum_length: int | None = None
        self.crc: CrcKind | None = None
        self._latest: Telegram | None = None
        self._history: History | None = None
        self._history_of: Telegram | None = None
        self.uppercase = False  # the meter writes its checksum in capitals (DSMR does)
        self._template: Template | None = None
        # Which way the line fails, from the bytes repairs changed: bits lost, bits gained.
        self.bits_cleared = 0
        self.bits_set = 0
        self._grid = 0
        self._steps = 0

    @property
    def clears(self) -> bool:
        """The line is known to lose 1-bits and almost never gain them (a weak pull-up, slow
        edges): a received byte came from one with more 1-bits."""
        return self.bits_cleared >= CLEARS_EVIDENCE and self.bits_set * 20 <= self.bits_cleared

    def observe(self, received: bytes, sent: bytes) -> None:
        """Learn from one byte a repair changed (equal-length substitutions only)."""
        for r, s in zip(received, sent, strict=True):
            self.bits_cleared += (s & ~r).bit_count()
            self.bits_set += (r & ~s).bit_count()

    @property
    def ready(self) -> bool:
        return len(self.bodies) >= 2 and self.checksum_length is not None and self.crc is not None

    def learn(
        self, body: bytes, checksum: bytes | None, crc: CrcKind | None, telegram: Telegram
    ) -> None:
        if self.bodies and len(self.bodies[-1]) != len(body):
            self.bodies.clear()  # a new layout (a line changed length): start over
        self.bodies.append(body)
        self._template = None
        if checksum is not None:
            self.checksum_length = len(checksum)
            if not self.uppercase:
                self.uppercase = checksum.upper() == checksum and not checksum.isdigit()
        if crc is not None:
            self.crc = crc
        self._learn_grid(telegram)
        self._latest = telegram

    def _learn_grid(self, telegram: Telegram) -> None:
        """The meter's clock steps (10 s on the Hungarian meter, 1 s on DSMR 5), from
        consecutive valid telegrams: their greatest common divisor."""
        before = self._latest
        if before is None or before.meter_time is None or telegram.meter_time is None:
            return
        step = (telegram.meter_time - before.meter_time).total_seconds()
        if step <= 0 or step != int(step):
            return
        self._grid = math.gcd(self._grid, int(step))
        self._steps += 1

    def accept(self, telegram: Telegram) -> None:
        """Record an accepted (valid or repaired) telegram as the latest history."""
        self._latest = telegram

    @property
    def history(self) -> History | None:
        """The latest accepted telegram, in the form the plausibility checks use; built only when
        a repair asks, since clean telegrams must not pay for it."""
        telegram = self._latest
        if telegram is None:
            return None
        if self._history is None or self._history_of is not telegram:
            mbus = {}
            for device in telegram.mbus:
                reading = device.reading
                if reading is not None and isinstance(reading.value, float):
                    key = device.equipment_id or str(device.channel)
                    mbus[key] = (reading.value, reading.time)
            grid = self._grid if self._steps >= GRID_EVIDENCE else 0
            self._history = History(telegram.meter_time, telegram.fields, mbus, grid)
            self._history_of = telegram
        return self._history

    def template(self) -> Template | None:
        if not self.bodies:
            return None
        if self._template is None:
            self._template = build_template(list(self.bodies))
        return self._template
