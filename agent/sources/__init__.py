"""Byte sources: thin adapters that hand raw bytes to the pipeline.

`open_source(url, stop, …)` picks one by its URL:
- a device path (`/dev/ttyUSB0`) or a pyserial URL (`socket://HOST:PORT`, `rfc2217://HOST:PORT`):
  `serial.py`, kept connected for as long as the agent runs;
- `file:PATH[,realtime|,follow]`: `file.py`;
- `simulator[:FLAVOUR][,noise=RATE][,interval=SECONDS]`: `simulator.py`;
- `homewizard://HOST[:PORT]`: the HomeWizard P1 meter's local API, `homewizard.py`;
- `mqtt://[USER@]HOST[:PORT]/TOPIC`, `mqtts://…`: raw telegrams a bridge publishes, `mqtt.py`.
"""

from __future__ import annotations

import threading
from typing import Protocol, Unpack

from agent.config import Settings
from agent.sources.file import open_file
from agent.sources.homewizard import open_homewizard
from agent.sources.mqtt import open_mqtt
from agent.sources.serial import SerialOptions, open_serial
from agent.sources.simulator import open_simulator


class Source(Protocol):
    name: str  # for display: the URL with any password replaced, or the configured name

    def read(self) -> bytes | None:
        """Bytes as they arrive; b"" when nothing came within a short poll (at most 0.5 s, so the
        caller notices a stop); None only at a definitive end (a file read once to its end).
        I/O trouble on a link is handled inside (reconnect), never raised."""
        ...

    def telegram_seen(self) -> None:
        """The caller accepted a telegram from these bytes (the link works)."""
        ...

    def close(self) -> None: ...

    # State for metrics, read by the caller.
    @property
    def connected(self) -> bool: ...

    @property
    def reconnects(self) -> int:
        """Successful connections after the first."""
        ...

    @property
    def bytes_total(self) -> int: ...

    @property
    def last_error(self) -> str | None:
        """The latest trouble as one line, e.g. `cannot open /dev/ttyUSB0: No such file…`."""
        ...

    @property
    def hint(self) -> str | None:
        """Why no telegram arrives (signal, speed, data-request line), once there is reason to
        think so; None again after a telegram."""
        ...


def open_source(
    url: str,
    stop: threading.Event,
    *,
    name: str | None = None,
    settings: Settings | None = None,
    **serial: Unpack[SerialOptions],
) -> Source:
    """The source for `url`; ValueError with a one-line reason for a configuration mistake.

    `serial_settings` (`115200-8N1`, `9600-7E1`, `auto`) and `read_timeout` (reconnect when a
    link that has spoken stays silent this long) apply to serial links only. `stop` cuts every
    wait short. `name` replaces the display name. `settings` gives homewizard:// its token and
    mqtt:// its broker credentials.
    """
    scheme = url.partition("://")[0].lower()
    if scheme == "homewizard":
        return open_homewizard(url, stop, settings or Settings(), name)
    if scheme in ("mqtt", "mqtts"):
        return open_mqtt(url, stop, settings or Settings(), name)
    if url == "simulator" or url.startswith(("simulator:", "simulator,")):
        return open_simulator(url, stop, name)
    if url.startswith("file:"):
        return open_file(url, stop, name)
    return open_serial(url, stop, name=name, **serial)
