"""Team workers on real servers: nats-server (JetStream), PostgreSQL and mosquitto.

The oracle is the single-box pipeline (``App`` over an in-memory SQLite store) on the same
records: what a worker keeps in PostgreSQL and publishes must be what one box would have.
Every wait is on an event (a PostgreSQL row, a subscriber's message, a lock), never a sleep.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nats
import psycopg
import pytest

from devices.recording import RecordedNotification
from processors.labs import LabMarker, LabTiming
from streamer.athlete import AthleteState
from streamer.athlete.events import (
    LabEntry,
    MorningEnd,
    MorningStart,
    SessionEnd,
    SessionRpe,
    SessionStart,
)
from streamer.config import Config, InfluxConfig, MqttConfig
from streamer.team import wire
from streamer.team import worker as worker_module
from streamer.team.partitions import held_partitions
from streamer.team.pg_store import LOCK_CLASS, ensure_schema
from streamer.team.worker import (
    MARKER_BACKLOG_S,
    MARKER_FENCE,
    MarkerFence,
    Partition,
    PartitionCounters,
    StreamMessage,
    Worker,
    WorkerOptions,
    late_marker,
    partition_application,
    restore_windows,
    windows_snapshot,
)
from tests import team_worker_helpers as th
from tests.mqtt_helpers import Received, Subscriber, eventually
from tests.servers import InfluxDB1, Mosquitto, NatsServer, PostgreSQL

ROOT = Path(__file__).resolve().parents[1]


def _availability(topic: str) -> bool:
    """A worker's, a partition's or the bridge's state topic (no result on it)."""
    return any(f"/{what}/" in topic for what in ("worker", "partition", "bridge"))


class _Results(th.SeqRule):
    """What a subscriber received on athletes' topics, read incrementally (cheap to wait
    on), through the documented consumer rule (:class:`th.SeqRule`)."""

    def __init__(self, received: list[Received]) -> None:
        super().__init__()
        self.received = received
        self.read = 0

    def update(self) -> set[tuple[str, str]]:
        for m in self.received[self.read :]:
            self.read += 1
            # Availability and bridge topics carry no results (publishers without a
            # listener clear the retained bridge/commands with an empty message).
            if _availability(m.topic) or not m.payload:
                continue
            body = m.json()
            seq = body.pop("seq")
            assert isinstance(seq, int)
            self.take(m.topic, m.payload, body, seq)
        return self.kept


def _results_at(received: list[Received]) -> tuple[set[tuple[str, str]], dict[str, int]]:
    results = _Results(received)
    return results.update(), results.facts


def _new_result(received: list[Received], start: int, old: set[tuple[str, str]]) -> bool:
    """Whether a result not among ``old`` arrived at ``received[start:]`` (scanned once:
    ``start`` is where the last call stopped, kept in ``old``'s companion list)."""
    scanned = _scanned.setdefault(id(old), [start])
    for m in received[scanned[0] :]:
        scanned[0] += 1
        if _availability(m.topic):
            continue
        body = m.json()
        body.pop("seq")
        if (m.topic, json.dumps(body, sort_keys=True)) not in old:
            return True
    return False


_scanned: dict[int, list[int]] = {}


def _count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row and row[0] is not None else 0


# --- (a) a worker is the single box, spread over partitions -----------------------------------


def test_worker_matches_the_single_box_oracle(
    postgres: PostgreSQL, nats_server: NatsServer, mosquitto: Mosquitto
) -> None:
    # Two athletes with 23 days of mornings (the over-reaching one raises alerts in its
    # last week) and one with two days of mornings and sessions: several partitions.
    messages = th.athlete_days(2, 23, sessions=False)
    messages.update(
        {f"s{a}": m for a, m in th.athlete_days(1, 2, first=dt.date(2026, 5, 1)).items()}
    )
    expected = th.oracle(messages)
    config = Config(mqtt=MqttConfig.from_url(mosquitto.url))

    async def scenario() -> list[Received]:
        sub = await Subscriber("127.0.0.1", mosquitto.port, client_id="oracle-sub").start()
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await th.ensure_stream(js)
        await th.publish(js, messages)
        worker = Worker(
            "a",
            nats_url=nats_server.url,
            dsn=postgres.dsn,
            config=config,
            options=WorkerOptions(live=False),
        )
        task = asyncio.create_task(worker.run())
        want, results = th.expected_messages(expected), _Results(sub.received)
        try:
            await sub.wait_for(
                lambda: want <= results.update() or task.done(),
                timeout_s=600,
                what=f"{want} results at the subscriber",
            )
        finally:
            worker.stop()
            await task
            await sub.stop()
            await nc.close()
        return sub.received

    received = asyncio.run(scenario())
    got, facts = _results_at(received)
    assert got == th.expected_messages(expected)
    assert facts == {"resends": 0, "changed_resends": 0, "backwards": 0, "doubles": 0}
    rows, oracle_rows = th.history_rows(postgres.dsn), th.oracle_rows(expected)
    assert rows == oracle_rows
    assert rows["alerts"], "the over-reaching athletes raise alerts"
    assert rows["sessions"], "sessions are kept"
    # The athletes were spread over partitions, each with its checkpoint.
    assert _count(postgres.dsn, "SELECT count(DISTINCT partition) FROM replay_from") >= 2
    assert _count(postgres.dsn, "SELECT count(*) FROM checkpoint") >= 2


# --- (b) a worker SIGKILLed in the middle of a morning reading ---------------------------------


def _start_worker(
    worker_id: str, nats_url: str, dsn: str, mqtt_url: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streamer.cli", "worker", "--id", worker_id, "--nats",
             nats_url, "--postgres", dsn, "--mqtt", mqtt_url, "--no-live"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )  # fmt: skip


def _split_mid_morning(
    messages: dict[str, list[wire.WireMessage]],
) -> tuple[dict[str, list[wire.WireMessage]], dict[str, list[wire.WireMessage]]]:
    """Each athlete's messages up to the middle of its last morning reading, and the rest."""
    head, tail = {}, {}
    for athlete, items in messages.items():
        start = max(i for i, m in enumerate(items) if isinstance(m, MorningStart))
        end = max(i for i, m in enumerate(items) if isinstance(m, MorningEnd))
        cut = (start + end) // 2
        head[athlete], tail[athlete] = items[:cut], items[cut:]
    return head, tail


