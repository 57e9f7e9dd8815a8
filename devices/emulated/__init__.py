"""Emulated Bluetooth LE peripherals on a real GATT stack (Bumble), reached through bleak.

``EmulatedWorld`` owns a virtual radio link and a central; peripherals (chest strap,
Moxy, Tindeq Progressor, Activ5, power meter, pulse oximeter — one per device model in
:data:`devices.models.MODELS`) are Bumble GATT servers on that link; the bleak
backend in :mod:`devices.emulated.backend` lets unchanged production code scan and
connect to them::

    async with EmulatedWorld() as world:
        strap = await world.add(ChestStrap("Polar H10 EMU1", speed=10.0))
        async with BleakClient(device, **world.client_kwargs) as client: ...
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from devices.emulated.activ5 import Activ5Sensor
from devices.emulated.backend import BumbleClient, BumbleDeviceDetails, BumbleScanner
from devices.emulated.moxy import MoxySensor
from devices.emulated.oximeter import PulseOximeter
from devices.emulated.peripheral import EmulatedPeripheral, SentNotification
from devices.emulated.power import PowerMeter
from devices.emulated.strap import ChestStrap
from devices.emulated.tindeq import TindeqProgressor
from devices.emulated.world import EmulatedWorld
from devices.kinds import DeviceKind
from devices.models import STREAMABLE_KINDS, DeviceModel, default_model, load_class


def emulator_class(model: DeviceModel) -> type[EmulatedPeripheral]:
    """The emulator class of ``model`` (named in its row of :data:`devices.models.MODELS`)."""
    cls = load_class(model.emulator)
    if not (isinstance(cls, type) and issubclass(cls, EmulatedPeripheral)):
        raise TypeError(f"model {model.name!r}: {model.emulator} is not an EmulatedPeripheral")
    return cls


EMULATORS: Final[Mapping[DeviceKind, type[EmulatedPeripheral]]] = MappingProxyType(
    {kind: emulator_class(default_model(kind)) for kind in DeviceKind if kind in STREAMABLE_KINDS}
)
"""The emulator of each kind's default model (derived from :data:`devices.models.MODELS`;
:func:`emulator_class` gives any model's)."""

__all__ = [
    "EMULATORS",
    "Activ5Sensor",
    "BumbleClient",
    "BumbleDeviceDetails",
    "BumbleScanner",
    "ChestStrap",
    "EmulatedPeripheral",
    "EmulatedWorld",
    "MoxySensor",
    "PowerMeter",
    "PulseOximeter",
    "SentNotification",
    "TindeqProgressor",
    "emulator_class",
]
