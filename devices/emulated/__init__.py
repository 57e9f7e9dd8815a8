"""Emulated Bluetooth LE peripherals on a real GATT stack (Bumble), reached through bleak.

``EmulatedWorld`` owns a virtual radio link and a central; peripherals (chest strap,
Moxy, Tindeq Progressor, power meter) are Bumble GATT servers on that link; the bleak
backend in :mod:`devices.emulated.backend` lets unchanged production code scan and
connect to them::

    async with EmulatedWorld() as world:
        strap = await world.add(ChestStrap("Polar H10 EMU1", speed=10.0))
        async with BleakClient(device, **world.client_kwargs) as client: ...
"""

from collections.abc import Mapping
from typing import Final

from devices.emulated.backend import BumbleClient, BumbleDeviceDetails, BumbleScanner
from devices.emulated.moxy import MoxySensor
from devices.emulated.peripheral import EmulatedPeripheral, SentNotification
from devices.emulated.power import PowerMeter
from devices.emulated.strap import ChestStrap
from devices.emulated.tindeq import TindeqProgressor
from devices.emulated.world import EmulatedWorld
from devices.kinds import DeviceKind

EMULATORS: Final[Mapping[DeviceKind, type[EmulatedPeripheral]]] = {
    DeviceKind.STRAP: ChestStrap,
    DeviceKind.SMO2: MoxySensor,
    DeviceKind.GRIP: TindeqProgressor,
    DeviceKind.POWER: PowerMeter,
}
"""The emulator of each device kind a driver streams."""

__all__ = [
    "EMULATORS",
    "BumbleClient",
    "BumbleDeviceDetails",
    "BumbleScanner",
    "ChestStrap",
    "EmulatedPeripheral",
    "EmulatedWorld",
    "MoxySensor",
    "PowerMeter",
    "SentNotification",
    "TindeqProgressor",
]
