"""One effort while it is watched: its samples from the onset on and what has been found so
far (end of work, work level, recovery-level crossings, overshoot peak, the last fit).

Times in s (input time base), levels in SmO2 %.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from processors.oxygenation.records import WorkEndSource
from processors.recovery_fit import RecoveryFit


@dataclass(slots=True)
class OpenEffort:
    """The state of the effort being watched: filled in by the phase machine
    (:mod:`~processors.oxygenation.phases`), the work-end locator and the recovery timer."""

    onset: float
    baseline: float
    # (t, live, smoothed) from the onset on; trimmed to the last ``horizon_s`` seconds.
    samples: deque[tuple[float, float, float]]
    y_low: float  # lowest smoothed value so far
    t_below: float  # last smoothed sample below baseline − min_desaturation_pct
    y_high: float  # highest smoothed value since SmO2 was last at or below halfway
    t_high: float
    # Set once the recovery has been located (WorkEndLocator.locate):
    work_end: float | None = None
    work_end_source: WorkEndSource = "smo2"
    # The power level that split work from rest for this effort (fixed, or found, locate).
    activity_threshold: float | None = None
    level: float | None = None  # the work level m
    # Recovery fraction → when (s) the smoothed trace first reached it after the end of work.
    crossings: dict[float, float] = field(default_factory=dict)
    t_peak: float | None = None
    y_peak: float | None = None
    t_last: float = -math.inf
    # Live samples of the rest window the baseline was taken from (the joint fit's
    # observations of the level the recovery returns to).
    rest_live: tuple[float, ...] = ()
    # Watch (POST phase) until this time: set once, when the fitted T95 lies beyond the data.
    watch_until: float | None = None
    # The last fit and the t_last it was made at (the fit is reused while no sample arrives).
    fit: RecoveryFit | None = None
    fit_at: float | None = None

    @classmethod
    def begin(
        cls, t: float, raw: float, y: float, baseline: float, rest_live: tuple[float, ...]
    ) -> OpenEffort:
        """An effort whose first desaturated sample is (t s, live %, smoothed %)."""
        return cls(
            onset=t,
            baseline=baseline,
            samples=deque([(t, raw, y)]),
            y_low=y,
            t_below=t,
            y_high=y,
            t_high=t,
            t_last=t,
            rest_live=rest_live,
        )

    def append(self, t: float, raw: float, y: float, horizon_s: float) -> None:
        """Keep one sample (s, live %, smoothed %) and forget those over ``horizon_s`` old."""
        self.samples.append((t, raw, y))
        self.t_last = t
        while self.samples[0][0] < t - horizon_s:
            self.samples.popleft()
