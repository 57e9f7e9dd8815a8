"""The rule catalogue, RuleThresholds, and each evaluator on the shapes documented for it."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors import physiology as ph
from processors.alerts import AlertBook, Severity
from processors.grip import GripTest, MvcNoise, classify_grip
from processors.profiles import thresholds_for
from processors.rules import (
    CATALOGUE,
    RuleThresholds,
    SessionLoad,
    evaluate_grip,
    evaluate_hrv_downtrend,
    evaluate_morning,
    evaluate_rhr_creep,
    evaluate_rpe_power_mismatch,
    evaluate_smo2_slow_recovery,
    measure_grip,
    measure_oxygenation,
)

NEW_ATHLETE = MvcNoise(None, 2)  # own test noise not yet known
OWN_NOISE = MvcNoise(0.02, 6)  # CV 2%: a drop counts from 4.7%


def alternating(a: float, b: float, n: int) -> list[float]:
    return [a if i % 2 == 0 else b for i in range(n)]


def test_catalogue_holds_every_rule_with_severity_advice_and_source() -> None:
    # Containment, not equality: issue 14's rules are added in their own tests' files.
    assert set(CATALOGUE) >= {
        "hrv_downtrend",
        "rhr_creep",
        "smo2_slow_recovery",
        "grip_signal",
        "grip_spillover",
        "rpe_power_mismatch",
        "hi_spacing",
        "gsh_gssg_low",
        "gsh_gssg_high",
        "droms_rise",
        "lipid_dipstick_positive",
    }
    assert CATALOGUE["grip_signal"].severity is Severity.INFO
    assert CATALOGUE["hrv_downtrend"].severity is Severity.WARNING
    for rule in ("rhr_creep", "smo2_slow_recovery", "grip_spillover", "rpe_power_mismatch"):
        spec = CATALOGUE[rule]
        assert spec.severity is Severity.PULL_BACK
        assert "40%" in spec.advice
        assert "one week" in spec.advice
        assert spec.source


def test_every_source_cites_what_ships_with_the_product() -> None:
    # Users have docs/rules.md and the article's title, not the team's copy of the text.
    for spec in CATALOGUE.values():
        assert spec.source.startswith("docs/rules.md"), spec.rule_id
        assert "When ROS Signals Turn Toxic" in spec.source
        assert "seeds/" not in spec.source
        assert "RULES.md" not in spec.source


def test_thresholds_default_to_physiology_constants() -> None:
    th = RuleThresholds()
    assert th.rhr_creep_delta_bpm == ph.RHR_CREEP_DELTA_BPM
    assert th.smo2_slow_recovery_s == ph.SMO2_SLOW_RECOVERY_S
    assert th.hi_spacing_h == ph.HIGH_INTENSITY_SPACING_H
    assert th.passive_day_every is None
    assert set(th.to_dict()) >= {"rpe_rise", "power_fall", "grip_noise_z"}


def test_config_overrides_replace_named_thresholds_only() -> None:
    th = RuleThresholds().with_overrides(
        {"rhr_creep_delta_bpm": 7, "smo2_slow_recovery_sessions": 2.0}
    )
    assert th.rhr_creep_delta_bpm == 7
    assert th.smo2_slow_recovery_sessions == 2
    assert isinstance(th.smo2_slow_recovery_sessions, int)
    assert th.rpe_rise == ph.RPE_RISE


@pytest.mark.parametrize(
    ("overrides", "fault"),
    [
        ({"rhr_delta": 7}, "unknown rule threshold 'rhr_delta'"),
        ({"smo2_slow_recovery_sessions": 2.5}, "whole number"),
        ({"rpe_rise": "high"}, "must be a number"),
        ({"rpe_rise": -0.2}, "≥ 0"),
        ({"baseline_last_day_back": 3}, "rolling window"),
        ({"passive_day_every": 0}, "passive_day_every"),
    ],
)
def test_bad_overrides_are_refused_naming_the_threshold(
    overrides: dict[str, object], fault: str
) -> None:
    with pytest.raises(ValueError, match=fault):
        RuleThresholds().with_overrides(overrides)


def test_morning_rules_trigger_on_the_documented_28_day_demo_shape() -> None:
    ln_rmssd = [*alternating(4.0, 4.2, 21), 4.0, 3.95, 3.9, 3.85, 3.8, 3.75, 3.7]
    rhr = [*alternating(50.0, 52.0, 21), 57.0, 58.0, 57.0, 58.0, 57.0, 58.0, 57.0]
    hrv_eval, rhr_eval = evaluate_morning(ln_rmssd, rhr)
    assert hrv_eval.rule_id == "hrv_downtrend"
    assert hrv_eval.active is True
    assert "below its normal band" in hrv_eval.message
    assert hrv_eval.evidence["slope_ln_ms_per_day"] == pytest.approx(-0.05)
    assert hrv_eval.evidence["days_below_band"] == 5
    assert rhr_eval.active is True
    assert rhr_eval.evidence["delta_bpm"] >= 5
    assert rhr_eval.evidence["days_with_values"] == 7


def test_documented_two_day_step_does_not_trigger_hrv_downtrend() -> None:
    ln_rmssd = [*alternating(4.0, 4.2, 21), 4.0, 4.2, 4.1, 4.1, 4.1, 3.7, 3.65]
    result = evaluate_hrv_downtrend(ln_rmssd)
    assert result.active is False
    assert "3 of 5 mornings within or above the normal band" in result.message


def test_morning_rules_are_undecidable_without_a_baseline() -> None:
    assert evaluate_hrv_downtrend([4.0] * 10).active is None
    assert evaluate_rhr_creep([50.0] * 10).active is None


def test_calm_history_gives_inactive_morning_rules() -> None:
    ln_rmssd = alternating(4.0, 4.2, 36)
    rhr = alternating(50.0, 52.0, 36)
    assert [e.active for e in evaluate_morning(ln_rmssd, rhr)] == [False, False]


def test_thresholds_flow_into_the_morning_evaluators() -> None:
    rhr = [*alternating(50.0, 52.0, 21), 57.0, 58.0, 57.0, 58.0, 57.0, 58.0, 57.0]
    strict = RuleThresholds(rhr_creep_delta_bpm=7.0)
    assert evaluate_rhr_creep(rhr, strict).active is False


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ([130.0, 125.0, 121.0], True),
        ([60.0, 130.0, 125.0, 121.0], True),
        ([130.0, 125.0, 120.0], False),  # > 120 s is strict
        ([130.0, 119.0, 150.0], False),
        ([130.0, None, 125.0, None, 121.0], True),  # sessions without efforts are skipped
        ([130.0, 125.0], None),
    ],
)
def test_smo2_slow_recovery_needs_three_consecutive_slow_sessions(
    times: list[float | None], expected: bool | None
) -> None:
    assert evaluate_smo2_slow_recovery(times).active is expected


def test_smo2_slow_recovery_session_count_is_configurable() -> None:
    th = RuleThresholds(smo2_slow_recovery_sessions=2)
    assert evaluate_smo2_slow_recovery([60.0, 130.0, 125.0], th).active is True


def test_grip_rules_follow_the_session_class() -> None:
    signal = classify_grip(50.0, {0: 43.0, 5: 45.0, 15: 48.0, 30: 49.0}, NEW_ATHLETE)
    spill = classify_grip(50.0, {0: 40.0, 15: 41.0, 30: 42.0}, NEW_ATHLETE)
    pending = classify_grip(50.0, {0: 40.0, 15: 41.0}, NEW_ATHLETE)
    late = classify_grip(50.0, {0: 49.5, 15: 49.0, 30: 42.0}, NEW_ATHLETE)
    assert [e.active for e in evaluate_grip(signal)] == [True, False]
    assert [e.active for e in evaluate_grip(spill)] == [False, True]
    assert [e.active for e in evaluate_grip(pending)] == [False, None]
    assert [e.active for e in evaluate_grip(late)] == [False, False]
    assert "not there in the tests before it" in evaluate_grip(late)[1].message
    spill_eval = evaluate_grip(spill)[1]
    assert "still 16.0% down at 30 min" in spill_eval.message
    assert spill_eval.evidence["drop_at_30_min_pct"] == pytest.approx(16.0)


def test_grip_messages_and_evidence_say_which_threshold_was_used() -> None:
    post = {0.0: 45.0, 5.0: 46.0, 15.0: 48.0, 30.0: 49.0}
    article = evaluate_grip(classify_grip(50.0, post, NEW_ATHLETE))[0]
    assert article.active is True
    assert "the article's 10%" in article.message
    assert "known after 5 grip tests (2 so far)" in article.message
    assert article.evidence["threshold_personal"] == 0.0
    personal = evaluate_grip(classify_grip(50.0, {0: 45.0, 15: 49.5, 30: 50.0}, OWN_NOISE))[0]
    assert personal.active is True
    assert "your own test noise" in personal.message
    assert "CV 2.0% over 6 sessions" in personal.message
    assert personal.evidence["threshold_personal"] == 1.0
    assert personal.evidence["real_drop_threshold_pct"] == pytest.approx(4.667, abs=1e-3)


def test_measure_grip_uses_the_thresholds_grip_settings() -> None:
    t = np.arange(0.0, 20.0, 1 / 80)

    def trace(peak: float) -> tuple[np.ndarray, np.ndarray]:
        return t, np.where((t > 2) & (t < 4), peak * np.sin(np.pi * (t - 2) / 2), 0.0)

    post = {0.0: trace(43.0), 15.0: trace(49.0), 30.0: trace(49.5)}
    assert measure_grip(trace(50.0), post).grip_class.value == "signal"
    # A 20% acute threshold turns the same 14% drop into a normal session.
    strict = RuleThresholds(grip_signal_drop=0.20)
    assert measure_grip(trace(50.0), post, thresholds=strict).grip_class.value == "normal"
    # Five earlier MVCs give the personal threshold; with three required, three do.
    earlier = [50.0, 51.0, 49.0]
    assert measure_grip(trace(50.0), post, earlier).threshold_basis.value == "article"
    fewer = RuleThresholds(grip_min_baseline_sessions=3)
    test = measure_grip(trace(50.0), post, earlier, thresholds=fewer)
    assert test.threshold_basis.value == "personal"
    assert test.noise_cv_pct == pytest.approx(2.0)


def reference(n: int = 5) -> list[SessionLoad]:
    return [SessionLoad(rpe=5.0, power_w=200.0)] * n


@pytest.mark.parametrize(
    ("rpe", "power", "expected"),
    [
        (6.0, 180.0, True),  # exactly +20% and −10%
        (6.5, 150.0, True),
        (5.99, 180.0, False),
        (6.0, 180.5, False),
        (7.0, 200.0, False),  # harder but power held: not a mismatch
    ],
)
def test_rpe_power_mismatch_boundaries(rpe: float, power: float, expected: bool) -> None:
    result = evaluate_rpe_power_mismatch([*reference(), SessionLoad(rpe, power)])
    assert result.active is expected
    assert result.evidence["reference_rpe"] == 5.0
    assert result.evidence["reference_power_w"] == 200.0


def test_rpe_reference_is_the_mean_of_the_last_n_sessions() -> None:
    old = [SessionLoad(rpe=2.0, power_w=400.0)] * 10
    sessions = [*old, *reference(5), SessionLoad(6.0, 180.0)]
    assert evaluate_rpe_power_mismatch(sessions).active is True
    # With N = 15 the old easy, powerful sessions dominate the reference.
    wide = RuleThresholds(rpe_reference_sessions=15)
    result = evaluate_rpe_power_mismatch(sessions, wide)
    assert result.evidence["reference_sessions"] == 15
    assert result.evidence["reference_rpe"] == pytest.approx((10 * 2 + 5 * 5) / 15)


def test_rpe_power_mismatch_needs_three_reference_sessions() -> None:
    assert evaluate_rpe_power_mismatch([*reference(2), SessionLoad(6, 180)]).active is None
    assert evaluate_rpe_power_mismatch([*reference(3), SessionLoad(6, 180)]).active is True
    with pytest.raises(ValueError, match="positive"):
        evaluate_rpe_power_mismatch([*reference(3), SessionLoad(6, 0)])


@settings(max_examples=100, deadline=None)
@given(st.floats(1.0, 10.0), st.floats(50.0, 500.0), st.floats(1.0, 10.0), st.floats(50.0, 500.0))
def test_rpe_power_mismatch_active_implies_both_changes_in_evidence(
    ref_rpe: float, ref_power: float, rpe: float, power: float
) -> None:
    sessions = [SessionLoad(ref_rpe, ref_power)] * 5 + [SessionLoad(rpe, power)]
    result = evaluate_rpe_power_mismatch(sessions)
    if result.active:
        assert result.evidence["rpe_change_pct"] >= 20.0 - 1e-6
        assert result.evidence["power_change_pct"] <= -10.0 + 1e-6


def moxy_session() -> tuple[np.ndarray, np.ndarray]:
    path = Path("/work/shared/data/moxy/moxy_intervals_excerpt.csv")
    with path.open() as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].startswith("#")][1:]
    t = np.array(
        [sum(int(x) * m for x, m in zip(r[0].split(":"), (3600, 60, 1), strict=True)) for r in rows]
    )
    return t.astype(float) - t[0], np.array([float(r[1]) for r in rows])


def test_real_moxy_session_feeds_the_slow_recovery_rule_as_a_fast_session() -> None:
    session = measure_oxygenation(*moxy_session())
    assert session.recovery_time_s is not None
    result = evaluate_smo2_slow_recovery([150.0, 140.0, session.recovery_time_s])
    assert result.active is False


def slow_session(tau_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Rest at 60% for 60 s, three 60-s efforts at 20%, each recovering with τ, 400 s apart."""
    t = np.arange(0.0, 1400.0, 1.0)
    y = np.full_like(t, 60.0)
    for start in (60.0, 460.0, 860.0):
        y[(t >= start) & (t < start + 60)] = 20.0
        rec = (t >= start + 60) & (t < start + 400)
        y[rec] = 20 + 40 * (1 - np.exp(-(t[rec] - start - 60) / tau_s))
    return t, y


