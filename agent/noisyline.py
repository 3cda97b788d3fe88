"""A noisy P1 line: corrupts clean telegrams the way real cables do. Sans-I/O.

`corrupt(telegram, mode, rng)` applies one failure mode to one clean, sealed telegram (`/` through
`!XXXX\\r\\n`, as `SimulatedMeter.next_telegram()` returns it) and returns a `Corruption`: the bytes
as they arrive plus the edits made (offsets into the clean telegram). `NoisyChannel` corrupts a
stream of telegrams at given per-mode rates (probability per telegram), for `simulate --noise` and
the repair benchmarks; `bad_line_rates()` gives the rates of a real bad line. Randomness comes only
from a `random.Random` passed in or seeded here, so the same seed gives the same noise.

`MODES` follow what the seed capture showed about a line in fair shape (shared/design.md): errors
cluster at the start of a telegram after the idle gap (`start_*`, `garbage_before_start`), before
the line that follows a pause in transmission (`garbage_before_line`, `line_zero_space`) and
inside the Hungarian meter's 1024-byte 0xFF run (`ff_run`); the rest are generic single and
double errors.

`BAD_LINE_MODES` follow the seed meter's bad line before its hardware fix and public reports of
E350/E360 and Sagemcom owners: bits are cleared (1→0), almost never set, so `0` arrives as a
space, `7` as `&`, `)` as `!` and digits as smaller digits (`bit_clear`, `bit_clear_2`,
`bit_clear_3`: one to three bytes hit); a lost byte beside a damaged one (`drop_substitution`; a
byte cleared into a control character is also what a terminal logger drops); tens to hundreds of
bytes lost when the reader's receive buffer overruns inside the 0xFF run (`overrun_block`, `hu`
only); a byte cleared into a `!` before a line end or into a `/`, splitting the frame
(`noise_bang`, `noise_slash`); and two telegrams merged into one frame because the end of the
first was lost (`merged`, which spans two telegrams and so exists only on a `NoisyChannel`).

Two guarantees hold for every corruption:
- it changes the bytes (no no-op edits: a substituted byte always differs, a flipped or cleared
  bit always was set) and the checksum can see it: a draw whose frame would still pass
  CRC-16/ARC or X25 with different bytes (a checksum digit changed to its other case, or the
  ~1/65 536 multi-byte error the CRC misses) is drawn again, since no receiver can catch it and
  it is no repair problem;
- no byte put in is `/` or `!`, except by `noise_bang` and `noise_slash`, whose failure is
  exactly that one byte. A stray `/` mid-telegram makes the framer start a new frame there and a
  stray `!` (before a hex digit and a line end) makes it end one early: either splits the
  telegram into two frames, which is a different failure from the one the other modes name. The
  start modes replace or hide the real `/` but never add one either.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from agent.core.crc import FUNCTIONS
from agent.core.framing import Framer

MODES: tuple[str, ...] = (
    "start_mangled",
    "garbage_before_start",
    "start_lost",
    "garbage_before_line",
    "line_zero_space",
    "ff_run",
    "bit_flip",
    "substitution",
    "drop",
    "insert",
    "checksum",
    "double_substitution",
    "double_predicted",
)
START_MODES = frozenset({"start_mangled", "garbage_before_start", "start_lost"})
MERGED = "merged"  # spans two telegrams: only a NoisyChannel can draw it
BAD_LINE_MODES: tuple[str, ...] = (
    "bit_clear",
    "bit_clear_2",
    "bit_clear_3",
    "drop_substitution",
    "overrun_block",
    "noise_bang",
    "noise_slash",
    MERGED,
)
ALL_MODES = MODES + BAD_LINE_MODES

BAD_LINE = "bad-line"  # the name of the bad-line profile on the command line
BAD_LINE_DAMAGE = 0.8  # 4 telegrams of 5 arrive damaged
# What the damaged telegrams of a bad line suffer, as shares (from the seed meter's bad-line
# capture: 1–3 cleared bits in most, `/` lost in about a quarter of all telegrams, the rest rarer).
BAD_LINE_MIX: Mapping[str, float] = {
    "bit_clear": 0.26,
    "bit_clear_2": 0.15,
    "bit_clear_3": 0.075,
    "start_lost": 0.30,
    "drop_substitution": 0.075,
    "overrun_block": 0.05,
    "noise_bang": 0.04,
    "noise_slash": 0.025,
    MERGED: 0.025,
}

# What the idle-gap start bit problem turns `/` (0x2F) into on real lines, besides random bytes.
MANGLED_STARTS = (0x0E, 0x0F, 0x2E, 0xAF)
_FORBIDDEN = frozenset(b"/!")  # never put in: they would split the frame (see the module doc)
_HEX = frozenset(b"0123456789ABCDEFabcdef")
_BANG, _SLASH = 0x21, 0x2F
# How many of a byte's 1-bits a bit-clear takes: one mostly.
_CLEARED_BITS = ((1, 2, 3), (0.8, 0.15, 0.05))
_OVERRUN = (16, 400)  # bytes a receive-buffer overrun loses
_MAX_DRAWS = 1000

# `!`, the checksum digits and the line end; then any lines a gateway appends (EasyMeter).
_TAIL = re.compile(rb"!([0-9A-Fa-f]{0,4})(\r?\n)(?:[^!/\r\n]*\r?\n)*\Z")
_HU_PAUSE_LINE = re.compile(rb"\r\n(0-0:96\.13\.0\()")
_MBUS_LINE = re.compile(rb"\r\n(0-[1-4]:24\.1\.0\()")
_FF_RUN = re.compile(rb"0-0:96\.13\.0\((\xff+)\)")
_OBIS = re.compile(rb"\r\n(\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3})")
_UNIT = re.compile(rb"(\*[A-Za-z0-9]+)\)")
_BILLING = re.compile(rb"\r\n(0-0:98\.1\.0\([^\r\n]*)")


class NotApplicable(ValueError):
    """The telegram has nothing this mode could corrupt (e.g. `ff_run` on a DSMR 5 telegram)."""


@dataclass(frozen=True, slots=True)
class Edit:
    """One change: `old` (empty for an insertion) at `offset` of the clean telegram became `new`
    (empty for a drop)."""

    offset: int
    old: bytes
    new: bytes

    def describe(self) -> str:
        if not self.old:
            return f"+{self.new.hex()}@{self.offset}"
        if not self.new:
            return f"-{self.old.hex()}@{self.offset}"
        return f"{self.old.hex()}>{self.new.hex()}@{self.offset}"


@dataclass(frozen=True, slots=True)
class Corruption:
    """One corrupted telegram: the bytes as they arrive and how they differ from the clean ones."""

    mode: str
    data: bytes
    edits: tuple[Edit, ...]

    @property
    def offsets(self) -> tuple[int, ...]:
        """Offsets (in the clean telegram) of the edits, ascending."""
        return tuple(edit.offset for edit in self.edits)

    def describe(self) -> str:
        return f"{self.mode} " + " ".join(edit.describe() for edit in self.edits)


# -- the telegram's parts ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Layout:
    bang: int  # offset of `!`
    end: int  # one past the last checksum digit (= start of the line end)
    text: bytes  # `/` through the last checksum digit


def _layout(telegram: bytes) -> _Layout:
    tail = _TAIL.search(telegram)
    if not telegram.startswith(b"/") or tail is None:
        raise ValueError("not a sealed telegram: expected `/` … `!XXXX` and a line end")
    end = tail.start(2)
    return _Layout(tail.start(), end, telegram[:end])


def _pause_line(telegram: bytes) -> int | None:
    """Offset of the line that follows a pause in transmission: `0-0:96.13.0(` on the Hungarian
    (`/AUX`) meter, else the first M-Bus device line `0-n:24.1.0(`."""
    pattern = _HU_PAUSE_LINE if telegram.startswith(b"/AUX") else _MBUS_LINE
    found = pattern.search(telegram)
    return found.start(1) if found else None


def _ff_run(telegram: bytes) -> tuple[int, int] | None:
    found = _FF_RUN.search(telegram)
    return found.span(1) if found else None


def _sources_of(target: int) -> bytes:
    """A regex character class of the bytes whose 1-bits, some cleared, make `target`."""
    sources = bytes(byte for byte in range(256) if byte != target and byte & target == target)
    return b"[" + re.escape(sources) + b"]"


# A byte that could clear into a `!` the framer takes for a telegram's end, being followed by 0–4
# hex digits and a line end (the `)` closing every line, mostly), and one that could become `/`.
_BANG_SOURCE = re.compile(b"(?=" + _sources_of(_BANG) + rb"[0-9A-Fa-f]{0,4}[\r\n])")
_SLASH_SOURCE = re.compile(_sources_of(_SLASH))


def _bang_sources(telegram: bytes, layout: _Layout) -> list[int]:
    return [found.start() for found in _BANG_SOURCE.finditer(telegram, 1, layout.bang)]


def _slash_sources(telegram: bytes, layout: _Layout) -> list[int]:
    return [found.start() for found in _SLASH_SOURCE.finditer(telegram, 1, layout.end)]


def predicted_spans(telegram: bytes) -> dict[str, list[tuple[int, int]]]:
    """The parts a meter's profile predicts from its previous telegrams, as [start, end) spans by
    kind: `header` (the identification line), `obis` (the code opening each line), `unit`
    (`*kWh` …), `ff_run` (the 0xFF text message) and `billing` (the `0-0:98.1.0` line). Kinds the
    telegram lacks are left out."""
    layout = _layout(telegram)
    body = telegram[: layout.bang]
    spans: dict[str, list[tuple[int, int]]] = {
        "header": [(0, body.find(b"\r\n"))],
        "obis": [m.span(1) for m in _OBIS.finditer(body)],
        "unit": [m.span(1) for m in _UNIT.finditer(body)],
    }
    run = _ff_run(body)
    if run is not None:
        spans["ff_run"] = [run]
    billing = _BILLING.search(body)
    if billing is not None:
        spans["billing"] = [billing.span(1)]
    return {kind: found for kind, found in spans.items() if found}


def applicable_modes(telegram: bytes, modes: Iterable[str] = MODES) -> tuple[str, ...]:
    """Those of `modes` (`MODES` by default) that have something to corrupt in this telegram, in
    their order."""
    layout = _layout(telegram)
    missing = set()
    if _pause_line(telegram) is None:
        missing |= {"garbage_before_line", "line_zero_space"}
    if _ff_run(telegram) is None:
        missing |= {"ff_run", "overrun_block"}
    if layout.end == layout.bang + 1:
        missing.add("checksum")  # DSMR 2.2/3: no checksum digits
    if not _bang_sources(telegram, layout):
        missing.add("noise_bang")
    if not _slash_sources(telegram, layout):
        missing.add("noise_slash")  # DSMR 5: no byte has the bits of a `/`
    return tuple(mode for mode in modes if mode not in missing)


# -- random pieces -----------------------------------------------------------------------------


def _random_byte(rng: random.Random, old: int | None = None) -> int:
    """A random byte that is neither `/`, `!` nor `old`."""
    while True:
        byte = rng.randrange(256)
        if byte != old and byte not in _FORBIDDEN:
            return byte


def _garbage(rng: random.Random, low: int, high: int) -> bytes:
    return bytes(_random_byte(rng) for _ in range(rng.randint(low, high)))


def _substitute(telegram: bytes, rng: random.Random, offset: int) -> Edit:
    old = telegram[offset]
    return Edit(offset, bytes([old]), bytes([_random_byte(rng, old)]))


def _cleared(old: int, rng: random.Random) -> int:
    """`old` with some of its 1-bits cleared (one mostly; 0 has none), never `/` or `!`."""
    ones = [bit for bit in range(8) if old >> bit & 1]
    while True:  # ends: some single bit of any byte but 0 clears into neither
        count = min(len(ones), rng.choices(*_CLEARED_BITS)[0])
        new = old
        for bit in rng.sample(ones, count):
            new &= ~(1 << bit)
        if new not in _FORBIDDEN:
            return new


def _bit_clear(telegram: bytes, rng: random.Random, offset: int) -> Edit:
    old = telegram[offset]
    return Edit(offset, bytes([old]), bytes([_cleared(old, rng)]))


def _clear_sites(telegram: bytes, layout: _Layout, rng: random.Random, count: int) -> list[int]:
    """`count` distinct offsets of the body and checksum, uniformly, with a bit left to clear."""
    while True:
        sites = rng.sample(range(layout.end), count)
        if all(telegram[offset] for offset in sites):
            return sites


def _apply(telegram: bytes, edits: Iterable[Edit]) -> bytes:
    data = bytearray(telegram)
    for edit in sorted(edits, key=lambda e: e.offset, reverse=True):
        data[edit.offset : edit.offset + len(edit.old)] = edit.new
    return bytes(data)


# -- the modes ---------------------------------------------------------------------------------

_Mode = Callable[[bytes, _Layout, random.Random], list[Edit]]


def _start_mangled(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    choice = rng.randrange(len(MANGLED_STARTS) + 1)
    byte = MANGLED_STARTS[choice] if choice < len(MANGLED_STARTS) else _random_byte(rng, 0x2F)
    return [Edit(0, b"/", bytes([byte]))]


def _garbage_before_start(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    return [Edit(0, b"", _garbage(rng, 1, 8))]


def _start_lost(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    return [Edit(0, b"/", b"")]


def _require_pause_line(telegram: bytes) -> int:
    line = _pause_line(telegram)
    if line is None:
        raise NotApplicable("no line after a pause (0-0:96.13.0 on /AUX, 0-n:24.1.0 elsewhere)")
    return line


def _garbage_before_line(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    return [Edit(_require_pause_line(telegram), b"", _garbage(rng, 1, 6))]


def _line_zero_space(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    line = _require_pause_line(telegram)
    return [Edit(line, b"0", b" ")]


def _require_ff_run(telegram: bytes) -> tuple[int, int]:
    run = _ff_run(telegram)
    if run is None:
        raise NotApplicable("no 0xFF run (0-0:96.13.0 text message)")
    return run


def _ff_run_mode(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    start, end = _require_ff_run(telegram)
    count = min(rng.randint(1, 4), end - start)
    return [_substitute(telegram, rng, offset) for offset in rng.sample(range(start, end), count)]


def _bit_flip(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    offset = rng.randrange(layout.end)
    old = telegram[offset]
    bits = [bit for bit in range(8) if old ^ (1 << bit) not in _FORBIDDEN]
    new = old ^ (1 << rng.choice(bits))
    return [Edit(offset, bytes([old]), bytes([new]))]


def _substitution(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    return [_substitute(telegram, rng, rng.randrange(layout.end))]


def _drop(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    offset = rng.randrange(layout.end)
    return [Edit(offset, telegram[offset : offset + 1], b"")]


def _insert(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    # The new byte lands at `offset`: after the `/` at the earliest, before the last digit at the
    # latest.
    return [Edit(rng.randint(1, layout.end - 1), b"", bytes([_random_byte(rng)]))]


def _checksum(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    if layout.end == layout.bang + 1:
        raise NotApplicable("the telegram has no checksum digits")
    return [_substitute(telegram, rng, rng.randrange(layout.bang + 1, layout.end))]


def _double_substitution(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    return [_substitute(telegram, rng, offset) for offset in rng.sample(range(layout.end), 2)]


def _double_predicted(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    # One kind of predicted part first (so the small ones, the header and the units, are hit as
    # often as the 1024-byte 0xFF run), then a byte of it; the other byte anywhere.
    spans = predicted_spans(telegram)
    kind = rng.choice(sorted(spans))
    offsets = [offset for start, end in spans[kind] for offset in range(start, end)]
    first = rng.choice(offsets)
    second = first
    while second == first:
        second = rng.randrange(layout.end)
    return [_substitute(telegram, rng, first), _substitute(telegram, rng, second)]


def _bit_clears(count: int) -> _Mode:
    def mode(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
        return [_bit_clear(telegram, rng, at) for at in _clear_sites(telegram, layout, rng, count)]

    return mode


def _drop_substitution(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    dropped, cleared = _clear_sites(telegram, layout, rng, 2)
    return [Edit(dropped, telegram[dropped : dropped + 1], b""), _bit_clear(telegram, rng, cleared)]


def _overrun_block(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    start, end = _require_ff_run(telegram)
    size = rng.randint(_OVERRUN[0], min(_OVERRUN[1], end - start))
    at = rng.randint(start, end - size)
    return [Edit(at, telegram[at : at + size], b"")]


def _cleared_into(telegram: bytes, rng: random.Random, sources: list[int], target: int) -> Edit:
    if not sources:
        raise NotApplicable(f"no byte whose bits could clear into {chr(target)!r}")
    at = rng.choice(sources)
    return Edit(at, telegram[at : at + 1], bytes([target]))


def _noise_bang(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    return [_cleared_into(telegram, rng, _bang_sources(telegram, layout), _BANG)]


def _noise_slash(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    return [_cleared_into(telegram, rng, _slash_sources(telegram, layout), _SLASH)]


def _end_lost(telegram: bytes, layout: _Layout, rng: random.Random) -> list[Edit]:
    """The first telegram of `merged`: its end gone past the framer's recognition, as the seed's
    bad line showed it: `!XXXX` and the line end lost, the `!` cleared, or a checksum digit
    cleared into a byte that is no hex digit."""
    how = rng.randrange(3 if layout.end > layout.bang + 1 else 2)
    if how == 0:
        return [Edit(layout.bang, telegram[layout.bang :], b"")]
    if how == 1:
        return [_bit_clear(telegram, rng, layout.bang)]
    digit = rng.randrange(layout.bang + 1, layout.end)
    while True:
        edit = _bit_clear(telegram, rng, digit)
        if edit.new[0] not in _HEX:
            return [edit]


_MODES: dict[str, _Mode] = {
    "start_mangled": _start_mangled,
    "garbage_before_start": _garbage_before_start,
    "start_lost": _start_lost,
    "garbage_before_line": _garbage_before_line,
    "line_zero_space": _line_zero_space,
    "ff_run": _ff_run_mode,
    "bit_flip": _bit_flip,
    "substitution": _substitution,
    "drop": _drop,
    "insert": _insert,
    "checksum": _checksum,
    "double_substitution": _double_substitution,
    "double_predicted": _double_predicted,
    "bit_clear": _bit_clears(1),
    "bit_clear_2": _bit_clears(2),
    "bit_clear_3": _bit_clears(3),
    "drop_substitution": _drop_substitution,
    "overrun_block": _overrun_block,
    "noise_bang": _noise_bang,
    "noise_slash": _noise_slash,
    MERGED: _end_lost,  # the first telegram's part; NoisyChannel takes the next one's `/`
}
assert tuple(_MODES) == ALL_MODES


def _passes_checksum(data: bytes, clean: bytes) -> bool:
    """Whether some frame in `data` other than the clean one still passes a CRC variant."""
    framer = Framer()
    for frame in framer.feed(data) + framer.close():
        if frame.truncated or frame.headless or frame.checksum is None or frame.text == clean:
            continue
        expected = frame.expected_crc
        if any(crc(frame.body) == expected for crc in FUNCTIONS.values()):
            return True
    return False


def _rng(rng: random.Random | int | str) -> random.Random:
    return rng if isinstance(rng, random.Random) else random.Random(rng)


def corrupt(telegram: bytes, mode: str, rng: random.Random | int | str) -> Corruption:
    """Corrupt one clean sealed telegram with `mode`, drawing from `rng` (or a seed).

    Raises NotApplicable when the telegram has nothing the mode could corrupt, ValueError for an
    unknown mode, for `merged` (it spans two telegrams: a `NoisyChannel` draws it) or bytes that
    are not a sealed telegram.
    """
    if mode == MERGED:
        raise ValueError("noise mode merged spans two telegrams: a NoisyChannel draws it")
    return _corrupt(telegram, mode, _rng(rng))


def _corrupt(telegram: bytes, mode: str, rng: random.Random) -> Corruption:
    apply_mode = _MODES.get(mode)
    if apply_mode is None:
        raise ValueError(f"unknown noise mode {mode!r} (choose from {', '.join(ALL_MODES)})")
    layout = _layout(telegram)
    for _ in range(_MAX_DRAWS):
        edits = tuple(sorted(apply_mode(telegram, layout, rng), key=lambda e: e.offset))
        data = _apply(telegram, edits)
        if data != telegram and not _passes_checksum(data, layout.text):
            return Corruption(mode, data, edits)
    raise RuntimeError(f"no detectable {mode} corruption found in {_MAX_DRAWS} draws")


def _run_into(previous: bytes, telegram: bytes, rng: random.Random) -> Corruption:
    """The second telegram of `merged`: it loses its `/`, so the framer reads on from `previous`
    (the first as it arrived, its end lost) to this one's end, one frame. Should that frame pass
    a CRC (the ~1/65 536 it misses), a bit cleared as well makes the damage visible."""
    layout = _layout(telegram)
    edits = [Edit(0, b"/", b"")]
    for _ in range(_MAX_DRAWS):
        data = _apply(telegram, edits)
        if not _passes_checksum(previous + data, layout.text):
            return Corruption(MERGED, data, tuple(edits))
        edits = [edits[0], _bit_clear(telegram, rng, rng.randrange(1, layout.end))]
    raise RuntimeError(f"no detectable merge found in {_MAX_DRAWS} draws")


# -- rates and the stream channel ----------------------------------------------------------------


def parse_rate(text: str, what: str = "noise rate") -> float:
    """A probability per telegram from its text: a number from 0 to 1."""
    try:
        rate = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
        raise ValueError(f"{what} {text!r} must be between 0 and 1 (a probability per telegram)")
    return rate


def parse_rates(spec: str) -> dict[str, float]:
    """Per-mode rates from `MODE=RATE[,MODE=RATE…]`, e.g. `substitution=0.003,start_lost=0.001`."""
    rates: dict[str, float] = {}
    for item in spec.split(","):
        mode, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not mode or not value:
            raise ValueError(f"noise {item.strip()!r} is not MODE=RATE (e.g. substitution=0.003)")
        if mode not in _MODES:
            raise ValueError(f"unknown noise mode {mode!r} (choose from {', '.join(ALL_MODES)})")
        if mode in rates:
            raise ValueError(f"noise mode {mode} is given twice")
        rates[mode] = parse_rate(value, f"noise rate for {mode}")
    check_rates(rates)
    return rates


def spread_rate(rate: float, modes: Iterable[str] = MODES) -> dict[str, float]:
    """`rate` shared equally among `modes` (all of `MODES` by default)."""
    chosen = tuple(modes)
    return {mode: rate / len(chosen) for mode in chosen}


def bad_line_rates(telegram: bytes, damage: float = BAD_LINE_DAMAGE) -> dict[str, float]:
    """The rates of a real bad line for this meter's telegrams: `damage` of them damaged (4 of 5
    by default), shared as `BAD_LINE_MIX` says among the modes the telegram has (a DSMR 5
    telegram has no 0xFF run to overrun and no byte that clears into `/`). A `merged` damages
    the telegram after it as well, so a little more than `damage` arrives damaged."""
    mix = {mode: BAD_LINE_MIX[mode] for mode in applicable_modes(telegram, BAD_LINE_MIX)}
    total = sum(mix.values())
    return {mode: damage * share / total for mode, share in mix.items()}


def check_rates(rates: Mapping[str, float]) -> None:
    """ValueError unless every mode is known, every rate a probability and their sum at most 1."""
    for mode, rate in rates.items():
        if mode not in _MODES:
            raise ValueError(f"unknown noise mode {mode!r} (choose from {', '.join(ALL_MODES)})")
        if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
            raise ValueError(f"noise rate for {mode} must be between 0 and 1, not {rate}")
    total = sum(rates.values())
    if total > 1.0 + 1e-9:
        raise ValueError(
            f"noise rates add up to {total:g}; a telegram is corrupted at most once, "
            "so their sum must not exceed 1"
        )


class NoisyChannel:
    """Corrupts a stream of telegrams: each telegram independently meets at most one mode, mode
    `m` with probability `rates[m]`. A drawn mode the telegram has nothing for (`ff_run` on DSMR 5)
    lets it through clean and is counted in `skipped`. `merged` takes two telegrams: the one it is
    drawn for loses its end, the next one its `/` (and draws nothing of its own), so the framer
    sees one frame; both count as corrupted by it."""

    def __init__(self, rates: Mapping[str, float], rng: random.Random | int | str = 0) -> None:
        self.set_rates(rates)
        self.rng = _rng(rng)
        self.telegrams = 0
        self.counts: Counter[str] = Counter()  # corrupted telegrams per mode
        self.skipped: Counter[str] = Counter()
        self._merging: bytes | None = None  # the telegram that lost its end, as it arrived

    def set_rates(self, rates: Mapping[str, float]) -> None:
        """The line's noise from the next telegram on (a storm passing; a cold start)."""
        check_rates(rates)
        self.rates = {mode: rates[mode] for mode in ALL_MODES if rates.get(mode, 0.0) > 0.0}

    @property
    def corrupted(self) -> int:
        return sum(self.counts.values())

    @property
    def merging(self) -> bool:
        """Whether the last telegram lost its end, so the next one runs into it."""
        return self._merging is not None

    def corrupt(self, telegram: bytes) -> Corruption | None:
        """The telegram's corruption, or None when it passes clean."""
        self.telegrams += 1
        if self._merging is not None:
            corruption = _run_into(self._merging, telegram, self.rng)
            self._merging = None
        else:
            mode = self._draw()
            if mode is None:
                return None
            try:
                corruption = _corrupt(telegram, mode, self.rng)
            except NotApplicable:
                self.skipped[mode] += 1
                return None
            if mode == MERGED:
                self._merging = corruption.data
        self.counts[corruption.mode] += 1
        return corruption

    def _draw(self) -> str | None:
        if not self.rates:
            return None
        draw = self.rng.random()
        for mode, rate in self.rates.items():
            draw -= rate
            if draw < 0:
                return mode
        return None

    def transmit(self, telegram: bytes) -> bytes:
        """The telegram's bytes as they arrive at the other end of the line."""
        corruption = self.corrupt(telegram)
        return telegram if corruption is None else corruption.data

    def summary(self) -> str:
        parts = ", ".join(f"{mode} {n}" for mode, n in sorted(self.counts.items()))
        return f"{self.telegrams} telegrams, {self.corrupted} corrupted" + (
            f" ({parts})" if parts else ""
        )
