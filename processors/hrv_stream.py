"""Streaming time-domain HRV over a sliding window, O(1) per beat.

:class:`HrvTracker` is the per-athlete, per-strap state of the live HRV: feed it each RR
interval (ms) as the strap reports it, oldest first; it keeps running sums (of the NN
values, their squares, the successive differences, their squares, and the count of
differences over 50 ms) over a window of the last N beats or the last W seconds of recorded
beat time, and returns the window's :class:`~processors.hrv.HrvTime` once the window is
full. It agrees with :func:`processors.hrv.sliding_hrv_time` on the same series.

Gaps: call ``add(rr, after_gap=True)`` for the first beat after a disconnection or a
stale stream; the difference to the previous beat is then never used. Intervals outside
the plausible range (:data:`~processors.physiology.RR_MIN_MS` ..
:data:`~processors.physiology.RR_MAX_MS`) are not beats: they are dropped and the next beat
is treated as following a gap, as :func:`processors.rr_clean.clean_rr` does.

Memory is bounded: at most ``window_beats`` beats, or ``window_s / RR_MIN_MS`` beats.
"""

from __future__ import annotations

import math
from collections import deque

from processors import physiology as phys
from processors.hrv import CANCELLATION_SHARE, MIN_DIFFS, HrvTime

# Running sums drift by rounding as values enter and leave; recomputing them from the
# buffer every so many updates bounds the drift at O(window) cost, O(1) amortised.
_RESUM_EVERY = 4096


