"""Bounds-checked little-endian reading and writing shared by the codecs.

Every read names the field it is for, so a short packet fails with a message that says
which field at which offset is missing instead of a bare ``struct.error``.
"""

from __future__ import annotations

import math
import struct

from devices.codecs.errors import CodecError


class Reader:
    """Reads little-endian fields from one payload, front to back."""

    def __init__(self, data: bytes, char: str) -> None:
        self.data = bytes(data)
        self.char = char
        self.offset = 0

    @property
    def remaining(self) -> int:
        """Bytes not read yet."""
        return len(self.data) - self.offset

    def error(self, message: str) -> CodecError:
        """A :class:`CodecError` prefixed with the characteristic's short name."""
        return CodecError(f"{self.char}: {message}")

    def take(self, size: int, field: str) -> bytes:
        """The next ``size`` bytes for ``field``; raises if the packet is too short."""
        if self.remaining < size:
            raise self.error(
                f"{field} at offset {self.offset} needs {size} byte{'s' if size > 1 else ''}, "
                f"the packet has {len(self.data)}"
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def u8(self, field: str) -> int:
        """An unsigned 8-bit field."""
        return self.take(1, field)[0]

    def u16(self, field: str) -> int:
        """An unsigned 16-bit little-endian field."""
        return int.from_bytes(self.take(2, field), "little")

    def s16(self, field: str) -> int:
        """A signed 16-bit little-endian field."""
        return int.from_bytes(self.take(2, field), "little", signed=True)

    def u24(self, field: str) -> int:
        """An unsigned 24-bit little-endian field."""
        return int.from_bytes(self.take(3, field), "little")

    def u32(self, field: str) -> int:
        """An unsigned 32-bit little-endian field."""
        return int.from_bytes(self.take(4, field), "little")

    def f32(self, field: str) -> float:
        """An IEEE-754 binary32 little-endian field."""
        value: float = struct.unpack("<f", self.take(4, field))[0]
        return value

    def end(self) -> None:
        """Raise if bytes are left over: a packet longer than its flags announce is malformed."""
        if self.remaining:
            raise self.error(
                f"{self.remaining} unexpected trailing byte{'s' if self.remaining > 1 else ''} "
                f"at offset {self.offset} (the flags announce {self.offset} bytes)"
            )


def pack_uint(value: int, size: int, char: str, field: str) -> bytes:
    """``value`` as an unsigned little-endian integer of ``size`` bytes, range-checked."""
    limit = 1 << (8 * size)
    if not 0 <= value < limit:
        raise CodecError(f"{char}: {field} {value} does not fit in uint{8 * size} (0..{limit - 1})")
    return value.to_bytes(size, "little")


def pack_sint(value: int, size: int, char: str, field: str) -> bytes:
    """``value`` as a signed little-endian integer of ``size`` bytes, range-checked."""
    half = 1 << (8 * size - 1)
    if not -half <= value < half:
        raise CodecError(
            f"{char}: {field} {value} does not fit in sint{8 * size} ({-half}..{half - 1})"
        )
    return value.to_bytes(size, "little", signed=True)


def to_units(value: float, units_per_unit: float, char: str, field: str) -> int:
    """``value`` in wire units (``value * units_per_unit``), rounded half away from zero.

    Rounding, not truncation: truncating 1/1024-s RR units biases every interval short.
    """
    scaled = value * units_per_unit
    if not math.isfinite(scaled):
        raise CodecError(f"{char}: {field} {value!r} is not a finite number")
    magnitude = abs(scaled)
    whole = math.floor(magnitude)
    # magnitude - whole is exact in binary floating point, unlike magnitude + 0.5
    rounded = whole + (1 if magnitude - whole >= 0.5 else 0)
    return rounded if scaled >= 0 else -rounded
