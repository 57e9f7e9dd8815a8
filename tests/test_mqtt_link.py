"""The publisher follows its connection's life from public aiomqtt alone (its message
iterator), not from aiomqtt's private ``_disconnected`` future, against a real mosquitto."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from pathlib import Path

import pytest

from streamer.sinks import mqtt as mqtt_module
from tests.mqtt_helpers import eventually, running_publisher
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration


async def test_a_puback_wait_ends_when_the_link_is_lost_not_at_its_timeout(
    mosquitto: Mosquitto,
) -> None:
    """A QoS 1 publish owed its PUBACK by a broker held (SIGSTOP), then killed: the
    hang-up's PUBACK wait ends when the link ends (the PUBACK can never come), not after
    its full timeout — and the link reads as lost."""
    assert mosquitto.proc is not None
    async with running_publisher(mosquitto.url) as (publisher, _):
        held = False
        try:
            client = publisher._client
            assert client is not None
            assert publisher._client_alive(client)
            os.kill(mosquitto.proc.pid, signal.SIGSTOP)
            held = True
            caller = asyncio.create_task(
                publisher._send(client, "redox/test/owed", b"1", qos=1, retain=False)
            )
            await eventually(lambda: publisher._owed.get(client), 10, "the publish sent")
            acknowledged = asyncio.create_task(publisher._acknowledged(client, 600.0))
            await asyncio.sleep(0)  # one turn: it is waiting, not done
            assert not acknowledged.done()
            await asyncio.to_thread(mosquitto.kill)  # a SIGKILLed process need not run
            held = False
            async with asyncio.timeout(60):
                await acknowledged  # ended by the link's end, long before 600 s
            assert not publisher._client_alive(client)
            caller.cancel()
            await asyncio.gather(caller, return_exceptions=True)
        finally:
            if held:
                os.kill(mosquitto.proc.pid, signal.SIGCONT)


async def test_a_stop_while_the_broker_is_held_leaves_no_link_followed_nor_outcome_unread(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker held (SIGSTOP) while the publisher stops, then killed: the stop ends,
    the link's reader ends with the connection (nothing followed after it), and how the
    link ended was read — asyncio logs no "exception was never retrieved"."""
    assert mosquitto.proc is not None
    caplog.set_level(logging.ERROR, logger="asyncio")
    async with running_publisher(mosquitto.url) as (publisher, running):
        held = False
        try:
            assert len(publisher._links) == 1
            os.kill(mosquitto.proc.pid, signal.SIGSTOP)
            held = True
            running.cancel()
            async with asyncio.timeout(30):
                await asyncio.gather(running, return_exceptions=True)
            await asyncio.to_thread(mosquitto.kill)
            held = False
            await eventually(lambda: not publisher._links, 60, "the link's end read")
        finally:
            if held:
                os.kill(mosquitto.proc.pid, signal.SIGCONT)
    gc.collect()
    never = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert not never, never[0].getMessage()


def test_the_publisher_reads_no_private_state_of_aiomqtt() -> None:
    """What the link's life is read from stays public: a later aiomqtt may rename its
    private futures at any release."""
    source = Path(mqtt_module.__file__).read_text(encoding="utf-8")
    assert "_disconnected" not in source
    assert "._client._" not in source


async def test_a_link_lost_while_idle_says_why_in_the_status(mosquitto: Mosquitto) -> None:
    """The broker killed while nothing is being sent: the session ends on the link's end,
    and the status's ``last_error`` carries aiomqtt's reason for it (paho's code), not
    only that the connection closed."""
    async with running_publisher(mosquitto.url) as (publisher, _):
        await asyncio.to_thread(mosquitto.kill)
        await eventually(lambda: publisher.status()["last_error"], 60, "the loss noted")
    error = publisher.status()["last_error"]
    assert error.startswith("MqttError: the broker closed the connection ([code:"), error
