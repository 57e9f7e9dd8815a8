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
* **Mono-exponential fit with delay**
  (:func:`~processors.recovery_fit.fit_delayed_recovery`) on the live samples from t_w to
  the end of the watch (``overshoot_window_s`` after the smoothed trace's T95 crossing, or
  when the effort is cut; if the fitted curve then reaches the T95 level later than the
  data, the watch goes on once, to that time + ``overshoot_window_s``, at most
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

Where each part lives (the public names are importable from here):

* ``records.py`` — what comes out and what is refused: :class:`EffortRecovery`,
  :class:`OxygenRecovery`, :class:`OxygenationInputError`, the activity kinds.
* ``detector.py`` — :class:`EffortDetector`, the streaming entry point: input checks,
  smoothing, gaps, the activity feed.
* ``phases.py`` — the effort phase state machine (rest, effort, recovery, post): when an
  effort opens, is located, is recovered, is cut or restarts.
* ``baseline.py`` — the rest baseline b.
* ``effort.py`` — the state of the effort being watched.
* ``work_end.py`` — the end of work t_w and the work level m; too short or shallow efforts.
* ``activity.py`` — the power or HR stream: end of work, confirmation,
  :func:`two_level_threshold`.
* ``recovery.py`` — recovery timing: crossings (T½, T95, rate), the fit's T95, overshoot.
* ``session.py`` — :func:`analyse_session` and :func:`summarise_session` (session recovery
  time).
"""

from __future__ import annotations

from processors.oxygenation.activity import two_level_threshold
from processors.oxygenation.detector import DetectorSettings, EffortDetector
from processors.oxygenation.records import (
    ACTIVITY_KINDS,
    ActivityKind,
    EffortRecovery,
    FloatArray,
    OxygenationInputError,
    OxygenRecovery,
    WorkEndSource,
)
from processors.oxygenation.session import analyse_session, summarise_session

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
