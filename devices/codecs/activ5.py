"""Activ5 isometric force sensor: service 0x5000, force characteristic 0xF0FE (notify).

Each notification is one signed 16-bit little-endian reading in device units of
0.27156 N (the scale the vendor SDK applies). Reported as kilograms-force
(N / 9.80665) in :class:`ForceSample`; :func:`force_n` gives newtons. The payload format
comes from the vendor SDK's documentation, not from a device we could test.

Encoding rounds to the nearest device unit; every decoded value encodes back to its raw
reading and decodes to the same float.
"""

from __future__ import annotations

from devices.codecs.errors import CodecError
from devices.codecs.wire import Reader, pack_sint, to_units
from devices.records import ForceSample

CHAR = "activ5"
NEWTONS_PER_UNIT = 0.27156
STANDARD_GRAVITY = 9.80665  # m/s², the definition of kilogram-force (CGPM 1901)


def force_n(record: ForceSample) -> float:
    """The sample's force in newtons."""
    return record.force_kg * STANDARD_GRAVITY


def decode(data: bytes, *, t_ns: int = 0) -> ForceSample:
    """Decode one force notification (int16 × 0.27156 N) to kilograms-force."""
    reader = Reader(data, CHAR)
    raw = reader.s16("force")
    reader.end()
    return ForceSample(t_ns=t_ns, force_kg=raw * NEWTONS_PER_UNIT / STANDARD_GRAVITY)


def encode(record: ForceSample) -> bytes:
    """Encode ``record.force_kg`` as the nearest int16 device unit."""
    units = to_units(record.force_kg * STANDARD_GRAVITY / NEWTONS_PER_UNIT, 1, CHAR, "force_kg")
    try:
        return pack_sint(units, 2, CHAR, "force (0.27156 N units)")
    except CodecError:
        raise CodecError(
            f"{CHAR}: force_kg {record.force_kg!r} is outside the sensor's int16 range "
            f"(±{32767 * NEWTONS_PER_UNIT / STANDARD_GRAVITY:.1f} kg)"
        ) from None


def to_json(record: ForceSample) -> dict[str, object]:
    """JSON fields: ``force_kg`` and ``force_n``."""
    return {"force_kg": record.force_kg, "force_n": force_n(record)}
