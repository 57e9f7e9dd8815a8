"""Synthetic physiological signals for the emulated peripherals (pure numpy, seedable).

Each generator is an infinite iterator (so an emulator can run for as long as a demo
lasts) with a finite-array companion for tests and batch use. The same seed always gives
the same signal.

* RR intervals: chosen mean HR and beat-to-beat variability (RMSSD), a slow drift, and
  occasional ectopic beats — a premature beat followed by a compensatory pause, so that
  the two intervals together last two normal beats.
* SmO2: falls during efforts and recovers after them with a chosen time constant τ.
* Power: a rest level and an effort level with noise, on the same effort schedule.
* Grip: maximal squeezes (rise, hold with slight fade, release) at a chosen peak, and the
  peak after a session that dropped by a fraction and recovers with a time constant.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

#: Shortest and longest RR interval a generator emits (ms): 300 ms = 200 bpm, 2000 = 30.
RR_MIN_MS = 300.0
RR_MAX_MS = 2000.0


# -- effort schedules ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EffortSchedule:
    """Intervals of effort: ``count`` efforts of ``work_s`` seconds every ``work_s + rest_s``.

    The first effort starts at ``first_s``. ``count=None`` repeats for ever.
    Times are seconds from the start of the signal.
    """

    first_s: float = 60.0
    work_s: float = 60.0
    rest_s: float = 120.0
    count: int | None = None

    def __post_init__(self) -> None:
        if self.work_s <= 0 or self.rest_s < 0 or self.first_s < 0:
            raise ValueError(
                f"EffortSchedule needs work_s > 0, rest_s >= 0, first_s >= 0; got {self}"
            )
        if self.count is not None and self.count < 0:
            raise ValueError(f"EffortSchedule count must be >= 0 or None, got {self.count}")

    @property
    def period_s(self) -> float:
        """Seconds from one effort's start to the next."""
        return self.work_s + self.rest_s

    def is_effort(self, t_s: float) -> bool:
        """True if ``t_s`` falls inside an effort."""
        if t_s < self.first_s:
            return False
        index, phase = divmod(t_s - self.first_s, self.period_s)
        if self.count is not None and index >= self.count:
            return False
        return phase < self.work_s

    def efforts(self, until_s: float) -> list[tuple[float, float]]:
        """(start_s, end_s) of every effort that starts before ``until_s``."""
        spans: list[tuple[float, float]] = []
        for index in itertools.count():
            if self.count is not None and index >= self.count:
                break
            start = self.first_s + index * self.period_s
            if start >= until_s:
                break
            spans.append((start, start + self.work_s))
        return spans


DEFAULT_SCHEDULE = EffortSchedule()
"""A 60-s effort every 3 minutes, the first one minute in, for ever."""


# -- RR intervals -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RRParameters:
    """How an RR series is generated.

    Args:
        mean_hr_bpm: mean heart rate (beats per minute).
        rmssd_ms: target root mean square of successive differences of normal beats (ms).
        ectopic_rate: probability that a given beat is premature (0..0.2).
        prematurity: premature interval as a fraction of the normal one (0.5..0.95).
        drift_ms: standard deviation of a slow random drift of the mean interval (ms).
    """

    mean_hr_bpm: float = 60.0
    rmssd_ms: float = 40.0
    ectopic_rate: float = 0.0
    prematurity: float = 0.65
    drift_ms: float = 20.0

    def __post_init__(self) -> None:
        if not 30.0 <= self.mean_hr_bpm <= 200.0:
            raise ValueError(f"mean_hr_bpm must be within 30..200, got {self.mean_hr_bpm}")
        if not 0.0 <= self.rmssd_ms <= 300.0:
            raise ValueError(f"rmssd_ms must be within 0..300, got {self.rmssd_ms}")
        if not 0.0 <= self.ectopic_rate <= 0.2:
            raise ValueError(f"ectopic_rate must be within 0..0.2, got {self.ectopic_rate}")
        if not 0.5 <= self.prematurity <= 0.95:
            raise ValueError(f"prematurity must be within 0.5..0.95, got {self.prematurity}")
        if self.drift_ms < 0.0:
            raise ValueError(f"drift_ms must be >= 0, got {self.drift_ms}")


DEFAULT_RR = RRParameters()
"""60 bpm, RMSSD 40 ms, no ectopic beats."""


@dataclass(frozen=True, slots=True)
class RRBeat:
    """One generated interval (ms) and whether it is part of an ectopic pair."""

    rr_ms: float
    ectopic: bool = False