def test_documented_smo2_shape_triggers_slow_recovery_after_three_sessions() -> None:
    times = [measure_oxygenation(*slow_session(50.0)).recovery_time_s for _ in range(3)]
    assert all(v is not None and 130 < v < 150 for v in times)
    assert evaluate_smo2_slow_recovery(times).active is True
    fast = measure_oxygenation(*slow_session(30.0)).recovery_time_s
    assert evaluate_smo2_slow_recovery([*times[:2], fast]).active is False


def test_evaluations_drive_the_alert_book_end_to_end() -> None:
    book = AlertBook("ana")
    raised = book.update(evaluate_smo2_slow_recovery([130.0, 125.0, 121.0]), at_ns=1)
    assert raised is not None
    assert raised.severity is Severity.PULL_BACK
    assert raised.source == CATALOGUE["smo2_slow_recovery"].source
    assert raised.evidence["threshold_s"] == 120.0
    assert book.update(evaluate_smo2_slow_recovery([130.0, 125.0, 121.0, 135.0]), at_ns=2) is None
    cleared = book.update(evaluate_smo2_slow_recovery([125.0, 121.0, 135.0, 80.0]), at_ns=3)
    assert cleared is not None
    assert cleared.cleared_at_ns == 3
    assert math.isfinite(cleared.evidence["recovery_time_0_sessions_ago_s"])


def test_grip_messages_cite_the_overridden_recovery_and_spillover_minutes() -> None:
    # A config override: the drop must be gone by 20 min, spillover is judged at 45 min.
    th = thresholds_for("default", {"grip_signal_recovery_min": 20.0, "grip_spillover_min": 45.0})

    def classify(post: dict[float, float]) -> GripTest:
        return classify_grip(
            50.0,
            post,
            NEW_ATHLETE,
            recovery_min=th.grip_signal_recovery_min,
            spillover_min=th.grip_spillover_min,
        )

    signal = classify({0: 43.0, 5: 44.0, 20: 48.0, 30: 49.0})
    message = evaluate_grip(signal, th)[0].message
    assert "back to 4.0% by 20 min" in message
    spill = classify({0: 40.0, 30: 41.0, 45: 42.0})
    message = evaluate_grip(spill, th)[1].message
    assert "still 16.0% down at 45 min" in message
