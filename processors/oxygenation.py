"""Muscle-oxygenation (SmO2) recovery after efforts.

Input: SmO2 samples (time in s, SmO2 in %) as a Moxy sends them every ~0.5–2 s. We use the
*live* value, smoothed with a centred running median over ``smoothing_window_s`` (default
7 s: ±3.5 s), never across a gap longer than ``max_gap_s``; the device's own average is a
trailing mean that delays every edge by ~4 s.

Definitions (all times in s, SmO2 levels in percentage points of SmO2):

* **Baseline** b: median of the smoothed SmO2 over the last ``baseline_window_s`` (30 s) at
  rest before the effort; void once older than ``baseline_max_age_s`` (300 s).
* **Effort**: the smoothed SmO2 falls below ``b − min_desaturation_pct`` (10 points). When
  an activity stream (power in W or HR in bpm) is given, an effort is kept only if the
  activity reached ``activity_threshold`` between ``activity_lead_s`` before its onset and
  its minimum.
* **Minimum** m: the lowest smoothed value of the effort; D = b − m. Recovery is timed
  from **t_min**, the END of the desaturation plateau: the last smoothed sample within
  ``plateau_pct`` (3 points) of m before SmO2 rises for good. (On a noise-free curve this
  starts the clock when the rise has covered ``plateau_pct`` points, i.e. T95 reads short by
  τ·ln(D/(D − plateau_pct)), ~0.08·τ for D = 40; τ from the fit is unaffected.)
* **T½**, **T95**: time from t_min until the smoothed SmO2 first reaches m + 0.5·D, resp.
  m + 0.95·D (linear interpolation between samples). T95 is the *recovery time*.
* **Reoxygenation rate** (%/s): 0.5·D / (t75 − t25), the mean slope between 25% and 75%
  recovery (for a mono-exponential recovery with time constant τ it is 0.5·D / (τ·ln 3)).
* **Mono-exponential fit with delay** over [t_min, t_peak]:
  ``y(t) = y0 + A·(1 − exp(−(t − TD)/τ))`` for t ≥ TD, ``y0`` before (t from t_min);
  fitted by ``scipy.optimize.curve_fit``; ``tau_s``/``delay_s`` are None if the fit fails.
* **Overshoot**: max(0, peak − b), the peak being the highest smoothed value within
  ``overshoot_window_s`` (60 s) after T95 (hyperaemia above the pre-effort level).
* An effort whose recovery is cut short (next effort, gap, end of data, or more than
  ``max_recovery_s``) is *unrecovered*: T95 is None and ``observed_s`` is how long it was
  watched after its minimum (a lower bound on its T95).
* A re-desaturation by ``min_desaturation_pct`` from the highest value since the minimum
  closes the current effort (unrecovered) and starts a new one with the same baseline, so
  repeated intervals without full recovery are separate efforts.

Session recovery time = median over efforts of T95, where an unrecovered effort watched for
at least ``slow_after_s`` (default 120 s, the ``smo2_slow_recovery`` threshold) contributes
its ``observed_s`` — a lower bound, so the median can only be under-estimated by it — and
shorter unrecovered efforts are left out (they carry no information about slowness).
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypedDict, Unpack

import numpy as np
import numpy.typing as npt
from scipy.optimize import OptimizeWarning, curve_fit

from processors import physiology as ph

FloatArray = npt.NDArray[np.float64]

# Activity samples kept while an effort is open; at 4 Hz this is > 15 min, enough for any
# effort, and it bounds memory if an effort never ends.
_MAX_ACTIVITY_SAMPLES = 4096
_MIN_FIT_SAMPLES = 5


class OxygenationInputError(ValueError):
    """SmO2 or activity input that cannot be analysed (names the input and the fault)."""


@dataclass(frozen=True, slots=True)
class EffortRecovery:
    """One effort and its recovery. Times in s (input time base), levels in SmO2 %."""

    onset_s: float
    t_min_s: float
    baseline_pct: float
    min_pct: float
    desaturation_pct: float
    recovered: bool
    observed_s: float
    t_half_s: float | None
    t95_s: float | None
    reoxygenation_rate_pct_s: float | None
    tau_s: float | None
    delay_s: float | None
    fit_r2: float | None
    peak_pct: float | None
    overshoot_pct: float | None


@dataclass(frozen=True, slots=True)
class OxygenRecovery:
    """A session's oxygenation recovery: its efforts and the session recovery time (s)."""

    start_s: float
    end_s: float
    n_efforts: int
    n_recovered: int
    recovery_time_s: float | None
    recovery_time_is_lower_bound: bool
    efforts: tuple[EffortRecovery, ...]

    def summary(self) -> dict[str, float | int | bool | None]:
        """Flat JSON-ready session summary (without the per-effort records)."""
        return {
            "start_s": self.start_s,
            "end_s": self.end_s,
            "n_efforts": self.n_efforts,
            "n_recovered": self.n_recovered,
            "recovery_time_s": self.recovery_time_s,
            "recovery_time_is_lower_bound": self.recovery_time_is_lower_bound,
        }