def rr_beats(params: RRParameters = DEFAULT_RR, seed: int = 0) -> Iterator[RRBeat]:
    """Endless RR intervals (ms) with the requested mean HR, RMSSD and ectopic beats.

    Normal beats are the mean interval plus a slow drift (an AR(1) process with a time
    constant of ~50 beats) plus white noise whose standard deviation is
    ``rmssd / sqrt(2)`` — successive differences of white noise have RMSSD σ·√2, and the
    drift adds almost nothing beat to beat. An ectopic event emits a premature interval
    ``prematurity × normal`` followed by a compensatory pause ``(2 − prematurity) ×
    normal``; both are flagged ``ectopic``.
    """
    rng = np.random.default_rng(seed)
    mean_ms = 60_000.0 / params.mean_hr_bpm
    sigma = params.rmssd_ms / math.sqrt(2.0)
    phi = math.exp(-1.0 / 50.0)
    drift_step = params.drift_ms * math.sqrt(1.0 - phi * phi)
    drift = 0.0
    while True:
        normals = rng.standard_normal((256, 2))
        uniforms = rng.random(256)
        for (white, drift_noise), u in zip(normals, uniforms, strict=True):
            drift = phi * drift + drift_step * float(drift_noise)
            normal = float(np.clip(mean_ms + drift + sigma * float(white), RR_MIN_MS, RR_MAX_MS))
            if u < params.ectopic_rate:
                premature = max(RR_MIN_MS, params.prematurity * normal)
                yield RRBeat(premature, ectopic=True)
                yield RRBeat(2.0 * normal - premature, ectopic=True)
            else:
                yield RRBeat(normal)


@dataclass(frozen=True, slots=True)
class RRSeries:
    """A finite RR series: intervals (ms) and a mask of intervals in ectopic pairs."""

    rr_ms: FloatArray
    ectopic: NDArray[np.bool_]


def rr_series(n_beats: int, params: RRParameters = DEFAULT_RR, seed: int = 0) -> RRSeries:
    """The first ``n_beats`` intervals of :func:`rr_beats` as arrays."""
    if n_beats < 0:
        raise ValueError(f"n_beats must be >= 0, got {n_beats}")
    beats = list(itertools.islice(rr_beats(params, seed), n_beats))
    return RRSeries(
        rr_ms=np.array([b.rr_ms for b in beats], dtype=np.float64),
        ectopic=np.array([b.ectopic for b in beats], dtype=np.bool_),
    )


def rmssd_ms(rr_ms: FloatArray) -> float:
    """Root mean square of successive differences (ms) of an RR series in ms."""
    if rr_ms.size < 2:
        raise ValueError("RMSSD needs at least two RR intervals")
    return float(np.sqrt(np.mean(np.diff(rr_ms) ** 2)))


# -- SmO2 -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmO2Parameters:
    """How muscle oxygenation responds to efforts.

    Args:
        baseline_pct: resting SmO2 (%).
        effort_pct: the level SmO2 falls towards during an effort (%).
        fall_tau_s: time constant of the fall at effort onset (s).
        recovery_tau_s: time constant of the recovery after an effort (s).
        thb_gdl: resting total haemoglobin (g/dL); rises a little during efforts.
        noise_pct: standard deviation of measurement noise (%).
    """

    baseline_pct: float = 68.0
    effort_pct: float = 30.0
    fall_tau_s: float = 12.0
    recovery_tau_s: float = 30.0
    thb_gdl: float = 12.5
    noise_pct: float = 0.5

    def __post_init__(self) -> None:
        for name in ("baseline_pct", "effort_pct"):
            value = getattr(self, name)
            if not 0.0 <= value <= 100.0:
                raise ValueError(f"{name} must be within 0..100 %, got {value}")
        if self.fall_tau_s <= 0 or self.recovery_tau_s <= 0:
            raise ValueError("fall_tau_s and recovery_tau_s must be > 0 seconds")
        if self.noise_pct < 0:
            raise ValueError(f"noise_pct must be >= 0, got {self.noise_pct}")


DEFAULT_SMO2 = SmO2Parameters()
"""Baseline 68 %, effort level 30 %, fall τ 12 s, recovery τ 30 s, tHb 12.5 g/dL."""


@dataclass(frozen=True, slots=True)
class SmO2Point:
    """One SmO2 sample: time (s), SmO2 (%), total haemoglobin (g/dL)."""

    t_s: float
    smo2_pct: float
    thb_gdl: float


def smo2_points(
    schedule: EffortSchedule,
    params: SmO2Parameters = DEFAULT_SMO2,
    period_s: float = 2.0,
    seed: int = 0,
) -> Iterator[SmO2Point]:
    """Endless SmO2 samples every ``period_s`` seconds, starting at t = 0.

    The noise-free level relaxes exponentially towards ``effort_pct`` (τ = fall_tau_s)
    while ``schedule`` says effort and towards ``baseline_pct`` (τ = recovery_tau_s)
    otherwise; noise is added on top and the result clipped to 0..100 %.
    """
    if period_s <= 0:
        raise ValueError(f"period_s must be > 0, got {period_s}")
    rng = np.random.default_rng(seed)
    level = params.baseline_pct
    fall = 1.0 - math.exp(-period_s / params.fall_tau_s)
    rise = 1.0 - math.exp(-period_s / params.recovery_tau_s)
    span = max(params.baseline_pct - params.effort_pct, 1e-9)
    for index in itertools.count():
        t_s = index * period_s
        if index > 0:
            if schedule.is_effort(t_s):
                level += (params.effort_pct - level) * fall
            else:
                level += (params.baseline_pct - level) * rise
        noise = params.noise_pct * float(rng.standard_normal())
        smo2 = float(np.clip(level + noise, 0.0, 100.0))
        # Blood pools in the working muscle: tHb up to ~5 % higher at full desaturation.
        thb = params.thb_gdl * (1.0 + 0.05 * (params.baseline_pct - level) / span)
        yield SmO2Point(t_s, smo2, thb)


