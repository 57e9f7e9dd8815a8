"""Moxy muscle-oxygen sensors: vendor service 6404d801-…"""

from __future__ import annotations

from bleak import BleakClient

from devices import gatt
from devices.codecs import moxy
from devices.drivers.base import DeviceDriver
from devices.kinds import DeviceKind


class MoxyDriver(DeviceDriver):
    """Streams :class:`~devices.records.SmO2Sample` (SmO2 %, tHb g/dL) from the data
    characteristic, plus the standard battery level when the sensor offers it."""

    kind = DeviceKind.SMO2

    async def _subscribe(self, client: BleakClient) -> None:
        await self._start_notify(client, gatt.MOXY_DATA, moxy.decode)
