"""Secrets out of what we show: URLs with passwords, in config output, errors and log lines."""

from __future__ import annotations

import re

MASK = "****"
# What follows a URL's `//`, up to whitespace or the next URL. Users paste passwords with `/`,
# `@` or `:` in them unencoded, so the userinfo runs to the last `@`, and the password from the
# first `:` (the user may be empty). A path holding `@` is masked too: when in doubt, hide.
_AUTHORITY = re.compile(r"//((?:(?!://)\S)+)")


def _mask(match: re.Match[str]) -> str:
    rest = match[1]
    userinfo, at, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not at or not colon:
        return match[0]
    return f"//{user}:{MASK}@{host}"


def mask_url(text: str) -> str:
    """Text with the password of any URL in it replaced (`socket://user:****@host:port`)."""
    return _AUTHORITY.sub(_mask, text)
