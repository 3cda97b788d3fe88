"""Hardening against a careless configuration and a bad day (issue 12, items 2, 4, 6, 8, 10, 11
and 12's SIGHUP and FIFO).

The agent and the CLI run as users run them (processes); what the items found is done to them
for real: secrets saved with CRLF, a real InfluxDB 1.x with authentication, a data directory on
a disk that fills up (faultkit.SpoolDisk), a second agent on the same directory, a store damaged
as a power cut damages one and a store deleted under the running agent, configuration files with
the wrong types, command-line input that used to raise, SIGHUP mid-stream and a FIFO nobody
writes to yet. Each test records its figure for RELIABILITY.md's Hardening table.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from agentproc import (
    AgentProcess,
    run_cli,
    spawn_agent,
    spooled_lines,
    start_agent,
    stop_cleanly,
    store_lines,
    store_rows,
    wait_counted,
    wait_for,
)
from faultkit import (
    METER,
    START,
    Fields,
    MeterStream,
    SpoolDisk,
    expected_p1,
    landed_p1,
    record_hardening,
)
from meters import TcpMeter
from servers import free_port, influxdb1

from agent.formats.lineparse import parse
from agent.sinks.spool import Spool

pytestmark = pytest.mark.integration

RATE = 40.0  # telegrams a second on the wire; the meter's clock still moves 1 s per telegram
ROOT = Path(__file__).resolve().parents[1]


def stored_p1(data_dir: Path) -> dict[int, Fields]:
    """The `p1` points of METER in an agent's store, by time, as InfluxDB would hold them."""
    points: dict[int, Fields] = {}
    for line in store_lines(data_dir):
        point = parse(line)
        if point.measurement == "p1" and point.tags.get("meter") == METER:
            assert point.time is not None
            points.setdefault(point.time, {}).update(point.fields)
    return points


def id_lines(data_dir: Path) -> list[tuple[int, str]]:
    """(id, line) of every point in an agent's store, in id order."""
    return [(row.id, row.line) for row in store_rows(data_dir)]


def records(log: str) -> list[dict[str, object]]:
    """The agent's JSON log lines."""
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    """A CLI that refused: exit 2, one stderr line `p1-agent: error: …`, no traceback."""
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert err.startswith("p1-agent: error: ") and err.count("\n") == 1, err
    return err


def wait_committed(agent: AgentProcess, lines: int, timeout: float = 60.0) -> None:
    wait_for(
        lambda: agent.value("p1_spool_points") == lines,
        timeout=timeout,
        what=f"{lines} points in the store",
        proc=agent.proc,
    )


# --- item 2: secrets saved with CRLF, URL passwords with `/`, `@` or no user --------------------

USER = "p1writer"
PASSWORD = "pw-7c1e0b5a93"
TOKEN = "tok-51f0c2d8e6a4"
URL_PASSWORDS = {"no user": "nouser-5a2d", "@": "at-9f3e@sign-4d7a", "/": "sl-2b8c/ash-6e1f"}


def shown_secrets(lines: list[str]) -> list[str]:
    """Lines that show a secret, or any piece of a URL password a naive mask would leave."""
    pieces = [PASSWORD, TOKEN]
    for password in URL_PASSWORDS.values():
        pieces += re.split("[@/]", password)
    return [line for line in lines if any(piece in line for piece in pieces)]


