"""Shared fixtures: the published meter data beside the repository (`../shared/data`).

Every test of that data reaches it through `data_dir` (or a fixture built on it), so where it is
missing they all skip at one place, folded into one line of pytest's summary; under CI=true,
where the data is always present, they fail instead."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import compiled
import pytest
from p1_testkit import reseal, restore_capture_telegram, split_capture
from servers import require_binary
from shareddata import DATA_DIR, MISSING

from agent.core.telegram import Decoder, MeterZone, Telegram

TELEGRAM_DIR = DATA_DIR / "telegrams"
# Real telegrams of two dozen meter models published by other P1 projects (one per file, except
# where a file holds a short stream), with their sources and checksum notes in MANIFEST.tsv.
REALWORLD_DIR = DATA_DIR / "realworld"
# File names only (empty where the data is missing), to parametrise over at collection.
TELEGRAM_NAMES = sorted(path.name for path in TELEGRAM_DIR.glob("*.txt"))
REALWORLD_NAMES = sorted(path.name for path in REALWORLD_DIR.glob("*.txt"))


def published(names: list[str]) -> list[str]:
    """File names to parametrise over. Where the data is missing, one stand-in: the test is
    collected once and its `data_dir` skips, where an empty parameter set would skip silently."""
    return names or ["no-published-data"]


def require_data() -> Path:
    """DATA_DIR, or the one skip of every test of the published data (a failure under CI)."""
    if DATA_DIR.is_dir():
        return DATA_DIR
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(MISSING, pytrace=False)
    pytest.skip(MISSING)


def pytest_sessionstart(session: pytest.Session) -> None:
    if changed := compiled.stale():
        raise pytest.UsageError(
            f"{', '.join(changed)} changed since it was compiled, and the compiled module would "
            "be tested instead: ./dev test rebuilds it (or: pip install -e .)"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    report: pytest.TestReport = yield
    # pytest places a fixture's skip at the test that asked for it; placed here, where it is
    # raised, the short summary folds every test of the missing data into one line.
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and longrepr[2].endswith(MISSING):
        report.longrepr = (__file__, require_data.__code__.co_firstlineno, longrepr[2])
    return report


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # `telegram_name`: every fixture telegram, so a new file is tested (and must be described);
    # `realworld_name`: every file of realworld/, likewise. Resolved through `data_dir`.
    for name, names in (("telegram_name", TELEGRAM_NAMES), ("realworld_name", REALWORLD_NAMES)):
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, published(names), indirect=True)


@pytest.fixture(scope="session")
def telegram_name(request: pytest.FixtureRequest, data_dir: Path) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def realworld_name(request: pytest.FixtureRequest, data_dir: Path) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return require_data()


@pytest.fixture(scope="session")
def telegram_dir(data_dir: Path) -> Path:
    return data_dir / "telegrams"


@pytest.fixture(scope="session")
def telegram_names(telegram_dir: Path) -> list[str]:
    names = sorted(path.name for path in telegram_dir.glob("*.txt"))
    assert len(names) >= 13
    return names


@pytest.fixture(scope="session")
def read_telegram(telegram_dir: Path) -> Callable[[str], bytes]:
    """The exact bytes of one fixture telegram file."""

    def read(name: str) -> bytes:
        return (telegram_dir / name).read_bytes()

    return read


@pytest.fixture(scope="session")
def decode_file(read_telegram: Callable[[str], bytes]) -> Callable[..., Telegram]:
    """Frame and decode one fixture file (exactly one frame expected)."""
    from p1_testkit import frame_all

    def decode(name: str, zone: MeterZone | None = None) -> Telegram:
        frames = frame_all(read_telegram(name))
        assert len(frames) == 1, name
        return Decoder(zone).decode(frames[0].body)

    return decode


@pytest.fixture(scope="session")
def realworld_dir(data_dir: Path) -> Path:
    folder = data_dir / "realworld"
    assert len(REALWORLD_NAMES) >= 62, f"realworld telegrams not found in {folder}"
    return folder


@pytest.fixture(scope="session")
def read_realworld(realworld_dir: Path) -> Callable[[str], bytes]:
    """The exact bytes of one realworld file."""

    def read(name: str) -> bytes:
        return (realworld_dir / name).read_bytes()

    return read


@pytest.fixture(scope="session")
def realworld_manifest(realworld_dir: Path) -> dict[str, dict[str, str]]:
    """MANIFEST.tsv: file name → its row (repo, path_or_issue_url, commit, license, notes, …)."""
    lines = (realworld_dir / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()
    columns = lines[0].split("\t")
    rows = [dict(zip(columns, line.split("\t"), strict=True)) for line in lines[1:] if line]
    manifest = {row["file"]: row for row in rows}
    assert len(manifest) == len(rows), "a file is listed twice in MANIFEST.tsv"
    return manifest


@pytest.fixture(scope="session")
def capture_path(data_dir: Path) -> Path:
    return data_dir / "captures" / "seed-eon-hu-aux-putty.log"


@pytest.fixture(scope="session")
def capture_raw(capture_path: Path) -> bytes:
    return capture_path.read_bytes()


@pytest.fixture(scope="session")
def capture_published(capture_raw: bytes) -> list[bytes]:
    """The 54 telegrams as published (LF, masked digits, checksums of the real digits)."""
    telegrams = split_capture(capture_raw)
    assert len(telegrams) == 54
    return telegrams


@pytest.fixture(scope="session")
def capture_resealed(capture_published: list[bytes]) -> list[bytes]:
    """The 54 telegrams with digits and CRLF restored and correct checksums (`!XXXX\\r\\n`)."""
    return [reseal(restore_capture_telegram(t)) for t in capture_published]


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1, for TLS tests."""
    openssl = require_binary("openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
