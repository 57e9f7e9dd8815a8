"""`run`, `replay` and `doctor` as a user meets them: real files, real servers, emulated
devices through the production drivers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from devices.codecs import CODECS
from devices.emulated.signals import RRParameters, rr_series
from devices.records import HeartRateSample
from streamer.cli import main
from streamer.sinks.mqtt import MqttOutbox
from streamer.store import Store
from tests.servers import InfluxDB1, Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[1]
T0_NS = 1_767_000_000_000_000_000  # a morning in late 2025, ns


def write_morning_recording(
    path: Path, *, ectopic_rate: float = 0.0, seconds: float = 380.0
) -> None:
    """A strap's raw Heart Rate Measurement notifications, one per second, as JSON Lines."""
    series = rr_series(
        int(seconds * 1.2),
        RRParameters(mean_hr_bpm=58.0, rmssd_ms=55.0, ectopic_rate=ectopic_rate),
        seed=3,
    )
    codec = CODECS["2a37"]
    lines = []
    t_ms, next_ms = 0.0, 1000.0
    pending: list[float] = []
    for rr in series.rr_ms:
        t_ms += float(rr)
        if t_ms > seconds * 1000:
            break
        while t_ms > next_ms:
            if pending:
                sample = HeartRateSample(T0_NS + round(next_ms * 1e6), 58, tuple(pending))
                lines.append(
                    json.dumps(
                        {
                            "t_ns": sample.t_ns,
                            "device": "strap",
                            "char": "2a37",
                            "hex": codec.encode(sample).hex(),
                        }
                    )
                )
                pending = []
            next_ms += 1000.0
        pending.append(float(rr))
    path.write_text("\n".join(lines) + "\n")


# --- replay -------------------------------------------------------------------------------


