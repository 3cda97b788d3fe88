"""The modules setup.py compiles with mypyc (pyproject.toml's [tool.p1-agent]), and whether this
checkout runs them compiled. An editable install builds them beside their sources, where a
compiled module would shadow later edits of its source: conftest.py refuses to test stale ones."""

from __future__ import annotations

import importlib.machinery
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = [
    REPO / path
    for path in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["p1-agent"]["compiled"]
]


def built(source: Path) -> Path | None:
    """The extension module built from `source`, if there is one beside it."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return None


def module_name(source: Path) -> str:
    return ".".join(source.relative_to(REPO).with_suffix("").parts)


def stale() -> list[str]:
    """Sources changed since their module was compiled."""
    return [
        str(source.relative_to(REPO))
        for source in SOURCES
        if (extension := built(source)) is not None
        and source.stat().st_mtime > extension.stat().st_mtime
    ]
