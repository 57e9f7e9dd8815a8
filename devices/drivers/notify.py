"""The driver of a device that streams by notifications alone: subscribe and decode.

Which characteristics, decoded by which codec, comes from the model's row in
:data:`devices.models.MODELS` (``streams``); a model needs its own driver class only when
it must be told to stream (Tindeq) or has something to read first (a strap's body
location).
"""

from __future__ import annotations

from bleak import BleakClient

from devices.codecs import CODECS
from devices.drivers.base import DeviceDriver


class NotifyDriver(DeviceDriver):
    """Streams every characteristic in ``model.streams``, each through its codec, plus the
    standard battery level when the device offers it.

    Used as is for the Activ5 (force, kg) and the PLX pulse oximeter (SpO2 %, pulse bpm);
    give ``model=``.
    """

    async def _subscribe(self, client: BleakClient) -> None:
        for name in self.model.streams:
            codec = CODECS[name]
            await self._start_notify(client, codec.uuid, codec.decode)
