"""A gateway that dies without a goodbye (SIGKILL) leaves no device ``connected`` for good:
a surviving gateway hears its Last Will (each gateway subscribes to the others'
availability itself — not a shared subscription) and publishes ``stopped`` for the devices
on the dead one's list, each ``seq`` above the last — on the shipped broker files, ACL
included; and a gateway alone, SIGKILLed and restarted without those devices, says
``stopped`` for them itself. Real mosquitto, nats-server and ``redox-streamer gateway``
processes.

And a gateway that only reconnected is not said dead: mosquitto sends a client's Last Will
when the same client id connects again while it still holds the old connection (a link cut
on the gateway's side only, played by a TCP relay); the survivor's grace sees it ``online``
again, and a gateway whose list or availability another changed says them again. A clean-up
that met a broker error is tried again; the survivor's ``stopped`` goes above the dead
gateway's listed ``seq`` whatever the clocks, and is not the survivor's own last word.
Gateways in-process (:class:`GatewayCommands`) on a real mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from devices.drivers.base import DriverStatus
from devices.kinds import DeviceKind
from streamer.app.device_state import DriverLike, device_state
from streamer.config import MqttConfig
from streamer.payloads import encode_payload
from streamer.team.gateway_mqtt import (
    DEATH_PROBLEM,
    ONLINE,
    GatewayCommands,
    Listed,
    decode_list,
    encode_list,
)
from tests.mqtt_helpers import CancelAtAnswer, eventually
from tests.servers import HOST, Mosquitto, NatsServer
from tests.shipped_mosquitto import TEAM_CONF, ShippedBroker, start_shipped_mosquitto
from tests.team_helpers import ANN, BOB, GatewayProc, wait_until

nats = pytest.importorskip("nats")
mqtt = pytest.importorskip("paho.mqtt.client")

ANN_STATES = ("redox/ann/strap/state", "redox/ann/smo2/state")
BOB_STATE = "redox/bob/strap/state"


def _config(directory: Path, athletes: str, mqtt_section: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "redox.toml"
    path.write_text(f'[store]\npath = "{directory / "store.sqlite"}"\n\n{athletes}\n{mqtt_section}')
    return path


class _Watcher:
    """A subscriber to ``redox/#`` (a thread of paho's): every message in order, with its
    retain flag."""

    def __init__(self, host: str, port: int, user: str | None, password: str | None) -> None:
        self.seen: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-death")
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(host, port)
        self.client.subscribe("redox/#", 1)
        self.client.loop_start()
        assert subscribed.wait(30), "the watcher's subscription"

    def _on_message(self, _c: object, _u: object, msg: Any) -> None:
        with self._lock:
            self.seen.append((msg.topic, msg.payload, bool(msg.retain)))

    def states(self, topic: str) -> list[dict[str, object]]:
        """The JSON state messages on ``topic``, in order."""
        with self._lock:
            return [json.loads(p) for t, p, _ in self.seen if t == topic and p]

    def last(self, topic: str) -> bytes | None:
        with self._lock:
            found = [p for t, p, _ in self.seen if t == topic]
        return found[-1] if found else None

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _connected(watcher: _Watcher, topic: str) -> bool:
    states = watcher.states(topic)
    return bool(states) and states[-1]["connected"] is True


def _assert_stopped_after_connected(watcher: _Watcher, topic: str, dead: str) -> None:
    """The last state on ``topic`` is a ``stopped`` naming the dead gateway, and every
    message's ``seq`` rose: a consumer following docs/topics.md keeps it."""
    states = watcher.states(topic)
    seqs = [int(s["seq"]) for s in states]  # type: ignore[call-overload]
    assert seqs == sorted(set(seqs)), f"{topic}: seq not strictly rising: {seqs}"
    assert any(s["connected"] is True for s in states)
    last = states[-1]
    assert (last["connected"], last["connection"]) == (False, "stopped")
    assert last["problem"] == DEATH_PROBLEM.format(gateway=dead)


