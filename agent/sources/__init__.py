"""Byte sources: thin adapters that hand raw bytes to the pipeline."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Protocol

from agent.noise import NoisyChannel, applicable_modes, parse_rate, spread_rate
from agent.simulate import FLAVOURS, SimulatedMeter


class Source(Protocol):
    name: str

    def read(self) -> bytes | None:
        """Bytes as they arrive; b"" when nothing came; None at the end of the source."""
        ...

    def close(self) -> None: ...


class SimulatorSource:
    """The built-in simulated meter, paced in real time, optionally behind a noisy line."""

    def __init__(self, flavour: str, stop: threading.Event, noise: float = 0.0) -> None:
        self.name = f"simulator:{flavour}"
        self.meter = SimulatedMeter(flavour)
        first = self.meter.next_telegram()
        self.channel = NoisyChannel(spread_rate(noise, applicable_modes(first))) if noise else None
        self._pending: bytes | None = first
        self._stop = stop
        self._next = time.monotonic()

    def read(self) -> bytes | None:
        delay = self._next - time.monotonic()
        if delay > 0 and self._stop.wait(delay):
            return b""
        self._next += self.meter.interval
        telegram = self._pending or self.meter.next_telegram()
        self._pending = None
        return self.channel.transmit(telegram) if self.channel else telegram

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
    """`simulator[:FLAVOUR][,noise=RATE]` or `file:PATH`; ValueError with a one-line reason."""
    if url == "simulator" or url.startswith(("simulator:", "simulator,")):
        spec, _, options = url.partition(",")
        flavour = spec.partition(":")[2] or "dsmr5"
        if flavour not in FLAVOURS:
            raise ValueError(
                f"unknown simulator flavour {flavour!r} (choose from {', '.join(FLAVOURS)})"
            )
        noise = 0.0
        if options:
            key, _, value = options.partition("=")
            if key != "noise":
                raise ValueError(f"unknown simulator option {key!r} (only noise=RATE)")
            noise = parse_rate(value, "simulator noise")
        return SimulatorSource(flavour, stop, noise)
    if url.startswith("file:"):
        path = Path(url[5:])
        if not path.is_file():
            raise ValueError(f"capture file {path} does not exist")
        return FileSource(path)
    raise ValueError(f"source {url!r} is not supported yet (use simulator or file:PATH)")
