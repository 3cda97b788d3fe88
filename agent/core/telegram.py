"""Frame → Telegram: table-driven OBIS decoding with units and meter time, sans-I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from itertools import compress
from operator import ne
from typing import Final, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mypy_extensions import mypyc_attr

from agent.core.fields import FieldValue, field_for, scaled, unit_field
from agent.core.memo import remember
from agent.core.obis import BILLING_PROFILE_CODES, MBUS_KINDS, Kind, lookup
from agent.core.shape import DECIMAL, MAX_DIGITS, Known, Plan, Shape, build, match, plan_value

Value = float | str | list["Reading"] | None
# (OBIS reference, reading, p1 field name or None, its value, further fields of the line or None)
_Line = tuple[str, "Reading", str | None, FieldValue, tuple[tuple[str, FieldValue], ...] | None]
# A number line's layout: its end after the value, that end's negative length, and its
# (OBIS reference, unit, field name, factor).
_Layout = tuple[bytes, int, Known]
_new_reading: Final = tuple.__new__  # Reading without its keyword defaults, on the hot path
_CLOCK_CODE: Final = "0-0:1.0.0"
_CLOCK: Final = _CLOCK_CODE.encode() + b"("
_CLOCK_START: Final = len(_CLOCK)


class Reading(NamedTuple):
    """One value from a telegram line. `raw` keeps the text when it could not be parsed.

    A named tuple rather than a frozen dataclass: as immutable, and made several times faster,
    which counts at some twenty new readings per telegram."""

    value: Value
    unit: str | None = None
    time: datetime | None = None  # capture time (M-Bus, peak demand, billing date, event end)
    start: datetime | None = None  # period start (Belgian monthly peaks)
    raw: str | None = None


@dataclass(slots=True)
class MbusDevice:
    channel: int
    device_type: int | None = None
    equipment_id: str | None = None
    reading: Reading | None = None

    @property
    def kind(self) -> str:
        if self.device_type is None:
            return "unknown"
        return MBUS_KINDS.get(self.device_type, f"type_{self.device_type}")


@dataclass(slots=True)
class Telegram:
    header: str  # the identification line without `/`
    readings: dict[str, Reading]  # keyed by OBIS reference as written
    meter_time: datetime | None = None
    equipment_id: str | None = None
    mbus: list[MbusDevice] = field(default_factory=list)
    unknown_lines: list[str] = field(default_factory=list)  # lines that are not OBIS objects
    fields: dict[str, FieldValue] = field(default_factory=dict)  # `p1` fields, named with units

    @property
    def meter(self) -> str:
        """The meter's name for tags: its equipment identifier, else its identification line."""
        return self.equipment_id or self.header


AUTO_ZONE = "auto"
DEFAULT_ZONE = "Europe/Amsterdam"
# Identification lines that name the country for certain: (prefix, model code, zone). The Irish
# Iskra (`/ISk5\2MIE5T-200`) keeps Irish time whatever its S/W flag says.
HEADER_ZONES: tuple[tuple[str, str, str], ...] = (("ISK", "MIE", "Europe/Dublin"),)
# A meter clock before this is a clock never set (`000101010000W`, 2000-01-01), not a time.
CLOCK_SET_AFTER: Final = datetime(2005, 1, 1, tzinfo=UTC)


def clock_set(time: datetime) -> bool:
    """`time` is not before CLOCK_SET_AFTER. A later local year decides it alone (no offset
    reaches a day), far cheaper than comparing times in different zones, once per telegram."""
    return time.year > CLOCK_SET_AFTER.year or time >= CLOCK_SET_AFTER


def header_zone(header: str) -> str | None:
    """The meter's time zone when its identification line names the country for certain."""
    for prefix, model, zone in HEADER_ZONES:
        if header[:3].upper() == prefix and model in header[4:]:
            return zone
    return None


