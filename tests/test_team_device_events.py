"""Device events in team mode: a driver's gaps and battery levels cross the wire.

In ``run`` a strap's link gap reaches the athlete as a :class:`GapEvent` ("no RR
difference across a gap") and its battery level as a :class:`BatteryLevel`. A gateway
forwards them as :class:`~streamer.team.wire.DeviceEvent` messages between the
notifications they came between, and a worker hands them to the athlete: on real servers
(nats-server, PostgreSQL) and the production drivers against Bumble emulators, the worker's
mornings are the single box's, and without the gap messages they are not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import aiomqtt
import nats
import pytest

from devices.emulated import ChestStrap, EmulatedWorld
from devices.emulated.clock import EmulatedClock
from devices.kinds import DeviceKind
from devices.policy import Backoff, ConnectionPolicy, Jitter
from devices.recording import RecordedNotification, decode_notification
from devices.records import BatteryLevel, GapEvent, GapReason, HeartRateSample
from streamer.athlete.events import MorningEnd, MorningStart
from streamer.config import Config, DeviceConfig, MqttConfig
from streamer.results import DeviceStatePayload, MorningPayload, Result
from streamer.team import gateway as gateway_module
from streamer.team import wire
from streamer.team.gateway import Gateway
from streamer.team.gateway_mqtt import GatewayCommands
from streamer.team.outbox import GatewayOutbox
from streamer.team.worker import Worker, WorkerOptions
from tests import team_worker_helpers as th
from tests.mqtt_helpers import Received, Subscriber, eventually
from tests.servers import Mosquitto, NatsServer, PostgreSQL
from tests.team_helpers import stream_messages

pytest.importorskip("nats")

GAP_S = 20.0
"""How long the strap's link is down in the middle of the morning reading (s)."""


