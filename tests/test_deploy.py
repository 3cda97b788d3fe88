"""Deployment files: the systemd unit verifies, the image runs as non-root with a healthcheck,
the example settings load, and `p1-agent healthcheck` tells a live agent from a dead one."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import yaml
from servers import Mosquitto, free_port, require_binary

from agent import config

ROOT = Path(__file__).resolve().parents[1]


def test_systemd_unit_verifies_and_is_hardened(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze")
    unit = (ROOT / "deploy" / "p1-agent.service").read_text()
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if re.match(r"^[A-Z]\w+=", line)
    )
    assert settings["User"] == "p1-agent"
    assert settings["ProtectSystem"] == "strict"
    assert settings["DevicePolicy"] == "closed"
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["StateDirectory"] == "p1-agent"
    # The binary is not installed here: point ExecStart at one that is, then let systemd judge.
    (tmp_path / "p1-agent.service").write_text(
        re.sub(r"^ExecStart=.*$", f"ExecStart={shutil.which('true')}", unit, flags=re.M)
    )
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "p1-agent.service")], capture_output=True, text=True
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    final_stage = text.rsplit("\nFROM ", 1)[1]
    users = re.findall(r"^USER (\S+)", final_stage, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert "--groups dialout" in final_stage
    assert re.search(r'^HEALTHCHECK .*\n?.*CMD \["p1-agent", "healthcheck"\]', final_stage, re.M)
    assert 'ENTRYPOINT ["p1-agent"]' in final_stage


def test_example_settings_load() -> None:
    values, sources = config.read_toml(ROOT / "deploy" / "p1-agent.toml")
    assert sources[0].url == "/dev/p1"
    assert values["influx.url"] == "http://localhost:8086"


def test_udev_rule_names_the_cable_p1() -> None:
    rule = (ROOT / "deploy" / "99-p1.rules").read_text()
    active = [line for line in rule.splitlines() if line and not line.startswith("#")]
    assert len(active) == 1
    assert 'SUBSYSTEM=="tty"' in active[0] and 'SYMLINK+="p1"' in active[0]


def test_healthcheck_fails_without_an_agent() -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "agent.cli", "healthcheck", "--metrics-address", f"0.0.0.0:{port}"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert f"http://127.0.0.1:{port}/healthz" in result.stderr
    assert "Traceback" not in result.stderr


def test_container_user_is_unprivileged_wherever_the_image_runs() -> None:
    """The image's user has a fixed UID that is not root's and owns /data alone; the compose
    services built from the image keep that user and gain no privileges."""
    final_stage = (ROOT / "Dockerfile").read_text().rsplit("\nFROM ", 1)[1]
    uid = re.search(r"useradd [^\n]*--uid (\d+)", final_stage)
    assert uid is not None and int(uid[1]) >= 1000
    assert "chown p1:p1 /data" in final_stage and "chmod 0700 /data" in final_stage
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    agents = {name: s for name, s in services.items() if "build" in s}
    assert agents
    for name, service in agents.items():
        assert "user" not in service, name  # the image's USER, not root
        assert not service.get("privileged") and not service.get("cap_add"), name
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name


FAKE_INFLUX = """#!/bin/bash
# The influx CLI's answers as its documentation shows them, each call logged.
echo "$*" >> "$INFLUX_LOG"
case "$1 $2" in
    "bucket list")
        printf '[\\n\\t{\\n\\t\\t"id": "0a1b2c3d4e5f6a7b",\\n\\t\\t"name": "p1"\\n\\t}\\n]\\n' ;;
    "auth create") printf '{\\n\\t"id": "0c0c",\\n\\t"token": "write-only-token=="\\n}\\n' ;;
    "v1 auth")
        if [ "$3" = list ]; then cat "$V1_AUTHS" 2>/dev/null || echo "[]"
        else printf '[{"id": "0d0d", "token": "grafana"}]' > "$V1_AUTHS"; fi ;;
