"""The common part of every emulated peripheral: a Bumble GATT server on the virtual link.

A peripheral has its own virtual controller and Bumble :class:`~bumble.device.Device`,
advertises its name and service UUIDs every ``advertising_interval_ms`` (20 ms by default,
so that reconnect cycles are fast) and re-advertises by itself after a link drops.

Time inside a peripheral is *emulated*: ``speed`` emulated seconds pass per real second
(a demo at ``speed=10`` shows ten minutes of physiology per real minute). Notification
rates, effort schedules and :meth:`EmulatedPeripheral.go_silent` are in emulated seconds.
On its own a peripheral keeps that time on a real-time timer of its own; on a world with
a clock (:class:`~devices.emulated.clock.EmulatedClock`) it keeps it on the world's clock
instead (:meth:`EmulatedPeripheral.use_clock`), so that the world has one emulated time,
and while its loop streams it holds that clock at its next notification
(:meth:`EmulatedPeripheral.pacing_clock`): on a loaded machine emulated time slows down
rather than run ahead of the data.

Fault injection, for testing the drivers' supervision:

* :meth:`~EmulatedPeripheral.drop_link` — the peripheral terminates every connection;
* :meth:`~EmulatedPeripheral.go_silent` — the link stays up but no notification is sent;
* :meth:`~EmulatedPeripheral.send_malformed` — the next notifications are corrupted.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypedDict

from bumble import gatt
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.hci import HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR, Address
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from devices.emulated.clock import EmulatedClock
from devices.emulated.host import EmulatedHost
from devices.emulated.link_model import bleak_uuid

_LOGGER = logging.getLogger(__name__)

#: Default advertising interval (ms). Bumble's own default (1 s) makes every reconnect
#: wait up to a second; 20 ms is the shortest legal interval.
ADVERTISING_INTERVAL_MS = 20.0
#: How many delivered notifications a peripheral remembers (bounded for long demos).
SENT_LOG_LENGTH = 10_000
#: Flags AD: LE General Discoverable, BR/EDR not supported.
_AD_FLAGS = 0x06


@dataclass(frozen=True, slots=True)
class SentNotification:
    """A notification the peripheral delivered to at least one subscriber.

    ``t_s`` is when it was sent, in emulated seconds of the peripheral's time
    (:meth:`EmulatedPeripheral.now`: since it started, or on the world's clock);
    ``char`` the characteristic UUID in bleak form; ``malformed`` marks injected
    corruption.
    """

    t_s: float
    char: str
    payload: bytes
    malformed: bool = False


class LinkOptions(TypedDict, total=False):
    """The keyword arguments of :class:`EmulatedPeripheral` that every device passes on."""

    speed: float
    address: str | None
    advertising_interval_ms: float


def characteristic_uuid(characteristic: gatt.Characteristic[bytes]) -> str:
    """The characteristic's UUID as a lower-case 128-bit string (bleak's form)."""
    return bleak_uuid(characteristic.uuid)


class EmulatedPeripheral(abc.ABC):
    """Base class: a Bumble device that advertises, serves GATT and runs an emulation loop.

    Args:
        name: advertised local name (and GAP device name).
        speed: emulated seconds per real second (> 0); on a world with a clock, the
            clock's speed replaces it.
        address: a random static address such as ``"C0:00:00:00:00:07"``; by default
            the world assigns one.
        advertising_interval_ms: advertising interval in milliseconds.
    """

    #: What the device is, for logs and the scan listing ("strap", "smo2", ...).
    kind: ClassVar[str] = "peripheral"

    def __init__(
        self,
        name: str,
        *,
        speed: float = 1.0,
        address: str | None = None,
        advertising_interval_ms: float = ADVERTISING_INTERVAL_MS,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0 emulated seconds per real second, got {speed}")
        if advertising_interval_ms < 20.0:
            raise ValueError(
                f"advertising_interval_ms must be >= 20 ms (Bluetooth minimum), "
                f"got {advertising_interval_ms}"
            )
        self.name = name
        self.speed = float(speed)
        self.requested_address = address
        self.advertising_interval_ms = advertising_interval_ms
        self.sent: deque[SentNotification] = deque(maxlen=SENT_LOG_LENGTH)
        self.links_dropped = 0
        self._device: Device | None = None
        self._controller: Controller | None = None
        self._link: LocalLink | None = None
        self._address: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._t0_real = 0.0
        self._clock: EmulatedClock | None = None
        self._started_s = 0.0  # emulated time at start: where the loops' schedules begin
        self._due_s = 0.0  # the next sleep_until deadline: a pacing loop holds the clock there
        self._silent_until = -1.0
        self._malformed_pending = 0

    # -- what subclasses provide ----------------------------------------------------

    @abc.abstractmethod
    def build_services(self) -> Sequence[gatt.Service]:
        """The GATT services this peripheral serves (built once, at start)."""

    @abc.abstractmethod
    def advertised_services(self) -> Sequence[UUID]:
        """Service UUIDs put in the advertisement."""

    @abc.abstractmethod
    async def run(self) -> None:
        """The emulation loop; runs from start to stop (cancelled at stop)."""

    def malformed(self, char: gatt.Characteristic[bytes], payload: bytes) -> bytes:
        """A corrupted version of ``payload`` that the characteristic's codec must reject."""
        return payload[:1]

    # -- identity ---------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The address this peripheral advertises with (assigned when added to a world)."""
        if self._address is None:
            raise RuntimeError(f"{self.name} has not been added to an EmulatedWorld yet")
        return self._address

    @property
    def device(self) -> Device:
        """The Bumble device (only after start)."""
        if self._device is None:
            raise RuntimeError(f"{self.name} has not been added to an EmulatedWorld yet")
        return self._device

    @property
    def connections(self) -> list[Connection]:
        """Live connections to this peripheral."""
        return list(self._device.connections.values()) if self._device is not None else []

    @property
    def is_connected(self) -> bool:
        """True while at least one central is connected."""
        return bool(self.connections)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, link: LocalLink, address: str) -> None:
        """Create the Bumble device on ``link``, serve GATT, advertise, start the loop.

        Called by :meth:`devices.emulated.world.EmulatedWorld.add`.
        """
        if self._device is not None:
            raise RuntimeError(f"{self.name} is already started")
        self._address = address
        self._link = link
        self._controller = Controller(self.name, link=link, public_address=address)
        device = Device(
            name=self.name,
            address=Address(address),
            host=EmulatedHost(self._controller, AsyncPipeSink(self._controller)),
        )
        device.add_services(list(self.build_services()))
        await device.power_on()
        self._device = device
        await device.start_advertising(
            advertising_data=self.advertising_data(),
            auto_restart=True,
            advertising_interval_min=self.advertising_interval_ms,
            advertising_interval_max=self.advertising_interval_ms,
        )
        self._t0_real = asyncio.get_running_loop().time()
        self._started_s = self._clock.now() if self._clock is not None else 0.0
        self._task = asyncio.create_task(self._run_logged(), name=f"emulated {self.name}")

    async def stop(self) -> None:
        """Stop the loop, drop links, stop advertising and leave the radio link."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        device = self._device
        if device is None:
            return
        # The loop is gone: advertising must not restart when the links drop below.
        if device.legacy_advertising_set is not None:
            device.legacy_advertising_set.auto_restart = False
        with contextlib.suppress(Exception):
            await device.stop_advertising()
        for connection in self.connections:
            with contextlib.suppress(Exception):
                await connection.disconnect()
        await device.power_off()
        if self._link is not None and self._controller in self._link.controllers:
            self._link.remove_controller(self._controller)
        self._device = None

    async def _run_logged(self) -> None:
        try:
            await self.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOGGER.exception("%s: emulation loop failed", self.name)
            raise

    def advertising_data(self) -> bytes:
        """Flags, complete local name and the advertised service UUIDs, as AD bytes."""
        uuids16 = [u for u in self.advertised_services() if len(u.to_bytes()) == 2]
        uuids128 = [u for u in self.advertised_services() if len(u.to_bytes()) == 16]
        structures: list[tuple[int, bytes]] = [
            (AdvertisingData.Type.FLAGS, bytes([_AD_FLAGS])),
            (AdvertisingData.Type.COMPLETE_LOCAL_NAME, self.name.encode()),
        ]
        if uuids16:
            structures.append(
                (
                    AdvertisingData.Type.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
                    b"".join(u.to_bytes() for u in uuids16),
                )
            )
        if uuids128:
            structures.append(
                (
                    AdvertisingData.Type.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                    b"".join(u.to_bytes() for u in uuids128),
                )
            )
        return bytes(AdvertisingData(structures))

    # -- emulated clock ------------------------------------------------------------------

    def use_clock(self, clock: EmulatedClock) -> None:
        """Keep time on ``clock`` (the world's) instead of an own timer; its speed replaces
        ``speed``. Called by :meth:`devices.emulated.world.EmulatedWorld.add`, before start.
        """
        if self._device is not None:
            # The loops' schedules start from the time at start, on one clock or the other.
            raise RuntimeError(f"{self.name}: use_clock must come before the peripheral starts")
        self._clock = clock
        self.speed = clock.speed

    @property
    def clock(self) -> EmulatedClock | None:
        """The world's clock this peripheral keeps its time on; None: its own timer."""
        return self._clock

    @property
    def started_s(self) -> float:
        """Emulated time (s) at which the peripheral started: 0.0 on its own timer, the
        world clock's reading then on a world clock. Emulation loops count their schedule
        (the first notification at ``started_s + period``) from here."""
        return self._started_s

    def now(self) -> float:
        """Emulated seconds: since the peripheral started on its own timer, or the world
        clock's reading (seconds since the clock was made) when it has one."""
        if self._clock is not None:
            return self._clock.now()
        return (asyncio.get_running_loop().time() - self._t0_real) * self.speed

    async def sleep_until(self, t_s: float) -> None:
        """Sleep until emulated time ``t_s`` (seconds); returns at once if it has passed.

        Inside :meth:`pacing_clock` the world clock is held at ``t_s`` meanwhile."""
        self._due_s = t_s
        if self._clock is not None:
            await self._clock.sleep_until(t_s)
            return
        real = self._t0_real + t_s / self.speed
        delay = real - asyncio.get_running_loop().time()
        await asyncio.sleep(max(0.0, delay))

    @contextlib.contextmanager
    def pacing_clock(self) -> Iterator[None]:
        """While inside, the world clock (if any) does not pass this peripheral's next
        :meth:`sleep_until` deadline: it waits for the data of every emulated instant.

        Meant for the one loop that sends something at each deadline it sleeps until; a
        loop that waits for anything else (a command) must leave it first, or the world's
        time stops. Time the clock spends held is not made up afterwards, so on a busy
        machine emulated time runs slower than ``speed``. Without a world clock it does
        nothing.
        """
        if self._clock is None:
            yield
            return
        self._due_s = self._clock.now()  # until the first deadline: no further than now
        with self._clock.held_at(lambda: self._due_s):
            yield

    # -- fault injection -----------------------------------------------------------------

    async def drop_link(self) -> int:
        """Terminate every connection from the peripheral's side; returns how many.

        Advertising restarts by itself, so a central can reconnect at once.
        """
        dropped = 0
        for connection in self.connections:
            with contextlib.suppress(Exception):
                await connection.disconnect(reason=HCI_REMOTE_USER_TERMINATED_CONNECTION_ERROR)
                dropped += 1
        self.links_dropped += dropped
        return dropped

    def go_silent(self, seconds: float) -> None:
        """Send no notification for ``seconds`` of emulated time; the link stays up.

        Data produced meanwhile is lost, as when a strap loses skin contact or a
        radio stalls: the driver's watchdog must notice and mark a gap.
        """
        if seconds < 0:
            raise ValueError(f"go_silent needs seconds >= 0, got {seconds}")
        self._silent_until = max(self._silent_until, self.now() + seconds)

    @property
    def is_silent(self) -> bool:
        """True while a :meth:`go_silent` period lasts."""
        return self.now() < self._silent_until

    def send_malformed(self, n: int = 1) -> None:
        """Corrupt the next ``n`` notifications (each replaces a good one, whose data is lost)."""
        if n < 0:
            raise ValueError(f"send_malformed needs n >= 0, got {n}")
        self._malformed_pending += n

    # -- helpers for subclasses -------------------------------------------------------------

    def has_subscriber(self, char: gatt.Characteristic[bytes]) -> bool:
        """True if some connected central enabled notifications on ``char``."""
        if self._device is None:
            return False
        for cccds in self._device.gatt_server.subscribers.values():
            cccd = cccds.get(char.handle)
            if cccd and cccd[0] & 0x01:
                return True
        return False

    def min_mtu(self) -> int:
        """The smallest ATT MTU among live connections (23 when none)."""
        mtus = [int(c.att_mtu) for c in self.connections]
        return min(mtus) if mtus else 23

    async def notify_intact(self, char: gatt.Characteristic[bytes], payload: bytes) -> bool:
        """:meth:`notify`, True when ``payload`` itself reached a subscriber (not corrupted)."""
        sent = await self.notify(char, payload)
        return sent is not None and not sent.malformed

    async def notify(
        self, char: gatt.Characteristic[bytes], payload: bytes
    ) -> SentNotification | None:
        """Notify subscribers of ``char`` unless silent; applies pending corruption.

        Returns what was delivered (the payload or its corrupted replacement), or None
        when nothing was sent (silent, no subscriber, link gone).
        """
        if self._device is None or self.is_silent or not self.has_subscriber(char):
            return None
        malformed = self._malformed_pending > 0
        if malformed:
            self._malformed_pending -= 1
            payload = self.malformed(char, payload)
        try:
            await self._device.notify_subscribers(char, payload)
        except Exception as exc:  # the link may drop between the check and the send
            _LOGGER.debug("%s: notification not sent: %s", self.name, exc)
            return None
        sent = SentNotification(self.now(), characteristic_uuid(char), payload, malformed)
        self.sent.append(sent)
        return sent


def notify_characteristic(uuid: str) -> gatt.Characteristic[bytes]:
    """A notify-only characteristic (its CCCD is added by Bumble's GATT server)."""
    return gatt.Characteristic(
        uuid, gatt.Characteristic.Properties.NOTIFY, gatt.Characteristic.READABLE, b""
    )
