"""A team worker's passes (the linger, :class:`streamer.team.worker.Linger`) on real
servers: nats-server (JetStream), PostgreSQL and mosquitto.

Messages arriving within the linger are handled in one pass — one transaction with the
checkpoint — and a message arriving alone waits for the linger, no longer. Every wait is on
an event (the partition caught up, a subscriber's message), never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import nats
import psycopg
import pytest

from devices.recording import RecordedNotification
from streamer.config import Config, MqttConfig
from streamer.team import wire
from streamer.team.pg_store import ensure_schema
from streamer.team.worker import Linger, Partition
from tests import team_worker_helpers as th
from tests.servers import HOST, Mosquitto, NatsServer, PostgreSQL

ROOT = Path(__file__).resolve().parents[1]

SLACK_S = 2.0
"""What a lone message may take beyond the linger on a loaded 2-core machine: the NATS
round trip, a turn of the worker's event loop, the MQTT publish and the subscriber's
receipt (milliseconds when the machine is idle)."""


def _strap_records(athlete: str, count: int) -> list[wire.WireMessage]:
    """The first ``count`` heart-rate strap notifications of ``athlete``'s first session."""
    messages = th.athlete_days(1, 2)["athlete1"]
    strap = [m for m in messages if isinstance(m, RecordedNotification) and m.device == "strap"]
    assert len(strap) >= count, "the emulated session has enough strap notifications"
    return list(strap[:count])


async def _publish(js: Any, athlete: str, message: wire.WireMessage, n: int) -> float:
    """Publish ``message`` to the athlete's raw subject (as gateway gw1, message id ``n``);
    the stream sequence it got."""
    headers = {wire.GATEWAY_HEADER: "gw1", wire.MSG_ID_HEADER: f"gw1:1:{n}"}
    ack = await js.publish(wire.raw_subject(athlete), wire.encode(message), headers=headers)
    return float(ack.seq)


async def _partition(
    number: int, dsn: str, js: Any, config: Config, linger: Linger, *, live: bool
) -> Partition:
    def claim() -> Partition:
        part = Partition(
            number, worker_id="w", dsn=dsn, config=config, js=js, live=live, linger=linger
        )
        ensure_schema(part.conn, wire.DEFAULT_PARTITIONS)
        assert part.try_lock()
        return part

    part = await asyncio.to_thread(claim)
    part.start()
    return part


def test_a_burst_within_the_linger_is_handled_in_one_pass_and_one_transaction(
    nats_server: NatsServer, postgres: PostgreSQL
) -> None:
    """A lease grant, then strap notifications published after the first one's PubAck:
    they arrive one after another, all within the linger the first one opened, and are
    decoded, processed and written as one pass — one transaction, whose checkpoint is the
    last of them."""
    athlete = "athlete1"
    number = wire.partition_of(athlete, wire.DEFAULT_PARTITIONS)
    records = _strap_records(athlete, 30)
    grant = wire.LeaseGranted(t_ns=records[0].t_ns - 1, device="strap", gateway="gw1")
    linger_s = 3.0  # far longer than publishing 31 messages takes, even on a loaded machine

    async def scenario() -> tuple[Partition, int, float]:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await th.ensure_stream(js)
        part = await _partition(number, postgres.dsn, js, Config(), Linger(linger_s), live=False)
        loop = asyncio.get_running_loop()
        try:
            started = loop.time()
            await _publish(js, athlete, grant, 0)  # alone: it opens the linger
            for n, record in enumerate(records, start=1):
                last = await _publish(js, athlete, record, n)  # each after the last's PubAck
            async with asyncio.timeout(30 + linger_s):
                await part.caught_up.wait()
            took = loop.time() - started
        finally:
            await part.stop()
            await nc.close()
        return part, int(last), took

    part, last, took = asyncio.run(scenario())
    assert part.counters.messages == 1 + len(records)
    assert part.counters.passes == 1, "the burst arrived within the linger: one pass"
    assert part.counters.transactions == 1, "its outputs in one transaction"
    assert part.counters.batched == 1, "the lease grant was staged once"
    assert took >= linger_s, "the first message waited for the others"
    with psycopg.connect(postgres.dsn) as conn:
        row = conn.execute(
            "SELECT applied FROM checkpoint WHERE partition = %s", (number,)
        ).fetchone()
    assert row is not None
    assert row[0] == last, "the checkpoint is the pass's last message"


