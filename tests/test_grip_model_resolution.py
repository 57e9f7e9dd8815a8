"""A grip device configured by kind and address alone is driven as the model it is: the
configuration names it, or its name does, or the device tells (advertisement, else GATT
services) — never the kind's first model by default. Through the emulated radio (bleak →
Bumble → the emulators' GATT servers)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from bumble.core import UUID

from devices.discovery import DeviceNotSeenError, ModelUnknownError, identify_model
from devices.drivers import NotifyDriver, ResolvingDriver, TindeqDriver, driver_for
from devices.drivers.base import Record
from devices.emulated import Activ5Sensor, ChestStrap, EmulatedWorld, TindeqProgressor
from devices.kinds import DeviceKind
from devices.models import candidate_models, model_for, model_named, models_of
from devices.policy import Backoff, ConnectionPolicy
from devices.records import ForceSample
from devices.registry import DeviceRegistry, PairedDevice, RegistryError
from streamer.cli import main
from streamer.config import load_config

pytestmark = pytest.mark.timeout(90)

GRIP_MODELS = models_of(DeviceKind.GRIP)
TINDEQ, ACTIV5 = model_named("tindeq"), model_named("activ5")
QUICK = ConnectionPolicy(
    backoff=Backoff(initial_s=0.01, max_s=0.05), scan_timeout_s=2.0, stable_after_s=0.0
)


class QuietActiv5(Activ5Sensor):
    """An Activ5 that advertises no service under a name no pattern knows: only its GATT
    services tell what it is."""

    def advertised_services(self) -> Sequence[UUID]:
        return []


@pytest.fixture
async def world() -> AsyncIterator[EmulatedWorld]:
    async with EmulatedWorld() as w:
        yield w


def test_a_grip_device_by_address_alone_may_be_either_model_and_is_never_guessed() -> None:
    assert candidate_models(DeviceKind.GRIP) == (TINDEQ, ACTIV5)
    assert model_for(DeviceKind.GRIP) is None
    assert model_for(DeviceKind.GRIP, name="ACTIV5-12AB") is ACTIV5
    assert model_for(DeviceKind.GRIP, model="tindeq") is TINDEQ
    assert model_for(DeviceKind.GRIP, name="Dyno 42") is None  # a name that says nothing
    assert model_for(DeviceKind.STRAP) is model_named("heart_rate")  # one model: no question
    driver = driver_for(DeviceKind.GRIP, "AA:BB:CC:DD:EE:FF")
    assert isinstance(driver, ResolvingDriver)
    assert driver.resolved is None
    assert driver.kind is DeviceKind.GRIP


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: Activ5Sensor("ACTIV5-EMU1"), "activ5"),
        (lambda: TindeqProgressor("Progressor_EMU1"), "tindeq"),
        (lambda: QuietActiv5("Dyno 42"), "activ5"),  # told by its GATT services
    ],
    ids=["activ5-advertised", "tindeq-advertised", "activ5-by-gatt"],
)
async def test_the_device_tells_which_grip_model_it_is(
    world: EmulatedWorld, make: Callable[[], Activ5Sensor | TindeqProgressor], expected: str
) -> None:
    device = await world.add(make())
    model, ble_device = await identify_model(
        device.address,
        GRIP_MODELS,
        timeout_s=5.0,
        scanner_kwargs=world.scanner_kwargs,
        client_kwargs=world.client_kwargs,
    )
    assert model.name == expected
    assert ble_device.address == device.address


async def test_a_device_of_no_candidate_model_is_one_line_naming_address_and_models(
    world: EmulatedWorld,
) -> None:
    strap = await world.add(ChestStrap("Dyno 7"))
    with pytest.raises(ModelUnknownError) as caught:
        await identify_model(
            strap.address,
            GRIP_MODELS,
            timeout_s=5.0,
            scanner_kwargs=world.scanner_kwargs,
            client_kwargs=world.client_kwargs,
        )
    message = str(caught.value)
    assert "\n" not in message
    assert strap.address in message
    assert "tindeq, activ5" in message


async def test_a_device_not_seen_cannot_tell_and_says_what_it_may_be(world: EmulatedWorld) -> None:
    with pytest.raises(DeviceNotSeenError, match=r"C0:FF:EE:00:00:09 .*tindeq or activ5"):
        await identify_model(
            "C0:FF:EE:00:00:09", GRIP_MODELS, timeout_s=0.2, scanner_kwargs=world.scanner_kwargs
        )


async def _first_forces(driver: ResolvingDriver, got: list[Record], n: int) -> None:
    task = asyncio.create_task(driver.run())
    try:
        async with asyncio.timeout(30):
            while sum(isinstance(r, ForceSample) for r in got) < n:
                assert not task.done(), driver.status
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("quiet", [False, True], ids=["advertised", "by-gatt"])
async def test_an_activ5_configured_by_address_alone_streams_force_as_an_activ5(
    world: EmulatedWorld, tmp_path: Path, quiet: bool
) -> None:
    sensor = await world.add((QuietActiv5 if quiet else Activ5Sensor)("Dyno 3", speed=5.0))
    config = tmp_path / "redox.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "s.sqlite3"}"\n[[athletes]]\nid = "ann"\n'
        f'[[athletes.devices]]\nkind = "grip"\naddress = "{sensor.address}"\n'
    )
    device = load_config(config).athletes[0].devices[0]
    assert device.device_model is None
    assert device.device_models == (TINDEQ, ACTIV5)
    got: list[Record] = []
    assert device.address is not None
    driver = driver_for(  # what `run` builds
        device.device_models,
        device.address,
        sink=got.append,
        policy=QUICK,
        client_kwargs=world.client_kwargs,
        scanner_kwargs=world.scanner_kwargs,
        rng=random.Random(0),
    )
    assert isinstance(driver, ResolvingDriver)
    await _first_forces(driver, got, 5)
    assert driver.resolved is ACTIV5
    assert type(driver.driver) is NotifyDriver
    assert driver.status.connects == 1


async def test_a_progressor_configured_by_address_alone_is_told_to_stream(
    world: EmulatedWorld,
) -> None:
    progressor = await world.add(TindeqProgressor("Dyno 5", speed=5.0, rest_s=0.5))
    got: list[Record] = []
    driver = driver_for(
        DeviceKind.GRIP,
        progressor.address,
        sink=got.append,
        policy=QUICK,
        client_kwargs=world.client_kwargs,
        scanner_kwargs=world.scanner_kwargs,
    )
    assert isinstance(driver, ResolvingDriver)
    await _first_forces(driver, got, 5)
    assert driver.resolved is TINDEQ
    assert isinstance(driver.driver, TindeqDriver)


async def test_a_resolving_driver_ends_with_one_line_when_the_device_is_no_grip_model(
    world: EmulatedWorld, caplog: pytest.LogCaptureFixture
) -> None:
    strap = await world.add(ChestStrap("Dyno 8"))
    driver = driver_for(
        DeviceKind.GRIP,
        strap.address,
        policy=QUICK,
        client_kwargs=world.client_kwargs,
        scanner_kwargs=world.scanner_kwargs,
    )
    assert isinstance(driver, ResolvingDriver)
    async with asyncio.timeout(30):
        await driver.run()  # ends: no driver can stream it (a `run`'s others stream on)
    assert driver.failed
    error = driver.status.last_error or ""
    assert strap.address in error
    assert "tindeq, activ5" in error
    assert not driver.status.running
    (logged,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "\n" not in logged.getMessage()
    assert logged.exc_info is None


def test_config_check_says_who_decides_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "redox.toml"
    config.write_text(
        '[[athletes]]\nid = "ann"\n'
        '[[athletes.devices]]\nkind = "grip"\naddress = "C0:00:00:00:40:01"\n'
        '[[athletes.devices]]\nkind = "grip"\nmodel = "activ5"\naddress = "C0:00:00:00:40:02"\n'
    )
    assert main(["config", "check", "--path", str(config)]) == 0
    out = capsys.readouterr().out
    assert "grip tindeq or activ5: the device tells when first seen C0:00:00:00:40:01" in out
    assert "grip activ5 C0:00:00:00:40:02" in out


def test_the_registry_keeps_a_model_and_refuses_one_of_another_kind(tmp_path: Path) -> None:
    path = tmp_path / "devices.toml"
    registry = DeviceRegistry(path)
    registry.add(PairedDevice("C0:00:00:00:40:01", "ann", DeviceKind.GRIP, model="Activ5"))
    registry.add(PairedDevice("C0:00:00:00:40:02", "ann", DeviceKind.GRIP))
    registry.save()
    loaded = list(DeviceRegistry.load(path))
    assert [d.model for d in loaded] == ["activ5", ""]
    assert [d.device_models for d in loaded] == [(ACTIV5,), (TINDEQ, ACTIV5)]
    with pytest.raises(RegistryError, match="'moxy' is a smo2 device, not grip"):
        PairedDevice("C0:00:00:00:40:03", "ann", DeviceKind.GRIP, model="moxy")
    path.write_text(
        'version = 1\n[[device]]\naddress = "C0:00:00:00:40:04"\nathlete = "ann"\n'
        'kind = "grip"\nmodel = "h10"\n'
    )
    with pytest.raises(RegistryError, match=r"device #1: .*unknown device model 'h10'"):
        DeviceRegistry.load(path)
