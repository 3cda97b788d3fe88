"""A paho-mqtt client for a broker URL (`mqtt://[USER@]HOST[:PORT]`, `mqtts://…`): the MQTT
sink's and the mqtt:// source's, with the credentials and TLS of the settings."""

from __future__ import annotations

import socket
import ssl
import threading
import urllib.parse

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import Settings
from agent.redact import mask_url

KEEPALIVE = 30  # seconds: a broker gone without a goodbye is noticed within about 45 s
RECONNECT_DELAY = (1, 60)  # seconds, doubling from the first to the second


def broker_address(url: str) -> tuple[str, int, bool]:
    """Host, port and TLS of an mqtt:// or mqtts:// URL (checked by `config.mqtt_url`)."""
    parts = urllib.parse.urlsplit(url)
    tls = parts.scheme == "mqtts"
    return parts.hostname or "", parts.port or (8883 if tls else 1883), tls


def make_client(
    url: str,
    *,
    client_id: str,
    username: str | None,
    password: str | None,
    ca_file: str | None,
) -> paho.Client:
    """A paho client for the broker at `url`, with its credentials and TLS; not connected. The
    user name of the URL, else `username`."""
    tls = broker_address(url)[2]
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    user = urllib.parse.urlsplit(url).username or username
    if user:
        client.username_pw_set(urllib.parse.unquote(user), password)
    if tls:
        client.tls_set_context(ssl.create_default_context(cafile=ca_file))
    client.reconnect_delay_set(*RECONNECT_DELAY)
    return client


def connect(client: paho.Client, url: str) -> None:
    """Connect in paho's own thread, which retries with backoff until the client stops."""
    host, port, _ = broker_address(url)
    client.connect_async(host, port, keepalive=KEEPALIVE)
    client.loop_start()


def default_client_id() -> str:
    """`p1-agent-HOSTNAME`: the sink's, kept across restarts so the broker knows it again."""
    return f"p1-agent-{socket.gethostname()}"


def check_broker(settings: Settings, timeout: float = 10.0) -> tuple[bool, str]:
    """For check-config: whether the broker takes the agent's credentials, in one line."""
    url = settings.mqtt_url or ""
    client = make_client(
        url,
        client_id="",  # not the running agent's: the broker would throw that one off
        username=settings.mqtt_username,
        password=settings.mqtt_password,
        ca_file=settings.mqtt_ca_file,
    )
    answered = threading.Event()
    answer: list[str] = []

    def on_connect(c: paho.Client, userdata: object, flags: object, rc: object, p: object) -> None:
        answer.append(str(rc))
        answered.set()

    client.on_connect = on_connect
    host, port, _ = broker_address(url)
    try:
        client.connect(host, port, keepalive=KEEPALIVE)
    except (OSError, ValueError) as exc:
        return False, f"MQTT broker {mask_url(url)}: cannot connect: {exc}"
    client.loop_start()
    try:
        if not answered.wait(timeout):
            return False, f"MQTT broker {mask_url(url)}: no answer in {timeout:g} s"
    finally:
        client.disconnect()
        client.loop_stop()
    if answer[0] != "Success":
        return False, f"MQTT broker {mask_url(url)} refused the connection: {answer[0]}"
    return True, f"MQTT broker {mask_url(url)} accepts the connection"
