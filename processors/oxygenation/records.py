"""What SmO2 effort detection returns and refuses: one effort's recovery, a session's, the
names of the activity kinds and work-end sources, and the input error.

Definitions of every field are in the package docstring (:mod:`processors.oxygenation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from processors.errors import InputError

FloatArray = npt.NDArray[np.float64]

ActivityKind: TypeAlias = Literal["power", "hr"]
ACTIVITY_KINDS: tuple[ActivityKind, ...] = ("power", "hr")
WorkEndSource: TypeAlias = Literal["power", "hr", "smo2"]


class OxygenationInputError(InputError, ValueError):
    """SmO2 or activity input that cannot be analysed (names the input and the fault)."""


@dataclass(frozen=True, slots=True)
class EffortRecovery:
    """One effort and its recovery. Times in s (input time base), levels in SmO2 %.

    ``onset_s`` is when SmO2 fell below the effort threshold, ``work_end_s`` the end of work
    (the zero of ``t_half_s``, ``t95_s``, ``delay_s`` and ``observed_s``), found from
    ``work_end_source``: "power", "hr" or "smo2". ``min_pct`` is the work level at the end of
    work and ``desaturation_pct`` = ``baseline_pct`` − ``min_pct``.
    """

    onset_s: float
    work_end_s: float
    work_end_source: WorkEndSource
    baseline_pct: float
    min_pct: float
    desaturation_pct: float
    recovered: bool
    observed_s: float
    t_half_s: float | None
    t95_s: float | None
    reoxygenation_rate_pct_s: float | None
    tau_s: float | None
    delay_s: float | None
    fit_r2: float | None
    peak_pct: float | None
    overshoot_pct: float | None


@dataclass(frozen=True, slots=True)
class OxygenRecovery:
    """A session's oxygenation recovery: its efforts and the session recovery time (s)."""

    start_s: float
    end_s: float
    n_efforts: int
    n_recovered: int
    recovery_time_s: float | None
    recovery_time_is_lower_bound: bool
    efforts: tuple[EffortRecovery, ...]

    def summary(self) -> dict[str, float | int | bool | None]:
        """Flat JSON-ready session summary (without the per-effort records)."""
        return {
            "start_s": self.start_s,
            "end_s": self.end_s,
            "n_efforts": self.n_efforts,
            "n_recovered": self.n_recovered,
            "recovery_time_s": self.recovery_time_s,
            "recovery_time_is_lower_bound": self.recovery_time_is_lower_bound,
        }
