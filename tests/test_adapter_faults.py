"""No adapter, adapter powered off, permission denied, BlueZ not running: each is said at
once as one line with its fix — by the drivers (and so `run`'s status), `doctor` and the
guided commands — and the drivers keep retrying, so an adapter plugged in or powered on
later is used (issue 11). The faults are what bleak raises (tests/bluetooth_faults.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from devices.discovery import adapter_problem
from devices.drivers import HeartRateDriver
from devices.emulated import ChestStrap, EmulatedWorld
from devices.policy import Backoff, ConnectionPolicy, Jitter
from streamer.app.runtime import wait_connected
from streamer.commands.doctor import bluetooth_check
from streamer.commands.run import AdapterWatch
from streamer.errors import CliError
from tests.bluetooth_faults import WHAT_BLEAK_RAISES, Adapter, faulty_kwargs
from tests.mqtt_helpers import eventually

pytestmark = pytest.mark.timeout(90)

FAST = ConnectionPolicy(
    backoff=Backoff(initial_s=0.01, max_s=0.05, multiplier=2.0, jitter=Jitter.FULL),
    connect_timeout_s=5.0,
    stale_after_s=None,
    stable_after_s=0.0,
    scan_timeout_s=1.0,
)

EXPECTED = {
    "no_dbus": ("no D-Bus system bus", "/run/dbus"),
    "no_bluez": ("BlueZ (bluetoothd) is not running", "systemctl enable --now bluetooth"),
    "no_adapter": ("no Bluetooth adapter", "plug in a Bluetooth LE adapter"),
    "powered_off": ("powered off", "bluetoothctl power on"),
    "auth_denied": ("permission to use Bluetooth denied", "bluetooth` group"),
    "policy_denied": ("permission denied by BlueZ / D-Bus", "bluetooth` group"),
}
"""Per adapter state: what the line must say is wrong, and the fix it must give."""


def test_every_adapter_state_bleak_reports_is_one_line_naming_cause_and_fix() -> None:
    assert EXPECTED.keys() == WHAT_BLEAK_RAISES.keys()
    for state, make in WHAT_BLEAK_RAISES.items():
        line = adapter_problem(make())
        assert line is not None, state
        cause, fix = EXPECTED[state]
        assert line.startswith("no usable Bluetooth adapter: "), line
        assert cause in line, (state, line)
        assert fix in line.partition(" — ")[2], (state, line)
        assert "\n" not in line


def test_device_level_failures_are_not_blamed_on_the_adapter() -> None:
    from bleak.exc import BleakDBusError, BleakDeviceNotFoundError, BleakError

    assert adapter_problem(TimeoutError()) is None
    assert adapter_problem(BleakError("Device disconnected")) is None
    assert adapter_problem(BleakDeviceNotFoundError("AA", "not found")) is None
    assert (
        adapter_problem(BleakDBusError("org.bluez.Error.Failed", ["le-connection-abort"])) is None
    )


@pytest.fixture
async def world() -> AsyncIterator[EmulatedWorld]:
    async with EmulatedWorld() as w:
        yield w


@contextlib.asynccontextmanager
async def running(driver: HeartRateDriver) -> AsyncIterator[HeartRateDriver]:
    task = asyncio.create_task(driver.run())
    try:
        yield driver
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("state", ["powered_off", "no_adapter", "no_dbus"])
async def test_driver_says_why_keeps_retrying_and_connects_once_the_adapter_works(
    world: EmulatedWorld, state: str
) -> None:
    strap = await world.add(ChestStrap("Polar H10 EMU", speed=20.0))
    adapter = Adapter(state)
    driver = HeartRateDriver(strap.address, policy=FAST, **faulty_kwargs(world, adapter))
    said: list[str] = []
    watch = AdapterWatch({"ann": [("strap", driver)]}, said.append)
    async with running(driver):
        await eventually(lambda: driver.status.failed_connects >= 3, what="retries")
        status = driver.status
        assert not status.connected
        assert status.adapter_error is not None
        assert EXPECTED[state][0] in status.adapter_error
        watch.check()
        watch.check()
        assert len(said) == 1  # said once, not at every tick
        assert said[0].endswith("; retrying — plug in or power on an adapter at any time")
        adapter.state = None  # the dongle is plugged in / the adapter powered on
        await eventually(lambda: driver.connected, what="connected after the fix")
        assert driver.status.adapter_error is None
        watch.check()
    assert said[1] == "Bluetooth adapter usable again: connecting to the devices"
    assert watch.problem is not None  # remembered for the run's last word


async def test_a_device_known_by_name_only_is_found_by_its_advertised_name(
    world: EmulatedWorld,
) -> None:
    await world.add(ChestStrap("Polar H10 OTHER", speed=20.0))
    strap = await world.add(ChestStrap("Polar H10 1A2B3C4D", speed=20.0))
    driver = HeartRateDriver(
        "",
        policy=FAST,
        advertised_name="Polar H10 1A2B3C4D",
        client_kwargs=world.client_kwargs,
        scanner_kwargs=world.scanner_kwargs,
    )
    assert driver.name == "Polar H10 1A2B3C4D"
    async with running(driver):
        await eventually(lambda: driver.connected, what="connected by name")
    assert driver.address == strap.address


async def test_a_guided_command_says_the_adapter_problem_at_once_not_after_its_timeout(
    world: EmulatedWorld,
) -> None:
    strap = await world.add(ChestStrap("Polar H10 EMU", speed=20.0))
    driver = HeartRateDriver(
        strap.address, policy=FAST, **faulty_kwargs(world, Adapter("powered_off"))
    )
    loop = asyncio.get_running_loop()
    async with running(driver):
        started = loop.time()
        with pytest.raises(CliError, match=r"powered off .* `bluetoothctl power on`"):
            await wait_connected(driver, 30.0, "the strap")
    # The first attempt fails in milliseconds; 30 s would mean the timeout spoke instead.
    assert loop.time() - started < 15.0


@pytest.mark.parametrize("state", sorted(WHAT_BLEAK_RAISES))
async def test_doctor_fails_on_an_unusable_adapter_with_the_fix(
    world: EmulatedWorld, state: str
) -> None:
    kwargs = faulty_kwargs(world, Adapter(state))["scanner_kwargs"]
    check = await bluetooth_check(True, kwargs)
    assert check.ok is False
    assert check.needed
    cause, fix = EXPECTED[state]
    assert cause in check.detail
    assert fix in check.fix
    assert check.line().startswith("FAIL  bluetooth: no usable Bluetooth adapter")


async def test_doctor_passes_when_the_adapter_scans(world: EmulatedWorld) -> None:
    await world.add(ChestStrap("Polar H10 EMU"))
    kwargs = faulty_kwargs(world, Adapter(None))["scanner_kwargs"]
    check = await bluetooth_check(True, kwargs)
    assert check.ok is True, check.line()
    assert "scan works (1 devices" in check.detail
