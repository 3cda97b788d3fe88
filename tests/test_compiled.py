"""The modules setup.py compiles with mypyc are compiled here (they must be under CI=true, where
.ci/run installs a compiler), and the pure-Python package a board without a compiler installs
writes the very bytes the compiled one does: the replay digests of the whole corpus, repaired
and rejected frames included, reproduced by the sources alone in a process of their own."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from compiled import REPO, SOURCES, built, module_name
from shareddata import DATA_DIR
from test_replay_digests import DIGESTS

# Run in the pure copy: every replay digest, and the files the listed modules came from.
PURE_DIGESTS = """
import importlib, json, sys, tempfile
from pathlib import Path
import test_replay_digests as t
table = {}
with tempfile.TemporaryDirectory() as tmp:
    for name in t.simulated_names():
        table[name] = t.digests(t._simulated_file(name, Path(tmp)))
for path in t.published_inputs():
    table[str(path.relative_to(t.DATA_DIR))] = t.digests(path)
files = {name: importlib.import_module(name).__file__ for name in sys.argv[1:]}
json.dump({"digests": table, "files": files}, sys.stdout)
"""


def _require_compiled() -> None:
    if built(SOURCES[0]) is None:
        message = "not compiled: the package was installed without a C compiler (see setup.py)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def test_the_listed_modules_are_the_compiled_ones() -> None:
    _require_compiled()
    for source in SOURCES:
        module = importlib.import_module(module_name(source))
        assert module.__file__ == str(built(source)), source


def test_pure_python_writes_what_the_compiled_modules_write(tmp_path: Path) -> None:
    _require_compiled()
    if not DATA_DIR.is_dir() and os.environ.get("CI", "").lower() != "true":
        pytest.skip(f"published meter data not found at {DATA_DIR}")
    pure = tmp_path / "pure"
    shutil.copytree(REPO / "agent", pure / "agent", ignore=shutil.ignore_patterns("*.so"))
    run = subprocess.run(
        [sys.executable, "-c", PURE_DIGESTS, *map(module_name, SOURCES)],
        cwd=pure,  # `-c` puts the working directory first on the path
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(pure), str(REPO / "tests")])},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    files = result["files"]
    for source in SOURCES:
        assert files[module_name(source)] == str(pure / source.relative_to(REPO)), source
    # The compiled modules reproduce these same digests in test_replay_digests.py.
    assert result["digests"] == json.loads(DIGESTS.read_text())


def test_slices_that_end_before_they_start_are_empty() -> None:
    # Compiled by mypyc 2.4, such a bytes slice raised SystemError instead: a DSMR 2.2 gas line
    # of one `(`, and a decrypted frame whose last line is empty.
    from agent.core.decrypting import _line_of
    from agent.core.telegram import Decoder

    body = b"/ISk5MT382-1000\r\n\r\n0-1:24.3.0(090101000000)(00)(60)(1)(0-1:24.2.1)(m3)\r\n(\r\n!"
    gas = Decoder().decode(body).readings["0-1:24.3.0"]
    assert gas.value is None and gas.raw == ""
    assert _line_of(b"1-0:1.8.0(1)\r\n", 20) == "header"
