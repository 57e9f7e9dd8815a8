"""Device drivers: one per device family, each a supervised ``bleak.BleakClient``.

Build one with :func:`driver_for` (or the class directly) and run it as a task::

    driver = driver_for(found.model, found.ble_device)                # real radio
    driver = driver_for(model, address, client_kwargs=world.client_kwargs,
                        scanner_kwargs=world.scanner_kwargs)          # emulated link
    task = asyncio.create_task(driver.run())
    async for record in driver.records():
        ...

See :mod:`devices.drivers.base` for the record stream, gaps and status.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from bleak.backends.device import BLEDevice

from devices.drivers.base import DeviceDriver, DriverError, DriverStatus, Record
from devices.drivers.heart_rate import HeartRateDriver
from devices.drivers.moxy import MoxyDriver
from devices.drivers.notify import NotifyDriver
from devices.drivers.power import PowerMeterDriver
from devices.drivers.tindeq import TindeqDriver
from devices.kinds import DeviceKind
from devices.models import STREAMABLE_KINDS, DeviceModel, default_model, load_class

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
    what: DeviceModel | DeviceKind, device: BLEDevice | str, **kwargs: Any
) -> DeviceDriver:
    """A driver for a device of model (or kind) ``what``; ``kwargs`` as for
    :class:`DeviceDriver`, on top of the model's ``driver_options``.

    A kind means its default model: pass ``FoundDevice.model`` when discovery identified
    one (an Activ5 is a grip device, but not a Progressor). Raises ``DriverError`` for a
    kind without a model (e.g. ``unknown``).
    """
    if isinstance(what, DeviceKind):
        try:
            model = default_model(what)
        except ValueError:
            known = ", ".join(k.value for k in DRIVERS)
            raise DriverError(
                f"no driver for {what.value} devices; drivers exist for: {known}"
            ) from None
    else:
        model = what
    options = {**model.driver_options, **kwargs}
    return driver_class(model)(device, model=model, **options)
