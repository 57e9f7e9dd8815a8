"""Cancelling ``MqttPublisher.run()`` at any moment stops it, against a real mosquitto.

The hard moment is a cancel that arrives together with the broker's answer (CONNACK,
PUBACK, SUBACK): aiomqtt waits with ``asyncio.wait_for``, which on Python 3.11 then returns
the answer and drops the cancellation, and the publisher would run on. The test cancels
from inside paho's callback for the n-th answer of each kind — right after aiomqtt has
woken the waiting call, before that call runs — which is exactly that moment, every time;
and then after every number of event-loop turns from the start of ``run()``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from streamer.cancel import cancellation_kept, raise_if_cancelled
from streamer.config import AthleteConfig, MqttConfig
from streamer.notify import notifier as notifier_module
from streamer.notify.channels import CommandChannel
from streamer.notify.notifier import Notifier, SeenStore, run_notifier
from streamer.results import Kind, Result
from streamer.sinks.backoff import Backoff
from streamer.sinks.mqtt import MqttPublisher
from streamer.sinks.mqtt_connect import mqtt_client
from streamer.store import Store
from tests.mqtt_helpers import CancelAtAnswer
from tests.servers import HOST, Mosquitto

pytestmark = pytest.mark.integration

STOP_WITHIN_S = 10.0
"""A cancelled run() that has not ended by then never will (it is sending nothing)."""
ANSWERS = ("on_connect", "on_subscribe", "on_publish")


class CancelOnAnswer(MqttPublisher):
    """A publisher whose ``run()`` task is cancelled inside paho's callback for the
    ``nth`` answer of kind ``answer`` (``on_connect``, ``on_publish``, ``on_subscribe``)."""

    def __init__(self, *args: Any, answer: str, nth: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.answer, self.nth = answer, nth
        self.seen: Counter[str] = Counter()
        self.task: asyncio.Task[None] | None = None
        self.clients: list[aiomqtt.Client] = []

    def _make_client(self, tls: ssl.SSLContext | None) -> aiomqtt.Client:
        client = super()._make_client(tls)
        self.clients.append(client)
        paho = client._client
        for name in ANSWERS:
            setattr(paho, name, self._hooked(name, getattr(paho, name)))
        return client

    def _hooked(self, name: str, original: Callable[..., None]) -> Callable[..., None]:
        def callback(*args: Any, **kwargs: Any) -> None:
            original(*args, **kwargs)  # aiomqtt wakes the call waiting for this answer
            self.seen[name] += 1
            if name == self.answer and self.seen[name] == self.nth and self.task is not None:
                self.task.cancel()

        return callback


def _config(broker: Mosquitto) -> MqttConfig:
    return MqttConfig(host=HOST, port=broker.port, ha_discovery=True, publish_timeout_s=2.0)


def _results(n: int) -> list[Result]:
    return [
        Result(Kind.HRV, "ann", 1_700_000_000_000_000_000 + i, {"rmssd_ms": float(i)})
        for i in range(n)
    ]


async def _assert_stops(publisher: MqttPublisher, task: asyncio.Task[None], where: str) -> None:
    done, _ = await asyncio.wait({task}, timeout=STOP_WITHIN_S)
    if not done:
        task.cancel()  # a second cancel, so that the test itself can end
        await asyncio.wait({task}, timeout=STOP_WITHIN_S)
        pytest.fail(f"run() cancelled at {where} was still running {STOP_WITHIN_S} s later")
    assert task.cancelled(), f"run() cancelled at {where} ended otherwise: {task!r}"
    assert not publisher.connected


# Answers in one session: CONNACK; SUBACK (Home Assistant status); PUBACKs for "online"
# (awaited by run() itself), the discovery configs and the outbox batches (awaited by child
# tasks). Points past the last answer are never reached: the test then cancels at the end.
POINTS = [("on_connect", 1), ("on_subscribe", 1)] + [("on_publish", n) for n in range(1, 31)]


async def test_cancel_as_an_answer_arrives_always_stops_run(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    reached: Counter[str] = Counter()
    with Store(tmp_path / "s.sqlite3") as store:
        for answer, nth in POINTS:
            publisher = CancelOnAnswer(
                _config(mosquitto),
                store,
                athletes=[AthleteConfig(id="ann", name="Ann")],
                backoff=Backoff(0.05, 0.1),
                outbox_batch=4,
                answer=answer,
                nth=nth,
            )
            publisher.accept(_results(12))
            publisher.task = task = asyncio.create_task(publisher.run())
            # The hook cancels; a session with fewer answers than nth goes idle (its outbox
            # sent) instead, and is cancelled then.
            idle = asyncio.create_task(publisher._idle.wait())
            await asyncio.wait({task, idle}, return_when=asyncio.FIRST_COMPLETED)
            idle.cancel()
            if publisher.seen[answer] < nth:
                reached[answer] = max(reached[answer], publisher.seen[answer])
                task.cancel()
            else:
                reached[answer] = nth
            await _assert_stops(publisher, task, f"{answer} #{nth}")
    # The points were reached: CONNACK, SUBACK, and more PUBACKs than one batch.
    assert reached["on_connect"] == reached["on_subscribe"] == 1
    assert reached["on_publish"] > 12


async def test_cancel_after_any_number_of_loop_turns_stops_run(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        for turns in range(0, 120, 3):
            publisher = MqttPublisher(
                _config(mosquitto),
                store,
                athletes=[AthleteConfig(id="ann", name="Ann")],
                backoff=Backoff(0.05, 0.1),
                outbox_batch=4,
            )
            publisher.accept(_results(8))
            task = asyncio.create_task(publisher.run())
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            await _assert_stops(publisher, task, f"loop turn {turns}")


async def test_cancellation_kept_re_raises_what_wait_for_swallowed() -> None:
    """The guard alone, on the race it exists for: the awaited future completes and the task
    is cancelled in the same loop turn."""
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[str] = loop.create_future()
    outcome: list[str] = []

    async def call(guarded: bool) -> None:
        if guarded:
            with cancellation_kept():
                outcome.append(await asyncio.wait_for(answered, 10))
        else:
            outcome.append(await asyncio.wait_for(answered, 10))
        outcome.append("ran on")

    for guarded in (False, True):
        answered = loop.create_future()
        outcome.clear()
        task = asyncio.create_task(call(guarded))
        await asyncio.sleep(0)  # the task now waits inside wait_for
        answered.set_result("PUBACK")
        task.cancel()
        await asyncio.wait({task})
        if guarded:
            assert task.cancelled()
            assert "ran on" not in outcome
        elif not task.cancelled():  # Python 3.11: wait_for swallowed it (3.12+ does not)
            assert outcome == ["PUBACK", "ran on"]


async def test_a_loop_checking_each_turn_ends_at_a_swallowed_cancellation() -> None:
    """A loop that runs until cancelled (the gateway's NATS loops) ends at its next turn
    when a call in the last one swallowed the stop — here a reply arriving with it."""
    loop = asyncio.get_running_loop()
    replies: list[asyncio.Future[str]] = []
    turns = 0

    async def until_cancelled() -> None:
        nonlocal turns
        while True:
            raise_if_cancelled()
            turns += 1
            reply = loop.create_future()
            replies.append(reply)
            await asyncio.wait_for(reply, 10)

    task = asyncio.create_task(until_cancelled())
    await asyncio.sleep(0)  # the task now waits for its first reply
    replies[0].set_result("PubAck")
    task.cancel()
    await asyncio.wait({task}, timeout=10)
    assert task.cancelled(), "the loop went on waiting for a second reply"
    assert turns == 1


async def test_a_block_failing_after_a_swallowed_cancellation_ends_cancelled() -> None:
    """A swallowed cancellation followed by a broker error in the same block (the
    disconnect after a session's end) is a stop, not an error a reconnecting loop retries."""
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[str] = loop.create_future()
    retried: list[str] = []

    async def session() -> None:
        await asyncio.wait_for(answered, 10)  # CONNACK, as the stop arrives
        raise aiomqtt.MqttError("the broker closed the connection")

    async def loop_on_errors() -> None:
        while True:
            try:
                with cancellation_kept():
                    await session()
            except aiomqtt.MqttError as exc:
                retried.append(str(exc))  # a reconnecting loop would go round again
                return

    task = asyncio.create_task(loop_on_errors())
    await asyncio.sleep(0)  # the task now waits inside wait_for
    answered.set_result("CONNACK")
    task.cancel()
    await asyncio.wait({task})
    assert task.cancelled(), "the stop was taken for a broker error"
    assert retried == []


@pytest.mark.parametrize("answer", ["connect", "subscribe"])
async def test_the_notifier_cancelled_as_the_broker_answers_stops(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    """``notify`` stops on Ctrl-C (its task cancelled) even at CONNACK or SUBACK."""
    hook = CancelAtAnswer(mqtt_client, answer, 1)
    # Instrumenting the one factory the notifier builds its client with; the broker is real.
    monkeypatch.setattr(notifier_module, "mqtt_client", hook)
    notifier = Notifier([CommandChannel("true")], SeenStore(tmp_path / "state.json"))
    config = MqttConfig(host=HOST, port=mosquitto.port)
    hook.task = asyncio.create_task(run_notifier(config, notifier, client_id="cancel-test"))
    await hook.assert_stops(STOP_WITHIN_S)


async def test_a_publish_whose_caller_was_cancelled_is_awaited_until_its_puback(
    mosquitto: Mosquitto,
) -> None:
    """The PUBACK wait before a disconnect (mosquitto < 2.0.22 sends the Last Will of a
    client that hangs up before the broker wrote a PUBACK, eclipse-mosquitto#3253) counts
    on the publisher's own account of QoS 1 publishes: one whose caller was cancelled —
    a session ending, a stop — stays owed until the broker answers. The broker is held
    (SIGSTOP) so that the PUBACK cannot come before the caller is gone."""
    import os
    import signal

    from tests.mqtt_helpers import Subscriber, eventually, running_publisher

    sub = await Subscriber(HOST, mosquitto.port, topic="redox/test/#", client_id="sub").start()
    async with running_publisher(mosquitto.url) as (publisher, _):
        held = False
        try:
            client = publisher._client
            assert client is not None
            assert mosquitto.proc is not None
            os.kill(mosquitto.proc.pid, signal.SIGSTOP)
            held = True
            caller = asyncio.create_task(
                publisher._send(client, "redox/test/owed", b"1", qos=1, retain=False)
            )
            await eventually(lambda: publisher._owed.get(client), 10, "the publish sent")
            caller.cancel()
            await asyncio.gather(caller, return_exceptions=True)
            assert caller.cancelled()
            assert len(publisher._owed[client]) == 1, "still owed its PUBACK"
            acknowledged = asyncio.create_task(publisher._acknowledged(client, 60.0))
            await asyncio.sleep(0)  # one turn: it is waiting, not done
            assert not acknowledged.done()
            os.kill(mosquitto.proc.pid, signal.SIGCONT)
            held = False
            async with asyncio.timeout(30):
                await acknowledged  # the PUBACK came: no need to wait the 60 s
            await sub.wait_for(lambda: bool(sub.on("redox/test/owed")), 30, "the message")
        finally:
            if held:
                os.kill(mosquitto.proc.pid, signal.SIGCONT)
            await sub.stop()


@pytest.mark.parametrize("answer", ["connect", "puback"])
async def test_a_workers_availability_cancelled_as_the_broker_answers_stops(
    mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    """A team worker's availability connection (``redox-worker-<id>``) stopped just as
    CONNACK or the PUBACK of its ``online`` arrives ends: the worker's stop awaits it."""
    from streamer.config import Config
    from streamer.sinks import mqtt_connect
    from streamer.team.worker import Worker

    hook = CancelAtAnswer(mqtt_client, answer, 1)
    monkeypatch.setattr(mqtt_connect, "mqtt_client", hook)  # imported at each call
    config = Config(mqtt=MqttConfig.from_url(mosquitto.url))
    worker = Worker("w", nats_url="nats://unused", dsn="unused", config=config)
    hook.task = asyncio.create_task(worker._availability())
    await hook.assert_stops(STOP_WITHIN_S)


@pytest.mark.parametrize(("answer", "nth"), [("connect", 1), ("subscribe", 1), ("subscribe", 3)])
async def test_a_workers_survivor_watch_cancelled_as_the_broker_answers_stops(
    mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch, answer: str, nth: int
) -> None:
    """The worker's watch of the gateways (:class:`WorkerSurvivor`) stopped just as CONNACK
    or a SUBACK arrives ends."""
    from streamer.team import worker_survivor

    hook = CancelAtAnswer(worker_survivor.mqtt_client, answer, nth)
    monkeypatch.setattr(worker_survivor, "mqtt_client", hook)
    survivor = worker_survivor.WorkerSurvivor(MqttConfig.from_url(mosquitto.url), "w1")
    hook.task = asyncio.create_task(survivor.run())
    await hook.assert_stops(STOP_WITHIN_S)
