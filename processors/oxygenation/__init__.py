"""Muscle-oxygenation (SmO2) recovery after efforts, timed from the end of work.

Input: SmO2 samples (time in s, SmO2 in %) as a Moxy sends them every ~0.5–2 s. We use the
*live* value, smoothed with a centred running median over ``smoothing_window_s`` (default
9 s: ±4.5 s), never across a gap longer than ``max_gap_s``; the device's own average is a
trailing mean that delays every edge by ~4 s.

Definitions (all times in s, SmO2 levels in percentage points of SmO2):

* **Baseline** b: median of the smoothed SmO2 over the last ``baseline_window_s`` (30 s) at
  rest before the effort; void once older than ``baseline_max_age_s`` (300 s).
* **Effort**: the smoothed SmO2 falls below ``b − min_desaturation_pct`` (10 points) and
  stays below for at least ``min_effort_s`` (20 s; shorter dips, e.g. in a cool-down, are
  not efforts), and its work level (below) is at least ``min_desaturation_pct`` under b.
  When an activity stream (power in W or HR in bpm) is given, an effort is kept only if the
  activity reached ``activity_threshold`` between ``activity_lead_s`` before its onset and
  the start of its recovery.
* **End of work** t_w, the zero of every recovery time. From the activity stream when there
  is one: with power, halfway between the last sample at or above the threshold and the
  next one; with HR, the time of the HR peak (HR keeps rising while work goes on and falls once it
  stops). From SmO2 alone: the work level L₀ is the median live SmO2 over the
  ``work_level_window_s`` (20 s) before the last deep sample (smoothed within 15% of the
  effort's range of its lowest value); t_w is the last smoothed sample before the final
  rise within max(``plateau_pct``, ``work_end_rise_fraction``·(b − L₀)) of L₀, moved back to
  the foot of the rise (while the sample before it is lower but still above L₀), then half
  a sample on (work ended between two samples; the same for power). On Moxy data the end of
  work shows as an upward step (muscle relaxation; ~10 points on the real file); when the
  trace stays flat through the reoxygenation delay, the end of work cannot be seen in SmO2
  and t_w is the start of the rise (late by that delay): give power or HR for those.
* **Work level** m (``min_pct``): median live SmO2 over the ``work_level_window_s`` before
  t_w (robust to single-sample spikes, unlike the noisy minimum); D = b − m.
* **T½**: time from t_w until the smoothed SmO2 first reaches m + 0.5·D (linear
  interpolation between samples).
* **T95**, the *recovery time*: time from t_w until SmO2 reaches m + 0.95·(top − m). Read off
  the fitted curve (below) when the fit has R² ≥ ``min_fit_r2``, since the smoothed trace
  meets that level almost flat and noise makes its first passage early; else the first
  passage of the smoothed trace. When the fitted asymptote is within ``plateau_pct`` of b
  (the recovery returns to the rest level) the fit is redone jointly with the live rest
  samples the baseline came from (those within ``plateau_pct`` of b) as observations of the
  asymptote, and top is that asymptote; above the band (an overshoot) top is b, recovery
  being timed to the pre-effort level; below it, top is the fitted asymptote. An effort
  counts as recovered once the smoothed trace reaches m + 0.95·D.
* **Reoxygenation rate** (%/s): 0.5·D / (t75 − t25), the mean slope between 25% and 75%
  recovery (for a mono-exponential recovery with time constant τ it is 0.5·D / (τ·ln 3)).
* **Mono-exponential fit with delay** (:func:`fit_delayed_recovery`) on the live samples
  from t_w to the end of the watch (``overshoot_window_s`` after the smoothed trace's T95
  crossing, or when the effort is cut; if the fitted curve then reaches the T95 level later
  than the data, the watch goes on once, to that time + ``overshoot_window_s``, at most
  ``max_recovery_s`` after t_w):
  ``y(t) = y0`` for t < TD, ``y0 + A·(1 − exp(−(t − TD)/τ))`` after (t from t_w). TD is
  searched on a grid (``delay_step_s``, up to ``max_delay_s``); for each TD, τ is found by
  bounded scalar minimisation with y0 and A solved by linear least squares; the TD with the
  least squared error wins. ``tau_s``/``delay_s`` are None if it cannot be fitted.
* **Overshoot**: max(0, peak − b), the peak being the highest smoothed value from the
  smoothed trace's T95 crossing to the end of the watch (hyperaemia above the pre-effort
  level).
* An effort whose recovery is cut short (next effort, gap, end of data, or more than
  ``max_recovery_s`` after t_w) is *unrecovered*: T95 is None and ``observed_s`` is how long
  it was watched after t_w (a lower bound on its T95).
* Once SmO2 has climbed above halfway between b and the effort's lowest smoothed value, a
  fall by ``min_desaturation_pct`` from the highest value since closes the current effort
  (unrecovered) and starts a new one with the same baseline, so repeated intervals without
  full recovery are separate efforts (noise on a work plateau never climbs that far).

Session recovery time = median over efforts of T95, where an unrecovered effort watched for
at least ``slow_after_s`` (default 120 s, the ``smo2_slow_recovery`` threshold) contributes
its ``observed_s`` — a lower bound, so the median can only be under-estimated by it — and
shorter unrecovered efforts are left out (they carry no information about slowness).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from enum import Enum
from typing import TypedDict, Unpack

import numpy as np
import numpy.typing as npt

from processors import physiology as ph
from processors.oxygenation.activity import ActivityWindow, two_level_threshold
from processors.oxygenation.baseline import RestBaseline
from processors.oxygenation.effort import OpenEffort
from processors.oxygenation.records import (
    ACTIVITY_KINDS,
    ActivityKind,
    EffortRecovery,
    FloatArray,
    OxygenationInputError,
    OxygenRecovery,
    WorkEndSource,
)
from processors.oxygenation.recovery import RecoveryTimer
from processors.oxygenation.work_end import WorkEndLocator
from processors.smoothing import CentredMedian

__all__ = [
    "ACTIVITY_KINDS",
    "ActivityKind",
    "DetectorSettings",
    "EffortDetector",
    "EffortRecovery",
    "FloatArray",
    "OxygenRecovery",
    "OxygenationInputError",
    "WorkEndSource",
    "analyse_session",
    "summarise_session",
    "two_level_threshold",
]


class _Phase(Enum):
    REST = "rest"
    EFFORT = "effort"  # desaturated, the recovery not located yet
    RECOVERY = "recovery"  # end of work located, waiting for the T95 crossing
    POST = "post"  # recovered, watching for the overshoot peak


class DetectorSettings(TypedDict, total=False):
    """:class:`EffortDetector` settings that :func:`analyse_session` passes on (units as there)."""

    smoothing_window_s: float
    max_gap_s: float
    baseline_window_s: float
    baseline_max_age_s: float
    min_desaturation_pct: float
    min_effort_s: float
    plateau_pct: float
    work_end_rise_fraction: float
    work_level_window_s: float
    max_delay_s: float
    delay_step_s: float
    min_fit_r2: float
    recovery_fraction: float
    max_recovery_s: float
    overshoot_window_s: float


class EffortDetector:
    """Finds efforts in a SmO2 stream fed sample by sample; bounded memory.

    ``add`` returns the efforts whose recovery has been decided by that sample (usually
    none); ``flush`` at the end of a session closes an open effort as unrecovered. The
    smoothing delays decisions by half the smoothing window. Activity (power W or HR bpm,
    ``activity_kind``) fed with :meth:`add_activity` confirms efforts and marks the end of
    work. Memory is bounded by the smoothing and baseline windows, ``max_recovery_s`` plus
    ``work_level_window_s`` of SmO2 samples and
    :data:`~processors.oxygenation.activity.MAX_ACTIVITY_SAMPLES` activity samples.
    """

    def __init__(
        self,
        *,
        smoothing_window_s: float = ph.SMO2_SMOOTHING_WINDOW_S,
        max_gap_s: float = ph.SMO2_MAX_GAP_S,
        baseline_window_s: float = ph.SMO2_BASELINE_WINDOW_S,
        baseline_max_age_s: float = ph.SMO2_BASELINE_MAX_AGE_S,
        min_desaturation_pct: float = ph.SMO2_MIN_DESATURATION_PCT,
        min_effort_s: float = ph.SMO2_MIN_EFFORT_S,
        plateau_pct: float = ph.SMO2_MIN_PLATEAU_PCT,
        work_end_rise_fraction: float = ph.SMO2_WORK_END_RISE_FRACTION,
        work_level_window_s: float = ph.SMO2_WORK_LEVEL_WINDOW_S,
        max_delay_s: float = ph.SMO2_MAX_DELAY_S,
        delay_step_s: float = ph.SMO2_DELAY_STEP_S,
        min_fit_r2: float = ph.SMO2_MIN_FIT_R2,
        recovery_fraction: float = ph.SMO2_RECOVERY_FRACTION,
        max_recovery_s: float = ph.SMO2_MAX_RECOVERY_S,
        overshoot_window_s: float = ph.SMO2_OVERSHOOT_WINDOW_S,
        activity_threshold: float | None = None,
        activity_kind: ActivityKind = "power",
        activity_lead_s: float = 10.0,
    ) -> None:
        if not 0.5 < recovery_fraction < 1.0:
            raise ValueError(f"recovery_fraction must be in (0.5, 1), got {recovery_fraction}")
        if min_desaturation_pct <= 0 or smoothing_window_s < 0 or max_gap_s <= 0:
            raise ValueError("min_desaturation_pct and max_gap_s must be > 0, window ≥ 0")
        if work_level_window_s <= 0 or delay_step_s <= 0 or max_delay_s < 0:
            raise ValueError("work_level_window_s and delay_step_s must be > 0, max_delay_s ≥ 0")
        if activity_kind not in ACTIVITY_KINDS:
            raise ValueError(
                f"activity_kind must be one of {ACTIVITY_KINDS}, got {activity_kind!r}"
            )
        self._smoother = CentredMedian(smoothing_window_s, max_gap_s)
        self._max_gap = max_gap_s
        self._drop = min_desaturation_pct
        self._max_recovery = max_recovery_s
        self._overshoot_window = overshoot_window_s
        # Samples an open effort keeps: enough to reach back from a decision to the end of
        # work (≤ max_recovery_s) and over the work-level window before it.
        self._horizon = max_recovery_s + 2.0 * work_level_window_s + smoothing_window_s
        self._activity = ActivityWindow(activity_kind, activity_threshold, activity_lead_s)
        self._recovery = RecoveryTimer(
            fraction=recovery_fraction,
            plateau_pct=plateau_pct,
            max_delay_s=max_delay_s,
            delay_step_s=delay_step_s,
            min_fit_r2=min_fit_r2,
        )
        self._work_end = WorkEndLocator(
            self._activity,
            min_effort_s=min_effort_s,
            min_desaturation_pct=min_desaturation_pct,
            level_window_s=work_level_window_s,
            plateau_pct=plateau_pct,
            rise_fraction=work_end_rise_fraction,
        )
        self._raw: deque[tuple[float, float]] = deque()  # live samples awaiting smoothing
        self._baseline = RestBaseline(baseline_window_s, baseline_max_age_s)
        self._phase = _Phase.REST
        self._effort: OpenEffort | None = None
        self._last_raw_t: float | None = None
        self.rejected_without_activity = 0
        self.rejected_short = 0

    @property
    def buffered_samples(self) -> int:
        """Samples held in memory right now (smoothing, baseline, open effort, activity)."""
        effort = 0 if self._effort is None else len(self._effort.samples)
        held = len(self._smoother) + len(self._raw) + len(self._baseline)
        return held + effort + len(self._activity)

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
        self._raw.append((t_s, smo2_pct))
        for t, y in self._smoother.push(t_s, smo2_pct):
            out.extend(self._on_smoothed(t, y))
        return out

    def add_activity(self, t_s: float, value: float) -> None:
        """Feed one activity sample (power W or HR bpm, as ``activity_kind``).

        Without an ``activity_threshold`` (live use: no session to derive it from), power
        is split into work and rest per effort, by :func:`two_level_threshold` over the
        samples from ``activity_lead_s`` before its onset to the decision (rest, work and
        recovery are all in there); when they span less than
        :data:`~processors.physiology.SMO2_AUTO_POWER_MIN_SPREAD_W` the power says nothing
        and the end of work comes from SmO2.
        """
        if not (math.isfinite(t_s) and math.isfinite(value)):
            raise OxygenationInputError(f"activity sample ({t_s} s, {value}) is not finite")
        self._activity.add(t_s, value)
        if self._phase is _Phase.REST:
            # At rest only the lead before a possible onset is needed.
            self._activity.forget_before(t_s - self._activity.lead_s - self._smoother_lag())

    def flush(self) -> list[EffortRecovery]:
        """End of data: smooth the remaining samples and close any open effort."""
        out: list[EffortRecovery] = []
        for t, y in self._smoother.flush():
            out.extend(self._on_smoothed(t, y))
        out.extend(self._on_gap())
        self._last_raw_t = None
        return out

    def _smoother_lag(self) -> float:
        # Smoothed samples trail the input by up to half the window plus one sample interval.
        return self._smoother.half_window + self._max_gap

    # --- state machine over smoothed samples -------------------------------------------------
    def _on_gap(self) -> list[EffortRecovery]:
        out: list[EffortRecovery] = []
        if self._effort is not None:
            out.extend(self._close())
        self._baseline.restart_window()
        return out

    def _live_at(self, t: float) -> float:
        # Smoothed samples come out in input order, one per live sample: pair them up.
        while self._raw and self._raw[0][0] < t:
            self._raw.popleft()
        if self._raw and self._raw[0][0] == t:
            return self._raw.popleft()[1]
        raise AssertionError(f"smoothed sample at {t} s has no live sample")  # pragma: no cover

    def _on_smoothed(self, t: float, y: float) -> list[EffortRecovery]:
        raw = self._live_at(t)
        if self._phase is _Phase.REST:
            return self._rest_sample(t, raw, y)
        effort = self._effort
        assert effort is not None
        if self._phase is _Phase.POST:
            return self._post_sample(effort, t, raw, y)
        if self._phase is _Phase.RECOVERY:
            return self._recovery_sample(effort, t, raw, y)
        return self._effort_sample(effort, t, raw, y)

    def _rest_sample(self, t: float, raw: float, y: float) -> list[EffortRecovery]:
        self._baseline.expire(t)
        b = self._baseline.level
        if b is not None and y < b - self._drop:
            self._start_effort(t, raw, y, b, self._baseline.rest_live)
            return []
        self._baseline.add(t, raw, y)
        return []

    def _start_effort(
        self, t: float, raw: float, y: float, baseline: float, rest_live: tuple[float, ...]
    ) -> None:
        self._phase = _Phase.EFFORT
        self._effort = OpenEffort.begin(t, raw, y, baseline, rest_live)

    def _effort_sample(self, e: OpenEffort, t: float, raw: float, y: float) -> list[EffortRecovery]:
        """Desaturated, recovery not located yet: track the low and wait for the rise."""
        e.append(t, raw, y, self._horizon)
        if y < e.baseline - self._drop:
            e.t_below = t
        e.y_low = min(e.y_low, y)
        halfway = (e.baseline + e.y_low) / 2.0
        if y > e.y_high:
            e.y_high, e.t_high = y, t
        if e.y_high > halfway and y <= e.y_high - self._drop:
            # Climbed past halfway, then desaturating again before recovery: a new effort on
            # the same baseline, starting where SmO2 turned down.
            return self._restart(e, t, raw, y, onset=e.t_high, until=e.t_high)
        if y <= halfway:
            e.y_high, e.t_high = y, t
            return []
        if y >= max(halfway, e.baseline - self._drop):
            # Clearly recovering: locate the end of work and time the recovery from it.
            if not self._work_end.locate(e, until=t):
                return self._discard(e)
            self._phase = _Phase.RECOVERY
            if self._recovery.scan(e):
                self._phase = _Phase.POST
            return []
        return []

    def _recovery_sample(
        self, e: OpenEffort, t: float, raw: float, y: float
    ) -> list[EffortRecovery]:
        """Recovery located, waiting for the T95 crossing."""
        e.append(t, raw, y, self._horizon)
        if y > e.y_high:
            e.y_high, e.t_high = y, t
        if y <= e.y_high - self._drop:
            return self._restart(e, t, raw, y, onset=e.t_high, until=None)
        if self._recovery.scan(e):
            self._phase = _Phase.POST
            return []
        assert e.work_end is not None
        if t - e.work_end > self._max_recovery:
            return self._close()
        return []

    def _post_sample(self, e: OpenEffort, t: float, raw: float, y: float) -> list[EffortRecovery]:
        """Recovered: watch for the overshoot peak (or the next effort)."""
        assert e.t_peak is not None
        assert e.y_peak is not None
        if y < e.baseline - self._drop:
            out = self._close()
            self._start_effort(t, raw, y, e.baseline, e.rest_live)
            return out
        e.append(t, raw, y, self._horizon)
        if y > e.y_peak:
            e.t_peak, e.y_peak = t, y
        if e.watch_until is not None:
            return self._close() if t >= e.watch_until else []
        t95 = self._recovery.smoothed_t95(e)
        assert t95 is not None
        if t - t95 >= self._overshoot_window:
            # The smoothed trace crosses the 95% level early (noise); when the fitted curve
            # crosses it later than the data reach, watch on until it does (plus the
            # overshoot window), once, and no longer than max_recovery_s after work.
            assert e.work_end is not None
            _, fitted = self._recovery.fitted_t95(e)
            if fitted is not None and fitted > t:
                limit = e.work_end + self._max_recovery
                e.watch_until = min(fitted + self._overshoot_window, limit)
                if t < e.watch_until:
                    return []
            return self._close()
        return []

    def _restart(
        self,
        e: OpenEffort,
        t: float,
        raw: float,
        y: float,
        *,
        onset: float,
        until: float | None,
    ) -> list[EffortRecovery]:
        if e.work_end is None and not self._work_end.locate(e, until=until):
            out = self._discard(e)
        else:
            out = self._close()
        self._start_effort(t, raw, y, e.baseline, e.rest_live)
        assert self._effort is not None
        self._effort.onset = onset
        self._effort.t_below = onset
        return out

    def _discard(self, e: OpenEffort) -> list[EffortRecovery]:
        self.rejected_short += 1
        self._effort = None
        self._phase = _Phase.REST
        self._baseline.restart_window()
        return []

    def _close(self) -> list[EffortRecovery]:
        e = self._effort
        assert e is not None
        if e.work_end is None and not self._work_end.locate(e, until=None):
            return self._discard(e)
        self._effort = None
        self._phase = _Phase.REST
        self._baseline.restart_window()
        assert e.work_end is not None
        if not self._activity.confirms(e.onset, e.work_end, e.activity_threshold):
            self.rejected_without_activity += 1
            return []
        return [self._recovery.finish(e)]


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


def analyse_session(
    t_s: npt.ArrayLike,
    smo2_pct: npt.ArrayLike,
    *,
    activity: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
    activity_threshold: float | None = None,
    activity_kind: ActivityKind = "power",
    slow_after_s: float = ph.SMO2_SLOW_RECOVERY_S,
    **settings: Unpack[DetectorSettings],
) -> OxygenRecovery:
    """Efforts and recovery time of one session from its live SmO2 samples (s, %).

    ``activity`` = (times s, power W or HR bpm as ``activity_kind``) confirms efforts and
    marks the end of work; without an explicit ``activity_threshold`` it is
    :func:`two_level_threshold` of the activity values.
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
    detector = EffortDetector(
        activity_threshold=activity_threshold, activity_kind=activity_kind, **settings
    )
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
