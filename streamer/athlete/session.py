"""The training-session protocol (:class:`SessionStart` … :class:`SessionEnd`): the
efforts and power attributed to one session, summarised at its end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from processors.oxygenation import EffortRecovery, OxygenRecovery, summarise_session
from processors.plateau import PowerPlateau
from streamer.results import Result, SessionPayload


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """A finished session: start (ns), recovery over its efforts, mean power (W), the RPE
    entered while it ran (CR-10, if any) and its tags."""

    start_ns: int
    recovery: OxygenRecovery
    mean_power_w: float | None
    rpe: float | None = None
    tags: tuple[str, ...] = ()


class SessionProtocol:
    """One session in progress."""

    def __init__(self) -> None:
        self._start: int | None = None
        self._efforts: list[EffortRecovery] = []
        self._power_sum = 0.0
        self._power_n = 0
        self._rpe: float | None = None
        self._tags: tuple[str, ...] = ()

    @property
    def start_ns(self) -> int | None:
        """When the open session started (None: no session open)."""
        return self._start

    def start(self, t_ns: int, tags: tuple[str, ...] = ()) -> None:
        """A session starts (a start while one is open restarts it: the earlier start was
        not ended, so nothing it collected is a session)."""
        self._start = t_ns
        self._efforts = []
        self._power_sum, self._power_n = 0.0, 0
        self._rpe, self._tags = None, tags

    def set_rpe(self, rpe: float) -> None:
        """The RPE (CR-10) of the open session, entered before it ends."""
        self._rpe = rpe

    def add_effort(self, effort: EffortRecovery) -> None:
        """An effort ended (attributed to the open session, if any)."""
        if self._start is not None:
            self._efforts.append(effort)

    def add_power(self, power_w: float) -> None:
        """A power sample (counted into the open session's mean, if any)."""
        if self._start is not None:
            self._power_sum += power_w
            self._power_n += 1

    def end(self, t_ns: int, slow_after_s: float) -> SessionSummary | None:
        """Summarise the open session (None if none was open)."""
        start = self._start
        self._start = None
        if start is None:
            return None
        recovery = summarise_session(
            self._efforts, start / 1e9, t_ns / 1e9, slow_after_s=slow_after_s
        )
        mean_power = self._power_sum / self._power_n if self._power_n else None
        self._efforts = []
        return SessionSummary(start, recovery, mean_power, self._rpe, self._tags)


def session_result(
    athlete: str,
    end_ns: int,
    rpe: float | None,
    s: SessionSummary,
    device: str | None,
    high_intensity: bool | None = None,
    plateau: PowerPlateau | None = None,
) -> Result:
    """The ``session`` result of a finished session (``device``: its SmO2 sensor;
    ``plateau``: its ``power_plateau`` finding, if evaluated)."""
    r = s.recovery
    return SessionPayload(
        recovery_s=r.recovery_time_s,
        recovery_is_lower_bound=r.recovery_time_is_lower_bound,
        n_efforts=r.n_efforts,
        n_recovered=r.n_recovered,
        duration_s=(end_ns - s.start_ns) / 1e9,
        rpe=rpe,
        mean_power_w=s.mean_power_w,
        high_intensity=high_intensity,
        tags=s.tags,
        **plateau_fields(plateau),
    ).result(athlete, end_ns, device)


def plateau_fields(plateau: PowerPlateau | None) -> dict[str, Any]:
    """The session payload's ``power_plateau`` and ``power_change_pct`` for a finding (both
    None when undecided or not evaluated)."""
    if plateau is None or not plateau.evaluable:
        return {"power_plateau": None, "power_change_pct": None}
    return {"power_plateau": plateau.triggered, "power_change_pct": plateau.change_pct}
