"""A gateway's MQTT side: its availability topic and the athletes' command topics.

One connection per gateway, client id ``redox-gateway-<id>``, with its own Last Will on
``<base>/gateway/<id>/state`` (``online`` / ``offline``, retained): one gateway dying
marks that gateway unavailable, never the whole club. Commands (``<base>/<athlete>/set/…``,
:mod:`streamer.app.commands_in`) are read through a **shared subscription**
(``$share/redox-gateways/…``, MQTT 5 and mosquitto's 3.1.1 alike): the broker hands each
command to exactly one of the gateways online, so a session start becomes one marker in
the athlete's stream however many gateways run.

With ``[mqtt] ha_discovery`` each gateway also announces itself to Home Assistant: one
``connectivity`` binary sensor per gateway (:func:`discovery_config`), retained, read from
its own availability topic and with no availability of its own — so a dead gateway shows as
disconnected, and never makes another gateway's entity (or an athlete's) unavailable.

Given the gateway's devices (:class:`HeldDevices`), it also publishes the connection state
of each device whose lease the gateway holds, as ``run`` does
(:mod:`streamer.app.device_state`: the same ``<base>/<athlete>/<device>/state`` topics and
payloads, retained, on a change and every 10 s while connected, ``stopped`` when the
gateway stops), so Home Assistant's connectivity and battery entities work in team mode.
Their ``seq`` is the clock in µs (one up at least from the last): a device's state moves
between gateways with its lease, and the next holder's numbers must be higher.

A device's latest state is not published once and forgotten: a ``stopped`` or
``reconnecting`` sent while the connection is down, or lost by a broker restarted without
persistence, would leave a stale ``connected`` retained for good. The gateway keeps the
last state message it made per device (:class:`_LastWords`, the bytes with their ``seq``)
and, after every (re)connect, publishes again the latest of each device it no longer holds
(the held ones get a fresh state at once) — only the latest: it is retained state, not a
log. A device leaving the gateway (its lease released, the registry's change) gets a last
``stopped`` state. The lease holder owns a device's retained state: a device whose lease
another gateway holds now is forgotten, never published over the holder's. At a stop the
last words are kept in the gateway's outbox file
(:meth:`~streamer.team.outbox.GatewayOutbox.keep_device_states`), so a ``stopped`` that
could not reach the broker then — link down, broker restarting — is published by the
next start: a restarted gateway re-derives the state of the devices it holds again, but
not of those it does not get back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final, Protocol

import aiomqtt

from streamer import __version__
from streamer.app.commands_in import CommandListener
from streamer.app.device_state import DEVICE_STATE_CHECK_S, DeviceStates, DriverLike
from streamer.config import MqttConfig
from streamer.payloads import encode_payload
from streamer.results import DeviceStatePayload, Result
from streamer.sinks.backoff import network_backoff
from streamer.sinks.mqtt_connect import MqttTlsError, describe_failure, mqtt_client, tls_context
from streamer.team.gateway import availability_topic, gateway_mqtt
from streamer.team.outbox import KeptState
from streamer.topics import Topics, segment, slug

_LOGGER: Final = logging.getLogger(__name__)

SHARE_GROUP: Final = "redox-gateways"
"""The shared-subscription group every gateway joins for the command topics."""
ONLINE: Final = b"online"
OFFLINE: Final = b"offline"


HA_NODE: Final = "redox_gateway"
"""Home Assistant node id of the gateways' entities: their configs are
``<ha_prefix>/binary_sensor/redox_gateway/<id>/config`` (the shipped ACL lets the gateway
account write there and nowhere else under the prefix)."""


def discovery_config(topics: Topics, gateway_id: str) -> tuple[str, dict[str, Any]]:
    """(config topic, config object) of one gateway's Home Assistant entity: a
    ``connectivity`` binary sensor on ``<base>/gateway/<id>/state`` (``online`` on,
    ``offline`` off, the Last Will turning it off), a device of its own per gateway.

    It has no ``availability``: an entity whose availability is a gateway's would turn
    unavailable with that gateway; this one just says the gateway is disconnected.
    """
    key = f"{HA_NODE}_{slug(gateway_id)}"
    config = {
        "name": "connection",
        "unique_id": key,
        "object_id": key,
        "state_topic": availability_topic(topics.base, gateway_id),
        "payload_on": ONLINE.decode(),
        "payload_off": OFFLINE.decode(),
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "device": {
            "identifiers": [key],
            "name": f"Redox gateway {gateway_id}",
            "manufacturer": "redox-streamer",
            "model": "team gateway",
            "sw_version": __version__,
        },
    }
    return topics.ha_config("binary_sensor", HA_NODE, gateway_id), config


class HeldDevices(Protocol):
    """What the MQTT side reads of the gateway (:class:`streamer.team.gateway.Gateway`)."""

    def held_drivers(self) -> Mapping[str, Sequence[tuple[str, DriverLike]]]:
        """athlete → (device id, driver) of the devices whose lease the gateway holds."""
        ...

    def battery_of(self, athlete: str, device_id: str) -> int | None:
        """The battery level (%) the device last reported to this gateway, or None."""
        ...

    async def held_elsewhere(self, athlete: str, device_id: str) -> bool:
        """Whether another gateway holds the device's lease now (False: free, or unknown)."""
        ...


