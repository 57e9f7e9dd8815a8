"""Cycling Power Measurement (0x2A63): optional field lengths per the spec, round trips."""

from __future__ import annotations

import re

import pytest
from hypothesis import given

from devices.codecs import CodecError, cycling_power, parse_hex
from devices.records import CyclingPowerDetail, PowerSample
from tests.codec_strategies import power_samples


@pytest.mark.parametrize(
    ("payload", "power_w"), [("00 00 C8 00", 200), ("00 00 38 FF", -200), ("00 00 00 00", 0)]
)
def test_power_only(payload: str, power_w: int) -> None:
    assert cycling_power.decode(parse_hex(payload)) == PowerSample(0, power_w)


def test_crank_revolution_data() -> None:
    # flags 0x0020; 250 W; 10 crank revolutions, last event at 1024/1024 s
    sample = cycling_power.decode(parse_hex("20 00 FA 00 0A 00 00 04"))
    assert sample == PowerSample(
        0, 250, 0x20, CyclingPowerDetail(crank_revolutions=10, crank_event_time_s=1.0)
    )


def test_every_optional_field_has_its_spec_length() -> None:
    payload = parse_hex(
        "FF 1F"  # flags: bits 0–12
        " 2C 01"  # 300 W
        " 64"  # pedal power balance 100 × 1/2 % = 50 %
        " 40 00"  # accumulated torque 64/32 = 2 N·m
        " E8 03 00 00 00 08"  # wheel: 1000 revolutions (uint32), 2048/2048 s
        " 05 00 00 02"  # crank: 5 revolutions, 512/1024 s
        " F4 01 9C FF"  # extreme forces: 500 N, −100 N
        " 40 01 E0 FF"  # extreme torques: 320/32 = 10, −32/32 = −1 N·m
        " B4 A0 05"  # extreme angles: 12-bit 180° then 12-bit 90°
        " 0A 00"  # top dead spot 10°
        " BE 00"  # bottom dead spot 190°
        " 2A 00"  # accumulated energy 42 kJ
    )
    assert len(payload) == 34
    assert cycling_power.decode(payload) == PowerSample(
        0,
        300,
        0x1FFF,
        CyclingPowerDetail(
            pedal_power_balance_pct=50.0,
            pedal_power_balance_left=True,
            accumulated_torque_nm=2.0,
            torque_from_crank=True,
            wheel_revolutions=1000,
            wheel_event_time_s=1.0,
            crank_revolutions=5,
            crank_event_time_s=0.5,
            max_force_n=500,
            min_force_n=-100,
            max_torque_nm=10.0,
            min_torque_nm=-1.0,
            max_angle_deg=180,
            min_angle_deg=90,
            top_dead_spot_angle_deg=10,
            bottom_dead_spot_angle_deg=190,
            accumulated_energy_kj=42,
            offset_compensation=True,
        ),
    )


def test_flag_only_bits_give_a_detail_without_fields() -> None:
    sample = cycling_power.decode(parse_hex("00 10 64 00"))  # offset compensation
    assert sample.detail == CyclingPowerDetail(offset_compensation=True)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("00 20 C8 00", "reserved bits 13–15"),
        ("00 00 C8 00 00", "1 unexpected trailing byte at offset 4"),
        ("20 00 FA 00 0A 00", "last crank event time at offset 6 needs 2 bytes"),
        # wheel revolutions are uint32 here (uint16 would be the CSC layout)
        ("10 00 FA 00 0A 00 00 04", "last wheel event time at offset 8 needs 2 bytes"),
        ("00 00 C8", "instantaneous power at offset 2 needs 2 bytes"),
    ],
)
def test_malformed_packets_name_the_field(payload: str, message: str) -> None:
    with pytest.raises(CodecError, match=re.escape(message)):
        cycling_power.decode(parse_hex(payload))


def test_flags_that_disagree_with_the_fields_are_rejected() -> None:
    with pytest.raises(CodecError, match="disagree"):
        cycling_power.encode(PowerSample(0, 100, flags=0x20))


def test_zero_flags_are_derived_from_the_fields() -> None:
    detail = CyclingPowerDetail(accumulated_energy_kj=7)
    assert cycling_power.encode(PowerSample(0, 100, detail=detail)) == parse_hex(
        "00 08 64 00 07 00"
    )


@given(power_samples())
def test_round_trip(record: PowerSample) -> None:
    assert cycling_power.decode(cycling_power.encode(record), t_ns=record.t_ns) == record
