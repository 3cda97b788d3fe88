"""What is wrong with the link, from a window of bytes and frames, said once in plain words.
Sans-I/O: the caller passes each chunk's results, the framer's byte count and the parity masker's
state, and logs or shows what it gets back.

The causes, by the evidence each needs (checked in this order; the first that holds wins):
- `no_frames`: 4096 bytes since the last accepted telegram, with at most one complete frame per
  4096 bytes among them (garbage makes one now and then, damaged telegrams far more). The raw
  bytes say which hint applies: mostly zero bits (0x00, 0xF0, …: the port samples faster than
  the meter sends) or nearly all with the high bit set (an uninverted signal at the right speed).
- damage, on a line that carries telegrams (one accepted in the window): at least 3 of the last
  100 frames failed their check (a cause found stays while 2 do), and then
  - `overrun` when most damaged frames are whole telegrams of the meter tens to hundreds of bytes
    too short or too long (blocks lost to a reader that does not keep up, telegrams merged by a
    lost end and start);
  - `weak_pullup` when the damaged bytes (at least 6) only lost bits, almost never gained one
    (`0` arriving as a space);
  - `bit_slip` when most damaged bytes are the right byte with its bits shifted by a sampling
    point that drifted (a baud-rate mismatch): the high bit set, from bit 6 or the stop bit;
  - `noise` when the damaged bytes show no such pattern, or 10 frames are damaged whose bytes
    cannot be compared; with fewer there is no verdict yet.
  Damaged bytes come from the repairs (received against restored) and, for rejected frames as
  long as the meter's last telegram, from its bytes that are not digits against that telegram.
- `parity_7e1` while the parity masker strips bit 7 (readings are exact; damage comes first).
- `ok` once 10 frames are in the window (or a telegram after `no_frames`) and none of the above.
Until one of these holds there is no diagnosis; it changes only when another one holds.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from agent.core.pipeline import Result
from agent.core.repair import Repair

OK, PARITY, NO_FRAMES = "ok", "parity_7e1", "no_frames"
OVERRUN, WEAK_PULLUP, BIT_SLIP, NOISE = "overrun", "weak_pullup", "bit_slip", "noise"
CAUSES = (OK, PARITY, NO_FRAMES, OVERRUN, WEAK_PULLUP, BIT_SLIP, NOISE)
_DAMAGE = frozenset({OVERRUN, WEAK_PULLUP, BIT_SLIP, NOISE})

MESSAGES = {
    OK: "link ok: telegrams arrive intact",
    PARITY: (
        "a 7E1 meter (DSMR 2.2/3) is read as 8N1: its parity bit is stripped and the readings "
        "are exact; --serial-settings 9600-7E1 lets the port check the parity itself"
    ),
    OVERRUN: (
        "blocks of tens to hundreds of bytes go missing and telegrams merge: the reader does not "
        "keep up; read faster (less load on the host, a USB adapter rather than a busy UART) or "
        "enlarge the receive buffer"
    ),
    WEAK_PULLUP: (
        "bits arrive cleared but almost never set (a 0 becomes a space): a weak pull-up or slow "
        "edges on the open-collector data line; fit a stronger pull-up (1 kΩ) and a shorter cable"
    ),
    BIT_SLIP: (
        "bytes arrive with their bits shifted and the high bit set: the baud rate does not match "
        "or the bit timing slips; check the speed setting and the adapter's clock"
    ),
    NOISE: (
        "telegrams are damaged without a dominant pattern: line noise; shorten or shield the "
        "cable, keep it away from mains wiring, check its ground"
    ),
}
NO_FRAMES_SPEED = (
    "bytes arrive but no telegram frames, and they are mostly zero bits, as when the port is "
    "faster than the meter: DSMR 2.2/3 meters send 9600 7E1 (--serial-settings 9600-7E1 or auto)"
)
NO_FRAMES_INVERTED = (
    "bytes arrive but no telegram frames, and nearly all have the high bit set, as when the "
    "signal is not inverted: most USB P1 cables invert it, a DIY cable needs an inverter"
)
NO_FRAMES_EITHER = (
    "bytes arrive but no telegram frames: is the signal inverted (most USB P1 cables invert it; "
    "a DIY cable needs an inverter), and are speed and format right (115200 8N1 for DSMR 4/5, "
    "9600 7E1 for DSMR 2.2/3, or auto)?"
)
TOO_EARLY = "not enough seen yet to judge the line"

WINDOW = 100  # frames
MIN_FRAMES = 10
DAMAGED, DAMAGED_STAY = 3, 2
NO_FRAME_BYTES = 4096
HOLE = 16  # bytes off the meter's telegram length
MIN_BYTES = 6  # damaged bytes before their bits say anything
NOISE_FRAMES = 10  # damaged frames that are noise even when their bytes cannot be compared
PROFILE_BYTES = 8192  # raw bytes kept in the profile for the no-frames hint

# Bytes a UART reads from a line that is slower than it: zeros, then ones (0x00, 0x80, …, 0xFE).
_NOT_ZERO_RUNS = bytes(b for b in range(256) if b not in {(0xFF << k) & 0xFF for k in range(1, 9)})
_NOT_HIGH = bytes(range(0x80))


@functools.cache  # made when a damaged byte is first compared, not at every start-up
def _slips(accepted: int) -> frozenset[int]:
    """What `accepted` becomes when the sampling point drifts by a bit from bit j on: a faster
    port reads each bit from the one below it, a slower one from the one above (and the stop
    bit, 1, in bit 7)."""
    found = set()
    for j in range(8):
        low = accepted & ((1 << j) - 1)
        high = 0xFF & ~((1 << j) - 1)
        found.add(low | ((accepted << 1) & high))
        found.add(low | ((accepted >> 1) & high) | 0x80)
    found.discard(accepted)
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    cause: str  # one of CAUSES
    message: str  # one line, plain words, with the fix
    evidence: dict[str, int]  # the counts behind it, for the log line


@dataclass(frozen=True, slots=True)
class _Frame:
    """What one frame showed."""

    accepted: bool = True
    damaged: bool = False
    hole: bool = False
    cleared: int = 0  # damaged bytes whose received value only lacked bits
    slipped: int = 0  # … had their bits shifted
    added: int = 0  # … only had extra bits
    other: int = 0


_INTACT = _Frame()  # a frame that arrived whole: one object for all, it is frozen


def _classify(pairs: Iterable[tuple[int, int]]) -> tuple[int, int, int, int]:
    """(cleared, slipped, added, other) over (received, sent) byte pairs that differ. A slip that
    sets only the high bit (copied from bit 6) counts as a slip, not as a bit set by noise. A sent
    0xFF (the Hungarian meter's run) or 0x00 can only lose or only gain bits: it shows nothing."""
    counts = [0, 0, 0, 0]
    for received, sent in pairs:
        if received == sent or sent in (0x00, 0xFF):
            continue
        if received & ~sent == 0:
            counts[0] += 1
        elif received in _slips(sent):
            counts[1] += 1
        elif sent & ~received == 0:
            counts[2] += 1
        else:
            counts[3] += 1
    return counts[0], counts[1], counts[2], counts[3]


def _repaired_pairs(repair: Repair) -> Iterator[tuple[int, int]]:
    """(received, accepted) bytes of a repair's changes; a lost or inserted byte says nothing
    about bits and is left out."""
    for change in repair.changes:
        if len(change.was) == len(change.now):
            yield from zip(change.was, change.now, strict=True)


def _structure_pairs(received: bytes, reference: bytes) -> Iterator[tuple[int, int]]:
    """(received, previous) bytes of a rejected frame as long as the meter's last telegram, where
    the previous one is not a digit: OBIS codes, units and punctuation repeat from one telegram to
    the next, values do not."""
    if len(received) != len(reference):
        return
    for r, p in zip(received, reference, strict=True):
        if r != p and not 0x30 <= p <= 0x39:
            yield r, p


class LinkDiagnosis:
    """`update()` once per chunk read; it returns the diagnosis when it changed, else None."""

    def __init__(self) -> None:
        self.current: Diagnosis | None = None
        self._frames: deque[_Frame] = deque(maxlen=WINDOW)
        self._reference = b""  # the last accepted telegram, and its identification line
        self._header = b""
        self._accepted_end = 0  # framer stream offset just past it
        self._complete = 0  # complete frames since then
        self._since = 0  # frames in the window since then
        self._profile = [0, 0, 0]  # raw bytes since then: all, zero-run bytes, high bit set

    @property
    def cause(self) -> str | None:
        return self.current.cause if self.current is not None else None

    def describe(self) -> str:
        return self.current.message if self.current is not None else TOO_EARLY

    def update(
        self, results: Iterable[Result], *, bytes_in: int, masking: bool, data: bytes = b""
    ) -> Diagnosis | None:
        """`results` of the bytes fed so far, `bytes_in` the framer's count of them, `masking`
        the parity masker's state, `data` the raw bytes just read (for the no-frames hint)."""
        for result in results:
            self._observe(result)
        self._profile_add(data[-PROFILE_BYTES:])
        found = self._judge(bytes_in, masking)
        if found is None or found.cause == self.cause:
            return None
        self.current = found
        return found

    def _observe(self, result: Result) -> None:
        frame = result.frame
        accepted = result.accepted
        if accepted:
            if self._silence(frame.offset - self._accepted_end):
                # What came while nothing framed was garbage, not damage to telegrams.
                for _ in range(min(self._since, len(self._frames))):
                    self._frames.pop()
            self._since = 0
            end = frame.body.find(b"\r\n")
            self._header = frame.body[:end] if end > 0 else b""
            self._reference = frame.body
            self._accepted_end = frame.offset + len(frame.body) + len(frame.checksum or b"")
            self._complete = 0
            self._profile = [0, 0, 0]
        else:
            self._since += 1
            self._complete += not frame.truncated
        if accepted and result.failure is None:
            self._frames.append(_INTACT)
            return
        # A hole: a whole telegram of this meter, too short or too long for one.
        hole = (
            not result.accepted
            and not frame.truncated
            and bool(self._header)
            and frame.body.startswith(self._header + b"\r\n")
            and abs(len(frame.body) - len(self._reference)) >= HOLE
        )
        if result.repair is not None:
            pairs = _repaired_pairs(result.repair)
        else:
            pairs = _structure_pairs(frame.body, self._reference)
        # A frame lost is damage too, also one with no checksum to fail (DSMR 2.2) that did not
        # decode.
        self._frames.append(_Frame(result.accepted, True, hole, *_classify(pairs)))

    def _profile_add(self, data: bytes) -> None:
        profile = self._profile
        if profile[0] + len(data) > PROFILE_BYTES:  # keep it recent: halve the old counts
            self._profile = profile = [n // 2 for n in profile]
        profile[0] += len(data)
        profile[1] += len(data.translate(None, _NOT_ZERO_RUNS))
        profile[2] += len(data.translate(None, _NOT_HIGH))

    def _judge(self, bytes_in: int, masking: bool) -> Diagnosis | None:
        silent = bytes_in - self._accepted_end
        if self._silence(silent):
            return self._no_frames(silent)
        frames = self._frames
        if not any(f.accepted for f in frames):
            return None  # frames of garbage alone are neither noise nor a working line
        damaged = sum(f.damaged for f in frames)
        if damaged >= (DAMAGED_STAY if self.cause in _DAMAGE else DAMAGED):
            return self._damage(len(frames), damaged)
        if masking:
            return Diagnosis(PARITY, MESSAGES[PARITY], {"frames": len(frames)})
        # Telegrams again after none came: no need to wait for a window of them to say so.
        if len(frames) >= MIN_FRAMES or (self.cause == NO_FRAMES and silent < NO_FRAME_BYTES):
            return Diagnosis(OK, MESSAGES[OK], {"frames": len(frames), "damaged": damaged})
        return None

    def _silence(self, silent: int) -> bool:
        """Bytes without telegrams. Garbage makes a complete frame now and then; telegrams, even
        damaged ones, far more often."""
        return silent >= NO_FRAME_BYTES and self._complete * NO_FRAME_BYTES <= silent

    def _no_frames(self, silent: int) -> Diagnosis:
        total, zero_runs, high = self._profile
        if total and zero_runs * 2 >= total:
            message = NO_FRAMES_SPEED
        elif total and high * 5 >= total * 4:
            message = NO_FRAMES_INVERTED
        else:
            message = NO_FRAMES_EITHER
        return Diagnosis(NO_FRAMES, message, {"bytes_without_telegram": silent})

    def _damage(self, frames: int, damaged: int) -> Diagnosis | None:
        holes = sum(f.hole for f in self._frames)
        cleared = sum(f.cleared for f in self._frames)
        added = sum(f.added for f in self._frames)
        slipped = sum(f.slipped for f in self._frames)
        changed = cleared + added + slipped + sum(f.other for f in self._frames)
        evidence = {"frames": frames, "damaged": damaged}
        if holes >= 2 and holes * 2 >= damaged:
            return Diagnosis(OVERRUN, MESSAGES[OVERRUN], {**evidence, "holes": holes})
        bits = {"bytes_changed": changed, "cleared": cleared, "set": added, "slipped": slipped}
        if changed < MIN_BYTES:
            # Too few damaged bytes to see a pattern in: noise only once damage is plain.
            if damaged < NOISE_FRAMES:
                return None
        elif cleared * 4 >= changed * 3 and added * 10 <= changed:
            return Diagnosis(WEAK_PULLUP, MESSAGES[WEAK_PULLUP], {**evidence, **bits})
        elif slipped * 5 >= changed * 3:
            return Diagnosis(BIT_SLIP, MESSAGES[BIT_SLIP], {**evidence, **bits})
        return Diagnosis(NOISE, MESSAGES[NOISE], {**evidence, **bits})
