"""RR-interval cleaning: artefact and ectopic-beat correction, and the quality gate.

Two independent looks at a series of RR intervals (milliseconds):

* :func:`clean_rr` detects and corrects artefacts after Lipponen & Tarvainen (2019), the
  method Kubios uses: beats are classified as ectopic, long/short, missed or extra from
  the successive differences (dRR) and the deviation from an 11-beat median (mRR), each
  normalised by a time-varying threshold (5.2 × quartile deviation over 91 beats).
  Missed beats are split, extra beats merged, ectopic and long/short beats moved to the
  midpoint of their neighbours.
* :func:`quality_gate` applies a fixed rule to the *raw* series: the share of beats that
  deviate more than 20% from their local median. A reading over the limit (5%) is rejected
  with a reason rather than corrected into a number. The adaptive method cannot do this on
  its own: in a bigeminal rhythm (frequent premature beats, as in the Polar H10 recording
  in ``shared/data``) its thresholds adopt the alternation as normal and flag few beats.

Gaps. A series may carry gap markers: ``breaks[i]`` is True when beat ``i`` follows a gap
in the recording, so ``rr[i] - rr[i-1]`` is never used. Cleaning works on each run between
gaps separately, and intervals outside the plausible range
(:data:`~processors.physiology.RR_MIN_MS` .. :data:`~processors.physiology.RR_MAX_MS`) are
removed and turned into gaps, never interpolated over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from processors import physiology as phys

FloatArray: TypeAlias = npt.NDArray[np.float64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
IntArray: TypeAlias = npt.NDArray[np.intp]
RrInput: TypeAlias = Sequence[float] | npt.NDArray[np.floating]
BreaksInput: TypeAlias = Sequence[bool] | npt.NDArray[np.bool_] | None

# Beat classes in the per-beat label array (index into the input series).
NORMAL, ECTOPIC, LONGSHORT, MISSED, EXTRA, OUT_OF_RANGE = range(6)
_CLASS_NAMES = ("normal", "ectopic", "longshort", "missed", "extra", "out_of_range")

# Chunk of rows for windowed quantiles: bounds the temporary copy np.quantile makes.
_QUANTILE_CHUNK_ROWS = 8192


def as_rr_array(rr_ms: RrInput) -> FloatArray:
    """Return ``rr_ms`` as a 1-D float64 array, refusing non-finite or non-positive values."""
    rr = np.asarray(rr_ms, dtype=np.float64)
    if rr.ndim != 1:
        raise ValueError(f"RR intervals must be a 1-D series, got shape {rr.shape}")
    bad = ~np.isfinite(rr) | (rr <= 0.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"RR interval {i} is {rr[i]!r} ms: intervals must be finite and > 0")
    return rr


def as_breaks_array(breaks: BreaksInput, n: int) -> BoolArray:
    """Return gap markers as a bool array of length ``n`` (all False when ``breaks`` is None)."""
    if breaks is None:
        return np.zeros(n, dtype=np.bool_)
    out = np.asarray(breaks, dtype=np.bool_)
    if out.shape != (n,):
        raise ValueError(f"breaks has shape {out.shape}, expected ({n},) like the RR series")
    return out


def run_bounds(breaks: BoolArray) -> list[tuple[int, int]]:
    """Half-open ``(start, stop)`` index ranges of the gap-free runs of a series."""
    n = breaks.size
    if n == 0:
        return []
    starts = np.flatnonzero(breaks[1:]) + 1
    edges = [0, *starts.tolist(), n]
    return list(pairwise(edges))


def valid_diff_mask(breaks: BoolArray) -> BoolArray:
    """For ``np.diff(rr)``: True where the difference lies inside a run (not across a gap)."""
    return ~breaks[1:]


@dataclass(frozen=True, slots=True, eq=False)
class CleanResult:
    """Outcome of :func:`clean_rr`.

    ``nn_ms`` is the corrected series (ms) and ``breaks`` its gap markers (same length;
    True where a beat follows a gap). ``labels`` holds one class per *input* beat from the
    first detection pass (``NORMAL``, ``ECTOPIC``, ``LONGSHORT``, ``MISSED``, ``EXTRA``,
    ``OUT_OF_RANGE``); ``n_corrected`` counts corrections over all passes.
    """

    nn_ms: FloatArray
    breaks: BoolArray
    labels: npt.NDArray[np.int8]
    n_input: int
    n_corrected: int
    n_out_of_range: int
    passes: int

    @property
    def corrected_pct(self) -> float:
        """Corrected plus removed beats, in % of the input beats."""
        if self.n_input == 0:
            return 0.0
        return 100.0 * (self.n_corrected + self.n_out_of_range) / self.n_input

    def count(self, kind: str) -> int:
        """Beats of the first pass labelled ``kind`` ("ectopic", "missed", ...)."""
        return int(np.count_nonzero(self.labels == _CLASS_NAMES.index(kind)))


@dataclass(frozen=True, slots=True)
class QualityVerdict:
    """Outcome of :func:`quality_gate`: accepted, or rejected with a reason a person can act on."""

    accepted: bool
    reject_reason: str | None
    n_beats: int
    n_abnormal: int
    abnormal_pct: float


def clean_rr(
    rr_ms: RrInput,
    breaks: BreaksInput = None,
    *,
    alpha: float = phys.LIPPONEN_ALPHA,
    c1: float = phys.LIPPONEN_C1,
    c2: float = phys.LIPPONEN_C2,
    qd_window_beats: int = phys.LIPPONEN_QD_WINDOW_BEATS,
    median_beats: int = phys.LIPPONEN_MEDIAN_BEATS,
    max_passes: int = phys.LIPPONEN_MAX_PASSES,
    rr_min_ms: float = phys.RR_MIN_MS,
    rr_max_ms: float = phys.RR_MAX_MS,
) -> CleanResult:
    """Detect and correct artefacts and ectopic beats (Lipponen & Tarvainen 2019).

    ``rr_ms``: RR intervals in milliseconds. ``breaks``: optional gap markers, True at
    ``i`` when beat ``i`` follows a gap. Intervals outside ``rr_min_ms .. rr_max_ms`` are
    removed and the next beat marked as following a gap. Each gap-free run is then
    cleaned on its own; detection repeats on the corrected run while the number of
    artefacts falls (at most ``max_passes`` passes).

    Correction keeps the beat timeline: a missed beat splits its interval in two halves,
    an extra beat merges its interval with the next, an ectopic or long/short beat is
    moved to the midpoint of its neighbours (its interval and the next become their mean).
    """
    rr = as_rr_array(rr_ms)
    brk = as_breaks_array(breaks, rr.size)
    labels = np.zeros(rr.size, dtype=np.int8)

    in_range = (rr >= rr_min_ms) & (rr <= rr_max_ms)
    labels[~in_range] = OUT_OF_RANGE
    kept_idx = np.flatnonzero(in_range)
    kept_rr = rr[kept_idx]
    # A removed interval leaves a hole: the next kept beat follows a gap.
    kept_breaks = brk[kept_idx].copy()
    if kept_idx.size:
        kept_breaks[1:] |= np.diff(kept_idx) > 1
        kept_breaks[0] |= bool(kept_idx[0] > 0)

    params = _Params(alpha, c1, c2, qd_window_beats, median_beats)
    out_rr: list[FloatArray] = []
    out_breaks: list[BoolArray] = []
    n_corrected = 0
    max_pass_seen = 0
    for start, stop in run_bounds(kept_breaks):
        run = kept_rr[start:stop]
        first = _classify(run, params)
        labels[kept_idx[start:stop]] = first
        corrected, n_run, n_passes = _clean_run(run, first, params, max_passes)
        n_corrected += n_run
        max_pass_seen = max(max_pass_seen, n_passes)
        run_breaks = np.zeros(corrected.size, dtype=np.bool_)
        if corrected.size:
            run_breaks[0] = bool(kept_breaks[start])
        out_rr.append(corrected)
        out_breaks.append(run_breaks)

    nn = np.concatenate(out_rr) if out_rr else np.empty(0, dtype=np.float64)
    nn_breaks = np.concatenate(out_breaks) if out_breaks else np.empty(0, dtype=np.bool_)
    return CleanResult(
        nn_ms=nn,
        breaks=nn_breaks,
        labels=labels,
        n_input=int(rr.size),
        n_corrected=n_corrected,
        n_out_of_range=int(np.count_nonzero(~in_range)),
        passes=max_pass_seen,
    )


def abnormal_beats(
    rr_ms: RrInput,
    breaks: BreaksInput = None,
    *,
    max_deviation: float = phys.QUALITY_DEVIATION_SHARE,
    median_beats: int = phys.QUALITY_MEDIAN_BEATS,
) -> BoolArray:
    """True for each beat deviating more than ``max_deviation`` (a share, 0.20 = 20%) from
    the median of the centred ``median_beats`` window of its own gap-free run.
    """
    rr = as_rr_array(rr_ms)
    brk = as_breaks_array(breaks, rr.size)
    out = np.zeros(rr.size, dtype=np.bool_)
    for start, stop in run_bounds(brk):
        run = rr[start:stop]
        med = _centred_quantiles(run, median_beats, (0.5,))[0]
        out[start:stop] = np.abs(run - med) > max_deviation * med
    return out


def quality_gate(
    rr_ms: RrInput,
    breaks: BreaksInput = None,
    *,
    max_deviation: float = phys.QUALITY_DEVIATION_SHARE,
    max_abnormal_share: float = phys.QUALITY_MAX_ABNORMAL_SHARE,
    median_beats: int = phys.QUALITY_MEDIAN_BEATS,
) -> QualityVerdict:
    """Accept or reject a raw RR series (ms) by a fixed rule.

    Rejected when more than ``max_abnormal_share`` of the beats (0.05 = 5%) deviate more
    than ``max_deviation`` (0.20 = 20%) from their local median (centred window of
    ``median_beats``, within the beat's gap-free run). Apply it to the series *before*
    correction: it judges the recording, not what correction made of it.
    """
    rr = as_rr_array(rr_ms)
    if rr.size == 0:
        return QualityVerdict(False, "no RR intervals to judge", 0, 0, 0.0)
    abnormal = abnormal_beats(rr, breaks, max_deviation=max_deviation, median_beats=median_beats)
    n_abn = int(np.count_nonzero(abnormal))
    pct = 100.0 * n_abn / rr.size
    if n_abn > max_abnormal_share * rr.size:
        reason = (
            f"{pct:.1f}% of beats ({n_abn} of {rr.size}) deviate more than "
            f"{100 * max_deviation:.0f}% from the local median (limit "
            f"{100 * max_abnormal_share:.0f}%): frequent ectopic beats or a noisy strap signal; "
            "take the reading again lying still with a moistened strap, and see a doctor if "
            "irregular beats persist"
        )
        return QualityVerdict(False, reason, int(rr.size), n_abn, pct)
    return QualityVerdict(True, None, int(rr.size), n_abn, pct)


# --- Lipponen & Tarvainen (2019) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Params:
    alpha: float
    c1: float
    c2: float
    qd_window: int
    median_window: int


def _clean_run(
    run: FloatArray, first_labels: npt.NDArray[np.int8], params: _Params, max_passes: int
) -> tuple[FloatArray, int, int]:
    """Correct one gap-free run, repeating detection while artefacts decrease."""
    labels = first_labels
    n_found = int(np.count_nonzero(labels))
    if n_found == 0:
        return run.copy(), 0, 1
    total = n_found
    current = _correct(run, labels)
    passes = 1
    while passes < max_passes:
        labels = _classify(current, params)
        n_new = int(np.count_nonzero(labels))
        if n_new == 0 or n_new >= n_found:
            break
        current = _correct(current, labels)
        total += n_new
        n_found = n_new
        passes += 1
    return current, total, passes


def _classify(rr: FloatArray, p: _Params) -> npt.NDArray[np.int8]:
    """Label each beat of one gap-free run (Lipponen & Tarvainen 2019, Figure 1)."""
    n = rr.size
    labels = np.zeros(n, dtype=np.int8)
    if n < 4:
        return labels

    # dRR_i = RR_i − RR_{i−1}; the first beat has no predecessor in its run and gives no
    # evidence (0), rather than a difference across a gap.
    drr = np.zeros(n)
    drr[1:] = np.diff(rr)
    th1 = _quartile_deviation_threshold(drr, p.alpha, p.qd_window)
    drr_n = np.divide(drr, th1, out=np.zeros(n), where=th1 > 0)

    # Subspaces S12 and S22 from the neighbours' normalised dRR (reflected at the edges).
    pad = np.pad(drr_n, 2, mode="reflect")
    prev1, next1, next2 = pad[1 : n + 1], pad[3 : n + 3], pad[4 : n + 4]
    s12 = np.where(
        drr_n > 0, np.maximum(prev1, next1), np.where(drr_n < 0, np.minimum(prev1, next1), 0.0)
    )
    s22 = np.where(drr_n >= 0, np.minimum(next1, next2), np.maximum(next1, next2))

    med = _centred_quantiles(rr, p.median_window, (0.5,))[0]
    mrr = rr - med
    # Short beats count double: premature beats are the commoner artefact.
    mrr = np.where(mrr < 0, 2.0 * mrr, mrr)
    th2 = _quartile_deviation_threshold(mrr, p.alpha, p.qd_window)
    mrr_n = np.divide(mrr, th2, out=np.zeros(n), where=th2 > 0)

    i_next = 0
    for i in np.flatnonzero(np.abs(drr_n) > 1.0).tolist():
        if i < i_next or i >= n - 2:
            continue
        d = drr_n[i]
        if (d > 1 and s12[i] < -p.c1 * d - p.c2) or (d < -1 and s12[i] > -p.c1 * d + p.c2):
            labels[i] = ECTOPIC
            i_next = i + 1
            continue
        candidates = [i]
        if abs(drr_n[i + 1]) < abs(drr_n[i + 2]):
            candidates.append(i + 1)
        for j in candidates:
            long_beat = drr_n[j] > 1 and s22[j] < -1
            short_beat = drr_n[j] < -1 and s22[j] > 1
            off_median = abs(mrr_n[j]) > 3
            if not (long_beat or short_beat or off_median):
                continue
            missed = abs(rr[j] / 2 - med[j]) < th2[j]
            extra = j + 1 < n and abs(rr[j] + rr[j + 1] - med[j]) < th2[j]
            if short_beat and extra:
                labels[j] = EXTRA
            elif long_beat and missed:
                labels[j] = MISSED
            else:
                labels[j] = LONGSHORT
        i_next = i + len(candidates)
    return labels


def _correct(rr: FloatArray, labels: npt.NDArray[np.int8]) -> FloatArray:
    """Apply one pass of corrections to a run on its beat timeline, then re-difference.

    Order as the reference implementation (NeuroKit2 ``signal_fixpeaks``): extra beats
    deleted, missed beats inserted, then ectopic and then long/short beats each moved to
    the midpoint of their (already corrected) neighbours. Beat ``i`` ends at peak ``i + 1``;
    the run's first and last peaks never move, so its duration is kept.
    """
    peaks = np.concatenate(([0.0], np.cumsum(rr)))
    idx = {k: np.flatnonzero(labels == k) + 1 for k in (EXTRA, MISSED, ECTOPIC, LONGSHORT)}

    extra = idx[EXTRA][idx[EXTRA] < peaks.size - 1]
    if extra.size:
        peaks = np.delete(peaks, extra)
        for k in (MISSED, ECTOPIC, LONGSHORT):
            idx[k] = np.unique(idx[k] - np.searchsorted(extra, idx[k], side="left"))

    missed = idx[MISSED][idx[MISSED] < peaks.size]
    if missed.size:
        peaks = np.insert(peaks, missed, 0.5 * (peaks[missed - 1] + peaks[missed]))
        for k in (ECTOPIC, LONGSHORT):
            idx[k] = np.unique(idx[k] + np.searchsorted(missed, idx[k], side="left"))

    for k in (ECTOPIC, LONGSHORT):
        moved = idx[k][idx[k] < peaks.size - 1]
        if moved.size:
            midpoints = 0.5 * (peaks[moved - 1] + peaks[moved + 1])
            peaks = peaks.copy()
            peaks[moved] = midpoints
            peaks.sort(kind="stable")
    out: FloatArray = np.diff(peaks)
    return out


def _quartile_deviation_threshold(x: FloatArray, alpha: float, window: int) -> FloatArray:
    q1, q3 = _centred_quantiles(np.abs(x), window, (0.25, 0.75))
    return alpha * (q3 - q1) / 2.0


def _centred_quantiles(x: FloatArray, window: int, qs: tuple[float, ...]) -> tuple[FloatArray, ...]:
    """Quantiles over a centred window of ``window`` samples, truncated at the edges.

    Linear interpolation between order statistics (numpy's default, as pandas' rolling
    quantile), so edges use the samples that exist rather than padding.
    """
    n = x.size
    half = window // 2
    out = [np.empty(n) for _ in qs]
    if n == 0:
        return tuple(out)
    if n > 2 * half:
        view = np.lib.stride_tricks.sliding_window_view(x, 2 * half + 1)
        for lo in range(0, view.shape[0], _QUANTILE_CHUNK_ROWS):
            block = np.quantile(view[lo : lo + _QUANTILE_CHUNK_ROWS], qs, axis=1)
            for k in range(len(qs)):
                out[k][half + lo : half + lo + block.shape[1]] = block[k]
        edges = [*range(half), *range(n - half, n)]
    else:
        edges = list(range(n))
    for i in edges:
        seg = x[max(0, i - half) : min(n, i + half + 1)]
        vals = np.quantile(seg, qs)
        for k in range(len(qs)):
            out[k][i] = vals[k]
    return tuple(out)
