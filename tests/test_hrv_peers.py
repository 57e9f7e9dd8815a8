"""Our HRV against NeuroKit2 and hrv-analysis on real recordings (``shared/data``).

Tolerances, each for a matched method:

* time domain (mean NN, SDNN, RMSSD, SDSD, pNN50): equal to 1e-6 ms / 1e-6 %. Where the
  peers' conventions differ we convert, never loosen: SDSD with ddof 1 as NeuroKit2
  (hrv-analysis uses ddof 0); pNN50 over the successive differences as hrv-analysis
  (NeuroKit2 divides by the number of intervals, one more).
* Welch LF/HF against hrv-analysis with cubic interpolation and mean removal
  (``detrend="constant"``), its segment, overlap and FFT length: relative 1e-6. Our default
  linear detrend stays within 2% of it on these segments.
* Lomb–Scargle against hrv-analysis (astropy, 5 samples per peak): LF/HF within 5%; its
  band powers are the unscaled periodogram, so ours equal theirs × 2 × mean NN (s) within 5%.
* DFA α1 against NeuroKit2 ``fractal_dfa`` with scales 4..16 and non-overlapping boxes:
  1e-9 on a dithered segment. On raw 1/128-s data NeuroKit2 drops boxes whose residual is
  exactly zero (we keep them), so there we allow 0.05.
* Lipponen–Tarvainen beat labels against NeuroKit2 ``signal_fixpeaks(method="kubios",
  iterative=False)`` fed exact peak positions: identical on nsr001; ≥ 90% agreement on
  the Polar H10 file (edge windows differ: NeuroKit2 invents an interval before the first).

The peers are imported once per module (each takes ~2 s to import).
"""

from __future__ import annotations

import csv
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from processors.hrv import dfa_alpha1, hrv_frequency, hrv_time
from processors.rr_clean import ECTOPIC, EXTRA, LONGSHORT, MISSED, clean_rr

nk: Any = pytest.importorskip("neurokit2")
# hrv-analysis imports nolds; nolds 0.6.3 fails to import on Python 3.11 (install nolds 0.6.2).
ha: Any = pytest.importorskip("hrvanalysis")

# Start beats of ~4–5 min segments of nsr001 (pNN50 0%, 0.5% and 2.5%: the last two
# exercise the denominators).
SEGMENTS = (1000, 20000, 35000)
TIME_TOL = 1e-6


@pytest.fixture(scope="module")
def nsr001() -> np.ndarray:
    path = Path(__file__).resolve().parent / "data" / "nsr2db" / "nsr001_rr_secs.txt"
    if not path.is_file():
        pytest.skip(f"real recordings not found at {path}")
    return np.loadtxt(path, max_rows=40_001)[1:] * 1000.0  # first line is a start time


