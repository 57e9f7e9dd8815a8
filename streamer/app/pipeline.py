"""The asyncio pipeline: device readers → per-athlete processing → sinks.

::

    driver ─offer()─► athlete inbox ─► AthleteProcessor ─┬─► history + sink.accept() ─► sink.run()
    driver ─offer()─►   (bounded)       .process()       │   (durable: SQLite)          (own task)
                                                          └─► live lane ─► sink.send_live()
                                                             (bounded,      (own task)
                                                              per sink)

Three promises and how they are kept:

* **Devices never wait.** Drivers hand records over with :meth:`Pipeline.offer`, which
  never blocks. An athlete inbox that is full sheds the *sample* (counted per athlete) and
  remembers a gap for that device, so the processor is told about the hole before the next
  sample and never differences RR across it. Gap and battery records are never shed.
* **Results and alerts are never dropped.** A processor's durable results (every
  :class:`~streamer.results.Result` whose kind is not live) are written synchronously to
  the history (:class:`~streamer.store.Store`) and handed to each sink's
  :meth:`Sink.accept`, which puts them in that sink's SQLite outbox before returning —
  all in one transaction of the store, so a result is kept everywhere or nowhere; each
  sink drains its own outbox in its own task, and what is not delivered stays there
  across restarts.
* **A full disk holds results, it never loses them.** When the store cannot be written
  (:class:`~streamer.store.StoreFullError`), results wait in memory in order (at most
  ``waiting_max``; counted in :attr:`PipelineStatus.waiting`, the reason in
  :attr:`PipelineStatus.store_problem`, one log line) and are written, then delivered,
  when space returns; later results queue behind them. More than ``waiting_max`` stops the
  pipeline, and :meth:`Pipeline.run` ends with :class:`ResultsNotStoredError` naming what
  was not stored (also when the disk is still full at shutdown).
* **A slow or dead sink stalls nobody.** Live (QoS 0) messages go to one bounded lane per
  sink; a lane that is full drops its *oldest* message (the freshest value is the useful
  one) and counts it. Each sink's live pump and durable runner are separate tasks.

Shutdown (:meth:`Pipeline.stop`, wired to SIGINT/SIGTERM by :func:`install_signal_handlers`):
sources are cancelled first, inboxes are processed to the end and processors closed (their
final results go to the outbox), then each sink gets ``flush_timeout_s`` to deliver; what
remains is in the outbox for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, runtime_checkable

from devices.records import (
    MEASURED_SAMPLES,
    GapEvent,
    GapReason,
)
from streamer.errors import note_stop_signal
from streamer.results import Result
from streamer.sinks.backoff import SINK_RESTART, Backoff, Jitter
from streamer.store import StoreCorruptError, StoreError, StoreFullError

_LOGGER = logging.getLogger(__name__)

DEFAULT_INBOX_SIZE: Final = 2048
"""Records held per athlete before samples are shed (~30 s of every device at full rate)."""
DEFAULT_LIVE_LANE_SIZE: Final = 1024
"""Live messages held per sink before the oldest is dropped."""
DEFAULT_FLUSH_TIMEOUT_S: Final = 5.0
"""How long shutdown waits for each sink to deliver before leaving the rest in the outbox."""
LIVE_BATCH_MAX: Final = 32
"""Most live messages handed to a sink in one call."""
DEFAULT_WAITING_MAX: Final = 10_000
"""Durable results held in memory while the store cannot be written (~1 kB each, ~10 MB;
hours of every result of a few athletes) before the pipeline stops rather than lose any."""
STORE_RETRY: Final = Backoff(0.25, 5.0, multiplier=2.0, jitter=Jitter.NONE)
"""Between attempts to write waiting results to a store that was full (s)."""
SHEDDABLE: Final = MEASURED_SAMPLES
"""Records an inbox may shed under pressure: the high-rate measured stream. Everything else
(gaps, battery, protocol markers such as a morning reading's start) is always kept."""


# --- what flows -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inbound:
    """A record from a device, tagged with who wears it."""

    athlete: str
    device: str
    record: object


# --- the parts the pipeline joins -----------------------------------------------------------


class AthleteProcessor(Protocol):
    """Per-athlete processing (see :mod:`streamer.athlete`): pure work on the event loop."""

    def process(self, device: str, record: object) -> Sequence[Result]:
        """Feed one record; returns the results it produced (possibly none)."""
        ...

    def close(self) -> Sequence[Result]:
        """End of stream: final results (e.g. a session summary)."""
        ...


class History(Protocol):
    """Where durable results are kept as history (:class:`streamer.store.Store`)."""

    def record(self, result: Result) -> bool:
        """Keep ``result`` if it is history (morning, session, grip, alert); True if kept."""
        ...

    def transaction(self) -> AbstractContextManager[object]:
        """One write transaction; the sinks' outboxes in the same store join it."""
        ...


class ResultsNotStoredError(StoreError):
    """The pipeline ended with results the store could not take (disk full, or damaged
    while running): the message says how many, whose, of which kinds and why."""


@runtime_checkable
class Sink(Protocol):
    """A destination (MQTT, InfluxDB). The pipeline gives each one two tasks.

    ``accept`` takes durable results: it must put them in the sink's durable outbox before
    returning (synchronous SQLite, no network) and wake ``run``. ``run`` delivers the
    outbox until cancelled; it may raise, and is then restarted with back-off.
    ``send_live`` delivers live results best-effort (it may raise: the batch is then
    counted as failed). ``drain`` delivers as much of the backlog as it can within the time
    given (shutdown) and returns how many messages remain in the outbox.
    """

    name: str

    def accept(self, results: Sequence[Result]) -> None: ...

    async def run(self) -> None: ...

    async def send_live(self, batch: Sequence[Result]) -> None: ...

    async def drain(self, timeout_s: float) -> int: ...

    def status(self) -> Mapping[str, Any]: ...


class Source(Protocol):
    """A device reader (a :class:`devices.drivers.base.DeviceDriver`, a replay, ...).

    Its records reach the pipeline through the callback it was built with (the
    ``ingest`` from :meth:`Pipeline.ingest_for`); ``run`` lives until cancelled.
    """

    name: str

    async def run(self) -> None: ...


# --- counters --------------------------------------------------------------------------------


@dataclass
class AthleteCounters:
    """Per-athlete counts for the live view."""

    received: int = 0
    processed: int = 0
    shed: int = 0
    errors: int = 0
    results: int = 0
    inbox_depth: int = 0
    inbox_peak: int = 0


@dataclass
class SinkCounters:
    """Per-sink counts for the live view."""

    live_sent: int = 0
    live_shed: int = 0
    live_failed: int = 0
    restarts: int = 0
    lane_depth: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    """A snapshot for the live view and logs."""

    running: bool
    started_ns: int
    athletes: Mapping[str, AthleteCounters]
    sinks: Mapping[str, SinkCounters]
    sink_status: Mapping[str, Mapping[str, Any]]
    sources: Mapping[str, str]
    # ``durable``: results kept and handed to every sink's outbox; ``durable_errors``:
    # writes that failed (logged loudly: the store is where results live).
    durable: int
    durable_errors: int
    # Results held in memory while the store cannot be written, and why (None: it can).
    waiting: int = 0
    waiting_max: int = DEFAULT_WAITING_MAX
    store_problem: str | None = None

    @property
    def store_line(self) -> str | None:
        """One line for a person while results wait (None when none do)."""
        if self.store_problem is None and not self.waiting:
            return None
        return (
            f"{self.waiting} results wait in memory (stops at {self.waiting_max}): "
            f"{self.store_problem or 'the store cannot be written'}; they are stored and "
            "delivered when it can be written again"
        )

    @property
    def shed_total(self) -> int:
        """Every message shed anywhere: samples at inboxes plus live messages at lanes."""
        return sum(a.shed for a in self.athletes.values()) + sum(
            s.live_shed + s.live_failed for s in self.sinks.values()
        )


# --- bounded containers ----------------------------------------------------------------------


class _Inbox:
    """An athlete's bounded inbox: samples (:data:`SHEDDABLE`) may be shed, nothing else.

    Shedding a sample opens a gap for its device; the gap is delivered (as a closed
    :class:`GapEvent`) right before that device's next accepted record.
    """

    def __init__(self, maxsize: int, counters: AthleteCounters) -> None:
        self._items: deque[Inbound | None] = deque()
        self._maxsize = maxsize
        self._event = asyncio.Event()
        self._room = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._unfinished = 0
        self._counters = counters
        self._shed_since: dict[str, int] = {}  # device -> t_ns of its first shed sample
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: Inbound) -> bool:
        self._counters.received += 1
        if len(self._items) >= self._maxsize and isinstance(item.record, SHEDDABLE):
            self._counters.shed += 1
            self._shed_since.setdefault(item.device, _t_ns(item.record))
            return False
        start = self._shed_since.pop(item.device, None)
        if start is not None:
            end = _t_ns(item.record)
            gap = GapEvent(
                t_ns=end, device=item.device, start_ns=start, end_ns=end, reason=GapReason.STALE
            )
            self._items.append(Inbound(item.athlete, item.device, gap))
            self._unfinished += 1
        self._items.append(item)
        self._unfinished += 1
        self._idle.clear()
        self._counters.inbox_depth = len(self._items)
        self._counters.inbox_peak = max(self._counters.inbox_peak, len(self._items))
        self._event.set()
        return True

    def release_waiters(self) -> None:
        self._room.set()

    def task_done(self) -> None:
        self._unfinished -= 1
        if self._unfinished <= 0:
            self._unfinished = 0
            self._idle.set()

    async def join(self) -> None:
        await self._idle.wait()

    async def wait_for_room(self) -> None:
        while len(self._items) >= self._maxsize and not self.closed:
            self._room.clear()
            await self._room.wait()

    def close(self) -> None:
        """No more input: the consumer ends after what is queued."""
        self.closed = True
        self._items.append(None)
        self._event.set()

    async def get(self) -> Inbound | None:
        while not self._items:
            self._event.clear()
            await self._event.wait()
        item = self._items.popleft()
        self._counters.inbox_depth = len(self._items)
        if len(self._items) < self._maxsize:
            self._room.set()
        return item


