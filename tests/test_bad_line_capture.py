"""The seed meter on a good line and on a bad one: what the pipeline accepts must be whole and
consistent, and enough of the bad line must be saved.

Truth for the bad line is unknown, so an accepted telegram is judged by what every real telegram
of the meter satisfies (tests/consistency.py), learned from the good-line capture of the same
meter. The checker is proven first: on all 1 100 good-line telegrams it finds nothing, and on
doctored copies of them it finds each thing that was broken.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from consistency import (
    BAD_LINE,
    BILLING_PROFILE,
    GOOD_LINE,
    HEADER,
    IDENTITIES,
    NOT_IDENTITIES,
    SUM_TOLERANCE,
    TEXT_MESSAGE,
    Identity,
    MeterReference,
    Problem,
    Snapshot,
    accepted_snapshots,
    check_sequence,
    check_step,
    check_telegram,
    decoded_snapshots,
    describe,
    good_line_telegrams,
    snapshot_from_record,
    snapshot_from_result,
    snapshot_from_telegram,
)
from p1_testkit import run_pipeline

from agent.core.pipeline import MeterPipeline, Result
from agent.core.telegram import Decoder
from agent.formats import jsonl

CHUNK = 3 * 1024  # a few KiB, not aligned with the 2342-byte telegrams
GOOD_LINE_TELEGRAMS = 1100
STEP = timedelta(seconds=10)
MIN_SAVED = 0.60
AGREEMENT = 0.03  # the two counts of telegrams sent during the bad-line capture


def feed(raw: bytes) -> tuple[MeterPipeline, list[Result]]:
    return run_pipeline([raw[i : i + CHUNK] for i in range(0, len(raw), CHUNK)])


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_raw(data_dir: Path) -> bytes:
    return (data_dir / GOOD_LINE).read_bytes()


@pytest.fixture(scope="module")
def bad_raw(data_dir: Path) -> bytes:
    return (data_dir / BAD_LINE).read_bytes()


@pytest.fixture(scope="module")
def good_telegrams(good_raw: bytes) -> list[bytes]:
    """The 1 100 good-line telegrams as sent, each CRC-checked, without the pipeline."""
    telegrams = good_line_telegrams(good_raw)
    assert len(telegrams) == GOOD_LINE_TELEGRAMS
    return telegrams


@pytest.fixture(scope="module")
def good_decoded(good_telegrams: list[bytes]) -> list[Snapshot]:
    return decoded_snapshots(good_telegrams, "good-line telegram")


@pytest.fixture(scope="module")
def reference(good_decoded: list[Snapshot]) -> MeterReference:
    """The meter's lines, units, identifiers and limiter, from its good-line telegrams."""
    return MeterReference.learn(good_decoded)


@pytest.fixture(scope="module")
def good_run(good_raw: bytes) -> tuple[MeterPipeline, list[Result]]:
    return feed(good_raw)


@pytest.fixture(scope="module")
def bad_run(bad_raw: bytes) -> tuple[MeterPipeline, list[Result]]:
    return feed(bad_raw)


@pytest.fixture(scope="module")
def bad_accepted(bad_run: tuple[MeterPipeline, list[Result]]) -> list[Snapshot]:
    return accepted_snapshots(bad_run[1])


@pytest.fixture(scope="module")
def bad_problems(bad_accepted: list[Snapshot], reference: MeterReference) -> list[Problem]:
    return check_sequence(bad_accepted, reference)


# -- the reference and the checker, proven on the good line -------------------------------------


def test_reference_is_the_meters_full_layout(reference: MeterReference) -> None:
    assert len(reference.codes) == 42
    assert TEXT_MESSAGE in reference.codes and reference.kinds[TEXT_MESSAGE] == "str"
    assert reference.limiter_kw == 90.0
    assert reference.identifiers["0-0:96.1.0"] == "9901357913"
    assert reference.sealed
    assert set(reference.registers) == {
        *(f"1-0:{a}.8.{t}" for a in (1, 2) for t in range(5)),
        *(f"1-0:{a}.8.0" for a in (3, 4, 5, 6, 7, 8, 15)),
    }


