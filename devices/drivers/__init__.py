"""Device drivers: one per device family, each a supervised ``bleak.BleakClient``.

Build one with :func:`driver_for` (or the class directly) and run it as a task::

    driver = driver_for(found.kind, found.ble_device)                 # real radio
    driver = driver_for(kind, address, client_kwargs=world.client_kwargs,
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
from devices.drivers.power import PowerMeterDriver
from devices.drivers.tindeq import TindeqDriver
from devices.kinds import DeviceKind

__all__ = [
    "DRIVERS",
    "DeviceDriver",
    "DriverError",
    "DriverStatus",
    "HeartRateDriver",
    "MoxyDriver",
    "PowerMeterDriver",
    "Record",
    "TindeqDriver",
    "driver_for",
]

DRIVERS: Mapping[DeviceKind, type[DeviceDriver]] = MappingProxyType(
    {
        DeviceKind.STRAP: HeartRateDriver,
        DeviceKind.SMO2: MoxyDriver,
        DeviceKind.GRIP: TindeqDriver,
        DeviceKind.POWER: PowerMeterDriver,
    }
)
"""The driver class for each device kind that has one."""


def driver_for(kind: DeviceKind, device: BLEDevice | str, **kwargs: Any) -> DeviceDriver:
    """A driver for a ``kind`` device; ``kwargs`` as for :class:`DeviceDriver`.

    Raises ``DriverError`` for a kind without a driver (e.g. ``unknown``).
    """
    try:
        cls = DRIVERS[kind]
    except KeyError:
        known = ", ".join(k.value for k in DRIVERS)
        raise DriverError(
            f"no driver for {kind.value} devices; drivers exist for: {known}"
        ) from None
    return cls(device, **kwargs)