def test_a_killed_workers_partitions_resume_with_nothing_lost_or_repeated(
    postgres: PostgreSQL, nats_server: NatsServer, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    messages = th.athlete_days(3, 2, sessions=False)
    head, tail = _split_mid_morning(messages)
    expected = th.oracle(messages)
    # Rolling HRV windows up to the cut are what the first worker must have delivered.
    head_all = th.expected_messages(th.oracle(head))
    head_hrv = {k for k in head_all if k[0].endswith("/hrv")}
    figures: dict[str, float] = {}

    async def scenario() -> list[Received]:
        sub = await Subscriber("127.0.0.1", mosquitto.port, client_id="kill-sub").start()
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await th.ensure_stream(js)
        await th.publish(js, head, gateway="gw1")
        first = _start_worker("a", nats_server.url, postgres.dsn, mosquitto.url, tmp_path / "a.log")
        second = None
        try:
            before_kill = _Results(sub.received)
            await sub.wait_for(
                lambda: head_hrv <= before_kill.update(),
                timeout_s=300,
                what="the first worker's results up to the middle of the morning",
            )
            # In the middle of the morning reading: its RR are in the worker's memory only.
            first.send_signal(signal.SIGKILL)
            first.wait(30)
            killed_at, before = time.monotonic(), len(sub.received)
            await th.publish(js, tail, gateway="gw1", offset=10**6)
            second = _start_worker(
                "b", nats_server.url, postgres.dsn, mosquitto.url, tmp_path / "b.log"
            )
            await sub.wait_for(
                lambda: _new_result(sub.received, before, head_all),
                timeout_s=120,
                what="the takeover's first result",
            )
            figures["takeover_s"] = time.monotonic() - killed_at
            want, results = th.expected_messages(expected), _Results(sub.received)
            await sub.wait_for(
                lambda: want <= results.update(),
                timeout_s=300,
                what="every result of the oracle",
            )
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)
            await sub.stop()
            await nc.close()
        return sub.received

    received = asyncio.run(scenario())
    got, facts = _results_at(received)
    assert got == th.expected_messages(expected)
    # A message whose PUBACK the killed worker did not record is sent again with its seq
    # (at-least-once); never a result under a second seq, never a seq going back.
    assert facts["changed_resends"] == 0
    assert facts["doubles"] == 0
    assert facts["backwards"] == 0
    assert th.history_rows(postgres.dsn) == th.oracle_rows(expected)
    print(f"takeover after SIGKILL (new process included): {figures['takeover_s']:.2f} s; {facts}")


# --- (c) two workers split the partitions; a held one cannot be taken ----------------------


def test_two_workers_split_the_partitions_and_a_held_one_cannot_be_taken(
    postgres: PostgreSQL, nats_server: NatsServer
) -> None:
    messages = th.athlete_days(4, 1, sessions=False)
    expected = th.oracle(messages)
    options = WorkerOptions(live=False, claim_every_s=0.2)

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await th.ensure_stream(js)
        first = Worker("a", nats_url=nats_server.url, dsn=postgres.dsn, config=Config(),
                       options=options)  # fmt: skip
        second = Worker("b", nats_url=nats_server.url, dsn=postgres.dsn, config=Config(),
                        options=options)  # fmt: skip
        tasks = [asyncio.create_task(first.run())]
        try:
            await eventually(
                lambda: len(first.owned) == wire.DEFAULT_PARTITIONS, 60, "a owns all, alone"
            )
            tasks.append(asyncio.create_task(second.run()))
            await eventually(
                lambda: len(first.owned) == len(second.owned) == wire.DEFAULT_PARTITIONS // 2,
                60,
                "an even split once b is live",
            )
            assert set(first.owned).isdisjoint(second.owned)
            # What the server says: every partition is held, each by the worker that says so.
            with psycopg.connect(postgres.dsn, autocommit=True) as conn:
                held = held_partitions(conn)
            assert {p: app.split(":")[1] for p, app in held.items()} == {
                **dict.fromkeys(first.owned, "a"),
                **dict.fromkeys(second.owned, "b"),
            }
            # b cannot take one of a's partitions.
            taken = next(iter(first.owned))
            intruder = await asyncio.to_thread(
                Partition, taken, worker_id="b", dsn=postgres.dsn, config=Config(), js=js
            )
            try:
                assert not await asyncio.to_thread(intruder.try_lock)
            finally:
                await asyncio.to_thread(intruder.close)
            # Records through the two workers are the single box's results.
            await th.publish(js, messages)
            want = th.oracle_rows(expected)
            await eventually(
                lambda: th.history_rows(postgres.dsn)["morning"] == want["morning"],
                120,
                "every morning reading in PostgreSQL",
            )
        finally:
            first.stop()
            second.stop()
            await asyncio.gather(*tasks)
            await nc.close()

    asyncio.run(scenario())


def test_a_worker_that_lost_its_lock_cannot_write(postgres: PostgreSQL) -> None:
    """The lock is checked inside the transaction of outputs: a connection without it
    (its session's lock released, e.g. by an operator) commits nothing."""
    from streamer.team.pg_store import PartitionLost, PgStore, connect, ensure_schema

    conn = connect(postgres.dsn)
    ensure_schema(conn, wire.DEFAULT_PARTITIONS)
    store = PgStore(conn, 3, "test")
    assert conn.execute("SELECT pg_try_advisory_lock(%s, 3)", (LOCK_CLASS,)).fetchone() == (True,)
    with store.transaction() as db:
        store.set_checkpoint(db, 10)
    assert store.checkpoint() == 10
    conn.execute("SELECT pg_advisory_unlock(%s, 3)", (LOCK_CLASS,))

    def stale_write() -> None:
        with store.transaction() as db:
            db.execute("INSERT INTO seq (topic, last) VALUES (?, ?)", ("stale", 1))
            store.set_checkpoint(db, 11)

    with pytest.raises(PartitionLost):
        stale_write()
    assert store.checkpoint() == 10
    assert store.last_seq("stale") == 0
    conn.close()


# --- device leases: a dual-connected strap counts once ----------------------------------------


