"""Why no telegram arrives: a hint for the user, once per connection. Sans-I/O (pass `now`).

The two silent failures of a new P1 set-up look alike from outside (no readings), but the bytes
tell them apart: bytes without telegrams point at the signal (not inverted, wrong speed), no
bytes at all at the data-request line or the port.
"""

from __future__ import annotations

NO_TELEGRAM = (
    "bytes arrive but no telegram was recognised for {after:g} s: is the signal inverted (most "
    "USB P1 cables invert it; a DIY cable needs an inverter), are speed and format right "
    "(DSMR 2.2/3 meters send 9600 7E1: --serial-settings 9600-7E1 or auto), and is the "
    "data-request line (pin 2, RTS) powered?"
)
NO_BYTES = (
    "connected but no bytes for {after:g} s: is the data-request line (pin 2, RTS) powered, "
    "is this the right port?"
)


class NoTelegramWatch:
    """`bytes(n, now)` and `telegram(now)` as they happen; `check(now)` returns each message at
    most once until `reset(now)` (a new connection)."""

    def __init__(self, after: float = 60.0, min_bytes: int = 256) -> None:
        self.after = after
        self.min_bytes = min_bytes
        self.reset(0.0)

    def reset(self, now: float) -> None:
        self._since = now
        self._any_bytes = False
        self._pending = 0  # bytes since the last telegram
        self._pending_since: float | None = None
        self._said_no_telegram = False
        self._said_no_bytes = False

    def bytes(self, n: int, now: float) -> None:
        if n <= 0:
            return
        self._any_bytes = True
        self._pending += n
        if self._pending_since is None:
            self._pending_since = now

    def telegram(self, now: float) -> None:
        self._pending = 0
        self._pending_since = None

    def check(self, now: float) -> str | None:
        if (
            not self._said_no_telegram
            and self._pending_since is not None
            and self._pending >= self.min_bytes
            and now - self._pending_since >= self.after
        ):
            self._said_no_telegram = True
            return NO_TELEGRAM.format(after=self.after)
        if not self._said_no_bytes and not self._any_bytes and now - self._since >= self.after:
            self._said_no_bytes = True
            return NO_BYTES.format(after=self.after)
        return None
