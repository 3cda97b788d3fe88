"""Security checks on what the agent shows and opens.

- Secrets (token, password, a password in a source URL) appear in no log line of a running agent
  whose writes fail in every way that makes it talk about them (the server even echoes the
  credentials back), and in no line of `check-config`.
- Metrics listen on 127.0.0.1 unless configured otherwise: the running agent's own socket.
- TLS certificates are verified by default: a running agent with default settings refuses a
  self-signed server until it is given the CA.
- The compose file has no default for any secret.

Elsewhere: the spool file is owner-only from its creation (test_spool.py
::test_file_is_private_from_the_start; checked here too on a running agent's files), the
container runs as a non-root user (test_deploy.py), secrets are refused in the TOML file and
masked by check-config's printer (test_config.py).
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentproc import AgentProcess, start_agent, wait_for
from servers import Reply, Request, ScriptedHTTP, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "tok-9d1e55c0a7b34f21"
USER = "p1writer"
PASSWORD = "pw-3f8a61c2d9"
URL_PASSWORD = "url-pw-4c7e1b"


class Echo:
    """Answers each request with the next status of a script (then 204), and says back the
    credentials it received, as a careless proxy or a verbose server does."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Reply:
        self.requests.append(request)
        status = self.statuses.pop(0) if self.statuses else 204
        if status == 204:
            return 204, {}, b""
        said = f"{request.headers.get('Authorization', '')} {TOKEN} {PASSWORD}"
        return status, {"X-Influxdb-Error": said}, json.dumps({"message": said}).encode()


def credentials(api: str) -> dict[str, str]:
    if api == "v2":
        return {"P1_INFLUX_ORG": "home", "P1_INFLUX_TOKEN": TOKEN}
    return {"P1_INFLUX_API": "v1", "P1_INFLUX_USERNAME": USER, "P1_INFLUX_PASSWORD": PASSWORD}


def secrets(api: str) -> list[str]:
    if api == "v2":
        return [TOKEN, URL_PASSWORD]
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    return [PASSWORD, basic, URL_PASSWORD]


@pytest.mark.parametrize("api", ["v2", "v1"])
def test_no_secret_in_any_log_line_or_check_config(api: str, tmp_path: Path) -> None:
    # A source that cannot be reached, with a password in its URL, and a server that refuses a
    # point (400), then the credentials (401), then fails (500), echoing the credentials.
    unreachable = f"socket://p1:{URL_PASSWORD}@127.0.0.1:{free_port()}"
    echo = Echo([400, 400, 401, 500])
    with ScriptedHTTP(echo) as server:
        env = {
            "P1_INFLUX_URL": server.url,
            "P1_LOG_LEVEL": "debug",
            "P1_SOURCE": f"simulator unreachable={unreachable}",
            **credentials(api),
        }
        agent = start_agent(tmp_path / "data", env=env)
        try:
            wait_for(
                lambda: agent.value("p1_influx_points_written_total") >= 4,
                what="delivery after the refusals",
                proc=agent.proc,
            )
        finally:
            log = agent.stop()
    # check-config against a server that fails and echoes whatever it is asked.
    refusing = Echo([500] * 10)
    with ScriptedHTTP(refusing) as server:
        check = subprocess.run(
            [sys.executable, "-m", "agent.cli", "check-config", "--wait", "2"],
            env={
                **clean_environment(),
                **env,
                "P1_INFLUX_URL": server.url,
                "P1_DATA_DIR": str(tmp_path / "data"),
            },
            capture_output=True,
            text=True,
        )
    assert refusing.requests
    sent = {r.headers.get("Authorization", "") for r in echo.requests}
    assert sent == {f"Token {TOKEN}" if api == "v2" else f"Basic {secrets(api)[1]}"}
    refused = "refused the token" if api == "v2" else f"refused user '{USER}'"
    for expected in (
        "InfluxDB refused a point",
        refused,
        "InfluxDB answered 500",
        "cannot open socket://p1:****@127.0.0.1",
    ):
        assert expected in log  # every error that names the server or the source was provoked
    assert check.returncode == 1 and "FAILED" in check.stdout  # the checks failed and said so
    lines = [*log.splitlines(), *check.stdout.splitlines(), *check.stderr.splitlines()]
    assert len(lines) > 10
    for line in lines:
        for secret in secrets(api):
            assert secret not in line
    assert agent.proc.returncode == 0, log
    # What the agent keeps on disk is its owner's only.
    for path in (tmp_path / "data").glob("store.sqlite*"):
        assert path.stat().st_mode & 0o077 == 0, path


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("P1_")}


