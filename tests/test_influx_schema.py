"""Results → line protocol: measurements, tags and stable field types of SCHEMA.md."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.records import HeartRateSample, PowerSample, SpO2Sample
from streamer.results import Kind, Result, alert_result, live_result
from streamer.sinks.influx_schema import FIELD_TYPES, SchemaError, lines_for


def test_heart_rate_sample_gives_one_point_per_beat_with_hr_on_the_last() -> None:
    r = live_result("alice", "strap", HeartRateSample(10_000_000_000, 60, (1000.0, 500.0)))
    assert lines_for(r) == [
        "heart_rate,athlete=alice,device=strap rr_ms=1000 9500000000",
        "heart_rate,athlete=alice,device=strap hr_bpm=60,rr_ms=500 10000000000",
    ]


def test_heart_rate_uses_beat_times_when_the_pipeline_gives_them() -> None:
    r = Result(Kind.HEART_RATE, "a", 100, {"hr_bpm": 60, "rr_ms": [900.0], "beat_ts_ns": [42]}, "s")
    assert lines_for(r) == [
        "heart_rate,athlete=a,device=s rr_ms=900 42",
        "heart_rate,athlete=a,device=s hr_bpm=60 100",
    ]


def test_spo2_goes_to_pulse_oximetry_not_next_to_muscle_smo2() -> None:
    (line,) = lines_for(live_result("a", "finger", SpO2Sample(7, 97, 64)))
    assert line == "pulse_oximetry,athlete=a,device=finger pulse_bpm=64,spo2_pct=97 7"
    assert lines_for(live_result("a", "finger", SpO2Sample(8, float("nan"), float("nan")))) == []


def test_whole_numbers_are_written_as_floats_except_counts() -> None:
    r = Result(Kind.HRV, "a", 5, {"rmssd_ms": 40, "ln_rmssd": 3.6888, "n_beats": 60})
    (line,) = lines_for(r)
    assert line == "hrv,athlete=a ln_rmssd=3.6888,n_beats=60i,rmssd_ms=40 5"
    (power,) = lines_for(live_result("a", "pm", PowerSample(7, 250)))
    assert power == "power,athlete=a,device=pm power_w=250 7"  # no 'i': a float field


def test_morning_bool_and_missing_baseline_fields() -> None:
    r = Result(
        Kind.MORNING,
        "a",
        1,
        {
            "date": "2024-05-01",
            "ln_rmssd": 4.1,
            "accepted": True,
            "ln_rmssd_baseline_mean": None,
            "reject_reason": None,
        },
    )
    assert lines_for(r) == ["morning,athlete=a accepted=true,ln_rmssd=4.1 1"]


def test_oxygenation_scope_and_grip_class_are_tags() -> None:
    ox = Result(
        Kind.OXYGENATION, "a", 1, {"scope": "session", "recovery_s": 130.0, "n_efforts": 4}, "moxy"
    )
    assert lines_for(ox) == [
        "oxygen_recovery,athlete=a,device=moxy,scope=session n_efforts=4i,recovery_s=130 1"
    ]
    grip = Result(
        Kind.GRIP, "a", 2, {"class": "grip_spillover", "drop_pct": 14.0, "mvc_kg": 45.5}, "tindeq"
    )
    assert lines_for(grip) == [
        "grip_test,athlete=a,class=grip_spillover,device=tindeq drop_pct=14,mvc_kg=45.5 2"
    ]


def test_alert_event_becomes_one_alert_point() -> None:
    event = {
        "rule": "hrv_downtrend",
        "severity": "pull_back",
        "state": "raised",
        "message": 'HRV "down"',
        "advice": "cut 40%",
        "raised_ts_ns": 9,
    }
    assert lines_for(alert_result("a", event, [event])) == [
        'alert,athlete=a,rule=hrv_downtrend,severity=pull_back active=1i,advice="cut 40%",'
        'message="HRV \\"down\\"",state="raised" 9'
    ]


def test_status_has_no_measurement() -> None:
    assert lines_for(Result(Kind.STATUS, "a", 1, {"state": "ok"})) == []


def test_wrong_type_names_measurement_and_field() -> None:
    with pytest.raises(SchemaError, match=r"hrv\.n_beats"):
        lines_for(Result(Kind.HRV, "a", 1, {"n_beats": 2.5}))
    with pytest.raises(SchemaError, match=r"morning\.accepted"):
        lines_for(Result(Kind.MORNING, "a", 1, {"accepted": 1}))


def test_tag_values_are_escaped() -> None:
    (line,) = lines_for(Result(Kind.FORCE, "Ann Lee,=x", 1, {"force_kg": 3.5}, "g 1"))
    assert line == r"force,athlete=Ann\ Lee\,\=x,device=g\ 1 force_kg=3.5 1"


@given(
    st.sampled_from(sorted(FIELD_TYPES["oxygen_recovery"])),
    st.one_of(
        st.integers(-(10**6), 10**6), st.floats(allow_nan=False, allow_infinity=False, width=32)
    ),
)
def test_field_type_never_depends_on_the_value(name: str, value: float) -> None:
    if FIELD_TYPES["oxygen_recovery"][name] is int:
        value = int(value)
    if FIELD_TYPES["oxygen_recovery"][name] is bool:  # the session's power_plateau finding
        value = bool(value)
    lines = lines_for(Result(Kind.OXYGENATION, "a", 1, {"scope": "effort", name: value}, "m"))
    field = lines[0].split(" ")[1]
    assert field.endswith("i") == (FIELD_TYPES["oxygen_recovery"][name] is int)


def test_every_result_kind_maps_to_a_measurement_or_is_declared_mqtt_only() -> None:
    from streamer.results import PAYLOAD_TYPES
    from streamer.sinks.influx_schema import MEASUREMENT, MQTT_ONLY_KINDS

    assert set(MEASUREMENT) | MQTT_ONLY_KINDS == set(Kind)
    assert not set(MEASUREMENT) & MQTT_ONLY_KINDS
    assert {Kind.STATUS, Kind.DEVICE} == MQTT_ONLY_KINDS
    assert {cls.KIND for cls in PAYLOAD_TYPES} == set(Kind), "a kind has no payload type"


def test_the_schema_derived_from_the_payload_types_is_the_documented_one() -> None:
    from streamer.sinks.influx_schema import MEASUREMENT, TAG_FIELDS

    f, i, b, s = float, int, bool, str
    morning = [
        "ln_rmssd",
        "rmssd_ms",
        "resting_hr_bpm",
        "artifacts_pct",
        "ln_rmssd_baseline_mean",
        "ln_rmssd_baseline_sd",
        "ln_rmssd_band_low",
        "ln_rmssd_band_high",
        "ln_rmssd_7d_mean",
        "ln_rmssd_cv_pct",
        "rhr_baseline_median_bpm",
        "rhr_7d_mean_bpm",
    ]
    hrv = [
        "rmssd_ms",
        "ln_rmssd",
        "sdnn_ms",
        "mean_nn_ms",
        "mean_hr_bpm",
        "pnn50_pct",
        "abnormal_pct",
    ]
    recovery = [
        "baseline_pct",
        "min_pct",
        "t_half_s",
        "t95_s",
        "tau_s",
        "reox_rate_pct_s",
        "overshoot_pct",
    ]
    grip = ["mvc_kg", "peak_kg", "drop_pct", "minutes_after", "threshold_pct"]
    expected: dict[str, dict[str, type]] = {
        "heart_rate": {"hr_bpm": f, "rr_ms": f},
        "hrv": {**dict.fromkeys(hrv, f), "n_beats": i, "accepted": b},
        "morning": {
            **dict.fromkeys(morning, f),
            "accepted": b,
            "baseline_status": s,
            "baseline_days": i,
            "source": s,
        },
        "smo2": {"smo2_pct": f, "thb_gdl": f},
        "power": {"power_w": f},
        "force": {"force_kg": f},
        "pulse_oximetry": {"spo2_pct": f, "pulse_bpm": f},
        "oxygen_recovery": {
            **dict.fromkeys(recovery, f),
            "recovery_s": f,
            "n_efforts": i,
            "power_plateau": b,
            "power_change_pct": f,
        },
        "grip_test": dict.fromkeys(grip, f),
        "alert": {
            "state": s,
            "active": i,
            "message": s,
            "advice": s,
            "volume_cut_until": s,
            "clear_reason": s,
            "clear_message": s,
            "resume_since_ts_ns": i,
        },
        "lab": {
            "gsh_gssg_ratio": f,
            "droms_carr_u": f,
            "positive": b,
            "band": s,
            "judged": b,
            "baseline_carr_u": f,
            "change_pct": f,
        },
    }
    assert {m: dict(t) for m, t in FIELD_TYPES.items()} == expected
    assert dict(TAG_FIELDS) == {
        "oxygen_recovery": ("scope",),
        "grip_test": ("class",),
        "alert": ("rule", "severity"),
        "lab": ("marker", "timing"),
    }
    assert MEASUREMENT[Kind.SPO2] == "pulse_oximetry"
    assert MEASUREMENT[Kind.OXYGENATION] == "oxygen_recovery"


def test_a_payload_field_that_declares_no_column_is_refused() -> None:
    import dataclasses

    from streamer.sinks import influx_schema

    @dataclasses.dataclass(frozen=True)
    class Undeclared:
        x_pct: float

    with pytest.raises(SchemaError, match=r"Undeclared.x_pct declares no InfluxDB column"):
        influx_schema._columns(Undeclared)
