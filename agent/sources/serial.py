"""The live meter link: a serial device or any pyserial URL (socket://, rfc2217://).

The link is kept up for as long as the agent runs: a device that is not there yet, an unplugged
USB cable, a TCP reset and a peer that went silent all end in a reconnect with backoff, never in
an exception out of `read()`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Protocol, TypedDict

import serial
import structlog

from agent.config import Settings, SourceSettings
from agent.redact import mask_url
from agent.sources.reconnect import Backoff, LinkState, Reconnector, describe
from agent.sources.speed import AUTO, LineSettings, SpeedProbe, parse_settings
from agent.sources.watch import NoTelegramWatch

log = structlog.get_logger("p1-agent.source")

CHUNK = 65536
# One read waits at most this long, so `read()` returns in time for the agent to see a stop.
READ_POLL = 0.2
_TCP_SCHEMES = ("socket", "rfc2217")


class Port(Protocol):
    """The part of a pyserial port the source uses."""

    def read(self, size: int) -> bytes: ...

    def apply_settings(self, d: dict[str, object]) -> None: ...

    def reset_input_buffer(self) -> None: ...

    def close(self) -> None: ...


PortFactory = Callable[[str, LineSettings, float], Port]


class TcpPort:
    """A TCP bridge (`socket://HOST:PORT`) read straight from its socket.

    pyserial's socket:// discards what the bridge sent before the connection was set up
    (`reset_input_buffer` on open) and what one read had gathered when the peer closes or resets
    within it. Here the bytes that came before the end are returned first, and the end is
    raised on the next read. A read gathers for up to `timeout`, as pyserial's did, so the
    pipeline gets a telegram in one piece instead of a packet at a time.
    """

    CONNECT_TIMEOUT = 5.0

    def __init__(self, url: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"{mask_url(url)} is not socket://HOST:PORT")
        self.timeout = timeout
        self._ended: OSError | None = None  # how the link ended, raised once its bytes are out
        # A reset that came with the connection: the socket reads what came before it, then an
        # end of file, which is this reset.
        self._sock, self._reset = _connect(parts.hostname, parts.port, self.CONNECT_TIMEOUT)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def read(self, size: int) -> bytes:
        if self._ended is not None:
            raise self._ended
        data = bytearray()
        deadline = time.monotonic() + self.timeout
        while len(data) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._sock.settimeout(left)
            try:
                chunk = self._sock.recv(size - len(data))
            except TimeoutError:
                break
            except OSError as exc:
                self._ended = exc
                break
            if not chunk:
                self._ended = self._reset or ConnectionError("the peer closed the connection")
                break
            data += chunk
        if not data and self._ended is not None:
            raise self._ended
        return bytes(data)

    def apply_settings(self, d: dict[str, object]) -> None:
        """The bridge sets the line speed; nothing to apply here."""

    def reset_input_buffer(self) -> None:
        """Never discards: speed probing is refused for socket:// (open_serial)."""

    def close(self) -> None:
        self._sock.close()


def _connect(host: str, port: int, timeout: float) -> tuple[socket.socket, OSError | None]:
    """socket.create_connection, except for a connection reset as soon as it was set up (a bridge
    that sends what it holds and hangs up, faster than this process got to run): the socket is
    kept with the reset, because the bytes sent before it are still there to read."""
    error = OSError(f"no address for {host}")
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except ConnectionResetError as exc:
            return sock, exc
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock, None
    raise error


def open_port(url: str, settings: LineSettings, timeout: float) -> Port:
    if url.partition("://")[0].lower() == "socket":
        return TcpPort(url, timeout)
    port = serial.serial_for_url(url, do_not_open=True)
    port.apply_settings({**settings.as_pyserial(), "timeout": timeout})
    port.open()
    opened: Port = port
    return opened


def check_url(url: str) -> None:
    """ValueError with a one-line reason unless `url` is a device path or a pyserial URL."""
    shown = mask_url(url)
    unsupported = ValueError(
        f"source {shown!r} is not supported (use a device path such as /dev/ttyUSB0, "
        "socket://HOST:PORT, rfc2217://HOST:PORT, file:PATH, homewizard://HOST, "
        "mqtt://HOST/TOPIC or simulator)"
    )
    scheme, sep, _ = url.partition("://")
    if not sep:
        if not url.startswith("/"):
            raise unsupported
        return
    try:
        serial.serial_for_url(url, do_not_open=True)
    except ValueError:
        raise unsupported from None
    if scheme.lower() in _TCP_SCHEMES:
        parts = urllib.parse.urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise ValueError(f"source {shown!r} is not {scheme}://HOST:PORT")