def _with_a_link_gap(
    athlete: str, items: list[wire.WireMessage], *, gap_messages: bool
) -> list[wire.WireMessage]:
    """``items`` with :data:`GAP_S` of the strap's notifications cut out of the middle of
    the morning reading, as when its link drops, and — with ``gap_messages`` — the gap
    events the driver emits around it (opened when the link is lost, closed right before
    the first notification after it) and a battery level read on the new link."""
    start = next(i for i, m in enumerate(items) if isinstance(m, MorningStart))
    end = next(i for i, m in enumerate(items) if isinstance(m, MorningEnd))
    notes = [i for i in range(start, end) if isinstance(items[i], RecordedNotification)]
    t0 = items[notes[len(notes) // 2]].t_ns
    cut = [i for i in notes if t0 <= items[i].t_ns < t0 + GAP_S * 1e9]
    before, after = items[cut[0] - 1], items[cut[-1] + 1]
    assert isinstance(before, RecordedNotification)
    assert isinstance(after, RecordedNotification)
    device, name = after.device, f"{athlete}/{after.device}"
    events: list[wire.WireMessage] = []
    if gap_messages:
        lost_ns = before.t_ns + 1_500_000_000  # the supervision noticed the link was lost
        events = [
            wire.DeviceEvent(
                device, GapEvent(lost_ns, name, before.t_ns, None, GapReason.DISCONNECTED)
            ),
            wire.DeviceEvent(device, BatteryLevel(after.t_ns - 1, battery_pct=64)),
            wire.DeviceEvent(
                device, GapEvent(after.t_ns, name, before.t_ns, after.t_ns, GapReason.DISCONNECTED)
            ),
        ]
    return [*items[: cut[0]], *events, *items[cut[-1] + 1 :]]


def _rmssd(results: list[Result], athlete: str) -> float:
    (morning,) = [
        r.payload for r in results if r.athlete == athlete and isinstance(r.payload, MorningPayload)
    ]
    assert morning.rmssd_ms is not None
    return morning.rmssd_ms


def test_a_link_gap_reaches_the_worker_and_its_morning_is_the_single_boxs(
    postgres: PostgreSQL, nats_server: NatsServer
) -> None:
    """Athletes with the same morning and the same 20 s hole in it: ``gap`` with the
    driver's gap (and battery) messages, ``nogap`` without them (what a worker saw before
    they crossed the wire). The worker's ``gap`` morning is the single box's to the last
    digit; ``nogap``'s RMSSD differs — its RR series was differenced across the hole.
    ``foreign``'s gap messages come from a gateway without the strap's lease: dropped, as
    its notifications would be. ``handover``'s strap moves to another gateway in the hole
    and no gap message arrives (the first holder crashed): the grant is the gap."""
    ((_, items),) = th.athlete_days(1, 1, sessions=False).items()
    messages = {
        "gap": _with_a_link_gap("gap", items, gap_messages=True),
        "nogap": _with_a_link_gap("nogap", items, gap_messages=False),
    }
    strap = next(m.device for m in items if isinstance(m, RecordedNotification))
    first = wire.LeaseGranted(items[0].t_ns - 1, strap, "gw1")
    foreign = [first, *_with_a_link_gap("foreign", items, gap_messages=True)]
    holed = messages["nogap"]
    after = next(i for i, m in enumerate(holed) if m.t_ns != items[i].t_ns)  # the hole's end
    handover = [first, *holed[:after], wire.LeaseGranted(holed[after].t_ns - 1, strap, "gw2")]
    handover += holed[after:]
    # (athlete, gateway, message) in stream order: gw2 sends foreign's gap messages.
    sent = [("foreign", "gw2" if isinstance(m, wire.DeviceEvent) else "gw1", m) for m in foreign]
    sent += [("handover", "gw2" if n > after else "gw1", m) for n, m in enumerate(handover)]
    snapshots: dict[str, Any] = {}
    single_box = th.oracle({"gap": messages["gap"]}, snapshots=snapshots)
    without = th.oracle({"nogap": messages["nogap"]})
    unbroken = th.oracle({"full": items})
    print(
        f"\nmorning RMSSD: single box with the gap {_rmssd(single_box, 'gap'):.3f} ms, "
        f"without the gap message {_rmssd(without, 'nogap'):.3f} ms, "
        f"no hole at all {_rmssd(unbroken, 'full'):.3f} ms"
    )
    assert _rmssd(without, "nogap") != _rmssd(single_box, "gap")
    workers: dict[str, Any] = {}

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await th.ensure_stream(js)
        await th.publish(js, messages)
        for n, (athlete, gateway, message) in enumerate(sent):
            headers = {wire.GATEWAY_HEADER: gateway, wire.MSG_ID_HEADER: f"{gateway}:9:{n}"}
            await js.publish(wire.raw_subject(athlete), wire.encode(message), headers=headers)
        worker = Worker("a", nats_url=nats_server.url, dsn=postgres.dsn, config=Config(),
                        options=WorkerOptions(live=False))  # fmt: skip
        task = asyncio.create_task(worker.run())
        try:
            await eventually(
                lambda: len(th.history_rows(postgres.dsn)["morning"]) == 4 or task.done(),
                120,
                "the four mornings in PostgreSQL",
            )
            for part in worker.owned.values():
                workers.update({a: track.state.snapshot for a, track in part.tracks.items()})
        finally:
            worker.stop()
            await task
            await nc.close()

    asyncio.run(scenario())
    rows = {r[0]: r for r in th.history_rows(postgres.dsn)["morning"]}
    assert rows["gap"] == th.oracle_rows(single_box)["morning"][0]
    # The same morning but for the gap messages: only its numbers differ.
    assert rows["nogap"][1:3] == rows["gap"][1:3]
    assert rows["nogap"][3] != rows["gap"][3], "without the gap message RR is differenced across"
    assert rows["nogap"] == th.oracle_rows(without)["morning"][0]
    # The battery level and the gaps reach the athlete's snapshot as in the single box.
    assert workers["gap"].battery_pct == snapshots["gap"].battery_pct == {"strap": 64}
    assert workers["gap"].gaps == snapshots["gap"].gaps == 2
    assert workers["nogap"].battery_pct == {}
    # A gateway without the lease: its gap messages dropped, the morning is nogap's.
    assert rows["foreign"][1:] == rows["nogap"][1:]
    assert workers["foreign"].battery_pct == {}
    # A hand-over with no gap message: the grant marks the gap, the morning is gap's.
    assert rows["handover"][1:] == rows["gap"][1:]
    assert rows["handover"] == th.oracle_rows(th.oracle({"handover": handover}))["morning"][0]


# --- a gateway with an emulated strap whose link drops ------------------------------------------

SPEED = 20.0
"""Emulated seconds per real second: a 6-minute morning reading in ~20 s."""
FAST = ConnectionPolicy(
    backoff=Backoff(initial_s=0.01, max_s=0.1, multiplier=2.0, jitter=Jitter.FULL),
    connect_timeout_s=10.0,
    stale_after_s=None,
    stable_after_s=0.0,
    scan_timeout_s=2.0,
)
"""Reconnect at once (the hole is the strap's silence, not the driver's back-off)."""


def test_a_gateway_forwards_a_dropped_links_gap_between_the_right_notifications(
    tmp_path: Path, postgres: PostgreSQL, nats_server: NatsServer, monkeypatch: Any
) -> None:
    """The production strap driver through a gateway against a Bumble chest strap, on the
    world's clock: a morning reading whose link drops and stays silent for 20 s in the
    middle. The stream holds, in order, exactly the records the driver handed the gateway
    (the notifications as bytes, gaps and battery levels as device events) — the records
    ``run``'s pipeline would get; a worker on that stream writes the single box's morning,
    and without the gap messages the single box's RMSSD would differ."""
    emitted: list[object] = []  # what the driver handed its sink, in order
    record = gateway_module._Forwarder.record

    def spy(self: Any, item: object) -> None:
        emitted.append(item)
        record(self, item)

    monkeypatch.setattr(gateway_module._Forwarder, "record", spy)

    def samples() -> int:
        return sum(isinstance(r, HeartRateSample) for r in emitted)

    async def scenario() -> None:
        clock = EmulatedClock(SPEED)
        async with EmulatedWorld(clock=clock) as world:
            strap = await world.add(ChestStrap("Polar H10 GAP1", speed=SPEED, battery_pct=64))
            device = DeviceConfig("strap", DeviceKind.STRAP, address=strap.address)
            with GatewayOutbox(tmp_path / "gw.sqlite") as outbox:
                kwargs = {"client_kwargs": world.client_kwargs,
                          "scanner_kwargs": world.scanner_kwargs}  # fmt: skip
                gateway = Gateway("gw1", [nats_server.url], outbox, {"ann": [device]},
                                  driver_kwargs={**kwargs, "clock_ns": clock.now_ns,
                                                 "policy": FAST},
                                  clock_ns=clock.now_ns)  # fmt: skip
                task = asyncio.create_task(gateway.run())
                try:
                    await eventually(lambda: samples() >= 5, 120, "the strap's first samples")
                    begun = clock.now()
                    gateway.offer_marker_of("ann", MorningStart(clock.now_ns()))
                    await eventually(lambda: clock.now() >= begun + 150, 120, "150 s of it")
                    strap.go_silent(GAP_S)  # no data for 20 s, and the link drops
                    assert await strap.drop_link() == 1
                    await eventually(
                        lambda: any(isinstance(r, GapEvent) and r.end_ns for r in emitted),
                        120,
                        "the first sample after the gap",
                    )
                    await eventually(lambda: clock.now() >= begun + 360, 120, "a 6-min reading")
                    gateway.offer_marker_of("ann", MorningEnd(clock.now_ns()))
                    await gateway.stop(0.5)
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                # What the stop left in the outbox (the driver's last gap) goes out at the
                # gateway's next start, as in production.
                again = Gateway("gw1", [nats_server.url], outbox, {})
                task = asyncio.create_task(again.run())
                try:
                    await eventually(again.drained.is_set, 60, "the outbox sent")
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    stored = [s for s in stream_messages([nats_server.url]) if s.athlete == "ann"]
    messages = [s.message for s in stored]
    assert isinstance(messages[0], wire.LeaseGranted)
    # The stream is the driver's record sequence: notifications decoded as the worker
    # decodes them, device events as the records themselves, in the driver's order.
    rebuilt = [
        decode_notification(m) if isinstance(m, RecordedNotification) else m.record
        for m in messages
        if isinstance(m, RecordedNotification | wire.DeviceEvent)
    ]
    assert rebuilt == emitted
    # The gap sits between the right notifications: opened after the last sample before
    # the drop (its start), closed right before the first sample after it (its end).
    opened = next(
        n for n, m in enumerate(messages)
        if isinstance(m, wire.DeviceEvent) and isinstance(m.record, GapEvent)
        and m.record.reason is GapReason.DISCONNECTED and m.record.end_ns is None
    )  # fmt: skip
    gap = messages[opened]
    assert isinstance(gap, wire.DeviceEvent)
    assert isinstance(gap.record, GapEvent)
    before = [m for m in messages[:opened] if isinstance(m, RecordedNotification)][-1]
    assert gap.record.start_ns == before.t_ns
    closed = next(
        n for n, m in enumerate(messages)
        if n > opened and isinstance(m, wire.DeviceEvent) and isinstance(m.record, GapEvent)
    )  # fmt: skip
    end = messages[closed]
    assert isinstance(end, wire.DeviceEvent)
    assert isinstance(end.record, GapEvent)
    assert (end.record.start_ns, end.record.device) == (gap.record.start_ns, "ann/strap")
    after = messages[closed + 1]
    assert isinstance(after, RecordedNotification)
    assert after.t_ns == end.record.end_ns
    assert not any(isinstance(m, RecordedNotification) for m in messages[opened:closed])
    hole_s = (end.record.end_ns - gap.record.start_ns) / 1e9
    assert hole_s >= GAP_S * 0.9
    # Battery: read on each connection, forwarded as the driver's records.
    batteries = [m.record for m in messages if isinstance(m, wire.DeviceEvent)
                 and isinstance(m.record, BatteryLevel)]  # fmt: skip
    assert [b.battery_pct for b in batteries] == [64, 64]

    # The worker on the gateway's stream against the single box on the same records.
    snapshots: dict[str, Any] = {}
    single_box = th.oracle({"ann": messages}, snapshots=snapshots)
    no_gap = [m for m in messages if not isinstance(m, wire.DeviceEvent)]
    without = th.oracle({"ann": no_gap})
    print(
        f"\nemulated strap, a {hole_s:.1f} s hole: morning RMSSD {_rmssd(single_box, 'ann'):.3f}"
        f" ms with the gap messages, {_rmssd(without, 'ann'):.3f} ms without"
    )
    assert _rmssd(without, "ann") != _rmssd(single_box, "ann")
    worker_snapshot: dict[str, Any] = {}

    async def work() -> None:
        worker = Worker("a", nats_url=nats_server.url, dsn=postgres.dsn, config=Config(),
                        options=WorkerOptions(live=False))  # fmt: skip
        task = asyncio.create_task(worker.run())
        try:
            await eventually(
                lambda: th.history_rows(postgres.dsn)["morning"] or task.done(),
                120,
                "the morning in PostgreSQL",
            )
            for part in worker.owned.values():
                worker_snapshot.update({a: t.state.snapshot for a, t in part.tracks.items()})
        finally:
            worker.stop()
            await task

    asyncio.run(work())
    assert th.history_rows(postgres.dsn)["morning"] == th.oracle_rows(single_box)["morning"]
    assert worker_snapshot["ann"].battery_pct == snapshots["ann"].battery_pct == {"strap": 64}
    assert worker_snapshot["ann"].gaps == snapshots["ann"].gaps


# --- the held device's connection state, from the gateway's MQTT connection ------------------


async def _gateway_with_a_strap(world: EmulatedWorld, outbox: GatewayOutbox, url: str) -> Gateway:
    """Gateway ``gw1`` on NATS ``url`` with ann's emulated strap (battery 64%) to hold."""
    strap = await world.add(ChestStrap("Polar H10 ST1", speed=SPEED, battery_pct=64))
    device = DeviceConfig("strap", DeviceKind.STRAP, address=strap.address)
    kwargs = {"client_kwargs": world.client_kwargs, "scanner_kwargs": world.scanner_kwargs,
              "policy": FAST}  # fmt: skip
    return Gateway("gw1", [url], outbox, {"ann": [device]}, driver_kwargs=kwargs)


def test_a_gateway_stops_when_its_stop_lands_as_a_lease_renewal_is_answered(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """:meth:`Gateway.stop` cancels each device's task once and waits for it. nats-py waits
    for an answer with ``asyncio.wait_for``, which on Python 3.11 returns the answer and
    loses a cancellation landing in the same loop turn: the device's task then renewed its
    lease on and on and the stop never ended (in the team simulation, a hand-over whose
    renewal was cancelled that way kept a device held for ever). Here the stop starts in
    the loop turn in which a renewal's answer arrives."""
    from streamer.team.stream import LEASE_BUCKET, ensure_stream

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        await ensure_stream(nc.jetstream(), 1, lease_ttl_s=1.5)  # a renewal every 0.5 s
        await nc.close()
        async with EmulatedWorld() as world:
            with GatewayOutbox(tmp_path / "gw.sqlite") as outbox:
                gateway = await _gateway_with_a_strap(world, outbox, nats_server.url)
                running = asyncio.create_task(gateway.run())
                try:
                    await eventually(lambda: gateway.stats.leases.get("ann.strap") == "held",
                                     60, "the strap's lease held")  # fmt: skip
                    stopping: list[asyncio.Future[None]] = []
                    request = gateway._nc.request

                    async def answered_then_stopped(subject: str, *args: Any,
                                                    **kwargs: Any) -> Any:  # fmt: skip
                        call = asyncio.ensure_future(request(subject, *args, **kwargs))
                        if subject == f"$KV.{LEASE_BUCKET}.ann.strap" and not stopping:
                            # The first write of the held lease is a renewal: as it is
                            # answered, the stop (its cancellation a loop turn later).
                            call.add_done_callback(
                                lambda _: stopping.append(asyncio.ensure_future(gateway.stop(1.0)))
                            )
                        # The renewing task waits as nats-py does: asyncio.wait_for.
                        return await asyncio.wait_for(call, 30)

                    gateway._nc.request = answered_then_stopped
                    await eventually(lambda: stopping, 30, "a renewal answered")
                    done, _ = await asyncio.wait(stopping, timeout=30)
                    assert done, "the gateway stopped (its device's task ended)"
                    assert gateway.stats.leases["ann.strap"] == "held"  # stopped, not lost
                finally:
                    running.cancel()
                    await asyncio.gather(running, return_exceptions=True)

    asyncio.run(scenario())


def test_the_gateway_holding_a_device_publishes_its_state_as_run_does(
    tmp_path: Path, nats_server: NatsServer, mosquitto: Mosquitto
) -> None:
    """``<base>/<athlete>/<device>/state``, retained, the payload ``run`` publishes
    (:mod:`streamer.app.device_state`): connected with the battery the strap reported, then
    ``stopped`` when the gateway stops — Home Assistant's connectivity and battery entities
    read it; each message's ``seq`` above the last."""
    topic = "redox/ann/strap/state"

    async def scenario() -> list[Received]:
        sub = await Subscriber("127.0.0.1", mosquitto.port, topic=topic,
                               client_id="states").start()  # fmt: skip
        async with EmulatedWorld() as world:
            with GatewayOutbox(tmp_path / "gw.sqlite") as outbox:
                gateway = await _gateway_with_a_strap(world, outbox, nats_server.url)
                commands = GatewayCommands(MqttConfig.from_url(mosquitto.url), "gw1", ["ann"],
                                           gateway.offer_marker, clock_ns=time.time_ns,
                                           devices=gateway)  # fmt: skip
                running = asyncio.create_task(gateway.run())
                mqtt = asyncio.create_task(commands.run())
                try:
                    await sub.wait_for(
                        lambda: any(
                            r.json()["connected"] and r.json()["battery_pct"] == 64
                            for r in sub.received
                        ),
                        60,
                        "the strap connected, with its battery",
                    )
                    mqtt.cancel()  # the gateway stops: its sources first, as the command does
                    await asyncio.gather(mqtt, return_exceptions=True)
                    await sub.wait_for(
                        lambda: sub.received[-1].json()["connection"] == "stopped",
                        30,
                        "the stopped state",
                    )
                finally:
                    for task in (mqtt, running):
                        task.cancel()
                    await asyncio.gather(mqtt, running, return_exceptions=True)
        await sub.stop()
        # A reader arriving later (Home Assistant restarted) gets the retained last word.
        late = await Subscriber("127.0.0.1", mosquitto.port, topic=topic, client_id="late",
                                persistent=False).start()  # fmt: skip
        await late.wait_for(lambda: bool(late.received), 10, "the retained state")
        await late.stop()
        return [*sub.received, *late.received]

    *received, retained = asyncio.run(scenario())
    assert retained.retain
    assert retained.json() == received[-1].json()
    states = [r.json() for r in received]
    assert all(r.qos == 1 for r in received)
    seqs = [s["seq"] for s in states]
    assert seqs == sorted(set(seqs)), "seq strictly increasing"
    connected = next(s for s in states if s["connected"])
    fields = {f.name for f in dataclasses.fields(DeviceStatePayload)}
    assert fields <= connected.keys()
    assert (connected["device_kind"], connected["connection"]) == ("strap", "connected")
    assert connected["battery_pct"] == 64
    assert (states[-1]["connected"], states[-1]["connection"]) == (False, "stopped")


# --- the latest state survives a broker restarted without persistence ----------------------


def _volatile_mosquitto(directory: Path) -> Mosquitto:
    """mosquitto keeping nothing across a restart (no persistence): its retained messages
    are lost when it stops, as on a broker installed without a persistence directory."""
    broker = Mosquitto(directory)
    broker.config.write_text(
        broker.config.read_text().replace("persistence true", "persistence false")
    )
    return broker


async def _retained_state(port: int, topic: str, what: str) -> dict[str, object]:
    """The state a reader arriving after the gateway published gets: ``topic``'s retained
    message (a watcher first waits for the gateway to publish on the empty broker)."""
    states: list[Received] = []
    for client_id in ("watcher", "late"):
        reader = await Subscriber("127.0.0.1", port, topic=topic, client_id=client_id,
                                  persistent=False).start()  # fmt: skip
        try:
            await reader.wait_for(lambda r=reader: bool(r.received), 30, what)
        finally:
            await reader.stop()
        states.append(reader.received[-1])
    assert states[-1].retain
    return states[-1].json()


def test_a_device_stopped_while_the_broker_restarts_without_persistence_ends_stopped(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """A strap connected (retained ``connected``), the broker stopped; meanwhile the strap
    leaves the gateway (removed from the registry: stopped, its lease released); the broker
    comes back empty. The gateway publishes the strap's latest word again after it
    reconnects: a reader ends with ``stopped`` retained, never nothing or ``connected`` —
    and again after a second restart, the stopped state delivered before it."""
    topic = "redox/ann/strap/state"
    broker = _volatile_mosquitto(tmp_path / "mosquitto")
    broker.start()

    async def scenario() -> tuple[dict[str, object], dict[str, object]]:
        sub = await Subscriber("127.0.0.1", broker.port, topic=topic,
                               client_id="states").start()  # fmt: skip
        async with EmulatedWorld() as world:
            with GatewayOutbox(tmp_path / "gw.sqlite") as outbox:
                gateway = await _gateway_with_a_strap(world, outbox, nats_server.url)
                config = dataclasses.replace(MqttConfig.from_url(broker.url),
                                             reconnect_min_s=0.1, reconnect_max_s=0.5)  # fmt: skip
                commands = GatewayCommands(config, "gw1", ["ann"], gateway.offer_marker,
                                           clock_ns=time.time_ns, devices=gateway,
                                           keeper=outbox)  # fmt: skip
                running = asyncio.create_task(gateway.run())
                mqtt = asyncio.create_task(commands.run())
                try:
                    await sub.wait_for(
                        lambda: any(r.json()["connected"] for r in sub.received),
                        60,
                        "the strap connected",
                    )
                    connected = next(r.json() for r in sub.received if r.json()["connected"])
                    await sub.stop()
                    await asyncio.to_thread(broker.stop)
                    await gateway.set_devices({})  # the strap leaves: stopped, lease released
                    assert not gateway.held
                    await asyncio.to_thread(broker.start)  # empty: no retained state
                    state = await _retained_state(broker.port, topic, "the strap's state")
                    # Once more, the stopped state delivered this time: lost with the broker
                    # again, published again after the gateway reconnects.
                    await asyncio.to_thread(broker.restart)
                    again = await _retained_state(broker.port, topic, "the state again")
                    assert again == state, "the same message: the latest word, not a new one"
                finally:
                    for task in (mqtt, running):
                        task.cancel()
                    await asyncio.gather(mqtt, running, return_exceptions=True)
        return connected, state

    try:
        connected, state = asyncio.run(scenario())
    finally:
        broker.stop()
    assert (state["connected"], state["connection"]) == (False, "stopped")
    assert state["battery_pct"] == 64, "the strap's last known battery, as `run` says it"
    assert isinstance(state["seq"], int)
    assert isinstance(connected["seq"], int)
    assert state["seq"] > connected["seq"]


def test_a_gateway_stopped_while_the_broker_is_down_says_stopped_at_its_next_start(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    """The gateway stops while the broker is away: its strap's ``stopped`` cannot be sent.
    The outbox file keeps it; the broker comes back empty; the gateway starts again
    without the strap in range (it never holds it again, so nothing re-derives its state)
    and publishes the kept ``stopped``."""
    topic = "redox/ann/strap/state"
    broker = _volatile_mosquitto(tmp_path / "mosquitto")
    broker.start()
    config = dataclasses.replace(MqttConfig.from_url(broker.url),
                                 reconnect_min_s=0.1, reconnect_max_s=0.5)  # fmt: skip

    async def first_life() -> dict[str, object]:
        sub = await Subscriber("127.0.0.1", broker.port, topic=topic,
                               client_id="states").start()  # fmt: skip
        async with EmulatedWorld() as world:
            with GatewayOutbox(tmp_path / "gw.sqlite") as outbox:
                gateway = await _gateway_with_a_strap(world, outbox, nats_server.url)
                commands = GatewayCommands(config, "gw1", ["ann"], gateway.offer_marker,
                                           clock_ns=time.time_ns, devices=gateway,
                                           keeper=outbox)  # fmt: skip
                running = asyncio.create_task(gateway.run())
                mqtt = asyncio.create_task(commands.run())
                try:
                    await sub.wait_for(
                        lambda: any(r.json()["connected"] for r in sub.received),
                        60,
                        "the strap connected",
                    )
                    await sub.stop()
                    await asyncio.to_thread(broker.stop)
                    await eventually(lambda: not commands.subscribed.is_set(), 30,
                                     "the gateway's MQTT link down")  # fmt: skip
                finally:  # the gateway stops as the command stops it: its sources first
                    mqtt.cancel()
                    await asyncio.gather(mqtt, return_exceptions=True)
                    await gateway.stop(1.0)
                    running.cancel()
                    await asyncio.gather(running, return_exceptions=True)
        return next(r.json() for r in sub.received if r.json()["connected"])

    async def second_life() -> dict[str, object]:
        with GatewayOutbox(tmp_path / "gw.sqlite") as outbox:
            gateway = Gateway("gw1", [nats_server.url], outbox, {})  # the strap out of range
            commands = GatewayCommands(config, "gw1", ["ann"], gateway.offer_marker,
                                       clock_ns=time.time_ns, devices=gateway,
                                       keeper=outbox)  # fmt: skip
            running = asyncio.create_task(gateway.run())
            mqtt = asyncio.create_task(commands.run())
            try:
                return await _retained_state(broker.port, topic, "the kept stopped state")
            finally:
                for task in (mqtt, running):
                    task.cancel()
                await asyncio.gather(mqtt, running, return_exceptions=True)

    try:
        connected = asyncio.run(first_life())
        broker.start()  # empty: no retained state
        state = asyncio.run(second_life())
    finally:
        broker.stop()
    assert (state["connected"], state["connection"]) == (False, "stopped")
    assert isinstance(state["seq"], int)
    assert isinstance(connected["seq"], int)
    assert state["seq"] > connected["seq"]


def test_a_kept_state_is_never_published_over_the_lease_holders(
    tmp_path: Path, nats_server: NatsServer, mosquitto: Mosquitto
) -> None:
    """gw1 stopped with the strap's ``stopped`` kept; meanwhile gw2 took the strap's lease
    and says ``connected``. gw1 starts again: the strap's state is gw2's now, so gw1
    forgets its last word instead of publishing it over gw2's (a newer ``seq`` from the
    holder is the truth)."""
    from streamer.team.leases import Lease
    from streamer.team.outbox import KeptState
    from streamer.team.stream import ensure_stream

    topic = "redox/ann/strap/state"
    ours = b'{"schema":1,"seq":1,"connected":false,"connection":"stopped"}'
    holders = b'{"schema":1,"seq":2,"connected":true,"connection":"connected"}'
    with GatewayOutbox(tmp_path / "gw1.sqlite") as outbox:
        outbox.keep_device_states([KeptState(topic, "ann", "strap", ours)])

    async def scenario() -> list[Received]:
        nc = await nats.connect(nats_server.url)
        try:
            kv = await ensure_stream(nc.jetstream())
            assert await Lease(kv, "gw2", "ann", "strap").try_acquire(-50)
        finally:
            await nc.close()
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="gw2") as client:
            await client.publish(topic, holders, qos=1, retain=True)
        with GatewayOutbox(tmp_path / "gw1.sqlite") as outbox:
            gateway = Gateway("gw1", [nats_server.url], outbox, {})
            commands = GatewayCommands(MqttConfig.from_url(mosquitto.url), "gw1", ["ann"],
                                       gateway.offer_marker, clock_ns=time.time_ns,
                                       devices=gateway, keeper=outbox)  # fmt: skip
            tasks = [asyncio.create_task(gateway.run()), asyncio.create_task(commands.run())]
            try:
                await eventually(lambda: not commands._words.words, 60, "the word forgotten")
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            assert outbox.kept_device_states() == [], "nor kept for the next start"
        reader = await Subscriber("127.0.0.1", mosquitto.port, topic=topic, client_id="reader",
                                  persistent=False).start()  # fmt: skip
        try:
            await reader.wait_for(lambda: bool(reader.received), 30, "the retained state")
        finally:
            await reader.stop()
        return reader.received

    (retained,) = asyncio.run(scenario())
    assert retained.retain
    assert retained.payload == holders, "the holder's state, nothing of gw1's over it"
