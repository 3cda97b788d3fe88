"""InfluxDB writers: the v2 API through the official client, the v1 API (1.x) over urllib3.

A writer sends one batch of line protocol (second precision) and either returns (the server
acknowledged every point) or raises WriteError with a `kind` the deliverer acts on. Neither writer
retries by itself: retries, backoff and splitting are the deliverer's, so a request never blocks
longer than the target's timeout. Messages name the URL (without credentials) and never the
token or password.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import io
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Protocol, cast

import urllib3

from agent.config import InfluxTarget  # the [influx] settings the writers take

if TYPE_CHECKING:
    # influxdb-client is imported by the v2 writer only: it costs about 15 MiB of memory (more
    # when numpy is installed, which it loads), which v1 users and the local store need not pay.
    from influxdb_client.rest import ApiException

# The client declares its precision constants as plain strings but its write() as WritePrecision.
KINDS = (
    "auth",  # 401/403: token, user or permission
    "not_found",  # 404: no such bucket, database or API
    "too_large",  # 413: the batch is over the server's limit
    "bad_data",  # 400/422: a line is refused (syntax, type conflict, outside retention)
    "throttled",  # 429/503: come back later (Retry-After)
    "server",  # other 5xx and unexpected answers
    "timeout",
    "connection",
    "tls",
)


class WriteError(Exception):
    """A write or check that failed; `str()` is one line for users, without secrets."""

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


class Writer(Protocol):
    def write(self, lines: list[str]) -> None: ...

    def check(self) -> str: ...

    def close(self) -> None: ...


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None when absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None  # HTTP dates are GMT; a date without a zone is not one
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _kind(status: int) -> str:
    if status in (401, 403):
        return "auth"
    if status == 404:
        return "not_found"
    if status == 413:
        return "too_large"
    if status in (400, 422):
        return "bad_data"
    if status in (429, 503):
        return "throttled"
    return "server"  # other 5xx, and answers no InfluxDB gives (3xx, other 4xx)


def _server_message(body: bytes | str | None, headers: Mapping[str, str] | None) -> str:
    """The server's own explanation: JSON `error` (1.x) or `message` (2.x), text, or a header."""
    if isinstance(body, bytes):  # influxdb-client hands over the body already decoded
        body = body.decode("utf-8", "replace")
    text = (body or "").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        text = str(data.get("error") or data.get("message") or text)
    if not text and headers is not None:
        text = headers.get("X-Influxdb-Error") or ""
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:300] + "…"


def _status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def http_error(
    target: InfluxTarget,
    status: int,
    headers: Mapping[str, str] | None,
    body: bytes | str | None,
    now: float | None = None,
) -> WriteError:
    """The WriteError for an HTTP answer that is not 2xx."""
    kind = _kind(status)
    retry_after = parse_retry_after(headers.get("Retry-After") if headers else None, now)
    said = target.scrub(_server_message(body, headers))
    where = target.shown_url
    code = _status_text(status)
    v1 = target.api == "v1"
    if kind == "auth" and status == 401:
        if v1:
            message = (
                f"InfluxDB refused user {target.username!r} ({code}) at {where}: "
                "check --influx-username and P1_INFLUX_PASSWORD"
                if target.username
                else f"InfluxDB at {where} requires a user ({code}): "
                "set --influx-username and P1_INFLUX_PASSWORD"
            )
        else:
            message = (
                f"InfluxDB refused the token ({code}) at {where}: check P1_INFLUX_TOKEN"
                if target.token
                else f"InfluxDB at {where} requires a token ({code}): set P1_INFLUX_TOKEN"
            )
    elif kind == "auth":
        what = f"database {target.database!r}" if v1 else f"bucket {target.bucket!r}"
        who = f"user {target.username!r}" if v1 else "the token"
        message = f"{who} may not write to {what} ({code}) at {where}: {said}"
    elif kind == "not_found":
        if v1 and "database not found" in said:
            message = (
                f"InfluxDB has no database {target.database!r} ({code}) at {where}: "
                f'create it (CREATE DATABASE "{target.database}")'
            )
        elif not v1 and ("bucket" in said or "organization" in said):
            message = (
                f"InfluxDB at {where}: {said} ({code}): check --influx-org and --influx-bucket"
            )
        else:
            message = (
                f"no InfluxDB {target.api} write API at {where} ({code}: {said}): "
                "check --influx-url and --influx-api"
            )
    elif kind == "too_large":
        message = f"InfluxDB refused the batch as too large ({code}) at {where}"
    elif kind == "bad_data":
        message = f"InfluxDB rejected the data ({code}) at {where}: {said}"
    elif kind == "throttled":
        wait = f", retry after {retry_after:g} s" if retry_after is not None else ""
        message = f"InfluxDB is throttling writes ({code}{wait}) at {where}"
    else:
        message = f"InfluxDB answered {code} at {where}" + (f": {said}" if said else "")
    return WriteError(message, kind=kind, status=status, retry_after=retry_after)


