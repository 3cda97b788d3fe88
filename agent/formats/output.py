"""Bytes into a text output: straight into its buffer when it has one (a file, stdout), so that
what was encoded once is not decoded and encoded again; decoded for one without (StringIO)."""

from __future__ import annotations

from typing import IO, TextIO

CHUNK = 1 << 20


def write_bytes(out: TextIO, data: bytes) -> None:
    """UTF-8 `data` into `out`, after what was written to it as text."""
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        out.write(data.decode("utf-8"))
        return
    out.flush()
    buffer.write(data)


def copy_bytes(data: IO[bytes], out: TextIO, size: int | None = None) -> None:
    """The rest of `data` (UTF-8) into `out`, or its next `size` bytes."""
    while size is None or size > 0:
        chunk = data.read(CHUNK if size is None else min(size, CHUNK))
        if not chunk:
            return
        write_bytes(out, chunk)
        if size is not None:
            size -= len(chunk)
