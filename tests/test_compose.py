"""docker-compose.yml without a Docker engine: it validates against the compose specification
(check-jsonschema ships it), everything it mounts exists, the variables it needs are in
.env.example, each service gets only its own secrets and publishes on loopback only, and the
services, Prometheus, Alertmanager, Grafana and Mosquitto agree on names, ports and paths."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from dashboards import ROOT

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
TEXT = COMPOSE.read_text()
SPEC: dict[str, Any] = yaml.safe_load(TEXT)
SERVICES: dict[str, dict[str, Any]] = SPEC["services"]
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
SECRET = re.compile(r"PASSWORD|TOKEN")
# Who may see each secret of .env: the least each service needs.
SECRET_HOLDERS = {
    "INFLUX_ADMIN_PASSWORD": {"influxdb"},
    "INFLUX_OPERATOR_TOKEN": {"influxdb", "influxdb-auth"},
    "GRAFANA_INFLUX_PASSWORD": {"influxdb-auth", "grafana"},
    "GRAFANA_ADMIN_PASSWORD": {"grafana"},
    "MQTT_PASSWORD": {"agent", "demo-agent", "mosquitto"},
}
ONE_SHOT = {"influxdb-auth"}  # runs on each `up` and exits: no healthcheck, no restart


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    schema = ["--builtin-schema", "vendor.compose-spec"]
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *schema, str(path)],
        capture_output=True,
        text=True,
    )


def example_env() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution, enough for this file."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match[1], match[2] or "", match[3] or ""
        value = env.get(name)
        if operator.endswith("?"):
            assert value if operator == ":?" else value is not None, f"{name}: {argument}"
        if operator.endswith("-") and (value is None or (operator == ":-" and not value)):
            return argument
        return value or ""

    return VARIABLE.sub(substitute, text)


def test_compose_file_validates_against_the_compose_spec() -> None:
    result = validate(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_filled_in_example_env_gives_a_valid_file(tmp_path: Path) -> None:
    """With every empty value of .env.example filled in, all `${…}` resolve (as `docker compose
    config` would) and the result is still a valid compose file."""
    env = {key: value or "secret-value" for key, value in example_env().items()}
    resolved = interpolate(TEXT, env)
    (tmp_path / "docker-compose.yml").write_text(resolved)
    result = validate(tmp_path / "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    agent = yaml.safe_load(resolved)["services"]["agent"]
    assert agent["devices"] == ["/dev/ttyUSB0:/dev/p1"]


def test_required_variables_have_no_defaults_and_are_in_env_example() -> None:
    required = {m[1] for m in VARIABLE.finditer(TEXT) if m[2] == ":?"}
    assert required <= set(example_env()), required - set(example_env())
    influx = SERVICES["influxdb"]["environment"]
    for key, value in influx.items():
        if key != "DOCKER_INFLUXDB_INIT_MODE":
            assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", value), f"{key} must have no default"
    # Every secret is required, never defaulted, and left for the user to choose.
    secrets = {m[1] for m in VARIABLE.finditer(TEXT) if SECRET.search(m[1])}
    assert secrets == set(SECRET_HOLDERS)
    for match in VARIABLE.finditer(TEXT):
        if SECRET.search(match[1]):
            assert match[2] == ":?", f"{match[0]} must have no default"
    for key, value in example_env().items():
        if SECRET.search(key):
            assert value == "", key


def services_using(name: str) -> set[str]:
    return {
        service for service, spec in SERVICES.items()
        if re.search(r"\$\{" + name + r"\b", yaml.safe_dump(spec))
    }  # fmt: skip


def test_each_service_gets_only_its_own_secrets() -> None:
    for name, holders in SECRET_HOLDERS.items():
        assert services_using(name) == holders, name
    # No env_file: one would hand every service every password in it.
    assert not [name for name, service in SERVICES.items() if "env_file" in service]
    # The agent writes with a token made for it; Grafana reads with a login made for it.
    for agent in ("agent", "demo-agent"):
        environment = SERVICES[agent]["environment"]
        assert "P1_INFLUX_TOKEN" not in environment
        token_dir = str(Path(environment["P1_INFLUX_TOKEN_FILE"]).parent)
        assert f"agent-token:{token_dir}:ro" in SERVICES[agent]["volumes"]
    assert f"agent-token:{token_dir}" in SERVICES["influxdb-auth"]["volumes"]
    grafana = SERVICES["grafana"]["environment"]
    assert not [key for key in grafana if "TOKEN" in key]


def test_every_published_port_is_on_loopback() -> None:
    env = {key: value or "secret-value" for key, value in example_env().items()}
    services = yaml.safe_load(interpolate(TEXT, env))["services"]
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert set(published) == {"influxdb", "prometheus", "alertmanager", "grafana", "mosquitto"}
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"


def test_every_bind_mount_and_build_context_exists() -> None:
    named = set(SPEC["volumes"])
    mounts = set()
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
                mounts.add(source)
            else:
                assert source in named, f"{name}: volume {source} is not declared"
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file()
    assert mounts == {
        "./deploy/influxdb-init", "./deploy/influxdb-auth.sh", "./deploy/mosquitto.conf",
        "./prometheus", "./alertmanager", "./grafana/provisioning", "./grafana/dashboards",
    }  # fmt: skip


def test_every_service_has_a_healthcheck_and_named_data() -> None:
    for name, service in SERVICES.items():
        if name in ONE_SHOT:
            assert service["restart"] == "no" and "healthcheck" not in service, name
        else:
            assert service["healthcheck"]["test"][0] == "CMD", name
    data = {"agent": "/data", "influxdb": "/var/lib/influxdb2", "prometheus": "/prometheus"}
    data |= {"grafana": "/var/lib/grafana", "alertmanager": "/alertmanager"}
    data["mosquitto"] = "/mosquitto/data"
    for name, target in data.items():
        assert any(
            v.split(":")[1] == target and not v.startswith((".", "/"))
            for v in SERVICES[name]["volumes"]
        ), f"{name} keeps {target} on a named volume"


def test_agent_reads_the_serial_device_and_the_demo_a_noisy_simulator() -> None:
    agent, demo = SERVICES["agent"], SERVICES["demo-agent"]
    (device,) = agent["devices"]
    assert device.endswith(":" + agent["environment"]["P1_SOURCE"])
    assert agent["profiles"] == ["meter"]
    assert demo["profiles"] == ["demo"]
    assert re.fullmatch(r"simulator:\w+,noise=0\.\d+", demo["environment"]["P1_SOURCE"])
    # Prometheus scrapes `agent`, whichever of the two runs.
    assert "agent" in demo["networks"]["default"]["aliases"]
    for service in (agent, demo):
        assert service["environment"]["P1_INFLUX_URL"] == "http://influxdb:8086"
    # The broker is optional; everything else runs in both profiles.
    assert SERVICES["mosquitto"]["profiles"] == ["mqtt"]
    assert [name for name, s in SERVICES.items() if "profiles" not in s] == [
        "influxdb", "influxdb-auth", "prometheus", "alertmanager", "grafana"
    ]  # fmt: skip


def test_agent_settings_are_ones_the_agent_reads() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    names = set(re.findall(r"\bP1_\w+", TEXT + ENV_EXAMPLE.read_text()))
    compose_only = {"P1_DEVICE", "P1_DEVICE_GID"}
    for name in names - compose_only:
        assert name in help_text, f"{name} is not a p1-agent setting"


def test_prometheus_scrapes_the_agent_service() -> None:
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "p1-agent"  # the rules' `up{job="p1-agent"}`
    assert job["static_configs"][0]["targets"] == ["agent:9224"]
    assert "EXPOSE 9224" in (ROOT / "Dockerfile").read_text()
    assert "P1_METRICS_ADDRESS=0.0.0.0:9224" in (ROOT / "Dockerfile").read_text()
    prometheus = SERVICES["prometheus"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    # Rule files resolve inside the mounted directory.
    for pattern in config["rule_files"]:
        assert not pattern.startswith("/") and list((ROOT / "prometheus").glob(pattern))
    # Alerts go to the stack's Alertmanager, which reads the shipped alertmanager.yml.
    (manager,) = config["alerting"]["alertmanagers"]
    assert manager["static_configs"][0]["targets"] == ["alertmanager:9093"]
    alertmanager = SERVICES["alertmanager"]
    assert "./alertmanager:/etc/alertmanager:ro" in alertmanager["volumes"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in alertmanager["command"]
    assert (ROOT / "alertmanager" / "alertmanager.yml").is_file()
    assert "127.0.0.1:9093:9093" in alertmanager["ports"]


def test_grafana_provisioning_matches_the_stack() -> None:
    grafana = SERVICES["grafana"]
    mounts = dict(v.rsplit(":", 2)[:2] for v in grafana["volumes"] if v.startswith("."))
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "dashboards" / "p1.yml").read_text()
    )["providers"][0]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "grafana" / "dashboards" / Path(home).name).is_file()
    assert home.startswith(provider["options"]["path"] + "/")
    sources_text = (ROOT / "grafana" / "provisioning" / "datasources" / "p1.yml").read_text()
    sources = {s["type"]: s for s in yaml.safe_load(sources_text)["datasources"]}
    assert sources["influxdb"]["url"] == "http://influxdb:8086"
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    # Every $VARIABLE the data sources use is in Grafana's environment.
    used = re.findall(r"\$\{?(\w+)", yaml.safe_dump(sources))
    assert used
    for name in used:
        assert name in grafana["environment"], name
    # The InfluxQL database is the bucket, as the init script maps it; the login is the
    # read-only one influxdb-auth makes.
    assert sources["influxdb"]["jsonData"]["dbName"] == "$INFLUX_BUCKET"
    assert sources["influxdb"]["user"] == "grafana"
    assert sources["influxdb"]["secureJsonData"] == {"password": "$GRAFANA_INFLUX_PASSWORD"}
    auth = SERVICES["influxdb-auth"]["environment"]
    assert grafana["environment"]["GRAFANA_INFLUX_PASSWORD"] == auth["GRAFANA_INFLUX_PASSWORD"]
    assert (
        grafana["environment"]["INFLUX_BUCKET"]
        == SERVICES["influxdb"]["environment"]["DOCKER_INFLUXDB_INIT_BUCKET"]
    )


def test_influxdb_init_script_maps_the_bucket_for_influxql() -> None:
    influx = SERVICES["influxdb"]
    assert "./deploy/influxdb-init:/docker-entrypoint-initdb.d:ro" in influx["volumes"]
    scripts = sorted((ROOT / "deploy" / "influxdb-init").iterdir())
    assert scripts
    for script in scripts:
        assert os.access(script, os.X_OK), f"{script.name} must be executable"
        subprocess.run(["bash", "-n", str(script)], check=True)
    text = "\n".join(s.read_text() for s in scripts)
    assert "influx v1 dbrp create" in text
    assert '--db "${DOCKER_INFLUXDB_INIT_BUCKET}"' in text
    assert '--bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}"' in text
