"""Discovery: classification by services and names, and scanning through bleak."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError
from hypothesis import given
from hypothesis import strategies as st

from devices import gatt
from devices.discovery import (
    BluetoothUnavailableError,
    _Sightings,
    classify,
    discover,
    explain_adapter_error,
    find_device,
)
from devices.emulated import (
    ChestStrap,
    EmulatedWorld,
    MoxySensor,
    PowerMeter,
    TindeqProgressor,
)
from devices.kinds import DeviceKind

pytestmark = pytest.mark.timeout(60)

SCAN_S = 0.15  # several 20-ms advertising intervals


@pytest.mark.parametrize(
    ("services", "kind"),
    [
        ([gatt.HEART_RATE_SERVICE, gatt.BATTERY_SERVICE], DeviceKind.STRAP),
        (["180d"], DeviceKind.STRAP),
        ([gatt.MOXY_SERVICE], DeviceKind.SMO2),
        ([gatt.TINDEQ_SERVICE.upper()], DeviceKind.GRIP),
        (["5000"], DeviceKind.GRIP),
        ([gatt.CYCLING_POWER_SERVICE, "1816"], DeviceKind.POWER),
        ([gatt.PULSE_OXIMETER_SERVICE], DeviceKind.SPO2),
        ([gatt.BATTERY_SERVICE], DeviceKind.UNKNOWN),
        ([], DeviceKind.UNKNOWN),
    ],
)
def test_advertised_services_decide_the_kind(services: list[str], kind: DeviceKind) -> None:
    assert classify(None, services) is kind


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Polar H10 A1B2C3D4", DeviceKind.STRAP),
        ("Polar H9 1234", DeviceKind.STRAP),
        ("TICKR 5F2A", DeviceKind.STRAP),
        ("HRM-Pro:123456", DeviceKind.STRAP),
        ("Moxy 3F12", DeviceKind.SMO2),
        ("Progressor_1234", DeviceKind.GRIP),
        ("ACTIV5-AB12", DeviceKind.GRIP),
        ("ASSIOMA12345L", DeviceKind.POWER),
        ("4iiii 2F3", DeviceKind.POWER),
        ("O2Ring 1234", DeviceKind.SPO2),
        ("Pixel 7", DeviceKind.UNKNOWN),
        ("", DeviceKind.UNKNOWN),
    ],
)
def test_names_decide_the_kind_when_no_known_service_is_advertised(
    name: str, kind: DeviceKind
) -> None:
    assert classify(name, []) is kind


def test_a_vendor_service_outranks_a_standard_one_and_services_outrank_names() -> None:
    assert classify(None, [gatt.HEART_RATE_SERVICE, gatt.MOXY_SERVICE]) is DeviceKind.SMO2
    assert classify("Polar H10 1234", [gatt.CYCLING_POWER_SERVICE]) is DeviceKind.POWER


@given(st.one_of(st.none(), st.text()), st.lists(st.sampled_from(["180d", "1818", "180f"])))
def test_classify_accepts_any_name(name: str | None, services: list[str]) -> None:
    assert isinstance(classify(name, services), DeviceKind)


def _adv(name: str | None, services: list[str], rssi: int) -> AdvertisementData:
    return AdvertisementData(name, {}, {}, services, None, rssi, ())


def test_advertisement_and_scan_response_merge_into_one_device() -> None:
    sightings = _Sightings()
    device = BLEDevice("c0:00:00:00:00:09", None, None)
    sightings.add(device, _adv(None, [gatt.HEART_RATE_SERVICE], -70))
    sightings.add(device, _adv("Polar H10 EMU", [], -60))
    sightings.add(device, _adv(None, [gatt.BATTERY_SERVICE], -65))
    assert list(sightings.devices) == ["C0:00:00:00:00:09"]
    found = sightings.found("C0:00:00:00:00:09")
    assert found.name == "Polar H10 EMU"  # a later nameless packet keeps the name
    assert found.rssi == -65  # the latest reading
    assert found.services == (gatt.HEART_RATE_SERVICE, gatt.BATTERY_SERVICE)
    assert found.kind is DeviceKind.STRAP
    assert found.ble_device is device


@pytest.fixture
async def world() -> AsyncIterator[EmulatedWorld]:
    async with EmulatedWorld() as w:
        yield w


async def test_scan_finds_each_emulated_device_once_with_its_kind(world: EmulatedWorld) -> None:
    peripherals = [
        await world.add(PowerMeter("Power EMU1")),
        await world.add(TindeqProgressor("Progressor_EMU1")),
        await world.add(MoxySensor("Moxy EMU1")),
        await world.add(ChestStrap("Polar H10 EMU1")),
    ]
    found = await discover(SCAN_S, scanner_kwargs=world.scanner_kwargs)
    # Sorted by kind (strap, smo2, grip, power), one entry per address.
    assert [(f.name, f.kind) for f in found] == [
        ("Polar H10 EMU1", DeviceKind.STRAP),
        ("Moxy EMU1", DeviceKind.SMO2),
        ("Progressor_EMU1", DeviceKind.GRIP),
        ("Power EMU1", DeviceKind.POWER),
    ]
    assert {f.address for f in found} == {p.address for p in peripherals}
    assert all(f.rssi == -50 for f in found)  # what the virtual controller reports
    assert all(f.ble_device is not None for f in found)
    assert found[0].services == (gatt.HEART_RATE_SERVICE, gatt.BATTERY_SERVICE)


async def test_scan_can_keep_only_some_kinds(world: EmulatedWorld) -> None:
    await world.add(ChestStrap("Polar H10 EMU1"))
    await world.add(MoxySensor("Moxy EMU1"))
    found = await discover(SCAN_S, scanner_kwargs=world.scanner_kwargs, kinds={DeviceKind.SMO2})
    assert [f.name for f in found] == ["Moxy EMU1"]


async def test_find_device_by_address_in_any_case(world: EmulatedWorld) -> None:
    strap = await world.add(ChestStrap("Polar H10 EMU1"))
    await world.add(MoxySensor("Moxy EMU1"))
    found = await find_device(strap.address.lower(), 2.0, scanner_kwargs=world.scanner_kwargs)
    assert found is not None
    assert found.name == "Polar H10 EMU1"
    assert found.kind is DeviceKind.STRAP


async def test_find_device_returns_none_when_the_device_never_advertises(
    world: EmulatedWorld,
) -> None:
    await world.add(ChestStrap("Polar H10 EMU1"))
    assert await find_device("C0:FF:EE:00:00:00", 0.1, scanner_kwargs=world.scanner_kwargs) is None


@pytest.mark.skipif(
    os.path.exists("/run/dbus/system_bus_socket")
    or os.path.exists("/var/run/dbus/system_bus_socket"),
    reason="this machine has a D-Bus system bus; a real adapter may be present",
)
async def test_scan_without_an_adapter_says_what_to_check() -> None:
    with pytest.raises(BluetoothUnavailableError, match="bluetoothctl"):
        await discover(0.1)


def test_adapter_errors_are_explained_with_what_to_check() -> None:
    missing_bus = explain_adapter_error(FileNotFoundError(2, "No such file or directory"))
    assert "D-Bus" in missing_bus
    assert "bluetoothctl show" in missing_bus
    powered_off = explain_adapter_error(BleakError("No powered Bluetooth adapters found."))
    assert "No powered Bluetooth adapters found." in powered_off
    assert "rfkill unblock bluetooth" in powered_off
