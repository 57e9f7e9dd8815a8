"""The paired-devices registry round-trips through TOML and refuses bad input clearly."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.kinds import DeviceKind
from devices.registry import (
    DeviceRegistry,
    PairedDevice,
    RegistryError,
    default_registry_path,
    normalize_address,
)

STRAP = PairedDevice("a0:9e:1a:12:34:56", "anna", DeviceKind.STRAP, "Polar H10 1234")
MOXY = PairedDevice("D1:22:33:44:55:66", "anna", DeviceKind.SMO2, "Moxy 1", "left quad")
GRIP = PairedDevice("E1:22:33:44:55:66", "ben", DeviceKind.GRIP, "Progressor_200")


def test_missing_file_is_an_empty_registry(tmp_path: Path) -> None:
    registry = DeviceRegistry.load(tmp_path / "nowhere" / "devices.toml")
    assert len(registry) == 0
    assert list(registry) == []


def test_saved_registry_loads_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "devices.toml"
    registry = DeviceRegistry.load(path)
    for device in (STRAP, MOXY, GRIP):
        registry.add(device)
    registry.save()
    loaded = DeviceRegistry.load(path)
    assert list(loaded) == list(registry)
    assert loaded.get("A0:9E:1A:12:34:56") == STRAP
    assert [d.kind for d in loaded.for_athlete("anna")] == [DeviceKind.STRAP, DeviceKind.SMO2]


def test_saved_file_is_plain_toml_a_person_can_edit(tmp_path: Path) -> None:
    path = tmp_path / "devices.toml"
    DeviceRegistry(path, [MOXY]).save()
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert data == {
        "version": 1,
        "device": [
            {
                "address": "D1:22:33:44:55:66",
                "athlete": "anna",
                "kind": "smo2",
                "name": "Moxy 1",
                "role": "left quad",
            }
        ],
    }


text = st.text(st.characters(codec="utf-8"), max_size=30)


@settings(max_examples=50, deadline=None)
@given(athlete=text.filter(lambda s: s.strip() != ""), name=text, role=text)
def test_any_names_round_trip_through_the_file(
    tmp_path_factory: pytest.TempPathFactory, athlete: str, name: str, role: str
) -> None:
    path = tmp_path_factory.mktemp("reg") / "devices.toml"
    device = PairedDevice("AA:BB:CC:DD:EE:FF", athlete, DeviceKind.POWER, name, role)
    DeviceRegistry(path, [device]).save()
    assert list(DeviceRegistry.load(path)) == [device]


def test_addresses_are_normalised_so_lookups_ignore_case_and_separators() -> None:
    assert normalize_address(" aa-bb-cc-dd-ee-ff ") == "AA:BB:CC:DD:EE:FF"
    mac_os = "5c2d1f0e-aaaa-bbbb-cccc-0123456789ab"
    assert normalize_address(mac_os) == mac_os.upper()
    registry = DeviceRegistry(Path("unused.toml"), [STRAP])
    assert "a0-9e-1a-12-34-56" in registry
    assert registry.get("a0:9e:1a:12:34:56") == STRAP


@pytest.mark.parametrize("bad", ["", "AA:BB:CC", "GG:BB:CC:DD:EE:FF", "Polar H10"])
def test_bad_address_names_the_input_and_the_expected_form(bad: str) -> None:
    with pytest.raises(RegistryError, match=r"not a Bluetooth address.*AA:BB:CC:DD:EE:FF"):
        normalize_address(bad)


def test_empty_athlete_is_refused() -> None:
    with pytest.raises(RegistryError, match="athlete name is empty"):
        PairedDevice("AA:BB:CC:DD:EE:FF", "  ", DeviceKind.STRAP)


def test_adding_a_paired_address_again_needs_replace(tmp_path: Path) -> None:
    registry = DeviceRegistry(tmp_path / "devices.toml", [STRAP])
    moved = PairedDevice(STRAP.address, "ben", DeviceKind.STRAP)
    with pytest.raises(RegistryError, match="already paired to anna as strap"):
        registry.add(moved)
    registry.add(moved, replace=True)
    assert registry.get(STRAP.address) == moved


def test_remove_returns_the_entry_and_unknown_address_is_an_error(tmp_path: Path) -> None:
    registry = DeviceRegistry(tmp_path / "devices.toml", [STRAP, MOXY])
    assert registry.remove("a0:9e:1a:12:34:56") == STRAP
    assert len(registry) == 1
    with pytest.raises(RegistryError, match="A0:9E:1A:12:34:56 is not in the device registry"):
        registry.remove(STRAP.address)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("version = 1\n[[device]\n", "not valid TOML"),
        ("version = 7\n", "version 7 is not supported"),
        ("device = 3\n", "array of tables"),
        ('[[device]]\naddress = "AA:BB:CC:DD:EE:FF"\n', "device #1: missing athlete, kind"),
        (
            '[[device]]\naddress = "AA:BB:CC:DD:EE:FF"\nathlete = "a"\nkind = "toaster"\n',
            "device #1: unknown device kind 'toaster'",
        ),
        (
            '[[device]]\naddress = "AA:BB:CC:DD:EE:FF"\nathlete = 3\nkind = "strap"\n',
            "athlete must be text",
        ),
        ('[[device]]\naddress = "nope"\nathlete = "a"\nkind = "strap"\n', "device #1: 'nope'"),
        (
            '[[device]]\naddress = "AA:BB:CC:DD:EE:FF"\nathlete = "a"\nkind = "strap"\n'
            '[[device]]\naddress = "aa:bb:cc:dd:ee:ff"\nathlete = "b"\nkind = "grip"\n',
            "already paired to a",
        ),
    ],
)
def test_invalid_file_is_refused_naming_the_file_and_the_problem(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "devices.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RegistryError, match=message) as info:
        DeviceRegistry.load(path)
    assert str(path) in str(info.value) or "already paired" in message


def test_unwritable_location_is_a_registry_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    registry = DeviceRegistry(blocker / "sub" / "devices.toml", [STRAP])
    with pytest.raises(RegistryError, match="cannot write the device registry"):
        registry.save()


def test_default_path_is_in_the_user_config_dir() -> None:
    path = default_registry_path()
    assert path.name == "devices.toml"
    assert "redox-streamer" in path.parts