class MeterZone:
    """How a meter's local clock maps to UTC.

    The zone's own rules give the offset (CET rules by default; Irish meters run on Irish time,
    whatever their flag says); the S (summer) / W (winter) flag decides only the repeated autumn
    hour, which the rules alone cannot. Timestamps without a flag (DSMR 2.2/3 gas) take the first
    occurrence.

    `auto` (the default setting) is CET rules, except for meters whose identification line says
    for certain which country they serve (`HEADER_ZONES`): the decoder picks their zone itself.
    """

    MINUTES = 1024  # bound on the offsets kept per local minute

    def __init__(self, name: str = AUTO_ZONE) -> None:
        self.auto = name == AUTO_ZONE
        if self.auto:
            name = DEFAULT_ZONE
        try:
            self.zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown meter time zone {name!r}") from exc
        self.name = name
        self._fixed: dict[timedelta, timezone] = {}
        self._minutes: dict[tuple[str, int], datetime] = {}  # minute → its first second

    def parse_optional(self, text: str) -> datetime | None:
        """Timestamps that meters fill with placeholders (`632525252525W`) decode to None."""
        try:
            return self.parse(text)
        except ValueError:
            return None

    def parse(self, text: str) -> datetime:
        """`YYMMDDhhmmss` and an optional `S`/`W` flag → aware datetime; ValueError if invalid."""
        if len(text) == 13:
            # Some Landis+Gyr E350 write the flag of the gas capture time in lowercase.
            flag = text[12]
            if flag not in ("S", "W", "s", "w"):
                raise ValueError(text)
            fold = 1 if flag in ("W", "w") else 0
        elif len(text) == 12:
            fold = 0
        else:
            raise ValueError(text)
        if not text[:12].isdigit():
            raise ValueError(text)
        # The zone's rules give one offset per local minute (they change only on whole hours),
        # and a clock line is new in every telegram: the minute is made once, and its seconds
        # added (much cheaper than a datetime built from its fields).
        key = (text[:10], fold)
        minute = self._minutes.get(key)
        if minute is None:
            year = int(text[0:2])
            fields = (
                # POSIX %y pivot: `700101010000W` (an empty M-Bus channel) is 1970, not 2070.
                year + (2000 if year < 69 else 1900),
                int(text[2:4]),
                int(text[4:6]),
                int(text[6:8]),
                int(text[8:10]),
            )
            local = datetime(*fields, tzinfo=self.zone, fold=fold)
            offset = local.utcoffset() or timedelta(0)
            fixed = self._fixed.get(offset)
            if fixed is None:
                fixed = self._fixed[offset] = timezone(offset)
            if len(self._minutes) >= self.MINUTES:
                self._minutes.clear()
            minute = self._minutes[key] = datetime(*fields, tzinfo=fixed)
        second = int(text[10:12])
        if second > 59:
            raise ValueError(text)
        return minute + _SECONDS[second]


_SECONDS: Final = tuple(timedelta(seconds=s) for s in range(60))


def _decimal(text: bytes) -> bool:
    """ASCII digits with at most one point and a sign: float() alone would also take `1_0`,
    ` 1`, `inf`, `nan` and `²`, which on a P1 line can only be noise."""
    digits = text[1:] if text[:1] == b"-" else text
    return digits.replace(b".", b"", 1).isdigit()


def _number(text: str) -> Reading:
    value, star, unit = text.partition("*")
    if _decimal(value.encode("latin-1")) and len(value) <= MAX_DIGITS:
        return Reading(float(value), unit if star else None)
    return Reading(None, unit if star else None, raw=text)


def _hex_text(text: str) -> str:
    """Hex-encoded ASCII identifiers decoded when they are printable; otherwise kept as written."""
    if text and len(text) % 2 == 0:
        try:
            decoded = bytes.fromhex(text).decode("ascii")
        except ValueError:
            return text
        if decoded.isprintable():
            return decoded
    return text


_IDENTIFIERS: Final = tuple(
    code + suffix
    for code in (
        "0-0:96.1.1",
        "0-0:96.1.0",
        "0-0:96.1.255",
        "1-0:0.0.0",
        "0-0:42.0.0",
        "0-0:0.0.0",
        "0-0:96.1.2",
    )
    for suffix in ("", "*255")
)
# Anonymised or unset identifiers: `0000…`, or hex that decodes to spaces.
_BLANK: Final = " 0\x00"


