"""RR-interval cleaning: the quality gate, and artefact and ectopic-beat correction.

Two independent looks at a series of RR intervals (milliseconds):

* :func:`quality_gate` judges the *raw* series by a fixed rule: each beat is compared with
  the mean of its two neighbours, relative to the median of its 11-beat neighbourhood
  (:func:`neighbour_deviation`), and the reading is rejected when more than 10% of its
  beats deviate more than 20%. Why this rule: a resting athlete breathing slowly swings
  200–450 ms from breath to breath (respiratory sinus arrhythmia), so a beat may lie far
  from its local *median* while lying on the smooth line through its neighbours; a
  premature beat, its compensatory pause, a missed or an extra detection never do. The
  older rule (share of beats > 20% off the local median) rejected a third of such
  athletes; the adaptive Lipponen–Tarvainen flags cannot gate either, since in a bigeminal
  rhythm (the Polar H10 recording) their thresholds adopt the alternation as normal. The
  figures behind the limits are in ``processors/physiology.py`` and
  ``bench/validate_physiology.py`` measures them.
* :func:`clean_rr` detects artefacts after Lipponen & Tarvainen (2019), the method Kubios
  uses (ectopic, long/short, missed, extra, from the successive differences dRR and the
  deviation from an 11-beat median, each against a time-varying threshold of 5.2 ×
  quartile deviation over 91 beats), and corrects them as Kubios describes: missed beats
  are split, extra beats merged, and ectopic and long/short intervals *replaced by
  interpolation* (cubic spline over the beat times) of the intervals around them. A
  premature beat and its compensatory pause are one event: both intervals are
  interpolated. The adaptive thresholds shrink on a quiet, coarsely sampled series until
  ordinary sinus beats cross them, so a flagged beat is only treated as an artefact when it
  also lies at least 15% off the mean of its neighbours (genuine sinus beats are left as
  they are); a beat the adaptive thresholds missed is corrected when it lies more than 30%
  off.

Gaps. A series may carry gap markers: ``breaks[i]`` is True when beat ``i`` follows a gap
in the recording, so ``rr[i] - rr[i-1]`` is never used. Gate and cleaning work on each run
between gaps separately, and intervals outside the plausible range
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
from scipy import interpolate

from processors import physiology as phys

FloatArray: TypeAlias = npt.NDArray[np.float64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
IntArray: TypeAlias = npt.NDArray[np.intp]
RrInput: TypeAlias = Sequence[float] | npt.NDArray[np.floating]
BreaksInput: TypeAlias = Sequence[bool] | npt.NDArray[np.bool_] | None

# Beat classes in the per-beat label array (index into the input series).
NORMAL, ECTOPIC, LONGSHORT, MISSED, EXTRA, OUT_OF_RANGE = range(6)
_CLASS_NAMES = ("normal", "ectopic", "longshort", "missed", "extra", "out_of_range")

# A block of artefacts holds a whole number of sinus beats (in units of the expected
# interval). Within _WHOLE_CLEAR of one the count is clear; beyond it a neighbour may belong
# to the block, and is taken in when that brings the block within _WHOLE_TOLERANCE.
_WHOLE_TOLERANCE = 0.25
_WHOLE_CLEAR = 0.1
# A block whose length is within this share of its interpolated sinus beats kept the sinus
# timeline (compensatory pause, missed or extra detection) and is scaled to it exactly.
_TIMELINE_KEPT = 0.08
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

    ``nn_ms`` is the corrected series (ms), ``breaks`` its gap markers (same length;
    True where a beat follows a gap) and ``estimated`` marks its intervals that correction
    interpolated (values, not measurements: pass it to :func:`processors.hrv.hrv_time` so
    that RMSSD, SDSD and pNN50 use measured successive differences only). ``labels`` holds
    one class per *input* beat from the first Lipponen–Tarvainen detection pass, as
    published (``NORMAL``, ``ECTOPIC``, ``LONGSHORT``, ``MISSED``, ``EXTRA``,
    ``OUT_OF_RANGE``); ``artefacts`` marks the input
    beats of that pass that were treated as artefacts (labelled, and far enough from their
    neighbours to be no sinus beat; for an ectopic event both the premature interval and
    its pause). ``n_corrected`` counts corrected intervals over all passes.
    """

    nn_ms: FloatArray
    breaks: BoolArray
    estimated: BoolArray
    labels: npt.NDArray[np.int8]
    artefacts: BoolArray
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
        """Beats of the first pass labelled ``kind`` ("ectopic", "missed", ...) and treated
        as artefacts."""
        return int(np.count_nonzero((self.labels == _CLASS_NAMES.index(kind)) & self.artefacts))


