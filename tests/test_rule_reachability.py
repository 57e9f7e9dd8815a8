"""Every catalogue rule is evaluated on the processing path, or is named here as not yet.

A rule can be in the catalogue, the thresholds, docs/rules.md and the report and still
never run. These tests feed one demo day (a morning reading, a training session with SmO2
efforts, power and RPE, a grip test) and then the athlete's RPE for that session, entered
after it ended (``redox-streamer rpe``: a hard one, so ``hi_spacing`` spaces it), through
:meth:`AthleteState.process` and record every rule the alert book is asked to evaluate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from processors.alerts import Alert, AlertBook, RuleEvaluation
from processors.profiles import thresholds_for
from processors.rules import CATALOGUE, RuleThresholds
from streamer.athlete import AthleteState, SessionRpe
from streamer.demo.history import day_records, history_dates, scenarios

#: Catalogue rules with no production caller yet, each with the reason. Wiring one
#: makes ``test_every_catalogue_rule_is_evaluated_from_athlete_state_process`` fail until
#: it is removed from here, so this list cannot go stale.
NOT_YET_REACHABLE: Mapping[str, str] = {}


def evaluations_over_one_day(
    monkeypatch: pytest.MonkeyPatch,
    thresholds: RuleThresholds | None = None,
    grip_drop_fraction: float | None = None,
) -> dict[str, RuleEvaluation]:
    """Rule id → its last evaluation by AthleteState over one demo day (morning reading,
    session with SmO2 efforts, power and RPE, grip test around it); ``grip_drop_fraction``
    replaces the day's post-session grip drop (recovering with τ = 240 s)."""
    seen: dict[str, RuleEvaluation] = {}
    update_all = AlertBook.update_all

    def spy(book: AlertBook, evaluations: list[RuleEvaluation], at_ns: int) -> list[Alert]:
        seen.update({e.rule_id: e for e in evaluations})
        return update_all(book, evaluations, at_ns)

    monkeypatch.setattr(AlertBook, "update_all", spy)
    scenario = scenarios(1, 1)[0]
    (plan,) = scenario.days
    assert plan.session is not None
    assert plan.grip is not None
    if grip_drop_fraction is not None:
        grip = dataclasses.replace(
            plan.grip, drop_fraction=grip_drop_fraction, recovery_tau_s=240.0
        )
        plan = dataclasses.replace(plan, grip=grip)
    (day,) = history_dates(1)
    state = AthleteState(scenario.athlete, thresholds=thresholds, live=False, hrv_every_s=60.0)
    last_t_ns = 0
    for device, record in day_records(scenario, plan, day):
        state.process(device, record)
        last_t_ns = max(last_t_ns, getattr(record, "t_ns", 0))
    state.process("command", SessionRpe(last_t_ns + 1, 9.0))
    state.close()
    return seen


def test_every_catalogue_rule_is_evaluated_from_athlete_state_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reached = set(evaluations_over_one_day(monkeypatch))
    assert reached <= set(CATALOGUE), "evaluated a rule the catalogue lacks"
    never = set(CATALOGUE) - reached - set(NOT_YET_REACHABLE)
    assert not never, f"catalogue rules no production path evaluates: {sorted(never)}"
    wired = set(NOT_YET_REACHABLE) & reached
    assert not wired, f"now evaluated: remove {sorted(wired)} from NOT_YET_REACHABLE"


def test_no_catalogue_rule_is_left_unreachable() -> None:
    # hi_spacing was the last one (no record said which sessions were high-intensity).
    assert not NOT_YET_REACHABLE


def test_athlete_state_grip_messages_use_its_overridden_thresholds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The demo's post tests are at 0, 5, 15 and 30 min; with recovery judged up to 5 min
    # (a config override) the signal message cites the 5-min test, not the default 15.
    th = thresholds_for("default", {"grip_signal_recovery_min": 5.0})
    signal = evaluations_over_one_day(monkeypatch, th, grip_drop_fraction=0.16)["grip_signal"]
    assert signal.active is True
    assert "by 5 min" in signal.message
