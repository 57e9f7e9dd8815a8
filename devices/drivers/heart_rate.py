"""Chest straps and other heart-rate sensors: Heart Rate service 0x180D."""

from __future__ import annotations

from bleak import BleakClient

from devices import gatt
from devices.codecs import heart_rate
from devices.drivers.notify import NotifyDriver
from devices.models import model_named
from devices.records import SensorLocation


class HeartRateDriver(NotifyDriver):
    """Streams :class:`~devices.records.HeartRateSample` (HR and RR) from 0x2A37.

    On every connection it also reads the Body Sensor Location (0x2A38), kept in
    :attr:`body_location`, and the battery level (emitted as a ``BatteryLevel``).
    """

    default_model = model_named("heart_rate")
    body_location: SensorLocation | None = None

    async def _subscribe(self, client: BleakClient) -> None:
        location = await self._read(client, gatt.BODY_SENSOR_LOCATION, heart_rate.decode_location)
        if location is not None:
            self.body_location = location.location
        await super()._subscribe(client)
