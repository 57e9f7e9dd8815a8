"""Alert records and their lifecycle.

A rule evaluator (see :mod:`processors.rules`) turns numbers into a :class:`RuleEvaluation`
for one athlete: the rule is active, inactive, or cannot be decided (not enough data).
An :class:`AlertBook` per athlete turns a stream of evaluations into lifecycle events:

* inactive → active: one ``Alert`` in state ``raised`` is returned and kept as open;
* active while already raised: nothing (never re-raised on every sample);
* active → inactive for ``clear_after`` consecutive evaluations: the open alert is returned
  in state ``cleared`` with ``cleared_at_ns`` set and its :class:`ClearReason`;
* undecidable (``active is None``): nothing changes (missing data never clears an alert,
  so there is no "data stale" reason: an alert whose data stopped stays open).

Why an alert cleared is explicit (``clear_reason``):

* ``resume`` — a pull-back rule whose signals are back in their normal band (the
  ARTICLE: "resume when morning signals return to their normal band"). The evaluator
  decides "back in band" (:attr:`RuleEvaluation.back_in_band`; None: the rule's own
  inactive verdict is it) and since when (:attr:`RuleEvaluation.in_band_since_ns`); the
  cleared alert carries the rule's own evidence at that moment as ``resume_evidence``.
  An inactive evaluation that says ``back_in_band=False`` keeps the alert open: the rule
  is no longer met, but the athlete is not back yet (hysteresis).
* ``not_met`` — a warning rule whose condition no longer holds.
* ``retired`` — a rule that no longer raises alerts (an ``info`` finding left open in a
  book saved before info stopped raising alerts).

A raised pull-back alert also carries the end of its week of cut volume
(:meth:`Alert.volume_cut_until`: the raised day + ``PULL_BACK_DAYS``, UTC).

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

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from processors import physiology as ph

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


class ClearReason(StrEnum):
    """Why an alert cleared; see the module docstring."""

    RESUME = "resume"
    NOT_MET = "not_met"
    RETIRED = "retired"


def _frozen_evidence(evidence: Mapping[str, float]) -> Mapping[str, float]:
    clean: dict[str, float] = {}
    for name, value in evidence.items():
        number = float(value)
        # JSON has no inf/NaN: a number that is not finite cannot be cited.
        if math.isfinite(number):
            clean[str(name)] = number
    return MappingProxyType(clean)


BACK_OFF_UNTIL_KEY = "back_off_until_s"
"""Evidence key (s since the epoch) of a pull-back rule whose advice is a back-off window of
its own rather than the article's week of cut volume."""


@dataclass(frozen=True, slots=True)
class RuleEvaluation:
    """One rule's verdict for one athlete at one moment.

    ``active`` is None when the rule cannot be decided (its data requirement is unmet).
    ``evidence`` maps unit-named quantities (``delta_bpm``, ``recovery_time_s``) to numbers.
    ``back_in_band`` (pull-back rules, inactive evaluations): whether the rule's signals are
    back in their normal band; None when the rule's inactive verdict is that already (the
    last session recovered, the last grip test steady). ``in_band_since_ns``: since when
    they are (ns since the epoch; None: since this evaluation).
    """

    rule_id: str
    severity: Severity
    active: bool | None
    message: str
    advice: str
    source: str
    evidence: Mapping[str, float] = field(default_factory=dict)
    back_in_band: bool | None = None
    in_band_since_ns: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", _frozen_evidence(self.evidence))