def test_records_from_a_gateway_without_the_lease_are_dropped(
    postgres: PostgreSQL, nats_server: NatsServer
) -> None:
    """A strap connected to two gateways: each notification reaches the stream twice. The
    worker keeps the copy of the gateway holding the lease at that place in the stream, so
    the result is the single box's on the leaseholder's records, also across a hand-over."""
    ((athlete, items),) = th.athlete_days(1, 1, sessions=False).items()
    half = len(items) // 2
    sent: list[tuple[str, wire.WireMessage]] = []  # (gateway, message) in stream order
    kept: list[wire.WireMessage] = []
    holder = "gw1"
    for i, message in enumerate(items):
        if i in (0, half):
            holder = "gw1" if i == 0 else "gw2"
            grant = wire.LeaseGranted(message.t_ns, "strap", holder)
            sent.append((holder, grant))
            kept.append(grant)  # the hand-over is a gap for the oracle too
        if isinstance(message, RecordedNotification):
            other = "gw2" if holder == "gw1" else "gw1"
            # The other gateway's copy: received 30 ms later, so it is a different record.
            echo = RecordedNotification(message.t_ns + 30_000_000, message.device,
                                           message.char, message.data)  # fmt: skip
            sent += [(holder, message), (other, echo)]
        else:
            sent.append((holder, message))
        kept.append(message)
    expected = th.oracle_rows(th.oracle({athlete: kept}))
    assert expected["morning"]

    async def scenario() -> dict[int, Any]:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await th.ensure_stream(js)
        for n, (gateway, message) in enumerate(sent):
            headers = {wire.GATEWAY_HEADER: gateway, wire.MSG_ID_HEADER: f"{gateway}:1:{n}"}
            await js.publish(wire.raw_subject(athlete), wire.encode(message), headers=headers)
        worker = Worker("a", nats_url=nats_server.url, dsn=postgres.dsn, config=Config(),
                        options=WorkerOptions(live=False))  # fmt: skip
        task = asyncio.create_task(worker.run())
        try:
            await eventually(
                lambda: th.history_rows(postgres.dsn)["morning"] == expected["morning"],
                120,
                "the morning reading of the leaseholders' records",
            )
            return {p: part.counters for p, part in worker.owned.items()}
        finally:
            worker.stop()
            await task
            await nc.close()

    counters = asyncio.run(scenario())
    dropped = sum(c.dropped_lease for c in counters.values())
    assert dropped == sum(1 for g, m in sent if isinstance(m, RecordedNotification)) // 2
    with psycopg.connect(postgres.dsn) as conn:
        leases = conn.execute("SELECT device, gateway FROM leases ORDER BY seq").fetchall()
    assert leases == [("strap", "gw1"), ("strap", "gw2")]


def _cut_off_mornings() -> tuple[str, list[wire.WireMessage], list[wire.WireMessage], int]:
    """Two mornings of one athlete: gw1 is cut off in the middle of the first and its lease
    passes (TTL) to gw2, which reads the second. (athlete, gw1's grant and first half, gw2's
    grant and reading, the split of gw2's reading the backlog may come at)."""
    ((athlete, items),) = th.athlete_days(1, 2, sessions=False).items()
    end1 = next(i for i, m in enumerate(items) if isinstance(m, MorningEnd))
    day1, day2 = items[: end1 + 1], items[end1 + 1 :]
    assert isinstance(day2[0], MorningStart)
    assert isinstance(day2[-1], MorningEnd)
    return athlete, day1, day2, len(day2) // 2


Sent = tuple[str, wire.WireMessage, float]
"""(gateway, message, seconds it waited at that gateway before it was published)."""

#: How long a cut-off gateway's backlog waited (its link down past the lease TTL).
BACKLOG_S = 40.0


def _from(gateway: str, messages: Sequence[wire.WireMessage], held_s: float = 0.0) -> list[Sent]:
    return [(gateway, m, held_s) for m in messages]


async def _publish_from(nc: Any, athlete: str, sent: Sequence[Sent], first: int = 0) -> None:
    """Publish ``sent[first:]`` as its gateways do, each stamped received ``held_s`` ago."""
    js = nc.jetstream()
    await th.ensure_stream(js)
    for n, (gateway, message, held_s) in enumerate(sent[first:], start=first):
        headers = {
            wire.GATEWAY_HEADER: gateway,
            wire.MSG_ID_HEADER: f"{gateway}:1:{n}",
            wire.RECEIVED_HEADER: str(time.time_ns() - round(held_s * 1e9)),
        }
        await js.publish(wire.raw_subject(athlete), wire.encode(message), headers=headers)


async def _worker_through(postgres: PostgreSQL, nats_server: NatsServer, count: int
                          ) -> PartitionCounters:  # fmt: skip
    """A worker run until it handled ``count`` messages and wrote their outputs, stopped;
    its partitions' counters summed."""
    worker = Worker("a", nats_url=nats_server.url, dsn=postgres.dsn, config=Config(),
                    options=WorkerOptions(live=False))  # fmt: skip
    task = asyncio.create_task(worker.run())
    try:
        await eventually(
            lambda: (
                sum(p.counters.messages for p in worker.owned.values()) >= count
                and not any(p._staged or p._writing() for p in worker.owned.values())
            ),
            120,
            f"{count} messages handled and their outputs written",
        )
        total = PartitionCounters()
        for part in worker.owned.values():
            for f in dataclasses.fields(total):
                setattr(total, f.name, getattr(total, f.name) + getattr(part.counters, f.name))
        return total
    finally:
        worker.stop()
        await task


def _worker_on(
    postgres: PostgreSQL, nats_server: NatsServer, athlete: str, sent: Sequence[Sent]
) -> PartitionCounters:
    """``sent`` published as its gateways do, then a worker run through it."""

    async def scenario() -> PartitionCounters:
        nc = await nats.connect(nats_server.url)
        try:
            await _publish_from(nc, athlete, sent)
            return await _worker_through(postgres, nats_server, len(sent))
        finally:
            await nc.close()

    return asyncio.run(scenario())


