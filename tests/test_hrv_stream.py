"""The streaming tracker agrees with the batch functions, honours gaps, stays bounded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.hrv import hrv_time, sliding_hrv_time
from processors.hrv_stream import HrvTracker


def nsr001(recordings: Path, n: int) -> np.ndarray:
    path = recordings / "nsr2db" / "nsr001_rr_secs.txt"
    values = np.loadtxt(path, max_rows=n + 1)[1:] * 1000.0  # first line is a start time
    return values[(values >= 200.0) & (values <= 2000.0)]


def run(tracker: HrvTracker, nn: np.ndarray, breaks: np.ndarray) -> list:  # type: ignore[type-arg]
    return [tracker.add(v, after_gap=b) for v, b in zip(nn.tolist(), breaks.tolist(), strict=True)]


@pytest.mark.parametrize(
    ("tracker_kw", "batch_kw"),
    [
        ({"window_s": 60.0}, {"window_s": 60.0}),
        ({"window_beats": 64}, {"window_s": None, "window_beats": 64}),
    ],
)
def test_tracker_equals_batch_sliding_windows_on_real_rr(
    recordings: Path, tracker_kw: dict[str, float], batch_kw: dict[str, float | None]
) -> None:
    nn = nsr001(recordings, 6000)
    breaks = np.random.default_rng(4).random(nn.size) < 0.005
    outputs = run(HrvTracker(**tracker_kw), nn, breaks)  # type: ignore[arg-type]
    batch = sliding_hrv_time(nn, breaks, **batch_kw)  # type: ignore[arg-type]
    got = [i for i, out in enumerate(outputs) if out is not None]
    expected = (batch.stop - 1)[~np.isnan(batch.rmssd_ms)]
    np.testing.assert_array_equal(got, expected)
    ok = ~np.isnan(batch.rmssd_ms)
    for field in ("rmssd_ms", "sdnn_ms", "sdsd_ms", "pnn50_pct", "mean_nn_ms"):
        stream = np.array([getattr(outputs[i], field) for i in got])
        np.testing.assert_allclose(stream, getattr(batch, field)[ok], rtol=1e-9, atol=1e-9)
    assert all(outputs[i].n_beats == batch.n_beats[ok][k] for k, i in enumerate(got))


def test_tracker_returns_nothing_until_the_window_is_full() -> None:
    tracker = HrvTracker(window_s=10.0)
    outputs = [tracker.add(1000.0 + (i % 2) * 20.0) for i in range(12)]
    assert outputs[:9] == [None] * 9  # 9.08 s recorded
    assert outputs[9] is not None  # 10.1 s recorded: full
    assert outputs[9].n_beats == 9  # the last 9 beats last 9.1 s ≤ 10 s; 10 would not fit


def test_rr_across_gap_is_never_differenced_by_the_tracker() -> None:
    tracker = HrvTracker(window_beats=6)
    for rr in (800.0, 810.0, 800.0):
        tracker.add(rr)
    for rr, gap in ((1200.0, True), (1210.0, False), (1200.0, False)):
        out = tracker.add(rr, after_gap=gap)
    assert out is not None
    assert out.n_diffs == 4
    assert out.rmssd_ms == pytest.approx(10.0)
    assert out.pnn50_pct == 0.0


def test_mark_gap_applies_to_the_next_beat() -> None:
    tracker = HrvTracker(window_beats=4)
    for rr in (800.0, 810.0):
        tracker.add(rr)
    tracker.mark_gap()
    tracker.add(1500.0)
    out = tracker.add(1510.0)
    assert out is not None
    assert out.n_diffs == 2
    assert out.rmssd_ms == pytest.approx(10.0)


def test_implausible_interval_is_dropped_as_a_gap() -> None:
    tracker = HrvTracker(window_beats=4)
    for rr in (800.0, 810.0, 800.0):
        tracker.add(rr)
    assert tracker.add(3500.0) is None  # a dropout, not a beat
    out = tracker.add(1000.0)
    assert out is not None
    assert tracker.n_beats == 4
    assert out.n_diffs == 2  # 800→810→800; 800→1000 spans the dropout
    assert out.rmssd_ms == pytest.approx(10.0)


def test_memory_is_bounded_by_the_window() -> None:
    tracker = HrvTracker(window_s=60.0)
    rng = np.random.default_rng(0)
    for rr in rng.uniform(200.0, 400.0, 20_000).tolist():
        tracker.add(rr)
        assert tracker.n_beats <= 300  # 60 s / 200 ms
    assert tracker.n_beats >= 150


def test_reset_forgets_every_beat() -> None:
    tracker = HrvTracker(window_beats=3)
    for rr in (800.0, 900.0, 800.0):
        tracker.add(rr)
    tracker.reset()
    assert tracker.n_beats == 0
    assert tracker.add(800.0) is None


def test_window_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="not both"):
        HrvTracker(window_beats=10, window_s=60.0)
    with pytest.raises(ValueError, match="window_beats"):
        HrvTracker(window_beats=2)
    with pytest.raises(ValueError, match="finite"):
        HrvTracker().add(float("nan"))


@settings(max_examples=80, deadline=None)
@given(
    beats=st.lists(
        st.tuples(st.floats(min_value=300.0, max_value=1800.0), st.booleans()),
        min_size=3,
        max_size=150,
    ),
    window=st.integers(min_value=3, max_value=30),
)
def test_tracker_equals_hrv_time_of_its_last_window(
    beats: list[tuple[float, bool]], window: int
) -> None:
    nn = np.array([b[0] for b in beats])
    breaks = np.array([b[1] and i > 0 and i % 7 == 0 for i, b in enumerate(beats)])
    tracker = HrvTracker(window_beats=window)
    out = run(tracker, nn, breaks)[-1]
    if nn.size < window:
        assert out is None
        return
    try:
        td = hrv_time(nn[-window:], breaks[-window:])
    except ValueError:
        assert out is None
        return
    assert out is not None
    assert out.rmssd_ms == pytest.approx(td.rmssd_ms, rel=1e-9, abs=1e-9)
    assert out.sdnn_ms == pytest.approx(td.sdnn_ms, rel=1e-7, abs=1e-6)
    assert out.sdsd_ms == pytest.approx(td.sdsd_ms, rel=1e-7, abs=1e-6)
    assert out.pnn50_pct == pytest.approx(td.pnn50_pct)
    assert out.mean_hr_bpm == pytest.approx(td.mean_hr_bpm, rel=1e-12)


@pytest.mark.parametrize(
    "series",
    [
        [300.0, 300.0, 300.0, 300.0, 1114.0],  # found by hypothesis in the batch windows
        [1700.0, 1114.3, 300.1, 300.1, 300.1],
        [1800.0, 1800.0, 300.0, 300.0, 300.0, 300.0],
    ],
)
def test_a_constant_window_after_a_large_beat_has_exactly_zero_spread(
    series: list[float],
) -> None:
    """Running sums lose a near-constant window's digits to rounding; both the batch and
    the streaming path must still give what the window's own values give."""
    tracker = HrvTracker(window_beats=3)
    for rr in series:
        out = tracker.add(rr)
    window = np.array(series[-3:])
    assert out is not None
    td = hrv_time(window)
    assert out.sdnn_ms == pytest.approx(td.sdnn_ms, abs=1e-9)
    assert out.sdsd_ms == pytest.approx(td.sdsd_ms, abs=1e-9)
    batch = sliding_hrv_time(np.array(series), window_s=None, window_beats=3)
    for row, (start, stop) in enumerate(zip(batch.start, batch.stop, strict=True)):
        each = hrv_time(np.array(series[start:stop]))
        assert batch.sdnn_ms[row] == pytest.approx(each.sdnn_ms, abs=1e-9)
        assert batch.sdsd_ms[row] == pytest.approx(each.sdsd_ms, abs=1e-9)
