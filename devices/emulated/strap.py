"""An emulated chest strap (Polar H10-like): Heart Rate service + Battery service.

Every ``notify_period_s`` of emulated time (1 s, like a Polar H10) the strap sends one
Heart Rate Measurement (0x2A37) carrying the RR intervals of the beats that ended since
the previous notification — zero, one or several, oldest first, never more than fit in a
23-byte ATT MTU (9); a longer backlog is split over several notifications. The RR values
sum to the elapsed time, so a receiver rebuilds the beat timeline from them, not from
arrival times. RR goes on the wire rounded to the nearest 1/1024 s.

RR comes from a recording (any iterable of milliseconds, e.g.
:func:`devices.emulated.recordings.nsr2db_rr_ms`) or, by default, from
:func:`devices.emulated.signals.rr_beats` with chosen HR, HRV and ectopic rate. When a
finite recording runs out the strap reports lost skin contact and no RR.

The schedule counts from the strap's start (:attr:`EmulatedPeripheral.started_s`): on a
world with a clock it keeps its time on that clock and holds it at its next notification.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Unpack

from bumble import gatt
from bumble.core import UUID
from bumble.device import Connection

from devices import gatt as uuids
from devices.codecs import battery, heart_rate
from devices.emulated.peripheral import (
    SENT_LOG_LENGTH,
    EmulatedPeripheral,
    LinkOptions,
    notify_characteristic,
)
from devices.emulated.signals import DEFAULT_RR, RRParameters, rr_beats
from devices.records import (
    BatteryLevel,
    BodySensorLocation,
    HeartRateSample,
    SensorContact,
    SensorLocation,
)

#: RR intervals per notification: (23-byte MTU − 3 ATT header − flags − uint8 HR) / 2.
MAX_RR_PER_PACKET = 9
#: How many recent RR intervals the reported HR averages (a smoothed HR, like straps send).
HR_AVERAGE_BEATS = 4


class ChestStrap(EmulatedPeripheral):
    """Emulated heart-rate chest strap.

    Args:
        name: advertised name.
        rr_ms: RR intervals to replay (ms), oldest first; default: generated.
        rr_params: generator parameters when ``rr_ms`` is not given.
        seed: generator seed.
        battery_pct: initial Battery Level (%).
        notify_period_s: emulated seconds between notifications.
        speed, address, advertising_interval_ms: see :class:`EmulatedPeripheral`.

    Attributes:
        delivered: the Heart Rate Measurement records actually notified (not corrupted,
            not lost to silence), oldest first, bounded to the last 10 000.
        rr_emitted_ms: every RR interval the strap's heart produced (ms, bounded),
            delivered or not: compare with :attr:`delivered` to see what a gap lost.
    """

    kind = "strap"

    def __init__(
        self,
        name: str = "Polar H10 EMU1",
        *,
        rr_ms: Iterable[float] | None = None,
        rr_params: RRParameters = DEFAULT_RR,
        seed: int = 0,
        battery_pct: int = 87,
        notify_period_s: float = 1.0,
        **link: Unpack[LinkOptions],
    ) -> None:
        super().__init__(name, **link)
        if notify_period_s <= 0:
            raise ValueError(f"notify_period_s must be > 0, got {notify_period_s}")
        if not 0 <= battery_pct <= 100:
            raise ValueError(f"battery_pct must be within 0..100, got {battery_pct}")
        self._source: Iterator[float] = (
            iter(rr_ms) if rr_ms is not None else (b.rr_ms for b in rr_beats(rr_params, seed))
        )
        self.battery_pct = battery_pct
        self.notify_period_s = notify_period_s
        self.delivered: deque[HeartRateSample] = deque(maxlen=SENT_LOG_LENGTH)
        self.rr_emitted_ms: deque[float] = deque(maxlen=SENT_LOG_LENGTH)
        self._recent: deque[float] = deque(maxlen=HR_AVERAGE_BEATS)
        self._exhausted = False
        self._hrm = notify_characteristic(uuids.HEART_RATE_MEASUREMENT)
        self._battery: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuids.BATTERY_LEVEL,
            gatt.Characteristic.Properties.READ | gatt.Characteristic.Properties.NOTIFY,
            gatt.Characteristic.READABLE,
            gatt.CharacteristicValue(read=self._read_battery),
        )

    # -- GATT ------------------------------------------------------------------------

    def build_services(self) -> Sequence[gatt.Service]:
        """Heart Rate (0x180D: 0x2A37 notify, 0x2A38 read) and Battery (0x180F)."""
        location = gatt.Characteristic(
            uuids.BODY_SENSOR_LOCATION,
            gatt.Characteristic.Properties.READ,
            gatt.Characteristic.READABLE,
            heart_rate.encode_location(BodySensorLocation(0, SensorLocation.CHEST)),
        )
        return [
            gatt.Service(uuids.HEART_RATE_SERVICE, [self._hrm, location]),
            gatt.Service(uuids.BATTERY_SERVICE, [self._battery]),
        ]

    def advertised_services(self) -> Sequence[UUID]:
        """Heart Rate and Battery services."""
        return [UUID(uuids.HEART_RATE_SERVICE), UUID(uuids.BATTERY_SERVICE)]

    def _read_battery(self, connection: Connection | None) -> bytes:
        return battery.encode(BatteryLevel(0, battery_pct=self.battery_pct))

    async def set_battery(self, pct: int) -> None:
        """Change the Battery Level (%) and notify subscribers."""
        if not 0 <= pct <= 100:
            raise ValueError(f"battery level must be within 0..100 %, got {pct}")
        self.battery_pct = pct
        await self.notify(self._battery, self._read_battery(None))

    def malformed(self, char: gatt.Characteristic[bytes], payload: bytes) -> bytes:
        """Flags announce a uint16 HR and RR intervals, but only one HR byte follows."""
        if char is self._hrm:
            return bytes([heart_rate.FLAG_HR_UINT16 | heart_rate.FLAG_RR, 60])
        return b""

    # -- emulation ---------------------------------------------------------------------

    async def run(self) -> None:
        """Send one Heart Rate Measurement per ``notify_period_s`` of emulated time."""
        origin_s = self.started_s
        next_beat_s = self._pull_beat(origin_s)
        tick = 0
        with self.pacing_clock():
            while True:
                tick += 1
                t_s = origin_s + tick * self.notify_period_s
                await self.sleep_until(t_s)
                rr: list[float] = []
                while next_beat_s is not None and next_beat_s[0] <= t_s:
                    rr.append(next_beat_s[1])
                    next_beat_s = self._pull_beat(next_beat_s[0])
                for start in range(0, max(len(rr), 1), MAX_RR_PER_PACKET):
                    await self._send(t_s, rr[start : start + MAX_RR_PER_PACKET])

    def _pull_beat(self, after_s: float) -> tuple[float, float] | None:
        """The next beat: (time it ends in emulated s, its RR in ms), or None at the end."""
        try:
            rr = float(next(self._source))
        except StopIteration:
            self._exhausted = True
            return None
        return after_s + rr / 1000.0, rr

    async def _send(self, t_s: float, rr: list[float]) -> None:
        self.rr_emitted_ms.extend(rr)
        self._recent.extend(rr)
        if self._exhausted and not rr:
            sample = HeartRateSample(
                t_ns=round(t_s * 1e9), hr_bpm=0, contact=SensorContact.NOT_DETECTED
            )
        else:
            mean_rr = sum(self._recent) / len(self._recent) if self._recent else 1000.0
            sample = HeartRateSample(
                t_ns=round(t_s * 1e9),
                hr_bpm=round(60_000.0 / mean_rr),
                rr_ms=tuple(rr),
                contact=SensorContact.DETECTED,
            )
        if await self.notify_intact(self._hrm, heart_rate.encode(sample)):
            self.delivered.append(sample)
