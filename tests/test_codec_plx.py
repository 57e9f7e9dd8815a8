"""PLX Continuous Measurement (0x2A5F): spec vectors with every optional field, round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given

from devices.codecs import CodecError, parse_hex, plx
from devices.records import PlxDetail, SpO2Sample
from tests.codec_strategies import spo2_samples


def test_minimal_packet() -> None:
    # flags 0; SpO2 97 (0x0061), PR 72 (0x0048)
    assert plx.decode(parse_hex("00 61 00 48 00")) == SpO2Sample(0, 97.0, 72.0)


def test_whole_numbers_given_as_int_encode() -> None:
    # SpO2Sample(0, 97, 72) raised AttributeError on Python 3.11 (int.is_integer).
    assert plx.encode(SpO2Sample(0, 97, 72)) == parse_hex("00 61 00 48 00")


def test_full_mantissa_values_encode_away_from_exponent_0() -> None:
    # 204.7 % cannot be a saturation, but the pulse amplitude index field carries any
    # SFLOAT: 0xF7FF is 2047 · 10⁻¹, not NaN.
    sample = SpO2Sample(0, 97.0, 72.0, PlxDetail(pulse_amplitude_index_pct=204.7))
    assert plx.encode(sample) == parse_hex("10 61 00 48 00 FF F7")
    assert plx.decode(plx.encode(sample)) == sample


def test_every_optional_field() -> None:
    payload = parse_hex(
        "1F"  # flags: fast, slow, measurement status, device/sensor status, PAI
        " CF F3 3C 00"  # normal: SpO2 97.5, PR 60
        " 62 00 3D 00"  # fast: 98, 61
        " 60 00 3B 00"  # slow: 96, 59
        " 20 00"  # measurement status 0x0020
        " 01 00 00"  # device and sensor status (24 bit)
        " 19 F0"  # pulse amplitude index 2.5 %
    )
    assert plx.decode(payload, t_ns=5) == SpO2Sample(
        5,
        97.5,
        60.0,
        PlxDetail(
            spo2_fast_pct=98.0,
            pulse_fast_bpm=61.0,
            spo2_slow_pct=96.0,
            pulse_slow_bpm=59.0,
            measurement_status=0x20,
            device_sensor_status=1,
            pulse_amplitude_index_pct=2.5,
        ),
    )


def test_only_device_status_is_found_after_the_pairs_it_skips() -> None:
    sample = plx.decode(parse_hex("08 61 00 48 00 05 00 80"))
    assert sample.detail == PlxDetail(device_sensor_status=0x800005)


@pytest.mark.parametrize("special", ["FF 07", "00 08"])
def test_nan_and_nres_mean_no_valid_value(special: str) -> None:
    sample = plx.decode(parse_hex(f"00 {special} 48 00"))
    assert math.isnan(sample.spo2_pct)
    assert sample.pulse_bpm == 72.0
    assert plx.to_json(sample)["spo2_pct"] is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("20 61 00 48 00", "reserved bits"),
        ("00 61 00 48", "pulse rate at offset 3 needs 2 bytes"),
        ("01 61 00 48 00 62 00", "pulse rate fast at offset 7"),
        ("00 61 00 48 00 00", "trailing"),
        ("00 FE 07 48 00", "SpO2 at offset 1 is inf"),
        ("00 61 00 02 08", "pulse rate at offset 3 is -inf"),
        ("00 01 08 48 00", "reserved SFLOAT"),
    ],
)
def test_malformed_packets_name_the_field(payload: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        plx.decode(parse_hex(payload))


def test_half_a_pair_cannot_be_encoded() -> None:
    with pytest.raises(CodecError, match="go together"):
        plx.encode(SpO2Sample(0, 97.0, 60.0, PlxDetail(spo2_fast_pct=98.0)))


@given(spo2_samples())
def test_round_trip(record: SpO2Sample) -> None:
    # NaN fields hold the math.nan object on both sides, so == holds (identity first)
    assert plx.decode(plx.encode(record), t_ns=record.t_ns) == record
