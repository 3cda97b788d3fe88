"""Real servers for integration tests, started on loopback ports with temporary data directories.

Locally a missing binary skips the test with the reason; under CI=true it fails instead, because CI
installs every server (`.ci/run`) and a silent skip there would hide a broken test.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

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
    method: str,
    url: str,
    body: bytes | None = None,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
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
    ready_path: str = ""

    @property
    def log(self) -> Path:
        return self.workdir / "server.log"

    def start(self, ready_path: str) -> None:
        self.ready_path = ready_path
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

    def restart(self) -> None:
        """Start again on the same port with the same data (after stop())."""
        self.stop()
        self.start(self.ready_path)


class InfluxDB1(Server):
    """InfluxDB 1.x (Debian's `influxdb`), v1 HTTP API."""

    admin: tuple[str, str] | None = None  # user and password when auth is enabled

    def query(self, q: str, db: str | None = None) -> list[dict[str, object]]:
        """Rows of every series as dicts (column → value), with the series' tags merged in."""
        params = {"q": q, "epoch": "s"}
        if db:
            params["db"] = db
        headers = {}
        if self.admin is not None:
            user, password = self.admin
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        status, body = http(
            "POST", f"{self.url}/query?" + urllib.parse.urlencode(params), headers=headers
        )
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

    auth_header: dict[str, str] | None = None  # Basic auth, when started with `auth`

    def export(self, match: str) -> list[dict[str, object]]:
        """Stored samples of the matching series. Match by label equality (`{meter="…"}`):
        VictoriaMetrics 1.79 may keep answering a regex match (`{__name__=~"p1.*"}`) that found
        nothing with nothing, even after the series are written."""
        http("GET", f"{self.url}/internal/force_flush", headers=self.auth_header)
        status, body = http(
            "POST",
            f"{self.url}/api/v1/export",
            urllib.parse.urlencode({"match[]": match}).encode(),
            headers=self.auth_header,
        )
        assert status == 200, body
        return [json.loads(line) for line in body.splitlines() if line.strip()]


@contextmanager
def influxdb1(workdir: Path, auth: bool = False) -> Iterator[InfluxDB1]:
    """With `auth`, `[http] auth-enabled` and an admin user (`server.admin`) for queries."""
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
  auth-enabled = {str(auth).lower()}
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
        if auth:  # 1.x lets the first admin user be created without credentials
            server.query("CREATE USER admin WITH PASSWORD 'admin-pass' WITH ALL PRIVILEGES")
            server.admin = ("admin", "admin-pass")
        yield server
    finally:
        server.stop()


@contextmanager
def victoria_metrics(
    workdir: Path, auth: tuple[str, str] | None = None
) -> Iterator[VictoriaMetrics]:
    """With `auth` (user, password), every endpoint wants HTTP Basic auth: a v2 token is refused
    with 401, as a wrong token is by InfluxDB 2."""
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
            *([f"-httpAuth.username={auth[0]}", f"-httpAuth.password={auth[1]}"] if auth else []),
        ],
    )
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        server.auth_header = {"Authorization": f"Basic {token}"}
    server.start("/health")
    try:
        yield server
    finally:
        server.stop()


class Prometheus(Server):
    """Prometheus (Debian's `prometheus`), queried through its HTTP API."""

    def api(self, path: str, **params: str) -> object:
        """The `data` of a successful /api/v1 answer; fails the test on an error answer."""
        query = urllib.parse.urlencode(params)
        status, body = http("GET", f"{self.url}/api/v1/{path}?{query}")
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", (path, params, answer)
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, object]]:
        """An instant query's result (vector samples or a scalar as one sample)."""
        data = self.api("query", query=expr)
        assert isinstance(data, dict)
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        assert isinstance(result, list)
        return result


ConfiguredServer = TypeVar("ConfiguredServer", bound=Server)


