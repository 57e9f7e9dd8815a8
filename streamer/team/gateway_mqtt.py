"""A gateway's MQTT side: its availability topic and the athletes' command topics.

One connection per gateway, client id ``redox-gateway-<id>``, with its own Last Will on
``<base>/gateway/<id>/state`` (``online`` / ``offline``, retained): one gateway dying
marks that gateway unavailable, never the whole club. Commands (``<base>/<athlete>/set/…``,
:mod:`streamer.app.commands_in`) are read through a **shared subscription**
(``$share/redox-gateways/…``, MQTT 5 and mosquitto's 3.1.1 alike): the broker hands each
command to exactly one of the gateways online, so a session start becomes one marker in
the athlete's stream however many gateways run.

A command taken is a marker in the gateway's outbox, which reaches the stream only over
the gateway's NATS link. So each gateway also says whether that link works, retained on
``<base>/gateway/<id>/stream`` (``up`` / ``down``: :func:`stream_topic`; ``down`` until it
first reached NATS, while NATS's client is disconnected, and from a publish that failed to
the next one acknowledged; said again every :data:`LINK_REFRESH_S`), and a gateway whose
link is down leaves the shared subscription while another gateway is ``online`` with an
``up`` heard within :data:`LINK_FRESH_S` — after :data:`LEAVE_GRACE_S`, checked again then
— and joins it again as soon as its link is back or no such gateway is left. A gateway
misconfigured or cut off from NATS alone then takes no commands to hold (a marker held past
the workers' fence, 20 s, behind another gateway's is dropped: a reading lost), and in a
NATS outage, which takes every gateway's link, they all keep taking them, held until NATS
is back — as before; the broker gives a shared subscription's message to nobody when no
member is left.

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

A gateway that dies without a goodbye (SIGKILL, power cut, link cut for good) makes none of
that: its devices' last states — ``connected`` — would stay retained for ever when no other
gateway takes the devices. So each gateway also keeps, retained on
``<base>/gateway/<id>/devices`` (:func:`held_devices_topic`), the devices it holds with
their latest state and the ``seq`` of each one's latest message — written ahead of every
round that publishes states (so once per 10 s refresh while a device is connected, more
on a change), a device leaving kept on it until its ``stopped`` is acknowledged; an empty
``devices`` list once it holds none, as after a clean stop — and every gateway reads the
others' lists and availability. A gateway ``offline`` (its Last Will) whose list still
names devices is dead without a goodbye; the gateway with the smallest id among those
``online`` (:meth:`GatewayCommands._sweep`) publishes ``stopped`` (``connected`` false,
``problem`` naming the dead gateway) for each of those devices that it does not hold itself
and no live gateway lists, then clears the dead one's list — so a survivor that starts
later, or a designated one that was dead too, is covered at the next sweep; one that met a
broker error keeps the list and tries again at its next 1 s round. Its ``seq`` is its own
clock in µs and above the one the dead gateway listed, so above any the dead gateway
published whatever the two clocks say (the list goes out before the states it numbers).
That ``stopped`` is not the survivor's own word on the device (it never held it): it is
not published again at the survivor's reconnection or restart.

A Last Will is not always a death: mosquitto also sends it when the same client id
connects again while it still holds the old connection — a Wi-Fi blip the gateway noticed
first. So the survivor waits :data:`DEATH_GRACE_S` and acts only while the gateway is still
``offline`` (checked again before each message and before the clear); the reconnected
gateway says ``online`` within a few round trips. Should a survivor act anyway (a grace too
short), the gateway undoes it: finding its own list cleared or replaced, or its own
``offline`` while it runs, it says ``online``, its list and each held device's state again
at its next 1 s round — for a consumer of the ``seq`` rule at once when the clocks agree, at
worst at the next 10 s refresh when the survivor's clock ran ahead. Not a shared
subscription (as for commands): when a
member of the group dies, mosquitto may hand its Last Will to that member's own closing
session, and nobody hears it (8 of 8 tries here with two members). Two gateways whose views
differ for a moment may both say ``stopped``: a repeat with a higher ``seq``, harmless.
A gateway restarted after its own death reads its previous list (another boot's,
:attr:`GatewayCommands.boot`) and treats those devices as held until it finds it does not
hold them: each then gets its ``stopped`` as a device leaving does — so a club of one
gateway is covered by that gateway's return — and when it never returns, the workers stand
in: with no gateway ``online``, the worker with the smallest live id takes the survivor's
role (:mod:`streamer.team.worker_survivor`), by the same rule (:mod:`streamer.team.survivor`,
the one place it is written). Why the gateways first: they already own the device-state
topics and their ``seq``, the broker's Last Will is the one sure news of a death, and the
rule needs no protocol of ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

import aiomqtt

from streamer import __version__
from streamer.app.commands_in import CommandListener
from streamer.app.device_state import DEVICE_STATE_CHECK_S, DeviceStates, DriverLike
from streamer.cancel import cancellation_kept
from streamer.config import MqttConfig
from streamer.payloads import encode_payload
from streamer.results import DeviceStatePayload, JsonValue, PayloadError, Result
from streamer.sinks.backoff import network_backoff
from streamer.sinks.mqtt_connect import (
    MqttTlsError,
    describe_failure,
    mqtt_client,
    tls_context,
)
from streamer.team import survivor
from streamer.team.gateway import availability_topic, gateway_mqtt
from streamer.team.outbox import KeptState
from streamer.topics import Topics, segment, slug

_LOGGER: Final = logging.getLogger(__name__)

SHARE_GROUP: Final = "redox-gateways"
"""The shared-subscription group every gateway joins for the command topics."""
ONLINE: Final = survivor.ONLINE
OFFLINE: Final = survivor.OFFLINE


DEATH_PROBLEM: Final = "gateway {gateway} went away without a goodbye (its Last Will)"
"""The ``problem`` of a ``stopped`` published for a dead gateway's device."""
DEATH_GRACE_S: Final = 2.0
"""How long the survivor waits after a gateway's ``offline`` before saying its devices
``stopped`` (s), re-checking that it is still ``offline``: mosquitto sends a client's Last
Will also when the same client id connects again while it still holds the old connection
(a Wi-Fi blip the gateway noticed first), and that gateway says ``online`` a few round trips
later. Long enough for those on a loaded Pi; short beside the keepalive a cut link waits."""