def test_a_cut_off_gateways_late_morning_end_does_not_close_the_next_gateways_reading(
    postgres: PostgreSQL, nats_server: NatsServer
) -> None:
    """gw1's backlog — the rest of its reading and its morning end — reaches the stream in
    the middle of gw2's reading: its records are dropped by the lease rule, its morning end
    (older than gw2's morning start) by the marker fence, so gw2's reading is whole and
    ends at its own end (the oracle: the single box on what the rules keep)."""
    athlete, day1, day2, cut2 = _cut_off_mornings()
    cut1 = len(day1) // 2
    grant1 = wire.LeaseGranted(day1[0].t_ns, "strap", "gw1")
    grant2 = wire.LeaseGranted(day2[0].t_ns, "strap", "gw2")
    sent = [
        *_from("gw1", [grant1, *day1[:cut1]]),
        *_from("gw2", [grant2, *day2[:cut2]]),
        *_from("gw1", day1[cut1:], BACKLOG_S),  # the cut-off gateway's backlog
        *_from("gw2", day2[cut2:]),
    ]
    expected = th.oracle_rows(th.oracle({athlete: [grant1, *day1[:cut1], grant2, *day2]}))
    assert [row[2] for row in expected["morning"]] == [day2[-1].t_ns]

    counters = _worker_on(postgres, nats_server, athlete, sent)
    assert th.history_rows(postgres.dsn)["morning"] == expected["morning"]
    assert counters.dropped_late_marker == 1
    assert counters.dropped_lease == sum(
        1 for m in day1[cut1:] if isinstance(m, RecordedNotification)
    )


def test_the_marker_fence_is_in_the_replay_point_a_takeover_starts_from(
    postgres: PostgreSQL, nats_server: NatsServer
) -> None:
    """gw2's whole reading is written (its replay point after its end) before gw1's late
    morning end arrives; the next worker starts after that point, with no marker of the
    athlete to replay, and still drops it."""
    athlete, day1, day2, _ = _cut_off_mornings()
    cut1 = len(day1) // 2
    sent = [
        *_from("gw1", [wire.LeaseGranted(day1[0].t_ns, "strap", "gw1"), *day1[:cut1]]),
        *_from("gw2", [wire.LeaseGranted(day2[0].t_ns, "strap", "gw2"), *day2]),
    ]
    backlog = _from("gw1", day1[cut1:], BACKLOG_S)

    async def scenario() -> tuple[PartitionCounters, PartitionCounters]:
        nc = await nats.connect(nats_server.url)
        try:
            await _publish_from(nc, athlete, sent)
            before = await _worker_through(postgres, nats_server, len(sent))
            await _publish_from(nc, athlete, sent + backlog, len(sent))
            after = await _worker_through(postgres, nats_server, len(backlog))
            return before, after
        finally:
            await nc.close()

    before, after = asyncio.run(scenario())
    assert before.dropped_late_marker == 0
    assert after.replayed == 0
    assert after.skipped == 0
    assert after.dropped_late_marker == 1
    (morning,) = th.history_rows(postgres.dsn)["morning"]
    assert morning[2] == day2[-1].t_ns


def test_a_late_marker_is_an_older_one_held_back_at_another_gateway() -> None:
    fence = MarkerFence(10, "gw1")
    held = MARKER_BACKLOG_S + 1
    assert not late_marker(None, 5, "gw1", held)
    assert late_marker(fence, 5, "gw2", held)
    assert not late_marker(fence, 5, "gw2", MARKER_BACKLOG_S)  # a NATS outage's delay
    assert not late_marker(fence, 5, "gw2", None)  # how long it waited is not known
    assert not late_marker(fence, 5, "gw1", held)  # one gateway's order is its outbox's
    assert not late_marker(fence, 10, "gw2", held)
    assert not late_marker(MarkerFence(10, ""), 5, "gw2", held)  # a sender unknown
    assert not late_marker(fence, 5, "", held)
    assert LabEntry not in MARKER_FENCE  # its time is the sample's, days back
    assert [t for t, moves in MARKER_FENCE.items() if not moves] == [SessionRpe]


def test_a_gateway_whose_clock_runs_ahead_of_the_nats_servers_is_named_once(
    postgres: PostgreSQL, caplog: pytest.LogCaptureFixture
) -> None:
    """The fence reads a marker's hold as the stream's stored time minus its gateway's
    receipt stamp: a gateway ahead of the servers would never be fenced, so the worker says
    which one it is (once), and says nothing of a gateway whose markers waited as usual."""
    number = 3
    athlete = next(f"a{n}" for n in range(1000) if wire.partition_of(f"a{n}", 16) == number)
    subject = f"{wire.PARTITION_PREFIX}.{number}.{athlete}"
    part = Partition(number, worker_id="a", dsn=postgres.dsn, config=Config(), js=None, live=False)
    ensure_schema(part.conn, wire.DEFAULT_PARTITIONS)
    assert part.try_lock()
    part.open()
    stored_ns = 1_800_000_000 * 10**9
    markers = [
        ("gw1", -0.3, MorningStart(stored_ns - 10**9)),  # received 0.3 s before it was stored
        ("gw2", 5.0, MorningEnd(stored_ns)),  # stamped 5 s after: gw2 is ahead
        ("gw2", 7.0, MorningStart(stored_ns + 10**9)),
    ]
    with caplog.at_level("WARNING", logger="streamer.team.worker"):
        for seq, (gateway, ahead_s, marker) in enumerate(markers, start=1):
            headers = {
                wire.GATEWAY_HEADER: gateway,
                wire.RECEIVED_HEADER: str(stored_ns + round(ahead_s * 1e9)),
            }
            part.handle(subject, wire.encode(marker), headers, seq, stored_ns)
    part.close()
    said = [r.getMessage() for r in caplog.records if "clock runs ahead" in r.getMessage()]
    assert len(said) == 1
    assert "gateway gw2" in said[0]
    assert "5.0 s" in said[0]


def test_a_replay_point_keeps_the_fence_and_one_written_before_it_restores_none() -> None:
    state = AthleteState("ann", live=False)
    fence = MarkerFence(10, "gw1")
    assert restore_windows(AthleteState("ann", live=False), windows_snapshot(state, fence)) == (
        fence
    )
    windows = (state.heart, state.muscle, state.force_clock, state.snapshot)
    # Before the fence: the windows alone; a build between: a fence per protocol.
    for older in (windows, (*windows, {"morning": (10, "gw1")})):
        assert restore_windows(AthleteState("ann", live=False), pickle.dumps(older)) is None


