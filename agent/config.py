"""One typed settings object for `p1-agent run`, from flags, P1_* environment variables and TOML.

Precedence: flags, then the environment, then the TOML file (`--config` / `P1_CONFIG`), then the
defaults. Every option is declared once, as a field of the dataclass that holds its value
(`Settings`, `SourceSettings`, `InfluxTarget`): `setting()` gives it its dotted TOML key
(`influx.url`), from which its flag and variable follow (`--influx-url`, `P1_INFLUX_URL`), its
default as the user writes it (`30s`), the parser that makes the typed value and the help.
`OPTIONS`, the command line, `load()` and `describe()` all walk those fields, and other modules
take a default from the class (`Settings.read_timeout`), so nothing is written twice. Secrets (the
InfluxDB token and password) come only from the environment or from files: a flag would show in
`ps` and a config file tends to end up in a repository.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import Any

from agent.core.framing import DEFAULT_MAX_FRAME
from agent.core.telegram import AUTO_ZONE
from agent.redact import MASK, mask_url

DAY = 86400.0


class ConfigError(ValueError):
    """A bad setting; its message is shown to the user as one line."""


# --- Parsers: the text of a flag, variable or TOML value → the typed value; `what` names the
# setting in the one-line error ("read timeout 'soon' is not a duration …").

# Labels of letters, digits, `-` and `_` (Docker Compose names hold `_`); no spaces, no `%`.
_HOSTNAME = re.compile(r"(?!-)[\w-]{1,63}(?<!-)(\.(?!-)[\w-]{1,63}(?<!-))*\.?", re.ASCII)


def valid_host(host: str) -> bool:
    """A host name or an IP address (IPv6 without its brackets) that a socket can be given."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return len(host) <= 253 and _HOSTNAME.fullmatch(host) is not None
    return True


def parse_address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what} {text!r} is not HOST:PORT (e.g. 127.0.0.1:9224)")
    host = host.strip("[]") or "127.0.0.1"
    if not valid_host(host):
        raise ConfigError(f"{what} {text!r}: {host!r} is not a host name or IP address")
    return host, int(port)


_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


