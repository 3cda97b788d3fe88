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
from servers import free_port

from agent.pipeline import MeterPipeline, Result
from agent.points import telegram_points
from agent.sinks.lineprotocol import encode_all


@dataclass
class AgentProcess:
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
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
) -> AgentProcess:
    """`prefix` runs the agent through another command (one that ends by exec'ing it)."""
    port = free_port()
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("P1_")},
        "P1_DATA_DIR": str(data_dir),
        "P1_METRICS_ADDRESS": f"127.0.0.1:{port}",
        **(env or {}),
    }
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "agent.cli", "run", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    agent = AgentProcess(proc, port, data_dir)
    wait_for(lambda: agent.scrape() is not None, what="the agent's /metrics", proc=proc)
    return agent


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
