"""A lone gateway that dies for good leaves no device ``connected``: with no gateway
``online``, the worker with the smallest id says a dead gateway's listed devices ``stopped``
and clears its list (:mod:`streamer.team.worker_survivor`, the gateways' own survivor rule
of :mod:`streamer.team.survivor`).

End to end on the shipped team broker (ACL included): a real ``redox-streamer gateway``
SIGKILLed, a real ``redox-streamer worker`` process. In-process on a real mosquitto: a live
gateway keeps the role (the workers leave it), of two workers only the first acts, a
``seq`` above the listed one whatever the clocks, and a gateway back within the grace calls
the clean-up off at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from streamer.config import MqttConfig
from streamer.payloads import encode_payload
from streamer.results import DeviceStatePayload
from streamer.sinks.mqtt_connect import probe_topic, read_retained
from streamer.team import survivor
from streamer.team.gateway_mqtt import DEATH_PROBLEM, Listed, decode_list, encode_list
from streamer.team.worker_survivor import WorkerSurvivor
from streamer.topics import Topics
from tests.mqtt_helpers import Subscriber, eventually
from tests.servers import HOST, Mosquitto, NatsServer, PostgreSQL
from tests.shipped_mosquitto import ShippedBroker
from tests.team_helpers import ANN, GatewayProc
from tests.test_team_worker import _start_worker

pytest.importorskip("nats")

ANN_STATES = ("redox/ann/strap/state", "redox/ann/smo2/state")
ANN_STRAP = ANN_STATES[0]
GW1_LIST = "redox/gateway/gw1/devices"
GW1_STATE = "redox/gateway/gw1/state"


def _states(sub: Subscriber, topic: str) -> list[dict[str, object]]:
    return [r.json() for r in sub.on(topic) if r.payload]


def _last(sub: Subscriber, topic: str) -> bytes | None:
    found = sub.on(topic)
    return found[-1].payload if found else None


def _stopped_by_survivor(sub: Subscriber, topic: str, dead: str) -> bool:
    states = _states(sub, topic)
    return bool(states) and (states[-1]["connection"], states[-1]["problem"]) == (
        "stopped",
        DEATH_PROBLEM.format(gateway=dead),
    )


def _seqs(sub: Subscriber, topic: str) -> list[int]:
    return [int(s["seq"]) for s in _states(sub, topic)]  # type: ignore[call-overload]


def test_a_lone_gateway_sigkilled_for_good_has_its_devices_said_stopped_by_the_worker(
    tmp_path: Path, team_mosquitto: ShippedBroker, nats_server: NatsServer, postgres: PostgreSQL
) -> None:
    """gw1, the club's only gateway, holds ann's strap and Moxy; a worker process runs.
    gw1 SIGKILLed and never restarted: its Last Will says ``offline``, and the worker —
    no gateway being left — publishes ``stopped`` for both devices (retained, the dead
    gateway named, ``seq`` above gw1's) and clears gw1's list. On the shipped broker files:
    the ``redox-worker`` account may read the lists and availability it needs."""
    broker = team_mosquitto
    section = f'[mqtt]\nurl = "{broker.url("redox-gateway")}"\n'
    config = tmp_path / "gw1" / "redox.toml"
    config.parent.mkdir()
    config.write_text(f'[store]\npath = "{tmp_path / "gw1" / "store.sqlite"}"\n\n{ANN}\n{section}')
    gateway = GatewayProc(tmp_path / "gw1", "gw1", [nats_server.url], config)
    worker_log = tmp_path / "w1.log"

    async def scenario() -> Subscriber:
        sub = Subscriber(
            HOST, broker.port, client_id="test-watch", persistent=False,
            username="homeassistant", password=broker.password("homeassistant"),
        )  # fmt: skip
        await sub.start(30)
        worker = _start_worker(
            "w1", nats_server.url, postgres.dsn, broker.url("redox-worker"), worker_log
        )
        try:
            gateway.start()
            for topic in ANN_STATES:
                await sub.wait_for(
                    lambda t=topic: any(s["connected"] is True for s in _states(sub, t)),
                    120,
                    f"{topic} connected at gw1",
                )
            await sub.wait_for(
                lambda: len(decode_list(_last(sub, GW1_LIST) or b"")[1]) == 2,
                60,
                "gw1's list naming ann's two devices",
            )
            await sub.wait_for(
                lambda: _last(sub, "redox/worker/w1/state") == b"online", 120, "w1 online"
            )
            await asyncio.to_thread(gateway.kill)
            for topic in ANN_STATES:
                await sub.wait_for(
                    lambda t=topic: _stopped_by_survivor(sub, t, "gw1"),
                    60,
                    f"{topic} said stopped by the worker",
                )
            await sub.wait_for(lambda: _last(sub, GW1_LIST) == b"", 30, "gw1's list cleared")
            assert _last(sub, GW1_STATE) == b"offline"
        finally:
            gateway.ensure_dead()
            worker.send_signal(signal.SIGTERM)
            await asyncio.to_thread(worker.wait, 60)
            await sub.stop()
        return sub

    try:
        sub = asyncio.run(scenario())
    except BaseException:
        print(worker_log.read_text(errors="replace")[-4000:])
        raise
    for topic in ANN_STATES:
        seqs = _seqs(sub, topic)
        assert seqs == sorted(set(seqs)), f"{topic}: seq not strictly rising: {seqs}"
    assert "said 2 of its devices stopped" in worker_log.read_text(errors="replace")


# --- in-process workers on a real mosquitto ----------------------------------------------------

STRAP = DeviceStatePayload(
    device_kind="strap", model="polar_h10", address="EE:00:00:00:01:01", connected=True,
    connection="connected", battery_pct=80, last_seen_ts_ns=time.time_ns(), reconnects=0,
    gaps=0, problem=None,
)  # fmt: skip


async def _retain(port: int, *messages: tuple[str, bytes]) -> None:
    """``messages`` published retained, as the gateways and workers would have left them."""
    async with aiomqtt.Client(HOST, port, identifier="test-club") as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1, retain=True)


def _dead_gw1(listed_seq: int) -> list[tuple[str, bytes]]:
    """gw1 dead without a goodbye: ann's strap ``connected`` at ``listed_seq``, listed, and
    gw1 ``offline`` (its Last Will)."""
    connected = encode_payload(STRAP.result("ann", time.time_ns(), "strap"), listed_seq)
    listed = [Listed("ann", "strap", ANN_STRAP, STRAP, listed_seq)]
    return [(ANN_STRAP, connected), (GW1_LIST, encode_list("b0", listed)),
            (GW1_STATE, survivor.OFFLINE)]  # fmt: skip


@contextlib.asynccontextmanager
async def _watching(mosquitto: Mosquitto, *survivors: WorkerSurvivor) -> AsyncIterator[Subscriber]:
    """A subscriber to ``redox/#``, and ``survivors`` running and subscribed."""
    sub = await Subscriber(HOST, mosquitto.port, client_id="test-watch", persistent=False).start()
    tasks = [asyncio.create_task(s.run()) for s in survivors]
    try:
        for s in survivors:
            await eventually(s.subscribed.is_set, 30, f"{s.worker_id} subscribed")
        yield sub
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sub.stop()


def _survivor(mosquitto: Mosquitto, worker_id: str, grace_s: float = 0.5) -> WorkerSurvivor:
    return WorkerSurvivor(MqttConfig.from_url(mosquitto.url), worker_id, grace_s=grace_s)


async def test_workers_leave_a_dead_gateway_to_a_live_one_and_only_the_first_worker_acts(
    mosquitto: Mosquitto,
) -> None:
    """gw1 dead with ann's strap listed (its clock 60 s ahead), gw2 online: both workers
    leave it to gw2, the gateways' survivor. gw2 then stops cleanly (``offline``, nothing
    listed): no gateway is left, and w1 — the smaller id of the two workers online — says
    the strap ``stopped`` once, above the listed ``seq``, and clears gw1's list; w2 leaves
    it to w1."""
    listed_seq = time.time_ns() // 1000 + 60_000_000
    await _retain(
        mosquitto.port,
        ("redox/worker/w1/state", b"online"),
        ("redox/worker/w2/state", b"online"),
        ("redox/gateway/gw2/state", survivor.ONLINE),
        *_dead_gw1(listed_seq),
    )
    w1, w2 = _survivor(mosquitto, "w1"), _survivor(mosquitto, "w2")
    async with _watching(mosquitto, w1, w2) as sub:
        for w in (w1, w2):
            await eventually(
                lambda w=w: w.deferred.get("gw1", "").startswith("gateway gw2 is online"),
                30,
                f"{w.worker_id} leaving gw1 to gw2",
            )
        await _retain(mosquitto.port, ("redox/gateway/gw2/state", survivor.OFFLINE))
        await sub.wait_for(lambda: _last(sub, GW1_LIST) == b"", 30, "gw1's list cleared")
        await sub.wait_for(lambda: _stopped_by_survivor(sub, ANN_STRAP, "gw1"), 30, "stopped")
        assert w2.deferred["gw1"].startswith("worker w1 is online with a smaller id")
    assert (w1.cleaned, w1.lists_cleared, w2.cleaned, w2.lists_cleared) == (1, 1, 0, 0)
    stopped = [s for s in _states(sub, ANN_STRAP) if s["connection"] == "stopped"]
    assert len(stopped) == 1, stopped
    assert int(stopped[0]["seq"]) > listed_seq  # type: ignore[call-overload]
    assert stopped[0]["connected"] is False


async def test_a_gateway_back_within_the_grace_calls_the_workers_clean_up_off_at_once(
    mosquitto: Mosquitto,
) -> None:
    """gw1's Last Will with its list, no other gateway: w1's clean-up starts and waits its
    grace (60 s here). gw1 says ``online`` again — a reconnection, not a death — and the
    clean-up is called off then, not at the grace's end: no ``stopped``, the list kept."""
    await _retain(mosquitto.port, *_dead_gw1(time.time_ns() // 1000))
    w1 = _survivor(mosquitto, "w1", grace_s=60.0)
    async with _watching(mosquitto, w1) as sub:
        await eventually(lambda: "gw1" in w1.cleaning, 30, "w1's clean-up under way")
        started = time.monotonic()
        await _retain(mosquitto.port, (GW1_STATE, survivor.ONLINE))
        await eventually(lambda: w1.called_off == 1, 30, "the clean-up called off")
        assert time.monotonic() - started < 30, "called off before the grace's end"
        await sub.wait_for(lambda: _last(sub, GW1_STATE) == b"online", 30, "gw1 online seen")
    assert w1.cleaned == 0
    assert [s["connection"] for s in _states(sub, ANN_STRAP)] == ["connected"]
    assert [x.device for x in decode_list(_last(sub, GW1_LIST) or b"")[1]] == ["strap"]


async def _retained(port: int) -> dict[str, bytes]:
    """What the broker retains under ``redox/#`` now, by topic (all of it: read_retained)."""
    async with aiomqtt.Client(HOST, port, identifier="test-retained") as client:
        found = await asyncio.wait_for(
            read_retained(client, ["redox/#"], probe_topic("redox", "test")), 30
        )
    return {str(m.topic): bytes(m.payload) for m in found if isinstance(m.payload, bytes)}


async def test_a_workers_clean_up_that_met_a_broker_error_is_tried_again(
    mosquitto: Mosquitto,
) -> None:
    """The broker held (SIGSTOP) within w1's grace: the ``stopped`` publish times out, the
    list is kept, and once the broker runs again a later round says it and clears the list
    (read back from what the broker retains: a subscriber may have lost its connection)."""
    assert mosquitto.proc is not None
    await _retain(mosquitto.port, *_dead_gw1(time.time_ns() // 1000))
    config = MqttConfig.from_url(mosquitto.url, publish_timeout_s=1.0)
    w1 = WorkerSurvivor(config, "w1", grace_s=5.0)
    held = False
    async with _watching(mosquitto, w1):
        try:
            await eventually(lambda: "gw1" in w1.cleaning, 30, "w1's clean-up under way")
            os.kill(mosquitto.proc.pid, signal.SIGSTOP)  # within its grace
            held = True
            await eventually(lambda: w1.failed >= 1, 60, "the clean-up's publish failed")
            assert w1.lists_cleared == 0
            os.kill(mosquitto.proc.pid, signal.SIGCONT)
            held = False
            await eventually(lambda: w1.lists_cleared == 1, 60, "gw1's list cleared")
        finally:
            if held:
                os.kill(mosquitto.proc.pid, signal.SIGCONT)
    retained = await _retained(mosquitto.port)
    assert GW1_LIST not in retained
    strap = json.loads(retained[ANN_STRAP])
    assert (strap["connection"], strap["problem"]) == (
        "stopped",
        DEATH_PROBLEM.format(gateway="gw1"),
    )


def test_the_survivor_rule() -> None:
    """The pure rule both survivors follow: the dead are ``offline`` with devices listed,
    the smallest live id acts, a device listed by a gateway not ``offline`` (or held by
    the survivor) is left to its holder, and the ``seq`` goes above the listed one."""
    strap = Listed("ann", "strap", ANN_STRAP, STRAP, 7)
    moxy = Listed("ann", "smo2", ANN_STATES[1], STRAP, 9)
    lists = {"gw1": [strap, moxy], "gw2": [moxy], "gw3": []}
    states = {"gw1": survivor.OFFLINE, "gw2": survivor.ONLINE, "gw3": survivor.OFFLINE}
    assert survivor.dead_with_devices(lists, states) == ["gw1"]
    assert survivor.online(states) == {"gw2"}
    assert survivor.elected("w1", {"w2", "w3"})
    assert not survivor.elected("w2", {"w1"})
    assert survivor.elected("w2", set())
    topics = Topics()
    assert survivor.orphaned(lists["gw1"], lists, states, topics=topics) == [strap]
    assert survivor.orphaned(lists["gw1"], lists, states, {("ann", "strap")}, topics=topics) == []
    # A list pointing elsewhere (any gateway account writes lists; a worker writes every
    # topic): the forged item is not said, the genuine one still is.
    forged = Listed("ann", "strap", "redox/ann/alerts", STRAP, 7)
    lists["gw1"] = [forged, strap]
    assert survivor.orphaned(lists["gw1"], lists, states, topics=topics) == [strap]
    result = survivor.stopped_result(strap, "gone", 5)
    assert result.ts_ns == 5
    assert (result.fields["connected"], result.fields["connection"]) == (False, "stopped")
    assert result.fields["problem"] == "gone"
    assert survivor.seq_above(last=0, listed=7, now_us=3) == 8
    assert survivor.seq_above(last=10, listed=7, now_us=3) == 11
    assert survivor.seq_above(last=10, listed=7, now_us=30) == 30
