"""A structlog logger that imports structlog on first use.

Importing structlog (and asyncio with it) is about a fifth of a short command's start-up, and
`replay` reaches modules that log only when the live agent runs them (raw captures, retention).
"""

from __future__ import annotations

from typing import Any


class LazyLogger:
    """`structlog.get_logger(name)`, made when a method is first looked up."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attribute: str) -> Any:
        if self._logger is None:
            import structlog

            self._logger = structlog.get_logger(self._name)
        return getattr(self._logger, attribute)
