"""Power plateau: session power at matched effort flat for three weeks despite compliance.

ARTICLE: "If your wattage has flatlined for three weeks despite perfect compliance, stop
looking at the training plan—look at recovery hygiene." The definitions (see
:mod:`processors.physiology`, "Power plateau"), over the ``window_days`` ending at the
session evaluated:

* *matched effort*: sessions with the same session RPE (CR-10, rounded to a whole point);
  an RPE with ≥ 2 sessions is a group. The trend is the slope of mean session power (W)
  over time within the groups: one least-squares line with a level per group (power and
  time centred within each group), so sessions are only ever compared at equal effort;
* *flat*: the line's change over the window is below the smallest worthwhile change,
  max(swc_sd × the SD of the sessions about the line, min_rise × mean power);
* *compliance*: ≥ ``min_sessions_per_week`` sessions (any, logged) in each week of the
  window;
* undecided with fewer than ``min_matched`` grouped sessions or when they span less than
  ``min_span_days``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from processors import physiology as ph
from processors.alerts import RuleEvaluation
from processors.rules import DEFAULT_THRESHOLDS, RuleThresholds, evaluation_for

NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True, slots=True)
class PlateauSession:
    """One finished session: its start (ns since the epoch), RPE (CR-10) and mean power (W);
    either may be None (not entered, no power meter)."""

    start_ns: int
    rpe: float | None
    power_w: float | None


@dataclass(frozen=True, slots=True)
class PowerPlateau:
    """The finding for one session and what it was decided on (power in W, days)."""

    triggered: bool
    evaluable: bool
    reason: str
    window_days: int
    sessions_per_week: tuple[int, ...]
    """Sessions logged in each week of the window, the oldest week first."""
    matched_sessions: int
    rpe_groups: int
    span_days: float | None
    slope_w_per_day: float | None
    change_w: float | None
    change_pct: float | None
    swc_w: float | None
    noise_sd_w: float | None
    mean_power_w: float | None

    def evidence(self) -> dict[str, float]:
        """Unit-named numbers for the finding (only those that were computed)."""
        named: dict[str, float | None] = {
            "matched_sessions": float(self.matched_sessions),
            "rpe_groups": float(self.rpe_groups),
            "span_days": self.span_days,
            "slope_w_per_day": self.slope_w_per_day,
            "change_over_window_w": self.change_w,
            "change_over_window_pct": self.change_pct,
            "smallest_worthwhile_change_w": self.swc_w,
            "noise_sd_w": self.noise_sd_w,
            "mean_power_w": self.mean_power_w,
        }
        weeks = len(self.sessions_per_week)
        for i, n in enumerate(self.sessions_per_week):
            named[f"sessions_week_{i + 1}_of_{weeks}"] = float(n)
        return {k: v for k, v in named.items() if v is not None}


def rpe_group(rpe: float) -> int:
    """The matched-effort group of a session RPE: the whole CR-10 point, halves rounded up."""
    return math.floor(rpe + 0.5)


def power_plateau(
    sessions: Sequence[PlateauSession],
    now_ns: int,
    *,
    window_days: int = ph.POWER_PLATEAU_WINDOW_DAYS,
    min_sessions_per_week: int = ph.POWER_PLATEAU_MIN_SESSIONS_PER_WEEK,
    min_matched: int = ph.POWER_PLATEAU_MIN_MATCHED_SESSIONS,
    min_span_days: int = ph.POWER_PLATEAU_MIN_SPAN_DAYS,
    swc_sd: float = ph.NORMAL_BAND_SD,
    min_rise: float = ph.POWER_PLATEAU_MIN_RISE,
) -> PowerPlateau:
    """The plateau finding at ``now_ns`` (the evaluated session's start) over the sessions
    that started in (now − window_days, now]; see the module docstring."""
    if window_days < 1:
        raise ValueError(f"window_days must be ≥ 1, got {window_days}")
    window = [s for s in sessions if 0 <= now_ns - s.start_ns < window_days * NS_PER_DAY]
    weeks = max(1, window_days // 7)
    week_len_ns = window_days * NS_PER_DAY / weeks
    per_week = [0] * weeks
    for s in window:
        per_week[weeks - 1 - min(int((now_ns - s.start_ns) // week_len_ns), weeks - 1)] += 1
    groups: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for s in window:
        if s.rpe is not None and s.rpe > 0 and s.power_w is not None and s.power_w > 0:
            groups[rpe_group(s.rpe)].append(((s.start_ns - now_ns) / NS_PER_DAY, s.power_w))
    kept = [g for g in groups.values() if len(g) >= 2]
    n = sum(len(g) for g in kept)
    t_all = [t for g in kept for t, _ in g]
    span = max(t_all) - min(t_all) if t_all else None

    def result(
        triggered: bool,
        evaluable: bool,
        reason: str,
        slope: float | None = None,
        swc: float | None = None,
        noise: float | None = None,
        mean: float | None = None,
    ) -> PowerPlateau:
        change = None if slope is None else slope * window_days
        return PowerPlateau(
            triggered=triggered,
            evaluable=evaluable,
            reason=reason,
            window_days=window_days,
            sessions_per_week=tuple(per_week),
            matched_sessions=n,
            rpe_groups=len(kept),
            span_days=span,
            slope_w_per_day=slope,
            change_w=change,
            change_pct=None if change is None or not mean else 100.0 * change / mean,
            swc_w=swc,
            noise_sd_w=noise,
            mean_power_w=mean,
        )

    if n < max(min_matched, 2) or span is None or span < min_span_days:
        return result(
            False,
            False,
            f"{n} sessions at matched effort (RPE and power, ≥ 2 per RPE) over "
            f"{0.0 if span is None else span:.0f} days (need {min_matched} over "
            f"{min_span_days} days)",
        )
    x = np.concatenate([np.array([t for t, _ in g]) - np.mean([t for t, _ in g]) for g in kept])
    y = np.concatenate([np.array([p for _, p in g]) - np.mean([p for _, p in g]) for g in kept])
    sxx = float(x @ x)
    if sxx == 0.0:  # only with min_span_days 0: every grouped session at one time
        return result(False, False, "the sessions at matched effort share one time: no trend")
    slope = float(x @ y) / sxx
    dof = n - len(kept) - 1
    residuals = y - slope * x
    noise = math.sqrt(float(residuals @ residuals) / dof) if dof > 0 else None
    mean = float(np.mean([p for g in kept for _, p in g]))
    swc = max(swc_sd * (noise or 0.0), min_rise * mean)
    change = slope * window_days
    if any(c < min_sessions_per_week for c in per_week):
        return result(
            False,
            True,
            f"sessions per week {per_week} (need {min_sessions_per_week} in each): "
            "compliance not shown",
            slope,
            swc,
            noise,
            mean,
        )
    if round(change, 9) >= round(swc, 9):
        return result(
            False,
            True,
            f"power at matched effort rose {change:+.1f} W over {window_days} days "
            f"(worthwhile from {swc:.1f} W)",
            slope,
            swc,
            noise,
            mean,
        )
    return result(
        True,
        True,
        f"power at matched effort changed {change:+.1f} W over {window_days} days "
        f"(< {swc:.1f} W worthwhile) with {sum(per_week)} sessions logged",
        slope,
        swc,
        noise,
        mean,
    )


def evaluate_power_plateau(
    sessions: Sequence[PlateauSession],
    now_ns: int,
    thresholds: RuleThresholds = DEFAULT_THRESHOLDS,
) -> tuple[PowerPlateau, RuleEvaluation]:
    """``power_plateau`` at ``now_ns`` (the evaluated session's start): the finding and its
    evaluation (info: never raised as an alert; published with the session)."""
    th = thresholds
    found = power_plateau(
        sessions,
        now_ns,
        window_days=th.power_plateau_window_days,
        min_sessions_per_week=th.power_plateau_min_sessions_per_week,
        min_matched=th.power_plateau_min_matched_sessions,
        min_span_days=th.power_plateau_min_span_days,
        swc_sd=th.normal_band_sd,
        min_rise=th.power_plateau_min_rise,
    )
    if found.triggered:
        message = (
            f"Power at matched effort has been flat for {found.window_days} days "
            f"({found.change_w:+.1f} W, {found.change_pct:+.1f}%; worthwhile from "
            f"{found.swc_w:.1f} W) while {sum(found.sessions_per_week)} sessions were "
            "logged."
        )
    else:
        message = f"power_plateau not met: {found.reason}"
    evaluation = evaluation_for(
        "power_plateau", found.triggered if found.evaluable else None, message, found.evidence()
    )
    return found, evaluation
