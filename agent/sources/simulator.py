"""The simulated meter as a source: `simulator[:FLAVOUR][,noise=RATE][,interval=SECONDS]`."""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime

from agent.noise import NoisyChannel, applicable_modes, parse_rate, spread_rate
from agent.simulate import FLAVOURS, SimulatedMeter

POLL = 0.5  # longest wait inside one `read()`


class SimulatorSource:
    """The simulated meter, paced in real time, optionally behind a noisy line."""

    def __init__(
        self,
        flavour: str,
        stop: threading.Event,
        noise: float = 0.0,
        *,
        interval: float | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or f"simulator:{flavour}"
        # The meter's clock starts now, as a real one would read: dashboards of the demo show
        # the current time range, and the clock-skew metric reads 0.
        self.meter = SimulatedMeter(flavour, interval=interval, start=datetime.now(UTC))
        first = self.meter.next_telegram()
        self.channel = NoisyChannel(spread_rate(noise, applicable_modes(first))) if noise else None
        self.connected = True
        self.reconnects = 0
        self.bytes_total = 0
        self.last_error: str | None = None
        self.hint: str | None = None
        self._pending: bytes | None = first
        self._stop = stop
        self._next = time.monotonic()

    def read(self) -> bytes | None:
        delay = self._next - time.monotonic()
        if delay > 0:
            self._stop.wait(min(delay, POLL))  # short polls: the caller syncs state in between
            if self._next > time.monotonic():
                return b""
        self._next += self.meter.interval
        telegram = self._pending or self.meter.next_telegram()
        self._pending = None
        data = self.channel.transmit(telegram) if self.channel else telegram
        self.bytes_total += len(data)
        return data

    def telegram_seen(self) -> None:
        pass

    def close(self) -> None:
        self.connected = False


def open_simulator(url: str, stop: threading.Event, name: str | None = None) -> SimulatorSource:
    """`simulator[:FLAVOUR][,noise=RATE][,interval=SECONDS]`; ValueError with a one-line reason."""
    spec, *options = url.split(",")
    flavour = spec.partition(":")[2] or "dsmr5"
    if flavour not in FLAVOURS:
        raise ValueError(
            f"unknown simulator flavour {flavour!r} (choose from {', '.join(FLAVOURS)})"
        )
    values: dict[str, str] = {}
    for option in options:
        key, _, value = option.partition("=")
        if key not in ("noise", "interval"):
            raise ValueError(f"unknown simulator option {key!r} (noise=RATE and interval=SECONDS)")
        if key in values:
            raise ValueError(f"simulator option {key} given twice")
        values[key] = value
    noise = parse_rate(values["noise"], "simulator noise") if "noise" in values else 0.0
    interval = _interval(values["interval"]) if "interval" in values else None
    return SimulatorSource(flavour, stop, noise, interval=interval, name=name)


def _interval(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ValueError(f"simulator interval {text!r} is not a positive number of seconds")
    return seconds
