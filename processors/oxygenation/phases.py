"""The effort phase state machine over smoothed SmO2 samples, and what each phase waits for.

REST: the baseline is tracked; a sample ``min_desaturation_pct`` under it opens an effort.
EFFORT: desaturated; once SmO2 is clearly back up, the end of work is located (or the
effort refused) and its recovery timed. RECOVERY: waiting for the recovery level (T95);
cut after ``max_recovery_s``. POST: recovered, watching for the overshoot peak (and, when
the fitted curve reaches T95 after the data, on until it does). A fall by
``min_desaturation_pct`` after SmO2 had climbed past halfway closes the effort and starts
the next one on the same baseline; a gap or the end of data closes it.

Times in s, levels in SmO2 %.
"""

from __future__ import annotations

from enum import Enum

from processors.oxygenation.activity import ActivityWindow
from processors.oxygenation.baseline import RestBaseline
from processors.oxygenation.effort import OpenEffort
from processors.oxygenation.records import EffortRecovery
from processors.oxygenation.recovery import RecoveryTimer
from processors.oxygenation.work_end import WorkEndLocator


class Phase(Enum):
    """Where the detector is in an effort."""

    REST = "rest"
    EFFORT = "effort"  # desaturated, the recovery not located yet
    RECOVERY = "recovery"  # end of work located, waiting for the T95 crossing
    POST = "post"  # recovered, watching for the overshoot peak


