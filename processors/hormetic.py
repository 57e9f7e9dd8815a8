"""Morning HR elevated and grip flat for three days running: past the hormetic zone.

ARTICLE: "if your morning heart rate is elevated and your grip strength feels flat for
three days running, you have probably drifted past the hormetic zone. Back off intensity
for 48 hours". The definitions (see :mod:`processors.physiology`, "Morning HR and grip"):

* *elevated*: a day's resting HR (bpm) lies above the established baseline's mean +
  elevated_sd·SD (:func:`processors.trends.daily_trend`'s band, widened from the normal
  band's 0.5·SD to the day-to-day noise, 1·SD); no decision on a provisional baseline;
* *flat*: a grip test's MVC (kg) shows no real rise over the athlete's MVC baseline (their
  tests on days d − 35 … d − run_days): MVC < mean·(1 + z·√2·CV), the test noise of
  :func:`processors.grip.mvc_noise` / :func:`processors.grip.real_drop_threshold`;
* *three days running*: days d − run_days + 1 … d, each with a morning above the band, and
  at least ``min_grip_tests`` grip tests among them, all flat.

Missing data decides nothing: a day without a morning reading (or no grip test yet, or a
baseline not yet known) leaves the rule undecided (``evaluable`` False), so a run is never
raised across a gap and a gap never clears one; a measured morning in the band, or a grip
test that rose, decides "not met".
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from processors import physiology as ph
from processors.alerts import BACK_OFF_UNTIL_KEY, RuleEvaluation
from processors.grip import mvc_noise, real_drop_threshold
from processors.rules import DEFAULT_THRESHOLDS, RuleThresholds, evaluation_for
from processors.trends import daily_trend


@dataclass(frozen=True, slots=True)
class GripOnDay:
    """One grip test's MVC (kg), ``days_back`` days before the evaluation day (0 = that day)."""

    days_back: int
    mvc_kg: float


@dataclass(frozen=True, slots=True)
class HrGripRun:
    """The verdict on day d and the numbers it was decided on.

    ``run_hr_bpm`` are the run's mornings, oldest first (None: no reading that day);
    ``band_high_bpm`` the top of the resting-HR band; ``grip_rise_pct`` the largest MVC
    change over the grip baseline among the run's tests (percent; negative: weaker) and
    ``grip_rise_threshold_pct`` the rise that counts as real (1.65·√2·CV).
    """

    triggered: bool
    evaluable: bool
    reason: str
    run_days: int
    run_hr_bpm: tuple[float | None, ...]
    band_high_bpm: float | None
    baseline_mean_bpm: float | None
    baseline_sd_bpm: float | None
    grip_tests_in_run: int
    grip_baseline_kg: float | None
    grip_baseline_tests: int
    grip_noise_cv_pct: float | None
    grip_rise_pct: float | None
    grip_rise_threshold_pct: float | None

    def evidence(self) -> dict[str, float]:
        """Unit-named numbers for an alert (only those that were computed)."""
        named: dict[str, float | None] = {
            "band_high_bpm": self.band_high_bpm,
            "baseline_mean_bpm": self.baseline_mean_bpm,
            "baseline_sd_bpm": self.baseline_sd_bpm,
            "grip_tests_in_run": float(self.grip_tests_in_run),
            "grip_baseline_mvc_kg": self.grip_baseline_kg,
            "grip_baseline_tests": float(self.grip_baseline_tests),
            "grip_noise_cv_pct": self.grip_noise_cv_pct,
            "grip_rise_pct": self.grip_rise_pct,
            "grip_rise_threshold_pct": self.grip_rise_threshold_pct,
        }
        for back, hr in zip(range(self.run_days - 1, -1, -1), self.run_hr_bpm, strict=True):
            named[f"resting_hr_{back}_days_ago_bpm"] = hr
        return {k: v for k, v in named.items() if v is not None}