@dataclass(frozen=True, slots=True)
class QualityVerdict:
    """Outcome of :func:`quality_gate`: accepted, or rejected with a reason a person can act on.

    ``n_abnormal`` beats of ``n_beats`` deviate more than the gate's share from the mean of
    their neighbours; ``abnormal_pct`` is that in %.
    """

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
    min_deviation: float = phys.CORRECTION_MIN_DEVIATION,
    unlabelled_deviation: float = phys.CORRECTION_UNLABELLED_DEVIATION,
    max_passes: int = phys.LIPPONEN_MAX_PASSES,
    rr_min_ms: float = phys.RR_MIN_MS,
    rr_max_ms: float = phys.RR_MAX_MS,
) -> CleanResult:
    """Detect (Lipponen & Tarvainen 2019) and correct (Kubios) artefacts and ectopic beats.

    ``rr_ms``: RR intervals in milliseconds. ``breaks``: optional gap markers, True at
    ``i`` when beat ``i`` follows a gap. Intervals outside ``rr_min_ms .. rr_max_ms`` are
    removed and the next beat marked as following a gap. Each gap-free run is then
    cleaned on its own; detection repeats on the corrected run while the number of
    artefacts falls (at most ``max_passes`` passes).

    A labelled beat is an artefact only when it deviates at least ``min_deviation`` (a
    share of the local median, 0.15 = 15%) from the mean of its neighbours; an unlabelled
    beat is one when it deviates more than ``unlabelled_deviation`` (0.30). Correction: a
    missed beat splits its interval in two halves, an extra beat merges its interval with
    the next, and ectopic and long/short intervals are replaced by a cubic spline through
    the uncorrected intervals around them (against beat time). An ectopic label falls on
    the second interval of a short–long (or long–short) pair, and both are replaced.
    Each pass corrects the previous pass's output, so an estimate lies near the intervals
    that pass left intact (within 8% of their range, or a merge within 25% of one sinus
    interval: :func:`_correct`), which may themselves be estimates; every interval not
    marked estimated is an input interval, unchanged and in its order.
    """
    rr = as_rr_array(rr_ms)
    brk = as_breaks_array(breaks, rr.size)
    labels = np.zeros(rr.size, dtype=np.int8)
    artefacts = np.zeros(rr.size, dtype=np.bool_)

    in_range = (rr >= rr_min_ms) & (rr <= rr_max_ms)
    labels[~in_range] = OUT_OF_RANGE
    kept_idx = np.flatnonzero(in_range)
    kept_rr = rr[kept_idx]
    # A removed interval leaves a hole: the next kept beat follows a gap.
    kept_breaks = brk[kept_idx].copy()
    if kept_idx.size:
        kept_breaks[1:] |= np.diff(kept_idx) > 1
        kept_breaks[0] |= bool(kept_idx[0] > 0)

    params = _Params(
        alpha,
        c1,
        c2,
        qd_window_beats,
        median_beats,
        min_deviation,
        phys.QUALITY_NEIGHBOUR_DEVIATION,
    )
    out_rr: list[FloatArray] = []
    out_breaks: list[BoolArray] = []
    out_estimated: list[BoolArray] = []
    n_corrected = 0
    max_pass_seen = 0
    for start, stop in run_bounds(kept_breaks):
        run = kept_rr[start:stop]
        first = _classify(run, params)
        labels[kept_idx[start:stop]] = first
        first_artefacts = _artefact_mask(run, first, params)
        artefacts[kept_idx[start:stop]] = first_artefacts
        corrected, estimated, n_run, n_passes = _clean_run(
            run, first, first_artefacts, params, max_passes
        )
        out_estimated.append(estimated)
        n_corrected += n_run
        max_pass_seen = max(max_pass_seen, n_passes)
        run_breaks = np.zeros(corrected.size, dtype=np.bool_)
        if corrected.size:
            run_breaks[0] = bool(kept_breaks[start])
        out_rr.append(corrected)
        out_breaks.append(run_breaks)

    nn = np.concatenate(out_rr) if out_rr else np.empty(0, dtype=np.float64)
    nn_breaks = np.concatenate(out_breaks) if out_breaks else np.empty(0, dtype=np.bool_)
    nn_estimated = np.concatenate(out_estimated) if out_estimated else np.empty(0, dtype=np.bool_)
    return CleanResult(
        nn_ms=nn,
        breaks=nn_breaks,
        estimated=nn_estimated,
        labels=labels,
        artefacts=artefacts,
        n_input=int(rr.size),
        n_corrected=n_corrected,
        n_out_of_range=int(np.count_nonzero(~in_range)),
        passes=max_pass_seen,
    )