STREAM_UP: Final = b"up"
STREAM_DOWN: Final = b"down"
LEAVE_GRACE_S: Final = 2.0
"""How long a gateway whose NATS link went down waits before it leaves the commands' shared
subscription (s), then checks again that another gateway is ``online`` with its link ``up``:
gateways whose publishes fail together (a leader's election) each see the others' ``down``
within it, and stay. One with nothing to publish may not notice such a stall: it stays
``up`` and takes the commands, held in its outbox until NATS answers."""
LINK_REFRESH_S: Final = 10.0
"""How often a gateway says its link again (s), the same retained bytes."""
LINK_FRESH_S: Final = 3 * LINK_REFRESH_S
"""Another gateway's ``up`` counts this long after it arrived (s, this gateway's clock):
one that died without its Last Will yet (the broker waits 1.5 keepalives), or whose
retained ``online`` and ``up`` outlived it across a broker restart, stops counting here, and
a gateway whose own link is down takes the commands again."""


def stream_topic(base: str, gateway_id: str) -> str:
    """``<base>/gateway/<id>/stream``: ``up`` / ``down``, whether gateway ``gateway_id``'s
    link to the stream works (retained; see the module)."""
    return f"{base}/gateway/{gateway_id}/stream"


def held_devices_topic(base: str, gateway_id: str) -> str:
    """``<base>/gateway/<id>/devices``: the devices gateway ``gateway_id`` holds, with their
    latest state, retained (see the module)."""
    return f"{base}/gateway/{gateway_id}/devices"


@dataclass(frozen=True, slots=True)
class Listed:
    """One device on a gateway's list: its state topic, latest state and the ``seq`` of
    the latest state message the gateway made for it (0: a list of an older version)."""

    athlete: str
    device: str
    topic: str
    state: DeviceStatePayload
    seq: int = 0


def encode_list(boot: str, devices: Sequence[Listed]) -> bytes:
    """A gateway's list as JSON: ``{"boot": …, "devices": [{"athlete", "device", "topic",
    "seq", "state": {the state payload's fields}}]}``."""
    body = {
        "boot": boot,
        "devices": [
            {"athlete": d.athlete, "device": d.device, "topic": d.topic, "seq": d.seq,
             "state": d.state.fields()}
            for d in devices
        ],
    }  # fmt: skip
    return json.dumps(body, separators=(",", ":")).encode()


