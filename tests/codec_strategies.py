"""Hypothesis strategies for records whose values are whole wire units (so they round-trip).

NaN: the SFLOAT strategy uses the ``math.nan`` object itself, the same object the decoder
returns, so record equality (a tuple comparison, identity first) holds for NaN fields.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

from devices.codecs.tindeq import TindeqRecord
from devices.records import (
    BatteryLevel,
    BodySensorLocation,
    CyclingPowerDetail,
    ForceSample,
    HeartRateSample,
    PlxDetail,
    PowerSample,
    SensorContact,
    SensorLocation,
    SmO2Sample,
    SpO2Sample,
    TindeqCommandResponse,
    TindeqLowPower,
    TindeqWeight,
)

t_ns = st.integers(min_value=0, max_value=2**63 - 1)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
s16 = st.integers(-0x8000, 0x7FFF)
u24 = st.integers(0, 0xFFFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


@st.composite
def heart_rate_samples(draw: st.DrawFn) -> HeartRateSample:
    rr_units = draw(st.lists(u16, max_size=9))
    return HeartRateSample(
        t_ns=draw(t_ns),
        hr_bpm=draw(u16),
        rr_ms=tuple(units * 1000 / 1024 for units in rr_units),
        contact=draw(st.sampled_from(SensorContact)),
        energy_kj=draw(st.none() | u16),
    )


def body_sensor_locations() -> st.SearchStrategy[BodySensorLocation]:
    return st.builds(BodySensorLocation, t_ns=t_ns, location=st.sampled_from(SensorLocation))


def battery_levels() -> st.SearchStrategy[BatteryLevel]:
    return st.builds(BatteryLevel, t_ns=t_ns, battery_pct=st.integers(0, 100))


@st.composite
def smo2_samples(draw: st.DrawFn) -> SmO2Sample:
    return SmO2Sample(
        t_ns=draw(t_ns),
        smo2_pct=draw(st.integers(0, 1000)) / 10,
        thb_gdl=draw(st.integers(0, 4000)) / 100,
        count=draw(u16),
        previous_smo2_pct=draw(st.integers(0, 1000)) / 10,
        flag=draw(u8),
    )


def sfloat_values() -> st.SearchStrategy[float]:
    """Every number an SFLOAT can carry exactly, and NaN.

    The mantissa spans the full 12 bits (−2048..2047) except at exponent 0, where
    ±2046..2048 are the special values."""
    numbers = st.builds(
        lambda m, e: float(f"{m}e{e}"), st.integers(-2048, 2047), st.integers(-8, 7)
    ).filter(lambda v: not (v.is_integer() and 2045 < abs(v) <= 2048))
    return numbers | st.just(math.nan)


@st.composite
def spo2_samples(draw: st.DrawFn) -> SpO2Sample:
    value = sfloat_values()
    detail = None
    if draw(st.booleans()):
        fast = draw(st.none() | st.tuples(value, value))
        slow = draw(st.none() | st.tuples(value, value))
        detail = PlxDetail(
            spo2_fast_pct=None if fast is None else fast[0],
            pulse_fast_bpm=None if fast is None else fast[1],
            spo2_slow_pct=None if slow is None else slow[0],
            pulse_slow_bpm=None if slow is None else slow[1],
            measurement_status=draw(st.none() | u16),
            device_sensor_status=draw(st.none() | u24),
            pulse_amplitude_index_pct=draw(st.none() | value),
        )
        if detail == PlxDetail():
            detail = None  # an all-absent detail decodes as no detail
    return SpO2Sample(t_ns=draw(t_ns), spo2_pct=draw(value), pulse_bpm=draw(value), detail=detail)


@st.composite
def cycling_power_details(draw: st.DrawFn) -> CyclingPowerDetail:
    def pair(a: st.SearchStrategy[object], b: st.SearchStrategy[object]) -> tuple[object, object]:
        both = draw(st.none() | st.tuples(a, b))
        return (None, None) if both is None else both

    wheel = pair(u32, u16.map(lambda u: u / 2048))
    crank = pair(u16, u16.map(lambda u: u / 1024))
    force = pair(s16, s16)
    torque = pair(s16.map(lambda u: u / 32), s16.map(lambda u: u / 32))
    angles = pair(st.integers(0, 0xFFF), st.integers(0, 0xFFF))
    return CyclingPowerDetail(
        pedal_power_balance_pct=draw(st.none() | u8.map(lambda u: u / 2)),
        pedal_power_balance_left=draw(st.booleans()),
        accumulated_torque_nm=draw(st.none() | u16.map(lambda u: u / 32)),
        torque_from_crank=draw(st.booleans()),
        wheel_revolutions=wheel[0],
        wheel_event_time_s=wheel[1],
        crank_revolutions=crank[0],
        crank_event_time_s=crank[1],
        max_force_n=force[0],
        min_force_n=force[1],
        max_torque_nm=torque[0],
        min_torque_nm=torque[1],
        max_angle_deg=angles[0],
        min_angle_deg=angles[1],
        top_dead_spot_angle_deg=draw(st.none() | u16),
        bottom_dead_spot_angle_deg=draw(st.none() | u16),
        accumulated_energy_kj=draw(st.none() | u16),
        offset_compensation=draw(st.booleans()),
    )


@st.composite
def power_samples(draw: st.DrawFn) -> PowerSample:
    """Power samples whose ``flags`` are what the decoder reports for their fields."""
    from devices.codecs import cycling_power  # the flags are derived by the encoder

    detail = draw(st.none() | cycling_power_details())
    if detail == CyclingPowerDetail():
        detail = None
    sample = PowerSample(t_ns=draw(t_ns), power_w=draw(s16), detail=detail)
    flags = int.from_bytes(cycling_power.encode(sample)[:2], "little")
    return PowerSample(t_ns=sample.t_ns, power_w=sample.power_w, flags=flags, detail=detail)


@st.composite
def tindeq_records(draw: st.DrawFn) -> TindeqRecord:
    when = draw(t_ns)
    kind = draw(st.sampled_from(["weight", "response", "low_power"]))
    if kind == "response":
        return TindeqCommandResponse(t_ns=when, payload=draw(st.binary(max_size=255)))
    if kind == "low_power":
        return TindeqLowPower(t_ns=when)
    forces = st.floats(width=32, allow_nan=False, allow_infinity=False)
    samples = draw(st.lists(st.tuples(forces, u32), max_size=31))
    return TindeqWeight(
        t_ns=when, samples=tuple(ForceSample(t_ns=when, force_kg=f, t_us=t) for f, t in samples)
    )


def activ5_samples() -> st.SearchStrategy[ForceSample]:
    return st.builds(
        lambda when, raw: ForceSample(t_ns=when, force_kg=raw * 0.27156 / 9.80665),
        t_ns,
        s16,
    )
