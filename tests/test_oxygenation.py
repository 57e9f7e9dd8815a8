"""SmO2 effort detection and recovery: constructed kinetics and the real Moxy file."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors import physiology as ph
from processors.oxygenation import (
    CentredMedian,
    EffortDetector,
    OxygenationInputError,
    analyse_session,
    smooth_centred,
    summarise_session,
    two_level_threshold,
)

MOXY = Path(__file__).resolve().parent / "data" / "moxy" / "moxy_intervals_excerpt.csv"
PLATEAU = ph.SMO2_MIN_PLATEAU_PCT


def recovery_curve(
    t: np.ndarray,
    *,
    baseline: float = 60.0,
    low: float = 20.0,
    efforts: tuple[tuple[float, float, float, float], ...],
) -> np.ndarray:
    """SmO2 at times t: rest at ``baseline``; each effort (start, end, τ, delay) ramps down
    over 10 s to ``low``, holds to ``end``, then recovers mono-exponentially to baseline
    after ``delay`` s with time constant τ."""
    y = np.full_like(t, baseline)
    for start, end, tau, delay in efforts:
        down = (t >= start) & (t < start + 10)
        y[down] = baseline - (baseline - low) * (t[down] - start) / 10
        y[(t >= start + 10) & (t < end + delay)] = low
        rec = t >= end + delay
        y[rec] = np.minimum(
            y[rec], low + (baseline - low) * (1 - np.exp(-(t[rec] - end - delay) / tau))
        )
    return y


def expected_from_plateau_end(tau: float, depth: float, fraction: float) -> float:
    """Time to reach ``fraction`` of the depth, timed from the last sample within PLATEAU
    points of the minimum (the module's definition), for a noise-free exponential."""
    return tau * (math.log(1 / (1 - fraction)) - math.log(depth / (depth - PLATEAU)))


@pytest.mark.parametrize("tau", [10.0, 25.0, 45.0])
@pytest.mark.parametrize("delay", [0.0, 8.0])
def test_constructed_recovery_gives_known_t95_t_half_rate_and_tau(tau: float, delay: float) -> None:
    t = np.arange(0.0, 600.0, 1.0)
    y = recovery_curve(t, efforts=((60.0, 180.0, tau, delay),))
    session = analyse_session(t, y)
    assert session.n_efforts == 1
    effort = session.efforts[0]
    depth = 40.0
    assert effort.baseline_pct == pytest.approx(60.0)
    assert effort.min_pct == pytest.approx(20.0)
    assert effort.recovered
    # Within one sample interval (1 s): the plateau end is only known to the sample.
    assert effort.t95_s == pytest.approx(expected_from_plateau_end(tau, depth, 0.95), abs=1.0)
    assert effort.t_half_s == pytest.approx(expected_from_plateau_end(tau, depth, 0.5), abs=1.0)
    assert effort.reoxygenation_rate_pct_s == pytest.approx(
        0.5 * depth / (tau * math.log(3)), rel=0.05
    )
    assert effort.tau_s == pytest.approx(tau, rel=0.05)
    assert effort.overshoot_pct == pytest.approx(0.0, abs=0.5)
    assert session.recovery_time_s == effort.t95_s


def test_noisy_irregular_moxy_like_sampling_still_recovers_tau_and_t95() -> None:
    rng = np.random.default_rng(7)
    t = np.cumsum(rng.uniform(0.5, 2.0, 500))
    tau = 30.0
    clean = recovery_curve(t, efforts=((80.0, 200.0, tau, 0.0),))
    y = np.clip(clean + rng.normal(0.0, 1.5, t.size), 0, 100)
    effort = analyse_session(t, y).efforts[0]
    assert effort.t95_s == pytest.approx(expected_from_plateau_end(tau, 40.0, 0.95), rel=0.15)
    assert effort.tau_s == pytest.approx(tau, rel=0.2)


def test_session_recovery_time_is_median_t95_of_its_efforts() -> None:
    t = np.arange(0.0, 1500.0, 1.0)
    taus = (15.0, 30.0, 60.0)
    y = recovery_curve(
        t,
        efforts=(
            (60.0, 120.0, taus[0], 0.0),
            (400.0, 460.0, taus[1], 0.0),
            (800.0, 860.0, taus[2], 0.0),
        ),
    )
    session = analyse_session(t, y)
    assert session.n_efforts == 3
    assert session.n_recovered == 3
    t95s = [e.t95_s for e in session.efforts if e.t95_s is not None]
    assert session.recovery_time_s == pytest.approx(float(np.median(t95s)))
    assert session.recovery_time_s == pytest.approx(
        expected_from_plateau_end(taus[1], 40.0, 0.95), rel=0.03
    )


def test_hyperaemic_overshoot_is_peak_above_pre_effort_baseline() -> None:
    t = np.arange(0.0, 400.0, 1.0)
    y = recovery_curve(t, efforts=((60.0, 120.0, 10.0, 0.0),))
    bump = (t > 160) & (t < 200)
    y[bump] += 8.0 * np.sin(np.pi * (t[bump] - 160) / 40)
    effort = analyse_session(t, y).efforts[0]
    assert effort.overshoot_pct == pytest.approx(8.0, abs=0.3)


def test_repeated_intervals_without_full_recovery_are_separate_unrecovered_efforts() -> None:
    t = np.arange(0.0, 900.0, 1.0)
    y = np.full_like(t, 60.0)
    # Two 60-s efforts at 20% with 40 s between them: SmO2 only climbs to ~45%.
    y[(t >= 60) & (t < 120)] = 20.0
    rest = (t >= 120) & (t < 160)
    y[rest] = 20 + 40 * (1 - np.exp(-(t[rest] - 120) / 30))
    y[(t >= 160) & (t < 220)] = 22.0
    rec = t >= 220
    y[rec] = 22 + 38 * (1 - np.exp(-(t[rec] - 220) / 20))
    session = analyse_session(t, y)
    assert session.n_efforts == 2
    first, second = session.efforts
    assert not first.recovered
    assert first.t95_s is None
    assert first.observed_s < 60
    assert second.recovered
    # A cut-short effort watched < 120 s says nothing about slowness: it is left out.
    assert session.recovery_time_s == second.t95_s


def test_unrecovered_effort_watched_beyond_threshold_counts_as_lower_bound() -> None:
    t = np.arange(0.0, 400.0, 1.0)
    y = np.full_like(t, 60.0)
    y[t >= 60] = 20.0
    rec = t >= 120
    y[rec] = 20 + 40 * (1 - np.exp(-(t[rec] - 120) / 400))  # far too slow to finish
    session = analyse_session(t, y)
    assert session.n_recovered == 0
    assert session.recovery_time_is_lower_bound
    assert session.recovery_time_s is not None
    assert session.recovery_time_s > ph.SMO2_SLOW_RECOVERY_S


def test_activity_stream_rejects_desaturations_without_effort() -> None:
    t = np.arange(0.0, 800.0, 1.0)
    y = recovery_curve(t, efforts=((60.0, 120.0, 20.0, 0.0), (400.0, 460.0, 20.0, 0.0)))
    power = np.where((t >= 60) & (t < 120), 300.0, 80.0)  # only the first one is work
    with_power = analyse_session(t, y, activity=(t, power))
    assert with_power.n_efforts == 1
    assert with_power.efforts[0].onset_s < 120
    assert analyse_session(t, y).n_efforts == 2


def test_detector_fed_sample_by_sample_matches_batch_and_memory_stays_bounded() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(0.0, 3 * 3600.0, 1.0)  # three hours of 1-Hz samples
    efforts = tuple((s, s + 60.0, 25.0, 0.0) for s in np.arange(120.0, t[-1] - 400, 400.0))
    y = np.clip(recovery_curve(t, efforts=efforts) + rng.normal(0, 1.0, t.size), 0, 100)
    detector = EffortDetector()
    streamed = []
    peak_memory = 0
    for ti, yi in zip(t, y, strict=True):
        streamed.extend(detector.add(float(ti), float(yi)))
        peak_memory = max(peak_memory, detector.buffered_samples)
    streamed.extend(detector.flush())
    batch = analyse_session(t, y)
    assert tuple(streamed) == batch.efforts
    assert len(streamed) == len(efforts)
    # Bounded by the windows (smoothing + baseline + one effort), not by the 10,800 samples.
    assert peak_memory < 300


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.3, 15.0), min_size=1, max_size=80),
    st.lists(st.floats(0.0, 100.0), min_size=80, max_size=80),
)
def test_streaming_centred_median_equals_batch_even_across_gaps(
    steps: list[float], values: list[float]
) -> None:
    t = np.cumsum(steps)
    y = np.array(values[: t.size])
    smoother = CentredMedian()
    streamed = []
    for ti, yi in zip(t, y, strict=True):
        streamed.extend(smoother.push(float(ti), float(yi)))
    streamed.extend(smoother.flush())
    assert [s[0] for s in streamed] == t.tolist()
    np.testing.assert_allclose([s[1] for s in streamed], smooth_centred(t, y))


