"""What the repair engine hands out: the repaired telegram, its method and every byte changed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from agent.core.telegram import Telegram


class Candidate(NamedTuple):
    """A body the CRC is to test, and the methods that made it."""

    body: bytes
    methods: tuple[str, ...]


class Found(NamedTuple):
    """A candidate that passed: its body, checksum text, decoded telegram and methods."""

    body: bytes
    checksum: bytes
    telegram: Telegram
    methods: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Change:
    """One run of bytes the repair changed: `was` as received, `now` as accepted, at `offset`
    in the accepted bytes, on the line of OBIS code `line` (or `checksum`)."""

    offset: int
    was: bytes
    now: bytes
    line: str

    def record(self) -> dict[str, object]:
        """The JSONL and noise-log form (design.md): hex bytes under `from` and `to`."""
        return {
            "offset": self.offset,
            "from": self.was.hex(),
            "to": self.now.hex(),
            "line": self.line,
        }


@dataclass(frozen=True, slots=True)
class Repair:
    """How a frame was repaired: the methods joined by `+`, the changes, the candidates tried."""

    method: str
    changes: tuple[Change, ...] = ()
    candidates: int = 0

    def record(self) -> dict[str, object]:
        return {
            "method": self.method,
            "changes": [change.record() for change in self.changes],
            "candidates": self.candidates,
        }


@dataclass(slots=True)
class Outcome:
    """A repaired telegram (body, checksum, telegram, method, changes) or a rejection reason."""

    body: bytes | None = None
    checksum: bytes | None = None
    telegram: Telegram | None = None
    method: str | None = None
    changes: tuple[Change, ...] = field(default_factory=tuple)
    reason: str | None = None
    tried: int = 0  # CRC-tested candidates: each adds ~1/65 536 to the false-accept chance

    @property
    def repaired(self) -> bool:
        return self.body is not None
