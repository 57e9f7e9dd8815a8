"""Centred running median of an irregularly sampled signal, batch and streaming.

SmO2 is smoothed with it (:mod:`processors.oxygenation`): a centred median keeps edges and
rejects single-sample spikes without the lag of a trailing mean, and never reaches across a
gap in the recording.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from processors import physiology as ph

FloatArray = npt.NDArray[np.float64]


def small_median(values: Iterable[float]) -> float:
    """The median of a handful of values, as ``np.median`` gives it (the mean of the two
    middle values for an even count; NaN if any value is NaN); ``ValueError`` when empty.

    The streaming smoothers take one median per sample over a few samples: numpy's call
    costs ~10 µs there, a sort in Python ~1 µs (a team worker takes one per SmO2 sample of
    every athlete in a session)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("the median of no values")
    if any(math.isnan(v) for v in ordered):
        return math.nan  # sorted() leaves NaN anywhere: numpy says NaN
    middle = n // 2
    if n % 2:
        return float(ordered[middle])
    return (ordered[middle - 1] + ordered[middle]) / 2.0


def smooth_centred(
    t_s: npt.ArrayLike,
    smo2_pct: npt.ArrayLike,
    *,
    window_s: float = ph.SMO2_SMOOTHING_WINDOW_S,
    max_gap_s: float = ph.SMO2_MAX_GAP_S,
) -> FloatArray:
    """Centred running median of SmO2 over ±window_s/2, never across a gap > max_gap_s.

    Batch twin of the smoother inside :class:`EffortDetector` (same values).
    """
    t = np.asarray(t_s, dtype=np.float64)
    y = np.asarray(smo2_pct, dtype=np.float64)
    half = window_s / 2.0
    out = np.empty_like(y)
    segment = np.concatenate(([0], np.cumsum(np.diff(t) > max_gap_s))) if t.size else t
    for i in range(t.size):
        lo = int(np.searchsorted(t, t[i] - half, side="left"))
        hi = int(np.searchsorted(t, t[i] + half, side="right"))
        same = segment[lo:hi] == segment[i]
        out[i] = float(np.median(y[lo:hi][same]))
    return out


class CentredMedian:
    """Streaming twin of :func:`smooth_centred`: bounded memory, same values.

    Each sample is emitted once a sample more than ``window_s/2`` later has arrived (or at
    :meth:`flush`, or when a gap > ``max_gap_s`` ends its segment), so output lags input by
    half the window.
    """

    def __init__(
        self,
        window_s: float = ph.SMO2_SMOOTHING_WINDOW_S,
        max_gap_s: float = ph.SMO2_MAX_GAP_S,
    ) -> None:
        self._half = window_s / 2.0
        self._max_gap = max_gap_s
        self._buf: deque[tuple[float, float]] = deque()
        self._next = 0  # index in _buf of the next sample to emit

    @property
    def half_window(self) -> float:
        """Half the smoothing window (s): how far output trails input."""
        return self._half

    def __len__(self) -> int:
        """Samples held (bounded by the window)."""
        return len(self._buf)

    def push(self, t: float, y: float) -> list[tuple[float, float]]:
        """Add a sample (s, value); return the (t, smoothed) pairs now complete."""
        out: list[tuple[float, float]] = []
        if self._buf and t - self._buf[-1][0] > self._max_gap:
            out.extend(self.flush())
        self._buf.append((t, y))
        while self._next < len(self._buf) and t > self._buf[self._next][0] + self._half:
            out.append(self._emit(self._next))
            self._next += 1
        self._trim()
        return out

    def flush(self) -> list[tuple[float, float]]:
        """Emit every pending sample with the data at hand and start a new segment."""
        out = [self._emit(i) for i in range(self._next, len(self._buf))]
        self._buf.clear()
        self._next = 0
        return out

    def _emit(self, i: int) -> tuple[float, float]:
        tc = self._buf[i][0]
        values = [y for (t, y) in self._buf if abs(t - tc) <= self._half]
        return tc, small_median(values)

    def _trim(self) -> None:
        if self._next >= len(self._buf):
            oldest_needed = self._buf[-1][0] - self._half if self._buf else 0.0
        else:
            oldest_needed = self._buf[self._next][0] - self._half
        while self._buf and self._buf[0][0] < oldest_needed and self._next > 0:
            self._buf.popleft()
            self._next -= 1
