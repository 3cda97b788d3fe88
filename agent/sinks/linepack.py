"""Lines of line protocol kept small: deflated with an earlier line of their series (measurement
and tags) as preset dictionary, since from one telegram to the next most of a line repeats.

A DSMR 5 telegram's `p1` line of 762 bytes becomes about 110, its `p1_mbus` line of 92 about 20.
The journal packs its records so; the spool stores folded lines so (`pack`), with the dictionary
lines ("keys") in its table `line_keys`. A stored value is either the line itself (text) or
`PACKED`, the key's id (4 bytes, big-endian) and the raw deflate stream (bytes).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

PACKED = b"\x01"
_KEY_ID = struct.Struct(">I")


def deflate(data: bytes, key: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -15, zdict=key)
    return packer.compress(data) + packer.flush()


def inflate(data: bytes, key: bytes) -> bytes:
    unpacker = zlib.decompressobj(-15, zdict=key)
    return unpacker.decompress(data) + unpacker.flush()


def series(line: str) -> str:
    """Measurement and tags: what lines of one series share. A tag with an escaped space cuts it
    short, which only makes the dictionary a worse one."""
    return line.partition(" ")[0]


def pack(line: str, key_id: int, key: bytes) -> bytes:
    return PACKED + _KEY_ID.pack(key_id) + deflate(line.encode(), key)


def unpack(value: str | bytes, keys: Mapping[int, bytes]) -> str:
    """The line a stored value holds; KeyError for a key that is not there, ValueError or
    zlib.error for bytes that are not a packed line."""
    if isinstance(value, str):
        return value
    if value[:1] != PACKED or len(value) < 1 + _KEY_ID.size:
        raise ValueError("not a packed line")
    (key_id,) = _KEY_ID.unpack_from(value, 1)
    return inflate(value[1 + _KEY_ID.size :], keys[key_id]).decode()