# --- listening sockets ---------------------------------------------------------------------------


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket process `pid` listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                raw = bytes.fromhex(address)
                # /proc prints the address as 32-bit words in host (little-endian) order.
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add((socket.inet_ntop(family, raw), int(port, 16)))
    return found


def test_metrics_listen_on_loopback_by_default(tmp_path: Path) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 9224))
        except OSError:
            pytest.skip("port 9224 is in use (another agent?)")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run"],
        env={**clean_environment(), "P1_DATA_DIR": str(tmp_path / "data")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    agent = AgentProcess(proc, 9224, tmp_path / "data")
    try:
        wait_for(lambda: agent.value("p1_telegrams_total") >= 1, proc=proc)
        sockets = listening(proc.pid)
    finally:
        log = agent.stop()
    assert sockets == {("127.0.0.1", 9224)}, log
    assert "http://127.0.0.1:9224/metrics" in log


# --- TLS -----------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(self_signed: tuple[Path, Path]) -> Iterator[ScriptedHTTP]:
    with ScriptedHTTP(lambda request: (204, {}, b""), tls=self_signed) as server:
        yield server


def test_tls_is_verified_by_default(
    tmp_path: Path, tls_server: ScriptedHTTP, self_signed: tuple[Path, Path]
) -> None:
    env = {"P1_INFLUX_URL": tls_server.url, "P1_INFLUX_ORG": "home", "P1_INFLUX_TOKEN": TOKEN}
    agent = start_agent(tmp_path / "data", env=env)
    try:
        wait_for(
            lambda: agent.value("p1_influx_write_errors_total", kind="tls") >= 1,
            proc=agent.proc,
        )
        kept = agent.value("p1_spool_points")
    finally:
        log = agent.stop()
    assert not tls_server.requests  # nothing was sent over the unverified connection
    assert kept > 0
    assert "certificate verify failed" in log and "check --influx-ca-file" in log
    # Given the server's CA, the same agent and spool deliver.
    agent = start_agent(tmp_path / "data", env={**env, "P1_INFLUX_CA_FILE": str(self_signed[0])})
    try:
        wait_for(lambda: agent.value("p1_influx_points_written_total") >= kept, proc=agent.proc)
    finally:
        log = agent.stop()
    assert tls_server.requests and "tls" not in re.findall(r'"kind": "(\w+)"', log)


# --- compose -------------------------------------------------------------------------------------

SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY\b")


def test_compose_has_no_default_for_any_secret() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    variables = re.findall(r"\$\{(\w+)([^}]*)\}", text)
    secret_variables = [(name, rest) for name, rest in variables if SECRET_NAME.search(name)]
    assert secret_variables  # the stack has secrets: they are variables, not values
    for name, rest in secret_variables:
        assert rest.startswith(":?"), f"${{{name}{rest}}} must be ${{{name}:?…}}: no default"
    # No secret is written into the file as a value (a `…_FILE` variable names where one is kept).
    for key, value in re.findall(r"^\s*-?\s*(\w+)[:=]\s*(.+)$", text, re.M):
        if SECRET_NAME.search(key) and not key.endswith("_FILE"):
            assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", value.strip().strip("\"'")), (key, value)