@pytest.fixture
def team_broker(tmp_path: Path) -> Iterator[ShippedBroker]:
    broker = start_shipped_mosquitto(tmp_path / "team-mosquitto", TEAM_CONF)
    try:
        yield broker
    finally:
        broker.server.stop()


def test_a_survivor_says_stopped_for_a_sigkilled_gateways_devices(
    tmp_path: Path, team_broker: ShippedBroker, nats_server: NatsServer
) -> None:
    """gw1 holds ann's strap and SmO2, gw2 bob's strap (each file names one athlete: no
    other gateway will take ann's devices). gw1 SIGKILLed: its Last Will reaches gw2, which
    publishes ``stopped`` for both of ann's devices — retained, a ``seq`` above gw1's last,
    the dead gateway named — and clears gw1's list; bob's state is untouched. As the
    shipped ``redox-gateway`` account: the ACL lets it."""
    user = "redox-gateway"
    section = (
        f'[mqtt]\nurl = "mqtt://{team_broker.host}:{team_broker.port}"\n'
        f'username = "{user}"\npassword = "{team_broker.password(user)}"\n'
    )
    watcher = _Watcher(
        team_broker.host, team_broker.port, "homeassistant", team_broker.password("homeassistant")
    )
    gw1 = GatewayProc(tmp_path / "gw1", "gw1", [nats_server.url],
                      _config(tmp_path / "gw1", ANN, section))  # fmt: skip
    gw2 = GatewayProc(tmp_path / "gw2", "gw2", [nats_server.url],
                      _config(tmp_path / "gw2", BOB, section))  # fmt: skip
    try:
        gw1.start()
        gw2.start()
        wait_until(
            lambda: all(_connected(watcher, t) for t in (*ANN_STATES, BOB_STATE)),
            120,
            "ann's devices connected at gw1, bob's at gw2",
        )
        wait_until(
            lambda: len(decode_list(watcher.last("redox/gateway/gw1/devices") or b"")[1]) == 2,
            60,
            "gw1's list naming ann's two devices",
        )
        bob_before = len(watcher.states(BOB_STATE))
        gw1.kill()
        wait_until(
            lambda: all(watcher.states(t)[-1]["connection"] == "stopped" for t in ANN_STATES),
            60,
            "ann's devices stopped by the survivor",
        )
        wait_until(
            lambda: watcher.last("redox/gateway/gw1/devices") == b"", 30, "gw1's list cleared"
        )
        assert watcher.last("redox/gateway/gw1/state") == b"offline"
        assert all(s["connected"] is True for s in watcher.states(BOB_STATE)[bob_before:])
    finally:
        gw1.ensure_dead()
        gw2.ensure_dead()
        watcher.stop()
    for topic in ANN_STATES:
        _assert_stopped_after_connected(watcher, topic, "gw1")
    # A reader arriving later gets the retained stopped, not a stale connected.
    late = _Watcher(
        team_broker.host, team_broker.port, "homeassistant", team_broker.password("homeassistant")
    )
    try:
        wait_until(lambda: all(late.states(t) for t in ANN_STATES), 30, "the retained states")
        assert all(late.states(t)[-1]["connection"] == "stopped" for t in ANN_STATES)
        assert late.last("redox/gateway/gw1/devices") is None, "no list retained for gw1"
    finally:
        late.stop()


