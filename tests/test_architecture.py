"""The telegram core stays sans-I/O: bytes in, values out (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "agent" / "core"
MODULES = sorted(CORE.rglob("*.py"))

# What a core module must not reach for: the network, threads and processes, clocks, files,
# logging and the agent's adapters. (zoneinfo reads the zone database once per zone; that is
# the standard library's data, not the agent's I/O.)
FORBIDDEN = {
    "asyncio",
    "http",
    "io",
    "logging",
    "multiprocessing",
    "os",
    "pathlib",
    "select",
    "selectors",
    "serial",
    "shutil",
    "socket",
    "sqlite3",
    "ssl",
    "structlog",
    "subprocess",
    "sys",
    "tempfile",
    "threading",
    "time",
    "urllib",
    "urllib3",
}
FORBIDDEN_CALLS = {"open", "print", "input"}
ADAPTERS = ("agent.sources", "agent.sinks", "agent.formats", "agent.run", "agent.config")


def _imports(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_core_has_modules() -> None:
    assert {p.stem for p in MODULES} >= {"framing", "crc", "telegram", "pipeline", "engine"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_does_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    imported = _imports(tree)
    assert not {name for name in imported if name.split(".")[0] in FORBIDDEN}
    assert not {name for name in imported if name.startswith(ADAPTERS)}
    assert all(name.startswith("agent.core") for name in imported if name.startswith("agent"))
    calls = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert not calls & FORBIDDEN_CALLS
