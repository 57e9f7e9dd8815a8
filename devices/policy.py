"""Reconnection and retry policy as data: one table, no ``sleep`` calls scattered in drivers.

A :class:`ConnectionPolicy` says how a driver connects (timeout, quick attempts handed to
``bleak_retry_connector.establish_connection``), how it backs off between failed or lost
connections (:class:`Backoff`), when its watchdog calls a silent link dead
(``stale_after_s``) and when a link counts as healthy again (``stable_after_s``, which
resets the backoff). Each device model's default is in its row of
:data:`devices.models.MODELS`; tests and the demo build their own fast policies with
:func:`dataclasses.replace`.

Everything here is pure: delays come from a caller-supplied :class:`random.Random`, so a
seeded generator makes a run repeatable.

:class:`Backoff` is the project's only back-off: the drivers use it here, and the network
side (MQTT publisher, notifier, InfluxDB writer, the pipeline's sink restarts) takes it
from :mod:`streamer.sinks.backoff`, which names its policies. It lives in ``devices`` because
``devices`` must not import ``streamer``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum


class Jitter(Enum):
    """How a backoff delay is randomised so that many devices do not retry in lock-step."""

    NONE = "none"
    """Exactly the exponential ceiling: ``initial · multiplierⁿ`` capped at ``max``."""
    FULL = "full"
    """Uniform in ``[0, ceiling]`` ("full jitter"); mean is half the ceiling."""
    EQUAL = "equal"
    """Uniform in ``[ceiling / 2, ceiling]`` ("equal jitter"): never less than half the
    ceiling, so a server that refuses is not hammered."""
    DECORRELATED = "decorrelated"
    """Uniform in ``[initial, previous · multiplier]``, capped ("decorrelated jitter")."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter, in seconds.

    ``delays(rng)`` yields the wait before retry 0, 1, 2, … of one outage; a driver starts
    a fresh iterator once a link has been stable (see :class:`ConnectionPolicy`).
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0
    jitter: Jitter = Jitter.FULL

    def __post_init__(self) -> None:
        if not self.initial_s > 0:
            raise ValueError(f"Backoff.initial_s must be > 0 s, got {self.initial_s!r}")
        if not self.max_s >= self.initial_s:
            raise ValueError(
                f"Backoff.max_s ({self.max_s!r} s) must be >= initial_s ({self.initial_s!r} s)"
            )
        if not self.multiplier >= 1:
            raise ValueError(f"Backoff.multiplier must be >= 1, got {self.multiplier!r}")

    def ceiling_s(self, attempt: int) -> float:
        """The un-jittered delay before retry ``attempt`` (0-based), in seconds."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        delay = self.initial_s
        # Multiply step by step and stop at the cap: initial·multiplier**attempt overflows
        # a float long before a real outage runs out of attempts.
        for _ in range(attempt):
            delay *= self.multiplier
            if delay >= self.max_s:
                return self.max_s
        return min(delay, self.max_s)

    def delays(self, rng: random.Random) -> Iterator[float]:
        """Endless delays in seconds for consecutive retries of one outage."""
        attempt = 0
        previous = self.initial_s
        while True:
            if self.jitter is Jitter.NONE:
                delay = self.ceiling_s(attempt)
            elif self.jitter is Jitter.FULL:
                delay = rng.uniform(0.0, self.ceiling_s(attempt))
            elif self.jitter is Jitter.EQUAL:
                ceiling = self.ceiling_s(attempt)
                delay = rng.uniform(ceiling / 2, ceiling)
            else:
                upper = min(self.max_s, previous * self.multiplier)
                delay = rng.uniform(self.initial_s, max(self.initial_s, upper))
                previous = delay
            yield delay
            attempt += 1


@dataclass(frozen=True, slots=True)
class ConnectionPolicy:
    """How one driver connects, notices a dead link and backs off; times in seconds."""

    backoff: Backoff = field(default_factory=Backoff)
    connect_timeout_s: float = 30.0
    """Bound on one connect-and-subscribe, all quick attempts included."""
    connect_attempts: int = 2
    """Quick attempts inside one connect (``establish_connection(max_attempts=…)``)."""
    stale_after_s: float | None = None
    """The watchdog reconnects after this long without a notification; ``None``: never."""
    stable_after_s: float = 30.0
    """A link that lasted this long resets the backoff to its first step."""
    scan_timeout_s: float = 10.0
    """How long to scan for a device known only by address before connecting."""

    def __post_init__(self) -> None:
        if not self.connect_timeout_s > 0:
            raise ValueError(f"connect_timeout_s must be > 0 s, got {self.connect_timeout_s!r}")
        if self.connect_attempts < 1:
            raise ValueError(f"connect_attempts must be >= 1, got {self.connect_attempts!r}")
        if self.stale_after_s is not None and not self.stale_after_s > 0:
            raise ValueError(f"stale_after_s must be > 0 s or None, got {self.stale_after_s!r}")
        if not self.stable_after_s >= 0:
            raise ValueError(f"stable_after_s must be >= 0 s, got {self.stable_after_s!r}")
        if not self.scan_timeout_s > 0:
            raise ValueError(f"scan_timeout_s must be > 0 s, got {self.scan_timeout_s!r}")
