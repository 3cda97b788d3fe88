"""Bytes → frames: finds P1 telegrams (`/` … `!XXXX`) in any byte stream, sans-I/O.

Feed it whatever a source delivers; it returns the frames that became complete. Memory stays
bounded by `max_frame`: a frame that grows past it is dropped and counted, and garbage between
frames is kept only as far as it could still be the body of a frame whose `/` was lost.
Whole clean telegrams, the usual stream, take a fast path that frames only what the general
steps would frame alike and leaves everything else to them.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from mypy_extensions import mypyc_attr

DEFAULT_MAX_FRAME = 16 * 1024

# A telegram ends with `!`, 0–4 hex digits of checksum (3 on some meters, none on DSMR 2.2/3) and a
# line end. Requiring the line end keeps a stray `!` inside binary data (the Hungarian meter's 0xFF
# run) from ending a frame early.
_END = re.compile(rb"!([0-9A-Fa-f]{0,4})[\r\n]")
_END_AT_EOF = re.compile(rb"!([0-9A-Fa-f]{0,4})\Z")
# The same end with its whole line end (CRLF or LF), for the fast path (`Framer._whole`).
_END_LINE = re.compile(rb"!([0-9A-Fa-f]{0,4})\r?\n")
_SLASH, _CR, _LF = b"/\r\n"


class Frame(NamedTuple):
    """One candidate telegram as found in the stream.

    `body` runs from `/` through `!` with CRLF line ends (restored when the input had lost its CRs,
    as PuTTY logs committed to git do); the checksum is computed over exactly these bytes.

    A named tuple rather than a frozen dataclass: as immutable, and made several times faster
    (a frozen dataclass sets each field through object.__setattr__), once per telegram.
    """

    body: bytes
    checksum: bytes | None  # hex digits as written after `!`; None when the meter sends none
    offset: int  # stream offset of the frame's first byte
    skipped: int  # garbage bytes skipped right before the frame
    lf_only: bool = False  # CR restored before every LF
    truncated: bool = False  # cut short by a new `/` or the end of the stream: no `!`
    headless: bool = False  # `!` and checksum found, but no `/` before it (start byte mangled)

    @property
    def expected_crc(self) -> int | None:
        return int(self.checksum, 16) if self.checksum else None

    @property
    def text(self) -> bytes:
        """The frame as the meter sent it: body and checksum digits."""
        return self.body + (self.checksum or b"")


_new_frame = tuple.__new__  # a Frame from all its fields, without the keyword defaults


# Compiled (setup.py), yet open to subclasses in Python, as the tests make one.
@mypyc_attr(allow_interpreted_subclasses=True)
class Framer:
    """Incremental telegram framer. `feed()` bytes, get frames; `close()` at end of stream."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 64:
            raise ValueError("max_frame must be at least 64 bytes")
        self.max_frame = max_frame
        # Bytes not framed yet; inside feed() the whole text being framed, read from _at on, so
        # a frame costs no copy of the rest (positions below are indices into it).
        self._buf = b""
        self._at = 0
        self._base = 0  # stream offset of _buf[0]
        self._in_frame = False  # _buf[_at] is the `/` of an open frame
        self._scan = 0  # position in _buf up to which the current state has been searched
        self._eat_lf = False  # the last frame ended on CR; its LF may still come
        self._gap_open = False  # bytes since the last frame end may still be a headless frame
        self._pending_skip = 0  # garbage skipped before the frame now open
        # Counters for the summary and metrics.
        self.bytes_in = 0
        self.bytes_skipped = 0
        self.frames_oversized = 0
        self.frames_truncated = 0
        self.frames_headless = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        if type(data) is not bytes:
            data = bytes(data)  # framed in place: a mutable chunk is copied, a view made bytes
        frames: list[Frame] = []
        start = 0
        if self._buf:
            # Left over is usually a telegram cut by the last chunk's end; it ends at the first
            # line end after a `!`. Framing the data up to there as a chunk of its own (frames do
            # not depend on where the stream is cut) lets the rest be framed in place instead of
            # being copied behind the leftover.
            cut = data.find(b"\n", data.find(b"!") + 1) + 1
            if 0 < cut < len(data):
                self._frame(data[:cut], 0, frames)
                start = cut
        self._frame(data, start, frames)
        return frames

    def close(self) -> list[Frame]:
        """End of stream: a frame still open is returned as truncated (or complete without LF)."""
        frames: list[Frame] = []
        buf = self._buf
        if self._in_frame:
            end = _END_AT_EOF.search(buf)
            if end:
                body = buf[: end.start() + 1]
                frames.append(self._make(body, end.group(1), self._base, self._pending_skip))
            else:
                frames.append(self._make(buf, None, self._base, self._pending_skip, truncated=True))
        elif self._gap_open and (end := _END_AT_EOF.search(buf)) is not None:
            body = buf[: end.start() + 1]
            frames.append(self._make(body, end.group(1), self._base, 0, headless=True))
        else:
            self.bytes_skipped += len(buf)
        self._base += len(buf)
        self._buf = b""
        self._in_frame = False
        self._scan = 0
        self._gap_open = False
        self._pending_skip = 0
        return frames

    # -- internals -------------------------------------------------------------------------

    def _frame(self, data: bytes, start: int, frames: list[Frame]) -> None:
        """Frame `data[start:]` as the next chunk of the stream."""
        self.bytes_in += len(data) - start
        if self._buf:
            text = self._buf = self._buf + data[start:]
        else:
            # Framed in place: positions index the data.
            text = self._buf = data
            self._base -= start
            # (_eat_lf is only set when a frame's CR was the buffer's last byte: it is empty.)
            if self._eat_lf and start < len(data):
                self._eat_lf = False
                if data[start] == _LF:
                    start += 1
            self._at = self._scan = start
        size = len(text)
        while self._at < size:
            if not self._in_frame and text[self._at] == _SLASH:
                self._whole(frames)
                if self._at == size:
                    break
            if not self._step(frames):
                break
        if at := self._at:
            self._buf = text[at:] if at < size else b""
            self._base += at
            self._scan -= at
            self._at = 0

    def _make(
        self,
        body: bytes,
        checksum: bytes | None,
        offset: int,
        skipped: int,
        *,
        truncated: bool = False,
        headless: bool = False,
    ) -> Frame:
        # Only a frame with no CR at all lost them; a lone LF in a CRLF frame is noise for repair.
        lf_only = _CR not in body and _LF in body
        if lf_only:
            body = body.replace(b"\n", b"\r\n")
        if truncated:
            self.frames_truncated += 1
        if headless:
            self.frames_headless += 1
        return _new_frame(
            Frame, (body, checksum or None, offset, skipped, lf_only, truncated, headless)
        )

    def _whole(self, frames: list[Frame]) -> None:
        """Fast path for the usual stream: whole telegrams back to back from the `/` at _at.

        It takes only what `_step` would frame the same way — no other `/` before the first
        `!`, that `!` a valid end with its line end, the frame within max_frame — and stops at
        anything else, for `_step` to handle by the rules.
        """
        text = self._buf
        start = pos = self._at
        size = len(text)
        within = self.max_frame - 4  # a `!` before this leaves room for 4 digits
        skipped = self._pending_skip
        base = self._base
        while True:
            bang = text.find(b"!", pos + 1, pos + within)
            # An end marker can only start at the first `!`: `_END.search` would find this one.
            end = _END_LINE.match(text, bang) if bang > 0 else None
            if end is None or text.find(b"/", pos + 1, bang) > 0:
                break
            frames.append(self._make(text[pos : bang + 1], end[1], base + pos, skipped))
            skipped = 0
            pos = end.end()
            if pos == size or text[pos] != _SLASH:
                break
        if pos != start:
            self._at = self._scan = pos
            self._gap_open = True
            self._pending_skip = 0

    def _consume(self, n: int) -> None:
        self._at += n
        self._scan = self._at

    def _step(self, frames: list[Frame]) -> bool:
        """Advance the state machine once; True while progress is possible."""
        buf = self._buf
        at = self._at
        if not self._in_frame:
            return self._search(frames)
        scan = max(self._scan, at + 1)
        # The next `/` first: the end marker is only looked for before it (it holds no `/`) and
        # within max_frame, so noise full of short cut-off frames is not rescanned.
        restart = buf.find(b"/", scan)
        stop = restart if restart >= 0 else len(buf)
        end = _END.search(buf, scan, min(stop, at + self.max_frame + 8))
        if end is not None:
            restart = -1
        if restart - at > self.max_frame:
            # Grown past max_frame before it ended: dropped, whatever chunks the bytes came in.
            self._drop_oversized(restart - at)
            return True
        if restart >= 0:
            # A new `/` before the end: the open frame was cut short.
            frames.append(
                self._make(
                    buf[at:restart], None, self._base + at, self._pending_skip, truncated=True
                )
            )
            self._pending_skip = 0
            self._consume(restart - at)
            return True
        if end is None:
            if len(buf) - at > self.max_frame:
                self._drop_oversized(len(buf) - at)
                return False
            self._scan = max(at + 1, len(buf) - 5)  # an end marker is at most 6 bytes long
            return False
        if self._too_long(end):
            self._drop_oversized(end.end() - at)
            return True
        body = buf[at : end.start() + 1]
        frames.append(self._make(body, end.group(1), self._base + at, self._pending_skip))
        self._pending_skip = 0
        self._finish_frame(end.end())
        return True

    def _too_long(self, end: re.Match[bytes]) -> bool:
        # The frame as sent (body and checksum, without its line end) exceeds max_frame.
        return end.end() - 1 - self._at > self.max_frame

    def _drop_oversized(self, n: int) -> None:
        self.frames_oversized += 1
        self.bytes_skipped += n
        self._pending_skip += n
        self._consume(n)
        self._in_frame = False
        self._gap_open = False

    def _finish_frame(self, end: int) -> None:
        buf = self._buf
        if buf[end - 1] == _CR:
            if len(buf) > end:
                if buf[end] == _LF:
                    end += 1
            else:
                self._eat_lf = True
        self._consume(end - self._at)
        self._in_frame = False
        self._gap_open = True

    def _search(self, frames: list[Frame]) -> bool:
        buf = self._buf
        at = self._at
        start = buf.find(b"/", self._scan)
        limit = start if start >= 0 else len(buf)
        if self._gap_open:
            end = _END.search(buf, at, limit)
            if end is not None and not self._too_long(end):
                body = buf[at : end.start() + 1]
                frames.append(self._make(body, end.group(1), self._base + at, 0, headless=True))
                self._finish_frame(end.end())
                return True
        if start >= 0:
            self.bytes_skipped += start - at
            self._pending_skip += start - at
            self._consume(start - at)
            self._in_frame = True
            self._scan = start + 1
            return True
        # No start yet: keep only what could still be a frame whose `/` was lost.
        keep = self.max_frame if self._gap_open else 0
        if len(buf) - at > keep:
            # Longer than any frame (or no frame ended before it): nothing here can be a telegram.
            self._gap_open = False
            self.bytes_skipped += len(buf) - at
            self._pending_skip += len(buf) - at
            self._consume(len(buf) - at)
        self._scan = len(buf)
        return False
