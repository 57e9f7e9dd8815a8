"""Battery Level (0x2A19): vectors, the reserved range, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given

from devices.codecs import CodecError, battery, parse_hex
from devices.records import BatteryLevel
from tests.codec_strategies import battery_levels


@pytest.mark.parametrize(("payload", "pct"), [("00", 0), ("55", 85), ("64", 100)])
def test_battery_vectors(payload: str, pct: int) -> None:
    assert battery.decode(parse_hex(payload)) == BatteryLevel(0, battery_pct=pct)


@pytest.mark.parametrize(
    ("payload", "message"),
    [("65", "101 % is above 100 %"), ("", "needs 1 byte"), ("55 00", "trailing")],
)
def test_battery_rejects_bad_payloads(payload: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        battery.decode(parse_hex(payload))


def test_battery_voltage_only_record_cannot_be_sent_as_a_percentage() -> None:
    with pytest.raises(CodecError, match="battery_pct is required"):
        battery.encode(BatteryLevel(0, battery_mv=3900))


@given(battery_levels())
def test_battery_round_trip(record: BatteryLevel) -> None:
    assert battery.decode(battery.encode(record), t_ns=record.t_ns) == record
