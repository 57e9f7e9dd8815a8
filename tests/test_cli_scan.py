"""``redox-streamer scan``: the emulated devices through the real discovery code."""

from __future__ import annotations

import json
import os

import pytest

from streamer.cli import main
from streamer.commands.scan import print_table

pytestmark = pytest.mark.timeout(60)

HAS_SYSTEM_BUS = any(
    os.path.exists(p) for p in ("/run/dbus/system_bus_socket", "/var/run/dbus/system_bus_socket")
)


def test_scan_emulated_json_lists_one_device_of_each_model_with_its_kind(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["scan", "--emulated", "--json", "--timeout", "0.2"]) == 0
    devices = json.loads(capsys.readouterr().out)
    assert [(d["kind"], d["model"], d["name"]) for d in devices] == [
        ("strap", "heart_rate", "Polar H10 EMU1"),
        ("smo2", "moxy", "Moxy EMU1"),
        ("grip", "tindeq", "Progressor_EMU1"),
        ("grip", "activ5", "ACTIV5-EMU1"),
        ("power", "cycling_power", "Power EMU1"),
        ("spo2", "pulse_oximeter", "Oximeter EMU1"),
    ]
    for device in devices:
        assert set(device) == {"address", "name", "kind", "model", "rssi_dbm", "services"}
        assert device["rssi_dbm"] == -50
        assert len(device["address"]) == 17


def test_scan_emulated_table_shows_address_name_kind_and_rssi(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["scan", "--emulated", "--timeout", "0.2"]) == 0
    out = capsys.readouterr().out
    for text in ("address", "RSSI dBm", "Polar H10 EMU1", "strap", "Moxy EMU1", "smo2", "-50"):
        assert text in out
    assert "heart rate, battery" in out  # services by their short names


def test_nothing_found_prints_a_hint_not_an_empty_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_table([], 5.0)
    out = capsys.readouterr().out
    assert "No Bluetooth LE device seen in 5 s" in out
    assert "--timeout" in out


@pytest.mark.parametrize("value", ["0", "-1", "soon", "7200"])
def test_bad_timeout_is_refused_by_the_parser(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["scan", "--timeout", value])
    assert exit_info.value.code == 2
    assert "--timeout" in capsys.readouterr().err


@pytest.mark.skipif(HAS_SYSTEM_BUS, reason="a D-Bus system bus exists; a real adapter may scan")
def test_scan_without_an_adapter_exits_2_and_suggests_what_to_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["scan", "--timeout", "0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0  # one line
    assert err.startswith("redox-streamer scan: error: no usable Bluetooth adapter")
    assert "bluetoothctl" in err
    assert "--emulated" in err


def test_help_teaches_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out
    assert "redox-streamer scan --emulated" in out
    assert "RSSI" in out