def test_centred_median_removes_single_sample_spikes_without_lag() -> None:
    t = np.arange(0.0, 40.0, 2.0)
    y = np.where(t < 20, 60.0, 30.0)
    y[5] = 5.0  # a dropout spike
    s = smooth_centred(t, y)
    assert s[5] == 60.0
    # The step stays where it is (a trailing mean would move it by ~4 s).
    assert s[t == 18.0][0] == 60.0
    assert s[t == 20.0][0] == 30.0


def read_moxy() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with MOXY.open() as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].startswith("#")]
    header, body = rows[0], rows[1:]
    assert header == ["time", "smo2_live", "smo2_avg", "thb"]

    def seconds(clock: str) -> int:
        h, m, s = (int(x) for x in clock.split(":"))
        return 3600 * h + 60 * m + s

    t = np.array([seconds(r[0]) for r in body], dtype=float)
    return t - t[0], np.array([float(r[1]) for r in body]), np.array([float(r[2]) for r in body])


def test_real_moxy_recording_has_one_effort_with_inspected_kinetics() -> None:
    # Inspected by plotting live, smoothed and device-average traces: rest at ~50% for 30 s,
    # a 220-s gap in the excerpt, then one effort at ~20% ending at 13:23:17 (t = 296 s);
    # SmO2 jumps to ~30%, holds ~15 s, then rises to 52% by 13:23:39 and overshoots to ~70%.
    t, live, _avg = read_moxy()
    session = analyse_session(t, live)
    assert session.n_efforts == 1
    effort = session.efforts[0]
    assert effort.baseline_pct == pytest.approx(50.5, abs=1.5)
    assert 16.0 <= effort.min_pct <= 19.0  # the 6% and 10% single-sample spikes are noise
    assert effort.t_min_s == pytest.approx(296.0, abs=2.0)
    assert effort.recovered
    assert effort.t95_s is not None
    assert 16.0 <= effort.t95_s <= 24.0
    assert effort.t_half_s is not None
    assert 12.0 <= effort.t_half_s <= 19.0
    assert effort.overshoot_pct == pytest.approx(19.5, abs=2.0)
    assert effort.tau_s is not None
    assert effort.tau_s > 0
    assert session.recovery_time_s == effort.t95_s
    assert session.recovery_time_s < ph.SMO2_SLOW_RECOVERY_S