class SerialSource(LinkState):
    """Bytes from a serial link, reconnecting forever; see the `Source` protocol.

    `settings` is fixed line settings or a `SpeedProbe` (`auto`). `factory`, `backoff`, `clock`
    and `wait` are there for tests.
    """

    def __init__(
        self,
        url: str,
        stop: threading.Event,
        *,
        settings: LineSettings | SpeedProbe,
        read_timeout: float = Settings.read_timeout,
        name: str | None = None,
        factory: PortFactory = open_port,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], object] | None = None,
    ) -> None:
        if read_timeout <= 0:
            raise ValueError("read timeout must be positive")
        self.url = url
        self.target = mask_url(url)  # what log lines and errors name: the device, not the meter
        self.name = name or self.target
        self.hint: str | None = None
        self.bytes_total = 0
        self.read_timeout = read_timeout
        self.probe = settings if isinstance(settings, SpeedProbe) else None
        self._line = settings
        self._factory = factory
        self._clock = clock
        self._link = Reconnector(self.target, stop, backoff=backoff, clock=clock, wait=wait)
        self._watch = NoTelegramWatch()
        self._port: Port | None = None
        self._last_byte: float | None = None

    @property
    def settings(self) -> LineSettings:
        line = self._line
        return line.settings if isinstance(line, SpeedProbe) else line

    def read(self) -> bytes:
        port = self._port or self._open()
        if port is None:
            return b""
        try:
            data = port.read(CHUNK)
        except OSError as exc:  # pyserial's SerialException is one
            self._drop(describe(exc))
            return b""
        now = self._clock()
        if data:
            self.bytes_total += len(data)
            self._last_byte = now
            self._watch.bytes(len(data), now)
        elif self._last_byte is not None and now - self._last_byte >= self.read_timeout:
            # A link that spoke and went silent is dead (a TCP peer gone without a goodbye, a
            # meter that stopped). One silent since it opened is only quiet: reopening it would
            # count reconnects for nothing and keep the no-bytes hint from ever showing.
            self._drop(f"no bytes for {self.read_timeout:g} s")
            return b""
        hint = self._watch.check(now)
        if hint is not None:
            self.hint = hint
        if self.probe is not None:
            switch = self.probe.update(len(data), now)
            if switch is not None:
                self._switch(port, switch)
        return data

    def telegram_seen(self) -> None:
        self._link.working()
        self._watch.telegram(self._clock())
        self.hint = None
        if self.probe is not None and self.probe.telegram():
            log.info(f"{self.target}: serial settings {self.settings} work", source=self.name)

    def close(self) -> None:
        self._close_port()
        self._link.connected = False

    def _open(self) -> Port | None:
        if not self._link.due():
            return None
        try:
            port = self._factory(self.url, self.settings, READ_POLL)
        except OSError as exc:
            self._link.failed(describe(exc))
            return None
        now = self._clock()
        self._port = port
        self._last_byte = None
        self._watch.reset(now)
        if self.probe is not None:
            self.probe.connected(now)
        self._link.opened()
        return port

    def _drop(self, reason: str) -> None:
        self._close_port()
        self._link.lost(reason)

    def _close_port(self) -> None:
        if self._port is not None:
            with contextlib.suppress(OSError):  # a vanished device may fail to close
                self._port.close()
            self._port = None

    def _switch(self, port: Port, settings: LineSettings) -> None:
        log.info(
            f"{self.target}: no telegram yet; trying serial settings {settings}", source=self.name
        )
        try:
            port.apply_settings(settings.as_pyserial())
            port.reset_input_buffer()  # bytes read at the old speed are noise
        except OSError as exc:
            self._drop(describe(exc))


class SerialOptions(TypedDict, total=False):
    """What `open_serial` takes beyond its URL, stop and name; `open_source` passes it on."""

    serial_settings: str
    read_timeout: float


def open_serial(
    url: str,
    stop: threading.Event,
    *,
    name: str | None = None,
    serial_settings: str = SourceSettings.serial_settings,  # the settings' defaults
    read_timeout: float = Settings.read_timeout,
) -> SerialSource:
    check_url(url)
    auto = serial_settings.strip().lower() == AUTO
    if auto and url.partition("://")[0].lower() == "socket":
        raise ValueError(
            f"source {mask_url(url)!r}: serial settings auto cannot probe through socket:// (the "
            "bridge sets the line speed); set the speed on the bridge"
        )
    settings = SpeedProbe() if auto else parse_settings(serial_settings)
    return SerialSource(url, stop, settings=settings, read_timeout=read_timeout, name=name)
