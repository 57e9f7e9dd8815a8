"""A whole recorded session: its efforts (the same detector a live stream runs) and its
recovery time, the median T95 with long unrecovered efforts as lower bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Unpack

import numpy as np
import numpy.typing as npt

from processors import physiology as ph
from processors.oxygenation.activity import two_level_threshold
from processors.oxygenation.detector import DetectorSettings, EffortDetector
from processors.oxygenation.records import (
    ActivityKind,
    EffortRecovery,
    OxygenationInputError,
    OxygenRecovery,
)


def summarise_session(
    efforts: Sequence[EffortRecovery],
    start_s: float,
    end_s: float,
    *,
    slow_after_s: float = ph.SMO2_SLOW_RECOVERY_S,
) -> OxygenRecovery:
    """Session record: recovery time = median T95 (see the package docstring for censoring)."""
    values: list[float] = []
    lower_bound = False
    for e in efforts:
        if e.t95_s is not None:
            values.append(e.t95_s)
        elif e.observed_s >= slow_after_s:
            values.append(e.observed_s)
            lower_bound = True
    return OxygenRecovery(
        start_s=start_s,
        end_s=end_s,
        n_efforts=len(efforts),
        n_recovered=sum(e.recovered for e in efforts),
        recovery_time_s=float(np.median(values)) if values else None,
        recovery_time_is_lower_bound=lower_bound,
        efforts=tuple(efforts),
    )


def analyse_session(
    t_s: npt.ArrayLike,
    smo2_pct: npt.ArrayLike,
    *,
    activity: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
    activity_threshold: float | None = None,
    activity_kind: ActivityKind = "power",
    slow_after_s: float = ph.SMO2_SLOW_RECOVERY_S,
    **settings: Unpack[DetectorSettings],
) -> OxygenRecovery:
    """Efforts and recovery time of one session from its live SmO2 samples (s, %).

    ``activity`` = (times s, power W or HR bpm as ``activity_kind``) confirms efforts and
    marks the end of work; without an explicit ``activity_threshold`` it is
    :func:`two_level_threshold` of the activity values.
    Runs the same :class:`EffortDetector` a live stream uses, so both agree; ``settings``
    are its keyword arguments (:class:`DetectorSettings`), with its defaults.
    """
    t = np.asarray(t_s, dtype=np.float64)
    y = np.asarray(smo2_pct, dtype=np.float64)
    if t.ndim != 1 or t.shape != y.shape or t.size == 0:
        raise OxygenationInputError(
            "SmO2 times and values must be non-empty 1-D arrays of equal length, "
            f"got {t.shape} and {y.shape}"
        )
    if not (np.isfinite(t).all() and np.isfinite(y).all()):
        raise OxygenationInputError("SmO2 input holds NaN or inf; drop those samples first")
    if ((y < 0) | (y > 100)).any():
        raise OxygenationInputError("SmO2 values must be percentages in 0–100")
    if (np.diff(t) <= 0).any():
        raise OxygenationInputError("SmO2 sample times must increase strictly")
    at = av = np.empty(0)
    if activity is not None:
        at = np.asarray(activity[0], dtype=np.float64)
        av = np.asarray(activity[1], dtype=np.float64)
        if at.shape != av.shape or at.ndim != 1:
            raise OxygenationInputError("activity times and values must be 1-D of equal length")
        if at.size and activity_threshold is None:
            activity_threshold = two_level_threshold(av)
    detector = EffortDetector(
        activity_threshold=activity_threshold, activity_kind=activity_kind, **settings
    )
    efforts: list[EffortRecovery] = []
    order = np.argsort(at, kind="stable")
    j = 0
    for ti, yi in zip(t.tolist(), y.tolist(), strict=True):
        while j < at.size and at[order[j]] <= ti:
            detector.add_activity(float(at[order[j]]), float(av[order[j]]))
            j += 1
        efforts.extend(detector.add(ti, yi))
    while j < at.size:
        detector.add_activity(float(at[order[j]]), float(av[order[j]]))
        j += 1
    efforts.extend(detector.flush())
    return summarise_session(efforts, float(t[0]), float(t[-1]), slow_after_s=slow_after_s)
