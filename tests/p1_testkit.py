"""Helpers shared by the tests: sealing telegrams, simulated telegrams, restoring the capture,
feeding in chunks."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from typing import Any

from agent.core.crc import FUNCTIONS, CrcKind
from agent.core.framing import Frame, Framer
from agent.core.pipeline import MeterPipeline, Result
from agent.simulate import SimulatedMeter

# The capture's owner replaced 7 serial digits with `n` in three places; any 7 digits restore
# the structure (the same digits everywhere), the checksums then have to be recomputed.
CAPTURE_DIGITS = b"1234567"
CAPTURE_MASK = b"n" * 7

# One telegram of the capture: `/` … `!XXXX` and its LF (the log lost its CRs).
_CAPTURE_TELEGRAM = re.compile(rb"/AUX.*?![0-9A-F]{4}\n", re.DOTALL)


def seal(body: bytes, kind: CrcKind = CrcKind.ARC, line_end: bytes = b"\r\n") -> bytes:
    """A telegram from its body (`/` … `!`): checksum as 4 upper-case hex digits and line end."""
    assert body.startswith(b"/") and body.endswith(b"!"), body[:20]
    return body + b"%04X" % FUNCTIONS[kind](body) + line_end


def reseal(telegram: bytes, kind: CrcKind = CrcKind.ARC) -> bytes:
    """Replace the checksum of a complete CRLF telegram (`/` … `!XXXX\\r\\n`) by a correct one."""
    bang = telegram.rindex(b"!")
    return seal(telegram[: bang + 1], kind)


def simulated(flavour: str, count: int = 1, **options: Any) -> list[bytes]:
    """`count` consecutive telegrams of a simulated meter (agent.simulate) of that flavour."""
    meter = SimulatedMeter(flavour, **options)
    return [meter.next_telegram() for _ in range(count)]


def split_capture(raw: bytes) -> list[bytes]:
    """The capture's telegrams as published: LF line ends, `n` digits, stale checksums."""
    return _CAPTURE_TELEGRAM.findall(raw)


def restore_capture_telegram(telegram: bytes, digits: bytes = CAPTURE_DIGITS) -> bytes:
    """Put digits back in the three masked places and CRLF back at every line end."""
    assert telegram.count(CAPTURE_MASK) == 3
    return telegram.replace(CAPTURE_MASK, digits).replace(b"\n", b"\r\n")


def body_and_checksum(telegram: bytes) -> tuple[bytes, int]:
    bang = telegram.rindex(b"!")
    return telegram[: bang + 1], int(telegram[bang + 1 :].strip(), 16)


def even_parity(data: bytes) -> bytes:
    """What a port at 8N1 receives from a meter sending 7E1: the parity bit lands in bit 7."""
    return bytes(b | (b.bit_count() % 2) << 7 for b in data)


def chunks(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """`data` split at the given offsets (any order, duplicates and out-of-range ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def frame_all(data: bytes | Sequence[bytes], max_frame: int | None = None) -> list[Frame]:
    """Frames from `data` (one chunk, or a sequence of chunks), including those `close()` finds."""
    framer = Framer() if max_frame is None else Framer(max_frame)
    pieces = [data] if isinstance(data, bytes) else data
    frames: list[Frame] = []
    for piece in pieces:
        frames += framer.feed(piece)
    return frames + framer.close()


def run_pipeline(
    data: bytes | Sequence[bytes], pipeline: MeterPipeline | None = None
) -> tuple[MeterPipeline, list[Result]]:
    pipeline = pipeline or MeterPipeline()
    pieces = [data] if isinstance(data, bytes) else data
    results: list[Result] = []
    for piece in pieces:
        results += pipeline.feed(piece)
    return pipeline, results + pipeline.close()
