"""Grip tests: squeezes in a force trace, MVC, test noise, and the post-session class.

Protocol (docs/rules.md "Measurement protocols"): before the session the athlete squeezes
maximally ~3 times; the MVC is the best peak. After the session the test is repeated at
e.g. 0, 5, 15 and 30 minutes. A drop is ``(MVC − best post peak) / MVC``.

A drop *counts* only beyond the test's own noise. The threshold ``counts`` has two bases
(:class:`ThresholdBasis`), and every result says which one it used:

* ``personal`` — the athlete's own noise is known (CV of MVC over ≥ 5 stored sessions):
  ``counts = 1.65·√2·CV`` (HOPKINS_2000);
* ``article`` — until then: the ARTICLE's figure, ``counts = 10%``. No noise is guessed,
  because a guessed CV would move the article's line (5% gives 11.7%, which no "10% drop"
  would pass).

Classification of a session (ARTICLE: "A 10% drop post-workout that recovers within 15
minutes suggests acute signaling. A drop that lingers past 30 minutes hints at oxidative
spillover."), with ``acute = max(10%, counts)`` — the signal drop must be the article's
~10% AND count:

* ``spillover`` — a drop that counts in a test before 30 min is still there (counts) at
  the first test at ≥ 30 min: oxidative spillover, pull back. "Still" means it was there
  before: a drop first seen at 30 min is not spillover.
* ``signal`` — the largest drop among the tests up to 15 min is ≥ ``acute`` and the last
  test at ≤ 15 min no longer counts: acute signalling, informational.
* ``delayed`` — an acute drop that had not recovered by 15 min but had by 30 min.
* ``pending`` — an acute drop not recovered by 15 min and no test at ≥ 30 min yet.
* ``late`` — a drop that counts at the first test at ≥ 30 min but in no test before it
  (first seen late: not the article's pattern; no rule fires).
* ``normal`` — otherwise.

The class is monotonic in the drops: making every post-session peak smaller never moves a
session to a milder class (normal < signal < delayed = pending = late < spillover).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from processors import physiology as ph
from processors.errors import InputError


class GripInputError(InputError, ValueError):
    """A force trace or grip-test input that cannot give a measurement (says which, and why)."""


class GripClass(StrEnum):
    """Post-session grip classification; see the module docstring."""

    NORMAL = "normal"
    SIGNAL = "signal"
    DELAYED = "delayed"
    PENDING = "pending"
    LATE = "late"
    SPILLOVER = "spillover"

    @property
    def rank(self) -> int:
        """Severity order used by the monotonicity guarantee."""
        return _RANK[self]


_RANK = {
    GripClass.NORMAL: 0,
    GripClass.SIGNAL: 1,
    GripClass.DELAYED: 2,
    GripClass.PENDING: 2,
    GripClass.LATE: 2,
    GripClass.SPILLOVER: 3,
}


class ThresholdBasis(StrEnum):
    """Where the drop that counts comes from; see the module docstring."""

    ARTICLE = "article"
    PERSONAL = "personal"


@dataclass(frozen=True, slots=True)
class Squeeze:
    """One squeeze: start/end/peak times in s (trace time base) and peak force in kg."""

    t_start_s: float
    t_end_s: float
    t_peak_s: float
    peak_kg: float


def find_squeezes(
    t_s: npt.ArrayLike,
    force_kg: npt.ArrayLike,
    *,
    on_kg: float | None = None,
    off_kg: float | None = None,
    min_duration_s: float = ph.GRIP_SQUEEZE_MIN_DURATION_S,
) -> tuple[Squeeze, ...]:
    """Squeezes in a force trace (~80 Hz) by threshold with hysteresis.

    A squeeze begins when force rises to ``on_kg`` and ends when it falls below ``off_kg``.
    Defaults: on = max(2 kg, 0.3·max force of the trace), off = on / 2. Squeezes shorter than
    ``min_duration_s`` (spikes, taps) are dropped. A squeeze still open at the end counts.
    """
    t = np.asarray(t_s, dtype=np.float64)
    f = np.asarray(force_kg, dtype=np.float64)
    if t.ndim != 1 or t.shape != f.shape:
        raise GripInputError(
            f"time and force must be 1-D arrays of equal length, got {t.shape} and {f.shape}"
        )
    if t.size == 0:
        return ()
    if not (np.isfinite(t).all() and np.isfinite(f).all()):
        raise GripInputError("force trace holds NaN or inf; drop those samples first")
    if (np.diff(t) <= 0).any():
        raise GripInputError("force trace times must be strictly increasing")
    on = (
        on_kg
        if on_kg is not None
        else max(ph.GRIP_SQUEEZE_MIN_KG, ph.GRIP_SQUEEZE_ON_FRACTION * float(f.max()))
    )
    off = off_kg if off_kg is not None else on / 2.0
    if not 0.0 <= off <= on:
        raise GripInputError(f"hysteresis needs 0 ≤ off ({off} kg) ≤ on ({on} kg)")

    squeezes: list[Squeeze] = []
    start: int | None = None
    armed = False  # True once the squeeze reached `on`
    for i in range(f.size):
        if start is None:
            if f[i] > off:
                start = i
                armed = f[i] >= on
        else:
            armed = armed or f[i] >= on
            if f[i] <= off:
                if armed:
                    squeezes.append(_squeeze(t, f, start, i))
                start = None
                armed = False
    if start is not None and armed:
        squeezes.append(_squeeze(t, f, start, f.size))
    return tuple(s for s in squeezes if s.t_end_s - s.t_start_s >= min_duration_s)


def _squeeze(t: npt.NDArray[np.float64], f: npt.NDArray[np.float64], lo: int, hi: int) -> Squeeze:
    peak = lo + int(np.argmax(f[lo:hi]))
    return Squeeze(float(t[lo]), float(t[hi - 1]), float(t[peak]), float(f[peak]))


def best_peak_kg(t_s: npt.ArrayLike, force_kg: npt.ArrayLike) -> tuple[float, tuple[float, ...]]:
    """Best squeeze peak (kg) of one test and all its peaks; raises if there is no squeeze."""
    peaks = tuple(s.peak_kg for s in find_squeezes(t_s, force_kg))
    if not peaks:
        raise GripInputError("no squeeze found in the force trace: was the dynamometer squeezed?")
    return max(peaks), peaks


@dataclass(frozen=True, slots=True)
class MvcNoise:
    """Test noise of an athlete's MVC: the CV (fraction), None while it is not yet known.

    ``n_sessions`` baseline sessions were given; ``min_sessions`` are needed for a CV.
    """

    cv: float | None
    n_sessions: int
    min_sessions: int = ph.GRIP_MIN_BASELINE_SESSIONS

    @property
    def from_athlete(self) -> bool:
        """True once the athlete's own CV is known (the personal threshold applies)."""
        return self.cv is not None

    @property
    def basis(self) -> ThresholdBasis:
        """Which threshold a test with this noise is classified on."""
        return ThresholdBasis.PERSONAL if self.cv is not None else ThresholdBasis.ARTICLE

    def counting_drop(
        self, signal_drop: float = ph.GRIP_SIGNAL_DROP, z: float = ph.GRIP_NOISE_Z
    ) -> float:
        """The drop (fraction of MVC) that counts: z·√2·CV, or ``signal_drop`` without a CV."""
        return signal_drop if self.cv is None else real_drop_threshold(self.cv, z)


