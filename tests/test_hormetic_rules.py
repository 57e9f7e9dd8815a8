"""``hr_grip_flat`` and ``power_plateau`` on constructed histories, through ``run``'s path.

Each history is fed as records and protocol markers through the real
:class:`~streamer.app.pipeline.Pipeline` into an :class:`~streamer.athlete.AthleteState`
over a :class:`~streamer.store.Store`, as ``run`` does: mornings as imported day values
(exact resting HR; an RR-measured morning takes the same path from
:meth:`RuleEngine.morning` on, and one test uses those), grip tests as force samples of
squeezes with exact peaks between grip-phase markers, sessions as power samples between
session markers. What is asserted is what ``run`` publishes: the alerts and the session
summaries. Each :func:`feed` is one ``run``: its athlete state is rebuilt from the store,
so the histories the rules need must survive a restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from devices.records import ForceSample, PowerSample
from processors.grip import mvc_noise, real_drop_threshold
from processors.hormetic import GripOnDay, hr_grip_run
from processors.plateau import PlateauSession, power_plateau
from processors.rules import CATALOGUE, RuleThresholds
from processors.trends import daily_trend
from streamer.app.pipeline import Pipeline
from streamer.athlete import AthleteState
from streamer.athlete.events import (
    DayValues,
    GripEnd,
    GripPhase,
    SessionEnd,
    SessionRpe,
    SessionStart,
)
from streamer.demo.history import DayPlan, Scenario, day_records
from streamer.report.figure import RULE_PANEL
from streamer.report.gather import gather_report
from streamer.report.page import render_html
from streamer.results import AlertsPayload, Kind, Result, SessionPayload
from streamer.store import Store
from tests.emulated_history import CaptureSink

ATHLETE = "ann"
DAY0 = dt.date(2026, 1, 5)
BASE_DAYS = 40  # > d−35: the resting-HR baseline is full (28 days) from then on
BASE_HR = (50.0, 52.0)  # alternating: mean 51, SD ≈ 1.02 over the 28 baseline days,
# so "elevated" (mean + 1·SD) starts at ≈ 52.02 bpm: no baseline morning is elevated
BASE_MVCS = (49.0, 51.0, 50.0, 49.5, 50.5, 50.0)  # CV ≈ 1.4%: a real rise from ≈ 3.3%
NS = 10**9
DAY_NS = 86_400 * NS

Item = tuple[str, object]


def day_ns(day: int, hour: float = 0.0) -> int:
    """Time (ns) of ``hour`` o'clock (UTC) on day ``day`` counted from DAY0."""
    start = dt.datetime(DAY0.year, DAY0.month, DAY0.day, tzinfo=dt.UTC) + dt.timedelta(days=day)
    return int(start.timestamp()) * NS + round(hour * 3600 * NS)


# --- records ----------------------------------------------------------------------------------


def morning(day: int, resting_hr_bpm: float) -> list[Item]:
    """A morning's values at 07:00 of ``day``, as ``import`` feeds them (exact bpm)."""
    when = DAY0 + dt.timedelta(days=day)
    return [("import", DayValues(day_ns(day, 7), when, 60.0, resting_hr_bpm, "test"))]


