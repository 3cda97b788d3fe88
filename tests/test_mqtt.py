"""The MQTT sink and Home Assistant discovery, against a real Mosquitto broker.

Discovery payloads are checked against the rules Home Assistant documents for MQTT discovery
and for sensors (which device_class takes which units and state classes), so that the entities
would be created and accepted by the Energy dashboard.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentproc import AgentProcess, run_cli, start_agent, stop_cleanly, store_lines, wait_for
from mqttkit import publish, watch
from p1_testkit import simulated
from prometheus_client import generate_latest
from servers import Mosquitto, free_port, mosquitto, require_binary

from agent import config
from agent.core.pipeline import MeterPipeline
from agent.mqttclient import check_broker
from agent.simulate import FLAVOURS
from agent.sinks import hadiscovery
from agent.sinks.mqtt import MqttSink
from agent.sinks.prometheus import MeterState, Metrics
from agent.sinks.spool import Spool

# Home Assistant's discovery topic: <prefix>/<component>/[<node_id>/]<object_id>/config, ids of
# [a-zA-Z0-9_-] only.
CONFIG_TOPIC = re.compile(r"homeassistant/sensor/(?:[a-zA-Z0-9_-]+/)?[a-zA-Z0-9_-]+/config")
# Home Assistant's sensor rules (DEVICE_CLASS_UNITS, DEVICE_CLASS_STATE_CLASSES) for the classes
# a meter has; the Energy dashboard takes energy in kWh/Wh/MWh/GJ with a total state class, gas
# and water in m³.
UNITS: dict[str, set[str | None]] = {
    "energy": {"Wh", "kWh", "MWh", "MJ", "GJ"},
    "power": {"W", "kW", "MW"},
    "voltage": {"V", "mV"},
    "current": {"A", "mA"},
    "frequency": {"Hz", "kHz"},
    "gas": {"m³", "ft³", "CCF"},
    "water": {"m³", "L", "gal", "ft³", "CCF"},
    "duration": {"s", "min", "h", "d"},
    "power_factor": {"%", None},
    "timestamp": {None},
}
STATE_CLASSES: dict[str, set[str | None]] = {
    "energy": {"total", "total_increasing"},
    "gas": {"total", "total_increasing"},
    "water": {"total", "total_increasing"},
    "power": {"measurement"},
    "voltage": {"measurement"},
    "current": {"measurement"},
    "frequency": {"measurement"},
    "power_factor": {"measurement"},
    "duration": {"measurement", "total", "total_increasing"},
    "timestamp": {None},
}
REQUIRED_CLASSES = {
    "energy_import_kwh": ("energy", "total_increasing", "kWh"),
    "energy_export_t2_kwh": ("energy", "total_increasing", "kWh"),
    "power_import_kw": ("power", "measurement", "kW"),
    "voltage_l1_v": ("voltage", "measurement", "V"),
    "current_l1_a": ("current", "measurement", "A"),
    "gas_m3": ("gas", "total_increasing", "m³"),
}


def check_discovery(topic: str, payload: bytes) -> dict[str, object]:
    """One discovery message as Home Assistant would judge it; the config."""
    assert CONFIG_TOPIC.fullmatch(topic), topic
    config = json.loads(payload)
    assert isinstance(config, dict)
    assert isinstance(config["state_topic"], str) and "+" not in config["state_topic"]
    assert re.fullmatch(r"\{\{ value_json\[\"\w+\"\] \}\}", str(config["value_template"]))
    assert isinstance(config["unique_id"], str)
    device = config["device"]
    assert isinstance(device, dict) and device["identifiers"] and device["name"]
    device_class = config.get("device_class")
    unit = config.get("unit_of_measurement")
    state_class = config.get("state_class")
    assert state_class in (None, "measurement", "total", "total_increasing")
    if device_class is not None:
        assert unit in UNITS[str(device_class)], (topic, device_class, unit)
        assert state_class in STATE_CLASSES[str(device_class)], (topic, device_class, state_class)
    assert config.get("entity_category") in (None, "diagnostic")  # sensors cannot be `config`
    assert config["availability_topic"] == "p1-agent/status"
    return config


def discovered(messages: dict[str, bytes]) -> dict[str, dict[str, object]]:
    """Configs by unique_id, each checked, the unique ids unique."""
    configs = [check_discovery(topic, payload) for topic, payload in messages.items()]
    by_id = {str(c["unique_id"]): c for c in configs}
    assert len(by_id) == len(configs)
    return by_id


# --- Payloads (no broker).


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_flavour_discovers_as_home_assistant_requires(flavour: str) -> None:
    results = MeterPipeline().feed(b"".join(simulated(flavour, 3)))
    result = [r for r in results if r.telegram is not None][-1]
    assert result.telegram is not None
    fields = hadiscovery.state_fields(result)
    topics = hadiscovery.Topics("p1-agent", "homeassistant")
    owner = hadiscovery.device("m", result.telegram.header, result.telegram.equipment_id)
    found = {
        topic: hadiscovery.encode(config)
        for topic, config in hadiscovery.configs(topics, "m", fields, owner, {}, link=True)
    }
    configs = discovered(found)
    assert len(configs) == len(fields) + 4  # a sensor per reading and the link's health
    for name, (device_class, state_class, unit) in REQUIRED_CLASSES.items():
        if name in fields:
            config = configs[f"p1_m_{name}"]
            assert (config["device_class"], config["state_class"]) == (device_class, state_class)
            assert config["unit_of_measurement"] == unit
    text_fields = [name for name, value in fields.items() if isinstance(value, str)]
    for name in text_fields:  # a text sensor with a state class would be refused
        assert "state_class" not in configs[f"p1_m_{name}"]


def test_meter_names_become_valid_topic_levels() -> None:
    assert hadiscovery.topic_id("E0044007123456719") == "E0044007123456719"
    assert hadiscovery.topic_id("HLY5\\D545/x+#") == "HLY5_D545_x__"
    topics = hadiscovery.Topics("p1-agent", "homeassistant")
    assert CONFIG_TOPIC.fullmatch(topics.config("a b/c", "voltage_l1_v"))
    device = hadiscovery.device("house", "ISK5\\2M550T-1012", "E0043007")
    assert device == {
        "identifiers": ["p1_E0043007"],
        "name": "P1 meter house",
        "manufacturer": "Iskraemeco",
        "model": "M550T-1012",  # after the enhanced-identification `\\2`
    }


# --- Against a broker.


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with mosquitto(tmp_path / "mosquitto") as server:
        yield server


METER = "1SAG3101234567"  # the simulated Fluvius meter's equipment id
LINK_ENTITIES = ("link_crc_failure_percent", "link_repaired", "link_rejected", "link_last_telegram")


def mqtt_env(broker: Mosquitto) -> dict[str, str]:
    return {"P1_MQTT_URL": broker.url, "P1_SOURCE": "simulator:fluvius,interval=0.2"}


def accepted(agent: AgentProcess) -> float:
    return agent.value("p1_telegrams_total", result="valid") + agent.value(
        "p1_telegrams_total", result="repaired"
    )


def test_simulated_meter_arrives_as_retained_state_and_discovery(
    tmp_path: Path, broker: Mosquitto
) -> None:
    agent = start_agent(tmp_path / "data", env=mqtt_env(broker))
    watcher = watch(broker.url, "p1-agent/#", "homeassistant/#")
    try:
        watcher.wait(lambda: watcher.count(f"p1-agent/{METER}/state") >= 3, what="3 states")
        wait_for(lambda: agent.value("p1_mqtt_messages_total") > 0, proc=agent.proc)
        assert agent.value("p1_mqtt_connected") == 1
        # Telegrams that came before the connection was up are counted as dropped; since,
        # nothing is lost.
        dropped = agent.value("p1_mqtt_dropped_messages_total", reason="disconnected")
        states = watcher.count(f"p1-agent/{METER}/state")
        watcher.wait(lambda: watcher.count(f"p1-agent/{METER}/state") >= states + 3)
        assert agent.value("p1_mqtt_dropped_messages_total", reason="disconnected") == dropped
        assert agent.value("p1_mqtt_dropped_messages_total", reason="queue_full") == 0
        scrape = agent.scrape().encode()
    finally:
        log = stop_cleanly(agent)
        watcher.wait(lambda: watcher.latest.get("p1-agent/status") == b"offline", what="offline")
        watcher.close()
    assert "mqtt" in log
    # A client that comes later gets the retained messages: the last state and the discovery.
    check = subprocess.run(
        [require_binary("promtool"), "check", "metrics"], input=scrape, capture_output=True
    )
    assert check.returncode == 0 and not check.stdout.strip(), check
    later = watch(broker.url, "p1-agent/#", "homeassistant/#")
    try:
        later.wait(lambda: f"p1-agent/{METER}/state" in later.latest, what="retained")
        state = later.json(f"p1-agent/{METER}/state")
        entities = [*list(state)[2:], *LINK_ENTITIES]  # not meter_time and repaired
        wanted = [f"homeassistant/sensor/p1_{METER}/{name}/config" for name in entities]
        wanted.append(f"p1-agent/{METER}/link")
        later.wait(lambda: all(t in later.latest for t in wanted), what="retained discovery")
        configs = discovered(later.matching("homeassistant/"))
        link = later.json(f"p1-agent/{METER}/link")
    finally:
        later.close()
    assert later.latest["p1-agent/status"] == b"offline"
    # The state message: the InfluxDB field names and values of the last stored point.
    last = [line for line in store_lines(tmp_path / "data") if line.startswith("p1,")][-1]
    stored = dict(part.split("=", 1) for part in last.split(" ")[1].split(","))
    assert stored.pop("repaired") == "false" and state.pop("repaired") is False
    assert isinstance(state.pop("meter_time"), str)
    for mbus in ("gas_m3", "water_m3"):  # the M-Bus readings beside the p1 fields
        value = state.pop(mbus)
        assert isinstance(value, float) and value > 0
    assert set(state) == set(stored)
    for name, value in state.items():
        if isinstance(value, float):
            assert float(stored[name]) == value, name
    assert link["rejected"] == 0 and link["crc_failure_percent"] == 0.0
    # Every state field and the link's health have an entity, on one device.
    for name in state:
        config = configs[f"p1_{METER}_{name}"]
        assert config["state_topic"] == f"p1-agent/{METER}/state"
    assert configs[f"p1_{METER}_link_last_telegram"]["device_class"] == "timestamp"
    assert {json.dumps(c["device"]) for c in configs.values()} == {
        json.dumps(configs[f"p1_{METER}_gas_m3"]["device"])
    }


def test_broker_restart_mid_stream_loses_nothing_in_the_spool(
    tmp_path: Path, broker: Mosquitto
) -> None:
    agent = start_agent(tmp_path / "data", env=mqtt_env(broker))
    watcher = watch(broker.url, "p1-agent/+/state")
    try:
        watcher.wait(lambda: watcher.messages, what="a first state")
        broker.stop()
        wait_for(lambda: agent.value("p1_mqtt_connected") == 0, proc=agent.proc)
        before = accepted(agent)
        # The reader goes on while the broker is away; what MQTT could not take is counted.
        wait_for(lambda: accepted(agent) >= before + 5, proc=agent.proc, what="reading on")
        wait_for(
            lambda: agent.value("p1_mqtt_dropped_messages_total", reason="disconnected") >= 5,
            proc=agent.proc,
        )
        seen = watcher.count(f"p1-agent/{METER}/state")
        broker.start()
        wait_for(lambda: agent.value("p1_mqtt_connected") == 1, proc=agent.proc, what="back")
        assert agent.value("p1_mqtt_reconnects_total") == 1
        watcher.wait(
            lambda: watcher.count(f"p1-agent/{METER}/state") > seen + 2,
            what="states after the restart",
        )
        counted = agent.value("p1_telegrams_total")
    finally:
        log = stop_cleanly(agent)
        watcher.close()
    assert "lost the MQTT broker" in log
    # Every accepted telegram is in the store, those while the broker was away too (how many
    # came after the restart depends on how soon the states seen after it were published).
    p1 = [line for line in store_lines(tmp_path / "data") if line.startswith("p1,")]
    assert len(p1) >= counted >= before + 5


def test_a_broker_that_stops_reading_never_holds_up_the_reader(
    tmp_path: Path, broker: Mosquitto
) -> None:
    # A reading per topic too: ~45 messages a telegram, so paho's bounded queue fills in seconds.
    env = {**mqtt_env(broker), "P1_MQTT_FIELD_TOPICS": "true"}
    agent = start_agent(tmp_path / "data", env=env)
    watcher = watch(broker.url, "p1-agent/+/state")
    assert broker.proc is not None
    try:
        watcher.wait(lambda: watcher.messages, what="a first state")
        broker.proc.send_signal(signal.SIGSTOP)  # connected, but it takes nothing any more
        before = accepted(agent)
        wait_for(
            lambda: agent.value("p1_mqtt_dropped_messages_total", reason="queue_full") > 0,
            proc=agent.proc,
            what="the queue full",
        )
        wait_for(lambda: accepted(agent) >= before + 10, proc=agent.proc, what="reading on")
        broker.proc.send_signal(signal.SIGCONT)
        seen = watcher.count(f"p1-agent/{METER}/state")
        watcher.wait(lambda: watcher.count(f"p1-agent/{METER}/state") > seen + 3, what="again")
    finally:
        if broker.proc is not None:
            broker.proc.send_signal(signal.SIGCONT)
        stop_cleanly(agent)
        watcher.close()
    p1 = [line for line in store_lines(tmp_path / "data") if line.startswith("p1,")]
    assert len(p1) >= before + 10


def publish_fluvius(sink: MqttSink, metrics: Metrics, meter: str, count: int) -> None:
    for result in MeterPipeline().feed(b"".join(simulated("fluvius", count))):
        metrics.observe(meter, result, time.time())
        sink.publish(meter, result, metrics.meter(meter))


def sink_for(broker: Mosquitto, **env: str) -> MqttSink:
    settings = config.load({}, {"P1_MQTT_URL": broker.url, **env})
    sink = MqttSink(settings)
    sink.start()
    wait_for(lambda: sink.stats.connected, what="connected")
    return sink


def test_a_meter_that_leaves_is_removed_from_home_assistant(
    tmp_path: Path, broker: Mosquitto
) -> None:
    watcher = watch(broker.url, "p1-agent/#", "homeassistant/#")
    sink = sink_for(broker, P1_MQTT_FIELD_TOPICS="true")
    metrics = Metrics(meter_expiry=100.0)
    spool = Spool(tmp_path / "store.sqlite", max_bytes=0, max_age=100.0)
    metrics.read_from(dict, spool, None, sink)
    try:
        for meter in ("gone", "stays", "untracked"):
            metrics.admit("src", meter, 0.0 if meter == "gone" else 50.0)
        publish_fluvius(sink, metrics, "gone", 2)
        publish_fluvius(sink, metrics, "stays", 2)
        for result in MeterPipeline().feed(simulated("fluvius")[0]):
            sink.publish("not-admitted", result, MeterState())  # no metrics: not published
        watcher.wait(lambda: "p1-agent/gone/voltage_l1_v" in watcher.latest, what="field topic")
        assert float(watcher.latest["p1-agent/gone/voltage_l1_v"]) > 200
        watcher.wait(lambda: watcher.matching("homeassistant/sensor/p1_gone/"), what="configs")
        # Silent for meter_expiry: it leaves the metrics, and Home Assistant.
        assert metrics.expire("src", 120.0, keep="stays") == ["gone"]
        watcher.wait(  # its discovery, and its retained state and fields too
            lambda: (
                not watcher.matching("homeassistant/sensor/p1_gone/")
                and not watcher.matching("p1-agent/gone/")
            ),
            what="gone",
        )
        assert watcher.matching("homeassistant/sensor/p1_stays/")
        assert "p1-agent/stays/state" in watcher.latest
        assert not watcher.matching("p1-agent/not-admitted/")
        scrape = generate_latest(metrics.registry).decode()
        assert 'p1_mqtt_messages_total{meter="stays"}' in scrape and '"gone"' not in scrape
    finally:
        sink.close()
        watcher.close()
        spool.close()


def test_home_assistant_restarting_gets_discovery_again(broker: Mosquitto) -> None:
    watcher = watch(broker.url, "homeassistant/sensor/#")
    sink = sink_for(broker)
    try:
        publish_fluvius(sink, Metrics(), "m", 1)
        topic = "homeassistant/sensor/p1_m/voltage_l1_v/config"
        watcher.wait(lambda: watcher.count(topic) == 1, what="discovery")
        publish(broker.url, "homeassistant/status", [b"online"])  # HA's birth message
        watcher.wait(lambda: watcher.count(topic) == 2, what="discovery again")
    finally:
        sink.close()
        watcher.close()


def test_a_broker_never_there_is_said_and_the_agent_reads_on(tmp_path: Path) -> None:
    env = {"P1_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}", "P1_SOURCE": "simulator,interval=0.2"}
    agent = start_agent(tmp_path / "data", env=env)
    try:
        wait_for(lambda: accepted(agent) >= 5, proc=agent.proc)
        assert agent.value("p1_mqtt_connected") == 0
    finally:
        log = stop_cleanly(agent)
    assert "cannot reach the MQTT broker; retrying with backoff" in log


def test_password_from_a_file_and_a_refused_one_is_said(tmp_path: Path) -> None:
    with mosquitto(tmp_path / "auth", users={"p1": "broker-s3cret"}) as broker:
        secret = tmp_path / "password"
        secret.write_text("broker-s3cret\n")
        sink = sink_for(broker, P1_MQTT_USERNAME="p1", P1_MQTT_PASSWORD_FILE=str(secret))
        sink.close()
        agent = start_agent(
            tmp_path / "data",
            env={**mqtt_env(broker), "P1_MQTT_USERNAME": "p1", "P1_MQTT_PASSWORD": "wrong-pw"},
        )
        try:
            wait_for(lambda: accepted(agent) >= 3, proc=agent.proc)
            assert agent.value("p1_mqtt_connected") == 0
        finally:
            log = stop_cleanly(agent)
        checks = {
            password: run_cli(
                "check-config",
                env={**mqtt_env(broker), "P1_MQTT_USERNAME": "p1", "P1_MQTT_PASSWORD": password},
            )
            for password in ("broker-s3cret", "wrong-pw")
        }
    assert "refused the connection" in log and "wrong-pw" not in log
    good, bad = checks["broker-s3cret"], checks["wrong-pw"]
    assert good.returncode == 0 and b"ok: MQTT broker mqtt://127.0.0.1" in good.stdout, good
    assert bad.returncode == 1 and b"FAILED: MQTT broker" in bad.stdout
    assert b"refused the connection: Not authorized" in bad.stdout and b"wrong-pw" not in bad.stdout


def test_mqtts_verifies_the_broker_against_the_ca_file(
    tmp_path: Path, self_signed: tuple[Path, Path]
) -> None:
    with mosquitto(tmp_path / "tls", tls=self_signed) as broker:
        sink = sink_for(broker, P1_MQTT_CA_FILE=str(self_signed[0]))
        sink.close()
        # With the system's CAs only, the broker's certificate is refused (the client the sink
        # makes is the one check-config makes).
        passed, message = check_broker(config.load({}, {"P1_MQTT_URL": broker.url}))
    assert not passed and "certificate verify failed" in message, message
