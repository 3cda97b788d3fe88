"""Compiles the modules listed in pyproject.toml's [tool.p1-agent] with mypyc, where a C compiler
and Python's headers are at hand (on Debian: gcc and python3-dev): the pipeline and a replay then
execute about a third fewer instructions. Without them, or with P1_AGENT_PURE=1, the package
installs as pure Python, which behaves the same (tests/test_compiled.py compares the two)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """The compiled modules, all or none: a module whose shared part failed to build would not
    import, so any failure removes every one built and leaves the package pure Python."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as error:  # no compiler, no headers: distutils raises several kinds
            for extension in self.extensions:
                Path(self.get_ext_fullpath(extension.name)).unlink(missing_ok=True)
            print(f"p1-agent: installing pure Python, not compiled ({error})")

    def get_outputs(self) -> list[str]:
        return [path for path in super().get_outputs() if os.path.exists(path)]


def compiled() -> list[Any]:
    if os.environ.get("P1_AGENT_PURE") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:  # an install without build isolation, and no mypy
        return []
    project = tomllib.loads(Path(__file__).with_name("pyproject.toml").read_text())
    # The build runs apart from the dependencies (pip's build isolation): mypy then knows
    # nothing of structlog or cryptography, and takes their values as Any, as they are to
    # mypyc anyway. `./dev test` checks the types with them, strictly.
    relaxed = [
        "--ignore-missing-imports",
        "--no-warn-return-any",
        "--allow-subclassing-any",
        "--allow-untyped-decorators",
        "--no-warn-unused-ignores",
    ]
    try:
        paths = project["tool"]["p1-agent"]["compiled"]
        return mypycify([*relaxed, *paths], group_name="p1_agent_compiled")
    except (Exception, SystemExit) as error:  # mypy refused the code: it exits
        print(f"p1-agent: installing pure Python, not compiled (mypyc: {error})")
        return []


setup(ext_modules=compiled(), cmdclass={"build_ext": OptionalBuildExt})
