"""Bounded memos: what a telegram's bytes name (OBIS codes, units, identifiers) repeats, but a
noisy line can name without end, so a memo stops growing at its limit instead."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(memo: dict[K, V], key: K, value: V, limit: int) -> V:
    """`value`, kept under `key` while `memo` holds fewer than `limit` entries."""
    if len(memo) < limit:
        memo[key] = value
    return value