def test_device_trailing_average_would_report_a_later_minimum() -> None:
    t, live, avg = read_moxy()
    live_effort = analyse_session(t, live).efforts[0]
    avg_effort = analyse_session(t, avg).efforts[0]
    assert avg_effort.t_min_s > live_effort.t_min_s


@pytest.mark.parametrize(
    ("t", "y", "fault"),
    [
        ([0.0, 1.0], [50.0, float("nan")], "NaN"),
        ([0.0, 1.0], [50.0, 120.0], "0–100"),
        ([0.0, 0.0], [50.0, 51.0], "increase"),
        ([], [], "non-empty"),
    ],
)
def test_bad_smo2_input_is_refused_with_the_reason(
    t: list[float], y: list[float], fault: str
) -> None:
    with pytest.raises(OxygenationInputError, match=fault):
        analyse_session(t, y)


def test_streaming_detector_refuses_time_going_backwards() -> None:
    detector = EffortDetector()
    detector.add(10.0, 50.0)
    with pytest.raises(OxygenationInputError, match="increase"):
        detector.add(9.0, 50.0)


def test_activity_without_threshold_is_refused() -> None:
    with pytest.raises(OxygenationInputError, match="activity_threshold"):
        EffortDetector().add_activity(0.0, 200.0)


def test_session_without_efforts_has_no_recovery_time() -> None:
    session = summarise_session([], 0.0, 100.0)
    assert session.recovery_time_s is None
    assert session.n_efforts == 0


@pytest.mark.parametrize("work_share", [0.05, 0.5, 0.8])
def test_default_activity_threshold_separates_work_from_easy_whatever_the_work_share(
    work_share: float,
) -> None:
    rng = np.random.default_rng(11)
    n = 1000
    work = rng.random(n) < work_share
    power = np.where(work, 320.0, 110.0) + rng.normal(0, 15, n)
    threshold = two_level_threshold(power)
    assert 160 < threshold < 270


def test_analyse_session_passes_detector_settings_to_the_detector() -> None:
    # A 40-point desaturation: an effort by default, none when 50 points are required.
    t = np.arange(0.0, 600.0, 1.0)
    y = recovery_curve(t, efforts=((60.0, 180.0, 20.0, 0.0),))
    assert analyse_session(t, y).n_efforts == 1
    assert analyse_session(t, y, min_desaturation_pct=50.0).n_efforts == 0
    with pytest.raises(ValueError, match="recovery_fraction"):
        analyse_session(t, y, recovery_fraction=0.4)
