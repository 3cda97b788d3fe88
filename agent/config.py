"""One typed settings object for `p1-agent run`, from flags, P1_* environment variables and TOML.

Precedence: flags, then the environment, then the TOML file (`--config` / `P1_CONFIG`), then the
defaults. Every option has one dotted TOML key (`influx.url`); its flag and variable follow from
it (`--influx-url`, `P1_INFLUX_URL`), so the three spellings cannot drift apart. Secrets (the
InfluxDB token and password) come only from the environment or from files: a flag would show in
`ps` and a config file tends to end up in a repository.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, time
from pathlib import Path
from typing import TYPE_CHECKING

from agent.redact import MASK, mask_url

if TYPE_CHECKING:  # the client library is imported only when an InfluxDB is configured
    from agent.sinks.influx import InfluxTarget

DEFAULT_METRICS_ADDRESS = "127.0.0.1:9224"


class ConfigError(ValueError):
    """A bad setting; its message is shown to the user as one line."""


@dataclass(frozen=True, slots=True)
class SourceSettings:
    url: str
    name: str | None = None  # the `meter` tag; None: the equipment identifier from the telegram
    serial_settings: str = "115200-8N1"


@dataclass(frozen=True, slots=True)
class Settings:
    sources: list[SourceSettings] = field(default_factory=lambda: [SourceSettings("simulator")])
    data_dir: Path = Path("data")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9224
    meter_timezone: str = "auto"
    max_frame: int = 16 * 1024
    log_level: str = "info"
    read_timeout: float = 30.0
    raw_capture: bool = False
    raw_capture_max_age: float = 90 * 86400.0
    influx: InfluxTarget | None = None
    batch_size: int = 5000
    influx_degraded_after: float = 300.0  # /healthz says degraded once writes failed this long
    spool_max_bytes: int = 1 << 30
    spool_max_age: float = 30 * 86400.0
    summary_interval: float = 300.0
    fuse_limit: float = 25.0
    max_meters: int = 16  # per source, in the metrics
    meter_expiry: float = 3600.0
    # Where each effective value came from ("flag", "P1_…", "config file", "default").
    origins: dict[str, str] = field(default_factory=dict, compare=False)


# Labels of letters, digits, `-` and `_` (Docker Compose names hold `_`); no spaces, no `%`.
_HOSTNAME = re.compile(r"(?!-)[\w-]{1,63}(?<!-)(\.(?!-)[\w-]{1,63}(?<!-))*\.?", re.ASCII)


def valid_host(host: str) -> bool:
    """A host name or an IP address (IPv6 without its brackets) that a socket can be given."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return len(host) <= 253 and _HOSTNAME.fullmatch(host) is not None
    return True


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"metrics address {text!r} is not HOST:PORT (e.g. 127.0.0.1:9224)")
    host = host.strip("[]") or "127.0.0.1"
    if not valid_host(host):
        raise ConfigError(f"metrics address {text!r}: {host!r} is not a host name or IP address")
    return host, int(port)


_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
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


@dataclass(frozen=True, slots=True)
class Option:
    key: str  # dotted TOML key
    parse: Callable[[str, str], object]
    default: str | None
    help: str
    metavar: str = "VALUE"
    number: bool = False  # the TOML file may give it as a number (not only as a string)

    @property
    def dest(self) -> str:
        return self.key.replace(".", "_")

    @property
    def env(self) -> str:
        return "P1_" + self.dest.upper()

    @property
    def flag(self) -> str:
        return "--" + self.dest.replace("_", "-")