class StateKeeper(Protocol):
    """Where the last words survive a restart (:class:`streamer.team.outbox.GatewayOutbox`)."""

    def keep_device_states(self, states: Sequence[KeptState]) -> None: ...

    def kept_device_states(self) -> list[KeptState]: ...


class _Queued:
    """:class:`DeviceStates`' sink: the states to publish on the next round."""

    def __init__(self) -> None:
        self.results: list[Result] = []

    def accept(self, results: Sequence[Result]) -> None:
        self.results.extend(results)


class _LastWords:
    """The last state message made per device, kept across connections (see the module):
    (athlete, device) → :class:`KeptState`; and the payload of each device held, for the
    ``stopped`` it gets when it leaves."""

    def __init__(self, kept: Iterable[KeptState] = ()) -> None:
        self.words: dict[tuple[str, str], KeptState] = {(k.athlete, k.device): k for k in kept}
        self.held: dict[tuple[str, str], DeviceStatePayload] = {}

    def made(self, result: Result, topic: str, payload: bytes) -> None:
        """``payload`` was made for ``result`` (a device state): it is the latest word."""
        assert result.device is not None
        key = (result.athlete, result.device)
        self.words[key] = KeptState(topic, result.athlete, result.device, payload)
        state = result.payload_as(DeviceStatePayload)
        if state.connection == "stopped":
            self.held.pop(key, None)
        else:
            self.held[key] = state

    def forget(self, key: tuple[str, str]) -> None:
        """Another gateway owns the device's state now."""
        self.words.pop(key, None)
        self.held.pop(key, None)

    def stopped(self, keys: Iterable[tuple[str, str]], now_ns: int) -> list[Result]:
        """A ``stopped`` state for each of ``keys`` still held (its last payload's)."""
        out = []
        for key in keys:
            state = self.held.pop(key, None)
            if state is not None:
                last = replace(state, connected=False, connection="stopped", problem=None)
                out.append(last.result(key[0], now_ns, key[1]))
        return out


