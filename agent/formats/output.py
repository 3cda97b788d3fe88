"""Bytes into a text output: straight into its buffer when it has one (a file, stdout), so that
what was encoded once is not decoded and encoded again; decoded for one without (StringIO)."""

from __future__ import annotations

import io
import os
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
    """The rest of `data` (UTF-8) into `out`, or its next `size` bytes: by the kernel when both
    are files (`replay --jobs` joins gigabytes), else through memory."""
    if _sendfile(data, out, size):
        return
    while size is None or size > 0:
        chunk = data.read(CHUNK if size is None else min(size, CHUNK))
        if not chunk:
            return
        write_bytes(out, chunk)
        if size is not None:
            size -= len(chunk)


def _sendfile(data: IO[bytes], out: TextIO, size: int | None) -> bool:
    """`copy_bytes` without the bytes passing through Python; False when it cannot be (no file
    descriptors, or a kernel or file system that refuses before anything was copied)."""
    try:
        source, target = data.fileno(), out.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return False
    out.flush()
    start = offset = data.tell()
    end = os.fstat(source).st_size if size is None else start + size
    try:
        while offset < end:
            sent = os.sendfile(target, source, offset, min(end - offset, CHUNK << 10))
            if not sent:
                break
            offset += sent
    except OSError:
        if offset > start:
            raise
        return False
    data.seek(offset)
    if out.seekable():
        out.seek(0, os.SEEK_END)  # the writer's idea of its position, after the kernel wrote
    return True
