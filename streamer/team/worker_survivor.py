"""The workers as survivors when no gateway is left: a lone gateway that dies for good.

A gateway that dies without a goodbye (SIGKILL, power cut, link cut for good) leaves its
devices' last states — ``connected`` — retained. While another gateway is ``online`` that
one says them ``stopped`` (:mod:`streamer.team.gateway_mqtt`); a gateway restarted after
its own death does it too. But a club with one gateway that does not come back — or all its
gateways dead — had nobody to say it: Home Assistant showed the straps connected for good.

The workers always run in team mode, so each worker also watches the gateways here, on an
MQTT connection of its own (client id ``redox-worker-<id>-survivor``, no Last Will: the
worker's availability connection says whether it lives). When no gateway is ``online`` and
a gateway ``offline`` still lists devices, the worker with the smallest id among those
``online`` (:mod:`streamer.team.survivor`, the gateways' own rule) waits
:data:`~streamer.team.gateway_mqtt.DEATH_GRACE_S` — mosquitto also sends a Last Will when
a client id reconnects while it holds the old connection — and then, while that gateway is
still ``offline`` and no gateway ``online``, publishes ``stopped`` for each listed device
(``problem`` naming the dead gateway, ``seq`` above the listed one) and clears the list. A
gateway saying ``online`` meanwhile — the dead one back, or another that takes the
survivor's role — calls the clean-up off at once. A clean-up that meets a broker error
keeps the list and is tried again at the next round (:data:`ROUND_S`).

Only retained topics the gateways publish anyway are read; nothing is added to what they
say (the shipped ACL lets the ``redox-worker`` account read them).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Final

import aiomqtt

from streamer.cancel import cancellation_kept
from streamer.config import MqttConfig
from streamer.payloads import encode_payload
from streamer.sinks.backoff import network_backoff
from streamer.sinks.mqtt_connect import MqttTlsError, describe_failure, mqtt_client, tls_context
from streamer.team.gateway import availability_topic
from streamer.team.gateway_mqtt import (
    DEATH_GRACE_S,
    DEATH_PROBLEM,
    Listed,
    decode_list,
    held_devices_topic,
)
from streamer.team.survivor import (
    OFFLINE,
    dead_with_devices,
    elected,
    online,
    orphaned,
    seq_above,
    stopped_result,
)
from streamer.topics import Topics

_LOGGER: Final = logging.getLogger(__name__)

ROUND_S: Final = 1.0
"""How often the survivor looks again without news (s): a clean-up that met a broker error
is tried again then, as a gateway survivor's is."""


def worker_state_topic(base: str, worker_id: str) -> str:
    """``<base>/worker/<id>/state``: a worker's availability (``online`` / ``offline``,
    retained, its Last Will), as :class:`streamer.team.worker.Worker` publishes it."""
    return f"{base}/worker/{worker_id}/state"