def test_secrets_with_line_ends_are_trimmed_and_never_shown(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    stream = MeterStream()
    meter = TcpMeter()
    urls = {
        what: f"socket://{'' if what == 'no user' else 'p1'}:{pw}@127.0.0.1:{free_port()}"
        for what, pw in URL_PASSWORDS.items()
    }
    with influxdb1(tmp_path / "influx", auth=True) as influx:
        influx.create_database("p1")
        influx.query(f"CREATE USER {USER} WITH PASSWORD '{PASSWORD}'")
        influx.query(f'GRANT WRITE ON "p1" TO {USER}')
        env = {
            "P1_INFLUX_URL": influx.url,
            "P1_INFLUX_API": "v1",
            "P1_INFLUX_DATABASE": "p1",
            "P1_INFLUX_USERNAME": USER,
            "P1_INFLUX_PASSWORD": PASSWORD + "\r",  # from an environment file saved with CRLF
            "P1_LOG_LEVEL": "debug",
        }
        unreachable = [f"--source=u{i}={urls[what]}" for i, what in enumerate(["no user", "@"])]
        agent = start_agent(
            tmp_path / "data", f"--source={METER}={meter.url}", *unreachable, env=env
        )
        try:
            conn = meter.accept()
            stream.send(conn.sendall, 40, RATE)
            lines = spooled_lines(stream.results())
            wait_for(
                lambda: agent.value("p1_influx_points_written_total") == lines,
                timeout=60,
                what=f"{lines} points delivered with the password",
                proc=agent.proc,
            )
        finally:
            log = agent.stop()
            meter.close()
        landed = landed_p1(influx, "p1")
        data = str(tmp_path / "data")
        # check-config: the same password, every kind of URL password, then v2 tokens.
        checks = [
            run_cli("check-config", "--wait", "1", f"--source={urls['@']}", env=env),
            run_cli("check-config", "--wait", "1", f"--source={urls['/']}", env=env),
        ]
        token_file = tmp_path / "token"
        token_file.write_bytes(f"{TOKEN}\r\nsecond line\r\n".encode())
        v2 = {"P1_INFLUX_URL": influx.url, "P1_INFLUX_ORG": "home", "P1_DATA_DIR": data}
        checks += [
            run_cli("check-config", "--wait", "1", env={**v2, "P1_INFLUX_TOKEN": TOKEN + "\r"}),
            run_cli(
                "check-config", "--wait", "1", env={**v2, "P1_INFLUX_TOKEN_FILE": str(token_file)}
            ),
        ]
    said = [
        line
        for check in checks
        for line in (check.stdout + check.stderr).decode().splitlines()
        if line.strip()
    ]
    leaks = shown_secrets([*log.splitlines(), *said])
    expected = expected_p1(stream.results())
    record_hardening(
        request.node.nodeid,
        item=2,
        checked="a v1 password with a trailing CR (an env file saved with CRLF) is trimmed and "
        "delivers; a v2 token with a CR is trimmed, a token file of two lines refused in a line "
        "that does not show it; URL passwords with no user, an `@` or a `/` masked in the log "
        "and check-config",
        figure=f"{len(landed)} of {len(expected)} telegrams landed in InfluxDB 1.x (auth on); "
        f"{len(leaks)} of {len(log.splitlines()) + len(said)} log and check-config lines "
        "showed a secret",
    )
    assert agent.proc.returncode == 0 and "Traceback" not in log, log
    assert landed == expected
    assert leaks == []
    for url in ("socket://:****@127.0.0.1", "socket://p1:****@127.0.0.1"):
        assert f"cannot open {url}" in log  # the URL passwords were in error lines, masked
    assert f"accepts writes as user '{USER}'" in checks[0].stdout.decode()
    assert "socket://p1:****@127.0.0.1" in checks[1].stderr.decode()  # refused, masked
    assert b"Invalid header" not in checks[2].stdout + checks[2].stderr
    assert b"FAILED: no InfluxDB v2 write API" in checks[2].stdout  # the request reached 1.x
    err = one_line_error(checks[3])
    assert str(token_file) in err and "control character" in err


# --- item 4: a full disk without InfluxDB -------------------------------------------------------

FULL_SECONDS = 12.0
AGE = 25.0  # s: the store's age bound, due for the first telegrams while the disk is full


def test_a_full_disk_without_influxdb_keeps_the_agent_and_its_telegrams(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    disk = SpoolDisk(tmp_path / "data")
    stream = MeterStream()
    meter = TcpMeter()
    source = f"{METER}={meter.url}"
    agent = start_agent(
        disk.data_dir, "--source", source, "--spool-max-age", f"{AGE:g}s", prefix=disk.prefix()
    )
    disk.pid = agent.proc.pid
    # The agent's own view of its disk. SQLite resolves the /proc/PID/root link to this
    # process's root, so the store is read from a copy (the WAL after the file it belongs to).
    store = Path(f"/proc/{agent.proc.pid}/root{disk.data_dir}")
    copy = tmp_path / "copy"
    copy.mkdir()

    def evicted() -> int:  # telegrams: a p1 and a p1_mbus point each
        return int(agent.value("p1_spool_evicted_points_total", reason="age")) // 2

    try:
        conn = meter.accept()
        stream.send(conn.sendall, 20, RATE)
        first = time.monotonic()
        wait_committed(agent, spooled_lines(stream.results()))
        time.sleep(max(0.0, first + AGE - 3 - time.monotonic()))
        disk.fill()  # the first 20 are due for eviction 3 s from now
        full_since = time.monotonic()
        stream.send(conn.sendall, int(FULL_SECONDS * 10), rate=10)
        wait_counted(agent, len(stream.results()))
        wait_for(lambda: agent.value("p1_spool_write_errors_total") > 0, proc=agent.proc)
        full_for = time.monotonic() - full_since
        errors = agent.value("p1_spool_write_errors_total")
        held = len(stream.times) - agent.value("p1_spool_points") // 2
        disk.free()
        stream.send(conn.sendall, 20, RATE)
        results = stream.results()
        wait_counted(agent, len(results))
        later = spooled_lines(results) - spooled_lines(results[:20])
        wait_for(lambda: evicted() == 20, proc=agent.proc)
        wait_committed(agent, later)  # the rest is due only AGE s after the disk filled
        for name in ("store.sqlite", "store.sqlite-wal", "store.journal"):
            shutil.copy(store / name, copy)
        stored = stored_p1(copy)
        assert evicted() == 20  # nothing went while the store was read
        dropped = agent.value("p1_spool_dropped_telegrams_total")
    finally:
        log = agent.stop()
        meter.close()
    expected = expected_p1(results[20:])
    kept = sum(stored.get(stamp) == fields for stamp, fields in expected.items())
    record_hardening(
        request.node.nodeid,
        item=4,
        checked="no InfluxDB, the store's disk full (ENOSPC) while telegrams arrive and the age "
        f"bound ({AGE:g} s) falls due for the first ones, then space returns ({disk.method}): "
        "the agent keeps running, counts the failed commits, holds the telegrams and commits "
        "them, then enforces the bound; exits 0",
        figure=f"ran {full_for:.0f} s on a full disk ({int(errors)} failed commits, {held:.0f} "
        f"telegrams held); {kept} of {len(expected)} telegrams kept, the 20 older than the "
        "bound evicted once space returned and counted",
    )
    assert agent.proc.returncode == 0 and "Traceback" not in log, log
    assert "cannot read or bound the spool; trying again" in log  # the bound met the full disk
    assert full_for >= FULL_SECONDS * 0.9 and held > 0 and dropped == 0
    assert stored == expected and kept == len(stream.times) - 20


# --- item 6: two agents on one data directory ---------------------------------------------------


def test_a_second_agent_on_the_same_data_directory_is_refused(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    data = tmp_path / "data"
    first = start_agent(data, "--source", "simulator")
    second = spawn_agent(data, "--source", "simulator")
    started = time.monotonic()
    try:
        _, err = second.proc.communicate(timeout=20)
        refused_in = time.monotonic() - started
        wait_for(lambda: first.value("p1_telegrams_total") >= 2, proc=first.proc)
        first.kill()  # the kernel lets go of the lock of a process that dies
        third = start_agent(data, "--source", "simulator")
        log = stop_cleanly(third)
    finally:
        for agent in (first, second):
            if agent.proc.poll() is None:
                agent.kill()
    said = err.decode()
    record_hardening(
        request.node.nodeid,
        item=6,
        checked="a second agent on a running agent's data directory refuses with one line "
        "naming it; the first goes on; after the first is killed (SIGKILL) a new one starts",
        figure=f"second agent refused in {refused_in:.1f} s; the next started after SIGKILL",
    )
    assert second.proc.returncode == 2, said
    assert said.startswith("p1-agent: error: ") and said.count("\n") == 1, said
    assert f"data directory {data} is in use by another agent (pid {first.proc.pid})" in said
    assert '"event": "started"' in log


# --- item 8: a damaged store, a store deleted under the agent -----------------------------------


def damage(path: Path, how: str) -> str:
    """Garbage where a power cut on an SD card leaves it: the header, or a page inside."""
    size = path.stat().st_size
    data = bytearray(path.read_bytes())
    garbage = random.Random(how)
    if how == "header":
        start, end = 0, 100
    else:
        start = (size // 4096 // 2) * 4096  # a page in the middle of the points
        end = start + 4096
    data[start:end] = bytes(garbage.randrange(256) for _ in range(end - start))
    path.write_bytes(data)
    return f"bytes {start} to {end} of {size}"


@pytest.mark.parametrize("how", ["header", "page"])
def test_a_damaged_store_is_moved_aside_and_the_agent_starts_anew(
    how: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    data = tmp_path / "data"
    before, after = MeterStream(), MeterStream(start=START.replace(year=2025))
    for stream, name, count in ((before, "before.log", 300), (after, "after.log", 30)):
        with (tmp_path / name).open("wb") as capture:
            stream.send(capture.write, count)
    # A first agent reads a capture into its store and ends with it (its stop folds the journal:
    # the store file holds every point when it is damaged).
    first = spawn_agent(data, "--source", f"{METER}=file:{tmp_path / 'before.log'}")
    assert first.proc.wait(timeout=60) == 0
    original = id_lines(data)
    assert len(original) == spooled_lines(before.results())
    what = damage(data / "store.sqlite", how)
    started = time.monotonic()
    second = spawn_agent(data, "--source", f"{METER}=file:{tmp_path / 'after.log'}")
    _, err = second.proc.communicate(timeout=60)
    took = time.monotonic() - started
    log = err.decode()
    said = [r for r in records(log) if str(r["event"]).startswith("the store was damaged")]
    rows = id_lines(data) if second.proc.returncode == 0 else []
    old = set(original)
    kept = [row for row in rows if row in old]
    salvaged = said[0]["salvaged"] if said else None
    record_hardening(
        request.node.nodeid,
        item=8,
        checked=f"a store damaged in its {how} (random bytes, as a power cut on an SD card "
        "leaves): moved aside (with its WAL) in a log line that names it; the agent starts on "
        "a new store holding the points that still read, in their order",
        figure=f"{what} overwritten: agent up and done in {took:.1f} s; {len(kept)} of "
        f"{len(original)} points still read and kept",
    )
    assert second.proc.returncode == 0 and "Traceback" not in log, log
    moved = Path(str(said[0]["moved_to"]))
    assert moved.is_file() and moved.parent == data and str(moved) in str(said[0]["event"])
    assert salvaged == len(kept) and kept == rows[: len(kept)]  # the old first, in order
    stored = stored_p1(data)
    new = {t: f for t, f in stored.items() if t >= after.times[0]}
    assert new == expected_p1(after.results())
    assert len(rows) - len(kept) == spooled_lines(after.results())
    if how == "page":  # one page of about 80 lost: most of the points still read
        assert len(kept) >= len(original) * 0.8
    else:  # SQLite reads nothing without its header
        assert kept == []


# With the journal (the default) the points of the last minutes are in the journal, which stays,
# and the open file holds only what was folded (nothing yet here); with a commit per telegram it
# holds every point, and the file written anew from it must too.
@pytest.mark.parametrize(
    "mode", [(), ("--sync-interval", "0")], ids=["journal", "commit-per-telegram"]
)
def test_a_store_deleted_under_the_running_agent_is_written_anew(
    mode: tuple[str, ...], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    data = tmp_path / "data"
    stream = MeterStream()
    meter = TcpMeter()
    agent = start_agent(data, "--source", f"{METER}={meter.url}", *mode)
    try:
        conn = meter.accept()
        stream.send(conn.sendall, 30, RATE)
        wait_committed(agent, spooled_lines(stream.results()))
        for path in data.glob("store.sqlite*"):  # `rm data/store.sqlite*`
            path.unlink()
        deleted = time.monotonic()
        wait_for(lambda: (data / "store.sqlite").exists(), timeout=20, proc=agent.proc)
        noticed = time.monotonic() - deleted
        stream.send(conn.sendall, 30, RATE)
        wait_committed(agent, spooled_lines(stream.results()))
    finally:
        log = agent.stop()
        meter.close()
    expected = expected_p1(stream.results())
    stored = stored_p1(data)
    record_hardening(
        request.node.nodeid,
        item=8,
        checked="the store (and its WAL) deleted while the agent runs: noticed, written anew "
        "from the open file with every point it held, then the stream goes on into it",
        figure=f"noticed and rebuilt in {noticed:.1f} s; {len(stored)} of {len(expected)} "
        "telegrams in the store afterwards",
    )
    assert agent.proc.returncode == 0 and "Traceback" not in log, log
    assert "was deleted or replaced while the agent ran" in log
    assert stored == expected
    assert (data / "store.sqlite").stat().st_mode & 0o077 == 0


# --- item 10: configuration types and bounds at start, exceptions in JSON logs ------------------


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ('[[source]]\nurl = "simulator"\nname = 5\n', {}, "name must be a string, not a number"),
        ("data_dir = [1, 2]\n", {}, "data_dir must be a string, not an array"),
        ("", {"P1_INFLUX_URL": "http://127.0.0.1:8086", "P1_INFLUX_TIMEOUT": "0"}, "from 0.1s"),
        ("", {"P1_INFLUX_URL": "http://127.0.0.1:99999"}, "has no valid port"),
        ("", {"P1_INFLUX_URL": "http://x:1", "P1_INFLUX_BATCH_SIZE": "10000000000"}, "to 100000"),
    ],
)
def test_a_bad_setting_is_one_line_at_start(
    toml: str, env: dict[str, str], message: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config = tmp_path / "p1.toml"
    config.write_text(toml)
    started = time.monotonic()
    data = {"P1_METRICS_ADDRESS": f"127.0.0.1:{free_port()}"}
    if "data_dir" not in toml:
        data["P1_DATA_DIR"] = str(tmp_path / "data")
    result = run_cli("run", "--config", str(config), env={**data, **env}, timeout=20, cwd=tmp_path)
    took = time.monotonic() - started
    setting = toml.strip().replace("\n", " ") or " ".join(f"{k}={v}" for k, v in env.items())
    record_hardening(
        request.node.nodeid,
        item=10,
        checked=f"`p1-agent run` with {setting}: one line at start, nothing created",
        figure=f"refused in {took:.1f} s, exit {result.returncode}",
    )
    assert message in one_line_error(result)
    assert not any(tmp_path.glob("*[[]*")) and not (tmp_path / "data" / "store.sqlite").exists()


BROKEN_READER = """
import sys
from pathlib import Path
from agent.config import Settings
from agent.logs import configure, register_secret
from agent.run import Agent

class Broken:  # a source with a bug: the reader thread dies of it
    name, connected, reconnects, bytes_total, last_error, hint = "broken", True, 0, 0, None, None
    def read(self): raise RuntimeError("a bug, beside the token tok-5e1d9a0c")
    def telegram_seen(self): pass
    def close(self): pass

configure("info", json=True)
register_secret("tok-5e1d9a0c")
agent = Agent(Settings(data_dir=Path(sys.argv[1])))
agent.readers[0].source = Broken()
agent.start()
agent.wait()
agent.shutdown()
"""


def test_json_logs_carry_the_traceback_of_an_unexpected_error(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    run = [sys.executable, "-c", BROKEN_READER, str(tmp_path / "data")]
    log = subprocess.run(run, capture_output=True, timeout=60, cwd=ROOT).stderr.decode()
    (said,) = [r for r in records(log) if r["event"] == "reader stopped by an unexpected error"]
    exception = str(said.get("exception", ""))
    record_hardening(
        request.node.nodeid,
        item=10,
        checked="an unexpected error (a reader's bug) in the JSON log: the exception's text and "
        "traceback in the line, a registered secret in them masked",
        figure=f"{len(exception.splitlines())} lines of traceback in the record, "
        f"secret shown {log.count('tok-5e1d9a0c')} times",
    )
    assert exception.startswith("Traceback (most recent call last):")
    assert exception.endswith("RuntimeError: a bug, beside the token ****")
    assert "tok-5e1d9a0c" not in log


# --- item 11: command-line input that used to raise ---------------------------------------------

CLOSED_STDOUT = ["sh", "-c", 'exec "$@" >&-', "sh"]


@pytest.mark.parametrize(
    ("args", "closed", "message"),
    [
        (["simulate", "--interval", "inf", "--count", "2"], False, "interval inf s is not"),
        (["simulate", "--interval", "1e308", "--count", "2"], False, "interval 1e+308 s is not"),
        (["simulate", "--interval", "nan", "--count", "2"], False, "interval nan s is not"),
        (
            ["simulate", "--start", "9999-12-31T23:59:59+00:00", "--count", "2"],
            False,
            "is not in 2000 to 2099",
        ),
        (["healthcheck", "--metrics-address", "a b:80"], False, "is not a host name or IP"),
        (["replay", "-", "--format", "jsonl"], True, "stdout is closed: give --output FILE"),
        (["simulate", "--count", "2"], True, "stdout is closed: give --output FILE"),
    ],
)
def test_cli_input_that_used_to_raise_is_one_line(
    args: list[str], closed: bool, message: str, request: pytest.FixtureRequest
) -> None:
    result = run_cli(*args, prefix=CLOSED_STDOUT if closed else [], stdin=b"")
    said = result.stderr.decode().strip()
    record_hardening(
        request.node.nodeid,
        item=11,
        checked=f"`p1-agent {' '.join(args)}`" + (" with stdout closed" if closed else ""),
        figure=f"exit {result.returncode}: {said}",
    )
    assert message in one_line_error(result)


def test_export_with_stdout_closed_is_one_line(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "store.sqlite")
    spool.append("E1", 1717200000.0, ["p1,meter=E1 x=1.5 1717200000"])
    spool.close()
    args = ("export", "--data-dir", str(tmp_path), "--format", "line-protocol")
    result = run_cli(*args, prefix=CLOSED_STDOUT, stdin=b"")
    assert "stdout is closed: give --output FILE" in one_line_error(result)


def test_simulate_ends_where_the_meter_clock_does(request: pytest.FixtureRequest) -> None:
    result = run_cli("simulate", "--start", "2099-12-31T22:59:50+00:00", timeout=30)
    telegrams = result.stdout.count(b"/ISK5")
    said = result.stderr.decode()
    record_hardening(
        request.node.nodeid,
        item=11,
        checked="`p1-agent simulate` run forever from 10 s before the meter clock's last "
        "second (2099-12-31 23:59:59 local; its years have two digits)",
        figure=f"exit {result.returncode} after {telegrams} telegrams: {said.strip()}",
    )
    assert result.returncode == 0 and "Traceback" not in said, said
    assert telegrams == 10 and said == "simulate: the meter's clock ends with 2099\n"


# --- item 12: SIGHUP, a FIFO without a writer ---------------------------------------------------


def test_sighup_stops_the_agent_in_order(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    data = tmp_path / "data"
    stream = MeterStream()
    meter = TcpMeter()
    agent = start_agent(data, "--source", f"{METER}={meter.url}")
    halt = threading.Event()
    conn = meter.accept()

    def send() -> None:  # the meter goes on until the agent hangs up
        while not halt.is_set():
            try:
                stream.send(conn.sendall, 1)
            except OSError:
                return
            time.sleep(1 / RATE)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        wait_for(lambda: agent.value("p1_telegrams_total") >= 60, proc=agent.proc)
        agent.proc.send_signal(signal.SIGHUP)  # mid-stream: telegrams keep arriving
        _, err = agent.proc.communicate(timeout=30)
    finally:
        halt.set()
        sender.join()
        meter.close()
    log = err.decode()
    said = {str(r["event"]): r for r in records(log)}
    counts = re.search(r"valid (\d+), repaired (\d+)", str(said.get("stopped", {}).get("summary")))
    accepted = int(counts[1]) + int(counts[2]) if counts else -1
    telegrams = [r for r in stream.results() if r.telegram is not None][:accepted]
    stored = stored_p1(data)
    record_hardening(
        request.node.nodeid,
        item=12,
        checked="SIGHUP while telegrams arrive: the agent stops in order (readers, commit, store "
        "closed), says so and exits 0; every telegram it accepted is in the store",
        figure=f"exit {agent.proc.returncode}; {len(stored)} of {accepted} accepted telegrams "
        f"in the store ({len(stream.times)} sent)",
    )
    assert agent.proc.returncode == 0 and "Traceback" not in log, log
    assert said["stopping"]["signal"] == "SIGHUP"
    assert accepted >= 60 and stored == expected_p1(telegrams)


def test_a_fifo_without_a_writer_is_waited_for(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    fifo = tmp_path / "p1.fifo"
    os.mkfifo(fifo)
    data = tmp_path / "data"
    stream = MeterStream()
    started = time.monotonic()
    agent = spawn_agent(data, "--source", f"{METER}=file:{fifo}")
    try:
        wait_for(lambda: agent.scrape() is not None, what="the agent's /metrics", proc=agent.proc)
        up = time.monotonic() - started
        waiting = agent.value("p1_source_connected", meter=METER)
        check = run_cli("check-config", "--wait", "2", f"--source=file:{fifo}", timeout=30)
        with fifo.open("wb") as writer:  # the writer comes; its end is the source's end
            stream.send(writer.write, 20)
        _, err = agent.proc.communicate(timeout=60)
    finally:
        if agent.proc.poll() is None:
            agent.kill()
    log = err.decode()
    stored = stored_p1(data)
    expected = expected_p1(stream.results())
    record_hardening(
        request.node.nodeid,
        item=12,
        checked="`file:` on a FIFO nobody writes to: the agent starts, logs that it waits (and "
        "check-config says so), then reads the writer's telegrams to its end",
        figure=f"agent up in {up:.1f} s without a writer; {len(stored)} of {len(expected)} "
        "telegrams read once one came",
    )
    assert agent.proc.returncode == 0 and "Traceback" not in log, log
    assert f"{fifo} is a FIFO; waiting for a writer" in log and waiting == 0
    assert f"no writer on the FIFO {fifo} yet" in check.stdout.decode()
    assert stored == expected