def test_a_gateway_alone_sigkilled_says_stopped_for_the_devices_it_no_longer_gets(
    tmp_path: Path, mosquitto: Mosquitto, nats_server: NatsServer
) -> None:
    """No other gateway: gw1's Last Will changes nothing (ann's states stay ``connected``)
    until gw1 returns — restarted with a file that no longer names ann, it reads its
    earlier boot's list and publishes ``stopped`` for ann's devices (above the last
    ``seq``), then a list naming only what it holds now."""
    section = f'[mqtt]\nurl = "{mosquitto.url}"\n'
    watcher = _Watcher("127.0.0.1", mosquitto.port, None, None)
    first = GatewayProc(tmp_path / "a", "gw1", [nats_server.url],
                        _config(tmp_path / "a", ANN, section))  # fmt: skip
    again = GatewayProc(tmp_path / "a", "gw1", [nats_server.url],
                        _config(tmp_path / "b", BOB, section))  # fmt: skip
    try:
        first.start()
        wait_until(
            lambda: all(_connected(watcher, t) for t in ANN_STATES), 120, "ann's devices connected"
        )
        wait_until(
            lambda: len(decode_list(watcher.last("redox/gateway/gw1/devices") or b"")[1]) == 2,
            60,
            "gw1's list naming ann's two devices",
        )
        first.kill()
        wait_until(
            lambda: watcher.last("redox/gateway/gw1/state") == b"offline", 60, "gw1's Last Will"
        )
        assert all(_connected(watcher, t) for t in ANN_STATES), "nobody else to say otherwise"
        again.start()
        wait_until(
            lambda: all(watcher.states(t)[-1]["connection"] == "stopped" for t in ANN_STATES),
            120,
            "ann's devices stopped by the restarted gateway",
        )
        wait_until(lambda: _connected(watcher, BOB_STATE), 120, "bob's strap at gw1 now")
        wait_until(
            lambda: (
                [
                    (x.athlete, x.device)
                    for x in decode_list(watcher.last("redox/gateway/gw1/devices") or b"")[1]
                ]
                == [("bob", "strap")]
            ),
            60,
            "gw1's list naming what it holds now",
        )
    finally:
        first.ensure_dead()
        again.ensure_dead()
        watcher.stop()
    for topic in ANN_STATES:
        states = watcher.states(topic)
        seqs = [int(s["seq"]) for s in states]  # type: ignore[call-overload]
        assert seqs == sorted(set(seqs)), f"{topic}: seq not strictly rising: {seqs}"
        assert (states[-1]["connected"], states[-1]["connection"]) == (False, "stopped")


# --- in-process gateways: a reconnection taken for a death, the clean-up's errors ---------

ANN_STRAP = "redox/ann/strap/state"
GW2_STATE = "redox/gateway/gw2/state"
GW2_LIST = "redox/gateway/gw2/devices"


class _Relay:
    """A TCP relay to the broker on a free loopback port, in the test's event loop. ``cut``
    ends every connection relayed so far on the client's side — and with ``broker_side``
    on the broker's too; without, the broker's side stays open and unread, as after a link
    that died between a gateway and its access point (the broker still holds it)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._live: list[
            tuple[asyncio.StreamWriter, asyncio.StreamWriter, list[asyncio.Task[None]]]
        ] = []
        self._held: list[asyncio.StreamWriter] = []  # broker sides left open by a cut

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._live.append((writer, up_writer, pumps))

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    def cut(self, *, broker_side: bool) -> None:
        for client_side, broker, pumps in self._live:
            for pump in pumps:
                pump.cancel()
            client_side.transport.abort()
            if broker_side:
                broker.transport.abort()
            else:
                self._held.append(broker)
        self._live.clear()

    async def close(self) -> None:
        self.cut(broker_side=True)
        for broker in self._held:
            broker.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class _Driver:
    """A connected strap, as a driver's status reads."""

    def __init__(self) -> None:
        self.status = DriverStatus(
            name="strap", address="EE:00:00:00:01:01", kind=DeviceKind.STRAP, running=True,
            connected=True, connects=1, reconnects=0, failed_connects=0, gaps=0, stale=0,
            malformed=0, dropped=0, records=10, last_seen_ns=time.time_ns(), last_error=None,
        )  # fmt: skip


class _Held:
    """The gateway side :class:`GatewayCommands` reads: fixed held devices, no leases."""

    def __init__(self, held: dict[str, list[tuple[str, DriverLike]]]) -> None:
        self.held = held

    def held_drivers(self) -> dict[str, list[tuple[str, DriverLike]]]:
        return self.held

    def battery_of(self, athlete: str, device_id: str) -> int | None:
        return 80

    async def held_elsewhere(self, athlete: str, device_id: str) -> bool:
        return False


GRACE_S = 2.0
"""The survivors' grace here (the shipped default)."""


