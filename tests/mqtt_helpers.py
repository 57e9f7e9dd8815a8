"""Test helpers for MQTT: a persistent subscriber that survives broker restarts, a
``mosquitto_sub`` for tests that run the streamer as a subprocess, and checks of per-topic
order with duplicates allowed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiomqtt


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    def json(self) -> dict[str, object]:
        obj = json.loads(self.payload)
        assert isinstance(obj, dict)
        return obj


@dataclass
class Subscriber:
    """Subscribes ``topic`` with QoS 1 on a persistent session (clean_session False) and
    reconnects forever, so that the broker keeps what it could not deliver meanwhile."""

    host: str
    port: int
    topic: str = "redox/#"
    client_id: str = "test-subscriber"
    persistent: bool = True
    username: str | None = None
    password: str | None = None
    received: list[Received] = field(default_factory=list)
    connects: int = 0
    _task: asyncio.Task[None] | None = None
    _subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, timeout_s: float = 10.0) -> Subscriber:
        self._task = asyncio.create_task(self._run())
        async with asyncio.timeout(timeout_s):
            await self._subscribed.wait()
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            client = aiomqtt.Client(
                self.host,
                self.port,
                identifier=self.client_id,
                username=self.username,
                password=self.password,
                clean_session=not self.persistent,
                timeout=3,
                keepalive=5,
            )
            try:
                async with client:
                    self.connects += 1
                    await client.subscribe(self.topic, qos=1)
                    self._subscribed.set()
                    async for m in client.messages:
                        self._record(m)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)
            finally:
                # aiomqtt acknowledges (PUBACK) a message as soon as it enters the client's
                # queue; the iterator stops at a disconnect even if messages are still
                # queued, so read them here or they are lost for good.
                queue = client._queue
                while not queue.empty():
                    self._record(queue.get_nowait())

    def _record(self, m: aiomqtt.Message) -> None:
        payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
        self.received.append(Received(str(m.topic), payload, m.retain, m.qos))

    def on(self, topic: str) -> list[Received]:
        return [r for r in self.received if r.topic == topic]

    async def wait_for(
        self, predicate: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out waiting for {what}; got {len(self.received)} messages"
                )
            await asyncio.sleep(0.02)


@dataclass
class ProcessSubscriber:
    """``mosquitto_sub`` on a persistent session (``-c``, QoS 1) in its own process.

    Used when the broker is SIGKILLed: a subscriber that shares the event loop with the
    publisher may not have read what sits in its socket when the broker dies, and the
    kernel discards that on the reset — a loss that would be the test's, not the
    publisher's. mosquitto_sub reconnects by itself.
    """

    host: str
    port: int
    topic: str = "redox/#"
    client_id: str = "test-process-subscriber"
    received: list[Received] = field(default_factory=list)
    _proc: asyncio.subprocess.Process | None = None
    _reader: asyncio.Task[None] | None = None

    async def start(self, binary: str = "mosquitto_sub") -> ProcessSubscriber:
        self._proc = await asyncio.create_subprocess_exec(
            binary,
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-i",
            self.client_id,
            "-c",
            "-q",
            "1",
            "-t",
            self.topic,
            "-F",
            "%r %q %t %p",
            stdout=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        # Subscribed once a retained probe on the topic comes back (retained: it arrives
        # whether mosquitto_sub subscribed before or after it was published).
        probe = self.topic.replace("#", "probe").replace("+", "probe")
        async with aiomqtt.Client(self.host, self.port) as client:
            await client.publish(probe, b"{}", qos=1, retain=True)
            try:
                await eventually(
                    lambda: any(r.topic == probe for r in self.received),
                    timeout_s=10.0,
                    what="mosquitto_sub to subscribe",
                )
            finally:
                await client.publish(probe, b"", qos=1, retain=True)  # clear the retained probe
        return self

    async def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        async for raw in self._proc.stdout:
            retain, qos, topic, payload = raw.decode().rstrip("\n").split(" ", 3)
            self.received.append(Received(topic, payload.encode(), retain == "1", int(qos)))

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    def on(self, topic: str) -> list[Received]:
        return [r for r in self.received if r.topic == topic]

    async def wait_for(
        self, predicate: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition"
    ) -> None:
        await eventually(predicate, timeout_s, what)


async def eventually(
    condition: Callable[[], object], timeout_s: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``condition`` every 20 ms until it is true; AssertionError after ``timeout_s``."""
    for _ in range(max(1, int(timeout_s / 0.02))):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@contextlib.asynccontextmanager
