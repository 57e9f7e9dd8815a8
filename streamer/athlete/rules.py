"""The rule engine: the histories the catalogue rules look at, and which rules each event
evaluates (:mod:`processors.rules`).

Every catalogue rule with a production caller is evaluated here, one method per event:
a morning reading (``hrv_downtrend``, ``rhr_creep`` over the daily trends), a session
(``smo2_slow_recovery``, ``rpe_power_mismatch``, and ``hi_spacing`` when it was
high-intensity: by RPE, power or time in heart-rate zone 3; ``power_plateau``), an RPE
entered after the session ended
(``rpe_power_mismatch``, ``hi_spacing`` again for that session, ``power_plateau``), a grip
test (``grip_signal``, ``grip_spillover``); a morning reading and a grip test also
``hr_grip_flat``, whose histories :mod:`streamer.athlete.hormetic` keeps. A lab marker
entered by hand (``gsh_gssg_low``, ``gsh_gssg_high``, ``droms_rise``,
``lipid_dipstick_positive``) is judged by :mod:`streamer.athlete.labs`, with the entries
it looks back at. ``tests/test_rule_reachability.py`` fails for a catalogue rule that no
event reaches.
The histories are bounded and refilled from the athlete's history on start
(:meth:`remember_morning` etc.).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import deque
from dataclasses import dataclass
from typing import Final

from processors import physiology as ph
from processors.alerts import RuleEvaluation
from processors.grip import GripClass, GripTest
from processors.morning import MorningReading
from processors.plateau import PowerPlateau
from processors.profiles import evaluate_spacing
from processors.rules import (
    RecentGrip,
    RuleThresholds,
    SessionLoad,
    evaluate_grip,
    evaluate_morning,
    evaluate_rpe_power_mismatch,
    evaluate_smo2_slow_recovery,
    is_high_intensity,
    measure_grip,
)
from processors.trends import DailyTrend, daily_trend, history_from_mapping
from streamer.athlete.grip import GRIP_CLASS_LABELS, GripTraces
from streamer.athlete.hormetic import HormeticWatch
from streamer.results import GripPayload, MorningPayload, SessionPayload

HISTORY_DAYS: Final = ph.BASELINE_FIRST_DAY_BACK + 1
"""Daily values kept: the baseline window reaches back to d − 35."""
SESSIONS_KEPT: Final = 16
"""Session recovery times, RPE loads and grip MVCs kept (rules look at ≤ 5–10)."""


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What the session rules know of one finished session (times in ns since the epoch,
    RPE on CR-10, mean power in W, time in heart-rate zone 3 in s)."""

    start_ns: int
    end_ns: int
    rpe: float | None
    mean_power_w: float | None
    zone3_s: float | None = None


@dataclass(frozen=True, slots=True)
class SessionVerdict:
    """A session's intensity (None: unknown), its rule evaluations and its
    ``power_plateau`` finding (None: not evaluated)."""

    high_intensity: bool | None
    evaluations: list[RuleEvaluation]
    plateau: PowerPlateau | None = None


def _utc(t_ns: int) -> dt.datetime:
    # Calendar days (hi_spacing's passive days) are UTC days, as the store's are.
    return dt.datetime.fromtimestamp(t_ns / 1e9, tz=dt.UTC)


@dataclass(frozen=True, slots=True)
class MorningVerdict:
    """A morning reading's daily trends and rule evaluations."""

    ln_rmssd: DailyTrend
    resting_hr: DailyTrend
    evaluations: list[RuleEvaluation]


