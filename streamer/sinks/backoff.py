"""Retry policies of the network side, as data: one table of :class:`Backoff` values.

There is one back-off in the project, :class:`devices.policy.Backoff` (exponential from
``initial_s`` by ``multiplier``, capped at ``max_s``, randomised by a :class:`Jitter`);
the drivers use it from there and everything in ``streamer`` imports it from here. A user
takes a fresh ``backoff.delays(rng)`` iterator for each outage and starts a new one once a
connection or write has succeeded.

The sinks' policies use :attr:`Jitter.EQUAL` (each delay between half and all of its
ceiling): many streamers that lost the same broker do not come back in lock-step, and a
refusing server is never retried faster than half the nominal delay.
"""

from __future__ import annotations

from typing import Final

from devices.policy import Backoff, Jitter

__all__ = [
    "NOTIFY_RECONNECT",
    "SINK_RESTART",
    "Backoff",
    "Jitter",
    "network_backoff",
]


def network_backoff(initial_s: float, max_s: float) -> Backoff:
    """The sinks' policy between ``initial_s`` and ``max_s`` (the MQTT publisher's
    ``reconnect_*_s``, the InfluxDB writer's ``retry_*_s``): doubling, equal jitter."""
    return Backoff(initial_s, max_s, multiplier=2.0, jitter=Jitter.EQUAL)


NOTIFY_RECONNECT: Final = Backoff(1.0, 30.0, multiplier=2.0, jitter=Jitter.EQUAL)
"""``redox-streamer notify`` between attempts to reach its broker."""

SINK_RESTART: Final = Backoff(0.5, 10.0, multiplier=2.0, jitter=Jitter.NONE)
"""The pipeline restarting a sink whose ``run()`` failed (a bug, not an outage)."""
