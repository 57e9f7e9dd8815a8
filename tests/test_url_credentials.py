"""Credentials in a URL on the command line: they log in, and they are never printed.

Real servers that refuse anonymous clients: mosquitto with a password file, InfluxDB 1.6
with authentication on (its first admin creates the database the demo writes to).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.cli import main
from streamer.config import InfluxConfig, MqttConfig, redact_url, strip_credentials
from streamer.sinks.influx import OUTBOX as INFLUX_OUTBOX
from streamer.sinks.mqtt import OUTBOX as MQTT_OUTBOX
from streamer.sinks.outbox import Outbox
from streamer.store import Store
from tests.servers import HOST, InfluxDB1, Mosquitto, require_binary

ROOT = Path(__file__).resolve().parents[1]
USER = "coach"
#: Characters a URL must escape (@ : / % #): the escapes must be decoded, once.
PASSWORD = "p@ss:w/rd%#1"
QUOTED = urllib.parse.quote(PASSWORD, safe="")
INFLUX_ADMIN = ("admin", "in:fl@x")


@pytest.fixture
def locked_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """mosquitto that accepts only USER with PASSWORD."""
    work = tmp_path / "mosquitto"
    work.mkdir()
    passwd = work / "passwd"
    subprocess.run(
        [require_binary("mosquitto_passwd", "mosquitto"), "-b", "-c", str(passwd), USER, PASSWORD],
        check=True,
        capture_output=True,
    )
    conf = work / "mosquitto.conf"
    server = Mosquitto(work, config_file=conf)
    conf.write_text(
        f"listener {server.port} {HOST}\nallow_anonymous false\npassword_file {passwd}\n"
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def locked_influx(tmp_path: Path) -> Iterator[InfluxDB1]:
    """InfluxDB 1.6 with authentication on and one admin (INFLUX_ADMIN)."""
    server = InfluxDB1(tmp_path / "influxdb")
    server.config.write_text(
        server.config.read_text().replace("[http]\n", "[http]\n  auth-enabled = true\n")
    )
    server.start()
    user, password = INFLUX_ADMIN
    # With auth on and no user yet, InfluxDB accepts exactly this: the first admin.
    _influx_query(server, f"CREATE USER {user} WITH PASSWORD '{password}' WITH ALL PRIVILEGES")
    yield server
    server.stop()


def _influx_query(server: InfluxDB1, q: str, db: str | None = None) -> dict[str, object]:
    body = urllib.parse.urlencode({"q": q, **({"db": db} if db else {})}).encode()
    request = urllib.request.Request(f"{server.url}/query", data=body, method="POST")
    token = base64.b64encode(":".join(INFLUX_ADMIN).encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert isinstance(answer, dict)
    return answer


def _mqtt_url(broker: Mosquitto) -> str:
    return f"mqtt://{USER}:{QUOTED}@{HOST}:{broker.port}"


def _influx_url(server: InfluxDB1) -> str:
    user, password = INFLUX_ADMIN
    return f"http://{user}:{urllib.parse.quote(password, safe='')}@{HOST}:{server.port}"


def _secrets() -> tuple[str, ...]:
    """Every spelling of the passwords that must never be printed."""
    return (PASSWORD, QUOTED, INFLUX_ADMIN[1], urllib.parse.quote(INFLUX_ADMIN[1], safe=""))


def test_urls_split_into_an_address_and_decoded_credentials() -> None:
    mqtt = MqttConfig.from_url(f"mqtt://{USER}:{QUOTED}@broker:1884")
    assert (mqtt.host, mqtt.port, mqtt.username, mqtt.url) == (
        "broker",
        1884,
        USER,
        "mqtt://broker:1884",
    )
    assert mqtt.password is not None
    assert mqtt.password.reveal() == PASSWORD
    influx = InfluxConfig.from_url(f"http://{USER}:{QUOTED}@db.local:8086/", db="redox")
    assert (influx.url, influx.username, influx.db) == ("http://db.local:8086", USER, "redox")
    assert influx.password is not None
    assert influx.password.reveal() == PASSWORD
    assert strip_credentials("https://u:p@h/x") == "https://h/x"
    assert redact_url("http://u:p@ss@h:1/x") == "http://u:***@h:1/x"


@pytest.mark.parametrize(
    ("url", "problem"),
    [("ftp://u:hunter2@h", "expected http"), ("http://u:hunter2@h:port", "port")],
)
def test_a_bad_influx_url_is_refused_with_its_password_masked(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as refused:
        InfluxConfig.from_url(url)
    assert "hunter2" not in str(refused.value)
    assert "***" in str(refused.value)


@pytest.mark.integration
def test_doctor_logs_in_with_url_credentials_and_prints_no_password(
    locked_mosquitto: Mosquitto,
    locked_influx: InfluxDB1,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "redox.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "store.sqlite3"}"\n')
    argv = ["doctor", "--config", str(config), "--no-bluetooth"]
    status = main(
        [*argv, "--mqtt", _mqtt_url(locked_mosquitto), "--influx-url", _influx_url(locked_influx)]
    )
    out, err = capsys.readouterr()
    assert status == 0, out + err
    assert f"OK    mqtt: mqtt://{HOST}:{locked_mosquitto.port} accepts connections" in out
    assert f"OK    influxdb: http://{HOST}:{locked_influx.port} answers" in out
    for secret in _secrets():
        assert secret not in out + err
    # Control: the broker really refuses a wrong password.
    wrong = _mqtt_url(locked_mosquitto).replace(QUOTED, "guess")
    assert main([*argv, "--mqtt", wrong]) == 1
    assert "FAIL  mqtt:" in capsys.readouterr().out


@pytest.mark.integration
@pytest.mark.slow
def test_demo_delivers_with_url_credentials_and_prints_no_password(
    locked_mosquitto: Mosquitto, locked_influx: InfluxDB1, tmp_path: Path
) -> None:
    store = tmp_path / "demo.sqlite3"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamer.cli",
            "demo",
            "--days",
            "0",
            "--duration",
            "2",
            "--speed",
            "20",
            "--plain",
            "--store",
            str(store),
            "--mqtt",
            _mqtt_url(locked_mosquitto),
            "--influx-url",
            _influx_url(locked_influx),
            "--influx-db",
            "redox",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for secret in _secrets():
        assert secret not in done.stdout + done.stderr
    assert f"MQTT broker: mqtt://{HOST}:{locked_mosquitto.port}" in done.stdout
    assert f"InfluxDB: http://{HOST}:{locked_influx.port}" in done.stdout
    # Both servers refuse anonymous clients: an empty outbox means the login worked.
    with Store(store, read_only=True) as s:
        assert Outbox(s, MQTT_OUTBOX).depth() == 0
        assert Outbox(s, INFLUX_OUTBOX).depth() == 0
    answer = _influx_query(locked_influx, "SELECT count(*) FROM heart_rate", db="redox")
    assert answer["results"][0]["series"][0]["values"][0][1] > 0  # type: ignore[index]
