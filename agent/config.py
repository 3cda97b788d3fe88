"""One typed settings object for `p1-agent run`, from flags, P1_* environment variables and TOML.

Precedence: flags, then the environment, then the TOML file (`--config` / `P1_CONFIG`), then the
defaults. Every option has one dotted TOML key (`influx.url`); its flag and variable follow from
it (`--influx-url`, `P1_INFLUX_URL`), so the three spellings cannot drift apart. Secrets (the
InfluxDB token and password) come only from the environment or from files: a flag would show in
`ps` and a config file tends to end up in a repository.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
    meter_timezone: str = "Europe/Amsterdam"
    max_frame: int = 16 * 1024
    log_level: str = "info"
    read_timeout: float = 30.0
    raw_capture: bool = False
    influx: InfluxTarget | None = None
    batch_size: int = 5000
    spool_max_bytes: int = 1 << 30
    spool_max_age: float = 30 * 86400.0
    summary_interval: float = 300.0
    fuse_limit: float = 25.0
    # Where each effective value came from ("flag", "P1_…", "config file", "default").
    origins: dict[str, str] = field(default_factory=dict, compare=False)


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"metrics address {text!r} is not HOST:PORT (e.g. 127.0.0.1:9224)")
    return host.strip("[]") or "127.0.0.1", int(port)


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
    return int(float(match[1]) * _SIZE_UNITS[match[2] or ""])


def parse_bool(text: str, what: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{what} {text!r} is not true or false")


def _whole(low: int) -> Callable[[str, str], int]:
    def parse(text: str, what: str) -> int:
        if not text.strip().isdigit() or int(text) < low:
            raise ConfigError(f"{what} {text!r} must be a whole number, at least {low}")
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
    Option("meter_timezone", _text, "Europe/Amsterdam", "meter clock zone", metavar="ZONE"),
    Option(
        "max_frame",
        _whole(64),
        str(16 * 1024),
        "drop frames longer than this many bytes",
        metavar="BYTES",
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
        parse_duration,
        "30s",
        "reconnect when a connected source sends nothing this long",
        metavar="DURATION",
    ),
    Option(
        "fuse_limit",
        _amperes,
        "25",
        "main fuse per phase in amperes, for alerts",
        metavar="AMPERES",
    ),
    Option("raw_capture", parse_bool, "false", "keep raw bytes in DATA_DIR/raw, one file a day"),
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
        "influx.timeout", parse_duration, "10s", "time allowed for one write", metavar="DURATION"
    ),
    Option("influx.batch_size", _whole(1), "5000", "points per write", metavar="POINTS"),
    Option(
        "spool.max_size",
        parse_size,
        "1GiB",
        "spool bound; the oldest points go first",
        metavar="SIZE",
    ),
    Option(
        "spool.max_age",
        parse_duration,
        "30d",
        "drop spooled points older than this",
        metavar="DURATION",
    ),
    Option(
        "log_summary_interval",
        parse_duration,
        "5m",
        "one log line per interval for noise",
        metavar="DURATION",
    ),
]
_BY_KEY = {option.key: option for option in OPTIONS}
SECRETS = {"influx.token": "P1_INFLUX_TOKEN", "influx.password": "P1_INFLUX_PASSWORD"}
_NAMED_SOURCE = re.compile(r"([A-Za-z0-9_-]+)=(.+)")


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
        if unknown or not isinstance(table.get("url"), str):
            raise ConfigError(
                f"{path}: a [[source]] needs url and may have name and serial_settings"
                + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else "")
            )
        sources.append(
            SourceSettings(table["url"], table.get("name"), str(table.get("serial_settings", "")))
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
    values = {
        key: ("true" if v is True else "false" if v is False else str(v)) for key, v in flat.items()
    }
    return values, sources


def _source(text: str, serial_settings: str) -> SourceSettings:
    match = _NAMED_SOURCE.fullmatch(text)
    if match and ":" not in match[1]:
        return SourceSettings(match[2], match[1], serial_settings)
    return SourceSettings(text, None, serial_settings)


def _secret(env: Mapping[str, str], var: str, file_path: str | None, what: str) -> str | None:
    value = env.get(var)
    if value:
        return value
    path = env.get(var + "_FILE") or file_path
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from None


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
        influx=_influx(values, env, origins),
        batch_size=int(str(values["influx.batch_size"])),
        spool_max_bytes=int(str(values["spool.max_size"])),
        spool_max_age=float(str(values["spool.max_age"])),
        summary_interval=float(str(values["log_summary_interval"])),
        fuse_limit=float(str(values["fuse_limit"])),
        origins=origins,
    )


def _influx(
    values: Mapping[str, object], env: Mapping[str, str], origins: dict[str, str]
) -> InfluxTarget | None:
    url = values["influx.url"]
    if not url:
        return None
    from agent.sinks.influx import InfluxTarget

    url = str(url)
    if not re.match(r"https?://[^/\s]+", url):
        raise ConfigError(f"influx url {url!r} is not an http:// or https:// URL")
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
    show("raw_capture", settings.raw_capture)
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
    lines.append("\n[spool]")
    show("spool.max_size", _size_text(settings.spool_max_bytes))
    show("spool.max_age", _duration_text(settings.spool_max_age))
    return lines
