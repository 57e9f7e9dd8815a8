"""An emulated Activ5 isometric force sensor.

Service 0x5000, force characteristic 0xF0FE (notify). It notifies one reading every
``1 / rate_hz`` emulated seconds (10 Hz by default) for as long as a central is
subscribed: a train of maximal squeezes (:func:`devices.emulated.signals.grip_squeeze`)
separated by ``rest_s`` of rest; with ``session_drop`` (an emulated-world scenario,
:mod:`devices.emulated.scenario`) the peaks drop by a fraction from a time after the start
and recover with a time constant (:func:`devices.emulated.signals.grip_peak_after_session`).
Readings go on the wire in the sensor's 0.27156 N units
(:mod:`devices.codecs.activ5`), so :attr:`Activ5Sensor.delivered` holds what a receiver
decodes, not the unrounded force.

The schedule counts from the sensor's start (:attr:`EmulatedPeripheral.started_s`): on a
world with a clock it keeps its time on that clock and holds it at its next reading.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from itertools import count
from typing import Unpack

import numpy as np
from bumble import gatt
from bumble.core import UUID

from devices import gatt as uuids
from devices.codecs import activ5
from devices.emulated.peripheral import (
    SENT_LOG_LENGTH,
    EmulatedPeripheral,
    LinkOptions,
    notify_characteristic,
)
from devices.emulated.signals import grip_peak_after_session, grip_squeeze
from devices.records import ForceSample


class Activ5Sensor(EmulatedPeripheral):
    """Emulated Activ5.

    Args:
        name: advertised name.
        peak_kg: peak force of each squeeze (kg).
        rest_s: rest before each squeeze (emulated s).
        rate_hz: readings per emulated second (> 0).
        noise_kg: measurement noise (kg, standard deviation).
        session_drop: ``(drop_fraction, recovery_tau_s, at_s)``: from ``at_s`` emulated
            seconds after the start, each squeeze's peak is the post-session one.
        seed: noise seed.
        speed, address, advertising_interval_ms: see :class:`EmulatedPeripheral`.

    Attributes:
        delivered: the readings actually notified (bounded), oldest first, as decoded.
    """

    kind = "grip"

    def __init__(
        self,
        name: str = "ACTIV5-EMU1",
        *,
        peak_kg: float = 30.0,
        rest_s: float = 2.0,
        rate_hz: float = 10.0,
        noise_kg: float = 0.1,
        session_drop: tuple[float, float, float] | None = None,
        seed: int = 0,
        **link: Unpack[LinkOptions],
    ) -> None:
        super().__init__(name, **link)
        if rate_hz <= 0 or rest_s < 0 or peak_kg < 0:
            raise ValueError("rate_hz must be > 0, rest_s >= 0 and peak_kg >= 0")
        self.peak_kg = peak_kg
        self.rest_s = rest_s
        self.rate_hz = rate_hz
        self.noise_kg = noise_kg
        self.seed = seed
        if session_drop is not None:
            grip_peak_after_session(peak_kg, session_drop[0], 0.0, session_drop[1])  # validates
            if session_drop[2] < 0:
                raise ValueError(f"session_drop at_s must be >= 0, got {session_drop[2]}")
        self.session_drop = session_drop
        self.delivered: deque[ForceSample] = deque(maxlen=SENT_LOG_LENGTH)
        self._force = notify_characteristic(uuids.ACTIV5_FORCE)

    def build_services(self) -> Sequence[gatt.Service]:
        """The Activ5 service with its force characteristic."""
        return [gatt.Service(uuids.ACTIV5_SERVICE, [self._force])]

    def advertised_services(self) -> Sequence[UUID]:
        """The Activ5 service UUID."""
        return [UUID(uuids.ACTIV5_SERVICE)]

    def malformed(self, char: gatt.Characteristic[bytes], payload: bytes) -> bytes:
        """One byte of the two-byte reading."""
        return payload[:1]

    def peak_at(self, elapsed_s: float) -> float:
        """The squeeze peak (kg) ``elapsed_s`` emulated seconds after the start."""
        if self.session_drop is None or elapsed_s < self.session_drop[2]:
            return self.peak_kg
        drop, tau, at_s = self.session_drop
        return grip_peak_after_session(self.peak_kg, drop, elapsed_s - at_s, tau)

    def forces_kg(self) -> Iterator[float]:
        """The force (kg) at each reading: rest, squeeze, rest, squeeze, … without end."""
        rest = round(self.rest_s * self.rate_hz)
        n = 0  # readings so far
        for cycle in count():
            yield from [0.0] * rest
            n += rest
            squeeze = grip_squeeze(
                self.peak_at(n / self.rate_hz),
                self.rate_hz,
                noise_kg=self.noise_kg,
                seed=self.seed + cycle,
            )
            n += squeeze.size
            yield from (float(f) for f in np.asarray(squeeze))

    async def run(self) -> None:
        """Notify one reading per period while a central listens."""
        origin_s = self.started_s
        with self.pacing_clock():
            for tick, force in enumerate(self.forces_kg(), start=1):
                t_s = origin_s + tick / self.rate_hz
                await self.sleep_until(t_s)
                payload = activ5.encode(ForceSample(0, force))
                if await self.notify_intact(self._force, payload):
                    self.delivered.append(activ5.decode(payload, t_ns=round(t_s * 1e9)))