def hr_grip_run(
    resting_hr_history: npt.ArrayLike,
    grip_tests: Sequence[GripOnDay],
    *,
    run_days: int = ph.HR_GRIP_RUN_DAYS,
    min_grip_tests: int = ph.HR_GRIP_MIN_GRIP_TESTS,
    elevated_sd: float = ph.HR_GRIP_ELEVATED_SD,
    first_day_back: int = ph.BASELINE_FIRST_DAY_BACK,
    last_day_back: int = ph.BASELINE_LAST_DAY_BACK,
    baseline_min_days: int = ph.BASELINE_MIN_VALID_DAYS,
    grip_min_baseline_tests: int = ph.GRIP_MIN_BASELINE_SESSIONS,
    grip_noise_z: float = ph.GRIP_NOISE_Z,
) -> HrGripRun:
    """The rule on day d: ``resting_hr_history`` is a daily history in bpm ending on d (NaN
    = no accepted reading), ``grip_tests`` the athlete's grip MVCs by day (any order).
    See the module docstring for the definitions and how missing days count."""
    if run_days < 1:
        raise ValueError(f"run_days must be ≥ 1 day, got {run_days}")
    history = np.asarray(resting_hr_history, dtype=np.float64)
    trend = daily_trend(
        history,
        "resting_hr_bpm",
        first_day_back=first_day_back,
        last_day_back=last_day_back,
        min_valid_days=baseline_min_days,
        band_sd=elevated_sd,
    )
    run = history[-run_days:] if history.size >= run_days else history
    pad = run_days - run.size
    run_hr = (None,) * pad + tuple(None if math.isnan(v) else float(v) for v in run)
    in_run = [g for g in grip_tests if 0 <= g.days_back < run_days]
    before = [g.mvc_kg for g in grip_tests if run_days <= g.days_back <= first_day_back]
    noise = mvc_noise(before, min_sessions=grip_min_baseline_tests)
    grip_base = float(np.mean(before)) if before else None
    rise_thr = None if noise.cv is None else real_drop_threshold(noise.cv, grip_noise_z)
    rise = (
        None if grip_base is None or not in_run else max(g.mvc_kg / grip_base - 1.0 for g in in_run)
    )
    established = trend.baseline_status == "established"
    band_high = trend.band_high if established else None

    def result(triggered: bool, evaluable: bool, reason: str) -> HrGripRun:
        return HrGripRun(
            triggered=triggered,
            evaluable=evaluable,
            reason=reason,
            run_days=run_days,
            run_hr_bpm=run_hr,
            band_high_bpm=band_high,
            baseline_mean_bpm=trend.baseline_mean if established else None,
            baseline_sd_bpm=trend.baseline_sd if established else None,
            grip_tests_in_run=len(in_run),
            grip_baseline_kg=grip_base,
            grip_baseline_tests=len(before),
            grip_noise_cv_pct=None if noise.cv is None else 100.0 * noise.cv,
            grip_rise_pct=None if rise is None else 100.0 * rise,
            grip_rise_threshold_pct=None if rise_thr is None else 100.0 * rise_thr,
        )

    if band_high is None:
        return result(False, False, f"resting-HR baseline needs ≥ {baseline_min_days} valid days")
    in_band = [i for i, hr in enumerate(run_hr) if hr is not None and hr <= band_high]
    if in_band:
        back = run_days - 1 - in_band[-1]
        return result(
            False,
            True,
            f"resting HR {run_hr[in_band[-1]]:.1f} bpm {back} day(s) ago is within its band "
            f"(to {band_high:.1f} bpm)",
        )
    if rise is not None and rise_thr is not None and round(rise, 9) >= round(rise_thr, 9):
        return result(
            False,
            True,
            f"grip rose {100 * rise:+.1f}% over its baseline, beyond its noise "
            f"({100 * rise_thr:.1f}%): not flat",
        )
    missing = [run_days - 1 - i for i, hr in enumerate(run_hr) if hr is None]
    if missing:
        days = ", ".join(f"d−{m}" if m else "today" for m in missing)
        return result(False, False, f"no morning reading on {days}: not {run_days} days running")
    if rise_thr is None:
        return result(
            False,
            False,
            f"grip noise needs {grip_min_baseline_tests} grip tests before the run, has "
            f"{len(before)}",
        )
    if len(in_run) < min_grip_tests:
        return result(
            False,
            False,
            f"{len(in_run)} grip tests in the {run_days}-day run (need {min_grip_tests})",
        )
    return result(
        True,
        True,
        f"resting HR above its band on {run_days} days running and grip flat in "
        f"{len(in_run)} test(s)",
    )


def evaluate_hr_grip_flat(
    resting_hr_history: npt.ArrayLike,
    grip_tests: Sequence[GripOnDay],
    at_ns: int,
    thresholds: RuleThresholds = DEFAULT_THRESHOLDS,
) -> RuleEvaluation:
    """``hr_grip_flat`` on the last day of ``resting_hr_history``, evaluated at ``at_ns``
    (ns since the epoch): the back-off window of ``hr_grip_back_off_h`` runs from then, and
    its end is in the evidence (``back_off_until_s``, s since the epoch) and the message."""
    th = thresholds
    run = hr_grip_run(
        resting_hr_history,
        grip_tests,
        run_days=th.hr_grip_run_days,
        min_grip_tests=th.hr_grip_min_grip_tests,
        elevated_sd=th.hr_grip_elevated_sd,
        first_day_back=th.baseline_first_day_back,
        last_day_back=th.baseline_last_day_back,
        baseline_min_days=th.baseline_min_valid_days,
        grip_min_baseline_tests=th.grip_min_baseline_sessions,
        grip_noise_z=th.grip_noise_z,
    )
    evidence = run.evidence()
    if run.triggered:
        until_s = at_ns / 1e9 + th.hr_grip_back_off_h * 3600.0
        until = dt.datetime.fromtimestamp(until_s, tz=dt.UTC)
        evidence["back_off_h"] = th.hr_grip_back_off_h
        evidence[BACK_OFF_UNTIL_KEY] = until_s
        hrs = ", ".join(f"{hr:.0f}" for hr in run.run_hr_bpm if hr is not None)
        message = (
            f"Resting HR above its baseline's day-to-day noise (from "
            f"{run.band_high_bpm:.1f} bpm) on each of the last {run.run_days} mornings "
            f"({hrs} bpm) and grip flat ({run.grip_rise_pct:+.1f}% "
            f"against its baseline; a real rise from {run.grip_rise_threshold_pct:.1f}%): "
            f"back off intensity until {until:%Y-%m-%d %H:%M} UTC "
            f"({th.hr_grip_back_off_h:g} h)."
        )
    else:
        message = f"hr_grip_flat not met: {run.reason}"
    return evaluation_for(
        "hr_grip_flat", run.triggered if run.evaluable else None, message, evidence
    )
