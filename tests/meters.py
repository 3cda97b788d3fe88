"""Meters on the wire for tests of the live agent: a P1-to-TCP bridge the agent connects to."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import time


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
        """Drop the connection with a TCP RST, as a bridge that reboots does, once what was sent
        has reached the agent's host: a reset throws away what the sender still queues."""
        assert self.conn is not None
        deadline = time.monotonic() + 5
        while self._unsent() and time.monotonic() < deadline:
            time.sleep(0.001)
        # Linger on, timeout 0: close() sends RST instead of FIN.
        self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.conn.close()
        self.conn = None

    def _unsent(self) -> int:
        """Bytes in the connection's send queue, not yet acknowledged (SIOCOUTQ)."""
        assert self.conn is not None
        answer = fcntl.ioctl(self.conn.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
        return int(struct.unpack("i", answer)[0])

    def hang_up(self) -> None:
        """Close the connection (FIN), as a bridge that drops its client does."""
        assert self.conn is not None
        self.conn.close()
        self.conn = None

    def close(self) -> None:
        """The bridge is gone (powered off): its connection closed, new ones refused."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.listener.close()

    def come_back(self) -> None:
        """Listening again on the same port, after close()."""
        self.listener = socket.create_server(("127.0.0.1", self.port))