def neighbour_deviation(
    rr_ms: RrInput,
    breaks: BreaksInput = None,
    *,
    median_beats: int = phys.QUALITY_MEDIAN_BEATS,
) -> FloatArray:
    """How far each beat lies from its neighbours, as a share of its local median.

    ``|RR_i − (RR_{i−1} + RR_{i+1}) / 2| / median_i``, with ``median_i`` the median of the
    centred ``median_beats`` window, all within the beat's gap-free run (ms in, unitless
    out). The first and last beat of a run have one neighbour and are compared with it.
    Slow breathing moves RR smoothly from beat to beat, so this stays small (< 20%) for
    sinus rhythm at any RSA amplitude; a premature beat, its pause, a missed or an extra
    detection stand out.
    """
    rr = as_rr_array(rr_ms)
    brk = as_breaks_array(breaks, rr.size)
    out = np.zeros(rr.size)
    for start, stop in run_bounds(brk):
        run = rr[start:stop]
        out[start:stop] = _run_neighbour_deviation(run, _local_median(run, median_beats))
    return out


def abnormal_beats(
    rr_ms: RrInput,
    breaks: BreaksInput = None,
    *,
    max_deviation: float = phys.QUALITY_NEIGHBOUR_DEVIATION,
    median_beats: int = phys.QUALITY_MEDIAN_BEATS,
) -> BoolArray:
    """True for each beat whose :func:`neighbour_deviation` exceeds ``max_deviation``
    (a share, 0.20 = 20%)."""
    return neighbour_deviation(rr_ms, breaks, median_beats=median_beats) > max_deviation


def quality_gate(
    rr_ms: RrInput,
    breaks: BreaksInput = None,
    *,
    max_deviation: float = phys.QUALITY_NEIGHBOUR_DEVIATION,
    max_abnormal_share: float = phys.QUALITY_MAX_ABNORMAL_SHARE,
    median_beats: int = phys.QUALITY_MEDIAN_BEATS,
) -> QualityVerdict:
    """Accept or reject a raw RR series (ms) by a fixed rule.

    Rejected when more than ``max_abnormal_share`` of the beats (0.10 = 10%) deviate more
    than ``max_deviation`` (0.20 = 20% of the local median) from the mean of their two
    neighbours (:func:`neighbour_deviation`). One premature beat with its pause marks 2–4
    beats (itself, its pause, and neighbours it pulls off their line), so the default
    rejects a reading from about 3–5% ectopic beats on (always from 10%). Apply it to
    the series *before* correction: it judges the recording, not what correction made of it.
    """
    rr = as_rr_array(rr_ms)
    abnormal = abnormal_beats(rr, breaks, max_deviation=max_deviation, median_beats=median_beats)
    return gate_verdict(
        int(np.count_nonzero(abnormal)),
        int(rr.size),
        max_deviation=max_deviation,
        max_abnormal_share=max_abnormal_share,
    )


