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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

import aiomqtt

from streamer import __version__
from streamer.app.commands_in import CommandListener
from streamer.app.device_state import DEVICE_STATE_CHECK_S, DeviceStates, DriverLike
from streamer.config import MqttConfig
from streamer.payloads import encode_payload
from streamer.results import Result
from streamer.sinks.backoff import network_backoff
from streamer.sinks.mqtt_connect import MqttTlsError, describe_failure, mqtt_client, tls_context
from streamer.team.gateway import availability_topic, gateway_mqtt
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


class _Queued:
    """:class:`DeviceStates`' sink: the states to publish on the next round."""

    def __init__(self) -> None:
        self.results: list[Result] = []

    def accept(self, results: Sequence[Result]) -> None:
        self.results.extend(results)


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
    ) -> None:
        super().__init__(gateway_mqtt(config, gateway_id), athletes, offer, clock_ns=clock_ns)
        self.gateway_id = gateway_id
        self.state_topic = availability_topic(self.topics.base, gateway_id)
        self.devices = devices
        self.device_states_published = 0
        self._seq: dict[str, int] = {}

    def _next_seq(self, topic: str) -> int:
        """The clock in µs, at least one above the topic's last number (see the module)."""
        seq = max(self._seq.get(topic, 0) + 1, time.time_ns() // 1000)
        self._seq[topic] = seq
        return seq

    async def _publish_states(self, client: aiomqtt.Client, queued: _Queued) -> None:
        results, queued.results = queued.results, []
        for result in results:
            topic = self.topics.for_result(result)
            payload = encode_payload(result, self._next_seq(topic))
            await client.publish(topic, payload, qos=result.qos, retain=result.retain)
            self.device_states_published += 1

    async def _device_states(self, client: aiomqtt.Client) -> None:
        """Publish the held devices' states until cancelled, then each as ``stopped``
        (a new connection publishes every state again: the broker may have lost them)."""
        assert self.devices is not None
        queued = _Queued()
        states = DeviceStates({}, self.devices.battery_of, [queued], clock_ns=self._clock_ns)
        try:
            while True:
                states.drivers = self.devices.held_drivers()
                states.check()
                await self._publish_states(client, queued)
                await asyncio.sleep(DEVICE_STATE_CHECK_S)  # a polling period, as in `run`
        except asyncio.CancelledError:
            states.drivers = self.devices.held_drivers()
            states.stop()
            with contextlib.suppress(aiomqtt.MqttError, OSError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._publish_states(client, queued)
            raise

    def set_athletes(self, athletes: Iterable[str]) -> None:
        """Take commands for ``athletes`` from now on (the central registry changed)."""
        self._athletes = {segment(a): a for a in athletes}

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with back-off (the gateway has no publisher
        connection to ride on, unlike ``run``'s listener); says ``offline`` on leaving."""
        backoff = network_backoff(self.config.reconnect_min_s, self.config.reconnect_max_s)
        delays = backoff.delays(random.Random())
        while True:
            try:
                await self._session()
            except (aiomqtt.MqttError, OSError, TimeoutError, MqttTlsError) as exc:
                self.on_link(False)
                _LOGGER.warning(
                    "gateway MQTT %s: %s", self.config.url, describe_failure(self.config, exc)
                )
            await asyncio.sleep(next(delays))

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