@pytest.mark.parametrize("identity", IDENTITIES, ids=str)
def test_identity_holds_on_every_good_line_telegram(
    identity: Identity, good_decoded: list[Snapshot]
) -> None:
    # Only identities that hold on all 1 100 good-line telegrams may judge the bad line.
    errors = [identity.error(s.values) for s in good_decoded]
    assert None not in errors, "a line of the identity is missing on the good line"
    worst = max(abs(e) for e in errors if e is not None)
    assert worst <= SUM_TOLERANCE, f"{identity}: off by {worst} on the good line"


@pytest.mark.parametrize("identity", NOT_IDENTITIES, ids=str)
def test_rejected_identity_really_fails_on_the_good_line(
    identity: Identity, good_decoded: list[Snapshot]
) -> None:
    # Why the checker leaves it out: real telegrams break it.
    errors = [identity.error(s.values) for s in good_decoded]
    assert all(e is not None for e in errors)
    assert sum(abs(e) > SUM_TOLERANCE for e in errors if e is not None) > 1000


def test_good_line_passes_the_checker(
    good_decoded: list[Snapshot], reference: MeterReference
) -> None:
    problems = check_sequence(good_decoded, reference)
    assert problems == [], describe(problems)


def test_good_line_meter_sends_one_telegram_every_ten_seconds(
    good_decoded: list[Snapshot], good_raw: bytes
) -> None:
    times = [s.meter_time for s in good_decoded]
    assert None not in times
    steps = Counter(b - a for a, b in itertools.pairwise(times))  # type: ignore[operator]
    assert steps == {STEP: GOOD_LINE_TELEGRAMS - 1}
    first, last = times[0], times[-1]
    assert first is not None and last is not None
    assert (last - first) / STEP + 1 == GOOD_LINE_TELEGRAMS
    # The other count of the telegrams sent: identification lines, with or without their `/`.
    assert good_raw.count(HEADER) == GOOD_LINE_TELEGRAMS


# The checker itself, on doctored good-line telegrams: each damage is reported, with the telegram.


# A doctored snapshot has no accepted bytes (they would no longer say what its readings say).


def _with(snapshot: Snapshot, **values: object) -> Snapshot:
    changed = {**snapshot.values, **values}
    label = snapshot.label + " (doctored)"
    return dataclasses.replace(snapshot, values=changed, label=label, text=None)


def _without(snapshot: Snapshot, *codes: str) -> Snapshot:
    values = {k: v for k, v in snapshot.values.items() if k not in codes}
    units = {k: v for k, v in snapshot.units.items() if k not in codes}
    label = snapshot.label + " (doctored)"
    return dataclasses.replace(snapshot, values=values, units=units, label=label, text=None)


def _float(snapshot: Snapshot, code: str) -> float:
    value = snapshot.values[code]
    assert isinstance(value, float)
    return value


def _kinds(problems: list[Problem]) -> set[str]:
    return {p.kind for p in problems}


@pytest.fixture(scope="module")
def sample(good_decoded: list[Snapshot]) -> list[Snapshot]:
    return good_decoded[100:130]


def _sequence_with(sample: list[Snapshot], at: int, doctored: Snapshot) -> list[Snapshot]:
    return [*sample[:at], doctored, *sample[at + 1 :]]


def test_checker_reports_a_register_that_went_down(
    sample: list[Snapshot], reference: MeterReference
) -> None:
    s = sample[10]
    doctored = _with(
        s,
        **{
            "1-0:1.8.0": _float(s, "1-0:1.8.0") - 0.010,
            "1-0:1.8.1": _float(s, "1-0:1.8.1") - 0.010,  # the sum still holds
        },
    )
    problems = check_sequence(_sequence_with(sample, 10, doctored), reference)
    assert _kinds(problems) == {"decrease"}
    assert {p.index for p in problems} == {10}
    assert all("(doctored)" in p.label for p in problems)
    assert any("1-0:1.8.0" in p.detail for p in problems)


