"""RELIABILITY.md from a real run of the fault, fuzz and security tests.

    .venv/bin/python bench/reliability.py [--output RELIABILITY.md] [extra pytest options]

Runs the tests below with P1_RELIABILITY_RECORD set, so each fault test records its counts
(tests/faultkit.py) and the fuzz run its statistics, takes every test's outcome from pytest
itself, and writes the report. Exit status: pytest's (the report is written either way, failed
rows marked FAILED). Takes about 4 minutes; needs what CI installs (influxd, socat, openssl).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from benchenv import REPO, code_version, cpu_model

FAULTS = "tests/test_faults.py"
FUZZ = "tests/test_fuzz.py"
SECURITY = "tests/test_security.py"
# The adversarial pass of issue 12: a hostile network, a careless config, a bad day.
HARDENING = (
    "tests/test_hardening_network.py",
    "tests/test_hardening_local.py",
    "tests/test_hardening_replay.py",
    "tests/test_hardening_bounds.py",
)
# Checks of the security list that live with the code they check.
ELSEWHERE = {
    "tests/test_spool.py::test_file_is_private_from_the_start": (
        "spool file owner-only (0600) from its creation, whatever the umask"
    ),
    "tests/test_config.py::test_secrets_come_from_environment_or_file_never_from_the_toml": (
        "secrets only from the environment or files; a TOML file holding one is refused"
    ),
    "tests/test_config.py::test_describe_masks_secrets_and_names_origins": (
        "check-config's printout masks the token and a password in the URL"
    ),
    "tests/test_influx.py::test_tls_verification": (
        "v1 and v2 writers refuse a self-signed certificate without its CA (kind tls)"
    ),
    "tests/test_deploy.py::test_dockerfile_runs_as_non_root_with_a_healthcheck": (
        "the image's last USER is not root"
    ),
    "tests/test_deploy.py::test_container_user_is_unprivileged_wherever_the_image_runs": (
        "fixed UID ≥ 1000 owning /data (0700); compose keeps it, drops all capabilities,"
        " no-new-privileges"
    ),
}
SECURITY_HERE = {
    "test_no_secret_in_any_log_line_or_check_config[v2]": (
        "no log line (debug level) of an agent whose writes are refused (400, 401, 500) by a"
        " server echoing the credentials, and no line of check-config, holds the v2 token or"
        " a source URL's password"
    ),
    "test_no_secret_in_any_log_line_or_check_config[v1]": (
        "the same for the v1 password and its base64 Basic-auth form"
    ),
    "test_metrics_listen_on_loopback_by_default": (
        "the running agent with default settings listens on 127.0.0.1:9224 only (its sockets"
        " in /proc)"
    ),
    "test_tls_is_verified_by_default": (
        "the running agent with default settings sends nothing to a self-signed server, keeps"
        " the points, says `check --influx-ca-file`; with the CA file it delivers them"
    ),
    "test_compose_has_no_default_for_any_secret": (
        "every secret in docker-compose.yml is `${NAME:?…}` (no default), none is a literal"
    ),
}


class Outcomes:
    """A pytest plugin keeping each test's outcome: failed if any phase failed."""

    def __init__(self) -> None:
        self.results: dict[str, str] = {}

    def of(self, test: str) -> str:
        """A test's outcome; for a parametrized one, FAILED if any case failed."""
        found = [r for t, r in self.results.items() if t == test or t.startswith(test + "[")]
        if not found:
            return "not run"
        return next((r for r in ("FAILED", "skipped") if r in found), "pass")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self.results[report.nodeid] = "FAILED"
        elif report.skipped:
            self.results.setdefault(report.nodeid, "skipped")
        elif report.when == "call":
            self.results.setdefault(report.nodeid, "pass")


