"""The durable spool (SQLite), our line-protocol parser and the export of the spool."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core.points import Point
from agent.export import export
from agent.formats.lineparse import ParsedPoint, parse
from agent.formats.lineprotocol import encode
from agent.sinks.spool import FREE_SLACK, Spool, SpoolError

LINE = "p1,meter=E1 power_import_kw=0.25,repaired=false 1717200000"


def line(n: int, meter: str = "E1", pad: int = 0) -> str:
    return f'p1,meter={meter} power_import_kw={n}.5,note="{"x" * pad}",repaired=false {n}'


def sql_totals(path: Path) -> tuple[dict[str, int], int]:
    """Depth per meter and UTF-8 bytes of the lines, counted by SQLite itself."""
    with sqlite3.connect(path) as db:
        depth = dict(db.execute("SELECT meter, COUNT(*) FROM points GROUP BY meter").fetchall())
        size = db.execute("SELECT COALESCE(SUM(length(CAST(line AS BLOB))), 0) FROM points")
        return depth, int(size.fetchone()[0])


def test_append_batch_ack_and_stats(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "store.sqlite")
    spool.append("A", 100.0, [line(1, "A"), line(2, "A")])
    spool.append("B", 105.0, [line(3, "B")])
    spool.append("A", 110.0, [line(4, "A")])
    spool.append("A", 111.0, [])  # nothing to store, no transaction

    rows = spool.batch(3)
    assert [(r.meter, r.received, r.line) for r in rows] == [
        ("A", 100.0, line(1, "A")),
        ("A", 100.0, line(2, "A")),
        ("B", 105.0, line(3, "B")),
    ]
    stats = spool.stats(now=120.0)
    assert stats.depth == 4
    assert stats.depth_by_meter == {"A": 3, "B": 1}
    assert stats.oldest_age_by_meter == {"A": 20.0, "B": 15.0}
    assert (stats.depth_by_meter, stats.bytes) == sql_totals(spool.path)

    spool.ack([rows[0].id, rows[2].id])
    spool.ack([rows[0].id])  # acknowledged twice (a retry): nothing more is deleted
    stats = spool.stats(now=120.0)
    assert stats.depth_by_meter == {"A": 2, "B": 0}
    assert stats.oldest_age_by_meter == {"A": 20.0, "B": 0.0}
    assert (stats.depth_by_meter["A"], stats.bytes) == (2, sql_totals(spool.path)[1])
    assert list(spool.lines()) == [line(2, "A"), line(4, "A")]
    spool.close()


def test_dead_letter_keeps_refused_lines_out_of_the_queue(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "store.sqlite")
    spool.append("A", 1.0, [line(1, "A"), "bad line", line(2, "A")])
    bad = spool.batch(10)[1]
    spool.dead_letter([bad], "InfluxDB rejected the data (400 Bad Request): unable to parse")
    assert [r.line for r in spool.batch(10)] == [line(1, "A"), line(2, "A")]
    assert spool.stats(2.0).depth == 2
    assert spool.stats(2.0).bytes == sql_totals(spool.path)[1]
    [(row, reason)] = spool.rejected()
    assert (row.id, row.meter, row.line) == (bad.id, "A", "bad line")
    assert "unable to parse" in reason
    spool.close()
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        assert db.execute("SELECT line FROM rejected_points").fetchall() == [("bad line",)]


def test_size_bound_evicts_oldest_first_with_counts(tmp_path: Path) -> None:
    meters = ["B" if n % 3 == 0 else "A" for n in range(30)]
    lines = [line(n, meters[n], pad=50) for n in range(30)]
    sizes = [len(text.encode()) for text in lines]
    bound = sum(sizes[-10:])  # room for exactly the newest ten
    spool = Spool(tmp_path / "store.sqlite", max_bytes=bound, max_age=0)
    for n, text in enumerate(lines):
        spool.append(meters[n], float(n), [text])
    evicted = spool.enforce(now=1e9)  # max_age 0: no age bound however late it is
    expected_b = sum(1 for n in range(20) if n % 3 == 0)
    assert evicted == {("A", "size"): 20 - expected_b, ("B", "size"): expected_b}
    assert list(spool.lines()) == lines[20:]
    assert spool.stats(1e9).bytes == bound
    assert spool.enforce(now=1e9) == {}  # within bounds now


def test_size_bound_evicts_just_enough(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "store.sqlite", max_bytes=1000, max_age=0)
    spool.append("A", 1.0, [line(1, pad=600)])
    spool.append("A", 2.0, [line(2, pad=300)])
    spool.append("A", 3.0, [line(3, pad=10)])
    assert spool.enforce(4.0) == {("A", "size"): 1}
    assert [text[-1] for text in spool.lines()] == ["2", "3"]
    assert spool.stats(4.0).bytes <= 1000


def test_age_bound_by_received_time(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "store.sqlite", max_bytes=0, max_age=100.0)
    spool.append("A", 1000.0, [line(1, "A")])
    spool.append("B", 1001.0, [line(2, "B"), line(3, "B")])
    spool.append("A", 1050.0, [line(4, "A")])
    assert spool.enforce(now=1100.5) == {("A", "age"): 1}
    assert spool.enforce(now=1101.5) == {("B", "age"): 2}
    assert list(spool.lines()) == [line(4, "A")]
    assert spool.stats(1101.5).depth_by_meter == {"A": 1, "B": 0}


def test_running_totals_rebuilt_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    spool = Spool(path)
    spool.append("A", 1.0, [line(1, "A"), 'p1,meter=A text="€uro" 2'])  # multi-byte UTF-8
    spool.append("B", 2.0, [line(3, "B")])
    before = spool.stats(5.0)
    spool.close()
    again = Spool(path)
    assert again.stats(5.0) == before
    assert (before.depth_by_meter, before.bytes) == sql_totals(path)


def test_legacy_store_opens_with_its_rows(tmp_path: Path) -> None:
    """A store.sqlite from before the spool (no auto_vacuum, no index) keeps its points."""
    path = tmp_path / "store.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE points (id INTEGER PRIMARY KEY AUTOINCREMENT, meter TEXT NOT NULL,"
            " received REAL NOT NULL, line TEXT NOT NULL)"
        )
        db.execute("INSERT INTO points (meter, received, line) VALUES ('A', 1.0, ?)", (LINE,))
    spool = Spool(path)
    spool.append("A", 2.0, [line(2, "A")])
    assert list(spool.lines()) == [LINE, line(2, "A")]
    spool.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_file_is_private_from_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Created owner-only, not made so afterwards: with chmod disabled the mode must still be
    # 0600, whatever the umask; SQLite gives its -wal and -shm files the database's mode.
    monkeypatch.setattr(Path, "chmod", lambda self, mode: None)
    old = os.umask(0)
    try:
        spool = Spool(tmp_path / "data" / "store.sqlite")
        spool.append("A", 1.0, [LINE])
        for suffix in ("", "-wal", "-shm"):
            mode = (tmp_path / "data" / f"store.sqlite{suffix}").stat().st_mode & 0o777
            assert mode == 0o600, (suffix, oct(mode))
        spool.close()
    finally:
        os.umask(old)


CHILD = """
import sys
from pathlib import Path
from agent.sinks.spool import Spool
spool = Spool(Path(sys.argv[1]))
spool.append("A", 1.0, [sys.argv[2], sys.argv[3]])
print("appended", flush=True)
sys.stdin.read()  # wait to be killed, connection still open
"""


def killed_after_appending(script: str, *args: str) -> None:
    """Run `script`, which prints `appended` and waits, and SIGKILL it then."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"appended\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_append_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    killed_after_appending(CHILD, str(path), line(1), line(2))
    assert list(Spool(path).lines()) == [line(1), line(2)]