class _LiveLane:
    """A sink's bounded lane of live messages; full means the oldest one is dropped."""

    def __init__(self, maxsize: int, counters: SinkCounters) -> None:
        self._items: deque[Result] = deque(maxlen=maxsize)
        self._event = asyncio.Event()
        self._counters = counters

    def offer(self, result: Result) -> None:
        if len(self._items) == self._items.maxlen:
            self._counters.live_shed += 1
        self._items.append(result)
        self._counters.lane_depth = len(self._items)
        self._event.set()

    async def take(self, limit: int) -> list[Result]:
        while not self._items:
            self._event.clear()
            await self._event.wait()
        batch = [self._items.popleft() for _ in range(min(limit, len(self._items)))]
        self._counters.lane_depth = len(self._items)
        return batch

    def take_nowait(self, limit: int) -> list[Result]:
        batch = [self._items.popleft() for _ in range(min(limit, len(self._items)))]
        self._counters.lane_depth = len(self._items)
        return batch


def _t_ns(record: object) -> int:
    value = getattr(record, "t_ns", None)
    return int(value) if isinstance(value, int) else time.time_ns()


# --- the pipeline -----------------------------------------------------------------------------


@dataclass
class _SinkSlot:
    sink: Sink
    lane: _LiveLane
    counters: SinkCounters = field(default_factory=SinkCounters)