@contextmanager
def _configured(
    kind: type[ConfiguredServer], binary: str, workdir: Path, config_text: str, *flags: str
) -> Iterator[ConfiguredServer]:
    """A Prometheus-family server (`--config.file`, `--web.listen-address`, `/-/ready`) on a
    free loopback port, with `config_text` as its config file in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    name = kind.__name__.lower()
    config = workdir / f"{name}.yml"
    config.write_text(config_text)
    argv = [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"]
    server = kind(name, f"http://127.0.0.1:{port}", port, workdir, [*argv, *flags])
    server.start("/-/ready")
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def prometheus(workdir: Path, config_text: str) -> Iterator[Prometheus]:
    """`config_text` is the whole prometheus.yml; relative rule paths resolve from `workdir`."""
    binary = require_binary("prometheus")
    flags = (f"--storage.tsdb.path={workdir}/data", "--log.level=warn")
    with _configured(Prometheus, binary, workdir, config_text, *flags) as server:
        yield server


class Alertmanager(Server):
    """Alertmanager (Debian's `prometheus-alertmanager`), through its v2 HTTP API."""

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert it holds, with its `status` (active, suppressed and by what)."""
        status, body = http("GET", f"{self.url}/api/v2/alerts")
        assert status == 200, body
        answer: list[dict[str, Any]] = json.loads(body)
        return answer

    def post(self, *labels: dict[str, str]) -> None:
        """Firing alerts with these label sets, as Prometheus sends them."""
        alerts = [{"labels": labelset, "annotations": {}} for labelset in labels]
        body = json.dumps(alerts).encode()
        headers = {"Content-Type": "application/json"}
        status, answer = http("POST", f"{self.url}/api/v2/alerts", body, headers=headers)
        assert status == 200, answer


@contextmanager
def alertmanager(workdir: Path, config_text: str) -> Iterator[Alertmanager]:
    """`config_text` is the whole alertmanager.yml; a single instance (no cluster port)."""
    binary = require_binary("prometheus-alertmanager")
    flags = (f"--storage.path={workdir}/data", "--cluster.listen-address=", "--log.level=warn")
    with _configured(Alertmanager, binary, workdir, config_text, *flags) as server:
        yield server


class Mosquitto(Server):
    """Mosquitto (Debian's `mosquitto`): anonymous, or with `users` from a password file."""

    def start(self, ready_path: str = "") -> None:
        """Ready when the port accepts connections (the broker speaks no HTTP)."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            with suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
                return
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen in 30 s: {self.log.read_text()[-2000:]}")


@contextmanager
def mosquitto(
    workdir: Path, users: dict[str, str] | None = None, tls: tuple[Path, Path] | None = None
) -> Iterator[Mosquitto]:
    """On a free loopback port (`server.url` is mqtt://127.0.0.1:PORT), retained messages kept
    across a restart() in workdir; with `users` (name → password) no anonymous clients; with
    `tls` (certificate, key) TLS only (`mqtts://`)."""
    binary = require_binary("mosquitto")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [
        f"listener {port} 127.0.0.1",
        f"allow_anonymous {'false' if users else 'true'}",
        "persistence true",
        f"persistence_location {workdir}/",
        "log_dest stdout",
    ]
    if tls is not None:
        lines += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
    if os.geteuid() == 0:  # as root it would run as `mosquitto`, who cannot read workdir
        lines.append("user root")
    if users:
        passwords = workdir / "passwords"
        passwords.write_text("".join(f"{name}:{secret}\n" for name, secret in users.items()))
        passwd = shutil.which("mosquitto_passwd") or "mosquitto_passwd"
        subprocess.run([passwd, "-U", str(passwords)], check=True, capture_output=True)
        lines.append(f"password_file {passwords}")
    config = workdir / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    scheme = "mqtts" if tls else "mqtt"
    server = Mosquitto(
        "mosquitto", f"{scheme}://127.0.0.1:{port}", port, workdir, [binary, "-c", str(config)]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names in title case (`Content-Encoding`)
    body: bytes  # gunzipped when sent with Content-Encoding: gzip
    at: float  # time.monotonic() on arrival


Reply = tuple[int, dict[str, str], bytes]
# An answer written byte by byte by the test (status line, headers, body) to the connection, for
# what no well-behaved server sends: an endless body, headers trickled for minutes. The connection
# closes after it; an OSError (the client hung up) ends it quietly.
RawReply = Callable[[BinaryIO], None]


class ScriptedHTTP:
    """A local HTTP server whose answers a test scripts (`respond(request) → status, headers,
    body`, or a RawReply), recording every request; for status handling no real server can be
    made to show."""

    def __init__(
        self,
        respond: Callable[[Request], Reply | RawReply],
        tls: tuple[Path, Path] | None = None,
        port: int = 0,  # another server's, to come back where it went away
    ):
        import http.server
        import ssl
        import threading

        self.requests: list[Request] = []
        self.respond = respond
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                headers = {key.title(): value for key, value in self.headers.items()}
                request = Request(self.command, self.path, headers, body, time.monotonic())
                owner.requests.append(request)
                answer = owner.respond(request)
                if callable(answer):
                    self.close_connection = True
                    with suppress(OSError):
                        answer(self.wfile)
                    return
                status, headers, reply = answer
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that gave up (timeout tests) is expected, not news

        self.server = Server(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(0.02,), daemon=True
        )  # a short poll interval: close() waits for one
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> ScriptedHTTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