async def running(publisher: Any) -> AsyncIterator[asyncio.Task[None]]:
    """``publisher`` (an :class:`~streamer.sinks.mqtt.MqttPublisher`) running and
    connected; its run task (a test may cancel it to stop the publisher). Stopped at the
    end."""
    task = asyncio.create_task(publisher.run())
    try:
        await eventually(lambda: publisher.connected, 30, "the publisher connected")
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):  # its own failure surfaces here
            await task


@contextlib.asynccontextmanager
async def running_publisher(url: str) -> AsyncIterator[tuple[Any, asyncio.Task[None]]]:
    """A publisher on an in-memory store, :func:`running` against the broker at ``url``;
    with its run task."""
    from streamer.config import MqttConfig
    from streamer.sinks.mqtt import MqttPublisher
    from streamer.store import Store

    with Store(":memory:") as store:
        publisher = MqttPublisher(MqttConfig.from_url(url), store)
        async with running(publisher) as task:
            yield publisher, task


def first_arrivals(messages: Sequence[Received]) -> tuple[list[int], int]:
    """Sequence numbers in order of first arrival, and how many duplicates were dropped."""
    seen: set[int] = set()
    order: list[int] = []
    duplicates = 0
    for m in messages:
        seq = m.json()["seq"]
        assert isinstance(seq, int)
        if seq in seen:
            duplicates += 1
            continue
        seen.add(seq)
        order.append(seq)
    return order, duplicates


SYNC_TOPIC = "redox/_sync"
"""Where :meth:`ThreadSubscriber.sync` publishes its markers (kept out of ``lines``)."""


