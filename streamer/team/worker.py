"""A team worker: whole partitions of the raw stream → the athletes' processing → PostgreSQL.

For each partition it owns (:mod:`streamer.team.partitions`), a worker reads the stream
subject of that partition (:func:`streamer.team.wire.partition_subject`) with an ordered
consumer and, message by message in the stream's order:

1. decodes it (:func:`streamer.team.wire.decode`); a raw notification or device event
   (gap, battery) from a gateway that does not hold the device's lease — the last
   :class:`~streamer.team.wire.LeaseGranted` for that athlete and device *in the stream's
   order* — is dropped (dual-connection straps); a grant of a device held before marks a
   gap in its stream (:func:`~streamer.team.wire.handover_gap`: a new link). A gateway
   releases a lease only after its rows of the athlete are in the stream, so a hand-over
   drops nothing; what is dropped is a *former* holder's backlog that arrives after
   another gateway's grant (cut off from NATS past the TTL, then killed). Kept so, not
   taken by record time before the new grant: those records are older than the new
   holder's, already processed, and the processors need each device's records in time
   order (the SmO2 detector refuses an older sample; an old RR would join the live HRV
   window's series) — taking them would mean holding every such takeover back for a
   former holder that may never return (deploy/README.md, "the lease rule", has the
   figures). The protocol markers of such a backlog get the same treatment by their own
   rule, since any gateway may take an athlete's command (a shared subscription) and none
   holds a lease on markers: a protocol marker (:data:`MARKER_FENCE`) older than the
   athlete's last protocol marker taken, which another gateway sent, is dropped if it was
   held back at its gateway longer than a NATS outage delays all of them
   (:func:`late_marker`) — a cut-off gateway's queued morning end would otherwise close
   the next gateway's reading, or a reading that took the next gateway's session. The
   fence is in the athlete's replay point, and the hold is measured on the stream's own
   stored time, so a takeover decides as the worker before did;
2. decodes a notification with its characteristic's codec (as ``replay`` does) and hands the
   record or marker to the athlete's :class:`~streamer.athlete.AthleteState`, made by the
   one factory of athletes (:class:`streamer.app.App`): the same processors and rules as
   ``run``;
3. sends its live samples at the end of the message's *pass* (QoS 0; never behind a write),
   and writes what it produced — history rows, the alert book and baselines saved
   meanwhile, every sink's outbox message (the existing MQTT and InfluxDB sinks, on the
   partition's outboxes), lease grants, replay points — and the partition's checkpoint in
   **one transaction** on the connection that holds the partition's advisory lock, after
   checking the lock is still held there. The transaction is per pass, not per message: the
   messages at hand (up to :data:`WRITE_BATCH`) are handled, then their outputs written
   together with the checkpoint at the last of them; a crash before the commit loses all of
   them, so the next owner makes them all again. A worker that lost its connection or its
   lock cannot commit anything. The transaction is written in the partition's own thread,
   one at a time and in order: the consumer handles the next messages and sends their live
   samples meanwhile instead of the whole process's event loop waiting for the commit (a
   loaded machine's fsync: tens of ms), and the sinks are woken on the loop once it
   committed — nothing but live samples is published before it is durable.

The sinks drain the partition's outboxes to mosquitto and InfluxDB as in ``run``.

**Passes and the linger.** At real time a partition's messages arrive one by one (each
device on its own clock), and a message handled alone pays every fixed cost on its own:
the event loop's wake-ups, the NATS read, one task per sink for its live samples, the MQTT
connection's write registration and a transaction. So the consumer handles messages in
*passes*, as Kafka's producer batches with ``linger.ms``: the first message of a pass
waits for the worker's :class:`Linger` (at most ``linger_s``,
:data:`DEFAULT_LINGER_S`; the tick is shared by every partition of the worker, so their
passes wake together), then it and everything that arrived meanwhile (up to
:data:`WRITE_BATCH`) are decoded and processed in stream order, their live samples handed
to each sink in one call (the MQTT publishers write them on the worker's one live
connection, :class:`~streamer.sinks.mqtt_live.LiveLink`, inside that call: no task, no
write registration) and their outputs written in one transaction with the checkpoint. A
backlog (a full pass at hand, or the last pass full) does not linger. Nothing changes in
what is written or published, nor in its order: only when.

**Memory.** nats-py holds a partition's messages ahead of its reader up to
:data:`PENDING_MSGS_LIMIT` (:data:`PENDING_BYTES_LIMIT`) and drops what comes past them (a
slow consumer: a backlog pushed faster than the reader handles it, or a reader stalled behind
a hung commit). It drops them after the ordered consumer's sequence tracking, so nothing
would bring them back: the partition handles what it holds from before the first dropped
message, then reads on from that message with a new consumer (:meth:`Partition.slow_consumer`)
— nothing lost, nothing twice, no restart.

**Takeover.** The in-memory state is rebuilt by replaying the stream, not saved whole.
Each athlete keeps a replay point: a stream sequence and a snapshot of its signal windows
there (:func:`windows_snapshot`: the beat clocks, live HRV windows and quality gate, the
SmO2 detector, the force clock, the live view's numbers — a few kB) — the start of its open
morning reading, session or grip test, else a point at most :data:`SNAPSHOT_EVERY_S` of
record time back and never before its last protocol end (whose rules, alert book and
baselines are in the store already). The points are written with the checkpoints. A new
owner restores each athlete from the store (as ``run`` does after a restart), restores its
windows, starts the consumer at the smallest point, skips an athlete's messages before its
own point, processes the rest up to the checkpoint *muted* (no output, no save) and goes on
normally after it: no output at or below the checkpoint, and after it the outputs the
worker before would have made. A partition sending only live samples (a morning reading)
writes its checkpoint alone every :data:`LIVE_CHECKPOINT_S`, so a takeover sends at most
that much of them again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import pickle
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, NamedTuple, Protocol, cast

import nats
import psycopg
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import SlowConsumerError
from nats.js import api

from devices.recording import RecordedNotification, RecordingError, decode_notification
from processors.rules import RuleThresholds
from streamer.app.assembly import athlete_thresholds
from streamer.app.commands_in import COMMAND_DEVICE
from streamer.app.pipeline import Sink
from streamer.athlete import AthleteState
from streamer.athlete.events import (
    GripEnd,
    GripPhase,
    GripPhaseEnd,
    MorningEnd,
    MorningStart,
    SessionEnd,
    SessionRpe,
    SessionStart,
)
from streamer.cancel import cancellation_kept
from streamer.config import AthleteConfig, Config
from streamer.results import (
    GripPayload,
    JsonValue,
    LabPayload,
    MorningPayload,
    Result,
    SessionPayload,
)
from streamer.sinks.mqtt import MqttPublisher
from streamer.sinks.mqtt_live import LiveLink
from streamer.store import Row, Store
from streamer.team import wire
from streamer.team.partitions import mark_stopping, others_running
from streamer.team.pg_store import LOCK_CLASS, PartitionLost, PgStore, PgStoreError, connect
from streamer.team.stream import warn_if_server_too_old
from streamer.topics import Topics

_LOGGER: Final = logging.getLogger(__name__)

SNAPSHOT_EVERY_S: Final = 60.0
"""Record time between two snapshots of an athlete's windows outside a protocol: what a
takeover replays at most there (a snapshot costs ~1–8 ms and a few kB; one a minute per
athlete is ~3% of a core for 200 athletes)."""

GOODBYE_WAIT_S: Final = 10.0
"""At a clean stop, how long the worker waits for the broker to take its ``offline``
goodbye (s) when its availability connection is down or reconnecting then: a broker
restarting comes back within seconds; one gone for longer leaves the retained states as
they were (the worker's own Last Will already fired, if the connection broke)."""
WRITE_BATCH: Final = 128
"""Stream messages in one pass at most (see the module docstring: passes), whose outputs
share one transaction (several passes' when they were handled while a write was in
flight): a backlog is written every this many messages."""

STOP_WAIT_S: Final = 5.0
"""During a partition's stop, how long a statement may run on its connection before it is
cancelled (s; seen running at every look, :data:`STOP_POLL_S` apart): a commit waiting for
a lock another session holds would otherwise hold the stop — the sinks' last writes, the
close — and with it the worker's claiming round (a dead worker's partitions not taken over)
and its exit. A cancelled commit rolls back; the next owner replays it from the checkpoint.
(A server that stopped answering is left to the connection's TCP timeouts, ~11 s:
:data:`~streamer.team.pg_store.KEEPALIVE`.)"""
STOP_POLL_S: Final = 0.25
"""How often a stopping partition looks whether a statement runs on its connection (s)."""

DEFAULT_LINGER_S: Final = 0.02
"""How long the first message of a pass waits for others (s; ``redox-streamer worker
--linger-ms``); a live sample arrives that much later at most, against the 100 ms live
latency target (issue 13). 0: a message is handled at once. Measured at real time with
the devices dephased, 0 against 20 ms run side by side (``bench/team_worker.py
--realtime``, one worker): 200 athletes, 1.06 → 1.51 messages per pass and 610 → 520 µs
of worker CPU per stream message; 100 athletes, 918 → 764 µs; 40 ms, 462 µs at 200."""

WRITE_BACKLOG: Final = 4 * WRITE_BATCH
"""Stream messages handled while a write is in flight at most before the consumer waits
for it (a backlog's memory bound; live, the next write just takes what came meanwhile)."""

PENDING_MSGS_LIMIT: Final = 64 * 1024
"""Stream messages nats-py holds for a partition's consumer at most before it drops the next
ones (its subscription's ``pending_msgs_limit``): the worker's memory bound, since nothing
else bounds it. nats-server pushes an ordered consumer's messages up to a flow-control window
(32 MiB on the wire since nats-server 2.10, ≈ 115 000 of our ~290 B messages), and nats-py
answers the "consumer stalled" request an idle heartbeat carries (every 5 s) at once,
whatever its reader handled: a reader slower than the push — a takeover's backlog read by a
loop shared with 15 other partitions, or a commit waiting for PostgreSQL — gains another
half window every 5 s (a review measured 74 k → 344 k messages held in 25 s). Past the
limit nats-py drops, and the partition reads on from the first dropped message
(:meth:`Partition.slow_consumer`): a drop costs a new consumer and a second delivery of what
was dropped, nothing else. Memory: ~0.7 kB per held message in Python (tracemalloc, nats-py
``Msg`` objects like ours), so ≈ 45 MB per partition and ≈ 0.7 GB for a worker holding 16
partitions, at worst (nats-py's default, 512 Ki messages, eight times that)."""

LIVE_CHECKPOINT_S: Final = 1.0
"""How long a partition's live samples go on without a write at most (wall s): it then
writes its checkpoint alone. Only durable outputs, saves, lease grants and protocol ends
make a write, so through a morning reading's first minute — RR and live samples, nothing
durable before its first HRV window — the checkpoint stayed at the reading's start, and a
takeover published every live sample since then again: the 200-athlete fault bench (every
reading in its first minute when the workers were killed, 41 s in) sent each of those live
samples two or three times, the repeats 20–42 s late. A takeover now sends again at most
this much of them (the dead worker's last ones may have gone out or not); the cost is one
small transaction per live partition per period (``bench/team_worker.py --realtime 60
--athletes 200``, two runs each: 180 → 1,070 transactions, 15.6 → 16.9% of a core, live
p99 26 ms either way)."""

SUBSCRIBE_ATTEMPTS: Final = 3
"""Times a partition asks for a new consumer after a gap (1 s apart) before it ends."""

PENDING_BYTES_LIMIT: Final = 32 * 1024 * 1024
"""Bodies' bytes nats-py holds for a partition's consumer at most (its subscription's
``pending_bytes_limit``); our bodies are ~76 B, so :data:`PENDING_MSGS_LIMIT` binds first."""

_STARTS: Final = {MorningStart: "morning", SessionStart: "session", GripPhase: "grip"}
_ENDS: Final = {MorningEnd: "morning", SessionEnd: "session", GripEnd: "grip", SessionRpe: ""}


class Linger:
    """A worker's shared linger: the first partition whose pass starts opens a tick
    ``seconds`` ahead, and every partition whose pass starts before it fires joins it, so
    the worker's partitions wake together (one timer, one turn of the loop) rather than
    each on its own clock."""

    def __init__(self, seconds: float) -> None:
        if not seconds >= 0:  # NaN too
            raise ValueError(f"linger {seconds!r} s: give 0 or more")
        self.seconds = seconds
        # One future per waiter, not one shared: a waiter cancelled (its partition
        # stopping) cancels its own only. (asyncio.wait on a shared one did the same at
        # ~3% of a live worker's CPU: a set, a waiter and callbacks per pass.)
        self._waiters: list[asyncio.Future[None]] = []

    async def wait(self) -> None:
        """Until the open tick fires (opening one ``seconds`` from now if none is open)."""
        if self.seconds <= 0:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            loop.call_later(self.seconds, self._fire)
        await waiter

    def _fire(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class _QueuingSink(Sink, Protocol):
    """A sink whose ``accept`` comes in two parts (:class:`MqttPublisher`,
    :class:`~streamer.sinks.influx.InfluxWriter`): ``enqueue`` in the transaction, from the
    writing thread, and ``wake`` on the event loop once it committed."""

    def enqueue(self, results: Sequence[Result]) -> int: ...

    def wake(self, queued: int) -> None: ...


class _StateWrites:
    """The athletes' history as they see it: reads from the partition's store, saves (alert
    book, baselines) held until the next transaction of outputs — or dropped while muted
    (a takeover replaying what the store already holds)."""

    def __init__(self, store: PgStore) -> None:
        self.store = store
        self.muted = False
        self.pending: dict[tuple[str, str], dict[str, JsonValue]] = {}
        self.writing: dict[tuple[str, str], dict[str, JsonValue]] = {}
        """The saves taken by the transaction being written (:meth:`take`), until it
        committed: what the store does not show yet."""

    def morning_history(self, athlete: str) -> list[Row[MorningPayload]]:
        return self.store.morning_history(athlete)

    def sessions(self, athlete: str) -> list[Row[SessionPayload]]:
        return self.store.sessions(athlete)

    def grip_tests(self, athlete: str) -> list[Row[GripPayload]]:
        return self.store.grip_tests(athlete)

    def lab_entries(self, athlete: str) -> list[Row[LabPayload]]:
        return self.store.lab_entries(athlete)

    def load_alert_book(self, athlete: str) -> dict[str, JsonValue] | None:
        key = (athlete, "")
        return self.pending.get(key) or self.writing.get(key) or self.store.load_alert_book(athlete)

    def save_alert_book(self, athlete: str, state: Mapping[str, JsonValue]) -> None:
        if not self.muted:
            self.pending[(athlete, "")] = dict(state)

    def save_baseline(self, athlete: str, name: str, data: Mapping[str, JsonValue]) -> None:
        if not self.muted:
            self.pending[(athlete, name)] = dict(data)

    def take(self) -> dict[tuple[str, str], dict[str, JsonValue]]:
        """The held saves, for the next transaction (:meth:`write` them in it); they show
        in :meth:`load_alert_book` until :meth:`written`."""
        taken, self.pending = self.pending, {}
        self.writing.update(taken)
        return taken

    def write(self, saves: Mapping[tuple[str, str], Mapping[str, JsonValue]]) -> None:
        """Write ``saves`` (from :meth:`take`; inside the outputs' transaction, any thread)."""
        for (athlete, name), data in saves.items():
            if name:
                self.store.save_baseline(athlete, name, data)
            else:
                self.store.save_alert_book(athlete, data)

    def written(self) -> None:
        """The transaction of the saves taken committed: the store shows them."""
        self.writing.clear()


@dataclass(frozen=True, slots=True)
class MarkerFence:
    """The last protocol marker a partition took for an athlete: an older marker from
    another gateway, held back there, is late (the module docstring, step 1)."""

    t_ns: int  # its record time
    gateway: str  # the gateway that sent it ("" unknown: fences nothing)


MARKER_FENCE: Final[Mapping[type, bool]] = {
    MorningStart: True,
    MorningEnd: True,
    SessionStart: True,
    SessionEnd: True,
    SessionRpe: False,
    GripPhase: True,
    GripPhaseEnd: True,
    GripEnd: True,
}
"""The protocol markers the fence applies to → whether taking one moves the fence. One
fence for all protocols, not one each: an older marker must not act after another
protocol's newer one either, since an open protocol takes every record as it comes — a
cut-off gateway's morning end, let through behind the next gateway's session start,
closed a reading that had taken that session's beats (bench/team.py: 11 readings). An
RPE amends the open or the last session and opens or closes nothing: a late one is
refused, but an RPE given at one gateway does not make the session end sent a moment
before at another late. Not a lab entry: its time is when the sample was taken, often days
before it is entered, and it opens nothing."""

MARKER_BACKLOG_S: Final = 20.0
"""A marker is late only if it reached the stream this long (s) after its gateway received
it (the stream's stored time − ``Redox-Received``: the gateway's and the NATS servers'
clocks must agree to within a few seconds): a backlog of a gateway cut off by itself.
Above what one NATS outage makes every gateway's markers wait (bench/team.py: writes stall
6–8 s at a leader's loss, 11 s at a whole cluster's restart, plus the publish timeout and
the drain), so markers that one outage delayed at several gateways are taken in stream
order; below the lease TTL (30 s), after which a cut-off gateway's devices move on."""


CLOCK_AHEAD_S: Final = 2.0
"""A protocol marker stamped received by its gateway this long (s) after the stream stored
it shows that gateway's clock ahead of the NATS servers': the worker says so (once per
gateway and partition), since the marker fence reads a gateway's hold across the two clocks
(:data:`MARKER_BACKLOG_S`) — a backlog of a gateway ahead by more than its hold minus
that is not fenced."""


def late_marker(fence: MarkerFence | None, t_ns: int, gateway: str, held_s: float | None) -> bool:
    """Whether a protocol marker of ``gateway`` stamped ``t_ns``, which reached the stream
    ``held_s`` seconds after that gateway received it (None: not known), comes too late
    behind ``fence``: older than the last protocol marker taken, which another gateway
    sent, and held back longer than :data:`MARKER_BACKLOG_S`. One gateway's markers reach
    the stream in the order it received them (its outbox), so its own are never fenced
    against each other (a clock stepped back by NTP changes nothing)."""
    return (
        fence is not None
        and bool(gateway)
        and bool(fence.gateway)
        and gateway != fence.gateway
        and t_ns < fence.t_ns
        and held_s is not None
        and held_s > MARKER_BACKLOG_S
    )


def windows_snapshot(state: AthleteState, fence: MarkerFence | None = None) -> bytes:
    """The athlete's signal windows and marker fence — what a replay from this point needs
    besides the records (pickled: written and read by workers only, in the club's own
    database; the fence as a plain pair, so a snapshot does not name this module's
    classes)."""
    plain = None if fence is None else (fence.t_ns, fence.gateway)
    return pickle.dumps(
        (state.heart, state.muscle, state.force_clock, state.snapshot, plain),
        protocol=pickle.HIGHEST_PROTOCOL,
    )


def restore_windows(state: AthleteState, blob: bytes) -> MarkerFence | None:
    """Put a :func:`windows_snapshot` back into ``state`` (before replaying from its point);
    its marker fence (None in a snapshot written before there was one)."""
    heart, muscle, force_clock, snapshot, *rest = pickle.loads(blob)
    for f in dataclasses.fields(snapshot):
        setattr(state.snapshot, f.name, getattr(snapshot, f.name))
    heart.snapshot = muscle.snapshot = state.snapshot  # the one the live view and rules see
    state.heart, state.muscle, state.force_clock = heart, muscle, force_clock
    # Before the fence: four items. A build between kept one fence per protocol (a dict):
    # not taken — no fence only takes a marker one would have dropped.
    plain = rest[0] if rest and isinstance(rest[0], tuple) else None
    return None if plain is None else MarkerFence(*plain)


class StreamMessage(NamedTuple):
    """One message of a partition's stream, as :meth:`Partition.handle` takes it."""

    subject: str
    body: bytes
    headers: Mapping[str, str]
    seq: int  # its stream sequence
    stored_ns: int  # when the server stored it (its clock, ns since the epoch)


def _at_hand(msg: Msg) -> StreamMessage:
    meta = msg.metadata
    stored_ns = round(meta.timestamp.timestamp() * 1e6) * 1000  # nats-py keeps µs
    return StreamMessage(msg.subject, msg.data, msg.headers or {}, meta.sequence.stream, stored_ns)


def _held_s(headers: Mapping[str, str], stored_ns: int) -> float | None:
    """How long a message waited at its gateway before the stream stored it (s; None
    without the gateway's ``Redox-Received``, or with one that is not decimal digits)."""
    received = headers.get(wire.RECEIVED_HEADER, "")
    return (stored_ns - int(received)) / 1e9 if received.isdigit() else None


@dataclass
class _Batch:
    """One transaction of outputs, taken on the event loop (:meth:`Partition._take`: what
    the handled messages left, the athletes' replay points snapshotted there) and written
    by :meth:`Partition._commit` in any thread."""

    seq: int  # the checkpoint: the last message handled
    staged: list[tuple[int, list[Result]]]  # (seq, durable outputs) per message
    saves: dict[tuple[str, str], dict[str, JsonValue]]
    leases: list[tuple[str, str, int, str]]
    points: list[tuple[str, int, bytes]]  # (athlete, seq, windows) replay points changed
    queued: list[int] = field(default_factory=list)  # per sink: messages queued (committed)
    results: int = 0
    errors: int = 0  # messages whose outputs could not be kept (logged)


@dataclass
class _Track:
    """One athlete of a partition: its processing state and where a takeover would replay."""

    state: AthleteState
    skip_below: int = 0  # takeover: this athlete's messages before its replay point
    open: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    """Open protocol → (seq of its start, windows before it)."""
    point: tuple[int, bytes] | None = None  # the last snapshot outside protocols
    point_t_ns: int = 0
    last_t_ns: int = 0
    ended: bool = False  # a protocol ended since the last snapshot
    touched: bool = False  # processed a message since the last write
    written: int | None = None  # the replay point last written
    retuned: RuleThresholds | None = None
    """Thresholds changed in the central registry during a protocol: applied once no
    protocol is open (one protocol is judged by one set of thresholds)."""
    fence: MarkerFence | None = None  # the last protocol marker taken

    def snapshot(self) -> bytes:
        """:func:`windows_snapshot` of this athlete now."""
        return windows_snapshot(self.state, self.fence)

    def replay_point(self, next_seq: int) -> tuple[int, bytes]:
        """(seq, windows) a takeover starts this athlete from, after the write of
        ``next_seq - 1``: a fresh snapshot when a protocol ended since the last one or it is
        older than :data:`SNAPSHOT_EVERY_S`; the open protocols' starts when older."""
        if (
            self.point is None
            or self.ended
            or self.last_t_ns - self.point_t_ns > SNAPSHOT_EVERY_S * 1e9
        ):
            self.point = (next_seq, self.snapshot())
            self.point_t_ns = self.last_t_ns
            self.ended = False
        return min([self.point, *self.open.values()], key=lambda p: p[0])


def partition_application(worker_id: str, number: int) -> str:
    """The ``application_name`` of the session holding partition ``number`` in worker
    ``worker_id`` (what :func:`streamer.team.partitions.held_partitions` reports)."""
    return f"redox-worker:{worker_id}:p{number}"


@dataclass
class PartitionCounters:
    """What one partition did (figures and tests)."""

    messages: int = 0
    replayed: int = 0  # processed muted during a takeover
    skipped: int = 0  # before an athlete's replay point
    dropped_lease: int = 0
    dropped_late_marker: int = 0  # protocol markers behind the fence (late_marker)
    malformed: int = 0
    passes: int = 0  # consumer passes (messages handled together; see Linger)
    transactions: int = 0  # committed writes (one per batch of messages with outputs)
    batched: int = 0  # messages whose outputs went into those transactions
    results: int = 0
    write_errors: int = 0  # transactions of outputs that failed (logged)
    gaps: int = 0  # times nats-py dropped messages and the consumer read on from there


class Partition:
    """One owned partition: its lock connection, store, sinks, consumer and athletes."""

    def __init__(
        self,
        number: int,
        *,
        worker_id: str,
        dsn: str,
        config: Config,
        js: Any,
        live: bool = True,
        partitions: int = wire.DEFAULT_PARTITIONS,
        linger: Linger | None = None,
        live_link: LiveLink | None = None,
    ) -> None:
        self.number = number
        self.live_link = live_link
        """The worker's one connection for live samples, shared by its partitions' MQTT
        publishers; None: each publisher sends them on its own connection."""
        self.linger = linger or Linger(DEFAULT_LINGER_S)
        """The worker's shared linger (see the module docstring: passes)."""
        self.partitions = partitions  # how many there are (whose athletes are this one's)
        self.worker_id = worker_id
        self.dsn = dsn
        self.config = config
        self.js = js
        self.live = live
        self.counters = PartitionCounters()
        self.conn = connect(dsn, application=partition_application(worker_id, number))
        self.store: PgStore | None = None
        self.sinks: list[_QueuingSink] = []
        self.tracks: dict[str, _Track] = {}
        self.leases: dict[tuple[str, str], str] = {}
        self.checkpoint = 0
        self.caught_up = asyncio.Event()
        self._writes: _StateWrites | None = None
        self._points: dict[str, tuple[int, bytes]] = {}
        self._pending_leases: list[tuple[str, str, int, str]] = []
        self._staged: list[tuple[int, list[Result]]] = []
        """(seq, durable outputs) of the handled messages not yet written."""
        self._handled = 0  # the last stream sequence handled
        self._staged_at = 0  # messages handled when the first staged one was
        self._live: list[Result] = []  # live samples of the pass, sent at its end
        self._live_since: float | None = None
        """When live samples first went out beyond what the last write covers (:attr:`clock`
        s; None: none did): :data:`LIVE_CHECKPOINT_S`."""
        self.clock: Callable[[], float] = time.monotonic
        """The clock of :data:`LIVE_CHECKPOINT_S` (s)."""
        self._clocks_ahead: set[str] = set()  # gateways said to run ahead (CLOCK_AHEAD_S)
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None  # the consumer's subscription (its messages at hand)
        self._writer: asyncio.Task[None] | None = None  # the writes in turn (_write_soon)
        self._write_failed: asyncio.Future[None] | None = None
        self._gap_at: int | None = None  # the first stream message dropped (slow_consumer)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"partition-{number}-write"
        )
        """The partition's one writing thread: its commits wait there, not on the event
        loop, where every partition's consumer and live samples run."""

    def try_lock(self) -> bool:
        """Take the partition's advisory lock on this connection; False if another holds it."""
        row = self.conn.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, self.number)
        ).fetchone()
        return bool(row and row[0])

    def close(self) -> None:
        """Close the connection (which releases the lock), after any statement the
        partition's or a sink's thread is still running on it (see :meth:`stop` for one
        that runs too long); reservations not started yet are dropped."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        with contextlib.suppress(Exception):
            if self.store is not None:
                with self.store.lock:
                    self.conn.close()
            else:
                self.conn.close()

    def _cancel_statements(self, stopped: threading.Event) -> None:
        """Until ``stopped``: cancel a statement that has been running on the partition's
        connection for :data:`STOP_WAIT_S` (a commit waiting on a lock another session
        holds), looking every :data:`STOP_POLL_S`."""
        said = False
        running_since: float | None = None
        while not stopped.wait(STOP_POLL_S):
            try:
                if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.ACTIVE:
                    running_since = None  # between statements: not the one that hangs
                    continue
                now = time.monotonic()
                if running_since is None:
                    running_since = now
                if now - running_since < STOP_WAIT_S:
                    continue
                if not said:
                    said = True
                    _LOGGER.warning(
                        "partition %d: a statement running for %.0f s holds its stop (a lock "
                        "another session holds?): cancelling it; the next owner replays what "
                        "the partition did not commit",
                        self.number,
                        STOP_WAIT_S,
                    )
                running_since = None
                self.conn.cancel_safe(timeout=STOP_WAIT_S)
            except Exception as exc:  # the connection closed meanwhile, the server away
                _LOGGER.debug("partition %d: no statement cancelled (%s)", self.number, exc)

    @property
    def done(self) -> bool:
        """The partition's processing ended (lost, failed or stopped)."""
        return self._task is not None and self._task.done()

    @property
    def gap_pending(self) -> bool:
        """nats-py dropped messages of the consumer and it has not read on from them yet."""
        return self._gap_at is not None

    def slow_consumer(self, stream_seq: int | None) -> None:
        """nats-py dropped the message at ``stream_seq`` of this partition's consumer (its
        connection's ``error_cb`` got a ``SlowConsumerError`` for it; call it there, before
        that callback awaits anything, so that it is known before the next message is
        queued). Every message it holds came before the first drop and every one it queues
        later after it: the consumer handles what it holds below the first dropped message,
        then reads on from there with a new consumer (:meth:`_consume`). ``None``: where
        is not known — the partition ends, and the next claim replays from its checkpoint."""
        if stream_seq is None:
            if self._write_failed is not None and not self._write_failed.done():
                self._write_failed.set_exception(
                    RuntimeError(
                        f"partition {self.number}: NATS dropped a message, not known which"
                    )
                )
            return
        if self._gap_at is None:
            self._gap_at = stream_seq
            self.counters.gaps += 1
        # nats-py reports each dropped message, in stream order: the first one counts.

    def start(self) -> None:
        """Open the store and sinks, restore the takeover state, start consuming."""
        start = self.open()
        self._task = asyncio.create_task(self._run(start), name=f"partition {self.number}")

    def open(self) -> int:
        """Open the store and sinks and restore the takeover state; the stream sequence
        to consume from (then each message of the partition goes to :meth:`handle`, in order)."""
        store = PgStore(self.conn, self.number, f"PostgreSQL partition {self.number}")
        self.store = store
        self._writes = _StateWrites(store)
        self.sinks = self._build_sinks(store)
        self.checkpoint = store.checkpoint()
        self._points = store.replay_points()
        start = min([self.checkpoint + 1, *(s for s, _ in self._points.values())])
        self.leases = store.leases_before(start)
        return start

    def _build_sinks(self, store: PgStore) -> list[_QueuingSink]:
        # PgStore has the Store surface the sinks use (transaction, query, has_table,
        # reserve_seq[_in]); the sinks are the existing ones, on the partition's outboxes.
        as_store = cast(Store, store)
        sinks: list[_QueuingSink] = []
        if self.config.mqtt is not None:
            prefix = f"redox-worker-{self.worker_id}-p{self.number}"
            mqtt = replace(self.config.mqtt, client_id=prefix)
            # The Home Assistant entities of this partition's athletes: their configs name
            # the partition's availability, not this worker, so every owner announces the
            # same bytes and a hand-over changes nothing in Home Assistant.
            publisher = MqttPublisher(
                mqtt,
                as_store,
                athletes=self._athletes(self.config),
                name=f"mqtt p{self.number}",
                shared_state=True,
                live_link=self.live_link,
                live_seq_executor=self._executor,  # behind the commits, never on the loop
            )
            publisher.topics = _PartitionTopics(mqtt.base_topic, mqtt.ha_prefix, self.number)
            sinks.append(publisher)
        if self.config.influx is not None:
            from streamer.sinks.influx import InfluxWriter

            sinks.append(InfluxWriter(self.config.influx, as_store))
        return sinks

    async def stop(self) -> None:
        """Stop consuming and the sinks (what they did not deliver stays in the partition's
        outbox for the next owner), then release the lock. A statement that holds this up
        past :data:`STOP_WAIT_S` is cancelled (again every :data:`STOP_WAIT_S`)."""
        stopped = threading.Event()
        try:
            threading.Thread(
                target=self._cancel_statements,
                args=(stopped,),
                name=f"partition-{self.number}-stop",
                daemon=True,
            ).start()
            await self._stop()
        finally:
            stopped.set()

    async def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        c = self.counters
        _LOGGER.info(
            "partition %d let go: %d messages in %d passes, %d transactions",
            self.number,
            c.messages,
            c.passes,
            c.transactions,
        )
        await asyncio.to_thread(self.close)

    async def _run(self, start: int) -> None:
        sink_tasks = [asyncio.create_task(s.run(), name=f"sink {s.name}") for s in self.sinks]
        sub = None
        consuming: asyncio.Task[None] | None = None
        failed = self._write_failed = asyncio.get_running_loop().create_future()
        try:
            sub = await self._subscribe(start)
            _LOGGER.info(
                "partition %d: consuming from stream sequence %d (checkpoint %d)",
                self.number,
                start,
                self.checkpoint,
            )
            # A write that loses the partition ends it, also while the consumer waits for
            # messages.
            consuming = asyncio.create_task(self._consume(sub), name=f"consume {self.number}")
            await asyncio.wait({consuming, failed}, return_when=asyncio.FIRST_COMPLETED)
            if failed.done():
                failed.result()
            consuming.result()
        except PartitionLost as exc:
            _LOGGER.warning("%s: stopping it", exc)
        except Exception as exc:
            if _connection_lost(exc):
                _LOGGER.warning(
                    "partition %d: PostgreSQL connection lost (%s): stopping it", self.number, exc
                )
            else:
                _LOGGER.exception("partition %d failed", self.number)
        finally:
            for task in (consuming, self._writer):
                if task is not None:
                    task.cancel()  # a commit running in the thread ends there (the lock)
                    with contextlib.suppress(BaseException):
                        await task
            for sink in self.sinks:
                if isinstance(sink, MqttPublisher) and sink.live_link is not None:
                    sink.close_live()  # the worker's link goes on without this partition
            # No commit comes after this: queued seq reservations are dropped, so that none
            # starts on the connection behind a commit the stop cancels.
            self._executor.shutdown(wait=False, cancel_futures=True)
            sub = self._sub or sub  # the last one made (a gap replaces it: slow_consumer)
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            for task in sink_tasks:
                task.cancel()
            await asyncio.gather(*sink_tasks, return_exceptions=True)

    async def _subscribe(self, start: int) -> Any:
        """The partition's ordered consumer from stream sequence ``start``."""
        # nats-py waits for the consumer's creation with wait_for: on Python 3.11 a stop
        # arriving with the answer is dropped there, and the partition would consume on
        # while its stop waits for it.
        with cancellation_kept():
            # Kept before the block may raise, so that _run's clean-up unsubscribes it.
            self._sub = await self.js.subscribe(
                wire.partition_subject(self.number),
                stream=wire.STREAM,
                ordered_consumer=True,
                pending_msgs_limit=PENDING_MSGS_LIMIT,
                pending_bytes_limit=PENDING_BYTES_LIMIT,
                config=api.ConsumerConfig(
                    deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start
                ),
            )
        return self._sub

    async def _read_on_from_gap(self, sub: Any) -> Any:
        """nats-py dropped messages (:meth:`slow_consumer`) and the consumer handled all it
        held before the first: a new consumer from that message on."""
        gap = self._gap_at
        assert gap is not None
        self._sub = None
        with contextlib.suppress(Exception):
            await sub.unsubscribe()  # what it still holds came after the gap
        self._gap_at = None
        _LOGGER.info(
            "partition %d: NATS dropped messages from stream sequence %d on (more at hand "
            "than its pending limits); reading on from there",
            self.number,
            gap,
        )
        # A gap comes when the loop is busiest: a consumer's creation timing out then is
        # asked again, not taken for the partition's end (a restart from the checkpoint).
        for attempt in range(SUBSCRIBE_ATTEMPTS):
            try:
                return await self._subscribe(gap)
            except (TimeoutError, NatsError) as exc:
                if attempt + 1 == SUBSCRIBE_ATTEMPTS:
                    raise
                _LOGGER.warning(
                    "partition %d: a consumer from %d not made (%s); asking again",
                    self.number,
                    gap,
                    exc or type(exc).__name__,
                )
                await asyncio.sleep(1.0)
        raise AssertionError("unreachable")

    async def _consume(self, sub: Any) -> None:
        while (read := await self._read_until_gap(sub)) is not None:
            sub = await self._read_on_from_gap(read)

    async def _read_until_gap(self, sub: Any) -> Any | None:
        """Read ``sub`` in passes until nats-py dropped messages of it and the messages
        before the first dropped one are handled (``sub`` then), or until it ends (None:
        unsubscribed, the connection closed)."""
        self._sub = sub
        messages = aiter(sub.messages)
        backlog = False  # the last pass was full: the messages are there, go on at once
        while True:
            if self._gap_at is not None and not sub.pending_msgs:
                return sub  # all it held before the gap handled, and none after it yet
            first = await anext(messages, None)
            if first is None:
                return None
            if self._beyond_gap(first):
                return sub
            if not backlog and sub.pending_msgs + 1 < WRITE_BATCH:
                # Wait for the worker's tick, so that what arrives meanwhile (this
                # partition's and the others') shares this pass's wake-ups and writes.
                await self.linger.wait()
            batch = [first]
            beyond = False
            while sub.pending_msgs and len(batch) < WRITE_BATCH:
                # At hand: the iterator returns at the loop's next turn (no wait).
                msg = await anext(messages, None)
                if msg is None:
                    break
                if self._beyond_gap(msg):
                    beyond = True  # it and the rest come again from the new consumer
                    break
                batch.append(msg)
            backlog = len(batch) >= WRITE_BATCH
            self.handle_pass([_at_hand(m) for m in batch])
            # The pass's live samples publish as soon as the loop turns (their tasks were
            # made first), before its outputs' transaction takes the replay points.
            if self._staged:
                await self._write_soon()
            else:
                await asyncio.sleep(0)  # the sinks and the other partitions get their turn
            if (
                int(batch[-1].metadata.num_pending) == 0
                and not self._staged
                and not self._writing()
                and self._gap_at is None
            ):
                self.caught_up.set()
            if beyond:
                return sub

    def _beyond_gap(self, msg: Any) -> bool:
        """``msg`` came after messages nats-py dropped (:meth:`slow_consumer`)."""
        return self._gap_at is not None and int(msg.metadata.sequence.stream) >= self._gap_at

    def handle_pass(self, messages: Sequence[StreamMessage]) -> None:
        """Handle ``messages``, in order, as one pass: each as :meth:`handle`, then their
        live samples handed to each sink at once; their outputs are held for the next
        write."""
        self.counters.passes += 1
        for message in messages:
            self.handle(*message)
        self.send_live()
        since = self._live_since
        if not self._staged and since is not None and self.clock() - since >= LIVE_CHECKPOINT_S:
            self._stage(self._handled, [])  # the checkpoint alone, past the live samples sent

    # --- one message --------------------------------------------------------------------------

    def _track(self, athlete: str) -> _Track:
        track = self.tracks.get(athlete)
        if track is None:
            assert self._writes is not None
            state = AthleteState(
                athlete,
                self._writes,
                athlete_thresholds(self.config, athlete),
                live=self.live,
            )
            track = _Track(state)
            point = self._points.get(athlete)
            if point is not None:
                track.skip_below = point[0]
                track.fence = restore_windows(state, point[1])
            self.tracks[athlete] = track
        return track

    def handle(
        self, subject: str, body: bytes, headers: Mapping[str, str], seq: int, stored_ns: int
    ) -> None:
        """Process the stream message ``seq``, which the server stored at ``stored_ns`` (its
        clock, ns since the epoch; see the module docstring); its outputs are
        held for the next :meth:`flush`, its live samples for the next :meth:`send_live`."""
        self.counters.messages += 1
        self._handled = max(self._handled, seq)
        try:
            _, athlete = wire.athlete_of(subject)
            message = wire.decode(subject, body)
        except wire.WireError as exc:
            self.counters.malformed += 1
            _LOGGER.warning("stream message %d skipped: %s", seq, exc)
            return
        track = self._track(athlete)
        muted = seq <= self.checkpoint
        if isinstance(message, wire.LeaseGranted):
            # Before the athlete's replay point too: the leases were read as they stood at
            # the partition's start (the earliest athlete's point), so a grant between
            # that and this athlete's point must still count — else the new holder's
            # records would be dropped as another gateway's.
            previous = self.leases.get((athlete, message.device))
            self.leases[(athlete, message.device)] = message.gateway
            if previous is not None and seq >= track.skip_below:
                # Before the grant's write, so the replay point it records includes it.
                self._hand_over(track, athlete, message, seq)
            if not muted:
                self._pending_leases.append((athlete, message.device, seq, message.gateway))
                self._stage(seq, [])
            return
        if seq < track.skip_below:
            self.counters.skipped += 1
            return
        if muted:
            self.counters.replayed += 1
        gateway = headers.get(wire.GATEWAY_HEADER, "")
        if isinstance(message, RecordedNotification):
            holder = self.leases.get((athlete, message.device))
            if holder is not None and gateway and gateway != holder:
                self.counters.dropped_lease += 1
                return
            try:
                record: object = decode_notification(message, where=subject)
            except RecordingError as exc:
                self.counters.malformed += 1
                _LOGGER.warning("stream message %d skipped: %s", seq, exc)
                return
            device = message.device
            t_ns = message.t_ns
        elif isinstance(message, wire.DeviceEvent):
            # A gap or battery level: the lease rule as for the device's notifications.
            holder = self.leases.get((athlete, message.device))
            if holder is not None and gateway and gateway != holder:
                self.counters.dropped_lease += 1
                return
            record, device, t_ns = message.record, message.device, message.t_ns
        elif (moves := MARKER_FENCE.get(type(message))) is not None:
            fence = track.fence
            held_s = _held_s(headers, stored_ns)
            if held_s is not None and held_s < -CLOCK_AHEAD_S and not muted:
                self._clock_ahead(gateway, -held_s)
            if fence is not None and late_marker(fence, message.t_ns, gateway, held_s):
                self.counters.dropped_late_marker += 1
                if not muted:
                    _LOGGER.warning(
                        "stream message %d: %s of %s from gateway %s dropped: held back "
                        "there and older than the last protocol marker taken, from gateway %s",
                        seq, type(message).__name__, athlete, gateway, fence.gateway,
                    )  # fmt: skip
                return
            if moves and (fence is None or message.t_ns >= fence.t_ns):
                track.fence = MarkerFence(message.t_ns, gateway)
            record, device, t_ns = message, COMMAND_DEVICE, message.t_ns
        else:
            record, device, t_ns = message, COMMAND_DEVICE, message.t_ns
        self._remember(track, seq, t_ns, record)
        assert self._writes is not None
        self._writes.muted = muted
        try:
            results = track.state.process(device, record)
        except Exception:
            _LOGGER.exception("processing %s of %s failed", type(record).__name__, athlete)
            return
        if muted:
            return
        durable = [r for r in results if not r.kind.is_live]
        live = [r for r in results if r.kind.is_live]
        if live and gateway:
            # The live InfluxDB points say which gateway received them (durable results
            # may span records of several gateways: untagged).
            live = [r.received_by(gateway) for r in live]
        self._live += live
        if durable or self._writes.pending or type(record) in _ENDS:
            self._stage(seq, durable)

    def _clock_ahead(self, gateway: str, ahead_s: float) -> None:
        if gateway in self._clocks_ahead:
            return
        self._clocks_ahead.add(gateway)
        _LOGGER.warning(
            "partition %d: gateway %s stamped a marker received %.1f s after NATS stored it: "
            "its clock runs ahead of the NATS servers' (set both by NTP; the marker fence "
            "reads a gateway's hold across the two clocks, deploy/README.md)",
            self.number,
            gateway or "(unnamed)",
            ahead_s,
        )

    def _hand_over(self, track: _Track, athlete: str, grant: wire.LeaseGranted, seq: int) -> None:
        """A device held before was granted (again): its stream has a hole there
        (:func:`~streamer.team.wire.handover_gap`), which the athlete's state is told of as
        the single box's is of a reconnection. A gap produces no results."""
        gap = wire.handover_gap(athlete, grant)
        self._remember(track, seq, gap.t_ns, gap)
        try:
            track.state.process(grant.device, gap)
        except Exception:
            _LOGGER.exception("processing the hand-over gap of %s failed", athlete)

    def _athletes(self, config: Config) -> list[AthleteConfig]:
        """The athletes ``config`` names whose records land in this partition."""
        return [
            a for a in config.athletes if wire.partition_of(a.id, self.partitions) == self.number
        ]

    def retune(self, config: Config) -> None:
        """The athletes' thresholds as ``config`` (the central registry's now) gives them:
        at once for an athlete between protocols, else when its protocols have ended. An
        athlete added to this partition is announced to Home Assistant at once."""
        self.config = config
        for sink in self.sinks:
            if isinstance(sink, MqttPublisher):
                task = asyncio.get_running_loop().create_task(
                    sink.set_athletes(self._athletes(config))
                )
                task.add_done_callback(_ignore_outcome)
        for athlete, track in self.tracks.items():
            thresholds = athlete_thresholds(config, athlete)
            if thresholds == track.state.thresholds:
                track.retuned = None
            elif track.open:
                track.retuned = thresholds
            else:
                track.state.set_thresholds(thresholds)
                track.retuned = None

    def _remember(self, track: _Track, seq: int, t_ns: int, record: object) -> None:
        """Keep the athlete's replay point up to date before ``record`` is processed."""
        if track.retuned is not None and not track.open:
            track.state.set_thresholds(track.retuned)  # the protocol it waited for ended
            track.retuned = None
        track.touched = True
        track.last_t_ns = max(track.last_t_ns, t_ns)
        kind = type(record)
        if kind in _STARTS:
            if _STARTS[kind] not in track.open:
                track.open[_STARTS[kind]] = (seq, track.snapshot())
        elif kind in _ENDS:
            if _ENDS[kind]:
                track.open.pop(_ENDS[kind], None)
            track.ended = True  # the next point is after it

    def _stage(self, seq: int, durable: list[Result]) -> None:
        """Hold message ``seq``'s outputs (none: its saves, lease or protocol end) for the
        next :meth:`flush`."""
        if not self._staged:
            self._staged_at = self.counters.messages
        self._staged.append((seq, durable))

    def flush(self) -> None:
        """Write the outputs of the messages handled since the last write (:meth:`_commit`),
        here and now; a no-op when they produced none. Raises when the partition is lost.
        (The consumer writes off the loop instead: :meth:`_write_soon`.)"""
        if not self._staged:
            return
        batch = self._take()
        try:
            self._commit(batch)
        except _LOST:
            raise  # the partition is lost: the next owner goes on from the checkpoint
        except Exception:
            self._not_kept(batch)
            return
        self._committed(batch)

    def _write_due(self) -> bool:
        """Outputs wait: the consumer writes them at the end of each pass (which holds the
        messages at hand, at most :data:`WRITE_BATCH`)."""
        return bool(self._staged)

    def _writing(self) -> bool:
        return self._writer is not None and not self._writer.done()

    async def _write_soon(self) -> None:
        """Have the outputs handled so far written in the partition's thread, one
        transaction at a time and in order: the consumer goes on handling (and sending live
        samples) while a commit waits for the disk, and the next write takes what it staged
        meanwhile. Waits only when :data:`WRITE_BACKLOG` messages piled up behind a write."""
        if self._writing():
            if self.counters.messages - self._staged_at >= WRITE_BACKLOG:
                assert self._writer is not None
                await asyncio.wait({self._writer})
            return
        self._writer = asyncio.create_task(self._writes_in_turn(), name=f"write {self.number}")

    async def _writes_in_turn(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._write_due():
                batch = self._take()
                try:
                    await loop.run_in_executor(self._executor, self._commit, batch)
                except _LOST:
                    raise
                except Exception:
                    self._not_kept(batch)
                    continue
                self._committed(batch)
        except _LOST as exc:
            if self._write_failed is not None and not self._write_failed.done():
                self._write_failed.set_exception(exc)  # ends the partition (_run)
            return
        if (
            self._sub is not None
            and self._sub.pending_msgs == 0
            and not self._staged
            and self._gap_at is None
        ):
            self.caught_up.set()

    def _take(self) -> _Batch:
        """The next transaction's contents, taken on the event loop: the staged outputs,
        held saves and leases, and the replay points of the athletes touched since the last
        write, their windows snapshotted now (after the last message handled)."""
        assert self._writes is not None
        staged, self._staged = self._staged, []
        leases, self._pending_leases = self._pending_leases, []
        seq = self._handled
        self._live_since = None  # the checkpoint goes past every live sample sent
        points = []
        for athlete, track in self.tracks.items():
            if not track.touched:
                continue
            at, windows = track.replay_point(seq + 1)
            if track.written != at:
                points.append((athlete, at, windows))
                track.written = at
            track.touched = False
        return _Batch(seq, staged, self._writes.take(), leases, points)

    def _commit(self, batch: _Batch) -> None:
        """Write ``batch``: the outputs of the handled messages through ``batch.seq`` (each
        message's durable results), held saves, leases, replay points and the checkpoint
        ``batch.seq``: one transaction on the lock's connection. Touches nothing of the
        event loop (it runs in the partition's thread): the sinks are woken by
        :meth:`_committed`.

        ``seq`` is the last message *handled*, not the last with outputs: the replay
        points snapshot the windows as they were after it. Each message's results are
        kept in a savepoint of their own, so one that cannot be kept (a bug: logged and
        counted) does not take the other messages' with it."""
        store, writes = self.store, self._writes
        assert store is not None
        assert writes is not None
        queued = [0] * len(self.sinks)
        with store.transaction() as db:
            writes.write(batch.saves)
            for at_seq, durable in batch.staged:
                if not durable:
                    continue
                try:
                    with store.transaction():  # a savepoint
                        for result in durable:
                            store.record(result)
                        counts = [sink.enqueue(durable) for sink in self.sinks]
                except _LOST:
                    raise
                except Exception:
                    batch.errors += 1
                    _LOGGER.exception(
                        "partition %d: outputs of stream message %d not kept", self.number, at_seq
                    )
                    continue
                queued = [q + n for q, n in zip(queued, counts, strict=True)]
                batch.results += len(durable)
            for athlete, device, at, gateway in batch.leases:
                store.add_lease(db, athlete, device, at, gateway)
            for athlete, at, windows in batch.points:
                store.set_replay_point(db, athlete, at, windows)
            store.set_checkpoint(db, batch.seq)
        batch.queued = queued

    def _committed(self, batch: _Batch) -> None:
        """On the event loop after ``batch`` committed: the sinks send what it queued."""
        assert self._writes is not None
        self._writes.written()
        for sink, queued in zip(self.sinks, batch.queued, strict=True):
            sink.wake(queued)
        self.checkpoint = batch.seq
        self.counters.transactions += 1
        self.counters.batched += len(batch.staged)
        self.counters.results += batch.results
        self.counters.write_errors += batch.errors

    def _not_kept(self, batch: _Batch) -> None:
        """``batch``'s transaction failed (a bug, not a lost partition): as the pipeline
        does, outputs that cannot be kept must not stop the partition for ever; they are
        logged and counted, the rest goes on."""
        assert self._writes is not None
        self._writes.written()
        self.counters.write_errors += 1
        _LOGGER.exception(
            "partition %d: outputs of stream messages %d–%d not kept",
            self.number,
            batch.staged[0][0] if batch.staged else batch.seq,
            batch.seq,
        )

    def send_live(self) -> None:
        """The live samples (QoS 0) handled since the last call, on the sinks' current
        connections, one call per sink: written at once on the worker's live link,
        buffered at once by InfluxDB's sink, else in tasks that run when the consumer next
        yields, right after the pass (before its write); shed when there is no
        connection."""
        live, self._live = self._live, []
        if not live:
            return
        if self._live_since is None:
            self._live_since = self.clock()
        for sink in self.sinks:
            if isinstance(sink, MqttPublisher) and sink.live_link is not None:
                # Counted by the publisher, sent, held for their seq numbers or shed; their
                # numbers are reserved in the partition's thread, not here.
                sink.publish_live(live)
                continue
            # InfluxDB's sink buffers them by a plain call (no task per pass); getattr, not
            # a runtime Protocol check (µs per call, every pass).
            buffer_live = getattr(sink, "buffer_live", None)
            if buffer_live is not None:
                try:
                    buffer_live(live)
                except Exception as exc:  # shed, as when a send_live task ended so
                    _LOGGER.debug("partition %d: live samples shed (%s)", self.number, exc)
                continue
            task = asyncio.get_running_loop().create_task(sink.send_live(live))
            task.add_done_callback(_ignore_outcome)


def _said_if_failed(task: asyncio.Task[None]) -> None:
    """Log a task's end by an error of its own (a bug: it rides out the network's) at once,
    not at the worker's stop."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        _LOGGER.error("%s ended: %r", task.get_name(), exc, exc_info=exc)


def _ignore_outcome(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # a live sample not sent is shed (QoS 0), as in the pipeline


_LOST: Final = (PartitionLost, psycopg.OperationalError, psycopg.InterfaceError)
"""A write failing with these lost the partition (its lock or connection)."""


def _connection_lost(exc: BaseException) -> bool:
    import psycopg

    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def partition_state_topic(base: str, partition: int) -> str:
    """``<base>/partition/<p>/state``: ``online``/``offline`` of partition ``p``, retained;
    whichever worker owns it publishes there (see :class:`_PartitionTopics`)."""
    return f"{Topics(base).base}/partition/{partition}/state"


class _PartitionTopics(Topics):
    """A partition's publisher says online/offline on the partition's retained topic
    (:func:`partition_state_topic`), the Last Will of its connection — not the single-box
    bridge's, nor one naming the worker: the availability of the Home Assistant entities of
    the partition's athletes, which must not change when the partition changes hands.

    Who says what there: the owner's connection says ``online`` on connect (and again over
    a predecessor's late Last Will, ``MqttPublisher(shared_state=True)``); its Last Will
    says ``offline`` when the owner dies, until a survivor takes the partition over. A
    partition let go while its worker runs on (a new worker's share, a lost lock) says
    nothing: its next owner says ``online`` again, so a hand-over never shows ``offline``.
    A worker stopping cleanly says nothing either while another worker runs (that one takes
    the partitions); the last one to stop says ``offline`` on every partition
    (:meth:`Worker.run`)."""

    def __init__(self, base: str, ha_prefix: str, partition: int) -> None:
        super().__init__(base, ha_prefix)
        self._state = partition_state_topic(self.base, partition)

    @property
    def bridge_state(self) -> str:
        return self._state


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How a worker spreads partitions (see :mod:`streamer.team.partitions`)."""

    partitions: int = wire.DEFAULT_PARTITIONS
    max_partitions: int | None = None  # None: ceil(partitions / live workers)
    claim_every_s: float = 1.0
    live: bool = True
    linger_s: float = DEFAULT_LINGER_S  # see Linger


async def connect_nats(
    url: str, name: str, *, slow_consumer: Callable[[SlowConsumerError], bool] | None = None
) -> Any:
    """A NATS connection that retries for ever (a worker may start before the server, and
    the stream outlives a server's restart); each new kind of failure is logged once.
    ``slow_consumer`` is told of each message nats-py drops for a subscription past its
    pending limits, at once (before the next message is queued); it returns whether it
    took care of it (else it is logged as a failure)."""
    said: set[str] = set()

    async def on_error(exc: Exception) -> None:
        # Nothing awaited before: the drop's subscription must hear of it before nats-py
        # queues its next message.
        if isinstance(exc, SlowConsumerError) and slow_consumer is not None and slow_consumer(exc):
            return
        what = f"{type(exc).__name__}: {exc}"
        level = logging.DEBUG if what in said else logging.WARNING
        said.add(what)
        # A slow consumer that no partition takes care of is not retried by anyone.
        then = "messages lost" if isinstance(exc, SlowConsumerError) else "retrying"
        _LOGGER.log(level, "NATS %s: %s (%s)", url, what, then)

    async def on_reconnected() -> None:
        said.clear()
        _LOGGER.info("NATS %s: connected again", url)

    return await nats.connect(
        url.split(","),
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        allow_reconnect=True,
        error_cb=on_error,
        reconnected_cb=on_reconnected,
    )


class Worker:
    """A worker process: claims partitions (:mod:`streamer.team.partitions`), runs each as a
    :class:`Partition`, and says whether it is alive on ``<base>/worker/<id>/state``
    (retained; ``offline`` is its Last Will) with the client id ``redox-worker-<id>``."""

    def __init__(
        self,
        worker_id: str,
        *,
        nats_url: str,
        dsn: str,
        config: Config,
        options: WorkerOptions | None = None,
        registry: bool = False,
    ) -> None:
        self.id = worker_id
        self.nats_url = nats_url
        self.dsn = dsn
        self.config = config
        self.options = options or WorkerOptions()
        self.registry = registry
        """Athletes and thresholds from the central registry (:mod:`streamer.team.registry`),
        followed; ``config`` then gives the sinks only."""
        self.registry_read = asyncio.Event()
        """Set once the registry was read (and at once without one)."""
        self.owned: dict[int, Partition] = {}
        self.linger = Linger(self.options.linger_s)  # one tick for all its partitions
        self.stopping = asyncio.Event()
        self.mqtt_online = asyncio.Event()
        self.live_link: LiveLink | None = None
        """The connection for its partitions' live samples (``redox-worker-<id>-live``),
        made by :meth:`run` when there is a broker and live samples are sent."""
        self._control: Any = None  # the connection that counts workers and held locks
        self._goodbye: list[str] = []  # partition state topics to say offline at the end

    def stop(self) -> None:
        """Ask :meth:`run` to end (SIGTERM, SIGINT)."""
        self.stopping.set()

    async def run(self) -> None:
        """Until :meth:`stop`: claim, run and release partitions."""
        from streamer.team.pg_store import ensure_schema

        opts = self.options
        control = await asyncio.to_thread(connect, self.dsn, application=f"redox-worker:{self.id}")
        self._control = control
        nc = None
        availability = None
        linking: asyncio.Task[None] | None = None
        following: asyncio.Task[None] | None = None
        try:
            await asyncio.to_thread(ensure_schema, control, opts.partitions)
            # A stop while the NATS server cannot be reached ends the wait for it.
            connecting = asyncio.create_task(
                connect_nats(
                    self.nats_url, f"redox-worker-{self.id}", slow_consumer=self._slow_consumer
                )
            )
            stopped = asyncio.create_task(self.stopping.wait())
            await asyncio.wait({connecting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not connecting.done():
                connecting.cancel()
                with contextlib.suppress(BaseException):
                    await connecting
                return
            nc = connecting.result()
            warn_if_server_too_old(nc, f"worker {self.id}")
            js = nc.jetstream()
            if self.registry:
                following = asyncio.create_task(self._follow_registry(js), name="registry")
                stopped = asyncio.create_task(self.stopping.wait())
                # Claim only with the athletes' thresholds known: the first results of a
                # partition are judged by them.
                read = asyncio.create_task(self.registry_read.wait())
                await asyncio.wait({read, stopped, following}, return_when=asyncio.FIRST_COMPLETED)
                read.cancel()
                stopped.cancel()
                if following.done():
                    following.result()  # a bug: end with its error
            else:
                self.registry_read.set()
            if self.config.mqtt is not None:
                availability = asyncio.create_task(self._availability(), name="availability")
                if opts.live:
                    self.live_link = LiveLink(self.config.mqtt, f"redox-worker-{self.id}-live")
                    linking = asyncio.create_task(self.live_link.run(), name="live link")
                    linking.add_done_callback(_said_if_failed)
            # Each worker walks the partitions from its own place, so that workers starting
            # together do not all race for partition 0 first.
            first = sum(self.id.encode()) % opts.partitions
            order = [(first + i) % opts.partitions for i in range(opts.partitions)]
            while not self.stopping.is_set():
                try:
                    control = await self._round(control, js, order)
                except (psycopg.Error, PgStoreError) as exc:
                    # PostgreSQL restarting or away: the partitions' sessions are gone with
                    # their locks; claim again when it is back.
                    _LOGGER.warning("PostgreSQL: %s; claiming again in a moment", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), opts.claim_every_s)
        finally:
            if following is not None:
                following.cancel()
                with contextlib.suppress(BaseException):
                    await following
            released = list(self.owned)
            with contextlib.suppress(psycopg.Error):  # PostgreSQL away: see _offline_at_stop
                await asyncio.to_thread(mark_stopping, self._control, self.id)
            await self._stop_partitions(released)
            if linking is not None and self.live_link is not None:
                linking.cancel()  # after the partitions: none sends on it any more
                with contextlib.suppress(BaseException):
                    await linking
                _LOGGER.info(
                    "live link: %(published)d samples sent, %(shed)d shed, %(connects)d "
                    "connections",
                    self.live_link.status(),
                )
            if availability is not None:
                self._goodbye = await asyncio.to_thread(self._offline_at_stop, released)
                availability.cancel()
                with contextlib.suppress(BaseException):
                    await availability
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
            await asyncio.to_thread(self._control.close)

    async def _stop_partitions(self, numbers: Sequence[int]) -> None:
        """Stop the owned partitions ``numbers``, together: each may wait up to
        :data:`STOP_WAIT_S` for a statement it then cancels."""
        stops = [self.owned.pop(number).stop() for number in numbers]
        for outcome in await asyncio.gather(*stops, return_exceptions=True):
            if isinstance(outcome, Exception):
                _LOGGER.error("a partition's stop failed: %r", outcome)

    async def _round(self, control: Any, js: Any, order: list[int]) -> Any:
        """One claiming round (see :mod:`streamer.team.partitions`); returns the control
        connection (a new one when the old one was lost)."""
        from streamer.team.partitions import held_partitions, live_workers, share

        opts = self.options
        ended = [n for n, part in self.owned.items() if part.done]
        for number in ended:
            _LOGGER.warning("partition %d ended; it may be claimed again", number)
        await self._stop_partitions(ended)
        if control.closed or control.broken:
            control = await asyncio.to_thread(
                connect, self.dsn, application=f"redox-worker:{self.id}"
            )
            self._control = control
        # A partition whose session lost its lock (PostgreSQL restarted) notices only at
        # its next write; an idle one, or one receiving live samples only, would count
        # towards this worker's share for ever while nobody consumes it: ask the server.
        held = await asyncio.to_thread(held_partitions, control)
        lost = [n for n in self.owned if held.get(n) != self._application(n)]
        for number in lost:
            _LOGGER.warning("partition %d: its lock is gone (PostgreSQL restarted?)", number)
        await self._stop_partitions(lost)
        workers = await asyncio.to_thread(live_workers, control)
        bound = share(opts.partitions, workers, opts.max_partitions)
        extra = list(self.owned)[bound:]  # a worker joined: let the newest go
        for number in extra:
            _LOGGER.info("partition %d released (share %d)", number, bound)
        await self._stop_partitions(extra)
        if len(self.owned) < bound:
            for number in order:
                if len(self.owned) >= bound or self.stopping.is_set():
                    break
                if number in held or number in self.owned:
                    continue
                await self._claim(number, js)
        return control

    async def _follow_registry(self, js: Any) -> None:
        """Keep :attr:`config`'s athletes and rules the registry's, and retune the owned
        partitions' athletes at each change (see :meth:`Partition.retune`)."""
        from nats.errors import Error as NatsError

        from streamer.team.registry import follow

        local = self.config
        while True:
            try:
                async for view in follow(js):
                    self.config = view.config(local)
                    for part in self.owned.values():
                        part.retune(self.config)
                    self.registry_read.set()
            except (NatsError, OSError, TimeoutError) as exc:
                _LOGGER.warning("central registry: %s; following it again", exc)
            await asyncio.sleep(1.0)

    def _offline_at_stop(self, released: list[int]) -> list[str]:
        """The partition state topics to say ``offline`` on at a clean stop (see
        :class:`_PartitionTopics`): none while another worker runs on — it takes the
        partitions over and a hand-over must not blink — else every partition's, since none
        is served any more; only the ones let go here when PostgreSQL cannot tell."""
        assert self.config.mqtt is not None
        base = self.config.mqtt.base_topic
        try:
            if others_running(self._control, self.id):
                return []
            numbers = list(range(self.options.partitions))
        except psycopg.Error:
            numbers = released
        return [partition_state_topic(base, n) for n in numbers]

    def _slow_consumer(self, exc: SlowConsumerError) -> bool:
        """nats-py dropped a message for one of the connection's subscriptions: a
        partition's consumer is known by the message's subject (one consumer per owned
        partition on this connection), which reads on from there
        (:meth:`Partition.slow_consumer`)."""
        try:
            number, _ = wire.athlete_of(exc.subject)
        except wire.WireError:
            return False  # not a partition's (the registry's watcher): logged
        part = self.owned.get(number)
        if part is None:
            return False
        if part.gap_pending:
            return True  # only the first drop counts; the rest come by the thousand
        seq: int | None
        try:
            # The dropped message's stream sequence is in its JetStream reply subject.
            dropped = Msg(_client=cast(Any, None), subject=exc.subject, reply=exc.reply)
            seq = int(dropped.metadata.sequence.stream)
        except Exception:  # not a JetStream message: an error_cb must not raise (nats-py)
            seq = None
        part.slow_consumer(seq)
        return True

    def _application(self, number: int) -> str:
        return partition_application(self.id, number)

    async def _claim(self, number: int, js: Any) -> None:
        part = await asyncio.to_thread(
            Partition,
            number,
            worker_id=self.id,
            dsn=self.dsn,
            config=self.config,
            js=js,
            live=self.options.live,
            partitions=self.options.partitions,
            linger=self.linger,
            live_link=self.live_link,
        )
        if not await asyncio.to_thread(part.try_lock):
            await asyncio.to_thread(part.close)  # another worker was faster
            return
        part.config = self.config  # the registry's, should it have changed meanwhile
        part.start()
        self.owned[number] = part
        _LOGGER.info("partition %d claimed (checkpoint %d)", number, part.checkpoint)

    async def _availability(self) -> None:
        """``online`` (retained) on the worker's state topic while connected; the Last Will
        says ``offline``, and so does a clean stop — also when the connection is down or
        reconnecting at that moment (:meth:`_say_goodbye`)."""
        import aiomqtt

        from streamer.payloads import BRIDGE_ONLINE

        config = self.config.mqtt
        assert config is not None
        topic = f"{Topics(config.base_topic).base}/worker/{self.id}/state"
        delay = 0.5
        said = False
        try:
            while True:
                client = await self._availability_client(topic)
                try:
                    # A stop arriving with CONNACK or the PUBACK, or swallowed at the
                    # disconnect, is kept (see cancellation_kept): else the loop listens on
                    # and the worker's stop waits for it for ever.
                    with cancellation_kept():
                        async with contextlib.AsyncExitStack() as stack:
                            with cancellation_kept():
                                await stack.enter_async_context(client)
                                await client.publish(topic, BRIDGE_ONLINE, qos=1, retain=True)
                            self.mqtt_online.set()
                            delay = 0.5
                            try:
                                async for _ in client.messages:  # ends with the connection
                                    pass
                            except asyncio.CancelledError:
                                said = await self._goodbye_on(client, topic, 2.0)
                                raise
                except aiomqtt.MqttError as exc:
                    self.mqtt_online.clear()
                    _LOGGER.warning("MQTT availability of worker %s: %s", self.id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        except asyncio.CancelledError:
            if not said:
                await self._say_goodbye(topic)
            raise

    async def _availability_client(self, topic: str, *, will: bool = True) -> Any:
        """A client of the worker's availability connection (``redox-worker-<id>``)."""
        import aiomqtt

        from streamer.payloads import BRIDGE_OFFLINE
        from streamer.sinks.mqtt_connect import mqtt_client, tls_context

        config = self.config.mqtt
        assert config is not None
        return mqtt_client(
            config,
            tls=await asyncio.to_thread(tls_context, config),
            timeout_s=config.publish_timeout_s,
            identifier=f"redox-worker-{self.id}",
            will=aiomqtt.Will(topic, BRIDGE_OFFLINE, qos=1, retain=True) if will else None,
            logger=_LOGGER,
        )

    async def _goodbye_on(self, client: Any, topic: str, timeout_s: float) -> bool:
        """``offline`` on the partitions' state topics to say so (:meth:`_offline_at_stop`),
        then on the worker's own, through ``client``; whether every PUBACK came in time."""
        import aiomqtt

        from streamer.payloads import BRIDGE_OFFLINE

        goodbye = [*self._goodbye, topic]  # the partitions' first, then ours
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(
                    *(client.publish(t, BRIDGE_OFFLINE, qos=1, retain=True) for t in goodbye)
                )
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:  # see _say_goodbye
            _LOGGER.debug("worker %s goodbye: %s", self.id, exc)
            return False
        return True

    async def _say_goodbye(self, topic: str) -> None:
        """The goodbye when the availability connection could not carry it (down, or
        reconnecting, at the stop): on fresh short connections, retried until the broker
        takes it or :data:`GOODBYE_WAIT_S` passed."""
        import aiomqtt

        loop = asyncio.get_running_loop()
        deadline = loop.time() + GOODBYE_WAIT_S
        delay = 0.1
        while True:
            try:
                async with asyncio.timeout(max(0.1, deadline - loop.time())):
                    async with await self._availability_client(topic, will=False) as client:
                        if await self._goodbye_on(client, topic, deadline - loop.time()):
                            _LOGGER.info("worker %s: goodbye said on a new connection", self.id)
                            return
            except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
                _LOGGER.debug("worker %s goodbye: %s", self.id, exc)
            if loop.time() + delay >= deadline:
                _LOGGER.warning(
                    "worker %s: MQTT broker away for %.0f s at the stop: the partitions' "
                    "availability not set offline",
                    self.id,
                    GOODBYE_WAIT_S,
                )
                return
            await asyncio.sleep(delay)  # a back-off between connection attempts
            delay = min(delay * 2, 1.0)