def _version(argv: list[str]) -> str:
    """The line of a program's version output that names the version, else its first."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except OSError:
        return f"{argv[0]} not installed"
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return next((line for line in lines if "version" in line.lower()), lines[0] if lines else "?")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: Iterable[str], rows: Iterable[Iterable[object]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def report(records: list[dict[str, Any]], outcomes: Outcomes, took: float) -> str:
    faults = [r for r in records if r["kind"] == "fault"]
    fuzz = [r for r in records if r["kind"] == "fuzz"]
    hardening = sorted(
        (r for r in records if r["kind"] == "hardening"), key=lambda r: (r["item"], r["checked"])
    )
    machine = f"nproc {len(os.sched_getaffinity(0))}, {cpu_model()}, Linux {platform.release()}"
    out = [
        "# Reliability",
        "",
        "The README promises that no accepted reading is lost. This file is the evidence: faults",
        "injected into the running agent (`p1-agent run` as a process, a simulated meter on a",
        "real TCP connection or pseudo-terminal, a real InfluxDB 1.x or, for answers a real",
        "server cannot be made to give, a local HTTP server that stores what it acknowledges),",
        "fuzzing of the core, and security checks. It is generated, with the numbers of a real",
        "run, by",
        "",
        "```sh",
        ".venv/bin/python bench/reliability.py",
        "```",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; the run took"
        f" {took / 60:.1f} min",
        f"- code: {code_version()}",
        f"- machine: {machine}, Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}",
        f"- servers: {_version(['influxd', 'version'])}; {_version(['socat', '-V'])}",
        "",
        "## Faults",
        "",
        "Counted per fault: **sent**, telegrams the simulated meter wrote (one cut short by the",
        "fault counts); **accepted**, telegrams the agent accepted (valid or repaired, from its",
        "metrics; after SIGKILL, those in its spool or already in InfluxDB at the kill, plus",
        "those the restarted agent accepted); **landed**, the meter's distinct `p1` points in",
        "InfluxDB afterwards; **lost**, accepted telegrams whose point is missing or does not",
        "hold exactly the values the core decodes from the same bytes (a later telegram with",
        "the same meter time overwriting the fields it carries, as InfluxDB does). Every agent",
        "but the one killed must also exit 0 on SIGTERM, with no traceback in its log.",
        "",
        "Time is compressed: the meter's clock advances 1 s per telegram while the wire carries",
        "40 telegrams a second, so the 10 s outage holds 400 telegrams, 6.7 minutes of a DSMR 5",
        "meter. Retry waits are the agent's real ones (backoff with jitter, Retry-After).",
        "",
    ]
    rows = []
    for r in faults:
        rows.append(
            [
                r["fault"],
                r["checked"],
                r["sent"],
                r["accepted"],
                r["landed"],
                r["lost"],
                outcomes.of(r["test"]),
            ]
        )
    out += _table(["Fault", "Checked", "Sent", "Accepted", "Landed", "Lost", "Result"], rows)
    lost = sum(r["lost"] for r in faults)
    passed = sum(outcomes.of(r["test"]) == "pass" for r in faults)
    out += ["", f"{passed} of {len(faults)} faults passed; {lost} accepted telegrams lost.", ""]
    out += ["Notes:", ""]
    out += [f"- {r['fault']}: {r['note']}." for r in faults if r["note"]]
    out += [
        "- Sent but not accepted is never loss by the agent: a telegram cut by the fault is",
        '  rejected and counted (`p1_telegrams_total{result="rejected"}`); after SIGKILL the',
        "  bytes still in the socket buffer die with the process, before anything accepted them.",
        "- The spool's disk full: the data directory is a 16 MiB tmpfs mounted in a private",
        "  mount namespace of the agent (`unshare --user --map-root-user --mount`, no root",
        "  needed); the test fills it with a file through `/proc/PID/root`, so SQLite gets",
        "  ENOSPC, and deletes the file to give the space back. Where user namespaces are",
        "  restricted (Ubuntu 24.04's AppArmor default) the test falls back to the kernel's file",
        "  size limit (RLIMIT_FSIZE set on the running agent with `prlimit`), which fails the",
        "  same writes with EFBIG; the note above names the method used. The alert on",
        "  `p1_spool_write_errors_total` is `P1SpoolWriteErrors` in",
        "  `prometheus/rules/p1-agent.yml`.",
        "- The meter's clock: InfluxDB keeps one point per series and second, so a telegram",
        "  whose meter time was used before lands on that point: its fields overwrite, fields it",
        "  does not carry stay. The first telegram after the clock went back, and a repeated",
        "  second, carry no average power (no positive interval to average over), so their",
        "  points keep the earlier telegram's.",
        "",
        "## Fuzzing",
        "",
    ]
    fuzz_rows = [
        [test.split("::")[1], result]
        for test, result in sorted(outcomes.results.items())
        if test.startswith(FUZZ)
    ]
    out += _table(["Test", "Result"], fuzz_rows)
    out += [
        "",
        "- hypothesis (in `tests/test_fuzz.py`, next to `tests/test_properties.py` on arbitrary",
        "  bytes into a cold pipeline): arbitrary multi-byte damage to telegrams of a meter",
        "  whose profile is ready never raises, every accepted frame's checksum matches, every",
        "  repaired frame is byte for byte a telegram the meter sent; a pipeline fed many",
        "  meters, damaged telegrams and garbage keeps its state (frame buffer, meters, derived",
        "  state, decoder caches, learned bodies) within its bounds. Derandomized: a damaged",
        "  frame passes a 16-bit CRC by chance once in 65 536, and CI must not flake on that.",
    ]
    for r in fuzz:
        out += [
            f"- atheris (`fuzz/fuzz_pipeline.py`, libFuzzer, coverage-guided) over"
            f" `MeterPipeline.feed` in chunks, seeded with {r['seeds']} telegrams (one of each"
            " simulated flavour): "
            f"{r['runs']:,} inputs in {r['seconds']} s ({r['per_second']:,}/s),"
            f" {r['new_units']} new corpus entries, coverage {r['coverage']} edges /"
            f" {r['features']} features, peak RSS {r['peak_rss_mb']} MiB,"
            f" crashes: {', '.join(r['crashes']) or 'none'}.",
        ]
    out += [
        "",
        "## Hardening",
        "",
        "What a hostile peer, a careless configuration and a bad day did to the agent before",
        "each fix, and what the test measures now (item numbers as in the issue that found them).",
        "",
    ]
    hardening_rows = [
        [r["item"], r["checked"], r["figure"], outcomes.of(r["test"])] for r in hardening
    ]
    out += _table(["Item", "Checked", "Measured", "Result"], hardening_rows)
    out += ["", "## Security", ""]
    security_rows = [
        [what, f"`{SECURITY}::{name}`", outcomes.of(f"{SECURITY}::{name}")]
        for name, what in SECURITY_HERE.items()
    ]
    security_rows += [[what, f"`{test}`", outcomes.of(test)] for test, what in ELSEWHERE.items()]
    out += _table(["Checked", "Test", "Result"], security_rows)
    out.append("")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(REPO / "RELIABILITY.md"))
    args, extra = parser.parse_known_args()
    os.chdir(REPO)
    with tempfile.TemporaryDirectory() as folder:
        record = Path(folder) / "records.jsonl"
        os.environ["P1_RELIABILITY_RECORD"] = str(record)
        outcomes = Outcomes()
        started = time.monotonic()
        status = pytest.main(
            [FAULTS, FUZZ, SECURITY, *HARDENING, *ELSEWHERE, "-p", "no:cacheprovider", *extra],
            plugins=[outcomes],
        )
        took = time.monotonic() - started
        text = record.read_text() if record.exists() else ""
    records = [json.loads(line) for line in text.splitlines()]
    Path(args.output).write_text(report(records, outcomes, took))
    print(f"wrote {args.output}", file=sys.stderr)
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
