"""The rest baseline b an effort's desaturation and recovery are measured from: the median
smoothed SmO2 over the last ``window_s`` at rest, void once older than ``max_age_s``.

Times in s, levels in SmO2 %.
"""

from __future__ import annotations

import math
from collections import deque

from processors.smoothing import small_median


class RestBaseline:
    """Rest samples of the last ``window_s`` (s) and the baseline taken from them."""

    def __init__(self, window_s: float, max_age_s: float) -> None:
        self._window = window_s
        self._max_age = max_age_s
        self._rest: deque[tuple[float, float, float]] = deque()  # (t, live, smoothed)
        # The baseline b (%): None until three rest samples have been seen.
        self.level: float | None = None
        # The live samples (%) b was taken from: the joint fit's observations of the level
        # the recovery returns to.
        self.rest_live: tuple[float, ...] = ()
        self._t = -math.inf  # when b was taken (s)

    def __len__(self) -> int:
        return len(self._rest)

    def expire(self, t: float) -> None:
        """Forget a baseline taken more than ``max_age_s`` before ``t`` (s)."""
        if self.level is not None and t - self._t > self._max_age:
            self.level = None
            self.rest_live = ()
            self._rest.clear()

    def add(self, t: float, raw: float, y: float) -> None:
        """One rest sample (s, live %, smoothed %); b follows from three samples on."""
        self._rest.append((t, raw, y))
        while self._rest and self._rest[0][0] < t - self._window:
            self._rest.popleft()
        if len(self._rest) >= 3:
            self.level = small_median(v for _, _, v in self._rest)
            self.rest_live = tuple(v for _, v, _ in self._rest)
            self._t = t

    def restart_window(self) -> None:
        """Start the rest window afresh (after an effort or a gap); b itself is kept."""
        self._rest.clear()