def test_failed_append_leaves_nothing_behind(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "store.sqlite")
    with sqlite3.connect(spool.path) as db:  # an error in the middle of a telegram's rows
        db.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON points WHEN NEW.line = 'poison'"
            " BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
        )
    with pytest.raises(SpoolError, match=r"spool error: .* \(poisoned row\)"):
        spool.append("A", 1.0, [line(1), "poison"])
    spool.append("A", 2.0, [line(2)])  # commits only its own line
    assert list(spool.lines()) == [line(2)]
    assert spool.stats(3.0).depth == 1


def test_disk_full_raises_and_recovers(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "store.sqlite", max_bytes=0, max_age=0)
    spool.append("A", 1.0, [line(1)])
    # SQLite reports a page limit exactly as a full disk (SQLITE_FULL).
    db = spool._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(SpoolError) as caught:
        spool.append("A", 2.0, [line(n, pad=2000) for n in range(2, 50)])
    assert caught.value.full
    assert str(caught.value).startswith(f"spool disk full: {spool.path} (")
    assert "\n" not in str(caught.value)
    assert spool.stats(3.0).depth == 1  # the failed append left nothing behind
    db.execute("PRAGMA max_page_count=1073741823")  # space is back
    spool.append("A", 3.0, [line(3)])
    assert list(spool.lines()) == [line(1), line(3)]
    assert (spool.stats(3.0).depth_by_meter, spool.stats(3.0).bytes) == sql_totals(spool.path)


