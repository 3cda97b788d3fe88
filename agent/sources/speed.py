"""Serial line settings (`115200-8N1`, `9600-7E1`) and the `auto` speed probe.

No port is opened here: the serial source applies what this decides. pyserial is imported for
its table of the baud rates a port accepts, nothing else.

DSMR 4/5 meters (and the national variants built on them) send 115200 baud 8N1; DSMR 2.2/3 meters
send 9600 baud 7E1. At the wrong setting bytes still arrive, but they never frame into a telegram,
so `SpeedProbe` switches between the two until telegrams are seen and then keeps the one that
works.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from serial import SerialBase

_SETTINGS = re.compile(r"(\d+)-([5-8])([NEOMS])(1|1\.5|2)", re.IGNORECASE)
AUTO = "auto"


@dataclass(frozen=True, slots=True)
class LineSettings:
    baudrate: int
    bytesize: int
    parity: str  # N, E, O, M or S, as pyserial spells them
    stopbits: float

    def __str__(self) -> str:
        return f"{self.baudrate}-{self.bytesize}{self.parity}{self.stopbits:g}"

    def as_pyserial(self) -> dict[str, object]:
        """The keyword names `serial.Serial.apply_settings()` takes."""
        return {
            "baudrate": self.baudrate,
            "bytesize": self.bytesize,
            "parity": self.parity,
            "stopbits": self.stopbits,
        }


def parse_settings(text: str) -> LineSettings:
    """`BAUD-DPS` (`115200-8N1`, `9600-7E1`); ValueError with a one-line reason."""
    match = _SETTINGS.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"serial settings {text!r} are not BAUD-DATABITS PARITY STOPBITS "
            "(e.g. 115200-8N1, 9600-7E1) or auto"
        )
    baudrate = int(match[1])
    if baudrate not in SerialBase.BAUDRATES:
        raise ValueError(f"serial settings {text!r}: {baudrate} is not a standard baud rate")
    return LineSettings(baudrate, int(match[2]), match[3].upper(), float(match[4]))


DSMR4 = LineSettings(115200, 8, "N", 1.0)
DSMR2 = LineSettings(9600, 7, "E", 1.0)


class SpeedProbe:
    """Which line settings to use next, from the bytes seen and the telegrams accepted.

    Call `connected(now)` when a link opens, `update(n, now)` after every read (n may be 0) and
    `telegram()` for every accepted telegram. `update` returns the settings to switch to, or None.
    A setting that has produced no telegram after `window_bytes` bytes, or `window_seconds` since
    bytes started arriving, is abandoned for the next candidate. Once a telegram arrives the
    setting is kept; after a reconnect it is doubted again only if the new link brings
    `relearn` times the window in bytes or time without one (a meter swapped for an older one),
    so a burst of line noise on a working link never makes it leave the right speed.
    """

    def __init__(
        self,
        candidates: tuple[LineSettings, ...] = (DSMR4, DSMR2),
        *,
        window_bytes: int = 4096,
        window_seconds: float = 25.0,
        relearn: int = 10,
    ) -> None:
        if len(candidates) < 2:
            raise ValueError("probing needs at least two candidate settings")
        self.candidates = candidates
        self.window_bytes = window_bytes
        self.window_seconds = window_seconds
        self.relearn = relearn
        self.index = 0
        self.locked = False
        self._doubting = False  # locked, but this link has not shown a telegram yet
        self._bytes = 0
        self._first_byte: float | None = None

    @property
    def settings(self) -> LineSettings:
        return self.candidates[self.index]

    def connected(self, now: float) -> None:
        self._bytes = 0
        self._first_byte = None
        self._doubting = self.locked

    def telegram(self) -> bool:
        """Record an accepted telegram; True when it settled the choice (worth a log line)."""
        settled = not self.locked
        self.locked = True
        self._doubting = False
        self._bytes = 0
        self._first_byte = None
        return settled

    def update(self, n: int, now: float) -> LineSettings | None:
        if n:
            self._bytes += n
            if self._first_byte is None:
                self._first_byte = now
        if self.locked and not self._doubting:
            return None
        scale = self.relearn if self.locked else 1
        if self._first_byte is None or (
            self._bytes < self.window_bytes * scale
            and now - self._first_byte < self.window_seconds * scale
        ):
            return None
        self.locked = self._doubting = False
        self.index = (self.index + 1) % len(self.candidates)
        self._bytes = 0
        self._first_byte = None
        return self.settings
