"""A gateway that dies without a goodbye (SIGKILL) leaves no device ``connected`` for good:
a surviving gateway hears its Last Will (through the gateways' shared subscription) and
publishes ``stopped`` for the devices on the dead one's list, each ``seq`` above the last —
on the shipped broker files, ACL included; and a gateway alone, SIGKILLed and restarted
without those devices, says ``stopped`` for them itself. Real mosquitto, nats-server and
``redox-streamer gateway`` processes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamer.team.gateway_mqtt import DEATH_PROBLEM, decode_list
from tests.servers import Mosquitto, NatsServer
from tests.shipped_mosquitto import TEAM_CONF, ShippedBroker, start_shipped_mosquitto
from tests.team_helpers import GatewayProc, wait_until

nats = pytest.importorskip("nats")
mqtt = pytest.importorskip("paho.mqtt.client")

ANN = """\
[[athletes]]
id = "ann"
[[athletes.devices]]
kind = "strap"
address = "EE:00:00:00:01:01"
[[athletes.devices]]
kind = "smo2"
address = "EE:00:00:00:01:02"
"""
BOB = """\
[[athletes]]
id = "bob"
[[athletes.devices]]
kind = "strap"
address = "EE:00:00:00:02:01"
"""
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
