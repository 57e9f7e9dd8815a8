"""CPU per live sample (QoS 0 publish) through aiomqtt and through paho used directly; prints
figures (not a test).

Run from the repository root::

    PYTHONPATH=. python3 bench/mqtt_live_publish.py

It starts mosquitto on a free loopback port (tests/servers.py) with a ``mosquitto_sub`` on
``#`` (the broker's fan-out, as in ``bench/team.py``) and publishes the same live payload
in batches of 1 and 5 (a team worker's pass at 100 and 200 athletes), one event-loop sleep
between batches, and prints this process's CPU time per publish with the loop's own cost of
the sleeps taken off:

* **aiomqtt** as :meth:`streamer.sinks.mqtt.MqttPublisher.send_live` publishes: the batch's
  ``publish`` calls gathered. aiomqtt registers the socket's writer with the loop, which
  later calls paho's ``loop_write`` (one ``send()`` per packet), then waits for each
  message's ``on_publish`` callback (an event per publish, paho's reason code and
  properties built for each);
* **paho direct**: a paho client with no socket callbacks writes each packet with
  ``send()`` inside ``publish()`` and returns; no writer registration, no event, no task;
* **live link**: :class:`streamer.sinks.mqtt_live.LiveLink`, what a team worker's partitions
  publish through: paho writing inline as above, behind the link's batch call (its
  connection check, counters, the socket-full check).

* **publisher on the link**: :meth:`streamer.sinks.mqtt.MqttPublisher.publish_live`, what a
  partition calls per pass: the link plus the sample's topic, its ``seq`` and its JSON
  encoding (the part of a live sample's cost that is not the transport).

The four run interleaved, batch size by batch size, in one process: compare them within a
run, not across runs (other work on the machine moves every figure).

What the difference says: the part of a live sample's cost that is aiomqtt's machinery
around paho, not the kernel's TCP send — the part a live path below aiomqtt would save.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
from paho.mqtt import client as paho

from streamer.config import MqttConfig
from streamer.results import Kind, Result
from streamer.sinks.mqtt import MqttPublisher
from streamer.sinks.mqtt_live import LiveLink
from streamer.store import Store
from tests.servers import HOST, Mosquitto

PAYLOAD = (
    b'{"schema":1,"seq":123,"ts_ns":1772352000000000000,"time":"2026-03-01T08:00:00.000000Z",'
    b'"athlete":"athlete17","device":"strap","kind":"hr_live","bpm":142,"rr_ms":[421.0]}'
)
TOPIC = "redox/athlete17/strap/live"
PUBLISHES = 3000
NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)  # as streamer.sinks.mqtt_connect


async def sleeps_only(batch: int) -> float:
    """CPU µs per publish of the loop's sleeps between batches alone."""
    t0 = time.process_time()
    for _ in range(PUBLISHES // batch):
        await asyncio.sleep(0.001)
    return (time.process_time() - t0) / PUBLISHES * 1e6


async def with_aiomqtt(port: int, batch: int) -> float:
    """CPU µs per publish through aiomqtt, the batch gathered."""
    async with aiomqtt.Client(HOST, port, socket_options=NO_DELAY) as client:
        t0 = time.process_time()
        for _ in range(PUBLISHES // batch):
            await asyncio.gather(*(client.publish(TOPIC, PAYLOAD, qos=0) for _ in range(batch)))
            await asyncio.sleep(0.001)
        return (time.process_time() - t0) / PUBLISHES * 1e6


async def with_paho(port: int, batch: int) -> float:
    """CPU µs per publish through a paho client without socket callbacks."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-paho-live")
    client.connect(HOST, port)
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sock.setsockopt(*NO_DELAY[0])
    loop = asyncio.get_running_loop()
    loop.add_reader(sock.fileno(), client.loop_read)
    client.loop_write()  # the CONNECT packet
    try:
        t0 = time.process_time()
        for _ in range(PUBLISHES // batch):
            for _ in range(batch):
                client.publish(TOPIC, PAYLOAD, qos=0)
            await asyncio.sleep(0.001)
        return (time.process_time() - t0) / PUBLISHES * 1e6
    finally:
        loop.remove_reader(sock.fileno())
        client.disconnect()


@contextlib.asynccontextmanager
async def running_link(port: int, client_id: str) -> AsyncIterator[LiveLink]:
    """A live link to the broker on ``port``, up; checked at the end to have shed nothing."""
    link = LiveLink(MqttConfig.from_url(f"mqtt://{HOST}:{port}"), client_id)
    running = asyncio.create_task(link.run())
    try:
        await asyncio.wait_for(link.up.wait(), 30)
        yield link
        assert link.status()["shed"] == 0, link.status()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def with_link(port: int, batch: int) -> float:
    """CPU µs per publish through the live link, one call per batch."""
    messages = [(TOPIC, PAYLOAD)] * batch
    async with running_link(port, "bench-live-link") as link:
        t0 = time.process_time()
        for _ in range(PUBLISHES // batch):
            link.publish(messages)
            await asyncio.sleep(0.001)
        return (time.process_time() - t0) / PUBLISHES * 1e6


async def with_publisher(port: int, batch: int) -> float:
    """CPU µs per sample through ``MqttPublisher.publish_live`` on the live link."""
    config = MqttConfig.from_url(f"mqtt://{HOST}:{port}")
    sample = Result(
        Kind.HEART_RATE,
        "athlete17",
        1772352000000000000,
        {"hr_bpm": 142, "rr_ms": [421.0]},
        "strap",
    )
    samples = [sample] * batch
    async with running_link(port, "bench-live-publisher") as link:
        with Store(":memory:") as store:
            publisher = MqttPublisher(config, store, live_link=link)
            t0 = time.process_time()
            for _ in range(PUBLISHES // batch):
                publisher.publish_live(samples)
                await asyncio.sleep(0.001)
            return (time.process_time() - t0) / PUBLISHES * 1e6


def main() -> None:
    broker = Mosquitto(Path(tempfile.mkdtemp(prefix="bench-mqtt-live-")) / "mq")
    broker.start()
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", HOST, "-p", str(broker.port), "-t", "#"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for batch in (1, 5):
            base = asyncio.run(sleeps_only(batch))
            through_aiomqtt = asyncio.run(with_aiomqtt(broker.port, batch)) - base
            direct = asyncio.run(with_paho(broker.port, batch)) - base
            linked = asyncio.run(with_link(broker.port, batch)) - base
            published = asyncio.run(with_publisher(broker.port, batch)) - base
            print(
                f"batches of {batch}: aiomqtt {through_aiomqtt:.0f} us CPU per publish, "
                f"paho direct {direct:.0f} us, live link {linked:.0f} us, publisher on the "
                f"link {published:.0f} us (the loop's sleeps, "
                f"{base:.0f} us per publish, taken off; load {os.getloadavg()[0]:.2f})"
            )
    finally:
        sub.kill()
        sub.wait(10)
        broker.stop()


if __name__ == "__main__":
    main()
