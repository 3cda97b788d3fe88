"""Line noise for the log: the first damaged telegram at once, then one line per interval.

A cable that fails 0.3 % of telegrams at one a second would otherwise write a line every few
minutes forever, and a storm a line a second. Sans-I/O: the caller passes the time and logs the
lines it gets back.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agent.core.pipeline import REJECTED, REPAIRED, Result


@dataclass(slots=True)
class _Window:
    start: float
    failures: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    methods: Counter[str] = field(default_factory=Counter)
    last: float = 0.0
    reported: int = 0  # frames that already had a line of their own


@dataclass(frozen=True, slots=True)
class NoiseLine:
    event: str
    fields: dict[str, object]


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%SZ")


class DamageSummary:
    def __init__(self, interval: float) -> None:  # seconds: log_summary_interval
        self.interval = interval
        self._windows: dict[str, _Window] = {}

    def observe(self, meter: str, result: Result, now: float) -> NoiseLine | None:
        """Count a damaged frame; the first one of a quiet spell is worth a line of its own."""
        if result.failure is None:
            return None
        window = self._windows.get(meter)
        first = window is None
        if window is None:
            window = self._windows[meter] = _Window(now, reported=1)
        window.failures[result.failure] += 1
        window.outcomes[result.status] += 1
        if result.repair is not None:
            window.methods[result.repair.method] += 1
        window.last = now
        if not first:
            return None
        outcome = result.status if result.status != REJECTED else f"rejected ({result.reason})"
        return NoiseLine(
            f"damaged telegram ({result.failure}), {outcome}; more are summarised every "
            f"{_duration(self.interval)}",
            {"meter": meter},
        )

    def due(self, now: float) -> list[NoiseLine]:
        """Summaries of the windows that are over. A meter whose window passed without damage is
        forgotten, so its next damaged frame gets a line of its own again."""
        lines = []
        for meter, window in list(self._windows.items()):
            if now - window.start < self.interval:
                continue
            total = sum(window.failures.values())
            if total == 0:
                del self._windows[meter]
                continue
            self._windows[meter] = _Window(now)
            if total <= window.reported:
                continue
            kinds = ", ".join(f"{kind} {n}" for kind, n in window.failures.most_common())
            lines.append(
                NoiseLine(
                    f"{total} damaged telegram{'s' if total > 1 else ''} in "
                    f"{_duration(self.interval)} ({kinds}): "
                    f"{window.outcomes[REPAIRED]} repaired, {window.outcomes[REJECTED]} rejected; "
                    f"last at {_clock(window.last)}",
                    {
                        "meter": meter,
                        "damaged": total,
                        "repaired": window.outcomes[REPAIRED],
                        "rejected": window.outcomes[REJECTED],
                        "methods": dict(window.methods),
                    },
                )
            )
        return lines
