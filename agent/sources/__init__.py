"""Byte sources: thin adapters that hand raw bytes to the pipeline."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Protocol

from agent.simulate import FLAVOURS, SimulatedMeter


class Source(Protocol):
    name: str

    def read(self) -> bytes | None:
        """Bytes as they arrive; b"" when nothing came; None at the end of the source."""
        ...

    def close(self) -> None: ...


class SimulatorSource:
    """The built-in simulated meter, paced in real time."""

    def __init__(self, flavour: str, stop: threading.Event) -> None:
        self.name = f"simulator:{flavour}"
        self.meter = SimulatedMeter(flavour)
        self._stop = stop
        self._next = time.monotonic()

    def read(self) -> bytes | None:
        delay = self._next - time.monotonic()
        if delay > 0 and self._stop.wait(delay):
            return b""
        self._next += self.meter.interval
        return self.meter.next_telegram()

    def close(self) -> None:
        pass


class FileSource:
    """A capture file, read once."""

    def __init__(self, path: Path) -> None:
        self.name = f"file:{path}"
        self._file = path.open("rb")

    def read(self) -> bytes | None:
        return self._file.read(65536) or None

    def close(self) -> None:
        self._file.close()


def open_source(url: str, stop: threading.Event) -> Source:
    """`simulator[:FLAVOUR]` or `file:PATH`; ValueError with a one-line reason otherwise."""
    if url == "simulator" or url.startswith("simulator:"):
        flavour = url.partition(":")[2] or "dsmr5"
        if flavour not in FLAVOURS:
            raise ValueError(
                f"unknown simulator flavour {flavour!r} (choose from {', '.join(FLAVOURS)})"
            )
        return SimulatorSource(flavour, stop)
    if url.startswith("file:"):
        path = Path(url[5:])
        if not path.is_file():
            raise ValueError(f"capture file {path} does not exist")
        return FileSource(path)
    raise ValueError(f"source {url!r} is not supported yet (use simulator or file:PATH)")
