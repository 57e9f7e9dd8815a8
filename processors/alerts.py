"""Alert records and their lifecycle.

A rule evaluator (see :mod:`processors.rules`) turns numbers into a :class:`RuleEvaluation`
for one athlete: the rule is active, inactive, or cannot be decided (not enough data).
An :class:`AlertBook` per athlete turns a stream of evaluations into lifecycle events:

* inactive → active: one ``Alert`` in state ``raised`` is returned and kept as open;
* active while already raised: nothing (never re-raised on every sample);
* active → inactive for ``clear_after`` consecutive evaluations: the open alert is returned
  in state ``cleared`` with ``cleared_at_ns`` set;
* undecidable (``active is None``): nothing changes (missing data never clears an alert).

The book's state round-trips through :meth:`AlertBook.to_dict` / :meth:`AlertBook.from_dict`
(plain JSON types) so a streamer can persist it across restarts.

Severity (what the athlete should do):

* ``info`` — nothing to change; good to know (e.g. ``grip_signal``: the good kind of stress).
  A finding, not an alert: it is reported with its result (the grip test's ``class``) and
  never opened in the book, so nothing pushes "no change needed" to a phone as an alert.
* ``warning`` — an early warning; watch the next days, avoid adding load.
* ``pull_back`` — reduce load now, decisively (the ARTICLE's advice is attached).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

SCHEMA_VERSION = 1


class Severity(StrEnum):
    """How strongly an alert asks for action; see the module docstring."""

    INFO = "info"
    WARNING = "warning"
    PULL_BACK = "pull_back"

    @property
    def raises_alerts(self) -> bool:
        """Whether a rule of this severity raises alerts (``info`` never does)."""
        return self is not Severity.INFO


class AlertState(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"


def _frozen_evidence(evidence: Mapping[str, float]) -> Mapping[str, float]:
    clean: dict[str, float] = {}
    for name, value in evidence.items():
        number = float(value)
        # JSON has no inf/NaN: a number that is not finite cannot be cited.
        if math.isfinite(number):
            clean[str(name)] = number
    return MappingProxyType(clean)


@dataclass(frozen=True, slots=True)
class RuleEvaluation:
    """One rule's verdict for one athlete at one moment.

    ``active`` is None when the rule cannot be decided (its data requirement is unmet).
    ``evidence`` maps unit-named quantities (``delta_bpm``, ``recovery_time_s``) to numbers.
    """

    rule_id: str
    severity: Severity
    active: bool | None
    message: str
    advice: str
    source: str
    evidence: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", _frozen_evidence(self.evidence))


@dataclass(frozen=True, slots=True)
class Alert:
    """A raised (or since cleared) alert: what fired, for whom, why, and what to do.

    Times are ns since the epoch (like record ``t_ns``). ``evidence`` is read-only and holds
    the numbers at the moment the alert was raised.
    """

    rule_id: str
    severity: Severity
    athlete: str
    message: str
    evidence: Mapping[str, float]
    advice: str
    source: str
    raised_at_ns: int
    state: AlertState = AlertState.RAISED
    cleared_at_ns: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", _frozen_evidence(self.evidence))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready payload (``schema`` versioned)."""
        return {
            "schema": SCHEMA_VERSION,
            "rule": self.rule_id,
            "severity": self.severity.value,
            "athlete": self.athlete,
            "state": self.state.value,
            "message": self.message,
            "evidence": dict(self.evidence),
            "advice": self.advice,
            "source": self.source,
            "raised_at_ns": self.raised_at_ns,
            "cleared_at_ns": self.cleared_at_ns,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """Inverse of :meth:`to_dict`; raises ValueError naming a missing or bad field."""
        try:
            return cls(
                rule_id=str(data["rule"]),
                severity=Severity(data["severity"]),
                athlete=str(data["athlete"]),
                message=str(data["message"]),
                evidence={str(k): float(v) for k, v in dict(data["evidence"]).items()},
                advice=str(data["advice"]),
                source=str(data["source"]),
                raised_at_ns=int(data["raised_at_ns"]),
                state=AlertState(data["state"]),
                cleared_at_ns=None if data["cleared_at_ns"] is None else int(data["cleared_at_ns"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"stored alert is malformed ({exc!r}): {dict(data)!r}") from exc


class AlertBook:
    """Lifecycle of one athlete's alerts: at most one open alert per rule."""

    def __init__(self, athlete: str, *, clear_after: int = 1) -> None:
        if clear_after < 1:
            raise ValueError(f"clear_after must be ≥ 1 evaluation, got {clear_after}")
        self.athlete = athlete
        self.clear_after = clear_after
        self._open: dict[str, Alert] = {}
        self._quiet: dict[str, int] = {}  # consecutive inactive evaluations of an open rule

    def update(self, evaluation: RuleEvaluation, at_ns: int) -> Alert | None:
        """Apply one evaluation; return the alert that was raised or cleared, else None."""
        rule = evaluation.rule_id
        current = self._open.get(rule)
        if not evaluation.severity.raises_alerts:
            # A finding, not an alert. One still open is from a book saved before info
            # stopped raising alerts: close it, so the published alerts stop listing it.
            return None if current is None else self._close(rule, current, at_ns)
        if evaluation.active is None:
            return None
        if evaluation.active:
            self._quiet.pop(rule, None)
            if current is not None:
                return None
            alert = Alert(
                rule_id=rule,
                severity=evaluation.severity,
                athlete=self.athlete,
                message=evaluation.message,
                evidence=evaluation.evidence,
                advice=evaluation.advice,
                source=evaluation.source,
                raised_at_ns=at_ns,
            )
            self._open[rule] = alert
            return alert
        if current is None:
            return None
        quiet = self._quiet.get(rule, 0) + 1
        if quiet < self.clear_after:
            self._quiet[rule] = quiet
            return None
        return self._close(rule, current, at_ns)

    def _close(self, rule: str, current: Alert, at_ns: int) -> Alert:
        self._quiet.pop(rule, None)
        del self._open[rule]
        return replace(current, state=AlertState.CLEARED, cleared_at_ns=at_ns)

    def update_all(self, evaluations: list[RuleEvaluation], at_ns: int) -> list[Alert]:
        """Apply several evaluations at the same moment; return the transitions in order."""
        out = []
        for evaluation in evaluations:
            alert = self.update(evaluation, at_ns)
            if alert is not None:
                out.append(alert)
        return out

    def open_alerts(self) -> tuple[Alert, ...]:
        """Alerts currently raised, ordered by rule id."""
        return tuple(self._open[r] for r in sorted(self._open))

    def is_raised(self, rule_id: str) -> bool:
        """Whether ``rule_id`` has an open alert."""
        return rule_id in self._open

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON state for persistence."""
        return {
            "schema": SCHEMA_VERSION,
            "athlete": self.athlete,
            "clear_after": self.clear_after,
            "open": [a.to_dict() for a in self.open_alerts()],
            "quiet": dict(sorted(self._quiet.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertBook:
        """Restore a book saved with :meth:`to_dict`; raises ValueError if malformed."""
        try:
            book = cls(str(data["athlete"]), clear_after=int(data["clear_after"]))
            for item in data["open"]:
                alert = Alert.from_dict(item)
                if alert.state is not AlertState.RAISED or alert.athlete != book.athlete:
                    raise ValueError(f"open alert {alert.rule_id} is not raised for {book.athlete}")
                book._open[alert.rule_id] = alert
            book._quiet = {str(k): int(v) for k, v in dict(data["quiet"]).items()}
        except (KeyError, TypeError) as exc:
            raise ValueError(f"stored alert book is malformed ({exc!r})") from exc
        return book
