"""One typed settings object for `p1-agent run`, from flags and P1_* environment variables.

Flags win over the environment, which wins over the defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_METRICS_ADDRESS = "127.0.0.1:9224"


class ConfigError(ValueError):
    """A bad setting; its message is shown to the user as one line."""


@dataclass(frozen=True, slots=True)
class Settings:
    sources: list[str] = field(default_factory=lambda: ["simulator"])
    data_dir: Path = Path("data")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9224
    meter_timezone: str = "Europe/Amsterdam"
    max_frame: int = 16 * 1024
    log_level: str = "info"


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"metrics address {text!r} is not HOST:PORT (e.g. 127.0.0.1:9224)")
    return host.strip("[]") or "127.0.0.1", int(port)


def load(flags: Mapping[str, object], env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env

    def pick(name: str, var: str, default: str) -> str:
        value = flags.get(name)
        if value not in (None, [], ""):
            return str(value)
        return env.get(var) or default

    sources_flag = flags.get("source")
    if isinstance(sources_flag, list) and sources_flag:
        sources = [str(s) for s in sources_flag]
    elif env.get("P1_SOURCE"):
        sources = [s.strip() for s in env["P1_SOURCE"].split(",") if s.strip()]
    else:
        sources = ["simulator"]
    host, port = parse_address(
        pick("metrics_address", "P1_METRICS_ADDRESS", DEFAULT_METRICS_ADDRESS)
    )
    max_frame_text = pick("max_frame", "P1_MAX_FRAME", str(16 * 1024))
    if not max_frame_text.isdigit() or int(max_frame_text) < 64:
        raise ConfigError(
            f"max frame {max_frame_text!r} must be a whole number of bytes, at least 64"
        )
    level = pick("log_level", "P1_LOG_LEVEL", "info").lower()
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log level {level!r} is not one of debug, info, warning, error")
    return Settings(
        sources=sources,
        data_dir=Path(pick("data_dir", "P1_DATA_DIR", "data")),
        metrics_host=host,
        metrics_port=port,
        meter_timezone=pick("meter_timezone", "P1_METER_TIMEZONE", "Europe/Amsterdam"),
        max_frame=int(max_frame_text),
        log_level=level,
    )