def test_a_cut_off_gateways_morning_end_behind_the_next_gateways_session_is_dropped(
    postgres: PostgreSQL, nats_server: NatsServer
) -> None:
    """gw1 is cut off in the middle of a morning reading; gw2 takes the strap and the
    athlete's session; gw1's backlog, with its morning end, arrives during that session.
    The end is older than gw2's session start: dropped, so the reading (which took the
    session's beats as they came) is never measured, and the session is the oracle's. With
    a fence per protocol the end closed the reading (bench/team.py: 11 such readings)."""
    ((athlete, items),) = th.athlete_days(1, 1).items()
    start = next(i for i, m in enumerate(items) if isinstance(m, SessionStart))
    morning, session = items[:start], items[start:]
    cut, half = len(morning) // 2, len(session) // 2
    grant1 = wire.LeaseGranted(items[0].t_ns, "strap", "gw1")
    grant2 = wire.LeaseGranted(session[0].t_ns, "strap", "gw2")
    sent = [
        *_from("gw1", [grant1, *morning[:cut]]),
        *_from("gw2", [grant2, *session[:half]]),
        *_from("gw1", morning[cut:], BACKLOG_S),  # the cut-off gateway's backlog
        *_from("gw2", session[half:]),
    ]
    expected = th.oracle_rows(th.oracle({athlete: [grant1, *morning[:cut], grant2, *session]}))
    assert expected["morning"] == []
    assert expected["sessions"]

    counters = _worker_on(postgres, nats_server, athlete, sent)
    assert counters.dropped_late_marker == 1
    assert th.history_rows(postgres.dsn) == expected


def test_an_rpe_at_one_gateway_does_not_fence_the_session_end_another_sent_first(
    postgres: PostgreSQL, nats_server: NatsServer
) -> None:
    """The athlete ends the session (the broker hands the command to gw1) and gives an RPE
    2 s later (to gw2); gw1 was cut off from NATS and published it 40 s later, after the
    RPE. Both are taken, in stream order: the RPE amends the open session, the end closes it
    (an RPE moves no fence; before, the end was dropped as older than the RPE, and the
    session never closed)."""
    ((athlete, items),) = th.athlete_days(1, 1).items()
    end = next(i for i, m in enumerate(items) if isinstance(m, SessionEnd))
    rpe = SessionRpe(items[end].t_ns + 2_000_000_000, 8.0)
    sent = [
        *_from("gw1", items[:end]),
        *_from("gw2", [rpe]),
        *_from("gw1", items[end:], BACKLOG_S),
    ]
    expected = th.oracle_rows(th.oracle({athlete: [m for _, m, _ in sent]}))
    assert [row[1] for row in expected["sessions"]] == [items[end].t_ns]

    counters = _worker_on(postgres, nats_server, athlete, sent)
    assert counters.dropped_late_marker == 0
    assert th.history_rows(postgres.dsn)["sessions"] == expected["sessions"]


def test_worker_unit_passes_systemd_analyze_verify() -> None:
    import shutil

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    unit = ROOT / "deploy" / "systemd" / "redox-worker.service"
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip() and "is not executable" not in line and "not found" not in line
    ]
    assert problems == []
    assert "worker --id" in unit.read_text()


# --- lab markers travel the wire ---------------------------------------------------------------


def test_a_lab_entry_from_the_stream_is_kept_by_the_worker(
    postgres: PostgreSQL, nats_server: NatsServer
) -> None:
    """A lab marker a gateway forwarded (``redox-streamer log`` in team mode) is judged and
    kept by the worker owning the athlete, as ``run`` keeps it on one box."""
    t_ns = 1_764_000_000_000_000_000
    entry = LabEntry(t_ns, LabMarker.DROMS, 310.0, LabTiming.FASTED)

    async def scenario() -> list[tuple[object, ...]]:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await th.ensure_stream(js)
        headers = {wire.GATEWAY_HEADER: "gw1", wire.MSG_ID_HEADER: "gw1:1:1"}
        await js.publish(wire.raw_subject("ann"), wire.encode(entry), headers=headers)
        worker = Worker("a", nats_url=nats_server.url, dsn=postgres.dsn, config=Config(),
                        options=WorkerOptions(live=False))  # fmt: skip
        task = asyncio.create_task(worker.run())

        def rows() -> list[tuple[object, ...]]:
            with psycopg.connect(postgres.dsn) as conn:
                if conn.execute("SELECT to_regclass('lab_entries')").fetchone() == (None,):
                    return []
                return conn.execute(
                    "SELECT athlete, ts_ns, marker, data FROM lab_entries"
                ).fetchall()

        try:
            await eventually(lambda: bool(rows()), 60, "the lab entry in PostgreSQL")
            return rows()
        finally:
            worker.stop()
            await task
            await nc.close()

    ((athlete, ts_ns, marker, data),) = asyncio.run(scenario())
    assert (athlete, ts_ns, marker) == ("ann", t_ns, "droms")
    body = data if isinstance(data, dict) else json.loads(data)
    assert body["droms_carr_u"] == 310.0
    assert body["timing"] == "fasted"


# --- the gateway tag on live InfluxDB points ----------------------------------------------------