def tls_error(target: InfluxTarget, reason: str) -> WriteError:
    hint = ": check --influx-ca-file" if "certificate" in reason.lower() else ""
    reason = " ".join(reason.split())
    return WriteError(
        f"TLS error talking to InfluxDB at {target.shown_url} ({reason}){hint}", kind="tls"
    )


def _api_error(target: InfluxTarget, exc: ApiException) -> WriteError:
    if not exc.status:  # influxdb-client reports a TLS failure as status 0, "SSLError\n<reason>"
        return tls_error(target, str(exc.reason).partition("\n")[2] or str(exc.reason))
    return http_error(target, int(exc.status), exc.headers, exc.body)


def transport_error(target: InfluxTarget, exc: BaseException) -> WriteError:
    """The WriteError for a request that got no HTTP answer."""
    where = target.shown_url
    while isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, urllib3.exceptions.SSLError):
        return tls_error(target, str(exc.args[0] if exc.args else exc))
    if isinstance(exc, urllib3.exceptions.NameResolutionError):
        host = urllib.parse.urlsplit(where).hostname
        return WriteError(f"cannot resolve InfluxDB host {host!r} ({where})", kind="connection")
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        reason = str(exc).rpartition(": ")[2] or "refused"
        return WriteError(f"cannot connect to InfluxDB at {where} ({reason})", kind="connection")
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        return WriteError(
            f"no answer from InfluxDB at {where} within {target.timeout:g} s", kind="timeout"
        )
    reason = target.scrub(" ".join(str(exc).split())) or type(exc).__name__
    return WriteError(f"connection to InfluxDB at {where} failed ({reason})", kind="connection")


# --- requests that end: bounded in time and in what they read ------------------------------------

MAX_ANSWER = 64 * 1024  # bytes of an answer's body read at most; InfluxDB's own are far shorter
_current = threading.local()  # `deadline`: the _Deadline of the request this thread is making


