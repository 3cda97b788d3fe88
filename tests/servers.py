"""Real servers for integration tests, started on loopback ports with temporary data directories.

Locally a missing binary skips the test with the reason; under CI=true it fails instead, because CI
installs every server (`.ci/run`) and a silent skip there would hide a broken test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install; .ci/run does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(
    method: str, url: str, body: bytes | None = None, timeout: float = 10.0
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            status, _ = http("GET", url, timeout=1.0)
            if status < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer {url} in {timeout} s: {log.read_text()[-2000:]}")


@dataclass
class Server:
    name: str
    url: str
    port: int
    workdir: Path
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "server.log"

    def start(self, ready_path: str) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        wait_http(self.url + ready_path, self.proc, self.log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class InfluxDB1(Server):
    """InfluxDB 1.x (Debian's `influxdb`), v1 HTTP API."""

    def query(self, q: str, db: str | None = None) -> list[dict[str, object]]:
        """Rows of every series as dicts (column → value), with the series' tags merged in."""
        params = {"q": q, "epoch": "s"}
        if db:
            params["db"] = db
        status, body = http("POST", f"{self.url}/query?" + urllib.parse.urlencode(params))
        assert status == 200, body
        rows: list[dict[str, object]] = []
        for result in json.loads(body)["results"]:
            assert "error" not in result, result
            for series in result.get("series", []):
                for values in series["values"]:
                    row = dict(zip(series["columns"], values, strict=True))
                    row.update(series.get("tags", {}))
                    row["_measurement"] = series["name"]
                    rows.append(row)
        return rows

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')


class VictoriaMetrics(Server):
    """VictoriaMetrics single-node: accepts the InfluxDB v2 write API (`/api/v2/write`)."""

    def export(self, match: str = '{__name__=~".+"}') -> list[dict[str, object]]:
        http("GET", f"{self.url}/internal/force_flush")
        status, body = http(
            "POST",
            f"{self.url}/api/v1/export",
            urllib.parse.urlencode({"match[]": match}).encode(),
        )
        assert status == 200, body
        return [json.loads(line) for line in body.splitlines() if line.strip()]


@contextmanager
def influxdb1(workdir: Path) -> Iterator[InfluxDB1]:
    binary = require_binary("influxd")
    workdir.mkdir(parents=True, exist_ok=True)
    port, rpc = free_port(), free_port()
    config = workdir / "influxdb.conf"
    config.write_text(
        f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{workdir}/meta"
[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
[logging]
  level = "warn"
[monitor]
  store-enabled = false
"""
    )
    server = InfluxDB1(
        "influxdb", f"http://127.0.0.1:{port}", port, workdir, [binary, "-config", str(config)]
    )
    server.start("/ping")
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def victoria_metrics(workdir: Path) -> Iterator[VictoriaMetrics]:
    binary = require_binary("victoria-metrics")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = VictoriaMetrics(
        "victoria-metrics",
        f"http://127.0.0.1:{port}",
        port,
        workdir,
        [
            binary,
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={workdir}/data",
            "-retentionPeriod=100y",  # simulated meters live in the past; keep their points
            "-loggerLevel=ERROR",
        ],
    )
    server.start("/health")
    try:
        yield server
    finally:
        server.stop()
