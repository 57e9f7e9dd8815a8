"""The emulated peripherals, reached through bleak over the Bumble backend.

Everything here crosses a real GATT stack: bleak → BumbleClient → Bumble host →
virtual controller → LocalLink → the peripheral's controller, host and GATT server.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak_retry_connector import establish_connection

from devices import gatt as uuids
from devices.codecs import battery, heart_rate
from devices.emulated import BumbleDeviceDetails, ChestStrap, EmulatedWorld
from devices.emulated.signals import RRParameters, rr_series

pytestmark = pytest.mark.timeout(60)

#: Long enough for several 20-ms advertising intervals.
SCAN_S = 0.15


@pytest.fixture
async def world() -> AsyncIterator[EmulatedWorld]:
    async with EmulatedWorld() as w:
        yield w


async def find(world: EmulatedWorld, name: str) -> object:
    device = await BleakScanner.find_device_by_name(name, timeout=2.0, **world.scanner_kwargs)
    assert device is not None, f"{name} not found"
    return device


async def test_scanner_finds_strap_with_name_services_and_rssi(world: EmulatedWorld) -> None:
    strap = await world.add(ChestStrap("Polar H10 EMU1"))
    found = await BleakScanner.discover(timeout=SCAN_S, return_adv=True, **world.scanner_kwargs)
    assert strap.address in found
    device, adv = found[strap.address]
    assert device.name == "Polar H10 EMU1"
    assert adv.local_name == "Polar H10 EMU1"
    assert adv.service_uuids == [uuids.HEART_RATE_SERVICE, uuids.BATTERY_SERVICE]
    assert adv.rssi == -50
    assert isinstance(device.details, BumbleDeviceDetails)


async def test_scan_shorter_than_advertising_interval_finds_nothing(world: EmulatedWorld) -> None:
    await world.add(ChestStrap("Slow EMU", advertising_interval_ms=500.0))
    await asyncio.sleep(0.05)  # let the first advertisement go by before scanning
    found = await BleakScanner.discover(timeout=0.1, **world.scanner_kwargs)
    assert found == []


async def test_connect_lists_services_and_reads_battery(world: EmulatedWorld) -> None:
    await world.add(ChestStrap("Polar H10 EMU1", battery_pct=64))
    device = await find(world, "Polar H10 EMU1")
    async with BleakClient(device, **world.client_kwargs) as client:  # type: ignore[arg-type]
        assert client.is_connected
        assert client.mtu_size == 247
        service_uuids = {s.uuid for s in client.services}
        assert {uuids.HEART_RATE_SERVICE, uuids.BATTERY_SERVICE} <= service_uuids
        hrm = client.services.get_characteristic(uuids.HEART_RATE_MEASUREMENT)
        assert hrm is not None
        assert hrm.properties == ["notify"]
        assert [d.uuid for d in hrm.descriptors] == ["00002902-0000-1000-8000-00805f9b34fb"]
        level = battery.decode(bytes(await client.read_gatt_char(uuids.BATTERY_LEVEL)))
        assert level.battery_pct == 64
        location = heart_rate.decode_location(
            bytes(await client.read_gatt_char(uuids.BODY_SENSOR_LOCATION))
        )
        assert location.location.name == "CHEST"
    assert not client.is_connected


def wire_units(rr_ms: float) -> int:
    """What the strap must put on the wire: nearest 1/1024 s."""
    return math.floor(rr_ms * 1.024 + 0.5)


async def test_notified_rr_decode_to_fed_values_rounded_to_1024ths(world: EmulatedWorld) -> None:
    fed = rr_series(400, RRParameters(mean_hr_bpm=75, rmssd_ms=45), seed=3).rr_ms.tolist()
    strap = await world.add(ChestStrap("Polar H10 EMU1", rr_ms=fed, speed=40.0))
    device = await find(world, "Polar H10 EMU1")
    received: list[bytes] = []
    enough = asyncio.Event()

    def on_hrm(_c: BleakGATTCharacteristic, data: bytearray) -> None:
        received.append(bytes(data))
        if sum(len(heart_rate.decode(p).rr_ms) for p in received) >= 40:
            enough.set()

    async with BleakClient(device, **world.client_kwargs) as client:  # type: ignore[arg-type]
        await client.start_notify(uuids.HEART_RATE_MEASUREMENT, on_hrm)
        await asyncio.wait_for(enough.wait(), 10.0)
        await client.stop_notify(uuids.HEART_RATE_MEASUREMENT)
    samples = [heart_rate.decode(p) for p in received]
    got_ms = [rr for s in samples for rr in s.rr_ms]
    # The strap ran before we subscribed: what we got is a contiguous stretch of `fed`.
    start = fed.index(strap.delivered[0].rr_ms[0])
    expected = fed[start : start + len(got_ms)]
    assert [heart_rate.rr_ms_to_units(rr) for rr in got_ms] == [wire_units(x) for x in expected]
    assert got_ms == [heart_rate.rr_units_to_ms(wire_units(x)) for x in expected]
    assert all(abs(g - x) <= 1000 / 1024 / 2 for g, x in zip(got_ms, expected, strict=True))
    assert all(len(s.rr_ms) <= 9 for s in samples)


async def test_drop_link_fires_disconnected_callback(world: EmulatedWorld) -> None:
    strap = await world.add(ChestStrap("Polar H10 EMU1"))
    device = await find(world, "Polar H10 EMU1")
    dropped = asyncio.Event()
    client = BleakClient(
        device,  # type: ignore[arg-type]
        disconnected_callback=lambda _c: dropped.set(),
        **world.client_kwargs,
    )
    await client.connect()
    assert await strap.drop_link() == 1
    await asyncio.wait_for(dropped.wait(), 2.0)
    states = [client.is_connected]
    # Advertising restarted by itself: the same client reconnects.
    await client.connect()
    states.append(client.is_connected)
    await client.disconnect()
    assert states == [False, True]


async def test_establish_connection_works_over_the_backend(world: EmulatedWorld) -> None:
    await world.add(ChestStrap("Polar H10 EMU1"))
    device = await find(world, "Polar H10 EMU1")
    client = await establish_connection(
        BleakClient, device, "Polar H10 EMU1", **world.client_kwargs  # type: ignore[arg-type]
    )
    try:
        assert client.is_connected
        got: asyncio.Queue[bytes] = asyncio.Queue()

        def on_hrm(_c: BleakGATTCharacteristic, data: bytearray) -> None:
            got.put_nowait(bytes(data))

        await client.start_notify(uuids.HEART_RATE_MEASUREMENT, on_hrm)
        payload = await asyncio.wait_for(got.get(), 3.0)
        assert heart_rate.decode(payload).hr_bpm > 0
    finally:
        await client.disconnect()
