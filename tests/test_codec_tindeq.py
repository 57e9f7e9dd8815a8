"""Tindeq Progressor responses and commands: vectors, malformed frames, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.codecs import CodecError, parse_hex, tindeq
from devices.codecs.tindeq import TindeqCommand, TindeqRecord
from devices.records import ForceSample, TindeqCommandResponse, TindeqLowPower, TindeqWeight
from tests.codec_strategies import tindeq_records


def test_weight_notification_holds_several_samples_oldest_first() -> None:
    payload = parse_hex(
        "01 10"  # weight, 16 payload bytes
        " 00 00 20 41 10 27 00 00"  # 10.0 kg at 10 000 µs
        " 00 00 48 41 E4 57 00 00"  # 12.5 kg at 22 500 µs
    )
    assert tindeq.decode(payload, t_ns=9) == TindeqWeight(
        9, (ForceSample(9, 10.0, 10_000), ForceSample(9, 12.5, 22_500))
    )


def test_battery_voltage_response() -> None:
    response = tindeq.decode(parse_hex("00 04 D2 0F 00 00"))
    assert response == TindeqCommandResponse(0, bytes.fromhex("d20f0000"))
    assert isinstance(response, TindeqCommandResponse)
    assert response.battery_mv == 4050
    assert tindeq.to_json(response)["battery_mv"] == 4050
    assert tindeq.encode(tindeq.battery_response(0, 4050)) == parse_hex("00 04 D2 0F 00 00")


def test_other_command_responses_have_no_battery_reading() -> None:
    response = tindeq.decode(parse_hex("00 03 01 02 03"))
    assert isinstance(response, TindeqCommandResponse)
    assert response.battery_mv is None


def test_low_power_warning() -> None:
    assert tindeq.decode(parse_hex("04 00"), t_ns=3) == TindeqLowPower(3)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("01", "payload length at offset 1 needs 1 byte"),
        ("01 08 00 00", "length byte says 8 but 2 bytes follow"),
        ("01 04 00 00 20 41", "not a whole number of 8-byte"),
        ("02 00", r"response code 2 \(rfd_peak\) is not supported"),
        ("09 00", "response code 9 is not supported"),
        ("01 08 00 00 C0 7F 00 00 00 00", "weight at offset 2 is nan"),
        ("01 08 00 00 80 7F 00 00 00 00", "weight at offset 2 is inf"),
    ],
)
def test_malformed_notifications_name_the_problem(payload: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        tindeq.decode(parse_hex(payload))


@pytest.mark.parametrize(
    ("command", "payload"),
    [
        (TindeqCommand.TARE, "64"),
        (TindeqCommand.START_WEIGHT, "65"),
        (TindeqCommand.STOP_WEIGHT, "66"),
        (TindeqCommand.GET_BATTERY_VOLTAGE, "6F"),
    ],
)
def test_command_opcodes(command: TindeqCommand, payload: str) -> None:
    assert tindeq.encode_command(command) == parse_hex(payload)
    assert tindeq.decode_command(parse_hex(payload)) == (command, b"")


def test_command_with_data_is_length_prefixed() -> None:
    data = tindeq.encode_command(TindeqCommand.ADD_CALIBRATION_POINT, b"\x00\x00\x20\x41")
    assert data == parse_hex("69 04 00 00 20 41")
    assert tindeq.decode_command(data) == (TindeqCommand.ADD_CALIBRATION_POINT, b"\x00\x00\x20\x41")


@pytest.mark.parametrize(
    ("payload", "message"), [("", "opcode"), ("01", "not a known command"), ("64 02 00", "says 2")]
)
def test_malformed_commands_are_rejected(payload: str, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        tindeq.decode_command(parse_hex(payload))


def test_weight_without_device_time_cannot_be_encoded() -> None:
    with pytest.raises(CodecError, match="t_us"):
        tindeq.encode(TindeqWeight(0, (ForceSample(0, 1.0),)))


def test_more_than_31_samples_do_not_fit_one_notification() -> None:
    samples = tuple(ForceSample(0, 1.0, i) for i in range(32))
    with pytest.raises(CodecError, match="exceeds 255"):
        tindeq.encode(TindeqWeight(0, samples))


@given(tindeq_records())
def test_round_trip(record: TindeqRecord) -> None:
    assert tindeq.decode(tindeq.encode(record), t_ns=record.t_ns) == record


@given(st.sampled_from(TindeqCommand), st.binary(max_size=255))
def test_command_round_trip(command: TindeqCommand, data: bytes) -> None:
    assert tindeq.decode_command(tindeq.encode_command(command, data)) == (command, data)


@given(st.binary())
def test_command_decoder_raises_only_codec_error(data: bytes) -> None:
    try:
        command, _ = tindeq.decode_command(data)
    except CodecError:
        return
    assert isinstance(command, TindeqCommand)
