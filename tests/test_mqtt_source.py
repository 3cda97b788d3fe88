"""`mqtt://HOST[:PORT]/TOPIC`: raw telegrams another client publishes (as ESPHome, Tasmota or
dsmr-reader's remote datalogger do), read through a real Mosquitto broker."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from agentproc import start_agent, stop_cleanly, store_lines, wait_for
from mqttkit import publish
from p1_testkit import simulated
from servers import mosquitto

from agent import config
from agent.sources import open_source


def test_agent_reads_telegrams_another_client_publishes(tmp_path: Path) -> None:
    telegrams = simulated("dsmr5", 6)
    with mosquitto(tmp_path / "mosquitto") as broker:
        agent = start_agent(tmp_path / "data", env={"P1_SOURCE": f"{broker.url}/dsmr/telegram"})
        try:
            wait_for(lambda: agent.value("p1_source_connected") == 1, proc=agent.proc)
            # One without its final line end, as some bridges send them: still whole.
            publish(broker.url, "dsmr/telegram", [telegrams[0].rstrip(b"\r\n"), *telegrams[1:3]])
            publish(broker.url, "other/topic", telegrams[3:4])  # not subscribed
            wait_for(lambda: agent.value("p1_telegrams_total", result="valid") == 3)
            broker.restart()  # the bridge's broker restarts: subscribed again
            wait_for(lambda: agent.value("p1_source_reconnects_total") == 1, proc=agent.proc)
            publish(broker.url, "dsmr/telegram", telegrams[4:])
            wait_for(lambda: agent.value("p1_telegrams_total", result="valid") == 5)
            assert agent.value("p1_telegrams_total") == 5
        finally:
            stop_cleanly(agent)
    p1 = [line for line in store_lines(tmp_path / "data") if line.startswith("p1,")]
    assert len(p1) == 5


@pytest.mark.parametrize(
    "url",
    ["mqtt://127.0.0.1:1883", "mqtt://127.0.0.1:1883/", "mqtt://:1883/t", "mqtt://u:pw@h/t"],
)
def test_bad_mqtt_source_urls_are_one_line_errors(url: str) -> None:
    with pytest.raises(ValueError) as error:
        open_source(url, threading.Event(), settings=config.Settings())
    assert "\n" not in str(error.value) and "pw" not in str(error.value)