# A dataclass, not a named tuple: compiled (setup.py), it is made by a C call, once per telegram.
@dataclass(slots=True)
class _Previous:
    """The last telegram `Decoder` decoded, for `_delta` to start from: its lines (None when
    its shape matched: split from its body when needed); per line the decoded line `_delta` may
    replace (None where it may not: empty, unknown, DSMR 2.2 gas), of which `_delta` compares
    only the code, field and further fields; per line its `Plan`; which line is the meter's
    clock (-1: none), for `_delta` to redo as a time alone; and the shape its telegrams take,
    with the texts of its whole-line and number groups."""

    zone: MeterZone
    lines: list[bytes] | None
    body: bytes
    hits: list[_Line | None]
    plans: list[Plan | None]
    clock: int
    telegram: Telegram
    others: list[str]
    shape: Shape | None
    texts: tuple[bytes, ...]
    values: tuple[bytes, ...]


def _set_number(
    readings: dict[str, Reading], fields: dict[str, FieldValue], known: Known, number: float
) -> None:
    """A number line's reading and field, from its value and what its plan knows of it."""
    obis, unit, name, factor = known
    readings[obis] = _new_reading(Reading, (number, unit, None, None, None))
    if name is not None:
        fields[name] = number if factor == 1 else scaled(number, factor)


