"""Timing an effort's recovery from its end of work t_w: the smoothed trace's passages of
25, 50, 75 and 95% of the way back (T½, reoxygenation rate, T95), the delayed
mono-exponential fit and its T95, the overshoot peak, and the :class:`EffortRecovery`
record built from them (definitions in the package docstring).

Times in s (input time base), levels in SmO2 %.
"""

from __future__ import annotations

from processors.oxygenation.effort import OpenEffort
from processors.oxygenation.records import EffortRecovery
from processors.recovery_fit import RecoveryFit, fit_delayed_recovery

# Recovery fractions timed besides T95: 25% and 75% for the reoxygenation rate, 50% for T½.
RATE_FRACTIONS = (0.25, 0.5, 0.75)


class RecoveryTimer:
    """Times recoveries to ``fraction`` (0.95: T95) of the way back from the work level.

    ``plateau_pct`` is the noise band (%) that tells a fitted asymptote at the baseline
    from an overshoot; ``max_delay_s``/``delay_step_s`` the fit's delay grid (s); a fit with
    R² under ``min_fit_r2`` is not read.
    """

    def __init__(
        self,
        *,
        fraction: float,
        plateau_pct: float,
        max_delay_s: float,
        delay_step_s: float,
        min_fit_r2: float,
    ) -> None:
        self._fraction = fraction
        self._plateau = plateau_pct
        self._max_delay = max_delay_s
        self._delay_step = delay_step_s
        self._min_fit_r2 = min_fit_r2

    def smoothed_t95(self, e: OpenEffort) -> float | None:
        """When (s) the smoothed trace reached the recovery level, None if not yet."""
        return e.crossings.get(self._fraction)

    def scan(self, e: OpenEffort) -> bool:
        """Find the recovery-level crossings after the end of work not found yet.

        True once the smoothed trace has reached the recovery level: the overshoot peak is
        then the highest smoothed sample from that crossing on.
        """
        assert e.work_end is not None
        assert e.level is not None
        depth = e.baseline - e.level
        fractions = [f for f in (*RATE_FRACTIONS, self._fraction) if f not in e.crossings]
        prev: tuple[float, float] | None = None
        for ts, _, ys in e.samples:
            if ts >= e.work_end and prev is not None:
                for f in list(fractions):
                    t_cross = crossing(prev, (ts, ys), e.level + f * depth)
                    if t_cross is not None:
                        e.crossings[f] = max(t_cross, e.work_end)
                        fractions.remove(f)
            prev = (ts, ys)
        if self._fraction not in e.crossings:
            return False
        e.t_peak, e.y_peak = e.samples[-1][0], e.samples[-1][2]
        t95 = e.crossings[self._fraction]
        for ts, _, ys in e.samples:
            if ts >= t95 and ys > e.y_peak:
                e.t_peak, e.y_peak = ts, ys
        return True

    def fitted_t95(self, e: OpenEffort) -> tuple[RecoveryFit | None, float | None]:
        """The recovery fit over everything watched and when (input time) its curve reaches
        the T95 level; that time is None when R² < ``min_fit_r2`` or the curve never does.

        The level is m + 0.95·(top − m). When the freely fitted asymptote is the pre-effort
        baseline b within the noise band (``plateau_pct``), the recovery returns to the
        level measured at rest: the fit is redone with the rest samples the baseline came
        from (those within the band of b) as observations of its asymptote (joint least
        squares), and top is that
        asymptote. Above the band (hyperaemic overshoot) top is b: recovery means getting
        back to where the effort started. Below it (the trace settles lower) top is the
        fitted asymptote. The fit is kept until a new sample arrives.
        """
        assert e.work_end is not None
        assert e.level is not None
        if e.fit_at == e.t_last:
            fit = e.fit
        else:
            t_w = e.work_end
            ts = [s[0] - t_w for s in e.samples if s[0] >= t_w]
            ys = [s[1] for s in e.samples if s[0] >= t_w]
            fit = fit_delayed_recovery(
                ts, ys, max_delay_s=self._max_delay, delay_step_s=self._delay_step
            )
            near_baseline = fit is not None and (
                abs(fit.asymptote_pct - e.baseline) <= self._plateau
            )
            # The rest samples within the noise band of b: the window's last samples may
            # already be on the way down into the effort (they would pull the level low).
            rest = [v for v in e.rest_live if abs(v - e.baseline) <= self._plateau]
            if near_baseline and rest:
                joint = fit_delayed_recovery(
                    ts,
                    ys,
                    max_delay_s=self._max_delay,
                    delay_step_s=self._delay_step,
                    asymptote_samples=rest,
                )
                fit = joint or fit
            e.fit, e.fit_at = fit, e.t_last
        if fit is None or fit.r2 < self._min_fit_r2:
            return fit, None
        asymptote = fit.asymptote_pct
        top = e.baseline if asymptote > e.baseline + self._plateau else asymptote
        fitted = fit.time_to(e.level + self._fraction * (top - e.level))
        return fit, None if fitted is None else e.work_end + fitted

    def finish(self, e: OpenEffort) -> EffortRecovery:
        """The record of a located effort whose watch is over (recovered or not)."""
        assert e.work_end is not None
        assert e.level is not None
        t_w = e.work_end
        depth = e.baseline - e.level
        t95 = e.crossings.get(self._fraction)
        recovered = t95 is not None
        t25, t75 = e.crossings.get(0.25), e.crossings.get(0.75)
        rate = None
        if t25 is not None and t75 is not None and t75 > t25:
            rate = 0.5 * depth / (t75 - t25)
        fit, fitted = self.fitted_t95(e)
        if t95 is not None and fitted is not None and fitted <= e.t_last:
            # The smoothed trace approaches the 95% level almost flat, so noise makes its
            # first passage early (by ~20 s at τ = 25 s, ±1.5 points); the fitted curve's
            # crossing averages the noise out.
            t95 = fitted
        t50 = e.crossings.get(0.5)
        return EffortRecovery(
            onset_s=e.onset,
            work_end_s=t_w,
            work_end_source=e.work_end_source,
            baseline_pct=e.baseline,
            min_pct=e.level,
            desaturation_pct=depth,
            recovered=recovered,
            observed_s=(t95 if t95 is not None else e.t_last) - t_w,
            t_half_s=None if t50 is None else t50 - t_w,
            t95_s=None if t95 is None else t95 - t_w,
            reoxygenation_rate_pct_s=rate,
            tau_s=None if fit is None else fit.tau_s,
            delay_s=None if fit is None else fit.delay_s,
            fit_r2=None if fit is None else fit.r2,
            peak_pct=e.y_peak,
            overshoot_pct=None if e.y_peak is None else max(0.0, e.y_peak - e.baseline),
        )


def crossing(p: tuple[float, float], q: tuple[float, float], level: float) -> float | None:
    """Time at which the segment p→q first reaches ``level`` from below, else None."""
    (t0, y0), (t1, y1) = p, q
    if y1 < level:
        return None
    if y0 >= level or y1 == y0:
        return t1
    return t0 + (level - y0) / (y1 - y0) * (t1 - t0)
