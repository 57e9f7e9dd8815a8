"""Moxy muscle-oxygen sensor: service 6404d801-…, data characteristic 6404d804-… (notify).

Payload, 9 bytes little-endian::

    count      u16  sample counter, wraps at 65535
    SmO2       u16  current muscle oxygen saturation, 0.1 %  (0..1000)
    prev SmO2  u16  the previous sample's SmO2, 0.1 %      (0..1000)
    tHb        u16  total haemoglobin, 0.01 g/dL           (0..4000)
    flag       u8   status bit (the Moxy calls it "request time set")

Spec vector ``CB 06 15 02 16 02 C0 04 00``: count 1739, SmO2 53.3 %, previous SmO2 53.4 %,
tHb 12.16 g/dL, flag 0. "Previous" is the SmO2 the sensor reported for the sample before
this one (published decoders call the fields current and previous saturated haemoglobin);
it lets a receiver that missed a notification still see that value. It is not a
smoothed value, so downstream code uses the current SmO2.

Values are stored as ``units / 10`` and ``units / 100``; encoding rounds to the nearest
unit, so ``decode(encode(r)) == r`` for records built from whole wire units.
"""

from __future__ import annotations

from devices.codecs.errors import CodecError
from devices.codecs.wire import Reader, pack_uint, to_units
from devices.records import SmO2Sample

CHAR = "moxy"
SMO2_MAX_UNITS = 1000  # 100.0 %
THB_MAX_UNITS = 4000  # 40.00 g/dL, the sensor's stated range


def _smo2(units: int, reader: Reader, field: str) -> float:
    if units > SMO2_MAX_UNITS:
        raise reader.error(f"{field} {units / 10} % is above 100 %")
    return units / 10


def decode(data: bytes, *, t_ns: int = 0) -> SmO2Sample:
    """Decode one Moxy notification; SmO2 in %, tHb in g/dL."""
    reader = Reader(data, CHAR)
    count = reader.u16("count")
    smo2 = _smo2(reader.u16("SmO2"), reader, "SmO2")
    previous = _smo2(reader.u16("previous SmO2"), reader, "previous SmO2")
    thb_units = reader.u16("tHb")
    if thb_units > THB_MAX_UNITS:
        raise reader.error(f"tHb {thb_units / 100} g/dL is above 40 g/dL")
    flag = reader.u8("flag")
    reader.end()
    return SmO2Sample(
        t_ns=t_ns,
        smo2_pct=smo2,
        thb_gdl=thb_units / 100,
        count=count,
        previous_smo2_pct=previous,
        flag=flag,
    )


def encode(record: SmO2Sample) -> bytes:
    """Encode a sample; a missing ``previous_smo2_pct`` is sent as the current SmO2."""
    previous = record.smo2_pct if record.previous_smo2_pct is None else record.previous_smo2_pct
    fields = (
        ("smo2_pct", record.smo2_pct, 10, SMO2_MAX_UNITS),
        ("previous_smo2_pct", previous, 10, SMO2_MAX_UNITS),
        ("thb_gdl", record.thb_gdl, 100, THB_MAX_UNITS),
    )
    body = pack_uint(record.count, 2, CHAR, "count")
    for name, value, scale, limit in fields:
        units = to_units(value, scale, CHAR, name)
        if not 0 <= units <= limit:
            raise CodecError(f"{CHAR}: {name} {value!r} is outside 0..{limit / scale}")
        body += units.to_bytes(2, "little")
    return body + pack_uint(record.flag, 1, CHAR, "flag")


def to_json(record: SmO2Sample) -> dict[str, object]:
    """JSON fields: ``smo2_pct``, ``previous_smo2_pct``, ``thb_gdl``, ``count``, ``flag``."""
    out: dict[str, object] = {"smo2_pct": record.smo2_pct, "thb_gdl": record.thb_gdl}
    if record.previous_smo2_pct is not None:
        out["previous_smo2_pct"] = record.previous_smo2_pct
    out["count"] = record.count
    out["flag"] = record.flag
    return out
