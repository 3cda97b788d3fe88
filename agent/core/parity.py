"""A 7E1 meter read as 8N1: spot the parity bit in bit 7 and strip it. Sans-I/O, bytes in and out.

DSMR 2.2/3 meters send 9600 7E1. A port or bridge set to 8N1 at that speed receives every
character as its 7 data bits with the even-parity bit in bit 7: the telegram is all there, and
`b & 0x7F` restores it exactly. `ParityMasker` decides from the bytes themselves.

Only *text* bytes (low 7 bits printable ASCII, CR or LF) count as evidence, so the Hungarian
meter's 1024 bytes of 0xFF (real 8-bit data on a genuine 8N1 link, and of even parity) can never
make it mask. Over the last `WINDOW` bytes:
- mask when there are at least `MIN_TEXT` text bytes, at most 1/64 of all bytes have odd parity
  (a little line noise) and at least a quarter of the text bytes have bit 7 set (7E1 sets it on
  about half; ASCII sent as 8N1 on none);
- pass bytes on unchanged when at least 8 text bytes, and over a quarter of them, have odd
  parity (about half of ASCII sent as 8N1; none of 7E1 but for noise).
Between the two nothing changes, so noise does not make it flap.

Until the first verdict bytes are held back, so the first telegram of a 7E1 meter is not lost:
at most `HOLD` bytes, after which they pass on unchanged (plain ASCII decides within a few dozen
bytes; only a stream with no text in it, such as a 0xFF run, waits that long). Later switches
apply from the next bytes on, with nothing held. Order and count of bytes never change.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

BLOCK = 1024  # evidence is kept per block of the stream: bounded memory, cheap C-speed counting
WINDOW = 4096
MIN_TEXT = 256
HOLD = 4096


def _table(keep: Callable[[int], object]) -> bytes:
    """The bytes outside a class, for `bytes.translate` to delete: what is left is the class."""
    return bytes(b for b in range(256) if not keep(b))


def _text(b: int) -> bool:
    low = b & 0x7F
    return 0x20 <= low < 0x7F or low in (0x0A, 0x0D)


def _odd(b: int) -> bool:
    return b.bit_count() % 2 == 1


_NOT_ODD = _table(_odd)
_NOT_TEXT = _table(_text)
_NOT_TEXT_HIGH = _table(lambda b: _text(b) and b & 0x80)
_NOT_TEXT_ODD = _table(lambda b: _text(b) and _odd(b))
_STRIP = bytes(b & 0x7F for b in range(256))


@dataclass(slots=True)
class _Counts:
    size: int = 0
    odd: int = 0
    text: int = 0
    text_high: int = 0
    text_odd: int = 0

    def add(self, data: bytes) -> None:
        # Translates skipped where the answer is known: telegram text is usually all text bytes,
        # and ASCII (checked much faster than a translate) has no high ones.
        size = len(data)
        odd = len(data.translate(None, _NOT_ODD))
        text = len(data.translate(None, _NOT_TEXT))
        self.size += size
        self.odd += odd
        self.text += text
        if not data.isascii():
            self.text_high += len(data.translate(None, _NOT_TEXT_HIGH))
        self.text_odd += odd if text == size else len(data.translate(None, _NOT_TEXT_ODD))

    def shift(self, other: _Counts, sign: int) -> None:
        """Add (sign 1) or take away (sign -1) another block's counts."""
        self.size += sign * other.size
        self.odd += sign * other.odd
        self.text += sign * other.text
        self.text_high += sign * other.text_high
        self.text_odd += sign * other.text_odd


class ParityMasker:
    """`feed(data)` returns the bytes to frame, `close()` what is still held; `masking` is True
    while bit 7 is stripped."""

    def __init__(self) -> None:
        self.masking = False
        self._blocks: deque[_Counts] = deque(maxlen=WINDOW // BLOCK)
        self._window = _Counts()  # the sums over _blocks, kept as blocks come and go
        self._block = _Counts()
        self._held: bytearray | None = bytearray()  # None once the first verdict is in

    @property
    def held(self) -> int:
        return len(self._held) if self._held is not None else 0

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        pos = 0
        while pos < len(data):
            piece = data[pos : pos + BLOCK - self._block.size]
            pos += len(piece)
            self._block.add(piece)
            verdict = self._verdict()
            if self._block.size == BLOCK:
                if len(self._blocks) == self._blocks.maxlen:
                    self._window.shift(self._blocks[0], -1)
                self._blocks.append(self._block)
                self._window.shift(self._block, 1)
                self._block = _Counts()
            if verdict is not None:
                self.masking = verdict
            held = self._held
            if held is None:
                out.append(self._apply(piece))
                continue
            held += piece
            if verdict is not None or len(held) >= HOLD:
                out.append(self._apply(bytes(held)))
                self._held = None
        return b"".join(out)

    def close(self) -> bytes:
        """End of stream: what is held goes on as the evidence so far says; the state stays, for
        a stream that goes on (replay's next file)."""
        held = self._held
        if not held:
            return b""
        self._held = bytearray()
        return self._apply(bytes(held))

    def _apply(self, data: bytes) -> bytes:
        return data.translate(_STRIP) if self.masking else data

    def _verdict(self) -> bool | None:
        """True: mask, False: pass on unchanged, None: no change."""
        w, block = self._window, self._block
        text = w.text + block.text
        text_odd = w.text_odd + block.text_odd
        if text_odd >= 8 and text_odd * 4 > text:
            return False
        if (
            text >= MIN_TEXT
            and (w.odd + block.odd) * 64 <= w.size + block.size
            and (w.text_high + block.text_high) * 4 >= text
        ):
            return True
        return None
