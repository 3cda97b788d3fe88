"""The spool's journal (`--sync-interval`): a compact record per telegram instead of a SQLite
commit, for SD cards. What it must keep: every accepted telegram survives SIGKILL, acknowledged
rows are not sent again, a torn tail costs only itself, and the store reads as before."""

from __future__ import annotations

import errno
import io
import os
import signal
import sqlite3
from contextlib import nullcontext
from pathlib import Path

import pytest
from agentproc import start_agent, stop_cleanly, store_lines, wait_for
from faultkit import METER, MeterStream, expected_p1, landed_p1
from meters import TcpMeter
from servers import influxdb1
from test_spool import killed_after_appending, line, sql_totals

from agent.export import export
from agent.formats.lineparse import parse
from agent.sinks import journal
from agent.sinks.spool import Spool, SpoolError

SYNC = 60.0


def journaled(path: Path, **bounds: float) -> Spool:
    return Spool(path, sync_interval=SYNC, **bounds)


CHILD = """
import sys
from pathlib import Path
from agent.sinks.spool import Spool
spool = Spool(Path(sys.argv[1]), sync_interval=60.0)
for n in range(50):
    spool.append("A", float(n), [sys.argv[2] % n, sys.argv[3] % n])
print("appended", flush=True)
sys.stdin.read()  # wait to be killed, nothing folded into SQLite yet
"""


def test_journaled_appends_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    killed_after_appending(CHILD, str(path), "p1,meter=A a=%d 1", "p1_mbus,meter=A b=%d 1")
    assert sql_totals(path) == ({}, 0)  # in the journal only
    want = [text % n for n in range(50) for text in ("p1,meter=A a=%d 1", "p1_mbus,meter=A b=%d 1")]
    spool = Spool(path)  # any start folds a journal it finds
    assert list(spool.lines()) == want
    spool.close()
    with sqlite3.connect(path) as db:
        stored = [value for (value,) in db.execute("SELECT line FROM points ORDER BY id")]
    # Folded packed, but for each series' first line, its dictionary.
    assert stored[:2] == want[:2] and all(isinstance(v, bytes) for v in stored[2:])
    assert not journal.journal_path(path).exists()


def test_records_are_compact(tmp_path: Path) -> None:
    """Lines take a fraction of their text in the journal and in the store, once a series'
    first line is its dictionary."""
    spool = journaled(tmp_path / "store.sqlite")
    base = (
        "p1,meter=E0044007900000119 energy_import_t1_kwh={:.3f},energy_import_t2_kwh=4104.662,"
        "power_import_kw={:.3f},voltage_l1_v=230.3,voltage_l2_v=230.4,repaired=false {}"
    )
    spool.append("E", 0.0, [base.format(4129.862, 0.1, 1796131393)])
    first = journal.journal_path(spool.path).stat().st_size
    for n in range(1, 101):
        spool.append("E", float(n), [base.format(4129.862 + n / 1000, n / 100, 1796131393 + n)])
    rest = (journal.journal_path(spool.path).stat().st_size - first) / 100
    assert rest < len(base) / 2 < first
    text = sum(len(text) for text in spool.lines())
    spool.close()  # folded: stored packed too
    depth, stored = sql_totals(spool.path)
    assert depth == {"E": 101} and stored < text / 3