def gate_verdict(
    n_abnormal: int,
    n_beats: int,
    *,
    max_deviation: float = phys.QUALITY_NEIGHBOUR_DEVIATION,
    max_abnormal_share: float = phys.QUALITY_MAX_ABNORMAL_SHARE,
) -> QualityVerdict:
    """The gate's verdict on ``n_abnormal`` abnormal beats of ``n_beats`` judged (batch and
    live windows word their reasons the same way)."""
    if n_beats == 0:
        return QualityVerdict(False, "no RR intervals to judge", 0, 0, 0.0)
    pct = 100.0 * n_abnormal / n_beats
    if n_abnormal > max_abnormal_share * n_beats:
        reason = (
            f"{pct:.1f}% of beats ({n_abnormal} of {n_beats}) deviate more than "
            f"{100 * max_deviation:.0f}% from their neighbours (limit "
            f"{100 * max_abnormal_share:.0f}%): frequent ectopic beats or a noisy strap signal; "
            "take the reading again lying still with a moistened strap, and see a doctor if "
            "irregular beats persist"
        )
        return QualityVerdict(False, reason, n_beats, n_abnormal, pct)
    return QualityVerdict(True, None, n_beats, n_abnormal, pct)


def beat_deviation(segment: Sequence[float], i: int) -> float:
    """:func:`neighbour_deviation` of ``segment[i]`` alone, in plain Python (live judging).

    ``segment`` is the beat's gap-free run cut to its centred median window (truncated where
    the run starts or ends): its median is the local median and ``segment[i]``'s neighbours
    in it are its neighbours in the run.
    """
    value = segment[i]
    neighbours = [segment[k] for k in (i - 1, i + 1) if 0 <= k < len(segment)]
    if not neighbours:
        return 0.0
    ordered = sorted(segment)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
    return abs(value - sum(neighbours) / len(neighbours)) / median


def _local_median(run: FloatArray, median_beats: int) -> FloatArray:
    """Median of each beat's centred ``median_beats`` window within its run."""
    return _centred_quantiles(run, median_beats, (0.5,))[0]


def _run_neighbour_deviation(run: FloatArray, med: FloatArray) -> FloatArray:
    """|RR_i − mean of its neighbours| / ``med`` (the run's :func:`_local_median`)."""
    n = run.size
    dev = np.zeros(n)
    if n < 2:
        return dev
    dev[1:-1] = np.abs(run[1:-1] - 0.5 * (run[:-2] + run[2:]))
    dev[0] = abs(run[0] - run[1])
    dev[-1] = abs(run[-1] - run[-2])
    out: FloatArray = dev / med
    return out


# --- Lipponen & Tarvainen (2019) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Params:
    alpha: float
    c1: float
    c2: float
    qd_window: int
    median_window: int
    min_deviation: float
    unlabelled_deviation: float


