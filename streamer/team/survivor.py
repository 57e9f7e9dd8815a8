"""The survivor rule: who says ``stopped`` for the devices of a gateway that died without a
goodbye, and which devices — pure functions over what the broker's retained topics say,
shared by the gateways (:mod:`streamer.team.gateway_mqtt`) and the workers
(:mod:`streamer.team.worker_survivor`, when no gateway is left alive).

The facts come from mosquitto, not from a protocol of ours: each gateway's availability
(``<base>/gateway/<id>/state``: ``online``, or ``offline`` — its Last Will or its goodbye)
and its list of held devices (``<base>/gateway/<id>/devices``, emptied at a clean stop),
both retained; a worker's availability likewise (``<base>/worker/<id>/state``). A gateway
``offline`` whose list still names devices died without a goodbye. The live process with
the smallest id among its peers (gateways first; workers only when no gateway is
``online``) is the survivor: after a grace it says each listed device ``stopped`` — unless
it holds it itself or a gateway not ``offline`` lists it — with a ``seq`` above the listed
one, and clears the list. Two survivors whose views differ for a moment both say it: a
repeat with a higher ``seq``, harmless.

No I/O and no import of the MQTT modules here (they import this one).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Final, Protocol, TypeVar

from streamer.topics import Topics

if TYPE_CHECKING:
    from streamer.results import DeviceStatePayload, Result


class Listed(Protocol):
    """One device on a gateway's list (:class:`streamer.team.gateway_mqtt.Listed`): named
    here by what the rule reads, so that this module imports no MQTT module."""

    @property
    def athlete(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def topic(self) -> str: ...
    @property
    def state(self) -> DeviceStatePayload: ...
    @property
    def seq(self) -> int: ...


_L = TypeVar("_L", bound=Listed)

ONLINE: Final = b"online"
OFFLINE: Final = b"offline"


def online(states: Mapping[str, bytes]) -> set[str]:
    """The ids whose availability says ``online`` (``states``: id → the retained payload)."""
    return {who for who, state in states.items() if state == ONLINE}


def dead_with_devices(
    lists: Mapping[str, Sequence[Listed]], states: Mapping[str, bytes]
) -> list[str]:
    """The gateways ``offline`` whose list still names devices (died without a goodbye),
    sorted; ``lists``: gateway id → its listed devices."""
    return sorted(g for g, listed in lists.items() if listed and states.get(g) == OFFLINE)


def elected(me: str, alive: Collection[str]) -> bool:
    """Whether ``me`` is the survivor among the live peers ``alive`` (itself counted alive
    whatever they say: it runs): the smallest id."""
    return min({*alive, me}) == me


def orphaned(
    listed: Sequence[_L],
    lists: Mapping[str, Sequence[Listed]],
    states: Mapping[str, bytes],
    holding: Collection[tuple[str, str]] = (),
    *,
    topics: Topics,
) -> list[_L]:
    """The devices of a dead gateway's list (``listed``) to say ``stopped`` for: not held by
    the survivor itself (``holding``: (athlete, device) pairs) and on no list of a gateway
    that is not ``offline`` (``lists``, ``states`` as in :func:`dead_with_devices`) — a
    live holder owns the device's state. Only an item whose topic is its device's state
    topic (``topics``): a list is written by any gateway account, and a survivor — a
    worker may write every topic — must not publish where a forged list points it."""
    others = {
        (x.athlete, x.device)
        for g, items in lists.items()
        if states.get(g) != OFFLINE
        for x in items
    }
    return [
        x
        for x in listed
        if (x.athlete, x.device) not in holding
        and (x.athlete, x.device) not in others
        and x.topic == topics.device_state(x.athlete, x.device)
    ]


def stopped_result(item: Listed, problem: str, now_ns: int) -> Result:
    """The ``stopped`` state of listed device ``item`` (its listed state, not connected,
    ``problem`` naming the dead gateway), at ``now_ns``."""
    state = replace(item.state, connected=False, connection="stopped", problem=problem)
    return state.result(item.athlete, now_ns, item.device)


def seq_above(last: int, listed: int, now_us: int) -> int:
    """The ``seq`` of a survivor's message on a device's topic: its clock in µs
    (``now_us``), but at least one above its own ``last`` on that topic and above the
    ``seq`` the dead gateway ``listed`` — whatever the two clocks say, a consumer following
    docs/topics.md's ``seq`` rule keeps it."""
    return max(last + 1, listed + 1, now_us)