@pytest.fixture
def hrvanalysis_on_numpy2(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """hrv-analysis 1.0.5 integrates with ``np.trapz``, removed in NumPy 2.4."""
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    return ha  # type: ignore[no-any-return]


def nk_time(rri: np.ndarray, times_s: np.ndarray) -> dict[str, float]:
    row = nk.hrv_time({"RRI": rri, "RRI_Time": times_s}).iloc[0]
    return {k.removeprefix("HRV_"): float(v) for k, v in row.items()}


@pytest.mark.parametrize("start", SEGMENTS)
def test_time_domain_equals_hrv_analysis_and_neurokit2(nsr001: np.ndarray, start: int) -> None:
    seg = nsr001[start : start + 400]
    ours = hrv_time(seg)
    theirs_ha = ha.get_time_domain_features(seg)
    theirs_nk = nk_time(seg, np.cumsum(seg) / 1000.0)
    for value, ha_key, nk_key in (
        (ours.mean_nn_ms, "mean_nni", "MeanNN"),
        (ours.sdnn_ms, "sdnn", "SDNN"),
        (ours.rmssd_ms, "rmssd", "RMSSD"),
    ):
        assert value == pytest.approx(theirs_ha[ha_key], abs=TIME_TOL)
        assert value == pytest.approx(theirs_nk[nk_key], abs=TIME_TOL)
    assert ours.sdsd_ms == pytest.approx(theirs_nk["SDSD"], abs=TIME_TOL)
    assert ours.pnn50_pct == pytest.approx(theirs_ha["pnni_50"], abs=TIME_TOL)
    assert ours.pnn50_pct * ours.n_diffs / (ours.n_diffs + 1) == pytest.approx(
        theirs_nk["pNN50"], abs=TIME_TOL
    )


def test_gap_handling_equals_neurokit2_non_successive_intervals(nsr001: np.ndarray) -> None:
    # Drop 10 beats: NeuroKit2 sees from the beat times that the intervals around the hole
    # are not successive and leaves that difference out, as our gap marker does.
    seg = nsr001[5000:5400]
    times = np.cumsum(seg) / 1000.0
    keep = np.ones(seg.size, dtype=bool)
    keep[200:210] = False
    breaks = np.zeros(int(keep.sum()), dtype=bool)
    breaks[200] = True
    ours = hrv_time(seg[keep], breaks)
    theirs = nk_time(seg[keep], times[keep])
    assert ours.n_diffs == keep.sum() - 2
    assert ours.rmssd_ms == pytest.approx(theirs["RMSSD"], abs=TIME_TOL)
    assert ours.sdsd_ms == pytest.approx(theirs["SDSD"], abs=TIME_TOL)


@pytest.mark.parametrize("start", SEGMENTS)
def test_welch_lf_hf_equals_hrv_analysis_matched(
    nsr001: np.ndarray, start: int, hrvanalysis_on_numpy2: Any
) -> None:
    seg = nsr001[start : start + 400]
    theirs = hrvanalysis_on_numpy2.get_frequency_domain_features(seg, interpolation_method="cubic")
    matched = hrv_frequency(seg, method="welch", detrend="constant")
    assert matched.lf_ms2 == pytest.approx(theirs["lf"], rel=1e-6)
    assert matched.hf_ms2 == pytest.approx(theirs["hf"], rel=1e-6)
    assert matched.lf_hf == pytest.approx(theirs["lf_hf_ratio"], rel=1e-6)
    default = hrv_frequency(seg)
    assert default.lf_hf == pytest.approx(theirs["lf_hf_ratio"], rel=0.02)


@pytest.mark.parametrize("start", SEGMENTS)
def test_lomb_lf_hf_agrees_with_hrv_analysis(
    nsr001: np.ndarray, start: int, hrvanalysis_on_numpy2: Any
) -> None:
    seg = nsr001[start : start + 400]
    theirs = hrvanalysis_on_numpy2.get_frequency_domain_features(seg, method="lomb")
    ours = hrv_frequency(seg, method="lomb", detrend="constant")
    assert ours.lf_hf == pytest.approx(theirs["lf_hf_ratio"], rel=0.05)
    density_scale = 2.0 * float(np.mean(seg)) / 1000.0
    assert ours.lf_ms2 == pytest.approx(theirs["lf"] * density_scale, rel=0.05)
    assert ours.hf_ms2 == pytest.approx(theirs["hf"] * density_scale, rel=0.05)


@pytest.mark.parametrize("start", SEGMENTS)
def test_dfa_alpha1_equals_neurokit2_matched(nsr001: np.ndarray, start: int) -> None:
    seg = nsr001[start : start + 400]
    dithered = seg + np.random.default_rng(start).uniform(-0.5, 0.5, seg.size)
    scales = np.arange(4, 17)
    theirs, _ = nk.fractal_dfa(dithered, scale=scales, overlap=False)
    assert dfa_alpha1(dithered) == pytest.approx(theirs, abs=1e-9)
    theirs_raw, _ = nk.fractal_dfa(seg, scale=scales, overlap=False)
    assert dfa_alpha1(seg) == pytest.approx(theirs_raw, abs=0.05)


def nk_labels(rr: np.ndarray, sampling_rate: float) -> dict[str, set[int]]:
    """NeuroKit2's first-pass classes, mapped to our beat indices (its index − 1)."""
    peaks = np.concatenate(([0], np.cumsum(np.round(rr * sampling_rate / 1000.0)))).astype(int)
    info, _ = nk.signal_fixpeaks(
        peaks, sampling_rate=sampling_rate, iterative=False, method="kubios"
    )
    return {k: {int(i) - 1 for i in info[k]} for k in ("ectopic", "longshort", "missed", "extra")}


def our_labels(rr: np.ndarray) -> dict[str, set[int]]:
    labels = clean_rr(rr).labels
    kinds = {"ectopic": ECTOPIC, "longshort": LONGSHORT, "missed": MISSED, "extra": EXTRA}
    return {k: set(np.flatnonzero(labels == v).tolist()) for k, v in kinds.items()}


def test_lipponen_labels_equal_neurokit2_on_nsr001(nsr001: np.ndarray) -> None:
    rr = nsr001[:6000]
    rr = rr[(rr >= 200.0) & (rr <= 2000.0)]
    theirs = nk_labels(rr, 128.0)  # nsr2db: beats on a 1/128-s grid, so peaks are exact
    ours = our_labels(rr)
    assert sum(map(len, ours.values())) > 50
    assert ours == theirs


def test_lipponen_labels_agree_with_neurokit2_on_polar_h10(recordings: Path) -> None:
    with (recordings / "polar_h10" / "polar_h10.csv").open() as fh:
        rr = np.array([float(row["rr"]) for row in csv.DictReader(fh) if row["rr"]])
    theirs = set().union(*nk_labels(rr, 1000.0).values())
    ours = set().union(*our_labels(rr).values())
    assert 10 <= len(ours) <= 30
    assert len(ours & theirs) >= 0.9 * max(len(ours), len(theirs))
