"""InfluxDB writers: real InfluxDB 1.x (v1 API) and VictoriaMetrics (v2 API), plus a scripted
local server for the answers no real server can be made to give on demand (413, 429, timeouts)."""

from __future__ import annotations

import base64
import email.utils
import json
import math
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from servers import (
    InfluxDB1,
    Reply,
    Request,
    ScriptedHTTP,
    VictoriaMetrics,
    free_port,
    influxdb1,
    victoria_metrics,
)

from agent.core.points import Point, telegram_points
from agent.core.telegram import Decoder
from agent.formats import lineprotocol
from agent.sinks.influx import (
    InfluxTarget,
    V1Writer,
    V2Writer,
    WriteError,
    make_writer,
    parse_retry_after,
)

TOKEN = "tok-3f9a-very-secret"
PASSWORD = "pw-77c1-very-secret"

LINES = [
    "p1,meter=E1 energy_import_kwh=8234.524,power_import_kw=0.25,voltage_l1_v=231.2,"
    "current_l1_a=3.0,repaired=false 1717200000",
    "p1,meter=E1 energy_import_kwh=8234.525,power_import_kw=0.001,voltage_l1_v=229.9,"
    "current_l1_a=0.0,repaired=true 1717200010",
    "p1_mbus,device=G01,kind=gas,meter=E1 gas_m3=246.138 1717196400",
]


def v1_target(url: str, **kw: object) -> InfluxTarget:
    return InfluxTarget(url=url, api="v1", database=str(kw.pop("database", "p1")), **kw)


def v2_target(url: str, **kw: object) -> InfluxTarget:
    return InfluxTarget(url=url, api="v2", org="home", bucket="p1", token=TOKEN, **kw)


def failure(writer: V1Writer | V2Writer, lines: list[str] | None = None) -> WriteError:
    with pytest.raises(WriteError) as caught:
        writer.write(LINES if lines is None else lines)
    return caught.value


BASIC = base64.b64encode(f"writer:{PASSWORD}".encode()).decode()


def assert_clean(message: str) -> None:
    """One line for users, and no secret in it (nor the Basic credential that carries one)."""
    assert "\n" not in message
    for secret in (TOKEN, PASSWORD, BASIC):
        assert secret not in message


# --- real servers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def influx1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    with influxdb1(tmp_path_factory.mktemp("influxdb1")) as server:
        yield server


@pytest.fixture(scope="module")
def influx1_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    with influxdb1(tmp_path_factory.mktemp("influxdb1-auth"), auth=True) as server:
        server.create_database("secure")
        server.query(f"CREATE USER writer WITH PASSWORD '{PASSWORD}'")
        server.query('GRANT WRITE ON "secure" TO writer')
        server.query(f"CREATE USER reader WITH PASSWORD '{PASSWORD}'")
        server.query('GRANT READ ON "secure" TO reader')
        yield server


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    with victoria_metrics(tmp_path_factory.mktemp("vm")) as server:
        yield server


@pytest.mark.integration
@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_v1_points_queryable_with_exact_values(influx1: InfluxDB1, compress: bool) -> None:
    database = f"p1_{compress}"
    influx1.create_database(database)
    writer = make_writer(v1_target(influx1.url, database=database, gzip=compress))
    assert isinstance(writer, V1Writer)
    assert "1.6" in writer.check() and repr(database) in writer.check()
    writer.write(LINES)
    writer.write(LINES[:1])  # the same point again overwrites, it does not add one
    writer.close()
    rows = influx1.query("SELECT * FROM p1", database)
    assert rows == [
        {
            "_measurement": "p1",
            "time": 1717200000,
            "meter": "E1",
            "energy_import_kwh": 8234.524,
            "power_import_kw": 0.25,
            "voltage_l1_v": 231.2,
            "current_l1_a": 3.0,
            "repaired": False,
        },
        {
            "_measurement": "p1",
            "time": 1717200010,
            "meter": "E1",
            "energy_import_kwh": 8234.525,
            "power_import_kw": 0.001,
            "voltage_l1_v": 229.9,
            "current_l1_a": 0.0,
            "repaired": True,
        },
    ]
    # Floats stay floats: a later integer-looking value does not change the field type.
    fields = influx1.query("SHOW FIELD KEYS FROM p1", database)
    assert {row["fieldKey"]: row["fieldType"] for row in fields}["current_l1_a"] == "float"
    [gas] = influx1.query("SELECT * FROM p1_mbus", database)
    assert (gas["time"], gas["gas_m3"], gas["device"], gas["kind"]) == (
        1717196400,
        246.138,
        "G01",
        "gas",
    )