def test_checker_reports_a_register_growing_faster_than_the_limiter(
    sample: list[Snapshot], reference: MeterReference
) -> None:
    s = sample[10]
    jump = 0.26  # 90 kW for 10 s is 0.25 kWh; one last digit more is still possible
    doctored = _with(
        s,
        **{
            "1-0:2.8.0": _float(s, "1-0:2.8.0") + jump,
            "1-0:2.8.1": _float(s, "1-0:2.8.1") + jump,
        },
    )
    later = [
        _with(x, **{c: _float(x, c) + jump for c in ("1-0:2.8.0", "1-0:2.8.1")})
        for x in sample[11:]
    ]
    problems = check_sequence([*sample[:10], doctored, *later], reference)
    assert _kinds(problems) == {"rate"}
    assert {p.index for p in problems} == {10}
    # Within the bound (90 kW × 10 s + one digit) nothing is reported.
    ok = 0.251
    within = _with(s, **{c: _float(s, c) + ok for c in ("1-0:2.8.0", "1-0:2.8.1")})
    assert check_sequence([sample[9], within], reference) == []


def test_checker_reports_a_missing_line_and_a_missing_text_message(
    sample: list[Snapshot], reference: MeterReference
) -> None:
    problems = check_sequence(
        _sequence_with(sample, 5, _without(sample[5], "1-0:52.7.0")), reference
    )
    assert _kinds(problems) == {"missing_lines"}
    assert problems[0].index == 5 and "1-0:52.7.0" in problems[0].detail
    problems = check_telegram(_without(sample[5], TEXT_MESSAGE), reference)
    assert _kinds(problems) == {"missing_lines", "no_text_message"}


def test_checker_reports_a_fragment_cut_by_a_noise_made_bang(
    good_telegrams: list[bytes], reference: MeterReference
) -> None:
    # A real telegram cut where `)` became `!` at a line end, as a bad line makes them.
    telegram = good_telegrams[200]
    cut = telegram.index(b")\r\n1-0:32.7.0")
    fragment = telegram[:cut] + b"!"
    snapshot = snapshot_from_telegram(Decoder().decode(fragment), "fragment", fragment)
    problems = check_telegram(snapshot, reference)
    assert {"missing_lines", "no_text_message", "seal"} <= _kinds(problems)
    missing = next(p for p in problems if p.kind == "missing_lines")
    assert "20 of the meter's 42 lines missing (1-0:15.8.0, 1-0:32.7.0," in missing.detail


def test_checker_reports_broken_sums(sample: list[Snapshot], reference: MeterReference) -> None:
    s = sample[-1]
    assert (
        check_telegram(_with(s, **{"1-0:1.8.0": _float(s, "1-0:1.8.0") + 0.001}), reference) == []
    )
    problems = check_telegram(_with(s, **{"1-0:1.8.0": _float(s, "1-0:1.8.0") + 0.002}), reference)
    assert _kinds(problems) == {"sum"} and "1-0:1.8.0 =" in problems[0].detail
    problems = check_telegram(_with(s, **{"1-0:2.8.3": 0.01}), reference)
    assert _kinds(problems) == {"sum"} and "1-0:2.8.0 =" in problems[0].detail
    problems = check_telegram(_with(s, **{"1-0:5.8.0": _float(s, "1-0:5.8.0") - 0.01}), reference)
    assert _kinds(problems) == {"sum"} and "1-0:3.8.0 =" in problems[0].detail
    problems = check_telegram(_with(s, **{"1-0:8.8.0": _float(s, "1-0:8.8.0") + 1.0}), reference)
    assert _kinds(problems) == {"sum"} and "1-0:4.8.0 =" in problems[0].detail


