"""Raw telegrams a bridge publishes to MQTT (ESPHome, Tasmota, dsmr-reader's remote datalogger):
`mqtt://[USER@]HOST[:PORT]/TOPIC` or `mqtts://…`.

paho's thread keeps the subscription (reconnecting with backoff, subscribing again on every
connection) and hands each message's payload to a bounded queue; `read()` takes what arrived. The
payloads go to the pipeline as bytes, as from a serial line, so repair, metrics and the spool
work unchanged. The password is the broker's (P1_MQTT_PASSWORD), the user the URL's or
`--mqtt-username`.
"""

from __future__ import annotations

import queue
import threading
import urllib.parse
from typing import Any

import paho.mqtt.client as paho
import structlog

from agent.config import ConfigError, Settings, mqtt_url
from agent.mqttclient import connect, make_client
from agent.redact import mask_url

log = structlog.get_logger("p1-agent.source")

POLL = 0.5  # longest wait inside one `read()`
# Messages held between two reads: a burst from a bridge that buffered while the agent was away.
QUEUE_LIMIT = 1000
MAX_PAYLOAD = 1 << 20  # more is no telegram


def split_url(url: str) -> tuple[str, str]:
    """The broker's URL and the topic, taken as written after the host (a `#` wildcard is no
    URL fragment here); ValueError with one line for a bad one."""
    scheme, _, rest = url.partition("://")
    authority, _, topic = rest.partition("/")
    broker = f"{scheme}://{authority}"
    try:
        mqtt_url(broker, "source")
    except ConfigError as exc:
        raise ValueError(f"{exc} (a source is mqtt://[USER@]HOST[:PORT]/TOPIC)") from None
    if not topic:
        raise ValueError(f"source {mask_url(url)!r} names no topic: mqtt://HOST[:PORT]/TOPIC")
    return broker, urllib.parse.unquote(topic)


class MqttSource:
    """See the `Source` protocol."""

    def __init__(
        self, url: str, stop: threading.Event, settings: Settings, name: str | None = None
    ) -> None:
        self.broker, self.topic = split_url(url)
        self.name = name or mask_url(url)
        self.hint: str | None = None
        self.connected = False
        self.reconnects = 0
        self.bytes_total = 0
        self.last_error: str | None = None
        self.dropped = 0  # messages beyond QUEUE_LIMIT
        self._stop = stop
        self._queue: queue.Queue[bytes] = queue.Queue(QUEUE_LIMIT)
        self._ever = False
        self.client = make_client(
            self.broker,
            client_id="",  # the broker's choice: several sources and the sink never clash
            username=settings.mqtt_username,
            password=settings.mqtt_password,
            ca_file=settings.mqtt_ca_file,
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        connect(self.client, self.broker)

    def read(self) -> bytes:
        try:
            data = [self._queue.get(timeout=POLL)]
        except queue.Empty:
            return b""
        while len(data) < QUEUE_LIMIT:
            try:
                data.append(self._queue.get_nowait())
            except queue.Empty:
                break
        chunk = b"".join(data)
        self.bytes_total += len(chunk)
        return chunk

    def telegram_seen(self) -> None:
        pass

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.connected = False

    # --- In paho's thread.

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self.last_error = f"the MQTT broker {mask_url(self.broker)} refused: {reason}"
            log.warning(
                "the MQTT broker refused the connection", source=self.name, reason=str(reason)
            )
            return
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        """Connected once the broker took the subscription: from here nothing published is
        missed."""
        if any(reason.is_failure for reason in reasons):  # an ACL that forbids the topic
            self.last_error = f"the MQTT broker refused the subscription to {self.topic}"
            log.error(self.last_error, source=self.name)
            return
        self.connected = True
        if self._ever:
            self.reconnects += 1
        self._ever = True
        log.info(f"subscribed to {self.topic} at {mask_url(self.broker)}", source=self.name)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self.last_error = f"cannot reach the MQTT broker {mask_url(self.broker)}"
        log.warning("cannot reach the MQTT broker; retrying with backoff", source=self.name)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self.connected and not self._stop.is_set():
            self.last_error = f"lost the MQTT broker {mask_url(self.broker)}: {reason}"
            log.warning("lost the MQTT broker; reconnecting", source=self.name, reason=str(reason))
        self.connected = False

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        payload = bytes(message.payload)
        if not payload or len(payload) > MAX_PAYLOAD:
            return
        # A line end between messages: a bridge that publishes a telegram without its final CRLF
        # must not glue it to the next one's `/`.
        try:
            self._queue.put_nowait(payload if payload.endswith(b"\n") else payload + b"\r\n")
        except queue.Full:  # the reader is far behind (the spool stalls): say it, bounded
            self.dropped += 1
            log.warning(
                "MQTT source queue full; messages dropped", source=self.name, dropped=self.dropped
            )


def open_mqtt(
    url: str, stop: threading.Event, settings: Settings, name: str | None = None
) -> MqttSource:
    return MqttSource(url, stop, settings, name)
