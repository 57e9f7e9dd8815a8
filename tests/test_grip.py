"""Grip tests: squeeze detection, MVC, test noise and the post-session classification."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.grip import (
    GripClass,
    GripInputError,
    MvcNoise,
    ThresholdBasis,
    best_peak_kg,
    classify_grip,
    find_squeezes,
    grip_test_from_traces,
    mvc_noise,
    real_drop_threshold,
)

RATE_HZ = 80.0
UNKNOWN_NOISE = MvcNoise(cv=None, n_sessions=0)  # a new athlete: the article's figures apply
NOISY = MvcNoise(cv=0.05, n_sessions=5)  # own CV 5%: a drop counts from 1.65·√2·5% = 11.7%


def force_trace(
    peaks_kg: list[float], *, seed: int = 0, tremor: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """~80 Hz trace: 2-s rest, then each squeeze as a 3-s half-sine with 3 s rest after it,
    with 0.3 kg sensor noise and an optional 6-Hz tremor (fraction of the peak)."""
    rng = np.random.default_rng(seed)
    duration = 2.0 + 6.0 * len(peaks_kg)
    t = np.arange(0.0, duration, 1.0 / RATE_HZ)
    f = np.zeros_like(t)
    for i, peak in enumerate(peaks_kg):
        start = 2.0 + 6.0 * i
        on = (t >= start) & (t < start + 3.0)
        phase = (t[on] - start) / 3.0
        f[on] = peak * np.sin(np.pi * phase) + tremor * peak * np.sin(2 * np.pi * 6 * t[on])
    return t, np.clip(f + rng.normal(0.0, 0.3, t.size), 0.0, None)


def test_squeezes_are_found_once_each_with_their_peaks() -> None:
    t, f = force_trace([48.0, 50.0, 47.0], tremor=0.03)
    squeezes = find_squeezes(t, f)
    assert len(squeezes) == 3
    # The peak is the raw maximum: tremor (3%) and sensor noise ride on top of it.
    assert [s.peak_kg for s in squeezes] == pytest.approx([49.4, 51.5, 48.4], abs=1.0)
    assert all(2.0 < s.t_end_s - s.t_start_s < 3.2 for s in squeezes)


def test_hysteresis_keeps_a_squeeze_whole_when_it_wobbles_around_the_threshold() -> None:
    t = np.arange(0.0, 4.0, 1.0 / RATE_HZ)
    # Holds at ~the on-threshold (0.3·max) with tremor crossing it many times.
    f = np.where((t > 1.0) & (t < 3.0), 15.0 + 2.0 * np.sin(2 * np.pi * 8 * t), 0.0)
    f[(t > 1.5) & (t < 1.6)] = 50.0
    assert len(find_squeezes(t, f)) == 1


def test_taps_shorter_than_the_minimum_duration_are_not_squeezes() -> None:
    t = np.arange(0.0, 3.0, 1.0 / RATE_HZ)
    f = np.zeros_like(t)
    f[(t > 1.0) & (t < 1.05)] = 40.0
    assert find_squeezes(t, f) == ()
    with pytest.raises(GripInputError, match="no squeeze"):
        best_peak_kg(t, f)


def test_mvc_is_the_best_of_the_pre_session_squeezes() -> None:
    best, peaks = best_peak_kg(*force_trace([44.0, 52.0, 49.0]))
    assert len(peaks) == 3
    assert best == max(peaks)
    assert best == pytest.approx(52.0, abs=1.0)


def test_own_test_noise_is_unknown_until_five_baseline_sessions() -> None:
    four = mvc_noise([50.0, 52.0, 48.0, 51.0])
    assert four.cv is None
    assert four.basis is ThresholdBasis.ARTICLE
    assert four.counting_drop() == 0.10
    values = [50.0, 52.0, 48.0, 51.0, 49.0]
    five = mvc_noise(values)
    assert five.basis is ThresholdBasis.PERSONAL
    assert five.cv is not None
    assert five.cv == pytest.approx(np.std(values, ddof=1) / np.mean(values))
    assert five.counting_drop() == pytest.approx(real_drop_threshold(five.cv))


def test_real_drop_threshold_is_1_65_root2_cv() -> None:
    assert real_drop_threshold(0.05) == pytest.approx(1.65 * math.sqrt(2) * 0.05)
    assert NOISY.counting_drop() == pytest.approx(0.11667, abs=1e-5)


def test_article_ten_percent_drop_recovered_within_15_min_is_signal_for_a_new_athlete() -> None:
    # The article's own example: 10% down right after, back by 15 min. With a guessed 5% CV
    # (threshold 11.7%) this could never be the good kind; without known noise the
    # article's 10% is the threshold, and the test says so.
    test = classify_grip(50.0, {0: 45.0, 5: 46.0, 15: 48.0, 30: 49.0}, UNKNOWN_NOISE)
    assert test.grip_class is GripClass.SIGNAL
    assert test.threshold_basis is ThresholdBasis.ARTICLE
    assert test.real_drop_threshold_pct == pytest.approx(10.0)
    assert test.acute_threshold_pct == pytest.approx(10.0)
    assert test.noise_cv_pct is None
    assert test.evidence()["threshold_personal"] == 0.0
    assert "noise_cv_pct" not in test.evidence()
    assert "article's 10%" in test.threshold_note()
    assert "known after 5 grip tests (0 so far)" in test.threshold_note()


@pytest.mark.parametrize(
    ("drop_at_0_pct", "expected"), [(9.9, GripClass.NORMAL), (10.0, GripClass.SIGNAL)]
)
def test_article_acute_drop_boundary_is_ten_percent(
    drop_at_0_pct: float, expected: GripClass
) -> None:
    post = {0.0: 50.0 * (1 - drop_at_0_pct / 100), 15.0: 49.0, 30.0: 49.5}
    assert classify_grip(50.0, post, UNKNOWN_NOISE).grip_class is expected


def test_personal_threshold_replaces_the_article_figure_and_is_reported() -> None:
    # The same 10% drop is within this athlete's own noise (11.7%): it does not count.
    test = classify_grip(50.0, {0: 45.0, 5: 46.0, 15: 48.0, 30: 49.0}, NOISY)
    assert test.grip_class is GripClass.NORMAL
    assert test.threshold_basis is ThresholdBasis.PERSONAL
    assert test.noise_cv_pct == pytest.approx(5.0)
    assert test.evidence()["threshold_personal"] == 1.0
    assert test.evidence()["noise_cv_pct"] == pytest.approx(5.0)
    assert "your own test noise" in test.threshold_note()
    assert classify_grip(50.0, {0: 43.0, 5: 45.0, 15: 48.0, 30: 49.0}, NOISY).grip_class is (
        GripClass.SIGNAL
    )


@pytest.mark.parametrize(
    ("offset_kg", "expected"), [(0.01, GripClass.NORMAL), (-0.01, GripClass.SIGNAL)]
)
def test_acute_drop_boundary_with_personal_noise(offset_kg: float, expected: GripClass) -> None:
    at_threshold_kg = 50.0 * (1 - NOISY.counting_drop())
    test = classify_grip(50.0, {0: at_threshold_kg + offset_kg, 15: 49.5, 30: 49.5}, NOISY)
    assert test.grip_class is expected


def test_drop_still_present_at_30_min_is_spillover() -> None:
    for noise in (UNKNOWN_NOISE, NOISY):
        test = classify_grip(50.0, {0: 40.0, 15: 41.0, 30: 42.0}, noise)
        assert test.grip_class is GripClass.SPILLOVER
        assert test.post[-1].drop_pct == pytest.approx(16.0)


def test_drop_first_seen_at_30_min_is_not_spillover() -> None:
    # "Still present" means it was there before: 2% at 0 and 15 min, 16% at 30 min.
    test = classify_grip(50.0, {0: 49.0, 15: 49.0, 30: 42.0}, UNKNOWN_NOISE)
    assert test.grip_class is GripClass.LATE
    # Only a 30-min test: nothing shows the drop was there before either.
    assert classify_grip(50.0, {30: 42.0}, UNKNOWN_NOISE).grip_class is GripClass.LATE


def test_drop_seen_early_and_again_at_30_min_is_spillover_even_if_it_dipped_between() -> None:
    test = classify_grip(50.0, {0: 42.0, 15: 48.0, 30: 43.0}, UNKNOWN_NOISE)
    assert test.grip_class is GripClass.SPILLOVER


def test_drop_recovered_only_after_15_min_is_delayed_or_pending() -> None:
    assert classify_grip(50.0, {0: 40.0, 15: 42.0, 30: 48.0}, UNKNOWN_NOISE).grip_class is (
        GripClass.DELAYED
    )
    assert classify_grip(50.0, {0: 40.0, 15: 42.0}, UNKNOWN_NOISE).grip_class is (GripClass.PENDING)


def test_athletes_with_low_test_noise_still_need_a_ten_percent_acute_drop() -> None:
    quiet = mvc_noise([50.0, 50.5, 49.5, 50.2, 49.8])  # CV ≈ 0.8% → real drop ≈ 1.8%
    assert quiet.counting_drop() < 0.03
    assert classify_grip(50.0, {0: 45.5, 15: 49.8, 30: 50.0}, quiet).grip_class is (
        GripClass.NORMAL
    )
    assert classify_grip(50.0, {0: 44.9, 15: 49.8, 30: 50.0}, quiet).grip_class is (
        GripClass.SIGNAL
    )
    # …but for them a 3% drop at 30 min, seen before, is real: spillover.
    assert classify_grip(50.0, {0: 44.0, 15: 47.0, 30: 48.5}, quiet).grip_class is (
        GripClass.SPILLOVER
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.5, 1.2), min_size=1, max_size=5),
    st.lists(
        st.sampled_from([0.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0]),
        min_size=1,
        max_size=5,
        unique=True,
    ),
    st.floats(0.5, 1.0),
    st.one_of(st.none(), st.floats(0.005, 0.1)),
)
def test_classification_is_monotonic_in_the_drop(
    ratios: list[float], minutes: list[float], scale: float, cv: float | None
) -> None:
    mvc = 50.0
    post = {m: mvc * r for m, r in zip(minutes, ratios, strict=False)}
    weaker = {m: kg * scale for m, kg in post.items()}
    noise = MvcNoise(cv, 5 if cv is not None else 0)
    before = classify_grip(mvc, post, noise).grip_class
    after = classify_grip(mvc, weaker, noise).grip_class
    assert after.rank >= before.rank


def test_whole_test_from_force_traces() -> None:
    pre = force_trace([49.0, 51.0, 50.0], seed=1)
    post = {
        0.0: force_trace([42.0, 43.0], seed=2),
        5.0: force_trace([44.0, 44.5], seed=3),
        15.0: force_trace([49.0, 48.5], seed=4),
        30.0: force_trace([50.0, 49.5], seed=5),
    }
    test = grip_test_from_traces(pre, post)  # no earlier MVCs: the article's 10% counts
    assert test.threshold_basis is ThresholdBasis.ARTICLE
    assert test.mvc_kg == pytest.approx(51.0, abs=1.5)
    assert len(test.mvc_peaks_kg) == 3
    assert [p.minute for p in test.post] == [0.0, 5.0, 15.0, 30.0]
    assert len(test.post[0].peaks_kg) == 2
    assert test.grip_class is GripClass.SIGNAL
    assert "drop_at_0_min_pct" in test.evidence()


def test_post_test_without_a_squeeze_names_its_minute() -> None:
    pre = force_trace([50.0, 50.0, 50.0])
    t = np.arange(0.0, 5.0, 1 / RATE_HZ)
    with pytest.raises(GripInputError, match="15 min"):
        grip_test_from_traces(pre, {15.0: (t, np.zeros_like(t))})


@pytest.mark.parametrize(
    ("mvc", "post", "fault"),
    [
        (0.0, {0.0: 40.0}, "MVC"),
        (50.0, {}, "no post-session test"),
        (50.0, {0.0: math.nan}, "invalid"),
    ],
)
def test_bad_grip_inputs_are_refused(mvc: float, post: dict[float, float], fault: str) -> None:
    with pytest.raises(GripInputError, match=fault):
        classify_grip(mvc, post, UNKNOWN_NOISE)


def test_force_trace_with_unsorted_time_is_refused() -> None:
    with pytest.raises(GripInputError, match="increasing"):
        find_squeezes([0.0, 0.2, 0.1], [0.0, 10.0, 0.0])
