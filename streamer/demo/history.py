"""The demo's synthetic history: weeks of mornings, sessions and grip tests per athlete.

Each athlete follows a :class:`Scenario`, a plan per day (morning lnRMSSD and resting HR,
whether there is a session and how it goes, whether there is a grip test and how much grip
drops). :func:`day_records` turns a day's plan into the device records a strap, a Moxy, a
power meter and a Tindeq would have produced — RR from
:func:`devices.emulated.signals.rr_beats`, SmO2 from ``smo2_points``, power from
``power_watts``, squeezes from ``grip_squeeze`` — framed by the protocol markers of
:mod:`streamer.athlete`. :func:`replay_history` pushes them through the real pipeline, so
every morning reading, session and grip test is measured by the real processors and every
alert comes from the real rules and alert book; nothing here states a result.

Scenarios (athletes take them in turn):

``over_reaching`` — a normal block, then an over-reaching last week: lnRMSSD slides down
    day by day, resting HR climbs ~6–9 bpm, SmO2 recovers slowly (τ 70 s) in the last
    three sessions, the last session feels harder for less power, and grip is still down
    30 min after it. Earlier, one session's grip drop recovers within 15 min (the good
    kind). Weekly lab draws (fasted GSH:GSSG, dROMs, dipstick; a post-session GSH:GSSG) stay
    in range until the last one: 90:1, dROMs +45% over the baseline, strip positive. Over
    the default 28 days this raises ``hrv_downtrend``, ``rhr_creep``,
    ``smo2_slow_recovery``, ``rpe_power_mismatch``, ``grip_spillover``, ``gsh_gssg_low``,
    ``droms_rise``, ``lipid_dipstick_positive`` and ``grip_signal``, and ``hr_grip_flat``
    (morning HR above its noise three days running, grip flat).
``steady`` — adapting well: stable mornings and quick recoveries, lab values in range;
    one ``grip_signal``; the same power at the same effort for weeks, so from three weeks
    on its sessions find a ``power_plateau`` (info).

Rules that need a baseline (d−35 … d−8, ≥ 14 valid days) can only fire from day 22, so the
pull-back scenario needs ``days >= 22``; shorter histories still replay, with fewer alerts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import itertools
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from devices.emulated.signals import (
    EffortSchedule,
    RRParameters,
    SmO2Parameters,
    grip_peak_after_session,
    grip_squeeze,
    power_watts,
    rr_beats,
    smo2_points,
)
from devices.records import ForceSample, HeartRateSample, PowerSample, SensorContact, SmO2Sample
from processors.labs import LabMarker, LabTiming
from streamer.athlete import (
    GripEnd,
    GripPhase,
    MorningEnd,
    MorningStart,
    SessionEnd,
    SessionStart,
)
from streamer.athlete.events import LabEntry

DEFAULT_DAYS: Final = 28
MIN_DAYS_FOR_TRENDS: Final = 22
"""The first day whose baseline window (d−35 … d−8) can hold the 14 valid days it needs."""

# Device ids: the topic segments of every athlete's devices (history and the live demo).
STRAP: Final = "strap"
MOXY: Final = "moxy"
POWER: Final = "power"
GRIP: Final = "tindeq"
LAB: Final = "command"
"""Lab entries come from the athlete, not a device: offered as commands are."""

# When things happen within a day (UTC): morning reading, grip MVC trials, session.
MORNING_AT_S: Final = 6 * 3600 + 30 * 60
MORNING_DURATION_S: Final = 60 + 300 + 10  # stabilisation + span + margin
GRIP_PRE_AT_S: Final = 16 * 3600 + 50 * 60
SESSION_AT_S: Final = 17 * 3600
LAB_AT_S: Final = 7 * 3600  # fasted draws, after the morning reading
POST_GRIP_MINUTES: Final = (0.0, 5.0, 15.0, 30.0)
SESSION_SCHEDULE: Final = EffortSchedule(first_s=90.0, work_s=45.0, rest_s=220.0, count=3)
"""Three 45-s efforts with 220 s between: time for a slow recovery to show (T95 ≈ 3τ)."""
SESSION_DURATION_S: Final = 90.0 + 3 * 265.0
GRIP_RATE_HZ: Final = 40.0
"""History squeezes are sampled at 40 Hz (the Progressor sends 80): half the records,
the same peaks."""
MVC_TRIALS: Final = 3
POST_TRIALS: Final = 2
SQUEEZE_REST_S: Final = 8.0


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """One training session: SmO2 recovery speed, power levels and how hard it felt."""

    recovery_tau_s: float
    rest_w: float
    effort_w: float
    rpe: float


@dataclass(frozen=True, slots=True)
class GripPlan:
    """One grip test around a session: the day's MVC and the post-session drop."""

    mvc_kg: float
    drop_fraction: float
    recovery_tau_s: float  # math.inf: no recovery within the test