class EffortPhases:
    """Turns smoothed samples into decided efforts (usually none per sample).

    Efforts too short or too shallow count in ``rejected_short``, those the activity does
    not confirm in ``rejected_without_activity``. An open effort keeps the samples of the
    last ``horizon_s`` (s).
    """

    def __init__(
        self,
        *,
        baseline: RestBaseline,
        activity: ActivityWindow,
        work_end: WorkEndLocator,
        recovery: RecoveryTimer,
        min_desaturation_pct: float,
        max_recovery_s: float,
        overshoot_window_s: float,
        horizon_s: float,
    ) -> None:
        self._baseline = baseline
        self._activity = activity
        self._work_end = work_end
        self._recovery = recovery
        self._drop = min_desaturation_pct
        self._max_recovery = max_recovery_s
        self._overshoot_window = overshoot_window_s
        self._horizon = horizon_s
        self._phase = Phase.REST
        self._effort: OpenEffort | None = None
        self.rejected_without_activity = 0
        self.rejected_short = 0

    @property
    def at_rest(self) -> bool:
        """No effort is open."""
        return self._phase is Phase.REST

    @property
    def buffered_samples(self) -> int:
        """Samples held for the baseline and the open effort."""
        effort = 0 if self._effort is None else len(self._effort.samples)
        return len(self._baseline) + effort

    def on_sample(self, t: float, raw: float, y: float) -> list[EffortRecovery]:
        """One sample: time (s), live and smoothed SmO2 (%)."""
        if self._phase is Phase.REST:
            return self._rest_sample(t, raw, y)
        effort = self._effort
        assert effort is not None
        if self._phase is Phase.POST:
            return self._post_sample(effort, t, raw, y)
        if self._phase is Phase.RECOVERY:
            return self._recovery_sample(effort, t, raw, y)
        return self._effort_sample(effort, t, raw, y)

    def interrupt(self) -> list[EffortRecovery]:
        """A gap or the end of data: close the open effort, start the rest window afresh."""
        out: list[EffortRecovery] = []
        if self._effort is not None:
            out.extend(self._close())
        self._baseline.restart_window()
        return out

    def _rest_sample(self, t: float, raw: float, y: float) -> list[EffortRecovery]:
        self._baseline.expire(t)
        b = self._baseline.level
        if b is not None and y < b - self._drop:
            self._start_effort(t, raw, y, b, self._baseline.rest_live)
            return []
        self._baseline.add(t, raw, y)
        return []

    def _start_effort(
        self, t: float, raw: float, y: float, baseline: float, rest_live: tuple[float, ...]
    ) -> None:
        self._phase = Phase.EFFORT
        self._effort = OpenEffort.begin(t, raw, y, baseline, rest_live)

    def _effort_sample(self, e: OpenEffort, t: float, raw: float, y: float) -> list[EffortRecovery]:
        """Desaturated, recovery not located yet: track the low and wait for the rise."""
        e.append(t, raw, y, self._horizon)
        if y < e.baseline - self._drop:
            e.t_below = t
        e.y_low = min(e.y_low, y)
        halfway = (e.baseline + e.y_low) / 2.0
        if y > e.y_high:
            e.y_high, e.t_high = y, t
        if e.y_high > halfway and y <= e.y_high - self._drop:
            # Climbed past halfway, then desaturating again before recovery: a new effort on
            # the same baseline, starting where SmO2 turned down.
            return self._restart(e, t, raw, y, onset=e.t_high, until=e.t_high)
        if y <= halfway:
            e.y_high, e.t_high = y, t
            return []
        if y >= max(halfway, e.baseline - self._drop):
            # Clearly recovering: locate the end of work and time the recovery from it.
            if not self._work_end.locate(e, until=t):
                return self._discard()
            self._phase = Phase.RECOVERY
            if self._recovery.scan(e):
                self._phase = Phase.POST
        return []

    def _recovery_sample(
        self, e: OpenEffort, t: float, raw: float, y: float
    ) -> list[EffortRecovery]:
        """Recovery located, waiting for the T95 crossing."""
        e.append(t, raw, y, self._horizon)
        if y > e.y_high:
            e.y_high, e.t_high = y, t
        if y <= e.y_high - self._drop:
            return self._restart(e, t, raw, y, onset=e.t_high, until=None)
        if self._recovery.scan(e):
            self._phase = Phase.POST
            return []
        assert e.work_end is not None
        if t - e.work_end > self._max_recovery:
            return self._close()
        return []

    def _post_sample(self, e: OpenEffort, t: float, raw: float, y: float) -> list[EffortRecovery]:
        """Recovered: watch for the overshoot peak (or the next effort)."""
        assert e.t_peak is not None
        assert e.y_peak is not None
        if y < e.baseline - self._drop:
            out = self._close()
            self._start_effort(t, raw, y, e.baseline, e.rest_live)
            return out
        e.append(t, raw, y, self._horizon)
        if y > e.y_peak:
            e.t_peak, e.y_peak = t, y
        if e.watch_until is not None:
            return self._close() if t >= e.watch_until else []
        t95 = self._recovery.smoothed_t95(e)
        assert t95 is not None
        if t - t95 >= self._overshoot_window:
            # The smoothed trace crosses the 95% level early (noise); when the fitted curve
            # crosses it later than the data reach, watch on until it does (plus the
            # overshoot window), once, and no longer than max_recovery_s after work.
            assert e.work_end is not None
            _, fitted = self._recovery.fitted_t95(e)
            if fitted is not None and fitted > t:
                limit = e.work_end + self._max_recovery
                e.watch_until = min(fitted + self._overshoot_window, limit)
                if t < e.watch_until:
                    return []
            return self._close()
        return []

    def _restart(
        self,
        e: OpenEffort,
        t: float,
        raw: float,
        y: float,
        *,
        onset: float,
        until: float | None,
    ) -> list[EffortRecovery]:
        """Close ``e`` and open the next effort on its baseline, from ``onset`` (s)."""
        if e.work_end is None and not self._work_end.locate(e, until=until):
            out = self._discard()
        else:
            out = self._close()
        self._start_effort(t, raw, y, e.baseline, e.rest_live)
        assert self._effort is not None
        self._effort.onset = onset
        self._effort.t_below = onset
        return out

    def _discard(self) -> list[EffortRecovery]:
        """Too short or too shallow: no effort after all."""
        self.rejected_short += 1
        self._effort = None
        self._phase = Phase.REST
        self._baseline.restart_window()
        return []

    def _close(self) -> list[EffortRecovery]:
        """End the watch of the open effort: its record, unless it is refused."""
        e = self._effort
        assert e is not None
        if e.work_end is None and not self._work_end.locate(e, until=None):
            return self._discard()
        self._effort = None
        self._phase = Phase.REST
        self._baseline.restart_window()
        assert e.work_end is not None
        if not self._activity.confirms(e.onset, e.work_end, e.activity_threshold):
            self.rejected_without_activity += 1
            return []
        return [self._recovery.finish(e)]
