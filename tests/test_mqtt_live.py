"""The live link (:mod:`streamer.sinks.mqtt_live`) against a real mosquitto: samples written
inline arrive on their topics with their ``seq``, a broker away sheds and counts them and
they flow again when it is back, a keepalive PINGREQ held by a full socket leaves once the
broker reads again, a clean stop closes the socket, a stop during the connect ends it; a
team worker's partitions send through one. Every wait is on an event or a condition (the
link's ``up``, a subscriber's messages, paho's queue, the socket's writability), never a
sleep."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import select
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import nats
import psycopg
import pytest
from paho.mqtt import client as paho

from devices.recording import RecordedNotification
from streamer.config import Config, MqttConfig, Secret
from streamer.results import Kind, Result
from streamer.sinks import mqtt as mqtt_module
from streamer.sinks.backoff import Backoff, Jitter
from streamer.sinks.mqtt import HELD_PER_TOPIC, MqttPublisher
from streamer.sinks.mqtt_live import LiveLink
from streamer.store import Store
from streamer.team import wire
from streamer.team.pg_store import ensure_schema
from streamer.team.worker import Partition, Worker, WorkerOptions, partition_application
from tests import team_worker_helpers as th
from tests.mqtt_helpers import Subscriber, eventually
from tests.servers import HOST, Mosquitto, NatsServer, PostgreSQL
from tests.shipped_mosquitto import ShippedBroker

pytestmark = pytest.mark.integration

QUICK = Backoff(0.05, 0.2, multiplier=2.0, jitter=Jitter.NONE)
"""Reconnection attempts close together: the test waits for the broker, not the back-off."""


def _beat(i: int, athlete: str = "ann") -> Result:
    fields = {"hr_bpm": 60 + i % 50, "rr_ms": [900.0]}
    return Result(Kind.HEART_RATE, athlete, 1_700_000_000_000_000_000 + i, fields, "strap")


@contextlib.asynccontextmanager
async def _linked(
    mosquitto: Mosquitto, **options: Any
) -> AsyncIterator[tuple[LiveLink, asyncio.Task[None]]]:
    config = MqttConfig.from_url(mosquitto.url, **options)
    link = LiveLink(config, "redox-worker-t-live", backoff=QUICK)
    task = asyncio.create_task(link.run())
    try:
        async with asyncio.timeout(30):
            await link.up.wait()
        yield link, task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_samples_arrive_on_their_topics_with_their_seq_through_the_link(
    mosquitto: Mosquitto,
) -> None:
    """Two publishers (two partitions) share one link: each sample reaches a subscriber on
    its athlete's topic, numbered on that topic by its publisher's store, in order; the
    publishers count them as published and the link as its own."""
    sub = await Subscriber(HOST, mosquitto.port, topic="redox/#", persistent=False).start()
    config = MqttConfig.from_url(mosquitto.url)
    try:
        with Store(":memory:") as one, Store(":memory:") as two:
            async with _linked(mosquitto) as (link, _):
                ann = MqttPublisher(config, one, live_link=link)
                bob = MqttPublisher(config, two, live_link=link)
                for i in range(0, 40, 5):  # batches of 5, as a worker's pass hands them
                    assert ann.publish_live([_beat(j) for j in range(i, i + 5)]) == 0
                    assert bob.publish_live([_beat(j, "bob") for j in range(i, i + 5)]) == 0
                await sub.wait_for(lambda: len(sub.received) >= 80, what="80 live samples")
                assert link.status()["published"] == 80
                assert ann.status()["live_published"] == bob.status()["live_published"] == 40
                assert ann.status()["shed"] == bob.status()["shed"] == 0
    finally:
        await sub.stop()
    for athlete in ("ann", "bob"):
        got = sub.on(f"redox/{athlete}/strap/live")
        assert [m.qos for m in got] == [0] * 40
        assert [m.json()["hr_bpm"] for m in got] == [60 + i for i in range(40)]
        seqs = [int(str(m.json()["seq"])) for m in got]
        assert seqs == list(range(seqs[0], seqs[0] + 40)), "one seq per sample, in order"
    assert {r.topic for r in sub.received} == {
        "redox/ann/strap/live",
        "redox/bob/strap/live",
    }


async def test_samples_held_too_long_for_their_numbers_are_shed_not_sent_late(
    mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Samples held for their ``seq`` longer than HELD_MAX_S are no longer live: shed
    (counted) when the numbers come; later samples go out numbered. After close_live (its
    partition stopping) the held ones are shed and nothing is published."""
    monkeypatch.setattr(mqtt_module, "HELD_MAX_S", 0.0)  # every held sample is stale
    config = MqttConfig.from_url(mosquitto.url)
    with Store(":memory:") as store:
        async with _linked(mosquitto) as (link, _):
            publisher = MqttPublisher(config, store, live_link=link)
            assert publisher.publish_live([_beat(i) for i in range(3)]) == 0  # held
            await eventually(lambda: publisher.status()["shed"] == 3, 30, "the stale ones shed")
            assert publisher.publish_live([_beat(3)]) == 0
            assert publisher.status()["live_published"] == 1, "numbers at hand: sent"
            publisher.publish_live([_beat(0, "bob")])  # a new topic: held
            publisher.close_live()
            assert publisher.status()["shed"] == 4, "the held one shed at the close"
            assert publisher.publish_live([_beat(1, "bob")]) == 1
            assert publisher.status()["live_published"] == 1