def test_live_points_in_influxdb_name_the_gateway_that_received_them(
    postgres: PostgreSQL, nats_server: NatsServer, influxdb1: InfluxDB1
) -> None:
    """A strap's notifications through gw1, then (the athlete walked into the next room)
    gw2: the worker's live ``heart_rate`` points in InfluxDB 1.6 carry each one's gateway;
    the morning reading, made of both rooms' records, carries none."""
    ((athlete, items),) = th.athlete_days(1, 1, sessions=False).items()
    beats = [m for m in items if isinstance(m, RecordedNotification)]
    half = len(beats) // 2
    by_time = {m.t_ns: ("gw1" if i < half else "gw2") for i, m in enumerate(beats)}
    influx = InfluxConfig(url=influxdb1.url, db="redox", create_database=True)

    def tagged() -> dict[str, int]:
        answer = influxdb1.query(
            'SELECT count("hr_bpm") FROM "heart_rate" GROUP BY "gateway"', db="redox"
        )
        series = answer.get("results", [{}])[0].get("series", [])  # type: ignore[attr-defined]
        return {s["tags"]["gateway"]: s["values"][0][1] for s in series}

    def morning_tags() -> list[str]:
        answer = influxdb1.query('SHOW TAG KEYS FROM "morning"', db="redox")
        series = answer.get("results", [{}])[0].get("series", [])  # type: ignore[attr-defined]
        return [v[0] for s in series for v in s["values"]]

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await th.ensure_stream(js)
        for n, message in enumerate(items):
            gateway = by_time.get(message.t_ns, "gw1")
            headers = {wire.GATEWAY_HEADER: gateway, wire.MSG_ID_HEADER: f"{gateway}:1:{n}"}
            await js.publish(wire.raw_subject(athlete), wire.encode(message), headers=headers)
        config = Config(influx=influx)
        worker = Worker("a", nats_url=nats_server.url, dsn=postgres.dsn, config=config)
        task = asyncio.create_task(worker.run())
        try:
            await eventually(
                lambda: sum(tagged().values()) >= len(beats) and bool(morning_tags()),
                120,
                "every beat's hr_bpm and the morning reading in InfluxDB",
            )
        finally:
            worker.stop()
            await task
            await nc.close()

    asyncio.run(scenario())
    assert tagged() == {"gw1": half, "gw2": len(beats) - half}
    assert "gateway" not in morning_tags()
    assert "athlete" in morning_tags()


def test_partitions_whose_locks_went_with_a_postgresql_restart_are_claimed_again(
    postgres: PostgreSQL, nats_server: NatsServer
) -> None:
    """An idle partition (or one with live samples only) writes nothing, so it never
    notices that PostgreSQL's restart took its session and lock: it must not go on
    counting towards the worker's share while nobody holds it. Found by the simulation
    (tests/team_sim.py): after a restart, partitions stayed unheld for good."""
    options = WorkerOptions(live=False, claim_every_s=0.2)

    def held() -> dict[int, str]:
        try:
            with psycopg.connect(postgres.dsn, autocommit=True) as conn:
                return held_partitions(conn)
        except psycopg.OperationalError:  # restarting
            return {}

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        await th.ensure_stream(nc.jetstream())
        worker = Worker("a", nats_url=nats_server.url, dsn=postgres.dsn, config=Config(),
                        options=options)  # fmt: skip
        task = asyncio.create_task(worker.run())
        try:
            await eventually(lambda: len(held()) == wire.DEFAULT_PARTITIONS, 60, "all held")
            await asyncio.to_thread(postgres.restart)
            await eventually(
                lambda: len(held()) == wire.DEFAULT_PARTITIONS,
                60,
                "every partition held again after PostgreSQL's restart",
            )
        finally:
            worker.stop()
            await task
            await nc.close()

    asyncio.run(scenario())


def test_a_partition_whose_session_died_ends_at_its_next_write(
    postgres: PostgreSQL, nats_server: NatsServer
) -> None:
    """Outputs are committed in the partition's own thread while its consumer goes on: a
    commit that finds the session (and its lock) gone must still end the partition, though
    the consumer is then waiting for messages that do not come, and keep nothing past the
    last checkpoint committed."""
    messages = th.athlete_days(1, 2, sessions=False)
    athlete, items = next(iter(messages.items()))
    first_end = next(i for i, m in enumerate(items) if isinstance(m, MorningEnd))
    number = wire.partition_of(athlete)
    checkpoint = f"SELECT applied FROM checkpoint WHERE partition = {number}"

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await th.ensure_stream(js)
        part = Partition(number, worker_id="a", dsn=postgres.dsn, config=Config(), js=js,
                         live=False)  # fmt: skip
        ensure_schema(part.conn, wire.DEFAULT_PARTITIONS)
        assert part.try_lock()
        part.start()
        try:
            # The first morning, through its end: written (stream sequences from 1).
            await th.publish(js, {athlete: items[: first_end + 1]})
            await eventually(
                lambda: _count(postgres.dsn, checkpoint) == first_end + 1,
                60,
                "the first morning's checkpoint committed",
            )
            with psycopg.connect(postgres.dsn, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (partition_application("a", number),),
                )
            await th.publish(js, {athlete: items[first_end + 1 :]}, offset=first_end + 1)
            await eventually(lambda: part.done, 60, "the partition ended at its failed write")
            assert part.checkpoint == first_end + 1
            assert _count(postgres.dsn, checkpoint) == first_end + 1
            assert _count(postgres.dsn, "SELECT count(*) FROM morning") == 1
        finally:
            await part.stop()
            await nc.close()

    asyncio.run(scenario())


