"""An emulated Moxy muscle-oxygen (SmO2) sensor.

Service ``6404d801-…``, data characteristic ``6404d804-…`` (notify). Every
``period_s`` of emulated time (2 s by default, the Moxy's own rate) it notifies
``count, SmO2, previous SmO2, tHb, flag`` (see :mod:`devices.codecs.moxy`). SmO2 comes
from :func:`devices.emulated.signals.smo2_points`: it dips during the efforts of an
:class:`~devices.emulated.signals.EffortSchedule` and recovers with ``recovery_tau_s``,
or from a recording (any iterable of SmO2 percentages).

The schedule counts from the sensor's start (:attr:`EmulatedPeripheral.started_s`): on a
world with a clock it keeps its time on that clock and holds it at its next notification.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Unpack

from bumble import gatt
from bumble.core import UUID

from devices import gatt as uuids
from devices.codecs import moxy
from devices.emulated.peripheral import (
    SENT_LOG_LENGTH,
    EmulatedPeripheral,
    LinkOptions,
    notify_characteristic,
)
from devices.emulated.signals import (
    DEFAULT_SCHEDULE,
    DEFAULT_SMO2,
    EffortSchedule,
    SmO2Parameters,
    smo2_points,
)
from devices.records import SmO2Sample


class MoxySensor(EmulatedPeripheral):
    """Emulated Moxy SmO2 sensor.

    Args:
        name: advertised name.
        schedule: when efforts happen (emulated seconds from start).
        params: SmO2 levels and time constants (``recovery_tau_s`` sets recovery speed).
        smo2_pct: SmO2 values (%) to replay instead, one per period; tHb then stays at
            ``params.thb_gdl``.
        period_s: emulated seconds between notifications.
        seed: noise seed.
        speed, address, advertising_interval_ms: see :class:`EmulatedPeripheral`.

    Attributes:
        delivered: the samples actually notified (bounded), oldest first.
    """

    kind = "smo2"

    def __init__(
        self,
        name: str = "Moxy 1234",
        *,
        schedule: EffortSchedule = DEFAULT_SCHEDULE,
        params: SmO2Parameters = DEFAULT_SMO2,
        smo2_pct: Iterable[float] | None = None,
        period_s: float = 2.0,
        seed: int = 0,
        **link: Unpack[LinkOptions],
    ) -> None:
        super().__init__(name, **link)
        if period_s <= 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self.schedule = schedule
        self.params = params
        self.period_s = period_s
        self._levels: Iterator[tuple[float, float]] = (
            ((float(v), params.thb_gdl) for v in smo2_pct)
            if smo2_pct is not None
            else ((p.smo2_pct, p.thb_gdl) for p in smo2_points(schedule, params, period_s, seed))
        )
        self.delivered: deque[SmO2Sample] = deque(maxlen=SENT_LOG_LENGTH)
        self._data = notify_characteristic(uuids.MOXY_DATA)

    def build_services(self) -> Sequence[gatt.Service]:
        """The Moxy service with its data characteristic."""
        return [gatt.Service(uuids.MOXY_SERVICE, [self._data])]

    def advertised_services(self) -> Sequence[UUID]:
        """The Moxy service UUID."""
        return [UUID(uuids.MOXY_SERVICE)]

    def malformed(self, char: gatt.Characteristic[bytes], payload: bytes) -> bytes:
        """A notification cut short after the SmO2 field (5 of 9 bytes)."""
        return payload[:5]

    async def run(self) -> None:
        """Notify one sample per ``period_s``; stop when a replayed series ends."""
        previous: float | None = None
        origin_s = self.started_s
        with self.pacing_clock():
            for count, (smo2, thb) in enumerate(self._levels):
                t_s = origin_s + count * self.period_s
                await self.sleep_until(t_s)
                # The wire holds 0.1 % and 0.01 g/dL: keep the record what the wire says.
                smo2 = round(min(max(smo2, 0.0), 100.0), 1)
                sample = SmO2Sample(
                    t_ns=round(t_s * 1e9),
                    smo2_pct=smo2,
                    thb_gdl=round(thb, 2),
                    count=count & 0xFFFF,
                    previous_smo2_pct=smo2 if previous is None else previous,
                )
                previous = smo2
                if await self.notify_intact(self._data, moxy.encode(sample)):
                    self.delivered.append(sample)