class Pipeline:
    """Joins sources, per-athlete processors and sinks; :meth:`run` supervises them.

    Args:
        processor_for: builds the processor of an athlete the first time a record for
            that athlete arrives (or at start for ``athletes``).
        history: where durable results are kept as history (the SQLite store), or
            ``None`` (sinks only).
        sinks: destinations; each gets its own tasks and live lane.
        athletes: athletes known in advance (their processors exist from the start).
        inbox_size: records held per athlete before samples are shed.
        live_lane_size: live messages held per sink before the oldest is dropped.
        flush_timeout_s: per-sink delivery budget at shutdown.
        on_result: called with every result produced (e.g. ``replay`` printing).
        waiting_max: durable results held in memory while the store cannot be written
            before the pipeline stops (then :meth:`run` raises
            :class:`ResultsNotStoredError`).
    """

    def __init__(
        self,
        processor_for: Callable[[str], AthleteProcessor],
        history: History | None,
        sinks: Sequence[Sink] = (),
        *,
        athletes: Iterable[str] = (),
        inbox_size: int = DEFAULT_INBOX_SIZE,
        live_lane_size: int = DEFAULT_LIVE_LANE_SIZE,
        flush_timeout_s: float = DEFAULT_FLUSH_TIMEOUT_S,
        on_result: Callable[[Result], None] | None = None,
        waiting_max: int = DEFAULT_WAITING_MAX,
    ) -> None:
        if inbox_size < 1 or live_lane_size < 1:
            raise ValueError("inbox_size and live_lane_size must be >= 1")
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique, got {names}")
        self._processor_for = processor_for
        self._history = history
        self._slots = [
            _SinkSlot(s, _LiveLane(live_lane_size, c), c) for s in sinks for c in (SinkCounters(),)
        ]
        self._inbox_size = inbox_size
        self._flush_timeout_s = flush_timeout_s
        self._on_result = on_result
        self._processors: dict[str, AthleteProcessor] = {}
        self._inboxes: dict[str, _Inbox] = {}
        self._athlete_counters: dict[str, AthleteCounters] = {}
        self._sources: list[Source] = []
        self._source_state: dict[str, str] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._source_tasks: list[asyncio.Task[None]] = []
        self._work_group: asyncio.TaskGroup | None = None
        self._stop = asyncio.Event()
        self._running = False
        self._accepting = True
        self._started_ns = 0
        self._durable = 0
        self._durable_errors = 0
        self._waiting: deque[list[Result]] = deque()  # batches the store could not take
        self._waiting_count = 0
        self._waiting_max = waiting_max
        self._store_problem: str | None = None
        self._retry_wake = asyncio.Event()
        for athlete in athletes:
            self._ensure_athlete(athlete)

    # -- wiring ---------------------------------------------------------------------------

    def add_source(self, source: Source) -> None:
        """Run ``source`` under this pipeline (before or during :meth:`run`)."""
        self._sources.append(source)
        self._source_state[source.name] = "idle"
        if self._work_group is not None:
            self._source_tasks.append(
                self._work_group.create_task(self._run_source(source), name=f"source {source.name}")
            )

    def ingest_for(self, athlete: str, device: str) -> Callable[[object], None]:
        """A non-blocking callback for a driver's ``sink=``: tags records and offers them."""

        def ingest(record: object) -> None:
            self.offer(athlete, device, record)

        return ingest

    def offer(self, athlete: str, device: str, record: object) -> bool:
        """Hand one record over without waiting; False if it was shed (inbox full/closed)."""
        if not self._accepting:
            return False
        inbox = self._ensure_athlete(athlete)
        return inbox.offer(Inbound(athlete, device, record))

    async def put(self, athlete: str, device: str, record: object) -> bool:
        """Hand one record over, waiting while the athlete's inbox is full (replays and
        history, which must not shed); False if the pipeline stopped accepting."""
        inbox = self._ensure_athlete(athlete)
        await inbox.wait_for_room()
        if not self._accepting:
            return False
        return inbox.offer(Inbound(athlete, device, record))

    async def join(self) -> None:
        """Wait until every record offered so far has been processed (and its results
        handed to the sinks)."""
        for inbox in list(self._inboxes.values()):
            await inbox.join()

    def stop(self) -> None:
        """Begin a clean shutdown (idempotent; safe from a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

    def processor(self, athlete: str) -> AthleteProcessor | None:
        """The processor of ``athlete`` (for the live view), if it exists."""
        return self._processors.get(athlete)

    @property
    def athletes(self) -> tuple[str, ...]:
        """Athletes seen so far, in order of first appearance."""
        return tuple(self._processors)

    def status(self) -> PipelineStatus:
        """Counters and states now."""
        sink_status: dict[str, Mapping[str, Any]] = {}
        for slot in self._slots:
            try:
                sink_status[slot.sink.name] = slot.sink.status()
            except Exception as exc:  # a broken status must not break the view
                sink_status[slot.sink.name] = {"error": str(exc)}
        return PipelineStatus(
            running=self._running,
            started_ns=self._started_ns,
            athletes=dict(self._athlete_counters),
            sinks={slot.sink.name: slot.counters for slot in self._slots},
            sink_status=sink_status,
            sources=dict(self._source_state),
            durable=self._durable,
            durable_errors=self._durable_errors,
            waiting=self._waiting_count,
            waiting_max=self._waiting_max,
            store_problem=self._store_problem,
        )

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until :meth:`stop` (or until every source ended and inboxes are empty)."""
        if self._running:
            raise RuntimeError("Pipeline.run() is already running")
        self._running = True
        self._started_ns = time.time_ns()
        try:
            async with asyncio.TaskGroup() as sink_group:
                sink_tasks = [
                    task
                    for slot in self._slots
                    for task in (
                        sink_group.create_task(
                            self._supervise_sink(slot), name=f"sink {slot.sink.name}"
                        ),
                        sink_group.create_task(
                            self._pump_live(slot), name=f"live {slot.sink.name}"
                        ),
                    )
                ]
                sink_tasks.append(sink_group.create_task(self._retry_waiting(), name="store retry"))
                async with asyncio.TaskGroup() as work_group:
                    self._work_group = work_group
                    self._source_tasks = [
                        work_group.create_task(self._run_source(s), name=f"source {s.name}")
                        for s in self._sources
                    ]
                    for athlete in list(self._inboxes):
                        self._start_worker(athlete)
                    await self._stop.wait()
                    # Devices first: nothing new arrives while the inboxes are finished.
                    self._accepting = False
                    for task in self._source_tasks:
                        task.cancel()
                    for inbox in self._inboxes.values():
                        inbox.close()
                        inbox.release_waiters()
                self._work_group = None
                self._write_waiting()  # a last chance for results held by a full disk
                await self._flush_sinks()
                for task in sink_tasks:
                    task.cancel()
        finally:
            self._running = False
            self._accepting = False
        if self._waiting:
            raise ResultsNotStoredError(self._not_stored())

    def _ensure_athlete(self, athlete: str) -> _Inbox:
        inbox = self._inboxes.get(athlete)
        if inbox is None:
            counters = AthleteCounters()
            self._athlete_counters[athlete] = counters
            self._processors[athlete] = self._processor_for(athlete)
            inbox = _Inbox(self._inbox_size, counters)
            self._inboxes[athlete] = inbox
            if self._work_group is not None:
                self._start_worker(athlete)
        return inbox

    def _start_worker(self, athlete: str) -> None:
        if athlete not in self._workers and self._work_group is not None:
            self._workers[athlete] = self._work_group.create_task(
                self._work(athlete), name=f"athlete {athlete}"
            )

    async def _run_source(self, source: Source) -> None:
        self._source_state[source.name] = "running"
        try:
            await source.run()
            self._source_state[source.name] = "ended"
        except asyncio.CancelledError:
            self._source_state[source.name] = "stopped"
            raise
        except Exception as exc:
            # One broken device must not take the others down.
            self._source_state[source.name] = f"failed: {exc}"
            _LOGGER.exception("source %s failed", source.name)

    async def _work(self, athlete: str) -> None:
        inbox = self._inboxes[athlete]
        processor = self._processors[athlete]
        counters = self._athlete_counters[athlete]
        while True:
            item = await inbox.get()
            if item is None:
                break
            try:
                produced = processor.process(item.device, item.record)
            except Exception:
                counters.errors += 1
                _LOGGER.exception(
                    "processing %s from %s/%s failed",
                    type(item.record).__name__,
                    athlete,
                    item.device,
                )
                inbox.task_done()
                continue
            counters.processed += 1
            if produced:
                self._dispatch(counters, produced)
            inbox.task_done()
            # A long burst must not starve the sinks and the other athletes.
            if counters.processed % 64 == 0:
                await asyncio.sleep(0)
        try:
            final = processor.close()
        except Exception:
            counters.errors += 1
            _LOGGER.exception("closing the processor of %s failed", athlete)
            return
        if final:
            self._dispatch(counters, final)

    def _dispatch(self, counters: AthleteCounters, results: Sequence[Result]) -> None:
        durable = [r for r in results if not r.kind.is_live]
        if durable:
            counters.results += len(durable)
            self._keep(durable)
        for result in results:
            if result.kind.is_live:
                for slot in self._slots:
                    slot.lane.offer(result)
            if self._on_result is not None:
                self._on_result(result)

    def _keep(self, durable: Sequence[Result]) -> None:
        if self._waiting:  # behind the results already waiting: order is kept
            self._hold(durable)
            return
        try:
            self._write(durable)
        except StoreFullError as exc:
            self._hold(durable, exc)
        except StoreCorruptError as exc:  # damaged while running: never written over
            self._hold(durable, exc)
            self.stop()
        except Exception:
            self._durable_errors += len(durable)
            _LOGGER.exception("%d results not kept", len(durable))

    def _write(self, durable: Sequence[Result]) -> None:
        """History and every sink's outbox in one transaction: all kept, or (the store is
        full: :class:`StoreFullError`) none. Another failure of one part is logged and
        counted, and the other parts are kept (each part is a savepoint)."""
        ok = True
        history = self._history
        with history.transaction() if history is not None else contextlib.nullcontext():
            if history is not None:
                for result in durable:
                    try:
                        history.record(result)
                    except (StoreFullError, StoreCorruptError):
                        raise
                    except Exception:
                        ok = False
                        _LOGGER.exception(
                            "history: %s result of %s not kept", result.kind.value, result.athlete
                        )
            for slot in self._slots:
                try:
                    slot.sink.accept(durable)
                except (StoreFullError, StoreCorruptError):
                    raise
                except Exception:
                    ok = False
                    _LOGGER.exception(
                        "sink %s: %d results not queued", slot.sink.name, len(durable)
                    )
        if ok:
            self._durable += len(durable)
        else:
            self._durable_errors += len(durable)

    def _hold(self, durable: Sequence[Result], exc: StoreError | None = None) -> None:
        """Keep ``durable`` in memory until the store takes it (never dropped)."""
        if exc is not None and self._store_problem is None:
            self._store_problem = str(exc)
            _LOGGER.warning("%s; results wait in memory until it can be written", exc)
        self._waiting.append(list(durable))
        self._waiting_count += len(durable)
        if self._waiting_count > self._waiting_max and not self.stopping:
            _LOGGER.error(
                "more than %d results wait for the store: stopping so that the ones held "
                "can be named (%s)",
                self._waiting_max,
                self._store_problem,
            )
            self.stop()
        self._retry_wake.set()

    def _write_waiting(self) -> bool:
        """Write the waiting results, oldest first, while the store takes them; True when
        none wait any more."""
        written = 0
        while self._waiting:
            batch = self._waiting[0]
            try:
                self._write(batch)
            except StoreFullError as exc:
                self._store_problem = str(exc)
                return False
            except StoreCorruptError as exc:
                self._store_problem = str(exc)
                self.stop()
                return False
            except Exception:
                self._durable_errors += len(batch)
                _LOGGER.exception("%d waiting results not kept", len(batch))
            self._waiting.popleft()
            self._waiting_count -= len(batch)
            written += len(batch)  # (or counted as errors above)
        if self._store_problem is not None:
            _LOGGER.warning("the store can be written again: %d waiting results stored", written)
            self._store_problem = None
        return True

    async def _retry_waiting(self) -> None:
        while True:
            await self._retry_wake.wait()
            self._retry_wake.clear()
            delays = STORE_RETRY.delays(random.Random())
            while self._waiting:
                await asyncio.sleep(next(delays))
                self._write_waiting()

    def _not_stored(self) -> str:
        """One line: how many results the store did not take, whose, what and when."""
        by_athlete: dict[str, Counter[str]] = {}
        times = [r.ts_ns for batch in self._waiting for r in batch]
        for batch in self._waiting:
            for result in batch:
                by_athlete.setdefault(result.athlete, Counter())[result.kind.value] += 1
        whose = "; ".join(
            f"{athlete}: " + ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
            for athlete, kinds in by_athlete.items()
        )

        def utc(ts_ns: int) -> str:
            return dt.datetime.fromtimestamp(ts_ns / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")

        return (
            f"{self._waiting_count} results were NOT stored ({whose}; "
            f"{utc(min(times))} to {utc(max(times))} UTC): "
            f"{self._store_problem or 'the store could not be written'}, then start again"
        )

    async def _supervise_sink(self, slot: _SinkSlot) -> None:
        delays = SINK_RESTART.delays(random.Random())
        while True:
            try:
                await slot.sink.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                slot.counters.restarts += 1
                slot.counters.last_error = str(exc) or type(exc).__name__
                # A full store (it cannot acknowledge) is the pipeline's one status line.
                level = logging.DEBUG if isinstance(exc, StoreFullError) else logging.WARNING
                _LOGGER.log(level, "sink %s failed (%s); restarting", slot.sink.name, exc)
                await asyncio.sleep(next(delays))

    async def _pump_live(self, slot: _SinkSlot) -> None:
        while True:
            batch = await slot.lane.take(LIVE_BATCH_MAX)
            await self._send_live(slot, batch)

    async def _send_live(self, slot: _SinkSlot, batch: list[Result]) -> None:
        try:
            await slot.sink.send_live(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # QoS 0 by contract: a failed live batch is shed, not retried.
            slot.counters.live_failed += len(batch)
            slot.counters.last_error = str(exc) or type(exc).__name__
        else:
            slot.counters.live_sent += len(batch)

    async def _flush_sinks(self) -> None:
        async def flush(slot: _SinkSlot) -> None:
            try:
                async with asyncio.timeout(self._flush_timeout_s):
                    remaining = await slot.sink.drain(self._flush_timeout_s)
                    if remaining:
                        _LOGGER.info(
                            "sink %s: %d messages stay in the outbox", slot.sink.name, remaining
                        )
            except TimeoutError:
                _LOGGER.info(
                    "sink %s did not finish within %.1f s; the rest stays in the outbox",
                    slot.sink.name,
                    self._flush_timeout_s,
                )
            except Exception as exc:
                _LOGGER.warning(
                    "sink %s: flush failed (%s); the rest stays in the outbox", slot.sink.name, exc
                )

        await asyncio.gather(*(flush(slot) for slot in self._slots))


def install_signal_handlers(pipeline: Pipeline) -> Callable[[], None]:
    """Make SIGINT and SIGTERM call :meth:`Pipeline.stop`; returns an undo function.

    A second SIGINT while stopping raises ``KeyboardInterrupt`` (the user insists).
    """
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if pipeline.stopping and sig == signal.SIGINT:
            raise KeyboardInterrupt
        note_stop_signal(sig)  # the CLI exits 128 + sig once the command has stopped
        pipeline.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)

    def undo() -> None:
        for sig in installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

    return undo
