"""The agent's HTTP endpoints: /metrics for Prometheus, /healthz and /healthz/live for health
checks, each connection served in its own thread with timeouts and a cap on connections."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client.exposition import MetricsHandler

if TYPE_CHECKING:
    from agent.sinks.prometheus import Metrics

log = structlog.get_logger("p1-agent.metrics")


@dataclass(frozen=True, slots=True)
class Health:
    """What /healthz says. `dead`: what only a restart mends (liveness, /healthz/live);
    `degraded`: trouble outside the process (a source gone, InfluxDB refusing) that a restart
    would not mend. Each is one line for people."""

    dead: tuple[str, ...] = ()
    degraded: tuple[str, ...] = ()


# One connection's socket reads and writes each wait at most this long: an idle or half-open
# client (one `nc` on the LAN) is dropped instead of holding a handler for good.
CONNECTION_TIMEOUT = 10.0
# Connections served at once; more are closed at once, so a flood cannot start threads
# without bound. Prometheus and a health check need one each.
MAX_CONNECTIONS = 128


def url_host(host: str) -> str:
    """`host` as written in a URL: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


class _MetricsServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must not hold up the agent's exit
    block_on_close = False

    def __init__(self, host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        family, _, _, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self.address_family = family
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__((str(address[0]), int(address[1])), handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            # `[::]` means every interface, IPv4 clients included, whatever the system default.
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning(
                "metrics server busy: closing a new connection", connections=MAX_CONNECTIONS
            )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            return  # a client that went away or stalled: nothing to report
        log.error("metrics request failed", error=repr(error), exc_info=True)


class _Handler(MetricsHandler):
    timeout = CONNECTION_TIMEOUT
    health: Callable[[], Health]

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/metrics":
            super().do_GET()
        elif path in ("/healthz", "/healthz/live"):
            health = type(self).health()
            trouble = health.dead if path == "/healthz/live" else health.dead + health.degraded
            if not trouble:
                self._answer(200, "ok\n")
            else:
                state = "unhealthy" if health.dead else "degraded"
                self._answer(503, "".join(f"{line}\n" for line in (state, *trouble)))
        else:
            self._answer(404, "not found: /metrics, /healthz, /healthz/live\n")

    def _answer(self, status: int, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(metrics: Metrics, host: str, port: int, health: Callable[[], Health]) -> HTTPServer:
    """Serve /metrics, /healthz and /healthz/live in a daemon thread, each connection in its own
    thread with timeouts; returns the server (for shutdown)."""
    handler = type("Handler", (_Handler,), {"registry": metrics.registry, "health": health})
    server = _MetricsServer(host, port, handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
