"""IEEE 11073-20601 16-bit SFLOAT, the medical number format of the PLX and other profiles.

Layout (little-endian uint16): the top 4 bits are a signed base-10 exponent (−8..7), the
low 12 bits a signed mantissa; the value is ``mantissa · 10**exponent``. Five raw values
are special: NaN ``0x07FF``, NRes (not at this resolution) ``0x0800``, +∞ ``0x07FE``,
−∞ ``0x0802`` and the reserved ``0x0801``. They are special only at exponent 0, so
there an ordinary number keeps its mantissa within ±2045; at every other exponent the
whole 12-bit range −2048..2047 is an ordinary number (204.7 is ``0xF7FF``, −204.8 is
``0xF800``, 2047·10⁷ is the largest value).

Decoding maps NaN and NRes to ``math.nan`` (both mean "no valid value"), ±∞ to ±``inf`` and
rejects the reserved value. Encoding picks an exact representation when one exists
(the exponent nearest to 0), otherwise the most precise one, rounding half to even.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal

from devices.codecs.errors import CodecError

NAN = 0x07FF
NRES = 0x0800
POSITIVE_INFINITY = 0x07FE
NEGATIVE_INFINITY = 0x0802
RESERVED = 0x0801

MANTISSA_MAX = 2045  # at exponent 0: 2046, 2047, −2048, −2047, −2046 are the special values
MANTISSA_MIN = -2045
FULL_MANTISSA_MAX = 2047  # at any other exponent the 12-bit range is ordinary numbers
FULL_MANTISSA_MIN = -2048
EXPONENT_MIN = -8
EXPONENT_MAX = 7
_EXPONENTS_NEAREST_ZERO_FIRST = sorted(range(EXPONENT_MIN, EXPONENT_MAX + 1), key=abs)


def decode_raw(raw: int, *, field: str = "SFLOAT") -> float:
    """The value of a raw 16-bit SFLOAT; NaN and NRes give ``math.nan``.

    Raises :class:`CodecError` naming ``field`` for the reserved value 0x0801.
    """
    if not 0 <= raw <= 0xFFFF:
        raise CodecError(f"{field}: {raw:#x} is not a 16-bit SFLOAT")
    if raw in (NAN, NRES):
        return math.nan
    if raw == POSITIVE_INFINITY:
        return math.inf
    if raw == NEGATIVE_INFINITY:
        return -math.inf
    if raw == RESERVED:
        raise CodecError(f"{field}: 0x0801 is a reserved SFLOAT value")
    mantissa = raw & 0x0FFF
    if mantissa >= 0x0800:
        mantissa -= 0x1000
    exponent = raw >> 12
    if exponent >= 0x8:
        exponent -= 0x10
    # Going through the decimal string gives the float nearest to the exact decimal value.
    return float(f"{mantissa}e{exponent}")


def _fits(mantissa: int | Decimal, exponent: int) -> bool:
    """Whether ``mantissa · 10**exponent`` is an ordinary SFLOAT (not a special value)."""
    if exponent == 0:
        return MANTISSA_MIN <= mantissa <= MANTISSA_MAX
    return FULL_MANTISSA_MIN <= mantissa <= FULL_MANTISSA_MAX


def encode_raw(value: float, *, field: str = "SFLOAT") -> int:
    """The raw 16-bit SFLOAT for ``value``; NaN gives 0x07FF, ±∞ give 0x07FE / 0x0802.

    Accepts an ``int`` too. Raises :class:`CodecError` naming ``field`` if ``value`` is
    beyond the range, 2047·10⁷ above and −2048·10⁷ below (after rounding).
    """
    # An int has no is_integer() before Python 3.12, and records typed float may hold ints.
    value = float(value)
    if math.isnan(value):
        return NAN
    if math.isinf(value):
        return POSITIVE_INFINITY if value > 0 else NEGATIVE_INFINITY
    if value.is_integer() and abs(value) <= MANTISSA_MAX:
        return int(value) & 0x0FFF  # the common case: a whole number at exponent 0
    exact = Decimal(repr(float(value)))  # the shortest decimal that reads back as value
    for exponent in _EXPONENTS_NEAREST_ZERO_FIRST:
        scaled = exact.scaleb(-exponent)
        if scaled == scaled.to_integral_value() and _fits(scaled, exponent):
            mantissa_out, exponent_out = int(scaled), exponent
            break
    else:  # no exact form: the smallest exponent whose rounded mantissa fits
        for exponent in range(EXPONENT_MIN, EXPONENT_MAX + 1):
            mantissa = exact.scaleb(-exponent).to_integral_value(rounding=ROUND_HALF_EVEN)
            if _fits(mantissa, exponent):
                mantissa_out, exponent_out = int(mantissa), exponent
                break
        else:
            raise CodecError(f"{field}: {value!r} is out of the SFLOAT range (-2048e7 to 2047e7)")
    return ((exponent_out & 0xF) << 12) | (mantissa_out & 0x0FFF)


def decode(data: bytes, *, field: str = "SFLOAT") -> float:
    """The value of a 2-byte little-endian SFLOAT (see :func:`decode_raw`)."""
    if len(data) != 2:
        raise CodecError(f"{field}: an SFLOAT is 2 bytes, got {len(data)}")
    return decode_raw(int.from_bytes(data, "little"), field=field)


def encode(value: float, *, field: str = "SFLOAT") -> bytes:
    """``value`` as a 2-byte little-endian SFLOAT (see :func:`encode_raw`)."""
    return encode_raw(value, field=field).to_bytes(2, "little")
