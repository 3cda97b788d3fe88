"""The MQTT sink: a live feed of every accepted telegram, for Home Assistant and other consumers.

A thin adapter over paho-mqtt: paho's own thread keeps the connection (reconnecting with backoff)
and sends; `publish()`, called by the readers, only hands messages to paho's queue, so the reader
never waits for the broker. QoS 1; `PREFIX/status` is `online` while the agent is connected and
`offline` otherwise (the last will). What the broker could not take while it was away is counted
and not queued: it is a live feed of retained states, and the durable record is the spool. The
payloads are built by `agent.sinks.hadiscovery`.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import MQTTErrorCode

from agent.config import Settings
from agent.core.fields import FieldValue
from agent.core.pipeline import Result
from agent.mqttclient import connect, default_client_id, make_client
from agent.redact import mask_url
from agent.sinks import hadiscovery
from agent.sinks.hadiscovery import Payload, Topics

if TYPE_CHECKING:
    from agent.sinks.prometheus import MeterState

log = structlog.get_logger("p1-agent.mqtt")

QOS = 1
# Messages paho holds unacknowledged: a few seconds of every meter's messages; beyond that the
# broker is too slow and what comes is counted as dropped.
QUEUE_LIMIT = 1000
DROP_REASONS = ("disconnected", "queue_full")


def _version() -> str:
    try:
        return importlib.metadata.version("p1-agent")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class MqttStats:
    """What /metrics shows of the sink, by meter (those with metrics only: `count_only`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    connected: bool = False
    reconnects: int = 0
    acknowledged: Counter[str] = field(default_factory=Counter)  # messages the broker took
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)  # by (meter, reason)

    def by_meter(self) -> dict[str, tuple[int, dict[str, int]]]:
        """Meter → (messages acknowledged, messages dropped by reason, every reason from 0)."""
        with self.lock:
            meters = {*self.acknowledged, *(meter for meter, _ in self.dropped)}
            return {
                meter: (
                    self.acknowledged[meter],
                    {reason: self.dropped[meter, reason] for reason in DROP_REASONS},
                )
                for meter in sorted(meters)
            }


@dataclass
class _Meter:
    """What the sink announced of one meter, to announce again on reconnect and to remove."""

    device: Payload
    configs: dict[str, bytes] = field(default_factory=dict)  # discovery topic → payload
    fields: set[str] = field(default_factory=set)
    retained: set[str] = field(default_factory=set)  # state, link and field topics
    state: bytes = b""  # the last state message


