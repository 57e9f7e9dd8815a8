"""Batch HRV metrics: hand-checked values, spectra on known signals, DFA, sliding windows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.hrv import (
    dfa_alpha1,
    hrv_frequency,
    hrv_metrics,
    hrv_time,
    lomb_psd,
    sliding_hrv_time,
    welch_psd,
)


def modulated_nn(
    duration_s: float, freq_hz: float, amp_ms: float, mean_ms: float = 1000.0
) -> np.ndarray:
    """NN series whose value at each beat time is mean + amp·sin(2πft)."""
    out = []
    t = 0.0
    while t < duration_s:
        nn = mean_ms + amp_ms * math.sin(2 * math.pi * freq_hz * t)
        t += nn / 1000.0
        out.append(nn)
    return np.array(out)


def test_time_domain_by_hand() -> None:
    rr = [800.0, 810.0, 790.0, 820.0, 800.0]  # diffs 10, −20, 30, −20
    td = hrv_time(rr)
    assert td.n_beats == 5
    assert td.n_diffs == 4
    assert td.mean_nn_ms == pytest.approx(804.0)
    assert td.mean_hr_bpm == pytest.approx(60_000.0 / 804.0)
    assert td.sdnn_ms == pytest.approx(math.sqrt((16 + 36 + 196 + 256 + 16) / 4))
    assert td.rmssd_ms == pytest.approx(math.sqrt((100 + 400 + 900 + 400) / 4))
    assert td.ln_rmssd == pytest.approx(math.log(td.rmssd_ms))
    assert td.sdsd_ms == pytest.approx(float(np.std([10, -20, 30, -20], ddof=1)))
    assert td.pnn50_pct == 0.0


def test_pnn50_denominator_is_the_number_of_successive_differences() -> None:
    td = hrv_time([1000.0, 1060.0, 1000.0, 1000.0])  # |Δ| = 60, 60, 0
    assert td.pnn50_pct == pytest.approx(100.0 * 2 / 3)


def test_pnn50_counts_strictly_greater_than_50_ms() -> None:
    assert hrv_time([1000.0, 1050.0, 1000.0]).pnn50_pct == 0.0


def test_rr_across_gap_is_never_differenced() -> None:
    run_a = [800.0, 810.0, 805.0, 815.0]
    run_b = [1200.0, 1190.0, 1210.0]
    breaks = [False] * 4 + [True, False, False]
    td = hrv_time(run_a + run_b, breaks)
    diffs = np.concatenate([np.diff(run_a), np.diff(run_b)])
    assert td.n_diffs == 5
    assert td.rmssd_ms == pytest.approx(float(np.sqrt(np.mean(diffs**2))))
    assert td.pnn50_pct == 0.0
    # SDNN spans the whole series: it is not a difference.
    assert td.sdnn_ms == pytest.approx(float(np.std(run_a + run_b, ddof=1)))


def test_too_few_differences_is_an_error_not_a_number() -> None:
    with pytest.raises(ValueError, match="at least 2 successive differences"):
        hrv_time([800.0, 810.0])
    with pytest.raises(ValueError, match="successive differences"):
        hrv_time([800.0, 810.0, 820.0, 830.0], [False, True, False, True])


@pytest.mark.parametrize("method", ["welch", "lomb"])
def test_lf_sine_puts_its_variance_in_lf_in_ms2(method: str) -> None:
    amp = 30.0  # a sine of amplitude A has variance A²/2 = 450 ms²
    nn = modulated_nn(300.0, 0.1, amp)
    fd = hrv_frequency(nn, method=method)  # type: ignore[arg-type]
    assert fd.method == method
    assert fd.lf_ms2 == pytest.approx(amp**2 / 2, rel=0.12)
    assert fd.hf_ms2 < 0.05 * fd.lf_ms2
    assert fd.lf_hf > 20


@pytest.mark.parametrize("method", ["welch", "lomb"])
def test_hf_sine_puts_its_variance_in_hf(method: str) -> None:
    nn = modulated_nn(300.0, 0.25, 20.0)
    fd = hrv_frequency(nn, method=method)  # type: ignore[arg-type]
    assert fd.hf_ms2 == pytest.approx(200.0, rel=0.12)
    assert fd.lf_hf < 0.05


def test_linear_detrend_removes_a_drift_that_the_mean_leaves_in_lf() -> None:
    hf = modulated_nn(300.0, 0.25, 20.0)
    nn = hf + np.linspace(0.0, 200.0, hf.size)
    drifting = hrv_frequency(nn, detrend="constant")
    detrended = hrv_frequency(nn, detrend="linear")
    assert detrended.lf_ms2 < drifting.lf_ms2


def test_spectrum_needs_a_gap_free_run_of_one_segment() -> None:
    short = modulated_nn(50.0, 0.1, 20.0)
    with pytest.raises(ValueError, match="gap-free run"):
        hrv_frequency(short)
    metrics = hrv_metrics(short)
    assert metrics.lf_ms2 is None
    assert metrics.rmssd_ms > 0


def test_welch_pools_the_segments_of_runs_separated_by_a_gap() -> None:
    a = modulated_nn(200.0, 0.1, 30.0)
    b = modulated_nn(300.0, 0.1, 30.0, mean_ms=1300.0)  # another level after the gap
    nn = np.concatenate([a, b])
    breaks = np.zeros(nn.size, dtype=bool)
    breaks[a.size] = True
    _, pooled = welch_psd(nn, breaks)
    _, pa = welch_psd(a)
    _, pb = welch_psd(b)

    def segments(run: np.ndarray) -> int:  # 256-sample segments, step 128, at 4 Hz
        samples = np.arange(0.0, (run.sum() - run[0]) / 1000.0, 0.25).size
        return 1 + (samples - 256) // 128

    ka, kb = segments(a), segments(b)
    assert ka != kb
    np.testing.assert_allclose(pooled, (ka * pa + kb * pb) / (ka + kb), rtol=1e-12)
    # Without the gap the level step leaks into the low frequencies.
    assert hrv_frequency(nn).lf_ms2 > hrv_frequency(nn, breaks).lf_ms2


def test_lomb_density_integrates_to_the_variance() -> None:
    rng = np.random.default_rng(5)
    nn = 900.0 + rng.normal(0.0, 25.0, 2000)  # white: flat density up to Nyquist
    nyquist = 1000.0 / (2 * nn.mean())
    f, psd = lomb_psd(nn, f_min_hz=0.001, f_max_hz=nyquist, detrend="constant")
    assert float(np.trapezoid(psd, f)) == pytest.approx(float(np.var(nn)), rel=0.1)


def test_dfa_alpha1_of_white_noise_and_of_a_random_walk() -> None:
    rng = np.random.default_rng(11)
    white = 900.0 + rng.normal(0.0, 20.0, 6000)
    walk = 900.0 + np.cumsum(rng.normal(0.0, 2.0, 6000))
    assert dfa_alpha1(white) == pytest.approx(0.5, abs=0.1)
    assert dfa_alpha1(walk) == pytest.approx(1.5, abs=0.1)


def test_dfa_boxes_never_span_a_gap() -> None:
    rng = np.random.default_rng(2)
    a = 900.0 + rng.normal(0.0, 20.0, 400)
    b = 900.0 + rng.normal(0.0, 20.0, 400)
    breaks = np.zeros(800, dtype=bool)
    breaks[400] = True
    with_gap = dfa_alpha1(np.concatenate([a, b]), breaks)
    # A level change across the gap changes nothing: each run is integrated on its own.
    assert dfa_alpha1(np.concatenate([a, b + 250.0]), breaks) == pytest.approx(with_gap)
    assert dfa_alpha1(np.concatenate([a, b + 250.0])) != pytest.approx(with_gap)


def test_dfa_needs_two_boxes_of_sixteen_beats() -> None:
    with pytest.raises(ValueError, match="boxes of 16 beats"):
        dfa_alpha1(np.full(31, 900.0) + np.arange(31))


def test_sliding_windows_by_seconds_are_the_longest_fitting_span() -> None:
    rng = np.random.default_rng(3)
    nn = rng.uniform(600.0, 1100.0, 500)
    s = sliding_hrv_time(nn, window_s=30.0)
    for start, stop in zip(s.start, s.stop, strict=True):
        assert nn[start:stop].sum() <= 30_000.0
        assert start == 0 or nn[start - 1 : stop].sum() > 30_000.0
    # The first window ends at the first beat where 30 s have been recorded.
    first = int(np.argmax(np.cumsum(nn) >= 30_000.0))
    assert s.stop[0] == first + 1


sliding_cases = st.tuples(
    st.lists(st.floats(min_value=300.0, max_value=1800.0), min_size=3, max_size=120),
    st.lists(st.integers(min_value=1, max_value=119), max_size=4),
    st.one_of(
        st.tuples(st.just("beats"), st.integers(min_value=3, max_value=40)),
        st.tuples(st.just("seconds"), st.floats(min_value=2.0, max_value=40.0)),
    ),
)


@settings(max_examples=80, deadline=None)
@given(case=sliding_cases)
def test_sliding_windows_equal_hrv_time_on_each_window(
    case: tuple[list[float], list[int], tuple[str, float]],
) -> None:
    values, gaps, (kind, size) = case
    nn = np.array(values)
    breaks = np.zeros(nn.size, dtype=bool)
    breaks[[g for g in gaps if g < nn.size]] = True
    if kind == "beats":
        s = sliding_hrv_time(nn, breaks, window_s=None, window_beats=int(size))
    else:
        s = sliding_hrv_time(nn, breaks, window_s=float(size))
    for row, (start, stop) in enumerate(zip(s.start, s.stop, strict=True)):
        window, window_breaks = nn[start:stop], breaks[start:stop]
        try:
            td = hrv_time(window, window_breaks)
        except ValueError:
            assert math.isnan(s.rmssd_ms[row])
            continue
        assert s.n_diffs[row] == td.n_diffs
        assert s.rmssd_ms[row] == pytest.approx(td.rmssd_ms, rel=1e-9, abs=1e-9)
        assert s.sdnn_ms[row] == pytest.approx(td.sdnn_ms, rel=1e-7, abs=1e-6)
        assert s.sdsd_ms[row] == pytest.approx(td.sdsd_ms, rel=1e-7, abs=1e-6)
        assert s.mean_nn_ms[row] == pytest.approx(td.mean_nn_ms, rel=1e-12)
        assert s.pnn50_pct[row] == pytest.approx(td.pnn50_pct)


@settings(max_examples=60, deadline=None)
@given(
    nn=st.lists(st.floats(min_value=300.0, max_value=1800.0), min_size=3, max_size=200),
    offset=st.floats(min_value=-200.0, max_value=200.0),
)
def test_difference_metrics_ignore_a_constant_offset(nn: list[float], offset: float) -> None:
    a = hrv_time(nn)
    b = hrv_time(np.array(nn) + offset)
    assert b.rmssd_ms == pytest.approx(a.rmssd_ms, rel=1e-6, abs=1e-6)
    assert b.sdnn_ms == pytest.approx(a.sdnn_ms, rel=1e-6, abs=1e-6)
    assert b.n_diffs == a.n_diffs
