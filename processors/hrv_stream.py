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

:class:`LiveHrv` puts the quality gate of a morning reading in front of a tracker: each
beat is judged against its neighbours (a few beats late), abnormal beats never reach the
tracker, and a window whose share of abnormal beats is over the gate's limit is rejected
and carries no numbers. That is what the live pipeline runs.

Memory is bounded: at most ``window_beats`` beats, or ``window_s / RR_MIN_MS`` beats.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from processors import physiology as phys
from processors.hrv import CANCELLATION_SHARE, MIN_DIFFS, HrvTime
from processors.rr_clean import QualityVerdict, beat_deviation, gate_verdict

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
        return self.current() if self.feed(rr_ms, after_gap) else None

    def feed(self, rr_ms: float, after_gap: bool = False) -> bool:
        """:meth:`add` without computing the metrics (ask :meth:`current` when they are
        wanted); False when the interval was implausible and dropped."""
        if not math.isfinite(rr_ms) or rr_ms <= 0:
            raise ValueError(f"RR interval must be finite and > 0 ms, got {rr_ms!r}")
        if not self.rr_min_ms <= rr_ms <= self.rr_max_ms:
            self._next_after_gap = True
            return False
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
        return True

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
        sd2 = self._sd2
        if sd2 <= CANCELLATION_SHARE * self._churn_d:
            sd2 = sum(d * d for d in self._diffs if d is not None)
        rmssd = math.sqrt(max(sd2, 0.0) / m)
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


@dataclass(frozen=True, slots=True)
class LiveWindow:
    """One live HRV window: its quality verdict, and its metrics when it passed.

    ``metrics`` is ``None`` when the window is rejected (or too sparse): a rejected window
    carries no HRV numbers, only the verdict and its reason.
    """

    verdict: QualityVerdict
    metrics: HrvTime | None


