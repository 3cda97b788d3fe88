"""Bytes → DLMS general-global-ciphering frames, as encrypted P1 meters send them. Sans-I/O.

An encrypted meter (Luxembourg's Smarty, the Sagemcom T210-D in Austria) wraps its telegram in
one binary frame: tag `0xDB`, the system-title length (8) and the system title, the length of
what follows (one byte below 0x80, or `0x81`/`0x82` and one or two bytes), the security-control
byte (`0x30`: authenticated and encrypted, suite 0), the frame counter (4 bytes), the ciphertext
and the 12-byte GCM tag. `DlmsFramer` finds them in any byte stream with the text framer's
guarantees: memory bounded by `max_frame`, garbage between frames skipped and counted, a frame cut
short by a lost block returned as truncated (the next frame's header inside it gives it away) and
an unfinished one at the end of the stream returned as truncated too.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.framing import DEFAULT_MAX_FRAME

TAG = 0xDB
TITLE_LENGTH = 8
SECURITY = 0x30  # authenticated and encrypted, security suite 0: the only kind meters send
COUNTER_LENGTH = 4
TAG_LENGTH = 12
_START = bytes([TAG, TITLE_LENGTH])
_LENGTH_AT = 2 + TITLE_LENGTH  # where the length field starts
_MIN_CONTENT = 1 + COUNTER_LENGTH + TAG_LENGTH + 1  # security, counter, tag and some ciphertext
_NEED_MORE = -1


@dataclass(frozen=True, slots=True)
class CipherFrame:
    """One frame as found in the stream; `raw` is every byte of it as received."""

    raw: bytes
    offset: int  # stream offset of the frame's first byte
    skipped: int  # garbage bytes skipped right before it
    truncated: bool = False  # shorter than its length field says: no tag to check
    title: bytes = b""
    security: int = SECURITY
    counter: int = 0
    ciphertext: bytes = b""
    tag: bytes = b""


def encode_length(n: int) -> bytes:
    """The A-XDR length field."""
    if n < 0x80:
        return bytes([n])
    if n < 0x100:
        return bytes([0x81, n])
    return bytes([0x82]) + n.to_bytes(2, "big")


def encode_frame(title: bytes, counter: int, sealed: bytes, security: int = SECURITY) -> bytes:
    """A whole frame around `sealed` (ciphertext and tag)."""
    content = bytes([security]) + counter.to_bytes(COUNTER_LENGTH, "big") + sealed
    return _START + title + encode_length(len(content)) + content


def _header(buf: bytes | bytearray, at: int, max_frame: int) -> int:
    """The frame's end if a valid header starts at `at`, _NEED_MORE if too few bytes are there
    to say, 0 if it is no header."""
    if len(buf) < at + _LENGTH_AT + 1:
        return _NEED_MORE
    first = buf[at + _LENGTH_AT]
    width = 1 if first < 0x80 else {0x81: 2, 0x82: 3}.get(first, 0)
    if not width:
        return 0
    if len(buf) < at + _LENGTH_AT + width + 1:
        return _NEED_MORE
    length = (
        first if width == 1 else int.from_bytes(buf[at + _LENGTH_AT + 1 : at + _LENGTH_AT + width])
    )
    content = at + _LENGTH_AT + width
    if length < _MIN_CONTENT or buf[content] != SECURITY:
        return 0
    end = content + length
    return end if end - at <= max_frame else 0


def content_start(raw: bytes) -> int:
    """Where a whole frame's content (the security byte) starts, after its length field."""
    return _LENGTH_AT + (1 if raw[_LENGTH_AT] < 0x80 else raw[_LENGTH_AT] - 0x7F)


def _parse(raw: bytes, offset: int, skipped: int) -> CipherFrame:
    content = content_start(raw)
    body = raw[content + 1 + COUNTER_LENGTH :]
    return CipherFrame(
        raw,
        offset,
        skipped,
        title=raw[2:_LENGTH_AT],
        security=raw[content],
        counter=int.from_bytes(raw[content + 1 : content + 1 + COUNTER_LENGTH]),
        ciphertext=body[:-TAG_LENGTH],
        tag=body[-TAG_LENGTH:],
    )


class DlmsFramer:
    """Incremental framer: `feed()` bytes, get the frames that became complete; `close()` at
    the end of the stream."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._end = 0  # end of the frame whose header starts _buf; 0: none yet
        self._skip = 0  # garbage skipped before the frame now open
        self.title: bytes | None = None  # the meter's, once a whole frame carried it
        self.bytes_in = 0
        self.bytes_skipped = 0
        self.frames_truncated = 0

    def feed(self, data: bytes) -> list[CipherFrame]:
        self.bytes_in += len(data)
        self._buf += data
        frames: list[CipherFrame] = []
        while self._step(frames):
            pass
        return frames

    def close(self) -> list[CipherFrame]:
        frames = []
        if self._end:
            frames.append(self._truncated(len(self._buf)))
        else:
            self._discard(len(self._buf))
        self._skip = 0
        return frames

    def _discard(self, n: int) -> None:
        self.bytes_skipped += n
        self._skip += n
        self._consume(n)

    def _consume(self, n: int) -> None:
        del self._buf[:n]
        self._base += n
        self._end = 0

    def _truncated(self, n: int) -> CipherFrame:
        self.frames_truncated += 1
        frame = CipherFrame(bytes(self._buf[:n]), self._base, self._skip, truncated=True)
        self._skip = 0
        self._consume(n)
        return frame

    def _step(self, frames: list[CipherFrame]) -> bool:
        buf = self._buf
        if not self._end:
            start = buf.find(_START)
            if start < 0:
                self._discard(len(buf) - (buf[-1:] == bytes([TAG])))  # it may start a frame
                return False
            if start:
                self._discard(start)
            end = _header(self._buf, 0, self.max_frame)
            if end == _NEED_MORE:
                return False
            if not end:
                self._discard(1)
                return True
            self._end = end
        if len(self._buf) < self._end:
            return False
        inner = self._inner_header()
        if inner:
            frames.append(self._truncated(inner))
            return True
        end, skipped = self._end, self._skip
        frame = _parse(bytes(self._buf[:end]), self._base, skipped)
        self._skip = 0
        self._consume(end)
        frames.append(frame)
        self.title = frame.title
        return True

    def _inner_header(self) -> int:
        """Where the next frame's header starts inside the one just completed (bytes of it were
        lost), or 0. Once the meter's system title is known the header must carry it: 2⁻⁸⁰ that
        ciphertext imitates it."""
        buf, end = self._buf, self._end
        marker = _START + self.title if self.title is not None else _START
        at = buf.find(marker, 1, end)
        while at > 0:
            if _header(buf, at, self.max_frame) not in (0, _NEED_MORE) or self.title is not None:
                return at
            at = buf.find(marker, at + 1, end)
        return 0
