"""Tindeq Progressor (grip/force): service 7e4e1701-…, data …1702 (notify), control …1703.

Notifications on the data characteristic are ``[code u8][length u8][payload]``:

* code 0 — command response; the payload depends on the command (after "get battery
  voltage": uint32 mV) → :class:`TindeqCommandResponse`;
* code 1 — weight: repeated ``<float32 kg, uint32 µs since measurement start>`` pairs,
  several per notification, ~80 Hz → :class:`TindeqWeight` of :class:`ForceSample`;
* code 4 — low-power warning → :class:`TindeqLowPower`.

Codes 2 and 3 (rate-of-force-development peaks) are not used by the streamer and are
rejected like any unknown code. Commands written to the control characteristic are one
opcode byte, followed by ``[length][payload]`` when they carry data.

Weights are IEEE binary32: ``decode(encode(r)) == r`` for forces representable in binary32
(every decoded value is). Non-finite forces are rejected.
"""

from __future__ import annotations

import math
import struct
from enum import IntEnum

from devices.codecs.errors import CodecError
from devices.codecs.wire import Reader, pack_uint
from devices.records import ForceSample, TindeqCommandResponse, TindeqLowPower, TindeqWeight

CHAR = "tindeq"
CONTROL = "tindeq control"

TindeqRecord = TindeqWeight | TindeqCommandResponse | TindeqLowPower


class ResponseCode(IntEnum):
    """First byte of a data notification."""

    COMMAND_RESPONSE = 0
    WEIGHT = 1
    RFD_PEAK = 2
    RFD_PEAK_SERIES = 3
    LOW_POWER_WARNING = 4


class TindeqCommand(IntEnum):
    """Opcodes written to the control characteristic."""

    TARE = 0x64
    START_WEIGHT = 0x65
    STOP_WEIGHT = 0x66  # stop weights before asking for the battery voltage
    START_PEAK_RFD = 0x67
    START_PEAK_RFD_SERIES = 0x68
    ADD_CALIBRATION_POINT = 0x69
    SAVE_CALIBRATION = 0x6A
    GET_APP_VERSION = 0x6B
    GET_ERROR_INFO = 0x6C
    CLEAR_ERROR_INFO = 0x6D
    SLEEP = 0x6E
    GET_BATTERY_VOLTAGE = 0x6F


WEIGHT_PAIR_SIZE = 8
MAX_PAYLOAD = 0xFF


def decode(data: bytes, *, t_ns: int = 0) -> TindeqRecord:
    """Decode one data-characteristic notification; ``t_ns`` is the receipt time."""
    reader = Reader(data, CHAR)
    code = reader.u8("response code")
    length = reader.u8("payload length")
    if reader.remaining != length:
        raise reader.error(
            f"payload length byte says {length} but {reader.remaining} bytes follow at offset 2"
        )
    if code == ResponseCode.COMMAND_RESPONSE:
        return TindeqCommandResponse(t_ns=t_ns, payload=reader.take(length, "payload"))
    if code == ResponseCode.LOW_POWER_WARNING:
        return TindeqLowPower(t_ns=t_ns)
    if code != ResponseCode.WEIGHT:
        name = ResponseCode(code).name.lower() if code in ResponseCode._value2member_map_ else ""
        raise reader.error(f"response code {code} {f'({name}) ' if name else ''}is not supported")
    if length % WEIGHT_PAIR_SIZE:
        raise reader.error(
            f"weight payload of {length} bytes is not a whole number of 8-byte "
            "<float32 kg, uint32 µs> pairs"
        )
    samples = []
    while reader.remaining:
        offset = reader.offset
        force_kg = reader.f32("weight (float32 kg)")
        if not math.isfinite(force_kg):
            raise reader.error(f"weight at offset {offset} is {force_kg}, not a finite number")
        samples.append(ForceSample(t_ns=t_ns, force_kg=force_kg, t_us=reader.u32("time (µs)")))
    return TindeqWeight(t_ns=t_ns, samples=tuple(samples))


def _frame(code: ResponseCode, payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise CodecError(f"{CHAR}: payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return bytes([code, len(payload)]) + payload


def encode(record: TindeqRecord) -> bytes:
    """Encode a response notification (what a Progressor sends on the data characteristic).

    A weight notification holds at most 31 samples (255 payload bytes); each needs ``t_us``.
    """
    if isinstance(record, TindeqCommandResponse):
        return _frame(ResponseCode.COMMAND_RESPONSE, bytes(record.payload))
    if isinstance(record, TindeqLowPower):
        return _frame(ResponseCode.LOW_POWER_WARNING, b"")
    payload = bytearray()
    for i, sample in enumerate(record.samples):
        if sample.t_us is None:
            raise CodecError(f"{CHAR}: sample {i} has no t_us; the Progressor always sends one")
        if not math.isfinite(sample.force_kg):
            raise CodecError(f"{CHAR}: sample {i} force_kg {sample.force_kg!r} is not finite")
        try:
            payload += struct.pack("<f", sample.force_kg)
        except OverflowError:
            raise CodecError(
                f"{CHAR}: sample {i} force_kg {sample.force_kg!r} overflows float32"
            ) from None
        payload += pack_uint(sample.t_us, 4, CHAR, f"sample {i} t_us")
    return _frame(ResponseCode.WEIGHT, bytes(payload))


def battery_response(t_ns: int, battery_mv: int) -> TindeqCommandResponse:
    """The command response a Progressor sends to "get battery voltage" (uint32 mV)."""
    return TindeqCommandResponse(t_ns=t_ns, payload=pack_uint(battery_mv, 4, CHAR, "battery_mv"))


def encode_command(command: TindeqCommand, payload: bytes = b"") -> bytes:
    """The bytes to write to the control characteristic for ``command``.

    A command without data is its single opcode byte; with data it is
    ``[opcode][length][payload]``.
    """
    if not payload:
        return bytes([command])
    if len(payload) > MAX_PAYLOAD:
        raise CodecError(f"{CONTROL}: payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return bytes([command, len(payload)]) + payload


def decode_command(data: bytes) -> tuple[TindeqCommand, bytes]:
    """Parse a control write (what an emulated Progressor receives): opcode and payload.

    Accepts a bare opcode and the ``[opcode][length][payload]`` form.
    """
    reader = Reader(data, CONTROL)
    opcode = reader.u8("opcode")
    try:
        command = TindeqCommand(opcode)
    except ValueError:
        raise reader.error(f"opcode {opcode:#04x} is not a known command") from None
    if not reader.remaining:
        return command, b""
    length = reader.u8("payload length")
    if reader.remaining != length:
        raise reader.error(
            f"payload length byte says {length} but {reader.remaining} bytes follow at offset 2"
        )
    return command, reader.take(length, "payload")


def to_json(record: TindeqRecord) -> dict[str, object]:
    """JSON fields: ``response`` plus ``samples`` (``force_kg``, ``t_us``), ``battery_mv``
    or ``payload_hex`` depending on the response."""
    if isinstance(record, TindeqWeight):
        return {
            "response": "weight",
            "samples": [{"force_kg": s.force_kg, "t_us": s.t_us} for s in record.samples],
        }
    if isinstance(record, TindeqLowPower):
        return {"response": "low_power_warning"}
    out: dict[str, object] = {"response": "command_response", "payload_hex": record.payload.hex()}
    if record.battery_mv is not None:
        out["battery_mv"] = record.battery_mv
    return out
