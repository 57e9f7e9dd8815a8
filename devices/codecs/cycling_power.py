"""Cycling Power Measurement (0x2A63), Cycling Power service 0x1818.

Layout, little-endian, fields in this order, each optional one present when its flag is::

    flags                  uint16
    instantaneous power    sint16  W                      (always)
    bit 0   pedal power balance        uint8   1/2 %      (bit 1: reference is left pedal)
    bit 2   accumulated torque         uint16  1/32 N·m   (bit 3: crank-based, else wheel)
    bit 4   wheel revolution data      uint32 revolutions, uint16 last event 1/2048 s
    bit 5   crank revolution data      uint16 revolutions, uint16 last event 1/1024 s
    bit 6   extreme force magnitudes   sint16 max N, sint16 min N
    bit 7   extreme torque magnitudes  sint16 max, sint16 min, 1/32 N·m
    bit 8   extreme angles             3 bytes: uint12 max (low bits), uint12 min, degrees
    bit 9   top dead spot angle        uint16  degrees
    bit 10  bottom dead spot angle     uint16  degrees
    bit 11  accumulated energy         uint16  kJ
    bit 12  offset compensation indicator (flag only)
    bits 13–15 reserved: a packet setting them has a layout we cannot know → rejected

All fractional units are binary fractions, so the floats in :class:`CyclingPowerDetail`
are exact and ``decode(encode(r)) == r`` for values that are whole wire units.
``PowerSample.flags`` holds the flags as received; :func:`encode` derives them from the
fields present (a record whose non-zero ``flags`` disagree is rejected).
"""

from __future__ import annotations

from dataclasses import fields
from typing import TypeVar

from devices.codecs.errors import CodecError
from devices.codecs.wire import Reader, pack_sint, pack_uint, to_units
from devices.records import CyclingPowerDetail, PowerSample

CHAR = "2a63"

A = TypeVar("A")
B = TypeVar("B")

PEDAL_BALANCE = 1 << 0
PEDAL_BALANCE_LEFT = 1 << 1
ACCUMULATED_TORQUE = 1 << 2
TORQUE_FROM_CRANK = 1 << 3
WHEEL_DATA = 1 << 4
CRANK_DATA = 1 << 5
EXTREME_FORCE = 1 << 6
EXTREME_TORQUE = 1 << 7
EXTREME_ANGLES = 1 << 8
TOP_DEAD_SPOT = 1 << 9
BOTTOM_DEAD_SPOT = 1 << 10
ACCUMULATED_ENERGY = 1 << 11
OFFSET_COMPENSATION = 1 << 12
RESERVED = 0xE000

TORQUE_UNITS_PER_NM = 32
BALANCE_UNITS_PER_PCT = 2
WHEEL_TIME_UNITS_PER_S = 2048
CRANK_TIME_UNITS_PER_S = 1024


def decode(data: bytes, *, t_ns: int = 0) -> PowerSample:
    """Decode one Cycling Power Measurement; optional fields go to ``detail``."""
    r = Reader(data, CHAR)
    flags = r.u16("flags")
    if flags & RESERVED:
        raise r.error(f"flags {flags:#06x} set reserved bits 13–15; the layout is unknown")
    power_w = r.s16("instantaneous power")
    d: dict[str, object] = {}
    if flags & PEDAL_BALANCE:
        d["pedal_power_balance_pct"] = r.u8("pedal power balance") / BALANCE_UNITS_PER_PCT
    if flags & ACCUMULATED_TORQUE:
        d["accumulated_torque_nm"] = r.u16("accumulated torque") / TORQUE_UNITS_PER_NM
    if flags & WHEEL_DATA:
        d["wheel_revolutions"] = r.u32("cumulative wheel revolutions")
        d["wheel_event_time_s"] = r.u16("last wheel event time") / WHEEL_TIME_UNITS_PER_S
    if flags & CRANK_DATA:
        d["crank_revolutions"] = r.u16("cumulative crank revolutions")
        d["crank_event_time_s"] = r.u16("last crank event time") / CRANK_TIME_UNITS_PER_S
    if flags & EXTREME_FORCE:
        d["max_force_n"] = r.s16("maximum force magnitude")
        d["min_force_n"] = r.s16("minimum force magnitude")
    if flags & EXTREME_TORQUE:
        d["max_torque_nm"] = r.s16("maximum torque magnitude") / TORQUE_UNITS_PER_NM
        d["min_torque_nm"] = r.s16("minimum torque magnitude") / TORQUE_UNITS_PER_NM
    if flags & EXTREME_ANGLES:
        packed = r.u24("extreme angles")
        d["max_angle_deg"] = packed & 0xFFF
        d["min_angle_deg"] = packed >> 12
    if flags & TOP_DEAD_SPOT:
        d["top_dead_spot_angle_deg"] = r.u16("top dead spot angle")
    if flags & BOTTOM_DEAD_SPOT:
        d["bottom_dead_spot_angle_deg"] = r.u16("bottom dead spot angle")
    if flags & ACCUMULATED_ENERGY:
        d["accumulated_energy_kj"] = r.u16("accumulated energy")
    r.end()
    bits = flags & (PEDAL_BALANCE_LEFT | TORQUE_FROM_CRANK | OFFSET_COMPENSATION)
    detail = None
    if d or bits:
        detail = CyclingPowerDetail(
            pedal_power_balance_left=bool(flags & PEDAL_BALANCE_LEFT),
            torque_from_crank=bool(flags & TORQUE_FROM_CRANK),
            offset_compensation=bool(flags & OFFSET_COMPENSATION),
            **d,  # type: ignore[arg-type]
        )
    return PowerSample(t_ns=t_ns, power_w=power_w, flags=flags, detail=detail)


