"""PLX Continuous Measurement (0x2A5F), Pulse Oximeter service 0x1822.

Layout, little-endian, optional fields present when their flag is set, in this order::

    flags                          uint8
    SpO2PR-Normal  SpO2, PR        SFLOAT %, SFLOAT bpm      (always)
    bit 0  SpO2PR-Fast  SpO2, PR   SFLOAT %, SFLOAT bpm
    bit 1  SpO2PR-Slow  SpO2, PR   SFLOAT %, SFLOAT bpm
    bit 2  Measurement Status      uint16 (bit field)
    bit 3  Device and Sensor Status  uint24 (bit field)
    bit 4  Pulse Amplitude Index   SFLOAT %
    bits 5–7 reserved: the layout after them is unknown → rejected

SFLOAT NaN and NRes become ``math.nan`` ("no valid value"); ±∞ and the reserved SFLOAT
are rejected because no oxygen saturation or pulse rate is infinite.
"""

from __future__ import annotations

import math
from dataclasses import fields

from devices.codecs import sfloat
from devices.codecs.errors import CodecError
from devices.codecs.wire import Reader, pack_uint
from devices.records import PlxDetail, SpO2Sample

CHAR = "2a5f"

FAST = 1 << 0
SLOW = 1 << 1
MEASUREMENT_STATUS = 1 << 2
DEVICE_SENSOR_STATUS = 1 << 3
PULSE_AMPLITUDE_INDEX = 1 << 4
RESERVED = 0xE0


def _read_sfloat(reader: Reader, field: str) -> float:
    offset = reader.offset
    raw = int.from_bytes(reader.take(2, field), "little")
    value = sfloat.decode_raw(raw, field=f"{CHAR}: {field} at offset {offset}")
    if math.isinf(value):
        raise reader.error(f"{field} at offset {offset} is {value} (SFLOAT {raw:#06x})")
    return value


def _write_sfloat(value: float, field: str) -> bytes:
    if math.isinf(value):
        raise CodecError(f"{CHAR}: {field} {value} is not a valid reading")
    return sfloat.encode(value, field=f"{CHAR}: {field}")


def decode(data: bytes, *, t_ns: int = 0) -> SpO2Sample:
    """Decode one PLX Continuous Measurement; optional fields go to ``detail``."""
    r = Reader(data, CHAR)
    flags = r.u8("flags")
    if flags & RESERVED:
        raise r.error(f"flags {flags:#04x} set reserved bits 5–7; the layout is unknown")
    spo2 = _read_sfloat(r, "SpO2")
    pulse = _read_sfloat(r, "pulse rate")
    d: dict[str, object] = {}
    if flags & FAST:
        d["spo2_fast_pct"] = _read_sfloat(r, "SpO2 fast")
        d["pulse_fast_bpm"] = _read_sfloat(r, "pulse rate fast")
    if flags & SLOW:
        d["spo2_slow_pct"] = _read_sfloat(r, "SpO2 slow")
        d["pulse_slow_bpm"] = _read_sfloat(r, "pulse rate slow")
    if flags & MEASUREMENT_STATUS:
        d["measurement_status"] = r.u16("measurement status")
    if flags & DEVICE_SENSOR_STATUS:
        d["device_sensor_status"] = r.u24("device and sensor status")
    if flags & PULSE_AMPLITUDE_INDEX:
        d["pulse_amplitude_index_pct"] = _read_sfloat(r, "pulse amplitude index")
    r.end()
    detail = PlxDetail(**d) if d else None  # type: ignore[arg-type]
    return SpO2Sample(t_ns=t_ns, spo2_pct=spo2, pulse_bpm=pulse, detail=detail)


def _pair(a: float | None, b: float | None, names: str) -> tuple[float, float] | None:
    """Both values of an SpO2/pulse pair, or None; one without the other is an error."""
    if a is None and b is None:
        return None
    if a is None or b is None:
        raise CodecError(f"{CHAR}: {names} go together; set both or neither")
    return a, b


def encode(record: SpO2Sample) -> bytes:
    """Encode a sample; flags are derived from the fields present in ``record.detail``."""
    flags = 0
    body = _write_sfloat(record.spo2_pct, "spo2_pct") + _write_sfloat(record.pulse_bpm, "pulse_bpm")
    d = record.detail if record.detail is not None else PlxDetail()
    fast = _pair(d.spo2_fast_pct, d.pulse_fast_bpm, "spo2_fast_pct and pulse_fast_bpm")
    if fast is not None:
        flags |= FAST
        body += _write_sfloat(fast[0], "spo2_fast_pct")
        body += _write_sfloat(fast[1], "pulse_fast_bpm")
    slow = _pair(d.spo2_slow_pct, d.pulse_slow_bpm, "spo2_slow_pct and pulse_slow_bpm")
    if slow is not None:
        flags |= SLOW
        body += _write_sfloat(slow[0], "spo2_slow_pct")
        body += _write_sfloat(slow[1], "pulse_slow_bpm")
    if d.measurement_status is not None:
        flags |= MEASUREMENT_STATUS
        body += pack_uint(d.measurement_status, 2, CHAR, "measurement_status")
    if d.device_sensor_status is not None:
        flags |= DEVICE_SENSOR_STATUS
        body += pack_uint(d.device_sensor_status, 3, CHAR, "device_sensor_status")
    if d.pulse_amplitude_index_pct is not None:
        flags |= PULSE_AMPLITUDE_INDEX
        body += _write_sfloat(d.pulse_amplitude_index_pct, "pulse_amplitude_index_pct")
    return bytes([flags]) + body


def _json_number(value: float) -> float | None:
    # JSON has no NaN: "no valid value" is null.
    return None if math.isnan(value) else value


def to_json(record: SpO2Sample) -> dict[str, object]:
    """JSON fields: ``spo2_pct``, ``pulse_bpm`` (null when the device sent NaN/NRes) and
    every optional field present."""
    out: dict[str, object] = {
        "spo2_pct": _json_number(record.spo2_pct),
        "pulse_bpm": _json_number(record.pulse_bpm),
    }
    if record.detail is not None:
        for f in fields(record.detail):
            value = getattr(record.detail, f.name)
            if value is not None:
                out[f.name] = _json_number(value) if isinstance(value, float) else value
    return out
