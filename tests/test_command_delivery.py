"""Commands to a running ``run`` are neither lost, late nor applied twice, and the CLI never
trusts a stale ``online``: against real mosquittos (a plain one, and the shipped config
with its accounts and ``use_username_as_clientid``).

* A command the broker acknowledged while ``run``'s connection was down (the connection cut
  by ``run``, the broker restarted with persistence in the gap) is applied once when ``run``
  is back: ``run``'s session is persistent, the broker queued it.
* A command older than ``COMMAND_TTL_S`` is not applied; a copy of one already applied (what
  a broker resends when a PUBACK was lost) is dropped as a repeat; under MQTT 5 the CLI's
  command carries the message expiry interval, and an expired one never leaves the broker.
* The real ``run`` frozen (SIGSTOP) while the broker crashes and restarts: an ``rpe`` sent
  then amends the stored session once ``run`` is back.
* ``run`` killed (SIGKILL: no goodbye, only its Last Will on ``bridge/state``), then
  ``morning`` connected on the same base: ``rpe`` works offline against the store and says
  so instead of sending into the void.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from streamer import cli
from streamer.app.commands_in import (
    COMMAND_TTL_S,
    RPE,
    CommandListener,
    envelope,
    unwrap,
)
from streamer.athlete import AthleteState, SessionEnd, SessionRpe, SessionStart
from streamer.commands.session import send_if_listening
from streamer.config import MqttConfig, Secret
from streamer.sinks.backoff import Backoff
from streamer.sinks.mqtt import MqttPublisher
from streamer.store import Store
from tests.mqtt_helpers import Subscriber, eventually
from tests.servers import HOST, Mosquitto
from tests.shipped_mosquitto import ShippedBroker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
FAST = Backoff(0.1, 0.5)


# --- the envelope and the listener's checks (no broker) ----------------------------------


class Clock:
    """A wall clock the test moves (s since the epoch)."""

    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def _listener(clock: Clock) -> tuple[CommandListener, list[object]]:
    offered: list[object] = []

    def offer(athlete: str, device: str, marker: object) -> bool:
        offered.append(marker)
        return True

    listener = CommandListener(
        MqttConfig(host=HOST), ["ann"], offer, clock_ns=lambda: 10**18, wall_s=clock
    )
    return listener, offered


def test_an_enveloped_command_is_applied_once_and_never_after_its_ttl() -> None:
    clock = Clock(1_790_000_000.0)
    listener, offered = _listener(clock)
    sent = envelope(b"7", sent_s=clock.now_s)
    assert unwrap(sent).payload == b"7"
    assert listener.handle("redox/ann/set/rpe", sent)
    assert not listener.handle("redox/ann/set/rpe", sent)  # the broker's resend
    assert (listener.accepted, listener.repeats) == (1, 1)
    assert offered == [SessionRpe(10**18, 7.0)]
    # Within its TTL (the CLI's clock may also run a little ahead): applied.
    clock.now_s += COMMAND_TTL_S
    assert listener.handle("redox/ann/set/rpe", envelope(b"6", sent_s=clock.now_s - COMMAND_TTL_S))
    assert listener.handle("redox/ann/set/rpe", envelope(b"5", sent_s=clock.now_s + 30))
    # Older: dropped, once said.
    late = envelope(b"4", sent_s=clock.now_s - COMMAND_TTL_S - 1)
    assert not listener.handle("redox/ann/set/rpe", late)
    assert listener.rejected == 1
    assert len(offered) == 3
    # A command's own JSON and bare payloads (Home Assistant's) pass as they are.
    assert listener.handle("redox/ann/set/session", b'{"action":"start","tags":["z2"]}')
    ended = envelope(b'{"action":"end","rpe":6}', sent_s=clock.now_s)
    assert listener.handle("redox/ann/set/session", ended)
    assert offered[3:] == [SessionStart(10**18, ("z2",)), SessionEnd(10**18, 6.0)]


def test_ids_are_forgotten_after_their_time_so_memory_stays_bounded() -> None:
    clock = Clock(1_790_000_000.0)
    listener, _offered = _listener(clock)
    for i in range(5):
        assert listener.handle(
            "redox/ann/set/rpe", envelope(b"5", sent_s=clock.now_s, command_id=f"c{i}")
        )
    clock.now_s += 7200
    # A new command after two hours: every older id is forgotten by then.
    assert listener.handle("redox/ann/set/rpe", envelope(b"5", sent_s=clock.now_s))
    assert len(listener._seen) == 1


def test_a_bad_envelope_is_refused_naming_the_field() -> None:
    listener, offered = _listener(Clock(1_790_000_000.0))
    assert not listener.handle("redox/ann/set/rpe", b'{"id": 5, "command": "7"}')
    assert not listener.handle("redox/ann/set/rpe", b'{"id": "x", "command": "7", "sent": "no"}')
    assert listener.rejected == 2
    assert offered == []


# --- against a real broker -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def _running(publisher: MqttPublisher) -> AsyncIterator[None]:
    task = asyncio.create_task(publisher.run())
    try:
        yield
    finally:
        task.cancel()  # a clean DISCONNECT: no Last Will, the session stays on the broker
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture(params=["plain", "shipped"])
def broker(request: pytest.FixtureRequest) -> Iterator[tuple[str, Mosquitto]]:
    name = request.param
    if name == "plain":
        yield name, request.getfixturevalue("mosquitto")
    else:
        shipped: ShippedBroker = request.getfixturevalue("shipped_mosquitto")
        yield name, shipped.server


def _mqtt(kind: str, server: Mosquitto, protocol: str) -> MqttConfig:
    if kind == "plain":
        return MqttConfig(
            host=HOST,
            port=server.port,
            publish_timeout_s=2.0,
            client_id="redox-test",
            protocol=protocol,  # type: ignore[arg-type]
        )
    return MqttConfig(
        host=HOST,
        port=server.port,
        username="redox-streamer",
        password=Secret(ShippedBroker.password("redox-streamer")),
        cli_username="redox-cli",
        cli_password=Secret(ShippedBroker.password("redox-cli")),
        publish_timeout_s=2.0,
        protocol=protocol,  # type: ignore[arg-type]
    )


async def _raw_publish(
    cli: MqttConfig, topic: str, payloads: list[tuple[bytes, int | None]]
) -> None:
    """Publish as the CLI's account with MQTT 5, each payload with its expiry (s) if given."""
    async with aiomqtt.Client(
        HOST,
        cli.port,
        username=cli.username,
        password=cli.password.reveal() if cli.password else None,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=5,
    ) as client:
        for payload, expiry_s in payloads:
            props = None
            if expiry_s is not None:
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.MessageExpiryInterval = expiry_s
            await client.publish(topic, payload, qos=1, properties=props)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_commands_sent_while_run_is_away_are_applied_once_when_it_is_back(
    broker: tuple[str, Mosquitto], protocol: str, tmp_path: Path
) -> None:
    kind, server = broker
    config = _mqtt(kind, server, protocol)
    cli_account = config.for_cli()
    applied: list[float | None] = []

    def offer(athlete: str, device: str, marker: object) -> bool:
        assert isinstance(marker, SessionRpe)
        applied.append(marker.rpe)
        return True

    listener = CommandListener(config, ["ann"], offer)
    topic = "redox/ann/set/rpe"
    with Store(tmp_path / "store.sqlite3") as store:
        publisher = MqttPublisher(config, store, backoff=FAST)
        publisher.listen(listener)
        async with _running(publisher):
            await asyncio.wait_for(listener.subscribed.wait(), 10)
            assert await send_if_listening(config, "ann", RPE, b"6")
            await eventually(lambda: applied == [6.0], what="the live command")
        # The connection is down (cut by run itself: e.g. a publish timeout), bridge/state
        # still online: the CLI's command is acknowledged by the broker and queued.
        assert not publisher.connected
        assert await send_if_listening(config, "ann", RPE, b"7")
        server.restart()  # SIGTERM: the broker saves its sessions, then comes back
        assert await send_if_listening(config, "ann", RPE, b"7.5")
        # One sent long ago (a sender whose clock says so), and one that a broker resends
        # after a lost PUBACK: applied never, and once.
        repeat = envelope(b"9")
        stale = envelope(b"8", sent_s=time.time() - COMMAND_TTL_S - 60)
        payloads: list[tuple[bytes, int | None]] = [(stale, None), (repeat, None), (repeat, None)]
        if protocol == "5":
            # Expires in the broker's queue before run is back: never delivered at all.
            payloads.insert(0, (envelope(b"1"), 1))
        await _raw_publish(cli_account, topic, payloads)
        if protocol == "5":
            await asyncio.sleep(2.1)  # past that expiry (mosquitto counts whole seconds)
        async with _running(publisher):
            await eventually(
                lambda: listener.accepted + listener.rejected + listener.repeats >= 6,
                timeout_s=30,
                what="the queued commands",
            )
            assert applied == [6.0, 7.0, 7.5, 9.0]
            assert (listener.rejected, listener.repeats) == (1, 1)  # the stale one; the copy
    assert publisher.status()["connects"] == 2


