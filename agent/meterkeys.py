"""The keys of encrypted meters: settings and environment → `GcmKeys`, never shown.

A key is 32 hex digits (16 bytes), from `P1_DECRYPTION_KEY` / `P1_DECRYPTION_KEY_FILE` and
`P1_AUTHENTICATION_KEY` / `P1_AUTHENTICATION_KEY_FILE` (or `decryption_key_file` and
`authentication_key_file` in the TOML file, top level or per `[[source]]`). Without an
authentication key the Luxembourg Smarty's public one is used, as the meter's specification
says. A bad key is one line that names where it came from, never its value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from agent.config import ConfigError, Settings, SourceSettings, _secret
from agent.core.gcm import LUXEMBOURG_AUTHENTICATION_KEY, GcmKeys

_HEX_KEY = re.compile(r"[0-9A-Fa-f]{32}")
DECRYPTION, AUTHENTICATION = "decryption key", "authentication key"
_VARIABLES = {DECRYPTION: "P1_DECRYPTION_KEY", AUTHENTICATION: "P1_AUTHENTICATION_KEY"}


def parse_key(text: str, what: str, origin: str) -> bytes:
    """16 bytes from 32 hex digits (spaces between groups allowed, as portals show them)."""
    digits = re.sub(r"[\s:-]", "", text)
    if not _HEX_KEY.fullmatch(digits):
        raise ConfigError(
            f"the {what} from {origin} is not 32 hex digits (16 bytes); it has "
            f"{len(digits)} characters"
        )
    # Imported here: structlog's import is a fifth of `replay`'s start-up, which needs it only
    # for a key.
    from agent.logs import register_secret

    register_secret(digits)
    register_secret(digits.lower())
    register_secret(digits.upper())
    return bytes.fromhex(digits)


def _keys(
    decryption: tuple[str, str] | None, authentication: tuple[str, str] | None
) -> GcmKeys | None:
    """(text, origin) of each key → the keys; None without a decryption key."""
    if decryption is None:
        if authentication is not None:
            raise ConfigError(
                f"an authentication key is set ({authentication[1]}) but no decryption key"
            )
        return None
    key = parse_key(decryption[0], DECRYPTION, decryption[1])
    auth = (
        parse_key(authentication[0], AUTHENTICATION, authentication[1])
        if authentication is not None
        else LUXEMBOURG_AUTHENTICATION_KEY
    )
    return GcmKeys(key, auth)


def source_keys(settings: Settings, source: SourceSettings) -> GcmKeys | None:
    """The source's keys: its own files, else the top-level keys; None for a plain meter."""
    found = []
    for what, own, common in (
        (DECRYPTION, source.decryption_key_file, settings.decryption_key),
        (AUTHENTICATION, source.authentication_key_file, settings.authentication_key),
    ):
        if own:
            text = _secret({}, "", own, what)
            found.append((text, f"the {what} file {own}") if text else None)
        else:
            origin = settings.origins.get(what.replace(" ", "_"), _VARIABLES[what])
            found.append((common, origin) if common else None)
    return _keys(*found)


def env_keys(env: Mapping[str, str]) -> GcmKeys | None:
    """The keys from the environment alone (`replay`); None when no decryption key is set."""
    found = []
    for what, var in _VARIABLES.items():
        text = _secret(env, var, None, what)
        found.append((text, var if env.get(var) else f"{var}_FILE") if text else None)
    return _keys(*found)
