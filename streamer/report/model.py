"""What a report shows, as plain typed records: the numbers :mod:`streamer.report.gather` gathers
from the store and :mod:`streamer.report.figure` and :mod:`streamer.report.page` draw.

Kept apart from both so the drawing modules need not import the module that calls them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from processors.rules import RuleThresholds


@dataclass(frozen=True, slots=True)
class MorningPoint:
    """One calendar day (UTC) of the window: the morning reading and that day's trend.

    ``ln_rmssd`` (ln ms), ``rmssd_ms`` and ``resting_hr_bpm`` are None unless the day has an
    accepted reading. The band, baseline and 7-day values describe the day whether or not
    it has a reading; None while their data requirement is unmet (see
    :mod:`processors.trends`).
    """

    day: dt.date
    recorded: bool
    accepted: bool
    reject_reason: str | None
    ln_rmssd: float | None
    rmssd_ms: float | None
    resting_hr_bpm: float | None
    ln_band_low: float | None
    ln_band_high: float | None
    ln_baseline_mean: float | None
    ln_7d_mean: float | None
    rhr_baseline_median_bpm: float | None
    rhr_7d_mean_bpm: float | None
    baseline_status: str = "none"
    """``none``, ``provisional`` (few days: a wider band, no alerts) or ``established``."""

    @property
    def band_position(self) -> str | None:
        """``"below"``, ``"within"`` or ``"above"`` the normal band; None if not decidable."""
        if self.ln_rmssd is None or self.ln_band_low is None or self.ln_band_high is None:
            return None
        if self.ln_rmssd < self.ln_band_low:
            return "below"
        return "above" if self.ln_rmssd > self.ln_band_high else "within"


@dataclass(frozen=True, slots=True)
class SessionPoint:
    """One session's SmO2 recovery: the median T95 over its efforts, in seconds.

    ``recovery_s`` is None when no effort was measured; ``lower_bound`` means at least one
    effort had not recovered when the session ended, so the true time is longer.
    ``rpe`` (CR-10) and ``mean_power_w`` (W) as entered and measured; ``power_plateau`` the
    session's ``power_plateau`` finding (None: undecided) and ``power_change_pct`` the
    change of power at matched effort over the window it was decided on (percent).
    """

    at: dt.datetime
    recovery_s: float | None
    lower_bound: bool
    n_efforts: int
    device: str | None
    rpe: float | None = None
    mean_power_w: float | None = None
    power_plateau: bool | None = None
    power_change_pct: float | None = None


@dataclass(frozen=True, slots=True)
class GripPoint:
    """One grip test: the worst post-session drop (% of MVC) and its class.

    ``drops_pct`` holds (minutes after the session, drop %) for every post test;
    ``threshold_pct`` is the drop that counts as real given the test's own noise.
    """

    at: dt.datetime
    mvc_kg: float | None
    drop_pct: float
    threshold_pct: float | None
    grip_class: str
    drops_pct: tuple[tuple[float, float], ...]

    @property
    def last_drop(self) -> tuple[float, float] | None:
        """(minutes, drop %) of the last post test, the one that tells signal from spillover."""
        return self.drops_pct[-1] if self.drops_pct else None


@dataclass(frozen=True, slots=True)
class LabPoint:
    """One lab marker entered by hand: ``marker`` (``gsh_gssg``, ``droms``,
    ``lipid_dipstick``), its ``value`` (n of n:1, CARR U, or 1.0 positive / 0.0 negative),
    ``timing`` (None: not given), ``band`` and whether it was ``judged``; for dROMs the
    athlete's ``baseline`` then (CARR U), and ``change_pct`` (dROMs vs that baseline, a
    post-session GSH:GSSG vs the same day's resting draw)."""

    at: dt.datetime
    marker: str
    value: float
    timing: str | None
    band: str
    judged: bool
    baseline: float | None
    change_pct: float | None

    @property
    def resting(self) -> bool:
        """A fasted or pre-training draw (the bands apply)."""
        return self.timing in ("fasted", "pre-training")


@dataclass(frozen=True, slots=True)
class AlertSpan:
    """An alert from raised to cleared (``cleared`` None: still open).

    ``clear_reason`` says why it cleared (``resume``, ``not_met``, ``retired``; None while
    open or for events stored before clearings said why); for ``resume``,
    ``resume_since`` is since when the signals are back in band. ``volume_cut_until``:
    a pull-back's end of its week of cut volume (the raised day + 7).
    """

    rule: str
    severity: str
    title: str
    message: str
    advice: str
    raised: dt.datetime
    cleared: dt.datetime | None
    clear_reason: str | None = None
    resume_since: dt.datetime | None = None
    volume_cut_until: dt.date | None = None

    @property
    def resumed(self) -> bool:
        """Whether it is a raise → resume span (cleared because back in band)."""
        return self.cleared is not None and self.clear_reason == "resume"


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the report shows for one athlete over ``start … end`` (UTC, inclusive).

    ``alerts`` are the spans that overlap the window; ``open_alerts`` are the alerts open
    now according to the athlete's alert book (the same the status topic reports).
    """

    athlete: str
    start: dt.date
    end: dt.date
    mornings: tuple[MorningPoint, ...]
    sessions: tuple[SessionPoint, ...]
    grips: tuple[GripPoint, ...]
    alerts: tuple[AlertSpan, ...]
    open_alerts: tuple[AlertSpan, ...]
    thresholds: RuleThresholds
    labs: tuple[LabPoint, ...] = ()

    @property
    def days(self) -> int:
        """Length of the window in days."""
        return (self.end - self.start).days + 1

    @property
    def latest_morning(self) -> MorningPoint | None:
        """The most recent accepted morning reading in the window."""
        return next((m for m in reversed(self.mornings) if m.ln_rmssd is not None), None)

    @property
    def status(self) -> str:
        """``pull_back``, ``caution`` or ``ok``, from the open alerts' severities."""
        severities = {a.severity for a in self.open_alerts}
        if "pull_back" in severities:
            return "pull_back"
        return "caution" if "warning" in severities else "ok"
