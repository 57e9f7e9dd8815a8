"""Power meters: Cycling Power service 0x1818."""

from __future__ import annotations

from bleak import BleakClient

from devices import gatt
from devices.codecs import cycling_power
from devices.drivers.base import DeviceDriver
from devices.kinds import DeviceKind


class PowerMeterDriver(DeviceDriver):
    """Streams :class:`~devices.records.PowerSample` (instantaneous W) from 0x2A63,
    plus the standard battery level when the meter offers it."""

    kind = DeviceKind.POWER

    async def _subscribe(self, client: BleakClient) -> None:
        await self._start_notify(client, gatt.CYCLING_POWER_MEASUREMENT, cycling_power.decode)
