"""An adapter that fails as bleak fails: the emulated link behind a switch that makes every
scan and connection raise what bleak raises on a machine in that state.

What bleak (3.1, BlueZ backend) raises, by state (its source: ``bleak/exc.py``,
``backends/bluezdbus/manager.py``; the first one recorded on the test machine, which has
no Bluetooth stack at all):

* no D-Bus system bus (no ``/run/dbus/system_bus_socket``) — ``FileNotFoundError(2, 'No
  such file or directory')`` from ``BleakScanner.start`` and ``BleakClient.connect``
  alike, within milliseconds (measured here: 0.03 s for the first scan);
* bluetoothd not running — ``BleakDBusError('org.freedesktop.DBus.Error.ServiceUnknown',
  ['The name org.bluez was not provided by any .service files'])`` from ``GetManagedObjects``;
* no adapter, or one without the LE central role, or powered off —
  ``BleakBluetoothNotAvailableError(msg, NO_BLUETOOTH | NO_BLE_CENTRAL_ROLE |
  POWERED_OFF)`` from ``get_default_adapter``;
* permission — ``BleakBluetoothNotAvailableError(msg, DENIED_BY_SYSTEM)`` when the D-Bus
  authentication fails, ``BleakDBusError('org.freedesktop.DBus.Error.AccessDenied', …)``
  when a policy refuses the call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
)

from devices.emulated.backend import BumbleClient, BumbleScanner
from devices.emulated.world import EmulatedWorld

WHAT_BLEAK_RAISES: dict[str, Callable[[], BaseException]] = {
    "no_dbus": lambda: FileNotFoundError(2, "No such file or directory"),
    "no_bluez": lambda: BleakDBusError(
        "org.freedesktop.DBus.Error.ServiceUnknown",
        ["The name org.bluez was not provided by any .service files"],
    ),
    "no_adapter": lambda: BleakBluetoothNotAvailableError(
        "No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH
    ),
    "powered_off": lambda: BleakBluetoothNotAvailableError(
        "No powered Bluetooth adapters found. Turn on Bluetooth and try again.",
        BleakBluetoothNotAvailableReason.POWERED_OFF,
    ),
    "auth_denied": lambda: BleakBluetoothNotAvailableError(
        "authentication failed: REJECTED: ['EXTERNAL']",
        BleakBluetoothNotAvailableReason.DENIED_BY_SYSTEM,
    ),
    "policy_denied": lambda: BleakDBusError(
        "org.freedesktop.DBus.Error.AccessDenied",
        ['Rejected send message, 1 matched rules; interface="org.bluez.Adapter1"'],
    ),
}
"""Each adapter state and the exception bleak raises in it (see the module docstring)."""


@dataclass
class Adapter:
    """The switch: while ``state`` names a key of :data:`WHAT_BLEAK_RAISES`, every scan and
    connection raises that; ``None`` is a working adapter (the emulated link)."""

    state: str | None

    def check(self) -> None:
        """Raise what bleak raises in this state (nothing when the adapter works)."""
        if self.state is not None:
            raise WHAT_BLEAK_RAISES[self.state]()


class FaultyScanner(BumbleScanner):
    """:class:`BumbleScanner` behind an :class:`Adapter`."""

    def __init__(self, *args: Any, switch: Adapter, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._adapter = switch

    async def start(self) -> None:
        self._adapter.check()
        await super().start()


class FaultyClient(BumbleClient):
    """:class:`BumbleClient` behind an :class:`Adapter`."""

    def __init__(self, *args: Any, switch: Adapter, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._adapter = switch

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        self._adapter.check()
        await super().connect(pair, **kwargs)


def faulty_kwargs(world: EmulatedWorld, adapter: Adapter) -> dict[str, dict[str, Any]]:
    """``client_kwargs`` and ``scanner_kwargs`` for a driver (or ``discover``) that reaches
    ``world`` through ``adapter``."""
    return {
        "client_kwargs": {"backend": FaultyClient, "world": world, "switch": adapter},
        "scanner_kwargs": {"backend": FaultyScanner, "world": world, "switch": adapter},
    }