def test_a_lease_granted_before_an_athletes_replay_point_still_counts_after_a_takeover(
    postgres: PostgreSQL, tmp_path: Path
) -> None:
    """One partition, two athletes. ``x`` ends a morning and its strap moves to gw2 (the
    grant's write gives ``x`` a replay point just after it); ``y``'s open morning keeps the
    partition's start earlier, where gw1 still held ``x``'s strap. The next owner must
    apply gw2's grant on its way to ``x``'s point, or it drops ``x``'s next morning as
    another gateway's records. Found by the team simulation (tests/team_sim.py)."""
    days = th.athlete_days(2, 2, sessions=False)
    x_days, y_days = days["athlete1"], days["athlete2"]
    x_second = max(i for i, m in enumerate(x_days) if isinstance(m, MorningStart))
    y_first_end = min(i for i, m in enumerate(y_days) if isinstance(m, MorningEnd))
    y_half = y_first_end // 2
    strap = next(m.device for m in x_days if isinstance(m, RecordedNotification))
    t_grant = x_days[x_second].t_ns - 1
    # (athlete, gateway, message) in stream order, before and after the first worker.
    head: list[tuple[str, str, wire.WireMessage]] = [
        ("x", "gw1", wire.LeaseGranted(x_days[0].t_ns - 1, strap, "gw1")),
        *(("x", "gw1", m) for m in x_days[:x_second]),
        *(("y", "gw1", m) for m in y_days[:y_half]),
        ("x", "gw2", wire.LeaseGranted(t_grant, strap, "gw2")),
        # x's second morning begins (its replay point moves past the grant) and a write
        # (y's grant) records that point.
        *(("x", "gw2", m) for m in x_days[x_second : x_second + 20]),
        ("y", "gw1", wire.LeaseGranted(y_days[y_half].t_ns - 1, strap, "gw1")),
    ]
    tail = [
        *(("x", "gw2", m) for m in x_days[x_second + 20 :]),
        *(("y", "gw1", m) for m in y_days[y_half:]),
    ]
    # The oracle gets the accepted messages: the grants with them (gw2's is a hand-over).
    x_accepted = [m for a, _, m in head + tail if a == "x"]
    y_accepted = [m for a, _, m in head + tail if a == "y"]
    expected = th.oracle_rows(th.oracle({"x": x_accepted, "y": y_accepted}))
    nats_one = NatsServer(tmp_path / "nats", partitions=1)
    nats_one.start()
    options = WorkerOptions(partitions=1, live=False, claim_every_s=0.2)

    async def publish(js: Any, items: list[tuple[str, str, wire.WireMessage]], at: int) -> int:
        for n, (athlete, gateway, message) in enumerate(items, start=at):
            headers = {wire.GATEWAY_HEADER: gateway, wire.MSG_ID_HEADER: f"{gateway}:1:{n}"}
            await js.publish(wire.raw_subject(athlete), wire.encode(message), headers=headers)
        return at + len(items)

    async def run_until(worker_id: str, done: Any, what: str) -> None:
        worker = Worker(worker_id, nats_url=nats_one.url, dsn=postgres.dsn, config=Config(),
                        options=options)  # fmt: skip
        task = asyncio.create_task(worker.run())
        try:
            await eventually(done, 120, what)
        finally:
            worker.stop()
            await task

    async def scenario() -> None:
        nc = await nats.connect(nats_one.url)
        js = nc.jetstream()
        await th.ensure_stream(js)
        sent = await publish(js, head, 0)

        def checkpoint() -> int:
            try:
                return _count(postgres.dsn, "SELECT max(applied) FROM checkpoint")
            except psycopg.errors.UndefinedTable:  # the worker has not made its tables yet
                return 0

        await run_until("a", lambda: checkpoint() >= sent, "the first worker at the last grant")
        await publish(js, tail, sent)
        await run_until(
            "b",
            lambda: th.history_rows(postgres.dsn)["morning"] == expected["morning"],
            "both athletes' mornings as the single box has them",
        )
        await nc.close()

    try:
        asyncio.run(scenario())
    finally:
        nats_one.stop()


# --- outputs of several messages in one transaction ---------------------------------------------


@pytest.mark.parametrize("crash", ["inside", "after"])
def test_a_batched_transaction_keeps_its_messages_outputs_and_checkpoint_together(
    postgres: PostgreSQL, crash: str
) -> None:
    """Several messages' outputs share one transaction with the checkpoint. A session lost
    inside it commits none of them (nor the checkpoint); one lost after it keeps all. Either
    way the next owner, replaying from the checkpoint, leaves exactly the single box's rows
    and MQTT outbox messages, each once."""
    messages = th.athlete_days(2, 4, sessions=False)
    expected = th.oracle(messages)
    number = 5
    queues = {a: list(m) for a, m in messages.items()}
    order: list[tuple[str, wire.WireMessage]] = []  # interleaved, as gateways publish
    while any(queues.values()):
        for athlete, items in queues.items():
            if items:
                order.append((athlete, items.pop(0)))
    # The MQTT sink is built (its outbox is written in the transaction) but never runs.
    config = Config(mqtt=MqttConfig.from_url("mqtt://127.0.0.1:1"))

    def outbox() -> list[tuple[str, str]]:
        """(topic, payload without seq) of the partition's MQTT outbox, in order."""
        with psycopg.connect(postgres.dsn) as conn:
            rows = conn.execute(f"SELECT payload, meta FROM p{number}.outbox_mqtt ORDER BY id")
            queued = rows.fetchall()
        out = []
        for payload, meta in queued:
            body = json.loads(bytes(payload))
            body.pop("seq")
            out.append((json.loads(meta)["topic"], json.dumps(body, sort_keys=True)))
        return out

    def feed(part: Partition, start: int, stop_after: int | None) -> list[int]:
        """Handle the messages from stream sequence ``start`` (= index + 1), writing every
        three messages with outputs; returns the committed checkpoints. With
        ``stop_after``, the session dies at that transaction (inside or after it)."""
        commits: list[int] = []
        for index in range(start - 1, len(order)):
            athlete, message = order[index]
            subject = f"{wire.PARTITION_PREFIX}.{number}.{athlete}"
            part.handle(subject, wire.encode(message), {}, index + 1, stored_ns=0)
            if len(part._staged) >= 3 and sum(1 for _, d in part._staged if d) >= 2:
                if stop_after is not None and len(commits) + 1 == stop_after:
                    return commits  # the caller makes this transaction die
                part.flush()
                commits.append(part.checkpoint)
        part.flush()
        commits.append(part.checkpoint)
        return commits

    first = Partition(number, worker_id="a", dsn=postgres.dsn, config=config, js=None, live=False)
    ensure_schema(first.conn, wire.DEFAULT_PARTITIONS)
    assert first.try_lock()
    assert first.open() == 1
    commits = feed(first, 1, stop_after=2)
    assert len(commits) == 1, "the first transaction committed"
    before = outbox()
    assert before, "the first transaction queued outputs"
    assert first.store is not None
    staged = list(first._staged)
    assert sum(1 for _, durable in staged if durable) >= 2, "a transaction of several messages"
    if crash == "inside":
        # The session dies after the outputs' statements, before the commit.
        def die(db: Any, applied: int) -> None:
            db.execute("SELECT pg_terminate_backend(pg_backend_pid())")

        first.store.set_checkpoint = die  # type: ignore[method-assign]
        with pytest.raises(psycopg.OperationalError):
            first.flush()
        assert _count(postgres.dsn, "SELECT applied FROM checkpoint") == commits[0]
        assert outbox() == before, "none of the batch's outputs"
    else:
        first.flush()  # committed; then the session dies
        assert _count(postgres.dsn, "SELECT applied FROM checkpoint") == first.checkpoint
        assert first.checkpoint == staged[-1][0] > commits[0]
        kept = outbox()[len(before) :]
        assert len(kept) == sum(len(durable) for _, durable in staged), "all the batch's outputs"
        with psycopg.connect(postgres.dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (partition_application("a", number),),
            )
    first.close()

    second = Partition(number, worker_id="b", dsn=postgres.dsn, config=config, js=None, live=False)
    assert second.try_lock(), "the dead session's lock went with it"
    start = second.open()
    assert start <= second.checkpoint + 1
    feed(second, start, stop_after=None)
    second.close()

    assert th.oracle_rows(expected)["morning"], "mornings are kept"
    assert th.history_rows(postgres.dsn) == th.oracle_rows(expected)
    sent = outbox()
    assert len(sent) == len(set(sent)), "no output twice"
    assert set(sent) == th.expected_messages(expected)


