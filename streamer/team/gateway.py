"""The thin gateway: device notifications and protocol markers → outbox → JetStream.

No athlete state, no processors, no decoding beyond what the drivers need to supervise a
link: every raw notification of a device whose lease this gateway holds, its driver's
gaps and battery levels (device events, in the driver's order), every lease grant and
every protocol marker (MQTT commands) becomes one row of the durable outbox
(:class:`streamer.team.outbox.GatewayOutbox`, fsync'd), then one JetStream message on
``redox.raw.<athlete>`` with ``Nats-Msg-Id`` = ``<gateway>:<boot>:<row id>``. A row is
deleted only after its PubAck. Publishing is one message at a time *per athlete*, in row
order (the athletes' chains run concurrently): a message resent after a failure never
overtakes a later one of its athlete, so the stream holds each athlete's messages in the
order the gateway received them; when the link or the stream's leader is away the
publisher backs off and resends the same row, and the server drops the copies it already
stored.

Imports stay thin (no scipy, no influxdb-client, no processors: a Pi Zero 2 W runs it);
``tests/test_team_gateway.py`` holds that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import nats
from nats.errors import Error as NatsError

from devices import gatt
from devices.codecs import CODECS
from devices.discovery import find_device
from devices.drivers import DeviceDriver, ResolvingDriver, driver_for
from devices.errors import DeviceUnavailableError
from devices.policy import Backoff, Jitter
from devices.recording import RecordedNotification
from devices.records import BatteryLevel
from streamer.cancel import cancellation_kept, raise_if_cancelled
from streamer.config import DeviceConfig, MqttConfig
from streamer.team import wire
from streamer.team.leases import Lease, LeaseLostError, contention_delay_s, lease_key
from streamer.team.outbox import GatewayOutbox, Row
from streamer.team.stream import DEFAULT_LEASE_TTL_S, ensure_stream, warn_if_server_too_old

_LOGGER: Final = logging.getLogger(__name__)
_T = TypeVar("_T")

PUBLISH_TIMEOUT_S: Final = 1.0
"""Wait this long for a PubAck before resending (s): a PubAck takes milliseconds on a
club's LAN (three nodes' quorum included); a message sent to a leader that just died
gets none, and every second waited here adds to the stall of a leader election."""
LEASE_LOOKUP_WAIT_S: Final = 5.0
"""How long a question about a device's lease holder waits for NATS to answer at a start
(s) before the gateway's MQTT side goes on without it (:meth:`Gateway.held_elsewhere`)."""
BATCH: Final = 256
"""Outbox rows read (and acknowledged) per round."""
RESEND_BACKOFF: Final = Backoff(0.05, 1.0, multiplier=2.0, jitter=Jitter.EQUAL)
"""Between resends while NATS or the stream's leader is away: quick first (a leader
election), never slower than 1 s (what it adds to the stall once the stream is back)."""
DEFAULT_MAX_DEVICES: Final = 7
"""Leases a gateway holds at most: BlueZ's usual limit of simultaneous LE connections."""
DEFAULT_IDLE_RELEASE_S: Final = 60.0
"""A held device not connected for this long has its lease released (s): the athlete
left the room, and another gateway should take the device without waiting."""
RELEASE_FLUSH_S: Final = 2.0
"""A stopping device's wait for its athlete's queued rows to be acknowledged before its
lease is released (s): thousands of PubAcks on a club's LAN. Longer (NATS away) and the
lease is left to the bucket's TTL, as a crash leaves it: released with rows still queued,
another gateway's grant could reach the stream before them and the workers would drop
them (:meth:`Gateway.release_after_flush`)."""


def short_char(uuid: str) -> str:
    """The wire's ``char`` of a characteristic UUID: its codec's short name."""
    known = gatt.characteristic_for_uuid(uuid)
    if known is not None and known.name in CODECS:
        return known.name
    return uuid


Tap = Callable[[RecordedNotification], None]


