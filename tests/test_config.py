"""The TOML config: the example is valid, every problem names its key and fix, secrets hide."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from devices.kinds import DeviceKind
from streamer.cli import main
from streamer.config import (
    EXAMPLE_CONFIG,
    ConfigError,
    MqttConfig,
    Secret,
    load_config,
    parse_config,
    summary,
)

MINIMAL = """
[mqtt]
url = "mqtts://broker.example:8884"
username = "redox"
password = "hunter2-file"

[influx]
url = "http://127.0.0.1:8086/"
api = "v2"
org = "club"
bucket = "redox"
token = "tok-file"

[rules]
rhr_creep_delta_bpm = 6

[[athletes]]
id = "alice"
profile = "older"
[athletes.rules]
smo2_slow_recovery_s = 150

[[athletes.devices]]
kind = "strap"
address = "C4:11:22:33:44:55"

[[athletes.devices]]
kind = "strap"
name = "Polar H10 2"
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    return info.value.problems


def test_example_config_is_valid_and_names_its_parts() -> None:
    config = parse_config(EXAMPLE_CONFIG, env={})
    assert config.mqtt is not None
    assert config.mqtt.url == "mqtt://127.0.0.1:1883"
    assert config.mqtt.protocol == "3.1.1"
    assert config.influx is not None
    assert (config.influx.api, config.influx.db) == ("v1", "redox")
    (alice,) = config.athletes
    # No device by a made-up name that `run` would look for for ever: they are paired
    # (`scan`, `pair add`) or uncommented with a real address or name (issue 11).
    assert alice.devices == ()
    assert "redox-streamer pair add --athlete alice --kind strap" in EXAMPLE_CONFIG
    commented = "\n".join(
        line.removeprefix("# ")
        for line in EXAMPLE_CONFIG.split("# Devices:")[1].splitlines()
        if line.startswith("# ") and "=" in line
    )
    with_devices = parse_config(f"{EXAMPLE_CONFIG}[[athletes.devices]]\n{commented}\n", env={})
    (device,) = with_devices.athletes[0].devices
    assert (device.kind, device.address, device.id) == (
        DeviceKind.STRAP,
        "C4:11:22:33:44:55",
        "strap",
    )


def test_full_config_values_and_defaults() -> None:
    config = parse_config(MINIMAL, env={})
    m = config.mqtt
    assert m is not None
    assert (m.host, m.port, m.tls, m.username) == ("broker.example", 8884, True, "redox")
    assert m.password is not None
    assert m.password.reveal() == "hunter2-file"
    i = config.influx
    assert i is not None
    assert i.url == "http://127.0.0.1:8086"
    assert i.token is not None
    assert i.token.reveal() == "tok-file"
    (alice,) = config.athletes
    assert alice.name == "alice"
    assert [d.id for d in alice.devices] == ["strap", "strap2"]
    th = config.thresholds_for("alice")
    assert th.rhr_creep_delta_bpm == 6
    assert th.smo2_slow_recovery_s == 150
    assert th.hi_spacing_h == 72  # the 'older' profile


def test_environment_overrides_file_secrets() -> None:
    env = {"REDOX_MQTT_PASSWORD": "from-env", "REDOX_INFLUX_TOKEN": "env-token"}
    config = parse_config(MINIMAL, env=env)
    assert config.mqtt is not None
    assert config.influx is not None
    assert config.mqtt.password is not None
    assert config.mqtt.password.reveal() == "from-env"
    assert config.influx.token is not None
    assert config.influx.token.reveal() == "env-token"


def test_wrong_api_names_key_choices_and_fix() -> None:
    (problem,) = _problems('[influx]\nurl = "http://h:8086"\napi = "v3"\ndb = "x"\n')
    assert problem == (
        "influx.api: expected 'v1' or 'v2', got 'v3' — set api = \"v1\" for InfluxDB 1.x "
        '/write or "v2" for /api/v2/write'
    )


def test_every_problem_is_reported_at_once() -> None:
    problems = _problems(
        '[mqtt]\nurl = "http://h"\npasword = "x"\nprotocol = "4"\n'
        '[influx]\nurl = "http://h:8086"\napi = "v2"\nbatch_size = 0\n'
        '[[athletes]]\nid = "al ice"\nprofile = "pro"\n'
        '[[athletes.devices]]\nkind = "toaster"\n'
    )
    keys = [p.split(":", 1)[0] for p in problems]
    assert keys == [
        "mqtt.url",
        "mqtt.protocol",
        "mqtt.pasword",
        "influx.bucket",
        "influx.org",
        "influx.batch_size",
        "athletes[0].id",
        "athletes[0].profile",
        "athletes[0].devices[0].kind",
        "athletes[0].devices[0].address",
    ]
    assert "did you mean 'password'?" in problems[2]
    assert "strap, smo2, grip, power, spo2" in problems[8]


