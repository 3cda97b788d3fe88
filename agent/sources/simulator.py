"""The simulated meter as a source:
`simulator[:FLAVOUR][,noise=RATE|bad-line][,interval=SECONDS]`."""

from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime

from agent.noisyline import (
    BAD_LINE,
    NoisyChannel,
    applicable_modes,
    bad_line_rates,
    parse_rate,
    spread_rate,
)
from agent.simulate import FLAVOURS, SimulatedMeter

POLL = 0.5  # longest wait inside one `read()`


class SimulatorSource:
    """The simulated meter, paced in real time, optionally behind a noisy line: `noise` is the
    share of telegrams corrupted, spread over every mode the flavour has, or `bad-line`."""

    def __init__(
        self,
        flavour: str,
        stop: threading.Event,
        noise: float | str = 0.0,
        *,
        interval: float | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or f"simulator:{flavour}"
        # The meter's clock starts now, as a real one would read: dashboards of the demo show
        # the current time range, and the clock-skew metric reads 0.
        self.meter = SimulatedMeter(flavour, interval=interval, start=datetime.now(UTC))
        first = self.meter.next_telegram()
        self.channel = NoisyChannel(_line_rates(noise, first)) if noise else None
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
    """`simulator[:FLAVOUR][,noise=RATE|bad-line][,interval=SECONDS]`; ValueError with a one-line
    reason."""
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
            raise ValueError(
                f"unknown simulator option {key!r} (noise=RATE|{BAD_LINE} and interval=SECONDS)"
            )
        if key in values:
            raise ValueError(f"simulator option {key} given twice")
        values[key] = value
    text = values.get("noise", "0")
    noise: float | str = text if text == BAD_LINE else parse_rate(text, "simulator noise")
    interval = _interval(values["interval"]) if "interval" in values else None
    return SimulatorSource(flavour, stop, noise, interval=interval, name=name)


def _line_rates(noise: float | str, telegram: bytes) -> dict[str, float]:
    if isinstance(noise, str):
        if noise != BAD_LINE:
            raise ValueError(f"unknown simulator noise {noise!r} (a rate, or {BAD_LINE})")
        return bad_line_rates(telegram)
    return spread_rate(noise, applicable_modes(telegram))


def _interval(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ValueError(f"simulator interval {text!r} is not a positive number of seconds")
    return seconds