def _tap_start_notify(driver: DeviceDriver, device_id: str, tap: Tap) -> None:
    """Make ``driver`` hand every subscribed notification's bytes to ``tap`` before it
    decodes them (the battery level, read and notified outside ``_start_notify``, reaches
    the driver's sink as a record: :class:`_Forwarder` sends it as a device event)."""
    subscribe = driver._start_notify

    async def tapped_start_notify(
        client: Any, char_uuid: str, decode: Any, *, required: bool = True
    ) -> bool:
        char = short_char(char_uuid)

        def tapped(data: bytes, *, t_ns: int = 0) -> Any:
            tap(RecordedNotification(t_ns=t_ns, device=device_id, char=char, data=bytes(data)))
            return decode(data, t_ns=t_ns)

        return await subscribe(client, char_uuid, tapped, required=required)

    # An instance attribute over the class's method: the driver classes stay untouched.
    driver._start_notify = tapped_start_notify  # type: ignore[method-assign]


class _TappedResolvingDriver(ResolvingDriver):
    """A :class:`ResolvingDriver` whose model's driver, once known, is tapped too."""

    def __init__(self, *args: Any, device_id: str, tap: Tap, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._device_id = device_id
        self._tap = tap

    def _driver_of(self, model: Any) -> DeviceDriver:
        inner = super()._driver_of(model)
        _tap_start_notify(inner, self._device_id, self._tap)
        return inner


Forward = Callable[[RecordedNotification | wire.DeviceEvent], None]
"""Where a forwarding driver's wire messages go (the gateway's outbox), in order."""

_DEVICE_EVENT_TYPES: Final = tuple(wire.DEVICE_EVENTS.values())


class _Forwarder:
    """One driver's wire messages in the order the single box's pipeline gets its records.

    The tap sees a notification's bytes *before* the driver decodes them; the records the
    driver then emits for it reach the sink after — a gap closed by that notification's
    sample first (the driver delivers the closing :class:`~devices.records.GapEvent` right
    before the first sample after a hole). So the notification is held until the first
    record decoded from it arrives (every device event emitted before that goes first),
    or, when it yields none (a malformed payload, a command answer), until the event loop's
    next turn or the next notification. Decoded records themselves are not forwarded: the
    worker decodes the bytes with the same codecs.
    """

    def __init__(self, device_id: str, forward: Forward) -> None:
        self.device_id = device_id
        self.forward = forward
        self._held: RecordedNotification | None = None

    def notification(self, notification: RecordedNotification) -> None:
        """The tap: a notification's bytes, before the driver decodes them."""
        self.flush()
        self._held = notification
        try:
            # The driver's handler is synchronous: this runs after its records were emitted.
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no loop here (a backend's thread): nothing may follow it
            self.flush()

    def record(self, record: object) -> None:
        """The driver's sink: device events go on the wire, a decoded record releases the
        notification it came from."""
        if isinstance(record, _DEVICE_EVENT_TYPES):
            self.forward(wire.DeviceEvent(self.device_id, record))
        else:
            self.flush()

    def flush(self) -> None:
        """Forward the held notification, if any."""
        held, self._held = self._held, None
        if held is not None:
            self.forward(held)


def forwarding_driver(
    device: DeviceConfig, name: str, forward: Forward, **kwargs: Any
) -> DeviceDriver:
    """``device``'s production driver (as ``run`` builds it): every notification's raw bytes
    handed to ``forward`` as the wire's recording line, and every gap and battery level it
    emits as a :class:`~streamer.team.wire.DeviceEvent`, in the order the single box's
    pipeline would get their records (:class:`_Forwarder`)."""
    models = device.device_models
    address = device.address or ""
    forwarder = _Forwarder(device.id, forward)
    options: dict[str, Any] = {
        "name": name,
        "sink": forwarder.record,  # decoded samples stay here: the worker decodes the bytes
        "advertised_name": None if device.address else device.name,
        **kwargs,
    }
    if len(models) > 1:
        return _TappedResolvingDriver(
            address, candidates=models, device_id=device.id, tap=forwarder.notification, **options
        )
    driver = driver_for(models, address, **options)
    _tap_start_notify(driver, device.id, forwarder.notification)
    return driver


@dataclass(slots=True)
class GatewayStats:
    """Counters of one gateway process (since its start)."""

    offered: int = 0
    """Messages handed to the outbox (notifications, markers, lease grants)."""
    stored: int = 0
    """Rows committed (fsync'd) to the outbox."""
    published: int = 0
    """Rows acknowledged by JetStream (duplicates included)."""
    duplicates: int = 0
    """PubAcks saying the server already held the message (a resend)."""
    resends: int = 0
    """Publish attempts that failed and were repeated."""
    stalls_s: list[float] = field(default_factory=list)
    """Each interruption of publishing: first failure → next PubAck (s)."""
    leases: dict[str, str] = field(default_factory=dict)
    """``athlete.device`` → ``held`` | ``lost`` | ``released``."""


class Gateway:
    """One gateway process's work: drivers, the outbox writer and the JetStream publisher.

    Args:
        gateway_id: this gateway's id (msg ids, the ``Redox-Gateway`` header, leases).
        servers: NATS URLs (any node of the cluster).
        outbox: the opened outbox file.
        devices: athlete id → the devices to forward (the config's).
        driver_kwargs: extra driver arguments (the emulated link's, its clock).
        clock_ns: the clock notifications are stamped with, for markers and grants (ns).
        replicas: the stream's replicas to ensure (None: leave an existing stream's).
        lease_ttl_s: the lease bucket's TTL when this gateway creates it (s).
        follow_registry: take the devices from the club's central registry
            (:mod:`streamer.team.registry`) instead of ``devices``, and follow its changes:
            a device added starts contending for its lease, one removed or changed stops
            and releases it — no restart.
        prepare_devices: awaited with each new set of devices before it runs (the command
            puts emulators of new devices on the virtual link, renews its MQTT athletes).
    """

    def __init__(
        self,
        gateway_id: str,
        servers: Sequence[str],
        outbox: GatewayOutbox,
        devices: Mapping[str, Sequence[DeviceConfig]],
        *,
        driver_kwargs: Mapping[str, Any] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        replicas: int | None = None,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
        max_devices: int = DEFAULT_MAX_DEVICES,
        idle_release_s: float = DEFAULT_IDLE_RELEASE_S,
        follow_registry: bool = False,
        prepare_devices: Callable[[Mapping[str, Sequence[DeviceConfig]]], Awaitable[None]]
        | None = None,
    ) -> None:
        self.id = gateway_id
        self.servers = list(servers)
        self.outbox = outbox
        self.devices = {a: list(d) for a, d in devices.items()}
        self.driver_kwargs = dict(driver_kwargs or {})
        self.clock_ns = clock_ns
        self.replicas = replicas
        self.lease_ttl_s = lease_ttl_s
        self.max_devices = max_devices
        self.idle_release_s = idle_release_s
        self.follow_registry = follow_registry
        self.prepare_devices = prepare_devices
        self.stats = GatewayStats()
        self.drivers: dict[str, DeviceDriver] = {}
        self.held: dict[tuple[str, str], DeviceDriver] = {}
        """(athlete, device id) → the driver of a device whose lease this gateway holds."""
        self.battery_pct: dict[tuple[str, str], int] = {}
        """(athlete, device id) → the battery level (%) its driver last reported."""
        self.connected = asyncio.Event()
        """Set once NATS answered and the stream and bucket exist."""
        self.on_stream: Callable[[bool], None] | None = None
        """Told whether the link to the stream works — NATS's client connected and no
        publish failed since the last acknowledgement — at each change of either (the
        commands' shared subscription follows it:
        :meth:`streamer.team.gateway_mqtt.GatewayCommands.set_stream`)."""
        self.drained = asyncio.Event()
        """Set while the outbox is empty (every row acknowledged)."""
        self._pending: list[tuple[str, bytes, int]] = []  # (athlete, body, received wall ns)
        self._wake_writer = asyncio.Event()
        self._wake_publisher = asyncio.Event()
        self._held = 0
        self._rng = random.Random()
        self._nc: Any = None
        self._writer_task: asyncio.Task[None] | None = None
        self._publisher_task: asyncio.Task[None] | None = None
        self._device_tasks: dict[tuple[str, str], tuple[DeviceConfig, asyncio.Task[None]]] = {}
        self._registry_task: asyncio.Task[None] | None = None
        self._kv: Any = None
        self._failed: asyncio.Future[None] | None = None
        self._closing = False
        self._writer_closed = False
        self._stalled_since: float | None = None  # monotonic s of the first failed publish
        self._acked_through = 0
        """Every outbox row up to this id is acknowledged (deleted with the next commit)."""
        self._offered_of: dict[str, int] = {}
        """athlete → messages offered by this process (each becomes one row of this boot)."""
        self._acked_of: dict[str, int] = {}
        """athlete → rows of this boot acknowledged (in row order: one chain per athlete)."""
        self._flush_waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        """athlete → (offered count to reach, future) of :meth:`flushed` callers."""

    # -- into the outbox ------------------------------------------------------------------

    def offer(self, athlete: str, message: wire.WireMessage) -> None:
        """Queue one message of ``athlete`` (on the event loop; committed within ms),
        stamped with its receipt time (wall ns: the live latency's start, see
        :data:`streamer.team.wire.RECEIVED_HEADER`)."""
        self._pending.append((athlete, wire.encode(message), time.time_ns()))
        self.stats.offered += 1
        self._offered_of[athlete] = self._offered_of.get(athlete, 0) + 1
        if self._writer_closed:
            self._commit_pending()  # a straggler after the writer stopped: commit it here
        else:
            self._wake_writer.set()

    def offer_marker(self, athlete: str, _device: str, marker: object) -> bool:
        """:class:`streamer.app.commands_in.CommandListener`'s ``offer``: a marker."""
        if not isinstance(marker, tuple(wire.MARKERS.values())):
            return False
        self.offer(athlete, marker)  # type: ignore[arg-type]  # checked just above
        return True

    def offer_marker_of(self, athlete: str, marker: object) -> None:
        """A protocol marker of ``athlete`` (the emulated protocol's ``offer``)."""
        self.offer_marker(athlete, "", marker)

    def _commit_pending(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            self.outbox.append(batch, self._acked_through)
            self.stats.stored += len(batch)
            self.drained.clear()
            self._wake_publisher.set()

    async def _writer(self) -> None:
        """Group commit: every message offered since the last commit, in one fsync, in
        order. Never cancelled in the middle of a commit (its thread would go on while a
        later batch overtook it): :meth:`_close_writer` asks it to finish."""
        while True:
            await self._wake_writer.wait()
            self._wake_writer.clear()
            batch, self._pending = self._pending, []
            if batch:
                await asyncio.to_thread(self.outbox.append, batch, self._acked_through)
                self.stats.stored += len(batch)
                self.drained.clear()
                self._wake_publisher.set()
            if self._closing and not self._pending:
                self._writer_closed = True
                return

    async def _close_writer(self) -> None:
        """Let the writer commit what is pending and end; later offers commit directly."""
        self._closing = True
        self._wake_writer.set()
        writer = self._writer_task
        if writer is not None and not writer.done():
            # Shielded: a second cancellation of the caller must not cut a commit short.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(writer)
        self._writer_closed = True
        self._commit_pending()

    # -- out to JetStream -----------------------------------------------------------------

    async def _connect(self) -> Any:
        """Connect to NATS (retrying until it answers), ensure the stream; the KV bucket."""
        delays = RESEND_BACKOFF.delays(self._rng)
        while True:
            try:
                with cancellation_kept():  # see _device
                    self._nc = await nats.connect(
                        servers=self.servers,
                        name=f"redox-gateway-{self.id}",
                        connect_timeout=2,
                        reconnect_time_wait=0.25,
                        max_reconnect_attempts=-1,
                        allow_reconnect=True,
                        error_cb=self._nats_error,
                        disconnected_cb=self._nats_disconnected,
                        reconnected_cb=self._nats_reconnected,
                    )
                    kv = await ensure_stream(
                        self._nc.jetstream(), self.replicas, lease_ttl_s=self.lease_ttl_s
                    )
                warn_if_server_too_old(self._nc, f"gateway {self.id}")
            except (NatsError, OSError, TimeoutError) as exc:
                _LOGGER.warning("NATS %s: %s; retrying", ",".join(self.servers), exc)
                if self._nc is not None:
                    with contextlib.suppress(Exception):
                        await self._nc.close()
                    self._nc = None
                await asyncio.sleep(next(delays))
                continue
            try:
                ttl = (await kv.status()).ttl
            except (NatsError, OSError, TimeoutError):
                ttl = None
            if ttl:
                # The bucket's TTL rules (another process may have created it): renew by it.
                self.lease_ttl_s = float(ttl)
            self.connected.set()
            self._say_stream()
            return kv

    async def _nats_error(self, exc: Exception) -> None:
        _LOGGER.debug("NATS: %s", exc)

    async def _nats_disconnected(self) -> None:
        self._say_stream()

    async def _nats_reconnected(self) -> None:
        self._say_stream()  # up only if no publish is failing (else at its acknowledgement)

    def _say_stream(self) -> None:
        """Tell :attr:`on_stream` the link as it is now (each event's own view could come
        late: an acknowledgement resolved just before a disconnection)."""
        if self.on_stream is not None:
            nc = self._nc
            self.on_stream(nc is not None and nc.is_connected and self._stalled_since is None)

    async def _publisher(self) -> None:
        """Publish the outbox, each athlete's rows in order; delete what was acknowledged.

        The rows of one round are published concurrently *across* athletes and one PubAck
        at a time *within* an athlete (:meth:`_publish_chain`): the stream's order is per
        athlete's subject, and a row resent after a failure never overtakes a later row of
        its athlete because that later row is not sent before its PubAck. Rows are deleted
        only when every row of the round is acknowledged, by the writer's next commit (one
        fsync for both) or, when nothing new came, here; a crash before resends them under
        the same msg ids, which the server drops."""
        js = self._nc.jetstream()
        deleted = 0  # rows up to this id are deleted
        while True:
            rows = await asyncio.to_thread(self.outbox.peek, BATCH, self._acked_through)
            if not rows:
                self._wake_publisher.clear()
                if self._acked_through > deleted:
                    # Nothing new to publish: delete what was acknowledged now (else the
                    # writer's next commit does it, in the same fsync as its rows).
                    deleted = self._acked_through
                    await asyncio.to_thread(self.outbox.ack_through, deleted)
                if self.outbox.depth() == 0:
                    self.drained.set()
                    await self._wake_publisher.wait()
                continue
            chains: dict[str, list[Row]] = {}
            for row in rows:
                chains.setdefault(row.athlete, []).append(row)
            await asyncio.gather(*(self._publish_chain(js, chain) for chain in chains.values()))
            self._acked_through = rows[-1].id

    async def _publish_chain(self, js: Any, rows: Sequence[Row]) -> None:
        """Publish one athlete's ``rows`` in order, each resent until its PubAck."""
        for row in rows:
            headers = {
                wire.MSG_ID_HEADER: wire.msg_id(self.id, row.boot, row.id),
                wire.GATEWAY_HEADER: self.id,
                wire.RECEIVED_HEADER: str(row.created_ns),
            }
            delays = RESEND_BACKOFF.delays(self._rng)
            while True:
                try:
                    # A cancellation lost in the PubAck's wait would leave this chain
                    # resending for ever once NATS is away (see _device).
                    with cancellation_kept():
                        ack = await js.publish(
                            wire.raw_subject(row.athlete),
                            row.body,
                            timeout=PUBLISH_TIMEOUT_S,
                            headers=headers,
                        )
                    break
                except (NatsError, OSError, TimeoutError) as exc:
                    if self._stalled_since is None:
                        self._stalled_since = time.monotonic()
                        self._say_stream()
                        _LOGGER.warning("publishing stalled: %s; resending", exc)
                    self.stats.resends += 1
                    await asyncio.sleep(next(delays))
            if self._stalled_since is not None:
                # The gateway's stall (first failure → next PubAck), once for all chains.
                stall = time.monotonic() - self._stalled_since
                self._stalled_since = None
                self.stats.stalls_s.append(stall)
                self._say_stream()
                _LOGGER.warning("publishing resumed after %.1f s", stall)
            self.stats.published += 1
            if ack.duplicate:
                self.stats.duplicates += 1
            if row.boot == self.outbox.boot:  # an earlier boot's rows were never offered here
                self._row_acked(row.athlete)

    def _row_acked(self, athlete: str) -> None:
        acked = self._acked_of[athlete] = self._acked_of.get(athlete, 0) + 1
        for target, waiter in self._flush_waiters.get(athlete, ()):
            if acked >= target and not waiter.done():
                waiter.set_result(None)

    def queued(self, athlete: str) -> int:
        """Messages of ``athlete`` offered by this process and not yet acknowledged."""
        return self._offered_of.get(athlete, 0) - self._acked_of.get(athlete, 0)

    async def flushed(self, athlete: str, timeout_s: float) -> bool:
        """Wait until every message of ``athlete`` offered so far is acknowledged by the
        stream; False if that takes longer than ``timeout_s`` (s) — NATS away.

        Rows of an earlier boot are not counted, but they come first in the athlete's
        chain: once a row offered here is acknowledged, so are they."""
        if self.queued(athlete) <= 0:
            return True
        target = self._offered_of.get(athlete, 0)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (target, waiter)
        self._flush_waiters.setdefault(athlete, []).append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
            return True
        except TimeoutError:
            return False
        finally:
            self._flush_waiters[athlete].remove(entry)

    async def release_after_flush(self, lease: Lease, athlete: str, timeout_s: float) -> bool:
        """Release ``lease`` once every message of ``athlete`` offered before is in the
        stream; False (the lease kept) if that takes longer than ``timeout_s`` (s).

        The workers take a device's holder to be whoever's grant came last in stream order.
        Released while this gateway's rows of the device still wait in the outbox (NATS
        away: a backlog), the next holder's grant could be stored before them and the
        workers would drop them, unique data recorded under a valid lease. The wait is for
        the athlete's rows, not only the device's: the athlete's other devices are
        published in the same chain, one order per athlete."""
        if not await self.flushed(athlete, timeout_s):
            _LOGGER.info("%s: rows still queued after %.1f s: lease kept", lease.key, timeout_s)
            return False
        await lease.release()
        return True

    # -- devices under leases ---------------------------------------------------------------

    async def _device(self, kv: Any, athlete: str, device: DeviceConfig) -> None:
        """Hold ``device``'s lease and run its driver while held (see :mod:`.leases`)."""
        lease = Lease(kv, self.id, athlete, device.id)
        renew_every = self.lease_ttl_s / 3
        while True:
            if self._held >= self.max_devices:
                await asyncio.sleep(renew_every)  # no free slot: leave it to others
                continue
            try:
                # Each NATS call's answer awaited in cancellation_kept(): nats-py waits with
                # asyncio.wait_for, which on Python 3.11 can return the answer and lose a
                # cancellation that lands with it; this loop would then never end, nor
                # stop() that cancels it once and waits for it.
                with cancellation_kept():
                    holder = await lease.holder()
                if holder is not None and holder != self.id:
                    await asyncio.sleep(renew_every)
                    continue
                rssi: int | None = None
                if holder is None:
                    # Contend only for a device this gateway sees (a central config lists
                    # every room's devices), the strongest signal first.
                    with cancellation_kept():
                        seen, rssi = await self._sighting(device)
                    if not seen:
                        await asyncio.sleep(renew_every)
                        continue
                    await asyncio.sleep(contention_delay_s(rssi))
                with cancellation_kept():
                    acquired = await lease.try_acquire(rssi)
            except (NatsError, OSError, TimeoutError) as exc:
                _LOGGER.debug("%s: lease: %s", lease.key, exc)
                await asyncio.sleep(renew_every)
                continue
            if not acquired:
                continue
            self._held += 1
            self.stats.leases[lease.key] = "held"
            _LOGGER.info("%s: lease acquired", lease.key)
            # The grant precedes every record of this device in the athlete's stream.
            self.offer(athlete, wire.LeaseGranted(self.clock_ns(), device.id, self.id))
            try:
                await self._drive(lease, athlete, device, renew_every)
            finally:
                self._held -= 1

    async def _sighting(self, device: DeviceConfig) -> tuple[bool, int | None]:
        """Whether ``device`` advertises within its scan timeout, and at which RSSI (dBm)."""
        timeout_s = device.device_models[0].policy.scan_timeout_s
        try:
            found = await find_device(
                device.address or "",
                timeout_s,
                scanner_kwargs=self.driver_kwargs.get("scanner_kwargs"),
                name=None if device.address else device.name,
            )
        except DeviceUnavailableError as exc:  # no adapter (yet): the drivers say it too
            _LOGGER.debug("%s: scan: %s", device.id, exc)
            return False, None
        return found is not None, found.rssi if found is not None else None

    async def _drive(
        self, lease: Lease, athlete: str, device: DeviceConfig, renew_every: float
    ) -> None:
        """Run the device's driver while the lease is held and renewed."""

        def forward(message: RecordedNotification | wire.DeviceEvent) -> None:
            record = message.record if isinstance(message, wire.DeviceEvent) else None
            if isinstance(record, BatteryLevel) and record.battery_pct is not None:
                self.battery_pct[(athlete, device.id)] = record.battery_pct  # its device state
            self.offer(athlete, message)

        driver = forwarding_driver(device, f"{athlete}/{device.id}", forward, **self.driver_kwargs)
        self.drivers[lease.key] = driver
        self.held[(athlete, device.id)] = driver
        task = asyncio.create_task(driver.run(), name=f"driver {lease.key}")
        loop = asyncio.get_running_loop()
        last_connected = loop.time()
        renew_failed = False
        try:
            while True:
                # After a failed renewal (NATS away) try again within a second: the key's
                # age counts from the last renewal that reached it, and a whole cluster's
                # restart (kill, ~5 s away, ~8 s to be ready) plus a full renewal period
                # would bring it near the TTL, when another gateway could take the device
                # before this one's backlog is in the stream.
                await asyncio.sleep(RESEND_BACKOFF.max_s if renew_failed else renew_every)
                if driver.connected:
                    last_connected = loop.time()
                elif loop.time() - last_connected >= self.idle_release_s and (
                    # Released only once its records are in the stream; else (NATS away)
                    # kept and renewed, and tried again next round. (A cancellation lost
                    # in a NATS answer's wait re-raised: see _device.)
                    await _kept(self.release_after_flush(lease, athlete, renew_every))
                ):
                    _LOGGER.info(
                        "%s: not connected for %.0f s: lease released",
                        lease.key,
                        self.idle_release_s,
                    )
                    self.stats.leases[lease.key] = "released"
                    await asyncio.sleep(self.idle_release_s)  # give others the first try
                    return
                try:
                    with cancellation_kept():  # see _device
                        await lease.renew()
                    renew_failed = False
                except LeaseLostError as exc:
                    _LOGGER.warning("%s", exc)
                    self.stats.leases[lease.key] = "lost"
                    return
                except (NatsError, OSError, TimeoutError) as exc:
                    # NATS away: keep the device, its records wait in the outbox.
                    _LOGGER.debug("%s: renew: %s", lease.key, exc)
                    renew_failed = True
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.drivers.pop(lease.key, None)
            self.held.pop((athlete, device.id), None)
            if lease.held:
                # A clean stop frees the device for another gateway once its records are in
                # the stream (a crash, or NATS away, leaves it to the TTL); bounded.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RELEASE_FLUSH_S + 1.0):
                        await self.release_after_flush(lease, athlete, RELEASE_FLUSH_S)

    def held_drivers(self) -> dict[str, list[tuple[str, DeviceDriver]]]:
        """athlete → (device id, driver) of the devices this gateway holds now: the
        drivers whose connection state it publishes (:mod:`streamer.team.gateway_mqtt`)."""
        out: dict[str, list[tuple[str, DeviceDriver]]] = {}
        for (athlete, device_id), driver in self.held.items():
            out.setdefault(athlete, []).append((device_id, driver))
        return out

    def battery_of(self, athlete: str, device_id: str) -> int | None:
        """The battery level (%) ``device_id`` of ``athlete`` last reported here, or None."""
        return self.battery_pct.get((athlete, device_id))

    async def held_elsewhere(self, athlete: str, device_id: str) -> bool:
        """Whether another gateway holds ``device_id``'s lease now (it then owns the
        device's retained state); False when it is free or NATS cannot say (bounded).
        A lease this gateway lost was taken by another: True without asking."""
        if self.stats.leases.get(lease_key(athlete, device_id)) == "lost":
            return True
        try:
            # Just started, the MQTT side may be up before NATS: wait for it a little.
            async with asyncio.timeout(LEASE_LOOKUP_WAIT_S):
                await self.connected.wait()
            if self._kv is None:
                return False
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                holder = await Lease(self._kv, self.id, athlete, device_id).holder()
        except (NatsError, OSError, TimeoutError):
            return False
        return holder is not None and holder != self.id

    async def set_devices(self, devices: Mapping[str, Sequence[DeviceConfig]]) -> None:
        """Run exactly ``devices`` (athlete id → devices): a device gone or changed has its
        task stopped first (its driver stops, its lease is released), then each new or
        changed one starts contending for its lease."""
        wanted = {(a, d.id): d for a, items in devices.items() for d in items}
        gone = [key for key, (device, _) in self._device_tasks.items() if wanted.get(key) != device]
        await _cancel([self._device_tasks.pop(key)[1] for key in gone])
        for athlete, device_id in gone:
            key = lease_key(athlete, device_id)
            _LOGGER.info("%s: removed or changed in the registry: stopped", key)
            if self.stats.leases.get(key) == "held":
                self.stats.leases[key] = "released"
        for (athlete, device_id), device in wanted.items():
            if (athlete, device_id) not in self._device_tasks:
                task = asyncio.create_task(
                    self._device(self._kv, athlete, device), name=f"{athlete}.{device_id}"
                )
                task.add_done_callback(self._part_ended)
                self._device_tasks[(athlete, device_id)] = (device, task)
        self.devices = {a: list(items) for a, items in devices.items()}

    def _part_ended(self, task: asyncio.Task[None]) -> None:
        """A device's or the registry's task that raised (a bug) ends :meth:`run` with its
        error. (They are not awaited by :meth:`run` itself: stopping them, as
        :meth:`stop` does, must not end it before the outbox is drained.)"""
        if task.cancelled() or task.exception() is None:
            return
        if self._failed is not None and not self._failed.done():
            self._failed.set_exception(task.exception())  # type: ignore[arg-type]

    async def _follow_registry(self) -> None:
        """Run the central registry's devices, following its changes (see the class)."""
        from streamer.team.registry import follow

        while True:
            raise_if_cancelled()  # one swallowed in the registry's NATS calls (see _device)
            try:
                async for view in follow(self._nc.jetstream()):
                    devices = view.devices()
                    with cancellation_kept():  # their lease and scan calls (see _device)
                        if self.prepare_devices is not None:
                            await self.prepare_devices(devices)
                        await self.set_devices(devices)
            except (NatsError, OSError, TimeoutError) as exc:
                # NATS away at a (re)start of the watch: the devices run on meanwhile.
                _LOGGER.warning("central registry: %s; following it again", exc)
            await asyncio.sleep(RESEND_BACKOFF.max_s)

    async def _stop_devices(self) -> None:
        """Stop following the registry, then every device (leases released)."""
        if self._registry_task is not None:
            await _cancel([self._registry_task])
        tasks = [task for _, task in self._device_tasks.values()]
        self._device_tasks.clear()
        await _cancel(tasks)

    # -- the whole ----------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, then forward until :meth:`stop` (or cancellation); on the way out what
        was received is committed to the outbox."""
        self._writer_task = asyncio.create_task(self._writer(), name="outbox writer")
        self._failed = asyncio.get_running_loop().create_future()
        try:
            self._kv = await self._connect()
            self._publisher_task = asyncio.create_task(self._publisher(), name="publisher")
            if self.follow_registry:
                self._registry_task = asyncio.create_task(self._follow_registry(), name="registry")
                self._registry_task.add_done_callback(self._part_ended)
            else:
                await self.set_devices(self.devices)
            await asyncio.gather(self._publisher_task, self._failed)
        finally:
            await self._stop_devices()
            await self._close_writer()
            if self._publisher_task is not None:
                await _cancel([self._publisher_task])
            if self._nc is not None:
                with contextlib.suppress(Exception):
                    await self._nc.close()

    async def stop(self, drain_s: float) -> None:
        """Stop the devices, commit what they sent, give the publisher up to ``drain_s``
        seconds to empty the outbox (what remains is sent at the next start)."""
        await self._stop_devices()
        await self._close_writer()
        self._wake_publisher.set()
        if self._publisher_task is not None and not self._publisher_task.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_s):
                    await self.drained.wait()


async def _kept(call: Awaitable[_T]) -> _T:
    """``call``'s result, or the cancellation it lost (:func:`cancellation_kept`)."""
    with cancellation_kept():
        return await call


async def _cancel(tasks: Sequence[asyncio.Future[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def availability_topic(base: str, gateway_id: str) -> str:
    """``<base>/gateway/<id>/state``: ``online`` / ``offline`` (retained, its Last Will)."""
    return f"{base}/gateway/{gateway_id}/state"


def gateway_mqtt(config: MqttConfig, gateway_id: str) -> MqttConfig:
    """``config`` with this gateway's client id, ``redox-gateway-<id>`` (never the host's
    name alone: Pis are all ``raspberrypi``)."""
    import dataclasses

    return dataclasses.replace(config, client_id=f"redox-gateway-{gateway_id}")
