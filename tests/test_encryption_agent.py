"""The live agent reads an encrypted meter: a simulated Smarty (`p1-agent simulate --flavour
smarty`, through its noisy line) behind a TCP bridge, decrypted and repaired by `p1-agent run`
into a real InfluxDB 1.x; and a wrong key, said in one log line and counted, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from agentproc import run_cli, start_agent, stop_cleanly, wait_counted, wait_for
from meters import TcpMeter
from servers import influxdb1
from test_agent_integration import check_metrics, expected_points, landed_rows, send_paced

from agent.core.decrypting import WRONG_KEY, DecryptingPipeline
from agent.core.dlms import DlmsFramer
from agent.core.gcm import GcmKeys, GcmOpener

pytestmark = pytest.mark.integration

KEY_HEX = "0F1E2D3C4B5A69788796A5B4C3D2E1F0"
KEYS = GcmKeys(bytes.fromhex(KEY_HEX))


def smarty(count: int, noise: str | None = None) -> tuple[list[bytes], bytes]:
    """The clean telegrams and the bytes the simulated Smarty sends through its line."""
    args = ["simulate", "--flavour", "smarty", "--key", KEY_HEX, "--count", str(count)]
    made = run_cli(*args, *(("--noise", noise) if noise else ()))
    assert made.returncode == 0, made.stderr
    clean_frames = run_cli(*args).stdout
    opener = GcmOpener(KEYS)
    clean = []
    for frame in DlmsFramer().feed(clean_frames):
        plain = opener.open(frame.title, frame.counter, frame.ciphertext, frame.tag)
        assert plain is not None
        clean.append(plain)
    return clean, made.stdout


def test_smarty_over_tcp_into_influxdb_v1(tmp_path: Path) -> None:
    clean, sent = smarty(40, noise="bit_clear=0.2,bit_clear_2=0.1,overrun_block=0.05")
    results = DecryptingPipeline(KEYS).feed(sent)
    assert any(r.repair is not None and r.repair.method == "gcm" for r in results)
    want = expected_points(results, clean)
    meter = TcpMeter()
    with influxdb1(tmp_path / "influx") as influx:
        influx.create_database("energy")
        agent = start_agent(
            tmp_path / "data",
            "--source",
            meter.url,
            env={
                "P1_INFLUX_URL": influx.url,
                "P1_INFLUX_API": "v1",
                "P1_INFLUX_DATABASE": "energy",
                "P1_DECRYPTION_KEY": KEY_HEX,
            },
        )
        try:
            conn = meter.accept()
            send_paced(conn.sendall, sent, len(clean))
            wait_counted(agent, len(results))
            check_metrics(agent, results)
            repaired = sum(r.status == "repaired" for r in results)
            assert agent.value("p1_corrected_frames_total", method="gcm") == repaired

            def landed() -> list[dict[str, object]]:
                return influx.query('SELECT * FROM "p1", "p1_mbus"', db="energy")

            wait_for(lambda: len(landed()) == len(want), what="every point in InfluxDB")
            rows = landed()
        finally:
            log = stop_cleanly(agent)
            meter.close()
    for measurement, tags, stamp, fields in landed_rows(rows):
        assert fields == want.pop((measurement, tags, stamp))
    assert not want
    assert KEY_HEX not in log and KEY_HEX.lower() not in log


def test_a_wrong_key_is_one_log_line_and_a_count(tmp_path: Path) -> None:
    _, sent = smarty(12)
    meter = TcpMeter()
    agent = start_agent(
        tmp_path / "data", "--source", meter.url, env={"P1_DECRYPTION_KEY": "ab" * 16}
    )
    try:
        conn = meter.accept()
        send_paced(conn.sendall, sent, 12)
        wait_counted(agent, 12)
        assert agent.value("p1_rejected_frames_total", reason=WRONG_KEY) == 12
    finally:
        log = stop_cleanly(agent)
        meter.close()
    assert log.count("encrypted frames do not decrypt") == 1, log
    assert "ab" * 16 not in log.lower()


def test_an_encrypting_meter_without_a_key_is_said_once(tmp_path: Path) -> None:
    _, sent = smarty(6)
    meter = TcpMeter()
    agent = start_agent(tmp_path / "data", "--source", meter.url)
    try:
        conn = meter.accept()
        send_paced(conn.sendall, sent, 6)
        wait_for(lambda: agent.value("p1_source_bytes_total") >= len(sent), what="bytes read")
    finally:
        log = stop_cleanly(agent)
        meter.close()
    assert log.count("the meter sends encrypted frames") == 1, log
