"""Bytes → results for one source: framer, checksum, repair, decoder and derived values. Sans-I/O.

The live agent, `replay` and the tests all push bytes through this one class.
"""

from __future__ import annotations

import difflib
import enum
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

from agent.core.crc import CrcChecker, CrcKind
from agent.core.derive import Deriver
from agent.core.fields import FieldValue
from agent.core.fragment import obis_keys, unsealed_problem
from agent.core.framing import DEFAULT_MAX_FRAME, Frame, Framer
from agent.core.parity import ParityMasker
from agent.core.points import telegram_fields
from agent.core.repair import Candidate, MeterProfile, Outcome, Repair, Repairer
from agent.core.repair.plausible import implausible
from agent.core.telegram import Decoder, MeterZone, Telegram

K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")


class Status(enum.StrEnum):
    """What became of a frame. A str, so JSONL and metric labels carry the word itself."""

    VALID = "valid"
    REPAIRED = "repaired"
    REJECTED = "rejected"


VALID: Final = Status.VALID
REPAIRED: Final = Status.REPAIRED
REJECTED: Final = Status.REJECTED
FRAGMENT: Final = "fragment"  # a piece of a telegram cut short by a noise-made `!`
# A bug in the core, not noise on the line: counted apart, with its traceback in the result.
INTERNAL_ERROR: Final = "internal_error"

# What a printable-only terminal log (PuTTY) makes of the Hungarian meter's text message: the
# 1024 bytes of 0xFF padding (the longest DSMR text message) are not printable and vanish.
_EMPTY_MESSAGE: Final = b"\r\n0-0:96.13.0()\r\n"
_FF_MESSAGE: Final = b"\r\n0-0:96.13.0(" + b"\xff" * 1024 + b")\r\n"


@dataclass(slots=True)
class Result:
    """The outcome for one frame, in stream order."""

    status: Status
    frame: Frame  # for a repaired frame: the repaired bytes
    telegram: Telegram | None = None
    reason: str | None = None  # why a frame was rejected
    crc: CrcKind | None = None
    fields: dict[str, FieldValue] = field(default_factory=dict)  # p1 fields incl. derived values
    derived: dict[str, float] = field(default_factory=dict)
    repair: Repair | None = None  # method and byte changes of a repaired frame
    failure: str | None = None  # what was wrong on arrival: crc, truncated, no_start, …
    candidates: int = 0  # repair candidates CRC-tested for this frame (each risks 1/65 536)
    error: str | None = None  # INTERNAL_ERROR: the exception and its traceback

    @property
    def accepted(self) -> bool:
        return self.status != REJECTED


@dataclass(slots=True)
class _Meter:
    """What one meter taught us, keyed by its identification line (known before decoding)."""

    checker: CrcChecker
    profile: MeterProfile
    usual: frozenset[bytes] | None = None  # lines every accepted checksum-less telegram held
    stale: int = 0  # frames lost since the last accepted one: the repair budget shrinks with it


def _with_message(body: bytes) -> bytes:
    return body.replace(_EMPTY_MESSAGE, _FF_MESSAGE, 1)


def _alike(a: bytes, b: bytes) -> bool:
    """Identification lines that differ by a few damaged, dropped or inserted bytes."""
    return difflib.SequenceMatcher(None, a, b).ratio() >= 0.8


