"""Delayed mono-exponential fit of a recovery: ``y0 + A·(1 − exp(−(t − TD)/τ))`` for t ≥ TD.

Used for SmO2 reoxygenation after work (:mod:`processors.oxygenation`): the delay TD is
found by a grid search, τ by bounded scalar minimisation, y0 and A in closed form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar

from processors import physiology as ph

FloatArray = npt.NDArray[np.float64]

_MIN_FIT_SAMPLES = 5
# Shortest τ the fit considers: a quarter of Moxy's fastest (0.5-s) sampling interval would be
# unresolvable; 0.5 s is below any reported muscle reoxygenation time constant.
_MIN_TAU_S = 0.5


@dataclass(frozen=True, slots=True)
class RecoveryFit:
    """Delayed mono-exponential ``y0 + A·(1 − exp(−(t − TD)/τ))`` (t ≥ TD; y0 before).

    ``tau_s`` and ``delay_s`` (TD) in s, ``y0_pct`` and ``amplitude_pct`` in SmO2 %, ``r2``
    the coefficient of determination on the fitted samples.
    """

    tau_s: float
    delay_s: float
    y0_pct: float
    amplitude_pct: float
    r2: float

    @property
    def asymptote_pct(self) -> float:
        """The level the curve recovers to, y0 + A."""
        return self.y0_pct + self.amplitude_pct

    def time_to(self, level_pct: float) -> float | None:
        """Time (s, from the fit's zero) at which the curve reaches ``level_pct``; None if
        it starts at or above it or never gets there."""
        if not self.y0_pct < level_pct < self.y0_pct + self.amplitude_pct:
            return None
        rest = self.y0_pct + self.amplitude_pct - level_pct
        return self.delay_s + self.tau_s * math.log(self.amplitude_pct / rest)


def _linear_fit(g: FloatArray, y: FloatArray) -> tuple[float, float, float]:
    """Least-squares y ≈ y0 + A·g in closed form: (y0, A, squared error)."""
    gc = g - g.mean()
    yc = y - y.mean()
    sgg = float(gc @ gc)
    syy = float(yc @ yc)
    if sgg <= 0.0:
        return float(y.mean()), 0.0, syy
    amp = float(gc @ yc) / sgg
    return float(y.mean() - amp * g.mean()), amp, max(syy - amp * float(gc @ yc), 0.0)


def fit_delayed_recovery(
    t_s: Sequence[float] | FloatArray,
    smo2_pct: Sequence[float] | FloatArray,
    *,
    max_delay_s: float = ph.SMO2_MAX_DELAY_S,
    delay_step_s: float = ph.SMO2_DELAY_STEP_S,
    asymptote_samples: Sequence[float] | FloatArray = (),
) -> RecoveryFit | None:
    """Fit a delayed mono-exponential recovery to SmO2 samples (t in s from the end of work, %).

    ``asymptote_samples`` (%) are further observations of the asymptote y0 + A, e.g. the
    live samples at rest before the effort when the recovery returns to that level: they are
    fitted jointly with the recovery (least squares over both), which pins the asymptote and
    so τ better than the tail of the recovery alone. R² is over the recovery samples only.

    The delay TD is searched on a grid (``delay_step_s`` up to ``max_delay_s``, and never past
    3/4 of the span so that the rise keeps samples); for each TD the time constant τ is
    found by bounded scalar minimisation over log τ (0.5 s to 5× the span) with y0 and A
    solved by linear least squares. The least squared error wins. None when there are fewer
    than 5 samples, the span is not positive or no rise can be fitted.
    """
    t = np.asarray(t_s, dtype=np.float64)
    y = np.asarray(smo2_pct, dtype=np.float64)
    if t.size < _MIN_FIT_SAMPLES or t.shape != y.shape:
        return None
    span = float(t[-1] - t[0])
    if span <= 0:
        return None
    at_top = np.asarray(asymptote_samples, dtype=np.float64)
    y_all = np.concatenate((y, at_top))
    top_g = np.ones(at_top.size)  # fully recovered: 1 − exp(−∞)

    def g_of(shifted: FloatArray, tau: float) -> FloatArray:
        return np.concatenate((1.0 - np.exp(-shifted / tau), top_g))

    log_tau_bounds = (math.log(_MIN_TAU_S), math.log(max(5.0 * span, 2.0 * _MIN_TAU_S)))
    best: tuple[float, float, float, float, float] | None = None  # sse, delay, tau, y0, amp
    for delay in np.arange(0.0, min(max_delay_s, 0.75 * span) + 1e-9, delay_step_s):
        shifted = np.clip(t - delay, 0.0, None)

        def sse(log_tau: float, shifted: FloatArray = shifted) -> float:
            return _linear_fit(g_of(shifted, math.exp(log_tau)), y_all)[2]

        res = minimize_scalar(sse, bounds=log_tau_bounds, method="bounded")
        tau = math.exp(float(res.x))
        y0, amp, err = _linear_fit(g_of(shifted, tau), y_all)
        if amp > 0 and (best is None or err < best[0]):
            best = (err, float(delay), tau, y0, amp)
    if best is None:
        return None
    _, delay, tau, y0, amp = best
    curve = y0 + amp * (1.0 - np.exp(-np.clip(t - delay, 0.0, None) / tau))
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - curve) ** 2).sum()) / total if total > 0 else 0.0
    return RecoveryFit(tau_s=tau, delay_s=delay, y0_pct=y0, amplitude_pct=amp, r2=r2)
