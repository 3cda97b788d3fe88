"""Deployment files: the systemd unit verifies, the image runs as non-root with a healthcheck,
the example settings load, and `p1-agent healthcheck` tells a live agent from a dead one."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from servers import free_port, require_binary

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
