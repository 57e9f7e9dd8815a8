"""IEEE-11073 16-bit SFLOAT: vectors incl. special values, exact and rounded round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.codecs import CodecError, sfloat
from tests.codec_strategies import sfloat_values


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (0x0072, 114.0),  # exponent 0
        (0xF3CF, 97.5),  # 975 · 10⁻¹
        (0xF16C, 36.4),  # 364 · 10⁻¹, a body temperature
        (0xFFF1, -1.5),  # mantissa −15, exponent −1
        (0x77FF, 2047e7),  # the largest value: the full mantissa away from exponent 0
        (0x7800, -2048e7),  # the most negative value
        (0xF7FF, 204.7),  # 2047 · 10⁻¹: 0x7FF is NaN only at exponent 0
        (0xF800, -204.8),  # −2048 · 10⁻¹: 0x800 is NRes only at exponent 0
        (0x8001, 1e-8),  # the smallest exponent
        (0x2001, 100.0),  # 1 · 10²: another spelling of 100
        (0x0000, 0.0),
        (0x07FE, math.inf),
        (0x0802, -math.inf),
    ],
)
def test_spec_vectors_decode(raw: int, value: float) -> None:
    assert sfloat.decode_raw(raw) == value
    assert sfloat.decode(raw.to_bytes(2, "little")) == value


@pytest.mark.parametrize("raw", [0x07FF, 0x0800])
def test_nan_and_nres_decode_to_nan(raw: int) -> None:
    assert math.isnan(sfloat.decode_raw(raw))


def test_reserved_value_is_rejected() -> None:
    with pytest.raises(CodecError, match="0x0801 is a reserved"):
        sfloat.decode_raw(0x0801)


@pytest.mark.parametrize(
    ("value", "raw"),
    [
        (97.5, 0xF3CF),
        (114.0, 0x0072),
        (100.0, 0x0064),  # exact: the exponent nearest 0 is chosen
        (0.5, 0xF005),
        (-1.5, 0xFFF1),
        (math.nan, 0x07FF),
        (math.inf, 0x07FE),
        (-math.inf, 0x0802),
        (3.14159, 0xE13A),  # not exact: 314 · 10⁻² is the most precise fit
        (1e-9, 0x8000),  # below the resolution: rounds to zero
        # Only the five exponent-0 raw values are special (IEEE 11073-20601, as in
        # Nordic's and bluetooth-sig's encoders): the full mantissa elsewhere.
        (204.7, 0xF7FF),
        (-204.8, 0xF800),
        (204.6, 0xF7FE),
        (2.046e10, 0x77FE),
        (2047e7, 0x77FF),
        (-2048e7, 0x7800),
        (2045.0, 0x07FD),  # the largest whole number at exponent 0
        (-2045.0, 0x0803),
        (2046.0, 0x10CD),  # 2046 at exponent 0 would be +∞: 205 · 10¹ is the nearest
        (-2048.0, 0x1F33),  # −2048 at exponent 0 would be NRes: −205 · 10¹
    ],
)
def test_encode_vectors(value: float, raw: int) -> None:
    assert sfloat.encode_raw(value) == raw


@pytest.mark.parametrize(("value", "raw"), [(97, 0x0061), (-3, 0x0FFD), (2046, 0x10CD)])
def test_int_values_encode_like_floats(value: int, raw: int) -> None:
    # int has no is_integer() before Python 3.12; records typed float may hold an int.
    assert sfloat.encode_raw(value) == raw


@pytest.mark.parametrize("value", [2048e7, -2049e7, 1e12, -1e12])
def test_values_beyond_the_range_are_rejected(value: float) -> None:
    with pytest.raises(CodecError, match="out of the SFLOAT range"):
        sfloat.encode_raw(value)


def test_decode_needs_exactly_two_bytes() -> None:
    with pytest.raises(CodecError, match="2 bytes"):
        sfloat.decode(b"\x01")


@given(sfloat_values())
def test_representable_values_round_trip_exactly(value: float) -> None:
    decoded = sfloat.decode_raw(sfloat.encode_raw(value))
    assert decoded == value or (math.isnan(value) and math.isnan(decoded))


@given(st.integers(0, 0xFFFF).filter(lambda raw: raw != sfloat.RESERVED))
def test_every_raw_value_reencodes_to_the_same_number(raw: int) -> None:
    value = sfloat.decode_raw(raw)
    again = sfloat.decode_raw(sfloat.encode_raw(value))
    assert again == value or (math.isnan(value) and math.isnan(again))


@given(st.floats(min_value=-2048e7, max_value=2047e7))
def test_any_value_in_range_encodes_to_the_most_precise_fit(value: float) -> None:
    decoded = sfloat.decode_raw(sfloat.encode_raw(value))
    # a mantissa of at least 204.5 in magnitude, unless the smallest exponent is reached
    assert abs(decoded - value) <= max(abs(value) * 0.5 / 204.5, 0.5e-8) * (1 + 1e-12)