def _gateway(
    url: str, gateway_id: str, *, holds: bool, grace_s: float = GRACE_S, **options: Any
) -> GatewayCommands:
    """An in-process gateway on ``url``; ``holds``: ann's strap (else nothing)."""
    config = MqttConfig.from_url(url, **options)
    held: dict[str, list[tuple[str, DriverLike]]] = {"ann": [("strap", _Driver())]} if holds else {}
    return GatewayCommands(
        config,
        gateway_id,
        ["ann"] if holds else ["bob"],
        lambda *_: True,
        clock_ns=time.time_ns,
        devices=_Held(held),
        death_grace_s=grace_s,
    )


def _listed(watcher: _Watcher, topic: str) -> list[tuple[str, str]]:
    return [(x.athlete, x.device) for x in decode_list(watcher.last(topic) or b"")[1]]


def _raw(watcher: _Watcher, topic: str) -> list[bytes]:
    with watcher._lock:
        return [p for t, p, _ in watcher.seen if t == topic]


@pytest.fixture
async def relay(mosquitto: Mosquitto) -> AsyncIterator[_Relay]:
    relay = _Relay(mosquitto.port)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.close()


async def _running(*gateways: GatewayCommands) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(g.run()) for g in gateways]
    for gateway in gateways:
        await eventually(gateway.subscribed.is_set, 30, f"{gateway.gateway_id} subscribed")
    return tasks


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_gateway_reconnecting_while_the_broker_holds_its_old_connection_is_not_said_dead(
    mosquitto: Mosquitto, relay: _Relay
) -> None:
    """gw2 holds ann's strap through a relay; the relay cuts gw2's side only, so gw2
    reconnects while mosquitto holds its old connection — and sends gw2's Last Will then.
    gw1 (the survivor) waits its grace, finds gw2 ``online`` again and says nothing: no
    ``stopped`` for ann's strap, gw2's list still retained naming it."""
    watcher = _Watcher(HOST, mosquitto.port, None, None)
    gw1 = _gateway(mosquitto.url, "gw1", holds=False)
    gw2 = _gateway(f"mqtt://{HOST}:{relay.port}", "gw2", holds=True)
    tasks = await _running(gw1, gw2)
    try:
        await eventually(lambda: _listed(watcher, GW2_LIST) == [("ann", "strap")], 30, "gw2's list")
        await eventually(lambda: gw1._states.get("gw2") == ONLINE, 30, "gw2 online at gw1")
        relay.cut(broker_side=False)
        await eventually(lambda: gw2.sessions >= 2, 60, "gw2 reconnected")
        await eventually(lambda: gw1.deaths_called_off >= 1, 60, "gw1's grace over")
        await eventually(lambda: _raw(watcher, GW2_STATE)[-1:] == [b"online"], 30, "gw2 online")
        # (before the stop: a clean stop says the held strap `stopped` itself)
        assert b"offline" in _raw(watcher, GW2_STATE), "mosquitto sent gw2's Will at the takeover"
        states = [s["connection"] for s in watcher.states(ANN_STRAP)]
        assert states == ["connected"] * len(states), states
        assert gw1.deaths_cleaned == 0
        assert b"" not in _raw(watcher, GW2_LIST), "gw2's list never cleared"
    finally:
        await _stop(tasks)
        watcher.stop()