def test_file_shrinks_after_the_backlog_is_delivered(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    spool = Spool(path, max_bytes=0, max_age=0)
    for n in range(200):
        spool.append("A", float(n), [line(n, pad=1000)] * 100)  # ~20 MB of lines
    grown = path.stat().st_size
    assert grown > 3 * FREE_SLACK
    while rows := spool.batch(5000):
        spool.ack([row.id for row in rows])
    assert spool.enforce(300.0) == {}
    assert path.stat().st_size < FREE_SLACK + (1 << 20)
    spool.append("A", 301.0, [LINE])  # still a working spool
    assert list(spool.lines()) == [LINE]


def test_concurrent_readers_and_deliverer(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "store.sqlite")
    done = threading.Event()
    acked: list[str] = []

    def reader(meter: str) -> None:
        for n in range(300):
            spool.append(meter, float(n), [line(n, meter)])

    def deliverer() -> None:
        while True:
            finished = done.is_set()  # read before the batch: nothing appended after is missed
            rows = spool.batch(50)
            acked.extend(row.line for row in rows)
            spool.ack([row.id for row in rows])
            if finished and not rows:
                return

    threads = [threading.Thread(target=reader, args=(m,)) for m in ("A", "B", "C")]
    consumer = threading.Thread(target=deliverer)
    for thread in [*threads, consumer]:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    consumer.join()
    assert sorted(acked) == sorted(line(n, m) for m in "ABC" for n in range(300))
    assert spool.stats(0.0).depth_by_meter == {"A": 0, "B": 0, "C": 0}
    assert spool.stats(0.0).bytes == 0


def test_lines_pages_through_a_large_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "store.sqlite")
    expected = [line(n) for n in range(2500)]
    spool.append("A", 1.0, expected)
    assert list(spool.lines()) == expected


# --- our line protocol, parsed back --------------------------------------------------------------

names = st.text(st.characters(blacklist_characters="\\", blacklist_categories=["Cs"]), min_size=1)
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),  # inf is left out: see below
    st.booleans(),
    st.text(st.characters(blacklist_categories=["Cs"])),
)
times = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=4_000_000_000).map(lambda t: datetime.fromtimestamp(t, UTC)),
)


@given(
    measurement=names,
    tags=st.dictionaries(names, names, max_size=4),
    fields=st.dictionaries(names, values, min_size=1, max_size=6),
    time=times,
)
def test_parse_inverts_encode(
    measurement: str,
    tags: dict[str, str],
    fields: dict[str, float | bool | str],
    time: datetime | None,
) -> None:
    text = encode(Point(measurement, tags, fields, time))
    assert text is not None
    assert parse(text) == ParsedPoint(
        measurement, tags, fields, None if time is None else int(time.timestamp())
    )


