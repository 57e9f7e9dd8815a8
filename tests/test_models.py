"""The device-model table: everything derived from it agrees, and every model streams.

Each model's own emulator is scanned, identified as that model, and driven by the driver
:func:`devices.drivers.driver_for` picks for it, over bleak → Bumble on the virtual link.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from devices import gatt
from devices.codecs import CODECS
from devices.discovery import NAME_KINDS, SERVICE_KINDS, classify, discover
from devices.drivers import (
    DRIVERS,
    DriverError,
    NotifyDriver,
    TindeqDriver,
    driver_class,
    driver_for,
)
from devices.drivers.base import Record
from devices.emulated import EMULATORS, EmulatedWorld, emulator_class
from devices.kinds import DeviceKind
from devices.models import (
    MODELS,
    STREAMABLE_KINDS,
    DeviceModel,
    default_model,
    identify,
    model_for,
    model_named,
    models_of,
)
from devices.records import MEASURED_SAMPLES

pytestmark = pytest.mark.timeout(60)


def test_model_names_are_unique_lower_case_ids() -> None:
    names = [m.name for m in MODELS]
    assert len(set(names)) == len(names)
    assert all(n == n.lower() and n.isidentifier() for n in names)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_every_model_has_a_driver_an_emulator_codecs_and_records(model: DeviceModel) -> None:
    driver = driver_class(model)
    assert driver.default_model in (None, model)
    assert emulator_class(model).kind == model.kind.value
    assert all(CODECS[name].characteristic.service_uuid in model.services for name in model.streams)
    assert model.records
    assert all(t in MEASURED_SAMPLES for t in model.records)


def test_streamable_kinds_are_every_kind_but_unknown() -> None:
    assert set(DeviceKind) - STREAMABLE_KINDS == {DeviceKind.UNKNOWN}
    assert set(DRIVERS) == set(EMULATORS) == STREAMABLE_KINDS
    for kind in STREAMABLE_KINDS:
        assert DRIVERS[kind] is driver_class(default_model(kind))
        assert EMULATORS[kind] is emulator_class(default_model(kind))


def test_discovery_tables_are_the_models_in_order() -> None:
    assert [kind for _, kind in NAME_KINDS] == [m.kind for m in MODELS]
    assert [uuid for uuid, _ in SERVICE_KINDS] == [u for m in MODELS for u in m.services]


def test_an_activ5_is_a_grip_device_but_not_a_progressor() -> None:
    activ5 = identify(None, ["5000"])
    assert activ5 is model_named("activ5")
    assert identify("ACTIV5-1234", []) is activ5
    assert classify("ACTIV5-1234", []) is DeviceKind.GRIP
    driver = driver_for(activ5, "AA:BB:CC:DD:EE:FF")
    assert not isinstance(driver, TindeqDriver)
    assert driver.model is activ5
    assert driver.kind is DeviceKind.GRIP
    assert driver.policy is activ5.policy


def test_a_pulse_oximeter_gets_a_driver_for_plx_measurements() -> None:
    driver = driver_for(DeviceKind.SPO2, "AA:BB:CC:DD:EE:FF")
    assert type(driver) is NotifyDriver
    assert driver.model.streams == ("2a5f",)


def test_a_model_streams_on_its_own_and_options_can_be_overridden() -> None:
    grip = driver_for(model_named("tindeq"), "AA:BB:CC:DD:EE:FF")
    assert isinstance(grip, TindeqDriver)
    assert grip.streaming
    quiet = driver_for(model_named("tindeq"), "AA:BB:CC:DD:EE:FF", stream=False)
    assert isinstance(quiet, TindeqDriver)
    assert not quiet.streaming


def test_unknown_devices_have_no_model_and_no_driver() -> None:
    assert models_of(DeviceKind.UNKNOWN) == ()
    assert identify("Pixel 7", [gatt.BATTERY_SERVICE, "not-a-uuid"]) is None
    with pytest.raises(ValueError, match="no device model streams unknown"):
        default_model(DeviceKind.UNKNOWN)
    with pytest.raises(DriverError, match="no driver for unknown devices"):
        driver_for(DeviceKind.UNKNOWN, "AA:BB:CC:DD:EE:FF")


def test_model_for_a_configured_device_prefers_its_model_then_its_name() -> None:
    # Nothing says which grip model it is: the device tells (tests/test_grip_model_resolution).
    assert model_for(DeviceKind.GRIP) is None
    assert model_for(DeviceKind.GRIP, model="Activ5") is model_named("activ5")
    assert model_for(DeviceKind.GRIP, name="activ5 left hand") is model_named("activ5")
    # A name of another kind's model says nothing about a grip device.
    assert model_for(DeviceKind.GRIP, name="Moxy 12") is None
    with pytest.raises(ValueError, match="'moxy' is a smo2 device, not grip"):
        model_for(DeviceKind.GRIP, model="moxy")
    with pytest.raises(ValueError, match="unknown device model 'h10'; expected one of"):
        model_for(DeviceKind.STRAP, model="h10")


@pytest.fixture
async def world() -> AsyncIterator[EmulatedWorld]:
    async with EmulatedWorld() as w:
        yield w


async def test_every_model_is_identified_and_streams_its_records(world: EmulatedWorld) -> None:
    emulators = {
        m.name: await world.add(emulator_class(m)(m.emulated_name, speed=10.0)) for m in MODELS
    }
    found = await discover(0.3, scanner_kwargs=world.scanner_kwargs)
    assert {(f.address, f.model.name if f.model else None) for f in found} == {
        (e.address, name) for name, e in emulators.items()
    }
    streamed = {m.name: asyncio.Event() for m in MODELS}
    tasks = []
    for device in found:
        assert device.model is not None
        model = device.model

        def sink(record: Record, model: DeviceModel = model) -> None:
            if isinstance(record, model.records):
                streamed[model.name].set()

        driver = driver_for(model, device.address, sink=sink, **world_kwargs(world))
        tasks.append(asyncio.create_task(driver.run()))
    try:
        async with asyncio.timeout(30):
            await asyncio.gather(*(e.wait() for e in streamed.values()))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def world_kwargs(world: EmulatedWorld) -> dict[str, object]:
    return {"client_kwargs": world.client_kwargs, "scanner_kwargs": world.scanner_kwargs}
