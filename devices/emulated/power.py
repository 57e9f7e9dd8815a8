"""An emulated cycling power meter: Cycling Power service 0x1818.

Characteristics: Cycling Power Measurement 0x2A63 (notify), Cycling Power Feature 0x2A65
(read) and Sensor Location 0x2A5D (read), as the service requires. Every ``period_s`` of
emulated time it notifies instantaneous power (W) with crank revolution data (cumulative
revolutions, last crank event time in 1/1024 s) at ``cadence_rpm``. Power follows
:func:`devices.emulated.signals.power_watts` on an effort schedule, or a recording (any
iterable of watts, one per period).

The schedule and the crank count start at the meter's start
(:attr:`EmulatedPeripheral.started_s`): on a world with a clock it keeps its time on that
clock and holds it at its next notification.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Unpack

from bumble import gatt
from bumble.core import UUID

from devices import gatt as uuids
from devices.codecs import cycling_power
from devices.emulated.peripheral import (
    SENT_LOG_LENGTH,
    EmulatedPeripheral,
    LinkOptions,
    notify_characteristic,
)
from devices.emulated.signals import DEFAULT_SCHEDULE, EffortSchedule, power_watts
from devices.records import CyclingPowerDetail, PowerSample

CYCLING_POWER_FEATURE = uuids.uuid16(0x2A65)
SENSOR_LOCATION = uuids.uuid16(0x2A5D)
#: Cycling Power Feature bit 3: crank revolution data supported.
FEATURE_CRANK_DATA = 1 << 3
#: Sensor Location 5: left crank.
LOCATION_LEFT_CRANK = 5
#: Crank event times are uint16 in 1/1024 s: they roll over every 64 s.
_CRANK_TIME_UNITS = 1024


class PowerMeter(EmulatedPeripheral):
    """Emulated cycling power meter.

    Args:
        name: advertised name.
        schedule: when efforts happen (emulated seconds from start).
        rest_w, effort_w, noise_w: power levels and noise (W).
        power_w: watts to replay instead, one per period.
        cadence_rpm: crank cadence (rev/min, > 0).
        period_s: emulated seconds between notifications.
        seed: noise seed.
        speed, address, advertising_interval_ms: see :class:`EmulatedPeripheral`.

    Attributes:
        delivered: the samples actually notified (bounded), oldest first.
    """

    kind = "power"

    def __init__(
        self,
        name: str = "Power EMU",
        *,
        schedule: EffortSchedule = DEFAULT_SCHEDULE,
        rest_w: float = 120.0,
        effort_w: float = 320.0,
        noise_w: float = 8.0,
        power_w: Iterable[int] | None = None,
        cadence_rpm: float = 90.0,
        period_s: float = 1.0,
        seed: int = 0,
        **link: Unpack[LinkOptions],
    ) -> None:
        super().__init__(name, **link)
        if period_s <= 0 or cadence_rpm <= 0:
            raise ValueError("period_s and cadence_rpm must be > 0")
        self.schedule = schedule
        self.cadence_rpm = cadence_rpm
        self.period_s = period_s
        self._watts: Iterator[int] = (
            (int(w) for w in power_w)
            if power_w is not None
            else (w for _, w in power_watts(schedule, rest_w, effort_w, noise_w, period_s, seed))
        )
        self.delivered: deque[PowerSample] = deque(maxlen=SENT_LOG_LENGTH)
        self._measurement = notify_characteristic(uuids.CYCLING_POWER_MEASUREMENT)

    def build_services(self) -> Sequence[gatt.Service]:
        """Cycling Power: measurement (notify), feature and sensor location (read)."""
        feature = gatt.Characteristic(
            CYCLING_POWER_FEATURE,
            gatt.Characteristic.Properties.READ,
            gatt.Characteristic.READABLE,
            FEATURE_CRANK_DATA.to_bytes(4, "little"),
        )
        location = gatt.Characteristic(
            SENSOR_LOCATION,
            gatt.Characteristic.Properties.READ,
            gatt.Characteristic.READABLE,
            bytes([LOCATION_LEFT_CRANK]),
        )
        return [gatt.Service(uuids.CYCLING_POWER_SERVICE, [self._measurement, feature, location])]

    def advertised_services(self) -> Sequence[UUID]:
        """The Cycling Power service."""
        return [UUID(uuids.CYCLING_POWER_SERVICE)]

    def malformed(self, char: gatt.Characteristic[bytes], payload: bytes) -> bytes:
        """Flags and half of the power field (3 bytes)."""
        return payload[:3]

    def crank_detail(self, t_s: float) -> CyclingPowerDetail:
        """Cumulative crank revolutions and the last crank event time ``t_s`` emulated
        seconds after the meter started."""
        revolutions = math.floor(t_s * self.cadence_rpm / 60.0)
        event_s = revolutions * 60.0 / self.cadence_rpm
        units = round(event_s * _CRANK_TIME_UNITS) & 0xFFFF
        return CyclingPowerDetail(
            crank_revolutions=revolutions & 0xFFFF,
            crank_event_time_s=units / _CRANK_TIME_UNITS,
        )

    async def run(self) -> None:
        """Notify one measurement per ``period_s``; stop when a replayed series ends."""
        origin_s = self.started_s
        with self.pacing_clock():
            for tick, watts in enumerate(self._watts, start=1):
                elapsed_s = tick * self.period_s
                t_s = origin_s + elapsed_s
                await self.sleep_until(t_s)
                sample = PowerSample(
                    t_ns=round(t_s * 1e9),
                    power_w=watts,
                    flags=cycling_power.CRANK_DATA,
                    detail=self.crank_detail(elapsed_s),
                )
                if await self.notify_intact(self._measurement, cycling_power.encode(sample)):
                    self.delivered.append(sample)
