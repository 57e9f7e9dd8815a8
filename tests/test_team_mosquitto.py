"""Team mode on the shipped broker files: many gateways share the ``redox-gateway`` account
and a worker holds one connection per owned partition as ``redox-worker``. On the
single-box config (``use_username_as_clientid``) they throw each other off; on
``deploy/team/mosquitto.conf`` (the same file without it) nobody does, and the shipped ACL
still keeps each account to its topics. Real mosquitto, nats-server and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.commands.session import send_if_listening
from streamer.config import Config, MqttConfig
from streamer.team.gateway_mqtt import STREAM_DOWN, GatewayCommands
from streamer.team.worker import Worker, WorkerOptions
from tests import team_worker_helpers as th
from tests.mqtt_helpers import eventually
from tests.servers import NatsServer, PostgreSQL
from tests.shipped_mosquitto import (
    SHIPPED_CONF,
    TEAM_CONF,
    ShippedBroker,
    start_shipped_mosquitto,
)
from tests.team_helpers import GatewayProc, wait_until, write_config

nats = pytest.importorskip("nats")
mqtt = pytest.importorskip("paho.mqtt.client")

TAKEOVER = "already connected, closing old connection"
"""What mosquitto logs when a login throws out a connected client with the same id."""


def _active_lines(path: Path) -> list[str]:
    return [
        line
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_the_team_config_is_the_shipped_one_but_for_the_client_ids() -> None:
    shipped = _active_lines(SHIPPED_CONF)
    assert "use_username_as_clientid true" in shipped
    assert [line for line in shipped if "use_username_as_clientid" not in line] == (
        _active_lines(TEAM_CONF)
    )


@pytest.fixture
def team_broker(tmp_path: Path) -> Iterator[ShippedBroker]:
    broker = start_shipped_mosquitto(tmp_path / "team-mosquitto", TEAM_CONF)
    try:
        yield broker
    finally:
        broker.server.stop()


class _Watcher:
    """A ``homeassistant`` subscriber to ``filters`` (``redox/#`` unless given; a thread of
    paho's): the last
    payload per topic and every (topic, payload) in order."""

    def __init__(self, broker: ShippedBroker, *filters: str) -> None:
        self.last: dict[str, bytes] = {}
        self.seen: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-watcher")
        self.client.username_pw_set("homeassistant", broker.password("homeassistant"))
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe([(f, 1) for f in filters or ("redox/#",)])
        self.client.loop_start()
        assert self._subscribed.wait(30), "the watcher's subscription"

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.last[msg.topic] = msg.payload
            self.seen.append((msg.topic, msg.payload))

    def online(self, topic: str) -> bool:
        with self._lock:
            return self.last.get(topic) == b"online"

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _logins(log: str, user: str) -> int:
    pattern = rf"New client connected from \S+ as \S+ \(.*u'{re.escape(user)}'\)"
    return len(re.findall(pattern, log))


def _gateways(
    broker: ShippedBroker, offered: list[tuple[str, str, object]]
) -> list[GatewayCommands]:
    config = MqttConfig.from_url(broker.url("redox-gateway"))
    return [
        GatewayCommands(
            config,
            gateway_id,
            ["ann", "bob"],
            lambda athlete, device, marker: offered.append((athlete, device, marker)) is None,
            clock_ns=lambda: 1,
        )
        for gateway_id in ("gw1", "gw2")
    ]


def _quiet_workers(broker: ShippedBroker, partitions: int) -> tuple[Config, WorkerOptions]:
    """Workers' config on ``broker`` as the worker account, no live samples, claiming
    ``partitions`` partitions every 0.2 s."""
    config = dataclasses.replace(Config(), mqtt=MqttConfig.from_url(broker.url("redox-worker")))
    return config, WorkerOptions(partitions=partitions, live=False, claim_every_s=0.2)


def test_gateways_and_a_worker_share_their_accounts_on_the_team_broker(
    team_broker: ShippedBroker, nats_server: NatsServer, postgres: PostgreSQL
) -> None:
    """Two gateways (one account) and a worker owning all 16 partitions (18 connections,
    one account: its availability, a publisher per partition and its live link) all stay
    connected: no takeover in the broker's log, every availability
    topic online, a command handed to one gateway. The gateway account cannot publish a
    result, only its availability and the state of the devices it holds."""
    offered: list[tuple[str, str, object]] = []
    watcher = _Watcher(team_broker)
    partitions = 16

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        await th.ensure_stream(nc.jetstream())
        await nc.close()
        worker_mqtt = MqttConfig.from_url(team_broker.url("redox-worker"))
        worker = Worker(
            "a",
            nats_url=nats_server.url,
            dsn=postgres.dsn,
            config=dataclasses.replace(Config(), mqtt=worker_mqtt),
            options=WorkerOptions(partitions=partitions, live=True),
        )
        gateways = _gateways(team_broker, offered)
        tasks = [asyncio.create_task(g.run()) for g in gateways]
        tasks.append(asyncio.create_task(worker.run()))
        topics = [
            "redox/gateway/gw1/state",
            "redox/gateway/gw2/state",
            "redox/worker/a/state",
            *(f"redox/partition/{p}/state" for p in range(partitions)),
        ]
        try:
            await eventually(
                lambda: (
                    all(watcher.online(t) for t in topics)
                    and worker.live_link is not None
                    and worker.live_link.connected
                ),
                120,
                "every process online, the worker's live link too",
            )
            # Each gateway says its NATS link (none here: down) and reads the other's.
            await eventually(
                lambda: (
                    gateways[0].peer_link("gw2") == STREAM_DOWN
                    and gateways[1].peer_link("gw1") == STREAM_DOWN
                ),
                60,
                "each gateway reading the other's link through the ACL",
            )
            # `redox-streamer session start` as redox-cli: the ACL lets it read the
            # gateways' availability, so it finds them listening and sends.
            cli = MqttConfig.from_url(team_broker.url("redox-cli"))
            assert await send_if_listening(cli, "ann", "session", b"start")
            await eventually(lambda: len(offered) >= 1, 60, "the command at a gateway")
            # The gateway account may say it is up, never publish a result: the refused
            # publish goes first on one connection, so had it passed it would arrive first.
            rogue = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-rogue-gw")
            rogue.username_pw_set("redox-gateway", team_broker.password("redox-gateway"))
            rogue.connect(team_broker.host, team_broker.port)
            rogue.loop_start()
            rogue.publish("redox/ann/status", b'{"fake":1}', qos=1).wait_for_publish(30)
            rogue.publish("redox/gateway/gw9/state", b"online", qos=1).wait_for_publish(30)
            # …and the state of a device it holds (as `run` publishes it), retained.
            rogue.publish("redox/ann/strap/state", b"{}", qos=1).wait_for_publish(30)
            rogue.loop_stop()
            rogue.disconnect()
            await eventually(
                lambda: watcher.online("redox/gateway/gw9/state"), 30, "the rogue's allowed one"
            )
            await eventually(
                lambda: ("redox/ann/strap/state", b"{}") in watcher.seen, 30, "a device state"
            )
        finally:
            worker.stop()
            for task in tasks[:-1]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run(scenario())
    finally:
        watcher.stop()
    assert [m for m in offered if m[0] == "ann"] == offered
    assert len(offered) == 1  # the shared subscription: one gateway of two took it
    assert ("redox/ann/status", b'{"fake":1}') not in watcher.seen
    team_broker.server.stop()
    log = team_broker.server.log.read_text(errors="replace")
    assert TAKEOVER not in log
    assert _logins(log, "redox-gateway") == 3  # gw1, gw2 and the rogue, once each
    assert _logins(log, "redox-worker") == partitions + 2


def test_control_on_the_single_box_broker_gateways_of_one_account_throw_each_other_off(
    tmp_path: Path,
) -> None:
    """Why team mode has its own broker file: on the single-box one two gateways' logins
    (``redox-gateway``, client ids of their own) both become the client id
    ``redox-gateway``, and the second login throws out the first."""
    broker = start_shipped_mosquitto(tmp_path / "box-mosquitto", SHIPPED_CONF)
    thrown_off = threading.Event()
    clients = []
    try:
        for gateway_id in ("gw1", "gw2"):
            connected = threading.Event()
            client = mqtt.Client(
                mqtt.CallbackAPIVersion.VERSION2, client_id=f"redox-gateway-{gateway_id}"
            )
            client.username_pw_set("redox-gateway", broker.password("redox-gateway"))
            client.on_connect = lambda *_, connected=connected: connected.set()
            if gateway_id == "gw1":
                client.on_disconnect = lambda *_: thrown_off.set()
            client.connect(broker.host, broker.port)
            client.loop_start()
            clients.append(client)
            assert connected.wait(30), f"{gateway_id} connected"
        assert thrown_off.wait(30), "gw1 thrown off by gw2's login"
    finally:
        for client in clients:
            client.loop_stop()
            client.disconnect()
        broker.server.stop()
    assert TAKEOVER in broker.server.log.read_text(errors="replace")


def test_each_gateway_announces_its_own_entity_and_a_dead_one_leaves_the_others(
    tmp_path: Path, team_broker: ShippedBroker, nats_server: NatsServer
) -> None:
    """With ha_discovery, two gateways (as ``redox-gateway``, so the ACL lets them) each
    publish one retained connectivity entity on their own state topic, with no
    availability. gw1 SIGKILLed: its Last Will turns its entity off; gw2's stays on, and
    no entity of either depends on the other."""
    servers = [nats_server.url]
    mqtt_section = (
        f'\n[mqtt]\nurl = "mqtt://{team_broker.host}:{team_broker.port}"\n'
        f'username = "redox-gateway"\npassword = "{team_broker.password("redox-gateway")}"\n'
        "ha_discovery = true\n"
    )
    watcher = _Watcher(team_broker, "redox/gateway/#", "homeassistant/#")
    gateways = [
        GatewayProc(tmp_path / g, g, servers, write_config(tmp_path / g, mqtt_section))
        for g in ("gw1", "gw2")
    ]
    configs = {g: f"homeassistant/binary_sensor/redox_gateway/{g}/config" for g in ("gw1", "gw2")}
    states = {g: f"redox/gateway/{g}/state" for g in ("gw1", "gw2")}
    try:
        for gateway in gateways:
            gateway.start()
        wait_until(
            lambda: (
                all(watcher.online(t) for t in states.values())
                and all(t in watcher.last for t in configs.values())
            ),
            90,
            "both gateways online and announced",
        )
        gateways[0].kill()
        wait_until(lambda: watcher.last.get(states["gw1"]) == b"offline", 90, "gw1's Last Will")
        assert watcher.online(states["gw2"])
    finally:
        for gateway in gateways:
            gateway.ensure_dead()
        watcher.stop()
    for g in ("gw1", "gw2"):
        entity = json.loads(watcher.last[configs[g]])
        assert entity["state_topic"] == states[g]
        assert (entity["payload_on"], entity["payload_off"]) == ("online", "offline")
        assert entity["device_class"] == "connectivity"
        assert "availability" not in entity
        assert "availability_topic" not in entity
    assert [t for t, _ in watcher.seen if t == configs["gw1"]] == [configs["gw1"]]


# --- the athletes' Home Assistant entities across partition moves ------------------------------


def _payloads(watcher: _Watcher, topic: str) -> list[bytes]:
    with watcher._lock:
        return [p for t, p in watcher.seen if t == topic]


def test_athlete_entities_neither_change_nor_blink_when_their_partition_changes_hands(
    team_broker: ShippedBroker, nats_server: NatsServer, postgres: PostgreSQL
) -> None:
    """Two partitions, athletes ann (partition 0) and cy (1), ``ha_discovery`` on. Worker a
    owns both; b joins and takes one; a stops cleanly (b takes the other); b, the last,
    stops. Every message on the partitions' availability topics and on the athletes'
    discovery topics is recorded: the configs name ``redox/partition/<p>/state`` and are the
    same bytes every time they are published; the availability says ``online`` at every
    hand-over — never ``offline`` — and ``offline`` once the last worker is gone."""
    from streamer.config import AthleteConfig
    from streamer.sinks.ha_discovery import discovery_messages
    from streamer.team import wire
    from streamer.team.partitions import held_partitions
    from streamer.team.pg_store import connect
    from streamer.topics import Topics

    partitions = 2
    athletes = (AthleteConfig("ann", "Ann"), AthleteConfig("cy", "Cy"))
    assert [wire.partition_of(a.id, partitions) for a in athletes] == [0, 1]
    states = [f"redox/partition/{p}/state" for p in range(partitions)]
    watcher = _Watcher(team_broker, "redox/partition/#", "homeassistant/#")
    mqtt_config = dataclasses.replace(
        MqttConfig.from_url(team_broker.url("redox-worker")), ha_discovery=True
    )
    config = dataclasses.replace(Config(), mqtt=mqtt_config, athletes=athletes)
    options = WorkerOptions(partitions=partitions, live=False, claim_every_s=0.2)
    # What each athlete's entities must be: their own partition's availability.
    configs: dict[str, str] = {}
    for p, athlete in enumerate(athletes):
        for topic, payload in discovery_messages(Topics(), [athlete]):
            entity = json.loads(payload)
            assert [a["topic"] for a in entity["availability"]] == ["redox/bridge/state"]
            configs[topic] = states[p]

    def holders() -> dict[int, str]:
        with connect(postgres.dsn, application="test") as conn:
            return {p: app.split(":")[1] for p, app in held_partitions(conn).items()}

    def announced(count: int) -> bool:
        return all(len(_payloads(watcher, t)) >= count for t in configs)

    def onlines(topic: str) -> int:
        return _payloads(watcher, topic).count(b"online")

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        await th.ensure_stream(nc.jetstream())
        await nc.close()
        a = Worker("a", nats_url=nats_server.url, dsn=postgres.dsn, config=config, options=options)
        b = Worker("b", nats_url=nats_server.url, dsn=postgres.dsn, config=config, options=options)
        task_a = asyncio.create_task(a.run())
        task_b: asyncio.Task[None] | None = None
        try:
            await eventually(
                lambda: all(watcher.online(t) for t in states) and announced(1),
                120,
                "a's partitions online and the athletes announced",
            )
            assert await asyncio.to_thread(holders) == {0: "a", 1: "a"}
            before = {t: onlines(t) for t in states}
            task_b = asyncio.create_task(b.run())
            # b's share is one partition: a lets one go, b takes it and says online there.
            await eventually(
                lambda: sorted(holders().values()) == ["a", "b"], 120, "b holding a partition"
            )
            moved = states[
                next(p for p, w in (await asyncio.to_thread(holders)).items() if w == "b")
            ]
            await eventually(lambda: onlines(moved) > before[moved], 120, "b's online")
            # a stops cleanly while b runs: b takes a's partition, which never says offline.
            other = next(t for t in states if t != moved)
            before = {t: onlines(t) for t in states}
            a.stop()
            await task_a
            await eventually(lambda: holders() == {0: "b", 1: "b"}, 120, "b holding both")
            await eventually(lambda: onlines(other) > before[other], 120, "b's online on it")
            assert all(b"offline" not in _payloads(watcher, t) for t in states)
            # b, the last worker, stops: nobody serves the athletes any more.
            b.stop()
            await task_b
            await eventually(
                lambda: all(_payloads(watcher, t)[-1:] == [b"offline"] for t in states),
                60,
                "offline on both partitions after the last worker stopped",
            )
        finally:
            a.stop()
            b.stop()
            await asyncio.gather(task_a, *([task_b] if task_b else []), return_exceptions=True)

    try:
        asyncio.run(scenario())
    finally:
        watcher.stop()
    for state in states:
        seen = _payloads(watcher, state)
        # online at every claim, offline once: the last worker's goodbye. (A second one was
        # a partition connection's Last Will, its clean stop taken for a lost connection
        # by mosquitto < 2.0.22: MqttPublisher now waits for the PUBACKs in flight.)
        assert seen[-1] == b"offline"
        assert b"offline" not in seen[:-1], f"{state} blinked: {seen}"
    for topic, state in configs.items():
        payloads = set(_payloads(watcher, topic))
        assert len(payloads) == 1, f"{topic} changed across owners"
        entity = json.loads(payloads.pop())
        assert [a["topic"] for a in entity["availability"]] == [state]


def _held(dsn: str) -> dict[int, str]:
    from streamer.team.partitions import held_partitions
    from streamer.team.pg_store import connect

    with connect(dsn, application="test") as conn:
        return {p: app.split(":")[1] for p, app in held_partitions(conn).items()}


def test_a_killed_workers_partitions_say_offline_until_the_survivor_takes_them(
    team_broker: ShippedBroker, nats_server: NatsServer, postgres: PostgreSQL, tmp_path: Path
) -> None:
    """Two worker processes share the 16 partitions (a hands b its half without a blink);
    a SIGKILLed: its partitions' Last Wills say offline, then b claims them and says
    online; b's own never say offline."""
    import os
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    states = [f"redox/partition/{p}/state" for p in range(16)]
    watcher = _Watcher(team_broker, "redox/partition/#")

    def start(worker_id: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{worker_id}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "streamer.cli", "worker", "--id", worker_id,
                 "--nats", nats_server.url, "--postgres", postgres.dsn,
                 "--mqtt", team_broker.url("redox-worker"), "--no-live"],
                stdout=log, stderr=subprocess.STDOUT, cwd=root,
                env={**os.environ, "PYTHONPATH": str(root)},
            )  # fmt: skip

    async def stream() -> None:
        nc = await nats.connect(nats_server.url)
        await th.ensure_stream(nc.jetstream())
        await nc.close()

    asyncio.run(stream())
    procs = [start("a")]
    try:
        wait_until(lambda: all(watcher.online(t) for t in states), 120, "a's 16 partitions")
        procs.append(start("b"))
        wait_until(
            lambda: sorted(_held(postgres.dsn).values()).count("b") == 8, 120, "b with its half"
        )
        held = _held(postgres.dsn)
        a_topics = [states[p] for p, w in held.items() if w == "a"]
        b_topics = [states[p] for p, w in held.items() if w == "b"]
        wait_until(
            lambda: all(_payloads(watcher, t).count(b"online") >= 2 for t in b_topics),
            120,
            "b's online on the partitions it took",
        )
        marks = {t: len(_payloads(watcher, t)) for t in states}
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(30)
        wait_until(lambda: set(_held(postgres.dsn).values()) == {"b"}, 120, "b holding all 16")
        wait_until(
            lambda: all(_payloads(watcher, t)[-1:] == [b"online"] for t in a_topics),
            120,
            "a's partitions online again under b",
        )
        after_kill = {t: _payloads(watcher, t)[marks[t] :] for t in states}
        # b, now the last worker, stopped cleanly: every partition offline.
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(60) == 128 + signal.SIGTERM  # the CLI's exit after a stop signal
        wait_until(
            lambda: all(_payloads(watcher, t)[-1:] == [b"offline"] for t in states),
            60,
            "offline everywhere after the last worker's stop",
        )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(60)
        watcher.stop()
    for t in a_topics:
        assert after_kill[t][0] == b"offline", f"{t} after the kill: {after_kill[t]}"  # a's Will
        assert after_kill[t][-1] == b"online"
    for t in states:
        before = _payloads(watcher, t)[: marks[t]]
        assert b"offline" not in before, f"{t} blinked at the hand-over to b: {before}"
    for t in b_topics:
        assert b"offline" not in after_kill[t], f"{t} (b's) after a's kill: {after_kill[t]}"