def _clean_run(
    run: FloatArray,
    first_labels: npt.NDArray[np.int8],
    first_artefacts: BoolArray,
    params: _Params,
    max_passes: int,
) -> tuple[FloatArray, BoolArray, int, int]:
    """Correct one gap-free run, repeating detection while artefacts decrease.

    Returns the corrected run, its mask of interpolated intervals, the number of corrected
    intervals and the number of passes.
    """
    labels, artefacts = first_labels, first_artefacts
    n_found = int(np.count_nonzero(artefacts))
    if n_found == 0:
        return run.copy(), np.zeros(run.size, dtype=np.bool_), 0, 1
    total = n_found
    current, estimated = _correct(run, artefacts, np.zeros(run.size, dtype=np.bool_))
    passes = 1
    while passes < max_passes:
        labels = _classify(current, params)
        artefacts = _artefact_mask(current, labels, params)
        n_new = int(np.count_nonzero(artefacts))
        if n_new == 0 or n_new >= n_found:
            break
        current, estimated = _correct(current, artefacts, estimated)
        total += n_new
        n_found = n_new
        passes += 1
    return current, estimated, total, passes


def _artefact_mask(rr: FloatArray, labels: npt.NDArray[np.int8], p: _Params) -> BoolArray:
    """The beats to correct in one run.

    A label stands only when its beat also lies ``min_deviation`` or more off the mean of
    its neighbours: on a quiet series the adaptive thresholds shrink until ordinary sinus
    beats cross them, and with 300–450 ms of RSA a long sinus beat passes for a missed one
    (half of it is near the median). An extra label stands when either of the two intervals
    it merges lies that far off (the first half of a split beat can sit on the line through
    its neighbours), and then both are corrected. An ectopic label sits on the second
    interval of a short–long (long–short) pair, so the first joins it. Beats off their
    neighbours by more than ``unlabelled_deviation`` are added: with large RSA the adaptive
    thresholds grow until a premature beat or an extra detection slips under them.
    """
    med = _local_median(rr, p.median_window)
    deviation = _run_neighbour_deviation(rr, med)
    far = deviation >= p.min_deviation
    far_next = np.zeros_like(far)
    far_next[:-1] = far[1:]
    is_extra = labels == EXTRA
    mask: BoolArray = ((labels != NORMAL) & ~is_extra & far) | (is_extra & (far | far_next))
    ectopic = np.flatnonzero(mask & (labels == ECTOPIC))
    mask[ectopic[ectopic > 0] - 1] = True
    # An extra label says the interval and the next one together make one sinus interval.
    extra = np.flatnonzero(mask & is_extra)
    mask[extra[extra < rr.size - 1] + 1] = True
    mask |= _premature_runs(rr, med)
    # A beat beside an artefact looks abnormal through it; the next pass judges it again.
    beside = np.zeros_like(mask)
    beside[1:] |= mask[:-1]
    beside[:-1] |= mask[1:]
    mask |= (deviation > p.unlabelled_deviation) & ~beside
    return mask


def _premature_runs(rr: FloatArray, med: FloatArray) -> BoolArray:
    """Runs of 1–4 premature beats: an abrupt drop, beats all well below the rhythm around
    them, an abrupt rise back.

    Inside a run of premature atrial beats each beat sits on the line through its
    neighbours (they are all short), so neither the adaptive thresholds nor the
    neighbour deviation see it. Breathing moves RR smoothly; a step of
    :data:`~processors.physiology.PREMATURE_RUN_STEP` of the local median down, then up
    again within :data:`~processors.physiology.PREMATURE_RUN_MAX_BEATS`, is no sinus rhythm.
    """
    n = rr.size
    mask = np.zeros(n, dtype=np.bool_)
    if n < 3:
        return mask
    step = np.zeros(n)
    step[1:] = np.diff(rr) / med[1:]
    limit = phys.PREMATURE_RUN_STEP
    for start in np.flatnonzero(step < -limit).tolist():
        for stop in range(start + 1, min(start + phys.PREMATURE_RUN_MAX_BEATS, n - 1) + 1):
            if step[stop] > limit:
                around = 0.5 * (rr[start - 1] + rr[stop])
                if np.all(rr[start:stop] < (1.0 - limit) * around):
                    mask[start:stop] = True
                break
    return mask


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


