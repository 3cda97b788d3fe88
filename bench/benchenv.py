"""What every section of RESULTS.md states: the command, the machine, the code and the date."""

from __future__ import annotations

import compileall
import datetime
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown CPU"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout


def code_version() -> str:
    """The commit measured; with uncommitted changes in agent/, a digest of them as well."""
    try:
        commit = _git("rev-parse", "--short", "HEAD").strip()
        diff = _git("diff", "HEAD", "--", "agent")
        untracked = _git("ls-files", "--others", "--exclude-standard", "--", "agent").split()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    if not diff and not untracked:
        return commit
    digest = hashlib.sha256(diff.encode())
    for name in sorted(untracked):
        digest.update(name.encode() + (REPO / name).read_bytes())
    return f"{commit} + uncommitted changes in agent/ (sha256 {digest.hexdigest()[:12]})"


def header(title: str, command: str) -> str:
    machine = (
        f"nproc {len(os.sched_getaffinity(0))}, {cpu_model()}, Python {platform.python_version()}"
    )
    return (
        f"## {title}\n\n"
        f"- command: `{command}`\n"
        f"- machine: {machine}\n"
        f"- code: {code_version()}\n"
        f"- date: {datetime.date.today().isoformat()}\n"
    )


def p1_agent() -> str:
    """The `p1-agent` script of the interpreter running the benchmark (the venv's), its modules
    compiled: an installed agent runs from bytecode (pip compiles it), while a checkout with
    PYTHONDONTWRITEBYTECODE set would compile every module edited since on every run."""
    beside = Path(sys.executable).parent / "p1-agent"
    found = str(beside) if beside.exists() else shutil.which("p1-agent")
    if found is None:
        sys.exit("p1-agent not found: activate the venv (pip install -e .)")
    compileall.compile_dir(REPO / "agent", quiet=1)
    return found


def log(message: str) -> None:
    """Progress goes to stderr; stdout carries only the markdown section."""
    print(message, file=sys.stderr, flush=True)


def instructions(argv: list[str]) -> int:
    """Instructions a command executes (valgrind's callgrind): the same on a busy machine."""
    run = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in run.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rpartition(":")[2])
    sys.exit(f"no instruction count from valgrind:\n{run.stderr}")
