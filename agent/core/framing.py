"""Bytes → frames: finds P1 telegrams (`/` … `!XXXX`) in any byte stream, sans-I/O.

Feed it whatever a source delivers; it returns the frames that became complete. Memory stays
bounded by `max_frame`: a frame that grows past it is dropped and counted, and garbage between
frames is kept only as far as it could still be the body of a frame whose `/` was lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_MAX_FRAME = 16 * 1024

# A telegram ends with `!`, 0–4 hex digits of checksum (3 on some meters, none on DSMR 2.2/3) and a
# line end. Requiring the line end keeps a stray `!` inside binary data (the Hungarian meter's 0xFF
# run) from ending a frame early.
_END = re.compile(rb"!([0-9A-Fa-f]{0,4})[\r\n]")
_END_AT_EOF = re.compile(rb"!([0-9A-Fa-f]{0,4})\Z")


@dataclass(frozen=True, slots=True)
class Frame:
    """One candidate telegram as found in the stream.

    `body` runs from `/` through `!` with CRLF line ends (restored when the input had lost its CRs,
    as PuTTY logs committed to git do); the checksum is computed over exactly these bytes.
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


def _restore_crlf(data: bytes) -> tuple[bytes, bool]:
    # Only a frame with no CR at all lost them; a lone LF in a CRLF frame is noise for repair.
    if b"\r" not in data and b"\n" in data:
        return data.replace(b"\n", b"\r\n"), True
    return data, False


class Framer:
    """Incremental telegram framer. `feed()` bytes, get frames; `close()` at end of stream."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame < 64:
            raise ValueError("max_frame must be at least 64 bytes")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._in_frame = False  # _buf starts with `/`
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

    def feed(self, data: bytes) -> list[Frame]:
        self.bytes_in += len(data)
        if self._eat_lf and data:
            self._eat_lf = False
            if data[:1] == b"\n":
                data = data[1:]
                self._base += 1
        self._buf += data
        frames: list[Frame] = []
        while self._step(frames):
            if not self._buf:
                # Nothing left (the usual end of a whole telegram): a search of nothing would only
                # reset the scan position.
                self._scan = 0
                break
        return frames

    def close(self) -> list[Frame]:
        """End of stream: a frame still open is returned as truncated (or complete without LF)."""
        frames: list[Frame] = []
        buf = bytes(self._buf)
        if self._in_frame:
            end = _END_AT_EOF.search(buf)
            if end:
                frames.append(self._make(buf[: end.start() + 1], end.group(1), self._pending_skip))
            else:
                frames.append(self._make(buf, None, self._pending_skip, truncated=True))
        elif self._gap_open and (end := _END_AT_EOF.search(buf)) is not None:
            frames.append(self._make(buf[: end.start() + 1], end.group(1), 0, headless=True))
        else:
            self.bytes_skipped += len(buf)
        self._base += len(buf)
        self._buf.clear()
        self._in_frame = False
        self._scan = 0
        self._gap_open = False
        self._pending_skip = 0
        return frames

    # -- internals -------------------------------------------------------------------------

    def _make(
        self,
        body: bytes,
        checksum: bytes | None,
        skipped: int,
        *,
        truncated: bool = False,
        headless: bool = False,
    ) -> Frame:
        fixed, lf_only = _restore_crlf(body)
        if truncated:
            self.frames_truncated += 1
        if headless:
            self.frames_headless += 1
        return Frame(
            body=fixed,
            checksum=checksum or None,
            offset=self._base,
            skipped=skipped,
            lf_only=lf_only,
            truncated=truncated,
            headless=headless,
        )

    def _consume(self, n: int) -> None:
        del self._buf[:n]
        self._base += n
        self._scan = 0

    def _step(self, frames: list[Frame]) -> bool:
        """Advance the state machine once; True while progress is possible."""
        buf = self._buf
        if not self._in_frame:
            return self._search(frames)
        scan = max(self._scan, 1)
        # The next `/` first: the end marker is only looked for before it (it holds no `/`) and
        # within max_frame, so noise full of short cut-off frames is not rescanned.
        restart = buf.find(b"/", scan)
        stop = restart if restart >= 0 else len(buf)
        end = _END.search(buf, scan, min(stop, self.max_frame + 8))
        if end is not None:
            restart = -1
        if restart > self.max_frame:
            # Grown past max_frame before it ended: dropped, whatever chunks the bytes came in.
            self._drop_oversized(restart)
            return True
        if restart >= 0:
            # A new `/` before the end: the open frame was cut short.
            frames.append(
                self._make(bytes(buf[:restart]), None, self._pending_skip, truncated=True)
            )
            self._pending_skip = 0
            self._consume(restart)
            return True
        if end is None:
            if len(buf) > self.max_frame:
                self._drop_oversized(len(buf))
                return False
            self._scan = max(1, len(buf) - 5)  # an end marker is at most 6 bytes long
            return False
        if self._too_long(end):
            self._drop_oversized(end.end())
            return True
        frames.append(self._make(bytes(buf[: end.start() + 1]), end.group(1), self._pending_skip))
        self._pending_skip = 0
        self._finish_frame(end.end())
        return True

    def _too_long(self, end: re.Match[bytes]) -> bool:
        # The frame as sent (body and checksum, without its line end) exceeds max_frame.
        return end.end() - 1 > self.max_frame

    def _drop_oversized(self, n: int) -> None:
        self.frames_oversized += 1
        self.bytes_skipped += n
        self._pending_skip += n
        self._consume(n)
        self._in_frame = False
        self._gap_open = False

    def _finish_frame(self, end: int) -> None:
        if self._buf[end - 1 : end] == b"\r":
            if len(self._buf) > end:
                if self._buf[end : end + 1] == b"\n":
                    end += 1
            else:
                self._eat_lf = True
        self._consume(end)
        self._in_frame = False
        self._gap_open = True

    def _search(self, frames: list[Frame]) -> bool:
        buf = self._buf
        start = buf.find(b"/", self._scan)
        limit = start if start >= 0 else len(buf)
        if self._gap_open:
            end = _END.search(buf, 0, limit)
            if end is not None and not self._too_long(end):
                body = bytes(buf[: end.start() + 1])
                frames.append(self._make(body, end.group(1), 0, headless=True))
                self._finish_frame(end.end())
                return True
        if start >= 0:
            self.bytes_skipped += start
            self._pending_skip += start
            self._consume(start)
            self._in_frame = True
            self._scan = 1
            return True
        # No start yet: keep only what could still be a frame whose `/` was lost.
        keep = self.max_frame if self._gap_open else 0
        if len(buf) > keep:
            # Longer than any frame (or no frame ended before it): nothing here can be a telegram.
            self._gap_open = False
            self.bytes_skipped += len(buf)
            self._pending_skip += len(buf)
            self._consume(len(buf))
        self._scan = len(self._buf)
        return False