@dataclass(frozen=True, slots=True)
class LabPlan:
    """One lab marker entered that day: its value (n:1, CARR U, 1.0/0.0 dipstick), timing,
    and when the sample was taken (seconds into the UTC day)."""

    marker: LabMarker
    value: float
    timing: LabTiming | None
    at_s: float


@dataclass(frozen=True, slots=True)
class DayPlan:
    """What one day holds for one athlete (``day`` counts from 0, the oldest day)."""

    day: int
    rmssd_ms: float
    resting_hr_bpm: float
    ectopic_rate: float
    session: SessionPlan | None
    grip: GripPlan | None
    labs: tuple[LabPlan, ...] = ()


@dataclass(frozen=True, slots=True)
class Scenario:
    """One athlete's history: a name, what it shows, and the plan of each day."""

    athlete: str
    kind: str
    description: str
    days: tuple[DayPlan, ...]
    seed: int


def athlete_ids(n: int) -> list[str]:
    """Demo athlete ids: ``athlete1`` … ``athleteN``."""
    return [f"athlete{i}" for i in range(1, n + 1)]


def scenarios(n_athletes: int, days: int = DEFAULT_DAYS, seed: int = 7) -> list[Scenario]:
    """Scenarios for ``n_athletes`` over ``days`` days: odd athletes over-reach in their last
    week, even ones stay steady (see the module docstring)."""
    if n_athletes < 1:
        raise ValueError(f"need at least one athlete, got {n_athletes}")
    if days < 1:
        raise ValueError(f"need at least one day of history, got {days}")
    out = []
    for index, athlete in enumerate(athlete_ids(n_athletes)):
        kind = "over_reaching" if index % 2 == 0 else "steady"
        out.append(_scenario(athlete, kind, days, seed + 1000 * index))
    return out


