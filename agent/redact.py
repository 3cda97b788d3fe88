"""Secrets out of what we show: URLs with passwords, in config output, errors and log lines."""

from __future__ import annotations

import re

MASK = "****"
_PASSWORD = re.compile(r"(//[^:/@\s]+:)[^@/\s]+@")


def mask_url(text: str) -> str:
    """Text with the password of any URL in it replaced (`socket://user:****@host:port`)."""
    return _PASSWORD.sub(rf"\1{MASK}@", text)
