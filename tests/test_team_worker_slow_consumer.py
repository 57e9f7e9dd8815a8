"""A team worker behind a hung commit on real servers: nats-server (JetStream) and
PostgreSQL — its slow consumer, and its stop.

nats-py drops the messages a subscription holds past its pending limits, after the ordered
consumer's sequence tracking: nothing brings them back. A partition whose reader is
stalled behind a hung commit while the server pushes a backlog must handle what it holds
from before the first dropped message, then read on from that message: nothing lost,
nothing twice. And a stop must not wait for the session that holds the commit up.
Every wait is on an event or a condition (a PostgreSQL lock wait, the partition's counters,
a checkpoint row), never a sleep.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, LiteralString

import nats
import psycopg
import pytest

from streamer.athlete.events import MorningEnd
from streamer.config import Config, MqttConfig
from streamer.team import wire
from streamer.team import worker as worker_module
from streamer.team.pg_store import LOCK_CLASS
from streamer.team.worker import (
    WRITE_BACKLOG,
    WRITE_BATCH,
    Partition,
    Worker,
    WorkerOptions,
    partition_application,
)
from tests import team_worker_helpers as th
from tests.mqtt_helpers import eventually
from tests.servers import Mosquitto, NatsServer, PostgreSQL


def _count(dsn: str, sql: LiteralString, params: tuple[object, ...] = ()) -> int:
    try:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(sql, params).fetchone()
    except psycopg.errors.UndefinedTable:  # the worker has not made its tables yet
        return 0
    return int(row[0]) if row and row[0] is not None else 0


def test_a_partition_whose_stalled_consumer_dropped_messages_reads_on_from_the_first(
    postgres: PostgreSQL,
    nats_server: NatsServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One athlete's mornings. The checkpoint table is locked from another session, so the
    partition's first commit hangs and its reader stalls (:data:`WRITE_BACKLOG`) within
    the first four mornings; the next mornings are then pushed into nats-py past the
    partition's (small) pending limit and dropped. Once the lock is released, the same
    partition handles what it held and reads on from the first dropped message (again each
    time its small limit overflows): the history is the single box's, nothing lost, nothing
    twice, and the partition never ended."""
    athlete = "athlete1"
    items = th.athlete_days(1, 12, sessions=False)[athlete]
    ends = [i for i, m in enumerate(items) if isinstance(m, MorningEnd)]
    # The first commit (the first morning's end) hangs; the second morning's end starts
    # the next batch, and the reader waits for the hung commit at the first pass with
    # outputs WRITE_BACKLOG messages after it: by the fourth morning's end.
    assert ends[3] - ends[1] >= WRITE_BACKLOG
    head, tail, trailer = (
        items[: ends[3] + 1],
        items[ends[3] + 1 : ends[10] + 1],
        items[ends[10] + 1 :],
    )
    limit = len(head) + 64  # head alone cannot overflow it: only what comes while stalled
    assert len(tail) > limit + WRITE_BATCH, "the tail overflows the stalled reader's limit"
    number = wire.partition_of(athlete)
    expected = th.oracle_rows(th.oracle({athlete: items}))
    monkeypatch.setattr(worker_module, "PENDING_MSGS_LIMIT", limit)
    options = WorkerOptions(live=False, claim_every_s=0.2)
    checkpoint = "SELECT applied FROM checkpoint WHERE partition = %s"
    blocked = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
        "AND wait_event_type = 'Lock'"
    )

    def read_on() -> list[str]:
        return [r.getMessage() for r in caplog.records if "reading on from" in r.getMessage()]

    async def scenario() -> Partition:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await th.ensure_stream(js)
        worker = Worker("a", nats_url=nats_server.url, dsn=postgres.dsn, config=Config(),
                        options=options)  # fmt: skip
        task = asyncio.create_task(worker.run())
        locker: psycopg.Connection[Any] = await asyncio.to_thread(psycopg.connect, postgres.dsn)
        try:
            await eventually(lambda: number in worker.owned, 60, "the partition claimed")
            stalled = worker.owned[number]
            await asyncio.to_thread(locker.execute, "LOCK TABLE checkpoint IN EXCLUSIVE MODE")
            sent = await th.publish(js, {athlete: head})
            await eventually(
                lambda: _count(postgres.dsn, blocked, (partition_application("a", number),)),
                60,
                "the partition's first commit waiting for the checkpoint table",
            )
            sent += await th.publish(js, {athlete: tail}, offset=sent)
            await eventually(
                lambda: stalled.counters.gaps, 60, "nats-py dropping the stalled reader's messages"
            )
            await asyncio.to_thread(locker.rollback)
            sent += await th.publish(js, {athlete: trailer}, offset=sent)
            await eventually(
                lambda: _count(postgres.dsn, checkpoint, (number,)) == sent,
                120,
                "the checkpoint at the last message",
            )
            assert worker.owned.get(number) is stalled, "the partition was never taken again"
            return stalled
        finally:
            await asyncio.to_thread(locker.close)
            worker.stop()
            await task
            await nc.close()

    with caplog.at_level(logging.INFO, logger="streamer.team.worker"):
        stalled = asyncio.run(scenario())
    assert th.history_rows(postgres.dsn) == expected, "every morning once, none lost"
    c = stalled.counters
    assert c.messages == len(items), "each message handled once"
    assert c.replayed == c.skipped == 0
    assert c.gaps >= 1
    assert len(read_on()) == c.gaps, read_on()
    assert f"partition {number}: NATS dropped messages from stream sequence" in read_on()[0]


