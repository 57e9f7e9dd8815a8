"""The shipped mosquitto config, ACL and password script, on a real mosquitto.

The broker runs from deploy/mosquitto/mosquitto.conf with only its port and file paths
substituted (tests/shipped_mosquitto.py), so what is asserted here is what a Pi runs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.shipped_mosquitto import SHIPPED_CONF, ShippedBroker, render_shipped_conf

pytestmark = pytest.mark.integration

ALERT_TOPIC = "redox/ann/alerts"
NOT_AUTHORIZED = 0x87


@asynccontextmanager
async def connect(
    broker: ShippedBroker,
    user: str | None,
    *,
    password: str | None = None,
    identifier: str | None = None,
    clean: bool = True,
    protocol: aiomqtt.ProtocolVersion = aiomqtt.ProtocolVersion.V311,
) -> AsyncIterator[aiomqtt.Client]:
    """An aiomqtt client logged in as ``user`` (``None``: anonymous)."""
    secret = password if password is not None else (broker.password(user) if user else None)
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        username=user,
        password=secret,
        identifier=identifier,
        clean_session=clean if protocol != aiomqtt.ProtocolVersion.V5 else None,
        protocol=protocol,
        timeout=5,
    ) as client:
        yield client


async def next_message(client: aiomqtt.Client, timeout_s: float = 5.0) -> aiomqtt.Message:
    async with asyncio.timeout(timeout_s):
        return await anext(aiter(client.messages))


def test_shipped_conf_sets_queue_limit_above_the_mosquitto_default() -> None:
    text = SHIPPED_CONF.read_text()
    limit = next(
        int(line.split()[1])
        for line in text.splitlines()
        if line.startswith("max_queued_messages ")
    )
    assert limit > 1000
    assert "allow_anonymous false" in text.splitlines()


def test_render_refuses_a_config_without_an_acl(tmp_path: object) -> None:
    text = "\n".join(
        line for line in SHIPPED_CONF.read_text().splitlines() if not line.startswith("acl_file")
    )
    with pytest.raises(AssertionError, match="acl_file"):
        render_shipped_conf(
            text,
            port=1,
            password_file=tmp_path,  # type: ignore[arg-type]
            acl_file=tmp_path,
            data_dir=tmp_path,
        )  # type: ignore[arg-type]


async def test_anonymous_connect_is_refused(shipped_mosquitto: ShippedBroker) -> None:
    with pytest.raises(aiomqtt.MqttError, match=r"[Nn]ot authori[sz]ed|code:5|code:135"):
        async with connect(shipped_mosquitto, None):
            pass


async def test_wrong_password_is_refused(shipped_mosquitto: ShippedBroker) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with connect(shipped_mosquitto, "redox-notify", password="guess"):
            pass


async def test_notify_user_receives_alerts_published_by_the_streamer(
    shipped_mosquitto: ShippedBroker,
) -> None:
    async with connect(shipped_mosquitto, "redox-notify") as sub:
        await sub.subscribe("redox/+/alerts", qos=1)
        async with connect(shipped_mosquitto, "redox-streamer") as pub:
            await pub.publish(ALERT_TOPIC, b'{"schema":1}', qos=1)
        msg = await next_message(sub)
    assert msg.topic.value == ALERT_TOPIC
    assert msg.payload == b'{"schema":1}'


async def test_notify_user_subscribed_to_everything_still_reads_only_alerts(
    shipped_mosquitto: ShippedBroker,
) -> None:
    # mosquitto 2.0 grants a wildcard subscription and filters each delivery by the ACL.
    async with connect(shipped_mosquitto, "redox-notify") as sub:
        await sub.subscribe("redox/#", qos=1)
        async with connect(shipped_mosquitto, "redox-streamer") as pub:
            await pub.publish("redox/ann/hrv", b"hrv", qos=1)
            await pub.publish("redox/ann/morning", b"morning", qos=1)
            await pub.publish(ALERT_TOPIC, b"alert", qos=1)
        msg = await next_message(sub)
        assert (msg.topic.value, msg.payload) == (ALERT_TOPIC, b"alert")
        with pytest.raises(TimeoutError):
            await next_message(sub, timeout_s=0.5)


def _publish_v5_qos1(broker: ShippedBroker, user: str, topic: str) -> int:
    """Publish once with MQTT 5 at QoS 1 and return the PUBACK reason code."""
    done = threading.Event()
    codes: list[int] = []

    def on_publish(
        client: paho.Client, userdata: object, mid: int, reason_code: ReasonCode, properties: object
    ) -> None:
        codes.append(reason_code.value)
        done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.username_pw_set(user, broker.password(user))
    client.on_publish = on_publish
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, b'{"forged":true}', qos=1).wait_for_publish(5)
        assert done.wait(5), "no PUBACK within 5 s"
    finally:
        client.disconnect()
        client.loop_stop()
    return codes[0]


def test_notify_user_publish_to_an_alert_topic_gets_not_authorized_puback(
    shipped_mosquitto: ShippedBroker,
) -> None:
    assert _publish_v5_qos1(shipped_mosquitto, "redox-notify", ALERT_TOPIC) == NOT_AUTHORIZED
    # The same call as the streamer is accepted: the refusal is the ACL, not the client.
    # (0x10 "no matching subscribers" is a success code: every code below 0x80 is.)
    assert _publish_v5_qos1(shipped_mosquitto, "redox-streamer", ALERT_TOPIC) in {0x00, 0x10}


async def test_notify_user_publish_over_mqtt311_never_reaches_a_subscriber(
    shipped_mosquitto: ShippedBroker,
) -> None:
    async with connect(shipped_mosquitto, "redox-streamer") as watcher:
        await watcher.subscribe(ALERT_TOPIC, qos=1)
        async with connect(shipped_mosquitto, "redox-notify") as forger:
            # 3.1.1 has no refusal code: mosquitto acknowledges and drops the message.
            await forger.publish(ALERT_TOPIC, b"forged", qos=1)
        # A sentinel sent after the forged message's PUBACK: had the forgery been
        # delivered, it would arrive first.
        await watcher.publish(ALERT_TOPIC, b"sentinel", qos=1)
        msg = await next_message(watcher)
        assert msg.payload == b"sentinel"
        with pytest.raises(TimeoutError):
            await next_message(watcher, timeout_s=0.5)


async def test_persistent_subscriber_gets_more_than_the_default_1000_queued_messages(
    shipped_mosquitto: ShippedBroker,
) -> None:
    n = 1500  # above mosquitto's default max_queued_messages (1000)
    async with connect(
        shipped_mosquitto, "redox-notify", identifier="notify-q", clean=False
    ) as sub:
        await sub.subscribe("redox/+/alerts", qos=1)
    async with connect(shipped_mosquitto, "redox-streamer") as pub:
        for i in range(n):
            await pub.publish(ALERT_TOPIC, str(i).encode(), qos=1)
    received: list[int] = []
    async with connect(
        shipped_mosquitto, "redox-notify", identifier="notify-q", clean=False
    ) as sub:
        while len(received) < n:
            received.append(int((await next_message(sub)).payload))
    assert received == list(range(n))


async def test_retained_alert_survives_a_broker_restart(
    shipped_mosquitto: ShippedBroker,
) -> None:
    async with connect(shipped_mosquitto, "redox-streamer") as pub:
        await pub.publish(ALERT_TOPIC, b"open", qos=1, retain=True)
    shipped_mosquitto.server.restart()  # SIGTERM: mosquitto saves its database
    async with connect(shipped_mosquitto, "redox-notify") as sub:
        await sub.subscribe("redox/+/alerts", qos=1)
        msg = await next_message(sub)
    assert msg.payload == b"open"
    assert msg.retain
