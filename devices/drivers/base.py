"""The supervised connection every device driver shares.

A :class:`DeviceDriver` owns one device. :meth:`DeviceDriver.run` lives until cancelled:

1. connect with ``bleak_retry_connector.establish_connection`` (scanning first when the
   driver knows only an address), bounded by the policy's ``connect_timeout_s``;
2. subscribe (subclasses say to what) and read the battery level;
3. supervise: wait for the disconnect callback, or for the watchdog to find no
   notification for ``stale_after_s``;
4. on either, mark a gap, back off (exponential, jittered) and go to 1. Subscriptions
   do not survive a reconnect, so step 2 runs again on every connection.

Output is a stream of records (:data:`Record`): decoded samples, :class:`BatteryLevel`
and :class:`GapEvent`. Either give ``sink=`` (called for every record, in order, on the
event loop; it must not block) or read the driver's own bounded queue with
``async for record in driver.records()``.

Gaps: when the stream is interrupted the driver emits ``GapEvent(end_ns=None)`` at once
(link lost, watchdog) and ``GapEvent(end_ns=t)`` with the same ``start_ns`` right before
the first sample after it. A malformed payload or records dropped because the consumer
fell behind emit one closed ``GapEvent``. A consumer that resets its RR differencing on
every ``GapEvent`` never differences across an interruption. When ``run()`` is cancelled
while data flows, the driver emits a final ``GapEvent(reason=STOPPED, end_ns=None)`` (a
gap already open stays the last word).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError
from bleak_retry_connector import establish_connection

from devices import gatt
from devices.codecs import battery
from devices.codecs.errors import CodecError
from devices.discovery import BluetoothUnavailableError, adapter_problem, find_device
from devices.errors import DeviceUnavailableError
from devices.kinds import DeviceKind
from devices.models import DeviceModel
from devices.policy import ConnectionPolicy
from devices.records import MEASURED_SAMPLES, GapEvent, GapReason, Sample

_LOGGER = logging.getLogger(__name__)

Record = Sample | GapEvent
"""What a driver emits: any sample (:data:`devices.records.Sample`) and gaps."""


DISCONNECT_TIMEOUT_S = 5.0
"""Bound on one disconnect request; a stuck stack must not stall reconnection."""


class Decoder(Protocol):
    """A codec's decode function: payload bytes and receipt time to a decoded value."""

    def __call__(self, data: bytes, *, t_ns: int = 0) -> Any: ...


class DriverError(DeviceUnavailableError):
    """A driver cannot do what was asked (not connected, device lacks a characteristic)."""


@dataclass(frozen=True, slots=True)
class DriverStatus:
    """A snapshot of one driver for a live view; times are ``time.time_ns()`` values.

    ``connects`` counts successful connections (the first one included), ``reconnects``
    those after the first; ``failed_connects`` attempts that did not reach a subscribed
    link; ``gaps`` interruptions marked; ``stale`` watchdog firings; ``malformed``
    payloads the codec rejected; ``dropped`` records discarded because the consumer fell
    behind; ``records`` records emitted (gap events included).
    """

    name: str
    address: str
    kind: DeviceKind
    running: bool
    connected: bool
    connects: int
    reconnects: int
    failed_connects: int
    gaps: int
    stale: int
    malformed: int
    dropped: int
    records: int
    last_seen_ns: int | None
    last_error: str | None
    adapter_error: str | None = None
    """Set while the last connection attempt failed because the Bluetooth adapter is
    unusable (no adapter, powered off, permission, no BlueZ): the one-line explanation
    with its fix (:func:`devices.discovery.adapter_problem`). The driver keeps retrying."""


class _Link:
    """One connection: its client and the event its disconnect callback sets."""

    def __init__(self) -> None:
        self.lost = asyncio.Event()
        self.client: BleakClient | None = None
        self.ready = False  # connected and subscribed
        self.had_data = False  # a notification was decoded on this link