def test_a_reading_influxdb_cannot_store_is_left_out_not_its_point() -> None:
    when = datetime(2024, 6, 1, tzinfo=UTC)
    text = encode(Point("p1", {"meter": "E1"}, {"x": math.inf, "y": 1.5, "z": -math.inf}, when))
    assert text == "p1,meter=E1 y=1.5 1717200000"
    assert encode(Point("p1", {"meter": "E1"}, {"x": math.inf}, when)) is None


def test_parse_examples() -> None:
    point = parse(r'p1\ x,meter=E\,1,kind=gas a\=b=1.5,s="say \"hi\"\\",repaired=true 1717200000')
    assert point == ParsedPoint(
        "p1 x",
        {"meter": "E,1", "kind": "gas"},
        {"a=b": 1.5, "s": 'say "hi"\\', "repaired": True},
        1717200000,
    )
    assert parse("p1 x=1e-07").fields == {"x": 1e-07}
    for bad in ("", "p1", "p1 x=", "p1 x=1i", 'p1 s="open', "p1,t x=1", "p1 x=1 soon"):
        with pytest.raises(ValueError):
            parse(bad)


# --- export ---------------------------------------------------------------------------------------

EXPORTED = [
    "p1,meter=E1 energy_import_kwh=8234.524,power_import_kw=0.25,repaired=false 1717200000",
    "p1_mbus,device=G01,kind=gas,meter=E1 gas_m3=246.138 1717196400",
    'p1_billing,meter=E1 demand_import_month_max_kw=3.2,peak_time="2024-05-02T10:15:00+02:00"'
    " 1714514400",
    "p1,meter=E2 power_import_kw=1.0,repaired=true 1717200001",
]


@pytest.fixture
def exported_spool(tmp_path: Path) -> Path:
    spool = Spool(tmp_path / "store.sqlite")
    spool.append("E1", 1.0, EXPORTED[:3])
    spool.append("E2", 2.0, EXPORTED[3:])
    spool.close()
    return tmp_path / "store.sqlite"


def test_export_line_protocol_verbatim(exported_spool: Path) -> None:
    out = io.StringIO()
    assert export(exported_spool, "line-protocol", out) == 4
    assert out.getvalue() == "".join(text + "\n" for text in EXPORTED)


def test_export_jsonl(exported_spool: Path) -> None:
    out = io.StringIO()
    assert export(exported_spool, "jsonl", out) == 4
    records = [json.loads(text) for text in out.getvalue().splitlines()]
    assert records[0] == {
        "measurement": "p1",
        "tags": {"meter": "E1"},
        "fields": {"energy_import_kwh": 8234.524, "power_import_kw": 0.25, "repaired": False},
        "time": "2024-06-01T00:00:00+00:00",
    }
    assert records[1]["tags"] == {"device": "G01", "kind": "gas", "meter": "E1"}
    assert records[2]["fields"]["peak_time"] == "2024-05-02T10:15:00+02:00"


def test_export_csv_has_the_union_of_fields(exported_spool: Path) -> None:
    out = io.StringIO()
    assert export(exported_spool, "csv", out) == 4
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows[0] == [
        "time",
        "measurement",
        "meter",
        "kind",
        "device",
        "energy_import_kwh",
        "power_import_kw",
        "repaired",
        "gas_m3",
        "demand_import_month_max_kw",
        "peak_time",
    ]
    assert rows[1] == [
        "2024-06-01T00:00:00+00:00", "p1", "E1", "", "", "8234.524", "0.25", "false", "", "", "",
    ]  # fmt: skip
    assert rows[2][:5] == ["2024-05-31T23:00:00+00:00", "p1_mbus", "E1", "gas", "G01"]
    assert rows[2][8] == "246.138"
    assert rows[4][1:3] + rows[4][6:8] == ["p1", "E2", "1.0", "true"]
    assert len(rows) == 5


def test_export_refuses_unknown_format_and_missing_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown export format"):
        export(tmp_path / "store.sqlite", "xml", io.StringIO())
    with pytest.raises(FileNotFoundError):
        export(tmp_path / "store.sqlite", "csv", io.StringIO())
    assert not (tmp_path / "store.sqlite").exists()  # the export did not create a store
