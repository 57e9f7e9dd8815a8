"""A bleak backend over Bumble: ``BleakClient``/``BleakScanner`` on the emulated link.

Production code stays unchanged; it only receives extra keyword arguments
(see :attr:`devices.emulated.world.EmulatedWorld.client_kwargs`)::

    BleakClient(device, backend=BumbleClient, world=world)
    BleakScanner(callback, service_uuids, backend=BumbleScanner, world=world)

Mapping (bleak → Bumble): connect → ``Device.connect`` → ``Peer`` → ``request_mtu`` →
discover services, characteristics, descriptors → ``BleakGATTServiceCollection``;
read/write → ``Peer.read_value``/``write_value``; notify → ``Peer.subscribe``; scanning →
``Device.start_scanning`` and its ``"advertisement"`` events.

Behaviour worth knowing:

* The disconnected callback fires on every disconnection, requested or not, as with
  bleak's BlueZ backend (the one real deployments use).
* A GATT operation in flight when the link drops raises :class:`bleak.exc.BleakError`
  at once instead of waiting for an ATT timeout.
* ATT error responses become :class:`bleak.exc.BleakGATTProtocolError`.
* Scanning is always active (scan responses are requested); the virtual controller
  reports every device at -50 dBm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import (
    AdvertisementData,
    AdvertisementDataCallback,
    BaseBleakScanner,
)
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError, BleakGATTProtocolError
from bumble import core
from bumble.att import ATT_Error
from bumble.core import AdvertisingData
from bumble.device import Advertisement, Connection, Peer
from bumble.gatt import Characteristic
from bumble.gatt_client import CharacteristicProxy, DescriptorProxy
from bumble.hci import Address

from devices.emulated.link_model import EmulatedCentral, address_key, bleak_uuid

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

#: Bluetooth's minimum ATT MTU (bytes): what a link has before an MTU exchange.
ATT_DEFAULT_MTU = 23

_PROPERTY_NAMES: tuple[tuple[Characteristic.Properties, CharacteristicPropertyName], ...] = (
    (Characteristic.Properties.BROADCAST, "broadcast"),
    (Characteristic.Properties.READ, "read"),
    (Characteristic.Properties.WRITE_WITHOUT_RESPONSE, "write-without-response"),
    (Characteristic.Properties.WRITE, "write"),
    (Characteristic.Properties.NOTIFY, "notify"),
    (Characteristic.Properties.INDICATE, "indicate"),
    (Characteristic.Properties.AUTHENTICATED_SIGNED_WRITES, "authenticated-signed-writes"),
    (Characteristic.Properties.EXTENDED_PROPERTIES, "extended-properties"),
)

_SERVICE_LIST_TYPES = (
    AdvertisingData.Type.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.Type.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.Type.COMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.Type.INCOMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.Type.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.Type.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
)
_SERVICE_DATA_TYPES = (
    AdvertisingData.Type.SERVICE_DATA_16_BIT_UUID,
    AdvertisingData.Type.SERVICE_DATA_32_BIT_UUID,
    AdvertisingData.Type.SERVICE_DATA_128_BIT_UUID,
)


@dataclass(frozen=True, slots=True)
class BumbleDeviceDetails:
    """``BLEDevice.details`` for emulated devices: the advertisement's own address.

    Bumble addresses carry their type (public/random); rebuilding one from a string
    would default to "random", so the object seen on air is kept.
    """

    address: Address
    advertisement: Advertisement = field(compare=False, repr=False)


def _ad_structures(data: AdvertisingData) -> list[tuple[int, bytes]]:
    """AD structures without repeats (the virtual controller's scan response repeats them)."""
    unique: list[tuple[int, bytes]] = []
    for ad_type, value in data.ad_structures:
        if (int(ad_type), value) not in unique:
            unique.append((int(ad_type), value))
    return unique


def advertisement_data(advertisement: Advertisement) -> AdvertisementData:
    """Convert a Bumble advertisement (or merged scan response) to bleak's form."""
    structures = _ad_structures(advertisement.data)
    merged = AdvertisingData(structures)
    service_uuids: list[str] = []
    for ad_type in _SERVICE_LIST_TYPES:
        for listed in merged.get_all(ad_type):
            assert isinstance(listed, list)
            for service_uuid in listed:
                if (text := bleak_uuid(service_uuid)) not in service_uuids:
                    service_uuids.append(text)
    service_data: dict[str, bytes] = {}
    for ad_type in _SERVICE_DATA_TYPES:
        for entry in merged.get_all(ad_type):
            assert isinstance(entry, tuple)
            data_uuid, payload = entry
            assert isinstance(data_uuid, core.UUID)
            service_data[bleak_uuid(data_uuid)] = bytes(payload)
    manufacturer_data: dict[int, bytes] = {}
    for entry in merged.get_all(AdvertisingData.Type.MANUFACTURER_SPECIFIC_DATA):
        assert isinstance(entry, tuple)
        company, company_payload = entry
        assert isinstance(company, int)
        manufacturer_data[company] = bytes(company_payload)
    name = merged.get(AdvertisingData.Type.COMPLETE_LOCAL_NAME) or merged.get(
        AdvertisingData.Type.SHORTENED_LOCAL_NAME
    )
    tx_power = merged.get(AdvertisingData.Type.TX_POWER_LEVEL)
    return AdvertisementData(
        local_name=name if isinstance(name, str) else None,
        manufacturer_data=manufacturer_data,
        service_data=service_data,
        service_uuids=service_uuids,
        tx_power=tx_power if isinstance(tx_power, int) else None,
        rssi=int(advertisement.rssi),
        platform_data=(advertisement,),
    )


class BumbleScanner(BaseBleakScanner):
    """bleak scanner backend that listens on an :class:`EmulatedWorld`'s central.

    Keyword Args:
        world: the :class:`~devices.emulated.world.EmulatedWorld` to scan (required; the
            backend needs only its :class:`~devices.emulated.link_model.EmulatedCentral` part).

    An advertisement and its scan response both arrive; the scan response is reported
    only when it adds something to what the advertisement already said.
    """

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        world: EmulatedCentral,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._world = world
        self._token = object()
        self._last: dict[str, AdvertisementData] = {}

    async def start(self) -> None:
        """Start scanning (clears :attr:`seen_devices`, as bleak requires)."""
        self.seen_devices = {}
        self._last = {}
        await self._world.start_scan(self._token, self._on_advertisement)

    async def stop(self) -> None:
        """Stop scanning."""
        await self._world.stop_scan(self._token)

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        data = advertisement_data(advertisement)
        if not self.is_allowed_uuid(data.service_uuids):
            return
        key = address_key(advertisement.address)
        previous = self._last.get(key)
        self._last[key] = data
        repeated = previous is not None and _same_content(previous, data)
        if advertisement.is_scan_response and repeated:
            return  # the scan response repeats the advertisement: not news
        device = self.create_or_update_device(
            key,
            key,
            data.local_name,
            BumbleDeviceDetails(advertisement.address, advertisement),
            data,
        )
        self.call_detection_callbacks(device, data)


def _same_content(a: AdvertisementData, b: AdvertisementData) -> bool:
    return a._replace(platform_data=()) == b._replace(platform_data=())


@dataclass(slots=True)
class _Link:
    """One live connection: the Bumble connection, its GATT peer, and its end."""

    connection: Connection
    peer: Peer
    lost: asyncio.Future[int]
    subscribers: dict[int, Callable[[bytes], None]] = field(default_factory=dict)


class BumbleClient(BaseBleakClient):
    """bleak client backend that connects through an :class:`EmulatedWorld`'s central.

    Keyword Args:
        world: the :class:`~devices.emulated.world.EmulatedWorld` to use (required; the
            backend needs only its :class:`~devices.emulated.link_model.EmulatedCentral` part).
        services: optional set of service UUIDs to discover (others are skipped).
        mtu: ATT MTU to request (bytes); defaults to the world's.
    """

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None,
        timeout: float,
        world: EmulatedCentral,
        services: set[str] | None = None,
        mtu: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self._world = world
        self._wanted_services = services
        self._mtu = mtu if mtu is not None else world.mtu
        self._link: _Link | None = None
        self._name: str | None = None
        self._target: Address | None = None
        if isinstance(address_or_ble_device, BLEDevice):
            self._name = address_or_ble_device.name
            details = address_or_ble_device.details
            if isinstance(details, BumbleDeviceDetails):
                self._target = details.address

    # -- identity and state ----------------------------------------------------------

    @property
    def name(self) -> str:
        """The advertised name, or the address with dashes when none is known."""
        return self._name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        """The negotiated ATT MTU in bytes (23 when not connected)."""
        link = self._link
        return int(link.connection.att_mtu) if link is not None else ATT_DEFAULT_MTU

    @property
    def is_connected(self) -> bool:
        """True while the link is up."""
        return self._link is not None and not self._link.lost.done()

    # -- connectivity ----------------------------------------------------------------

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        """Connect, exchange MTU and discover the GATT database.

        Raises:
            BleakDeviceNotFoundError: no advertiser with this address was seen in time.
            TimeoutError: the peripheral did not accept the connection in time.
            BleakError: the link failed or dropped during set-up.
        """
        if self.is_connected:
            return
        timeout = float(kwargs.get("timeout", self._timeout))
        target = self._target or await self._world.find_address(self.address, within_s=timeout)
        if target is None:
            raise BleakDeviceNotFoundError(
                self.address, f"Device with address {self.address} was not found"
            )
        try:
            connection = await self._world.connect(target, connect_timeout_s=timeout)
        except core.TimeoutError as exc:
            raise TimeoutError(f"{self.address}: connection timed out after {timeout} s") from exc
        except core.BaseBumbleError as exc:
            raise BleakError(f"{self.address}: connection failed: {exc}") from exc

        lost: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        link = _Link(connection, Peer(connection), lost)
        self._link = link
        connection.on("disconnection", lambda reason: self._on_disconnection(link, reason))
        try:
            await self._guard(link, "MTU exchange", link.peer.request_mtu(self._mtu))
            self.services = await self._guard(link, "service discovery", self._discover(link))
            if pair:
                await self.pair()
        except BaseException:
            if not lost.done():
                with contextlib.suppress(Exception):
                    await connection.disconnect()
            raise

    async def disconnect(self) -> None:
        """Disconnect; returns once the link is down (no-op when not connected)."""
        link = self._link
        if link is None or link.lost.done():
            return
        with contextlib.suppress(core.BaseBumbleError):
            await link.connection.disconnect()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await asyncio.shield(link.lost)

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Pair (Bumble's just-works pairing over the link)."""
        link = self._require_link()
        await self._guard(link, "pairing", link.connection.pair())

    async def unpair(self) -> None:
        """Forget pairing keys for this peer and disconnect."""
        keystore = self._world.central.keystore
        if keystore is not None and self._target is not None:
            with contextlib.suppress(KeyError):
                await keystore.delete(str(self._target))
        await self.disconnect()

    def _on_disconnection(self, link: _Link, reason: int) -> None:
        if link.lost.done():
            return
        link.lost.set_result(reason)
        if self._link is link:
            self._link = None
            self.services = None
        _LOGGER.debug("%s: disconnected (HCI reason 0x%02X)", self.address, reason)
        callback = self._disconnected_callback
        if callback is not None:
            try:
                callback()
            except Exception:
                _LOGGER.exception("%s: disconnected callback failed", self.address)

    # -- GATT database ---------------------------------------------------------------

    async def _discover(self, link: _Link) -> BleakGATTServiceCollection:
        peer = link.peer
        wanted = (
            [core.UUID(uuid) for uuid in sorted(self._wanted_services)]
            if self._wanted_services
            else []
        )
        collection = BleakGATTServiceCollection()
        for service_proxy in await peer.discover_services(wanted):
            service = BleakGATTService(
                service_proxy, service_proxy.handle, bleak_uuid(service_proxy.uuid)
            )
            collection.add_service(service)
            for char_proxy in await peer.discover_characteristics(service=service_proxy):
                characteristic = BleakGATTCharacteristic(
                    char_proxy,
                    char_proxy.handle,
                    bleak_uuid(char_proxy.uuid),
                    [name for flag, name in _PROPERTY_NAMES if char_proxy.properties & flag],
                    lambda: self.mtu_size - 3,
                    service,
                )
                collection.add_characteristic(characteristic)
                for desc_proxy in await peer.discover_descriptors(characteristic=char_proxy):
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            desc_proxy,
                            desc_proxy.handle,
                            bleak_uuid(desc_proxy.type),
                            characteristic,
                        )
                    )
        return collection

    # -- I/O -----------------------------------------------------------------------

    async def read_gatt_char(
        self,
        characteristic: BleakGATTCharacteristic,
        *,
        use_cached: bool = False,
        **kwargs: Any,
    ) -> bytearray:
        """Read a characteristic value (``use_cached`` is ignored: always read)."""
        link = self._require_link()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        return bytearray(await self._guard(link, "read", link.peer.read_value(proxy)))

    async def read_gatt_descriptor(
        self,
        descriptor: BleakGATTDescriptor,
        *,
        use_cached: bool = False,
        **kwargs: Any,
    ) -> bytearray:
        """Read a descriptor value."""
        link = self._require_link()
        proxy: DescriptorProxy = descriptor.obj
        return bytearray(await self._guard(link, "read", link.peer.read_value(proxy)))

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool
    ) -> None:
        """Write a characteristic value, with or without response."""
        link = self._require_link()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        await self._guard(
            link, "write", link.peer.write_value(proxy, bytes(data), with_response=response)
        )

    async def write_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, data: SizedBuffer
    ) -> None:
        """Write a descriptor value (always with response)."""
        link = self._require_link()
        proxy: DescriptorProxy = descriptor.obj
        await self._guard(
            link, "write", link.peer.write_value(proxy, bytes(data), with_response=True)
        )

    async def start_notify(
        self,
        characteristic: BleakGATTCharacteristic,
        callback: NotifyCallback,
        **kwargs: Any,
    ) -> None:
        """Enable notifications (or indications when the characteristic only indicates)."""
        link = self._require_link()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        if not proxy.properties & (
            Characteristic.Properties.NOTIFY | Characteristic.Properties.INDICATE
        ):
            raise BleakError(f"{characteristic.uuid} does not support notify or indicate")
        if proxy.descriptors_discovered and proxy.get_descriptor(core.UUID("2902")) is None:
            raise BleakError(f"{characteristic.uuid} has no CCCD (0x2902) to enable notify")

        def subscriber(value: bytes) -> None:
            try:
                callback(bytearray(value))
            except Exception:
                _LOGGER.exception("%s: notification callback failed", self.address)

        previous = link.subscribers.pop(characteristic.handle, None)
        if previous is not None:
            await self._guard(link, "unsubscribe", link.peer.unsubscribe(proxy, previous))
        link.subscribers[characteristic.handle] = subscriber
        await self._guard(link, "subscribe", link.peer.subscribe(proxy, subscriber))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        """Disable notifications on a characteristic."""
        link = self._require_link()
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        subscriber = link.subscribers.pop(characteristic.handle, None)
        await self._guard(link, "unsubscribe", link.peer.unsubscribe(proxy, subscriber))

    # -- helpers ---------------------------------------------------------------------

    def _require_link(self) -> _Link:
        link = self._link
        if link is None or link.lost.done():
            raise BleakError(f"{self.address}: not connected")
        return link

    async def _guard(self, link: _Link, what: str, operation: Awaitable[T]) -> T:
        """Run a GATT operation, failing fast if the link drops meanwhile."""
        task = asyncio.ensure_future(operation)
        waiters: set[asyncio.Future[Any]] = {task, link.lost}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if task.done() and not task.cancelled():
                try:
                    return task.result()
                except ATT_Error as exc:
                    raise BleakGATTProtocolError(exc.error_code) from exc
                except core.TimeoutError as exc:
                    raise TimeoutError(f"{self.address}: {what} timed out") from exc
            # Bumble cancels pending ATT requests itself when the link goes down.
            if link.lost.done():
                raise BleakError(
                    f"{self.address}: disconnected during {what} "
                    f"(HCI reason 0x{link.lost.result():02X})"
                )
            raise BleakError(f"{self.address}: {what} was aborted by the Bluetooth stack")
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
