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

Counting costs a few passes over every byte, so bytes that cannot change anything are not
counted: while bytes pass unchanged (nothing held, no masking) and the window holds fewer than
`MIN_TEXT / 4` text bytes with bit 7 set, *plain* bytes (ASCII or 0xFF, never such a text byte)
cannot bring the mask verdict, and the pass verdict changes nothing. They go on as they are; the
window's counts are taken again from its last bytes when other bytes come.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

BLOCK = 1024  # evidence is kept per block of the stream: bounded memory, cheap C-speed counting
WINDOW = 4096
MIN_TEXT = 256
HOLD = 4096
SPAN = 16 * BLOCK  # plain bytes are looked for this many at a time inside a feed
_KEEP = WINDOW + BLOCK  # the stream's last bytes kept: all the window's and the block's
_FF = memoryview(b"\xff" * BLOCK)


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


def _plain(data: bytes) -> bool:
    """Whether every byte is ASCII or 0xFF: no text byte has bit 7 set. Runs of 0xFF are found and
    compared at C speed, a block's worth at a time (the Hungarian meter's 1024 in one go); only
    a mix of them and other bytes inside a block's reach is sorted out byte by byte."""
    if 0xFF not in data:
        return data.isascii()
    pos = 0
    while (run := data.find(b"\xff", pos)) >= 0:
        if not data[pos:run].isascii():
            return False
        if data.startswith(_FF, run):
            pos = run + BLOCK
            continue
        pos = data.rfind(b"\xff", run, run + BLOCK) + 1
        mixed = not data.startswith(_FF[: pos - run], run)
        if mixed and not data[run:pos].translate(None, b"\xff").isascii():
            return False
    return data[pos:].isascii()


def _plain_until(data: bytes, pos: int) -> tuple[int, int]:
    """(end, stop): `data[pos:end]` is plain, `data[end:stop]` a span that is not (or empty)."""
    while pos < len(data):
        stop = min(pos + SPAN, len(data))
        if not _plain(data[pos:stop]):
            return pos, stop
        pos = stop
    return pos, pos


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
        # While plain bytes pass uncounted (see _steady), the counts stay as they were before
        # them; the bytes are kept (the last _KEEP at least) to bring the counts up to date.
        self._stale = False
        self._passed = 0
        self._recent: deque[bytes] = deque()
        self._recent_size = 0

    @property
    def held(self) -> int:
        return len(self._held) if self._held is not None else 0

    def feed(self, data: bytes) -> bytes:
        steady = self._stale or self._steady()
        if steady and _plain(data):
            self._pass(data, 0, len(data))
            return data  # the usual feed: nothing counted, nothing copied
        out: list[bytes | memoryview] = []
        pos = stop = 0
        while pos < len(data):
            if steady:
                end, stop = _plain_until(data, pos)
                if end > pos:
                    out.append(memoryview(data)[pos:end])
                    self._pass(data, pos, end)
                    pos = end
            if pos < len(data):
                pos = self._weigh(data, pos, stop, out)
                steady = True  # it stops short of the end only in a steady state
        return b"".join(out)

    def close(self) -> bytes:
        """End of stream: what is held goes on as the evidence so far says; the state stays, for
        a stream that goes on (replay's next file)."""
        held = self._held
        if not held:
            return b""
        self._held = bytearray()
        return self._apply(bytes(held))

    def _steady(self) -> bool:
        """Whether plain bytes (see _plain) can change nothing: they pass unchanged, and the
        window's text bytes with bit 7 set, which they never add to, are too few for a mask
        verdict (it needs MIN_TEXT text bytes, a quarter of them such)."""
        high = self._window.text_high + self._block.text_high
        return self._held is None and not self.masking and high * 4 < MIN_TEXT

    def _weigh(self, data: bytes, pos: int, stop: int, out: list[bytes | memoryview]) -> int:
        """Count the bytes from `pos` and act on the verdicts, up to `stop` and on until the state
        is steady; return where it stopped."""
        if self._stale:
            self._catch_up()
        # (`masking` first: a stream being masked, never steady, skips the call)
        while pos < len(data) and (pos < stop or self.masking or not self._steady()):
            piece = data[pos : pos + BLOCK - self._block.size]
            pos += len(piece)
            self._block.add(piece)
            verdict = self._verdict()
            self._rotate()
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
        return pos

    def _rotate(self) -> None:
        """A full block joins the window, the oldest leaves it."""
        if self._block.size == BLOCK:
            if len(self._blocks) == self._blocks.maxlen:
                self._window.shift(self._blocks[0], -1)
            self._blocks.append(self._block)
            self._window.shift(self._block, 1)
            self._block = _Counts()

    def _pass(self, data: bytes, start: int, end: int) -> None:
        """`data[start:end]` passes uncounted: keep its last bytes (all of a short feed, without a
        copy) and drop the oldest now and then."""
        if not self._stale:
            self._stale, self._passed, self._recent_size = True, 0, 0
            self._recent.clear()
        self._passed += end - start
        tail = data[end - _KEEP : end] if end - start > _KEEP else data[start:end]
        self._recent.append(tail)
        self._recent_size += len(tail)
        if self._recent_size >= 2 * _KEEP:
            while self._recent_size - len(self._recent[0]) >= _KEEP:
                self._recent_size -= len(self._recent.popleft())

    def _catch_up(self) -> None:
        """Count the bytes that passed uncounted into the window, as if they had been counted:
        those before them are out of it once _KEEP have passed, and it starts at a block."""
        passed = b"".join(self._recent)
        if self._passed >= _KEEP:
            passed = passed[-(WINDOW + (self._block.size + self._passed) % BLOCK) :]
            self._blocks.clear()
            self._window, self._block = _Counts(), _Counts()
        pos = 0
        while pos < len(passed):
            piece = passed[pos : pos + BLOCK - self._block.size]
            pos += len(piece)
            self._block.add(piece)
            self._rotate()
        self._stale = False

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
