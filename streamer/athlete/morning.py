"""The morning-reading protocol (:class:`MorningStart` … :class:`MorningEnd`): the RR of
the reading, analysed by :func:`processors.morning.morning_reading` at its end."""

from __future__ import annotations

import datetime as dt
from typing import Final

from processors import physiology as ph
from processors.morning import MorningReading, morning_reading
from processors.trends import DailyTrend
from streamer.results import MorningPayload, Result

MORNING_MAX_BEATS: Final = 4000
"""A morning buffer cap: 6 min at 200 bpm is 1200 beats; more means the end was missed."""


class MorningProtocol:
    """One morning reading in progress: RR (ms) and break flags, capped."""

    def __init__(
        self,
        stabilisation_s: float = ph.MORNING_STABILISATION_S,
        span_s: float = ph.MORNING_SPAN_S,
    ) -> None:
        self.stabilisation_s = stabilisation_s
        self.span_s = span_s
        self._start: int | None = None
        self._rr: list[float] = []
        self._breaks: list[bool] = []

    @property
    def active(self) -> bool:
        """Whether a reading is being recorded."""
        return self._start is not None

    def start(self, t_ns: int) -> None:
        """The athlete lies down: a fresh reading."""
        self._start = t_ns
        self._rr.clear()
        self._breaks.clear()

    def add(self, rr_ms: list[float], after_gap: bool) -> None:
        """Valid RR of one notification (``after_gap``: the first follows a gap)."""
        if self._start is not None and len(self._rr) < MORNING_MAX_BEATS:
            self._breaks.extend([after_gap] + [False] * (len(rr_ms) - 1))
            self._rr.extend(rr_ms)

    def end(self, t_ns: int) -> tuple[dt.date, MorningReading] | None:
        """The reading's day (UTC, of its start) and analysis; None if none was started."""
        start = self._start
        self._start = None
        if start is None:
            return None
        day = dt.datetime.fromtimestamp(start / 1e9, tz=dt.UTC).date()
        reading = morning_reading(
            self._rr,
            self._breaks,
            t_ns=t_ns,
            day=day,
            stabilisation_s=self.stabilisation_s,
            span_s=self.span_s,
        )
        self._rr.clear()
        self._breaks.clear()
        return day, reading


def morning_result(
    athlete: str,
    t_ns: int,
    day: dt.date,
    r: MorningReading,
    ln: DailyTrend,
    rhr: DailyTrend,
    source: str = "rr",
) -> Result:
    """The ``morning`` result: the reading and its daily trends; ``source`` is ``rr`` for a
    reading analysed here, else the app that measured it (an imported day's values)."""
    return MorningPayload(
        date=day.isoformat(),
        ln_rmssd=r.ln_rmssd,
        rmssd_ms=r.rmssd_ms,
        resting_hr_bpm=r.resting_hr_bpm,
        artifacts_pct=r.artifacts_pct,
        corrected_pct=r.corrected_pct,
        n_beats=r.n_beats,
        accepted=r.accepted,
        reject_reason=r.reject_reason,
        ln_rmssd_baseline_mean=ln.baseline_mean,
        ln_rmssd_baseline_sd=ln.baseline_sd,
        ln_rmssd_band_low=ln.band_low,
        ln_rmssd_band_high=ln.band_high,
        ln_rmssd_7d_mean=ln.rolling_mean_7d,
        ln_rmssd_cv_pct=ln.cv_7d_pct,
        rhr_baseline_median_bpm=rhr.baseline_median,
        rhr_7d_mean_bpm=rhr.rolling_mean_7d,
        baseline_status=ln.baseline_status,
        baseline_days=ln.baseline_days,
        baseline_note=baseline_note(ln),
        source=source,
    ).result(athlete, t_ns)


def baseline_note(trend: DailyTrend) -> str | None:
    """What a reader must know about a baseline that is not established yet."""
    need = ph.BASELINE_MIN_VALID_DAYS
    if trend.baseline_status == "provisional":
        return (
            f"provisional baseline from {trend.baseline_days} mornings: a wide band, and no "
            f"pull-back alert until {need} valid mornings in 5 weeks"
        )
    if trend.baseline_status == "none":
        return (
            f"no baseline yet: a provisional one after {ph.BASELINE_PROVISIONAL_MIN_DAYS} "
            f"valid mornings, established after {need}"
        )
    return None
