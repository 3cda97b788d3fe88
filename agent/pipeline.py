"""Bytes → results for one meter: framer, checksum, decoder and derived values. Sans-I/O.

The live agent, `replay` and the tests all push bytes through this one class.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from agent.crc import CrcChecker, CrcKind
from agent.derive import Deriver
from agent.fields import FieldValue
from agent.framing import DEFAULT_MAX_FRAME, Frame, Framer
from agent.points import telegram_fields
from agent.telegram import Decoder, MeterZone, Telegram

VALID = "valid"
REPAIRED = "repaired"
REJECTED = "rejected"


@dataclass(slots=True)
class Result:
    """The outcome for one frame, in stream order."""

    status: str  # valid | repaired | rejected
    frame: Frame
    telegram: Telegram | None = None
    reason: str | None = None  # why a frame was rejected
    crc: CrcKind | None = None
    fields: dict[str, FieldValue] = field(default_factory=dict)  # p1 fields incl. derived values
    derived: dict[str, float] = field(default_factory=dict)
    repair: dict[str, object] | None = None  # method and byte changes of a repaired frame

    @property
    def accepted(self) -> bool:
        return self.status != REJECTED


class MeterPipeline:
    """Everything between the source's bytes and the sinks, for one meter."""

    def __init__(
        self,
        *,
        zone: MeterZone | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        crc: CrcKind | None = None,
    ) -> None:
        self.framer = Framer(max_frame)
        self.checker = CrcChecker(crc)
        self.decoder = Decoder(zone)
        self.deriver = Deriver()
        self.counts: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.crc_failures = 0

    def feed(self, data: bytes) -> list[Result]:
        return [self._process(frame) for frame in self.framer.feed(data)]

    def close(self) -> list[Result]:
        return [self._process(frame) for frame in self.framer.close()]

    def _reject(self, frame: Frame, reason: str) -> Result:
        self.counts[REJECTED] += 1
        self.rejections[reason] += 1
        return Result(REJECTED, frame, reason=reason)

    def _process(self, frame: Frame) -> Result:
        if frame.truncated:
            return self._reject(frame, "truncated")
        if frame.headless:
            return self._reject(frame, "no_start")
        expected = frame.expected_crc
        kind: CrcKind | None = None
        if expected is not None:
            kind = self.checker.check(frame.body, expected)
            if kind is None:
                self.crc_failures += 1
                return self._reject(frame, "crc")
        elif self.checker.kind is not None:
            # This meter seals its telegrams; one without a checksum lost it on the line.
            return self._reject(frame, "missing_checksum")
        try:
            telegram = self.decoder.decode(frame.body)
        except Exception:
            return self._reject(frame, "undecodable")
        if not telegram.readings:
            return self._reject(frame, "no_readings")
        fields = telegram_fields(telegram)
        derived = self.deriver.derive(telegram.meter_time, fields)
        fields.update(derived)
        self.counts[VALID] += 1
        return Result(VALID, frame, telegram, crc=kind, fields=fields, derived=derived)