def _pair(a: A | None, b: B | None, names: str) -> tuple[A, B] | None:
    """Both values of a two-field group, or None; one without the other is an error."""
    if a is None and b is None:
        return None
    if a is None or b is None:
        raise CodecError(f"{CHAR}: {names} go together; set both or neither")
    return a, b


def _units(value: float, per_unit: int, field: str) -> int:
    return to_units(value, per_unit, CHAR, field)


def encode(record: PowerSample) -> bytes:
    """Encode a sample; flags are derived from the fields present in ``record.detail``."""
    flags = 0
    body = b""
    d = record.detail if record.detail is not None else CyclingPowerDetail()
    if d.pedal_power_balance_left:
        flags |= PEDAL_BALANCE_LEFT
    if d.torque_from_crank:
        flags |= TORQUE_FROM_CRANK
    if d.offset_compensation:
        flags |= OFFSET_COMPENSATION
    if d.pedal_power_balance_pct is not None:
        flags |= PEDAL_BALANCE
        units = _units(d.pedal_power_balance_pct, BALANCE_UNITS_PER_PCT, "pedal_power_balance_pct")
        body += pack_uint(units, 1, CHAR, "pedal power balance (1/2 %)")
    if d.accumulated_torque_nm is not None:
        flags |= ACCUMULATED_TORQUE
        units = _units(d.accumulated_torque_nm, TORQUE_UNITS_PER_NM, "accumulated_torque_nm")
        body += pack_uint(units, 2, CHAR, "accumulated torque (1/32 N·m)")
    # Wheel then crank revolution data: a revolution count and a uint16 last event time.
    for flag, what, revolutions, event_time_s, count_bytes, time_units_per_s in (
        (WHEEL_DATA, "wheel", d.wheel_revolutions, d.wheel_event_time_s, 4, WHEEL_TIME_UNITS_PER_S),
        (CRANK_DATA, "crank", d.crank_revolutions, d.crank_event_time_s, 2, CRANK_TIME_UNITS_PER_S),
    ):
        data = _pair(revolutions, event_time_s, f"{what}_revolutions and {what}_event_time_s")
        if data is not None:
            flags |= flag
            body += pack_uint(data[0], count_bytes, CHAR, f"{what}_revolutions")
            units = _units(data[1], time_units_per_s, f"{what}_event_time_s")
            body += pack_uint(units, 2, CHAR, f"last {what} event time (1/{time_units_per_s} s)")
    force = _pair(d.max_force_n, d.min_force_n, "max_force_n and min_force_n")
    if force is not None:
        flags |= EXTREME_FORCE
        body += pack_sint(force[0], 2, CHAR, "max_force_n")
        body += pack_sint(force[1], 2, CHAR, "min_force_n")
    torque = _pair(d.max_torque_nm, d.min_torque_nm, "max_torque_nm and min_torque_nm")
    if torque is not None:
        flags |= EXTREME_TORQUE
        for name, value in zip(("max_torque_nm", "min_torque_nm"), torque, strict=True):
            body += pack_sint(_units(value, TORQUE_UNITS_PER_NM, name), 2, CHAR, f"{name} (1/32)")
    angles = _pair(d.max_angle_deg, d.min_angle_deg, "max_angle_deg and min_angle_deg")
    if angles is not None:
        flags |= EXTREME_ANGLES
        for name, angle in zip(("max_angle_deg", "min_angle_deg"), angles, strict=True):
            if not 0 <= angle <= 0xFFF:
                raise CodecError(f"{CHAR}: {name} {angle} does not fit in uint12 (0..4095)")
        body += (angles[0] | angles[1] << 12).to_bytes(3, "little")
    for flag, name in (
        (TOP_DEAD_SPOT, "top_dead_spot_angle_deg"),
        (BOTTOM_DEAD_SPOT, "bottom_dead_spot_angle_deg"),
        (ACCUMULATED_ENERGY, "accumulated_energy_kj"),
    ):
        value = getattr(d, name)
        if value is not None:
            flags |= flag
            body += pack_uint(value, 2, CHAR, name)
    if record.flags not in (0, flags):
        raise CodecError(
            f"{CHAR}: record flags {record.flags:#06x} disagree with the fields present "
            f"({flags:#06x}); leave flags at 0 to derive them"
        )
    return flags.to_bytes(2, "little") + pack_sint(record.power_w, 2, CHAR, "power_w") + body


def to_json(record: PowerSample) -> dict[str, object]:
    """JSON fields: ``power_w``, ``flags`` and every optional field present (units in names)."""
    out: dict[str, object] = {"power_w": record.power_w, "flags": record.flags}
    if record.detail is not None:
        for f in fields(record.detail):
            value = getattr(record.detail, f.name)
            if value is not None and value is not False:
                out[f.name] = value
    return out