def smooth_centred(
    t_s: npt.ArrayLike,
    smo2_pct: npt.ArrayLike,
    *,
    window_s: float = ph.SMO2_SMOOTHING_WINDOW_S,
    max_gap_s: float = ph.SMO2_MAX_GAP_S,
) -> FloatArray:
    """Centred running median of SmO2 over ±window_s/2, never across a gap > max_gap_s.

    Batch twin of the smoother inside :class:`EffortDetector` (same values).
    """
    t = np.asarray(t_s, dtype=np.float64)
    y = np.asarray(smo2_pct, dtype=np.float64)
    half = window_s / 2.0
    out = np.empty_like(y)
    segment = np.concatenate(([0], np.cumsum(np.diff(t) > max_gap_s))) if t.size else t
    for i in range(t.size):
        lo = int(np.searchsorted(t, t[i] - half, side="left"))
        hi = int(np.searchsorted(t, t[i] + half, side="right"))
        same = segment[lo:hi] == segment[i]
        out[i] = float(np.median(y[lo:hi][same]))
    return out


class _Phase(Enum):
    REST = "rest"
    EFFORT = "effort"  # desaturated, waiting for the T95 crossing
    POST = "post"  # recovered, watching for the overshoot peak


class CentredMedian:
    """Streaming twin of :func:`smooth_centred`: bounded memory, same values.

    Each sample is emitted once a sample more than ``window_s/2`` later has arrived (or at
    :meth:`flush`, or when a gap > ``max_gap_s`` ends its segment), so output lags input by
    half the window.
    """

    def __init__(
        self,
        window_s: float = ph.SMO2_SMOOTHING_WINDOW_S,
        max_gap_s: float = ph.SMO2_MAX_GAP_S,
    ) -> None:
        self._half = window_s / 2.0
        self._max_gap = max_gap_s
        self._buf: deque[tuple[float, float]] = deque()
        self._next = 0  # index in _buf of the next sample to emit

    def __len__(self) -> int:
        """Samples held (bounded by the window)."""
        return len(self._buf)

    def push(self, t: float, y: float) -> list[tuple[float, float]]:
        """Add a sample (s, value); return the (t, smoothed) pairs now complete."""
        out: list[tuple[float, float]] = []
        if self._buf and t - self._buf[-1][0] > self._max_gap:
            out.extend(self.flush())
        self._buf.append((t, y))
        while self._next < len(self._buf) and t > self._buf[self._next][0] + self._half:
            out.append(self._emit(self._next))
            self._next += 1
        self._trim()
        return out

    def flush(self) -> list[tuple[float, float]]:
        """Emit every pending sample with the data at hand and start a new segment."""
        out = [self._emit(i) for i in range(self._next, len(self._buf))]
        self._buf.clear()
        self._next = 0
        return out

    def _emit(self, i: int) -> tuple[float, float]:
        tc = self._buf[i][0]
        values = [y for (t, y) in self._buf if abs(t - tc) <= self._half]
        return tc, float(np.median(values))

    def _trim(self) -> None:
        if self._next >= len(self._buf):
            oldest_needed = self._buf[-1][0] - self._half if self._buf else 0.0
        else:
            oldest_needed = self._buf[self._next][0] - self._half
        while self._buf and self._buf[0][0] < oldest_needed and self._next > 0:
            self._buf.popleft()
            self._next -= 1


@dataclass(slots=True)
class _OpenEffort:
    onset: float
    baseline: float
    t_min: float
    y_min: float
    samples: list[tuple[float, float]]  # smoothed samples from t_min on
    t_last: float
    t_max_since_min: float
    y_max_since_min: float
    t25: float | None = None
    t50: float | None = None
    t75: float | None = None
    t95: float | None = None
    t_peak: float | None = None
    y_peak: float | None = None