def test_replay_of_a_morning_recording_prints_the_accepted_reading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "morning.jsonl"
    write_morning_recording(recording)
    assert main(["replay", str(recording), "--morning", "--json"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    morning = [r for r in results if r["kind"] == "morning"]
    assert len(morning) == 1
    assert morning[0]["accepted"] is True
    assert morning[0]["resting_hr_bpm"] == pytest.approx(58.0, abs=3.0)
    assert 3.5 < morning[0]["ln_rmssd"] < 4.6  # ln(55 ms) ≈ 4.0
    assert [r for r in results if r["kind"] == "hrv"]  # rolling windows along the way


def test_replay_rejects_a_morning_full_of_ectopic_beats_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "ectopic.jsonl"
    write_morning_recording(recording, ectopic_rate=0.1)
    assert main(["replay", str(recording), "--morning"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if " morning: " in line)
    assert "accepted=False" in line
    assert "deviate more than 20%" in line


def test_replay_names_the_bad_line_of_a_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "bad.jsonl"
    write_morning_recording(recording, seconds=20)
    lines = recording.read_text().splitlines()
    lines[3] = json.dumps({"t_ns": T0_NS, "device": "strap", "char": "2a37", "hex": "10"})
    recording.write_text("\n".join(lines) + "\n")
    assert main(["replay", str(recording)]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:4" in err
    assert "--skip-malformed" in err
    assert main(["replay", str(recording), "--skip-malformed"]) == 0


def test_replay_of_a_missing_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such recording file" in capsys.readouterr().err


# --- doctor -------------------------------------------------------------------------------


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "redox.toml"
    path.write_text(f'[store]\npath = "{tmp_path / "store.sqlite3"}"\n{body}')
    return path


@pytest.mark.integration
def test_doctor_passes_with_reachable_servers(
    tmp_path: Path, mosquitto: Mosquitto, influxdb1: InfluxDB1, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(
        tmp_path,
        f'[mqtt]\nurl = "{mosquitto.url}"\n[influx]\nurl = "{influxdb1.url}"\ndb = "redox"\n',
    )
    assert main(["doctor", "--config", str(config), "--no-bluetooth"]) == 1  # no database yet
    assert "FAIL  influxdb:" in capsys.readouterr().out
    influxdb1.query('CREATE DATABASE "redox"')
    assert main(["doctor", "--config", str(config), "--no-bluetooth"]) == 0
    out = capsys.readouterr().out
    assert f"OK    mqtt: {mosquitto.url} accepts connections" in out
    assert "OK    influxdb:" in out
    assert "OK    store:" in out
    assert "OK    config:" in out


def test_doctor_fails_with_what_to_do_when_servers_are_away(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    config = _config(
        tmp_path,
        f'[mqtt]\nurl = "mqtt://127.0.0.1:{port}"\n'
        f'[influx]\nurl = "http://127.0.0.1:{port}"\ndb = "redox"\n',
    )
    assert main(["doctor", "--config", str(config), "--no-bluetooth"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  mqtt:" in out
    assert "→ start the broker" in out
    assert "FAIL  influxdb:" in out
    assert "→ start InfluxDB" in out
    assert "2 needed check(s) failed: mqtt, influxdb" in out


def test_doctor_reports_an_invalid_config_by_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, '[mqtt]\nurl = "http://nope"\n')
    assert main(["doctor", "--config", str(config), "--no-bluetooth"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  config:" in out
    assert "mqtt.url" in out


def test_doctor_without_any_config_yet_warns_and_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "redox.toml"
    monkeypatch.setenv("REDOX_CONFIG", str(missing))
    assert main(["doctor", "--no-bluetooth"]) == 0  # nothing configured is not a failure
    out = capsys.readouterr().out
    assert f"WARN  config: no config file at {missing}" in out
    assert f"config init --path {missing}" in out
    assert out.count("config init") == 1
    assert main(["doctor", "--config", str(missing), "--no-bluetooth"]) == 1  # named: needed
    assert "FAIL  config:" in capsys.readouterr().out


def test_doctor_without_an_adapter_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import streamer.commands.doctor as doctor

    monkeypatch.setattr(doctor, "BLUETOOTH_SYSFS", tmp_path / "no-sysfs")
    check = doctor.check_bluetooth(needed=True)
    if check.ok:  # a machine with a working adapter behind bleak
        pytest.skip("this machine has a usable Bluetooth adapter")
    assert "no usable Bluetooth adapter" in check.detail
    assert "bluetoothctl" in check.fix


# --- run ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_run_streams_configured_devices_through_drivers_to_mqtt_and_the_store(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = _config(
        tmp_path,
        f"""
[mqtt]
url = "{mosquitto.url}"

[[athletes]]
id = "ann"
name = "Ann"

[[athletes.devices]]
kind = "strap"
address = "C0:00:00:00:10:01"

[[athletes.devices]]
kind = "smo2"
address = "C0:00:00:00:10:02"
""",
    )
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(mosquitto.port),
            "-t",
            "redox/#",
            "-v",
            "-W",
            "25",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamer.cli",
            "run",
            "--config",
            str(config),
            "--emulated",
            "--speed",
            "20",
            "--duration",
            "6",
            "--plain",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    sub.terminate()
    out, _ = sub.communicate(timeout=10)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "left in the outbox" in result.stdout
    topics = {line.split(" ", 1)[0] for line in out.splitlines()}
    assert {
        "redox/ann/strap/live",
        "redox/ann/smo2/live",
        "redox/ann/hrv",
        "redox/bridge/state",
    } <= topics
    with Store(tmp_path / "store.sqlite3") as store:
        assert MqttOutbox(store).depth() == 0


def test_run_without_devices_says_how_to_add_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, '[[athletes]]\nid = "ann"\nname = "Ann"\n')
    assert (
        main(["run", "--config", str(config), "--registry", str(tmp_path / "registry.toml")]) == 2
    )
    assert "no devices to stream" in capsys.readouterr().err


HAS_SYSTEM_BUS = any(
    Path(p).exists() for p in ("/run/dbus/system_bus_socket", "/var/run/dbus/system_bus_socket")
)


@pytest.mark.skipif(HAS_SYSTEM_BUS, reason="a D-Bus system bus exists: a real adapter may work")
def test_run_without_an_adapter_says_why_at_once_keeps_retrying_and_exits_1(
    tmp_path: Path,
) -> None:
    """Real bleak on a machine with no Bluetooth stack (this one: bleak raises
    FileNotFoundError, the D-Bus socket is missing); a device known by name only, as
    `config check` accepts it, is streamed (looked for), not refused."""
    config = _config(
        tmp_path,
        '[[athletes]]\nid = "ann"\nname = "Ann"\n'
        '[[athletes.devices]]\nkind = "strap"\nname = "Polar H10 1A2B3C4D"\n',
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamer.cli",
            "run",
            "--config",
            str(config),
            "--registry",
            str(tmp_path / "devices.toml"),
            "--duration",
            "4",
            "--plain",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    said = [line for line in out.splitlines() if "no usable Bluetooth adapter" in line]
    # Said once as news (with "retrying"), then in every status block of the 4-s run.
    assert said[0].startswith("no usable Bluetooth adapter: no D-Bus system bus")
    assert "bluetoothctl show" in said[0]
    assert "retrying — plug in or power on an adapter at any time" in said[0]
    assert sum(line.startswith("  no usable Bluetooth adapter") for line in said) >= 1
    assert "alerts: –" in out  # no data: not a green "ok"
    assert (
        out.rstrip()
        .splitlines()[-1]
        .startswith("no device connected during the run: no usable Bluetooth adapter")
    )