def test_acknowledged_rows_are_not_folded_nor_sent_again(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    spool = journaled(path)
    for n in range(4):
        spool.append("A", float(n), [line(n)])
    rows = spool.batch(10)
    assert [r.line for r in rows] == [line(n) for n in range(4)]
    spool.ack([rows[0].id, rows[2].id])
    assert [r.line for r in spool.batch(10)] == [line(1), line(3)]
    assert spool.stats(10.0).depth == 2
    found, acked = journal.read(journal.journal_path(path))  # as a restart after a kill reads it
    assert {r.line for r in found if r.id not in acked} == {line(1), line(3)}
    spool.close()  # folds what is left
    assert sql_totals(path)[0] == {"A": 2}
    again = journaled(path)
    assert [r.line for r in again.batch(10)] == [line(1), line(3)]
    again.ack([r.id for r in again.batch(10)])
    again.append("A", 9.0, [line(9)])
    assert [r.line for r in again.batch(10)] == [line(9)]  # ids go on after the folded ones
    again.close()


def test_a_torn_tail_costs_only_itself(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    spool = journaled(path)
    for n in range(3):
        spool.append("A", float(n), [line(n)])
    kept = journal.journal_path(path).read_bytes()
    spool.append("A", 3.0, [line(3)])
    torn = journal.journal_path(path).read_bytes()[: len(kept) + 7]  # a power cut mid-record
    journal.journal_path(path).write_bytes(torn + b"\x00" * 100)
    found, _ = journal.read(journal.journal_path(path))
    assert [r.line for r in found] == [line(0), line(1), line(2)]


def test_export_reads_the_journal_of_a_running_agent(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    spool = journaled(path)
    spool.append("A", 1.0, [line(1)])
    spool.close()  # folded
    spool = journaled(path)
    spool.append("A", 2.0, [line(2)])
    out = io.StringIO()
    assert export(path, "line-protocol", out) == 2
    assert out.getvalue().splitlines() == [line(1), line(2)]
    assert journal.journal_path(path).stat().st_size > 0  # export left the journal alone
    spool.append("A", 3.0, [line(3)])
    spool.close()
    assert list(Spool(path).lines()) == [line(1), line(2), line(3)]


def test_bounds_reach_journaled_rows(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    spool = journaled(path, max_bytes=0, max_age=100.0)
    for n in range(10):
        spool.append("A" if n % 2 else "B", 1000.0 + n, [line(n)])
    assert spool.stats(1000.0).oldest_age_by_meter == {"B": 0.0, "A": 0.0}
    assert spool.enforce(1105.0) == {("B", "age"): 3, ("A", "age"): 2}
    stats = spool.stats(1110.0)
    assert stats.depth_by_meter == {"A": 3, "B": 2}
    assert (stats.depth_by_meter, stats.bytes) == sql_totals(path)  # folded before evicting
    spool.append("A", 1200.0, [line(20)])
    spool.close()
    assert sql_totals(path)[0] == {"A": 4, "B": 2}


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["store", "influx"])
def test_sigkill_right_after_a_burst_loses_nothing_accepted(mode: str, tmp_path: Path) -> None:
    """Every telegram the metrics counted as accepted before SIGKILL is found afterwards: in the
    store, or in InfluxDB once a restarted agent delivered what its journal held."""
    data = tmp_path / "data"
    stream = MeterStream()
    meter = TcpMeter()
    with influxdb1(tmp_path / "influx") if mode == "influx" else nullcontext() as influx:
        env: dict[str, str] = {}  # the default: the journal, fsynced every 60 s
        if influx is not None:
            influx.create_database("p1")
            env.update({"P1_INFLUX_URL": influx.url, "P1_INFLUX_API": "v1"})
        agent = start_agent(data, "--source", f"{METER}={meter.url}", env=env)
        try:
            conn = meter.accept()
            stream.send(conn.sendall, 300)  # a burst, all at once
            wait_for(lambda: agent.value("p1_telegrams_total") >= 100, proc=agent.proc)
            accepted = int(agent.value("p1_telegrams_total", result="valid"))
            agent.proc.send_signal(signal.SIGKILL)  # while the rest is still being read
            agent.proc.communicate(timeout=30)
            assert agent.proc.returncode == -signal.SIGKILL
        finally:
            if agent.proc.poll() is None:
                agent.kill()
            meter.close()
        want = expected_p1(stream.results()[:accepted])
        assert len(want) == accepted >= 100
        if influx is None:
            found = _stored_p1(data)
        else:
            again = start_agent(data, env=env)  # reading the simulator meanwhile
            try:
                wait_for(
                    lambda: want.keys() <= landed_p1(influx, "p1").keys(),
                    proc=again.proc,
                    what="the killed agent's telegrams in InfluxDB",
                )
            finally:
                stop_cleanly(again)
            found = landed_p1(influx, "p1")
    assert {t: found.get(t) for t in want} == want


def _stored_p1(data_dir: Path) -> dict[int, dict[str, object]]:
    points = {}
    for text in store_lines(data_dir):  # as `export` reads it: the journal left to a restart
        point = parse(text)
        if point.measurement == "p1":
            assert point.time is not None
            points[point.time] = dict(point.fields)
    return points


def test_old_readings_are_downsampled_to_the_last_of_each_minute(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    spool = Spool(path, max_age=0, downsample_after=3600.0, sync_interval=SYNC)
    start = 1_800_000_000  # a whole minute
    for t in range(start, start + 3 * 3600):  # three hours, one telegram a second
        spool.append(
            "A", float(t), [f"p1,meter=A e={t} {t}", f"p1_mbus,meter=A g=1 {t // 300 * 300}"]
        )
    now = start + 3 * 3600.0
    while spool.enforce(now) or spool.downsample(now):
        pass
    kept = [parse(text) for text in spool.lines()]
    old = [p for p in kept if p.time is not None and p.time < now - 3600]
    young = [p for p in kept if p.time is not None and p.time >= now - 3600]
    p1_old = [p.time for p in old if p.measurement == "p1"]
    assert p1_old == [start + 60 * m + 59 for m in range(120)]  # the last of each minute
    # The gas meter's reading carries its own time, every 5 minutes: each once.
    assert len([p for p in old if p.measurement == "p1_mbus"]) == 24
    assert len(young) == 2 * 3600  # not yet due: every reading
    stats = spool.stats(now)
    assert (stats.depth_by_meter, stats.bytes) == sql_totals(path)
    spool.close()
    again = Spool(path, max_age=0, downsample_after=3600.0)
    assert again.downsample(now) == 0  # where it got to was kept: nothing twice
    assert again.downsample(now + 60) == 118  # a minute later, that minute's 120 lines but 2
    out = io.StringIO()
    again.close()
    assert export(path, "line-protocol", out) == len(kept) - 118


def test_packed_lines_are_salvaged_with_their_keys(tmp_path: Path) -> None:
    old = tmp_path / "old.sqlite"
    spool = journaled(old)
    for n in range(20):
        spool.append("A", float(n), [line(n, "A"), line(n, "B")])
    spool.close()  # folded: packed against each series' first line
    want = list(Spool(old).lines())
    fresh = Spool(tmp_path / "store.sqlite")
    assert fresh.salvage(old) == 40
    assert list(fresh.lines()) == want == [line(n, m) for n in range(20) for m in "AB"]
    fresh.close()


def test_an_append_stands_when_its_fsync_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record the kernel took is accepted: failing the append would have it written twice."""
    path = tmp_path / "store.sqlite"
    spool = Spool(path, sync_interval=1e-9)  # an fsync due at every append

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing)
    spool.append("A", 1.0, [line(1)])
    with pytest.raises(SpoolError):
        spool.maintain()  # said (and tried again) by the agent's tick
    monkeypatch.undo()
    spool.maintain()
    found, _ = journal.read(journal.journal_path(path))
    assert [row.line for row in found] == [line(1)]
    spool.close()
    assert list(Spool(path).lines()) == [line(1)]


def test_appends_after_a_salvage_are_kept(tmp_path: Path) -> None:
    """The salvaged rows keep their ids: the journal's next ones must come after them (a
    repeated id is skipped when folded, as one folded before a crash)."""
    old = tmp_path / "old.sqlite"
    spool = Spool(old)
    for n in range(3):
        spool.append("A", float(n), [line(n)])
    spool.close()
    path = tmp_path / "store.sqlite"
    fresh = journaled(path)
    assert fresh.salvage(old) == 3
    fresh.append("A", 3.0, [line(3)])
    fresh.close()
    assert list(Spool(path).lines()) == [line(n) for n in range(4)]


def test_a_journal_deleted_under_the_agent_is_started_anew(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    spool = journaled(path)
    spool.append("A", 1.0, [line(1)])
    journal.journal_path(path).unlink()  # `rm data/*`: appends would go to a file nobody reads
    spool.maintain()
    spool.append("A", 2.0, [line(2)])
    assert sql_totals(path)[0] == {"A": 1}  # what the old one held, folded
    found, _ = journal.read(journal.journal_path(path))  # as a restart after a kill reads it
    assert [r.line for r in found] == [line(2)]
    spool.close()
    assert list(Spool(path).lines()) == [line(1), line(2)]