class HrvTracker:
    """Sliding-window time-domain HRV, updated in O(1) per beat.

    Give ``window_beats`` (the last N beats) or ``window_s`` (the last W seconds of beat
    time, default :data:`~processors.physiology.HRV_WINDOW_S`). With ``window_s`` the
    window holds the most recent beats whose intervals sum to at most W seconds, and it is
    full once W seconds of beats have been recorded since creation or :meth:`reset` (time
    lost in gaps does not count). Metrics are as :func:`processors.hrv.hrv_time`: SDNN and
    SDSD with ddof 1, pNN50 over the successive differences used.
    """

    __slots__ = (
        "_beats",
        "_churn",
        "_churn_d",
        "_diffs",
        "_elapsed_ms",
        "_n50",
        "_n_d",
        "_next_after_gap",
        "_ref",
        "_s1",
        "_s2",
        "_sd1",
        "_sd2",
        "_since_resum",
        "_window_beats",
        "_window_ms",
        "rr_max_ms",
        "rr_min_ms",
    )

    def __init__(
        self,
        *,
        window_beats: int | None = None,
        window_s: float | None = None,
        rr_min_ms: float = phys.RR_MIN_MS,
        rr_max_ms: float = phys.RR_MAX_MS,
    ) -> None:
        if window_beats is not None and window_s is not None:
            raise ValueError("give window_beats or window_s, not both")
        if window_beats is not None and window_beats < MIN_DIFFS + 1:
            raise ValueError(f"window_beats must be ≥ {MIN_DIFFS + 1}, got {window_beats}")
        if window_beats is None:
            window_s = phys.HRV_WINDOW_S if window_s is None else window_s
            if window_s <= 0:
                raise ValueError(f"window_s must be > 0, got {window_s}")
        self._window_beats = window_beats
        self._window_ms = None if window_s is None else 1000.0 * window_s
        self.rr_min_ms = rr_min_ms
        self.rr_max_ms = rr_max_ms
        # Per beat in the window: its NN (ms) and its difference to the previous beat, or
        # None when it follows a gap. The first beat's difference is never counted.
        self._beats: deque[float] = deque()
        self._diffs: deque[float | None] = deque()
        self.reset()

    def reset(self) -> None:
        """Forget every beat (new recording)."""
        self._beats.clear()
        self._diffs.clear()
        self._elapsed_ms = 0.0
        self._next_after_gap = False
        self._ref = 0.0
        self._zero_sums()
        self._since_resum = 0

    def _zero_sums(self) -> None:
        self._s1 = 0.0  # Σ (nn − ref)
        self._s2 = 0.0  # Σ (nn − ref)²
        self._sd1 = 0.0  # Σ d over counted differences
        self._sd2 = 0.0  # Σ d²
        self._n_d = 0  # counted differences
        self._n50 = 0  # counted |d| > 50 ms
        self._churn = 0.0  # Σ (nn − ref)² added or removed since the sums were exact
        self._churn_d = 0.0  # Σ d² added or removed since then

    @property
    def n_beats(self) -> int:
        """Beats currently in the window."""
        return len(self._beats)

    def mark_gap(self) -> None:
        """The stream was interrupted: the next beat will not be differenced with the last."""
        self._next_after_gap = True

    def add(self, rr_ms: float, after_gap: bool = False) -> HrvTime | None:
        """Add one RR interval (ms), oldest first; return the window's metrics when full.

        ``after_gap``: this beat follows a gap, so its difference to the previous beat is
        not used. Returns ``None`` while the window is not yet full, when the interval is
        implausible (dropped, treated as a gap), or when the window holds fewer than two
        usable differences.
        """
        if not math.isfinite(rr_ms) or rr_ms <= 0:
            raise ValueError(f"RR interval must be finite and > 0 ms, got {rr_ms!r}")
        if not self.rr_min_ms <= rr_ms <= self.rr_max_ms:
            self._next_after_gap = True
            return None
        gap = after_gap or self._next_after_gap
        self._next_after_gap = False
        if not self._beats:
            self._ref = rr_ms
        diff = None if (gap or not self._beats) else rr_ms - self._beats[-1]
        self._push(rr_ms, diff)
        self._elapsed_ms += rr_ms
        self._evict()
        self._since_resum += 1
        if self._since_resum >= _RESUM_EVERY:
            self._resum()
        return self.current()

    def current(self) -> HrvTime | None:
        """Metrics of the current window, or ``None`` if it is not full or too sparse."""
        n = len(self._beats)
        if self._window_beats is not None:
            if n < self._window_beats:
                return None
        elif self._window_ms is not None and self._elapsed_ms < self._window_ms:
            return None
        m = self._n_d
        if m < MIN_DIFFS or n < 2:
            return None
        mean_x = self._s1 / n
        mean_nn = self._ref + mean_x
        resid_nn = self._s2 - self._s1 * mean_x
        # A near-constant window lost its digits to the sums' rounding: recompute it.
        if resid_nn <= CANCELLATION_SHARE * self._churn:
            resid_nn = sum((nn - mean_nn) ** 2 for nn in self._beats)
        resid_d = self._sd2 - self._sd1 * self._sd1 / m
        if resid_d <= CANCELLATION_SHARE * self._churn_d:
            counted = [d for d in self._diffs if d is not None]
            mean_d = sum(counted) / m
            resid_d = sum((d - mean_d) ** 2 for d in counted)
        var_nn = max(resid_nn, 0.0) / (n - 1)
        var_d = max(resid_d, 0.0) / (m - 1)
        rmssd = math.sqrt(max(self._sd2, 0.0) / m)
        return HrvTime(
            n_beats=n,
            n_diffs=m,
            mean_nn_ms=mean_nn,
            mean_hr_bpm=60_000.0 / mean_nn,
            sdnn_ms=math.sqrt(var_nn),
            rmssd_ms=rmssd,
            ln_rmssd=math.log(rmssd) if rmssd > 0 else -math.inf,
            sdsd_ms=math.sqrt(var_d),
            pnn50_pct=100.0 * self._n50 / m,
        )

    # --- internals ------------------------------------------------------------------------

    def _push(self, nn: float, diff: float | None) -> None:
        self._beats.append(nn)
        self._diffs.append(diff)
        x = nn - self._ref
        self._s1 += x
        self._s2 += x * x
        self._churn += x * x
        if diff is not None:
            self._count_diff(diff, +1)

    def _count_diff(self, d: float, sign: int) -> None:
        self._sd1 += sign * d
        self._sd2 += sign * d * d
        self._churn_d += d * d
        self._n_d += sign
        if abs(d) > phys.PNN50_THRESHOLD_MS:
            self._n50 += sign

    def _evict(self) -> None:
        if self._window_beats is not None:
            while len(self._beats) > self._window_beats:
                self._pop_oldest()
        elif self._window_ms is not None:
            window_sum = self._s1 + self._ref * len(self._beats)
            while window_sum > self._window_ms:
                window_sum -= self._pop_oldest()

    def _pop_oldest(self) -> float:
        nn = self._beats.popleft()
        self._diffs.popleft()  # the oldest beat's own difference is never counted
        x = nn - self._ref
        self._s1 -= x
        self._s2 -= x * x
        self._churn += x * x
        # The new oldest beat's difference pointed at the evicted beat: stop counting it.
        if self._diffs and self._diffs[0] is not None:
            self._count_diff(self._diffs[0], -1)
            self._diffs[0] = None
        return nn

    def _resum(self) -> None:
        self._since_resum = 0
        self._zero_sums()
        if self._beats:
            self._ref = self._beats[0]
        for nn, diff in zip(self._beats, self._diffs, strict=True):
            x = nn - self._ref
            self._s1 += x
            self._s2 += x * x
            if diff is not None:
                self._count_diff(diff, +1)
        self._churn = self._s2
