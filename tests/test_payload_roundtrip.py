"""Payload types both ways: payload → fields → JSON → fields → payload is the same payload,
for every kind, and JSON that is no payload is refused with the kind and field named."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.payloads import decode_payload, encode_payload
from streamer.results import (
    PAYLOAD_TYPES,
    RESERVED_KEYS,
    AlertPayload,
    AlertsPayload,
    EffortPayload,
    GripPayload,
    HeartRatePayload,
    HrvPayload,
    Kind,
    Payload,
    PayloadError,
    SessionPayload,
    SmO2Payload,
    parse,
    payload_key,
    payload_type,
)

_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_FLOAT = st.floats(allow_nan=False, allow_infinity=False)


def _strategy(tp: object) -> st.SearchStrategy[object]:
    """Values of a payload field's annotation (finite floats: NaN is tested apart)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return st.none() | _strategy(inner)
    if tp is float:
        return _FLOAT
    if tp is int:
        return st.integers(-(2**63), 2**63 - 1)
    if tp is bool:
        return st.booleans()
    if tp is str:
        return _TEXT
    if origin is tuple:
        return st.lists(_strategy(typing.get_args(tp)[0]), max_size=4).map(tuple)
    if origin in (Mapping, dict):
        return st.dictionaries(_TEXT, _strategy(typing.get_args(tp)[1]), max_size=4)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _payloads(tp)
    raise AssertionError(f"no strategy for {tp}: teach the test this payload field type")


def _payloads(cls: type) -> st.SearchStrategy[typing.Any]:
    hints = typing.get_type_hints(cls)
    init = {f.name: _strategy(hints[f.name]) for f in dataclasses.fields(cls) if f.init}
    return st.builds(cls, **init)


@pytest.mark.parametrize("cls", PAYLOAD_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_payload_to_json_and_back_is_the_same_payload(
    cls: type[Payload], data: st.DataObject
) -> None:
    payload = data.draw(_payloads(cls))
    result = payload.result("ann", 1_700_000_000_000_000_000, "dev" if cls.DEVICE else None)
    wire = encode_payload(result, 7)
    body = decode_payload(wire)
    fields = {k: v for k, v in body.items() if k not in RESERVED_KEYS}
    assert fields == payload.fields()
    back = parse(result.kind, fields)
    assert back == payload
    assert type(back) is cls
    assert cls.from_fields(fields) == payload
    assert cls.from_fields(body) == payload  # a subscriber may hand in the whole message
    assert result.payload == payload
    # And the other way: the payload read back publishes the same bytes.
    assert encode_payload(back.result("ann", result.ts_ns, result.device), 7) == wire


def test_every_kind_has_a_payload_type_and_parse_finds_it() -> None:
    assert {cls.KIND for cls in PAYLOAD_TYPES} == set(Kind)
    session = {"scope": "session", "recovery_s": 1.0, "recovery_is_lower_bound": False}
    session |= {"n_efforts": 1, "n_recovered": 1, "duration_s": 60.0, "rpe": None}
    assert payload_type(Kind.OXYGENATION, session) is SessionPayload
    assert payload_type("oxygenation", {"scope": "effort"}) is EffortPayload
    with pytest.raises(PayloadError, match=r"oxygenation result needs scope='effort' or"):
        payload_type(Kind.OXYGENATION, {"scope": "warm-up"})


def test_an_int_stays_an_int_where_a_float_is_declared() -> None:
    # JSON has one number type: 30 published for minutes_after reads back as 30, so the
    # payload read back publishes "30", not "30.0".
    grip = GripPayload.from_fields(
        {
            "mvc_kg": 50,
            "peak_kg": 44.5,
            "drop_pct": 11.0,
            "minutes_after": 30,
            "threshold_pct": 10.0,
            "threshold_basis": "article",
            "class": "grip_spillover",
            "noise_cv_pct": None,
            "drops_pct": {"0": 11.0, "30": 10.5},
        }
    )
    assert isinstance(grip.minutes_after, int)
    assert grip.grip_class == "grip_spillover"
    assert json.dumps(grip.fields()["minutes_after"]) == "30"


def test_null_is_nan_where_a_float_is_not_optional_and_none_where_it_is() -> None:
    hrv = HrvPayload.from_fields(
        {"accepted": False, "reject_reason": "noisy", "window_s": None, "rmssd_ms": None}
    )
    assert math.isnan(hrv.window_s)
    assert hrv.rmssd_ms is None
    assert hrv.n_beats is None  # absent and optional: unknown
    assert HrvPayload.from_fields(hrv.fields()).fields() == hrv.fields()


def test_absent_optional_and_defaulted_fields_and_unknown_keys() -> None:
    heart = HeartRatePayload.from_fields({"hr_bpm": 61, "rr_ms": [980.5], "new_key_v2": 1})
    assert heart == HeartRatePayload(61, (980.5,))
    assert "beat_ts_ns" not in heart.fields()  # omitted when None, both ways
    alerts = AlertsPayload.from_fields(
        {"active": [], "event": {"rule": "rhr_creep", "severity": "pull_back", "state": "raised"}}
    )
    assert alerts.event == AlertPayload("rhr_creep", "pull_back", "raised")


@pytest.mark.parametrize(
    ("kind", "fields", "message"),
    [
        (Kind.HRV, {"accepted": True, "window_s": 60.0, "n_beats": 2.5}, r"hrv\.n_beats: .*int"),
        (Kind.HRV, {"window_s": 60.0}, r"hrv: no 'accepted' field"),
        (Kind.SMO2, {"smo2_pct": "55", "thb_gdl": 12.0}, r"smo2\.smo2_pct: expected float"),
        (Kind.HEART_RATE, {"hr_bpm": 60, "rr_ms": 900.0}, r"heart_rate\.rr_ms: expected a list"),
        (Kind.HEART_RATE, {"hr_bpm": True, "rr_ms": []}, r"heart_rate\.hr_bpm: expected int"),
        (
            Kind.ALERTS,
            {"active": [], "event": {"rule": "x", "state": "raised"}},
            r"alerts\.event: no 'severity' field",
        ),
        (
            Kind.ALERTS,
            {"active": [{"rule": "x", "severity": 1, "state": "raised"}], "event": None},
            r"alerts\.active\[0\]\.severity: expected str",
        ),
    ],
)
def test_json_that_is_no_payload_names_kind_and_field(
    kind: Kind, fields: dict[str, typing.Any], message: str
) -> None:
    with pytest.raises(PayloadError, match=message):
        parse(kind, fields)


def test_a_result_is_read_as_its_payload_type_only() -> None:
    result = SmO2Payload(55.5, None).result("ann", 1, "moxy")
    assert result.payload_as(SmO2Payload).smo2_pct == 55.5
    with pytest.raises(PayloadError, match="smo2 result is no GripPayload"):
        result.payload_as(GripPayload)


def test_payload_key_is_the_published_name_and_refuses_unknown_fields() -> None:
    assert payload_key(GripPayload, "grip_class") == "class"
    assert payload_key(AlertPayload, "rule") == "rule"
    with pytest.raises(AttributeError, match="GripPayload has no payload field 'class_'"):
        payload_key(GripPayload, "class_")
