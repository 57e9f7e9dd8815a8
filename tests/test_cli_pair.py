"""``redox-streamer pair``: the registry as a user edits it, and ``run`` streaming what was
paired — emulated devices found through the real discovery code."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from devices.discovery import FoundDevice
from devices.kinds import DeviceKind
from devices.registry import DeviceRegistry, PairedDevice
from streamer.cli import main
from streamer.commands.pair import _choose
from streamer.errors import CliError

pytestmark = pytest.mark.timeout(90)

STRAP_EMU = "C0:00:00:00:00:01"  # the emulated fleet's strap (first device added)
MOXY_EMU = "C0:00:00:00:00:02"


def pair(words: str, registry: Path, *extra: str) -> int:
    """``redox-streamer pair <words> --registry <registry> <extra>``: its exit status."""
    return main(["pair", *words.split(), "--registry", str(registry), *extra])


def _config(tmp_path: Path, athletes: tuple[str, ...] = ("anna",)) -> Path:
    path = tmp_path / "config.toml"
    text = f'[store]\npath = "{tmp_path / "store.sqlite3"}"\n'
    for athlete in athletes:
        text += f'\n[[athletes]]\nid = "{athlete}"\nname = "{athlete.title()}"\n'
    path.write_text(text)
    return path


def test_pair_by_scanning_takes_the_one_unpaired_device_of_the_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "devices.toml"
    config = str(_config(tmp_path))
    assert pair("add --athlete anna --kind strap --emulated", registry, "--config", config) == 0
    out = capsys.readouterr()
    assert f"paired {STRAP_EMU} (Polar H10 EMU1) to anna as strap" in out.out
    assert "note:" not in out.err  # anna is configured
    stored = tomllib.loads(registry.read_text())["device"]
    assert stored == [
        {
            "address": STRAP_EMU,
            "athlete": "anna",
            "kind": "strap",
            "name": "Polar H10 EMU1",
            "role": "",
        }
    ]

    # the only strap in range is now paired: a second scan-pair says so, changes nothing
    assert pair("add --athlete bo --kind strap --emulated", registry) == 2
    err = capsys.readouterr().err
    assert "no unpaired strap device seen" in err
    assert "1 already paired" in err
    assert len(DeviceRegistry.load(registry)) == 1


def test_pair_by_address_learns_the_kind_and_name_from_a_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "devices.toml"
    address = MOXY_EMU.lower().replace(":", "-")
    role = "left vastus lateralis"
    assert pair(f"add {address} --athlete anna --emulated", registry, "--role", role) == 0
    capsys.readouterr()
    device = DeviceRegistry.load(registry).get(MOXY_EMU)
    assert device == PairedDevice(
        MOXY_EMU, "anna", DeviceKind.SMO2, "Moxy EMU1", "left vastus lateralis"
    )


def test_pair_by_address_of_a_device_out_of_range_needs_the_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "devices.toml"
    assert pair("add C0:00:00:00:00:99 --athlete anna --emulated", registry) == 2
    assert "give --kind" in capsys.readouterr().err
    assert not registry.exists()
    # with the kind, no scan is needed
    assert pair("add C0:00:00:00:00:99 --athlete anna --kind power", registry) == 0
    assert DeviceRegistry.load(registry).get("C0:00:00:00:00:99") is not None


def test_pairing_an_address_twice_needs_replace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "devices.toml"
    add = f"add {STRAP_EMU} --kind strap --athlete"
    assert pair(f"{add} anna", registry) == 0
    assert pair(f"{add} bo", registry) == 2
    err = capsys.readouterr().err
    assert "already paired to anna" in err
    assert "--replace" in err
    assert pair(f"{add} bo --replace", registry) == 0
    paired = DeviceRegistry.load(registry).get(STRAP_EMU)
    assert paired is not None
    assert paired.athlete == "bo"


def test_pairing_to_an_athlete_not_in_the_config_warns_that_run_ignores_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(_config(tmp_path))
    registry = tmp_path / "d.toml"
    assert pair(f"add {STRAP_EMU} --kind strap --athlete zoe", registry, "--config", config) == 0
    err = capsys.readouterr().err
    assert "'zoe' is not an athlete in" in err
    assert 'id = "zoe"' in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["pair", "add", "not-an-address", "--athlete", "a", "--kind", "strap"],
            "is not a Bluetooth address",
        ),
        (["pair", "add", "--athlete", "a"], "give the device's ADDRESS, or --kind"),
        (
            ["pair", "add", STRAP_EMU, "--athlete", "a", "--kind", "unknown"],
            "redox-streamer streams strap, smo2, grip, power, spo2 devices",
        ),
        (  # refused by the config's own id check, as argparse reads the flag
            ["pair", "add", STRAP_EMU, "--athlete", " ", "--kind", "strap"],
            "argument --athlete: ' ' is not a topic-safe id",
        ),
        (["pair", "remove", STRAP_EMU], "is not in the device registry"),
    ],
)
def test_bad_input_is_a_one_line_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    try:
        status = main([*argv, "--registry", str(tmp_path / "d.toml")])
    except SystemExit as exc:  # argparse refuses a flag's value
        status = int(exc.code or 0)
    assert status == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
    assert not (tmp_path / "d.toml").exists()


def test_unknown_kind_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["pair", "add", STRAP_EMU, "--athlete", "a", "--kind", "watch"])
    assert "expected one of: strap, smo2" in capsys.readouterr().err


def test_a_broken_registry_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "d.toml"
    registry.write_text("[[device]\n")
    assert pair("list", registry) == 2
    assert f"{registry} is not valid TOML" in capsys.readouterr().err


def test_list_and_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = tmp_path / "d.toml"
    assert pair("list", registry) == 0
    assert "No paired devices" in capsys.readouterr().out
    for address, kind in ((STRAP_EMU, "strap"), (MOXY_EMU, "smo2")):
        assert pair(f"add {address} --athlete anna --kind {kind}", registry) == 0
    capsys.readouterr()
    assert pair("list --json", registry) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(d["address"], d["kind"]) for d in listed] == [(STRAP_EMU, "strap"), (MOXY_EMU, "smo2")]
    assert pair("list", registry) == 0
    table = capsys.readouterr().out
    assert STRAP_EMU in table
    assert "smo2" in table
    assert pair(f"remove {MOXY_EMU.lower()}", registry) == 0
    assert f"removed {MOXY_EMU} (smo2 of anna)" in capsys.readouterr().out
    assert [d.address for d in DeviceRegistry.load(registry)] == [STRAP_EMU]


def _found(address: str, rssi: int) -> FoundDevice:
    return FoundDevice(address, f"Polar H10 {address[-2:]}", DeviceKind.STRAP, rssi, ())


def test_several_unpaired_devices_of_the_kind_are_listed_not_guessed(tmp_path: Path) -> None:
    registry = DeviceRegistry(tmp_path / "d.toml")
    found = [_found("C0:00:00:00:00:0A", -40), _found("C0:00:00:00:00:0B", -70)]
    with pytest.raises(CliError) as raised:
        _choose(found, registry, DeviceKind.STRAP, 5.0)
    message = str(raised.value)
    assert "2 unpaired strap devices" in message
    assert "C0:00:00:00:00:0A Polar H10 0A -40 dBm" in message
    assert "give the ADDRESS" in message
    # once one of them is paired, the other is the one
    registry.add(PairedDevice("C0:00:00:00:00:0A", "anna", DeviceKind.STRAP))
    assert _choose(found, registry, DeviceKind.STRAP, 5.0).address == "C0:00:00:00:00:0B"


def test_run_streams_what_was_paired(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Pair by scanning the emulated fleet, then `run --emulated` with that registry serves
    the paired addresses from emulators and streams them for the configured athlete."""
    registry = tmp_path / "devices.toml"
    config = str(_config(tmp_path))
    assert pair("add --athlete anna --kind strap --emulated", registry, "--config", config) == 0
    run = "run --emulated --speed 30 --duration 4 --plain"
    assert main([*run.split(), "--config", config, "--registry", str(registry)]) == 0
    out = capsys.readouterr().out
    assert "anna: HR" in out
    assert "strap:up" in out
    assert "no MQTT or InfluxDB configured" in out
    stored = re.search(r"stopped: (\d+) results stored", out)
    assert stored is not None
    assert int(stored.group(1)) > 0  # HRV windows of anna's strap