class DetectorSettings(TypedDict, total=False):
    """:class:`EffortDetector` settings that :func:`analyse_session` passes on (units as there)."""

    smoothing_window_s: float
    max_gap_s: float
    baseline_window_s: float
    baseline_max_age_s: float
    min_desaturation_pct: float
    plateau_pct: float
    recovery_fraction: float
    max_recovery_s: float
    overshoot_window_s: float


class EffortDetector:
    """Finds efforts in a SmO2 stream fed sample by sample; bounded memory.

    ``add`` returns the efforts whose recovery has been decided by that sample (usually
    none); ``flush`` at the end of a session closes an open effort as unrecovered. The
    smoothing delays decisions by half the smoothing window. Memory is bounded by the
    smoothing window, the baseline window and ``max_recovery_s`` of samples.
    """

    def __init__(
        self,
        *,
        smoothing_window_s: float = ph.SMO2_SMOOTHING_WINDOW_S,
        max_gap_s: float = ph.SMO2_MAX_GAP_S,
        baseline_window_s: float = ph.SMO2_BASELINE_WINDOW_S,
        baseline_max_age_s: float = ph.SMO2_BASELINE_MAX_AGE_S,
        min_desaturation_pct: float = ph.SMO2_MIN_DESATURATION_PCT,
        plateau_pct: float = ph.SMO2_MIN_PLATEAU_PCT,
        recovery_fraction: float = ph.SMO2_RECOVERY_FRACTION,
        max_recovery_s: float = ph.SMO2_MAX_RECOVERY_S,
        overshoot_window_s: float = ph.SMO2_OVERSHOOT_WINDOW_S,
        activity_threshold: float | None = None,
        activity_lead_s: float = 10.0,
    ) -> None:
        if not 0.5 < recovery_fraction < 1.0:
            raise ValueError(f"recovery_fraction must be in (0.5, 1), got {recovery_fraction}")
        if min_desaturation_pct <= 0 or smoothing_window_s < 0 or max_gap_s <= 0:
            raise ValueError("min_desaturation_pct and max_gap_s must be > 0, window ≥ 0")
        self._smoother = CentredMedian(smoothing_window_s, max_gap_s)
        self._max_gap = max_gap_s
        self._baseline_window = baseline_window_s
        self._baseline_max_age = baseline_max_age_s
        self._drop = min_desaturation_pct
        self._plateau = plateau_pct
        self._fraction = recovery_fraction
        self._max_recovery = max_recovery_s
        self._overshoot_window = overshoot_window_s
        self._activity_threshold = activity_threshold
        self._activity_lead = activity_lead_s
        self._activity: deque[tuple[float, float]] = deque(maxlen=_MAX_ACTIVITY_SAMPLES)
        self._activity_seen = False
        self._rest: deque[tuple[float, float]] = deque()
        self._baseline: float | None = None
        self._baseline_t = -math.inf
        self._phase = _Phase.REST
        self._effort: _OpenEffort | None = None
        self._last_raw_t: float | None = None
        self._last_smoothed: tuple[float, float] | None = None
        self.rejected_without_activity = 0

    @property
    def buffered_samples(self) -> int:
        """Samples held in memory right now (smoothing, baseline, open effort, activity)."""
        effort = 0 if self._effort is None else len(self._effort.samples)
        return len(self._smoother) + len(self._rest) + effort + len(self._activity)

    # --- input -------------------------------------------------------------------------------
    def add(self, t_s: float, smo2_pct: float) -> list[EffortRecovery]:
        """Feed one live SmO2 sample (s, %). Times must increase strictly."""
        if not (math.isfinite(t_s) and math.isfinite(smo2_pct) and 0.0 <= smo2_pct <= 100.0):
            raise OxygenationInputError(
                f"SmO2 sample ({t_s} s, {smo2_pct} %) is not a valid reading"
            )
        if self._last_raw_t is not None and t_s <= self._last_raw_t:
            raise OxygenationInputError(
                f"SmO2 sample times must increase: {t_s} s after {self._last_raw_t} s"
            )
        out: list[EffortRecovery] = []
        if self._last_raw_t is not None and t_s - self._last_raw_t > self._max_gap:
            for t, y in self._smoother.flush():
                out.extend(self._on_smoothed(t, y))
            out.extend(self._on_gap())
        self._last_raw_t = t_s
        for t, y in self._smoother.push(t_s, smo2_pct):
            out.extend(self._on_smoothed(t, y))
        return out

    def add_activity(self, t_s: float, value: float) -> None:
        """Feed one activity sample (power W or HR bpm) used to confirm efforts."""
        if self._activity_threshold is None:
            raise OxygenationInputError(
                "activity samples need an activity_threshold (W or bpm) set on the detector"
            )
        if not (math.isfinite(t_s) and math.isfinite(value)):
            raise OxygenationInputError(f"activity sample ({t_s} s, {value}) is not finite")
        self._activity_seen = True
        self._activity.append((t_s, value))
        if self._phase is _Phase.REST and self._last_smoothed is not None:
            horizon = self._last_smoothed[0] - self._activity_lead
            while self._activity and self._activity[0][0] < horizon:
                self._activity.popleft()

    def flush(self) -> list[EffortRecovery]:
        """End of data: smooth the remaining samples and close any open effort."""
        out: list[EffortRecovery] = []
        for t, y in self._smoother.flush():
            out.extend(self._on_smoothed(t, y))
        out.extend(self._on_gap())
        self._last_raw_t = None
        return out

    # --- state machine over smoothed samples -------------------------------------------------
    def _on_gap(self) -> list[EffortRecovery]:
        out: list[EffortRecovery] = []
        if self._effort is not None:
            out.extend(self._close())
        self._rest.clear()
        self._last_smoothed = None
        return out

    def _on_smoothed(self, t: float, y: float) -> list[EffortRecovery]:
        prev = self._last_smoothed
        self._last_smoothed = (t, y)
        if self._phase is _Phase.REST:
            return self._rest_sample(t, y)
        effort = self._effort
        assert effort is not None
        if self._phase is _Phase.POST:
            return self._post_sample(effort, t, y)
        return self._effort_sample(effort, t, y, prev)

    def _rest_sample(self, t: float, y: float) -> list[EffortRecovery]:
        if self._baseline is not None and t - self._baseline_t > self._baseline_max_age:
            self._baseline = None
            self._rest.clear()
        if self._baseline is not None and y < self._baseline - self._drop:
            self._start_effort(t, y, self._baseline)
            return []
        self._rest.append((t, y))
        while self._rest and self._rest[0][0] < t - self._baseline_window:
            self._rest.popleft()
        if len(self._rest) >= 3:
            self._baseline = float(np.median([v for _, v in self._rest]))
            self._baseline_t = t
        return []

    def _start_effort(self, t: float, y: float, baseline: float) -> None:
        self._phase = _Phase.EFFORT
        self._effort = _OpenEffort(
            onset=t,
            baseline=baseline,
            t_min=t,
            y_min=y,
            samples=[(t, y)],
            t_last=t,
            t_max_since_min=t,
            y_max_since_min=y,
        )

    def _effort_sample(
        self, e: _OpenEffort, t: float, y: float, prev: tuple[float, float] | None
    ) -> list[EffortRecovery]:
        e.t_last = t
        if e.y_max_since_min - e.y_min >= self._drop and y <= e.y_max_since_min - self._drop:
            # Desaturating again before recovery: a new effort on the same baseline.
            onset, baseline = e.t_max_since_min, e.baseline
            out = self._close()
            self._start_effort(t, y, baseline)
            assert self._effort is not None
            self._effort.onset = onset
            return out
        if y <= e.y_min + self._plateau:
            # Still on the desaturation plateau: recovery (re)starts from here.
            e.y_min = min(e.y_min, y)
            e.t_min, e.samples = t, [(t, y)]
            e.t_max_since_min, e.y_max_since_min = t, y
            e.t25 = e.t50 = e.t75 = None
            return []
        e.samples.append((t, y))
        if y > e.y_max_since_min:
            e.t_max_since_min, e.y_max_since_min = t, y
        depth = e.baseline - e.y_min
        p = prev if prev is not None else (t, y)
        e.t25 = e.t25 if e.t25 is not None else _crossing(p, (t, y), e.y_min + 0.25 * depth)
        e.t50 = e.t50 if e.t50 is not None else _crossing(p, (t, y), e.y_min + 0.5 * depth)
        e.t75 = e.t75 if e.t75 is not None else _crossing(p, (t, y), e.y_min + 0.75 * depth)
        t95 = _crossing(p, (t, y), e.y_min + self._fraction * depth)
        if t95 is not None:
            e.t95, e.t_peak, e.y_peak = t95, t, y
            self._phase = _Phase.POST
            return []
        if t - e.t_min > self._max_recovery:
            return self._close()
        return []

    def _post_sample(self, e: _OpenEffort, t: float, y: float) -> list[EffortRecovery]:
        assert e.t95 is not None
        assert e.y_peak is not None
        if y < e.baseline - self._drop:
            baseline = e.baseline
            out = self._close()
            self._start_effort(t, y, baseline)
            return out
        e.t_last = t
        e.samples.append((t, y))
        if y > e.y_peak:
            e.t_peak, e.y_peak = t, y
        if t - e.t95 >= self._overshoot_window:
            return self._close()
        return []

    def _close(self) -> list[EffortRecovery]:
        e = self._effort
        assert e is not None
        self._effort = None
        self._phase = _Phase.REST
        self._rest.clear()
        if not self._activity_confirms(e):
            self.rejected_without_activity += 1
            return []
        return [_finish(e)]

    def _activity_confirms(self, e: _OpenEffort) -> bool:
        if not self._activity_seen or self._activity_threshold is None:
            return True
        lo, hi = e.onset - self._activity_lead, e.t_min
        return any(lo <= ta <= hi and v >= self._activity_threshold for ta, v in self._activity)


