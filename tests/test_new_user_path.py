"""The path a new user walks, as one test: `config init` → `scan` → `pair add` → `doctor` →
`run`, on the emulated radio, against a real mosquitto and a real InfluxDB 1.6 — what
`config check` accepts, `run` runs (issue 11)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.cli import main
from tests.servers import InfluxDB1, Mosquitto

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The user's config and data directories, in tmp (platformdirs reads XDG_*)."""
    env = {
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REDOX_CONFIG", raising=False)
    return env


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_config_init_scan_pair_doctor_run_is_one_path(
    home: dict[str, str],
    tmp_path: Path,
    mosquitto: Mosquitto,
    influxdb1: InfluxDB1,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 1. config init at the default place; it names the next steps.
    assert main(["config", "init"]) == 0
    out = capsys.readouterr().out
    config = Path(home["XDG_CONFIG_HOME"]) / "redox-streamer" / "config.toml"
    assert f"wrote {config}" in out
    assert "redox-streamer pair add --athlete alice --kind strap" in out
    # The user points it at their servers (the example's are the usual local ones).
    text = config.read_text()
    text = text.replace("mqtt://127.0.0.1:1883", mosquitto.url)
    text = text.replace("http://127.0.0.1:8086", influxdb1.url)
    config.write_text(text)
    assert main(["config", "check"]) == 0
    assert "alice has no devices yet: `redox-streamer pair add" in capsys.readouterr().out

    # 2. scan (the emulated radio: one device of each model).
    assert main(["scan", "--emulated"]) == 0
    out = capsys.readouterr().out
    assert "strap" in out
    assert "C0:00:00:00:00:01" in out

    # 3. pair the one strap in range to alice.
    assert main(["pair", "add", "--athlete", "alice", "--kind", "strap", "--emulated"]) == 0
    out = capsys.readouterr().out
    assert "paired C0:00:00:00:00:01" in out
    assert "to alice as strap" in out
    assert main(["config", "check"]) == 0
    assert "paired to alice" in capsys.readouterr().out

    # 4. doctor: the device is listed; the InfluxDB database does not exist yet — a FAIL
    # with the fix, not "everything needed is in place".
    assert main(["doctor", "--no-bluetooth"]) == 1
    out = capsys.readouterr().out
    assert "OK    devices: alice: strap C0:00:00:00:00:01" in out
    assert "FAIL  influxdb:" in out
    assert 'CREATE DATABASE "redox"' in out
    influxdb1.query('CREATE DATABASE "redox"')
    assert main(["doctor", "--no-bluetooth"]) == 0
    out = capsys.readouterr().out
    assert "OK    influxdb:" in out
    assert "everything needed is in place" in out

    # 5. run, on the emulated radio: it streams the paired strap (its --help: "serve the
    # configured and paired devices from emulators").
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamer.cli",
            "run",
            "--emulated",
            "--speed",
            "20",
            "--duration",
            "8",
            "--plain",
        ],
        cwd=ROOT,
        env={**os.environ, **home, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "strap:up" in result.stdout
    assert "no usable Bluetooth adapter" not in result.stdout
    assert "influx delivered" in result.stdout
    assert "REFUSED" not in result.stdout
    out = result.stdout
    last = out.rstrip().splitlines()[-1]
    assert last.startswith("stopped: ")
    stored = int(last.split()[1])
    assert stored > 0
    assert f"results stored in {Path(home['XDG_DATA_HOME'])}" in last  # the default store
    assert re.search(r"sink mqtt connected delivered [1-9]\d* messages waiting 0 live [1-9]", out)
    measurements = influxdb1.query("SHOW MEASUREMENTS", "redox")["results"]
    assert "series" in measurements[0]  # type: ignore[index]