async def test_a_gateway_taken_for_dead_says_its_availability_list_and_states_again(
    mosquitto: Mosquitto,
) -> None:
    """What a survivor does when the grace was not enough — ``offline`` on gw2's state,
    ``stopped`` on its strap, its list cleared — is undone by gw2 at once: ``online``, its
    list and a ``connected`` state with a higher ``seq`` retained again."""
    watcher = _Watcher(HOST, mosquitto.port, None, None)
    gw2 = _gateway(mosquitto.url, "gw2", holds=True)
    tasks = await _running(gw2)
    other = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-survivor")
    try:
        await eventually(lambda: _listed(watcher, GW2_LIST) == [("ann", "strap")], 30, "gw2's list")
        await eventually(lambda: watcher.states(ANN_STRAP), 30, "ann's strap's state")
        state = watcher.states(ANN_STRAP)[-1]
        stopped_seq = time.time_ns() // 1000
        stopped = state | {
            "connected": False, "connection": "stopped", "seq": stopped_seq,
            "problem": DEATH_PROBLEM.format(gateway="gw2"),
        }  # fmt: skip
        other.connect(HOST, mosquitto.port)
        other.loop_start()
        for topic, payload in (
            (GW2_STATE, b"offline"),
            (ANN_STRAP, json.dumps(stopped).encode()),
            (GW2_LIST, b""),
        ):
            other.publish(topic, payload, qos=1, retain=True).wait_for_publish(30)
        await eventually(lambda: gw2.reasserted >= 1, 30, "gw2 saying it all again")
        await eventually(
            lambda: (
                _raw(watcher, GW2_STATE)[-1:] == [b"online"]
                and _listed(watcher, GW2_LIST) == [("ann", "strap")]
                and watcher.states(ANN_STRAP)[-1]["connection"] == "connected"
            ),
            30,
            "gw2 online, listed and connected again",
        )
        assert int(watcher.states(ANN_STRAP)[-1]["seq"]) > stopped_seq  # type: ignore[call-overload]
    finally:
        other.loop_stop()
        other.disconnect()
        await _stop(tasks)
        watcher.stop()


async def _dead_gateway(watcher: _Watcher, relay: _Relay, listed_seq: int) -> Any:
    """A gateway "gw2" (a paho client through ``relay``, with its Last Will) holding ann's
    strap: ``online``, the strap ``connected`` and its list retained with ``listed_seq``."""
    status = _Driver().status
    state = device_state(status, "strap", 80, stopped=False)
    fake = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="redox-gateway-gw2")
    fake.will_set(GW2_STATE, b"offline", 1, True)
    await asyncio.to_thread(fake.connect, HOST, relay.port)
    fake.loop_start()
    result = state.result("ann", time.time_ns(), "strap")
    for topic, payload in (
        (GW2_STATE, b"online"),
        (ANN_STRAP, encode_payload(result, listed_seq)),
        (GW2_LIST, encode_list("b0", [Listed("ann", "strap", ANN_STRAP, state, listed_seq)])),
    ):
        info = fake.publish(topic, payload, qos=1, retain=True)
        await asyncio.to_thread(info.wait_for_publish, 30)
    await eventually(lambda: _listed(watcher, GW2_LIST) == [("ann", "strap")], 30, "gw2's list")
    return fake


async def test_the_survivors_stopped_goes_above_the_listed_seq_and_is_not_its_own_word(
    mosquitto: Mosquitto, relay: _Relay
) -> None:
    """gw2's clock ran 60 s ahead of gw1's: its list names the strap's last ``seq`` that
    far up. Cut off for good, its Will reaches gw1, whose ``stopped`` goes above that
    ``seq`` (a consumer keeps it) — and is not kept as gw1's own last word (it never held
    the strap: a reconnect or restart of gw1 must not publish it again)."""
    watcher = _Watcher(HOST, mosquitto.port, None, None)
    gw1 = _gateway(mosquitto.url, "gw1", holds=False)
    tasks = await _running(gw1)
    listed_seq = time.time_ns() // 1000 + 60_000_000
    fake = await _dead_gateway(watcher, relay, listed_seq)
    try:
        await eventually(lambda: gw1._states.get("gw2") == ONLINE, 30, "gw2 online at gw1")
        fake.loop_stop()
        relay.cut(broker_side=True)
        await eventually(lambda: watcher.last(GW2_LIST) == b"", 60, "gw2's list cleared")
    finally:
        await _stop(tasks)
        watcher.stop()
    last = watcher.states(ANN_STRAP)[-1]
    assert (last["connection"], last["problem"]) == ("stopped", DEATH_PROBLEM.format(gateway="gw2"))
    assert int(last["seq"]) > listed_seq  # type: ignore[call-overload]
    assert ("ann", "strap") not in gw1._words.words