def _crossing(p: tuple[float, float], q: tuple[float, float], level: float) -> float | None:
    """Time at which the segment p→q first reaches ``level`` from below, else None."""
    (t0, y0), (t1, y1) = p, q
    if y1 < level:
        return None
    if y0 >= level or y1 == y0:
        return t1
    return t0 + (level - y0) / (y1 - y0) * (t1 - t0)


def _finish(e: _OpenEffort) -> EffortRecovery:
    depth = e.baseline - e.y_min
    recovered = e.t95 is not None
    rate = None
    if e.t25 is not None and e.t75 is not None and e.t75 > e.t25:
        rate = 0.5 * depth / (e.t75 - e.t25)
    fit_end = e.t_peak if recovered and e.t_peak is not None else e.t_last
    fit = _fit_recovery([s for s in e.samples if s[0] <= fit_end], e.t_min)
    return EffortRecovery(
        onset_s=e.onset,
        t_min_s=e.t_min,
        baseline_pct=e.baseline,
        min_pct=e.y_min,
        desaturation_pct=depth,
        recovered=recovered,
        observed_s=(e.t95 if e.t95 is not None else e.t_last) - e.t_min,
        t_half_s=None if e.t50 is None else e.t50 - e.t_min,
        t95_s=None if e.t95 is None else e.t95 - e.t_min,
        reoxygenation_rate_pct_s=rate,
        tau_s=None if fit is None else fit[0],
        delay_s=None if fit is None else fit[1],
        fit_r2=None if fit is None else fit[2],
        peak_pct=e.y_peak,
        overshoot_pct=None if e.y_peak is None else max(0.0, e.y_peak - e.baseline),
    )