class WorkerSurvivor:
    """One worker's watch over the gateways (see the module): :meth:`run` until cancelled."""

    def __init__(
        self,
        config: MqttConfig,
        worker_id: str,
        *,
        grace_s: float = DEATH_GRACE_S,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.config = config
        self.worker_id = worker_id
        self.topics = Topics(config.base_topic)
        self.base = self.topics.base
        self.grace_s = grace_s
        self._clock_ns = clock_ns
        self.lists: dict[str, list[Listed]] = {}
        """Each gateway's listed devices, by gateway id (empty lists left out)."""
        self.gateways: dict[str, bytes] = {}
        """Each gateway's availability payload, by gateway id."""
        self.workers: dict[str, bytes] = {}
        """Each worker's availability payload, by worker id."""
        self.deferred: dict[str, str] = {}
        """Why the clean-up of a dead gateway (by id) is left to another, as last decided."""
        self.subscribed = asyncio.Event()
        """Set while a connection's subscriptions are in place."""
        self.cleaned = 0
        """Devices said ``stopped`` for dead gateways."""
        self.lists_cleared = 0
        self.called_off = 0
        """Clean-ups not done: a gateway said ``online`` within the grace or during it."""
        self.failed = 0
        """Clean-ups that met a broker error (their list kept, tried again next round)."""
        self._seq: dict[str, int] = {}
        self._pending: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}

    @property
    def cleaning(self) -> set[str]:
        """The dead gateways whose clean-up is under way (its grace included)."""
        return set(self._pending)

    async def run(self) -> None:
        """Watch until cancelled, reconnecting with back-off."""
        backoff = network_backoff(self.config.reconnect_min_s, self.config.reconnect_max_s)
        delays = backoff.delays(random.Random())
        while True:
            try:
                with cancellation_kept():  # e.g. one swallowed at the disconnect
                    await self._session()
            except (aiomqtt.MqttError, OSError, TimeoutError, MqttTlsError) as exc:
                _LOGGER.warning(
                    "worker %s, gateways' watch on %s: %s",
                    self.worker_id,
                    self.config.url,
                    describe_failure(self.config, exc),
                )
            finally:
                self.subscribed.clear()
            await asyncio.sleep(next(delays))

    async def _session(self) -> None:
        client = mqtt_client(
            self.config,
            tls=await asyncio.to_thread(tls_context, self.config),
            timeout_s=self.config.publish_timeout_s,
            identifier=f"redox-worker-{self.worker_id}-survivor",
            logger=_LOGGER,
        )
        lists = held_devices_topic(self.base, "+")
        gateways = availability_topic(self.base, "+")
        workers = worker_state_topic(self.base, "+")
        async with contextlib.AsyncExitStack() as stack:
            # A stop arriving with CONNACK or a SUBACK is kept (see streamer.cancel): the
            # session would otherwise listen until the next stop.
            with cancellation_kept():
                await stack.enter_async_context(client)
                # What another connection said is as the broker retains it: read it anew.
                self.lists.clear()
                self.gateways.clear()
                self.workers.clear()
                for topic in (workers, gateways, lists):
                    await client.subscribe(topic, qos=1)
            self.subscribed.set()
            rounds = asyncio.create_task(self._rounds(client), name="survivor rounds")
            try:
                async for message in client.messages:
                    payload = message.payload
                    data = payload if isinstance(payload, bytes) else str(payload or "").encode()
                    who = str(message.topic).split("/")[-2]
                    if message.topic.matches(lists):
                        self._read_list(who, data)
                    elif message.topic.matches(gateways):
                        self._read_gateway_state(who, data)
                    elif message.topic.matches(workers):
                        self.workers[who] = data
                    self._sweep(client)
                raise aiomqtt.MqttError("the broker closed the connection")
            finally:
                pending = [rounds, *(task for task, _ in self._pending.values())]
                for task in pending:  # on this connection's client: the next one starts again
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    async def _rounds(self, client: aiomqtt.Client) -> None:
        while True:
            await asyncio.sleep(ROUND_S)  # a polling period: a failed clean-up again
            self._sweep(client)

    def _read_list(self, gateway_id: str, payload: bytes) -> None:
        try:
            _, listed = decode_list(payload)
        except ValueError as exc:
            _LOGGER.warning("%s: %s; ignored", held_devices_topic(self.base, gateway_id), exc)
            return
        if listed:
            self.lists[gateway_id] = listed
        else:
            self.lists.pop(gateway_id, None)

    def _read_gateway_state(self, gateway_id: str, payload: bytes) -> None:
        self.gateways[gateway_id] = payload
        if payload != OFFLINE:  # back, or another gateway to take the survivor's role
            for _, news in self._pending.values():
                news.set()

    def _why_not(self) -> str | None:
        """Why this worker is not the survivor now (None: it is)."""
        live = sorted(online(self.gateways))
        if live:
            return f"gateway {live[0]} is online: the gateways' survivor says it"
        if not elected(self.worker_id, online(self.workers)):
            first = min(online(self.workers))
            return f"worker {first} is online with a smaller id: it says it"
        return None

    def _sweep(self, client: aiomqtt.Client) -> None:
        """A clean-up for each dead gateway with devices listed, when this worker is the
        survivor (see the module)."""
        dead = [g for g in dead_with_devices(self.lists, self.gateways) if g not in self._pending]
        if not dead:
            return
        why = self._why_not()
        for gateway_id in dead:
            if why is not None:
                self.deferred[gateway_id] = why
                continue
            self.deferred.pop(gateway_id, None)
            news = asyncio.Event()
            task = asyncio.create_task(
                self._after_a_death(client, gateway_id, news), name="survivor clean-up"
            )
            self._pending[gateway_id] = (task, news)
            task.add_done_callback(functools.partial(self._done, gateway_id))

    def _done(self, gateway_id: str, task: asyncio.Task[None]) -> None:
        if self._pending.get(gateway_id, (None,))[0] is task:
            del self._pending[gateway_id]
        if not task.cancelled() and (exc := task.exception()) is not None:
            _LOGGER.error("clean-up after gateway %s failed: %r", gateway_id, exc, exc_info=exc)

    def _still_dead(self, gateway_id: str) -> bool:
        """Whether the clean-up may go on: the gateway still ``offline`` and this worker
        still the survivor."""
        return self.gateways.get(gateway_id) == OFFLINE and self._why_not() is None

    async def _after_a_death(
        self, client: aiomqtt.Client, gateway_id: str, news: asyncio.Event
    ) -> None:
        """``stopped`` for each orphaned device of dead ``gateway_id``'s list, then the list
        cleared — unless a gateway says ``online`` within the grace or meanwhile."""
        with cancellation_kept():  # cancelled with the session: a stop a PUBACK hid kept
            await self._clean_up(client, gateway_id, news)

    async def _clean_up(self, client: aiomqtt.Client, gateway_id: str, news: asyncio.Event) -> None:
        # A grace, not a synchronisation: a gateway whose Will came from its own
        # reconnection says `online` within a few round trips (and ends the wait at once).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.grace_s):
                await news.wait()
        problem = DEATH_PROBLEM.format(gateway=gateway_id)
        said = 0
        try:
            listed = self.lists.get(gateway_id, [])
            for item in orphaned(listed, self.lists, self.gateways, topics=self.topics):
                if not self._still_dead(gateway_id):
                    return self._call_off(gateway_id)
                now_ns = self._clock_ns()
                result = stopped_result(item, problem, now_ns)
                seq = seq_above(self._seq.get(item.topic, 0), item.seq, now_ns // 1000)
                self._seq[item.topic] = seq
                await client.publish(item.topic, encode_payload(result, seq), qos=1, retain=True)
                self.cleaned += 1
                said += 1
            if not self._still_dead(gateway_id):
                return self._call_off(gateway_id)
            await client.publish(held_devices_topic(self.base, gateway_id), b"", qos=1, retain=True)
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
            self.failed += 1
            _LOGGER.warning(
                "gateway %s went away without a goodbye and no gateway is online; saying its "
                "devices stopped failed (%s): tried again",
                gateway_id,
                exc,
            )
            return None
        self.lists.pop(gateway_id, None)  # (the broker's echo of the clear says it too)
        self.lists_cleared += 1
        _LOGGER.info(
            "gateway %s went away without a goodbye and no gateway is online: worker %s said "
            "%d of its devices stopped",
            gateway_id,
            self.worker_id,
            said,
        )
        return None

    def _call_off(self, gateway_id: str) -> None:
        self.called_off += 1
        _LOGGER.info(
            "gateway %s: clean-up called off (%s)",
            gateway_id,
            self._why_not() or f"gateway {gateway_id} is no longer offline",
        )
