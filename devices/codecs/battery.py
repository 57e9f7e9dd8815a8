"""Battery Level (0x2A19), Battery service 0x180F: one uint8, percent 0..100."""

from __future__ import annotations

from devices.codecs.errors import CodecError
from devices.codecs.wire import Reader
from devices.records import BatteryLevel

CHAR = "2a19"


def decode(data: bytes, *, t_ns: int = 0) -> BatteryLevel:
    """Decode a Battery Level value; values above 100 % are reserved and rejected."""
    reader = Reader(data, CHAR)
    pct = reader.u8("battery level")
    reader.end()
    if pct > 100:
        raise reader.error(f"battery level {pct} % is above 100 % (101..255 are reserved)")
    return BatteryLevel(t_ns=t_ns, battery_pct=pct)


def encode(record: BatteryLevel) -> bytes:
    """Encode ``record.battery_pct`` (required, 0..100) as one byte."""
    if record.battery_pct is None:
        raise CodecError(f"{CHAR}: battery_pct is required to encode a Battery Level")
    if not 0 <= record.battery_pct <= 100:
        raise CodecError(f"{CHAR}: battery_pct {record.battery_pct} is outside 0..100")
    return bytes([record.battery_pct])


def to_json(record: BatteryLevel) -> dict[str, object]:
    """JSON fields: ``battery_pct`` and/or ``battery_mv``, whichever the record holds."""
    out: dict[str, object] = {}
    if record.battery_pct is not None:
        out["battery_pct"] = record.battery_pct
    if record.battery_mv is not None:
        out["battery_mv"] = record.battery_mv
    return out
