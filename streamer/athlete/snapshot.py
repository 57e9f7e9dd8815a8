"""What the live view reads of one athlete: the latest values, None until seen (the last
morning reading as its payload, as subscribers of ``morning`` see it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamer.results import MorningPayload


@dataclass
class AthleteSnapshot:
    """Latest values for the live view (None until seen)."""

    hr_bpm: int | None = None
    rr_ms: float | None = None
    ln_rmssd: float | None = None
    rmssd_ms: float | None = None
    smo2_pct: float | None = None
    force_kg: float | None = None
    power_w: int | None = None
    spo2_pct: float | None = None
    battery_pct: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    last_morning: MorningPayload | None = None
    last_session_recovery_s: float | None = None
    last_grip_class: str | None = None
    open_alerts: tuple[str, ...] = ()
    alerts_raised: int = 0
    phase: str = "idle"
    last_t_ns: int = 0
