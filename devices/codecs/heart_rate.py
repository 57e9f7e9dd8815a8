"""Heart Rate Measurement (0x2A37) and Body Sensor Location (0x2A38), Heart Rate service.

0x2A37 layout, little-endian::

    flags u8    bit 0: HR is uint16 (else uint8)
                bits 1–2: sensor contact; bit 2 = contact detection supported,
                          bit 1 = contact detected (meaningful only when bit 2 is set)
                bit 3: Energy Expended present (uint16, kJ)
                bit 4: RR intervals present (uint16 each, 1/1024 s, oldest first,
                       as many as fill the rest of the packet)
                bits 5–7: reserved, ignored
    HR          uint8 or uint16, bpm
    [energy]    uint16 kJ
    [RR...]     uint16 × n, 1/1024 s

RR intervals are kept in milliseconds as ``units · 1000 / 1024`` — a binary fraction
(125/128 ms per unit), so the float is exact and ``decode(encode(r)) == r`` for every RR
that is a whole number of 1/1024 s. Encoding rounds ``ms · 1.024`` to the nearest unit
(half away from zero); truncating, as some samples do, biases every interval short.
"""

from __future__ import annotations

from devices.codecs.errors import CodecError
from devices.codecs.wire import Reader, pack_uint, to_units
from devices.records import BodySensorLocation, HeartRateSample, SensorContact, SensorLocation

CHAR = "2a37"
LOCATION_CHAR = "2a38"

FLAG_HR_UINT16 = 0x01
FLAG_CONTACT_DETECTED = 0x02
FLAG_CONTACT_SUPPORTED = 0x04
FLAG_ENERGY = 0x08
FLAG_RR = 0x10

RR_UNITS_PER_S = 1024
RR_MAX_MS = 0xFFFF * 1000 / RR_UNITS_PER_S  # 63999.0234375 ms


def rr_units_to_ms(units: int) -> float:
    """An RR interval in 1/1024 s as milliseconds (exact: 1000/1024 is a binary fraction)."""
    return units * 1000 / RR_UNITS_PER_S


def rr_ms_to_units(rr_ms: float) -> int:
    """An RR interval in ms as whole 1/1024 s, rounded to nearest; :class:`CodecError` if
    it does not fit in uint16."""
    units = to_units(rr_ms, RR_UNITS_PER_S / 1000, CHAR, "RR interval (ms)")
    if not 0 <= units <= 0xFFFF:
        raise CodecError(f"{CHAR}: RR interval {rr_ms!r} ms is outside 0..{RR_MAX_MS} ms")
    return units


def decode(data: bytes, *, t_ns: int = 0) -> HeartRateSample:
    """Decode one Heart Rate Measurement notification; ``t_ns`` is the receipt time."""
    reader = Reader(data, CHAR)
    flags = reader.u8("flags")
    hr_bpm = (
        reader.u16("heart rate (uint16)")
        if flags & FLAG_HR_UINT16
        else reader.u8("heart rate (uint8)")
    )
    if not flags & FLAG_CONTACT_SUPPORTED:
        contact = SensorContact.NOT_SUPPORTED
    elif flags & FLAG_CONTACT_DETECTED:
        contact = SensorContact.DETECTED
    else:
        contact = SensorContact.NOT_DETECTED
    energy_kj = reader.u16("energy expended") if flags & FLAG_ENERGY else None
    rr: list[float] = []
    if flags & FLAG_RR:
        if reader.remaining % 2:
            raise reader.error(
                f"RR intervals from offset {reader.offset} take {reader.remaining} bytes, "
                "not a whole number of uint16 values"
            )
        while reader.remaining:
            rr.append(rr_units_to_ms(reader.u16("RR interval")))
    reader.end()
    return HeartRateSample(
        t_ns=t_ns, hr_bpm=hr_bpm, rr_ms=tuple(rr), contact=contact, energy_kj=energy_kj
    )


def encode(record: HeartRateSample) -> bytes:
    """Encode a sample as a 0x2A37 payload: uint8 HR when it fits, RR rounded to 1/1024 s."""
    flags = 0
    if record.hr_bpm > 0xFF:
        flags |= FLAG_HR_UINT16
        body = pack_uint(record.hr_bpm, 2, CHAR, "hr_bpm")
    else:
        body = pack_uint(record.hr_bpm, 1, CHAR, "hr_bpm")
    if record.contact is SensorContact.DETECTED:
        flags |= FLAG_CONTACT_SUPPORTED | FLAG_CONTACT_DETECTED
    elif record.contact is SensorContact.NOT_DETECTED:
        flags |= FLAG_CONTACT_SUPPORTED
    if record.energy_kj is not None:
        flags |= FLAG_ENERGY
        body += pack_uint(record.energy_kj, 2, CHAR, "energy_kj")
    if record.rr_ms:
        flags |= FLAG_RR
        body += b"".join(rr_ms_to_units(rr).to_bytes(2, "little") for rr in record.rr_ms)
    return bytes([flags]) + body


def to_json(record: HeartRateSample) -> dict[str, object]:
    """JSON fields with units in their names; absent optional fields are left out."""
    out: dict[str, object] = {"hr_bpm": record.hr_bpm, "rr_ms": list(record.rr_ms)}
    out["contact"] = record.contact.value
    if record.energy_kj is not None:
        out["energy_kj"] = record.energy_kj
    return out


def decode_location(data: bytes, *, t_ns: int = 0) -> BodySensorLocation:
    """Decode a Body Sensor Location (0x2A38) value: one uint8, 0 = other … 6 = foot."""
    reader = Reader(data, LOCATION_CHAR)
    value = reader.u8("body sensor location")
    reader.end()
    try:
        location = SensorLocation(value)
    except ValueError:
        raise reader.error(f"body sensor location {value} is reserved (known: 0..6)") from None
    return BodySensorLocation(t_ns=t_ns, location=location)


def encode_location(record: BodySensorLocation) -> bytes:
    """Encode a Body Sensor Location record as its one-byte value."""
    return bytes([record.location.value])


def location_to_json(record: BodySensorLocation) -> dict[str, object]:
    """JSON fields: the location's name (``"chest"``) and its wire value."""
    return {"location": record.location.name.lower(), "location_code": record.location.value}
