"""The MQTT publisher: an application outbox in SQLite in front of aiomqtt.

aiomqtt has no offline queue, so QoS 1 messages (results, alerts, state) are first written
to the store's MQTT outbox by :meth:`MqttPublisher.accept`, and a message leaves the
outbox only after ``publish()`` returned — the broker acknowledged it (PUBACK). Nothing
is lost across broker restarts or a crash of this process; a message whose PUBACK was lost
is sent again (at-least-once), and consumers drop duplicates by the payload's per-topic
``seq`` (:mod:`streamer.payloads`). Messages are sent in outbox order over one connection,
so each topic's messages arrive in order.

Connections: a fresh ``aiomqtt.Client`` per connection (re-using one across reconnects
misbehaves), with exponential back-off and jitter between attempts, and a publish timeout
of a few seconds (``publish()`` otherwise waits for a PUBACK on a dead link). On connect
the publisher says ``online`` (retained) on ``<base>/bridge/state``; its Last Will says
``offline`` there when the connection dies, and :meth:`MqttPublisher.drain` says it at a
clean shutdown. A clean hang-up first waits (at most :data:`UNACKED_WAIT_S`) for the broker's
acknowledgements of what is in flight: mosquitto before 2.0.22 takes a client that closes
before it wrote a PUBACK for lost and sends the Last Will. A team partition's publisher
(``shared_state``) shares its state topic with the partition's next owner: it reads it back
and says ``online`` again over a predecessor's late Last Will. Optionally it publishes Home
Assistant discovery configs (:mod:`streamer.sinks.ha_discovery`) and re-sends them whenever
``homeassistant/status`` says ``online``.

Listeners (:class:`Listener`, e.g. ``run``'s command topics, :mod:`streamer.app.commands_in`)
subscribe on this same connection: one connection per process, so a broker that ties client
ids to accounts (the shipped mosquitto config) holds one session per ``run``. Each listener's
topic filters are subscribed (QoS 1) after every connect, its retained state announced, and
its messages handed to it by the one task that reads the connection. With a listener the
session is persistent (:data:`LISTENER_SESSION_EXPIRY_S` under MQTT 5; under 3.1.1 until the
broker's own limit), so a QoS 1 command published while the connection is being
re-established is queued by the broker and delivered on reconnect instead of reaching
nobody; commands carry their own expiry (:mod:`streamer.app.commands_in`), so a queued one
never acts late. A publisher without listeners (``morning``, ``replay``, …) clears
``<base>/bridge/commands`` (an empty retained message) when it connects: a ``run`` killed
before it (whose Last Will covers ``<base>/bridge/state`` only) leaves no ``online`` there
for the CLI to trust.

Live samples (QoS 0) never touch the outbox: :meth:`MqttPublisher.send_live` publishes
them on the current connection, or fails at once when there is none (the pipeline counts
them as shed). A publisher given a :class:`~streamer.sinks.mqtt_live.LiveLink` (a team
worker's, shared by its partitions) sends them there instead, inline
(:meth:`MqttPublisher.publish_live`): the topic, the per-topic ``seq`` and the counters stay
the publisher's, only the connection is the link's. Passwords are handed to the client
library only, never logged.

The publisher implements the pipeline's ``Sink`` protocol (:mod:`streamer.app.pipeline`):
``accept``, ``run``, ``send_live``, ``drain``, ``status``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import math
import random
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Final, Protocol

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from streamer.cancel import cancellation_kept
from streamer.config import AthleteConfig, MqttConfig
from streamer.payloads import BRIDGE_OFFLINE, BRIDGE_ONLINE, encode_payload
from streamer.results import Result
from streamer.sinks.backoff import Backoff, network_backoff
from streamer.sinks.ha_discovery import discovery_messages
from streamer.sinks.live_seq import LIVE_SEQ_BLOCK, LiveSeqs
from streamer.sinks.mqtt_connect import (
    MqttTlsError,
    describe_failure,
    mqtt_client,
    process_client_id,
    tls_context,
)
from streamer.sinks.mqtt_live import LiveLink
from streamer.sinks.outbox import Entry, Message, Outbox
from streamer.store import Store, StoreError
from streamer.topics import Topics

_LOGGER: Final = logging.getLogger(__name__)

OUTBOX_BATCH: Final = 100
OUTBOX: Final = "mqtt"
"""The MQTT sink's outbox in the store (:class:`streamer.outbox.Outbox`)."""
"""Outbox messages put in flight together (sent in order on one connection)."""
HELD_PER_TOPIC: Final = 64
"""Live samples of one topic held while the live link's publisher has no ``seq`` number at
hand for it (:mod:`streamer.sinks.live_seq`: its first block on its way, or the store slow
to answer); past it the oldest are shed (QoS 0)."""
HELD_MAX_S: Final = 5.0
"""How long a live sample may wait for its number and still be published (s): one held
longer is shed when the numbers come, not published late as live."""
PENDING_CALLS_WARNING: Final = 10_000
"""aiomqtt warns above this many unfinished calls (its default, 10, is one small batch)."""
CONNECT_TIMEOUT_S: Final = 10.0
"""Longest wait for TCP + TLS + CONNACK before trying again."""
LISTENER_SESSION_EXPIRY_S: Final = 600
"""How long the broker keeps the session of a publisher with listeners while it is away
(MQTT 5 session expiry interval, s): its subscriptions and the QoS 1 commands queued for
them survive a reconnection or a broker restart of up to 10 min; a session nobody resumes
(a ``run`` killed for good) is then dropped with its queue. Commands expire sooner
(:data:`streamer.app.commands_in.COMMAND_TTL_S`)."""