class GatewayCommands(CommandListener):
    """Commands → markers into the gateway's outbox, the gateway's availability, and the
    connection state of the devices it holds (with ``devices``)."""

    name = "gateway mqtt"

    def __init__(
        self,
        config: MqttConfig,
        gateway_id: str,
        athletes: Iterable[str],
        offer: Callable[[str, str, object], bool],
        *,
        clock_ns: Callable[[], int],
        devices: HeldDevices | None = None,
        keeper: StateKeeper | None = None,
    ) -> None:
        super().__init__(gateway_mqtt(config, gateway_id), athletes, offer, clock_ns=clock_ns)
        self.gateway_id = gateway_id
        self.state_topic = availability_topic(self.topics.base, gateway_id)
        self.devices = devices
        self.keeper = keeper
        self.device_states_published = 0
        self._seq: dict[str, int] = {}
        self._stopping = False
        self._words = _LastWords(keeper.kept_device_states() if keeper is not None else ())

    def _next_seq(self, topic: str) -> int:
        """The clock in µs, at least one above the topic's last number (see the module)."""
        seq = max(self._seq.get(topic, 0) + 1, time.time_ns() // 1000)
        self._seq[topic] = seq
        return seq

    def _make(self, results: Sequence[Result]) -> list[KeptState]:
        """Each state's message (its ``seq`` now), the device's latest word from now on."""
        out = []
        for result in results:
            topic = self.topics.for_result(result)
            payload = encode_payload(result, self._next_seq(topic))
            self._words.made(result, topic, payload)
            assert result.device is not None
            out.append(KeptState(topic, result.athlete, result.device, payload))
        return out

    async def _publish_states(self, client: aiomqtt.Client, queued: _Queued) -> None:
        results, queued.results = queued.results, []
        for state in self._make(results):
            await client.publish(state.topic, state.payload, qos=1, retain=True)
            self.device_states_published += 1

    async def _republish_last_words(
        self, client: aiomqtt.Client, held: Mapping[str, Sequence[tuple[str, DriverLike]]]
    ) -> None:
        """The latest word of each device not held now, as made (the broker may have lost
        it); a device another gateway holds now is forgotten instead (its state is the
        holder's)."""
        self._make(await self._leaving(held))
        holding = {(a, d) for a, items in held.items() for d, _ in items}
        # The held ones' fresh states follow at once.
        words = [w for key, w in self._words.words.items() if key not in holding]
        for word, elsewhere in zip(words, await self._held_elsewhere(words), strict=True):
            if elsewhere:
                self._words.forget((word.athlete, word.device))
                continue
            await client.publish(word.topic, word.payload, qos=1, retain=True)
            self.device_states_published += 1

    async def _held_elsewhere(self, words: Sequence[KeptState]) -> list[bool]:
        """Whether another gateway holds each device's lease now, asked all at once (each
        answer bounded: NATS away must not hold the states back)."""
        assert self.devices is not None
        return list(
            await asyncio.gather(*(self.devices.held_elsewhere(w.athlete, w.device) for w in words))
        )

    async def _leaving(self, held: Mapping[str, Sequence[tuple[str, DriverLike]]]) -> list[Result]:
        """A ``stopped`` state for each device this gateway held and holds no longer —
        unless another gateway holds it now: then it is forgotten (a ``stopped`` from here,
        with a newer ``seq``, would overwrite the holder's state)."""
        holding = {(a, d) for a, items in held.items() for d, _ in items}
        gone = [self._words.words[key] for key in self._words.held if key not in holding]
        for word, elsewhere in zip(gone, await self._held_elsewhere(gone), strict=True):
            if elsewhere:
                self._words.forget((word.athlete, word.device))
        return self._words.stopped([(w.athlete, w.device) for w in gone], self._clock_ns())

    async def _device_states(self, client: aiomqtt.Client) -> None:
        """Publish the devices' last words again, then the held devices' states until
        cancelled — then, when the gateway stops, each as ``stopped`` (a new connection
        publishes every state again: the broker may have lost them)."""
        assert self.devices is not None
        queued = _Queued()
        states = DeviceStates({}, self.devices.battery_of, [queued], clock_ns=self._clock_ns)
        try:
            await self._republish_last_words(client, self.devices.held_drivers())
            while True:
                states.drivers = self.devices.held_drivers()
                queued.accept(await self._leaving(states.drivers))
                states.check()
                await self._publish_states(client, queued)
                await asyncio.sleep(DEVICE_STATE_CHECK_S)  # a polling period, as in `run`
        except asyncio.CancelledError:
            if not self._stopping:
                raise  # the connection is gone, not the gateway: the next one starts again
            with contextlib.suppress(aiomqtt.MqttError, OSError, TimeoutError):
                async with asyncio.timeout(2.0):
                    states.drivers = self.devices.held_drivers()
                    queued.accept(await self._leaving(states.drivers))
                    states.stop()
                    await self._publish_states(client, queued)
            raise

    def _keep_last_words(self) -> None:
        """At a stop: every device still held gets its ``stopped`` (made here when the
        connection was down), and the last words go to the keeper for the next start."""
        if self.devices is None:
            return
        self._make(self._words.stopped(list(self._words.held), self._clock_ns()))
        if self.keeper is not None:
            try:
                self.keeper.keep_device_states(list(self._words.words.values()))
            except sqlite3.Error as exc:  # the disk failing: the states were best effort
                _LOGGER.warning("gateway device states not kept: %s", exc)

    def set_athletes(self, athletes: Iterable[str]) -> None:
        """Take commands for ``athletes`` from now on (the central registry changed)."""
        self._athletes = {segment(a): a for a in athletes}

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with back-off (the gateway has no publisher
        connection to ride on, unlike ``run``'s listener); says ``offline`` on leaving."""
        backoff = network_backoff(self.config.reconnect_min_s, self.config.reconnect_max_s)
        delays = backoff.delays(random.Random())
        try:
            while True:
                try:
                    await self._session()
                except (aiomqtt.MqttError, OSError, TimeoutError, MqttTlsError) as exc:
                    self.on_link(False)
                    _LOGGER.warning(
                        "gateway MQTT %s: %s", self.config.url, describe_failure(self.config, exc)
                    )
                await asyncio.sleep(next(delays))
        finally:
            self._keep_last_words()

    async def _session(self) -> None:
        tls = await asyncio.to_thread(tls_context, self.config)
        client = mqtt_client(
            self.config,
            tls=tls,
            timeout_s=self.config.publish_timeout_s,
            identifier=self.config.client_id,
            will=aiomqtt.Will(self.state_topic, OFFLINE, qos=1, retain=True),
            logger=_LOGGER,
        )
        async with client:
            await client.subscribe(f"$share/{SHARE_GROUP}/{self.topics.base}/+/set/+", qos=1)
            await client.publish(self.state_topic, ONLINE, qos=1, retain=True)
            if self.config.ha_discovery:
                # Retained, the same bytes on every connect: one config per gateway, made
                # by the only process that knows the gateway exists.
                topic, config = discovery_config(self.topics, self.gateway_id)
                await client.publish(topic, json.dumps(config).encode(), qos=1, retain=True)
            self.subscribed.set()
            states = None
            if self.devices is not None:
                states = asyncio.create_task(self._device_states(client), name="device states")
            try:
                async for message in client.messages:
                    self.handle(str(message.topic), message.payload, retained=message.retain)
            except asyncio.CancelledError:
                self._stopping = True
                if states is not None:  # the devices' last word: stopped
                    states.cancel()
                    await asyncio.gather(states, return_exceptions=True)
                # A clean disconnect sends no Last Will: say offline ourselves.
                with contextlib.suppress(aiomqtt.MqttError, OSError, TimeoutError):
                    async with asyncio.timeout(2.0):
                        await client.publish(self.state_topic, OFFLINE, qos=1, retain=True)
                raise
            finally:
                if states is not None:  # the connection is gone: the next one starts again
                    states.cancel()
                    await asyncio.gather(states, return_exceptions=True)