@dataclass(frozen=True, slots=True)
class Alert:
    """A raised (or since cleared) alert: what fired, for whom, why, and what to do.

    Times are ns since the epoch (like record ``t_ns``). ``evidence`` is read-only and holds
    the numbers at the moment the alert was raised. A cleared alert says why
    (``clear_reason``), with the evaluation's message then (``clear_message``); when it is
    ``resume``, ``resume_evidence`` holds the rule's own numbers at that moment and
    ``resume_since_ns`` since when its signals are back in band.
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
    clear_reason: ClearReason | None = None
    clear_message: str = ""
    resume_evidence: Mapping[str, float] = field(default_factory=dict)
    resume_since_ns: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", _frozen_evidence(self.evidence))
        object.__setattr__(self, "resume_evidence", _frozen_evidence(self.resume_evidence))

    def volume_cut_until(self) -> dt.date | None:
        """The end of the pull-back's week of cut volume: the UTC day it was raised +
        ``PULL_BACK_DAYS`` (7; the ARTICLE: "drop training volume by 40% for one week");
        None for alerts that are not pull-back, and for a pull-back rule whose advice is a
        window of its own (its evidence carries ``back_off_until_s``: ``hr_grip_flat``'s
        48 h of lower intensity, not a week of cut volume)."""
        if self.severity is not Severity.PULL_BACK or BACK_OFF_UNTIL_KEY in self.evidence:
            return None
        raised = dt.datetime.fromtimestamp(self.raised_at_ns / 1e9, tz=dt.UTC).date()
        return raised + dt.timedelta(days=ph.PULL_BACK_DAYS)

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
            "volume_cut_until": _iso(self.volume_cut_until()),
            "clear_reason": None if self.clear_reason is None else self.clear_reason.value,
            "clear_message": self.clear_message,
            "resume_evidence": dict(self.resume_evidence),
            "resume_since_ns": self.resume_since_ns,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """Inverse of :meth:`to_dict`; raises ValueError naming a missing or bad field."""
        reason, since = data.get("clear_reason"), data.get("resume_since_ns")
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
                # Absent in alerts saved before clearings said why (schema 1 still).
                clear_reason=None if reason is None else ClearReason(reason),
                clear_message=str(data.get("clear_message") or ""),
                resume_evidence={
                    str(k): float(v) for k, v in dict(data.get("resume_evidence") or {}).items()
                },
                resume_since_ns=None if since is None else int(since),
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
        # The last ``resume`` clearing per rule: the status shows "resume" for a while after
        # one, and a restarted streamer must still know it (saved with the book).
        self._resumed: dict[str, Alert] = {}

    def update(self, evaluation: RuleEvaluation, at_ns: int) -> Alert | None:
        """Apply one evaluation; return the alert that was raised or cleared, else None."""
        rule = evaluation.rule_id
        current = self._open.get(rule)
        if not evaluation.severity.raises_alerts:
            # A finding, not an alert. One still open is from a book saved before info
            # stopped raising alerts: close it, so the published alerts stop listing it.
            return None if current is None else self._close(rule, current, at_ns, evaluation)
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
        if current.severity is Severity.PULL_BACK and evaluation.back_in_band is False:
            # No longer met, but the signals are not back in their band: still pulling back.
            self._quiet.pop(rule, None)
            return None
        quiet = self._quiet.get(rule, 0) + 1
        if quiet < self.clear_after:
            self._quiet[rule] = quiet
            return None
        return self._close(rule, current, at_ns, evaluation)

    def _close(
        self, rule: str, current: Alert, at_ns: int, evaluation: RuleEvaluation | None = None
    ) -> Alert:
        self._quiet.pop(rule, None)
        del self._open[rule]
        cleared = replace(current, state=AlertState.CLEARED, cleared_at_ns=at_ns)
        if evaluation is None or not evaluation.severity.raises_alerts:
            return replace(cleared, clear_reason=ClearReason.RETIRED)
        if current.severity is not Severity.PULL_BACK:
            return replace(
                cleared, clear_reason=ClearReason.NOT_MET, clear_message=evaluation.message
            )
        since = evaluation.in_band_since_ns
        resumed = replace(
            cleared,
            clear_reason=ClearReason.RESUME,
            clear_message=evaluation.message,
            resume_evidence=evaluation.evidence,
            resume_since_ns=at_ns if since is None else min(since, at_ns),
        )
        self._resumed[rule] = resumed
        return resumed

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

    def resumed_alerts(self) -> tuple[Alert, ...]:
        """The last alert of each rule that cleared with the reason ``resume`` (cleared
        state, with ``cleared_at_ns`` and ``resume_since_ns``), ordered by rule id."""
        return tuple(self._resumed[r] for r in sorted(self._resumed))

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
            "resumed": [a.to_dict() for a in self.resumed_alerts()],
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
            # Absent in books saved before the status carried the resume state.
            for item in data.get("resumed") or ():
                alert = Alert.from_dict(item)
                if alert.clear_reason is not ClearReason.RESUME or alert.cleared_at_ns is None:
                    raise ValueError(f"resumed alert {alert.rule_id} did not clear with resume")
                book._resumed[alert.rule_id] = alert
        except (KeyError, TypeError) as exc:
            raise ValueError(f"stored alert book is malformed ({exc!r})") from exc
        return book


def _iso(day: dt.date | None) -> str | None:
    return None if day is None else day.isoformat()
