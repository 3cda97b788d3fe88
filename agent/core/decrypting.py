"""Encrypted meters: DLMS frames → the telegrams inside → the text pipeline. Sans-I/O.

A stage in front of `MeterPipeline`: `DlmsFramer` finds the frames, `GcmOpener` opens them (or
repairs what the tag proves, `method="gcm"`), and each telegram inside goes through the same
checksum, decoder, repair and derived values as a plain meter's. What the stage refuses is a
rejected `Result` like any other: `truncated`, `wrong_key` (nothing readable comes out: the
decryption key does not fit, or the header is damaged), `wrong_authentication_key` (an intact
telegram inside whose tag fails), `tag_mismatch` (damaged beyond repair) and `counter_replayed`
(a frame counter not above the last one accepted from that meter: a replay, refused) and
`not_a_frame` (noise that looked like a frame header, with no maker's id in its title).

Results carry the frames' offsets in the encrypted stream, and the text framer's byte counters
show the encrypted stream's (bytes read, garbage skipped), so the link diagnosis, replay's times
and the summary speak of the bytes that arrived.
"""

from __future__ import annotations

from typing import Any

from agent.core.crc import CrcChecker, CrcKind
from agent.core.dlms import CipherFrame, DlmsFramer
from agent.core.framing import DEFAULT_MAX_FRAME, Frame
from agent.core.gcm import GcmKeys, GcmOpener, GcmRepair
from agent.core.pipeline import REJECTED, REPAIRED, VALID, MeterPipeline, Result
from agent.core.repair import Change, Repair
from agent.core.telegram import MeterZone

GCM = "gcm"
TAG_FAILURE = "tag"  # what was wrong on arrival: the frame failed its GCM tag
TRUNCATED = "truncated"
WRONG_KEY = "wrong_key"
WRONG_AUTHENTICATION_KEY = "wrong_authentication_key"
TAG_MISMATCH = "tag_mismatch"
COUNTER_REPLAYED = "counter_replayed"
NOISE = "not_a_frame"  # bytes that only looked like a frame header
# What the agent says once when these start (and again after a frame decrypted).
PROBLEMS = {
    WRONG_KEY: "encrypted frames do not decrypt: the decryption key is wrong "
    "(P1_DECRYPTION_KEY; the grid operator gives it per meter)",
    WRONG_AUTHENTICATION_KEY: "encrypted frames decrypt but fail their tag: the authentication "
    "key is wrong (P1_AUTHENTICATION_KEY)",
    COUNTER_REPLAYED: "frames arrive with a frame counter not above the last one accepted: "
    "replayed frames are refused",
}
HEADER_GUESSES = 8  # frame counters after the last accepted one tried for a damaged header
MAX_TITLES = 64  # meters (system titles) whose last frame counter is kept
_TEXT = bytes(range(0x20, 0x7F)) + b"\r\n"
_TEXT_SHARE = 0.9  # a right key gives text even with a few damaged bytes; a wrong one ~37 %


