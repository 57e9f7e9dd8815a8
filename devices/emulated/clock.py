"""The one emulated clock of a world, and what a peripheral needs to keep its time on it.

Its own module so that the world (which hands the clock out) and the peripherals (which
keep their time on it) both import it without importing each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable


class EmulatedClock:
    """The one emulated clock of a world: seconds since it was made, running ``speed``
    times faster than real time, but never past a peripheral's hold.

    A peripheral that must send data at every emulated instant (a Progressor at 80 Hz)
    holds the clock at the time of its next packet (:meth:`held_at`); on a loaded machine
    emulated time then slows down instead of running ahead of the data, and whoever reads
    the clock (the guided session's deadlines, the driver's timestamps) sees the data of
    every instant up to now. Time that passes while held is not made up afterwards.

    Args:
        speed: emulated seconds per real second at most (> 0).
        real_s: the real clock it follows (monotonic seconds; the event loop's).
    """

    def __init__(self, speed: float = 1.0, *, real_s: Callable[[], float] = time.monotonic) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0 emulated seconds per real second, got {speed}")
        self.speed = float(speed)
        self._real_s = real_s
        self._epoch_ns = time.time_ns()
        self._last_s = 0.0  # emulated time at the last reading …
        self._last_real = real_s()  # … and the real time of that reading
        self._holds: dict[object, Callable[[], float]] = {}

    def now(self) -> float:
        """Emulated seconds since the clock was made (monotonic, continuous)."""
        real = self._real_s()
        t = self._last_s + (real - self._last_real) * self.speed
        if self._holds:
            t = max(self._last_s, min(t, *(hold() for hold in self._holds.values())))
        self._last_s, self._last_real = t, real
        return t

    def now_ns(self) -> int:
        """Emulated wall time, ns since the epoch (the real wall time when it was made)."""
        return self._epoch_ns + round(self.now() * 1e9)

    async def sleep_until(self, t_s: float) -> None:
        """Sleep until emulated time ``t_s``; returns at once if it has passed."""
        # A deadline, re-read after each sleep: a hold may have kept the clock back.
        while (now := self.now()) < t_s:  # noqa: ASYNC110
            await asyncio.sleep((t_s - now) / self.speed)

    @contextlib.contextmanager
    def held_at(self, frontier: Callable[[], float]) -> Iterator[None]:
        """While inside, the clock does not pass ``frontier()`` (emulated s)."""
        token = object()
        self.now()  # the time until here passed freely
        self._holds[token] = frontier
        try:
            yield
        finally:
            self.now()  # read while still held: the held time does not come back as a jump
            del self._holds[token]


@runtime_checkable
class UsesWorldClock(Protocol):
    """A peripheral that keeps its time on its world's :class:`EmulatedClock`."""

    def use_clock(self, clock: EmulatedClock) -> None: ...