def _mono_exp(t: FloatArray, y0: float, amp: float, delay: float, tau: float) -> FloatArray:
    return y0 + amp * (1.0 - np.exp(-np.clip(t - delay, 0.0, None) / tau))


def _fit_recovery(
    samples: Sequence[tuple[float, float]], t_min: float
) -> tuple[float, float, float] | None:
    """(τ s, delay s, R²) of the delayed mono-exponential, or None if it cannot be fitted."""
    if len(samples) < _MIN_FIT_SAMPLES:
        return None
    t = np.array([s[0] for s in samples]) - t_min
    y = np.array([s[1] for s in samples])
    span = float(t[-1])
    amp0 = float(y.max() - y[0])
    if span <= 0 or amp0 <= 0:
        return None
    p0 = [float(y[0]), amp0, 0.0, max(span / 3.0, 0.5)]
    bounds = ([0.0, 0.0, 0.0, 0.1], [100.0, 200.0, span, 20.0 * span])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", OptimizeWarning)
            params, _ = curve_fit(_mono_exp, t, y, p0=p0, bounds=bounds, maxfev=5000)
    except (RuntimeError, ValueError, OptimizeWarning):
        return None
    y0, amp, delay, tau = (float(v) for v in params)
    if not all(math.isfinite(v) for v in (y0, amp, delay, tau)):
        return None
    resid = y - _mono_exp(t, y0, amp, delay, tau)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / total if total > 0 else 0.0
    return tau, delay, r2


