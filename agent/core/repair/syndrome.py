"""Locating a single byte error from the CRC syndrome, in one pass over the frame.

CRC-16/ARC and X25 are linear over GF(2) for messages of equal length: the checksum of the
received bytes XOR the expected checksum depends only on the error pattern. A one-byte error `e`
at distance `d` from the end contributes `step^d(T[e])`, where `step` clocks one zero byte through
the register. Unwinding the syndrome one byte at a time and looking each value up in the table
finds every (position, error) pair consistent with it, instead of recomputing the CRC for each of
the 255 × length candidates.
"""

from __future__ import annotations

from collections.abc import Iterator

from agent.core.crc import ARC_TABLE, X25_TABLE, CrcKind

_TABLES = {CrcKind.ARC: ARC_TABLE, CrcKind.X25: X25_TABLE}
# The high bytes of a reflected CRC-16 table are a permutation of 0..255, which makes one clock
# step invertible.
_HIGH = {kind: {t >> 8: i for i, t in enumerate(table)} for kind, table in _TABLES.items()}
_ENTRY = {kind: {t: i for i, t in enumerate(table) if i} for kind, table in _TABLES.items()}


def single_byte_errors(kind: CrcKind, length: int, syndrome: int) -> Iterator[tuple[int, int]]:
    """(position, xor mask) of every single-byte error in a `length`-byte message that explains
    `syndrome` = crc(received) ^ expected. Nearest the end first."""
    table = _TABLES[kind]
    high = _HIGH[kind]
    entry = _ENTRY[kind]
    value = syndrome
    for distance in range(length):
        error = entry.get(value)
        if error is not None:
            yield length - 1 - distance, error
        index = high[value >> 8]
        value = (((value ^ table[index]) & 0xFF) << 8) | index