def test_a_partition_publisher_stopped_while_announcing_leaves_no_last_will(
    team_broker: ShippedBroker,
) -> None:
    """A partition let go right after its publisher connected — its discovery configs and
    its state topic's echo still in flight — closes cleanly: mosquitto (< 2.0.22) takes a
    client that hangs up before the broker wrote its PUBACKs for a lost one and would send
    the Last Will, an ``offline`` in the middle of a hand-over. Ten stops, no ``offline``."""
    from streamer.config import AthleteConfig
    from streamer.sinks.mqtt import MqttPublisher
    from streamer.store import Store
    from streamer.team.worker import _PartitionTopics

    state = "redox/partition/3/state"
    watcher = _Watcher(team_broker, "redox/partition/#")
    config = dataclasses.replace(
        MqttConfig.from_url(team_broker.url("redox-worker")), ha_discovery=True
    )

    async def cycles() -> None:
        for n in range(10):
            with Store(":memory:") as store:
                publisher = MqttPublisher(
                    config, store, athletes=[AthleteConfig("ann", "Ann")], shared_state=True
                )
                publisher.topics = _PartitionTopics("redox", "homeassistant", 3)
                task = asyncio.create_task(publisher.run())
                await eventually(lambda p=publisher: p.connected, 60, "connected")
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await eventually(
                lambda n=n: _payloads(watcher, state).count(b"online") > n, 60, "its online"
            )

    try:
        asyncio.run(cycles())
        # A round trip through the broker after the last stop: a Will it sent for that
        # connection is delivered before this.
        probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-probe")
        probe.username_pw_set("redox-worker", team_broker.password("redox-worker"))
        probe.connect(team_broker.host, team_broker.port)
        probe.loop_start()
        probe.publish("redox/partition/99/state", b"probe", qos=1).wait_for_publish(30)
        probe.loop_stop()
        probe.disconnect()
        wait_until(lambda: _payloads(watcher, "redox/partition/99/state"), 30, "the probe")
    finally:
        watcher.stop()
    assert _payloads(watcher, state) == [b"online"] * 10