def _squeezes(start_ns: int, peaks_kg: Sequence[float]) -> Iterator[Item]:
    """Triangular squeezes at 40 Hz whose highest sample is exactly the peak (kg)."""
    t = start_ns
    for peak in peaks_kg:
        for k in (*range(40), *range(40, -1, -1)):
            yield "grip", ForceSample(t, peak * k / 40, t_us=t // 1000)
            t += NS // 40
        for _ in range(40):  # a second of rest
            yield "grip", ForceSample(t, 0.0, t_us=t // 1000)
            t += NS // 40


def grip_test(day: int, mvc_kg: float, hour: float = 17.0) -> list[Item]:
    """A grip test on ``day``: three MVC squeezes of ``mvc_kg``, one post test at 0 min 2%
    down (no drop that counts: grip_signal and grip_spillover stay quiet)."""
    at = day_ns(day, hour)
    items: list[Item] = [("grip", GripPhase(at, None))]
    items.extend(_squeezes(at + 1, [mvc_kg] * 3))
    post = at + 60 * NS
    items.append(("grip", GripPhase(post, 0.0)))
    items.extend(_squeezes(post + 1, [0.98 * mvc_kg]))
    items.append(("grip", GripEnd(post + 30 * NS)))
    return items


def session(day: int, rpe: float | None, power_w: Sequence[int], hour: float = 17.5) -> list[Item]:
    """A session on ``day`` with these power samples (one a second: the mean is exact)."""
    start = day_ns(day, hour)
    items: list[Item] = [("command", SessionStart(start))]
    items.extend(("power", PowerSample(start + (i + 1) * NS, w)) for i, w in enumerate(power_w))
    items.append(("command", SessionEnd(start + (len(power_w) + 2) * NS, rpe=rpe)))
    return items


def baseline(days: int = BASE_DAYS) -> list[Item]:
    """Days 0 … days−1: mornings alternating 50/52 bpm; the grip tests of BASE_MVCS on the
    last days before ``days`` − 3 (d−35 … d−3 of the runs that follow)."""
    items: list[Item] = []
    grip_days = {days - 4 - 2 * i: mvc for i, mvc in enumerate(BASE_MVCS)}
    for d in range(days):
        items += morning(d, BASE_HR[d % 2])
        if d in grip_days:
            items += grip_test(d, grip_days[d])
    return items


def band_high(days: int = BASE_DAYS) -> float:
    """Where "elevated" starts (mean + 1·SD of the baseline) on the days after it."""
    history = [BASE_HR[d % 2] for d in range(days)] + [math.nan] * 3
    high = daily_trend(np.array(history), "resting_hr_bpm", band_sd=1.0).band_high
    assert high is not None
    return high


def grip_rise_limit() -> float:
    """The MVC (kg) from which grip has really risen over BASE_MVCS (1.65·√2·CV)."""
    noise = mvc_noise(BASE_MVCS)
    assert noise.cv is not None
    return float(np.mean(BASE_MVCS)) * (1.0 + real_drop_threshold(noise.cv))


# --- run ----------------------------------------------------------------------------------------


async def _run(
    store_path: Path, items: Sequence[Item], thresholds: RuleThresholds | None
) -> list[Result]:
    sink = CaptureSink()
    with Store(store_path) as store:

        def make(athlete: str) -> AthleteState:
            return AthleteState(athlete, store, thresholds, live=False, hrv_every_s=60.0)

        pipeline = Pipeline(make, store, [sink], athletes=[ATHLETE], flush_timeout_s=30.0)
        task = asyncio.create_task(pipeline.run())
        try:
            for device, record in items:
                await pipeline.put(ATHLETE, device, record)
            await pipeline.join()
        finally:
            pipeline.stop()
            await task
    return sink.results


def feed(
    store_path: Path, items: Sequence[Item], thresholds: RuleThresholds | None = None
) -> list[Result]:
    """One ``run`` over ``items``: every durable result it published, in order."""
    return asyncio.run(_run(store_path, items, thresholds))


def alert_events(results: Sequence[Result], rule: str) -> list[tuple[str, int]]:
    """(state, time ns) of each published alert event of ``rule``."""
    out = []
    for r in results:
        if r.kind is Kind.ALERTS:
            event = r.payload_as(AlertsPayload).event
            if event.rule == rule:
                out.append((event.state, r.ts_ns))
    return out


def raised(results: Sequence[Result], rule: str) -> list[AlertsPayload]:
    return [
        r.payload_as(AlertsPayload)
        for r in results
        if r.kind is Kind.ALERTS
        and r.payload_as(AlertsPayload).event.rule == rule
        and r.payload_as(AlertsPayload).event.state == "raised"
    ]


def sessions(results: Sequence[Result]) -> list[SessionPayload]:
    return [
        r.payload_as(SessionPayload)
        for r in results
        if r.kind is Kind.OXYGENATION and isinstance(r.payload, SessionPayload)
    ]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


# --- hr_grip_flat ---------------------------------------------------------------------------


def test_hr_up_and_grip_flat_three_days_running_raises_with_the_48_h_end(
    store_path: Path,
) -> None:
    feed(store_path, baseline())
    d = BASE_DAYS
    results = feed(
        store_path,
        morning(d, 55.0) + morning(d + 1, 56.0) + grip_test(d + 1, 50.0) + morning(d + 2, 55.0),
    )
    events = alert_events(results, "hr_grip_flat")
    # Raised once, by the third morning (the second day's grip test saw only two days).
    assert events == [("raised", day_ns(d + 2, 7))]
    (alert,) = raised(results, "hr_grip_flat")
    event = alert.event
    assert event.severity == "pull_back"
    assert event.advice == CATALOGUE["hr_grip_flat"].advice
    assert "48 h" in event.advice
    until_s = day_ns(d + 2, 7) / NS + 48 * 3600
    assert event.evidence["back_off_until_s"] == pytest.approx(until_s)
    assert event.evidence["back_off_h"] == 48.0
    end = dt.datetime.fromtimestamp(until_s, tz=dt.UTC)
    assert f"until {end:%Y-%m-%d %H:%M} UTC" in event.message
    # Its advice is its own 48 h window, not the article's week of cut volume.
    assert event.volume_cut_until is None
    assert event.evidence["resting_hr_0_days_ago_bpm"] == 55.0
    assert event.evidence["grip_tests_in_run"] == 1.0
    # It stays open across restarts and clears on a measured morning back in its band.
    cleared = feed(store_path, morning(d + 3, 51.0))
    assert alert_events(cleared, "hr_grip_flat") == [("cleared", day_ns(d + 3, 7))]


def test_resting_hr_at_the_top_of_its_band_is_not_elevated(store_path: Path) -> None:
    high = band_high()
    feed(store_path, baseline())
    d = BASE_DAYS
    at_edge = feed(
        store_path,
        morning(d, high + 0.5)
        + morning(d + 1, high)
        + grip_test(d + 1, 50.0)
        + morning(d + 2, high + 0.5),
    )
    assert alert_events(at_edge, "hr_grip_flat") == []


def test_resting_hr_just_above_its_band_is_elevated(store_path: Path) -> None:
    high = band_high()
    feed(store_path, baseline())
    d = BASE_DAYS
    above = feed(
        store_path,
        morning(d, high + 0.01)
        + morning(d + 1, high + 0.01)
        + grip_test(d + 1, 50.0)
        + morning(d + 2, high + 0.01),
    )
    assert alert_events(above, "hr_grip_flat") == [("raised", day_ns(d + 2, 7))]


@pytest.mark.parametrize(("rise", "fires"), [(1.0, False), (0.999, True)])
def test_grip_flat_ends_where_a_rise_beyond_the_test_noise_begins(
    store_path: Path, rise: float, fires: bool
) -> None:
    # MVC at the real-rise limit (1.65·√2·CV over the mean of the earlier tests) is a
    # real rise, not flat; just below it is flat.
    mvc = float(np.mean(BASE_MVCS)) + rise * (grip_rise_limit() - float(np.mean(BASE_MVCS)))
    feed(store_path, baseline())
    d = BASE_DAYS
    results = feed(
        store_path,
        morning(d, 55.0) + morning(d + 1, 55.0) + morning(d + 2, 55.0) + grip_test(d + 2, mvc),
    )
    expected = [("raised", day_ns(d + 2, 17) + 60 * NS + 30 * NS)] if fires else []
    assert alert_events(results, "hr_grip_flat") == expected


def test_a_missing_morning_breaks_the_run_and_neither_raises_nor_clears(
    store_path: Path,
) -> None:
    feed(store_path, baseline())
    d = BASE_DAYS
    # Elevated on d, d+2, d+3 with d+1 missing: no three days running until d+4.
    gap = feed(
        store_path,
        morning(d, 55.0)
        + grip_test(d, 50.0)
        + morning(d + 2, 55.0)
        + grip_test(d + 2, 50.0)
        + morning(d + 3, 55.0),
    )
    assert alert_events(gap, "hr_grip_flat") == []
    run = feed(store_path, morning(d + 4, 55.0))
    assert alert_events(run, "hr_grip_flat") == [("raised", day_ns(d + 4, 7))]
    # An open alert survives a day without a reading (missing data never clears) …
    quiet = feed(store_path, morning(d + 6, 55.0) + grip_test(d + 6, 50.0))
    assert alert_events(quiet, "hr_grip_flat") == []
    # … and clears on the first measured morning in the band.
    back = feed(store_path, morning(d + 7, 50.5))
    assert alert_events(back, "hr_grip_flat") == [("cleared", day_ns(d + 7, 7))]


def test_no_grip_test_in_the_run_waits_for_the_days_test(store_path: Path) -> None:
    feed(store_path, baseline())
    d = BASE_DAYS
    mornings = feed(store_path, morning(d, 55.0) + morning(d + 1, 55.0) + morning(d + 2, 55.0))
    assert alert_events(mornings, "hr_grip_flat") == []  # undecided: no grip test yet
    test = feed(store_path, grip_test(d + 2, 50.0))
    assert alert_events(test, "hr_grip_flat") == [("raised", day_ns(d + 2, 17) + 90 * NS)]


def test_without_five_earlier_grip_tests_the_noise_is_unknown_and_nothing_fires(
    store_path: Path,
) -> None:
    d = BASE_DAYS
    history = [i for i in baseline() if i[0] != "grip"]  # mornings only
    feed(store_path, history + grip_test(d - 4, 50.0))
    results = feed(
        store_path,
        morning(d, 55.0) + morning(d + 1, 55.0) + morning(d + 2, 55.0) + grip_test(d + 2, 50.0),
    )
    assert alert_events(results, "hr_grip_flat") == []


def test_rr_measured_mornings_take_the_same_path(store_path: Path) -> None:
    # Mornings measured from the strap's RR (the demo's emulated strap), not imported.
    scenario = Scenario(ATHLETE, "test", "", (), 11)
    items: list[Item] = []
    grip_days = {BASE_DAYS - 4 - 2 * i: mvc for i, mvc in enumerate(BASE_MVCS)}
    for d in range(BASE_DAYS + 3):
        hr = 58.0 if d >= BASE_DAYS else BASE_HR[d % 2]
        plan = DayPlan(d, 60.0, hr, 0.003, None, None)
        items += list(day_records(scenario, plan, DAY0 + dt.timedelta(days=d)))
        if d in grip_days:
            items += grip_test(d, grip_days[d])
    items += grip_test(BASE_DAYS + 2, 50.0)
    results = feed(store_path, items)
    assert [s for s, _ in alert_events(results, "hr_grip_flat")] == ["raised"]


def test_hr_grip_run_reports_what_it_decided_on() -> None:
    history = np.array([BASE_HR[d % 2] for d in range(BASE_DAYS)] + [55.0, math.nan, 55.0])
    grips = [GripOnDay(3 + 2 * i, m) for i, m in enumerate(BASE_MVCS)] + [GripOnDay(0, 50.0)]
    run = hr_grip_run(history, grips)
    assert not run.evaluable
    assert "d−1" in run.reason
    assert run.run_hr_bpm == (55.0, None, 55.0)
    history[-2] = 56.0
    run = hr_grip_run(history, grips)
    assert run.triggered
    assert run.grip_baseline_tests == len(BASE_MVCS)
    assert run.grip_rise_pct == pytest.approx(0.0)


# --- power_plateau ------------------------------------------------------------------------------


def plateau_history(
    days: Sequence[int], power: Sequence[Sequence[int]], rpe: Sequence[float | None]
) -> list[Item]:
    items: list[Item] = []
    for d, w, r in zip(days, power, rpe, strict=True):
        items += session(d, r, w)
    return items


EVERY_OTHER_DAY = list(range(0, 21, 2))  # 11 sessions over 21 days: ≥ 3 a week


def test_flat_power_at_matched_effort_for_three_weeks_is_a_finding_not_an_alert(
    store_path: Path,
) -> None:
    power = [[200 + (i % 2)] * 10 for i in range(len(EVERY_OTHER_DAY))]  # 200/201 W
    results = feed(store_path, plateau_history(EVERY_OTHER_DAY, power, [5.0] * len(power)))
    summaries = sessions(results)
    assert summaries[-1].power_plateau is True
    assert summaries[-1].power_change_pct == pytest.approx(0.0, abs=0.5)
    # Too few sessions to decide at first: undecided (null), not "no plateau".
    assert summaries[0].power_plateau is None
    assert alert_events(results, "power_plateau") == []


def test_power_rising_by_a_worthwhile_change_is_no_plateau(store_path: Path) -> None:
    power = [[200 + 2 * i] * 10 for i in range(len(EVERY_OTHER_DAY))]  # +1 W a day
    results = feed(store_path, plateau_history(EVERY_OTHER_DAY, power, [5.0] * len(power)))
    last = sessions(results)[-1]
    assert last.power_plateau is False
    assert last.power_change_pct == pytest.approx(100.0 * 21 / 210)


@pytest.mark.parametrize(("min_rise", "plateau"), [(0.1, False), (0.100001, True)])
def test_the_plateau_ends_where_the_rise_reaches_the_smallest_worthwhile_change(
    store_path: Path, min_rise: float, plateau: bool
) -> None:
    # A noiseless +1 W/day: 21 W over the window, mean 210 W; the SWC is min_rise × 210 W
    # (the noise about the line is 0), so 10% is exactly the rise: not a plateau.
    power = [[200 + 2 * i] * 10 for i in range(len(EVERY_OTHER_DAY))]
    th = RuleThresholds().with_overrides({"power_plateau_min_rise": min_rise})
    results = feed(store_path, plateau_history(EVERY_OTHER_DAY, power, [5.0] * 11), th)
    assert sessions(results)[-1].power_plateau is plateau


def test_sessions_are_compared_at_matched_effort_only(store_path: Path) -> None:
    # Easy sessions (RPE 3, 150 W) early, hard ones (RPE 7, 300 W) late: mean power climbs,
    # but at each effort it is flat — a plateau.
    rpes = [3.0, 3.0, 3.0, 7.0, 3.0, 3.0, 7.0, 7.0, 3.0, 7.0, 7.0]
    power = [[150 if r == 3.0 else 300] * 10 for r in rpes]
    results = feed(store_path, plateau_history(EVERY_OTHER_DAY, power, rpes))
    assert sessions(results)[-1].power_plateau is True


@pytest.mark.parametrize(("week_two", "plateau"), [([8, 11], True), ([11], False)])
def test_compliance_needs_two_sessions_in_each_of_the_three_weeks(
    store_path: Path, week_two: list[int], plateau: bool
) -> None:
    # The window ends at the last session's start (day 20, 17:30): its weeks are days
    # 0–6, 7–13, 14–20 (by start time). Week two has two sessions, or one (a missed week).
    days = [0, 2, 4, *week_two, 14, 16, 18, 20]
    power = [[200] * 10 for _ in days]
    results = feed(store_path, plateau_history(days, power, [5.0] * len(days)))
    assert sessions(results)[-1].power_plateau is plateau


def test_without_rpe_there_is_no_matched_effort_and_no_finding(store_path: Path) -> None:
    power = [[200] * 10 for _ in EVERY_OTHER_DAY]
    results = feed(store_path, plateau_history(EVERY_OTHER_DAY, power, [None] * 11))
    assert {s.power_plateau for s in sessions(results)} == {None}


def test_an_rpe_entered_later_re_decides_the_finding_across_a_restart(
    store_path: Path,
) -> None:
    power = [[200] * 10 for _ in EVERY_OTHER_DAY]
    rpes: list[float | None] = [5.0] * 10 + [None]
    first = feed(store_path, plateau_history(EVERY_OTHER_DAY, power, rpes))
    assert sessions(first)[-1].power_plateau is True  # the other ten decide it
    # Restarted: the window's sessions come back from the store. An RPE of 8 puts the last
    # session alone in its group; the other ten still show the plateau.
    later = feed(store_path, [("command", SessionRpe(day_ns(20, 20), 8.0))])
    (amended,) = sessions(later)
    assert amended.rpe == 8.0
    assert amended.power_plateau is True


def test_power_plateau_reports_what_it_decided_on() -> None:
    now = day_ns(20, 17.5)
    found = power_plateau(
        [PlateauSession(day_ns(d, 17.5), 5.0, 200.0) for d in EVERY_OTHER_DAY], now
    )
    assert found.triggered
    assert found.sessions_per_week == (4, 3, 4)  # days 0–6, 8–12, 14–20
    assert found.matched_sessions == 11
    assert found.swc_w == pytest.approx(2.0)  # the 1% floor: the noise is 0
    assert found.evidence()["sessions_week_2_of_3"] == 3.0


# --- the report -------------------------------------------------------------------------------


def test_the_report_shows_the_alert_on_the_resting_hr_panel_and_the_plateau_finding(
    store_path: Path,
) -> None:
    feed(store_path, baseline())
    d = BASE_DAYS
    feed(
        store_path,
        morning(d, 55.0) + morning(d + 1, 56.0) + grip_test(d + 1, 50.0) + morning(d + 2, 55.0),
    )
    flat = [[200 + (i % 2)] * 10 for i in range(len(EVERY_OTHER_DAY))]
    feed(store_path, plateau_history([d - 18 + x for x in EVERY_OTHER_DAY], flat, [5.0] * 11))
    with Store(store_path, read_only=True) as store:
        data = gather_report(store, ATHLETE, 28)
    assert [a.rule for a in data.open_alerts] == ["hr_grip_flat"]
    assert RULE_PANEL["hr_grip_flat"] == "rhr"
    assert data.sessions[-1].power_plateau is True
    assert data.sessions[-1].rpe == 5.0
    page = render_html(data)
    assert "<h2>Findings</h2>" in page
    assert CATALOGUE["power_plateau"].title in page
    assert "<b>plateau</b>" in page
    assert html.escape(CATALOGUE["hr_grip_flat"].advice) in page


# --- the evaluators' own edges ----------------------------------------------------------------


def test_the_plateau_line_is_the_athletes_own_noise_when_that_exceeds_the_floor() -> None:
    # ±10 W about a flat line at 200 W: SD about the line ≈ 10.5 W, so the smallest
    # worthwhile change is 0.5·SD ≈ 5.2 W, above the 1% floor (2 W).
    now = day_ns(20, 17.5)
    sessions = [
        PlateauSession(day_ns(d, 17.5), 5.0, 200.0 + (10.0 if i % 2 else -10.0))
        for i, d in enumerate(EVERY_OTHER_DAY)
    ]
    found = power_plateau(sessions, now)
    assert found.noise_sd_w is not None
    assert found.swc_w == pytest.approx(0.5 * found.noise_sd_w)
    assert found.swc_w > 2.0
    assert found.triggered


def test_falling_power_at_matched_effort_counts_as_flat() -> None:
    now = day_ns(20, 17.5)
    sessions = [
        PlateauSession(day_ns(d, 17.5), 5.0, 220.0 - 2.0 * i) for i, d in enumerate(EVERY_OTHER_DAY)
    ]
    found = power_plateau(sessions, now)
    assert found.change_w == pytest.approx(-21.0)
    assert found.triggered


def test_run_days_and_plateau_window_must_be_at_least_a_day() -> None:
    with pytest.raises(ValueError, match="hr_grip_run_days"):
        RuleThresholds().with_overrides({"hr_grip_run_days": 0})
    with pytest.raises(ValueError, match="power_plateau_window_days"):
        RuleThresholds().with_overrides({"power_plateau_window_days": 0})
    with pytest.raises(ValueError, match="whole number"):
        RuleThresholds().with_overrides({"hr_grip_run_days": 2.5})
