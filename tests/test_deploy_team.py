"""deploy/team/compose.yaml, the central box of team mode (stage 1), hangs together.

No Docker engine runs here, so nothing is started: the file is parsed (PyYAML, of the test
extra) and checked for what can go wrong without one — every ``redox-streamer`` command line
is parsed by the real CLI parser, every mounted config file exists in deploy/ (or is made by
a documented script and kept out of git), the ports and service names the workers dial are
the ones the servers' configs listen on, and every environment variable given to a worker
is one that redox-streamer (streamer/config.py) or libpq reads.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # type: ignore[import-untyped]

from streamer.cli import build_parser
from streamer.config import ENV_CONFIG, ENV_SECRETS

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
TEAM = DEPLOY / "team"
COMPOSE = TEAM / "compose.yaml"
#: Mounted files the operator makes (never committed), and what makes them.
GENERATED = {DEPLOY / "mosquitto" / "passwd": DEPLOY / "mosquitto" / "make-passwd.sh"}
#: Variables libpq reads (the workers' --postgres DSN names no password).
LIBPQ_ENV = {"PGPASSWORD"}
POSTGRES_PORT = 5432  # the postgres image's


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def streamers() -> dict[str, dict[str, Any]]:
    """The services that run the redox-streamer image."""
    return {
        name: svc
        for name, svc in services().items()
        if svc.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }


def binds(svc: dict[str, Any]) -> dict[str, Path]:
    """Container path → host path of a service's bind mounts (relative ones resolved from
    deploy/team, where the compose file is)."""
    out: dict[str, Path] = {}
    for volume in svc.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            out[target] = (TEAM / source).resolve() if source.startswith(".") else Path(source)
    return out


def published(svc: dict[str, Any]) -> set[int]:
    """Container ports a service publishes."""
    return {int(str(p).rsplit(":", 1)[-1]) for p in svc.get("ports", [])}


def test_the_central_box_runs_the_servers_and_one_or_two_workers_no_gateway() -> None:
    assert {"nats", "postgres", "mosquitto", "influxdb"} <= set(services())
    commands = [svc["command"][0] for svc in streamers().values()]
    assert set(commands) == {"worker"}, "gateways stay on the Pis (systemd)"
    assert 1 <= len(commands) <= 2


@pytest.mark.parametrize("name", sorted(streamers()))
def test_each_redox_streamer_command_line_parses_with_the_real_cli(name: str) -> None:
    command = [str(a) for a in services()[name]["command"]]
    try:
        args = build_parser({command[0]}).parse_args(command)
    except SystemExit as exc:  # the parser's refusal: one line on stderr
        pytest.fail(f"{name}: `redox-streamer {' '.join(command)}` refused ({exc.code})")
    assert args.command == "worker"
    # What it dials is a service of this file, on the port that service's server listens on.
    nats = urlsplit(args.nats)
    assert nats.hostname == "nats"
    assert nats.port == _nats_listen_port()
    postgres = urlsplit(args.postgres)
    assert postgres.hostname == "postgres"
    assert postgres.port == POSTGRES_PORT
    assert postgres.password is None, "the password comes from PGPASSWORD, not the command"
    assert postgres.username == services()["postgres"]["environment"]["POSTGRES_USER"]
    assert postgres.path.lstrip("/") == services()["postgres"]["environment"]["POSTGRES_DB"]
    config = PurePosixPath(args.config)
    mounts = binds(services()[name])
    assert str(config.parent) in mounts, f"{name}: {config} is in no mount"
    assert mounts[str(config.parent)] == DEPLOY / "streamer"


def test_the_workers_have_ids_of_their_own() -> None:
    ids = [svc["command"][svc["command"].index("--id") + 1] for svc in streamers().values()]
    assert len(ids) == len(set(ids))


def test_every_mounted_file_exists_in_deploy_or_is_generated() -> None:
    missing = []
    for name, svc in services().items():
        for target, source in binds(svc).items():
            assert DEPLOY in source.parents, f"{name}: {source} is outside deploy/"
            if source in GENERATED:
                assert GENERATED[source].exists()
                continue
            if not source.exists():
                missing.append(f"{name}: {source} -> {target}")
    assert missing == []


def test_mosquitto_runs_the_team_file_with_what_it_names() -> None:
    svc = services()["mosquitto"]
    mounts = binds(svc)
    assert mounts["/mosquitto/config/mosquitto.conf"] == TEAM / "mosquitto.conf"
    conf = (TEAM / "mosquitto.conf").read_text()
    assert not re.search(r"^use_username_as_clientid", conf, re.MULTILINE)
    settings = dict(
        re.findall(r"^(password_file|acl_file|persistence_location) (\S+)$", conf, re.MULTILINE)
    )
    assert mounts[settings["password_file"]] == DEPLOY / "mosquitto" / "passwd"
    assert mounts[settings["acl_file"]] == DEPLOY / "mosquitto" / "acl"
    data = [str(v).split(":")[1] + "/" for v in svc["volumes"] if str(v).startswith("mosquitto-")]
    assert data == [settings["persistence_location"]]
    listeners = {int(p) for p in re.findall(r"^listener (\d+)", conf, re.MULTILINE)}
    assert published(svc) <= listeners
    assert 1883 in published(svc)


def _nats_conf_path() -> PurePosixPath:
    command = services()["nats"]["command"]
    return PurePosixPath(command[command.index("--config") + 1])


def _nats_listen_port() -> int:
    conf = (DEPLOY / "nats" / "nats-server.conf").read_text()
    match = re.search(r"^listen:\s*\S*:(\d+)\s*$", conf, re.MULTILINE)
    assert match, "nats-server.conf's listen"
    return int(match.group(1))


def test_nats_runs_the_shipped_config_with_its_mapping_and_jetstream_on_a_volume() -> None:
    svc = services()["nats"]
    mounts = binds(svc)
    path = _nats_conf_path()
    assert mounts[str(path)] == DEPLOY / "nats" / "nats-server.conf"
    conf = mounts[str(path)].read_text()
    for include in re.findall(r"^include (\S+)$", conf, re.MULTILINE):
        inside = str(path.parent / include).replace("/./", "/")
        assert mounts.get(inside) == DEPLOY / "nats" / PurePosixPath(include).name, include
    store = re.search(r'store_dir:\s*"([^"]+)"', conf)
    assert store, "JetStream's store_dir"
    named = {str(v).split(":")[1]: str(v).split(":")[0] for v in svc["volumes"]}
    assert named.get(store.group(1), "").startswith("nats-"), "the stream outlives the container"
    assert "jetstream" in conf
    assert _nats_listen_port() in published(svc)


def test_worker_environment_names_are_ones_redox_streamer_or_libpq_read() -> None:
    known = set(ENV_SECRETS.values()) | {ENV_CONFIG} | LIBPQ_ENV
    for name, svc in streamers().items():
        env = set(svc.get("environment", {}))
        assert env <= known, f"{name}: {sorted(env - known)} read by nobody"
        assert {"REDOX_MQTT_USERNAME", "REDOX_MQTT_PASSWORD", "PGPASSWORD"} <= env
        assert svc["environment"]["REDOX_MQTT_USERNAME"] == "redox-worker"  # the ACL's


def test_the_image_is_built_with_the_team_extra() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    declared = set(re.findall(r"^ARG (\w+)", dockerfile, re.MULTILINE))
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for name, svc in streamers().items():
        args = svc["build"].get("args", {})
        assert set(args) <= declared, f"{name}: build args the Dockerfile does not declare"
        extra = re.fullmatch(r"\[(\w+)\]", str(args.get("EXTRAS", "")))
        assert extra is not None, f"{name}: EXTRAS is not one extra in brackets"
        assert extra.group(1) == "team", f"{name}: not the team extra"
        assert "team" in extras  # pyproject's [project.optional-dependencies]
        context = (TEAM / svc["build"]["context"]).resolve()
        assert context == REPO
        assert (context / svc["build"]["dockerfile"]).exists()


def test_every_required_secret_is_in_the_team_env_example_and_env_is_ignored() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    example = {
        line.split("=")[0]
        for line in (TEAM / "env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert required
    assert required <= example
    assert ".env" in (TEAM / ".gitignore").read_text().split()


def test_named_volumes_are_declared() -> None:
    used = {
        str(v).split(":")[0]
        for svc in services().values()
        for v in svc.get("volumes", [])
        if not str(v).startswith((".", "/"))
    }
    assert used == set(compose()["volumes"])
