"""RR intervals of a resting athlete, with ground truth: the model behind HRV validation.

Our users are trained people lying still in the morning: low heart rate, high vagal tone,
slow breathing and so a large respiratory sinus arrhythmia (RSA). A quality gate or an
ectopic-beat corrector that has only seen 60-bpm office workers mistakes their genuine
beat-to-beat swings for artefacts. This model generates such readings, and injects
known ectopic and detection errors into them, so the processors can be measured against
a truth that is not their own output.

The model (one breath at a time, then integrated beat by beat, as in the integral pulse
frequency modulation view of the sinus node):

* **RSA**: RR shortens during inspiration and lengthens during expiration. Each breath has
  its own period (breathing rate with ``breath_cv`` variation) and its own peak-to-trough
  amplitude (``rsa_ms`` with the same variation); inspiration takes ``1 / (1 + ie_ratio)``
  of the breath (I:E of 1:2 at slow breathing), so RR falls faster than it rises. The
  shape is a raised cosine on each phase. Slow-breathing athletes reach 200–450 ms peak to
  trough at 40–55 bpm (Shaffer & Ginsberg 2017, Front Public Health 5:258; Lehrer et al.
  2003 resonance breathing at ~6/min).
* **Mayer waves**: a 0.1-Hz baroreflex oscillation of ``mayer_ms`` peak to trough with a
  random phase (Julien 2006, Cardiovasc Res 70:12).
* **Drift**: a slow random walk (low-pass filtered, ~60-s correlation) of ``drift_ms`` SD.
* **Beat noise**: white jitter of ``jitter_ms`` SD per beat, then rounding to the
  strap's 1/1024-s resolution (Polar H10, Bluetooth Heart Rate Measurement RR unit).

Injected events (:func:`inject`) keep the beat timeline of the sinus node where physiology
does: a premature ventricular beat (PVC) is followed by a full compensatory pause (the two
intervals sum to the two sinus intervals they replace); a premature atrial beat (PAC)
resets the sinus node (a shorter, incomplete pause); an interpolated PVC falls between two
sinus beats and delays the next one's conduction; a run of 2–3 PACs; a missed detection
merges two intervals; an extra detection (a noise spike) splits one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

#: The strap's RR resolution (ms): Heart Rate Measurement RR values are in 1/1024 s.
STRAP_RESOLUTION_MS = 1000.0 / 1024.0
_GRID_HZ = 20.0  # modulation signals are sampled on this grid before beat integration


@dataclass(frozen=True, slots=True)
class RestingAthlete:
    """Parameters of one resting reading (all amplitudes peak to trough unless said).

    Args:
        hr_bpm: mean heart rate (beats per minute).
        rsa_ms: respiratory sinus arrhythmia amplitude, peak to trough (ms).
        breaths_per_min: mean breathing rate.
        ie_ratio: expiration / inspiration duration (2.0 = I:E of 1:2).
        breath_cv: breath-to-breath coefficient of variation of period and amplitude.
        mayer_ms: 0.1-Hz Mayer-wave amplitude, peak to trough (ms).
        drift_ms: standard deviation of the slow drift of the mean interval (ms).
        jitter_ms: standard deviation of white beat-to-beat noise (ms).
    """

    hr_bpm: float = 50.0
    rsa_ms: float = 250.0
    breaths_per_min: float = 6.0
    ie_ratio: float = 2.0
    breath_cv: float = 0.15
    mayer_ms: float = 40.0
    drift_ms: float = 20.0
    jitter_ms: float = 6.0

    def __post_init__(self) -> None:
        if not 30.0 <= self.hr_bpm <= 120.0:
            raise ValueError(f"hr_bpm must be within 30..120, got {self.hr_bpm}")
        if not 2.0 <= self.breaths_per_min <= 30.0:
            raise ValueError(f"breaths_per_min must be within 2..30, got {self.breaths_per_min}")
        if min(self.rsa_ms, self.mayer_ms, self.drift_ms, self.jitter_ms, self.breath_cv) < 0:
            raise ValueError(f"amplitudes and breath_cv must be >= 0, got {self}")
        if self.ie_ratio <= 0:
            raise ValueError(f"ie_ratio must be > 0, got {self.ie_ratio}")


def resting_rr(athlete: RestingAthlete, duration_s: float, seed: int = 0) -> FloatArray:
    """RR intervals (ms) of ``duration_s`` seconds of a resting reading, reproducible by seed."""
    rng = np.random.default_rng(seed)
    mean_rr = 60_000.0 / athlete.hr_bpm
    span_s = duration_s + 30.0
    t = np.arange(0.0, span_s, 1.0 / _GRID_HZ)
    modulation = (
        _rsa(t, athlete, rng) + _mayer(t, athlete.mayer_ms, rng) + _drift(t, athlete.drift_ms, rng)
    )
    beats: list[float] = []
    now_ms = 0.0
    limit_ms = 1000.0 * duration_s
    while now_ms < limit_ms:
        # The sinus node integrates the modulation over the coming interval; sampling the
        # modulation at the beat is a close, cheap stand-in at these rates.
        m = float(np.interp(now_ms / 1000.0, t, modulation))
        rr = mean_rr + m + rng.normal(0.0, athlete.jitter_ms)
        rr = max(rr, 0.4 * mean_rr)
        beats.append(rr)
        now_ms += rr
    out = np.round(np.asarray(beats) / STRAP_RESOLUTION_MS) * STRAP_RESOLUTION_MS
    return np.asarray(out, dtype=np.float64)


def _rsa(t: FloatArray, a: RestingAthlete, rng: np.random.Generator) -> FloatArray:
    """Breath-by-breath RSA: RR falls over inspiration and rises over expiration."""
    out = np.zeros_like(t)
    mean_period = 60.0 / a.breaths_per_min
    start = -rng.uniform(0.0, mean_period)
    insp_share = 1.0 / (1.0 + a.ie_ratio)
    while start < t[-1]:
        period = mean_period * max(0.5, 1.0 + a.breath_cv * rng.standard_normal())
        amp = a.rsa_ms * max(0.2, 1.0 + a.breath_cv * rng.standard_normal())
        t_insp = insp_share * period
        sel = (t >= start) & (t < start + period)
        phase_t = t[sel] - start
        # Raised cosine: +amp/2 at the start of inspiration, −amp/2 at its end, back to
        # +amp/2 at the end of expiration.
        in_insp = phase_t < t_insp
        shape = np.where(
            in_insp,
            np.cos(np.pi * phase_t / t_insp),
            -np.cos(np.pi * (phase_t - t_insp) / (period - t_insp)),
        )
        out[sel] = 0.5 * amp * shape
        start += period
    return out


def _mayer(t: FloatArray, amplitude_ms: float, rng: np.random.Generator) -> FloatArray:
    phase = rng.uniform(0.0, 2.0 * np.pi)
    freq = 0.1 * (1.0 + 0.1 * rng.standard_normal())
    return np.asarray(0.5 * amplitude_ms * np.sin(2.0 * np.pi * freq * t + phase))


def _drift(t: FloatArray, sd_ms: float, rng: np.random.Generator) -> FloatArray:
    if sd_ms == 0.0:
        return np.zeros_like(t)
    # First-order low-pass (time constant 60 s) of white noise, scaled to the wanted SD.
    alpha = 1.0 / (60.0 * _GRID_HZ)
    noise = rng.standard_normal(t.size)
    out = np.empty_like(t)
    acc = 0.0
    for i, x in enumerate(noise):
        acc += alpha * (x - acc)
        out[i] = acc
    sd = float(np.std(out))
    return out * (sd_ms / sd) if sd > 0 else out


class Event(StrEnum):
    """What :func:`inject` puts into a clean series."""

    PVC = "pvc"  # premature ventricular beat, full compensatory pause
    PAC = "pac"  # premature atrial beat, resets the sinus node (incomplete pause)
    MISSED = "missed"  # the strap missed a beat: two intervals merge
    EXTRA = "extra"  # the strap saw a spike as a beat: one interval splits
    INTERPOLATED_PVC = "interpolated_pvc"  # a PVC between two sinus beats, no pause
    PAC_RUN = "pac_run"  # two or three premature atrial beats in a row


@dataclass(frozen=True, slots=True)
class Injected:
    """A series with injected events and where they are.

    ``rr_ms``: the series as the strap would report it. ``event_beats``: index in
    ``rr_ms`` of the first interval each event touched. ``n_events`` / len of the clean
    series is the burden.
    """

    rr_ms: FloatArray
    event_beats: tuple[int, ...]
    n_events: int


def inject(
    clean_rr_ms: FloatArray,
    event: Event,
    burden: float,
    seed: int = 0,
    *,
    prematurity: tuple[float, float] = (0.55, 0.8),
    every: int | None = None,
) -> Injected:
    """Put ``event`` into ``burden`` (share of beats, 0.01 = 1%) of a clean RR series (ms).

    Events fall on random beats at least three beats apart (so each stands alone), or on
    every ``every``-th beat (2 = bigeminy, 3 = trigeminy) when ``every`` is given. The
    premature interval is ``prematurity`` (a uniform range) of the sinus interval it
    replaces.
    """
    rng = np.random.default_rng(seed)
    rr = [float(x) for x in clean_rr_ms]
    n = len(rr)
    if every is not None:
        sites = list(range(every - 1, n - 2, every))
    else:
        want = round(burden * n)
        candidates = np.arange(2, n - 3)
        rng.shuffle(candidates)
        taken: list[int] = []
        for c in candidates.tolist():
            if len(taken) >= want:
                break
            if all(abs(c - s) >= 3 for s in taken):
                taken.append(c)
        sites = sorted(taken)
    out: list[float] = []
    event_beats: list[int] = []
    i = 0
    site_set = set(sites)
    while i < n:
        if i not in site_set or i + 1 >= n:
            out.append(rr[i])
            i += 1
            continue
        event_beats.append(len(out))
        p = rng.uniform(*prematurity)
        if event is Event.PVC:
            early = p * rr[i]
            out += [early, rr[i] + rr[i + 1] - early]
            i += 2
        elif event is Event.PAC:
            early = p * rr[i]
            # The sinus node restarts at the premature beat; the next interval is a sinus
            # interval lengthened a little by the reset (incomplete pause).
            out += [early, rr[i + 1] * rng.uniform(1.0, 1.15)]
            i += 2
        elif event is Event.MISSED:
            out.append(rr[i] + rr[i + 1])
            i += 2
        elif event is Event.INTERPOLATED_PVC:
            # Squeezed between two sinus beats; the next sinus beat conducts 20–80 ms late.
            delay = rng.uniform(20.0, 80.0)
            early = p * rr[i]
            out += [early, rr[i] - early + delay, rr[i + 1] - delay]
            i += 2
        elif event is Event.PAC_RUN:
            # Each premature beat resets the sinus node; the run ends with a return cycle.
            for _ in range(int(rng.integers(2, 4))):
                out.append(rng.uniform(*prematurity) * rr[i])
            out.append(rr[i + 1] * rng.uniform(1.0, 1.15))
            i += 2
        else:
            split = rng.uniform(0.25, 0.75)
            out += [split * rr[i], (1.0 - split) * rr[i]]
            i += 1
    return Injected(np.asarray(out, dtype=np.float64), tuple(event_beats), len(event_beats))


def rmssd(rr_ms: FloatArray) -> float:
    """Root mean square of successive differences (ms) of a gap-free series."""
    d = np.diff(np.asarray(rr_ms, dtype=np.float64))
    return float(np.sqrt(np.mean(d * d)))