def _correct(
    rr: FloatArray, artefacts: BoolArray, estimated: BoolArray
) -> tuple[FloatArray, BoolArray]:
    """Replace each block of consecutive artefact intervals by interpolated sinus intervals.

    A block lasts ``T`` ms between two intact beats; the sinus intervals expected there are
    about ``E`` ms (the mean of the intact intervals on either side), so the block held
    ``k = round(T / E)`` sinus beats: a premature beat and its compensatory pause (k = 2),
    an extra detection (the two halves of one interval, k = 1), a missed beat (k = 2). The
    block becomes ``k`` intervals read off a cubic spline through the intact intervals
    (against beat time) and scaled to last ``T``, so the beat timeline is kept (Kubios
    interpolates flagged intervals; missed and extra beats are inserted and removed). When
    ``T / E`` is far from a whole number the block is widened by one intact neighbour if that
    makes it whole (an artefact whose partner passed detection). A lone interval of k = 1
    (long or short beat) is replaced by the spline's value; several intervals of k = 1 (an
    extra detection) are merged into one, their sum, marked estimated all the same.

    What a pass writes, then, with ``lo .. hi`` the range of the intervals it leaves
    intact: a merged interval is its block's sum, within ``_WHOLE_TOLERANCE`` (25%) of one
    expected sinus interval, so within 0.75·lo .. 1.25·hi; every other estimate is read off
    the interpolation (clipped to ``lo .. hi``) and, when its block keeps its timeline,
    scaled by at most ``_TIMELINE_KEPT`` (8%) so that the block lasts exactly its measured
    duration: within 0.92·lo .. 1.08·hi. A later pass stands on the earlier passes'
    estimates as intact intervals, so the bound holds against the series the pass was
    given, not the raw input. In 344, 972, 1096, 478, 681 ms the first pass merges 344 + 972
    into 1316 and 478 + 681 into 1159; the second finds 1316 still off the rhythm and
    takes it with the 1096 as one 2412 ms block of two beats, 1159 each off the line,
    scaled to 1206 each: longer than any measured interval, the block's duration kept.

    ``estimated`` marks intervals earlier passes interpolated; the returned mask marks the
    output's (kept marks, plus every interpolated value).
    """
    n = rr.size
    if not artefacts.any() or np.count_nonzero(~artefacts) < 2:
        return rr.copy(), estimated.copy()
    # Widen every block first, so a widened-in interval never serves as an intact one.
    blocks: list[tuple[int, int]] = []
    lo = 0
    for a, b in _blocks(artefacts):
        blocks.append(_widen(rr, artefacts, a, b, lo))
        lo = blocks[-1][1]
    artefacts = artefacts.copy()
    for a, b in blocks:
        artefacts[a:b] = True
    good = ~artefacts
    if np.count_nonzero(good) < 2:
        return rr.copy(), estimated.copy()
    ends = np.cumsum(rr)
    good_t, good_v = ends[good], rr[good]
    spline = interpolate.CubicSpline(good_t, good_v) if good_t.size >= 4 else None

    def at(t: FloatArray) -> FloatArray:
        inside = (t > good_t[0]) & (t < good_t[-1])
        out = np.interp(t, good_t, good_v)
        if spline is not None and inside.any():
            out[inside] = spline(t[inside])
        # A spline through an irregular run can overshoot; no estimate leaves the range of
        # the measured intervals it stands among.
        clipped: FloatArray = np.clip(out, good_v.min(), good_v.max())
        return clipped

    pieces: list[FloatArray] = []
    marks: list[BoolArray] = []
    pos = 0
    for a, b in blocks:
        pieces.append(rr[pos:a])
        marks.append(estimated[pos:a])
        start = float(ends[a - 1]) if a > 0 else 0.0
        total = float(ends[b - 1]) - start
        expected = _expected(rr, artefacts, a, b)
        whole = _misfit(total, expected) <= _WHOLE_TOLERANCE
        # A block that holds no whole number of sinus beats (a premature beat at the end of
        # a run, before a gap) keeps its beat count.
        k = max(1, round(total / expected)) if whole else b - a
        if k == 1 and b - a > 1:
            # One sinus beat split in several intervals (an extra detection): merged, it is
            # the interval between two real beats, but marked estimated all the same: an
            # interpolated PVC merges the same way into a sinus interval lengthened by its
            # conduction delay, and nothing here tells the two apart.
            pieces.append(np.array([total]))
            marks.append(np.ones(1, dtype=np.bool_))
            pos = b
            continue
        times = start + total * (np.arange(k) + 1.0) / k
        values = at(times)
        if b - a > 1 and abs(total / float(values.sum()) - 1.0) <= _TIMELINE_KEPT:
            # The block lasts its k sinus beats (a compensatory pause, a missed beat): keep
            # the timeline exactly. After a premature atrial beat the sinus node restarts,
            # the block is shorter, and the spline's values stand.
            values = values * (total / float(values.sum()))
        pieces.append(values)
        marks.append(np.ones(k, dtype=np.bool_))
        pos = b
    pieces.append(rr[pos:n])
    marks.append(estimated[pos:n])
    out: FloatArray = np.concatenate(pieces)
    out_marks: BoolArray = np.concatenate(marks)
    return out, out_marks