async def test_the_cli_sets_the_message_expiry_under_mqtt_5(mosquitto: Mosquitto) -> None:
    config = MqttConfig(host=HOST, port=mosquitto.port, protocol="5", client_id="redox-test")
    seen: list[aiomqtt.Message] = []
    async with aiomqtt.Client(
        HOST, mosquitto.port, protocol=aiomqtt.ProtocolVersion.V5, timeout=5
    ) as watcher:
        await watcher.subscribe("redox/#", qos=1)
        # A stand-in for a listening run: the retained states it would leave.
        await watcher.publish("redox/bridge/state", b"online", qos=1, retain=True)
        await watcher.publish("redox/bridge/commands", b"online", qos=1, retain=True)
        assert await send_if_listening(config, "ann", RPE, b"7")
        async with asyncio.timeout(10):
            async for message in watcher.messages:
                if str(message.topic) == "redox/ann/set/rpe":
                    seen.append(message)
                    break
    (command,) = seen
    assert command.properties is not None
    expiry_s = command.properties.MessageExpiryInterval  # type: ignore[attr-defined]
    assert 0 < expiry_s <= COMMAND_TTL_S
    assert isinstance(command.payload, bytes)
    data = json.loads(command.payload)
    assert data["command"] == "7"
    assert len(data["id"]) == 16
    assert data["sent"] <= time.time()


