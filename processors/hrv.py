"""Heart-rate-variability metrics over NN-interval series (batch, numpy).

All inputs are NN intervals in milliseconds (RR intervals after :func:`processors.rr_clean.
clean_rr`), optionally with gap markers ``breaks`` (True at ``i`` when beat ``i`` follows a
gap: the difference ``nn[i] - nn[i-1]`` is never used, spectra and DFA boxes never span it).

* :func:`hrv_time` — mean NN, mean HR, SDNN, RMSSD, lnRMSSD, SDSD, pNN50.
* :func:`hrv_frequency` — LF and HF power (ms²) and LF/HF, by Welch on an evenly resampled,
  detrended series or by Lomb–Scargle on the beat times (``method``).
* :func:`dfa_alpha1` — short-term detrended-fluctuation exponent over 4–16 beats.
* :func:`hrv_metrics` — all of the above in one :class:`HrvMetrics` record.
* :func:`sliding_hrv_time` — time-domain metrics for every window slid by one beat, all at
  once from cumulative sums (the batch twin of :class:`processors.hrv_stream.HrvTracker`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal, TypeAlias

import numpy as np
from scipy import interpolate, signal

from processors import physiology as phys
from processors.rr_clean import (
    BoolArray,
    BreaksInput,
    FloatArray,
    IntArray,
    RrInput,
    as_breaks_array,
    as_rr_array,
    run_bounds,
    valid_diff_mask,
)

PsdMethod: TypeAlias = Literal["welch", "lomb"]
Detrend: TypeAlias = Literal["linear", "constant"]
PSD_METHODS: tuple[PsdMethod, ...] = ("welch", "lomb")

# Fewest successive differences for SDSD (ddof 1); hence ≥ 3 beats for time-domain metrics.
MIN_DIFFS = 2


@dataclass(frozen=True, slots=True)
class HrvTime:
    """Time-domain HRV of one series or window.

    ``n_beats``: NN intervals used; ``n_diffs``: successive differences used (differences
    across gaps excluded). ``mean_hr_bpm`` is 60000 / ``mean_nn_ms`` (not the mean of
    instantaneous rates). ``ln_rmssd`` is the natural log of RMSSD in ms. ``pnn50_pct`` is
    the share, in %, of successive differences whose magnitude exceeds 50 ms.
    """

    n_beats: int
    n_diffs: int
    mean_nn_ms: float
    mean_hr_bpm: float
    sdnn_ms: float
    rmssd_ms: float
    ln_rmssd: float
    sdsd_ms: float
    pnn50_pct: float


@dataclass(frozen=True, slots=True)
class HrvFrequency:
    """Frequency-domain HRV: band powers in ms², their ratio, and how they were estimated."""

    method: PsdMethod
    lf_ms2: float
    hf_ms2: float
    lf_hf: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class HrvMetrics(HrvTime):
    """Everything :func:`hrv_metrics` computes for one series: the :class:`HrvTime` fields,
    then LF, HF, LF/HF, the PSD method and DFA α1.

    Frequency-domain values and DFA α1 are ``None`` when the series is too short for them
    (no gap-free run of a Welch segment's length; fewer than 32 beats for α1).
    """

    lf_ms2: float | None
    hf_ms2: float | None
    lf_hf: float | None
    psd_method: PsdMethod
    dfa_alpha1: float | None


@dataclass(frozen=True, slots=True, eq=False)
class SlidingHrv:
    """Time-domain metrics for each full window, one row per window.

    ``start``/``stop`` are the half-open beat-index range of each window in the input
    series. Windows with fewer than 2 usable successive differences hold NaN.
    """

    start: IntArray
    stop: IntArray
    n_beats: IntArray
    n_diffs: IntArray
    mean_nn_ms: FloatArray
    sdnn_ms: FloatArray
    rmssd_ms: FloatArray
    sdsd_ms: FloatArray
    pnn50_pct: FloatArray


# --- time domain ------------------------------------------------------------------------------


def hrv_time(nn_ms: RrInput, breaks: BreaksInput = None, estimated: BreaksInput = None) -> HrvTime:
    """Time-domain HRV of an NN series (ms), never differencing across a gap.

    SDNN and SDSD use ddof = 1 (sample standard deviation). RMSSD is the root mean square
    of the successive differences; pNN50 = 100 × (number of |ΔNN| > 50 ms) / (number of
    successive differences), the denominator being the differences actually used.
    ``estimated`` (``CleanResult.estimated``) marks interpolated intervals: differences
    touching one are left out, since an interpolated value carries no beat-to-beat
    variation and would pull RMSSD down (the normal-to-normal definition, TASK_FORCE_1996).
    Raises ``ValueError`` with fewer than 2 usable successive differences.
    """
    nn = as_rr_array(nn_ms)
    brk = as_breaks_array(breaks, nn.size)
    est = as_breaks_array(estimated, nn.size)
    usable = valid_diff_mask(brk) & ~est[1:] & ~est[:-1]
    diffs = np.diff(nn)[usable] if nn.size > 1 else np.empty(0)
    if diffs.size < MIN_DIFFS:
        raise ValueError(
            f"time-domain HRV needs at least {MIN_DIFFS} successive differences inside gap-free "
            f"runs; got {diffs.size} from {nn.size} beats"
        )
    mean_nn = float(np.mean(nn))
    rmssd = float(np.sqrt(np.mean(diffs**2)))
    return HrvTime(
        n_beats=int(nn.size),
        n_diffs=int(diffs.size),
        mean_nn_ms=mean_nn,
        mean_hr_bpm=60_000.0 / mean_nn,
        sdnn_ms=float(np.std(nn, ddof=1)),
        rmssd_ms=rmssd,
        ln_rmssd=math.log(rmssd) if rmssd > 0 else -math.inf,
        sdsd_ms=float(np.std(diffs, ddof=1)),
        pnn50_pct=100.0
        * int(np.count_nonzero(np.abs(diffs) > phys.PNN50_THRESHOLD_MS))
        / diffs.size,
    )


CANCELLATION_SHARE = 1e-9
"""A window's sum of squared deviations below this share of the running sum of squares
is within rounding error of the running sums and is recomputed from its values."""


def sliding_hrv_time(
    nn_ms: RrInput,
    breaks: BreaksInput = None,
    *,
    window_s: float | None = phys.HRV_WINDOW_S,
    window_beats: int | None = None,
) -> SlidingHrv:
    """Time-domain HRV for every window slid by one beat, vectorised with cumulative sums.

    Give either ``window_beats`` (each window holds that many beats) or ``window_s``: the
    window ending at beat ``j`` holds the most recent beats whose NN intervals sum to at
    most ``window_s`` seconds, and counts once the recording has lasted ``window_s``
    (``sum(nn[:j+1]) >= window_s``). Durations are recorded beat time: gaps add none.
    One window per qualifying end beat; metrics are defined as in :func:`hrv_time`.
    """
    nn = as_rr_array(nn_ms)
    brk = as_breaks_array(breaks, nn.size)
    n = nn.size
    if window_beats is not None:
        if window_beats < 3:
            raise ValueError(f"window_beats must be ≥ 3, got {window_beats}")
        stop = np.arange(window_beats, n + 1, dtype=np.intp)
        start = stop - window_beats
    elif window_s is not None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        elapsed = np.concatenate(([0.0], np.cumsum(nn)))
        window_ms = 1000.0 * window_s
        stop = np.flatnonzero(elapsed[1:] >= window_ms).astype(np.intp) + 1
        start = np.searchsorted(elapsed, elapsed[stop] - window_ms, side="left").astype(np.intp)
    else:
        raise ValueError("give window_s or window_beats")

    # Centre before squaring so cumulative sums of squares keep their precision.
    centre = float(np.mean(nn)) if n else 0.0
    x = nn - centre
    c1 = np.concatenate(([0.0], np.cumsum(x)))
    c2 = np.concatenate(([0.0], np.cumsum(x * x)))
    # diff k (1..n-1) is nn[k] - nn[k-1]; it belongs to a window [start, stop) iff
    # start < k < stop. Index cumulative arrays by k so sums over (start, stop) are
    # cd[stop-1] - cd[start] with cd[k] = sum of diffs 1..k.
    d = np.zeros(n)
    valid = np.zeros(n, dtype=np.bool_)
    if n > 1:
        d[1:] = np.diff(nn)
        valid[1:] = valid_diff_mask(brk)
    d = np.where(valid, d, 0.0)
    cd1 = np.cumsum(d)
    cd2 = np.cumsum(d * d)
    cdn = np.cumsum(valid, dtype=np.intp)
    c50 = np.cumsum(valid & (np.abs(d) > phys.PNN50_THRESHOLD_MS), dtype=np.intp)

    last = stop - 1
    n_beats = stop - start
    m = cdn[last] - cdn[start]
    sum_x = c1[stop] - c1[start]
    sum_x2 = c2[stop] - c2[start]
    sum_d = cd1[last] - cd1[start]
    sum_d2 = cd2[last] - cd2[start]
    n50 = c50[last] - c50[start]

    with np.errstate(invalid="ignore", divide="ignore"):
        ok = m >= MIN_DIFFS
        mean_x = sum_x / n_beats
        resid_nn = sum_x2 - sum_x * mean_x
        resid_d = sum_d2 - sum_d * sum_d / m
        var_nn = np.maximum(resid_nn, 0.0) / (n_beats - 1)
        var_d = np.maximum(resid_d, 0.0) / (m - 1)
    # A near-constant window loses its few significant digits to the running sums'
    # rounding (and the square root magnifies that): recompute those few windows directly.
    for i in np.flatnonzero(ok & (resid_nn <= CANCELLATION_SHARE * c2[stop])):
        var_nn[i] = np.var(nn[start[i] : stop[i]], ddof=1)
    for i in np.flatnonzero(ok & (resid_d <= CANCELLATION_SHARE * cd2[last])):
        window_d = d[start[i] + 1 : stop[i]][valid[start[i] + 1 : stop[i]]]
        var_d[i] = np.var(window_d, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rmssd = np.where(ok, np.sqrt(sum_d2 / m), np.nan)
        return SlidingHrv(
            start=start,
            stop=stop,
            n_beats=n_beats,
            n_diffs=m,
            mean_nn_ms=np.where(ok, centre + mean_x, np.nan),
            sdnn_ms=np.where(ok, np.sqrt(var_nn), np.nan),
            rmssd_ms=rmssd,
            sdsd_ms=np.where(ok, np.sqrt(var_d), np.nan),
            pnn50_pct=np.where(ok, 100.0 * n50 / m, np.nan),
        )


# --- frequency domain -----------------------------------------------------------------------


def min_spectral_run_s(
    resample_hz: float = phys.RESAMPLE_HZ, segment_samples: int = phys.WELCH_SEGMENT_SAMPLES
) -> float:
    """Shortest gap-free run (s) that enters a spectrum: one Welch segment."""
    return segment_samples / resample_hz


def welch_psd(
    nn_ms: RrInput,
    breaks: BreaksInput = None,
    *,
    detrend: Detrend = "linear",
    resample_hz: float = phys.RESAMPLE_HZ,
    segment_samples: int = phys.WELCH_SEGMENT_SAMPLES,
    overlap: float = phys.WELCH_OVERLAP,
    nfft: int = phys.WELCH_NFFT,
) -> tuple[FloatArray, FloatArray]:
    """One-sided PSD of an NN series by Welch's method: (frequency Hz, density ms²/Hz).

    Each gap-free run lasting at least one segment is placed on its beat times (the time
    of beat ``i`` is the sum of intervals up to and including ``i``, from the run's first
    beat), resampled at ``resample_hz`` with a not-a-knot cubic spline, detrended
    (``"linear"``: least-squares line removed; ``"constant"``: mean removed), and cut into
    Hann-windowed segments of ``segment_samples`` overlapping by ``overlap``, each
    zero-padded to ``nfft`` points. The periodograms of all segments of all runs are
    averaged. Raises ``ValueError`` when no run is long enough.
    """
    nn = as_rr_array(nn_ms)
    brk = as_breaks_array(breaks, nn.size)
    step = segment_samples - round(overlap * segment_samples)
    total = np.zeros(nfft // 2 + 1)
    n_segments = 0
    freq = np.fft.rfftfreq(nfft, 1.0 / resample_hz)
    for start, stop in run_bounds(brk):
        run = nn[start:stop]
        if run.size < 4:
            continue
        t = np.cumsum(run) / 1000.0
        t -= t[0]
        grid = np.arange(0.0, t[-1], 1.0 / resample_hz)
        if grid.size < segment_samples:
            continue
        y = interpolate.CubicSpline(t, run)(grid)
        y = signal.detrend(y, type=detrend)
        f, p = signal.welch(
            y,
            fs=resample_hz,
            window="hann",
            nperseg=segment_samples,
            noverlap=segment_samples - step,
            nfft=nfft,
            detrend="constant",
            scaling="density",
        )
        k = 1 + (grid.size - segment_samples) // step
        total += k * p
        n_segments += k
        freq = f
    if n_segments == 0:
        raise ValueError(
            f"Welch spectrum needs a gap-free run of at least "
            f"{min_spectral_run_s(resample_hz, segment_samples):.0f} s of beats"
        )
    return freq.astype(np.float64), total / n_segments


def lomb_psd(
    nn_ms: RrInput,
    breaks: BreaksInput = None,
    *,
    detrend: Detrend = "linear",
    f_min_hz: float = phys.LF_BAND_HZ[0],
    f_max_hz: float = phys.HF_BAND_HZ[1],
    oversampling: int = phys.LOMB_OVERSAMPLING,
    max_frequencies: int = phys.LOMB_MAX_FREQUENCIES,
    min_run_s: float | None = None,
) -> tuple[FloatArray, FloatArray]:
    """One-sided Lomb–Scargle PSD on the beat times: (frequency Hz, density ms²/Hz).

    No resampling: each gap-free run's NN values are taken at their beat times, detrended
    as in :func:`welch_psd`, and the unnormalised periodogram P (scipy; A²N/4 for a sine of
    amplitude A over N beats) is scaled to a density by 2·P·(mean NN in s), whose integral
    over 0..Nyquist equals the variance (Parseval), so band powers are in ms² like Welch's.
    The grid runs from ``f_min_hz`` to ``f_max_hz`` in steps of 1 / (``oversampling`` ×
    longest run duration), coarsened to at most ``max_frequencies`` points. Runs are
    averaged weighted by duration; runs shorter than ``min_run_s`` (default: one Welch
    segment) are skipped.
    """
    nn = as_rr_array(nn_ms)
    brk = as_breaks_array(breaks, nn.size)
    min_s = min_spectral_run_s() if min_run_s is None else min_run_s
    runs = []
    for start, stop in run_bounds(brk):
        run = nn[start:stop]
        if run.size < 4:
            continue
        t = np.cumsum(run) / 1000.0
        t -= t[0]
        if t[-1] >= min_s:
            runs.append((t, run))
    if not runs:
        raise ValueError(f"Lomb–Scargle spectrum needs a gap-free run of at least {min_s:.0f} s")
    longest = max(t[-1] for t, _ in runs)
    df = max(1.0 / (oversampling * longest), (f_max_hz - f_min_hz) / max_frequencies)
    freq = np.arange(f_min_hz, f_max_hz + 0.5 * df, df)
    total = np.zeros(freq.size)
    weight = 0.0
    for t, run in runs:
        y = signal.detrend(run, type="constant") if detrend == "constant" else _detrend_on(t, run)
        p = signal.lombscargle(t, y, 2.0 * np.pi * freq)
        density = 2.0 * p * float(np.mean(run)) / 1000.0
        total += t[-1] * density
        weight += t[-1]
    return freq, total / weight


def hrv_frequency(
    nn_ms: RrInput,
    breaks: BreaksInput = None,
    *,
    method: PsdMethod = "welch",
    detrend: Detrend = "linear",
    lf_band_hz: tuple[float, float] = phys.LF_BAND_HZ,
    hf_band_hz: tuple[float, float] = phys.HF_BAND_HZ,
) -> HrvFrequency:
    """LF and HF power (ms²) and LF/HF of an NN series (ms).

    ``method="welch"`` (default): :func:`welch_psd` — 4 Hz cubic resampling, detrending,
    64-s Hann segments with 50% overlap. ``method="lomb"``: :func:`lomb_psd` on the beat
    times. Band power is the trapezoidal integral of the density over the bins with
    ``low <= f < high``. Raises ``ValueError`` when the series is too short.
    """
    if method == "welch":
        freq, psd = welch_psd(nn_ms, breaks, detrend=detrend)
    elif method == "lomb":
        freq, psd = lomb_psd(nn_ms, breaks, detrend=detrend)
    else:
        raise ValueError(f"unknown PSD method {method!r}; choose one of {PSD_METHODS}")
    lf = band_power(freq, psd, lf_band_hz)
    hf = band_power(freq, psd, hf_band_hz)
    nn = as_rr_array(nn_ms)
    return HrvFrequency(
        method=method,
        lf_ms2=lf,
        hf_ms2=hf,
        lf_hf=lf / hf if hf > 0 else math.inf,
        duration_s=float(np.sum(nn)) / 1000.0,
    )


def band_power(freq: FloatArray, psd: FloatArray, band_hz: tuple[float, float]) -> float:
    """Trapezoidal integral of ``psd`` over the bins with ``band[0] <= f < band[1]``."""
    mask = (freq >= band_hz[0]) & (freq < band_hz[1])
    return float(np.trapezoid(psd[mask], freq[mask]))


def _detrend_on(t: FloatArray, y: FloatArray) -> FloatArray:
    """Remove the least-squares line in time (beat times are uneven)."""
    slope, intercept = np.polyfit(t, y, 1)
    out: FloatArray = y - (slope * t + intercept)
    return out


# --- DFA ------------------------------------------------------------------------------------


def dfa_alpha1(
    nn_ms: RrInput,
    breaks: BreaksInput = None,
    *,
    scales: tuple[int, int] = phys.DFA_ALPHA1_SCALES,
    min_boxes: int = phys.DFA_MIN_BOXES,
) -> float:
    """Short-term DFA exponent α1 over box sizes ``scales[0]..scales[1]`` beats (inclusive).

    Peng et al. (1995): the profile (cumulative sum of NN minus its mean) is cut into
    non-overlapping boxes of n beats laid from the start of each gap-free run (boxes never
    span a gap); a least-squares line is removed in each box; F(n) is the root mean square
    of the residuals over all boxes; α1 is the least-squares slope of log F(n) on log n over
    every integer n in the range. Raises ``ValueError`` when a scale has fewer than
    ``min_boxes`` boxes.
    """
    nn = as_rr_array(nn_ms)
    brk = as_breaks_array(breaks, nn.size)
    profiles = [
        np.cumsum(nn[a:b] - np.mean(nn[a:b])) for a, b in run_bounds(brk) if b - a >= scales[0]
    ]
    sizes = np.arange(scales[0], scales[1] + 1)
    fluct = np.empty(sizes.size)
    for i, size in enumerate(sizes.tolist()):
        residual_vars = [_box_residual_variance(p, size) for p in profiles]
        pooled = np.concatenate(residual_vars) if residual_vars else np.empty(0)
        if pooled.size < min_boxes:
            raise ValueError(
                f"DFA α1 needs at least {min_boxes} boxes of {size} beats inside gap-free runs "
                f"(≥ {min_boxes * scales[1]} beats); got {pooled.size}"
            )
        fluct[i] = math.sqrt(float(np.mean(pooled)))
    slope = np.polyfit(np.log(sizes), np.log(fluct), 1)[0]
    return float(slope)


def _box_residual_variance(profile: FloatArray, size: int) -> FloatArray:
    """Per box: mean squared residual of the least-squares line (closed form, vectorised)."""
    n_boxes = profile.size // size
    if n_boxes == 0:
        return np.empty(0)
    boxes = profile[: n_boxes * size].reshape(n_boxes, size)
    k = np.arange(size, dtype=np.float64)
    k_c = k - k.mean()
    y_c = boxes - boxes.mean(axis=1, keepdims=True)
    slope = (y_c @ k_c) / float(k_c @ k_c)
    resid = y_c - slope[:, None] * k_c[None, :]
    out: FloatArray = np.mean(resid * resid, axis=1)
    return out


# --- everything at once ---------------------------------------------------------------------


def hrv_metrics(
    nn_ms: RrInput,
    breaks: BreaksInput = None,
    *,
    estimated: BreaksInput = None,
    psd_method: PsdMethod = "welch",
) -> HrvMetrics:
    """Time domain, LF/HF (``psd_method``) and DFA α1 of an NN series (ms) in one record.

    ``estimated``: interpolated intervals, left out of the successive differences only
    (see :func:`hrv_time`); spectra and α1 use the whole corrected timeline.

    Raises ``ValueError`` only when even the time domain cannot be computed; spectral
    values and α1 are ``None`` when the series is too short for them.
    """
    nn = as_rr_array(nn_ms)
    brk: BoolArray = as_breaks_array(breaks, nn.size)
    td = hrv_time(nn, brk, estimated)
    try:
        fd: HrvFrequency | None = hrv_frequency(nn, brk, method=psd_method)
    except ValueError:
        fd = None
    try:
        alpha1: float | None = dfa_alpha1(nn, brk)
    except ValueError:
        alpha1 = None
    return HrvMetrics(
        **asdict(td),
        lf_ms2=None if fd is None else fd.lf_ms2,
        hf_ms2=None if fd is None else fd.hf_ms2,
        lf_hf=None if fd is None else fd.lf_hf,
        psd_method=psd_method,
        dfa_alpha1=alpha1,
    )