class DeviceDriver(ABC):
    """Supervises one device over ``bleak.BleakClient``; subclasses say what to subscribe.

    Args:
        device: bleak's handle (e.g. ``FoundDevice.ble_device`` from discovery) or an
            address, which the driver resolves by scanning before each connect (an empty
            address with ``advertised_name``: the address is learned from the scan).
        model: the device model (:data:`devices.models.MODELS`) it drives; default the
            class's :attr:`default_model` (a class without one needs it).
        name: label used in logs and in ``GapEvent.device``; default the address.
        policy: reconnection policy; default the model's.
        client_kwargs: extra ``BleakClient`` arguments; empty for the real radio,
            ``world.client_kwargs`` for the emulated link.
        scanner_kwargs: extra ``BleakScanner`` arguments for resolving an address
            (``world.scanner_kwargs`` for the emulated link).
        sink: called with every record instead of queueing it for :meth:`records`.
        queue_size: most records held for :meth:`records`; samples beyond it are dropped
            and a gap marks the hole (gap and battery records are never dropped).
        rng: random source for backoff jitter (seed it for repeatable tests).
        clock_ns: wall clock for record timestamps, ns.
        advertised_name: find the device by this exact advertised name when its address
            is not given (a config's ``name = "Polar H10 1A2B3C4D"``).
    """

    default_model: ClassVar[DeviceModel | None] = None
    """The model a driver of this class drives when none is given."""

    def __init__(
        self,
        device: BLEDevice | str,
        *,
        model: DeviceModel | None = None,
        name: str | None = None,
        policy: ConnectionPolicy | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        scanner_kwargs: Mapping[str, Any] | None = None,
        sink: Callable[[Record], None] | None = None,
        queue_size: int = 4096,
        rng: random.Random | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        advertised_name: str | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        chosen = model if model is not None else type(self).default_model
        if chosen is None:
            raise ValueError(f"{type(self).__name__} needs model= (it has no default model)")
        self.model: DeviceModel = chosen
        if isinstance(device, str):
            self.address = device.strip()
            self._ble_device: BLEDevice | None = None
            self._resolve_by_scan = True
        else:
            self.address = device.address
            self._ble_device = device
            self._resolve_by_scan = False
        self._advertised_name = advertised_name
        self.name = name or self.address or advertised_name or "?"
        self.policy = policy if policy is not None else self.model.policy
        self._client_kwargs = dict(client_kwargs or {})
        self._scanner_kwargs = dict(scanner_kwargs or {})
        self._sink = sink
        self._queue: asyncio.Queue[Record] = asyncio.Queue()
        self._queue_size = queue_size
        self._rng = rng if rng is not None else random.Random()
        self._clock_ns = clock_ns

        self._link: _Link | None = None
        self._running = False
        self._last_rx = 0.0  # loop time of the last notification on the current link
        # An interruption not yet closed by a sample: (start_ns, reason).
        self._gap: tuple[int, GapReason] | None = None
        self._connects = 0
        self._failed_connects = 0
        self._gaps = 0
        self._stale = 0
        self._malformed = 0
        self._dropped = 0
        self._records = 0
        self._last_seen_ns: int | None = None
        self._last_error: str | None = None
        self._adapter_error: str | None = None

    # -- what subclasses provide ---------------------------------------------------------

    @abstractmethod
    async def _subscribe(self, client: BleakClient) -> None:
        """Start the notifications this device family streams (on every connection)."""

    async def _after_subscribe(self, client: BleakClient) -> None:  # noqa: B027 (optional hook)
        """Commands to send once subscribed (e.g. re-start a stream); default nothing."""

    def _watchdog_armed(self) -> bool:
        """Whether silence now means a dead link; default always (while connected)."""
        return True

    def _records_from(self, decoded: Any) -> Iterable[Record]:
        """The records to emit for one decoded notification; default the value itself."""
        return (decoded,)

    # -- public API ---------------------------------------------------------------------

    @property
    def kind(self) -> DeviceKind:
        """What the device is for (its model's kind)."""
        return self.model.kind

    @property
    def status(self) -> DriverStatus:
        """Counters and state now, for a live view."""
        return DriverStatus(
            name=self.name,
            address=self.address,
            kind=self.kind,
            running=self._running,
            connected=self.connected,
            connects=self._connects,
            reconnects=max(0, self._connects - 1),
            failed_connects=self._failed_connects,
            gaps=self._gaps,
            stale=self._stale,
            malformed=self._malformed,
            dropped=self._dropped,
            records=self._records,
            last_seen_ns=self._last_seen_ns,
            last_error=self._last_error,
            adapter_error=self._adapter_error,
        )

    @property
    def connected(self) -> bool:
        """True while a subscribed link is up."""
        link = self._link
        return link is not None and link.ready and not link.lost.is_set()

    async def records(self) -> AsyncGenerator[Record, None]:
        """Every record, in order, as it arrives; ends only when the caller stops.

        Only for a driver built without ``sink``, and for one consumer at a time.
        """
        if self._sink is not None:
            raise DriverError(f"{self.name}: records go to the sink given at construction")
        while True:
            yield await self._queue.get()

    async def run(self) -> None:
        """Connect, subscribe and supervise until cancelled; never returns otherwise.

        Connection failures, lost links, stale links and malformed payloads are handled
        here (backoff, gaps, counters); none of them ends the task.
        """
        if self._running:
            raise DriverError(f"{self.name}: run() is already running")
        self._running = True
        loop = asyncio.get_running_loop()
        delays = self.policy.backoff.delays(self._rng)
        try:
            while True:
                link = await self._connect_once()
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Cancelled while connecting, and the CancelledError was swallowed below
                    # (Python 3.11's asyncio.wait_for loses one that races its result): end
                    # now (a link made is closed below), or the task would wait on its link
                    # for ever and hold up a stop.
                    raise asyncio.CancelledError
                if link is None:
                    await asyncio.sleep(next(delays))
                    continue
                started = loop.time()
                reason = await self._supervise(link)
                self._link = None  # late notifications of this link are ignored from now
                self._open_gap(reason)
                await self._disconnect(link)
                if loop.time() - started >= self.policy.stable_after_s:
                    delays = self.policy.backoff.delays(self._rng)
                await asyncio.sleep(next(delays))
        finally:
            link, self._link = self._link, None
            if link is not None and link.ready:
                self._open_gap(GapReason.STOPPED)
                # Cancellation was delivered at the await that raised it; awaiting again
                # here is allowed, and a clean disconnect frees the device for others.
                with contextlib.suppress(BaseException):
                    await self._disconnect(link)
            self._running = False

    # -- helpers for subclasses ---------------------------------------------------------

    async def _start_notify(
        self, client: BleakClient, char_uuid: str, decode: Decoder, *, required: bool = True
    ) -> bool:
        """Subscribe ``char_uuid`` with ``decode``; False if absent and not ``required``."""
        char = client.services.get_characteristic(char_uuid)
        if char is None:
            if required:
                raise DriverError(
                    f"{self.name} has no characteristic {char_uuid}; is it a {self.kind.value}?"
                )
            return False
        await client.start_notify(char, self._handler(decode))
        return True

    async def _read(self, client: BleakClient, char_uuid: str, decode: Decoder) -> Any:
        """Read and decode ``char_uuid``; ``None`` if absent, unreadable or malformed."""
        char = client.services.get_characteristic(char_uuid)
        if char is None or "read" not in char.properties:
            return None
        try:
            data = await client.read_gatt_char(char)
        except BleakError as exc:
            _LOGGER.debug("%s: reading %s failed: %s", self.name, char_uuid, exc)
            return None
        try:
            return decode(bytes(data), t_ns=self._clock_ns())
        except CodecError as exc:
            self._malformed += 1
            self._last_error = str(exc)
            return None

    async def _battery(self, client: BleakClient) -> None:
        """Read the standard Battery Level and follow its notifications when offered."""
        level = await self._read(client, gatt.BATTERY_LEVEL, battery.decode)
        if level is not None:
            self._emit(level)
        char = client.services.get_characteristic(gatt.BATTERY_LEVEL)
        if char is not None and "notify" in char.properties:
            try:
                await client.start_notify(char, self._handler(battery.decode, data=False))
            except BleakError as exc:
                _LOGGER.debug("%s: battery notifications refused: %s", self.name, exc)

    def _emit(self, record: Record) -> None:
        """Hand one record to the consumer, closing an open gap before the first sample."""
        if isinstance(record, MEASURED_SAMPLES):
            if self._sink is None and self._queue.qsize() >= self._queue_size:
                self._dropped += 1
                if self._gap is None:
                    self._gaps += 1
                    start_ns = self._last_seen_ns if self._last_seen_ns is not None else record.t_ns
                    self._gap = (start_ns, GapReason.OVERFLOW)
                return
            if self._gap is not None:
                start_ns, reason = self._gap
                self._gap = None
                self._deliver(
                    GapEvent(
                        t_ns=record.t_ns,
                        device=self.name,
                        start_ns=start_ns,
                        end_ns=record.t_ns,
                        reason=reason,
                    )
                )
            self._last_seen_ns = record.t_ns
        self._deliver(record)

    # -- internals ----------------------------------------------------------------------

    def _deliver(self, record: Record) -> None:
        self._records += 1
        if self._sink is None:
            self._queue.put_nowait(record)
            return
        try:
            self._sink(record)
        except Exception as exc:  # the consumer's bug must not kill the link
            self._last_error = f"sink: {type(exc).__name__}: {exc}"
            _LOGGER.exception("%s: the record sink failed", self.name)

    def _open_gap(self, reason: GapReason) -> None:
        """Mark the stream interrupted now (once per interruption)."""
        if self._gap is not None:
            return
        now = self._clock_ns()
        start_ns = self._last_seen_ns if self._last_seen_ns is not None else now
        if reason is GapReason.STALE:
            self._stale += 1
        self._gaps += 1
        self._gap = (start_ns, reason)
        self._deliver(
            GapEvent(t_ns=now, device=self.name, start_ns=start_ns, end_ns=None, reason=reason)
        )

    def _handler(
        self, decode: Decoder, *, data: bool = True
    ) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
        link = self._link
        if link is None:
            raise DriverError(f"{self.name}: subscribing without a link")

        def on_notify(_char: BleakGATTCharacteristic, payload: bytearray) -> None:
            if link is not self._link:
                return  # a notification from a link already given up on
            self._last_rx = asyncio.get_running_loop().time()
            now = self._clock_ns()
            try:
                decoded = decode(bytes(payload), t_ns=now)
            except CodecError as exc:
                self._on_malformed(now, exc, data=data)
                return
            link.had_data = True
            for record in self._records_from(decoded):
                self._emit(record)

        return on_notify

    def _on_malformed(self, now: int, exc: CodecError, *, data: bool) -> None:
        self._malformed += 1
        self._last_error = str(exc)
        _LOGGER.debug("%s: malformed payload skipped: %s", self.name, exc)
        if data and self._gap is None:
            # The lost packet may have carried RR intervals: the beat timeline has a hole.
            start_ns = self._last_seen_ns if self._last_seen_ns is not None else now
            self._gaps += 1
            self._deliver(
                GapEvent(
                    t_ns=now,
                    device=self.name,
                    start_ns=start_ns,
                    end_ns=now,
                    reason=GapReason.MALFORMED,
                )
            )

    async def _connect_once(self) -> _Link | None:
        """One connect-and-subscribe; the live link, or None after a counted failure."""
        link = _Link()
        self._link = link
        loop = asyncio.get_running_loop()

        def on_disconnect(_client: BleakClient) -> None:
            # Backends may call this from their own thread; a closed loop means shutdown.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(link.lost.set)

        try:
            async with asyncio.timeout(self.policy.connect_timeout_s):
                device = await self._resolve()
                link.client = await establish_connection(
                    BleakClient,
                    device,
                    self.name,
                    disconnected_callback=on_disconnect,
                    max_attempts=self.policy.connect_attempts,
                    **self._client_kwargs,
                )
                self._last_rx = loop.time()
                await self._subscribe(link.client)
                await self._battery(link.client)
                await self._after_subscribe(link.client)
                if link.lost.is_set():
                    raise DriverError("the link dropped while subscribing")
        except Exception as exc:  # every failure is retried; the reason goes to status
            self._link = None
            if link.had_data:
                # Data flowed before set-up failed (the link dropped while we read the
                # battery, say): that data's stream is interrupted like any other.
                self._open_gap(GapReason.DISCONNECTED)
            self._failed_connects += 1
            self._last_error = f"connect: {type(exc).__name__}: {exc}"
            # The adapter, not the device: a status of its own, so a view says it once
            # with its fix instead of "down" per device (issue 11); still retried, as
            # a USB adapter may be plugged in or powered on later.
            self._adapter_error = adapter_problem(exc)
            expected = self._adapter_error is not None or isinstance(
                exc, BleakError | TimeoutError | DriverError | BluetoothUnavailableError
            )
            level = logging.DEBUG if expected else logging.WARNING
            _LOGGER.log(level, "%s: %s", self.name, self._last_error, exc_info=not expected)
            if self._resolve_by_scan:
                self._ble_device = None  # it may have moved or changed address: scan again
            await self._disconnect(link)
            return None
        self._connects += 1
        self._adapter_error = None
        self._last_rx = loop.time()
        link.ready = True
        return link

    async def _resolve(self) -> BLEDevice:
        if self._ble_device is not None:
            return self._ble_device
        found = await find_device(
            self.address,
            self.policy.scan_timeout_s,
            scanner_kwargs=self._scanner_kwargs,
            name=self._advertised_name,
        )
        if found is None or found.ble_device is None:
            what = self.address or f"a device named {self._advertised_name!r}"
            timeout_s = self.policy.scan_timeout_s
            raise DriverError(f"{what} was not seen advertising within {timeout_s} s")
        self._ble_device = found.ble_device
        if self._advertised_name is not None:
            self.address = found.address  # learned; the name is scanned for again later
        return found.ble_device

    async def _supervise(self, link: _Link) -> GapReason:
        """Wait until the link is lost or the watchdog finds it silent; say which."""
        loop = asyncio.get_running_loop()
        stale_after = self.policy.stale_after_s
        while True:
            timeout: float | None = None
            if stale_after is not None:
                timeout = stale_after
                if self._watchdog_armed():
                    timeout = self._last_rx + stale_after - loop.time()
                    if timeout <= 0:
                        _LOGGER.info("%s: no notification for %.1f s", self.name, stale_after)
                        return GapReason.STALE
            try:
                async with asyncio.timeout(timeout):
                    await link.lost.wait()
            except TimeoutError:
                continue
            return GapReason.DISCONNECTED

    async def _disconnect(self, link: _Link) -> None:
        client = link.client
        if client is None:
            return
        try:
            async with asyncio.timeout(DISCONNECT_TIMEOUT_S):
                await client.disconnect()
        except (BleakError, TimeoutError, OSError, EOFError) as exc:
            _LOGGER.debug("%s: disconnect: %s", self.name, exc)
