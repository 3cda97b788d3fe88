"""Counts by meter that stay bounded, for the parts of the agent that count what they did to a
meter's points (the spool's evictions, the deliverer's writes).

A source's telegrams may name ever new meters (noise forging identifiers), and their points are
stored and delivered all the same; counts kept for every one of them would grow without end. So
a MeterCounts counts only the meters `counted` admits (in the agent: those with metrics, which
are bounded) and forgets the meters the metrics let go.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TypeVar

K = TypeVar("K", str, tuple[str, str])  # a meter, or (meter, label)


def every_meter(meter: str) -> bool:
    return True


def _meter(key: str | tuple[str, str]) -> str:
    return key if isinstance(key, str) else key[0]


class MeterCounts(Counter[K]):
    """A Counter keyed by meter or (meter, label); add to it with count(), not update()."""

    def __init__(self, counted: Callable[[str], bool] = every_meter) -> None:
        super().__init__()
        self.counted = counted

    def count(self, counts: Iterable[K] | Mapping[K, int]) -> None:
        """Add `counts` (keys, or keys with their counts) of the meters `counted` admits."""
        for key, n in Counter(counts).items():
            if self.counted(_meter(key)):
                self[key] += n

    def forget(self, meters: Collection[str]) -> None:
        for key in [key for key in self if _meter(key) in meters]:
            del self[key]