esac
"""


def test_influxdb_auth_makes_a_write_only_token_and_a_read_only_login(tmp_path: Path) -> None:
    """deploy/influxdb-auth.sh against the influx CLI's documented answers (InfluxDB 2 is not
    packaged for Debian, so no real server here): the agent's token lands in its file, readable
    by the agent's user only; Grafana's login may only read; a second run makes nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "influx").write_text(FAKE_INFLUX)
    (bin_dir / "influx").chmod(0o755)
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    token_file = tmp_path / "influx-token"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "INFLUX_LOG": str(tmp_path / "calls"),
        "V1_AUTHS": str(tmp_path / "v1-auths"),
        "INFLUX_BUCKET": "p1",
        "INFLUX_ORG": "home",
        "INFLUX_TOKEN": "operator-token",
        "GRAFANA_INFLUX_PASSWORD": "grafana-pass",
        "AGENT_TOKEN_FILE": str(token_file),
        "AGENT_UID": str(os.getuid()),
    }
    script = ROOT / "deploy" / "influxdb-auth.sh"
    first = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert token_file.read_text() == "write-only-token=="
    assert token_file.stat().st_mode & 0o777 == 0o600
    calls = (tmp_path / "calls").read_text().splitlines()
    (create,) = [c for c in calls if c.startswith("auth create")]
    assert "--write-bucket 0a1b2c3d4e5f6a7b" in create
    assert not re.search(r"--(read|all|operator)", create)
    (login,) = [c for c in calls if c.startswith("v1 auth create")]
    assert "--read-bucket 0a1b2c3d4e5f6a7b" in login and "--write" not in login
    assert "--username grafana --password grafana-pass" in login
    second = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert [c for c in (tmp_path / "calls").read_text().splitlines() if "create" in c] == [
        create, login
    ]  # fmt: skip
    # The compose file hands the agent the file this script writes, and the right owner.
    auth = services["influxdb-auth"]["environment"]
    assert auth["AGENT_TOKEN_FILE"] == services["agent"]["environment"]["P1_INFLUX_TOKEN_FILE"]
    final_stage = (ROOT / "Dockerfile").read_text().rsplit("\nFROM ", 1)[1]
    assert f"--uid {auth['AGENT_UID']} " in final_stage


def mqtt_connect(port: int, username: str | None = None, password: str | None = None) -> int:
    """The broker's CONNACK return code for an MQTT 3.1.1 CONNECT (0: accepted, 5: refused)."""

    def text(value: str) -> bytes:
        return len(value.encode()).to_bytes(2, "big") + value.encode()

    flags = 0x02 | (0x80 if username else 0) | (0x40 if password else 0)
    body = text("MQTT") + bytes([4, flags, 0, 30]) + text("p1-test")
    body += (text(username) if username else b"") + (text(password) if password else b"")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(bytes([0x10, len(body)]) + body)
        answer = conn.recv(4)
    assert answer[:2] == b"\x20\x02", answer
    return answer[3]


def test_mosquitto_config_refuses_anonymous_clients(tmp_path: Path) -> None:
    """The shipped mosquitto.conf on a real broker, its port and data directory moved to the
    test's and run as the test's user (as root it would switch to `mosquitto`), with the
    password file made as the compose service makes it."""
    binary = require_binary("mosquitto")
    passwd = require_binary("mosquitto_passwd")
    port = free_port()
    conf = (ROOT / "deploy" / "mosquitto.conf").read_text()
    assert "listener 1883\n" in conf and "allow_anonymous false" in conf
    conf = conf.replace("listener 1883", f"listener {port} 127.0.0.1")
    conf = conf.replace("/mosquitto/data/", f"{tmp_path}/") + f"user {getpass.getuser()}\n"
    (tmp_path / "mosquitto.conf").write_text(conf)
    subprocess.run([passwd, "-c", "-b", str(tmp_path / "passwd"), "p1-agent", "s3cret"], check=True)
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["mosquitto"]
    assert "mosquitto_passwd -c -b /mosquitto/data/passwd" in service["command"][0]
    broker = Mosquitto(
        "mosquitto",
        f"mqtt://127.0.0.1:{port}",
        port,
        tmp_path,
        [binary, "-c", f"{tmp_path}/mosquitto.conf"],
    )
    broker.start()
    try:
        assert mqtt_connect(port) == 5
        assert mqtt_connect(port, "p1-agent", "wrong") == 5
        assert mqtt_connect(port, "p1-agent", "s3cret") == 0
    finally:
        broker.stop()


def test_image_check_says_so_without_a_running_engine(tmp_path: Path) -> None:
    """deploy/check-image.sh where the docker CLI is installed but no daemon runs (and podman is
    absent): it says nothing was checked and succeeds, so it never breaks a machine without one."""
    (tmp_path / "docker").write_text(
        "#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n"
    )
    (tmp_path / "docker").chmod(0o755)
    script = ROOT / "deploy" / "check-image.sh"
    assert os.access(script, os.X_OK)
    result = subprocess.run(
        [shutil.which("bash") or "bash", str(script)],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "no running container engine" in result.stdout