def _scenario(athlete: str, kind: str, days: int, seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    over = kind == "over_reaching"
    base_ln = float(rng.uniform(4.05, 4.3))  # RMSSD 57–74 ms
    base_rhr = float(rng.uniform(47.0, 54.0))
    base_mvc = float(rng.uniform(40.0, 52.0))
    base_gsh = float(rng.uniform(190.0, 250.0))  # GSH:GSSG n:1, in the trained range
    base_droms = float(rng.uniform(270.0, 310.0))  # CARR U
    last_week = range(days - 7, days) if over else range(0)
    session_days = [d for d in range(days) if (days - 1 - d) % 2 == 0]
    signal_day = session_days[len(session_days) // 3] if session_days else -1
    if not over and len(session_days) > 3:
        signal_day = session_days[-3]
    plans = []
    for d in range(days):
        k = d - (days - 7)  # 0 … 6 in the last week
        ln = base_ln + 0.05 * float(rng.standard_normal())
        rhr = base_rhr + 0.8 * float(rng.standard_normal())
        if d in last_week:
            ln = base_ln - 0.075 * (k + 1) + 0.02 * float(rng.standard_normal())
            rhr = base_rhr + 2.0 + 1.1 * k + 0.3 * float(rng.standard_normal())
        # One morning with many premature beats, rejected by the quality gate, never a number.
        ectopic = 0.08 if d == min(4, days - 1) and days >= MIN_DAYS_FOR_TRENDS else 0.003
        session = grip = None
        if d in session_days:
            slow = d in last_week
            last = d == days - 1 and over
            session = SessionPlan(
                recovery_tau_s=70.0 if slow else float(rng.uniform(14.0, 22.0)),
                rest_w=95.0 if last else 120.0,
                effort_w=250.0 if last else 300.0 + float(rng.uniform(-8, 8)),
                rpe=6.5 if last else 5.0 + float(rng.choice([-0.5, 0.0, 0.0, 0.5])),
            )
            mvc = base_mvc * (1.0 + 0.015 * float(rng.standard_normal()))
            if last:
                grip = GripPlan(mvc, 0.20, math.inf)
            elif d == signal_day:
                grip = GripPlan(mvc, 0.16, 240.0)
            else:
                grip = GripPlan(mvc, 0.04, 300.0)
        labs = _labs(d, days, over, session is not None, base_gsh, base_droms, rng)
        plans.append(DayPlan(d, math.exp(ln), rhr, ectopic, session, grip, labs))
    description = (
        "normal block, then over-reaching in the last week"
        if over
        else "steady: stable mornings, quick recoveries"
    )
    return Scenario(athlete, kind, description, tuple(plans), seed)


def _labs(
    d: int,
    days: int,
    over: bool,
    session: bool,
    base_gsh: float,
    base_droms: float,
    rng: np.random.Generator,
) -> tuple[LabPlan, ...]:
    """Weekly lab draws ending on the last day: fasted GSH:GSSG and dROMs and a dipstick,
    plus a GSH:GSSG 45 min after a session on that day. Over-reaching, the last draw leans
    oxidative (90:1), dROMs is +45% over its baseline and the strip is positive; the post
    draw is ~35% below the fasted one (one hard session: ARTICLE's ~40%)."""
    if (days - 1 - d) % 7:
        return ()
    last = over and d == days - 1
    gsh = 90.0 if last else round(base_gsh * (1.0 + 0.05 * float(rng.standard_normal())))
    droms = round(base_droms * (1.45 if last else 1.0 + 0.03 * float(rng.standard_normal())))
    out = [
        LabPlan(LabMarker.GSH_GSSG, gsh, LabTiming.FASTED, LAB_AT_S),
        LabPlan(LabMarker.DROMS, droms, LabTiming.FASTED, LAB_AT_S),
        LabPlan(LabMarker.LIPID_DIPSTICK, 1.0 if last else 0.0, LabTiming.FASTED, LAB_AT_S),
    ]
    if session:
        post_at = SESSION_AT_S + SESSION_DURATION_S + 45 * 60
        out.append(LabPlan(LabMarker.GSH_GSSG, round(gsh * 0.65), LabTiming.POST_45MIN, post_at))
    return tuple(out)


# --- records of one day ----------------------------------------------------------------------


Item = tuple[str, object]
"""(device id, record or protocol marker)."""


def _ns(day_start_ns: int, t_s: float) -> int:
    return day_start_ns + round(t_s * 1e9)


def _strap_packets(
    start_ns: int, duration_s: float, params: RRParameters, seed: int
) -> Iterator[Item]:
    """Notifications every second with the RR intervals that ended in it (as a strap does)."""
    beats = rr_beats(params, seed)
    t_ms = 0.0
    pending: list[float] = []
    next_packet_ms = 1000.0
    recent: list[float] = []
    while t_ms < duration_s * 1000.0:
        rr = next(beats).rr_ms
        t_ms += rr
        while t_ms > next_packet_ms:
            if pending:
                recent = (recent + pending)[-4:]
                hr = round(60_000.0 / (sum(recent) / len(recent)))
                yield (
                    STRAP,
                    HeartRateSample(
                        _ns(start_ns, next_packet_ms / 1000.0),
                        hr,
                        tuple(pending),
                        SensorContact.DETECTED,
                    ),
                )
                pending = []
            next_packet_ms += 1000.0
        pending.append(round(rr * 1024.0 / 1000.0) * 1000.0 / 1024.0)  # wire resolution


def _morning(plan: DayPlan, day_ns: int, seed: int) -> Iterator[Item]:
    start = _ns(day_ns, MORNING_AT_S)
    yield STRAP, MorningStart(start)
    params = RRParameters(
        mean_hr_bpm=plan.resting_hr_bpm,
        rmssd_ms=plan.rmssd_ms,
        ectopic_rate=plan.ectopic_rate,
        drift_ms=10.0,
    )
    yield from _strap_packets(start, MORNING_DURATION_S, params, seed)
    yield STRAP, MorningEnd(start + round(MORNING_DURATION_S * 1e9) + 1)


def _squeezes(start_ns: int, peaks_kg: Sequence[float], seed: int) -> Iterator[Item]:
    """Force samples of squeezes separated by rest (rest sampled at 4 Hz to save records)."""
    t_s = 0.0
    for i, peak in enumerate(peaks_kg):
        for _ in range(int(SQUEEZE_REST_S * 4)):
            yield GRIP, ForceSample(_ns(start_ns, t_s), 0.0, round(t_s * 1e6))
            t_s += 0.25
        curve = grip_squeeze(peak, rate_hz=GRIP_RATE_HZ, seed=seed + i)
        for value in curve:
            yield GRIP, ForceSample(_ns(start_ns, t_s), float(value), round(t_s * 1e6))
            t_s += 1.0 / GRIP_RATE_HZ
    yield GRIP, ForceSample(_ns(start_ns, t_s), 0.0, round(t_s * 1e6))


def _session(plan: SessionPlan, day_ns: int, seed: int) -> Iterator[Item]:
    start = _ns(day_ns, SESSION_AT_S)
    yield POWER, SessionStart(start)
    strap = _strap_packets(
        start,
        SESSION_DURATION_S,
        RRParameters(mean_hr_bpm=128.0, rmssd_ms=12.0, drift_ms=30.0),
        seed,
    )
    smo2 = (
        (MOXY, SmO2Sample(_ns(start, p.t_s), round(p.smo2_pct, 1), round(p.thb_gdl, 2)))
        for p in itertools.takewhile(
            lambda p: p.t_s <= SESSION_DURATION_S,
            smo2_points(
                SESSION_SCHEDULE,
                SmO2Parameters(recovery_tau_s=plan.recovery_tau_s, noise_pct=0.4),
                2.0,
                seed,
            ),
        )
    )
    power = (
        (POWER, PowerSample(_ns(start, t), w))
        for t, w in itertools.takewhile(
            lambda tw: tw[0] <= SESSION_DURATION_S,
            power_watts(SESSION_SCHEDULE, plan.rest_w, plan.effort_w, 6.0, 1.0, seed),
        )
    )
    yield from _merge_by_time(strap, smo2, power)
    yield POWER, SessionEnd(start + round(SESSION_DURATION_S * 1e9) + 1, rpe=plan.rpe)


def _merge_by_time(*streams: Iterator[Item]) -> Iterator[Item]:
    def key(item: Item) -> int:
        t = getattr(item[1], "t_ns", 0)
        return int(t)

    yield from heapq.merge(*streams, key=key)


def _grip(plan: GripPlan, day_ns: int, seed: int) -> tuple[list[Item], list[Item]]:
    """The grip test's records before and after the session."""
    pre_at = _ns(day_ns, GRIP_PRE_AT_S)
    before: list[Item] = [(GRIP, GripPhase(pre_at, None))]
    before.extend(_squeezes(pre_at + 1, [plan.mvc_kg] * MVC_TRIALS, seed))
    after: list[Item] = []
    end_s = SESSION_AT_S + SESSION_DURATION_S + 60.0
    for j, minute in enumerate(POST_GRIP_MINUTES):
        at = _ns(day_ns, end_s + 60.0 * minute)
        peak = grip_peak_after_session(
            plan.mvc_kg, plan.drop_fraction, 60.0 * minute, plan.recovery_tau_s
        )
        after.append((GRIP, GripPhase(at, minute)))
        after.extend(_squeezes(at + 1, [peak] * POST_TRIALS, seed + 100 * (j + 1)))
    last = after[-1][1]
    after.append((GRIP, GripEnd(int(getattr(last, "t_ns", 0)) + 1)))
    return before, after


def day_records(scenario: Scenario, plan: DayPlan, day: dt.date) -> Iterator[Item]:
    """Every record of ``plan`` on calendar ``day`` (UTC), in time order."""
    day_ns = (
        int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
    )
    seed = scenario.seed + 17 * plan.day
    yield from _morning(plan, day_ns, seed)
    labs = [
        (LAB, LabEntry(_ns(day_ns, lab.at_s), lab.marker, lab.value, lab.timing))
        for lab in plan.labs
    ]
    # Fasted draws come before the day's grip test and session, post-session ones after.
    session_ns = _ns(day_ns, GRIP_PRE_AT_S)
    yield from (item for item in labs if _time(item) < session_ns)
    before: list[Item] = []
    after: list[Item] = []
    if plan.grip is not None:
        before, after = _grip(plan.grip, day_ns, seed)
    yield from before
    if plan.session is not None:
        yield from _session(plan.session, day_ns, seed)
    yield from after
    yield from (item for item in labs if _time(item) >= session_ns)


def _time(item: Item) -> int:
    t_ns = getattr(item[1], "t_ns", 0)
    return t_ns if isinstance(t_ns, int) else 0


def history_dates(days: int, today: dt.date | None = None) -> list[dt.date]:
    """The calendar days of a ``days``-day history ending yesterday (UTC)."""
    end = today or dt.datetime.now(dt.UTC).date()
    return [end - dt.timedelta(days=days - d) for d in range(days)]


# --- replay -----------------------------------------------------------------------------------


@dataclass
class HistoryProgress:
    """How far the replay is: athlete-days done of the total, records pushed."""

    total_days: int
    days_done: int = 0
    records: int = 0
    finished: bool = False

    @property
    def fraction(self) -> float:
        """Share done, 0..1."""
        return self.days_done / self.total_days if self.total_days else 1.0


async def replay_history(
    put: Callable[[str, str, object], Awaitable[bool]],
    plans: Sequence[Scenario],
    dates: Sequence[dt.date],
    *,
    progress: HistoryProgress | None = None,
    skip: Callable[[str, dt.date], bool] | None = None,
) -> HistoryProgress:
    """Push every athlete's history through ``put(athlete, device, record)`` (awaited).

    ``put`` is :meth:`streamer.pipeline.Pipeline.put`, which waits while an inbox is full,
    so nothing is shed. Athletes are fed concurrently, each in time order. ``skip(athlete,
    date)`` leaves out days already in the store (a restarted demo resumes).
    """
    if len(dates) != max((len(s.days) for s in plans), default=0):
        raise ValueError("give one date per planned day")
    state = progress or HistoryProgress(total_days=len(plans) * len(dates))

    async def feed(scenario: Scenario) -> None:
        for plan, day in zip(scenario.days, dates, strict=True):
            if skip is None or not skip(scenario.athlete, day):
                for device, record in day_records(scenario, plan, day):
                    if not await put(scenario.athlete, device, record):
                        return  # the pipeline is stopping
                    state.records += 1
            state.days_done += 1
            await asyncio.sleep(0)

    async with asyncio.TaskGroup() as group:
        for scenario in plans:
            group.create_task(feed(scenario), name=f"history {scenario.athlete}")
    state.finished = True
    return state
