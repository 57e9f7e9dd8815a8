"""The commands' shared subscription follows each gateway's NATS link, on a real mosquitto.

A command a gateway takes is a marker in its outbox, which reaches the stream only over its
NATS link; a gateway whose link is down leaves the commands to one whose link is up, and
takes them again when its link is back or no such gateway is left (a NATS outage takes every
gateway's link: then they all keep taking them, held until NATS is back).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
import pytest

from streamer.commands.session import send_if_listening
from streamer.config import MqttConfig
from streamer.team import gateway_mqtt
from streamer.team.gateway_mqtt import STREAM_DOWN, STREAM_UP, GatewayCommands
from tests.mqtt_helpers import eventually
from tests.servers import Mosquitto


def test_a_gateway_whose_nats_link_is_down_leaves_the_commands_to_one_whose_link_is_up(
    mosquitto: Mosquitto,
) -> None:
    config = MqttConfig.from_url(mosquitto.url)
    taken: dict[str, list[object]] = {"gw1": [], "gw2": []}

    def offer_at(gateway: str) -> Callable[[str, str, object], bool]:
        return lambda _athlete, _device, marker: taken[gateway].append(marker) is None

    gw1, gw2 = (
        GatewayCommands(config, g, ["ann"], offer_at(g), clock_ns=time.time_ns, leave_grace_s=0.2)
        for g in taken
    )

    async def send(n: int) -> None:
        for _ in range(n):
            assert await send_if_listening(config, "ann", "session", b"start")

    def counts() -> tuple[int, int]:
        return len(taken["gw1"]), len(taken["gw2"])

    def each_sees(link: bytes) -> bool:
        return gw1.peer_link("gw2") == link and gw2.peer_link("gw1") == link

    async def scenario() -> None:
        tasks = {g.gateway_id: asyncio.create_task(g.run()) for g in (gw1, gw2)}
        try:
            gw1.set_stream(True)
            gw2.set_stream(True)
            await eventually(lambda: each_sees(STREAM_UP), 30, "each seeing the other's link up")
            # Both lose NATS at once (a leader's election): each sees the other's `down`
            # within the grace and stays; no command is given to nobody.
            gw1.set_stream(False)
            gw2.set_stream(False)
            await eventually(lambda: each_sees(STREAM_DOWN), 30, "each seeing the other's down")
            await eventually(
                lambda: gw1.taking_commands and gw2.taking_commands, 30, "both taking commands"
            )
            await send(4)
            await eventually(lambda: sum(counts()) == 4, 30, "the four taken")
            gw2.set_stream(True)
            await eventually(lambda: gw1.peer_link("gw2") == STREAM_UP, 30, "gw2's link up")
            # gw1's link is still down, gw2's up: the commands go to gw2 only.
            await eventually(lambda: not gw1.taking_commands, 30, "gw1 out of the commands")
            assert gw2.taking_commands
            before = counts()
            await send(10)
            await eventually(lambda: sum(counts()) == 14, 30, "the ten commands taken")
            assert counts() == (before[0], before[1] + 10)
            # Both lose it (a NATS outage): both take commands again, none is lost.
            gw2.set_stream(False)
            await eventually(lambda: gw1.taking_commands, 30, "gw1 back in the commands")
            assert gw2.taking_commands
            await send(10)
            await eventually(lambda: sum(counts()) == 24, 30, "the next ten taken")
            # gw1's link is back: gw2 leaves the commands to it.
            gw1.set_stream(True)
            await eventually(lambda: not gw2.taking_commands, 30, "gw2 out of the commands")
            before = counts()
            await send(5)
            await eventually(lambda: sum(counts()) == 29, 30, "the five taken")
            assert counts() == (before[0] + 5, before[1])
            # gw1 down again while gw2's is up, then gw2 stops: its `up` is not a healthy
            # gateway's once it says `offline`.
            gw2.set_stream(True)
            await eventually(lambda: gw2.taking_commands, 30, "gw2 back in the commands")
            gw1.set_stream(False)
            await eventually(lambda: not gw1.taking_commands, 30, "gw1 out again")
            stopping = tasks.pop("gw2")
            stopping.cancel()
            await asyncio.gather(stopping, return_exceptions=True)  # gw2 said offline, left
            await eventually(lambda: gw1.taking_commands, 30, "gw1 in, the other gone")
            await send(5)
            await eventually(lambda: sum(counts()) == 34, 30, "the last five taken")
            assert counts() == (before[0] + 10, before[1])
            assert gw1.share_leaves >= 2
            assert gw2.share_leaves >= 1
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)

    asyncio.run(scenario())


def test_another_gateways_up_counts_only_while_it_is_said_again(
    mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gateway that died without its Last Will yet, or whose retained ``online`` and ``up``
    outlived it across a broker restart, says nothing more: its ``up`` stops counting after
    ``LINK_FRESH_S`` (here 1 s), and a gateway whose link is down takes the commands again."""
    monkeypatch.setattr(gateway_mqtt, "LINK_FRESH_S", 1.0)
    config = MqttConfig.from_url(mosquitto.url)
    taken: list[object] = []
    gw1 = GatewayCommands(
        config,
        "gw1",
        ["ann"],
        lambda _athlete, _device, marker: taken.append(marker) is None,
        clock_ns=time.time_ns,
        leave_grace_s=0.2,
    )
    ghost = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-ghost")
    ghost.connect("127.0.0.1", mosquitto.port)
    ghost.loop_start()
    for topic, payload in (
        ("redox/gateway/gw9/state", b"online"),
        ("redox/gateway/gw9/stream", b"up"),
    ):
        ghost.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    ghost.loop_stop()
    ghost.disconnect()

    async def scenario() -> None:
        task = asyncio.create_task(gw1.run())
        try:
            await eventually(lambda: gw1.peer_link("gw9") == STREAM_UP, 30, "gw9's retained up")
            await eventually(lambda: gw1.share_leaves == 1, 30, "gw1 leaving the commands to gw9")
            await eventually(lambda: gw1.taking_commands, 30, "gw1 back once gw9's up is stale")
            for _ in range(3):
                assert await send_if_listening(config, "ann", "session", b"start")
            await eventually(lambda: len(taken) == 3, 30, "the commands at gw1")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