async def test_a_clean_up_that_met_a_broker_error_is_tried_again(
    mosquitto: Mosquitto, relay: _Relay
) -> None:
    """The broker held (SIGSTOP) while gw1 says a dead gateway's strap ``stopped``: the
    publish times out, the list is kept, and once the broker runs again the next round
    says it and clears the list."""
    assert mosquitto.proc is not None
    watcher = _Watcher(HOST, mosquitto.port, None, None)
    gw1 = _gateway(mosquitto.url, "gw1", holds=False, publish_timeout_s=1.0)
    tasks = await _running(gw1)
    fake = await _dead_gateway(watcher, relay, time.time_ns() // 1000)
    held = False
    try:
        await eventually(lambda: gw1._states.get("gw2") == ONLINE, 30, "gw2 online at gw1")
        fake.loop_stop()
        relay.cut(broker_side=True)
        await eventually(lambda: "gw2" in gw1._after_deaths, 30, "gw1's clean-up started")
        os.kill(mosquitto.proc.pid, signal.SIGSTOP)  # within its grace (GRACE_S)
        held = True
        await eventually(lambda: gw1.cleanups_failed >= 1, 60, "the clean-up's publish failed")
        os.kill(mosquitto.proc.pid, signal.SIGCONT)
        held = False
        await eventually(lambda: watcher.last(GW2_LIST) == b"", 60, "gw2's list cleared")
    finally:
        if held:
            os.kill(mosquitto.proc.pid, signal.SIGCONT)
        await _stop(tasks)
        watcher.stop()
    assert watcher.states(ANN_STRAP)[-1]["connection"] == "stopped"
    assert gw1.deaths_cleaned >= 1


async def test_a_failed_device_states_round_ends_the_session(mosquitto: Mosquitto) -> None:
    """A device-state publish that times out (the broker held) ends gw2's session: it
    reconnects once the broker runs again, rather than going on without states."""
    assert mosquitto.proc is not None
    gw2 = _gateway(mosquitto.url, "gw2", holds=True, publish_timeout_s=1.0)
    tasks = await _running(gw2)
    held = False
    try:
        await eventually(lambda: gw2.device_states_published >= 1, 30, "gw2's states")
        os.kill(mosquitto.proc.pid, signal.SIGSTOP)
        held = True
        gw2._mark_reassert("the test")  # a round that publishes at once
        await eventually(lambda: not gw2.subscribed.is_set(), 30, "gw2's session ended")
        os.kill(mosquitto.proc.pid, signal.SIGCONT)
        held = False
        await eventually(lambda: gw2.sessions >= 2, 30, "gw2's next session")
    finally:
        if held:
            os.kill(mosquitto.proc.pid, signal.SIGCONT)
        await _stop(tasks)


@pytest.mark.parametrize(
    ("answer", "nth", "topic"),
    [
        ("connect", 1, None),
        ("subscribe", 1, None),
        ("subscribe", 3, None),
        ("puback", 1, "redox/gateway/gw1/state"),  # awaited by run() itself
        ("puback", 1, "redox/gateway/gw1/devices"),  # by the device-states task
        ("puback", 1, "redox/ann/strap/state"),  # by the device-states task
    ],
)
async def test_the_gateway_cancelled_as_the_broker_answers_stops(
    mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch, answer: str, nth: int, topic: str | None
) -> None:
    """A gateway stopped (its ``run`` task cancelled) just as CONNACK, a SUBACK or a PUBACK
    arrives ends: aiomqtt waits with ``asyncio.wait_for``, which on Python 3.11 returns the
    answer and drops a cancellation arriving with it — and a PUBACK for the device-states
    task is the moment the session cancels that task in turn."""
    from streamer.team import gateway_mqtt

    hook = CancelAtAnswer(gateway_mqtt.mqtt_client, answer, nth, topic)
    monkeypatch.setattr(gateway_mqtt, "mqtt_client", hook)
    hook.task = asyncio.create_task(_gateway(mosquitto.url, "gw1", holds=True).run())
    await hook.assert_stops()
