"""Activ5 force (0xF0FE, int16 × 0.27156 N): vectors, range, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given

from devices.codecs import CodecError, activ5, parse_hex
from devices.records import ForceSample
from tests.codec_strategies import activ5_samples


@pytest.mark.parametrize(
    ("payload", "newtons"), [("10 00", 16 * 0.27156), ("F0 FF", -16 * 0.27156), ("00 00", 0.0)]
)
def test_activ5_vectors(payload: str, newtons: float) -> None:
    sample = activ5.decode(parse_hex(payload))
    assert activ5.force_n(sample) == pytest.approx(newtons, rel=1e-12)
    assert sample.force_kg == pytest.approx(newtons / 9.80665, rel=1e-12)


def test_activ5_rejects_wrong_length() -> None:
    with pytest.raises(CodecError, match="trailing"):
        activ5.decode(b"\x01\x02\x03")


def test_activ5_force_beyond_int16_cannot_be_encoded() -> None:
    with pytest.raises(CodecError, match="int16 range"):
        activ5.encode(ForceSample(0, 1000.0))


@given(activ5_samples())
def test_activ5_round_trip(record: ForceSample) -> None:
    assert activ5.decode(activ5.encode(record), t_ns=record.t_ns) == record