class _Deadline:
    """Ends a request once its total time is up, whatever the server trickles: a timer shuts the
    connection's socket down, which wakes the blocked read. Socket timeouts bound each read
    only, and a server sending a byte a second never trips them."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._lock = threading.Lock()
        self._connections: list[urllib3.connection.HTTPConnection] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _current.deadline = None

    def watch(self, connection: urllib3.connection.HTTPConnection) -> None:
        with self._lock:
            self._connections.append(connection)
            if self.expired:
                _cut(connection)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for connection in self._connections:
                _cut(connection)


def _cut(connection: urllib3.connection.HTTPConnection) -> None:
    sock = connection.sock
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            # socket.socket's own shutdown: an SSLSocket's would drop its TLS state under the
            # reading thread.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _WatchedHTTPConnection(urllib3.connection.HTTPConnection):
    """A connection the deadline of the request in progress (in this thread) can cut."""

    def connect(self) -> None:
        self._watch()
        super().connect()
        self._watch()  # cut at once when the time ran out while connecting

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._watch()
        super().request(*args, **kwargs)

    def _watch(self) -> None:
        deadline: _Deadline | None = getattr(_current, "deadline", None)
        if deadline is not None:
            deadline.watch(self)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes  # at most MAX_ANSWER bytes, as text a client can decode
    complete: bool  # False: the server had more to say (an endless body), and was cut off


class BoundedPool(urllib3.PoolManager):
    """The writers' HTTP client: one request at a time, each ending within the target's timeout
    (connecting, sending, the answer's headers and body together) and reading at most
    MAX_ANSWER bytes of an answer. The v2 writer hands it to influxdb-client, so its requests
    are bounded the same way. `last` is the last answer."""

    def __init__(self, target: InfluxTarget) -> None:
        super().__init__(
            num_pools=2,
            maxsize=1,
            cert_reqs="CERT_REQUIRED" if target.verify_tls else "CERT_NONE",
            ca_certs=target.ca_file,
            retries=False,  # the deliverer decides when to try again
            timeout=urllib3.Timeout(total=target.timeout),
        )
        self.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        self.seconds = target.timeout
        self.last: _Answer | None = None

    def urlopen(  # type: ignore[override]
        self, method: str, url: str, redirect: bool = True, **kw: Any
    ) -> urllib3.BaseHTTPResponse:
        kw["preload_content"] = False
        response: urllib3.BaseHTTPResponse | None = None
        with _Deadline(self.seconds) as deadline:
            try:
                response = super().urlopen(method, url, redirect=False, **kw)
                body, complete = _read_at_most(response, MAX_ANSWER)
                if deadline.expired:  # a cut can also look like an answer that ended early
                    raise TimeoutError
                if not complete:
                    response.close()  # the rest stays unread: no other request on this one
            except Exception as exc:  # what a cut socket gives: a reset, an incomplete read
                if response is not None:
                    response.close()
                if deadline.expired:
                    raise TimeoutError(f"no whole answer within {self.seconds:g} s") from exc
                raise
            finally:
                if response is not None:
                    response.release_conn()
        # Text a client can decode: influxdb-client decodes the body as UTF-8, strictly.
        body = body.decode("utf-8", "replace").encode()
        self.last = _Answer(response.status, response.headers, body, complete)
        return urllib3.HTTPResponse(
            body=io.BytesIO(body),  # (bytes, when empty, would leave `data` None)
            headers=response.headers,
            status=response.status,
            reason=response.reason,
            preload_content=True,
            decode_content=False,
            request_url=url,
        )


def _read_at_most(response: urllib3.BaseHTTPResponse, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of the body (decoded), and whether that was all of it."""
    data = bytearray()
    while len(data) <= limit:
        chunk = response.read(16384)
        if not chunk:
            return bytes(data), True
        data += chunk
    return bytes(data[:limit]), False


def _acknowledgement(target: InfluxTarget, answer: _Answer | None) -> WriteError | None:
    """None when a 2xx answer to a write is how InfluxDB acknowledges one: 204, or 200 with an
    empty or JSON body (VictoriaMetrics, proxies). A web page at the URL, a truncated or
    endless body acknowledge nothing: the points stay in the spool."""
    if answer is None:
        return WriteError(f"no answer from {target.shown_url}", kind="server")
    if answer.status == 204:
        return None
    if answer.status == 200 and answer.complete:
        text = answer.body.strip()
        try:
            if not text or json.loads(text) is not None:
                return None
        except ValueError:
            pass
    what = answer.headers.get("Content-Type") or "no content type"
    if not answer.complete:
        what += f", a body over {MAX_ANSWER // 1024} KiB"
    return WriteError(
        f"the server at {target.shown_url} answered {_status_text(answer.status)} ({what}), "
        "not an InfluxDB write acknowledgement: check --influx-url",
        kind="server",
        status=answer.status,
    )


class V1Writer:
    """InfluxDB 1.x: `POST /write?db=&rp=&precision=s`, basic auth when a user is set."""

    def __init__(self, target: InfluxTarget) -> None:
        self.target = target
        self._pool = BoundedPool(target)
        base = target.url.rstrip("/")
        query = {"db": target.database, "precision": "s"}
        if target.retention_policy:
            query["rp"] = target.retention_policy
        self._write_url = f"{base}/write?{urllib.parse.urlencode(query)}"
        self._ping_url = f"{base}/ping"
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if target.username:
            self._headers |= urllib3.util.make_headers(
                basic_auth=f"{target.username}:{target.password or ''}"
            )

    def _request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        try:
            response = self._pool.request(
                method, url, body=body, headers={**self._headers, **(headers or {})}, redirect=False
            )
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise transport_error(self.target, exc) from exc
        if not 200 <= response.status < 300:
            raise http_error(self.target, response.status, response.headers, response.data)
        return response

    def _write(self, body: bytes, headers: dict[str, str] | None = None) -> None:
        self._request("POST", self._write_url, body, headers)
        error = _acknowledgement(self.target, self._pool.last)
        if error is not None:
            raise error

    def write(self, lines: list[str]) -> None:
        body = "\n".join(lines).encode()
        headers = {}
        if self.target.gzip:
            body = gzip.compress(body, compresslevel=5, mtime=0)
            headers["Content-Encoding"] = "gzip"
        self._write(body, headers)

    def check(self) -> str:
        """Ping, then an empty write: 1.x checks the database, the user and the write permission
        before it looks at the (empty) body, and stores nothing."""
        version = self._request("GET", self._ping_url).headers.get("X-Influxdb-Version")
        self._write(b"")
        where = self.target.shown_url
        database = repr(self.target.database)
        if version is None:
            return (
                f"server at {where} accepts writes to database {database} (it does not say it "
                "is InfluxDB, so the credentials may not have been checked)"
            )
        who = f"as user {self.target.username!r}" if self.target.username else "without a user"
        return f"InfluxDB {version} at {where}: database {database} accepts writes {who}"

    def close(self) -> None:
        self._pool.clear()


class V2Writer:
    """InfluxDB 2.x, 3.x and 1.8+ (and VictoriaMetrics): `/api/v2/write` via influxdb-client."""

    def __init__(self, target: InfluxTarget) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        self._api_exception = ApiException
        self._seconds = cast(WritePrecision, WritePrecision.S)
        self.target = target
        self._client = InfluxDBClient(
            url=target.url,
            token=target.token or "",  # empty: no Authorization header (VictoriaMetrics)
            org=target.org,
            timeout=int(target.timeout * 1000),  # milliseconds, for the whole request
            enable_gzip=target.gzip,
            verify_ssl=target.verify_tls,
            ssl_ca_cert=target.ca_file,
            retries=False,  # urllib3 retries would hide failures and stretch the timeout
            debug=False,  # debug logging would print the Authorization header
        )
        # The client's requests go through the bounded pool (the client makes its own, which
        # reads any answer whole and for as long as the server trickles it).
        rest = self._client.api_client.rest_client
        rest.pool_manager.clear()
        self._pool = BoundedPool(target)
        rest.pool_manager = self._pool  # type: ignore[assignment]  # annotated as ProxyManager
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def _post(self, record: list[str] | bytes) -> None:
        target = self.target
        self._pool.last = None
        try:
            self._write_api.write(
                bucket=target.bucket, org=target.org, record=record, write_precision=self._seconds
            )
        except self._api_exception as exc:
            raise _api_error(target, exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise transport_error(target, exc) from exc
        error = _acknowledgement(target, self._pool.last)
        if error is not None:
            raise error

    def write(self, lines: list[str]) -> None:
        self._post(lines)

    def check(self) -> str:
        """Ping, then an empty write. InfluxDB 2.x checks the token, the bucket and the write
        permission before it reads the body, then refuses the empty body (400 "writing requires
        points"): that 400 is the success here. 1.8 answers 204. VictoriaMetrics checks no token
        and answers 204, or 400 for an empty gzip body; its ping names no version."""
        target = self.target
        where = target.shown_url
        try:
            version = self._client.version()
        except self._api_exception as exc:
            raise _api_error(target, exc) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise transport_error(target, exc) from exc
        try:
            self._post(b"")  # the client sends an empty record as an empty body
        except WriteError as exc:
            if exc.kind != "bad_data":
                raise
        bucket = f"bucket {target.bucket!r} (org {target.org!r})"
        if version == "unknown":
            return (
                f"server at {where} accepts writes to {bucket} (it does not say it is InfluxDB, "
                "so the token may not have been checked)"
            )
        token = "with the token" if target.token else "without a token"
        return f"InfluxDB {version} at {where}: {bucket} accepts writes {token}"

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]  # the client leaves it unannotated


def make_writer(target: InfluxTarget) -> Writer:
    return V1Writer(target) if target.api == "v1" else V2Writer(target)
