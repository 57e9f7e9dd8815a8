"""Heart Rate Measurement (0x2A37) and Body Sensor Location (0x2A38): spec vectors, round trips."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.codecs import CodecError, heart_rate, parse_hex
from devices.records import BodySensorLocation, HeartRateSample, SensorContact, SensorLocation
from tests.codec_strategies import body_sensor_locations, heart_rate_samples


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # flags 0x10: uint8 HR, RR present; HR 72, one RR of 1024/1024 s
        ("10 48 00 04", HeartRateSample(0, 72, (1000.0,))),
        # contact supported + detected, two RR, oldest first: 1024 and 800 units
        ("16 48 00 04 20 03", HeartRateSample(0, 72, (1000.0, 781.25), SensorContact.DETECTED)),
        ("00 3C", HeartRateSample(0, 60)),
        ("01 2C 01", HeartRateSample(0, 300)),  # uint16 HR
        ("04 50", HeartRateSample(0, 80, contact=SensorContact.NOT_DETECTED)),
        # bit 1 without bit 2: contact detection is not supported, bit 1 means nothing
        ("02 50", HeartRateSample(0, 80, contact=SensorContact.NOT_SUPPORTED)),
        ("08 50 10 00", HeartRateSample(0, 80, energy_kj=16)),
        # every field: uint16 HR 300, contact detected, energy 1000 kJ, RR 1024 and 512 units
        (
            "1F 2C 01 E8 03 00 04 00 02",
            HeartRateSample(0, 300, (1000.0, 500.0), SensorContact.DETECTED, 1000),
        ),
        # RR flag set but no RR in this packet: a strap between beats
        ("10 48", HeartRateSample(0, 72)),
        # reserved flag bits 5–7 are ignored
        ("E0 48", HeartRateSample(0, 72)),
    ],
)
def test_spec_vectors_decode(payload: str, expected: HeartRateSample) -> None:
    assert heart_rate.decode(parse_hex(payload)) == expected


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("", "flags at offset 0 needs 1 byte"),
        ("01 48", "heart rate (uint16) at offset 1 needs 2 bytes"),
        ("08 48 10", "energy expended at offset 2 needs 2 bytes"),
        ("10 48 00", "not a whole number of uint16"),
        ("00 48 00", "1 unexpected trailing byte at offset 2"),
    ],
)
def test_malformed_packets_name_the_field(payload: str, message: str) -> None:
    with pytest.raises(CodecError, match=re.escape(message)):
        heart_rate.decode(parse_hex(payload))


def test_decode_stamps_receipt_time() -> None:
    assert heart_rate.decode(b"\x00\x3c", t_ns=123).t_ns == 123


def test_rr_encoding_rounds_to_nearest_not_truncates() -> None:
    # 781.9 ms = 800.67 units: truncation would give 800, rounding gives 801
    payload = heart_rate.encode(HeartRateSample(0, 60, (781.9, 781.6)))
    assert payload == bytes([0x10, 60]) + (801).to_bytes(2, "little") + (800).to_bytes(2, "little")


def test_rr_encoding_rounds_half_up() -> None:
    # 0.48828125 ms is exactly half a 1/1024-s unit
    assert heart_rate.rr_ms_to_units(0.48828125) == 1


def test_hr_above_255_uses_uint16_format() -> None:
    assert heart_rate.encode(HeartRateSample(0, 256)) == bytes([0x01, 0x00, 0x01])


@pytest.mark.parametrize(
    "record",
    [
        HeartRateSample(0, 70000),
        HeartRateSample(0, -1),
        HeartRateSample(0, 60, (64000.0,)),
        HeartRateSample(0, 60, (-1.0,)),
        HeartRateSample(0, 60, (float("nan"),)),
        HeartRateSample(0, 60, energy_kj=65536),
    ],
)
def test_unencodable_values_raise_codec_error(record: HeartRateSample) -> None:
    with pytest.raises(CodecError, match="2a37"):
        heart_rate.encode(record)


@given(heart_rate_samples())
def test_round_trip(record: HeartRateSample) -> None:
    assert heart_rate.decode(heart_rate.encode(record), t_ns=record.t_ns) == record


@given(st.lists(st.floats(min_value=0, max_value=63999.0), max_size=9))
def test_encoded_rr_is_within_half_a_unit_of_the_input(rr_ms: list[float]) -> None:
    decoded = heart_rate.decode(heart_rate.encode(HeartRateSample(0, 60, tuple(rr_ms))))
    assert len(decoded.rr_ms) == len(rr_ms)
    for got, want in zip(decoded.rr_ms, rr_ms, strict=True):
        assert abs(got - want) <= 0.5 * 1000 / 1024


def test_real_polar_rr_series_survives_the_wire_within_half_a_unit(recordings: Path) -> None:
    with (recordings / "polar_h10" / "polar_h10.csv").open() as f:
        rr_ms = [float(row["rr"]) for row in csv.DictReader(f) if row["rr"]]
    assert len(rr_ms) > 700
    decoded: list[float] = []
    for i in range(0, len(rr_ms), 3):  # the strap sends up to a few RR per notification
        chunk = tuple(rr_ms[i : i + 3])
        decoded.extend(heart_rate.decode(heart_rate.encode(HeartRateSample(0, 60, chunk))).rr_ms)
    assert len(decoded) == len(rr_ms)
    assert max(abs(a - b) for a, b in zip(decoded, rr_ms, strict=True)) <= 0.5 * 1000 / 1024
    # rounding keeps the beat timeline unbiased: the summed drift stays far below one unit/beat
    assert abs(sum(decoded) - sum(rr_ms)) < 0.1 * len(rr_ms)


@pytest.mark.parametrize(
    ("payload", "location"),
    [("00", SensorLocation.OTHER), ("01", SensorLocation.CHEST), ("06", SensorLocation.FOOT)],
)
def test_body_sensor_location_vectors(payload: str, location: SensorLocation) -> None:
    assert heart_rate.decode_location(parse_hex(payload)) == BodySensorLocation(0, location)


@pytest.mark.parametrize(
    ("payload", "message"), [("07", "reserved"), ("", "needs 1 byte"), ("01 00", "trailing")]
)
def test_body_sensor_location_rejects_bad_values(payload: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        heart_rate.decode_location(parse_hex(payload))


@given(body_sensor_locations())
def test_body_sensor_location_round_trip(record: BodySensorLocation) -> None:
    assert (
        heart_rate.decode_location(heart_rate.encode_location(record), t_ns=record.t_ns) == record
    )
