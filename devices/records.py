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


@dataclass(frozen=True, slots=True)
class SpO2Sample:
    """PLX Continuous Measurement (0x2A5F): SpO2 in %, pulse rate in bpm (NaN if absent)."""

    t_ns: int
    spo2_pct: float
    pulse_bpm: float


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


Sample = HeartRateSample | SmO2Sample | ForceSample | PowerSample | SpO2Sample | BatteryLevel