def parse_duration(text: str, what: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if match is None:
        raise ConfigError(f"{what} {text!r} is not a duration (e.g. 30s, 15m, 12h, 30d)")
    return float(match[1]) * _DURATION_UNITS[match[2]]


def parse_size(text: str, what: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*", text.lower())
    if match is None:
        raise ConfigError(f"{what} {text!r} is not a size (e.g. 500MB, 1GiB, 0 for no limit)")
    size = float(match[1]) * _SIZE_UNITS[match[2] or ""]
    if not math.isfinite(size):
        raise ConfigError(f"{what} {text!r} is too large")
    return int(size)


def _duration(low: float, high: float) -> Callable[[str, str], float]:
    """A duration within bounds: 0 or an absurd value would only fail later, inside a wait."""

    def parse(text: str, what: str) -> float:
        seconds = parse_duration(text, what)
        if not low <= seconds <= high:
            raise ConfigError(
                f"{what} {text!r} must be from {_duration_text(low)} to {_duration_text(high)}"
            )
        return seconds

    return parse


def parse_bool(text: str, what: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{what} {text!r} is not true or false")


def _whole(low: int, high: int) -> Callable[[str, str], int]:
    def parse(text: str, what: str) -> int:
        if not text.strip().isdigit() or not low <= int(text) <= high:
            raise ConfigError(f"{what} {text!r} must be a whole number from {low} to {high}")
        return int(text)

    return parse


def _amperes(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 1000:
        raise ConfigError(f"{what} {text!r} must be a current in amperes (e.g. 25, 35, 40)")
    return value


def _choice(*choices: str) -> Callable[[str, str], str]:
    def parse(text: str, what: str) -> str:
        if text.lower() not in choices:
            raise ConfigError(f"{what} {text!r} is not one of {', '.join(choices)}")
        return text.lower()

    return parse


def _text(text: str, what: str) -> str:
    return text


def _path(text: str, what: str) -> Path:
    return Path(text)


def _influx_url(url: str, what: str) -> str:
    """The URL without a final `/`, if a request to it can work at all; its password never in
    the message."""
    shown = mask_url(url)
    if not re.match(r"https?://[^/\s]+", url):
        raise ConfigError(f"{what} {shown!r} is not an http:// or https:// URL")
    try:
        parts: urllib.parse.SplitResult | None = urllib.parse.urlsplit(url)
    except ValueError:  # a bad IPv6 literal
        parts = None
    try:
        port = parts.port if parts is not None else None
    except ValueError:  # not a number; a password's unencoded `/` ends the host early
        port = -1
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        problem = "has a space or control character"
    elif parts is None:
        problem = "is not a valid URL"
    elif port is not None and not 0 < port < 65536:
        problem = "has no valid port" + (
            " (a `/` or `@` in its password must be written %2F, %40)" if "@" in url else ""
        )
    elif not valid_host(parts.hostname or ""):
        problem = "names no valid host"
    elif parts.query or parts.fragment or url.endswith(("?", "#")):
        problem = "has a query or fragment; the agent adds the write API's own"
    else:
        return url.rstrip("/")
    raise ConfigError(f"{what} {shown!r} {problem}")


def mqtt_url(url: str, what: str) -> str:
    """`mqtt://[USER@]HOST[:PORT]` or `mqtts://…`, with a `/TOPIC` path for sources only (the
    caller checks it); a password only from P1_MQTT_PASSWORD, never in the URL."""
    shown = mask_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{what} {shown!r} has no valid host and port") from None
    if parts.scheme not in ("mqtt", "mqtts") or not valid_host(parts.hostname or ""):
        raise ConfigError(f"{what} {shown!r} is not mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    if parts.password is not None:
        raise ConfigError(f"{what} {shown!r}: the password goes in P1_MQTT_PASSWORD, not the URL")
    if port == 0 or parts.query or parts.fragment:
        raise ConfigError(f"{what} {shown!r} has no valid port, or a query or fragment")
    return url


def _topic_prefix(text: str, what: str) -> str:
    """Topic levels without wildcards, as MQTT requires of a topic one publishes to."""
    if not text.strip("/") or any(c in text for c in "+#\0") or text != text.strip("/ "):
        raise ConfigError(f"{what} {text!r} is not a topic prefix (e.g. p1-agent, home/p1)")
    return text


# --- Formatters: a typed value → what check-config prints, as a TOML file accepts it back.


def _size_text(n: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n and n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


def _duration_text(seconds: float) -> str:
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % factor == 0:
            return f"{seconds / factor:g}{unit}"
    return f"{seconds:g}s"


def _address_text(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def _same(value: object) -> object:
    return value


# --- Declaring an option.


@dataclass(frozen=True)
class Option:
    key: str  # dotted TOML key
    parse: Callable[[str, str], Any]  # text → the typed value
    default: str | None  # as the user would write it (`30s`); None: none
    help: str
    metavar: str = "VALUE"
    number: bool = False  # the TOML file may give it as a number (not only as a string)
    show: Callable[[Any], object] = _same  # the typed value → what check-config prints
    api: str | None = None  # used with this InfluxDB API only (check-config shows it only then)

    @property
    def dest(self) -> str:
        return self.key.replace(".", "_")

    @property
    def env(self) -> str:
        return "P1_" + self.dest.upper()

    @property
    def flag(self) -> str:
        return "--" + self.dest.replace("_", "-")

    @property
    def what(self) -> str:
        """The setting in messages: `influx timeout`."""
        return self.key.replace("_", " ").replace(".", " ")

    @property
    def table(self) -> str:
        """The TOML table it belongs in; "" for the top level."""
        return self.key.rpartition(".")[0]


@dataclass(frozen=True)
class Secret:
    key: str  # never a TOML key nor a flag, only a variable and a file
    what: str  # in messages: "the token file …"

    @property
    def env(self) -> str:
        return "P1_" + self.key.replace(".", "_").upper()


def setting(
    key: str,
    default: str | None,
    help: str,
    *,
    parse: Callable[[str, str], Any] = _text,
    metavar: str = "VALUE",
    number: bool = False,
    show: Callable[[Any], object] = _same,
    api: str | None = None,
    required: bool = False,
) -> Any:
    """A dataclass field declaring an option; its default is `default` parsed (None when there is
    no default). `required`: no default at all, the class cannot be made without it."""
    option = Option(key, parse, default, help, metavar, number, show, api)
    if required:
        return field(metadata={"option": option})
    value = None if default is None else parse(default, option.what)
    return field(default=value, metadata={"option": option})


def duration(key: str, default: str, help: str, low: float, high: float) -> Any:
    """Seconds from `low` to `high`, written `90`, `30s`, `15m`, `12h`, `30d`."""
    return setting(
        key,
        default,
        help,
        parse=_duration(low, high),
        metavar="DURATION",
        number=True,
        show=_duration_text,
    )


def size(key: str, default: str, help: str) -> Any:
    """Bytes, written `500MB`, `1GiB`; shown in the largest binary unit that divides them."""
    return setting(
        key, default, help, parse=parse_size, metavar="SIZE", number=True, show=_size_text
    )


def whole(key: str, default: str, help: str, low: int, high: int, *, metavar: str) -> Any:
    """A whole number from `low` to `high`."""
    return setting(key, default, help, parse=_whole(low, high), metavar=metavar, number=True)


def switch(key: str, default: str, help: str) -> Any:
    """True or false: `--name` / `--no-name`, `true`/`false` (or yes/no, on/off, 1/0)."""
    return setting(key, default, help, parse=parse_bool)


def secret(key: str, what: str, help: str, *, api: str | None = None) -> Any:
    """A secret, read from its variable (`P1_INFLUX_TOKEN`) or the file `P1_…_FILE` names, else
    from the file of the option `key_file`, which is the option this declares."""
    hidden = Secret(key, what)
    option = Option(
        key + "_file", _text, None, f"{help} (or {hidden.env})", metavar="FILE", api=api
    )
    return field(default=None, metadata={"option": option, "secret": hidden})


# --- The settings, each option declared once, in the order check-config prints them.

DEFAULT_SOURCE = "simulator"
# Not in OPTIONS: repeated as a flag, separated by spaces in P1_SOURCE, tables in the file.
SOURCE = Option(
    "source", _text, DEFAULT_SOURCE, "a meter to read (see below); repeat for several", "URL"
)


@dataclass(frozen=True)
class SourceSettings:
    """A meter to read: `--source` / `P1_SOURCE` (`[NAME=]URL`), or a `[[source]]` table."""

    url: str
    name: str | None = None  # the `meter` tag; None: the equipment identifier from the telegram
    # At the top level: for every source without its own.
    serial_settings: str = setting(
        "serial_settings",
        "115200-8N1",
        "speed and format: 115200-8N1, 9600-7E1 (DSMR 2.2/3) or auto",
        metavar="SETTINGS",
    )
    # An encrypted meter's own keys, as files (TOML only): else the top-level ones.
    decryption_key_file: str | None = None
    authentication_key_file: str | None = None


@dataclass(frozen=True)
class InfluxTarget:
    """The `[influx]` table: where and how the writers write (see `agent.sinks.influx`)."""

    url: str = setting(
        "influx.url",
        None,
        "InfluxDB URL; without it readings stay in the local store",
        parse=_influx_url,
        metavar="URL",
        show=mask_url,
        required=True,
    )
    api: str = setting(
        "influx.api",
        "v2",
        "v2 (InfluxDB 2.x, 3.x, 1.8+) or v1 (1.x)",
        parse=_choice("v2", "v1"),
        metavar="v2|v1",
    )
    org: str = setting("influx.org", "", "v2 organisation", metavar="ORG", api="v2")
    bucket: str = setting("influx.bucket", "p1", "v2 bucket", metavar="BUCKET", api="v2")
    token: str | None = secret("influx.token", "token", "file holding the v2 token", api="v2")
    database: str = setting("influx.database", "p1", "v1 database", metavar="NAME", api="v1")
    retention_policy: str | None = setting(
        "influx.retention_policy",
        None,
        "v1 retention policy (default: the database's)",
        metavar="NAME",
        api="v1",
    )
    username: str | None = setting("influx.username", None, "v1 user", metavar="USER", api="v1")
    password: str | None = secret(
        "influx.password", "password", "file holding the v1 password", api="v1"
    )
    ca_file: str | None = setting(
        "influx.ca_file", None, "CA certificate file for TLS", metavar="FILE"
    )
    verify_tls: bool = switch("influx.verify_tls", "true", "verify the server's TLS certificate")
    gzip: bool = switch("influx.gzip", "true", "compress writes")
    # A longer write holds up shutdown and every point behind it.
    timeout: float = duration("influx.timeout", "10s", "time allowed for one write", 0.1, 300.0)

    def __post_init__(self) -> None:
        if self.api not in ("v1", "v2"):
            raise ValueError(f"unknown InfluxDB API {self.api!r} (v1 or v2)")

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if "secret" in f.metadata and value:
                value = MASK
            parts.append(f"{f.name}={value!r}")
        return f"InfluxTarget({', '.join(parts)})"

    @property
    def shown_url(self) -> str:
        """The URL for messages: without any `user:password@`."""
        parts = urllib.parse.urlsplit(self.url)
        host = parts.netloc.rpartition("@")[2]
        return urllib.parse.urlunsplit(parts._replace(netloc=host)).rstrip("/")

    def scrub(self, text: str) -> str:
        """Server text with the secrets masked, in case a proxy or server echoes them."""
        secrets = [self.token, self.password]
        if self.username:  # an echoed Authorization header carries them in base64
            basic = f"{self.username}:{self.password or ''}".encode()
            secrets.append(base64.b64encode(basic).decode())
        for value in secrets:
            if value:
                text = text.replace(value, MASK)
        return text


@dataclass(frozen=True)
class Settings:
    """What `run` and `check-config` take: the top-level options, then the tables."""

    data_dir: Path = setting(
        "data_dir", "data", "spool, state and raw captures", parse=_path, metavar="DIR"
    )
    metrics_address: tuple[str, int] = setting(
        "metrics_address",
        "127.0.0.1:9224",
        "Prometheus /metrics and /healthz",
        parse=parse_address,
        metavar="HOST:PORT",
        show=_address_text,
    )
    meter_timezone: str = setting(
        "meter_timezone",
        AUTO_ZONE,
        f"meter clock zone ({AUTO_ZONE}: CET rules, Irish time for the Irish Iskra)",
        metavar="ZONE",
    )
    # A telegram is at most a few KiB; the framer holds this much.
    max_frame: int = whole(
        "max_frame",
        str(DEFAULT_MAX_FRAME),
        "drop frames longer than this many bytes",
        64,
        1 << 20,
        metavar="BYTES",
    )
    log_level: str = setting(
        "log_level",
        "info",
        "log level",
        parse=_choice("debug", "info", "warning", "error"),
        metavar="LEVEL",
    )
    sources: list[SourceSettings] = field(
        default_factory=lambda: [SourceSettings(DEFAULT_SOURCE)],
        metadata={"table": SourceSettings},
    )
    read_timeout: float = duration(
        "read_timeout", "30s", "reconnect when a connected source sends nothing this long", 1, DAY
    )
    fuse_limit: float = setting(
        "fuse_limit",
        "25",
        "main fuse per phase in amperes, for alerts",
        parse=_amperes,
        metavar="AMPERES",
        number=True,
    )
    max_meters: int = whole(  # per source, in the metrics
        "max_meters",
        "16",
        "meters one source may have in the metrics; readings of more are still stored",
        1,
        1000,
        metavar="N",
    )
    meter_expiry: float = duration(
        "meter_expiry",
        "1h",
        "a meter that sent nothing this long leaves the metrics (not a source's last meter)",
        1,
        365 * DAY,
    )
    raw_capture: bool = switch(
        "raw_capture", "false", "keep raw bytes in DATA_DIR/raw, one file a day"
    )
    raw_capture_max_age: float = duration(
        "raw_capture_max_age",
        "90d",
        "delete raw captures and noise logs of days older than this (0: keep them all)",
        0,
        100 * 365 * DAY,
    )
    summary_interval: float = duration(
        "log_summary_interval", "5m", "one log line per interval for noise", 1, DAY
    )
    # Encrypted meters (DLMS general-global-ciphering, AES-128-GCM; agent.meterkeys): 32 hex
    # digits each, from the grid operator. No decryption key: the meters send plain telegrams.
    decryption_key: str | None = secret(
        "decryption_key", "decryption key", "file holding an encrypted meter's decryption key"
    )
    authentication_key: str | None = secret(
        "authentication_key",
        "authentication key",
        "file holding its authentication key (default: the Luxembourg Smarty's public one)",
    )
    influx: InfluxTarget | None = field(default=None, metadata={"table": InfluxTarget})
    # A batch is held in memory, twice (lines and request body).
    batch_size: int = whole(
        "influx.batch_size", "5000", "points per write", 1, 100_000, metavar="POINTS"
    )
    influx_degraded_after: float = duration(
        "influx.degraded_after",
        "5m",
        "/healthz reports degraded once writes have failed this long",
        1,
        30 * DAY,
    )
    spool_max_bytes: int = size("spool.max_size", "1GiB", "spool bound; the oldest points go first")
    spool_max_age: float = duration(
        "spool.max_age", "30d", "drop spooled points older than this", 0, 100 * 365 * DAY
    )
    spool_downsample_after: float = duration(
        "spool.downsample_after",
        "0",
        "without an InfluxDB, keep of older readings the last of each minute (0: keep all)",
        0,
        100 * 365 * DAY,
    )
    # agent.sinks.journal, the default: an SD card wears out with a SQLite commit per telegram
    # (four 4-KiB pages written); 0 keeps that commit.
    sync_interval: float = duration(
        "sync_interval",
        "60s",
        "journal telegrams (about 170 bytes each, kept if the agent is killed) and fsync them "
        "this often: a power cut loses at most this; 0: a SQLite commit per telegram",
        0,
        3600,
    )
    # MQTT (agent.sinks.mqtt): a live feed for Home Assistant; no URL, no MQTT.
    mqtt_url: str | None = setting(
        "mqtt.url",
        None,
        "MQTT broker, mqtt://[USER@]HOST[:PORT] or mqtts://…; without it no MQTT",
        parse=mqtt_url,
        metavar="URL",
        show=mask_url,
    )
    mqtt_username: str | None = setting(
        "mqtt.username", None, "broker user (also for mqtt:// sources)", metavar="USER"
    )
    mqtt_password: str | None = secret(
        "mqtt.password", "MQTT password", "file holding the broker password"
    )
    mqtt_prefix: str = setting(
        "mqtt.prefix",
        "p1-agent",
        "topic prefix: PREFIX/<meter>/state, PREFIX/status",
        parse=_topic_prefix,
        metavar="PREFIX",
    )
    mqtt_client_id: str | None = setting(
        "mqtt.client_id", None, "client id (default: p1-agent-HOSTNAME)", metavar="ID"
    )
    mqtt_retain: bool = switch("mqtt.retain", "true", "retain the state messages")
    mqtt_field_topics: bool = switch(
        "mqtt.field_topics", "false", "also one topic per reading, PREFIX/<meter>/<field>"
    )
    mqtt_discovery: bool = switch("mqtt.discovery", "true", "Home Assistant discovery messages")
    mqtt_discovery_prefix: str = setting(
        "mqtt.discovery_prefix",
        "homeassistant",
        "Home Assistant's discovery prefix",
        parse=_topic_prefix,
        metavar="PREFIX",
    )
    mqtt_ca_file: str | None = setting(
        "mqtt.ca_file",
        None,
        "CA certificate file for mqtts:// (default: the system's)",
        metavar="FILE",
    )
    # homewizard:// sources: with a token the v2 API over HTTPS, else v1 over HTTP.
    homewizard_token: str | None = secret(
        "homewizard.token", "HomeWizard token", "file holding the HomeWizard API v2 token"
    )
    homewizard_ca_file: str | None = setting(
        "homewizard.ca_file",
        None,
        "CA certificate that signed the device's (v2); without it the device is not verified",
        metavar="FILE",
    )
    # Where each effective value came from ("flag", "P1_…", "config file", "default").
    origins: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def metrics_host(self) -> str:
        return self.metrics_address[0]

    @property
    def metrics_port(self) -> int:
        return self.metrics_address[1]


def _declared(cls: type) -> Iterator[dataclasses.Field[Any]]:
    """The fields of `cls` that declare an option, those of its tables included."""
    for f in dataclasses.fields(cls):
        if "option" in f.metadata:
            yield f
        if "table" in f.metadata:
            yield from _declared(f.metadata["table"])


OPTIONS: list[Option] = [f.metadata["option"] for f in _declared(Settings)]
OPTIONS_BY_KEY = {option.key: option for option in OPTIONS}
SECRETS = {
    hidden.key: hidden.env
    for f in _declared(Settings)
    if (hidden := f.metadata.get("secret")) is not None
}
_NAMED_SOURCE = re.compile(r"([A-Za-z0-9_-]+)=(.+)")


# --- Reading them.


def _toml_type(value: object) -> str:
    """What a TOML value is, in the file's words, for an error message."""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, date | time):
        return "a date or time"
    return "a string"


def _toml_text(path: Path, key: str, value: object, option: Option | None = None) -> str:
    """A TOML value as the text a flag would give; anything but the types the setting takes is
    one line now, not a reader that dies on it later."""
    kind = _toml_type(value)
    wanted: tuple[str, ...]
    if option is not None and option.parse is parse_bool:
        wanted = ("true/false", "a string")
    elif option is not None and option.number:
        wanted = ("a number", "a string")
    else:
        wanted = ("a string",)
    if kind not in wanted:
        raise ConfigError(f"{path}: {key} must be {' or '.join(wanted)}, not {kind}")
    return "true" if value is True else "false" if value is False else str(value)


def _flatten(table: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def read_toml(path: Path) -> tuple[dict[str, str], list[SourceSettings]]:
    """The file's options (flat dotted keys, as text) and its `[[source]]` tables (with
    serial_settings "" where a table has none)."""
    import tomllib  # here: most commands read no file, and start-up counts in each

    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    raw_sources = data.pop(SOURCE.key, [])
    if not isinstance(raw_sources, list) or not all(isinstance(s, dict) for s in raw_sources):
        raise ConfigError(f"{path}: `source` must be [[source]] tables with a url")
    keys = [f.name for f in dataclasses.fields(SourceSettings)]
    sources = []
    for table in raw_sources:
        unknown = set(table) - set(keys)
        if unknown or "url" not in table:
            raise ConfigError(
                f"{path}: a [[source]] needs url and may have {' and '.join(keys[1:])}"
                + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else "")
            )
        text = {key: _toml_text(path, f"[[source]] {key}", v) for key, v in table.items()}
        if not text["url"] or text.get("name") == "":
            raise ConfigError(f"{path}: a [[source]] url or name is empty")
        sources.append(SourceSettings(**{"serial_settings": "", **text}))
    flat = _flatten(data)
    for key in flat:
        if key in SECRETS:
            raise ConfigError(
                f"{path}: {key} must not be in the config file; "
                f"set {SECRETS[key]} or {key}_file instead"
            )
        if key not in OPTIONS_BY_KEY:
            raise ConfigError(f"{path}: unknown setting {key!r}")
    values = {key: _toml_text(path, key, v, OPTIONS_BY_KEY[key]) for key, v in flat.items()}
    return values, sources


def _given(
    option: Option, flags: Mapping[str, object], env: Mapping[str, str], file: Mapping[str, str]
) -> tuple[str, str] | None:
    """The option's text and where it came from, by precedence; None: not given, no default.
    An empty flag or variable is no value, nor an empty one in the file for an option without
    a default (`ca_file = ""`)."""
    flag = flags.get(option.dest)
    if flag not in (None, ""):
        return str(flag), "flag " + option.flag
    if env.get(option.env):
        return env[option.env], option.env
    if file.get(option.key) or (option.key in file and option.default is not None):
        return file[option.key], "config file"
    if option.default is not None:
        return option.default, "default"
    return None


def resolve(key: str, flag: object, env: Mapping[str, str] | None = None) -> Any:
    """One option from its flag, else its variable, else its default: for the commands that read
    no config file (`export`, `healthcheck`)."""
    option = OPTIONS_BY_KEY[key]
    given = _given(option, {option.dest: flag}, os.environ if env is None else env, {})
    return None if given is None else option.parse(given[0], option.what)


def _source(text: str, serial_settings: str) -> SourceSettings:
    match = _NAMED_SOURCE.fullmatch(text)
    if match and ":" not in match[1]:
        return SourceSettings(match[2], match[1], serial_settings)
    return SourceSettings(text, None, serial_settings)


def _sources(
    flags: Mapping[str, object],
    env: Mapping[str, str],
    in_file: list[SourceSettings],
    serial: str,
    origins: dict[str, str],
) -> list[SourceSettings]:
    sources_flag = flags.get(SOURCE.dest)
    if isinstance(sources_flag, list) and sources_flag:
        sources = [_source(str(s), serial) for s in sources_flag]
        origins[SOURCE.key] = "flag " + SOURCE.flag
    elif env.get(SOURCE.env):
        # Whitespace separates sources: commas belong to simulator and URL options.
        sources = [_source(s, serial) for s in env[SOURCE.env].split()]
        origins[SOURCE.key] = SOURCE.env
    elif in_file:
        sources = [
            dataclasses.replace(s, serial_settings=s.serial_settings or serial) for s in in_file
        ]
        origins[SOURCE.key] = "config file"
    else:
        sources = [SourceSettings(DEFAULT_SOURCE, None, serial)]
        origins[SOURCE.key] = "default"
    names = [s.name for s in sources if s.name]
    if len(names) != len(set(names)):
        raise ConfigError(f"two sources have the same name: {', '.join(names)}")
    return sources


def _secret(env: Mapping[str, str], var: str, file_path: str | None, what: str) -> str | None:
    """The secret from `var`, else from its file; surrounding whitespace dropped (an editor's
    CRLF, a final newline). The value never appears in a message: a header cannot carry a
    control character, and the error it gives would print the secret."""
    value, origin = env.get(var, "").strip(), var
    path = env.get(var + "_FILE") or file_path
    if not value and path:
        origin = f"the {what} file {path}"
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{origin} is not text (UTF-8)") from None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ConfigError(
            f"{origin}: the {what} has a control character (a line break?) inside it; "
            f"it must be one line"
        )
    try:
        value.encode("latin-1")  # what HTTP headers and Basic auth can carry
    except UnicodeEncodeError:
        raise ConfigError(f"{origin}: the {what} has a character HTTP cannot send") from None
    return value or None


def _values(cls: type, values: Mapping[str, object]) -> dict[str, Any]:
    """The parsed options of `cls`'s own fields, by field name; those not given keep their
    default."""
    given = {}
    for f in dataclasses.fields(cls):
        option = f.metadata.get("option")
        if option is not None and "secret" not in f.metadata and option.key in values:
            given[f.name] = values[option.key]
    return given


def load(flags: Mapping[str, object], env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    config_path = flags.get("config") or env.get("P1_CONFIG")
    file_values: dict[str, str] = {}
    file_sources: list[SourceSettings] = []
    if config_path:
        file_values, file_sources = read_toml(Path(str(config_path)))

    origins: dict[str, str] = {}
    values: dict[str, object] = {}
    for option in OPTIONS:
        given = _given(option, flags, env, file_values)
        if given is not None:
            text, origins[option.key] = given
            values[option.key] = option.parse(text, option.what)
    return Settings(
        **_values(Settings, values),
        **_secrets(Settings, values, env, origins),
        sources=_sources(flags, env, file_sources, str(values["serial_settings"]), origins),
        influx=_influx(values, env, origins) if "influx.url" in values else None,
        origins=origins,
    )


def _secrets(
    cls: type, values: Mapping[str, object], env: Mapping[str, str], origins: dict[str, str]
) -> dict[str, Any]:
    """The secrets of `cls`'s own fields, by field name, from their variables or files."""
    secrets: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if "secret" in f.metadata:
            hidden, file_key = f.metadata["secret"], f.metadata["option"].key
            path = values.get(file_key)
            secrets[f.name] = _secret(env, hidden.env, str(path) if path else None, hidden.what)
            if env.get(hidden.env):
                origins[hidden.key] = hidden.env
            elif env.get(hidden.env + "_FILE") or path:
                origins[hidden.key] = "file"
    return secrets


def _influx(
    values: Mapping[str, object], env: Mapping[str, str], origins: dict[str, str]
) -> InfluxTarget:
    target = InfluxTarget(
        **_values(InfluxTarget, values), **_secrets(InfluxTarget, values, env, origins)
    )
    if target.api == "v1" and target.password and not target.username:
        raise ConfigError("an InfluxDB password is set but no --influx-username")
    if target.ca_file and not Path(target.ca_file).is_file():
        raise ConfigError(f"influx CA file {target.ca_file} does not exist")
    return target


# --- Showing them.


def _lines(owner: Settings | InfluxTarget, table: str, origins: Mapping[str, str]) -> Iterator[str]:
    """The lines of the options `owner` holds in `table`, in the order they are declared."""
    api = getattr(owner, "api", None)  # an InfluxTarget's; options of the other API not shown
    for f in dataclasses.fields(owner):
        option = f.metadata.get("option")
        value = getattr(owner, f.name)
        if option is None or option.table != table or option.api not in (None, api):
            continue
        if "secret" in f.metadata:
            hidden = f.metadata["secret"]
            if value:
                name = hidden.key.rpartition(".")[2]
                yield f'# {name} = "{MASK}"  ({origins.get(hidden.key, "file")})'
        elif value or option.default is not None:  # one without a default only when given
            shown = option.show(value)
            text = f'"{shown}"' if isinstance(shown, str | Path) else str(shown).lower()
            name = option.key.rpartition(".")[2]
            yield f"{name} = {text}  # {origins.get(option.key, 'default')}"


def describe(settings: Settings) -> list[str]:
    """The effective configuration as a TOML file `--config` accepts, with each value's origin;
    secrets appear only as masked comments."""
    origins = settings.origins
    lines = list(_lines(settings, "", origins))
    for source in settings.sources:
        lines.append(f"\n[[source]]  # {origins.get(SOURCE.key, 'default')}")
        lines.append(f'url = "{mask_url(source.url)}"')
        if source.name:
            lines.append(f'name = "{source.name}"')
        lines.append(f'serial_settings = "{source.serial_settings}"')
        for key in ("decryption_key_file", "authentication_key_file"):
            if getattr(source, key):  # a path only: the key itself is never shown
                lines.append(f'{key} = "{getattr(source, key)}"')
    if settings.influx is None:
        lines.append("\n# [influx] not configured: readings stay in the local store")
    else:
        lines += ["\n[influx]", *_lines(settings.influx, "influx", origins)]
        lines += _lines(settings, "influx", origins)
    lines += ["\n[spool]", *_lines(settings, "spool", origins)]
    if settings.mqtt_url is None:
        lines.append("\n# [mqtt] not configured: no MQTT")
    else:
        lines += ["\n[mqtt]", *_lines(settings, "mqtt", origins)]
    homewizard = list(_lines(settings, "homewizard", origins))
    if homewizard:
        lines += ["\n[homewizard]", *homewizard]
    return lines
