"""Device drivers: one per device family, each a supervised ``bleak.BleakClient``.

Build one with :func:`driver_for` (or the class directly) and run it as a task::

    driver = driver_for(found.model, found.ble_device)                # real radio
    driver = driver_for(model, address, client_kwargs=world.client_kwargs,
                        scanner_kwargs=world.scanner_kwargs)          # emulated link
    driver = driver_for(DeviceKind.GRIP, address)   # a Progressor or an Activ5: it tells
    task = asyncio.create_task(driver.run())
    async for record in driver.records():
        ...

See :mod:`devices.drivers.base` for the record stream, gaps and status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from bleak.backends.device import BLEDevice

from devices.drivers.base import DeviceDriver, DriverError, DriverStatus, Record
from devices.drivers.heart_rate import HeartRateDriver
from devices.drivers.moxy import MoxyDriver
from devices.drivers.notify import NotifyDriver
from devices.drivers.power import PowerMeterDriver
from devices.drivers.resolving import ResolvingDriver
from devices.drivers.tindeq import TindeqDriver
from devices.kinds import DeviceKind
from devices.models import STREAMABLE_KINDS, DeviceModel, default_model, load_class, models_of

__all__ = [
    "DRIVERS",
    "DeviceDriver",
    "DriverError",
    "DriverStatus",
    "HeartRateDriver",
    "MoxyDriver",
    "NotifyDriver",
    "PowerMeterDriver",
    "Record",
    "ResolvingDriver",
    "TindeqDriver",
    "driver_class",
    "driver_for",
]


def driver_class(model: DeviceModel) -> type[DeviceDriver]:
    """The driver class of ``model`` (named in its row of :data:`devices.models.MODELS`)."""
    cls = load_class(model.driver)
    if not (isinstance(cls, type) and issubclass(cls, DeviceDriver)):
        raise TypeError(f"model {model.name!r}: {model.driver} is not a DeviceDriver")
    return cls


DRIVERS: Mapping[DeviceKind, type[DeviceDriver]] = MappingProxyType(
    {kind: driver_class(default_model(kind)) for kind in DeviceKind if kind in STREAMABLE_KINDS}
)
"""The driver class of each kind's default model (derived from :data:`devices.models.MODELS`)."""


def driver_for(
    what: DeviceModel | DeviceKind | Sequence[DeviceModel], device: BLEDevice | str, **kwargs: Any
) -> DeviceDriver:
    """A driver for a device of model ``what`` (or of any of the models given, or of any
    model of a kind); ``kwargs`` as for :class:`DeviceDriver`, on top of the model's
    ``driver_options``.

    One model: its driver class. Several (a grip device configured by address alone may be
    a Progressor or an Activ5): a :class:`ResolvingDriver`, which asks the device which it
    is when it is first seen — never a guess. Pass ``FoundDevice.model`` when discovery
    identified one. Raises ``DriverError`` for a kind without a model (e.g. ``unknown``).
    """
    if isinstance(what, DeviceKind):
        models = models_of(what)
        if not models:
            known = ", ".join(k.value for k in DRIVERS)
            raise DriverError(f"no driver for {what.value} devices; drivers exist for: {known}")
    elif isinstance(what, DeviceModel):
        models = (what,)
    else:
        models = tuple(what)
        if not models:
            raise ValueError("driver_for needs at least one device model")
    if len(models) > 1:
        return ResolvingDriver(device, candidates=models, **kwargs)
    model = models[0]
    options = {**model.driver_options, **kwargs}
    return driver_class(model)(device, model=model, **options)
