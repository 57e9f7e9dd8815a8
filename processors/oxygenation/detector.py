"""The streaming SmO2 effort detector: live samples in, decided efforts out.

It checks and smooths the input, pairs each smoothed sample with its live one, treats a
gap over ``max_gap_s`` as the end of an effort, keeps the activity stream and hands the
smoothed samples to the phase state machine (:mod:`processors.oxygenation.phases`).
"""

from __future__ import annotations

import math
from collections import deque
from typing import TypedDict

from processors import physiology as ph
from processors.oxygenation.activity import ActivityWindow
from processors.oxygenation.baseline import RestBaseline
from processors.oxygenation.phases import EffortPhases
from processors.oxygenation.records import (
    ACTIVITY_KINDS,
    ActivityKind,
    EffortRecovery,
    OxygenationInputError,
)
from processors.oxygenation.recovery import RecoveryTimer
from processors.oxygenation.work_end import WorkEndLocator
from processors.smoothing import CentredMedian


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
        self._raw: deque[tuple[float, float]] = deque()  # live samples awaiting smoothing
        self._last_raw_t: float | None = None
        self._activity = ActivityWindow(activity_kind, activity_threshold, activity_lead_s)
        self._phases = EffortPhases(
            baseline=RestBaseline(baseline_window_s, baseline_max_age_s),
            activity=self._activity,
            work_end=WorkEndLocator(
                self._activity,
                min_effort_s=min_effort_s,
                min_desaturation_pct=min_desaturation_pct,
                level_window_s=work_level_window_s,
                plateau_pct=plateau_pct,
                rise_fraction=work_end_rise_fraction,
            ),
            recovery=RecoveryTimer(
                fraction=recovery_fraction,
                plateau_pct=plateau_pct,
                max_delay_s=max_delay_s,
                delay_step_s=delay_step_s,
                min_fit_r2=min_fit_r2,
            ),
            min_desaturation_pct=min_desaturation_pct,
            max_recovery_s=max_recovery_s,
            overshoot_window_s=overshoot_window_s,
            # Samples an open effort keeps: enough to reach back from a decision to the end
            # of work (≤ max_recovery_s) and over the work-level window before it.
            horizon_s=max_recovery_s + 2.0 * work_level_window_s + smoothing_window_s,
        )

    @property
    def rejected_short(self) -> int:
        """Desaturations dropped as too short or too shallow to be efforts."""
        return self._phases.rejected_short

    @property
    def rejected_without_activity(self) -> int:
        """Efforts dropped because the activity stream never reached the work threshold."""
        return self._phases.rejected_without_activity

    @property
    def buffered_samples(self) -> int:
        """Samples held in memory right now (smoothing, baseline, open effort, activity)."""
        held = len(self._smoother) + len(self._raw) + self._phases.buffered_samples
        return held + len(self._activity)

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
            out.extend(self._phases.interrupt())
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
        if self._phases.at_rest:
            # At rest only the lead before a possible onset is needed.
            self._activity.forget_before(t_s - self._activity.lead_s - self._smoother_lag())

    def flush(self) -> list[EffortRecovery]:
        """End of data: smooth the remaining samples and close any open effort."""
        out: list[EffortRecovery] = []
        for t, y in self._smoother.flush():
            out.extend(self._on_smoothed(t, y))
        out.extend(self._phases.interrupt())
        self._last_raw_t = None
        return out

    def _smoother_lag(self) -> float:
        # Smoothed samples trail the input by up to half the window plus one sample interval.
        return self._smoother.half_window + self._max_gap

    def _live_at(self, t: float) -> float:
        # Smoothed samples come out in input order, one per live sample: pair them up.
        while self._raw and self._raw[0][0] < t:
            self._raw.popleft()
        if self._raw and self._raw[0][0] == t:
            return self._raw.popleft()[1]
        raise AssertionError(f"smoothed sample at {t} s has no live sample")  # pragma: no cover

    def _on_smoothed(self, t: float, y: float) -> list[EffortRecovery]:
        return self._phases.on_sample(t, self._live_at(t), y)