class RuleEngine:
    """Histories and rule evaluations of one athlete under ``thresholds``."""

    def __init__(self, thresholds: RuleThresholds) -> None:
        self.thresholds = thresholds
        self._ln_rmssd: dict[dt.date, float] = {}
        self._rhr: dict[dt.date, float] = {}
        self._recoveries: deque[float | None] = deque(maxlen=SESSIONS_KEPT)
        self._loads: deque[SessionLoad] = deque(maxlen=SESSIONS_KEPT)
        self._mvcs: deque[float] = deque(maxlen=SESSIONS_KEPT)
        # hi_spacing: starts of high-intensity sessions, and the days with any session.
        self._hi_starts: deque[dt.datetime] = deque(maxlen=SESSIONS_KEPT)
        self._session_days: deque[dt.date] = deque(maxlen=SESSIONS_KEPT)
        self._last: SessionFacts | None = None
        self.hormetic = HormeticWatch(thresholds)
        # The last grip test (time, spillover): rhr_creep's resume asks for steady grip.
        self._last_grip: RecentGrip | None = None

    # --- refilled from the history ----------------------------------------------------------

    def remember_morning(self, day: dt.date, reading: MorningPayload) -> None:
        """An accepted morning reading from the history."""
        ln, rhr = reading.ln_rmssd, reading.resting_hr_bpm
        if ln is not None and rhr is not None:
            self._ln_rmssd[day] = float(ln)
            self._rhr[day] = float(rhr)

    def remember_session(self, session: SessionPayload, end_ns: int) -> None:
        """A session summary from the history (``end_ns``: its result's time)."""
        recovery = session.recovery_s
        self._recoveries.append(None if recovery is None else float(recovery))
        rpe = None if session.rpe is None else float(session.rpe)
        power = None if session.mean_power_w is None else float(session.mean_power_w)
        if rpe is not None and rpe > 0 and power is not None and power > 0:
            self._loads.append(SessionLoad(rpe, power))
        start_ns = end_ns - round(float(session.duration_s) * 1e9)
        zone3 = None if session.hr_zone3_s is None else float(session.hr_zone3_s)
        facts = SessionFacts(start_ns, end_ns, rpe, power, zone3)
        self._note_days(facts)
        if is_high_intensity(rpe, power, self.thresholds, zone3_s=zone3):
            self._hi_starts.append(_utc(start_ns))
        self._last = facts
        self.hormetic.remember_session(start_ns, rpe, power)

    def remember_grip(self, grip: GripPayload, t_ns: int | None = None) -> None:
        """A grip test from the history (``t_ns``: its result's time, for the dated MVCs of
        ``hr_grip_flat``)."""
        if grip.mvc_kg > 0:  # NaN (stored as null) is not > 0
            self._mvcs.append(float(grip.mvc_kg))
            if t_ns is not None:
                self.hormetic.remember_grip(t_ns, float(grip.mvc_kg))
        if t_ns is not None:
            self._note_grip(t_ns, grip.grip_class == GRIP_CLASS_LABELS[GripClass.SPILLOVER])

    def grip_summary(self, grip: GripPayload, t_ns: int) -> list[RuleEvaluation]:
        """A grip test known by its summary alone (a store keeps no force traces: ``migrate``
        replaying a history), taken at ``t_ns``: remembered as :meth:`grip` remembers a
        measured one, and ``hr_grip_flat`` on its day — the one grip-test rule that needs
        only the MVC (kg) and the day; the protocol's own rules need the traces."""
        mvc = float(grip.mvc_kg)
        if mvc > 0:  # NaN (stored as null) is not > 0
            self._mvcs.append(mvc)
        self._note_grip(t_ns, grip.grip_class == GRIP_CLASS_LABELS[GripClass.SPILLOVER])
        rhr_hist = history_from_mapping(self._rhr, _utc(t_ns).date(), HISTORY_DAYS)
        return [self.hormetic.grip(t_ns, mvc, rhr_hist)]

    def _note_grip(self, t_ns: int, spillover: bool) -> None:
        last = self._last_grip
        if last is not None and t_ns < last.t_ns:
            return  # tests arrive in time order; an older one changes nothing now
        if spillover:
            self._last_grip = RecentGrip(t_ns, True)
        elif last is None:
            self._last_grip = RecentGrip(t_ns, False)  # no spillover known: no "since"
        else:
            # Steady again since the first test after the last spillover.
            steady = t_ns if last.spillover else last.steady_since_ns
            self._last_grip = RecentGrip(t_ns, False, steady)

    def recent_grip(self, at_ns: int) -> RecentGrip | None:
        """The last grip test taken within ``resume_grip_recent_days`` before ``at_ns``."""
        grip = self._last_grip
        if grip is None or grip.t_ns > at_ns:
            return None
        recent_ns = self.thresholds.resume_grip_recent_days * 86_400 * 1e9
        return grip if at_ns - grip.t_ns <= recent_ns else None

    def trim_days(self) -> None:
        """Forget daily values older than the baseline window."""
        for series in (self._ln_rmssd, self._rhr):
            if series:
                newest = max(series)
                for day in [d for d in series if (newest - d).days >= HISTORY_DAYS]:
                    del series[day]

    # --- events -----------------------------------------------------------------------------

    def morning(self, day: dt.date, reading: MorningReading) -> MorningVerdict:
        """A morning reading of ``day``: its trends, ``hrv_downtrend``, ``rhr_creep`` and
        ``hr_grip_flat``."""
        if reading.accepted and reading.ln_rmssd is not None and reading.resting_hr_bpm:
            self._ln_rmssd[day] = reading.ln_rmssd
            self._rhr[day] = reading.resting_hr_bpm
        else:
            self._ln_rmssd.pop(day, None)
            self._rhr.pop(day, None)
        self.trim_days()
        ln_hist = history_from_mapping(self._ln_rmssd, day, HISTORY_DAYS)
        rhr_hist = history_from_mapping(self._rhr, day, HISTORY_DAYS)
        th = self.thresholds
        trend_kwargs = {
            "first_day_back": th.baseline_first_day_back,
            "last_day_back": th.baseline_last_day_back,
            "min_valid_days": th.baseline_min_valid_days,
            "rolling_days": th.rolling_mean_days,
            "rolling_min_values": th.rolling_mean_min_values,
            "band_sd": th.normal_band_sd,
        }
        ln_trend = daily_trend(ln_hist, "ln_rmssd", **trend_kwargs)  # type: ignore[arg-type]
        rhr_trend = daily_trend(rhr_hist, "resting_hr_bpm", **trend_kwargs)  # type: ignore[arg-type]
        # A reading without a time (none in production) counts from its day's start.
        at_ns = reading.t_ns
        if at_ns is None:
            at_ns = (
                round(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 10**9
            )
        evaluations = evaluate_morning(
            ln_hist, rhr_hist, th, day=day, recent_grip=self.recent_grip(at_ns)
        )
        evaluations.append(self.hormetic.hr_grip(day, rhr_hist, at_ns))
        return MorningVerdict(ln_trend, rhr_trend, evaluations)

    def session(
        self, facts: SessionFacts, n_efforts: int, recovery_s: float | None
    ) -> SessionVerdict:
        """A finished session: ``smo2_slow_recovery`` when it had efforts,
        ``rpe_power_mismatch`` when it has an RPE and power, ``hi_spacing`` when it was
        high-intensity, ``power_plateau`` always (undecided without RPE and power)."""
        evaluations: list[RuleEvaluation] = []
        if n_efforts:
            self._recoveries.append(recovery_s)
            evaluations.append(evaluate_smo2_slow_recovery(list(self._recoveries), self.thresholds))
        load = _load(facts)
        if load is not None:
            self._loads.append(load)
            evaluations.append(evaluate_rpe_power_mismatch(list(self._loads), self.thresholds))
        self._note_days(facts)
        high = is_high_intensity(
            facts.rpe, facts.mean_power_w, self.thresholds, zone3_s=facts.zone3_s
        )
        if high:
            self._hi_starts.append(_utc(facts.start_ns))
            evaluations.append(self._spacing())
        self._last = facts
        plateau, plateau_evaluation = self.hormetic.session(
            facts.start_ns, facts.rpe, facts.mean_power_w
        )
        evaluations.append(plateau_evaluation)
        return SessionVerdict(high, evaluations, plateau)

    @property
    def last_session(self) -> SessionFacts | None:
        """The last finished session (from this run or the history)."""
        return self._last

    def session_rpe(self, rpe: float) -> SessionVerdict | None:
        """An RPE entered after the last session ended (None: no session yet): it replaces
        that session's RPE; ``rpe_power_mismatch`` when the session has power,
        ``hi_spacing`` when the RPE makes it high-intensity, and ``power_plateau`` (the RPE
        decides which sessions match it)."""
        last = self._last
        if last is None:
            return None
        evaluations: list[RuleEvaluation] = []
        amended = dataclasses.replace(last, rpe=rpe)
        if _load(last) is not None and self._loads:
            self._loads.pop()  # the last load is this session's: replaced, not counted twice
        load = _load(amended)
        if load is not None:
            self._loads.append(load)
            evaluations.append(evaluate_rpe_power_mismatch(list(self._loads), self.thresholds))
        th = self.thresholds
        was_high = is_high_intensity(last.rpe, last.mean_power_w, th, zone3_s=last.zone3_s)
        high = is_high_intensity(rpe, last.mean_power_w, th, zone3_s=last.zone3_s)
        start = _utc(last.start_ns)
        if was_high and not high and start in self._hi_starts:
            self._hi_starts.remove(start)
        elif high and not was_high:
            self._hi_starts.append(start)
            evaluations.append(self._spacing())
        self._last = amended
        plateau, plateau_evaluation = self.hormetic.session_rpe(last.start_ns, rpe)
        evaluations.append(plateau_evaluation)
        return SessionVerdict(high, evaluations, plateau)

    def _note_days(self, facts: SessionFacts) -> None:
        day = _utc(facts.start_ns).date()
        if day not in self._session_days:
            self._session_days.append(day)

    def _spacing(self) -> RuleEvaluation:
        return evaluate_spacing(
            list(self._hi_starts), self.thresholds, session_days=set(self._session_days)
        )

    def grip(
        self, traces: GripTraces, t_ns: int | None = None
    ) -> tuple[GripTest, list[RuleEvaluation]]:
        """A finished grip test measured against the MVC history; ``grip_signal`` and
        ``grip_spillover``, and ``hr_grip_flat`` on the test's day when ``t_ns`` (its time)
        is given. Raises :class:`~processors.grip.GripInputError`."""
        test = measure_grip(traces.pre, traces.post, list(self._mvcs), self.thresholds)
        self._mvcs.append(test.mvc_kg)
        evaluations = evaluate_grip(test, self.thresholds)
        if t_ns is not None:
            self._note_grip(t_ns, test.grip_class is GripClass.SPILLOVER)
            day = _utc(t_ns).date()
            rhr_hist = history_from_mapping(self._rhr, day, HISTORY_DAYS)
            evaluations.append(self.hormetic.grip(t_ns, test.mvc_kg, rhr_hist))
        return test, evaluations


def _load(facts: SessionFacts) -> SessionLoad | None:
    """A session's load for ``rpe_power_mismatch``: None without an RPE > 0 and power > 0."""
    rpe, power = facts.rpe, facts.mean_power_w
    if rpe is not None and rpe > 0 and power is not None and power > 0:
        return SessionLoad(rpe, power)
    return None