@pytest.mark.integration
def test_v1_missing_database_is_not_found(influx1: InfluxDB1) -> None:
    writer = V1Writer(v1_target(influx1.url, database="absent"))
    error = failure(writer)
    assert (error.kind, error.status) == ("not_found", 404)
    assert str(error) == (
        f"InfluxDB has no database 'absent' (404 Not Found) at {influx1.url}: "
        'create it (CREATE DATABASE "absent")'
    )
    with pytest.raises(WriteError, match="no database 'absent'"):
        writer.check()


@pytest.mark.integration
def test_v1_bad_line_is_bad_data(influx1: InfluxDB1) -> None:
    influx1.create_database("typed")
    writer = V1Writer(v1_target(influx1.url, database="typed"))
    writer.write(["p1,meter=E1 x=1.5 1717200000"])
    error = failure(writer, ['p1,meter=E1 x="text" 1717200001'])  # field type conflict
    assert (error.kind, error.status) == ("bad_data", 400)
    assert "field type conflict" in str(error)


@pytest.mark.integration
def test_v1_awkward_names_and_values_keep_the_point(influx1: InfluxDB1) -> None:
    # A meter named with a trailing backslash or one before a space, and a reading too long
    # for a float: InfluxDB refused whole points of these before.
    influx1.create_database("awkward")
    when = datetime(2024, 6, 1, tzinfo=UTC)
    names = ["north\\", "a\\ b", "GRE5\\\\12341234_A"]
    points = [
        Point("p1", {"meter": name}, {"energy_import_kwh": 1.5, "x": math.inf}, when)
        for name in names
    ]
    decoded = Decoder().decode(
        b"/XYZ5\r\n\r\n1-0:1.8.0(" + b"9" * 400 + b"*kWh)\r\n1-0:1.7.0(1.2*kW)\r\n!"
    )
    points += telegram_points(decoded, meter="long", fields=decoded.fields, time=when)
    writer = V1Writer(v1_target(influx1.url, database="awkward"))
    writer.write(lineprotocol.encode_all(points))
    rows = influx1.query("SELECT * FROM p1", "awkward")
    assert sorted(str(row["meter"]) for row in rows) == sorted(
        ["north/", "a/ b", "GRE5\\\\12341234_A", "long"]
    )
    [long] = [row for row in rows if row["meter"] == "long"]
    assert long["power_import_kw"] == 1.2 and long["energy_import_kwh"] is None


@pytest.mark.integration
def test_v1_authentication(influx1_auth: InfluxDB1) -> None:
    url = influx1_auth.url
    good = V1Writer(v1_target(url, database="secure", username="writer", password=PASSWORD))
    assert good.check() == (
        f"InfluxDB 1.6.7~rc0 at {url}: database 'secure' accepts writes as user 'writer'"
    )
    good.write(LINES)
    assert len(influx1_auth.query("SELECT * FROM p1", "secure")) == 2

    wrong = V1Writer(
        v1_target(url, database="secure", username="writer", password="nope-" + PASSWORD)
    )
    error = failure(wrong)
    assert (error.kind, error.status) == ("auth", 401)
    assert str(error) == (
        f"InfluxDB refused user 'writer' (401 Unauthorized) at {url}: "
        "check --influx-username and P1_INFLUX_PASSWORD"
    )
    with pytest.raises(WriteError) as caught:
        wrong.check()
    assert caught.value.kind == "auth"

    anonymous = failure(V1Writer(v1_target(url, database="secure")))
    assert (anonymous.kind, anonymous.status) == ("auth", 401)
    assert "requires a user" in str(anonymous)

    reader = V1Writer(v1_target(url, database="secure", username="reader", password=PASSWORD))
    refused = failure(reader)
    assert (refused.kind, refused.status) == ("auth", 403)
    assert str(refused).startswith(
        "user 'reader' may not write to database 'secure' (403 Forbidden)"
    )
    for each in (error, anonymous, refused):
        assert_clean(str(each))