def summarise_session(
    efforts: Sequence[EffortRecovery],
    start_s: float,
    end_s: float,
    *,
    slow_after_s: float = ph.SMO2_SLOW_RECOVERY_S,
) -> OxygenRecovery:
    """Session record: recovery time = median T95 (see the module docstring for censoring)."""
    values: list[float] = []
    lower_bound = False
    for e in efforts:
        if e.t95_s is not None:
            values.append(e.t95_s)
        elif e.observed_s >= slow_after_s:
            values.append(e.observed_s)
            lower_bound = True
    return OxygenRecovery(
        start_s=start_s,
        end_s=end_s,
        n_efforts=len(efforts),
        n_recovered=sum(e.recovered for e in efforts),
        recovery_time_s=float(np.median(values)) if values else None,
        recovery_time_is_lower_bound=lower_bound,
        efforts=tuple(efforts),
    )


def two_level_threshold(values: npt.ArrayLike, bins: int = 256) -> float:
    """Level that best splits values into "easy" and "work" (Otsu 1979, between-class variance).

    Works whatever share of the session is work; for a constant series it is that constant.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise OxygenationInputError("activity holds no finite value to derive a threshold from")
    lo, hi = float(v.min()), float(v.max())
    if hi == lo:
        return lo
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2.0
    w0 = np.cumsum(counts)[:-1].astype(np.float64)
    w1 = v.size - w0
    s0 = np.cumsum(counts * centres)[:-1]
    m0 = s0 / np.maximum(w0, 1)
    m1 = (float((counts * centres).sum()) - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    # Well-separated levels leave an empty gap where every split is equally good: take the
    # middle of that gap rather than its lower edge.
    best = np.flatnonzero(between >= between.max() * (1.0 - 1e-9))
    return float((edges[1 + best[0]] + edges[1 + best[-1]]) / 2.0)


def analyse_session(
    t_s: npt.ArrayLike,
    smo2_pct: npt.ArrayLike,
    *,
    activity: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
    activity_threshold: float | None = None,
    slow_after_s: float = ph.SMO2_SLOW_RECOVERY_S,
    **settings: Unpack[DetectorSettings],
) -> OxygenRecovery:
    """Efforts and recovery time of one session from its live SmO2 samples (s, %).

    ``activity`` = (times s, power W or HR bpm) confirms efforts; without an explicit
    ``activity_threshold`` it is :func:`two_level_threshold` of the activity values.
    Runs the same :class:`EffortDetector` a live stream uses, so both agree; ``settings``
    are its keyword arguments (:class:`DetectorSettings`), with its defaults.
    """
    t = np.asarray(t_s, dtype=np.float64)
    y = np.asarray(smo2_pct, dtype=np.float64)
    if t.ndim != 1 or t.shape != y.shape or t.size == 0:
        raise OxygenationInputError(
            "SmO2 times and values must be non-empty 1-D arrays of equal length, "
            f"got {t.shape} and {y.shape}"
        )
    if not (np.isfinite(t).all() and np.isfinite(y).all()):
        raise OxygenationInputError("SmO2 input holds NaN or inf; drop those samples first")
    if ((y < 0) | (y > 100)).any():
        raise OxygenationInputError("SmO2 values must be percentages in 0–100")
    if (np.diff(t) <= 0).any():
        raise OxygenationInputError("SmO2 sample times must increase strictly")
    at = av = np.empty(0)
    if activity is not None:
        at = np.asarray(activity[0], dtype=np.float64)
        av = np.asarray(activity[1], dtype=np.float64)
        if at.shape != av.shape or at.ndim != 1:
            raise OxygenationInputError("activity times and values must be 1-D of equal length")
        if at.size and activity_threshold is None:
            activity_threshold = two_level_threshold(av)
    detector = EffortDetector(activity_threshold=activity_threshold, **settings)
    efforts: list[EffortRecovery] = []
    order = np.argsort(at, kind="stable")
    j = 0
    for ti, yi in zip(t.tolist(), y.tolist(), strict=True):
        while j < at.size and at[order[j]] <= ti:
            detector.add_activity(float(at[order[j]]), float(av[order[j]]))
            j += 1
        efforts.extend(detector.add(ti, yi))
    while j < at.size:
        detector.add_activity(float(at[order[j]]), float(av[order[j]]))
        j += 1
    efforts.extend(detector.flush())
    return summarise_session(efforts, float(t[0]), float(t[-1]), slow_after_s=slow_after_s)