@pytest.mark.parametrize("table", ["checkpoint", "seq"])
def test_a_stop_cancels_a_commit_waiting_on_a_lock_and_the_next_owner_replays_it(
    table: str,
    postgres: PostgreSQL,
    nats_server: NatsServer,
    mosquitto: Mosquitto,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A table held by another session, the partition's first commit waits: the worker's
    stop does not wait for that session (its claiming round and its exit would, for as
    long as it likes). Past STOP_WAIT_S the statement is cancelled, the commit rolls back
    and the partition's lock is let go; the next owner replays the messages from the
    checkpoint and keeps what the single box keeps. With ``seq`` held (publishing to MQTT,
    live samples on) the live samples' block reservations wait on it too, queued behind
    the commit in the partition's thread: the stop drops them rather than run them after
    the cancelled commit."""
    athlete = "athlete1"
    items = th.athlete_days(1, 3, sessions=False)[athlete]
    number = wire.partition_of(athlete)
    expected = th.oracle_rows(th.oracle({athlete: items}))
    live = table == "seq"
    config = Config(mqtt=MqttConfig.from_url(mosquitto.url)) if live else Config()
    options = WorkerOptions(live=live, claim_every_s=0.2)
    checkpoint = "SELECT applied FROM checkpoint WHERE partition = %s"
    blocked = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
        "AND wait_event_type = 'Lock'"
    )
    held = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND classid = %s AND objid = %s AND objsubid = 2"
    )

    async def scenario() -> int:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await th.ensure_stream(js)
        first = Worker("a", nats_url=nats_server.url, dsn=postgres.dsn, config=config,
                       options=options)  # fmt: skip
        task = asyncio.create_task(first.run())
        locker: psycopg.Connection[Any] = await asyncio.to_thread(psycopg.connect, postgres.dsn)
        try:
            await eventually(lambda: number in first.owned, 60, "the partition claimed")
            lock = "LOCK TABLE checkpoint IN EXCLUSIVE MODE"
            if table == "seq":
                lock = "LOCK TABLE seq IN EXCLUSIVE MODE"
            await asyncio.to_thread(locker.execute, lock)
            sent = await th.publish(js, {athlete: items})
            await eventually(
                lambda: _count(postgres.dsn, blocked, (partition_application("a", number),)),
                60,
                f"the partition's commit waiting for the {table} table",
            )
            first.stop()
            # The bound is the assertion: a stop that waited for the lock never returns.
            await asyncio.wait_for(task, worker_module.STOP_WAIT_S + 60)
            assert _count(postgres.dsn, checkpoint, (number,)) == 0, "the commit rolled back"
            assert _count(postgres.dsn, held, (LOCK_CLASS, number)) == 0, "the lock let go"
        finally:
            await asyncio.to_thread(locker.close)
            if not task.done():
                first.stop()
                await task
        second = Worker("b", nats_url=nats_server.url, dsn=postgres.dsn, config=config,
                        options=options)  # fmt: skip
        task = asyncio.create_task(second.run())
        try:
            await eventually(
                lambda: _count(postgres.dsn, checkpoint, (number,)) == sent,
                120,
                "the next owner's checkpoint at the last message",
            )
        finally:
            second.stop()
            await task
            await nc.close()
        return sent

    with caplog.at_level(logging.WARNING, logger="streamer.team.worker"):
        asyncio.run(scenario())
    assert th.history_rows(postgres.dsn) == expected, "every morning once, none lost"
    cancelled = [r.getMessage() for r in caplog.records if "holds its stop" in r.getMessage()]
    assert len(cancelled) == 1, cancelled
