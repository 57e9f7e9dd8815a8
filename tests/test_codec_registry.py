"""The codec registry: every decoder fuzzed, uniform round trips, JSON, UUIDs and hex input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices import gatt
from devices.codecs import CODECS, CodecError, codec_for_uuid, parse_hex
from devices.records import HeartRateSample, SmO2Sample

ALL_NAMES = sorted(CODECS)


def test_every_cli_short_name_has_a_codec() -> None:
    for name in ("2a37", "2a5f", "2a63", "2a19", "moxy", "tindeq", "activ5"):
        assert CODECS[name].name == name
    assert set(CODECS) == set(gatt.CHARACTERISTICS)


@pytest.mark.parametrize("name", ALL_NAMES)
@given(data=st.binary(max_size=64))
def test_decoders_raise_only_codec_error_on_random_bytes(name: str, data: bytes) -> None:
    codec = CODECS[name]
    try:
        record = codec.decode(data, t_ns=1)
    except CodecError as exc:
        message = str(exc)
    else:
        assert isinstance(record, codec.record_types)
        return
    assert message.startswith(f"{name}: ")  # names the characteristic, then what is wrong


@pytest.mark.parametrize("name", ALL_NAMES)
@given(data=st.binary(max_size=64))
def test_whatever_decodes_reencodes_to_the_same_record(name: str, data: bytes) -> None:
    codec = CODECS[name]
    try:
        record = codec.decode(data, t_ns=1)
    except CodecError:
        return
    assert codec.decode(codec.encode(record), t_ns=1) == record


@pytest.mark.parametrize("name", ALL_NAMES)
@given(data=st.binary(max_size=64))
def test_json_of_any_decoded_record_is_strict_json(name: str, data: bytes) -> None:
    codec = CODECS[name]
    try:
        record = codec.decode(data)
    except CodecError:
        return
    fields = codec.to_json(record)
    json.dumps(fields, allow_nan=False)  # raises on NaN/inf or non-JSON types
    assert all(key == key.lower() for key in fields)


def test_json_fields_carry_units() -> None:
    hr = CODECS["2a37"].to_json(HeartRateSample(0, 72, (1000.0,), energy_kj=3))
    assert hr == {"hr_bpm": 72, "rr_ms": [1000.0], "contact": "not_supported", "energy_kj": 3}
    moxy = CODECS["moxy"].to_json(SmO2Sample(0, 53.3, 12.16, 1739, 53.4, 0))
    assert moxy["smo2_pct"] == 53.3
    assert moxy["thb_gdl"] == 12.16


def test_encoding_the_wrong_record_type_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="cannot encode a SmO2Sample; expected HeartRateSample"):
        CODECS["2a37"].encode(SmO2Sample(0, 50.0, 12.0))


@pytest.mark.parametrize(
    "spelling",
    [
        "2a37",
        "2A37",
        "0x2A37",
        "00002a37-0000-1000-8000-00805f9b34fb",
        "00002A37-0000-1000-8000-00805F9B34FB",
    ],
)
def test_codec_found_by_any_uuid_spelling(spelling: str) -> None:
    codec = codec_for_uuid(spelling)
    assert codec is not None
    assert codec.name == "2a37"


def test_vendor_uuids_map_to_their_codecs() -> None:
    assert codec_for_uuid(gatt.MOXY_DATA) is CODECS["moxy"]
    assert codec_for_uuid(gatt.TINDEQ_DATA) is CODECS["tindeq"]
    assert codec_for_uuid(gatt.TINDEQ_CONTROL) is None  # written to, never decoded
    assert codec_for_uuid("not a uuid") is None


def test_uuid16_expands_onto_the_base_uuid() -> None:
    assert gatt.uuid16(0x180D) == "0000180d-0000-1000-8000-00805f9b34fb"
    assert gatt.HEART_RATE_MEASUREMENT == "00002a37-0000-1000-8000-00805f9b34fb"
    with pytest.raises(ValueError, match="16-bit"):
        gatt.uuid16(0x10000)


@pytest.mark.parametrize(
    "text", ["CB 06 15 02", "cb:06:15:02", "0xcb061502", "cb061502", " CB-06-15-02 \n"]
)
def test_hex_input_tolerates_separators(text: str) -> None:
    assert parse_hex(text) == bytes([0xCB, 0x06, 0x15, 0x02])


@pytest.mark.parametrize(
    ("text", "message"),
    [("CB 0G", "'G' \\(hex digit 4\\) is not a hex digit"), ("CB 0", "3 hex digits")],
)
def test_bad_hex_names_the_problem(text: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        parse_hex(text)