class DecryptingPipeline(MeterPipeline):
    """`MeterPipeline` for a meter that encrypts: feed it the bytes the meter sent."""

    def __init__(
        self,
        keys: GcmKeys,
        *,
        zone: MeterZone | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        crc: CrcKind | None = None,
        repair: bool = True,
    ) -> None:
        super().__init__(zone=zone, max_frame=max_frame, crc=crc, repair=repair)
        self.frames = DlmsFramer(max_frame)
        self.opener = GcmOpener(keys)
        self._counters: dict[bytes, int] = {}  # system title → last accepted frame counter
        self._title: bytes | None = None  # of the last accepted frame
        self._template: bytes | None = None  # its plaintext
        self._opening: tuple[CipherFrame, Repair | None] | None = None  # being fed inside

    def feed(self, data: bytes) -> list[Result]:
        results: list[Result] = []
        for frame in self.frames.feed(data):
            self._handle_cipher(frame, results)
        self._sync()
        return results

    def close(self) -> list[Result]:
        results: list[Result] = []
        for frame in self.frames.close():
            self._handle_cipher(frame, results)
        results += super().close()
        self._sync()
        return results

    def _sync(self) -> None:
        # The encrypted stream's counts, where run, replay and the diagnosis read them.
        self.framer.bytes_in = self.frames.bytes_in
        self.framer.bytes_skipped = self.frames.bytes_skipped

    def _emit(self, result: Result, results: list[Result]) -> None:
        if self._opening is not None:
            frame, repair = self._opening
            result.frame = result.frame._replace(offset=frame.offset, skipped=frame.skipped)
            if repair is not None and result.status == VALID:
                # `candidates` stays 0: none was CRC-tested (repair.candidates: tag-tested).
                result.status, result.repair, result.failure = REPAIRED, repair, TAG_FAILURE
        super()._emit(result, results)

    def _handle_cipher(self, frame: CipherFrame, results: list[Result]) -> None:
        outcome = self._guarded(_as_frame(frame), lambda: self._open(frame))
        if isinstance(outcome, Result):
            self._emit(outcome, results)
            return
        plaintext, repair = outcome
        self._opening = (frame, repair)
        try:
            results += super().feed(plaintext)
        finally:
            self._opening = None

    def _open(self, frame: CipherFrame) -> tuple[bytes, Repair | None] | Result:
        """The frame's plaintext and its repair, or its rejection."""
        text = _as_frame(frame)
        if frame.truncated:
            return Result(REJECTED, text, reason=TRUNCATED, failure=TRUNCATED)
        title, counter = frame.title, frame.counter
        plaintext = self.opener.open(title, counter, frame.ciphertext, frame.tag)
        repair = None
        if plaintext is None:
            found = self._header_repair(frame) or self._body_repair(frame)
            if found is None:
                return Result(REJECTED, text, reason=self._why(frame), failure=TAG_FAILURE)
            (title, counter, plaintext), repair = found
        last = self._counters.get(title)
        if last is not None and counter <= last:
            return Result(REJECTED, text, reason=COUNTER_REPLAYED)
        self._counters.pop(title, None)
        if len(self._counters) >= MAX_TITLES:
            del self._counters[next(iter(self._counters))]
        self._counters[title] = counter
        self._title, self._template = title, plaintext
        return plaintext, repair

    def _header_repair(self, frame: CipherFrame) -> tuple[tuple[bytes, int, bytes], Repair] | None:
        """A damaged system title or frame counter: the last meter's title and the counters
        after its last one, each proven by the tag."""
        title = self._title
        if title is None:
            return None
        last = self._counters[title]
        tried = 0
        for counter in range(last + 1, last + 1 + HEADER_GUESSES):
            if (title, counter) == (frame.title, frame.counter):
                continue
            tried += 1
            plaintext = self.opener.open(title, counter, frame.ciphertext, frame.tag)
            if plaintext is not None:
                was = frame.title + frame.counter.to_bytes(4, "big")
                now = title + counter.to_bytes(4, "big")
                changes = tuple(
                    Change(2 + i, bytes([a]), bytes([b]), "header")
                    for i, (a, b) in enumerate(zip(was, now, strict=True))
                    if a != b
                )
                return (title, counter, plaintext), Repair(GCM, changes, tried)
        return None

    def _body_repair(self, frame: CipherFrame) -> tuple[tuple[bytes, int, bytes], Repair] | None:
        plain = self.opener.unverified(frame.title, frame.counter, frame.ciphertext)
        if not _text_like(plain):
            return None
        found = self.opener.repair(
            frame.title, frame.counter, frame.ciphertext, frame.tag, self._template
        )
        if found is None:
            return None
        return (frame.title, frame.counter, found.plaintext), _repair_record(found)

    def _why(self, frame: CipherFrame) -> str:
        plain = self.opener.unverified(frame.title, frame.counter, frame.ciphertext)
        if not _text_like(plain):
            # A system title starts with the maker's three-letter id (SAG, KFM, LGZ, …); noise
            # that happens to look like a frame header does not, and is no sign of a wrong key.
            return WRONG_KEY if frame.title[:3].isalpha() and frame.title[:3].isupper() else NOISE
        end = plain.rfind(b"!")
        digits = plain[end + 1 : end + 5]
        try:
            expected = int(digits, 16) if len(digits) == 4 else None
        except ValueError:
            expected = None
        if expected is not None and CrcChecker().check(plain[: end + 1], expected) is not None:
            return WRONG_AUTHENTICATION_KEY  # the telegram is intact: its tag cannot be
        return TAG_MISMATCH


def _as_frame(frame: CipherFrame) -> Frame:
    """A rejected frame as results carry it: its bytes as received."""
    return Frame(frame.raw, None, frame.offset, frame.skipped, truncated=frame.truncated)


def _text_like(plain: bytes) -> bool:
    return len(plain.translate(None, _TEXT)) <= (1 - _TEXT_SHARE) * len(plain)


def _line_of(plain: bytes, offset: int) -> str:
    """The OBIS reference of the telegram line holding `offset` (`header`, `checksum`)."""
    start = plain.rfind(b"\n", 0, offset) + 1
    # An empty last line too: compiled (mypyc 2.4), a slice that ends before it starts fails.
    if start == 0 or start == len(plain):
        return "header"
    line = plain[start : plain.find(b"\r", start)]
    if line.startswith(b"!"):
        return "checksum"
    return line.partition(b"(")[0].decode("latin-1") or "header"


def _repair_record(found: GcmRepair) -> Repair:
    """Changes at plaintext offsets, on the telegram line there (the tag's bytes after the
    telegram's, on line `tag`), as ciphertext bytes: what the line carried and what it lost."""
    plain = found.plaintext
    n = len(plain)
    changes = tuple(
        Change(offset, bytes([was]), bytes([now]), _line_of(plain, offset) if offset < n else "tag")
        for offset, was, now in found.changes
    )
    return Repair(GCM, changes, found.hypotheses)


NO_KEY = (
    "the meter sends encrypted frames (DLMS, AES-128-GCM): set P1_DECRYPTION_KEY or "
    "P1_DECRYPTION_KEY_FILE to the key its grid operator gives"
)


class EncryptionSniffer:
    """For a source without keys: whether its bytes hold a whole DLMS frame, so the user hears
    that the meter encrypts instead of a hint about signals and speeds."""

    def __init__(self) -> None:
        self._framer = DlmsFramer()
        self.found = False

    def feed(self, data: bytes) -> bool:
        """True once, when the first whole frame is seen."""
        if self.found:
            return False
        self.found = any(not frame.truncated for frame in self._framer.feed(data))
        return self.found


def open_pipeline(keys: GcmKeys | None, **options: Any) -> MeterPipeline:
    """The pipeline for one source: decrypting when the meter has keys."""
    if keys is None:
        return MeterPipeline(**options)
    return DecryptingPipeline(keys, **options)
