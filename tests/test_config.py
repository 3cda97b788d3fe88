"""Settings from flags, P1_* variables and TOML: precedence, parsing, secrets, one-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent import config
from agent.config import ConfigError, SourceSettings, describe, load, mask_url


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p1.toml"
    path.write_text(text)
    return path


def test_defaults_run_the_simulator_into_the_local_store() -> None:
    settings = load({}, env={})
    assert settings.sources == [SourceSettings("simulator", None, "115200-8N1")]
    assert (settings.metrics_host, settings.metrics_port) == ("127.0.0.1", 9224)
    assert settings.influx is None
    assert settings.spool_max_bytes == 1 << 30
    assert settings.spool_max_age == 30 * 86400
    assert settings.read_timeout == 30.0


def test_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'data_dir = "/from/file"\nmeter_timezone = "Europe/Brussels"\nlog_level = "debug"\n',
    )
    env = {"P1_CONFIG": str(path), "P1_DATA_DIR": "/from/env", "P1_METER_TIMEZONE": "UTC"}
    settings = load({"data_dir": "/from/flag"}, env=env)
    assert settings.data_dir == Path("/from/flag")
    assert settings.meter_timezone == "UTC"
    assert settings.log_level == "debug"
    assert settings.origins["data_dir"] == "flag --data-dir"
    assert settings.origins["meter_timezone"] == "P1_METER_TIMEZONE"
    assert settings.origins["log_level"] == "config file"


def test_toml_sources_influx_and_spool(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cr3t-token-value\n")
    path = write(
        tmp_path,
        f"""
