"""Keeping a link up: when to try again, what to count, what to log, and one-line error text.

The link's own I/O stays with the source; `Reconnector` only decides and records. Retries go on
forever with exponential backoff and full jitter (so many agents behind one bridge do not knock in
step), and the wait is cut short by the stop event so shutdown stays prompt.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable

import structlog

from agent.redact import mask_url

log = structlog.get_logger("p1-agent.source")


def describe(exc: BaseException) -> str:
    """One line for an I/O error. pyserial wraps the OS error in long messages that repeat the
    port name; the OS's own words are the useful part."""
    for error in (exc, exc.__cause__, exc.__context__):
        if isinstance(error, OSError) and error.errno:
            return os.strerror(error.errno)
    text = str(exc) or type(exc).__name__
    return mask_url(" ".join(text.split()))


class Backoff:
    """Delays of 0…`initial` s, then 0…2×`initial`, … up to 0…`cap` (full jitter)."""

    def __init__(
        self, initial: float = 1.0, cap: float = 60.0, rng: random.Random | None = None
    ) -> None:
        if not 0 < initial <= cap:
            raise ValueError("backoff needs 0 < initial <= cap")
        self.initial = initial
        self.cap = cap
        self.rng = rng or random.Random()
        self._ceiling = initial

    def next(self) -> float:
        delay = self.rng.uniform(0, self._ceiling)
        self._ceiling = min(self.cap, self._ceiling * 2)
        return delay

    def reset(self) -> None:
        self._ceiling = self.initial


class Reconnector:
    """The state of one link that must stay up, for a source that opens and reads it.

    The source asks `due()` before each attempt to open and reports `opened()`, `failed(reason)`
    (an attempt to open), `lost(reason)` (an open link broke) and `working()` (a telegram came
    through). `connected`, `reconnects` (successful opens after the first) and `last_error` are
    the state the agent exports.

    Trouble is logged without flooding: the first failure after a working link (or at start)
    and the first success after it are logged; in between, at most one summary every
    `log_every` seconds. The backoff starts over only after a link delivered a telegram: a
    bridge that accepts connections and drops them at once must not be hammered.
    """

    def __init__(
        self,
        target: str,
        stop: threading.Event,
        *,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], object] | None = None,
        poll: float = 0.5,
        log_every: float = 60.0,
    ) -> None:
        self.target = target
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.wait = wait or stop.wait
        self.poll = poll
        self.log_every = log_every
        self.connected = False
        self.reconnects = 0
        self.last_error: str | None = None
        self._ever = False
        self._working = False
        self._due = clock()
        self._attempts = 0  # failed opens and lost links since the last working link
        self._said_reconnected = False
        self._quiet_until = 0.0

    def due(self) -> bool:
        """True when an attempt to open is due; otherwise waits at most one poll and says False,
        so the caller can return to its loop (and notice a stop)."""
        remaining = self._due - self.clock()
        if remaining > 0:
            self.wait(min(remaining, self.poll))
            remaining = self._due - self.clock()
        return remaining <= 0

    def opened(self) -> None:
        self.connected = True
        self._working = False
        if self._ever:
            self.reconnects += 1
        if not self._attempts:
            if not self._ever:
                log.info(f"connected to {self.target}", source=self.target)
        elif not self._said_reconnected or self._may_speak():
            self._said_reconnected = True
            log.info(
                f"connected to {self.target} after {self._attempts} "
                + ("failure" if self._attempts == 1 else "failures"),
                source=self.target,
            )
        self._ever = True

    def failed(self, reason: str) -> None:
        self.last_error = f"cannot open {self.target}: {reason}"
        self._trouble(
            f"{self.last_error}; retrying with backoff",
            f"still cannot open {self.target} after {self._attempts + 1} attempts: {reason}",
        )

    def lost(self, reason: str) -> None:
        self.connected = False
        self.last_error = f"lost {self.target}: {reason}"
        self._trouble(
            f"{self.last_error}; reconnecting with backoff",
            f"lost {self.target} again ({self._attempts + 1} failures since a telegram): {reason}",
        )

    def working(self) -> None:
        if self._working:
            return
        self._working = True
        self._attempts = 0
        self._said_reconnected = False
        self.backoff.reset()

    def _trouble(self, first: str, later: str) -> None:
        if self._attempts == 0:
            self._quiet_until = self.clock() + self.log_every
            log.warning(first, source=self.target)
        elif self._may_speak():
            log.warning(later, source=self.target)
        self._attempts += 1
        self._due = self.clock() + self.backoff.next()

    def _may_speak(self) -> bool:
        now = self.clock()
        if now < self._quiet_until:
            return False
        self._quiet_until = now + self.log_every
        return True


class LinkState:
    """The Source protocol's `connected`, `reconnects` and `last_error`, for a source whose link
    its Reconnector `_link` keeps."""

    _link: Reconnector

    @property
    def connected(self) -> bool:
        return self._link.connected

    @property
    def reconnects(self) -> int:
        return self._link.reconnects

    @property
    def last_error(self) -> str | None:
        return self._link.last_error