def smo2_series(
    duration_s: float,
    schedule: EffortSchedule,
    params: SmO2Parameters = DEFAULT_SMO2,
    period_s: float = 2.0,
    seed: int = 0,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(t_s, smo2_pct, thb_gdl)`` arrays of :func:`smo2_points` for ``duration_s`` s."""
    n = math.floor(duration_s / period_s) + 1 if duration_s >= 0 else 0
    points = list(itertools.islice(smo2_points(schedule, params, period_s, seed), n))
    return (
        np.array([p.t_s for p in points], dtype=np.float64),
        np.array([p.smo2_pct for p in points], dtype=np.float64),
        np.array([p.thb_gdl for p in points], dtype=np.float64),
    )


# -- power ------------------------------------------------------------------------------------


def power_watts(
    schedule: EffortSchedule,
    rest_w: float = 120.0,
    effort_w: float = 320.0,
    noise_w: float = 8.0,
    period_s: float = 1.0,
    seed: int = 0,
) -> Iterator[tuple[float, int]]:
    """Endless ``(t_s, power_w)`` samples every ``period_s`` seconds from t = 0.

    Power is ``effort_w`` during efforts and ``rest_w`` otherwise, plus Gaussian noise,
    rounded to whole watts and never negative.
    """
    if period_s <= 0:
        raise ValueError(f"period_s must be > 0, got {period_s}")
    rng = np.random.default_rng(seed)
    for index in itertools.count():
        t_s = index * period_s
        target = effort_w if schedule.is_effort(t_s) else rest_w
        yield t_s, max(0, round(target + noise_w * rng.standard_normal()))


# -- grip -------------------------------------------------------------------------------------


def grip_squeeze(
    peak_kg: float,
    rate_hz: float = 80.0,
    rise_s: float = 0.4,
    hold_s: float = 3.0,
    release_s: float = 0.3,
    fade: float = 0.05,
    noise_kg: float = 0.1,
    seed: int = 0,
) -> FloatArray:
    """Force (kg) of one maximal squeeze sampled at ``rate_hz``.

    A smooth rise to ``peak_kg`` over ``rise_s``, a hold that fades linearly by ``fade``
    (fraction of peak) over ``hold_s``, and a release to zero over ``release_s``;
    Gaussian noise of ``noise_kg`` on top, never below zero. The maximum of the
    noise-free curve is exactly ``peak_kg``.
    """
    if peak_kg < 0 or rate_hz <= 0 or min(rise_s, hold_s, release_s) <= 0:
        raise ValueError("grip_squeeze needs peak_kg >= 0, rate_hz > 0 and positive durations")
    rng = np.random.default_rng(seed)
    dt = 1.0 / rate_hz
    rise = np.arange(0.0, rise_s, dt)
    hold = np.arange(0.0, hold_s, dt)
    release = np.arange(0.0, release_s, dt)
    end_of_hold = peak_kg * (1.0 - fade)
    curve = np.concatenate(
        [
            peak_kg * 0.5 * (1.0 - np.cos(np.pi * rise / rise_s)),
            peak_kg - (peak_kg - end_of_hold) * hold / hold_s,
            end_of_hold * 0.5 * (1.0 + np.cos(np.pi * release / release_s)),
        ]
    )
    noisy: FloatArray = np.clip(curve + noise_kg * rng.standard_normal(curve.size), 0.0, None)
    return noisy


def grip_peak_after_session(
    baseline_kg: float, drop_fraction: float, t_since_session_s: float, recovery_tau_s: float
) -> float:
    """Expected grip peak (kg) ``t_since_session_s`` after a session.

    Right after the session the peak is ``baseline × (1 − drop_fraction)``; the deficit
    decays exponentially with ``recovery_tau_s`` (``math.inf`` = no recovery).
    """
    if not 0.0 <= drop_fraction < 1.0:
        raise ValueError(f"drop_fraction must be within 0..1, got {drop_fraction}")
    if recovery_tau_s <= 0:
        raise ValueError(f"recovery_tau_s must be > 0, got {recovery_tau_s}")
    remaining = (
        1.0
        if math.isinf(recovery_tau_s)
        else math.exp(-max(0.0, t_since_session_s) / recovery_tau_s)
    )
    return baseline_kg * (1.0 - drop_fraction * remaining)