serial_settings = "9600-7E1"
[[source]]
url = "/dev/p1"
name = "house"
[[source]]
url = "socket://10.0.0.5:23"
serial_settings = "115200-8N1"
[influx]
url = "https://influx.example:8086/"
org = "home"
bucket = "energy"
token_file = "{token}"
timeout = "30s"
[spool]
max_size = "200MiB"
max_age = "7d"
""",
    )
    settings = load({"config": str(path)}, env={})
    assert settings.sources == [
        SourceSettings("/dev/p1", "house", "9600-7E1"),
        SourceSettings("socket://10.0.0.5:23", None, "115200-8N1"),
    ]
    target = settings.influx
    assert target is not None
    assert (target.url, target.api, target.org, target.bucket) == (
        "https://influx.example:8086",
        "v2",
        "home",
        "energy",
    )
    assert target.token == "s3cr3t-token-value"
    assert target.verify_tls and target.gzip and target.timeout == 30.0
    assert settings.spool_max_bytes == 200 * 1024**2
    assert settings.spool_max_age == 7 * 86400


def test_named_sources_from_flags_and_environment() -> None:
    settings = load({"source": ["garage=socket://10.0.0.7:23", "simulator:hu,noise=0.01"]}, env={})
    assert settings.sources[0] == SourceSettings("socket://10.0.0.7:23", "garage", "115200-8N1")
    assert settings.sources[1].url == "simulator:hu,noise=0.01"  # commas stay in the URL
    env = {"P1_SOURCE": "/dev/ttyUSB0  simulator:hu,noise=0.01", "P1_SERIAL_SETTINGS": "auto"}
    settings = load({}, env=env)
    assert [s.url for s in settings.sources] == ["/dev/ttyUSB0", "simulator:hu,noise=0.01"]
    assert {s.serial_settings for s in settings.sources} == {"auto"}


def test_secrets_come_from_environment_or_file_never_from_the_toml(tmp_path: Path) -> None:
    path = write(tmp_path, '[influx]\nurl = "http://x:8086"\ntoken = "abc"\n')
    with pytest.raises(ConfigError, match="P1_INFLUX_TOKEN"):
        load({"config": str(path)}, env={})
    pw = tmp_path / "pw"
    pw.write_text("hunter22\n")
    env = {
        "P1_INFLUX_URL": "http://127.0.0.1:8086",
        "P1_INFLUX_API": "v1",
        "P1_INFLUX_USERNAME": "p1",
        "P1_INFLUX_PASSWORD_FILE": str(pw),
    }
    target = load({}, env=env).influx
    assert target is not None and target.password == "hunter22"
    env["P1_INFLUX_PASSWORD"] = "from-env"
    target = load({}, env=env).influx
    assert target is not None and target.password == "from-env"


def test_describe_masks_secrets_and_names_origins() -> None:
    env = {
        "P1_INFLUX_URL": "http://user:pa55word@influx:8086",
        "P1_INFLUX_TOKEN": "tok-0123456789",
        "P1_INFLUX_ORG": "home",
    }
    text = "\n".join(describe(load({}, env=env)))
    assert "tok-0123456789" not in text
    assert "pa55word" not in text
    assert '# token = "****"  (P1_INFLUX_TOKEN)' in text
    assert 'org = "home"  # P1_INFLUX_ORG' in text
    assert "http://user:****@influx:8086" in text


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"metrics_address": "9224"}, {}, "not HOST:PORT"),
        ({"max_frame": "12"}, {}, "from 64 to"),
        ({"log_level": "loud"}, {}, "not one of debug"),
        ({}, {"P1_READ_TIMEOUT": "soon"}, "not a duration"),
        ({}, {"P1_SPOOL_MAX_SIZE": "lots"}, "not a size"),
        ({}, {"P1_RAW_CAPTURE": "maybe"}, "not true or false"),
        ({}, {"P1_INFLUX_URL": "influx:8086"}, "not an http"),
        ({}, {"P1_INFLUX_URL": "http://i:8086", "P1_INFLUX_API": "v3"}, "not one of v2, v1"),
        ({}, {"P1_INFLUX_URL": "http://i:8086", "P1_INFLUX_TOKEN_FILE": "/nope"}, "token file"),
        ({"config": "/nope/p1.toml"}, {}, "cannot read config file"),
        ({"source": ["a=/dev/x", "a=/dev/y"]}, {}, "same name"),
    ],
)
def test_bad_values_give_one_line_errors(
    flags: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load(flags, env=env)
    assert "\n" not in str(info.value)


def test_bad_toml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load({"config": str(write(tmp_path, "data_dir = \n"))}, env={})
    with pytest.raises(ConfigError, match=r"unknown setting 'influx\.bukket'"):
        load({"config": str(write(tmp_path, '[influx]\nbukket = "x"\n'))}, env={})
    with pytest.raises(ConfigError, match="needs url"):
        load({"config": str(write(tmp_path, '[[source]]\nname = "x"\n'))}, env={})


def test_sizes_and_durations() -> None:
    assert config.parse_size("0", "x") == 0
    assert config.parse_size("500MB", "x") == 500_000_000
    assert config.parse_size("1.5 GiB", "x") == int(1.5 * 1024**3)
    assert config.parse_duration("90", "x") == 90.0
    assert config.parse_duration("15m", "x") == 900.0
    assert config.parse_duration("12h", "x") == 43200.0


def test_mask_url_keeps_urls_without_passwords() -> None:
    assert mask_url("socket://10.0.0.5:23") == "socket://10.0.0.5:23"
    assert mask_url("https://a:b@h/x") == "https://a:****@h/x"


def test_describe_is_a_config_file_that_gives_the_same_settings(tmp_path: Path) -> None:
    env = {
        "P1_INFLUX_URL": "http://influx:8086",
        "P1_INFLUX_API": "v1",
        "P1_INFLUX_USERNAME": "p1",
        "P1_INFLUX_PASSWORD": "pw-0123456789",
        "P1_SPOOL_MAX_AGE": "12h",
        "P1_SOURCE": "house=/dev/p1",
    }
    settings = load({}, env=env)
    path = write(tmp_path, "\n".join(describe(settings)))
    again = load({"config": str(path)}, env={"P1_INFLUX_PASSWORD": "pw-0123456789"})
    assert again == settings


# --- issue 12: secrets from careless files, URL passwords, types and bounds at start -----------


@pytest.mark.parametrize(
    ("env", "files", "token"),
    [
        ({"P1_INFLUX_TOKEN": "tok-0123456789\r"}, {}, "tok-0123456789"),  # env file with CRLF
        ({"P1_INFLUX_TOKEN": "  tok-0123456789 \n"}, {}, "tok-0123456789"),
        ({}, {"token": b"tok-0123456789\r\n"}, "tok-0123456789"),
        ({"P1_INFLUX_TOKEN": " \r"}, {"token": b"tok-from-file\n"}, "tok-from-file"),
    ],
)
def test_secrets_lose_surrounding_whitespace(
    env: dict[str, str], files: dict[str, bytes], token: str, tmp_path: Path
) -> None:
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        env = {**env, "P1_INFLUX_TOKEN_FILE": str(tmp_path / name)}
    target = load({}, env={"P1_INFLUX_URL": "http://127.0.0.1:8086", **env}).influx
    assert target is not None and target.token == token


@pytest.mark.parametrize(
    ("env", "content", "message"),
    [
        ({"P1_INFLUX_TOKEN": "tok-0123\n456789"}, None, "P1_INFLUX_TOKEN: the token has a control"),
        ({"P1_INFLUX_TOKEN": "tok-0123\x00456789"}, None, "control character"),
        ({}, b"tok-0123456789\r\nsecond line\r\n", "token file"),
        ({"P1_INFLUX_TOKEN": "tok-0123\u2013456789"}, None, "a character HTTP cannot send"),
        ({}, b"tok-0123\xff456789", "is not text"),
    ],
)
def test_a_secret_that_cannot_be_sent_is_refused_without_showing_it(
    env: dict[str, str], content: bytes | None, message: str, tmp_path: Path
) -> None:
    if content is not None:
        (tmp_path / "token").write_bytes(content)
        env = {**env, "P1_INFLUX_TOKEN_FILE": str(tmp_path / "token")}
    with pytest.raises(ConfigError, match=message) as info:
        load({}, env={"P1_INFLUX_URL": "http://127.0.0.1:8086", **env})
    text = str(info.value)
    assert "\n" not in text and "0123" not in text and "456789" not in text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("socket://u:pa/ss@h:23", "socket://u:****@h:23"),
        ("http://:pw@h:8086", "http://:****@h:8086"),
        ("http://u:p@ss@h:8086/x", "http://u:****@h:8086/x"),
        ("cannot open socket://p1:pw@h:5 (refused)", "cannot open socket://p1:****@h:5 (refused)"),
        ("a://u:p@h,b://v:q@k", "a://u:****@h,b://v:****@k"),
        ("http://user@host:8086", "http://user@host:8086"),
    ],
)  # fmt: skip
def test_mask_url_hides_every_password(text: str, shown: str) -> None:
    assert mask_url(text) == shown


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[source]]\nurl = "simulator"\nname = 5\n', "[[source]] name must be a string, not a"),
        ("[[source]]\nurl = 5\n", "url must be a string, not a number"),
        ('[[source]]\nurl = "simulator"\nname = ""\n', "url or name is empty"),
        ("data_dir = [1, 2]\n", "data_dir must be a string, not an array"),
        ("meter_timezone = 1\n", "meter_timezone must be a string, not a number"),
        ("raw_capture = 1\n", "raw_capture must be true/false or a string, not a number"),
        ("max_frame = [4096]\n", "max_frame must be a number or a string, not an array"),
        ("[influx]\nurl = 2024-01-01\n", "influx.url must be a string, not a date or time"),
        ("[spool]\nmax_age = true\n", "spool.max_age must be a number or a string"),
    ],
)
def test_toml_types_are_checked_when_loading(toml: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load({"config": str(write(tmp_path, toml))}, env={})
    assert "\n" not in str(info.value)


def test_toml_numbers_and_booleans_where_a_setting_is_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "max_frame = 4096\nraw_capture = true\nfuse_limit = 35.5\n"
        '[influx]\nurl = "http://127.0.0.1:8086"\ntimeout = 30\nbatch_size = 1000\n',
    )
    settings = load({"config": str(path)}, env={})
    assert (settings.max_frame, settings.raw_capture, settings.fuse_limit) == (4096, True, 35.5)
    assert settings.influx is not None and settings.influx.timeout == 30.0
    assert settings.batch_size == 1000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"P1_INFLUX_TIMEOUT": "0"}, "influx timeout '0' must be from 0.1s to 5m"),
        ({"P1_INFLUX_TIMEOUT": "100000d"}, "must be from 0.1s to 5m"),
        ({"P1_INFLUX_BATCH_SIZE": "0"}, "from 1 to 100000"),
        ({"P1_INFLUX_BATCH_SIZE": "10000000000"}, "from 1 to 100000"),
        ({"P1_READ_TIMEOUT": "0"}, "read timeout '0' must be from 1s to 1d"),
        ({"P1_LOG_SUMMARY_INTERVAL": "0s"}, "from 1s to 1d"),
        ({"P1_MAX_FRAME": "99999999999"}, "from 64 to 1048576"),
        ({"P1_SPOOL_MAX_AGE": "99999999d"}, "spool max age"),
        ({"P1_SPOOL_MAX_SIZE": "9" * 400 + "GiB"}, "is too large"),
        ({"P1_METRICS_ADDRESS": "a b:80"}, "'a b' is not a host name or IP address"),
        ({"P1_INFLUX_URL": "http://h:99999"}, "has no valid port"),
        ({"P1_INFLUX_URL": "http://h:0"}, "has no valid port"),
        ({"P1_INFLUX_URL": "http://ho st:8086"}, "has a space or control character"),
        ({"P1_INFLUX_URL": "http://h:8086?db=p1"}, "has a query or fragment"),
        ({"P1_INFLUX_URL": "http://[::1:8086"}, "is not a valid URL"),
        ({"P1_INFLUX_URL": "http://-h-:8086"}, "names no valid host"),
        ({"P1_INFLUX_URL": "http://u:pa/ss@h:8086"}, r"'http://u:\*\*\*\*@h:8086' has no valid"),
    ],
)
def test_settings_that_can_never_work_are_refused_at_start(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load({}, env={"P1_INFLUX_URL": "http://127.0.0.1:8086", **env})
    assert "\n" not in str(info.value) and "pa/ss" not in str(info.value)


def test_urls_that_work_are_kept() -> None:
    for url in ("https://influx.example:8086/", "http://[::1]:8086", "http://influx_1:8086/p"):
        target = load({}, env={"P1_INFLUX_URL": url}).influx
        assert target is not None and target.url == url.rstrip("/")