OPTIONS = [
    Option("data_dir", _text, "data", "spool, state and raw captures", metavar="DIR"),
    Option(
        "metrics_address",
        _text,
        DEFAULT_METRICS_ADDRESS,
        "Prometheus /metrics and /healthz",
        metavar="HOST:PORT",
    ),
    Option(
        "meter_timezone",
        _text,
        "auto",
        "meter clock zone (auto: CET rules, Irish time for the Irish Iskra)",
        metavar="ZONE",
    ),
    Option(
        "max_frame",
        _whole(64, 1 << 20),  # a telegram is at most a few KiB; the framer holds this much
        str(16 * 1024),
        "drop frames longer than this many bytes",
        metavar="BYTES",
        number=True,
    ),
    Option(
        "log_level",
        _choice("debug", "info", "warning", "error"),
        "info",
        "log level",
        metavar="LEVEL",
    ),
    Option(
        "serial_settings",
        _text,
        "115200-8N1",
        "speed and format: 115200-8N1, 9600-7E1 (DSMR 2.2/3) or auto",
        metavar="SETTINGS",
    ),
    Option(
        "read_timeout",
        _duration(1.0, 86400.0),
        "30s",
        "reconnect when a connected source sends nothing this long",
        metavar="DURATION",
        number=True,
    ),
    Option(
        "max_meters",
        _whole(1, 1000),
        "16",
        "meters one source may have in the metrics; readings of more are still stored",
        metavar="N",
        number=True,
    ),
    Option(
        "meter_expiry",
        _duration(1.0, 365 * 86400.0),
        "1h",
        "a meter that sent nothing this long leaves the metrics (not a source's last meter)",
        metavar="DURATION",
        number=True,
    ),
    Option(
        "fuse_limit",
        _amperes,
        "25",
        "main fuse per phase in amperes, for alerts",
        metavar="AMPERES",
        number=True,
    ),
    Option("raw_capture", parse_bool, "false", "keep raw bytes in DATA_DIR/raw, one file a day"),
    Option(
        "raw_capture_max_age",
        _duration(0.0, 100 * 365 * 86400.0),
        "90d",
        "delete raw captures and noise logs of days older than this (0: keep them all)",
        metavar="DURATION",
        number=True,
    ),
    Option(
        "influx.url",
        _text,
        None,
        "InfluxDB URL; without it readings stay in the local store",
        metavar="URL",
    ),
    Option(
        "influx.api",
        _choice("v2", "v1"),
        "v2",
        "v2 (InfluxDB 2.x, 3.x, 1.8+) or v1 (1.x)",
        metavar="v2|v1",
    ),
    Option("influx.org", _text, "", "v2 organisation", metavar="ORG"),
    Option("influx.bucket", _text, "p1", "v2 bucket", metavar="BUCKET"),
    Option(
        "influx.token_file",
        _text,
        None,
        "file holding the v2 token (or P1_INFLUX_TOKEN)",
        metavar="FILE",
    ),
    Option("influx.database", _text, "p1", "v1 database", metavar="NAME"),
    Option(
        "influx.retention_policy",
        _text,
        None,
        "v1 retention policy (default: the database's)",
        metavar="NAME",
    ),
    Option("influx.username", _text, None, "v1 user", metavar="USER"),
    Option(
        "influx.password_file",
        _text,
        None,
        "file holding the v1 password (or P1_INFLUX_PASSWORD)",
        metavar="FILE",
    ),
    Option("influx.ca_file", _text, None, "CA certificate file for TLS", metavar="FILE"),
    Option("influx.verify_tls", parse_bool, "true", "verify the server's TLS certificate"),
    Option("influx.gzip", parse_bool, "true", "compress writes"),
    Option(
        "influx.timeout",
        _duration(0.1, 300.0),  # a longer write holds up shutdown and every point behind it
        "10s",
        "time allowed for one write",
        metavar="DURATION",
        number=True,
    ),
    Option(
        "influx.degraded_after",
        _duration(1.0, 30 * 86400.0),
        "5m",
        "/healthz reports degraded once writes have failed this long",
        metavar="DURATION",
        number=True,
    ),
    Option(
        "influx.batch_size",
        _whole(1, 100_000),  # a batch is held in memory, twice (lines and request body)
        "5000",
        "points per write",
        metavar="POINTS",
        number=True,
    ),
    Option(
        "spool.max_size",
        parse_size,
        "1GiB",
        "spool bound; the oldest points go first",
        metavar="SIZE",
        number=True,
    ),
    Option(
        "spool.max_age",
        _duration(0.0, 100 * 365 * 86400.0),
        "30d",
        "drop spooled points older than this",
        metavar="DURATION",
        number=True,
    ),
    Option(
        "log_summary_interval",
        _duration(1.0, 86400.0),
        "5m",
        "one log line per interval for noise",
        metavar="DURATION",
        number=True,
    ),
]
_BY_KEY = {option.key: option for option in OPTIONS}
SECRETS = {"influx.token": "P1_INFLUX_TOKEN", "influx.password": "P1_INFLUX_PASSWORD"}
_NAMED_SOURCE = re.compile(r"([A-Za-z0-9_-]+)=(.+)")


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
    """The file's options (flat dotted keys, as text) and its `[[source]]` tables."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    raw_sources = data.pop("source", [])
    if not isinstance(raw_sources, list) or not all(isinstance(s, dict) for s in raw_sources):
        raise ConfigError(f"{path}: `source` must be [[source]] tables with a url")
    sources = []
    for table in raw_sources:
        unknown = set(table) - {"url", "name", "serial_settings"}
        if unknown or "url" not in table:
            raise ConfigError(
                f"{path}: a [[source]] needs url and may have name and serial_settings"
                + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else "")
            )
        text = {key: _toml_text(path, f"[[source]] {key}", v) for key, v in table.items()}
        if not text["url"] or text.get("name") == "":
            raise ConfigError(f"{path}: a [[source]] url or name is empty")
        sources.append(
            SourceSettings(text["url"], text.get("name"), text.get("serial_settings", ""))
        )
    flat = _flatten(data)
    for key in flat:
        if key in SECRETS:
            raise ConfigError(
                f"{path}: {key} must not be in the config file; "
                f"set {SECRETS[key]} or {key}_file instead"
            )
        if key not in _BY_KEY:
            raise ConfigError(f"{path}: unknown setting {key!r}")
    values = {key: _toml_text(path, key, v, _BY_KEY[key]) for key, v in flat.items()}
    return values, sources


def _source(text: str, serial_settings: str) -> SourceSettings:
    match = _NAMED_SOURCE.fullmatch(text)
    if match and ":" not in match[1]:
        return SourceSettings(match[2], match[1], serial_settings)
    return SourceSettings(text, None, serial_settings)


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
        flag = flags.get(option.dest)
        if flag not in (None, ""):
            text, origins[option.key] = str(flag), "flag " + option.flag
        elif env.get(option.env):
            text, origins[option.key] = env[option.env], option.env
        elif option.key in file_values:
            text, origins[option.key] = str(file_values[option.key]), "config file"
        elif option.default is not None:
            text, origins[option.key] = option.default, "default"
        else:
            values[option.key] = None
            continue
        values[option.key] = option.parse(text, option.key.replace("_", " ").replace(".", " "))

    serial = str(values["serial_settings"])
    sources_flag = flags.get("source")
    if isinstance(sources_flag, list) and sources_flag:
        sources = [_source(str(s), serial) for s in sources_flag]
        origins["source"] = "flag --source"
    elif env.get("P1_SOURCE"):
        # Whitespace separates sources: commas belong to simulator and URL options.
        sources = [_source(s, serial) for s in env["P1_SOURCE"].split()]
        origins["source"] = "P1_SOURCE"
    elif file_sources:
        sources = [SourceSettings(s.url, s.name, s.serial_settings or serial) for s in file_sources]
        origins["source"] = "config file"
    else:
        sources = [SourceSettings("simulator", None, serial)]
        origins["source"] = "default"
    names = [s.name for s in sources if s.name]
    if len(names) != len(set(names)):
        raise ConfigError(f"two sources have the same name: {', '.join(names)}")

    host, port = parse_address(str(values["metrics_address"]))
    return Settings(
        sources=sources,
        data_dir=Path(str(values["data_dir"])),
        metrics_host=host,
        metrics_port=port,
        meter_timezone=str(values["meter_timezone"]),
        max_frame=int(str(values["max_frame"])),
        log_level=str(values["log_level"]),
        read_timeout=float(str(values["read_timeout"])),
        raw_capture=bool(values["raw_capture"]),
        raw_capture_max_age=float(str(values["raw_capture_max_age"])),
        influx=_influx(values, env, origins),
        batch_size=int(str(values["influx.batch_size"])),
        influx_degraded_after=float(str(values["influx.degraded_after"])),
        spool_max_bytes=int(str(values["spool.max_size"])),
        spool_max_age=float(str(values["spool.max_age"])),
        summary_interval=float(str(values["log_summary_interval"])),
        fuse_limit=float(str(values["fuse_limit"])),
        max_meters=int(str(values["max_meters"])),
        meter_expiry=float(str(values["meter_expiry"])),
        origins=origins,
    )


def _influx(
    values: Mapping[str, object], env: Mapping[str, str], origins: dict[str, str]
) -> InfluxTarget | None:
    url = values["influx.url"]
    if not url:
        return None
    from agent.sinks.influx import InfluxTarget

    url = _influx_url(str(url))
    token_file = values["influx.token_file"]
    password_file = values["influx.password_file"]
    token = _secret(env, "P1_INFLUX_TOKEN", str(token_file) if token_file else None, "token")
    password = _secret(
        env, "P1_INFLUX_PASSWORD", str(password_file) if password_file else None, "password"
    )
    for key, var in SECRETS.items():
        if env.get(var):
            origins[key] = var
        elif env.get(var + "_FILE") or values.get(key + "_file"):
            origins[key] = "file"
    api = str(values["influx.api"])
    if api == "v1" and password and not values["influx.username"]:
        raise ConfigError("an InfluxDB password is set but no --influx-username")
    ca_file = values["influx.ca_file"]
    if ca_file and not Path(str(ca_file)).is_file():
        raise ConfigError(f"influx CA file {ca_file} does not exist")
    retention = values["influx.retention_policy"]
    username = values["influx.username"]
    return InfluxTarget(
        url=url.rstrip("/"),
        api=api,
        org=str(values["influx.org"]),
        bucket=str(values["influx.bucket"]),
        token=token,
        database=str(values["influx.database"]),
        retention_policy=str(retention) if retention else None,
        username=str(username) if username else None,
        password=password,
        ca_file=str(ca_file) if ca_file else None,
        verify_tls=bool(values["influx.verify_tls"]),
        gzip=bool(values["influx.gzip"]),
        timeout=float(str(values["influx.timeout"])),
    )


def _influx_url(url: str) -> str:
    """The URL, if a request to it can work at all; its password never in the message."""
    shown = mask_url(url)
    if not re.match(r"https?://[^/\s]+", url):
        raise ConfigError(f"influx url {shown!r} is not an http:// or https:// URL")
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
        return url
    raise ConfigError(f"influx url {shown!r} {problem}")


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


def describe(settings: Settings) -> list[str]:
    """The effective configuration as a TOML file `--config` accepts, with each value's origin;
    secrets appear only as masked comments."""
    o = settings.origins
    lines = []

    def show(key: str, value: object) -> None:
        shown = f'"{value}"' if isinstance(value, str | Path) else str(value).lower()
        lines.append(f"{key.rpartition('.')[2]} = {shown}  # {o.get(key, 'default')}")

    def secret(key: str, value: str | None) -> None:
        if value:
            lines.append(f'# {key.rpartition(".")[2]} = "{MASK}"  ({o.get(key, "file")})')

    show("data_dir", settings.data_dir)
    show("metrics_address", f"{settings.metrics_host}:{settings.metrics_port}")
    show("meter_timezone", settings.meter_timezone)
    show("max_frame", settings.max_frame)
    show("log_level", settings.log_level)
    show("read_timeout", _duration_text(settings.read_timeout))
    show("fuse_limit", settings.fuse_limit)
    show("max_meters", settings.max_meters)
    show("meter_expiry", _duration_text(settings.meter_expiry))
    show("raw_capture", settings.raw_capture)
    show("raw_capture_max_age", _duration_text(settings.raw_capture_max_age))
    show("log_summary_interval", _duration_text(settings.summary_interval))
    for source in settings.sources:
        lines.append(f"\n[[source]]  # {o.get('source', 'default')}")
        lines.append(f'url = "{mask_url(source.url)}"')
        if source.name:
            lines.append(f'name = "{source.name}"')
        lines.append(f'serial_settings = "{source.serial_settings}"')
    target = settings.influx
    if target is None:
        lines.append("\n# [influx] not configured: readings stay in the local store")
    else:
        lines.append("\n[influx]")
        show("influx.url", mask_url(target.url))
        show("influx.api", target.api)
        if target.api == "v2":
            show("influx.org", target.org)
            show("influx.bucket", target.bucket)
            secret("influx.token", target.token)
        else:
            show("influx.database", target.database)
            if target.retention_policy:
                show("influx.retention_policy", target.retention_policy)
            if target.username:
                show("influx.username", target.username)
            secret("influx.password", target.password)
        if target.ca_file:
            show("influx.ca_file", target.ca_file)
        show("influx.verify_tls", target.verify_tls)
        show("influx.gzip", target.gzip)
        show("influx.timeout", _duration_text(target.timeout))
        show("influx.batch_size", settings.batch_size)
        show("influx.degraded_after", _duration_text(settings.influx_degraded_after))
    lines.append("\n[spool]")
    show("spool.max_size", _size_text(settings.spool_max_bytes))
    show("spool.max_age", _duration_text(settings.spool_max_age))
    return lines