async def test_a_broker_away_sheds_and_counts_samples_and_they_flow_again_when_it_is_back(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker stopped: publishing returns at once with every sample shed and counted
    (no exception, one warning for the outage, not one per sample or per attempt); the
    broker back: the link reconnects by itself and samples arrive again."""
    caplog.set_level(logging.DEBUG, logger="streamer.sinks.mqtt_live")
    config = MqttConfig.from_url(mosquitto.url)
    with Store(":memory:") as store:
        async with _linked(mosquitto) as (link, task):
            publisher = MqttPublisher(config, store, live_link=link)
            assert publisher.publish_live([_beat(0)]) == 0
            await asyncio.to_thread(mosquitto.stop)
            await eventually(lambda: not link.connected, 30, "the link saw the broker go")
            attempts_before = link.status()["connects"]
            for i in range(1, 201):
                assert publisher.publish_live([_beat(i)]) == 1
            # Let it fail to connect a few times (QUICK back-off) while the broker is away.
            await eventually(
                lambda: sum("cannot connect" in r.getMessage() for r in caplog.records) >= 3,
                30,
                "three failed attempts",
            )
            assert publisher.status()["shed"] == 200
            assert link.status()["shed"] == 200  # the link's own account says the outage too
            assert publisher.status()["live_published"] == 1
            warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(warnings) == 1, warnings  # "lost", and no more for the outage
            assert not task.done()

            await asyncio.to_thread(mosquitto.start)
            sub = await Subscriber(HOST, mosquitto.port, topic="redox/#", persistent=False).start()
            try:
                async with asyncio.timeout(30):
                    await link.up.wait()
                assert link.status()["connects"] == attempts_before + 1
                assert publisher.publish_live([_beat(500)]) == 0
                await sub.wait_for(lambda: len(sub.received) == 1, what="a sample after the return")
            finally:
                await sub.stop()
            assert sub.received[0].json()["hr_bpm"] == 60 + 500 % 50
            assert publisher.status()["live_published"] == 2


async def test_a_link_the_broker_drops_at_once_backs_off_and_says_so_once(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """Two links with one client id (a worker id given twice): the broker drops each one as
    the other connects. Each connection lost within ``STABLE_S`` counts as a failed attempt,
    so the back-off grows instead of restarting at its shortest, and the run of losses is
    one warning per link, not one per reconnection."""
    caplog.set_level(logging.DEBUG, logger="streamer.sinks.mqtt_live")
    config = MqttConfig.from_url(mosquitto.url)
    links = [LiveLink(config, "redox-worker-twice-live", backoff=QUICK) for _ in range(2)]
    tasks = [asyncio.create_task(link.run()) for link in links]
    try:
        await eventually(
            lambda: all(link.status()["disconnects"] >= 4 for link in links),
            60,
            "each link dropped four times",
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    lost = [r for r in caplog.records if r.levelno >= logging.WARNING and "lost" in r.getMessage()]
    assert len(lost) <= len(links), [r.getMessage() for r in lost]


async def test_a_clean_stop_says_disconnect_and_closes_the_socket(mosquitto: Mosquitto) -> None:
    """Cancelling :meth:`LiveLink.run` closes the connection's socket and marks the link
    down; publishing after it sheds."""
    async with _linked(mosquitto) as (link, task):
        client = link._client
        assert client is not None
        sock = client.socket()
        assert sock is not None
        assert sock.fileno() >= 0
    assert task.done()
    assert sock.fileno() == -1, "the socket is closed"
    assert not link.connected
    assert not link.up.is_set()
    assert link.publish([("redox/ann/strap/live", b"{}")]) == 0
    assert link.status()["shed"] == 1


PING = bytes([paho.PINGREQ, 0])
"""An MQTT PINGREQ on the wire (the broker answers; the link takes the PINGRESP as its own)."""


def _raw_publish(topic: str, payload: bytes) -> bytes:
    """An MQTT 3.1.1 PUBLISH at QoS 0, as bytes on the wire."""
    body = len(topic).to_bytes(2, "big") + topic.encode() + payload
    header = bytearray([0x30])
    left = len(body)
    while True:
        left, digit = divmod(left, 128)
        header.append(digit | (0x80 if left else 0))
        if not left:
            return bytes(header) + body


_FILL = (*(_raw_publish("redox-test/fill", b"x" * n) for n in (1000, 100, 0)), PING)
"""Smaller and smaller packets, down to a PINGREQ's two bytes: a socket that refuses a large
one may still take a small one (room left in its last buffer), and it must refuse the link's
own PINGREQ."""


def _fill(sock: socket.socket, rest: bytes) -> bytes:
    """Write on the non-blocking ``sock`` the ``rest`` of a packet cut short, then whole
    packets (:data:`_FILL`) until it takes no more; returns the rest of one it cut short
    (b"" if none): that must be written before anything else is, or the stream is no MQTT."""
    with contextlib.suppress(BlockingIOError):
        while rest:
            rest = rest[sock.send(rest) :]
    if rest:
        return rest
    for packet in _FILL:
        try:
            while True:
                rest = packet
                while rest:
                    rest = rest[sock.send(rest) :]
        except BlockingIOError:
            if rest != packet:
                return rest
    return b""


def _finish(sock: socket.socket, rest: bytes) -> None:
    """Write ``rest`` now, waiting on the socket's writability, without yielding to the loop."""
    while rest:
        _, writable, _ = select.select([], [sock], [], 10)
        assert writable, "the broker did not read again"
        with contextlib.suppress(BlockingIOError):
            rest = rest[sock.send(rest) :]


async def test_a_keepalive_ping_held_by_a_full_socket_leaves_when_the_broker_reads_again(
    mosquitto: Mosquitto,
) -> None:
    """The broker stops reading and the link's socket fills; the keepalive's PINGREQ, the
    next write, is held by paho. When the broker reads again the link writes it by itself
    and samples flow on the same connection — not shed until the keepalive drops it."""
    assert mosquitto.proc is not None
    # mosquitto drops a client silent for 1.5 keepalives: the broker must read again before
    # then, i.e. within about half a keepalive after the ping (due after one) — 4 s here.
    keepalive_s = 8
    topic = "redox/ann/strap/live"
    async with _linked(mosquitto, keepalive_s=keepalive_s) as (link, _):
        client = link._client
        assert client is not None
        sock = client.socket()
        assert isinstance(sock, socket.socket)
        # The test reaches into the link's socket: a small send buffer, then filled with
        # whole MQTT packets written past paho, as a broker that stopped reading leaves it.
        # Paho itself holds nothing, so the keepalive's PINGREQ is the write that meets it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        os.kill(mosquitto.proc.pid, signal.SIGSTOP)
        try:
            rest = _fill(sock, b"")
            assert not client.want_write()

            def ping_held() -> bool:
                nonlocal rest
                if client.want_write():
                    return True
                rest = _fill(sock, rest)  # kept full until the ping, whatever the kernel frees
                return False

            await eventually(ping_held, keepalive_s + 5, "loop_misc's PINGREQ held by paho")
            # paho's queue (private): what it holds is the keepalive's PINGREQ and nothing else.
            assert [p["command"] for p in client._out_packet] == [paho.PINGREQ]
            assert link.connected
        finally:
            os.kill(mosquitto.proc.pid, signal.SIGCONT)
        # Our cut-short packet before the link's PINGREQ, or the stream is no longer MQTT:
        # written before the loop (the link's writer) runs again.
        _finish(sock, rest)
        await eventually(
            lambda: not client.want_write() or not link.connected,
            keepalive_s + 5,
            "the held PINGREQ written or the connection lost",
        )
        assert link._client is client, "the keepalive dropped the link: the ping stayed held"
        assert not client.want_write()
        sub = await Subscriber(HOST, mosquitto.port, topic=topic, persistent=False).start()
        try:
            assert link.publish([(topic, b'{"hr_bpm":61}')]) == 1
            await sub.wait_for(lambda: len(sub.received) == 1, what="a sample after the ping")
        finally:
            await sub.stop()
        assert sub.received[0].payload == b'{"hr_bpm":61}'
        assert link.status()["disconnects"] == 0
        assert link.status()["connects"] == 1


async def test_a_stop_while_waiting_for_connack_ends_the_link_and_closes_its_socket(
    mosquitto: Mosquitto,
) -> None:
    """The broker held (SIGSTOP): the kernel takes the TCP connection, CONNACK never comes.
    A stop then ends :meth:`LiveLink.run` at once (kept, not taken for a failed attempt
    and retried) and closes the socket it had opened."""
    assert mosquitto.proc is not None
    link = LiveLink(MqttConfig.from_url(mosquitto.url), "redox-worker-t-live", backoff=QUICK)
    os.kill(mosquitto.proc.pid, signal.SIGSTOP)
    try:
        task = asyncio.create_task(link.run())
        await eventually(lambda: link._io is not None, 30, "the TCP connection made")
        io = link._io
        assert io is not None
        sock = io.socket()
        assert sock is not None
        task.cancel()
        async with asyncio.timeout(10):
            with pytest.raises(asyncio.CancelledError):
                await task
        assert sock.fileno() == -1
        assert not link.connected
        assert link.status()["connects"] == 0
    finally:
        os.kill(mosquitto.proc.pid, signal.SIGCONT)


async def test_the_worker_account_sends_live_samples_under_the_shipped_acl(
    team_mosquitto: ShippedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """On team mode's shipped broker and ACL, a live link logged in as ``redox-worker``
    publishes samples that Home Assistant's account reads; with a wrong password the broker
    refuses it (CONNACK), the link stays down, every sample is shed and the refusal is
    logged once however often it is tried."""
    caplog.set_level(logging.DEBUG, logger="streamer.sinks.mqtt_live")
    reader = Subscriber(
        team_mosquitto.host,
        team_mosquitto.port,
        topic="redox/#",
        client_id="test-ha",
        persistent=False,
        username="homeassistant",
        password=team_mosquitto.password("homeassistant"),
    )
    await reader.start()
    try:
        worker = MqttConfig.from_url(team_mosquitto.url("redox-worker"))
        link = LiveLink(worker, "redox-worker-a-live", backoff=QUICK)
        task = asyncio.create_task(link.run())
        try:
            async with asyncio.timeout(30):
                await link.up.wait()
            assert link.publish([("redox/ann/strap/live", b'{"hr_bpm":61}')]) == 1
            await reader.wait_for(lambda: len(reader.received) == 1, what="the live sample")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert reader.received[0].topic == "redox/ann/strap/live"

        wrong = dataclasses.replace(worker, password=Secret("not-the-password"))
        refused = LiveLink(wrong, "redox-worker-b-live", backoff=QUICK)
        task = asyncio.create_task(refused.run())
        try:
            await eventually(
                lambda: sum("cannot connect" in r.getMessage() for r in caplog.records) >= 3,
                30,
                "three refused attempts",
            )
            assert refused.publish([("redox/ann/strap/live", b"{}")]) == 0
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert refused.status()["connects"] == 0
        assert refused.status()["shed"] == 1
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(said) == 1, said
        assert "refused" in said[0]
        assert "not-the-password" not in caplog.text
    finally:
        await reader.stop()


def test_a_workers_partitions_send_their_live_samples_on_its_one_live_link(
    nats_server: NatsServer, postgres: PostgreSQL, mosquitto: Mosquitto
) -> None:
    """A worker (16 partitions, live samples on): an athlete's strap notifications from the
    stream reach a subscriber as live samples on the athlete's topic, ``seq`` increasing,
    sent through the worker's live link (its counters), none through the partitions' own
    connections; the worker's stop closes the link."""
    ((athlete, items),) = th.athlete_days(1, 1, sessions=False).items()
    beats = [m for m in items if isinstance(m, RecordedNotification) and m.device == "strap"]
    records = beats[:30]
    grant = wire.LeaseGranted(t_ns=records[0].t_ns - 1, device="strap", gateway="gw1")
    topic = f"redox/{athlete}/strap/live"
    config = Config(mqtt=MqttConfig.from_url(mosquitto.url))

    async def scenario() -> tuple[list[int], dict[str, object], int, bool]:
        sub = await Subscriber(HOST, mosquitto.port, topic=topic, persistent=False).start()
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await th.ensure_stream(js)
        worker = Worker("w", nats_url=nats_server.url, dsn=postgres.dsn, config=config,
                        options=WorkerOptions(claim_every_s=0.2))  # fmt: skip
        number = wire.partition_of(athlete, wire.DEFAULT_PARTITIONS)
        task = asyncio.create_task(worker.run())
        try:
            await eventually(
                lambda: (
                    number in worker.owned
                    and worker.live_link is not None
                    and worker.live_link.connected
                ),
                120,
                "the athlete's partition owned and the live link up",
            )
            await th.publish(js, {athlete: [grant, *records]})
            await sub.wait_for(lambda: len(sub.on(topic)) >= len(records), 60, "the samples")
            (publisher,) = [s for s in worker.owned[number].sinks if isinstance(s, MqttPublisher)]
            live_published = int(publisher.status()["live_published"])
        finally:
            worker.stop()
            await task
            await nc.close()
            await sub.stop()
        assert worker.live_link is not None
        seqs = [int(str(m.json()["seq"])) for m in sub.on(topic)]
        return seqs, worker.live_link.status(), live_published, worker.live_link.connected

    seqs, status, live_published, still_connected = asyncio.run(scenario())
    assert len(seqs) == len(records)
    assert seqs == sorted(set(seqs)), "seq strictly increasing"
    assert live_published == len(records)
    assert status["published"] == len(records)
    assert status["shed"] == 0
    assert status["client_id"] == "redox-worker-w-live"
    assert not still_connected, "the stop closed the link"


def _claimed(postgres: PostgreSQL, config: Config, link: LiveLink) -> Partition:
    """Partition 0 claimed and opened on ``link`` (no NATS: the test hands it samples)."""
    part = Partition(0, worker_id="w", dsn=postgres.dsn, config=config, js=None,
                     live_link=link)  # fmt: skip
    ensure_schema(part.conn, wire.DEFAULT_PARTITIONS)
    assert part.try_lock()
    part.open()
    return part


async def test_postgresql_gone_when_a_topic_needs_seqs_holds_then_sheds_not_the_partition(
    postgres: PostgreSQL, mosquitto: Mosquitto
) -> None:
    """A partition on the live link whose PostgreSQL connection is gone: a new live topic's
    block of ``seq`` cannot be reserved, so its samples are held (HELD_PER_TOPIC at most,
    then the oldest shed and counted) — and the pass goes on (no exception out of
    :meth:`Partition.send_live` into the consumer)."""
    config = Config(mqtt=MqttConfig.from_url(mosquitto.url))
    async with _linked(mosquitto) as (link, _):
        part = await asyncio.to_thread(_claimed, postgres, config, link)
        try:
            (publisher,) = [s for s in part.sinks if isinstance(s, MqttPublisher)]
            await asyncio.to_thread(part.conn.close)
            part._live = [_beat(1), _beat(2)]
            part.send_live()
            assert publisher.status()["shed"] == 0, "held for their numbers"
            part._live = [_beat(i) for i in range(3, 3 + HELD_PER_TOPIC)]
            part.send_live()
            assert publisher.status()["shed"] == 2, "past the bound, the two oldest"
            assert publisher.status()["live_published"] == 0
        finally:
            await asyncio.to_thread(part.close)


async def test_a_seq_reservation_waiting_on_a_lock_holds_its_topic_not_the_event_loop(
    postgres: PostgreSQL, mosquitto: Mosquitto
) -> None:
    """Another session holds the ``seq`` table: the partition's block reservation waits in
    the partition's thread, while :meth:`Partition.send_live` returns at once and the loop
    runs on (a reservation on the loop stopped the whole worker for as long as the lock was
    held). The samples held meanwhile go out in order, numbered, once the lock is gone."""
    sub = await Subscriber(HOST, mosquitto.port, topic="redox/#", persistent=False).start()
    config = Config(mqtt=MqttConfig.from_url(mosquitto.url))
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
        "AND wait_event_type = 'Lock'"
    )

    def locked() -> bool:
        with psycopg.connect(postgres.dsn) as conn:
            row = conn.execute(waiting, (partition_application("w", 0),)).fetchone()
        return bool(row and row[0])

    locker = await asyncio.to_thread(psycopg.connect, postgres.dsn)
    try:
        async with _linked(mosquitto) as (link, _):
            part = await asyncio.to_thread(_claimed, postgres, config, link)
            (publisher,) = [s for s in part.sinks if isinstance(s, MqttPublisher)]
            try:
                await asyncio.to_thread(locker.execute, "LOCK TABLE seq IN EXCLUSIVE MODE")
                part._live = [_beat(i) for i in range(5)]
                part.send_live()  # returns: its numbers are asked for in the thread
                await eventually(locked, 30, "the reservation waiting on the lock")
                part._live = [_beat(i) for i in range(5, 10)]
                part.send_live()
                assert publisher.status()["live_published"] == 0
                assert publisher.status()["shed"] == 0
                await asyncio.to_thread(locker.rollback)
                await sub.wait_for(lambda: len(sub.received) >= 10, what="the held samples")
            finally:
                await asyncio.to_thread(part.close)
    finally:
        await asyncio.to_thread(locker.close)
        await sub.stop()
    got = sub.on("redox/ann/strap/live")
    assert [m.json()["hr_bpm"] for m in got] == [60 + i for i in range(10)], "in order"
    seqs = [int(str(m.json()["seq"])) for m in got]
    assert seqs == list(range(seqs[0], seqs[0] + 10)), "one seq per sample"
