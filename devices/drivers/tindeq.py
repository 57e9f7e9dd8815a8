"""Tindeq Progressor grip/force dynamometers: vendor service 7e4e1701-…

The Progressor streams only between "start weight" and "stop weight" commands written to
its control characteristic, so this driver remembers whether a stream was asked for:
after a reconnect it sends "start" again, and its watchdog is armed only while streaming.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from bleak import BleakClient
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from devices import gatt
from devices.codecs import tindeq
from devices.codecs.tindeq import TindeqCommand
from devices.drivers.base import DeviceDriver, DriverError, Record
from devices.models import model_named
from devices.records import BatteryLevel, TindeqCommandResponse, TindeqLowPower, TindeqWeight

_LOGGER = logging.getLogger(__name__)


class TindeqDriver(DeviceDriver):
    """Streams :class:`~devices.records.ForceSample` (kg, device µs) while asked to.

    Args:
        device, **kwargs: as for :class:`~devices.drivers.base.DeviceDriver`.
        stream: start streaming as soon as connected (as if :meth:`start_streaming`
            had been called).

    The battery voltage (mV) is requested on connect while not streaming and emitted as
    ``BatteryLevel(battery_mv=…)``; a low-power warning sets :attr:`low_power`.
    """

    default_model = model_named("tindeq")

    def __init__(self, device: BLEDevice | str, *, stream: bool = False, **kwargs: Any) -> None:
        super().__init__(device, **kwargs)
        self._stream_wanted = stream
        self._battery_pending = False
        self.low_power = False

    @property
    def streaming(self) -> bool:
        """True between :meth:`start_streaming` and :meth:`stop_streaming`."""
        return self._stream_wanted

    async def start_streaming(self) -> None:
        """Ask for weights (~80 Hz); re-sent after every reconnect until stopped.

        Not connected: the stream starts when the driver connects.
        """
        self._stream_wanted = True
        self._last_rx = asyncio.get_running_loop().time()  # the watchdog starts now
        await self._send_if_connected(TindeqCommand.START_WEIGHT)

    async def stop_streaming(self) -> None:
        """Stop the weight stream (and disarm the watchdog)."""
        self._stream_wanted = False
        await self._send_if_connected(TindeqCommand.STOP_WEIGHT)

    async def tare(self) -> None:
        """Zero the scale at the current load; ``DriverError`` when not connected."""
        await self._command(TindeqCommand.TARE)

    async def request_battery(self) -> None:
        """Ask for the battery voltage; it arrives as a ``BatteryLevel`` record.

        The Progressor answers only while not streaming: ``DriverError`` otherwise, or
        when not connected.
        """
        if self._stream_wanted:
            raise DriverError(f"{self.name}: stop streaming before asking for the battery")
        self._battery_pending = True
        await self._command(TindeqCommand.GET_BATTERY_VOLTAGE)

    # -- DeviceDriver hooks --------------------------------------------------------------

    async def _subscribe(self, client: BleakClient) -> None:
        await self._start_notify(client, gatt.TINDEQ_DATA, tindeq.decode)

    async def _after_subscribe(self, client: BleakClient) -> None:
        if self._stream_wanted:
            await self._write(client, TindeqCommand.START_WEIGHT)
        else:
            self._battery_pending = True
            await self._write(client, TindeqCommand.GET_BATTERY_VOLTAGE)

    def _watchdog_armed(self) -> bool:
        return self._stream_wanted

    def _records_from(self, decoded: Any) -> Iterable[Record]:
        if isinstance(decoded, TindeqWeight):
            return decoded.samples
        if isinstance(decoded, TindeqLowPower):
            self.low_power = True
            _LOGGER.warning("%s: low-power warning from the device", self.name)
            return ()
        if isinstance(decoded, TindeqCommandResponse):
            mv = decoded.battery_mv
            if self._battery_pending and mv is not None:
                self._battery_pending = False
                return (BatteryLevel(t_ns=decoded.t_ns, battery_mv=mv),)
            return ()
        return ()

    # -- commands ------------------------------------------------------------------------

    async def _command(self, command: TindeqCommand) -> None:
        link = self._link
        if link is None or link.client is None or not self.connected:
            raise DriverError(f"{self.name} is not connected; cannot send {command.name.lower()}")
        try:
            await self._write(link.client, command)
        except BleakError as exc:
            raise DriverError(f"{self.name}: {command.name.lower()} failed: {exc}") from exc

    async def _send_if_connected(self, command: TindeqCommand) -> None:
        link = self._link
        if link is None or link.client is None or not self.connected:
            return  # sent (or not needed) when the driver next connects
        try:
            await self._write(link.client, command)
        except BleakError as exc:
            # The supervisor reconnects and re-sends the wanted state.
            _LOGGER.debug("%s: %s not sent: %s", self.name, command.name.lower(), exc)

    @staticmethod
    async def _write(client: BleakClient, command: TindeqCommand) -> None:
        await client.write_gatt_char(gatt.TINDEQ_CONTROL, tindeq.encode_command(command))
