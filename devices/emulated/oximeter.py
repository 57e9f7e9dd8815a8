"""An emulated pulse oximeter: Pulse Oximeter service 0x1822 (PLX profile).

Every ``period_s`` of emulated time (1 s by default, the rate of finger-clip oximeters) it
notifies one PLX Continuous Measurement (0x2A5F) with SpO2 and pulse rate. SpO2 wanders
around ``spo2_pct`` (97 % by default) by about ±1 %, pulse rate around ``pulse_bpm``; both
go on the wire as whole numbers, as oximeters display them. A recording (an iterable of
``(spo2 %, pulse bpm)`` pairs) replaces the generator.

The schedule counts from the oximeter's start (:attr:`EmulatedPeripheral.started_s`): on a
world with a clock it keeps its time on that clock and holds it at its next notification.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Unpack

import numpy as np
from bumble import gatt
from bumble.core import UUID

from devices import gatt as uuids
from devices.codecs import plx
from devices.emulated.peripheral import (
    SENT_LOG_LENGTH,
    EmulatedPeripheral,
    LinkOptions,
    notify_characteristic,
)
from devices.records import SpO2Sample

#: SpO2 cannot exceed 100 %; below 70 % finger oximeters are not calibrated.
SPO2_RANGE_PCT = (70.0, 100.0)


class PulseOximeter(EmulatedPeripheral):
    """Emulated PLX pulse oximeter.

    Args:
        name: advertised name.
        spo2_pct: mean SpO2 (%).
        pulse_bpm: mean pulse rate (bpm).
        readings: (SpO2 %, pulse bpm) pairs to replay instead, one per period.
        period_s: emulated seconds between notifications (> 0).
        seed: noise seed.
        speed, address, advertising_interval_ms: see :class:`EmulatedPeripheral`.

    Attributes:
        delivered: the samples actually notified (bounded), oldest first.
    """

    kind = "spo2"

    def __init__(
        self,
        name: str = "Oximeter EMU1",
        *,
        spo2_pct: float = 97.0,
        pulse_bpm: float = 62.0,
        readings: Iterable[tuple[float, float]] | None = None,
        period_s: float = 1.0,
        seed: int = 0,
        **link: Unpack[LinkOptions],
    ) -> None:
        super().__init__(name, **link)
        if period_s <= 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.period_s = period_s
        self._readings: Iterator[tuple[float, float]] = (
            iter(readings) if readings is not None else self._generated(spo2_pct, pulse_bpm, seed)
        )
        self.delivered: deque[SpO2Sample] = deque(maxlen=SENT_LOG_LENGTH)
        self._measurement = notify_characteristic(uuids.PLX_CONTINUOUS_MEASUREMENT)

    @staticmethod
    def _generated(spo2_pct: float, pulse_bpm: float, seed: int) -> Iterator[tuple[float, float]]:
        # A slow random walk pulled back to the mean: readings drift by a percent or so,
        # as they do at rest, instead of jumping independently every second.
        rng = np.random.default_rng(seed)
        spo2, pulse = spo2_pct, pulse_bpm
        while True:
            spo2 += 0.3 * (spo2_pct - spo2) + rng.normal(0.0, 0.5)
            pulse += 0.2 * (pulse_bpm - pulse) + rng.normal(0.0, 1.0)
            yield float(spo2), float(pulse)

    def build_services(self) -> Sequence[gatt.Service]:
        """The Pulse Oximeter service with its continuous measurement (notify)."""
        return [gatt.Service(uuids.PULSE_OXIMETER_SERVICE, [self._measurement])]

    def advertised_services(self) -> Sequence[UUID]:
        """The Pulse Oximeter service."""
        return [UUID(uuids.PULSE_OXIMETER_SERVICE)]

    def malformed(self, char: gatt.Characteristic[bytes], payload: bytes) -> bytes:
        """Flags and half of the SpO2 field (2 bytes)."""
        return payload[:2]

    async def run(self) -> None:
        """Notify one measurement per ``period_s``; stop when a replayed series ends."""
        low, high = SPO2_RANGE_PCT
        origin_s = self.started_s
        with self.pacing_clock():
            for tick, (spo2, pulse) in enumerate(self._readings, start=1):
                t_s = origin_s + tick * self.period_s
                await self.sleep_until(t_s)
                sample = SpO2Sample(
                    t_ns=round(t_s * 1e9),
                    spo2_pct=float(round(min(max(spo2, low), high))),
                    pulse_bpm=float(round(pulse)),
                )
                if await self.notify_intact(self._measurement, plx.encode(sample)):
                    self.delivered.append(sample)
