"""deploy/: the compose file, Grafana provisioning and systemd units hang together.

No Docker engine runs here, so the compose file is checked structurally: its services,
that every file it mounts exists in deploy/ (or is made by a documented script and kept
out of git), and that the paths inside containers agree with the configs that use them.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.dashboard_queries import INFLUX_DATASOURCE_UID, datasource_uids, shipped_dashboards

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
#: Mounted files that the operator makes (never committed), and what makes them.
GENERATED = {
    "mosquitto/passwd": DEPLOY / "mosquitto" / "make-passwd.sh",
}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def service(name: str) -> dict[str, Any]:
    svc: dict[str, Any] = compose()["services"][name]
    return svc


def binds(name: str) -> dict[str, str]:
    """Container path → host path (relative to deploy/) of a service's bind mounts."""
    out: dict[str, str] = {}
    for volume in service(name).get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            out[target] = source
    return out


def env(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in service(name).get("environment", {}).items()}


def test_compose_has_the_four_services() -> None:
    assert set(compose()["services"]) == {"mosquitto", "influxdb", "grafana", "redox-streamer"}


def test_every_mounted_file_exists_or_is_generated_by_a_documented_script() -> None:
    missing = []
    for name in compose()["services"]:
        for target, source in binds(name).items():
            if source.startswith("/"):
                continue  # host paths such as /var/run/dbus
            relative = Path(source).as_posix().removeprefix("./")
            if relative in GENERATED:
                assert GENERATED[relative].exists()
                continue
            if not (DEPLOY / relative).exists():
                missing.append(f"{name}: {source} -> {target}")
    assert missing == []


def test_generated_secrets_are_kept_out_of_git() -> None:
    assert "passwd" in (DEPLOY / "mosquitto" / ".gitignore").read_text().split()
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()
    assert "redox.toml" in (DEPLOY / "streamer" / ".gitignore").read_text().split()


def test_named_volumes_are_declared() -> None:
    declared = set(compose()["volumes"])
    used = {
        str(v).split(":")[0]
        for s in compose()["services"].values()
        for v in s.get("volumes", [])
        if not str(v).startswith((".", "/"))
    }
    assert used == declared


def test_every_required_secret_is_in_env_example() -> None:
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    example = {
        line.split("=")[0]
        for line in (DEPLOY / "env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert required
    assert required <= example


def test_streamer_reaches_the_hosts_bluez_over_dbus() -> None:
    streamer = service("redox-streamer")
    assert binds("redox-streamer")["/var/run/dbus"] == "/var/run/dbus"
    assert streamer["build"]["context"] == ".."
    dockerfile = DEPLOY.parent / streamer["build"]["dockerfile"]
    assert dockerfile.exists()
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile.read_text(), re.MULTILINE):
        for item in source.split():
            assert (REPO / item).exists(), f"Dockerfile copies missing {item}"
    assert streamer["command"][:1] == ["run"]
    assert {"REDOX_MQTT_PASSWORD", "REDOX_INFLUX_PASSWORD"} <= set(env("redox-streamer"))


def test_mosquitto_mounts_what_its_config_names() -> None:
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    settings = dict(
        re.findall(r"^(password_file|acl_file|persistence_location) (\S+)$", conf, re.MULTILINE)
    )
    mounts = binds("mosquitto")
    assert mounts["/mosquitto/config/mosquitto.conf"] == "./mosquitto/mosquitto.conf"
    assert mounts[settings["password_file"]] == "./mosquitto/passwd"
    assert mounts[settings["acl_file"]] == "./mosquitto/acl"
    data_volume = [v for v in service("mosquitto")["volumes"] if str(v).startswith("mosquitto-")]
    assert [str(v).split(":")[1] + "/" for v in data_volume] == [settings["persistence_location"]]


def test_influxdb_first_start_runs_the_shipped_setup() -> None:
    mounts = binds("influxdb")
    assert mounts["/redox-setup"] == "./influxdb/v1"
    init = mounts["/docker-entrypoint-initdb.d/redox.sh"]
    assert "/redox-setup/setup.sh" in (DEPLOY / init).read_text()
    setup = (DEPLOY / "influxdb" / "v1" / "setup.sh").read_text()
    for name in re.findall(r"\$\{(\w+):\?", setup):
        if name == "INFLUX_ADMIN_PASSWORD":
            continue  # docker-init.sh maps INFLUXDB_ADMIN_PASSWORD onto it
        assert name in env("influxdb"), f"setup.sh needs {name}"
    assert "INFLUXDB_ADMIN_PASSWORD" in env("influxdb")


def _datasource(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert data["apiVersion"] == 1
    (ds,) = data["datasources"]
    assert isinstance(ds, dict)
    return ds


@pytest.mark.parametrize("name", ["influxdb-v1.yaml", "influxdb-v2.yaml.example"])
def test_datasources_have_the_uid_the_dashboards_use(name: str) -> None:
    ds = _datasource(DEPLOY / "grafana" / "provisioning" / "datasources" / name)
    assert ds["uid"] == INFLUX_DATASOURCE_UID
    assert ds["type"] == "influxdb"
    assert ds["jsonData"]["dbName"] == "redox"
    for dashboard in shipped_dashboards():
        assert datasource_uids(dashboard) == {ds["uid"]}


def test_v2_datasource_queries_influxql_with_a_token_header() -> None:
    ds = _datasource(
        DEPLOY / "grafana" / "provisioning" / "datasources" / "influxdb-v2.yaml.example"
    )
    assert ds["jsonData"]["version"] == "InfluxQL"
    assert ds["jsonData"]["httpHeaderName1"] == "Authorization"
    assert ds["secureJsonData"]["httpHeaderValue1"].startswith("Token ${")


def test_grafana_gets_every_variable_its_provisioning_uses() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    used = {
        v for f in provisioning.rglob("*.yaml") for v in re.findall(r"\$\{(\w+)\}", f.read_text())
    }
    assert used <= set(env("grafana"))


def test_dashboard_provider_path_is_where_compose_mounts_the_dashboards() -> None:
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "redox.yaml").read_text()
    )["providers"][0]
    path = provider["options"]["path"]
    mounts = binds("grafana")
    assert mounts[path] == "./grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    home = env("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(path + "/")
    assert (DEPLOY / "grafana" / "dashboards" / Path(home).name).exists()


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((DEPLOY / "systemd" / name).read_text())
    return parser


def test_streamer_unit_runs_unprivileged_in_the_bluetooth_group_and_restarts() -> None:
    unit = _unit("redox-streamer.service")
    svc = unit["Service"]
    assert svc["User"] not in ("", "root")
    assert "bluetooth" in svc["SupplementaryGroups"].split()
    assert svc["Restart"] == "on-failure"
    assert "AF_UNIX" in svc["RestrictAddressFamilies"].split()  # the D-Bus socket
    assert svc["NoNewPrivileges"] == "true"
    assert svc["ExecStart"].split()[1:3] == ["run", "--config"]
    assert "bluetooth.service" in unit["Unit"]["After"].split()


@pytest.mark.parametrize("name", ["redox-streamer.service", "redox-notify.service"])
def test_units_pass_systemd_analyze_verify(name: str) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(DEPLOY / "systemd" / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # The binary is not installed here, and the host may have no BlueZ: only those may
    # be reported.
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip()
        and "is not executable" not in line
        and "bluetooth.service not found" not in line
    ]
    assert problems == []
