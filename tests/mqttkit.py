"""An MQTT client for tests: what a broker holds and sends on some topics, and publishing to it."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.monotonic() on arrival


@dataclass
class Watcher:
    """Subscribed to `topics` (wildcards allowed); every message in arrival order, and the latest
    per topic (an empty retained message removes it, as it does on the broker)."""

    client: paho.Client
    messages: list[Received] = field(default_factory=list)
    latest: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    on_message: Callable[[Received], None] | None = None

    def json(self, topic: str) -> dict[str, object]:
        value = json.loads(self.latest[topic])
        assert isinstance(value, dict)
        return value

    def matching(self, prefix: str) -> dict[str, bytes]:
        with self.lock:
            return {t: p for t, p in self.latest.items() if t.startswith(prefix)}

    def count(self, topic: str) -> int:
        with self.lock:
            return sum(1 for m in self.messages if m.topic == topic)

    def wait(self, predicate: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"not reached in {timeout} s: {what} (have {sorted(self.latest)})")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _client(url: str, username: str | None, password: str | None) -> paho.Client:
    client = paho.Client(CallbackAPIVersion.VERSION2)
    if username:
        client.username_pw_set(username, password)
    return client


def _address(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 1883


def watch(
    url: str, *topics: str, username: str | None = None, password: str | None = None
) -> Watcher:
    """Connected and subscribed (QoS 1) before it returns; reconnects if the broker restarts."""
    client = _client(url, username, password)
    watcher = Watcher(client)
    subscribed = threading.Event()

    def on_connect(c: paho.Client, userdata: object, flags: object, rc: object, p: object) -> None:
        c.subscribe([(topic, 1) for topic in topics])

    def on_subscribe(c: paho.Client, userdata: object, mid: int, rc: object, p: object) -> None:
        subscribed.set()

    def on_message(c: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        got = Received(message.topic, bytes(message.payload), message.retain, time.monotonic())
        with watcher.lock:
            watcher.messages.append(got)
            if got.payload:
                watcher.latest[got.topic] = got.payload
            else:
                watcher.latest.pop(got.topic, None)
        if watcher.on_message is not None:
            watcher.on_message(got)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.reconnect_delay_set(1, 2)
    client.connect(*_address(url))
    client.loop_start()
    if not subscribed.wait(10):
        raise AssertionError(f"could not subscribe at {url}")
    return watcher


def publish(url: str, topic: str, payloads: list[bytes], retain: bool = False) -> None:
    """Each payload with QoS 1, acknowledged by the broker before it returns."""
    client = _client(url, None, None)
    client.connect(*_address(url))
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
