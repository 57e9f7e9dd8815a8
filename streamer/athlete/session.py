"""The training-session protocol (:class:`SessionStart` … :class:`SessionEnd`): the
efforts, power and heart-rate zone time attributed to one session, summarised at its end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from processors import physiology as ph
from processors.oxygenation import EffortRecovery, OxygenRecovery, summarise_session
from processors.plateau import PowerPlateau
from processors.rules import hr_zone
from streamer.results import Result, SessionPayload


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """A finished session: start (ns), recovery over its efforts, mean power (W), the RPE
    entered while it ran (CR-10, if any), its tags, and its time in heart-rate zone 3 (s;
    None without heart rate or without the athlete's zones)."""

    start_ns: int
    recovery: OxygenRecovery
    mean_power_w: float | None
    rpe: float | None = None
    tags: tuple[str, ...] = ()
    zone3_s: float | None = None


class SessionProtocol:
    """One session in progress."""

    def __init__(self) -> None:
        self._start: int | None = None
        self._efforts: list[EffortRecovery] = []
        self._power_sum = 0.0
        self._power_n = 0
        self._rpe: float | None = None
        self._tags: tuple[str, ...] = ()
        self._zone_s = [0.0, 0.0, 0.0]  # seconds in zones 1, 2, 3 …
        self._last_hr: tuple[int, int] | None = None  # … from (t_ns, zone) of each sample
        self._hr_seen = False

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
        self._zone_s, self._last_hr, self._hr_seen = [0.0, 0.0, 0.0], None, False

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

    def add_heart_rate(
        self, t_ns: int, hr_bpm: float, zone_floors_bpm: tuple[float, float] | None
    ) -> None:
        """A heart-rate sample (bpm) of the open session, if any: the time since the last
        one counts in that one's zone (at most ``HR_ZONE_MAX_SAMPLE_GAP_S``: a dropout is no
        zone time). Nothing without the athlete's zone floors or without skin contact (0)."""
        if self._start is None or zone_floors_bpm is None or not hr_bpm > 0:
            return
        self._hr_seen = True
        if self._last_hr is not None:
            last_ns, zone = self._last_hr
            gap_s = (t_ns - last_ns) / 1e9
            if gap_s > 0:
                self._zone_s[zone - 1] += min(gap_s, ph.HR_ZONE_MAX_SAMPLE_GAP_S)
        self._last_hr = (t_ns, hr_zone(hr_bpm, zone_floors_bpm))

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
        zone3_s = self._zone_s[2] if self._hr_seen else None
        return SessionSummary(start, recovery, mean_power, self._rpe, self._tags, zone3_s)


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
        hr_zone3_s=s.zone3_s,
    ).result(athlete, end_ns, device)


def plateau_fields(plateau: PowerPlateau | None) -> dict[str, Any]:
    """The session payload's ``power_plateau`` and ``power_change_pct`` for a finding (both
    None when undecided or not evaluated)."""
    if plateau is None or not plateau.evaluable:
        return {"power_plateau": None, "power_change_pct": None}
    return {"power_plateau": plateau.triggered, "power_change_pct": plateau.change_pct}