@pytest.mark.integration
@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_v2_into_victoria_metrics_exact_values(vm: VictoriaMetrics, compress: bool) -> None:
    meter = f"E{int(compress)}"
    writer = make_writer(v2_target(vm.url, gzip=compress))
    assert isinstance(writer, V2Writer)
    assert "does not say it is InfluxDB" in writer.check()
    writer.write([line.replace("meter=E1", f"meter={meter}") for line in LINES])
    writer.close()
    series = {
        s["metric"]["__name__"]: (s["values"], s["timestamps"])
        for s in vm.export(f'{{meter="{meter}"}}')
    }
    assert series == {
        "p1_energy_import_kwh": ([8234.524, 8234.525], [1717200000000, 1717200010000]),
        "p1_power_import_kw": ([0.25, 0.001], [1717200000000, 1717200010000]),
        "p1_voltage_l1_v": ([231.2, 229.9], [1717200000000, 1717200010000]),
        "p1_current_l1_a": ([3, 0], [1717200000000, 1717200010000]),
        "p1_repaired": ([0, 1], [1717200000000, 1717200010000]),
        "p1_mbus_gas_m3": ([246.138], [1717196400000]),
    }


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_connection_refused(api: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    writer = make_writer(v1_target(url) if api == "v1" else v2_target(url))
    error = failure(writer)
    assert error.kind == "connection"
    assert str(error).startswith(f"cannot connect to InfluxDB at {url} (")
    assert_clean(str(error))


# --- a scripted server: every answer InfluxDB or a proxy in front of it may give ------------------


def echo_auth(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> object:
    """Answer `status`, with the request's Authorization header in the body, as a careless
    proxy might: the message must still not show the secret."""

    def respond(request: Request) -> Reply:
        if request.path.startswith("/ping"):
            return 204, {}, b""
        said = body or json.dumps({"error": f"denied {request.headers.get('Authorization')}"})
        answer = dict(headers or {})
        if answer.get("Retry-After") == IN_30_S:
            answer["Retry-After"] = email.utils.formatdate(time.time() + 30, usegmt=True)
        return status, answer, said.encode() if isinstance(said, str) else said

    return respond


IN_30_S = "an HTTP date 30 s from the answer"

CASES = [
    (413, {}, b'{"error":"Request Entity Too Large"}', "too_large", None),
    (429, {"Retry-After": "7"}, b"", "throttled", 7.0),
    (503, {"Retry-After": IN_30_S}, b"", "throttled", 30.0),
    (503, {}, b"", "throttled", None),
    (500, {}, b'{"error":"engine: cache-max-memory-size exceeded"}', "server", None),
    (502, {}, b"<html>Bad Gateway</html>", "server", None),
    (400, {}, b'{"error":"partial write: unable to parse \'p1 x=\'"}', "bad_data", None),
    (422, {}, b'{"code":"unprocessable entity","message":"beyond retention"}', "bad_data", None),
    (401, {}, b"", "auth", None),
    (403, {}, b"", "auth", None),
    (404, {}, b'{"code":"not found","message":"bucket \\"p1\\" not found"}', "not_found", None),
    (301, {"Location": "https://elsewhere/"}, b"", "server", None),
]


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize(("status", "headers", "body", "kind", "retry_after"), CASES)
def test_status_classification_unit(
    api: str,
    status: int,
    headers: dict[str, str],
    body: bytes,
    kind: str,
    retry_after: float | None,
) -> None:
    with ScriptedHTTP(echo_auth(status, headers, body)) as server:
        target = (
            v1_target(server.url, username="writer", password=PASSWORD)
            if api == "v1"
            else v2_target(server.url)
        )
        writer = make_writer(target)
        error = failure(writer)
        assert len(server.requests) == 1  # no hidden retry, no redirect followed
    assert (error.kind, error.status) == (kind, status)
    if retry_after is None:
        assert error.retry_after is None
    else:
        assert error.retry_after is not None
        assert retry_after - 5 < error.retry_after <= retry_after
    message = str(error)
    assert str(status) in message and server.url in message
    assert_clean(message)


def test_v2_check_on_an_influxdb2_like_server() -> None:
    """InfluxDB 2.x checks token, bucket and permission before it refuses an empty body with
    400 "writing requires points" (http/points/points_parser.go): that answer means all is well."""

    def influxdb2(token_ok: bool) -> object:
        def respond(request: Request) -> Reply:
            if request.path == "/ping":
                return 204, {"X-Influxdb-Version": "v2.7.11"}, b""
            if request.headers.get("Authorization") != f"Token {TOKEN}" or not token_ok:
                return 401, {}, b'{"code":"unauthorized","message":"unauthorized access"}'
            assert request.body == b""
            return 400, {}, b'{"code":"invalid","message":"writing requires points"}'

        return respond

    with ScriptedHTTP(influxdb2(True)) as server:
        assert V2Writer(v2_target(server.url)).check() == (
            f"InfluxDB v2.7.11 at {server.url}: bucket 'p1' (org 'home') accepts writes "
            "with the token"
        )
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(server.requests[-1].path).query)
        assert query == {"org": ["home"], "bucket": ["p1"], "precision": ["s"]}
    with ScriptedHTTP(influxdb2(False)) as server:
        with pytest.raises(WriteError) as caught:
            V2Writer(v2_target(server.url)).check()
        assert str(caught.value) == (
            f"InfluxDB refused the token (401 Unauthorized) at {server.url}: check P1_INFLUX_TOKEN"
        )


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "plain"])
def test_request_shape(api: str, compress: bool) -> None:
    with ScriptedHTTP(lambda request: (204, {}, b"")) as server:
        if api == "v1":
            target = v1_target(
                server.url,
                username="writer",
                password=PASSWORD,
                retention_policy="year",
                gzip=compress,
            )
        else:
            target = v2_target(server.url, gzip=compress)
        make_writer(target).write(LINES)
        [request] = server.requests
    assert request.body.decode() == "\n".join(LINES)
    assert request.headers.get("Content-Encoding") == ("gzip" if compress else None)
    path, _, query = request.path.partition("?")
    if api == "v1":
        assert path == "/write"
        assert urllib.parse.parse_qs(query) == {"db": ["p1"], "rp": ["year"], "precision": ["s"]}
        assert request.headers["Authorization"].startswith("Basic ")
    else:
        assert path == "/api/v2/write"
        assert urllib.parse.parse_qs(query) == {
            "org": ["home"],
            "bucket": ["p1"],
            "precision": ["s"],
        }
        assert request.headers["Authorization"] == f"Token {TOKEN}"


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_timeout(api: str) -> None:
    def slow(request: Request) -> Reply:
        time.sleep(1.0)
        return 204, {}, b""

    with ScriptedHTTP(slow) as server:
        target = (
            v1_target(server.url, timeout=0.2)
            if api == "v1"
            else v2_target(server.url, timeout=0.2)
        )
        error = failure(make_writer(target))
    assert error.kind == "timeout"
    assert str(error) == f"no answer from InfluxDB at {server.url} within 0.2 s"


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("api", ["v1", "v2"])
def test_tls_verification(api: str, self_signed: tuple[Path, Path]) -> None:
    make = v1_target if api == "v1" else v2_target
    with ScriptedHTTP(lambda request: (204, {}, b""), tls=self_signed) as server:
        error = failure(make_writer(make(server.url)))
        assert error.kind == "tls"
        assert "certificate" in str(error) and "--influx-ca-file" in str(error)
        make_writer(make(server.url, ca_file=str(self_signed[0]))).write(LINES)
        make_writer(make(server.url, verify_tls=False)).write(LINES)
        assert len(server.requests) == 2


def test_retry_after_parsing() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 90, usegmt=True), now) == 90.0
    assert parse_retry_after(email.utils.formatdate(now - 90, usegmt=True), now) == 0.0
    for bad in (None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2024"):
        assert parse_retry_after(bad, now) is None


def test_target_hides_secrets() -> None:
    target = InfluxTarget(
        url="https://user:urlpass@influx.example:8086/",
        token=TOKEN,
        password=PASSWORD,
        username="writer",
    )
    text = repr(target)
    assert TOKEN not in text and PASSWORD not in text
    assert "token='****'" in text and "password='****'" in text
    assert "token=None" in repr(InfluxTarget(url="http://x"))
    assert target.shown_url == "https://influx.example:8086"
    with pytest.raises(ValueError, match="unknown InfluxDB API"):
        InfluxTarget(url="http://x", api="v3")
