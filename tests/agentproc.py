"""The agent as users run it: a real `p1-agent run` process, its /metrics and its shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from servers import free_port, http

from agent.core.pipeline import MeterPipeline, Result
from agent.core.points import telegram_points
from agent.formats.lineprotocol import encode_all
from agent.sinks.spool import SpoolRow, reader


@dataclass
class AgentProcess:
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    host: str = "127.0.0.1"  # where its metrics listen: [::1], or "::" for every interface

    def url(self, path: str) -> str:
        """The agent's `path` (`/healthz`), asked over loopback when it listens everywhere."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}{path}"

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """Status and text of a GET, whatever the status."""
        status, body = http("GET", self.url(path), timeout=timeout)
        return status, body.decode()

    def scrape(self) -> str:
        with urllib.request.urlopen(self.url("/metrics"), timeout=5) as response:
            return str(response.read().decode())

    def samples(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Every sample of one metric (full sample name) by its sorted labels."""
        found: dict[tuple[tuple[str, str], ...], float] = {}
        for family in text_string_to_metric_families(self.scrape()):
            for sample in family.samples:
                if sample.name == name:
                    found[tuple(sorted(sample.labels.items()))] = sample.value
        return found

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of `name` whose labels include `labels` (0 when none)."""
        return sum(
            v
            for key, v in self.samples(name).items()
            if all((k, want) in key for k, want in labels.items())
        )

    def stop(self, timeout: float = 30.0) -> str:
        """SIGTERM, wait, and the process's stderr (its log)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=timeout)
        return err.decode(errors="replace")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.communicate(timeout=30)


def start_agent(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
    metrics_host: str = "127.0.0.1",
) -> AgentProcess:
    """`prefix` runs the agent through another command (one that ends by exec'ing it)."""
    agent = spawn_agent(data_dir, *args, env=env, prefix=prefix, metrics_host=metrics_host)
    wait_for(lambda: agent.scrape() is not None, what="the agent's /metrics", proc=agent.proc)
    return agent


def spawn_agent(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
    metrics_host: str = "127.0.0.1",
) -> AgentProcess:
    """The agent's process, not waiting for it to serve (as for one that must refuse to start)."""
    port = free_port()
    address = f"[{metrics_host}]" if ":" in metrics_host else metrics_host
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("P1_")},
        "P1_DATA_DIR": str(data_dir),
        "P1_METRICS_ADDRESS": f"{address}:{port}",
        **(env or {}),
    }
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "agent.cli", "run", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return AgentProcess(proc, port, data_dir, metrics_host)


def stop_cleanly(agent: AgentProcess) -> str:
    """SIGTERM; the agent must exit 0 without a traceback. Its log."""
    log = agent.stop()
    assert agent.proc.returncode == 0, log
    assert "Traceback" not in log, log
    return log


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
    stdin: bytes | None = None,
    timeout: float = 60.0,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """`p1-agent ARGS` run to its end, with no P1_* variable but those in `env`."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "agent.cli", *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("P1_")}, **(env or {})},
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )


def wait_for(
    predicate: Callable[[], object],
    timeout: float = 30.0,
    what: str = "condition",
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            log = proc.stderr.read() if proc.stderr else b""
            raise AssertionError(f"agent exited ({proc.returncode}) before {what}: {log!r}")
        try:
            if predicate():
                return
        except (OSError, AssertionError) as exc:
            last_error = exc
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout} s (last error: {last_error})")


def store_rows(data_dir: Path) -> list[SpoolRow]:
    """The points in an agent's store (or spool), oldest first, as `p1-agent export` reads them:
    SQLite's (packed lines unpacked) and its journal's, which is left as it is (an agent killed
    folds it at its next start, a running one goes on appending)."""
    spool = reader(data_dir / "store.sqlite")
    try:
        return list(spool.rows())
    finally:
        spool.close()


def store_lines(data_dir: Path) -> list[str]:
    """The line protocol in an agent's store (or spool), oldest first."""
    return [row.line for row in store_rows(data_dir)]


def core(data: bytes) -> list[Result]:
    """What the core makes of these bytes in a fresh pipeline, as a freshly started agent
    reading them does: the agent must count and store exactly this."""
    return MeterPipeline().feed(data)


def spooled_lines(results: list[Result]) -> int:
    """Lines of line protocol the accepted telegrams give: what the agent must deliver (the
    count does not depend on the meter's name)."""
    return sum(
        len(encode_all(telegram_points(r.telegram, meter=r.telegram.meter, fields=r.fields)))
        for r in results
        if r.telegram is not None
    )


def wait_counted(agent: AgentProcess, frames: int) -> None:
    wait_for(
        lambda: agent.value("p1_telegrams_total") == frames,
        timeout=60,
        what=f"{frames} frames counted",
        proc=agent.proc,
    )
