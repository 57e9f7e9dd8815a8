"""Athlete profiles and the hi_spacing rule."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta

import pytest

from processors import physiology as ph
from processors.profiles import PROFILES, evaluate_spacing, thresholds_for
from processors.rules import RuleThresholds

MONDAY = datetime(2026, 3, 2, 7, 0)


def test_profiles_differ_from_default_only_where_the_article_says() -> None:
    default = thresholds_for("default").to_dict()
    older = thresholds_for("older").to_dict()
    elite = thresholds_for("elite").to_dict()
    assert {k for k in default if default[k] != older[k]} == {"hi_spacing_h"}
    assert older["hi_spacing_h"] == ph.HIGH_INTENSITY_SPACING_OLDER_H == 72.0
    assert {k for k in default if default[k] != elite[k]} == {"passive_day_every"}
    assert elite["passive_day_every"] == ph.ELITE_PASSIVE_DAY_EVERY
    assert default == RuleThresholds().to_dict()
    assert set(PROFILES) == {"default", "older", "elite"}


def test_config_overrides_apply_on_top_of_a_profile() -> None:
    th = thresholds_for("older", {"rhr_creep_delta_bpm": 6.0})
    assert th.hi_spacing_h == 72.0
    assert th.rhr_creep_delta_bpm == 6.0
    assert dataclasses.is_dataclass(th)


def test_unknown_profile_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match="default, elite, older"):
        thresholds_for("veteran")


@pytest.mark.parametrize(
    ("gap_h", "profile", "expected"),
    [
        (47.0, "default", True),
        (48.0, "default", False),
        (60.0, "default", False),
        (60.0, "older", True),
        (72.0, "older", False),
    ],
)
def test_high_intensity_sessions_closer_than_the_profile_window_are_flagged(
    gap_h: float, profile: str, expected: bool
) -> None:
    starts = [MONDAY, MONDAY + timedelta(hours=gap_h)]
    result = evaluate_spacing(starts, thresholds_for(profile))
    assert result.rule_id == "hi_spacing"
    assert result.active is expected
    assert result.evidence["gap_h"] == gap_h


def test_elite_needs_a_passive_day_after_every_third_session() -> None:
    elite = thresholds_for("elite")
    every_day = [MONDAY + timedelta(days=i) for i in range(4)]
    # Daily sessions are also < 48 h apart; lift the spacing to isolate the passive-day rule.
    elite = elite.with_overrides({"hi_spacing_h": 0.0})
    assert evaluate_spacing(every_day[:3], elite).active is False
    fourth = evaluate_spacing(every_day, elite)
    assert fourth.active is True
    assert fourth.evidence["sessions_without_passive_day"] == 4
    # Days 0, 1, 2, then a passive day 3, then a session on day 4: fine.
    with_rest = [*every_day[:3], MONDAY + timedelta(days=4)]
    assert evaluate_spacing(with_rest, elite).active is False


def test_an_easy_session_on_the_day_between_is_not_a_passive_day() -> None:
    elite = thresholds_for("elite", {"hi_spacing_h": 0.0})
    hi = [
        MONDAY,
        MONDAY + timedelta(days=1),
        MONDAY + timedelta(days=2),
        MONDAY + timedelta(days=4),
    ]
    easy_day: set[date] = {(MONDAY + timedelta(days=3)).date()}
    assert evaluate_spacing(hi, elite).active is False
    assert evaluate_spacing(hi, elite, session_days=easy_day).active is True


def test_single_session_cannot_be_too_close() -> None:
    assert evaluate_spacing([MONDAY]).active is False
