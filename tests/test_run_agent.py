"""`p1-agent run` end to end: a real process, its store, its /metrics and its shutdown."""

from __future__ import annotations

from pathlib import Path

from agentproc import spawn_agent, start_agent, stop_cleanly, store_lines, wait_for

from agent.simulate import SimulatedMeter


def test_simulator_into_store_with_metrics_and_clean_shutdown(tmp_path: Path) -> None:
    agent = start_agent(tmp_path / "data")  # the defaults: the built-in simulated meter
    try:
        wait_for(
            lambda: (
                'p1_telegrams_total{meter="E0044007123456719",result="valid"} 3.0' in agent.scrape()
            )
        )
        metrics = agent.scrape()
        assert 'p1_voltage_volts{meter="E0044007123456719",phase="l1"}' in metrics
        assert "p1_energy_import_joules_total" in metrics
        assert agent.get("/healthz")[0] == 200
    finally:
        err = stop_cleanly(agent)
    lines = store_lines(tmp_path / "data")
    p1_lines = [line for line in lines if line.startswith("p1,")]
    assert len(p1_lines) >= 3
    assert all("meter=E0044007123456719" in line and "repaired=false" in line for line in p1_lines)
    assert '"event": "stopped"' in err
    assert oct((tmp_path / "data" / "store.sqlite").stat().st_mode & 0o777) == "0o600"


def test_file_source_lands_every_telegram(tmp_path: Path) -> None:
    meter = SimulatedMeter("hu")
    capture = tmp_path / "capture.log"
    capture.write_bytes(b"".join(meter.next_telegram() for _ in range(30)))
    agent = spawn_agent(tmp_path / "data", "--source", f"file:{capture}")
    _, err = agent.proc.communicate(timeout=60)
    assert agent.proc.returncode == 0, err
    lines = store_lines(tmp_path / "data")
    p1_lines = [line for line in lines if line.startswith("p1,")]
    assert len(p1_lines) == 30
    assert sum(line.startswith("p1_billing,") for line in lines) == 30
    stamps = [int(line.rsplit(" ", 1)[1]) for line in p1_lines]
    assert stamps == list(range(stamps[0], stamps[0] + 300, 10))


class BrokenSource:
    """A source with a bug: the agent must not keep running without reading."""

    name = "broken"
    connected = True
    reconnects = 0
    bytes_total = 0
    last_error = None
    hint = None

    def read(self) -> bytes | None:
        raise RuntimeError("a bug")

    def telegram_seen(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_reader_that_dies_turns_health_red_and_the_exit_status_nonzero(tmp_path: Path) -> None:
    from agent.config import Settings
    from agent.run import Agent

    agent = Agent(Settings(data_dir=tmp_path))
    agent.readers[0].source = BrokenSource()
    assert agent.healthy()
    agent.start()
    agent.wait()
    assert agent.failed.is_set()
    assert not agent.healthy()
    agent.shutdown()
