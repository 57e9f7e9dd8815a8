"""Typed records produced by the device codecs and drivers.

Every record is a small frozen dataclass. ``t_ns`` is the receipt time
(``time.time_ns()`` when the notification arrived, or the replayed/emulated time);
device-side timestamps, where a device sends them, are separate fields.
Field names carry units so that JSON and line-protocol names can be derived from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class SensorContact(Enum):
    """Heart Rate Measurement flags bits 1–2."""

    NOT_SUPPORTED = "not_supported"
    NOT_DETECTED = "not_detected"
    DETECTED = "detected"


@dataclass(frozen=True, slots=True)
class HeartRateSample:
    """One Heart Rate Measurement (0x2A37) notification.

    ``rr_ms`` holds the RR intervals carried by the packet, oldest first, in milliseconds
    (the wire unit is 1/1024 s). Straps send them without timestamps: the beat timeline is
    built by summing them, never from arrival times.
    """

    t_ns: int
    hr_bpm: int
    rr_ms: tuple[float, ...] = ()
    contact: SensorContact = SensorContact.NOT_SUPPORTED
    energy_kj: int | None = None


@dataclass(frozen=True, slots=True)
class SmO2Sample:
    """One Moxy muscle-oxygen notification: SmO2 in %, total haemoglobin in g/dL."""

    t_ns: int
    smo2_pct: float
    thb_gdl: float
    count: int = 0
    previous_smo2_pct: float | None = None
    flag: int = 0


@dataclass(frozen=True, slots=True)
class ForceSample:
    """One force reading from a grip dynamometer: kilograms-force, device time in µs."""

    t_ns: int
    force_kg: float
    t_us: int | None = None


@dataclass(frozen=True, slots=True)
class PowerSample:
    """Cycling Power Measurement (0x2A63): instantaneous power in watts."""

    t_ns: int
    power_w: int
    flags: int = 0
    detail: CyclingPowerDetail | None = None  # the optional fields, when the packet has any


@dataclass(frozen=True, slots=True)
class SpO2Sample:
    """PLX Continuous Measurement (0x2A5F): SpO2 in %, pulse rate in bpm (NaN if absent)."""

    t_ns: int
    spo2_pct: float
    pulse_bpm: float
    detail: PlxDetail | None = None  # the optional fields, when the packet has any


@dataclass(frozen=True, slots=True)
class BatteryLevel:
    """Battery Level (0x2A19) in percent, or a device-specific voltage in mV."""

    t_ns: int
    battery_pct: int | None = None
    battery_mv: int | None = None


class GapReason(Enum):
    DISCONNECTED = "disconnected"
    STALE = "stale"  # the watchdog saw no notification for too long
    MALFORMED = "malformed"
    STOPPED = "stopped"
    OVERFLOW = "overflow"  # the consumer fell behind and the driver dropped records
    HANDOVER = "handover"  # the link moved to another receiver (team mode: a lease grant)


@dataclass(frozen=True, slots=True)
class GapEvent:
    """The stream from ``device`` was interrupted between ``start_ns`` and ``end_ns``.

    Downstream code must never take an RR difference across a gap.
    ``end_ns`` is ``None`` while the gap is still open.
    """

    t_ns: int
    device: str
    start_ns: int
    end_ns: int | None
    reason: GapReason


MeasuredSample = HeartRateSample | SmO2Sample | ForceSample | PowerSample | SpO2Sample
"""The measured stream as a type (see :data:`MEASURED_SAMPLES`)."""

Sample = MeasuredSample | BatteryLevel

MEASURED_SAMPLES = (HeartRateSample, SmO2Sample, ForceSample, PowerSample, SpO2Sample)
"""The measured stream, for ``isinstance``: what a driver's link delivers at rate (its
arrival closes an open gap) and what a busy pipeline may shed. Battery levels, gaps and
protocol markers are not in it."""


# --- Added with the GATT codecs (devices/codecs): detail and device-specific records ---


@dataclass(frozen=True, slots=True)
class CyclingPowerDetail:
    """Optional fields of a Cycling Power Measurement (0x2A63); ``None`` when absent.

    Values are in the units of their names, converted exactly from the wire units
    (1/2 %, 1/32 N·m, 1/2048 s, 1/1024 s are binary fractions, so floats hold them exactly).
    """

    pedal_power_balance_pct: float | None = None
    pedal_power_balance_left: bool = False  # flags bit 1: the balance refers to the left pedal
    accumulated_torque_nm: float | None = None
    torque_from_crank: bool = False  # flags bit 3: accumulated torque is crank-based
    wheel_revolutions: int | None = None
    wheel_event_time_s: float | None = None  # last wheel event, rolls over every 32 s
    crank_revolutions: int | None = None
    crank_event_time_s: float | None = None  # last crank event, rolls over every 64 s
    max_force_n: int | None = None
    min_force_n: int | None = None
    max_torque_nm: float | None = None
    min_torque_nm: float | None = None
    max_angle_deg: int | None = None
    min_angle_deg: int | None = None
    top_dead_spot_angle_deg: int | None = None
    bottom_dead_spot_angle_deg: int | None = None
    accumulated_energy_kj: int | None = None
    offset_compensation: bool = False  # flags bit 12


@dataclass(frozen=True, slots=True)
class PlxDetail:
    """Optional fields of a PLX Continuous Measurement (0x2A5F); ``None`` when absent.

    The fast/slow SpO2 and pulse values come in pairs (both present or both absent);
    NaN means the device reported "no valid value" (SFLOAT NaN or NRes).
    """

    spo2_fast_pct: float | None = None
    pulse_fast_bpm: float | None = None
    spo2_slow_pct: float | None = None
    pulse_slow_bpm: float | None = None
    measurement_status: int | None = None  # 16-bit field, bits as in the PLX specification
    device_sensor_status: int | None = None  # 24-bit field
    pulse_amplitude_index_pct: float | None = None


class SensorLocation(Enum):
    """Body Sensor Location (0x2A38) values; the wire value is the index in the spec."""

    OTHER = 0
    CHEST = 1
    WRIST = 2
    FINGER = 3
    HAND = 4
    EAR_LOBE = 5
    FOOT = 6


@dataclass(frozen=True, slots=True)
class BodySensorLocation:
    """Where a heart-rate sensor sits on the body (read from 0x2A38)."""

    t_ns: int
    location: SensorLocation


@dataclass(frozen=True, slots=True)
class TindeqWeight:
    """One Tindeq Progressor weight notification: several force samples, oldest first.

    Each sample's ``t_us`` is the device clock (µs since measurement start); every sample
    carries the notification's receipt time as ``t_ns``.
    """

    t_ns: int
    samples: tuple[ForceSample, ...]


@dataclass(frozen=True, slots=True)
class TindeqCommandResponse:
    """A Tindeq Progressor command response (code 0); its meaning depends on the command sent.

    The response does not say which command it answers: after "get battery voltage" the
    payload is a uint32 in mV, available as :attr:`battery_mv`.
    """

    t_ns: int
    payload: bytes

    @property
    def battery_mv(self) -> int | None:
        """The payload read as the battery-voltage answer (uint32 LE, mV), if it is 4 bytes."""
        if len(self.payload) != 4:
            return None
        return int.from_bytes(self.payload, "little")


@dataclass(frozen=True, slots=True)
class TindeqLowPower:
    """The Tindeq Progressor's low-power warning (code 4): the battery is nearly empty."""

    t_ns: int


DeviceRecord = Sample | BodySensorLocation | TindeqWeight | TindeqCommandResponse | TindeqLowPower
"""Everything a codec can decode to."""