# --- stale "online" after a killed run ------------------------------------------------------

STRAP = '[[athletes.devices]]\nid = "strap"\nkind = "strap"\naddress = "C0:00:00:00:43:01"\n'
T0_NS = 1_790_000_000 * 10**9


def _stored_session(path: Path) -> None:
    """A finished session of ann in the store at ``path``, with no RPE yet."""
    with Store(path) as store:
        state = AthleteState("ann", store, live=False)
        for marker in (SessionStart(T0_NS, ()), SessionEnd(T0_NS + 600 * 10**9, None)):
            for result in state.process("command", marker):
                store.record(result)


async def _streamer(*argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "streamer.cli", *argv),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_after_run_is_killed_a_morning_on_the_same_base_makes_rpe_work_offline(
    mosquitto: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store.sqlite3"
    _stored_session(store)
    config = tmp_path / "redox.toml"
    config.write_text(
        f'[store]\npath = "{store}"\n[mqtt]\nurl = "{mosquitto.url}"\n'
        '[[athletes]]\nid = "ann"\nname = "Ann"\n' + STRAP
    )
    watcher = await Subscriber(HOST, mosquitto.port, topic="redox/bridge/#").start()
    try:
        run = await _streamer(
            *("run", "--config", str(config), "--emulated", "--plain", "--duration", "600")
        )
        try:
            await watcher.wait_for(
                lambda: (
                    [m.payload for m in watcher.on("redox/bridge/commands")][-1:] == [b"online"]
                ),
                what="run listening for commands",
                timeout_s=60,
            )
        finally:
            run.kill()  # SIGKILL: no goodbye; the broker says its Last Will on bridge/state
            await run.wait()
        await watcher.wait_for(
            lambda: [m.payload for m in watcher.on("redox/bridge/state")][-1:] == [b"offline"],
            what="run's Last Will",
        )
        seen = len(watcher.received)
        # Another streamer on the same base (here `morning`, on a store of its own) says
        # bridge/state online again; it does not listen for commands.
        morning = await _streamer(
            *("morning", "--config", str(config), "--store", str(tmp_path / "morning.sqlite3")),
            *("--emulated", "--speed", "1"),
        )
        try:
            await watcher.wait_for(
                lambda: (
                    any(
                        (m.topic, m.payload) == ("redox/bridge/state", b"online")
                        for m in watcher.received[seen:]
                    )
                    and any(m.topic == "redox/bridge/commands" for m in watcher.received[seen:])
                ),
                what="morning connected",
                timeout_s=60,
            )
            assert [m.payload for m in watcher.on("redox/bridge/commands")][-1] == b""
            capsys.readouterr()
            rc = await asyncio.to_thread(
                cli.main, ["rpe", "7", "--athlete", "ann", "--config", str(config)]
            )
            out = capsys.readouterr().out
            assert rc == 0, out
            assert "offline" in out
            assert "sent to the running" not in out
        finally:
            await _stop(morning)
    finally:
        await watcher.stop()
    with Store(store, read_only=True) as kept:
        assert [row.payload.rpe for row in kept.sessions("ann")] == [7.0]


async def test_a_command_sent_while_run_is_frozen_and_the_broker_crashed_is_applied_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real ``run``: frozen (SIGSTOP) while the broker crashes and comes back — so no Will
    is said and its connection is gone — an RPE sent then waits in its session and amends the
    stored session once ``run`` runs again (SIGCONT) and reconnects."""
    # Saved on every change, as the shipped config does: a crash loses no session or state.
    mosquitto = Mosquitto(tmp_path / "broker", extra_config="autosave_on_changes true\n")
    mosquitto.start()
    try:
        await _frozen_run_gets_the_command(mosquitto, tmp_path, capsys)
    finally:
        mosquitto.stop()


async def _frozen_run_gets_the_command(
    mosquitto: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store.sqlite3"
    _stored_session(store)
    config = tmp_path / "redox.toml"
    config.write_text(
        f'[store]\npath = "{store}"\n[mqtt]\nurl = "{mosquitto.url}"\nprotocol = "5"\n'
        '[[athletes]]\nid = "ann"\nname = "Ann"\n' + STRAP
    )
    watcher = await Subscriber(HOST, mosquitto.port, topic="redox/#").start()

    def rpe_summaries() -> list[dict[str, object]]:
        out = []
        for m in watcher.received:
            if m.topic.startswith("redox/ann/") and m.payload.startswith(b"{"):
                data = m.json()
                if data.get("scope") == "session" and data.get("rpe") is not None:
                    out.append(data)
        return out

    run = await _streamer(
        *("run", "--config", str(config), "--emulated", "--plain", "--duration", "600")
    )
    try:
        await watcher.wait_for(
            lambda: [m.payload for m in watcher.on("redox/bridge/commands")][-1:] == [b"online"],
            what="run listening for commands",
            timeout_s=60,
        )
        run.send_signal(signal.SIGSTOP)
        mosquitto.kill()  # a crash: no Will; the sessions as last saved (every second)
        mosquitto.start()
        capsys.readouterr()
        rc = await asyncio.to_thread(
            cli.main, ["rpe", "7", "--athlete", "ann", "--config", str(config)]
        )
        assert rc == 0
        assert "sent to the running `run`" in capsys.readouterr().out
        run.send_signal(signal.SIGCONT)
        await watcher.wait_for(
            lambda: bool(rpe_summaries()), what="the session amended by run", timeout_s=60
        )
    finally:
        run.send_signal(signal.SIGCONT)
        await _stop(run)
    await watcher.stop()
    assert [s["rpe"] for s in rpe_summaries()] == [7]
