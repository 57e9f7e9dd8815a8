"""Alert records and the AlertBook lifecycle."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.alerts import Alert, AlertBook, AlertState, RuleEvaluation, Severity


def evaluation(active: bool | None, rule: str = "rhr_creep", delta: float = 6.0) -> RuleEvaluation:
    return RuleEvaluation(
        rule_id=rule,
        severity=Severity.PULL_BACK,
        active=active,
        message=f"{rule} evaluated",
        advice="Cut training volume by ~40% for one week, not 10%.",
        source="docs/rules.md",
        evidence={"delta_bpm": delta},
    )


def test_active_rule_is_raised_once_then_cleared_when_it_resolves() -> None:
    book = AlertBook("ana")
    raised = book.update(evaluation(True), at_ns=1)
    assert raised is not None
    assert raised.state is AlertState.RAISED
    assert raised.athlete == "ana"
    assert raised.raised_at_ns == 1
    assert raised.evidence["delta_bpm"] == 6.0
    assert book.update(evaluation(True, delta=7.0), at_ns=2) is None
    assert book.update(evaluation(True), at_ns=3) is None
    cleared = book.update(evaluation(False), at_ns=4)
    assert cleared is not None
    assert cleared.state is AlertState.CLEARED
    assert cleared.raised_at_ns == 1
    assert cleared.cleared_at_ns == 4
    assert cleared.evidence["delta_bpm"] == 6.0  # the evidence it was raised with
    assert book.open_alerts() == ()
    again = book.update(evaluation(True), at_ns=5)
    assert again is not None
    assert again.raised_at_ns == 5


def test_undecidable_evaluation_never_clears_an_alert() -> None:
    book = AlertBook("ana")
    book.update(evaluation(True), at_ns=1)
    assert book.update(evaluation(None), at_ns=2) is None
    assert book.is_raised("rhr_creep")


def test_clear_after_needs_consecutive_inactive_evaluations() -> None:
    book = AlertBook("ana", clear_after=2)
    book.update(evaluation(True), at_ns=1)
    assert book.update(evaluation(False), at_ns=2) is None
    assert book.update(evaluation(True), at_ns=3) is None  # resets the quiet count
    assert book.update(evaluation(False), at_ns=4) is None
    cleared = book.update(evaluation(False), at_ns=5)
    assert cleared is not None
    assert cleared.cleared_at_ns == 5


def test_rules_have_independent_lifecycles() -> None:
    book = AlertBook("ana")
    transitions = book.update_all(
        [evaluation(True, "rhr_creep"), evaluation(True, "hrv_downtrend")], at_ns=1
    )
    assert [a.rule_id for a in transitions] == ["rhr_creep", "hrv_downtrend"]
    cleared = book.update_all([evaluation(False, "hrv_downtrend")], at_ns=2)
    assert [a.rule_id for a in cleared] == ["hrv_downtrend"]
    assert [a.rule_id for a in book.open_alerts()] == ["rhr_creep"]


def test_state_round_trips_through_json_and_the_restored_book_does_not_re_raise() -> None:
    book = AlertBook("ana", clear_after=2)
    book.update(evaluation(True), at_ns=10)
    book.update(evaluation(False), at_ns=11)  # one quiet evaluation pending
    saved = json.loads(json.dumps(book.to_dict()))
    restored = AlertBook.from_dict(saved)
    assert restored.open_alerts() == book.open_alerts()
    assert restored.update(evaluation(True), at_ns=12) is None
    restored2 = AlertBook.from_dict(saved)
    cleared = restored2.update(evaluation(False), at_ns=12)  # second quiet one clears
    assert cleared is not None
    assert cleared.raised_at_ns == 10


def test_alert_payload_round_trips_and_names_its_schema() -> None:
    alert = Alert(
        rule_id="grip_spillover",
        severity=Severity.PULL_BACK,
        athlete="bo",
        message="Grip still 16% down at 30 min.",
        evidence={"max_drop_pct": 16.0},
        advice="Pull back.",
        source="docs/rules.md",
        raised_at_ns=123,
    )
    payload = alert.to_dict()
    assert payload["schema"] == 1
    assert payload["severity"] == "pull_back"
    assert payload["state"] == "raised"
    assert Alert.from_dict(json.loads(json.dumps(payload))) == alert


def test_evidence_is_read_only_and_drops_numbers_json_cannot_carry() -> None:
    ev = RuleEvaluation(
        "rhr_creep", Severity.PULL_BACK, True, "m", "a", "s", {"z": math.inf, "delta_bpm": 6}
    )
    assert dict(ev.evidence) == {"delta_bpm": 6.0}
    with pytest.raises(TypeError):
        ev.evidence["delta_bpm"] = 1.0  # type: ignore[index]


def test_malformed_stored_state_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="malformed"):
        AlertBook.from_dict({"athlete": "ana"})
    with pytest.raises(ValueError, match="malformed"):
        Alert.from_dict({"rule": "x", "severity": "loud"})


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.sampled_from([True, False, None])),
        max_size=60,
    ),
    st.integers(1, 3),
)
def test_lifecycle_alternates_raise_and_clear_per_rule(
    steps: list[tuple[str, bool | None]], clear_after: int
) -> None:
    book = AlertBook("ana", clear_after=clear_after)
    history: dict[str, list[AlertState]] = {"a": [], "b": []}
    for i, (rule, active) in enumerate(steps):
        alert = book.update(evaluation(active, rule), at_ns=i)
        if alert is not None:
            history[rule].append(alert.state)
        assert book.is_raised(rule) == (
            bool(history[rule]) and history[rule][-1] is AlertState.RAISED
        )
    for states in history.values():
        expected = [AlertState.RAISED, AlertState.CLEARED] * len(states)
        assert states == expected[: len(states)]


def _info(active: bool | None) -> RuleEvaluation:
    return RuleEvaluation(
        rule_id="grip_signal",
        severity=Severity.INFO,
        active=active,
        message="grip drop recovered within 15 min",
        advice="Acute signalling, the good kind of stress: no change needed.",
        source="docs/rules.md",
    )


def test_an_info_finding_is_never_raised_as_an_alert() -> None:
    book = AlertBook("ana")
    assert [
        book.update(_info(active), at_ns=i) for i, active in enumerate([True, False, True])
    ] == [
        None,
        None,
        None,
    ]
    assert book.open_alerts() == ()
    assert not Severity.INFO.raises_alerts
    assert Severity.WARNING.raises_alerts
    assert Severity.PULL_BACK.raises_alerts


def test_an_info_alert_left_open_by_an_older_book_is_cleared_at_its_next_evaluation() -> None:
    old = Alert("grip_signal", Severity.INFO, "ana", "m", {}, "a", "s", raised_at_ns=1)
    saved = {"schema": 1, "athlete": "ana", "clear_after": 1, "open": [old.to_dict()], "quiet": {}}
    book = AlertBook.from_dict(saved)
    cleared = book.update(_info(True), at_ns=9)
    assert cleared is not None
    assert (cleared.rule_id, cleared.state, cleared.cleared_at_ns) == (
        "grip_signal",
        AlertState.CLEARED,
        9,
    )
    assert book.open_alerts() == ()
