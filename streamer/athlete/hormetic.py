"""The histories of ``hr_grip_flat`` and ``power_plateau`` and their evaluations, for the
rule engine (:class:`~streamer.athlete.rules.RuleEngine`), which calls them from its event
methods: a morning reading and a grip test evaluate ``hr_grip_flat``
(:mod:`processors.hormetic`), a session and an RPE entered after it ``power_plateau``
(:mod:`processors.plateau`).

Both need dated histories the engine's other rules do not keep: grip MVCs by UTC day (the
grip baseline reaches back as far as the morning baseline, d − 35) and the sessions of the
plateau window (start, RPE, mean power). Both are bounded by time and refilled from the
athlete's history on start.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import deque
from typing import Final

import numpy.typing as npt

from processors import physiology as ph
from processors.alerts import RuleEvaluation
from processors.hormetic import GripOnDay, evaluate_hr_grip_flat
from processors.plateau import NS_PER_DAY, PlateauSession, PowerPlateau, evaluate_power_plateau
from processors.rules import RuleThresholds

GRIPS_KEPT: Final = 200
"""Grip tests kept at most (several a day for five weeks); older days are trimmed anyway."""
SESSIONS_KEPT: Final = 200
"""Sessions kept at most for the plateau window (several a day for three weeks)."""


def utc_day(t_ns: int) -> dt.date:
    """The UTC calendar day of a time in ns since the epoch (the store's days are UTC)."""
    return dt.datetime.fromtimestamp(t_ns / 1e9, tz=dt.UTC).date()


class HormeticWatch:
    """Dated grip MVCs and plateau sessions of one athlete under ``thresholds``."""

    def __init__(self, thresholds: RuleThresholds) -> None:
        self.thresholds = thresholds
        self._grips: deque[tuple[dt.date, float]] = deque(maxlen=GRIPS_KEPT)
        self._sessions: deque[PlateauSession] = deque(maxlen=SESSIONS_KEPT)

    # --- histories ------------------------------------------------------------------------

    def remember_grip(self, t_ns: int, mvc_kg: float) -> None:
        """A grip test's MVC (kg) at ``t_ns``; a non-positive or NaN MVC is no test."""
        if mvc_kg > 0:  # NaN is not > 0
            self._grips.append((utc_day(t_ns), float(mvc_kg)))

    def remember_session(self, start_ns: int, rpe: float | None, power_w: float | None) -> None:
        """A finished session (start in ns, RPE on CR-10, mean power in W)."""
        self._sessions.append(PlateauSession(start_ns, rpe, power_w))

    def _trim(self, day: dt.date, now_ns: int) -> None:
        oldest_day = day - dt.timedelta(days=ph.BASELINE_FIRST_DAY_BACK)
        while self._grips and self._grips[0][0] < oldest_day:
            self._grips.popleft()
        window_ns = self.thresholds.power_plateau_window_days * NS_PER_DAY
        while self._sessions and now_ns - self._sessions[0].start_ns >= window_ns:
            self._sessions.popleft()

    # --- evaluations ----------------------------------------------------------------------

    def hr_grip(
        self, day: dt.date, resting_hr_history: npt.ArrayLike, at_ns: int
    ) -> RuleEvaluation:
        """``hr_grip_flat`` on ``day`` (a morning reading, or a grip test of that day, at
        ``at_ns``); ``resting_hr_history`` is the daily resting HR (bpm) ending on ``day``."""
        grips = [GripOnDay((day - d).days, mvc) for d, mvc in self._grips if d <= day]
        return evaluate_hr_grip_flat(resting_hr_history, grips, at_ns, self.thresholds)

    def grip(self, t_ns: int, mvc_kg: float, resting_hr_history: npt.ArrayLike) -> RuleEvaluation:
        """A grip test at ``t_ns`` with its MVC (kg): remembered, then ``hr_grip_flat`` on its
        day (``resting_hr_history`` ends on that day)."""
        self.remember_grip(t_ns, mvc_kg)
        day = utc_day(t_ns)
        self._trim(day, t_ns)
        return self.hr_grip(day, resting_hr_history, t_ns)

    def session(
        self, start_ns: int, rpe: float | None, power_w: float | None
    ) -> tuple[PowerPlateau, RuleEvaluation]:
        """A finished session: remembered, then ``power_plateau`` as of its start."""
        self.remember_session(start_ns, rpe, power_w)
        self._trim(utc_day(start_ns), start_ns)
        return evaluate_power_plateau(list(self._sessions), start_ns, self.thresholds)

    def session_rpe(self, start_ns: int, rpe: float) -> tuple[PowerPlateau, RuleEvaluation]:
        """The RPE of the session that started at ``start_ns``, entered after it ended:
        it replaces that session's RPE (its matched-effort group), then ``power_plateau``
        again as of its start."""
        for i, s in enumerate(self._sessions):
            if s.start_ns == start_ns:
                self._sessions[i] = dataclasses.replace(s, rpe=rpe)
                break
        else:
            self._sessions.append(PlateauSession(start_ns, rpe, None))
        return evaluate_power_plateau(list(self._sessions), start_ns, self.thresholds)
