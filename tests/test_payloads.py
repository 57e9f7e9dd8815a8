"""JSON payloads: header, units, no NaN, and records converted faithfully."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.records import ForceSample, HeartRateSample, PowerSample, SmO2Sample, SpO2Sample
from streamer.payloads import (
    SCHEMA_VERSION,
    build_payload,
    decode_payload,
    encode_payload,
    iso_time,
)
from streamer.results import (
    Kind,
    Result,
    alert_result,
    live_result,
    parse,
    record_fields,
    to_jsonable,
)


class _Class(enum.Enum):
    SIGNAL = "grip_signal"


@dataclasses.dataclass(frozen=True)
class _Post:
    minute: float
    drop_pct: float


@dataclasses.dataclass(frozen=True)
class _Grip:
    mvc_kg: float
    drop_pct: float
    grip_class: _Class
    post: tuple[_Post, ...]
    noise: float


def test_header_comes_first_and_carries_schema_seq_and_times() -> None:
    r = Result(Kind.HRV, "alice", 1_700_000_000_123_456_789, {"rmssd_ms": 42.5, "n_beats": 60})
    body = json.loads(encode_payload(r, 7))
    assert list(body)[:5] == ["schema", "seq", "ts_ns", "time", "athlete"]
    assert body["schema"] == SCHEMA_VERSION == 1
    assert body["seq"] == 7
    assert body["ts_ns"] == 1_700_000_000_123_456_789
    assert body["time"] == "2023-11-14T22:13:20.123456Z"
    assert body["rmssd_ms"] == 42.5
    assert body["n_beats"] == 60
    assert "kind" not in body
    assert "device" not in body


def test_live_heart_rate_payload_has_kind_device_and_rr_list() -> None:
    sample = HeartRateSample(t_ns=5_000_000_000, hr_bpm=61, rr_ms=(980.5, 1001.0))
    body = decode_payload(encode_payload(live_result("alice", "strap", sample), 1))
    assert body["kind"] == "heart_rate"
    assert body["device"] == "strap"
    assert body["hr_bpm"] == 61
    assert body["rr_ms"] == [980.5, 1001.0]


@pytest.mark.parametrize(
    ("sample", "kind", "fields"),
    [
        (SmO2Sample(1, 55.5, 12.1), "smo2", {"smo2_pct": 55.5, "thb_gdl": 12.1}),
        (ForceSample(1, 31.25), "force", {"force_kg": 31.25}),
        (PowerSample(1, 250), "power", {"power_w": 250}),
        (SpO2Sample(1, 97.0, 64.0), "spo2", {"spo2_pct": 97.0, "pulse_bpm": 64.0}),
        # NaN: the oximeter had no valid value (SFLOAT NaN/NRes) → null.
        (SpO2Sample(1, math.nan, math.nan), "spo2", {"spo2_pct": None, "pulse_bpm": None}),
    ],
)
def test_live_samples_carry_exactly_their_schema_fields(
    sample: SmO2Sample | ForceSample | PowerSample | SpO2Sample,
    kind: str,
    fields: dict[str, float | None],
) -> None:
    r = live_result("a", "d", sample)
    assert r.kind.value == kind
    assert dict(r.fields) == fields
    assert r.qos == 0
    assert not r.retain


_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)
_LIVE_SAMPLES = st.one_of(
    st.builds(
        HeartRateSample,
        t_ns=st.integers(0, 2**62),
        hr_bpm=st.integers(0, 255),
        rr_ms=st.lists(_FLOATS, max_size=4).map(tuple),
    ),
    st.builds(SmO2Sample, t_ns=st.integers(0, 2**62), smo2_pct=_FLOATS, thb_gdl=_FLOATS),
    st.builds(ForceSample, t_ns=st.integers(0, 2**62), force_kg=_FLOATS),
    st.builds(PowerSample, t_ns=st.integers(0, 2**62), power_w=st.integers(-2000, 4000)),
    st.builds(SpO2Sample, t_ns=st.integers(0, 2**62), spo2_pct=_FLOATS, pulse_bpm=_FLOATS),
)


@given(_LIVE_SAMPLES, st.booleans())
def test_a_live_results_payload_is_what_its_fields_parse_back_to(
    sample: HeartRateSample | SmO2Sample | ForceSample | PowerSample | SpO2Sample,
    tagged: bool,
) -> None:
    # live_result keeps the payload it was made from (not parsed again per sample) only
    # where parsing would give the same; a team worker's gateway tag keeps it too.
    r = live_result("a", "d", sample)
    if tagged:
        r = r.received_by("gw1")
        assert r.gateway == "gw1"
        assert dataclasses.replace(r, gateway=None) == live_result("a", "d", sample)
    parsed = parse(r.kind, r.fields)
    assert encode_payload(parsed.result("a", r.ts_ns, "d"), 1) == encode_payload(r, 1)
    assert repr(r.payload) == repr(parsed)  # NaN compares unequal to itself, not in repr


def test_non_finite_numbers_become_null_never_nan() -> None:
    r = Result(Kind.SMO2, "a", 1, {"smo2_pct": float("nan"), "thb_gdl": float("inf")}, "d")
    text = encode_payload(r, 1).decode()
    assert "NaN" not in text
    assert "Infinity" not in text
    assert json.loads(text)["smo2_pct"] is None


def test_record_fields_converts_enums_tuples_nested_records_and_renames() -> None:
    grip = _Grip(40.0, 12.5, _Class.SIGNAL, (_Post(0, 12.5), _Post(15, 3.0)), math.nan)
    fields = record_fields(grip, rename={"grip_class": "class"})
    assert fields == {
        "mvc_kg": 40.0,
        "drop_pct": 12.5,
        "class": "grip_signal",
        "post": [{"minute": 0, "drop_pct": 12.5}, {"minute": 15, "drop_pct": 3.0}],
        "noise": None,
    }


def test_from_record_needs_a_time() -> None:
    grip = _Grip(40.0, 1.0, _Class.SIGNAL, (), 0.1)
    with pytest.raises(ValueError, match="ts_ns"):
        Result.from_record(Kind.GRIP, "a", grip)
    r = Result.from_record(
        Kind.GRIP, "a", grip, ts_ns=10, rename={"grip_class": "class"}, extra={"minutes_after": 30}
    )
    assert r.ts_ns == 10
    assert r.fields["class"] == "grip_signal"
    assert r.fields["minutes_after"] == 30


def test_record_time_is_taken_from_t_ns() -> None:
    r = Result.from_record(Kind.FORCE, "a", ForceSample(123, 9.5, t_us=4), device="g")
    assert r.ts_ns == 123
    assert r.fields == {"force_kg": 9.5, "t_us": 4}


def test_fields_may_not_shadow_the_header() -> None:
    with pytest.raises(ValueError, match="header"):
        Result(Kind.HRV, "a", 1, {"seq": 3})


def test_live_result_without_device_is_refused() -> None:
    with pytest.raises(ValueError, match="device"):
        Result(Kind.HEART_RATE, "a", 1, {"hr_bpm": 60})


def test_alert_payload_carries_active_list_and_event() -> None:
    event = {
        "rule": "rhr_creep",
        "severity": "pull_back",
        "state": "raised",
        "message": "m",
        "advice": "cut volume 40%",
        "evidence": {"delta_bpm": 6.0},
        "source": "morning",
        "raised_ts_ns": 99,
        "cleared_ts_ns": None,
    }
    r = alert_result("alice", event, [event])
    assert r.ts_ns == 99
    assert r.retain
    assert r.qos == 1
    body = decode_payload(encode_payload(r, 3))
    # Fields newer than the event's source are published with their "none" values.
    published = {
        **event,
        "volume_cut_until": None,
        "clear_reason": None,
        "clear_message": None,
        "resume_since_ts_ns": None,
        "resume_evidence": {},
    }
    assert body["event"] == published
    assert body["active"] == [published]


def test_cleared_alert_takes_its_clear_time() -> None:
    event = {
        "rule": "rhr_creep",
        "severity": "pull_back",
        "state": "cleared",
        "raised_ts_ns": 1,
        "cleared_ts_ns": 50,
    }
    assert alert_result("a", event, []).ts_ns == 50


def test_an_alert_without_rule_severity_or_state_is_refused() -> None:
    with pytest.raises(ValueError, match="severity"):
        alert_result("a", {"rule": "rhr_creep", "state": "raised", "raised_ts_ns": 1}, [])


def test_to_jsonable_refuses_unknown_objects_instead_of_stringifying() -> None:
    with pytest.raises(TypeError, match="object"):
        to_jsonable(object())


def test_to_jsonable_handles_dates_and_numpy() -> None:
    np = pytest.importorskip("numpy")
    assert to_jsonable({"d": dt.date(2024, 5, 1), "x": np.float64(1.5), "v": np.arange(3)}) == {
        "d": "2024-05-01",
        "x": 1.5,
        "v": [0, 1, 2],
    }


@given(st.integers(min_value=0, max_value=2**62))
def test_iso_time_round_trips_to_the_microsecond(ts_ns: int) -> None:
    parsed = dt.datetime.fromisoformat(iso_time(ts_ns))
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    assert (parsed - epoch) // dt.timedelta(microseconds=1) == ts_ns // 1000


@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(),
            st.text(),
            st.lists(st.floats(), max_size=4),
        ),
    )
)
def test_any_fields_encode_to_valid_strict_json(fields: dict[str, object]) -> None:
    fields = {
        k: v
        for k, v in fields.items()
        if k not in {"schema", "seq", "ts_ns", "time", "athlete", "device", "kind"}
    }
    r = Result(Kind.STATUS, "a", 1, to_jsonable(fields))  # type: ignore[arg-type]
    body = json.loads(encode_payload(r, 1), parse_constant=lambda c: pytest.fail(c))
    assert body["schema"] == 1
    assert set(fields) <= set(body)


def test_payload_build_rejects_negative_seq() -> None:
    with pytest.raises(ValueError, match="seq"):
        build_payload(Result(Kind.HRV, "a", 1, {}), -1)


def test_decode_refuses_other_schemas() -> None:
    with pytest.raises(ValueError, match="schema"):
        decode_payload(b'{"schema": 2}')


def test_processors_alert_is_published_in_schema_form() -> None:
    from processors.alerts import Alert, AlertState, Severity

    alert = Alert(
        "rhr_creep",
        Severity.PULL_BACK,
        "alice",
        "RHR up 6 bpm",
        {"delta_bpm": 6.0},
        "cut 40%",
        "RULES.md",
        raised_at_ns=10,
        state=AlertState.CLEARED,
        cleared_at_ns=20,
    )
    r = alert_result("alice", alert, [])
    assert r.ts_ns == 20
    assert dict(r.fields)["event"] == {
        "rule": "rhr_creep",
        "severity": "pull_back",
        "state": "cleared",
        "message": "RHR up 6 bpm",
        "evidence": {"delta_bpm": 6.0},
        "advice": "cut 40%",
        "source": "RULES.md",
        "raised_ts_ns": 10,
        "cleared_ts_ns": 20,
        "volume_cut_until": "1970-01-08",  # the pull-back's week: raised day + 7
        "clear_reason": None,  # built by hand, not cleared by a book: no reason given
        "clear_message": None,
        "resume_since_ts_ns": None,
        "resume_evidence": {},
    }
    assert alert_result("alice", alert.to_dict(), []).fields["event"] == r.fields["event"]