def real_drop_threshold(cv: float, z: float = ph.GRIP_NOISE_Z) -> float:
    """Drop (fraction of MVC) beyond which a change is real: z·√2·CV (HOPKINS_2000)."""
    return z * math.sqrt(2.0) * cv


def mvc_noise(
    baseline_mvcs_kg: Sequence[float],
    *,
    min_sessions: int = ph.GRIP_MIN_BASELINE_SESSIONS,
) -> MvcNoise:
    """CV (ddof 1) of the athlete's baseline MVCs (kg); None until ``min_sessions`` known."""
    values = np.asarray(baseline_mvcs_kg, dtype=np.float64)
    if values.size and (not np.isfinite(values).all() or (values <= 0).any()):
        raise GripInputError("baseline MVCs must be positive finite kilograms")
    if values.size < max(min_sessions, 2):
        return MvcNoise(None, int(values.size), min_sessions)
    cv = float(values.std(ddof=1) / values.mean())
    return MvcNoise(cv, int(values.size), min_sessions)


@dataclass(frozen=True, slots=True)
class PostTest:
    """One post-session test: minutes after the session, its peaks (kg), best, drop (%)."""

    minute: float
    peaks_kg: tuple[float, ...]
    best_kg: float
    drop_pct: float


@dataclass(frozen=True, slots=True)
class GripTest:
    """A session's grip test and its class.

    ``drop_pct`` is the largest drop among the post tests (percent of MVC; negative means
    stronger than baseline). Thresholds are in percent of MVC: ``real_drop_threshold_pct``
    is the drop that counts (on ``threshold_basis``), ``acute_threshold_pct`` the drop a
    ``signal`` needs. ``noise_cv_pct`` is None while the athlete's own noise is unknown
    (``baseline_sessions`` < ``min_baseline_sessions``).
    """

    mvc_kg: float
    mvc_peaks_kg: tuple[float, ...]
    post: tuple[PostTest, ...]
    drop_pct: float
    grip_class: GripClass
    threshold_basis: ThresholdBasis
    noise_cv_pct: float | None
    baseline_sessions: int
    min_baseline_sessions: int
    real_drop_threshold_pct: float
    acute_threshold_pct: float

    @property
    def noise_from_athlete(self) -> bool:
        """True when the personal threshold (the athlete's own noise) was used."""
        return self.threshold_basis is ThresholdBasis.PERSONAL

    def threshold_note(self) -> str:
        """One sentence saying which threshold classified the test, for alert messages."""
        if self.noise_cv_pct is not None:
            return (
                f"A drop counted from {self.real_drop_threshold_pct:.1f}%: your own test noise "
                f"(1.65·√2 × CV {self.noise_cv_pct:.1f}% over {self.baseline_sessions} "
                "sessions)."
            )
        return (
            f"A drop counted from the article's {self.real_drop_threshold_pct:.3g}%: your own "
            f"test noise is known after {self.min_baseline_sessions} grip tests "
            f"({self.baseline_sessions} so far)."
        )

    def evidence(self) -> dict[str, float]:
        """Unit-named numbers for an alert.

        ``threshold_personal`` is 1 when the athlete's own noise set the threshold, 0 when
        the article's figure did (then ``noise_cv_pct`` is absent).
        """
        out = {
            "mvc_kg": self.mvc_kg,
            "max_drop_pct": self.drop_pct,
            "real_drop_threshold_pct": self.real_drop_threshold_pct,
            "acute_threshold_pct": self.acute_threshold_pct,
            "threshold_personal": 1.0 if self.noise_from_athlete else 0.0,
            "baseline_sessions": float(self.baseline_sessions),
        }
        if self.noise_cv_pct is not None:
            out["noise_cv_pct"] = self.noise_cv_pct
        for p in self.post:
            out[f"drop_at_{p.minute:g}_min_pct"] = p.drop_pct
        return out


