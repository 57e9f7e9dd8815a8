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

from streamer.commands.session import send_if_listening
from streamer.config import MqttConfig
from streamer.team.gateway_mqtt import STREAM_UP, GatewayCommands
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

    async def scenario() -> None:
        tasks = {g.gateway_id: asyncio.create_task(g.run()) for g in (gw1, gw2)}
        try:
            gw1.set_stream(True)
            gw2.set_stream(True)
            await eventually(
                lambda: (
                    gw1._streams.get("gw2") == STREAM_UP and gw2._streams.get("gw1") == STREAM_UP
                ),
                30,
                "each gateway seeing the other's link up",
            )
            # gw1 loses NATS: the commands go to gw2 only.
            gw1.set_stream(False)
            await eventually(lambda: not gw1.taking_commands, 30, "gw1 out of the commands")
            assert gw2.taking_commands
            await send(10)
            await eventually(lambda: sum(counts()) == 10, 30, "the ten commands taken")
            assert counts() == (0, 10)
            # Both lose it (a NATS outage): both take commands again, none is lost.
            gw2.set_stream(False)
            await eventually(lambda: gw1.taking_commands, 30, "gw1 back in the commands")
            assert gw2.taking_commands
            await send(10)
            await eventually(lambda: sum(counts()) == 20, 30, "the next ten taken")
            # gw1's link is back: gw2 leaves the commands to it.
            gw1.set_stream(True)
            await eventually(lambda: not gw2.taking_commands, 30, "gw2 out of the commands")
            before = counts()
            await send(5)
            await eventually(lambda: sum(counts()) == 25, 30, "the five taken")
            assert counts() == (before[0] + 5, before[1])
            # gw1 down again while gw2's link is down too, then gw2 stops: its stale `up`
            # is not a healthy gateway once it says `offline`.
            gw2.set_stream(True)
            await eventually(lambda: gw2.taking_commands, 30, "gw2 back in the commands")
            gw1.set_stream(False)
            await eventually(lambda: not gw1.taking_commands, 30, "gw1 out again")
            tasks.pop("gw2").cancel()
            await eventually(lambda: gw1.taking_commands, 30, "gw1 in, the other gone")
            await send(5)
            await eventually(lambda: sum(counts()) == 30, 30, "the last five taken")
            assert gw1.share_leaves == 2
            assert gw2.share_leaves == 1
        finally:
            for task in tasks.values():
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)

    asyncio.run(scenario())
