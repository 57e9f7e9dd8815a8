"""The emulated peripherals, reached through bleak over the Bumble backend.

Everything here crosses a real GATT stack: bleak → BumbleClient → Bumble host →
virtual controller → LocalLink → the peripheral's controller, host and GATT server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.exc import BleakDeviceNotFoundError, BleakError
from bleak_retry_connector import establish_connection
from bumble import gatt as bumble_gatt
from bumble import hci
from bumble.core import UUID

from devices import gatt as uuids
from devices.codecs import battery, cycling_power, heart_rate, moxy, tindeq
from devices.codecs.errors import CodecError
from devices.codecs.tindeq import TindeqCommand
from devices.emulated import (
    BumbleDeviceDetails,
    ChestStrap,
    EmulatedPeripheral,
    EmulatedWorld,
    MoxySensor,
    PowerMeter,
    TindeqProgressor,
)
from devices.emulated.recordings import nsr2db_rr_ms
from devices.emulated.signals import RRParameters, rr_series
from devices.emulated.world import EmulatedClock
from devices.records import SensorContact, TindeqCommandResponse, TindeqWeight

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
    await world.add(ChestStrap("Polar H10 EMU1", speed=10.0))
    device = await find(world, "Polar H10 EMU1")
    client = await establish_connection(
        BleakClient,
        device,
        "Polar H10 EMU1",
        **world.client_kwargs,  # type: ignore[arg-type]
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


# -- the other peripherals ------------------------------------------------------------------


async def test_scanner_service_filter_and_names_of_all_peripherals(world: EmulatedWorld) -> None:
    strap = await world.add(ChestStrap("Polar H10 EMU1"))
    moxy_dev = await world.add(MoxySensor("Moxy 1234"))
    grip = await world.add(TindeqProgressor("Progressor_EMU"))
    meter = await world.add(PowerMeter("Power EMU"))
    found = await BleakScanner.discover(timeout=SCAN_S, return_adv=True, **world.scanner_kwargs)
    names = {address: adv.local_name for address, (_d, adv) in found.items()}
    assert names == {
        strap.address: "Polar H10 EMU1",
        moxy_dev.address: "Moxy 1234",
        grip.address: "Progressor_EMU",
        meter.address: "Power EMU",
    }
    assert found[moxy_dev.address][1].service_uuids == [uuids.MOXY_SERVICE]
    assert found[grip.address][1].service_uuids == [uuids.TINDEQ_SERVICE]
    assert found[meter.address][1].service_uuids == [uuids.CYCLING_POWER_SERVICE]
    only_moxy = await BleakScanner.discover(
        timeout=SCAN_S, service_uuids=[uuids.MOXY_SERVICE], **world.scanner_kwargs
    )
    assert [d.address for d in only_moxy] == [moxy_dev.address]


async def test_scan_response_repeating_the_advertisement_is_not_reported_twice(
    world: EmulatedWorld,
) -> None:
    await world.add(ChestStrap("Polar H10 EMU1", advertising_interval_ms=100.0))
    reports: list[str] = []
    async with BleakScanner(lambda d, _a: reports.append(d.address), **world.scanner_kwargs):
        await asyncio.sleep(0.35)  # three or four advertising events
    assert 2 <= len(reports) <= 4


async def test_tindeq_obeys_tare_start_stop_and_battery(world: EmulatedWorld) -> None:
    grip = await world.add(TindeqProgressor(peak_kg=40.0, bias_kg=0.6, rest_s=0.5, speed=4.0))
    device = await find(world, "Progressor_EMU")
    responses: asyncio.Queue[object] = asyncio.Queue()

    def on_data(_c: BleakGATTCharacteristic, data: bytearray) -> None:
        responses.put_nowait(tindeq.decode(bytes(data)))

    async def next_weight() -> TindeqWeight:
        while True:
            record = await asyncio.wait_for(responses.get(), 3.0)
            if isinstance(record, TindeqWeight):
                return record

    async def command(client: BleakClient, opcode: TindeqCommand, response: bool) -> None:
        await client.write_gatt_char(
            uuids.TINDEQ_CONTROL, tindeq.encode_command(opcode), response=response
        )

    def drain() -> None:
        while not responses.empty():
            responses.get_nowait()

    async with BleakClient(device, **world.client_kwargs) as client:  # type: ignore[arg-type]
        await client.start_notify(uuids.TINDEQ_DATA, on_data)
        await command(client, TindeqCommand.GET_BATTERY_VOLTAGE, True)
        battery_answer = await asyncio.wait_for(responses.get(), 3.0)
        assert isinstance(battery_answer, TindeqCommandResponse)
        assert battery_answer.battery_mv == 3900

        await command(client, TindeqCommand.START_WEIGHT, True)
        first = await next_weight()
        assert len(first.samples) == 10
        assert [s.t_us for s in first.samples] == [round(i * 1e6 / 80) for i in range(10)]
        assert first.samples[0].force_kg == pytest.approx(0.6, abs=0.3)  # untared rest

        await command(client, TindeqCommand.TARE, False)  # without response works too
        await settled(lambda: TindeqCommand.TARE in grip.commands)
        drain()
        weights = [await next_weight() for _ in range(40)]  # 5 s > one rest + squeeze cycle
        forces = [s.force_kg for w in weights for s in w.samples]
        assert min(forces) == pytest.approx(0.0, abs=0.3)  # tared rest
        assert max(forces) == pytest.approx(40.0 - 0.6, abs=1.0)  # the squeeze, tared

        await command(client, TindeqCommand.STOP_WEIGHT, True)
        await settled(lambda: not grip.is_measuring)
        drain()
        await asyncio.sleep(0.2)  # a while (the behaviour under test) …
        assert responses.empty()  # … without weights: stopped
    assert grip.commands == [
        TindeqCommand.GET_BATTERY_VOLTAGE,
        TindeqCommand.START_WEIGHT,
        TindeqCommand.TARE,
        TindeqCommand.STOP_WEIGHT,
    ]
    assert not grip.is_measuring


async def collect(world: EmulatedWorld, name: str, char: str, real_s: float) -> list[bytes]:
    """Subscribe to ``char`` of the device called ``name`` for ``real_s`` seconds."""
    device = await find(world, name)
    payloads: list[bytes] = []

    def on_data(_c: BleakGATTCharacteristic, data: bytearray) -> None:
        payloads.append(bytes(data))

    async with BleakClient(device, **world.client_kwargs) as client:  # type: ignore[arg-type]
        await client.start_notify(char, on_data)
        await asyncio.sleep(real_s)
    return payloads


async def test_moxy_notifies_the_samples_it_generated(world: EmulatedWorld) -> None:
    sensor = await world.add(MoxySensor(speed=20.0))
    got = [moxy.decode(p) for p in await collect(world, "Moxy 1234", uuids.MOXY_DATA, 0.4)]
    delivered = list(sensor.delivered)
    assert len(got) >= 2
    # The last notification may still be in flight when the link closes.
    assert len(delivered) - len(got) in (0, 1)
    assert [(s.count, s.smo2_pct, s.previous_smo2_pct, s.thb_gdl) for s in got] == [
        (s.count, s.smo2_pct, s.previous_smo2_pct, s.thb_gdl) for s in delivered[: len(got)]
    ]


async def test_power_meter_notifies_power_with_crank_data(world: EmulatedWorld) -> None:
    meter = await world.add(PowerMeter(speed=20.0, cadence_rpm=90.0))
    payloads = await collect(world, "Power EMU", uuids.CYCLING_POWER_MEASUREMENT, 0.4)
    got = [cycling_power.decode(p) for p in payloads]
    assert len(got) >= 4
    assert [p.power_w for p in got] == [p.power_w for p in list(meter.delivered)[: len(got)]]
    revolutions = [p.detail.crank_revolutions if p.detail else None for p in got]
    assert None not in revolutions
    # 90 rpm at one notification per emulated second: 1.5 revolutions per notification.
    steps = {b - a for a, b in itertools.pairwise(revolutions) if a is not None and b is not None}
    assert steps <= {1, 2}


# -- fault injection ---------------------------------------------------------------------------


async def test_go_silent_stops_notifications_but_keeps_the_link(world: EmulatedWorld) -> None:
    strap = await world.add(ChestStrap(speed=20.0))
    device = await find(world, "Polar H10 EMU1")
    arrivals: list[bytes] = []
    async with BleakClient(device, **world.client_kwargs) as client:  # type: ignore[arg-type]
        await client.start_notify(
            uuids.HEART_RATE_MEASUREMENT, lambda _c, d: arrivals.append(bytes(d))
        )
        await settled(lambda: len(arrivals) >= 3)
        start = strap.now()  # emulated time: the strap's own clock decides, not arrival times
        strap.go_silent(10.0)
        await settled(lambda: sum(n.t_s > start + 10.0 for n in strap.sent) >= 3)
        await settled(lambda: len(arrivals) == len(strap.sent))
        assert client.is_connected
    # On the strap's clock: no beat due after the silence began went out before it ended
    # (however late a loaded machine ran the strap), and what was sent arrived.
    sent = list(zip(strap.sent, strap.delivered, strict=True))
    assert all(n.t_s >= start + 10.0 for n, sample in sent if sample.t_ns / 1e9 > start)
    assert [bytes(n.payload) for n in strap.sent] == arrivals
    # The beats of the silent stretch are lost, not delivered late.
    emitted = len(strap.rr_emitted_ms)
    delivered = sum(len(s.rr_ms) for s in strap.delivered)
    assert delivered < emitted


async def test_send_malformed_replaces_the_next_notifications(world: EmulatedWorld) -> None:
    strap = await world.add(ChestStrap(speed=20.0))
    device = await find(world, "Polar H10 EMU1")
    payloads: list[bytes] = []
    async with BleakClient(device, **world.client_kwargs) as client:  # type: ignore[arg-type]
        await client.start_notify(
            uuids.HEART_RATE_MEASUREMENT, lambda _c, d: payloads.append(bytes(d))
        )
        await settled(lambda: len(payloads) >= 2)
        strap.send_malformed(3)
        # Three corrupted, then good ones again, and everything sent has arrived.
        await settled(
            lambda: (
                sum(n.malformed for n in strap.sent) == 3
                and not strap.sent[-1].malformed
                and len(payloads) >= len(strap.sent)
            )
        )
    outcomes = []
    for payload in payloads:
        try:
            heart_rate.decode(payload)
            outcomes.append("ok")
        except CodecError:
            outcomes.append("bad")
    assert outcomes.count("bad") == 3
    first_bad = outcomes.index("bad")
    assert outcomes[first_bad : first_bad + 3] == ["bad"] * 3
    assert sum(1 for s in strap.sent if s.malformed) == 3


class StallingSensor(EmulatedPeripheral):
    """A peripheral whose one characteristic takes for ever to read (an async handler)."""

    SERVICE = "5a1e0001-0000-4000-8000-00000000e0e0"
    CHAR = "5a1e0002-0000-4000-8000-00000000e0e0"

    def __init__(self) -> None:
        super().__init__("Stall EMU")
        self.read_started = asyncio.Event()

    async def _read(self, _connection: object) -> bytes:
        self.read_started.set()
        await asyncio.Event().wait()
        return b""

    def build_services(self) -> Sequence[bumble_gatt.Service]:
        char: bumble_gatt.Characteristic[bytes] = bumble_gatt.Characteristic(
            self.CHAR,
            bumble_gatt.Characteristic.Properties.READ,
            bumble_gatt.Characteristic.READABLE,
            bumble_gatt.CharacteristicValue(read=self._read),
        )
        return [bumble_gatt.Service(self.SERVICE, [char])]

    def advertised_services(self) -> Sequence[UUID]:
        return [UUID(self.SERVICE)]

    async def run(self) -> None:
        await asyncio.Event().wait()


async def test_read_in_flight_fails_fast_when_the_link_drops(world: EmulatedWorld) -> None:
    sensor = await world.add(StallingSensor())
    device = await find(world, "Stall EMU")
    client = BleakClient(device, **world.client_kwargs)  # type: ignore[arg-type]
    await client.connect()
    read = asyncio.create_task(client.read_gatt_char(StallingSensor.CHAR))
    await asyncio.wait_for(sensor.read_started.wait(), 2.0)
    await sensor.drop_link()
    with pytest.raises(BleakError, match="disconnected during read"):
        await asyncio.wait_for(read, 1.0)  # not the 30-s ATT timeout


async def test_operations_after_a_drop_raise_bleak_errors(world: EmulatedWorld) -> None:
    strap = await world.add(ChestStrap())
    device = await find(world, "Polar H10 EMU1")
    client = BleakClient(device, **world.client_kwargs)  # type: ignore[arg-type]
    await client.connect()
    battery_char = client.services.get_characteristic(uuids.BATTERY_LEVEL)
    assert battery_char is not None
    await strap.drop_link()
    # As with bleak's own backends, the service collection goes with the link.
    with pytest.raises(BleakError, match="Service Discovery has not been performed"):
        await client.read_gatt_char(battery_char)
    with pytest.raises(BleakError, match="Not connected"):
        await client.start_notify(battery_char, lambda _c, _d: None)


async def test_connect_by_address_string_scans_for_it(world: EmulatedWorld) -> None:
    strap = await world.add(ChestStrap("Polar H10 EMU1"))
    async with BleakClient(strap.address, timeout=2.0, **world.client_kwargs) as client:
        assert client.is_connected
        assert client.name == strap.address.replace(":", "-")


async def test_connect_to_unknown_address_raises_device_not_found(world: EmulatedWorld) -> None:
    client = BleakClient("C0:00:00:00:00:99", timeout=0.2, **world.client_kwargs)
    with pytest.raises(BleakDeviceNotFoundError):
        await client.connect()


async def test_thirty_drop_and_reconnect_cycles_resubscribe_each_time(
    world: EmulatedWorld,
) -> None:
    strap = await world.add(ChestStrap(speed=50.0))
    device = await find(world, "Polar H10 EMU1")
    dropped = asyncio.Event()
    client = BleakClient(
        device,  # type: ignore[arg-type]
        disconnected_callback=lambda _c: dropped.set(),
        **world.client_kwargs,
    )
    got: asyncio.Queue[bytes] = asyncio.Queue()
    tasks_before = len(asyncio.all_tasks())
    for _ in range(30):
        dropped.clear()
        await client.connect()
        await client.start_notify(
            uuids.HEART_RATE_MEASUREMENT, lambda _c, d: got.put_nowait(bytes(d))
        )
        heart_rate.decode(await asyncio.wait_for(got.get(), 2.0))
        await strap.drop_link()
        await asyncio.wait_for(dropped.wait(), 2.0)
    assert strap.links_dropped == 30
    await settled(lambda: len(asyncio.all_tasks()) <= tasks_before)


async def test_closing_the_world_leaves_no_tasks_behind() -> None:
    before = asyncio.all_tasks()
    async with EmulatedWorld() as w:
        for peripheral in (ChestStrap(), MoxySensor(), TindeqProgressor(), PowerMeter()):
            await w.add(peripheral)
        device = await find(w, "Polar H10 EMU1")
        async with BleakClient(device, **w.client_kwargs) as client:  # type: ignore[arg-type]
            await client.start_notify(uuids.HEART_RATE_MEASUREMENT, lambda _c, _d: None)
    await settled(lambda: asyncio.all_tasks() <= before)
    assert asyncio.all_tasks() - before == set()


async def test_a_command_cancelled_at_any_step_leaves_nothing_for_the_loop_or_the_log(
    world: EmulatedWorld, caplog: pytest.LogCaptureFixture
) -> None:
    # CI (stop 23): a SIGTERM while a scan stopped printed Bumble's InvalidStateError under
    # `run`'s one-line stop message — the controller's reply met the cancelled command.
    # A cancel is landed after each number of loop steps until the command outruns it.
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    host = world.central.host
    cancelled_at = []
    try:
        for steps in itertools.count():
            command = asyncio.create_task(host.send_command(hci.HCI_Read_BD_ADDR_Command()))
            for _ in range(steps):
                await asyncio.sleep(0)
            command.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await command
            if not command.cancelled():
                break
            cancelled_at.append(steps)
        # The reply to the last one cancelled is delivered within a few steps.
        for _ in range(8):
            await asyncio.sleep(0)
        # The host still takes commands: the slot a cancelled one held was freed once.
        reply = await asyncio.wait_for(host.send_command(hci.HCI_Read_BD_ADDR_Command()), 5)
    finally:
        loop.set_exception_handler(None)
    assert len(cancelled_at) >= 3, "the cancels never met a command in flight"
    assert reply.return_parameters.bd_addr == world.central.public_address
    assert reported == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("bumble")] == []


# -- several devices at once, and the strap's data sources -----------------------------------


async def test_four_devices_connect_concurrently_while_a_scan_runs(world: EmulatedWorld) -> None:
    peripherals = [
        await world.add(ChestStrap(speed=20.0)),
        await world.add(MoxySensor(speed=20.0)),
        await world.add(TindeqProgressor(speed=20.0)),
        await world.add(PowerMeter(speed=20.0)),
    ]
    found = await BleakScanner.discover(timeout=SCAN_S, **world.scanner_kwargs)
    by_address = {d.address: d for d in found}
    clients = [BleakClient(by_address[p.address], **world.client_kwargs) for p in peripherals]
    async with BleakScanner(**world.scanner_kwargs):  # a scan keeps running meanwhile
        await asyncio.gather(*(c.connect() for c in clients))
        assert [c.is_connected for c in clients] == [True] * 4
        counts = dict.fromkeys(range(4), 0)

        def counter(i: int) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
            def on_data(_c: BleakGATTCharacteristic, _d: bytearray) -> None:
                counts[i] += 1

            return on_data

        chars = [
            uuids.HEART_RATE_MEASUREMENT,
            uuids.MOXY_DATA,
            uuids.TINDEQ_DATA,
            uuids.CYCLING_POWER_MEASUREMENT,
        ]
        for i, (client, char) in enumerate(zip(clients, chars, strict=True)):
            await client.start_notify(char, counter(i))
        await clients[2].write_gatt_char(
            uuids.TINDEQ_CONTROL, tindeq.encode_command(TindeqCommand.START_WEIGHT), response=True
        )
        await settled(lambda: all(n > 0 for n in counts.values()))
        await asyncio.gather(*(c.disconnect() for c in clients))
    assert all(n > 0 for n in counts.values()), counts


async def test_pair_on_connect_encrypts_the_link(world: EmulatedWorld) -> None:
    strap = await world.add(ChestStrap())
    device = await find(world, "Polar H10 EMU1")
    async with BleakClient(device, pair=True, **world.client_kwargs) as client:  # type: ignore[arg-type]
        assert client.is_connected
        assert [c.is_encrypted for c in strap.connections] == [True]
        await client.unpair()
        assert not client.is_connected


async def test_client_services_argument_limits_discovery(world: EmulatedWorld) -> None:
    await world.add(ChestStrap())
    device = await find(world, "Polar H10 EMU1")
    async with BleakClient(
        device,
        services=["180f"],
        **world.client_kwargs,  # type: ignore[arg-type]
    ) as client:
        assert [s.uuid for s in client.services] == [uuids.BATTERY_SERVICE]


async def test_strap_replays_an_nsr2db_recording(world: EmulatedWorld, recordings: Path) -> None:
    recording = nsr2db_rr_ms(recordings / "nsr2db" / "nsr001_rr_secs.txt")
    strap = await world.add(ChestStrap(rr_ms=recording, speed=30.0))
    payloads = await collect(world, "Polar H10 EMU1", uuids.HEART_RATE_MEASUREMENT, 0.5)
    got = [rr for p in payloads for rr in heart_rate.decode(p).rr_ms]
    assert len(got) >= 10
    # What the client got is one unbroken stretch of the recording (it subscribed after the
    # strap began, so it starts somewhere inside; a value recurs, so try every place it is).
    # nsr2db has 1/128-s resolution: every value is a whole number of 1/1024 s, so exact.
    starts = np.flatnonzero(recording == got[0])
    assert any(recording[s : s + len(got)].tolist() == got for s in starts), got[:5]
    assert strap.delivered


async def test_strap_reports_lost_contact_when_its_recording_ends(world: EmulatedWorld) -> None:
    await world.add(ChestStrap(rr_ms=[1000.0] * 3, speed=20.0))
    payloads = await collect(world, "Polar H10 EMU1", uuids.HEART_RATE_MEASUREMENT, 0.4)
    last = heart_rate.decode(payloads[-1])
    assert last.contact is SensorContact.NOT_DETECTED
    assert last.rr_ms == ()


async def test_tindeq_squeezes_show_the_post_session_drop(world: EmulatedWorld) -> None:
    grip = await world.add(
        TindeqProgressor(peak_kg=50.0, rest_s=0.5, bias_kg=0.0, noise_kg=0.0, speed=5.0)
    )
    grip.start_session_drop(0.12, recovery_tau_s=math.inf)
    assert grip.peak_at(grip.now()) == pytest.approx(44.0)
    payloads: list[bytes] = []
    device = await find(world, "Progressor_EMU")
    async with BleakClient(device, **world.client_kwargs) as client:  # type: ignore[arg-type]
        await client.start_notify(uuids.TINDEQ_DATA, lambda _c, d: payloads.append(bytes(d)))
        await client.write_gatt_char(
            uuids.TINDEQ_CONTROL, tindeq.encode_command(TindeqCommand.START_WEIGHT), True
        )
        # One rest + squeeze cycle: 4.2 emulated s of weights, 10 samples a notification.
        await settled(lambda: len(payloads) >= math.ceil(4.2 * 80 / 10))
    forces = [
        s.force_kg
        for p in payloads
        if isinstance(record := tindeq.decode(p), TindeqWeight)
        for s in record.samples
    ]
    assert max(forces) == pytest.approx(44.0, abs=0.01)


def test_world_clock_stops_at_a_hold_and_goes_on_from_there_without_a_jump() -> None:
    real = [100.0]
    clock = EmulatedClock(200.0, real_s=lambda: real[0])
    real[0] += 0.01
    assert clock.now() == pytest.approx(2.0)
    frontier = [3.0]
    with clock.held_at(lambda: frontier[0]):
        real[0] += 1.0  # a loaded machine: 200 emulated s of real time pass …
        assert clock.now() == pytest.approx(3.0)  # … but the holder has produced only 3 s
        frontier[0] = 3.5  # the holder caught up: time goes on at most `speed` times real
        assert clock.now() == pytest.approx(3.0)
        real[0] += 0.001
        assert clock.now() == pytest.approx(3.2)
        real[0] += 0.01
        assert clock.now() == pytest.approx(3.5)
    real[0] += 0.01
    assert clock.now() == pytest.approx(5.5)  # free again from where it was held: no jump


async def test_a_streaming_progressor_holds_the_world_clock_at_its_next_packet() -> None:
    clock = EmulatedClock(200.0)
    async with EmulatedWorld(clock=clock) as world:
        grip = await world.add(TindeqProgressor(speed=200.0, noise_kg=0.0))
        device = await find(world, "Progressor_EMU")
        t_us: list[int] = []
        arrived = asyncio.Event()

        def on_data(_c: BleakGATTCharacteristic, data: bytearray) -> None:
            record = tindeq.decode(bytes(data))
            if isinstance(record, TindeqWeight):
                t_us.extend(s.t_us for s in record.samples if s.t_us is not None)
                arrived.set()

        async with BleakClient(device, **world.client_kwargs) as client:  # type: ignore[arg-type]
            await client.start_notify(uuids.TINDEQ_DATA, on_data)
            await client.write_gatt_char(
                uuids.TINDEQ_CONTROL, tindeq.encode_command(TindeqCommand.START_WEIGHT), True
            )
            await until(lambda: len(t_us) >= 400, arrived)
            stall_until = time.monotonic() + 0.1  # the machine stalls: 20 emulated s …
            while time.monotonic() < stall_until:
                pass
            last_sent_s = grip.delivered[-1].t_ns / 1e9
            assert clock.now() <= last_sent_s + 10 / 80 + 1e-6  # … one packet pass at most
            n = len(t_us)
            await until(lambda: len(t_us) >= n + 100, arrived)
    # Every sample of the stream arrived: no hole where the machine stalled.
    assert t_us == [round(i * 1e6 / 80) for i in range(len(t_us))]


async def test_tindeq_stopped_and_started_again_streams_afresh_at_the_current_peak(
    world: EmulatedWorld,
) -> None:
    grip = await world.add(
        TindeqProgressor(peak_kg=50.0, rest_s=5.0, bias_kg=0.0, noise_kg=0.0, speed=50.0)
    )
    device = await find(world, "Progressor_EMU")
    weights: list[TindeqWeight] = []
    arrived = asyncio.Event()

    def on_data(_c: BleakGATTCharacteristic, data: bytearray) -> None:
        record = tindeq.decode(bytes(data))
        if isinstance(record, TindeqWeight):
            weights.append(record)
            arrived.set()

    async def command(client: BleakClient, opcode: TindeqCommand) -> None:
        await client.write_gatt_char(uuids.TINDEQ_CONTROL, tindeq.encode_command(opcode), True)

    async with BleakClient(device, **world.client_kwargs) as client:  # type: ignore[arg-type]
        await client.start_notify(uuids.TINDEQ_DATA, on_data)
        await command(client, TindeqCommand.START_WEIGHT)
        await until(lambda: bool(weights), arrived)  # streaming, resting before a squeeze
        grip.start_session_drop(0.2, recovery_tau_s=math.inf)
        await command(client, TindeqCommand.STOP_WEIGHT)
        await command(client, TindeqCommand.START_WEIGHT)  # at once: no idle moment between
        restart = len(weights)

        def fresh() -> list[float]:
            """Forces of the stream started again: its device clock starts from zero."""
            later = weights[restart:]
            starts = [i for i, w in enumerate(later) if w.samples[0].t_us == 0]
            if not starts:
                return []
            return [s.force_kg for w in later[starts[0] :] for s in w.samples]

        await until(lambda: len(fresh()) >= round(80 * (5.0 + 4.0)), arrived)  # rest + squeeze
    assert max(fresh()) == pytest.approx(40.0, abs=0.01)  # the dropped peak, not the old one


async def until(
    condition: Callable[[], bool], arrived: asyncio.Event, within_s: float = 10.0
) -> None:
    """Wait until ``condition`` holds, checking it whenever ``arrived`` is set (by the
    notification callback); fail after ``within_s`` real seconds."""
    async with asyncio.timeout(within_s):
        while not condition():
            arrived.clear()
            await arrived.wait()


async def settled(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    """Until ``condition`` holds, re-checked every 5 ms (it reads state that other tasks
    change without an event); fail after ``within_s`` real seconds."""
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - polling state, there is no event to wait on
            await asyncio.sleep(0.005)