def classify_grip(
    mvc_kg: float,
    post_best_kg: Mapping[float, float],
    noise: MvcNoise,
    *,
    signal_drop: float = ph.GRIP_SIGNAL_DROP,
    recovery_min: float = ph.GRIP_SIGNAL_RECOVERY_MIN,
    spillover_min: float = ph.GRIP_SPILLOVER_MIN,
    noise_z: float = ph.GRIP_NOISE_Z,
    mvc_peaks_kg: tuple[float, ...] = (),
    post_peaks_kg: Mapping[float, tuple[float, ...]] | None = None,
) -> GripTest:
    """Classify a session from its MVC (kg) and best post-session peaks {minute: kg}."""
    if not (math.isfinite(mvc_kg) and mvc_kg > 0):
        raise GripInputError(f"MVC must be a positive number of kg, got {mvc_kg}")
    if not post_best_kg:
        raise GripInputError("no post-session test: give at least one {minute: best kg}")
    for minute, kg in post_best_kg.items():
        if not (math.isfinite(minute) and minute >= 0 and math.isfinite(kg) and kg >= 0):
            raise GripInputError(f"post test at {minute} min has an invalid value {kg} kg")
    counts = noise.counting_drop(signal_drop, noise_z)
    acute_thr = max(signal_drop, counts)
    minutes = sorted(post_best_kg)
    drops = {m: (mvc_kg - post_best_kg[m]) / mvc_kg for m in minutes}
    early = [m for m in minutes if m <= recovery_min]
    late = [m for m in minutes if m >= spillover_min]
    seen_before_late = any(drops[m] >= counts for m in minutes if m < spillover_min)
    still_late = bool(late) and drops[late[0]] >= counts
    acute = max(drops[m] for m in (early or minutes))

    if still_late and seen_before_late:
        grip_class = GripClass.SPILLOVER
    elif early and acute >= acute_thr:
        if drops[early[-1]] < counts:
            grip_class = GripClass.SIGNAL
        elif late:
            grip_class = GripClass.DELAYED
        else:
            grip_class = GripClass.PENDING
    elif still_late:
        grip_class = GripClass.LATE
    else:
        grip_class = GripClass.NORMAL

    peaks = post_peaks_kg or {}
    post = tuple(
        PostTest(
            float(m),
            tuple(peaks.get(m, (post_best_kg[m],))),
            float(post_best_kg[m]),
            100.0 * drops[m],
        )
        for m in minutes
    )
    return GripTest(
        mvc_kg=float(mvc_kg),
        mvc_peaks_kg=mvc_peaks_kg or (float(mvc_kg),),
        post=post,
        drop_pct=100.0 * max(drops.values()),
        grip_class=grip_class,
        threshold_basis=noise.basis,
        noise_cv_pct=None if noise.cv is None else 100.0 * noise.cv,
        baseline_sessions=noise.n_sessions,
        min_baseline_sessions=noise.min_sessions,
        real_drop_threshold_pct=100.0 * counts,
        acute_threshold_pct=100.0 * acute_thr,
    )