UNACKED_WAIT_S: Final = 1.0
"""Longest wait, before a clean disconnect, for the broker's PUBACKs of QoS 1 messages still
in flight (a publisher stopped while its outbox batch or discovery configs were sent)."""


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _Link:
    """One connection's life as this publisher sees it (:attr:`alive`), from public
    aiomqtt alone: aiomqtt keeps whether a connection ended in a private future, but its
    public message iterator (``client.messages``) ends exactly when that future does.
    So a task of the link's reads the client's messages from the connect on, queues them
    for the session's receiver (:meth:`MqttPublisher._receive`, which starts once the
    session is set up, as it did when it read the client itself), and marks the link
    lost when the iterator ends. Reading that end also retrieves how the link ended: a
    hang-up that gave up before aiomqtt noticed a dead link would otherwise leave asyncio
    to log "Future exception was never retrieved" when it does. The task outlives the
    session in that case, until aiomqtt notices (at most its keepalive). How it ended is
    kept (:attr:`ended`) for the session to report; anything else the task raises (a bug)
    is logged when it ends, not left for asyncio to find."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.messages: asyncio.Queue[aiomqtt.Message | None] = asyncio.Queue()
        """The connection's messages in order; ``None`` once it is lost."""
        self.lost = asyncio.Event()
        self.ended: aiomqtt.MqttError | None = None
        """How the connection ended, as aiomqtt said (None: not yet, or cleanly)."""
        self.task = asyncio.create_task(self._read(client), name="mqtt link")
        self.task.add_done_callback(self._done)

    async def _read(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                self.messages.put_nowait(message)
        except aiomqtt.MqttError as exc:
            self.ended = exc  # the link ended, cleanly or not: the session says how
        finally:
            self.lost.set()
            self.messages.put_nowait(None)

    def cause(self) -> str:
        """How the connection ended in a few words: aiomqtt's innermost reason (a paho
        code such as "[code:7] The connection was lost."), or "" when it did not say."""
        if self.ended is None:
            return ""
        inner = self.ended.__cause__
        return str(inner if isinstance(inner, Exception) and str(inner) else self.ended)

    @staticmethod
    def _done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            _LOGGER.error("MQTT link reader failed: %r", exc, exc_info=exc)

    @property
    def alive(self) -> bool:
        """False once the connection ended (as aiomqtt saw it)."""
        return not self.lost.is_set()


class Listener(Protocol):
    """Subscribes on the publisher's connection (:meth:`MqttPublisher.listen`)."""

    name: str

    @property
    def filters(self) -> Sequence[str]:
        """The topic filters to subscribe to (QoS 1) on every connection."""
        ...

    def announce(self, listening: bool) -> Sequence[tuple[str, bytes]]:
        """Retained ``(topic, payload)`` messages saying whether it listens: published after
        subscribing (True) and at a clean shutdown (False)."""
        ...

    def on_link(self, up: bool) -> None:
        """Told when its subscriptions start (True) and when the connection ends (False)."""
        ...

    def handle(self, topic: str, payload: bytes, *, retained: bool) -> object:
        """One message on its filters; must not raise (a bad message never ends a session)."""
        ...


class MqttNotConnected(ConnectionError):
    """No broker connection right now (live samples are not queued: they are shed)."""


@dataclass
class MqttStatus:
    """Counters for the live view (:meth:`MqttPublisher.status` returns them as a dict)."""

    broker: str
    connected: bool = False
    connects: int = 0
    disconnects: int = 0
    published: int = 0  # QoS 1 outbox messages acknowledged by the broker
    live_published: int = 0
    shed: int = 0  # live samples not published: no connection, or their publish failed
    outbox_depth: int = 0
    ha_configs_sent: int = 0
    last_error: str | None = None
    connected_since_ns: int | None = None


@dataclass(frozen=True, slots=True)
class MqttMessage:
    """A QoS ≥ 1 message waiting in the MQTT outbox (``id`` increases in insertion order)."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool

    @classmethod
    def from_entry(cls, entry: Entry) -> MqttMessage:
        """The message an outbox row holds (its meta carries topic, QoS and retain flag)."""
        topic, qos, retain = (entry.meta.get(k) for k in ("topic", "qos", "retain"))
        if not (isinstance(topic, str) and isinstance(qos, int) and isinstance(retain, bool)):
            raise StoreError(f"corrupt MQTT outbox row {entry.id}: meta {entry.meta!r}")
        return cls(entry.id, topic, entry.payload, qos, retain)


class MqttOutbox:
    """The MQTT outbox of ``store``: messages numbered per topic (``seq``) as they are queued."""

    def __init__(self, store: Store) -> None:
        self.outbox = Outbox(store, OUTBOX)

    def enqueue(
        self, topic: str, render: Callable[[int], bytes], *, qos: int = 1, retain: bool = False
    ) -> int:
        """Queue ``render(seq)`` on ``topic`` for the topic's next ``seq``; returns the seq."""
        return self.enqueue_many([(topic, render, qos, retain)])[0]

    def enqueue_many(
        self, items: Sequence[tuple[str, Callable[[int], bytes], int, bool]]
    ) -> list[int]:
        """Queue ``(topic, render, qos, retain)`` messages in order, all or none.

        Each message is numbered on its topic in the same transaction, so a number is used
        only by a message that is durably queued. Returns the seqs.
        """

        def message(
            topic: str, render: Callable[[int], bytes], qos: int, retain: bool
        ) -> Callable[[int], Message]:
            return lambda seq: Message(render(seq), {"topic": topic, "qos": qos, "retain": retain})

        return self.outbox.enqueue_numbered(
            [(topic, message(topic, render, qos, retain)) for topic, render, qos, retain in items]
        )

    def peek(self, limit: int = 100, after_id: int = 0) -> list[MqttMessage]:
        """The oldest ``limit`` messages with ``id > after_id``, in insertion order."""
        return [MqttMessage.from_entry(e) for e in self.outbox.peek(limit, after_id)]

    def ack(self, through_id: int) -> int:
        """Remove every message with ``id <= through_id``; returns how many."""
        return self.outbox.ack(through_id)

    def depth(self) -> int:
        """Messages waiting."""
        return self.outbox.depth()


class MqttPublisher:
    """Publishes results to an MQTT broker through the store's outbox.

    Args:
        config: broker address, credentials, TLS, base topic, protocol, HA discovery.
        store: the SQLite store holding the outbox and the sequence numbers.
        athletes: configured athletes (for Home Assistant discovery).
        name: the sink's name in the pipeline's status.
        backoff: delays between connection attempts (default from ``config``).
        outbox_batch: outbox messages in flight at once.
        shared_state: the state topic (``topics.bridge_state``) is shared with other
            processes that come and go — a team partition's, which each successive owner
            publishes on. The publisher then reads it and says ``online`` again when it
            reads ``offline`` while connected: a predecessor's Last Will that the broker
            sent late (its keepalive ran out after the takeover) must not leave a served
            partition unavailable.
        live_link: where live samples go (:meth:`publish_live`), shared with other
            publishers of the process; None: on this publisher's own connection.
        live_seq_executor: where :meth:`publish_live`'s ``seq`` blocks are reserved
            (:class:`~streamer.sinks.live_seq.LiveSeqs`): a team partition's writing
            thread; None: the loop's default executor.
    """

    def __init__(
        self,
        config: MqttConfig,
        store: Store,
        *,
        athletes: Sequence[AthleteConfig] = (),
        name: str = "mqtt",
        backoff: Backoff | None = None,
        outbox_batch: int = OUTBOX_BATCH,
        shared_state: bool = False,
        live_link: LiveLink | None = None,
        live_seq_executor: concurrent.futures.Executor | None = None,
    ) -> None:
        self.name = name
        self.live_link = live_link
        self.shared_state = shared_state
        self.config = config
        self.store = store
        self.outbox = MqttOutbox(store)
        self.topics = Topics(config.base_topic, config.ha_prefix)
        self.athletes = tuple(athletes)
        self._backoff = backoff or network_backoff(config.reconnect_min_s, config.reconnect_max_s)
        self._rng = random.Random()
        self._batch = outbox_batch
        self._status = MqttStatus(broker=config.url, outbox_depth=self.outbox.depth())
        self._client: aiomqtt.Client | None = None
        self._owed: dict[aiomqtt.Client, set[asyncio.Future[None]]] = {}
        """Per connection, its QoS ≥ 1 publishes whose PUBACK has not come (:meth:`_send`)."""
        self._links: dict[aiomqtt.Client, _Link] = {}
        """Per connection still open as aiomqtt sees it, its :class:`_Link`."""
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set while the outbox is empty and connected
        self._closing = False
        self._live_seq: dict[str, tuple[int, int]] = {}  # topic -> (next, end exclusive)
        self._live_seqs = LiveSeqs(store.reserve_seq, live_seq_executor, self._release_held)
        """The live link's numbers (:meth:`publish_live`), reserved off the event loop."""
        self._held: dict[str, collections.deque[tuple[float, Result]]] = {}
        """Per topic, the live samples waiting for a ``seq`` number, each with when it was
        held (monotonic s; :data:`HELD_PER_TOPIC`, :data:`HELD_MAX_S`)."""
        self._listeners: list[Listener] = []
        self._tls: ssl.SSLContext | None = None
        # Unique per process: a second streamer on the broker must not take this one's
        # connection over (same id → the broker drops the older client).
        self._client_id = process_client_id("streamer", config.client_id)

    # --- Sink protocol ----------------------------------------------------------------------

    def accept(self, results: Sequence[Result]) -> None:
        """Queue durable results in the outbox (one SQLite transaction) and wake the sender.

        Each message is numbered (``seq``) in the same transaction. Live results are
        refused: they go through :meth:`send_live`.
        """
        self.wake(self.enqueue(results))

    def enqueue(self, results: Sequence[Result]) -> int:
        """:meth:`accept`'s part in the store: the messages queued and numbered, in the
        caller's transaction if one is open. Touches nothing of the event loop, so a thread
        may call it (team mode writes off the loop); :meth:`wake` then, on the loop, once the
        transaction committed. Returns how many messages were queued."""
        live = [r.kind.value for r in results if r.kind.is_live]
        if live:
            raise ValueError(f"live results {live} go through send_live, not the outbox")
        if not results:
            return 0
        items = [
            (self.topics.for_result(r), partial(encode_payload, r), r.qos, r.retain)
            for r in results
        ]
        self.outbox.enqueue_many(items)
        return len(items)

    def wake(self, queued: int) -> None:
        """:meth:`accept`'s part on the event loop: ``queued`` messages more in the outbox
        (:meth:`enqueue`, committed): the sender goes and sends them."""
        if not queued:
            return
        self._status.outbox_depth += queued
        self._idle.clear()
        self._wake.set()

    async def send_live(self, batch: Sequence[Result]) -> None:
        """Publish live samples with QoS 0 on the current connection, within
        ``publish_timeout_s`` for the batch.

        Raises :class:`MqttNotConnected` at once when there is none, the client's error
        when the connection fails meanwhile and :class:`TimeoutError` past the deadline;
        nothing is retried (QoS 0). With a live link, :meth:`publish_live` and
        :class:`MqttNotConnected` for what it shed.
        """
        if self.live_link is not None:
            if shed := self.publish_live(batch):
                raise MqttNotConnected(f"{shed} live samples shed: {self.config.url}")
            return
        client = self._client
        if client is None:
            self._status.shed += len(batch)
            raise MqttNotConnected(f"not connected to {self.config.url}")
        sends = []
        for result in batch:
            topic = self.topics.for_result(result)
            payload = encode_payload(result, self._next_live_seq(topic))
            # One deadline for the batch (below), none per publish: aiomqtt's own
            # timeout wraps each publish in a task and a timer (asyncio.wait_for), a
            # third of a live sample's CPU on a worker's loop (bench/team.py --steady).
            sends.append(
                self._send(client, topic, payload, qos=result.qos, retain=False, timeout_s=math.inf)
            )
        try:
            async with asyncio.timeout(self.config.publish_timeout_s):
                if len(sends) == 1:  # the usual case live: no task to gather
                    await sends[0]
                    outcomes: Sequence[BaseException | None] = [None]
                else:
                    outcomes = await asyncio.gather(*sends, return_exceptions=True)
        except BaseException:
            self._status.shed += len(batch)  # past the deadline: counted as not sent
            raise
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        self._status.live_published += len(outcomes) - len(failed)
        self._status.shed += len(failed)
        if failed:
            raise failed[0]

    def publish_live(self, batch: Sequence[Result]) -> int:
        """Publish live samples with QoS 0 on the live link, written before this returns
        (no task, no wait); returns how many were shed (counted in ``shed``): all of them
        while the link is down — numbered then by no ``seq`` — else those the link could not
        write. Needs :attr:`live_link`.

        Numbers come from blocks reserved off the event loop
        (:class:`~streamer.sinks.live_seq.LiveSeqs`): a sample of a topic with none at
        hand is held, in order, and sent when its block comes (:data:`HELD_PER_TOPIC`,
        :data:`HELD_MAX_S`); none after :meth:`close_live`."""
        link = self.live_link
        assert link is not None, "publish_live needs a live link"
        if not link.connected or self._live_seqs.closed:
            self._status.shed += len(batch)
            if not self._live_seqs.closed:
                link.shed_while_down(len(batch))
            return len(batch)
        messages = []
        shed = 0
        for result in batch:
            topic = self.topics.for_result(result)
            held = self._held.get(topic)
            if held is None:
                seq = self._live_seqs.take(topic)
                if seq is not None:
                    messages.append((topic, encode_payload(result, seq)))
                    continue
                held = self._held[topic] = collections.deque()
            if len(held) >= HELD_PER_TOPIC:
                held.popleft()
                shed += 1
            # Behind the topic's earlier samples, for their numbers.
            held.append((time.monotonic(), result))
        self._status.shed += shed
        self._live_seqs.refill()
        return shed + self._send_numbered(link, messages)

    def _release_held(self) -> None:
        """Blocks of numbers came (:class:`~streamer.sinks.live_seq.LiveSeqs`): the held
        samples that now have one go out, in order — shed instead when they were held
        longer than :data:`HELD_MAX_S` (no longer live)."""
        link = self.live_link
        if link is None or self._live_seqs.closed:
            return
        messages = []
        stale = time.monotonic() - HELD_MAX_S
        for topic in list(self._held):
            held = self._held[topic]
            while held and held[0][0] < stale:
                held.popleft()
                self._status.shed += 1
            while held and (seq := self._live_seqs.take(topic)) is not None:
                messages.append((topic, encode_payload(held.popleft()[1], seq)))
            if not held:
                del self._held[topic]
        self._live_seqs.refill()
        self._send_numbered(link, messages)

    def close_live(self) -> None:
        """The live link is no longer this publisher's (its partition stops): samples held
        for their numbers are shed (counted), none is published after this."""
        self._live_seqs.close()
        self._status.shed += sum(len(held) for held in self._held.values())
        self._held.clear()

    def _send_numbered(self, link: LiveLink, messages: list[tuple[str, bytes]]) -> int:
        """Write numbered samples on the link; how many it shed (counted)."""
        sent = link.publish(messages) if messages else 0
        self._status.live_published += sent
        shed = len(messages) - sent
        self._status.shed += shed
        return shed

    async def run(self) -> None:
        """Connect, deliver the outbox, reconnect with back-off; until cancelled or drained."""
        delays = self._backoff.delays(self._rng)
        while not self._stop_requested():
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (aiomqtt.MqttError, OSError, TimeoutError, MqttTlsError) as exc:
                self._note_disconnect(exc)
            if self._stop_requested():
                break
            if self._status.connected_since_ns is not None:
                delays = self._backoff.delays(self._rng)  # it connected: start again
            self._status.connected_since_ns = None
            delay = next(delays)
            _LOGGER.info("MQTT %s: reconnecting in %.1f s", self.config.url, delay)
            await asyncio.sleep(delay)

    async def drain(self, timeout_s: float) -> int:
        """Deliver the outbox for up to ``timeout_s``, say ``offline``, stop; returns how
        many messages stay in the outbox for the next start."""
        deadline = time.monotonic() + timeout_s
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, timeout_s - 0.5)):
                while self._status.outbox_depth > 0:
                    self._idle.clear()
                    await self._idle.wait()
        self._closing = True
        client = self._client
        if client is not None:
            # A clean disconnect sends no Last Will: the listeners' state, then the
            # bridge's, say offline here.
            goodbye = [m for listener in self._listeners for m in listener.announce(False)]
            goodbye.append((self.topics.bridge_state, BRIDGE_OFFLINE))
            for topic, payload in goodbye:
                remaining = max(0.1, deadline - time.monotonic())
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError, OSError):
                    await self._send(
                        client, topic, payload, qos=1, retain=True, timeout_s=min(remaining, 2.0)
                    )
        self._wake.set()  # let the sender notice the close
        return self._status.outbox_depth

    def status(self) -> dict[str, Any]:
        """The counters (:class:`MqttStatus`) as a dict."""
        return asdict(self._status)

    def listen(self, listener: Listener) -> None:
        """Subscribe ``listener``'s filters on this publisher's connection (from the next
        connection on: call it before :meth:`run`)."""
        self._listeners.append(listener)

    # --- connection ---------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """True once :meth:`drain` has run: the publisher is shutting down."""
        return self._closing

    def _stop_requested(self) -> bool:
        # A method, not the attribute: drain() flips it while run() awaits.
        return self._closing

    @property
    def connected(self) -> bool:
        """True while a broker connection is up."""
        return self._client is not None

    def _tls_context(self) -> ssl.SSLContext | None:
        if self._tls is None:
            self._tls = tls_context(self.config)
        return self._tls

    def _make_client(self, tls: ssl.SSLContext | None) -> aiomqtt.Client:
        client = mqtt_client(
            self.config,
            tls=tls,
            timeout_s=self.config.publish_timeout_s,
            identifier=self._client_id,
            will=aiomqtt.Will(self.topics.bridge_state, BRIDGE_OFFLINE, qos=1, retain=True),
            # With listeners, a persistent session: the broker queues their QoS 1 messages
            # (commands) while this connection is down, and resends one it delivered but
            # whose PUBACK it never got (the listener drops such a repeat).
            session_expiry_s=LISTENER_SESSION_EXPIRY_S if self._listeners else None,
            logger=_LOGGER,
            # The whole outbox batch in flight at once: one round trip per batch, not per
            # message (paho's default window is 20).
            max_inflight_messages=self._batch,
        )
        # Whole batches of publishes in flight are normal here, not a leak worth a warning.
        client.pending_calls_threshold = PENDING_CALLS_WARNING
        return client

    async def _session(self) -> None:
        """One connection: say online, send HA configs, deliver the outbox until it fails."""
        tls = await asyncio.to_thread(self._tls_context)  # reads certificate files
        client = self._make_client(tls)
        # Every aiomqtt call this task awaits itself sits in cancellation_kept(): a cancel
        # arriving with the broker's answer must stop run(), not be lost (mqtt_connect).
        connected = False
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                with cancellation_kept():
                    await client.__aenter__()
                    connected = True
                    self._watch(client)
        except BaseException:
            if connected:  # connected, then cancelled or timed out: hang up before leaving
                await self._hang_up(client)
            raise
        try:
            self._client = client
            self._status.connected = True
            self._status.connects += 1
            self._status.connected_since_ns = time.time_ns()
            _LOGGER.info("MQTT connected to %s as %s", self.config.url, self._client_id)
            with cancellation_kept():
                await self._send(
                    client, self.topics.bridge_state, BRIDGE_ONLINE, qos=1, retain=True
                )
                if not self._listeners:
                    # Nothing here listens for commands: a `run` killed before this process
                    # left `online` on bridge/commands (its Will covers bridge/state only),
                    # which this connection's `online` on bridge/state would make true again.
                    # Cleared (an empty retained message), not set: no run, no state.
                    await self._send(client, self.topics.bridge_commands, b"", qos=1, retain=True)
            if self.shared_state:
                with cancellation_kept():
                    await client.subscribe(self.topics.bridge_state, qos=1)
            tasks = [asyncio.create_task(self._send_outbox(client), name="mqtt outbox")]
            # Until the session ends, however it ends (a stop while discovery is sent too):
            # its tasks go with it.
            try:
                if self._ha_discovery:
                    with cancellation_kept():
                        await client.subscribe(self.topics.ha_status, qos=1)
                    await self._send_discovery(client)
                for listener in self._listeners:
                    with cancellation_kept():
                        refused = [
                            f for f in listener.filters if not await self._subscribe(client, f)
                        ]
                        if refused:  # never say "listening" when nothing can arrive
                            _LOGGER.warning(
                                "MQTT %s: the broker refused %s a subscription to %s (its ACL?): "
                                "%s gets nothing",
                                self.config.url,
                                self.config.username or "this client",
                                ", ".join(refused),
                                listener.name,
                            )
                            # …nor leave a stale `online` of an earlier process standing.
                            for topic, payload in listener.announce(False):
                                await self._send(client, topic, payload, qos=1, retain=True)
                            continue
                        for topic, payload in listener.announce(True):
                            await self._send(client, topic, payload, qos=1, retain=True)
                    listener.on_link(True)
                tasks.append(asyncio.create_task(self._receive(client), name="mqtt receive"))
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                task.result()  # re-raise the failure that ended the session
        finally:
            self._client = None
            self._status.connected = False
            for listener in self._listeners:
                listener.on_link(False)
            await self._hang_up(client)

    @staticmethod
    async def _subscribe(client: aiomqtt.Client, topic_filter: str) -> bool:
        """Subscribe with QoS 1; False when the broker refuses (SUBACK 0x80 or above)."""
        granted = await client.subscribe(topic_filter, qos=1)
        # MQTT 3.1.1: granted QoS as ints (0x80: failure); MQTT 5: reason codes.
        return not any(
            code.is_failure if isinstance(code, ReasonCode) else code >= 0x80 for code in granted
        )

    @property
    def _ha_discovery(self) -> bool:
        return self.config.ha_discovery and bool(self.athletes)

    def _watch(self, client: aiomqtt.Client) -> None:
        """Follow ``client``'s new connection (:class:`_Link`) until it ends."""
        link = _Link(client)
        self._links[client] = link
        link.task.add_done_callback(lambda _: self._links.pop(client, None))

    def _client_alive(self, client: aiomqtt.Client) -> bool:
        """Whether ``client``'s connection is up as far as aiomqtt knows (:class:`_Link`)."""
        link = self._links.get(client)
        return link is not None and link.alive

    async def _hang_up(self, client: aiomqtt.Client) -> None:
        """Disconnect ``client`` (at most 2 s); a failure to say goodbye is no error. On a
        dead link the disconnect may give up before aiomqtt records how the link ended:
        the connection's :class:`_Link` reads that outcome when it comes."""
        if self.shared_state and self._client_alive(client):
            # Its own state topic echoes what it publishes there: stop that traffic and, by
            # the UNSUBACK, have read all of it (see _acknowledged: the broker must not
            # write to a socket this side closed).
            with contextlib.suppress(aiomqtt.MqttError, OSError, TimeoutError):
                async with asyncio.timeout(UNACKED_WAIT_S):
                    await client.unsubscribe(self.topics.bridge_state)
        await self._acknowledged(client, UNACKED_WAIT_S)
        with contextlib.suppress(aiomqtt.MqttError, OSError, TimeoutError):
            async with asyncio.timeout(2.0):
                with cancellation_kept():
                    await client.__aexit__(None, None, None)

    async def _send(
        self,
        client: aiomqtt.Client,
        topic: str,
        payload: bytes,
        *,
        qos: int,
        retain: bool,
        timeout_s: float | None = None,
    ) -> None:
        """``client.publish``, accounted while the broker owes its PUBACK (QoS ≥ 1): the
        publish itself is shielded, so a caller cancelled meanwhile (a session ending, a
        stop) leaves it waiting for that PUBACK, and :meth:`_acknowledged` sees it."""
        call = client.publish(topic, payload, qos=qos, retain=retain, timeout=timeout_s)
        if qos == 0:
            await call
            return
        publish = asyncio.ensure_future(call)
        owed = self._owed.setdefault(client, set())
        owed.add(publish)
        publish.add_done_callback(owed.discard)
        publish.add_done_callback(_consume_outcome)  # its caller may be gone
        await asyncio.shield(publish)

    async def _acknowledged(self, client: aiomqtt.Client, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until the broker acknowledged every QoS 1 message
        sent on ``client``'s live connection (:meth:`_send`'s account). mosquitto before
        2.0.22 takes a client that disconnects before it could write a PUBACK for a lost
        one ("disconnected due to out of memory", eclipse-mosquitto/mosquitto#3253) and
        sends its Last Will: an ``offline`` after a clean stop, which a team partition
        handed to another worker must not show (the broker writing anything to a socket
        the client closed does the same). On a link already down nothing is awaited."""
        owed = self._owed.pop(client, set())
        link = self._links.get(client)
        if not owed or link is None or not link.alive:
            return
        # Every PUBACK, or the link lost meanwhile (they will never come), or the time.
        acked = asyncio.ensure_future(asyncio.wait(set(owed)))
        lost = asyncio.ensure_future(link.lost.wait())
        try:
            await asyncio.wait(
                {acked, lost}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            acked.cancel()  # not the publishes: asyncio.wait never cancels what it waits for
            lost.cancel()

    def _note_disconnect(self, exc: BaseException) -> None:
        self._status.disconnects += 1
        # The message of a connection error never holds the password (paho/aiomqtt
        # report codes and socket errors), but keep it short for the live view.
        self._status.last_error = describe_failure(self.config, exc)[:300]
        _LOGGER.warning(
            "MQTT %s: connection lost or refused (%s)", self.config.url, self._status.last_error
        )

    # --- delivery ---------------------------------------------------------------------------

    async def _send_outbox(self, client: aiomqtt.Client) -> None:
        """Send the outbox in order; acknowledge the prefix that the broker acknowledged."""
        while not self._closing:
            self._wake.clear()
            batch = await asyncio.to_thread(self.outbox.peek, self._batch)
            if not batch:
                self._status.outbox_depth = 0
                self._idle.set()
                await self._wake.wait()
                continue
            outcomes = await asyncio.gather(
                *(self._publish(client, m) for m in batch), return_exceptions=True
            )
            acked = 0
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    break
                acked += 1
            if acked:
                # Only a prefix: a later message must never leave before an earlier one.
                await asyncio.to_thread(self.outbox.ack, batch[acked - 1].id)
                self._status.published += acked
                self._status.outbox_depth = max(0, self._status.outbox_depth - acked)
            if acked < len(outcomes):
                failure = outcomes[acked]
                assert isinstance(failure, BaseException)
                if isinstance(failure, asyncio.CancelledError):
                    raise failure
                raise aiomqtt.MqttError(f"publish failed: {failure}") from failure

    async def _publish(self, client: aiomqtt.Client, message: MqttMessage) -> None:
        await self._send(
            client,
            message.topic,
            message.payload,
            qos=message.qos,
            retain=message.retain,
            timeout_s=self.config.publish_timeout_s,
        )

    def _next_live_seq(self, topic: str) -> int:
        nxt, end = self._live_seq.get(topic, (0, 0))
        if nxt >= end:
            nxt = self.store.reserve_seq(topic, LIVE_SEQ_BLOCK)
            end = nxt + LIVE_SEQ_BLOCK
        self._live_seq[topic] = (nxt + 1, end)
        return nxt

    async def set_athletes(self, athletes: Sequence[AthleteConfig]) -> None:
        """Announce ``athletes`` to Home Assistant from now on (a team worker's central
        registry changed): their discovery configs go out at once on the current connection
        and at every reconnection after. Configs of athletes no longer named are left
        standing: deleting an athlete's entities is the user's call in Home Assistant."""
        athletes = tuple(athletes)
        if athletes == self.athletes:
            return
        had = self._ha_discovery
        self.athletes = athletes
        client = self._client
        if client is None or not self._ha_discovery:
            return  # the next connection announces them
        try:
            if not had:  # this session never listened for Home Assistant's birth message
                await client.subscribe(self.topics.ha_status, qos=1)
            await self._send_discovery(client)
        except aiomqtt.MqttError as exc:
            _LOGGER.info("MQTT discovery configs not sent now (%s): sent at reconnection", exc)

    async def _send_discovery(self, client: aiomqtt.Client) -> None:
        messages = discovery_messages(self.topics, self.athletes)
        await asyncio.gather(
            *(
                self._send(
                    client,
                    topic,
                    payload,
                    qos=1,
                    retain=True,
                    timeout_s=self.config.publish_timeout_s,
                )
                for topic, payload in messages
            )
        )
        self._status.ha_configs_sent += len(messages)

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Read the connection: Home Assistant's birth message (re-send the discovery
        configs), the listeners' messages; end the session when the broker drops the
        connection while nothing is being sent (a broker restart, another client taking
        this id over), so that the status says so and the reconnection starts at once, not
        at the next publish."""
        link = self._links.get(client)
        if link is None:
            raise aiomqtt.MqttError("the connection ended before its session was set up")
        while (message := await link.messages.get()) is not None:
            if self.shared_state and message.topic.matches(self.topics.bridge_state):
                if message.payload in (BRIDGE_OFFLINE, BRIDGE_OFFLINE.decode()):
                    _LOGGER.info(
                        "%s: offline by another's Last Will; online again",
                        self.topics.bridge_state,
                    )
                    await self._send(
                        client, self.topics.bridge_state, BRIDGE_ONLINE, qos=1, retain=True
                    )
                continue
            if self._ha_discovery and message.topic.matches(self.topics.ha_status):
                if message.payload in (b"online", "online"):
                    _LOGGER.info("Home Assistant is online: re-sending discovery configs")
                    await self._send_discovery(client)
                continue
            payload = message.payload
            data = payload if isinstance(payload, bytes) else str(payload).encode()
            for listener in self._listeners:
                if any(message.topic.matches(f) for f in listener.filters):
                    listener.handle(str(message.topic), data, retained=message.retain)
        cause = link.cause()
        raise aiomqtt.MqttError(
            f"the broker closed the connection ({cause})"
            if cause
            else "the broker closed the connection"
        ) from link.ended