def test_checker_reports_a_meter_time_off_the_grid(
    sample: list[Snapshot], reference: MeterReference
) -> None:
    s = sample[3]
    assert s.meter_time is not None
    off = dataclasses.replace(s, meter_time=s.meter_time + timedelta(seconds=3))
    problems = check_sequence(_sequence_with(sample, 3, off), reference)
    assert _kinds(problems) == {"off_grid"} and problems[0].index == 3
    problems = check_telegram(dataclasses.replace(s, meter_time=None), reference)
    assert _kinds(problems) == {"no_time"}


def test_checker_reports_meter_time_going_back_or_repeating(
    sample: list[Snapshot], reference: MeterReference
) -> None:
    s = sample[10]
    assert s.meter_time is not None
    back = dataclasses.replace(s, meter_time=s.meter_time - 3 * STEP)
    problems = check_sequence(_sequence_with(sample, 10, back), reference)
    assert "time_order" in _kinds(problems)
    assert {p.index for p in problems if p.kind == "time_order"} == {10}
    # The same telegram accepted twice.
    problems = check_sequence([*sample[:11], sample[10], *sample[11:]], reference)
    assert _kinds(problems) == {"time_order"} and problems[0].index == 11


def test_checker_reports_values_no_grid_delivers(
    sample: list[Snapshot], reference: MeterReference
) -> None:
    s = sample[0]
    for code, value in (
        ("1-0:52.7.0", 270.0),
        ("1-0:72.7.0", 130.5),  # `2` → `1` and `3` → `0` in a voltage
        ("1-0:33.7.0", 1.998),
        ("1-0:14.7.0", 40.02),
    ):
        problems = check_telegram(_with(s, **{code: value}), reference)
        assert _kinds(problems) == {"range"} and code in problems[0].detail, code
    assert check_telegram(_with(s, **{"1-0:13.7.0": 1.0, "1-0:14.7.0": 49.0}), reference) == []


def test_checker_reports_identifiers_units_types_and_seals(
    sample: list[Snapshot], reference: MeterReference
) -> None:
    s = sample[0]
    cases = {
        "identifier": _with(s, **{"0-0:42.0.0": "AUX1030302759088"}),
        "unit": dataclasses.replace(s, units={**s.units, "1-0:1.8.0": "Wh"}),
        "unparsed": _with(s, **{"1-0:31.7.0": None}),
        "type": _with(s, **{"0-0:96.50.68": 1.0}),
    }
    for kind, doctored in cases.items():
        assert _kinds(check_telegram(doctored, reference)) == {kind}, kind
    assert s.text is not None
    damaged = s.text.replace(b"96.50.68(ON)", b"96.50.68(OF)")  # CRC-16 sees any one byte
    assert damaged != s.text
    problems = check_telegram(dataclasses.replace(s, text=damaged), reference)
    assert _kinds(problems) == {"seal", "text"}  # and the readings say ON, the bytes OF


def test_checker_reports_a_billing_profile_changed_within_a_month(
    sample: list[Snapshot], reference: MeterReference
) -> None:
    s = sample[10]
    profile = s.values[BILLING_PROFILE]
    assert isinstance(profile, list) and isinstance(profile[1], float)
    doctored = _with(s, **{BILLING_PROFILE: [profile[0], profile[1] - 1.0, *profile[2:]]})
    problems = check_sequence(_sequence_with(sample, 10, doctored), reference)
    assert _kinds(problems) == {"profile"}
    assert {p.index for p in problems} == {10, 11}  # changed, and changed back
    # At the start of a month the meter writes a new one.
    first, second = sample[0], _with(sample[1], **{BILLING_PROFILE: [profile[0], 1.0]})
    assert first.meter_time is not None
    june = datetime(2023, 6, 1, 0, 0, 0, tzinfo=first.meter_time.tzinfo)
    second = dataclasses.replace(second, meter_time=june)
    assert check_step(first, second, reference) == []


