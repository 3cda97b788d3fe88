"""CRC-16 checksums used by P1 telegrams.

DSMR meters seal each telegram with CRC-16/ARC (poly 0x8005 reflected, init 0) over the bytes from
`/` through `!`; some meters (Holley) use CRC-16/X25 instead. The compiled `fastcrc` wheel is used
when it is installed; boards without a wheel fall back to the table-driven code below.
"""

from __future__ import annotations

import enum
from collections.abc import Callable


class CrcKind(enum.Enum):
    ARC = "arc"
    X25 = "x25"


def _reflected_table(poly: int) -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


# Both variants are reflected CRCs; X25 uses poly 0x1021 (reflected 0x8408), init and xorout 0xFFFF.
ARC_TABLE = _reflected_table(0xA001)
X25_TABLE = _reflected_table(0x8408)


def _pure(table: tuple[int, ...], init: int, xorout: int) -> Callable[[bytes], int]:
    def crc16(data: bytes) -> int:
        crc = init
        for byte in data:
            crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
        return crc ^ xorout

    return crc16


crc16_arc_pure = _pure(ARC_TABLE, 0x0000, 0x0000)
crc16_x25_pure = _pure(X25_TABLE, 0xFFFF, 0xFFFF)

try:
    from fastcrc import crc16 as _fast

    crc16_arc: Callable[[bytes], int] = _fast.arc
    crc16_x25: Callable[[bytes], int] = _fast.ibm_sdlc
    BACKEND = "fastcrc"
except ImportError:  # pragma: no cover - exercised on boards without a fastcrc wheel
    crc16_arc = crc16_arc_pure
    crc16_x25 = crc16_x25_pure
    BACKEND = "python"

FUNCTIONS: dict[CrcKind, Callable[[bytes], int]] = {
    CrcKind.ARC: crc16_arc,
    CrcKind.X25: crc16_x25,
}


class CrcChecker:
    """Checks telegram checksums and learns which CRC variant a meter uses.

    Until a meter has produced one matching telegram both variants are tried; afterwards only the
    learned one is, because every extra variant accepted doubles the chance that a corrupted frame
    passes by accident.
    """

    __slots__ = ("kind",)

    def __init__(self, kind: CrcKind | None = None) -> None:
        self.kind = kind

    def check(self, body: bytes, expected: int) -> CrcKind | None:
        """Return the variant that matches `expected`, or None when the frame fails."""
        if self.kind is not None:
            return self.kind if FUNCTIONS[self.kind](body) == expected else None
        for kind in (CrcKind.ARC, CrcKind.X25):
            if FUNCTIONS[kind](body) == expected:
                self.kind = kind
                return kind
        return None
