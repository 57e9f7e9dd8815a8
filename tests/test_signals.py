"""Synthetic signals for the emulators, and the loaders of the real recordings."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.emulated.recordings import moxy_smo2_pct, nsr2db_rr_ms, polar_h10_rr_ms
from devices.emulated.signals import (
    RR_MAX_MS,
    RR_MIN_MS,
    EffortSchedule,
    RRParameters,
    SmO2Parameters,
    grip_peak_after_session,
    grip_squeeze,
    power_watts,
    rmssd_ms,
    rr_beats,
    rr_series,
    smo2_points,
    smo2_series,
)

# -- RR ----------


def test_same_seed_same_rr_and_different_seed_different_rr() -> None:
    a = rr_series(200, seed=7).rr_ms
    b = rr_series(200, seed=7).rr_ms
    c = rr_series(200, seed=8).rr_ms
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(("hr", "rmssd"), [(50.0, 60.0), (60.0, 40.0), (80.0, 20.0)])
def test_rr_series_has_the_requested_mean_hr_and_rmssd(hr: float, rmssd: float) -> None:
    rr = rr_series(5000, RRParameters(mean_hr_bpm=hr, rmssd_ms=rmssd), seed=1).rr_ms
    assert 60_000.0 / rr.mean() == pytest.approx(hr, rel=0.03)
    assert rmssd_ms(rr) == pytest.approx(rmssd, rel=0.08)


def test_ectopic_pairs_are_premature_then_compensatory_pause() -> None:
    params = RRParameters(mean_hr_bpm=60.0, rmssd_ms=0.0, drift_ms=0.0, ectopic_rate=0.05)
    series = rr_series(4000, params, seed=2)
    flagged = np.flatnonzero(series.ectopic)
    assert flagged.size % 2 == 0
    pairs = flagged.reshape(-1, 2)
    assert np.all(pairs[:, 1] == pairs[:, 0] + 1)
    premature, pause = series.rr_ms[pairs[:, 0]], series.rr_ms[pairs[:, 1]]
    # With no variability the normal beat is exactly 1000 ms: full compensatory pause.
    assert np.allclose(premature, 650.0)
    assert np.allclose(premature + pause, 2000.0)
    events_per_normal_beat = pairs.shape[0] / (series.rr_ms.size - flagged.size + pairs.shape[0])
    assert events_per_normal_beat == pytest.approx(0.05, rel=0.25)


def test_no_ectopic_beats_when_rate_is_zero() -> None:
    assert not rr_series(2000, RRParameters(ectopic_rate=0.0), seed=4).ectopic.any()


@settings(max_examples=30, deadline=None)
@given(
    hr=st.floats(30.0, 200.0),
    rmssd=st.floats(0.0, 300.0),
    rate=st.floats(0.0, 0.2),
    seed=st.integers(0, 2**32 - 1),
)
def test_rr_stay_within_physiological_bounds(
    hr: float, rmssd: float, rate: float, seed: int
) -> None:
    params = RRParameters(mean_hr_bpm=hr, rmssd_ms=rmssd, ectopic_rate=rate)
    for beat in itertools.islice(rr_beats(params, seed), 300):
        assert RR_MIN_MS <= beat.rr_ms <= 2 * RR_MAX_MS - RR_MIN_MS
        if not beat.ectopic:
            assert beat.rr_ms <= RR_MAX_MS


def test_rr_parameters_reject_nonsense_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="mean_hr_bpm"):
        RRParameters(mean_hr_bpm=0.0)
    with pytest.raises(ValueError, match="ectopic_rate"):
        RRParameters(ectopic_rate=0.5)


# -- effort schedules ----------


@settings(max_examples=60, deadline=None)
@given(
    first=st.floats(0.0, 100.0),
    work=st.floats(1.0, 100.0),
    rest=st.floats(0.0, 100.0),
    count=st.one_of(st.none(), st.integers(0, 5)),
    t=st.floats(0.0, 1000.0),
)
def test_is_effort_agrees_with_the_effort_list(
    first: float, work: float, rest: float, count: int | None, t: float
) -> None:
    schedule = EffortSchedule(first_s=first, work_s=work, rest_s=rest, count=count)
    spans = schedule.efforts(until_s=t + 1.0)
    inside = any(start <= t < end for start, end in spans)
    # Float rounding can only disagree within a hair of a boundary.
    near_edge = any(min(abs(t - start), abs(t - end)) < 1e-6 for start, end in spans)
    if not near_edge:
        assert schedule.is_effort(t) == inside


# -- SmO2 ----------


def test_smo2_recovers_with_the_chosen_time_constant() -> None:
    params = SmO2Parameters(
        baseline_pct=70.0, effort_pct=20.0, fall_tau_s=5.0, recovery_tau_s=40.0, noise_pct=0.0
    )
    schedule = EffortSchedule(first_s=10.0, work_s=60.0, rest_s=600.0, count=1)
    t, smo2, _thb = smo2_series(400.0, schedule, params, period_s=1.0)
    end = int(np.flatnonzero(t >= 70.0)[0])  # first sample after the effort
    low = smo2[end - 1]
    assert low == pytest.approx(20.0, abs=0.5)  # 12 fall time constants: at the floor
    deficit = 70.0 - smo2[end - 1 :]
    k = np.arange(deficit.size)
    expected = (70.0 - low) * np.exp(-k * 1.0 / 40.0)
    assert np.allclose(deficit, expected, rtol=1e-9, atol=1e-9)


def test_smo2_stays_at_baseline_without_efforts() -> None:
    params = SmO2Parameters(baseline_pct=66.0, noise_pct=0.0)
    schedule = EffortSchedule(count=0)
    points = list(itertools.islice(smo2_points(schedule, params), 50))
    assert {p.smo2_pct for p in points} == {66.0}
    assert {p.thb_gdl for p in points} == {params.thb_gdl}


@settings(max_examples=30, deadline=None)
@given(
    baseline=st.floats(0.0, 100.0),
    effort=st.floats(0.0, 100.0),
    noise=st.floats(0.0, 20.0),
    seed=st.integers(0, 1000),
)
def test_smo2_is_always_a_percentage(
    baseline: float, effort: float, noise: float, seed: int
) -> None:
    params = SmO2Parameters(baseline_pct=baseline, effort_pct=effort, noise_pct=noise)
    schedule = EffortSchedule(first_s=4.0, work_s=10.0, rest_s=10.0)
    for p in itertools.islice(smo2_points(schedule, params, seed=seed), 100):
        assert 0.0 <= p.smo2_pct <= 100.0
        assert math.isfinite(p.thb_gdl)


# -- power ----------


def test_power_follows_the_effort_schedule() -> None:
    schedule = EffortSchedule(first_s=30.0, work_s=30.0, rest_s=30.0)
    samples = list(itertools.islice(power_watts(schedule, 100.0, 300.0, 5.0, seed=3), 600))
    effort = [w for t, w in samples if schedule.is_effort(t)]
    rest = [w for t, w in samples if not schedule.is_effort(t)]
    assert np.mean(effort) == pytest.approx(300.0, abs=2.0)
    assert np.mean(rest) == pytest.approx(100.0, abs=2.0)
    assert all(isinstance(w, int) and w >= 0 for _t, w in samples)


# -- grip ----------


def test_noise_free_squeeze_peaks_exactly_at_the_chosen_force() -> None:
    force = grip_squeeze(42.0, rate_hz=80.0, noise_kg=0.0)
    assert force.max() == 42.0
    assert force.size == round(80 * (0.4 + 3.0 + 0.3))
    assert force[0] == 0.0


@settings(max_examples=40, deadline=None)
@given(
    baseline=st.floats(1.0, 100.0),
    drop=st.floats(0.0, 0.5),
    tau=st.floats(1.0, 3600.0),
    t1=st.floats(0.0, 7200.0),
    dt=st.floats(0.0, 7200.0),
)
def test_grip_peak_recovers_monotonically_towards_baseline(
    baseline: float, drop: float, tau: float, t1: float, dt: float
) -> None:
    first = grip_peak_after_session(baseline, drop, t1, tau)
    later = grip_peak_after_session(baseline, drop, t1 + dt, tau)
    assert baseline * (1 - drop) - 1e-9 <= first <= later <= baseline + 1e-9


def test_grip_drop_is_the_chosen_fraction_and_recovers_with_tau() -> None:
    assert grip_peak_after_session(50.0, 0.1, 0.0, 900.0) == pytest.approx(45.0)
    assert grip_peak_after_session(50.0, 0.1, 900.0, 900.0) == pytest.approx(50.0 - 5.0 / math.e)
    assert grip_peak_after_session(50.0, 0.1, 1e6, math.inf) == pytest.approx(45.0)


# -- recordings ----------


def test_nsr2db_loader_skips_the_start_time_line(recordings: Path) -> None:
    path = recordings / "nsr2db" / "nsr001_rr_secs.txt"
    lines = path.read_text().split()
    rr = nsr2db_rr_ms(path)
    assert rr.size == len(lines) - 1
    assert rr[0] == pytest.approx(float(lines[1]) * 1000.0)
    assert 300.0 < np.median(rr) < 1500.0


def test_polar_loader_reads_only_rows_with_a_beat(recordings: Path) -> None:
    rr = polar_h10_rr_ms(recordings / "polar_h10" / "polar_h10.csv")
    assert rr.size == 798  # beats in the file, per the data README
    assert rr[:3].tolist() == [421.0, 379.0, 1073.0]


def test_moxy_loader_reads_live_smo2(recordings: Path) -> None:
    smo2 = moxy_smo2_pct(recordings / "moxy" / "moxy_intervals_excerpt.csv")
    assert smo2[0] == 53.0
    assert np.all((smo2 >= 0) & (smo2 <= 100))
