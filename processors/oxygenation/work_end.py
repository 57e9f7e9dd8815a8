"""The end of work t_w (the zero of every recovery time) and the work level m of an effort.

From the activity stream when it can tell (:mod:`processors.oxygenation.activity`), else
from SmO2 alone: the last smoothed sample before the final rise off the work plateau, moved
back to the foot of the rise (see the package docstring). m is the median live SmO2 over
the ``level_window_s`` before t_w. An effort shorter than ``min_effort_s`` or with m less
than ``min_desaturation_pct`` under its baseline does not count.

Times in s, levels in SmO2 %.
"""

from __future__ import annotations

import numpy as np

from processors.oxygenation.activity import ActivityWindow
from processors.oxygenation.effort import OpenEffort
from processors.oxygenation.records import FloatArray, WorkEndSource

# The work plateau's last "deep" sample is within this share of the effort's range of its
# lowest smoothed value: low enough that the step up at the end of work (20-35% of the depth
# on Moxy data) is above it, high enough that plateau samples (±2 points) fall below it.
DEEP_FRACTION = 0.15


class WorkEndLocator:
    """Sets an effort's end of work and work level, or says it is no effort."""

    def __init__(
        self,
        activity: ActivityWindow,
        *,
        min_effort_s: float,
        min_desaturation_pct: float,
        level_window_s: float,
        plateau_pct: float,
        rise_fraction: float,
    ) -> None:
        self._activity = activity
        self._min_effort = min_effort_s
        self._drop = min_desaturation_pct
        self._level_window = level_window_s
        self._plateau = plateau_pct
        self._rise_fraction = rise_fraction

    def locate(self, e: OpenEffort, *, until: float | None) -> bool:
        """Set the end of work and the work level from the samples up to ``until`` (s).

        False when the effort is too short or too shallow to count.
        """
        upto = [s for s in e.samples if until is None or s[0] <= until]
        if e.t_below - e.onset < self._min_effort or not upto:
            return False
        t = np.array([s[0] for s in upto])
        live = np.array([s[1] for s in upto])
        smooth = np.array([s[2] for s in upto])
        work_end, e.activity_threshold = self._activity.work_end(e.onset, float(t[-1]))
        source: WorkEndSource = self._activity.kind
        if work_end is None:
            work_end, source = self.smo2_work_end(t, live, smooth, e.baseline), "smo2"
        level = median_before(t, live, work_end, self._level_window)
        if e.baseline - level < self._drop:
            return False
        e.work_end, e.work_end_source, e.level = work_end, source, level
        e.y_high, e.t_high = max((s[2], s[0]) for s in e.samples if s[0] >= work_end)
        return True

    def smo2_work_end(
        self, t: FloatArray, live: FloatArray, smooth: FloatArray, baseline: float
    ) -> float:
        """End of work (s) read off the SmO2 trace: times ``t`` (s), live and smoothed %."""
        low = float(smooth.min())
        deep = np.flatnonzero(smooth <= low + DEEP_FRACTION * (baseline - low))
        t_deep = float(t[deep[-1]])
        level0 = median_before(t, live, t_deep, self._level_window)
        margin = max(self._plateau, self._rise_fraction * (baseline - level0))
        on_plateau = np.flatnonzero(smooth <= level0 + margin)
        i = int(on_plateau[-1]) if on_plateau.size else int(deep[-1])
        # Back to the foot of the rise (the margin is crossed after the rise has begun), but
        # not down into the plateau's noise.
        while i > 0 and level0 < smooth[i - 1] < smooth[i]:
            i -= 1
        # Work ended between the foot and the next sample.
        return float((t[i] + t[i + 1]) / 2.0) if i + 1 < t.size else float(t[i])


def median_before(t: FloatArray, y: FloatArray, t_end: float, window_s: float) -> float:
    """Median of y over [t_end − window_s, t_end] (the nearest sample if none falls in it)."""
    inside = (t >= t_end - window_s) & (t <= t_end)
    if inside.any():
        return float(np.median(y[inside]))
    return float(y[int(np.argmin(np.abs(t - t_end)))])