def test_unknown_rule_threshold_is_named() -> None:
    (problem,) = _problems("[rules]\nrhr_creep_bpm = 5\n")
    assert problem.startswith("rules.rhr_creep_bpm: unknown rule threshold 'rhr_creep_bpm'")


def test_duplicate_ids_are_refused() -> None:
    problems = _problems(
        '[[athletes]]\nid = "a"\n[[athletes.devices]]\nid = "s"\nkind = "strap"\nname = "x"\n'
        '[[athletes.devices]]\nid = "s"\nkind = "smo2"\nname = "y"\n[[athletes]]\nid = "a"\n'
    )
    assert [p.split(":", 1)[0] for p in problems] == ["athletes[0].devices[1].id", "athletes[1].id"]


def test_athlete_ids_that_name_service_topics_are_refused() -> None:
    """An athlete ``gateway`` would publish under <base>/gateway/…, where the team's
    gateways say whether they are alive (and so for bridge, worker and partition)."""
    for reserved in ("bridge", "gateway", "worker", "partition"):
        (problem,) = _problems(f'[[athletes]]\nid = "{reserved}"\n')
        assert problem.startswith("athletes[0].id:"), problem
        assert f"<base>/{reserved}/" in problem, problem
        assert f"{reserved}1" in problem, problem
    assert parse_config('[[athletes]]\nid = "gateways"\n', env={}).athletes[0].id == "gateways"


def test_missing_tls_file_is_named(tmp_path: Path) -> None:
    (problem,) = _problems(
        f'[mqtt]\nurl = "mqtts://h"\n[mqtt.tls]\nca_file = "{tmp_path}/no.pem"\n'
    )
    assert problem.startswith("mqtt.tls.ca_file: file ")


def test_toml_syntax_error_is_one_problem() -> None:
    (problem,) = _problems("[mqtt\n")
    assert problem.startswith("not valid TOML")


def test_secrets_never_show_in_repr_str_or_summary(caplog: pytest.LogCaptureFixture) -> None:
    config = parse_config(MINIMAL, env={"REDOX_INFLUX_TOKEN": "tok-env"})
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test").info("config %s %r", config, config)
    text = repr(config) + str(config) + "\n".join(summary(config)) + caplog.text
    text += f"{config.mqtt.password if config.mqtt else ''}"
    for secret in ("hunter2-file", "tok-env", "tok-file"):
        assert secret not in text
    assert "*** (set)" in "\n".join(summary(config))


def test_password_in_url_is_a_secret_and_is_redacted_in_errors() -> None:
    m = MqttConfig.from_url("mqtt://u:p%40ss@host:1999")
    assert (m.username, m.port) == ("u", 1999)
    assert isinstance(m.password, Secret)
    assert m.password.reveal() == "p@ss"
    assert "p%40ss" not in m.url
    (problem,) = _problems('[mqtt]\nurl = "tcp://u:topsecret@h"\n')
    assert "topsecret" not in problem


def test_relative_store_path_is_beside_the_config(tmp_path: Path) -> None:
    path = tmp_path / "redox.toml"
    path.write_text('[store]\npath = "data/s.sqlite3"\n')
    assert load_config(path, env={}).store_path == tmp_path / "data" / "s.sqlite3"


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config init --path"):
        load_config(tmp_path / "none.toml", env={})


def test_disabled_sections_are_off() -> None:
    config = parse_config("[mqtt]\nenabled = false\nurl = 3\n[influx]\nenabled = false\n", env={})
    assert config.mqtt is None
    assert config.influx is None


def test_cli_init_then_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    assert main(["config", "init", "--path", str(path)]) == 0
    assert path.read_text() == EXAMPLE_CONFIG
    assert main(["config", "init", "--path", str(path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["config", "init", "--path", str(path), "--force"]) == 0
    assert main(["config", "check", "--path", str(path)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out
    assert "athlete alice (Alice)" in out


def test_cli_check_lists_problems_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[influx]\nurl = "http://h:8086"\napi = "v3"\ndb = "d"\n'
        '[mqtt]\nurl = "mqtt://u:pw-secret@h"\n'
    )
    assert main(["config", "check", "--path", str(path)]) == 2
    err = capsys.readouterr().err
    assert "influx.api" in err
    assert "pw-secret" not in err


def test_implausible_max_hr_is_one_problem_naming_the_key() -> None:
    (problem,) = _problems('[[athletes]]\nid = "a"\n[athletes.rules]\nmax_hr_bpm = 320\n')
    assert problem.startswith("athletes[0].rules.max_hr_bpm: max_hr_bpm must be")
    assert "\n" not in problem
    config = parse_config(
        '[[athletes]]\nid = "a"\n[athletes.rules]\nmax_hr_bpm = 188\nthreshold_hr_bpm = 168\n',
        env={},
    )
    assert config.thresholds_for("a").threshold_hr_bpm == 168
