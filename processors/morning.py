"""The morning reading: one number a day that the trends are built on.

Protocol (``docs/rules.md``, "Measurement protocols"): on waking, lying still, strap on.
The first :data:`~processors.physiology.MORNING_STABILISATION_S` seconds are discarded, the
next :data:`~processors.physiology.MORNING_SPAN_S` seconds are analysed. The span is judged
by the quality gate on the raw intervals (each beat against its neighbours), then corrected
(detection after Lipponen & Tarvainen 2019, interpolation as Kubios) and summarised as
lnRMSSD (over measured successive differences) and resting heart rate. A reading that
fails the gate, or that is too short, is *rejected with its reason*: it carries no HRV
numbers, so it can never enter a baseline as truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from processors import physiology as phys
from processors.hrv import hrv_time
from processors.rr_clean import (
    BreaksInput,
    RrInput,
    as_breaks_array,
    as_rr_array,
    clean_rr,
    quality_gate,
)


@dataclass(frozen=True, slots=True)
class MorningReading:
    """One morning reading.

    ``n_beats``: RR intervals in the analysed span, before correction. ``duration_s``:
    recorded beat time in the span. ``artifacts_pct``: % of those beats deviating more than
    20% (of the local median) from the mean of their neighbours (the gate's measure);
    ``corrected_pct``: % of beats the correction changed or removed. When ``accepted`` is False,
    ``reject_reason`` says why and the HRV fields are ``None``. ``resting_hr_bpm`` is
    60000 / mean NN. ``t_ns`` and ``day`` are passed through from the caller.
    """

    accepted: bool
    reject_reason: str | None
    n_beats: int
    duration_s: float
    artifacts_pct: float
    corrected_pct: float
    ln_rmssd: float | None
    rmssd_ms: float | None
    resting_hr_bpm: float | None
    mean_nn_ms: float | None
    sdnn_ms: float | None
    t_ns: int | None = None
    day: date | None = None


def morning_reading(
    rr_ms: RrInput,
    breaks: BreaksInput = None,
    *,
    t_ns: int | None = None,
    day: date | None = None,
    stabilisation_s: float = phys.MORNING_STABILISATION_S,
    span_s: float = phys.MORNING_SPAN_S,
    min_coverage: float = phys.MORNING_MIN_COVERAGE,
    max_deviation: float = phys.QUALITY_NEIGHBOUR_DEVIATION,
    max_abnormal_share: float = phys.QUALITY_MAX_ABNORMAL_SHARE,
) -> MorningReading:
    """Analyse a whole morning recording's RR intervals (ms, oldest first).

    ``breaks``: optional gap markers (True at ``i`` when beat ``i`` follows a gap); a zero,
    negative or non-finite interval is dropped and the next beat follows a gap. Time is
    recorded beat time (the running sum of the intervals; gaps add none). Beats ending in
    the first ``stabilisation_s`` seconds are discarded; beats ending within the next
    ``span_s`` seconds are analysed. Rejected when the span holds less than
    ``min_coverage`` × ``span_s`` of beats, when more than ``max_abnormal_share`` of its
    beats deviate more than ``max_deviation`` from their neighbours, or when too few
    successive differences remain.
    """
    raw = np.asarray(rr_ms, dtype=np.float64)
    brk = as_breaks_array(breaks, raw.size)
    # A strap can report a 0 or garbled interval: it is no interval, and the beat after it
    # follows a gap (as an implausible one does in cleaning), rather than an error that
    # would lose the whole reading.
    usable = np.isfinite(raw) & (raw > 0)
    if not usable.all():
        after_bad = np.zeros(raw.size, dtype=np.bool_)
        after_bad[1:] = ~usable[:-1]
        brk = (brk | after_bad)[usable]
        raw = raw[usable]
    rr = as_rr_array(raw)
    ends = np.cumsum(rr)
    begin_ms, end_ms = 1000.0 * stabilisation_s, 1000.0 * (stabilisation_s + span_s)
    in_span = (ends > begin_ms) & (ends <= end_ms)
    span = rr[in_span]
    span_breaks = brk[in_span]
    duration_s = float(np.sum(span)) / 1000.0

    def rejected(reason: str, artifacts_pct: float = 0.0, corrected: float = 0.0) -> MorningReading:
        return MorningReading(
            accepted=False,
            reject_reason=reason,
            n_beats=int(span.size),
            duration_s=duration_s,
            artifacts_pct=artifacts_pct,
            corrected_pct=corrected,
            ln_rmssd=None,
            rmssd_ms=None,
            resting_hr_bpm=None,
            mean_nn_ms=None,
            sdnn_ms=None,
            t_ns=t_ns,
            day=day,
        )

    if duration_s < min_coverage * span_s:
        recorded_s = float(ends[-1]) / 1000.0 if ends.size else 0.0
        return rejected(
            f"reading too short: {duration_s:.0f} s of beats after the {stabilisation_s:.0f}-s "
            f"stabilisation ({recorded_s:.0f} s recorded in all), need at least "
            f"{min_coverage * span_s:.0f} s; record for {stabilisation_s + span_s:.0f} s "
            "without interruption"
        )
    verdict = quality_gate(
        span, span_breaks, max_deviation=max_deviation, max_abnormal_share=max_abnormal_share
    )
    cleaned = clean_rr(span, span_breaks)
    if not verdict.accepted:
        assert verdict.reject_reason is not None
        return rejected(verdict.reject_reason, verdict.abnormal_pct, cleaned.corrected_pct)
    try:
        td = hrv_time(cleaned.nn_ms, cleaned.breaks, cleaned.estimated)
    except ValueError as exc:
        return rejected(
            f"too few usable beats after cleaning: {exc}",
            verdict.abnormal_pct,
            cleaned.corrected_pct,
        )
    return MorningReading(
        accepted=True,
        reject_reason=None,
        n_beats=int(span.size),
        duration_s=duration_s,
        artifacts_pct=verdict.abnormal_pct,
        corrected_pct=cleaned.corrected_pct,
        ln_rmssd=td.ln_rmssd,
        rmssd_ms=td.rmssd_ms,
        resting_hr_bpm=td.mean_hr_bpm,
        mean_nn_ms=td.mean_nn_ms,
        sdnn_ms=td.sdnn_ms,
        t_ns=t_ns,
        day=day,
    )
