"""Live samples (QoS 0) through :meth:`MqttPublisher.send_live` against a real mosquitto:
one deadline per batch, not one per publish (a worker sends one message's samples at a time)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from devices.records import HeartRateSample
from streamer.config import MqttConfig
from streamer.results import live_result
from streamer.sinks.mqtt import MqttPublisher
from streamer.store import Store
from tests.mqtt_helpers import Subscriber, running
from tests.servers import HOST, Mosquitto


async def test_single_live_samples_arrive_in_order_with_consecutive_seq(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sub = await Subscriber(HOST, mosquitto.port).start()
    config = MqttConfig(host=HOST, port=mosquitto.port, client_id="redox-live-test")
    with Store(tmp_path / "store.sqlite3") as store:
        async with running(publisher := MqttPublisher(config, store)):
            for i in range(30):  # one sample per call, as a worker sends a message's
                await publisher.send_live([live_result("ann", "strap", HeartRateSample(i, 60 + i))])
            await publisher.send_live(  # and a message with several, gathered
                [live_result("ann", "strap", HeartRateSample(30 + i, 90 + i)) for i in range(3)]
            )
            await sub.wait_for(lambda: len(sub.on("redox/ann/strap/live")) == 33)
            status = publisher.status()
    await sub.stop()
    live = [m.json() for m in sub.on("redox/ann/strap/live")]
    assert [m["hr_bpm"] for m in live] == list(range(60, 93))
    assert [m["seq"] for m in live] == list(range(live[0]["seq"], live[0]["seq"] + 33))
    assert (status["live_published"], status["shed"]) == (33, 0)


async def test_a_live_batch_past_its_deadline_is_counted_shed_and_the_connection_stays(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = MqttConfig(host=HOST, port=mosquitto.port, client_id="redox-live-test")
    samples = [live_result("ann", "strap", HeartRateSample(i, 60)) for i in range(3)]
    with Store(tmp_path / "store.sqlite3") as store:
        async with running(publisher := MqttPublisher(config, store)):
            # Once connected, a deadline shorter than the loop turns a publish takes (the
            # loader's minimum is 0.1 s): the batch's one timer fires before any sample
            # is written.
            publisher.config = dataclasses.replace(config, publish_timeout_s=1e-6)
            with pytest.raises(TimeoutError):
                await publisher.send_live(samples[:1])
            with pytest.raises(TimeoutError):
                await publisher.send_live(samples)
            assert publisher.connected
            status = publisher.status()
    assert (status["live_published"], status["shed"]) == (0, 4)
