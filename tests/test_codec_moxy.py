"""Moxy SmO2 notifications: the spec vector, range checks, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given

from devices.codecs import CodecError, moxy, parse_hex
from devices.records import SmO2Sample
from tests.codec_strategies import smo2_samples


def test_spec_vector() -> None:
    sample = moxy.decode(parse_hex("CB 06 15 02 16 02 C0 04 00"), t_ns=7)
    assert sample == SmO2Sample(
        t_ns=7, smo2_pct=53.3, thb_gdl=12.16, count=1739, previous_smo2_pct=53.4, flag=0
    )
    assert moxy.encode(sample) == parse_hex("CB 06 15 02 16 02 C0 04 00")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("CB 06 15 02 16 02 C0 04", "flag at offset 8 needs 1 byte"),
        ("CB 06 15 02 16 02 C0 04 00 00", "trailing"),
        ("CB 06 E9 03 16 02 C0 04 00", "SmO2 100.1 % is above 100 %"),
        ("CB 06 15 02 E9 03 C0 04 00", "previous SmO2 100.1 %"),
        ("CB 06 15 02 16 02 A1 0F 00", "tHb 40.01 g/dL"),
    ],
)
def test_malformed_packets_name_the_field(payload: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        moxy.decode(parse_hex(payload))


def test_missing_previous_is_sent_as_the_current_value() -> None:
    payload = moxy.encode(SmO2Sample(0, smo2_pct=60.0, thb_gdl=12.0))
    assert moxy.decode(payload).previous_smo2_pct == 60.0


def test_out_of_range_values_cannot_be_encoded() -> None:
    with pytest.raises(CodecError, match="smo2_pct"):
        moxy.encode(SmO2Sample(0, smo2_pct=101.0, thb_gdl=12.0))


@given(smo2_samples())
def test_round_trip(record: SmO2Sample) -> None:
    assert moxy.decode(moxy.encode(record), t_ns=record.t_ns) == record
