"""Shared fixtures: the published meter data beside the repository (`../shared/data`)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from p1_testkit import reseal, restore_capture_telegram, split_capture
from servers import require_binary

from agent.telegram import Decoder, MeterZone, Telegram

# The repository is at <root>/main and the shared data at <root>/shared, in CI as here.
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
TELEGRAM_DIR = DATA_DIR / "telegrams"
TELEGRAM_NAMES = sorted(path.name for path in TELEGRAM_DIR.glob("*.txt"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # `telegram_name`: every fixture telegram, so a new file is tested (and must be described).
    if "telegram_name" in metafunc.fixturenames:
        metafunc.parametrize("telegram_name", TELEGRAM_NAMES)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    assert DATA_DIR.is_dir(), f"shared test data not found at {DATA_DIR}"
    return DATA_DIR


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