class MeterPipeline:
    """Everything between the source's bytes and the sinks, for one source."""

    MAX_METERS = 64  # bound on per-meter state when a stream mixes meters
    # A full table makes room for a new meter only by forgetting one silent for this many
    # accepted telegrams (an hour of a meter sending every second): a flood of forged identities
    # cannot push out the meters still sending, and meters gone for good do not keep their place.
    SILENT_TELEGRAMS = 3600

    def __init__(
        self,
        *,
        zone: MeterZone | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        crc: CrcKind | None = None,
        repair: bool = True,
    ) -> None:
        # Before the framer: a 7E1 meter read as 8N1 gets its parity bit stripped.
        self.parity = ParityMasker()
        self.framer = Framer(max_frame)
        self.decoder = Decoder(zone)
        self.repairer = Repairer(self.decoder) if repair else None
        self._crc = crc
        self._meters: dict[bytes, _Meter] = {}
        self._last: _Meter | None = None  # for frames whose identification line is damaged
        self._derivers: dict[str, Deriver] = {}
        self._accepted = 0  # accepted telegrams: the clock by which remembered meters go silent
        # Per table: key → self._accepted when last used, least recently used first.
        self._meters_seen: dict[bytes, int] = {}
        self._derivers_seen: dict[str, int] = {}
        # A frame that ended too soon and could not be repaired alone, with its rejection: the
        # next frame may be its rest, split off by a byte that turned into `/` or `!`.
        self._held: tuple[Frame, Result] | None = None
        self.counts: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.crc_failures = 0

    def feed(self, data: bytes) -> list[Result]:
        results: list[Result] = []
        for frame in self.framer.feed(self.parity.feed(data)):
            self._handle(frame, results)
        return results

    def close(self) -> list[Result]:
        results: list[Result] = []
        for frame in [*self.framer.feed(self.parity.close()), *self.framer.close()]:
            self._handle(frame, results)
        if self._held is not None:
            self._emit(self._held[1], results)
            self._held = None
        return results

    def _emit(self, result: Result, results: list[Result]) -> None:
        self.counts[result.status] += 1
        if result.failure is not None:
            self.crc_failures += 1  # failed its check on arrival, whatever became of it
        if result.reason is not None:
            self.rejections[result.reason] += 1
        results.append(result)

    # -- per-meter state -------------------------------------------------------------------

    @staticmethod
    def _header(frame: Frame) -> bytes:
        end = frame.body.find(b"\r\n", 0, 128)
        return frame.body[:end] if end > 0 else b""

    def _meter(self, frame: Frame, header: bytes) -> _Meter:
        """The known meter this frame comes from, or a new one (remembered once it is accepted,
        so garbage cannot fill the table)."""
        meter = self._meters.get(header)
        if meter is not None:
            return meter
        if self._last is not None and not self._new_meter(frame, header):
            return self._last  # an identification line we do not know: the last meter's, damaged
        return _Meter(CrcChecker(self._crc), MeterProfile())

    def _remember(self, header: bytes, meter: _Meter) -> None:
        meter.stale = 0
        self._keep(self._meters, self._meters_seen, header, meter)
        self._last = meter

    def _keep(self, table: dict[K, V], seen: dict[K, int], key: K, value: V) -> None:
        """Keep `value` under `key` as just used, within MAX_METERS (see SILENT_TELEGRAMS)."""
        if key not in table and len(table) >= self.MAX_METERS:
            oldest = next(iter(seen))
            if self._accepted - seen[oldest] < self.SILENT_TELEGRAMS:
                return
            del table[oldest], seen[oldest]
        table[key] = value
        seen.pop(key, None)
        seen[key] = self._accepted

    def _new_meter(self, frame: Frame, header: bytes) -> bool:
        """A whole frame that checks out on its own, or carries no checksum at all (as DSMR 2.2
        and EasyMeter frames do) under an identification line unlike any we know, comes from a
        meter not seen before."""
        if frame.truncated or frame.headless:
            return False
        expected = frame.expected_crc
        if expected is not None:
            return CrcChecker(self._crc).check(frame.body, expected) is not None
        return not any(_alike(header, known) for known in self._meters)

    def _fields(self, telegram: Telegram) -> tuple[dict[str, FieldValue], dict[str, float]]:
        """The `p1` fields of an accepted telegram with the derived values added, and those."""
        self._accepted += 1
        fields = telegram_fields(telegram)
        derived = self._deriver(telegram.meter).derive(telegram.meter_time, fields)
        fields.update(derived)
        return fields, derived

    def _deriver(self, meter: str) -> Deriver:
        deriver = self._derivers.get(meter)
        if deriver is None:
            deriver = Deriver()
        self._keep(self._derivers, self._derivers_seen, meter, deriver)
        return deriver

    # -- frames ----------------------------------------------------------------------------

    def _handle(self, frame: Frame, results: list[Result]) -> None:
        held = self._held
        if held is not None:
            self._held = None
            joined = self._guarded(held[0], lambda: self._join(held[0], frame))
            if joined is not None:
                self._emit(joined, results)
                return
            self._emit(held[1], results)
        result = self._guarded(frame, lambda: self._process(frame))
        if not result.accepted and self._holdable(frame, result):
            self._held = (frame, result)  # decided when the next frame arrives
            return
        self._emit(result, results)

    @staticmethod
    def _guarded(frame: Frame, step: Callable[[], R]) -> R | Result:
        """Run one step of the core. An exception is a bug, never line noise: the frame is
        rejected as INTERNAL_ERROR with the traceback, and the stream goes on."""
        try:
            return step()
        except Exception as exc:
            error = "".join(traceback.format_exception(exc))
            return Result(REJECTED, frame, reason=INTERNAL_ERROR, error=error)

    def _holdable(self, frame: Frame, result: Result) -> bool:
        """A rejected frame shorter than its meter's telegrams may have ended early: cut by a
        byte that turned into `/`, or into `!` before a line end. The next frame may be its rest.
        Before any telegram was accepted, only a fragment (`…)` turned `…!`) is held."""
        meter = self._last
        if self.repairer is None or frame.headless:
            return False
        if meter is None or not meter.profile.ready:
            return result.reason == FRAGMENT
        return len(frame.body) < len(meter.profile.bodies[-1])

    def _join(self, held: Frame, frame: Frame) -> Result | None:
        """Try the held frame and this one as one telegram split by a byte that became `/`."""
        meter = self._last
        if self.repairer is None:
            return None
        if meter is None or not meter.profile.ready:
            return self._cold_join(held, frame)
        expected = frame.expected_crc
        if expected is not None and meter.checker.check(frame.body, expected) is not None:
            return None  # the new frame is fine on its own: the held one was really cut short
        # A frame that ended on a false `!` lost its line end to the framer: put it back.
        prefix = held.body if held.truncated else held.text + b"\r\n"
        outcome = self.repairer.repair(frame, meter.profile, prefix=prefix, stale=meter.stale)
        if not outcome.repaired:
            return None
        return self._repaired(held, meter, outcome, "split")

    def _cold_join(self, held: Frame, frame: Frame) -> Result | None:
        """Without a profile: a fragment whose last `)` turned into `!`, and the headless rest
        with the checksum. One hypothesis (two with the 0xFF run), each checked by the CRC."""
        if not frame.headless or frame.checksum is None or held.body[-3:] == b"\r\n!":
            return None
        body = held.body[:-1] + b")\r\n" + frame.body
        candidates = [Candidate(body, ("join",))]
        if _EMPTY_MESSAGE in body:
            candidates.append(Candidate(_with_message(body), ("join", "ff_run")))
        header = self._header(held)
        return self._sealed(frame, header, self._meter(held, header), candidates, FRAGMENT)

    def _sealed(
        self,
        frame: Frame,
        header: bytes,
        meter: _Meter,
        candidates: Sequence[Candidate],
        failure: str,
    ) -> Result | None:
        """The one candidate body whose CRC matches the frame's checksum, accepted as a repair.
        Used before a profile exists, with one or two candidates: 2⁻¹⁵ at most."""
        expected = frame.expected_crc
        if expected is None:
            return None
        for body, methods in candidates:
            kind = meter.checker.check(body, expected)
            if kind is None:
                continue
            telegram = self.decoder.decode(body)
            if not telegram.readings or implausible(telegram, meter.profile.history):
                return None
            assert frame.checksum is not None
            if self.repairer is not None:
                meter.profile.learn(body, frame.checksum, kind, telegram)
            self._remember(header, meter)
            fields, derived = self._fields(telegram)
            tried = len(candidates)
            return Result(
                REPAIRED,
                Frame(body, frame.checksum, frame.offset, frame.skipped),
                telegram,
                crc=kind,
                fields=fields,
                derived=derived,
                repair=Repair("+".join(methods), (), tried),
                failure=failure,
                candidates=tried,
            )
        return None

    @staticmethod
    def _reject(frame: Frame, reason: str, failure: str | None = None) -> Result:
        return Result(REJECTED, frame, reason=reason, failure=failure)

    def _fail(self, frame: Frame, meter: _Meter, failure: str) -> Result:
        """A frame that did not check out: repaired exactly, or rejected with the reason."""
        if self.repairer is None:
            return self._reject(frame, failure, failure)
        outcome = self.repairer.repair(frame, meter.profile, stale=meter.stale)
        if not outcome.repaired:
            meter.stale += 1
            reason = outcome.reason or "unrepairable"
            # Without a profile nothing was tried: the arrival failure is the reason.
            result = self._reject(frame, failure if reason == "no_profile" else reason, failure)
            result.candidates = outcome.tried
            return result
        return self._repaired(frame, meter, outcome, failure)

    def _repaired(self, received: Frame, meter: _Meter, outcome: Outcome, failure: str) -> Result:
        assert outcome.body is not None and outcome.telegram is not None
        telegram = outcome.telegram
        frame = Frame(outcome.body, outcome.checksum, received.offset, received.skipped)
        meter.profile.accept(telegram)
        meter.stale = 0
        for change in outcome.changes:
            if len(change.was) == len(change.now) and len(change.was) <= 2:
                meter.profile.observe(change.was, change.now)
        fields, derived = self._fields(telegram)
        assert outcome.method is not None
        repair = Repair(outcome.method, outcome.changes, outcome.tried)
        return Result(
            REPAIRED,
            frame,
            telegram,
            crc=meter.profile.crc,
            fields=fields,
            derived=derived,
            repair=repair,
            failure=failure,
            candidates=outcome.tried,
        )

    def _process(self, frame: Frame) -> Result:
        header = self._header(frame)
        meter = self._meter(frame, header)
        if frame.truncated:
            return self._fail(frame, meter, "truncated")
        if frame.headless:
            return self._fail(frame, meter, "no_start")
        expected = frame.expected_crc
        checker = meter.checker
        kind: CrcKind | None = None
        if expected is not None:
            kind = checker.check(frame.body, expected)
            if kind is None:
                if not meter.profile.ready and _EMPTY_MESSAGE in frame.body:
                    # Nothing learned yet: only what a terminal log is known to drop is tried.
                    candidate = [Candidate(_with_message(frame.body), ("ff_run",))]
                    restored = self._sealed(frame, header, meter, candidate, "crc")
                    if restored is not None:
                        return restored
                return self._fail(frame, meter, "crc")
            assert frame.checksum is not None
            if meter.profile.uppercase and frame.checksum.upper() != frame.checksum:
                # Same value, but not the bytes this meter writes: a letter damaged on the line.
                return self._fail(frame, meter, "crc")
        elif not frame.body.endswith(b"\r\n!"):
            # A `!` inside a line ended the frame: a `)` that lost a bit, or noise.
            return self._reject(frame, FRAGMENT, FRAGMENT)
        elif checker.kind is not None or meter.profile.checksum_length is not None:
            # This meter seals its telegrams; one without a checksum lost it on the line.
            return self._fail(frame, meter, "missing_checksum")
        elif unsealed_problem(frame.body, meter.usual) is not None:
            return self._reject(frame, FRAGMENT, FRAGMENT)
        telegram = self.decoder.decode(frame.body)
        if not telegram.readings:
            return self._reject(frame, "no_readings")
        if self.repairer is not None:
            meter.profile.learn(frame.body, frame.checksum, kind, telegram)
        if expected is None:
            keys = obis_keys(frame.body)
            meter.usual = keys if meter.usual is None else meter.usual & keys
        self._remember(header, meter)
        fields, derived = self._fields(telegram)
        return Result(VALID, frame, telegram, crc=kind, fields=fields, derived=derived)