def _blocks(mask: BoolArray) -> list[tuple[int, int]]:
    """Half-open ranges of consecutive True values."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(
        zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True)
    )


def _misfit(total_ms: float, expected_ms: float) -> float:
    """How far ``total_ms`` is from a whole number (≥ 1) of ``expected_ms`` intervals."""
    x = total_ms / expected_ms
    return abs(x - max(1, round(x)))


def _expected(rr: FloatArray, artefacts: BoolArray, a: int, b: int) -> float:
    """Mean of the nearest intact interval on each side of ``rr[a:b]`` (ms)."""
    near = [i for i in (a - 1, b) if 0 <= i < rr.size and not artefacts[i]]
    if not near:
        return float(np.median(rr[~artefacts]))
    return float(np.mean(rr[near]))


def _widen(rr: FloatArray, artefacts: BoolArray, a: int, b: int, lo: int) -> tuple[int, int]:
    """``(a, b)`` widened by one intact neighbour when that brings ``T / E`` to a whole number."""

    def misfit(a2: int, b2: int) -> float:
        return _misfit(float(rr[a2:b2].sum()), _expected(rr, artefacts, a2, b2))

    best = (misfit(a, b), a, b)
    if best[0] <= _WHOLE_CLEAR:
        return a, b
    for a2, b2 in ((a - 1, b), (a, b + 1)):
        if lo <= a2 and b2 <= rr.size and not artefacts[a2 if a2 < a else b2 - 1]:
            m = misfit(a2, b2)
            if m < best[0] and m <= _WHOLE_TOLERANCE:
                best = (m, a2, b2)
    return best[1], best[2]


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
    # The truncated edge windows as rows of one block, sorted once, padding last: numpy's
    # linear quantile per row (same virtual index and interpolation, so the same values)
    # instead of one np.quantile call per edge sample, which dominated imports.
    idx = np.asarray(edges, dtype=np.intp)
    cols = idx[:, None] + np.arange(-half, half + 1)[None, :]
    inside = (cols >= 0) & (cols < n)
    block = np.sort(np.where(inside, x[np.clip(cols, 0, n - 1)], np.inf), axis=1)
    last = inside.sum(axis=1) - 1
    rows = np.arange(idx.size)
    for k, q in enumerate(qs):
        pos = q * last
        below = np.floor(pos).astype(np.intp)
        above = np.minimum(below + 1, last)
        t = pos - below
        a, b = block[rows, below], block[rows, above]
        diff = b - a
        out[k][idx] = np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
    return tuple(out)
