"""Athlete profiles: the ONE place where a kind of athlete changes the rule defaults.

* ``default`` — the thresholds of :class:`processors.rules.RuleThresholds` as they are.
* ``older`` — (ARTICLE: late fifties; REVIEW: blunted redox responses with age) the recovery
  window between high-intensity sessions stretches from 48 h to 72 h.
* ``elite`` — athletes stacking sessions need a passive day after every third high-intensity
  session.

:func:`thresholds_for` gives a profile's thresholds with the config file's overrides on top.
:func:`evaluate_spacing` is the informational ``hi_spacing`` rule.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from processors import physiology as ph
from processors.alerts import RuleEvaluation
from processors.rules import DEFAULT_THRESHOLDS, RuleThresholds, evaluation_for


@dataclass(frozen=True, slots=True)
class Profile:
    """A named set of rule defaults."""

    name: str
    description: str
    thresholds: RuleThresholds


PROFILES: Mapping[str, Profile] = {
    p.name: p
    for p in (
        Profile("default", "Rule defaults from docs/rules.md.", RuleThresholds()),
        Profile(
            "older",
            f"Late fifties and older: {ph.HIGH_INTENSITY_SPACING_OLDER_H:g} h between "
            "high-intensity sessions.",
            RuleThresholds(hi_spacing_h=ph.HIGH_INTENSITY_SPACING_OLDER_H),
        ),
        Profile(
            "elite",
            f"Stacked training: a passive day after every {ph.ELITE_PASSIVE_DAY_EVERY}rd "
            "high-intensity session.",
            RuleThresholds(passive_day_every=ph.ELITE_PASSIVE_DAY_EVERY),
        ),
    )
}


def thresholds_for(name: str, overrides: Mapping[str, Any] | None = None) -> RuleThresholds:
    """Thresholds of profile ``name`` with ``overrides`` (field → value) applied on top.

    Raises ValueError naming an unknown profile or threshold.
    """
    try:
        profile = PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown athlete profile {name!r}; choose one of: {known}") from None
    return profile.thresholds.with_overrides(overrides or {})


def evaluate_spacing(
    high_intensity_starts: Sequence[datetime],
    thresholds: RuleThresholds = DEFAULT_THRESHOLDS,
    *,
    session_days: Collection[date] | None = None,
) -> RuleEvaluation:
    """``hi_spacing`` (info) for the LATEST high-intensity session.

    Active when it started less than ``hi_spacing_h`` hours after the previous
    high-intensity session, or — with ``passive_day_every = k`` — when it is the (k+1)-th
    high-intensity session in a row with no passive day between. A passive day is a
    calendar day without any session; ``session_days`` lists the days with any session
    (high-intensity or not; defaults to the high-intensity days). Times must be comparable
    (all naive or all aware).
    """
    starts = sorted(high_intensity_starts)
    if len(starts) < 2:
        return evaluation_for(
            "hi_spacing", False, "hi_spacing: fewer than two high-intensity sessions", {}
        )
    th = thresholds
    gap_h = (starts[-1] - starts[-2]).total_seconds() / 3600.0
    days_with_sessions = set(session_days or ()) | {s.date() for s in starts}
    run = 1
    for earlier, later in zip(reversed(starts[:-1]), reversed(starts[1:]), strict=True):
        if _has_passive_day(earlier.date(), later.date(), days_with_sessions):
            break
        run += 1
    too_close = gap_h < th.hi_spacing_h
    k = th.passive_day_every
    too_many = k is not None and run > k
    evidence: dict[str, float] = {
        "gap_h": gap_h,
        "min_gap_h": th.hi_spacing_h,
        "sessions_without_passive_day": float(run),
    }
    if k is not None:
        evidence["passive_day_every"] = float(k)
    reasons = []
    if too_close:
        reasons.append(
            f"only {gap_h:.0f} h after the previous one (profile: {th.hi_spacing_h:g} h)"
        )
    if too_many:
        reasons.append(f"session {run} in a row without a passive day (profile: every {k})")
    if reasons:
        message = "High-intensity session " + " and ".join(reasons) + "."
    else:
        message = "hi_spacing met: high-intensity sessions are spaced per the profile"
    return evaluation_for("hi_spacing", too_close or too_many, message, evidence)


def _has_passive_day(first: date, last: date, days_with_sessions: set[date]) -> bool:
    day = first + timedelta(days=1)
    while day < last:
        if day not in days_with_sessions:
            return True
        day += timedelta(days=1)
    return False
