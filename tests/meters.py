"""Meters on the wire for tests of the live agent: a P1-to-TCP bridge the agent connects to."""

from __future__ import annotations

import socket
import struct


class TcpMeter:
    """A P1-to-TCP bridge (ser2net, an ESP): the agent connects, the meter writes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.conn: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def accept(self, timeout: float = 30.0) -> socket.socket:
        self.listener.settimeout(timeout)
        self.conn, _ = self.listener.accept()
        return self.conn

    def reset(self) -> None:
        """Drop the connection with a TCP RST, as a bridge that reboots does."""
        assert self.conn is not None
        # Linger on, timeout 0: close() sends RST instead of FIN.
        self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.conn.close()
        self.conn = None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()