class MqttSink:
    def __init__(self, settings: Settings, client: paho.Client | None = None) -> None:
        if settings.mqtt_url is None:
            raise ValueError("the MQTT sink needs an mqtt url")
        self.url = settings.mqtt_url
        self.topics = Topics(settings.mqtt_prefix, settings.mqtt_discovery_prefix)
        self.retain = settings.mqtt_retain
        self.field_topics = settings.mqtt_field_topics
        self.discovery = settings.mqtt_discovery
        self.origin: Payload = {"name": "p1-agent", "sw_version": _version()}
        self.stats = MqttStats()
        self.client = client or make_client(
            settings.mqtt_url,
            client_id=settings.mqtt_client_id or default_client_id(),
            username=settings.mqtt_username,
            password=settings.mqtt_password,
            ca_file=settings.mqtt_ca_file,
        )
        self.client.max_queued_messages_set(QUEUE_LIMIT)
        self.client.will_set(self.topics.status, "offline", qos=QOS, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self._lock = threading.Lock()  # the meters
        self._meters: dict[str, _Meter] = {}
        # Message id → meter, for counting the broker's acknowledgements. Its own lock, never
        # held while calling paho: paho calls on_publish holding its own.
        self._flight_lock = threading.Lock()
        self._in_flight: dict[int, str] = {}  # "": counted for no meter (status, removals)
        self._early: set[int] = set()  # acknowledged before publish() returned their id
        self._counts: Callable[[str], bool] = lambda meter: True
        self._ever_connected = False
        self._closing = False

    @property
    def shown(self) -> str:
        return mask_url(self.url)

    def start(self) -> None:
        """Connect in paho's thread, which retries with backoff until close()."""
        connect(self.client, self.url)

    def close(self) -> None:
        """`offline` on the status topic, then disconnect (a clean disconnect sends no will)."""
        self._closing = True
        info = self._send(None, self.topics.status, b"offline", True)
        if info is not None and info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            with contextlib.suppress(RuntimeError):  # the connection went in between
                info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()

    # --- From the readers.

    def count_only(self, tracks: Callable[[str], bool]) -> None:
        """Publish and count only the meters for which `tracks` says yes (those with metrics):
        the sink's memory stays bounded as theirs does."""
        self._counts = tracks

    def publish(self, meter: str, result: Result, counted: MeterState) -> None:
        """Any frame: the link's health as the metrics counted it; an accepted telegram: its
        state too, and discovery the first time a field shows. Never waits for the broker."""
        if not self._counts(meter):
            return
        link = hadiscovery.link_message(
            counted.telegrams, counted.crc_failures, counted.last_telegram
        )
        messages: list[tuple[str, bytes]] = []
        if result.telegram is not None:
            fields = hadiscovery.state_fields(result)
            with self._lock:
                known = self._meters.get(meter)
                if known is None:
                    telegram = result.telegram
                    known = self._meters[meter] = _Meter(
                        hadiscovery.device(meter, telegram.header, telegram.equipment_id)
                    )
                announced = self._announce(meter, known, fields)
                known.state = self._encode(hadiscovery.state_message(result, fields))
                messages.append((self.topics.meter(meter, "state"), known.state))
                if self.field_topics:
                    for name, value in fields.items():
                        messages.append((self.topics.meter(meter, name), str(value).encode()))
                known.retained.update(topic for topic, _ in messages)
                known.retained.add(self.topics.meter(meter, "link"))
            if self.stats.connected:  # else they go when it connects (_announce_again)
                for topic, payload in announced:
                    self._send(meter, topic, payload, True)
        messages.append((self.topics.meter(meter, "link"), self._encode(link)))
        for topic, payload in messages:
            self._send(meter, topic, payload, self.retain)

    def forget(self, meters: Iterable[str]) -> None:
        """Meters that left the metrics (silent for meter_expiry): their discovery configs go
        (an empty retained config removes the entities) and their retained states too."""
        for meter in meters:
            with self._lock:
                known = self._meters.pop(meter, None)
            if known is not None:
                for topic in [*known.configs, *known.retained]:
                    self._send(None, topic, b"", True)  # counted for no meter: it has left
            with self.stats.lock:
                self.stats.acknowledged.pop(meter, None)
                for reason in DROP_REASONS:
                    self.stats.dropped.pop((meter, reason), None)

    def _announce(
        self, meter: str, known: _Meter, fields: dict[str, FieldValue]
    ) -> list[tuple[str, bytes]]:
        """Discovery configs of the fields not yet announced (all of them the first time, with
        the link-health sensors); under the lock."""
        if not self.discovery:
            return []
        new = {name: value for name, value in fields.items() if name not in known.fields}
        if not new:
            return []
        configs = hadiscovery.configs(
            self.topics, meter, new, known.device, self.origin, link=not known.fields
        )
        known.fields.update(new)
        found = [(topic, self._encode(config)) for topic, config in configs]
        known.configs.update(found)
        return found

    def _encode(self, payload: Payload) -> bytes:
        return hadiscovery.encode(payload)

    def _send(
        self, meter: str | None, topic: str, payload: bytes, retain: bool
    ) -> paho.MQTTMessageInfo | None:
        """Hand one message to paho, counted for `meter` (None: for none); None when it was
        dropped."""
        if not self.stats.connected:
            self._drop(meter, "disconnected")
            return None
        info = self.client.publish(topic, payload, qos=QOS, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            self._drop(meter, "queue_full")
            return None
        # Sent, or queued by paho for the connection it is making again.
        with self._flight_lock:
            early = info.mid in self._early
            if early:
                self._early.discard(info.mid)
            else:
                self._in_flight[info.mid] = meter or ""
        if early and meter is not None:
            self._acknowledged(meter)
        return info

    def _drop(self, meter: str | None, reason: str) -> None:
        if meter is None or not self._counts(meter):
            return
        with self.stats.lock:
            self.stats.dropped[meter, reason] += 1

    # --- In paho's thread.

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:  # a wrong password, a client id in use…: retried all the same
            log.warning(
                "the MQTT broker refused the connection", broker=self.shown, reason=str(reason)
            )
            return
        with self.stats.lock:
            self.stats.connected = True
            if self._ever_connected:
                self.stats.reconnects += 1
        log.info(
            f"connected to MQTT broker {self.shown}" + (" again" if self._ever_connected else "")
        )
        self._ever_connected = True
        self._send(None, self.topics.status, b"online", True)
        client.subscribe(self.topics.birth, qos=QOS)
        self._announce_again()

    def _announce_again(self, state: bool = True) -> None:
        """Discovery of every known meter once more, and its last state: a broker without
        persistence lost the retained messages when it restarted, one that was away missed the
        latest, and Home Assistant asks for discovery when it starts."""
        with self._lock:
            known = [(meter, dict(m.configs), m.state) for meter, m in self._meters.items()]
        for meter, configs, last in known:
            for topic, payload in configs.items():
                self._send(meter, topic, payload, True)
            if state and last:
                self._send(meter, self.topics.meter(meter, "state"), last, self.retain)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        log.warning("cannot reach the MQTT broker; retrying with backoff", broker=self.shown)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        with self.stats.lock:
            was = self.stats.connected
            self.stats.connected = False
        if was and not self._closing:
            log.warning(
                "lost the MQTT broker; reconnecting with backoff",
                broker=self.shown,
                reason=str(reason),
            )

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        with self._flight_lock:
            meter = self._in_flight.pop(mid, None)
            if meter is None:
                self._early.add(mid)
        if meter:
            self._acknowledged(meter)

    def _acknowledged(self, meter: str) -> None:
        if not self._counts(meter):  # it left the metrics while the message was in flight
            return
        with self.stats.lock:
            self.stats.acknowledged[meter] += 1

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.topic == self.topics.birth and message.payload == b"online":
            self._announce_again(state=False)