def test_checker_reports_readings_that_are_not_what_the_bytes_say(
    sample: list[Snapshot], reference: MeterReference
) -> None:
    s = sample[0]
    assert check_telegram(s, reference) == []
    lying = dataclasses.replace(s, values={**s.values, "1-0:31.7.0": 7.0})
    assert _kinds(check_telegram(lying, reference)) == {"text"}


def test_reference_from_the_majority_of_accepted_telegrams(
    good_decoded: list[Snapshot], reference: MeterReference
) -> None:
    fragments = [_without(s, "1-0:73.7.0", TEXT_MESSAGE) for s in good_decoded[:4]]
    mixed = [*fragments, *good_decoded[10:16]]
    assert MeterReference.majority(mixed).codes == reference.codes
    with pytest.raises(ValueError, match="majority"):
        MeterReference.majority([*fragments, *good_decoded[10:14]])
    with pytest.raises(ValueError, match="sets of lines"):
        MeterReference.learn(mixed)


def test_record_and_result_give_the_same_snapshot(
    good_telegrams: list[bytes], reference: MeterReference
) -> None:
    # The CLI test judges JSONL records: they must read exactly as the pipeline's results do.
    _, results = run_pipeline(b"".join(good_telegrams[:5]))
    assert [r.status for r in results] == ["valid"] * 5
    for result in results:
        from_result = snapshot_from_result(result, "x")
        from_record = snapshot_from_record(json.loads(jsonl.dumps(result)), "x")
        assert from_record == from_result
        assert check_telegram(from_record, reference) == []


# -- the pipeline on the good line ---------------------------------------------------------------


def test_good_line_every_telegram_accepted(
    good_run: tuple[MeterPipeline, list[Result]], reference: MeterReference
) -> None:
    pipeline, results = good_run
    rejected = [(r.frame.offset, r.reason) for r in results if not r.accepted]
    assert rejected == []
    assert len(results) == GOOD_LINE_TELEGRAMS
    assert pipeline.counts["valid"] + pipeline.counts["repaired"] == GOOD_LINE_TELEGRAMS
    accepted = accepted_snapshots(results)
    fragments = [s.label for s in accepted if set(s.values) != reference.codes]
    assert fragments == []
    problems = check_sequence(accepted, reference)
    assert problems == [], describe(problems)


def test_good_line_accepted_telegrams_are_the_ones_sent(
    good_run: tuple[MeterPipeline, list[Result]], good_telegrams: list[bytes]
) -> None:
    sent = [t.rstrip(b"\r\n") for t in good_telegrams]
    assert [r.frame.text for r in good_run[1]] == sent


# -- the pipeline on the bad line ----------------------------------------------------------------


def _bad_line_numbers(results: list[Result], problems: list[Problem], limit: int = 0) -> str:
    counts = Counter(r.status for r in results)
    reasons = Counter(r.reason for r in results if not r.accepted)
    return f"statuses {dict(counts)}, rejections {dict(reasons)}; " + describe(problems, limit)


def test_bad_line_accepts_no_fragment(
    bad_run: tuple[MeterPipeline, list[Result]],
    bad_accepted: list[Snapshot],
    reference: MeterReference,
) -> None:
    fragments = [
        f"{s.label}: {len(reference.codes - set(s.values))} lines missing"
        for s in bad_accepted
        if not reference.codes <= set(s.values)
    ]
    assert fragments == [], f"{len(fragments)} fragments accepted of {len(bad_accepted)}"


def test_bad_line_accepts_no_inconsistent_telegram(
    bad_run: tuple[MeterPipeline, list[Result]], bad_problems: list[Problem]
) -> None:
    assert bad_problems == [], _bad_line_numbers(bad_run[1], bad_problems, limit=20)


def test_bad_line_accepts_no_meter_time_twice(bad_accepted: list[Snapshot]) -> None:
    times = Counter(s.meter_time for s in bad_accepted)
    twice = {t.isoformat() if t else None: n for t, n in times.items() if n > 1}
    assert twice == {}


