"""The activity stream (power in W or HR in bpm) beside SmO2: it marks the end of work and
confirms that a desaturation was an effort.

End of work from power: halfway between the last sample at or above the work threshold and
the next one; from HR: the time of its peak (HR keeps rising while work goes on and falls
once it stops). An effort is kept only if the activity reached the threshold between
``lead_s`` before its onset and its end of work. Without a given threshold, power is split
into work and rest per effort by :func:`two_level_threshold`.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

from processors import physiology as ph
from processors.oxygenation.records import ActivityKind, OxygenationInputError

# Activity samples kept while an effort is open; at 4 Hz this is > 15 min, enough for any
# effort, and it bounds memory if an effort never ends.
MAX_ACTIVITY_SAMPLES = 4096


class ActivityWindow:
    """Recent activity samples (s, W or bpm) and what they say about one effort.

    ``kind`` is what the values are; ``threshold`` the work level they are split at (None:
    found per effort for power); ``lead_s`` how long before an effort's onset (s) its work
    may have begun. Holds at most :data:`MAX_ACTIVITY_SAMPLES` samples.
    """

    def __init__(self, kind: ActivityKind, threshold: float | None, lead_s: float) -> None:
        self.kind: ActivityKind = kind
        self.lead_s = lead_s
        self._threshold = threshold
        self._samples: deque[tuple[float, float]] = deque(maxlen=MAX_ACTIVITY_SAMPLES)
        self._seen = False

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, t_s: float, value: float) -> None:
        """Keep one sample (s, W or bpm); from now on efforts are judged by activity."""
        self._seen = True
        self._samples.append((t_s, value))

    def forget_before(self, t_s: float) -> None:
        """Drop samples older than ``t_s`` (s): at rest only the lead before an onset counts."""
        while self._samples and self._samples[0][0] < t_s:
            self._samples.popleft()

    def work_end(self, onset_s: float, until_s: float) -> tuple[float | None, float | None]:
        """End of work (s) of the effort from ``onset_s`` seen up to ``until_s``, or None
        when the activity cannot tell; and the work threshold (W or bpm) that applies to
        this effort (the given one, or the one found from its power; None if neither)."""
        if not self._seen:
            return None, self._threshold
        window = [(ta, v) for ta, v in self._samples if onset_s - self.lead_s <= ta]
        window = [(ta, v) for ta, v in window if ta <= until_s]
        if not window:
            return None, self._threshold
        if self.kind == "hr":
            peak = max(v for _, v in window)
            return next(ta for ta, v in window if v == peak), self._threshold
        threshold = self._threshold
        if threshold is None:
            values = [v for _, v in window]
            if max(values) - min(values) < ph.SMO2_AUTO_POWER_MIN_SPREAD_W:
                return None, None
            threshold = two_level_threshold(values)
        above = [i for i, (_, v) in enumerate(window) if v >= threshold]
        if not above:
            return None, threshold
        last = above[-1]
        if last + 1 < len(window):
            # Work ended between the last sample at or above the threshold and the next one.
            return (window[last][0] + window[last + 1][0]) / 2.0, threshold
        return window[last][0], threshold

    def confirms(self, onset_s: float, work_end_s: float, threshold: float | None) -> bool:
        """Whether the activity reached ``threshold`` between ``lead_s`` before the onset
        and the end of work (s); True without activity or without a threshold."""
        if not self._seen or threshold is None:
            return True
        lo, hi = onset_s - self.lead_s, work_end_s
        return any(lo <= ta <= hi and v >= threshold for ta, v in self._samples)


def two_level_threshold(values: npt.ArrayLike, bins: int = 256) -> float:
    """Level that best splits values into "easy" and "work" (Otsu 1979, between-class variance).

    Works whatever share of the session is work; for a constant series it is that constant.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise OxygenationInputError("activity holds no finite value to derive a threshold from")
    lo, hi = float(v.min()), float(v.max())
    if hi == lo:
        return lo
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2.0
    w0 = np.cumsum(counts)[:-1].astype(np.float64)
    w1 = v.size - w0
    s0 = np.cumsum(counts * centres)[:-1]
    m0 = s0 / np.maximum(w0, 1)
    m1 = (float((counts * centres).sum()) - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    # Well-separated levels leave an empty gap where every split is equally good: take the
    # middle of that gap rather than its lower edge.
    best = np.flatnonzero(between >= between.max() * (1.0 - 1e-9))
    return float((edges[1 + best[0]] + edges[1 + best[-1]]) / 2.0)