def test_workers_stopped_together_leave_their_partitions_offline(
    team_broker: ShippedBroker,
    nats_server: NatsServer,
    postgres: PostgreSQL,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`docker compose down`: both workers get SIGTERM at once. Held at the worst moment —
    both have let their partitions go and neither has asked yet whether another runs, their
    control sessions both still open — each must count the other out (it said it is
    stopping), so the partitions end offline, not `online` with nobody serving them."""
    both_asking = threading.Barrier(2)
    ask = Worker._offline_at_stop

    def held_together(self: Worker, released: list[int]) -> list[str]:
        both_asking.wait(60)
        return ask(self, released)

    monkeypatch.setattr(Worker, "_offline_at_stop", held_together)
    partitions = 2
    states = [f"redox/partition/{p}/state" for p in range(partitions)]
    watcher = _Watcher(team_broker, "redox/partition/#")
    config, options = _quiet_workers(team_broker, partitions)

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        await th.ensure_stream(nc.jetstream())
        await nc.close()
        workers = [
            Worker(w, nats_url=nats_server.url, dsn=postgres.dsn, config=config, options=options)
            for w in ("a", "b")
        ]
        tasks = [asyncio.create_task(w.run()) for w in workers]
        try:
            await eventually(
                lambda: (
                    sorted(_held(postgres.dsn).values()) == ["a", "b"]
                    and all(watcher.online(t) for t in states)
                ),
                120,
                "a and b with a partition each, online",
            )
        finally:
            for worker in workers:
                worker.stop()
            await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run(scenario())
        wait_until(
            lambda: all(_payloads(watcher, t)[-1:] == [b"offline"] for t in states),
            60,
            "both partitions offline",
        )
    finally:
        watcher.stop()


def test_the_last_worker_stopping_while_the_broker_restarts_still_says_offline(
    team_broker: ShippedBroker,
    nats_server: NatsServer,
    postgres: PostgreSQL,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker dies (SIGKILL: no Last Will sent — a stopped mosquitto sends its
    clients' — and its retained ``online`` states persisted); the last worker stops while
    its availability connection is reconnecting; the broker comes back while the worker is
    saying goodbye: the goodbye waits for it (bounded), so every partition and the worker
    itself end ``offline``, not ``online`` with nobody serving them."""
    asked = threading.Event()
    ask = Worker._offline_at_stop

    def asking(self: Worker, released: list[int]) -> list[str]:
        topics = ask(self, released)
        asked.set()  # the goodbye follows at once, the broker still down
        return topics

    monkeypatch.setattr(Worker, "_offline_at_stop", asking)
    partitions = 2
    states = [*(f"redox/partition/{p}/state" for p in range(partitions)), "redox/worker/a/state"]
    watcher = _Watcher(team_broker, "redox/partition/#", "redox/worker/#")
    config, options = _quiet_workers(team_broker, partitions)

    async def scenario() -> None:
        nc = await nats.connect(nats_server.url)
        await th.ensure_stream(nc.jetstream())
        await nc.close()
        worker = Worker("a", nats_url=nats_server.url, dsn=postgres.dsn, config=config,
                        options=options)  # fmt: skip
        task = asyncio.create_task(worker.run())
        try:
            await eventually(lambda: all(watcher.online(t) for t in states), 120, "all online")
            watcher.stop()
            await asyncio.to_thread(team_broker.server.kill)
            await eventually(lambda: not worker.mqtt_online.is_set(), 60, "the link down")
            worker.stop()
            await asyncio.to_thread(asked.wait, 60)
            await asyncio.to_thread(team_broker.server.start)
        finally:
            worker.stop()
            await asyncio.gather(task, return_exceptions=True)
        assert task.exception() is None

    asyncio.run(scenario())
    reader = _Watcher(team_broker, "redox/partition/#", "redox/worker/#")  # the retained
    try:
        wait_until(
            lambda: all(reader.last.get(t) == b"offline" for t in states),
            30,
            "every state offline, retained",
        )
    finally:
        reader.stop()
