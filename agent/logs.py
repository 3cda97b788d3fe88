"""structlog set-up: readable on a terminal, JSON lines otherwise; secrets masked; floods capped.

A noisy line or a dead database must not fill the disk: warnings and errors with the same event
text are let through a few times per window, and the next one that passes says how many were held
back. Secret values registered at start-up are masked in every field of every line.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog

MASK = "****"


class Redactor:
    """Replaces registered secret values wherever they appear in a log line's fields."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()

    def __call__(
        self, logger: object, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if not self.secrets:
            return event
        for key, value in event.items():
            text = value if isinstance(value, str) else None
            if text is None and not isinstance(value, int | float | bool | None):
                text = str(value)
            if text is not None:
                for secret in self.secrets:
                    if secret in text:
                        text = text.replace(secret, MASK)
                        event[key] = text
        return event


class RateLimiter:
    """At most `burst` warnings/errors per event text and `window` seconds; counts the rest."""

    LEVELS = frozenset({"warning", "error", "critical", "exception"})

    def __init__(
        self, burst: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, int, int]] = {}  # event → (window start, sent, held)

    def __call__(
        self, logger: object, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if method not in self.LEVELS:
            return event
        key = str(event.get("event"))
        now = self.clock()
        with self._lock:
            start, sent, held = self._seen.get(key, (now, 0, 0))
            if now - start >= self.window:
                start, sent = now, 0
            if sent >= self.burst:
                self._seen[key] = (start, sent, held + 1)
                raise structlog.DropEvent
            self._seen[key] = (start, sent + 1, 0)
            if len(self._seen) > 1024:  # bounded: forget the oldest windows
                for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:512]:
                    del self._seen[old]
        if held:
            event["suppressed"] = held
        return event


redactor = Redactor()
rate_limiter = RateLimiter()


def register_secret(value: str | None) -> None:
    """Never show this value in a log line (short values would mask too much; tokens are long)."""
    if value and len(value) >= 4:
        redactor.secrets.add(value)


def configure(
    level: str = "info", *, json: bool | None = None, stream: TextIO | None = None
) -> None:
    stream = sys.stderr if stream is None else stream
    if json is None:
        json = not stream.isatty()
    renderer: structlog.typing.Processor
    if json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=True)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            rate_limiter,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # The exception's text and traceback as a field (JSON would say only `exc_info:
            # true`), before the redactor, so a secret in them is masked too.
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