def decode_list(payload: bytes) -> tuple[str, list[Listed]]:
    """(boot, devices) of a gateway's list; an empty payload is an empty list. ValueError
    (naming what is wrong) for anything else."""
    if not payload:
        return "", []
    try:
        body = json.loads(payload)
        items: list[dict[str, JsonValue]] = body["devices"]
        out = [
            Listed(
                str(item["athlete"]),
                str(item["device"]),
                str(item["topic"]),
                DeviceStatePayload.from_fields(item["state"]),  # type: ignore[arg-type]
                int(item.get("seq", 0)),  # type: ignore[arg-type]
            )
            for item in items
        ]
        return str(body.get("boot", "")), out
    except (ValueError, KeyError, TypeError, AttributeError, PayloadError) as exc:
        raise ValueError(f"not a gateway's device list ({type(exc).__name__}: {exc})") from None


def _what_matters(state: DeviceStatePayload) -> DeviceStatePayload:
    """What a reader acts on (as :mod:`streamer.app.device_state` compares): the list is
    published again when this changes, not on every 10 s refresh."""
    seen = None if state.last_seen_ts_ns is None else 0
    return replace(state, last_seen_ts_ns=seen, reconnects=0, gaps=0)


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

    def adopt(self, listed: Iterable[Listed]) -> int:
        """Devices on this gateway's list of an earlier boot (one that died without a
        goodbye): held, as far as this process knows, until it finds it does not hold them
        (then each gets its ``stopped``). Devices it knows already are left as they are.
        Returns how many were adopted."""
        adopted = 0
        for item in listed:
            key = (item.athlete, item.device)
            if key in self.held or key in self.words:
                continue
            self.held[key] = item.state
            self.words[key] = KeptState(item.topic, item.athlete, item.device, b"")
            adopted += 1
        return adopted

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
        death_grace_s: float = DEATH_GRACE_S,
        leave_grace_s: float = LEAVE_GRACE_S,
    ) -> None:
        super().__init__(gateway_mqtt(config, gateway_id), athletes, offer, clock_ns=clock_ns)
        self.gateway_id = gateway_id
        self.state_topic = availability_topic(self.topics.base, gateway_id)
        self.stream_topic = stream_topic(self.topics.base, gateway_id)
        self.share_filter = f"$share/{SHARE_GROUP}/{self.topics.base}/+/set/+"
        self.leave_grace_s = leave_grace_s
        self._stream_up = False  # this gateway's NATS link (set_stream)
        self._streams: dict[str, tuple[bytes, float]] = {}
        """The other gateways' links (``up`` / ``down``) and when each arrived (loop s), by
        gateway id; this connection's only."""
        self._in_share = False  # on this connection (the share joined)
        self._share_wake = asyncio.Event()
        self.share_leaves = 0
        """Times this gateway left the commands' shared subscription (its link down)."""
        self.devices = devices
        self.keeper = keeper
        self.device_states_published = 0
        self._seq: dict[str, int] = {}
        self._stopping = False
        self._words = _LastWords(keeper.kept_device_states() if keeper is not None else ())
        self.boot = secrets.token_hex(8)
        """This process's mark on its list: a list with another is an earlier boot's."""
        self.list_topic = held_devices_topic(self.topics.base, gateway_id)
        self._listed: list[tuple[str, str, str, DeviceStatePayload, int]] | None = None
        """What matters of the list last published on this connection (None: not yet)."""
        self._lists: dict[str, list[Listed]] = {}
        """The other gateways' lists, by gateway id."""
        self._states: dict[str, bytes] = {}
        """The other gateways' availability (``online`` / ``offline``), by gateway id."""
        self._after_deaths: dict[str, asyncio.Task[None]] = {}
        """The clean-up under way per dead gateway (:meth:`_after_a_death`)."""
        self.death_grace_s = death_grace_s
        self.sessions = 0
        """Connections made (each one a session)."""
        self.deaths_cleaned = 0
        """Dead gateways' devices this gateway published ``stopped`` for."""
        self.deaths_called_off = 0
        """Clean-ups not done: the gateway said ``online`` again within the grace."""
        self.cleanups_failed = 0
        """Clean-ups that met a broker error (their list kept, tried again next round)."""
        self.reasserted = 0
        """Times this gateway found its own list or availability changed by another (a
        survivor that took it for dead) and said them again."""
        self._reassert = False
        """Set when that happened: the next round publishes ``online``, the list and every
        held device's state again."""

    def set_stream(self, up: bool) -> None:
        """The gateway's NATS link works (``up``) or not: said on :attr:`stream_topic` and
        the commands' shared subscription left or joined by it (see the module)."""
        if up != self._stream_up:
            self._stream_up = up
            self._share_wake.set()

    @property
    def taking_commands(self) -> bool:
        """Whether this gateway is in the commands' shared subscription now."""
        return self._in_share

    def peer_link(self, gateway_id: str) -> bytes | None:
        """Gateway ``gateway_id``'s link as last heard on this connection (None: not heard)."""
        heard = self._streams.get(gateway_id)
        return None if heard is None else heard[0]

    def _healthy_until(self, now: float) -> float | None:
        """Until when (loop s) another gateway counts as ``online`` with its link ``up``
        (:data:`LINK_FRESH_S`); None: none does now."""
        until = [
            at + LINK_FRESH_S
            for g, (link, at) in self._streams.items()
            if link == STREAM_UP and self._states.get(g) == ONLINE and at + LINK_FRESH_S > now
        ]
        return max(until, default=None)

    def _wants_commands(self, now: float) -> bool:
        """Its link up, or no other gateway ``online`` with its link ``up``."""
        return self._stream_up or self._healthy_until(now) is None

    async def _keep_share(self, client: aiomqtt.Client) -> None:
        """Say this gateway's link (again every :data:`LINK_REFRESH_S`), and keep its
        membership of the commands' shared subscription as :meth:`_wants_commands` says:
        joined at once, left after :attr:`leave_grace_s` if still so."""
        loop = asyncio.get_running_loop()
        said: bytes | None = None
        said_at = 0.0
        leave_at: float | None = None
        while True:
            self._share_wake.clear()
            link = STREAM_UP if self._stream_up else STREAM_DOWN
            if link != said or loop.time() - said_at >= LINK_REFRESH_S:
                await self._publish(client, self.stream_topic, link)
                said, said_at = link, loop.time()
            now = loop.time()
            if self._wants_commands(now):
                leave_at = None
                if not self._in_share:
                    with cancellation_kept():
                        await client.subscribe(self.share_filter, qos=1)
                    self._in_share = True
                    _LOGGER.info("gateway %s: taking commands again", self.gateway_id)
            elif self._in_share:
                if leave_at is None:
                    leave_at = now + self.leave_grace_s
                elif now >= leave_at:
                    with cancellation_kept():
                        await client.unsubscribe(self.share_filter)
                    self._in_share = False
                    self.share_leaves += 1
                    leave_at = None
                    _LOGGER.warning(
                        "gateway %s: its NATS link is down and another gateway's is up: "
                        "commands are left to the others until it is back",
                        self.gateway_id,
                    )
                    continue
            # Wake for the leave, the next refresh, or the healthy gateways' going stale.
            wake_at = [said_at + LINK_REFRESH_S]
            if leave_at is not None:
                wake_at.append(leave_at)
            if not self._stream_up and (healthy := self._healthy_until(now)) is not None:
                wake_at.append(healthy)
            wait_s = max(0.0, min(wake_at) - loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._share_wake.wait()

    def _next_seq(self, topic: str, above: int = 0) -> int:
        """The clock in µs, at least one above the topic's last number and above ``above``
        (see the module)."""
        seq = survivor.seq_above(self._seq.get(topic, 0), above, time.time_ns() // 1000)
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

    @staticmethod
    async def _publish(client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        """One message, retained, QoS 1 (everything this gateway says is): a stop that
        arrives with the PUBACK is kept (see :func:`cancellation_kept`), so that a gateway
        stopped then, or a states task cancelled then, does not run on."""
        with cancellation_kept():
            await client.publish(topic, payload, qos=1, retain=True)

    async def _publish_state(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        """One device's state message (every path that says a state)."""
        await self._publish(client, topic, payload)
        self.device_states_published += 1

    async def _publish_states(self, client: aiomqtt.Client, queued: _Queued) -> None:
        results, queued.results = queued.results, []
        made = self._make(results)
        leaving = {
            (m.athlete, m.device): (m.topic, r.payload_as(DeviceStatePayload))
            for r, m in zip(results, made, strict=True)
            if (m.athlete, m.device) not in self._words.held
        }
        # The list goes ahead of the states, naming the seq each is about to carry: a
        # survivor's `stopped` then goes above any seq this gateway published, whatever
        # the clocks say. A device leaving stays on it until its `stopped` is acknowledged.
        await self._publish_list(client, leaving)
        for state in made:
            await self._publish_state(client, state.topic, state.payload)
        if leaving:
            await self._publish_list(client)

    async def _publish_list(
        self,
        client: aiomqtt.Client,
        leaving: Mapping[tuple[str, str], tuple[str, DeviceStatePayload]] | None = None,
    ) -> None:
        """This gateway's list (see the module) — the devices held, and ``leaving`` (key →
        topic and state) — when what matters of it or a ``seq`` changed since the last on
        this connection."""
        entries = {
            key: (self._words.words[key].topic, state) for key, state in self._words.held.items()
        }
        entries.update(leaving or {})
        listed = [
            Listed(a, d, topic, state, self._seq.get(topic, 0))
            for (a, d), (topic, state) in sorted(entries.items())
        ]
        matters = [(x.athlete, x.device, x.topic, _what_matters(x.state), x.seq) for x in listed]
        if matters == self._listed:
            return
        await self._publish(client, self.list_topic, encode_list(self.boot, listed))
        self._listed = matters

    def _read_list(self, client: aiomqtt.Client, gateway_id: str, payload: bytes) -> None:
        """A gateway's list arrived: an earlier boot's own is adopted (see the module),
        another gateway's kept for when it dies."""
        try:
            boot, listed = decode_list(payload)
        except ValueError as exc:
            topic = held_devices_topic(self.topics.base, gateway_id)
            _LOGGER.warning("%s: %s; ignored", topic, exc)
            return
        if gateway_id != self.gateway_id:
            if listed:
                self._lists[gateway_id] = listed
            else:
                self._lists.pop(gateway_id, None)
            self._sweep(client)
            return
        if boot != self.boot:
            for item in listed:  # its next numbers go above that boot's
                self._seq[item.topic] = max(self._seq.get(item.topic, 0), item.seq)
            if adopted := self._words.adopt(listed):
                _LOGGER.info(
                    "%d devices on this gateway's list from before its restart: each gets a "
                    "`stopped` state unless it is held again",
                    adopted,
                )
        if self._listed is not None and boot != self.boot:
            # Published on this connection, and now another's (or cleared): a survivor
            # took this gateway for dead (its Last Will sent at a reconnection). Say it all
            # again; the survivor's `stopped` may have reached the held devices.
            self._mark_reassert("its list was cleared or replaced by another gateway")

    def _read_state(self, client: aiomqtt.Client, gateway_id: str, payload: bytes) -> None:
        """A gateway's availability arrived (``offline``: perhaps its Last Will) — this
        gateway's own ``offline`` while it runs is its Last Will sent at a reconnection."""
        if gateway_id != self.gateway_id:
            self._states[gateway_id] = payload
            self._share_wake.set()
            self._sweep(client)
        elif payload == OFFLINE and not self._stopping:
            self._mark_reassert("its Last Will was sent while it runs")

    def _read_stream(self, gateway_id: str, payload: bytes) -> None:
        """Another gateway's NATS link (``up`` / ``down``) arrived."""
        if gateway_id != self.gateway_id:
            self._streams[gateway_id] = (payload, asyncio.get_running_loop().time())
            self._share_wake.set()

    def _mark_reassert(self, why: str) -> None:
        if not self._reassert:
            _LOGGER.warning(
                "gateway %s: %s (a reconnection with its client id while the broker held the "
                "old connection): its availability, list and devices' states said again",
                self.gateway_id,
                why,
            )
        self._reassert = True

    def _sweep(self, client: aiomqtt.Client) -> None:
        """Clean up after each gateway ``offline`` whose list still names devices — when
        this gateway has the smallest id of those ``online`` (see the module)."""
        dead = [
            g
            for g in survivor.dead_with_devices(self._lists, self._states)
            if g not in self._after_deaths
        ]
        if not dead or self.devices is None:
            return
        if not survivor.elected(self.gateway_id, survivor.online(self._states)):
            return
        for gateway_id in dead:
            listed = self._lists.pop(gateway_id)  # taken now: one clean-up per death
            task = asyncio.create_task(
                self._after_a_death(client, gateway_id, listed), name="after a death"
            )
            self._after_deaths[gateway_id] = task
            task.add_done_callback(functools.partial(self._clean_up_done, gateway_id))

    def _clean_up_done(self, gateway_id: str, task: asyncio.Task[None]) -> None:
        if self._after_deaths.get(gateway_id) is task:
            del self._after_deaths[gateway_id]
        if not task.cancelled() and (exc := task.exception()) is not None:
            _LOGGER.error("clean-up after gateway %s failed: %r", gateway_id, exc, exc_info=exc)

    async def _after_a_death(
        self, client: aiomqtt.Client, gateway_id: str, listed: Sequence[Listed]
    ) -> None:
        """``stopped`` for each device on dead ``gateway_id``'s list (``listed``) that this
        gateway does not hold and no live gateway lists (it owns the device's state now),
        then the dead one's list cleared: said once — unless the gateway says ``online``
        within :attr:`death_grace_s` or before the end (it was not dead: its Last Will went
        out at a reconnection). Each ``seq`` is above the one the dead gateway listed. A
        broker error puts the list back: the next round (:meth:`_device_states`) tries
        again."""
        assert self.devices is not None
        # A grace, not a synchronisation: the gateway's `online` would follow its Will
        # within a few round trips if the Will came from its own reconnection.
        await asyncio.sleep(self.death_grace_s)
        problem = DEATH_PROBLEM.format(gateway=gateway_id)
        said = 0
        try:
            if self._states.get(gateway_id) != OFFLINE:
                return self._called_off(gateway_id, listed)
            holding = {(a, d) for a, items in self.devices.held_drivers().items() for d, _ in items}
            for x in survivor.orphaned(
                listed, self._lists, self._states, holding, topics=self.topics
            ):
                if self._states.get(gateway_id) != OFFLINE:
                    return self._called_off(gateway_id, listed)
                result = survivor.stopped_result(x, problem, self._clock_ns())
                # Not this gateway's word on the device (not in `_words`): it never held
                # it, and must not publish it again after a reconnect or a restart.
                payload = encode_payload(result, self._next_seq(x.topic, above=x.seq))
                await self._publish_state(client, x.topic, payload)
                self.deaths_cleaned += 1
                said += 1
            if self._states.get(gateway_id) != OFFLINE:
                return self._called_off(gateway_id, listed)
            await self._publish(client, held_devices_topic(self.topics.base, gateway_id), b"")
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
            self.cleanups_failed += 1
            self._lists.setdefault(gateway_id, list(listed))
            _LOGGER.warning(
                "gateway %s went away without a goodbye; saying its devices stopped failed "
                "(%s): tried again",
                gateway_id,
                exc,
            )
            return None
        _LOGGER.info(
            "gateway %s went away without a goodbye: %d of its devices said stopped",
            gateway_id,
            said,
        )
        return None

    def _called_off(self, gateway_id: str, listed: Sequence[Listed]) -> None:
        """``gateway_id`` is back: its list kept (unless it sent a newer one)."""
        self.deaths_called_off += 1
        self._lists.setdefault(gateway_id, list(listed))
        _LOGGER.info(
            "gateway %s said offline, then online again (a reconnection): its devices left "
            "as it says",
            gateway_id,
        )

    async def _republish_last_words(
        self, client: aiomqtt.Client, held: Mapping[str, Sequence[tuple[str, DriverLike]]]
    ) -> None:
        """The latest word of each device not held now, as made (the broker may have lost
        it); a device another gateway holds now is forgotten instead (its state is the
        holder's)."""
        self._make(await self._leaving(held))
        holding = {(a, d) for a, items in held.items() for d, _ in items}
        # The held ones' fresh states follow at once.
        words = [
            w for key, w in self._words.words.items() if key not in holding and w.payload
        ]  # (an adopted device has no message of this process yet: its `stopped` comes)
        for word, elsewhere in zip(words, await self._held_elsewhere(words), strict=True):
            if elsewhere:
                self._words.forget((word.athlete, word.device))
                continue
            await self._publish_state(client, word.topic, word.payload)

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
        self._listed = None  # a new connection: the list goes out again
        self._reassert = False  # …and every state: this connection's first round
        try:
            await self._republish_last_words(client, self.devices.held_drivers())
            while True:
                if self._reassert:  # taken for dead by a survivor (see _read_list)
                    self._reassert = False
                    self.reasserted += 1
                    await self._publish(client, self.state_topic, ONLINE)
                    self._listed = None
                    states = DeviceStates(  # nothing sent yet: every held state is due
                        {}, self.devices.battery_of, [queued], clock_ns=self._clock_ns
                    )
                states.drivers = self.devices.held_drivers()
                queued.accept(await self._leaving(states.drivers))
                states.check()
                await self._publish_states(client, queued)
                self._sweep(client)  # a clean-up that failed is tried again
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
                    with cancellation_kept():  # e.g. one swallowed at the disconnect
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
        async with contextlib.AsyncExitStack() as stack:
            # A stop that arrives with CONNACK, a SUBACK or a PUBACK here is kept: the
            # session would otherwise go on to listen until the next stop.
            with cancellation_kept():
                await stack.enter_async_context(client)
                self.sessions += 1
                self._listed = None  # nothing published on this connection yet (see _read_list)
                # Commands are taken from the start, and left once the others' links say so
                # (_keep_share).
                await client.subscribe(self.share_filter, qos=1)
                self._in_share = True
                self._streams.clear()  # heard again, retained, on this connection
                await self._publish(client, self.state_topic, ONLINE)
                if self.config.ha_discovery:
                    # Retained, the same bytes on every connect: one config per gateway,
                    # made by the only process that knows the gateway exists.
                    topic, config = discovery_config(self.topics, self.gateway_id)
                    await self._publish(client, topic, json.dumps(config).encode())
                lists = held_devices_topic(self.topics.base, "+")
                states_filter = availability_topic(self.topics.base, "+")
                links = stream_topic(self.topics.base, "+")
                # The others' availability and links, retained (after this gateway's own
                # `online`: its `offline` of a stop before is not news) and lists.
                await client.subscribe(states_filter, qos=1)
                await client.subscribe(links, qos=1)
                if self.devices is not None:
                    await client.subscribe(lists, qos=1)
            self.subscribed.set()
            reader = asyncio.create_task(
                self._read_messages(client, lists, states_filter, links),
                name="gateway mqtt reader",
            )
            share = asyncio.create_task(self._keep_share(client), name="command share")
            tasks = [reader, share]
            states = None
            if self.devices is not None:
                states = asyncio.create_task(self._device_states(client), name="device states")
                tasks.append(states)
            try:
                # Either ending ends the session: a connection whose states task failed
                # (a PUBACK timed out) must not go on without the devices' states.
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
                raise aiomqtt.MqttError("the broker closed the connection")
            except asyncio.CancelledError:
                self._stopping = True
                reader.cancel()
                if states is not None:  # the devices' last word: stopped
                    states.cancel()
                    await asyncio.gather(states, return_exceptions=True)
                # A clean disconnect sends no Last Will: say offline ourselves.
                with contextlib.suppress(aiomqtt.MqttError, OSError, TimeoutError):
                    async with asyncio.timeout(2.0):
                        await self._publish(client, self.state_topic, OFFLINE)
                raise
            finally:
                self._in_share = False
                for task in tasks:  # the connection is gone: the next one starts again
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                cleanups = list(self._after_deaths.values())
                for task in cleanups:  # on this connection's client
                    task.cancel()
                await asyncio.gather(*cleanups, return_exceptions=True)

    async def _read_messages(
        self, client: aiomqtt.Client, lists: str, states_filter: str, links: str
    ) -> None:
        """The connection's messages: gateways' lists, availability and links, commands."""
        async for message in client.messages:
            topic = str(message.topic)
            payload = message.payload
            data = payload if isinstance(payload, bytes) else str(payload or "").encode()
            if message.topic.matches(lists):
                self._read_list(client, topic.split("/")[-2], data)
            elif message.topic.matches(states_filter):
                self._read_state(client, topic.split("/")[-2], data)
            elif message.topic.matches(links):
                self._read_stream(topic.split("/")[-2], data)
            else:
                self.handle(topic, message.payload, retained=message.retain)