def test_a_lone_message_is_published_after_the_linger_and_no_later(
    nats_server: NatsServer, postgres: PostgreSQL, mosquitto: Mosquitto
) -> None:
    """One strap notification and nothing after it: its live sample waits for the linger
    (no other message comes to fill the pass) and reaches a subscriber within the linger
    plus :data:`SLACK_S`."""
    athlete = "athlete1"
    number = wire.partition_of(athlete, wire.DEFAULT_PARTITIONS)
    record = _strap_records(athlete, 1)[0]
    linger_s = 0.3
    config = Config(mqtt=MqttConfig.from_url(mosquitto.url))

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        online = asyncio.Event()
        live_at: asyncio.Future[float] = loop.create_future()

        async def subscribe(ready: asyncio.Event) -> None:
            async with aiomqtt.Client(HOST, mosquitto.port) as client:
                await client.subscribe("redox/#")
                ready.set()
                async for message in client.messages:
                    topic = str(message.topic)
                    if topic.endswith(f"/partition/{number}/state") and message.payload:
                        online.set()  # the partition's publisher is connected
                    elif (
                        topic.startswith(f"redox/{athlete}/")
                        and message.qos == 0
                        and not live_at.done()
                    ):
                        live_at.set_result(loop.time())

        ready = asyncio.Event()
        listening = asyncio.create_task(subscribe(ready))
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        part = None
        try:
            async with asyncio.timeout(30):
                await ready.wait()
            await th.ensure_stream(js)
            part = await _partition(number, postgres.dsn, js, config, Linger(linger_s), live=True)
            async with asyncio.timeout(30):
                await online.wait()
            sent = loop.time()
            await _publish(js, athlete, record, 0)
            async with asyncio.timeout(30):
                arrived = await live_at
            return arrived - sent
        finally:
            if part is not None:
                await part.stop()
            await nc.close()
            listening.cancel()
            with contextlib.suppress(BaseException):
                await listening

    took = asyncio.run(scenario())
    assert took >= linger_s, f"published {took:.3f} s after it was sent: it did not linger"
    assert took <= linger_s + SLACK_S, f"published {took:.3f} s after it was sent"


async def test_waiters_share_one_tick_and_a_cancelled_one_leaves_it_to_the_others() -> None:
    """Partitions whose passes start before the tick fires wake on it together; one
    stopping (its wait cancelled) does not cancel the tick for the rest; the next wait
    after the tick opens a new one."""
    linger = Linger(0.05)
    first = asyncio.create_task(linger.wait())
    second = asyncio.create_task(linger.wait())
    third = asyncio.create_task(linger.wait())
    await asyncio.sleep(0)  # one loop turn: all three are waiting on the tick
    first.cancel()
    done, _ = await asyncio.wait({second, third}, timeout=30)
    assert done == {second, third}, "the tick fired for the waiters left"
    assert first.cancelled()
    await asyncio.wait_for(linger.wait(), timeout=30)  # a new tick, opened by this wait


def test_a_linger_below_zero_is_refused() -> None:
    """A negative or NaN linger is a configuration error, named."""
    for bad in (-0.01, float("nan")):
        with pytest.raises(ValueError, match="give 0 or more"):
            Linger(bad)


@pytest.mark.parametrize("bad", ["-1", "nan", "5000"])
def test_worker_refuses_a_linger_out_of_range_in_one_line(bad: str) -> None:
    """``--linger-ms`` outside 0–1000 ms is refused before anything connects, naming the
    flag, the value and what to give."""
    done = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "worker", "--id", "w", "--nats",
         "nats://127.0.0.1:1", "--postgres", "postgresql://x@127.0.0.1:1/x", "--linger-ms", bad],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "--linger-ms" in lines[0]
    assert "give 0 to 1000" in lines[0]
