"""Runs a command as a child process and measures it: CPU time, wall time, peak RSS.

Linux counts the memory of the process that forked a child into the child's ru_maxrss (the
old address space is accounted at exec), so a benchmark that holds large data would inflate
every child's figure. `measure()` therefore starts the command from a small launcher (this file
run as a script, standard library only), which waits for it with os.wait4 and reports its
rusage. The launcher's own RSS is the floor of what can be measured; `floor_mib()` gives it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Run:
    exit_code: int
    cpu_s: float  # user + sys of the child alone
    wall_s: float
    max_rss_mib: float
    stderr: str


def measure(argv: list[str]) -> Run:
    """Run `argv` with stdin closed and stdout discarded; its stderr is kept (through a file)."""
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as report:
        subprocess.run(
            [sys.executable, "-I", __file__, report.name, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            check=True,
        )
        result = json.load(report)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    return Run(stderr=stderr, **result)


def floor_mib() -> float:
    """Peak RSS reported for a process that allocates nothing (`true`): the launcher's share."""
    return measure(["true"]).max_rss_mib


def _launch(report: str, argv: list[str]) -> None:
    start = time.perf_counter()
    child = subprocess.Popen(argv)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    with open(report, "w", encoding="utf-8") as out:
        json.dump(
            {
                "exit_code": child.returncode,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "wall_s": wall,
                "max_rss_mib": usage.ru_maxrss / 1024,  # Linux reports KiB
            },
            out,
        )


if __name__ == "__main__":
    _launch(sys.argv[1], sys.argv[2:])
