"""Daily trends: baseline window, rolling mean, band, CV, and the two morning rules."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.trends import (
    baseline,
    cv_pct,
    daily_trend,
    history_from_mapping,
    hrv_downtrend,
    rhr_creep,
    rolling_mean,
)

NAN = math.nan


def alternating(a: float, b: float, n: int = 28) -> list[float]:
    return [a if i % 2 == 0 else b for i in range(n)]


def hrv_history(last7: list[float]) -> np.ndarray:
    """Baseline days d−35 … d−8 alternating 4.0/4.2, d−7 at 4.1, then days d−6 … d."""
    return np.array([*alternating(4.0, 4.2), 4.1, *last7])


SD_B_HRV = 0.1 * math.sqrt(28 / 27)  # SD (ddof 1) of 28 values alternating ±0.1
BAND_LOW_HRV = 4.1 - 0.5 * SD_B_HRV


def linear_last5(start: float, slope: float) -> list[float]:
    return [start + slope * k for k in range(5)]


def test_baseline_is_days_d35_to_d8_only() -> None:
    history = np.arange(36.0)  # index 0 = d−35, value = index
    b = baseline(history)
    assert b is not None
    assert b.n_days == 28
    assert b.mean == pytest.approx(np.mean(np.arange(28.0)))
    assert b.median == pytest.approx(13.5)
    assert b.sd == pytest.approx(np.std(np.arange(28.0), ddof=1))


def test_baseline_needs_fourteen_valid_days() -> None:
    history = np.full(36, NAN)
    history[:13] = 50.0
    assert baseline(history) is None
    history[13] = 52.0
    b = baseline(history)
    assert b is not None
    assert b.n_days == 14


def test_baseline_over_a_short_history_treats_missing_past_as_missing() -> None:
    # 28 days of history (the demo's length): d−27 … d; baseline has d−27 … d−8 = 20 days.
    b = baseline(np.arange(28.0))
    assert b is not None
    assert b.n_days == 20
    assert baseline(np.arange(21.0)) is None  # only 13 baseline days


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(st.just(NAN), st.floats(3.0, 5.0)), min_size=36, max_size=60),
    st.lists(st.one_of(st.just(NAN), st.floats(-100.0, 100.0)), min_size=8, max_size=8),
)
def test_baseline_never_uses_days_d7_to_d(history: list[float], recent: list[float]) -> None:
    changed = np.array(history[:-8] + recent)
    assert baseline(np.array(history)) == baseline(changed)


def test_rolling_mean_needs_three_values_in_the_last_seven_days() -> None:
    history = np.full(36, NAN)
    history[-7:-5] = [4.0, 4.2]
    assert rolling_mean(history) is None
    history[-1] = 4.4
    assert rolling_mean(history) == pytest.approx(4.2)
    history[-8] = 100.0  # d−7 is outside the 7-day window
    assert rolling_mean(history) == pytest.approx(4.2)


def test_daily_trend_band_is_mean_plus_minus_half_sd_and_cv_is_of_the_last_week() -> None:
    last7 = [4.0, 4.1, 4.2, 4.3, 4.1, 4.0, 4.2]
    trend = daily_trend(hrv_history(last7), "ln_rmssd")
    assert trend.baseline_mean == pytest.approx(4.1)
    assert trend.baseline_sd == pytest.approx(SD_B_HRV)
    assert trend.band_low == pytest.approx(4.1 - 0.5 * SD_B_HRV)
    assert trend.band_high == pytest.approx(4.1 + 0.5 * SD_B_HRV)
    assert trend.rolling_mean_7d == pytest.approx(np.mean(last7))
    assert trend.cv_7d_pct == pytest.approx(100 * np.std(last7, ddof=1) / np.mean(last7))
    assert trend.value == 4.2
    assert trend.in_band is False  # 4.2 > 4.1 + 0.05
    assert trend.as_dict()["metric"] == "ln_rmssd"


def test_daily_trend_without_enough_history_has_no_band() -> None:
    trend = daily_trend([4.0, 4.1, NAN], "ln_rmssd")
    assert trend.band_low is None
    assert trend.in_band is None
    assert trend.value is None
    assert trend.rolling_mean_7d is None
    assert cv_pct([4.0, 4.1, NAN]) is None


def test_history_from_mapping_puts_day_d_last_and_gaps_as_nan() -> None:
    d = date(2026, 3, 31)
    h = history_from_mapping({d: 4.0, d - timedelta(days=2): 3.0, d - timedelta(days=99): 1.0}, d)
    assert h.size == 36
    assert h[-1] == 4.0
    assert h[-3] == 3.0
    assert np.isnan(h[-2])
    assert np.isnan(h[:-3]).all()


# --- hrv_downtrend ----------------------------------------------------------------------------
SWC_HRV = 0.5 * SD_B_HRV  # smallest worthwhile change: the least fall that matters
MIN_SLOPE = SWC_HRV / 4  # |β| at which the trend line falls by the SWC over 5 days


def test_hrv_downtrend_triggers_on_a_genuine_five_day_decline_below_the_band() -> None:
    result = hrv_downtrend(hrv_history([4.1, 4.05, *linear_last5(4.0, -0.05)]))
    assert result.triggered
    assert result.days_below_band == result.valid_days_in_window == 5
    assert result.slope_per_day == pytest.approx(-0.05)
    assert result.slope_change == pytest.approx(0.2)
    assert result.min_change == pytest.approx(SWC_HRV)
    assert result.evidence()["highest_in_window_ln_ms"] == pytest.approx(4.0)


def test_hrv_downtrend_triggers_on_a_decline_with_a_noise_sized_rebound() -> None:
    # Shaped like the demo's measured mornings: one morning up by 0.03 does not end a
    # five-day decline.
    result = hrv_downtrend(hrv_history([4.1, 4.1, 3.95, 3.88, 3.82, 3.85, 3.6]))
    assert result.triggered


def test_hrv_downtrend_two_day_step_drop_does_not_trigger() -> None:
    # Normal mornings, then two low ones. The old rule (slope + 7-day mean below the band)
    # fired on this; the mornings before the step are in the band, so it is not a 5-day trend.
    last7 = [4.1, 4.1, 4.1, 4.1, 4.1, 3.7, 3.65]
    result = hrv_downtrend(hrv_history(last7))
    assert result.evaluable
    assert not result.triggered
    assert result.slope_per_day is not None
    assert result.slope_per_day < 0
    assert result.days_below_band == 2
    assert "3 of 5 mornings within or above the normal band" in result.reason
    # …and the same step with wiggling, even falling, mornings before it.
    for before in ([4.0, 4.2, 4.0, 4.1, 4.1], [4.1, 4.1, 4.12, 4.10, 4.08]):
        assert not hrv_downtrend(hrv_history([*before, 3.7, 3.65])).triggered


def test_hrv_downtrend_level_that_stays_low_is_not_a_trend() -> None:
    result = hrv_downtrend(hrv_history([3.8, 3.8, 3.8, 3.82, 3.79, 3.81, 3.8]))
    assert result.days_below_band == 5
    assert not result.triggered
    assert "no worthwhile fall" in result.reason


@pytest.mark.parametrize(("factor", "expected"), [(1.01, True), (0.99, False)])
def test_hrv_downtrend_fall_must_reach_the_smallest_worthwhile_change(
    factor: float, expected: bool
) -> None:
    result = hrv_downtrend(hrv_history([3.8, 3.8, *linear_last5(3.8, -MIN_SLOPE * factor)]))
    assert result.evaluable
    assert result.triggered is expected


@pytest.mark.parametrize(("offset", "expected"), [(-0.002, True), (0.002, False)])
def test_hrv_downtrend_every_morning_must_be_below_the_band(offset: float, expected: bool) -> None:
    last5 = linear_last5(BAND_LOW_HRV + offset, -0.05)  # the first morning is the highest
    result = hrv_downtrend(hrv_history([4.1, 4.1, *last5]))
    assert result.evaluable
    assert result.triggered is expected


@pytest.mark.parametrize(
    "last7",
    [
        [4.15, 4.05, 4.12, 4.0, 4.08, 3.98, 4.05],  # wiggling around the baseline
        [4.1, 4.1, 4.02, 4.06, 3.98, 4.08, 3.96],  # zig-zag down, in and out of the band
        [4.0, 4.0, *linear_last5(4.0, -MIN_SLOPE / 2)],  # below the band, falls < SWC
    ],
)
def test_hrv_downtrend_noise_level_wiggles_do_not_trigger(last7: list[float]) -> None:
    result = hrv_downtrend(hrv_history(last7))
    assert result.evaluable
    assert not result.triggered


def test_hrv_downtrend_false_alarms_on_pure_noise_are_rare() -> None:
    # Mornings drawn around the baseline mean with its own SD: all five below the band
    # happens in ~0.3% of windows (0.31⁵), and a worthwhile fall on top of it is rarer.
    rng = np.random.default_rng(2013)
    weeks = 3000
    fired = sum(
        hrv_downtrend(hrv_history(list(4.1 + rng.normal(0.0, SD_B_HRV, 7)))).triggered
        for _ in range(weeks)
    )
    assert fired / weeks < 0.003


@pytest.mark.parametrize("missing", [0, 2, 4])
def test_hrv_downtrend_allows_one_missing_morning_anywhere_in_the_window(missing: int) -> None:
    last5: list[float] = linear_last5(4.0, -0.05)
    last5[missing] = NAN
    result = hrv_downtrend(hrv_history([4.1, 4.05, *last5]))
    assert result.evaluable
    assert result.valid_days_in_window == 4
    assert result.triggered


def test_hrv_downtrend_missing_morning_neither_hides_nor_makes_a_step() -> None:
    # The step with the day before it missing: the two normal mornings left still count.
    result = hrv_downtrend(hrv_history([4.1, 4.1, 4.1, 4.1, NAN, 3.7, 3.65]))
    assert result.evaluable
    assert not result.triggered
    # A missing morning in the band's place does not turn a 4-day decline into 5.
    short = hrv_downtrend(hrv_history([4.1, 4.1, NAN, 4.1, 3.95, 3.9, 3.85]))
    assert not short.triggered


def test_hrv_downtrend_needs_four_valid_days_of_the_last_five() -> None:
    last5 = linear_last5(4.0, -0.05)
    three = [*last5[:2], NAN, NAN, last5[4]]
    result = hrv_downtrend(hrv_history([4.1, 4.1, *three]))
    assert not result.evaluable
    assert not result.triggered
    assert "3 valid days" in result.reason


def test_hrv_downtrend_rising_week_does_not_trigger_even_below_band() -> None:
    result = hrv_downtrend(hrv_history([3.5, 3.5, *linear_last5(3.5, +0.05)]))
    assert result.evaluable
    assert not result.triggered


def test_hrv_downtrend_without_baseline_is_not_evaluable() -> None:
    result = hrv_downtrend([4.0] * 10)
    assert not result.evaluable
    assert "baseline" in result.reason


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.just(NAN), st.floats(3.0, 5.0)), min_size=36, max_size=45))
def test_hrv_downtrend_triggered_implies_every_condition_in_its_evidence(
    history: list[float],
) -> None:
    r = hrv_downtrend(np.array(history))
    if r.triggered:
        assert r.valid_days_in_window >= 4
        assert r.days_below_band == r.valid_days_in_window
        assert r.highest_value is not None
        assert r.band_low is not None
        assert r.highest_value < r.band_low
        assert r.slope_per_day is not None
        assert r.slope_per_day < 0
        assert r.slope_change is not None
        assert r.min_change is not None
        assert r.slope_change >= r.min_change


# --- rhr_creep --------------------------------------------------------------------------------
def rhr_history(last7: list[float], a: float = 50.0, b: float = 52.0) -> np.ndarray:
    return np.array([*alternating(a, b), 51.0, *last7])


def test_rhr_creep_triggers_on_a_sustained_rise() -> None:
    result = rhr_creep(rhr_history([57.0, 58.0, 57.0, 58.0, 57.0, 58.0, 57.0]))
    assert result.triggered
    assert result.baseline_median_bpm == 51.0
    assert result.delta_bpm == pytest.approx(57.428571 - 51.0, abs=1e-5)
    assert result.n_days == 7
    assert result.days_above == 7


@pytest.mark.parametrize(("level", "expected"), [(56.01, True), (55.99, False)])
def test_rhr_creep_delta_boundary(level: float, expected: bool) -> None:
    result = rhr_creep(rhr_history([level] * 7))
    assert result.triggered is expected


@pytest.mark.parametrize(("offset", "expected"), [(0.01, True), (-0.01, False)])
def test_rhr_creep_z_boundary(offset: float, expected: bool) -> None:
    # Baseline alternating 41/61: median 51, SD ≈ 10.2, so z = 2 needs Δ ≈ 7.7 bpm > 5.
    sd_b = 10 * math.sqrt(28 / 27)
    delta = 2 * sd_b / math.sqrt(7) + offset
    result = rhr_creep(rhr_history([51.0 + delta] * 7, 41.0, 61.0))
    assert result.delta_bpm == pytest.approx(delta)
    assert result.z == pytest.approx(2.0, abs=0.01)
    assert result.triggered is expected


def test_rhr_creep_z_uses_n_days_with_values() -> None:
    result = rhr_creep(rhr_history([60.0, NAN, 60.0, NAN, 60.0, 60.0, 60.0]))
    assert result.n_days == 5
    assert result.baseline_sd_bpm is not None
    assert result.z == pytest.approx(9.0 / (result.baseline_sd_bpm / math.sqrt(5)))
    assert result.triggered


@pytest.mark.parametrize(("days_high", "expected"), [(5, True), (4, False)])
def test_rhr_creep_needs_five_days_above_the_baseline_median(
    days_high: int, expected: bool
) -> None:
    last7 = [70.0] * days_high + [50.0] * (7 - days_high)
    result = rhr_creep(rhr_history(last7))
    assert result.delta_bpm is not None
    assert result.delta_bpm >= 5  # the mean rise alone would pass
    assert result.days_above == days_high
    assert result.triggered is expected


def test_rhr_creep_with_four_days_of_data_is_not_evaluable() -> None:
    result = rhr_creep(rhr_history([60.0, NAN, 60.0, NAN, 60.0, NAN, 60.0]))
    assert not result.evaluable
    assert not result.triggered


def test_demo_shaped_28_day_history_triggers_both_morning_rules() -> None:
    # The shape documented in processors.rules for the demo: 21 calm days, then a bad week.
    ln_rmssd = np.array([*alternating(4.0, 4.2, 21), 4.0, 3.95, 3.9, 3.85, 3.8, 3.75, 3.7])
    rhr = np.array([*alternating(50.0, 52.0, 21), 57.0, 58.0, 57.0, 58.0, 57.0, 58.0, 57.0])
    assert hrv_downtrend(ln_rmssd).triggered
    assert rhr_creep(rhr).triggered


def test_history_with_infinity_is_refused() -> None:
    with pytest.raises(ValueError, match="inf"):
        baseline([math.inf] * 36)
