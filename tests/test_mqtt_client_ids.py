"""Client ids: unique per process, so that neither a second streamer nor a reader reusing
the streamer's configured id throws the streamer off.

The takeover is what a real mosquitto does to the older of two clients with one id: the
control test shows it happens to a client whose exact id another one reuses; the ids the
streamer uses are its configured prefix plus host, pid and random bits, so reusing the
prefix (the predictable id of before) takes over nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from streamer.config import MqttConfig, Secret
from streamer.results import Kind, Result
from streamer.sinks.backoff import Backoff
from streamer.sinks.mqtt import MqttPublisher
from streamer.sinks.mqtt_connect import process_client_id
from streamer.store import Store
from tests.mqtt_helpers import Subscriber, eventually
from tests.servers import HOST, Mosquitto
from tests.shipped_mosquitto import ShippedBroker

pytestmark = pytest.mark.integration

FAST = Backoff(0.1, 0.5)


def _hrv(i: int) -> Result:
    return Result(Kind.HRV, "ann", 1_700_000_000_000_000_000 + i, {"rmssd_ms": float(i)})


def _status(i: int) -> Result:
    """A result on a topic the read-only redox-notify account may read."""
    return Result(Kind.STATUS, "ann", 1_700_000_000_000_000_000 + i, {"state": "ok", "i": i})


@contextlib.asynccontextmanager
async def running(publisher: MqttPublisher) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(publisher.run())
    try:
        await eventually(lambda: publisher.connected, what="the publisher's connection")
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_client_ids_differ_per_call_and_name_host_and_pid() -> None:
    ids = {process_client_id("streamer") for _ in range(100)}
    assert len(ids) == 100
    one = next(iter(ids))
    assert one.startswith("redox-streamer-")
    assert f"-{os.getpid()}-" in one
    assert process_client_id("streamer", "pi-kitchen").startswith("pi-kitchen-")


async def test_two_streamers_with_one_config_both_stay_connected(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # The same [mqtt] section, client_id included: before, both used the same id and the
    # broker threw each out in turn whenever the other reconnected.
    config = MqttConfig(host=HOST, port=mosquitto.port, client_id="redox-streamer-pi")
    sub = await Subscriber(HOST, mosquitto.port, client_id="watch", persistent=False).start()
    with Store(tmp_path / "a.sqlite3") as a, Store(tmp_path / "b.sqlite3") as b:
        first = MqttPublisher(config, a, backoff=FAST)
        second = MqttPublisher(config, b, backoff=FAST)
        async with running(first), running(second):
            first.accept([_hrv(1)])
            second.accept([_hrv(2)])
            await sub.wait_for(lambda: len(sub.on("redox/ann/hrv")) >= 2, what="both results")
            assert first.status()["disconnects"] == second.status()["disconnects"] == 0
            assert first.status()["connects"] == second.status()["connects"] == 1
    await sub.stop()
    assert first._client_id != second._client_id


async def test_control_a_reader_with_the_streamers_id_throws_it_off_a_plain_broker(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = MqttConfig(host=HOST, port=mosquitto.port)
    with Store(tmp_path / "s.sqlite3") as store:
        publisher = MqttPublisher(config, store, backoff=FAST)
        async with (
            running(publisher),
            aiomqtt.Client(HOST, mosquitto.port, identifier=publisher._client_id, timeout=5),
        ):
            # The broker dropped the publisher for the newcomer with its id.
            await eventually(lambda: publisher.status()["disconnects"] >= 1, what="takeover")


async def test_on_the_shipped_broker_a_reader_reusing_the_streamers_name_cannot_throw_it_off(
    shipped_mosquitto: ShippedBroker, tmp_path: Path
) -> None:
    broker = shipped_mosquitto
    config = MqttConfig(
        host=HOST,
        port=broker.port,
        username="redox-streamer",
        password=Secret(broker.password("redox-streamer")),
    )
    watcher = await AuthSubscriber(
        HOST, broker.port, username="homeassistant", password=broker.password("homeassistant")
    ).start()
    with Store(tmp_path / "s.sqlite3") as store:
        publisher = MqttPublisher(config, store, backoff=FAST)
        async with running(publisher):
            # The predictable ids a reader could reuse: the configured prefix, and the
            # notifier's own default.
            for n, stolen in enumerate(("redox-streamer", "redox-notify"), start=1):
                async with aiomqtt.Client(
                    HOST,
                    broker.port,
                    identifier=stolen,
                    username="redox-notify",
                    password=broker.password("redox-notify"),
                    timeout=5,
                ) as reader:
                    await reader.subscribe("redox/+/status", qos=1)
                    publisher.accept([_status(n)])
                    await watcher.wait_for(
                        lambda n=n: len(watcher.on("redox/ann/status")) >= n,  # type: ignore[misc]
                        what="a result sent while the reader is connected",
                    )
                    # The reader is connected too, under its own name, and reads it.
                    got = await _next(reader)
                    assert got.topic.value == "redox/ann/status"
            status = publisher.status()
            states = [m.payload for m in watcher.on("redox/bridge/state")]
    await watcher.stop()
    assert (status["connects"], status["disconnects"]) == (1, 0)
    assert b"offline" not in states  # no Last Will: the streamer never lost its connection


async def _next(client: aiomqtt.Client, timeout_s: float = 5.0) -> aiomqtt.Message:
    async with asyncio.timeout(timeout_s):
        return await anext(aiter(client.messages))


@dataclass
class AuthSubscriber(Subscriber):
    """A :class:`Subscriber` (clean session) that logs in."""

    username: str = ""
    password: str = ""
    persistent: bool = False

    async def _run(self) -> None:
        while True:
            client = aiomqtt.Client(
                self.host,
                self.port,
                username=self.username,
                password=self.password,
                identifier=self.username,
                timeout=3,
            )
            try:
                async with client:
                    self.connects += 1
                    await client.subscribe(self.topic, qos=1)
                    self._subscribed.set()
                    async for m in client.messages:
                        self._record(m)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)
