"""Fault tests against real servers: brokers and databases die, the streamer dies, and no
QoS 1 result, alert or InfluxDB point is lost; order per topic is kept.

1. mosquitto SIGKILLed and restarted twice mid-stream → a persistent subscriber gets every
   result and alert, in order per topic (duplicates allowed, counted).
2. InfluxDB stopped for a while mid-stream → every point is there after it returns, and
   the outbox was written in order (observed through InfluxDB's last-write-wins).
3. a publisher process SIGKILLed (while connected, then while the broker is down) and
   restarted on the same SQLite file → its outbox is delivered, in order, nothing lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from devices.records import SmO2Sample
from streamer.config import InfluxConfig, MqttConfig
from streamer.results import Kind, Result, alert_result, live_result
from streamer.sinks.backoff import Backoff
from streamer.sinks.influx import InfluxWriter
from streamer.sinks.mqtt import MqttOutbox, MqttPublisher
from streamer.store import Store
from tests.mqtt_helpers import ProcessSubscriber, Subscriber, eventually, first_arrivals
from tests.servers import HOST, InfluxDB1, Mosquitto, require_binary

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000_000_000_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.sqlite3") as s:
        yield s


@pytest.fixture
def durable_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """mosquitto that saves its persistence file after every change.

    By default it saves every ``autosave_interval`` seconds: a SIGKILL then loses what it
    acknowledged (PUBACK) but had not yet delivered to a persistent subscriber and saved —
    a broker limit no publisher can work around. Saving on every change closes that window
    (at a cost in broker throughput: deploy/ says what the shipped config chooses).
    """
    server = Mosquitto(tmp_path / "durable-mosquitto", extra_config="autosave_on_changes true\n")
    server.start()
    yield server
    server.stop()


@contextlib.asynccontextmanager
async def running(sink: MqttPublisher | InfluxWriter) -> AsyncIterator[None]:
    task = asyncio.create_task(sink.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _alert(athlete: str, i: int) -> Result:
    event = {
        "rule": "rhr_creep",
        "severity": "pull_back",
        "state": "raised" if i % 2 == 0 else "cleared",
        "message": f"alert {i}",
        "advice": "cut",
        "raised_ts_ns": T0 + i,
        "cleared_ts_ns": T0 + i + 1,
    }
    return alert_result(athlete, event, [event] if i % 2 == 0 else [])


async def test_broker_killed_twice_mid_stream_loses_no_result_or_alert(
    durable_mosquitto: Mosquitto, store: Store, record_property: pytest.RecordProperty
) -> None:
    mosquitto = durable_mosquitto
    require_binary("mosquitto_sub", "mosquitto-clients")
    sub = await ProcessSubscriber(HOST, mosquitto.port).start()
    config = MqttConfig(
        host=HOST, port=mosquitto.port, publish_timeout_s=1.0, client_id="fault-publisher"
    )
    publisher = MqttPublisher(config, store, backoff=Backoff(0.1, 0.5))
    athletes = ("alice", "bob")
    sent = 0
    kills = 0
    async with running(publisher):
        start = time.monotonic()
        while time.monotonic() - start < 5.0:
            publisher.accept(
                [
                    r
                    for a in athletes
                    for r in (
                        Result(Kind.HRV, a, T0 + sent, {"rmssd_ms": float(sent)}),
                        _alert(a, sent),
                    )
                ]
            )
            sent += 1
            elapsed = time.monotonic() - start
            if kills < 2 and elapsed > 1.0 + 2.0 * kills:
                mosquitto.kill()  # SIGKILL: no clean shutdown, no final save
                kills += 1
                await asyncio.sleep(0.5)
                mosquitto.start()
                # The next kill only once the subscriber is back (it must hold a session):
                # anything arriving now proves it reconnected.
                seen = len(sub.received)
                await eventually(lambda n=seen: len(sub.received) > n, what="resubscribe")
            await asyncio.sleep(0.005)
        await eventually(
            lambda: publisher.status()["outbox_depth"] == 0,
            timeout_s=20,
            what="the outbox to drain",
        )
        topics = [f"redox/{a}/{k}" for a in athletes for k in ("hrv", "alerts")]
        with contextlib.suppress(AssertionError):
            await sub.wait_for(
                lambda: all(len({m.json()["seq"] for m in sub.on(t)}) >= sent for t in topics),
                timeout_s=20,
                what="every message",
            )
    await sub.stop()
    # Each topic's numbers start at the clock (docs/topics.md) and go up by one.
    seen = {t: {m.json()["seq"] for m in sub.on(t)} for t in topics}
    missing = {
        t: sorted(set(range(min(s, default=0), min(s, default=0) + sent)) - s)
        for t, s in seen.items()
    }
    assert not any(missing.values()), f"lost after {sent} per topic: {missing}"

    duplicates = 0
    for topic in topics:
        order, dups = first_arrivals(sub.on(topic))
        assert order == list(range(order[0], order[0] + sent)), topic
        duplicates += dups
    record_property("messages", 4 * sent)
    record_property("duplicates", duplicates)
    assert kills == 2
    assert publisher.status()["connects"] >= 3
    print(f"\n{4 * sent} QoS 1 messages across 2 broker kills: 0 lost, {duplicates} duplicates")


async def test_influxdb_stopped_mid_stream_loses_no_point_and_keeps_order(
    influxdb1: InfluxDB1, store: Store
) -> None:
    config = InfluxConfig(
        url=influxdb1.url,
        api="v1",
        db="redox",
        create_database=True,
        batch_size=7,
        flush_interval_s=0.05,
        timeout_s=1.0,
    )
    writer = InfluxWriter(config, store, backoff=Backoff(0.1, 0.4))
    n = 120
    async with running(writer):
        for i in range(n):
            if i == 30:
                influxdb1.stop()
            if i == 90:
                influxdb1.start()
            # A new point per step, and one point overwritten each step: InfluxDB keeps the
            # last write of a (series, time), so its final value shows the write order.
            writer.accept(
                [
                    Result(Kind.HRV, "alice", T0 + i, {"rmssd_ms": float(i)}),
                    Result(Kind.HRV, "probe", T0, {"rmssd_ms": float(i)}),
                ]
            )
            await writer.send_live(
                [live_result("alice", "moxy", SmO2Sample(T0 + i, 50.0 + i, 12.0))]
            )
            await asyncio.sleep(0.02)
        assert writer.status()["failed_attempts"] >= 1
        assert await writer.drain(15.0) == 0
    result = influxdb1.query("SELECT rmssd_ms FROM hrv WHERE athlete = 'alice'", "redox")
    values = [v[1] for v in result["results"][0]["series"][0]["values"]]  # type: ignore[index]
    assert values == [float(i) for i in range(n)]
    probe = influxdb1.query("SELECT rmssd_ms FROM hrv WHERE athlete = 'probe'", "redox")
    assert probe["results"][0]["series"][0]["values"][0][1] == float(n - 1)  # type: ignore[index]
    smo2 = influxdb1.query("SELECT count(smo2_pct) FROM smo2", "redox")
    assert smo2["results"][0]["series"][0]["values"][0][1] == n  # type: ignore[index]


async def _start_publisher(
    db: Path, port: int, count: int, interval_s: float
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.publisher_proc",
        "--db",
        str(db),
        "--port",
        str(port),
        "--count",
        str(count),
        "--interval",
        str(interval_s),
        cwd=REPO,
        stdout=subprocess.PIPE,
    )


async def _read_until(proc: asyncio.subprocess.Process, predicate: object) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        while True:
            line = (await proc.stdout.readline()).decode().strip()
            assert line, f"publisher exited early with {await proc.wait()}"
            if predicate(line):  # type: ignore[operator]
                return


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_publisher_sigkilled_and_restarted_delivers_its_outbox(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    db = tmp_path / "publisher.sqlite3"
    topic = "redox/proc/hrv"
    sub = await Subscriber(HOST, mosquitto.port).start()
    # 1. Killed while connected and streaming (some messages in flight).
    proc = await _start_publisher(db, mosquitto.port, 400, 0.005)
    try:
        await _read_until(proc, lambda line: line == "queued 60")
    finally:
        await _kill(proc)
    # 2. Killed while the broker is down: everything it queued is only in the outbox.
    mosquitto.stop()
    proc = await _start_publisher(db, mosquitto.port, 30, 0.01)
    try:
        await _read_until(
            proc, lambda line: line.startswith("queued") and int(line.split()[1]) >= 75
        )
    finally:
        await _kill(proc)
    with Store(db) as store:
        backlog = MqttOutbox(store).depth()
        last = store.last_seq(topic)
    assert backlog >= 15
    # 3. Broker back, a third process on the same file delivers it all, then its own.
    mosquitto.start()
    proc = await _start_publisher(db, mosquitto.port, 5, 0.0)
    try:
        await _read_until(proc, lambda line: line == "drained")
    finally:
        await _kill(proc)
    await sub.wait_for(
        lambda: len({m.json()["seq"] for m in sub.on(topic)}) >= last + 5,
        what="every queued message",
    )
    await sub.stop()
    order, _ = first_arrivals(sub.on(topic))
    assert order == list(range(order[0], last + 6))