class ThreadSubscriber:
    """``mosquitto_sub -v`` on ``redox/#`` (QoS 1) whose ``topic payload`` lines a thread
    collects, for tests without an event loop. With ``client_id`` the session is persistent
    (``-c``): the broker queues for it while it is away.

    Wait with :meth:`sync` (subscribed, and everything the broker took before has arrived)
    or :meth:`wait_for` (a condition on what arrived), never with a sleep."""

    def __init__(
        self, port: int, *, protocol: str = "mqttv311", client_id: str | None = None
    ) -> None:
        # Imported here: tests.publisher_proc imports this module in a child process that
        # needs neither pytest nor the server helpers.
        from tests.servers import require_binary

        binary = require_binary("mosquitto_sub", "mosquitto-clients")
        self._pub = require_binary("mosquitto_pub", "mosquitto-clients")
        self.port = port
        self.protocol = protocol
        persistent = ["-c", "-i", client_id] if client_id else []
        self.proc = subprocess.Popen(
            [
                binary,
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-V",
                protocol,
                "-t",
                "redox/#",
                "-v",
                "-q",
                "1",
                *persistent,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self._markers: set[str] = set()
        self._arrived = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._arrived:
                topic, _, payload = line.rstrip("\n").partition(" ")
                if topic == SYNC_TOPIC:
                    self._markers.add(payload)
                else:
                    self.lines.append(line.rstrip("\n"))
                self._arrived.notify_all()

    def wait_for(
        self, condition: Callable[[], bool], what: str = "condition", timeout_s: float = 30.0
    ) -> None:
        """Until ``condition`` (checked whenever a message arrives) holds; AssertionError
        naming ``what`` after ``timeout_s``."""
        with self._arrived:
            if not self._arrived.wait_for(condition, timeout_s):
                raise AssertionError(
                    f"timed out after {timeout_s} s waiting for {what}; {len(self.lines)} lines"
                )

    def sync(self, timeout_s: float = 30.0) -> None:
        """Publish a retained marker and wait until this subscriber has it: then it is
        subscribed, and what the broker accepted before the marker has reached it (a
        broker delivers to one subscriber in the order it accepted the messages)."""
        marker = uuid.uuid4().hex
        self._publish("-m", marker)
        try:
            self.wait_for(lambda: marker in self._markers, f"sync marker {marker}", timeout_s)
        finally:
            self._publish("-n")  # clear the retained marker

    def _publish(self, *message: str) -> None:
        subprocess.run(
            [
                self._pub,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-V",
                self.protocol,
                "-t",
                SYNC_TOPIC,
                "-r",
                "-q",
                "1",
                *message,
            ],
            check=True,
            timeout=30,
        )

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)
        self._thread.join(5)

    def topics(self) -> set[str]:
        return {line.split(" ", 1)[0] for line in self.lines}

    def payloads(self, topic: str) -> list[str]:
        return [line.split(" ", 1)[1] for line in self.lines if line.split(" ", 1)[0] == topic]

    def seqs(self, topic: str) -> list[int]:
        """The ``seq`` field of every message on ``topic``, in order of arrival."""
        return [json.loads(payload)["seq"] for payload in self.payloads(topic)]


ANSWER_CALLBACKS = {"connect": "on_connect", "subscribe": "on_subscribe", "puback": "on_publish"}
"""The broker's answers by name → paho's callback that wakes the aiomqtt call awaiting it."""


class CancelAtAnswer:
    """A client factory (wrapping ``make_client``, e.g. :func:`mqtt_client`) whose clients
    cancel :attr:`task` from inside paho's callback for the ``nth`` answer of kind
    ``answer`` (``connect``, ``subscribe``, ``puback``; for a PUBACK, of a publish on
    ``topic`` when given) — after aiomqtt woke the waiting call, before that call runs: the
    moment Python 3.11's ``wait_for`` drops a cancellation (see :mod:`streamer.cancel`)."""

    def __init__(
        self, make_client: Callable[..., Any], answer: str, nth: int, topic: str | None = None
    ) -> None:
        self.make_client, self.answer, self.nth, self.topic = make_client, answer, nth, topic
        self.task: asyncio.Task[Any] | None = None
        self.seen = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        client = self.make_client(*args, **kwargs)
        paho = client._client
        topics: dict[int, str] = {}  # PUBACKs name the message id only
        publish = paho.publish

        def publishing(*p_args: Any, **p_kwargs: Any) -> Any:
            info = publish(*p_args, **p_kwargs)
            topics[info.mid] = p_kwargs.get("topic", p_args[0] if p_args else "")
            return info

        name = ANSWER_CALLBACKS[self.answer]
        original = getattr(paho, name)

        def callback(*cb_args: Any, **cb_kwargs: Any) -> None:
            original(*cb_args, **cb_kwargs)  # aiomqtt wakes the call waiting for this answer
            if self.answer != "puback" or self.topic in (None, topics.get(cb_args[2])):
                self.seen += 1
                if self.seen == self.nth and self.task is not None:
                    self.task.cancel()

        paho.publish = publishing
        setattr(paho, name, callback)
        return client

    async def assert_stops(self, within_s: float = 10.0) -> None:
        """:attr:`task` ended cancelled within ``within_s`` (s), the answer reached."""
        assert self.task is not None
        where = f"{self.answer} #{self.nth}" + (f" ({self.topic})" if self.topic else "")
        done, _ = await asyncio.wait({self.task}, timeout=within_s)
        if not done:
            self.task.cancel()  # a second cancel, so that the test itself can end
            await asyncio.wait({self.task}, timeout=within_s)
        assert self.seen >= self.nth, f"{where} never came: the point was not reached"
        assert done, f"cancelled at {where}, still running {within_s} s later"
        assert self.task.cancelled(), f"cancelled at {where}, ended otherwise: {self.task!r}"