ForceTrace = tuple[npt.ArrayLike, npt.ArrayLike]


def grip_test_from_traces(
    pre: ForceTrace,
    post: Mapping[float, ForceTrace],
    baseline_mvcs_kg: Sequence[float] = (),
    *,
    signal_drop: float = ph.GRIP_SIGNAL_DROP,
    recovery_min: float = ph.GRIP_SIGNAL_RECOVERY_MIN,
    spillover_min: float = ph.GRIP_SPILLOVER_MIN,
    noise_z: float = ph.GRIP_NOISE_Z,
    min_baseline_sessions: int = ph.GRIP_MIN_BASELINE_SESSIONS,
) -> GripTest:
    """Whole grip test from force traces: ``pre`` = (t s, kg) before the session,
    ``post`` = {minutes after the session: (t s, kg)}, and the athlete's earlier MVCs (kg)
    for the test noise (the article's 10% counts until ``min_baseline_sessions`` are given).
    """
    mvc, mvc_peaks = best_peak_kg(*pre)
    best: dict[float, float] = {}
    peaks: dict[float, tuple[float, ...]] = {}
    for minute, trace in post.items():
        try:
            best[minute], peaks[minute] = best_peak_kg(*trace)
        except GripInputError as exc:
            raise GripInputError(f"post test at {minute:g} min: {exc}") from exc
    noise = mvc_noise(baseline_mvcs_kg, min_sessions=min_baseline_sessions)
    return classify_grip(
        mvc,
        best,
        noise,
        signal_drop=signal_drop,
        recovery_min=recovery_min,
        spillover_min=spillover_min,
        noise_z=noise_z,
        mvc_peaks_kg=mvc_peaks,
        post_peaks_kg=peaks,
    )
