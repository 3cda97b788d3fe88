"""The HomeWizard P1 meter's local API: `homewizard://HOST[:PORT]`, the raw telegram polled once a
second.

Without a token the v1 API (`http://HOST/api/v1/telegram`, the Local API switched on in the
HomeWizard Energy app); with P1_HOMEWIZARD_TOKEN the v2 API (`https://HOST/api/telegram`,
`Authorization: Bearer`, `X-Api-Version: 2`). Both answer the latest telegram as text/plain, 503
while there is none. The device hands out its latest telegram however often it is asked, so one
that is the same as the last is not passed on again. A poller thread does the HTTP (each request
with a deadline), so `read()` stays a short poll; a device that refuses, goes away or stays
silent is retried with backoff.
"""

from __future__ import annotations

import queue
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from agent.config import Settings, valid_host
from agent.redact import mask_url
from agent.sources.reconnect import LinkState, Reconnector, describe

INTERVAL = 1.0  # seconds between polls: HomeWizard advises no more than one each 500 ms
TIMEOUT = 5.0  # for one request; a device that says nothing this long is retried
MAX_TELEGRAM = 64 * 1024
POLL = 0.5  # longest wait inside one `read()`
_HINTS = {
    401: "the device refused the token (P1_HOMEWIZARD_TOKEN)",
    403: "the Local API is off: switch it on in the HomeWizard Energy app",
    404: "no telegram API here: is it a HomeWizard P1 meter, with firmware 4.19 or later?",
}


class HomeWizardError(OSError):
    """An answer that is not a telegram, in one line."""


def _tls(ca_file: str | None) -> ssl.SSLContext:
    """The device's certificate names the device (`appliance/p1dongle/…`), not its address:
    with HomeWizard's CA the chain is checked but not the name; without it, nothing (as
    HomeWizard's own examples do, `curl --insecure`)."""
    if ca_file:
        context = ssl.create_default_context(cafile=ca_file)
        context.check_hostname = False
        return context
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class HomeWizardSource(LinkState):
    """See the `Source` protocol."""

    def __init__(
        self,
        url: str,
        stop: threading.Event,
        settings: Settings,
        name: str | None = None,
        *,
        interval: float = INTERVAL,
        timeout: float = TIMEOUT,
    ) -> None:
        host = url.partition("://")[2].rstrip("/")
        parts = urllib.parse.urlsplit(f"//{host}")
        try:
            parts.port  # noqa: B018 (a bad port raises)
        except ValueError:
            host = ""
        if not host or "/" in host or not valid_host(parts.hostname or ""):
            raise ValueError(f"source {mask_url(url)!r} is not homewizard://HOST[:PORT]")
        token = settings.homewizard_token
        if token:
            self.endpoint = f"https://{host}/api/telegram"
            self.headers = {
                "Authorization": f"Bearer {token}",
                "X-Api-Version": "2",
                "Accept": "text/plain",
            }
            self._context: ssl.SSLContext | None = _tls(settings.homewizard_ca_file)
        else:
            self.endpoint = f"http://{host}/api/v1/telegram"
            self.headers = {"Accept": "text/plain"}
            self._context = None
        self.name = name or f"homewizard://{host}"
        self.hint: str | None = None
        self.bytes_total = 0
        self.interval = interval
        self.timeout = timeout
        self._stop = stop
        self._halt = threading.Event()  # close(): this source only
        self._link = Reconnector(self.name, self._halt)
        self._queue: queue.Queue[bytes] = queue.Queue(16)
        self._last = b""
        self._thread = threading.Thread(target=self._poll, name=f"poll {self.name}", daemon=True)
        self._thread.start()

    def read(self) -> bytes:
        try:
            data = self._queue.get(timeout=POLL)
        except queue.Empty:
            return b""
        self.bytes_total += len(data)
        return data

    def telegram_seen(self) -> None:
        self._link.working()

    def close(self) -> None:
        self._halt.set()
        self._thread.join(timeout=self.timeout + 1)
        self._link.connected = False

    def fetch(self) -> bytes | None:
        """One request: the telegram, None while the device has none (503); HomeWizardError
        or another OSError for anything else."""
        request = urllib.request.Request(self.endpoint, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as r:
                body = bytes(r.read(MAX_TELEGRAM + 1))
        except urllib.error.HTTPError as exc:
            if exc.code == 503:
                return None
            hint = _HINTS.get(exc.code, "")
            raise HomeWizardError(f"HTTP {exc.code}" + (f": {hint}" if hint else "")) from None
        if len(body) > MAX_TELEGRAM or not body.lstrip().startswith(b"/"):
            raise HomeWizardError("the answer is not a telegram")
        return body

    def _poll(self) -> None:
        link = self._link
        while not self._stopped():
            if not link.due():
                continue
            started = time.monotonic()
            try:
                telegram = self.fetch()
            except (OSError, ValueError) as exc:  # http.client's errors are OSErrors or these
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                (link.lost if link.connected else link.failed)(
                    describe(reason) if isinstance(reason, BaseException) else str(reason)
                )
                continue
            if not link.connected:
                link.opened()
            if telegram is not None and telegram != self._last:
                self._last = telegram
                self._put(telegram if telegram.endswith(b"\n") else telegram + b"\r\n")
            self._halt.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _stopped(self) -> bool:
        return self._stop.is_set() or self._halt.is_set()

    def _put(self, telegram: bytes) -> None:
        while not self._stopped():
            try:
                self._queue.put(telegram, timeout=POLL)
                return
            except queue.Full:  # the reader is behind: it catches up, the poller waits
                continue


def open_homewizard(
    url: str, stop: threading.Event, settings: Settings, name: str | None = None
) -> HomeWizardSource:
    return HomeWizardSource(url, stop, settings, name)