def _consistent(accepted: list[Snapshot], problems: list[Problem]) -> list[Snapshot]:
    flagged = {p.index for p in problems}
    return [s for i, s in enumerate(accepted) if i not in flagged]


def _sent_by_clock(snapshots: list[Snapshot]) -> tuple[int, list[datetime]]:
    """Telegrams the meter sent between the first and the last consistent accepted telegram:
    it sends one every 10 s (the good line shows it), so (last − first) / 10 s + 1."""
    times = sorted({s.meter_time for s in snapshots if s.meter_time is not None})
    if not times:
        return 0, []
    return int((times[-1] - times[0]) / STEP) + 1, times


def test_bad_line_counts_of_telegrams_sent_agree(
    bad_raw: bytes, bad_accepted: list[Snapshot], bad_problems: list[Problem]
) -> None:
    # Two honest counts of what the meter sent: its clock (from the accepted telegrams), and the
    # identification lines in the log (`AUX5990…`, also where the `/` was lost; a few are lost to
    # merged telegrams or damaged, so this one is a little low).
    by_headers = bad_raw.count(HEADER)
    assert 2400 <= by_headers <= 2460
    by_clock, times = _sent_by_clock(_consistent(bad_accepted, bad_problems))
    assert by_clock, "no consistent telegram accepted"
    assert abs(by_clock - by_headers) <= AGREEMENT * by_headers, (
        f"clock span {times[0].isoformat()} … {times[-1].isoformat()} gives {by_clock} "
        f"telegrams sent, the log holds {by_headers} identification lines"
    )


def test_bad_line_saves_at_least_sixty_percent(
    bad_raw: bytes,
    bad_run: tuple[MeterPipeline, list[Result]],
    bad_accepted: list[Snapshot],
    bad_problems: list[Problem],
) -> None:
    # saved = distinct meter times among consistent accepted telegrams; sent = the larger of the
    # two counts above, so neither a short clock span nor lost headers can flatter the ratio.
    consistent = _consistent(bad_accepted, bad_problems)
    by_clock, _ = _sent_by_clock(consistent)
    sent = max(by_clock, bad_raw.count(HEADER))
    saved = len({s.meter_time for s in consistent if s.meter_time is not None})
    assert saved / sent >= MIN_SAVED, (
        f"saved {saved} of {sent} telegrams sent ({saved / sent:.1%}); "
        + _bad_line_numbers(bad_run[1], bad_problems)
    )


# -- the same through the command line -----------------------------------------------------------

_SUMMARY = re.compile(
    r"telegrams (\d+): valid (\d+), repaired (\d+), rejected (\d+)(?: \(([^)]*)\))?"
)


def test_bad_line_replay_jsonl(data_dir: Path, tmp_path: Path, reference: MeterReference) -> None:
    out = tmp_path / "bad-line.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "replay", str(data_dir / BAD_LINE),
         "--format", "jsonl", "-o", str(out), "--no-progress"],
        capture_output=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    summary = _SUMMARY.search(proc.stderr.decode())
    assert summary is not None, proc.stderr.decode()
    telegrams, valid, repaired, rejected = map(int, summary.group(1, 2, 3, 4))
    statuses = Counter(r["status"] for r in records)
    assert (len(records), statuses["valid"], statuses["repaired"], statuses["rejected"]) == (
        telegrams,
        valid,
        repaired,
        rejected,
    )
    reasons = Counter(r.get("reason") or "unknown" for r in records if r["status"] == "rejected")
    stated = dict(
        (name, int(n))
        for name, n in (
            item.rsplit(" ", 1) for item in (summary.group(5) or "").split(", ") if item
        )
    )
    assert stated == dict(reasons)
    accepted = [
        snapshot_from_record(r, f"record #{i} ({r['status']}, {r['meter_time']})")
        for i, r in enumerate(records)
        if r["status"] != "rejected"
    ]
    assert accepted, "nothing accepted"
    problems = check_sequence(accepted, reference)
    assert problems == [], f"{len(accepted)} accepted records; " + describe(problems)