# A regular class even when mypyc compiles this module (see setup.py): its methods stay
# replaceable, as the tests replace them, for little of the speed.
@mypyc_attr(native_class=False)
class Decoder:
    """Decodes frame bodies into Telegrams. Keeps a bounded cache of decoded lines, since most
    lines repeat unchanged from one telegram to the next (identifiers, units, billing profile)."""

    CACHE_LIMIT = 4096
    # Whole lines: the clock, registers and instantaneous values are new in every telegram, so
    # this cache fills with lines never seen again; a small bound keeps a meter's share near
    # 128 KiB (it matters with 200 meters in one process) and costs one full decode per refill.
    LINE_CACHE_LIMIT = 512
    # At most one shape is made per this many telegrams: compiling one costs some 2 ms, as much
    # as 50 to 100 decodes, and a meter needs few (a new one when a line starts to change).
    SHAPE_EVERY = 64

    def __init__(self, zone: MeterZone | None = None) -> None:
        self.zone = zone or MeterZone()
        self._auto = self.zone.auto
        self._zone_header: str | None = None  # the header `_use_zone` last chose the zone for
        self._zones = {self.zone.name: self.zone}
        # Whole decoded lines hold times in the zone they were decoded in: one cache per zone.
        self._caches: dict[str, dict[bytes, _Line]] = {self.zone.name: {}}
        self._cache = self._caches[self.zone.name]
        self._codes: dict[bytes, tuple[str, Kind | None]] = {}
        self._targets: dict[tuple[str, str | None], tuple[str, int] | None] = {}
        self._idents: dict[str, str] = {}
        # (OBIS bytes, unit bytes) → (OBIS reference, unit, field name, factor) of number lines
        self._numbers: dict[tuple[bytes, bytes], tuple[str, str | None, str | None, int]] = {}
        # OBIS bytes → the number line's layout as first seen: its end after the value
        # (`*kWh)`) and what `_numbers` holds for it. A line that ends the same way needs only
        # its value checked and converted (see `_plan`).
        self._layouts: dict[bytes, _Layout] = {}
        # Most telegrams are the one before with a few lines changed (the clock, registers,
        # instantaneous values): from it only those lines are decoded again (`_delta`).
        self._previous: _Previous | None = None
        # Since the last `_full`: the lines that changed, and those that had to be whole-line
        # groups of a shape. Telegrams decoded since the last shape was made.
        self._changing: set[int] = set()
        self._loose: set[int] = set()
        self._since_shape = 0

    def _hex_text(self, text: str) -> str:
        decoded = self._idents.get(text)
        if decoded is None:
            return remember(self._idents, text, _hex_text(text), self.CACHE_LIMIT)
        return decoded

    def _use_zone(self, header: str) -> None:
        self._zone_header = header  # a meter's telegrams keep their header: looked up once
        name = header_zone(header) or DEFAULT_ZONE
        if name != self.zone.name:
            if name not in self._zones:
                self._zones[name] = MeterZone(name)
                self._caches[name] = {}
            self.zone = self._zones[name]
            self._cache = self._caches[name]

    def _identifier(self, text: str) -> str | None:
        """An identifier as the meter means it, or None when it is blank: zeros (`0000…`, an
        anonymised or absent device) or hex that decodes to spaces identify nothing."""
        name = self._hex_text(text)
        return name if name.strip(_BLANK) else None

    def decode(self, body: bytes) -> Telegram:
        """Decode a frame body (`/` … `!`, CRLF line ends). Never raises on odd content."""
        if len(self._cache) > self.LINE_CACHE_LIMIT:
            self._cache.clear()
        self._since_shape += 1
        previous = self._previous
        if previous is not None and previous.shape is not None and previous.zone is self.zone:
            shaped = self._shaped(previous, body)
            if shaped is not None:
                return shaped
        lines = body.split(b"\r\n")
        header = lines[0][1:].decode("latin-1") if lines[0][:1] == b"/" else ""
        if self._auto and header != self._zone_header:
            self._use_zone(header)
        telegram = self._delta(lines, header, body)
        if telegram is None:
            telegram = self._full(lines, header, body)
        return telegram

    def _hit(self, line: bytes) -> _Line | None:
        """A line decoded (None: not an OBIS object), from the line cache when it repeats."""
        cache = self._cache
        hit = cache.get(line)
        if hit is not None:
            return hit
        hit = self._decode_line(line)
        if hit is not None:
            cache[line] = hit
        return hit

    def _plan(self, line: bytes, hit: _Line) -> Plan | None:
        """How `_delta` can redo this line from its value alone: a number line in its code's
        layout, decoded to that layout's code and field."""
        obis_b, _, rest = line.partition(b"(")
        layout = self._layouts.get(obis_b)
        if layout is None or hit[4] is not None or not rest.endswith(layout[0]):
            return None
        known = layout[2]
        if known[0] != hit[0] or known[2] != hit[2]:
            return None
        return obis_b + b"(", len(obis_b) + 1, layout[0], layout[1], known

    def _full(self, lines: list[bytes], header: str, body: bytes) -> Telegram:
        """Every line decoded; what `_delta` needs of it is kept for the next telegram."""
        readings: dict[str, Reading] = {}
        fields: dict[str, FieldValue] = {}
        telegram = Telegram(header=header, readings=readings, fields=fields)
        pending_gas: _Line | None = None
        others: list[str] = []  # lines that are not p1 fields: clock, identifiers, M-Bus, logs
        hits: list[_Line | None] = [None] * len(lines)  # None: a line `_delta` cannot redo
        # Readings and fields set: more than there are when two lines fill one of them, which
        # `_delta` cannot redo (the later line decides).
        assigned = named = 0
        last = len(lines) - 1 if lines[-1] == b"!" else len(lines)
        for i in range(1, last):
            line = lines[i]
            if not line:
                continue
            if pending_gas is not None and line[:1] == b"(":
                # DSMR 2.2/3: the gas value sits on the line after 0-n:24.3.0.
                obis, head = pending_gas[0], pending_gas[1]
                # Two slices: compiled (mypyc 2.4), `line[1:-1]` of a line of one byte fails.
                reading = _number(line[1:][:-1].decode("latin-1"))
                readings[obis] = Reading(reading.value, head.unit, head.time, raw=reading.raw)
                pending_gas = None
                continue
            hit = self._hit(line)
            if hit is None:
                telegram.unknown_lines.append(line.decode("latin-1"))
                continue
            obis, reading, name, value, extra = hit
            readings[obis] = reading
            assigned += 1
            if name is not None:
                fields[name] = value
                named += 1
                if extra is not None:
                    fields.update(extra)
                    named += len(extra)
                hits[i] = hit
                continue
            others.append(obis)
            if obis[4:] == "24.3.0":
                pending_gas = hit
            else:
                hits[i] = hit
        self._finish(telegram, others)
        self._changing = set()
        self._loose = set()
        unique = assigned == len(readings) and named == len(fields)
        if not unique:
            self._previous = None
            return telegram
        plans = [None if hit is None else self._plan(lines[i], hit) for i, hit in enumerate(hits)]
        clock = next(
            (i for i, hit in enumerate(hits) if hit is not None and lines[i].startswith(_CLOCK)),
            -1,
        )
        self._previous = _Previous(
            self.zone, lines, body, hits, plans, clock, telegram, others, None, (), ()
        )
        return telegram

    def _shaped(self, previous: _Previous, body: bytes) -> Telegram | None:
        """The telegram from the one before when `body` takes its shape: every line outside
        the shape's groups as it was, the number groups whose value changed read as their plan
        says, and the whole-line groups that changed redone as `_delta` redoes them. None when
        it does not take the shape."""
        shape = previous.shape
        assert shape is not None
        groups = match(shape, body)
        if groups is None:
            return None
        before = previous.telegram
        readings = before.readings.copy()
        fields = before.fields.copy()
        values = shape.values(groups)
        numbers = shape.numbers
        # The values that changed. Each is digits with one point at most (the pattern says so):
        # float() takes it. An index loop: compiled (setup.py), it costs less than iterators
        # finding them in C.
        old = previous.values
        for k in range(len(values)):
            value = values[k]
            if value != old[k]:
                _set_number(readings, fields, numbers[k], float(value))
        texts = shape.texts(groups)
        hits, others_changed = previous.hits, False
        changes = [
            (i, text)
            for i, text, old in zip(shape.lines, texts, previous.texts, strict=True)
            if text != old
        ]
        if changes:
            redone = self._redo(previous, changes, readings, fields)
            if redone is None:
                return None
            hits, others_changed = redone
        return self._next(
            previous,
            before.header,
            readings,
            fields,
            hits,
            others_changed,
            None,
            body,
            shape,
            texts,
            values,
        )

    def _delta(self, lines: list[bytes], header: str, body: bytes) -> Telegram | None:
        """The telegram from the one before when only lines that `_full` could redo changed,
        each into a line of the same code and field: its readings and fields copied (their
        order is the same) and those lines redone. None when it cannot be."""
        previous = self._previous
        if previous is None or previous.zone is not self.zone:
            return None
        before_lines = previous.lines
        if before_lines is None:
            before_lines = previous.body.split(b"\r\n")
        if (
            len(lines) != len(before_lines)
            or lines[0] != before_lines[0]
            or lines[-1] != before_lines[-1]
        ):
            return None
        before = previous.telegram
        readings = before.readings.copy()
        fields = before.fields.copy()
        # The indices of the lines that differ, found in C (no Python loop over the lines).
        changed = list(compress(range(len(lines)), map(ne, lines, before_lines)))
        redone = self._redo(previous, [(i, lines[i]) for i in changed], readings, fields)
        if redone is None:
            return None
        # This telegram did not take the shape (if there was one), so its lines need not be
        # those the shape holds: only a shape made from them is kept.
        shape = None
        self._changing.update(changed)
        if self._changing and self._since_shape >= self.SHAPE_EVERY:
            shape, loose = build(lines, previous.plans, self._changing, self._loose)
            self._loose.update(loose)
            self._since_shape = 0
        texts: tuple[bytes, ...] = ()
        values: tuple[bytes, ...] = ()
        if shape is not None:
            groups = match(shape, body)
            if groups is None:  # a line the shape cannot hold (a CR or LF inside a line)
                shape = None
            else:
                texts, values = shape.texts(groups), shape.values(groups)
        return self._next(
            previous, header, readings, fields, *redone, lines, body, shape, texts, values
        )

    def _redo(
        self,
        previous: _Previous,
        changes: list[tuple[int, bytes]],
        readings: dict[str, Reading],
        fields: dict[str, FieldValue],
    ) -> tuple[list[_Line | None], bool] | None:
        """Into `readings` and `fields`: the lines that changed since `previous`, as (index,
        line). Returns the decoded lines for the next telegram to start from, and whether
        identifiers or M-Bus lines changed (what `_finish` makes of them may then change); None
        when a line cannot be redone so."""
        hits = previous.hits
        copied = False  # hits is copied before its first change
        plans = previous.plans
        clock = previous.clock
        others_changed = False
        for i, line in changes:
            plan = plans[i]
            # The usual change: a new value in the same layout, so the same code and field
            # (hits[i] stays as it is: its value is never read). Only digits and points, as
            # `_decode_line` requires (float() alone takes `1_0`, `inf`, ` 1`), and one point at
            # most, or float() refuses.
            if (
                plan is not None
                and (value_b := plan_value(plan, line)) is not None
                and len(value_b) <= MAX_DIGITS
                and not value_b.strip(DECIMAL)
            ):
                try:
                    number = float(value_b)
                except ValueError:
                    pass
                else:
                    _set_number(readings, fields, plan[4], number)
                    continue
            if i == clock and line.startswith(_CLOCK) and line.endswith(b")"):
                # The clock, new in every telegram: as `_parse` makes a time of it.
                time = self.zone.parse_optional(line[_CLOCK_START:-1].decode("latin-1"))
                if time is not None:
                    readings[_CLOCK_CODE] = _new_reading(Reading, (None, None, time, None, None))
                    continue
            old = hits[i]
            hit = self._hit(line)
            if old is None or hit is None or hit[0] != old[0] or hit[2] != old[2]:
                return None
            extra = hit[4]
            if extra is not None or old[4] is not None:
                if (
                    extra is None
                    or old[4] is None
                    or [k for k, _ in extra] != [k for k, _ in old[4]]
                ):
                    return None
                fields.update(extra)
            readings[hit[0]] = hit[1]
            if hit[2] is not None:
                fields[hit[2]] = hit[3]
            elif hit[0] != _CLOCK_CODE:
                others_changed = True
            if not copied:
                hits = hits.copy()
                copied = True
            hits[i] = hit
        return hits, others_changed

    def _next(
        self,
        previous: _Previous,
        header: str,
        readings: dict[str, Reading],
        fields: dict[str, FieldValue],
        hits: list[_Line | None],
        others_changed: bool,
        lines: list[bytes] | None,
        body: bytes,
        shape: Shape | None,
        texts: tuple[bytes, ...],
        values: tuple[bytes, ...],
    ) -> Telegram:
        """The telegram of `_shaped` or `_delta`, kept for the next one to start from."""
        before = previous.telegram
        telegram = Telegram(
            header=header,
            readings=readings,
            fields=fields,
            unknown_lines=before.unknown_lines.copy(),
        )
        if others_changed:
            self._finish(telegram, previous.others)
        else:  # the same identifiers and M-Bus lines: the same meter and devices
            self._clock(telegram)
            telegram.equipment_id = before.equipment_id
            telegram.mbus = before.mbus
        self._previous = _Previous(
            self.zone,
            lines,
            body,
            hits,
            previous.plans,
            previous.clock,
            telegram,
            previous.others,
            shape,
            texts,
            values,
        )
        return telegram

    def _decode_line(self, line: bytes) -> _Line | None:
        obis_b, sep, rest = line.partition(b"(")
        if not sep or not rest.endswith(b")") or not obis_b:
            return None
        value_b, star, unit_b = rest[:-1].partition(b"*")
        known = self._numbers.get((obis_b, unit_b))
        if (
            known is not None
            and b"(" not in unit_b
            and _decimal(value_b)
            and len(value_b) <= MAX_DIGITS
        ):
            # A number line seen before with another value: no text decoding, no lookups.
            obis, unit, name, factor = known
            number = float(value_b)
            reading = Reading(number, unit)
            if name is None:
                return obis, reading, None, "", None
            return obis, reading, name, number if factor == 1 else scaled(number, factor), None
        code = self._codes.get(obis_b)
        if code is None:
            obis = obis_b.decode("latin-1")
            spec = lookup(obis)
            code = remember(
                self._codes,
                obis_b,
                (obis, spec.kind if spec is not None else None),
                self.CACHE_LIMIT,
            )
        obis, kind = code
        body = rest[:-1].decode("latin-1")
        if kind is Kind.NUMBER and ")(" not in body:
            reading = _number(body)  # the common case, without the dispatch below
        else:
            try:
                reading = self._parse(kind, body.split(")("))
            except (ValueError, IndexError):
                return obis, Reading(None, raw=body), None, "", None
        value = reading.value
        if isinstance(value, list) and kind is Kind.NUMBER:
            return obis, reading, *self._values(obis, value)
        if value is None or value == "" or isinstance(value, list):
            return obis, reading, None, "", None
        target = self._target(obis, reading.unit)
        if (
            kind is Kind.NUMBER
            and isinstance(value, float)
            and len(self._numbers) < self.CACHE_LIMIT
        ):
            known = self._numbers[(obis_b, unit_b)] = (
                obis,
                reading.unit,
                *(target or (None, 1)),
            )
            if obis_b not in self._layouts:
                tail = star + unit_b + b")"
                self._layouts[obis_b] = (tail, -len(tail), known)
        if target is None:
            return obis, reading, None, "", None
        name, factor = target
        if not isinstance(value, float):
            return obis, reading, name, value, None
        number = scaled(value, factor)
        if kind is Kind.SIGNED:
            return obis, reading, *self._signed(obis, reading.unit, name, number)
        return obis, reading, name, number, None

    def _target(self, obis: str, unit: str | None) -> tuple[str, int] | None:
        key = (obis, unit)
        if key in self._targets:
            return self._targets[key]
        return remember(self._targets, key, field_for(obis, unit), self.CACHE_LIMIT)

    def _signed(
        self, obis: str, unit: str | None, name: str, number: float
    ) -> tuple[str, FieldValue, tuple[tuple[str, FieldValue], ...]]:
        """A signed power: its magnitude in the import field or the export one, the other 0, so
        both fields exist in every point whichever way the power flows."""
        spec = lookup(obis)
        assert spec is not None and spec.negative is not None
        opposite, _ = unit_field(spec.negative, unit)
        return name, max(number, 0.0), ((opposite, max(-number, 0.0)),)

    def _values(
        self, obis: str, values: list[Reading]
    ) -> tuple[str | None, FieldValue, tuple[tuple[str, FieldValue], ...] | None]:
        """A line with several numbers (`1-1:31.4.0(100*A)(-063*A)`): the first under the
        code's name, the n-th with `_n` before the unit."""
        pairs: list[tuple[str, FieldValue]] = []
        for n, entry in enumerate(values, start=1):
            target = self._target(obis, entry.unit)
            if target is None or not isinstance(entry.value, float):
                continue
            name, factor = target
            if n > 1:
                base, _ = self._target(obis, None) or (name, 1)
                name, _ = unit_field(f"{base}_{n}", entry.unit)
            pairs.append((name, scaled(entry.value, factor)))
        if not pairs:
            return None, "", None
        return pairs[0][0], pairs[0][1], tuple(pairs[1:]) or None

    def _parse(self, kind: Kind | None, groups: list[str]) -> Reading:
        parse_time = self.zone.parse
        first = groups[0]
        if kind is Kind.NUMBER:
            if len(groups) > 1:
                return Reading([_number(g) for g in groups])
            return _number(first)
        if kind is Kind.SIGNED:
            return _number(first)
        if kind is Kind.TIMESTAMP:
            return Reading(None, time=parse_time(first)) if first else Reading(None)
        if kind is Kind.TEXT:
            return Reading(first)
        if kind is Kind.HEXTEXT:
            return Reading(first)
        if kind is Kind.MESSAGE:
            # Padding (0xFF on the Hungarian meter, NUL elsewhere) is not message content.
            return Reading(first.rstrip("\xff\x00"))
        if kind is Kind.TIMED_NUMBER:
            reading = _number(groups[1])
            return Reading(
                reading.value, reading.unit, self.zone.parse_optional(first), raw=reading.raw
            )
        if kind is Kind.LEGACY_GAS:
            # (ts)(00)(60)(1)(0-n:24.2.1)(unit); the value follows on the next line.
            return Reading(None, groups[5] or None, parse_time(first))
        if kind is Kind.EVENT_LOG:
            # (count)(0-0:96.7.19)(end)(duration*s)…: entries with a placeholder end
            # (`000101000001W`) or a duration without unit (`(23)`) are kept as written.
            count = int(first or "0")
            events = []
            for i in range(2, min(2 + 2 * count, len(groups) - 1), 2):
                duration = _number(groups[i + 1])
                events.append(
                    Reading(duration.value, duration.unit, self.zone.parse_optional(groups[i]))
                )
            return Reading(events)
        if kind is Kind.PROFILE:
            return self._profile(groups)
        # Unknown code: the type must not depend on the characters of one reading (a hex
        # counter reads `00104443` one second, `02FAB8BF` the next, and InfluxDB refuses a field
        # that changes type), so only a value with a unit is a number; anything else is text.
        if len(groups) == 1:
            return _number(first) if "*" in first else Reading(first)
        return Reading([Reading(g) for g in groups])

    def _profile(self, groups: list[str]) -> Reading:
        parse_time = self.zone.parse
        if len(groups) == 1:
            return Reading([])  # `0-0:98.1.0(12)`: a count without entries (Swiss Sagemcom)
        if len(groups) >= 3 and groups[1] == "1-0:1.6.0":
            # Belgian monthly peaks: (n)(1-0:1.6.0)(1-0:1.6.0), then n × (start)(peak time)(kW).
            count = int(groups[0])
            peaks = []
            for i in range(3, 3 + 3 * count, 3):
                reading = _number(groups[i + 2])
                peaks.append(
                    Reading(
                        reading.value,
                        reading.unit,
                        self.zone.parse_optional(groups[i + 1]),
                        self.zone.parse_optional(groups[i]),
                    )
                )
            return Reading(peaks)
        # Hungarian billing profile: (billing time) then the registers of BILLING_PROFILE_CODES.
        values = [_number(g) for g in groups[1:]]
        if len(values) != len(BILLING_PROFILE_CODES):
            raise ValueError("unexpected billing profile layout")
        return Reading(values, time=parse_time(groups[0]))

    @staticmethod
    def _clock(telegram: Telegram) -> None:
        stamp = telegram.readings.get(_CLOCK_CODE)
        if stamp is not None and stamp.time is not None and clock_set(stamp.time):
            telegram.meter_time = stamp.time

    def _finish(self, telegram: Telegram, others: list[str]) -> None:
        self._clock(telegram)
        readings = telegram.readings
        # Luxembourg's Smarty names itself by its logical device name only.
        for code in _IDENTIFIERS:
            ident = readings.get(code)
            if ident is not None and isinstance(ident.value, str):
                name = self._identifier(ident.value)
                if name is not None:
                    telegram.equipment_id = name
                    break
        devices: dict[int, MbusDevice] = {}
        for obis in others:
            if obis[:2] != "0-" or obis[2:3] not in ("1", "2", "3", "4") or obis[3:4] != ":":
                continue
            reading = readings[obis]
            channel = int(obis[2])
            device = devices.get(channel)
            if device is None:
                device = devices[channel] = MbusDevice(channel)
            code = obis[4:].partition("*")[0]
            if code == "24.1.0" and isinstance(reading.value, float):
                device.device_type = int(reading.value)
            elif code in ("96.1.0", "96.1.1") and isinstance(reading.value, str):
                device.equipment_id = self._identifier(reading.value)
            elif code == "96.1.2" and isinstance(reading.value, str) and not device.equipment_id:
                # Belgian e-MUCS 2.x: the serial, the name when no 96.1.0/96.1.1 gives one.
                device.equipment_id = self._identifier(reading.value)
            elif code in ("24.2.1", "24.2.3", "24.3.0"):
                device.reading = reading
        # DSMR 2.2/3 gas meters do not announce a device type in every telegram variant.
        for device in devices.values():
            if (
                device.device_type is None
                and device.reading is not None
                and device.reading.unit == "m3"
            ):
                device.device_type = 3
        telegram.mbus = [devices[c] for c in sorted(devices)]
