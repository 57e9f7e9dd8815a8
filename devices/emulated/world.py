"""An in-process Bluetooth LE "world": a virtual radio link, one central, emulated peripherals.

Everything runs on a real Bluetooth stack (Bumble): each peripheral and the central have
their own virtual controller on one :class:`bumble.link.LocalLink`, and bytes cross it as
HCI/ATT packets. Production code reaches the peripherals through bleak with the backend in
:mod:`devices.emulated.backend`::

    async with EmulatedWorld() as world:
        strap = await world.add(ChestStrap("Polar H10 EMU1", speed=10.0))
        device = await BleakScanner.find_device_by_name("Polar H10 EMU1",
                                                        **world.scanner_kwargs)
        async with BleakClient(device, **world.client_kwargs) as client:
            ...

Bumble objects must be created inside the running event loop, so the world does all of
its set-up in ``__aenter__`` and :meth:`EmulatedWorld.add`.

A world may own the one :class:`EmulatedClock` its peripherals and their reader share
(``EmulatedWorld(clock=EmulatedClock(speed))``): every peripheral keeps its time on it,
and one that streams faster than a loaded machine can carry holds that clock back instead
of falling behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from bumble.controller import Controller
from bumble.device import Advertisement, Connection, Device
from bumble.hci import Address
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from devices.emulated.backend import BumbleClient, BumbleScanner

# EmulatedClock and UsesWorldClock live in their own module (the peripherals import it too)
# and are re-exported here, where callers have always found them.
from devices.emulated.clock import EmulatedClock as EmulatedClock
from devices.emulated.clock import UsesWorldClock as UsesWorldClock
from devices.emulated.host import EmulatedHost
from devices.emulated.link_model import AdvertisementListener, address_key

if TYPE_CHECKING:
    from devices.emulated.peripheral import EmulatedPeripheral

    P = TypeVar("P", bound=EmulatedPeripheral)

_LOGGER = logging.getLogger(__name__)

#: Address of the central (a random static address: the two top bits are set).
CENTRAL_ADDRESS = "F0:00:00:00:00:01"
#: ATT MTU the central asks for after connecting (the largest a BLE 4.2+ link offers).
DEFAULT_MTU = 247


class EmulatedWorld:
    """A virtual radio link with one central :class:`bumble.device.Device` and peripherals.

    Use it as an async context manager. The central is shared by every
    :class:`BumbleScanner` and :class:`BumbleClient` created with :attr:`scanner_kwargs`
    / :attr:`client_kwargs`; it serialises connection attempts (one Bumble ``connect()``
    at a time) and shares one scan among concurrent scanners.

    Args:
        mtu: ATT MTU (bytes) the backend requests after each connection.
        clock: the world's one emulated clock, given to every peripheral added (each
            keeps its time on it: :class:`UsesWorldClock`); None: each keeps its own.
    """

    def __init__(self, *, mtu: int = DEFAULT_MTU, clock: EmulatedClock | None = None) -> None:
        self.mtu = mtu
        self.clock = clock
        self._link: LocalLink | None = None
        self._central: Device | None = None
        self._peripherals: list[EmulatedPeripheral] = []
        self._next_peripheral = 1
        self._connect_lock: asyncio.Lock | None = None
        self._scan_lock: asyncio.Lock | None = None
        self._scan_listeners: dict[object, AdvertisementListener] = {}
        self._seen: dict[str, Address] = {}

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._link = LocalLink()  # type: ignore[no-untyped-call]
        controller = Controller("central", link=self._link, public_address=CENTRAL_ADDRESS)
        central = Device(
            name="redox-central",
            address=Address(CENTRAL_ADDRESS),
            host=EmulatedHost(controller, AsyncPipeSink(controller)),
        )
        central.on("advertisement", self._on_advertisement)
        await central.power_on()
        self._central = central
        self._connect_lock = asyncio.Lock()
        self._scan_lock = asyncio.Lock()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop every peripheral, drop every link and power the central off."""
        for peripheral in list(self._peripherals):
            await self.remove(peripheral)
        central = self._central
        if central is None:
            return
        if central.scanning:
            with contextlib.suppress(Exception):
                await central.stop_scanning()
        for connection in list(central.connections.values()):
            with contextlib.suppress(Exception):
                await connection.disconnect()
        await central.power_off()
        self._scan_listeners.clear()
        self._central = None

    # -- what production code needs ------------------------------------------------

    @property
    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that make a ``BleakClient`` talk to this world.

        Exactly ``{"backend": BumbleClient, "world": self}``; use as
        ``BleakClient(device, **world.client_kwargs)`` or
        ``establish_connection(BleakClient, device, name, **world.client_kwargs)``.
        """
        return {"backend": BumbleClient, "world": self}

    @property
    def scanner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that make a ``BleakScanner`` scan this world.

        Exactly ``{"backend": BumbleScanner, "world": self}``; use as
        ``BleakScanner(callback, service_uuids, **world.scanner_kwargs)`` or
        ``BleakScanner.discover(timeout=0.2, **world.scanner_kwargs)``.
        """
        return {"backend": BumbleScanner, "world": self}

    # -- peripherals ----------------------------------------------------------------

    @property
    def link(self) -> LocalLink:
        """The virtual radio link (only while the world is open)."""
        if self._link is None:
            raise RuntimeError("EmulatedWorld is not open: use 'async with EmulatedWorld()'")
        return self._link

    @property
    def central(self) -> Device:
        """The Bumble central shared by every scanner and client of this world."""
        if self._central is None:
            raise RuntimeError("EmulatedWorld is not open: use 'async with EmulatedWorld()'")
        return self._central

    @property
    def peripherals(self) -> tuple[EmulatedPeripheral, ...]:
        """The peripherals currently on the link, in the order they were added."""
        return tuple(self._peripherals)

    async def add(self, peripheral: P) -> P:
        """Put ``peripheral`` on the link and start it advertising; returns it.

        A peripheral without an explicit address gets ``C0:00:00:00:00:NN`` (a random
        static address), NN counting from 01 in the order of adding. With a world
        :attr:`clock`, the peripheral keeps its time on it.
        """
        address = peripheral.requested_address or f"C0:00:00:00:00:{self._next_peripheral:02X}"
        self._next_peripheral += 1
        if self.clock is not None:
            peripheral.use_clock(self.clock)
        await peripheral.start(self.link, address)
        self._peripherals.append(peripheral)
        return peripheral

    async def remove(self, peripheral: EmulatedPeripheral) -> None:
        """Switch ``peripheral`` off and take it off the link."""
        if peripheral in self._peripherals:
            self._peripherals.remove(peripheral)
        await peripheral.stop()

    # -- used by the backend --------------------------------------------------------

    @property
    def connect_lock(self) -> asyncio.Lock:
        """Held around every Bumble ``connect()``: one connection attempt at a time."""
        if self._connect_lock is None:
            raise RuntimeError("EmulatedWorld is not open")
        return self._connect_lock

    def known_address(self, address: str) -> Address | None:
        """The advertised Bumble address for a bleak address string, if ever seen."""
        return self._seen.get(address.upper())

    async def start_scan(self, token: object, listener: AdvertisementListener) -> None:
        """Deliver every advertisement to ``listener`` until :meth:`stop_scan` (token)."""
        async with self._scan_lock_checked():
            self._scan_listeners[token] = listener
            if not self.central.scanning:
                await self.central.start_scanning(active=True, filter_duplicates=False)

    async def stop_scan(self, token: object) -> None:
        """Stop delivering advertisements to the listener registered under ``token``."""
        async with self._scan_lock_checked():
            self._scan_listeners.pop(token, None)
            if not self._scan_listeners and self._central is not None and self.central.scanning:
                await self.central.stop_scanning()

    async def find_address(self, address: str, *, within_s: float) -> Address | None:
        """Scan up to ``within_s`` seconds for an advertiser with this address string."""
        known = self.known_address(address)
        if known is not None:
            return known
        found: asyncio.Future[Address] = asyncio.get_running_loop().create_future()
        wanted = address.upper()

        def listener(advertisement: Advertisement) -> None:
            if address_key(advertisement.address) == wanted and not found.done():
                found.set_result(advertisement.address)

        token = object()
        await self.start_scan(token, listener)
        try:
            async with asyncio.timeout(within_s):
                return await found
        except TimeoutError:
            return None
        finally:
            await self.stop_scan(token)

    def _scan_lock_checked(self) -> asyncio.Lock:
        if self._scan_lock is None:
            raise RuntimeError("EmulatedWorld is not open")
        return self._scan_lock

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        self._seen[address_key(advertisement.address)] = advertisement.address
        for listener in list(self._scan_listeners.values()):
            try:
                listener(advertisement)
            except Exception:
                _LOGGER.exception("advertisement listener failed")

    async def connect(self, address: Address, *, connect_timeout_s: float) -> Connection:
        """Open an LE connection from the central (one attempt at a time)."""
        async with self.connect_lock:
            return await self.central.connect(address, timeout=connect_timeout_s)