@pytest.mark.parametrize("period", ["kept", "never"])
def test_a_takeover_sends_again_only_the_live_samples_after_the_last_checkpoint_period(
    postgres: PostgreSQL, period: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a morning reading's first minute (before its first HRV window) a partition makes
    live samples and nothing durable, so nothing wrote its checkpoint: the next owner, muted
    only up to the checkpoint, sent every live sample since the reading's start again (the
    200-athlete fault bench: each two or three times, 20–42 s late). The partition writes
    its checkpoint alone every ``LIVE_CHECKPOINT_S``, and the next owner sends again only
    the live samples of the passes after that write. ``never``: without the period (what
    the bench saw)."""
    if period == "never":
        monkeypatch.setattr(worker_module, "LIVE_CHECKPOINT_S", math.inf)
    ((athlete, items),) = th.athlete_days(1, 1, sessions=False).items()
    start = next(i for i, m in enumerate(items) if isinstance(m, MorningStart))
    first_window = 60  # record s: a reading's first HRV window (its first durable output)
    cut = next(i for i, m in enumerate(items) if m.t_ns - items[start].t_ns >= first_window * 1e9)
    number = wire.partition_of(athlete, wire.DEFAULT_PARTITIONS)
    subject = f"{wire.PARTITION_PREFIX}.{number}.{athlete}"
    stream = [
        StreamMessage(subject, wire.encode(m), {}, seq, 0)
        for seq, m in enumerate(items[:cut], start=1)
    ]
    pass_s = 0.25  # each message a pass of its own, a quarter of a second apart

    def feed(part: Partition, first: int) -> dict[int, int]:
        """Live samples sent per stream sequence, handling from ``first`` as the consumer
        does: a pass, then its write if it staged one."""
        now = [0.0]
        part.clock = lambda: now[0]
        sent: dict[int, int] = {}
        send_live = part.send_live

        def counted() -> None:
            sent[part._handled] = len(part._live)
            send_live()

        part.send_live = counted  # type: ignore[method-assign]
        for message in stream[first - 1 :]:
            part.handle_pass([message])
            if part._staged:
                part.flush()
            now[0] += pass_s
        return {seq: n for seq, n in sent.items() if n}

    config = Config()
    dead = Partition(number, worker_id="a", dsn=postgres.dsn, config=config, js=None)
    ensure_schema(dead.conn, wire.DEFAULT_PARTITIONS)
    assert dead.try_lock()
    sent_first = feed(dead, dead.open())
    dead.close()  # killed: the lock goes with its connection
    assert sum(sent_first.values()) > 40, "the reading's live samples went out"
    assert not dead.counters.results, "nothing durable in a reading's first minute"

    owner = Partition(number, worker_id="b", dsn=postgres.dsn, config=config, js=None)
    assert owner.try_lock()
    again = feed(owner, owner.open())
    owner.close()
    if period == "never":
        assert dead.checkpoint == 0
        assert again == sent_first, "every live sample of the reading sent twice"
        return
    assert owner.counters.replayed, "the next owner went through the reading muted"
    after = [seq for seq in sent_first if seq > dead.checkpoint]
    assert again == {seq: sent_first[seq] for seq in after}
    assert len(after) * pass_s <= worker_module.LIVE_CHECKPOINT_S, (
        "at most one period's passes sent again"
    )


def test_a_partition_stopped_as_nats_answers_its_consumer_creation_stops(
    nats_server: NatsServer, postgres: PostgreSQL
) -> None:
    """nats-py waits for the consumer's creation with ``asyncio.wait_for``, which on Python
    3.11 returns the answer and drops a cancellation landing in the same loop turn: the
    partition then consumed on and its stop waited for ever. Here the stop starts in the
    loop turn in which the server's answer arrives."""

    async def scenario() -> Partition:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        try:
            await th.ensure_stream(js)
            number = wire.partition_of("athlete1", wire.DEFAULT_PARTITIONS)

            def claim() -> Partition:
                part = Partition(
                    number, worker_id="w", dsn=postgres.dsn, config=Config(), js=js, live=False
                )
                ensure_schema(part.conn, wire.DEFAULT_PARTITIONS)
                assert part.try_lock()
                return part

            part = await asyncio.to_thread(claim)
            stopping: list[asyncio.Future[None]] = []
            request = nc.request

            async def answered_then_stopped(subject: str, *args: Any, **kwargs: Any) -> Any:
                call = asyncio.ensure_future(request(subject, *args, **kwargs))
                if subject.startswith("$JS.API.CONSUMER.CREATE.") and not stopping:
                    call.add_done_callback(
                        lambda _: stopping.append(asyncio.ensure_future(part.stop()))
                    )
                # The partition's task waits as nats-py does: asyncio.wait_for.
                return await asyncio.wait_for(call, 30)

            nc.request = answered_then_stopped  # type: ignore[method-assign]
            part.start()
            await eventually(lambda: stopping, 30, "the consumer's creation answered")
            done, _ = await asyncio.wait(stopping, timeout=30)
            assert done, "the partition's stop did not return"
            return part
        finally:
            await nc.close()

    part = asyncio.run(scenario())
    assert part.done
    assert part.counters.messages == 0