class LiveHrv:
    """Live HRV judged like a morning reading: the quality gate over a sliding window.

    Each beat is judged by :func:`processors.rr_clean.beat_deviation` once the
    ``median_beats // 2`` beats after it have arrived (so the window lags the strap by
    ~5 beats), or at once when its run ends (a gap, an implausible interval). A beat that
    deviates more than ``max_deviation`` from its neighbours is not an NN interval: it
    reaches the :class:`HrvTracker` as a hole (dropped, the next beat after a gap), so the
    window's RMSSD uses normal-to-normal differences only. Over the same window the share of
    abnormal beats among the judged ones decides the verdict (:func:`gate_verdict`);
    intervals outside the plausible range count as abnormal.
    """

    __slots__ = (
        "_half",
        "_judged",
        "_judged_ms",
        "_max_abnormal_share",
        "_max_deviation",
        "_n_abnormal",
        "_next_after_gap",
        "_run",
        "_run_base",
        "_run_len",
        "_to_judge",
        "_window_beats",
        "_window_ms",
        "tracker",
    )

    def __init__(
        self,
        *,
        window_beats: int | None = None,
        window_s: float | None = None,
        max_deviation: float = phys.QUALITY_NEIGHBOUR_DEVIATION,
        max_abnormal_share: float = phys.QUALITY_MAX_ABNORMAL_SHARE,
        median_beats: int = phys.QUALITY_MEDIAN_BEATS,
    ) -> None:
        self.tracker = HrvTracker(window_beats=window_beats, window_s=window_s)
        self._window_beats = window_beats
        self._window_ms = (
            None if window_beats is not None else 1000.0 * (window_s or phys.HRV_WINDOW_S)
        )
        self._max_deviation = max_deviation
        self._max_abnormal_share = max_abnormal_share
        self._half = median_beats // 2
        # The current gap-free run: its last values (enough to judge what is pending),
        # the run index of the first kept value, the run's length, the next to judge.
        self._run: deque[float] = deque()
        self._run_base = 0
        self._run_len = 0
        self._to_judge = 0
        self._next_after_gap = False
        # Judged beats in the window: (duration ms, abnormal); their total and count.
        self._judged: deque[tuple[float, bool]] = deque()
        self._judged_ms = 0.0
        self._n_abnormal = 0

    def mark_gap(self) -> None:
        """The stream was interrupted: the run ends here (its last beats are judged now)."""
        self._end_run()

    def add(self, rr_ms: float, after_gap: bool = False) -> LiveWindow | None:
        """Add one RR interval (ms), oldest first; the window once it is full, else None."""
        self.feed(rr_ms, after_gap)
        return self.current()

    def feed(self, rr_ms: float, after_gap: bool = False) -> None:
        """:meth:`add` without building the window (the verdict and its reason): the live
        path feeds every beat and asks :meth:`current` only when it publishes."""
        if not math.isfinite(rr_ms) or rr_ms <= 0:
            raise ValueError(f"RR interval must be finite and > 0 ms, got {rr_ms!r}")
        if after_gap:
            self._end_run()
        if not self.tracker.rr_min_ms <= rr_ms <= self.tracker.rr_max_ms:
            self._end_run()
            self._count(rr_ms, abnormal=True)
            return
        self._run.append(rr_ms)
        self._run_len += 1
        while self._to_judge + self._half < self._run_len:
            self._judge(self._to_judge, run_ended=False)

    def current(self) -> LiveWindow | None:
        """The current window, or None until a window's worth of beats has been judged.

        An accepted window's ``metrics`` may still be None while the tracker has too few
        normal beats (abnormal ones were left out)."""
        if not self._full():
            return None
        metrics = self.tracker.current()
        verdict = gate_verdict(
            self._n_abnormal,
            len(self._judged),
            max_deviation=self._max_deviation,
            max_abnormal_share=self._max_abnormal_share,
        )
        return LiveWindow(verdict, metrics if verdict.accepted else None)

    # --- internals ------------------------------------------------------------------------

    def _full(self) -> bool:
        if self._window_beats is not None:
            return len(self._judged) >= self._window_beats
        return self._window_ms is not None and self._judged_ms >= self._window_ms

    def _end_run(self) -> None:
        while self._to_judge < self._run_len:
            self._judge(self._to_judge, run_ended=True)
        self._run.clear()
        self._run_base = self._run_len = self._to_judge = 0
        self._next_after_gap = True

    def _judge(self, j: int, *, run_ended: bool) -> None:
        """Judge run beat ``j`` from the beats around it in its run, and pass it on."""
        lo = max(0, j - self._half)
        hi = self._run_len if run_ended else j + self._half + 1
        hi = min(hi, self._run_len, j + self._half + 1)
        seg = [self._run[k - self._run_base] for k in range(lo, hi)]
        abnormal = beat_deviation(seg, j - lo) > self._max_deviation
        value = self._run[j - self._run_base]
        self._count(value, abnormal=abnormal)
        if abnormal:
            self._next_after_gap = True
        else:
            self.tracker.feed(value, after_gap=self._next_after_gap)
            self._next_after_gap = False
        self._to_judge = j + 1
        # Keep only what the next judgements need: half a window before the next beat.
        while self._run and self._run_base < self._to_judge - self._half:
            self._run.popleft()
            self._run_base += 1

    def _count(self, rr_ms: float, *, abnormal: bool) -> None:
        self._judged.append((rr_ms, abnormal))
        self._judged_ms += rr_ms
        self._n_abnormal += abnormal
        if self._window_beats is not None:
            while len(self._judged) > self._window_beats:
                self._drop_oldest()
        elif self._window_ms is not None:
            while self._judged and self._judged_ms - self._judged[0][0] >= self._window_ms:
                self._drop_oldest()

    def _drop_oldest(self) -> None:
        ms, abnormal = self._judged.popleft()
        self._judged_ms -= ms
        self._n_abnormal -= abnormal
