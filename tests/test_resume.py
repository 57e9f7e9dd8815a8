"""The resume signal: a pull-back alert raised and then cleared because the athlete's
signals are back in their normal band (``clear_reason`` ``resume`` with the rule's own
evidence), through the processing path of ``run`` (:class:`AthleteState`, its rule engine
and alert book, results recorded in the store as the pipeline records them), and what
``status`` says before and after.

The history is constructed: 21 baseline mornings (resting HR 50/52 bpm, RMSSD 84/86 ms),
a week of resting HR 57/58 bpm (``rhr_creep`` raises), then mornings back near baseline —
one still high, a missing day among them — until three valid mornings run in band.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from processors import physiology as ph
from processors.alerts import (
    AlertBook,
    AlertState,
    ClearReason,
    RuleEvaluation,
    Severity,
)
from processors.morning import MorningReading
from streamer.athlete.events import DayValues, GripEnd, GripPhase
from streamer.athlete.state import AthleteState
from streamer.commands.status import Broker, as_json, as_text, athlete_status
from streamer.results import AlertsPayload, GripPayload, Kind, Result, StatusPayload
from streamer.store import Store

DAY0 = dt.date(2026, 3, 1)
NS = 1_000_000_000


def _t(day: dt.date, hour: int = 6) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hour, 30, tzinfo=dt.UTC).timestamp()) * NS


def _day(i: int) -> dt.date:
    return DAY0 + dt.timedelta(days=i)


BASELINE = {i: (50.0 if i % 2 else 52.0, 84.0 if i % 2 else 86.0) for i in range(21)}
CREEP = {i: (57.0 + i % 2, 86.0) for i in range(21, 28)}
# Day 28: still high (out of band); 29, 30 in band; 31 missing; 32 in band: the third.
RECOVERY = {28: (58.0, 86.0), 29: (52.0, 86.0), 30: (51.0, 86.0), 32: (51.0, 86.0)}


class Fed:
    """An athlete state over a store, results recorded as the pipeline records them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.state = AthleteState("ann", store, live=False)
        self.alerts: list[tuple[int, AlertsPayload]] = []

    def day(self, i: int, hr: float, rmssd: float) -> list[Result]:
        day = _day(i)
        out = self.state.process("import", DayValues(_t(day), day, rmssd, hr, "test"))
        for result in out:
            self.store.record(result)
            if result.kind is Kind.ALERTS:
                self.alerts.append((i, result.payload_as(AlertsPayload)))
        return out

    def days(self, values: dict[int, tuple[float, float]]) -> None:
        for i, (hr, rmssd) in values.items():
            self.day(i, hr, rmssd)


@pytest.fixture
def fed(tmp_path: Path) -> Fed:
    return Fed(Store(tmp_path / "store.sqlite3"))


def _events(fed: Fed, rule: str) -> list[tuple[int, AlertsPayload]]:
    return [(i, a) for i, a in fed.alerts if a.event.rule == rule]


def test_rhr_creep_raises_then_clears_with_resume_once_three_mornings_are_back_in_band(
    fed: Fed,
) -> None:
    fed.days(BASELINE | CREEP)
    ((raised_day, raised),) = _events(fed, "rhr_creep")
    assert raised.event.state == "raised"
    assert raised.event.clear_reason is None
    # The advice's week of ~40% less volume: its end is in the raised payload.
    assert raised.event.volume_cut_until == (_day(raised_day) + dt.timedelta(days=7)).isoformat()

    fed.days({i: RECOVERY[i] for i in (28, 29, 30)})
    # Days 29 and 30 are in band, 28 was not: two of three — still pulling back.
    assert len(_events(fed, "rhr_creep")) == 1
    assert fed.state.book.is_raised("rhr_creep")

    fed.day(32, *RECOVERY[32])  # day 31 missing: skipped, neither breaks nor extends the run
    (_, (cleared_day, cleared)) = _events(fed, "rhr_creep")
    event = cleared.event
    assert (cleared_day, event.state) == (32, "cleared")
    assert event.clear_reason == "resume"
    assert event.resume_since_ts_ns == _t(_day(29), 0) - 30 * 60 * NS  # midnight of day 29
    assert event.cleared_ts_ns == _t(_day(32))
    # The evidence is the rule's own (its baseline median and rise) plus the run in band.
    evidence = event.resume_evidence
    assert evidence["mornings_in_band"] == ph.RESUME_MORNINGS_IN_BAND
    assert evidence["rhr_band_high_bpm"] == pytest.approx(
        evidence["baseline_median_bpm"] + ph.RHR_CREEP_DELTA_BPM
    )
    assert evidence["delta_bpm"] < ph.RHR_CREEP_DELTA_BPM
    assert "back in band" in (event.clear_message or "")
    assert _day(29).isoformat() in (event.clear_message or "")
    assert cleared.active == ()
    # Stored as published: the history row says why it cleared.
    (row,) = [r for r in fed.store.alerts("ann") if r.state == "cleared"]
    assert row.payload.clear_reason == "resume"
    assert row.payload.resume_evidence == evidence


def test_the_book_saved_mid_pull_back_restores_and_still_clears_with_resume(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite3"
    first = Fed(Store(path))
    first.days(BASELINE | CREEP | {28: RECOVERY[28]})
    first.store.close()
    again = Fed(Store(path))  # a restarted `run`: book and mornings from the store
    assert again.state.book.is_raised("rhr_creep")
    again.days({i: RECOVERY[i] for i in (29, 30, 32)})
    ((_, cleared),) = _events(again, "rhr_creep")
    assert cleared.event.clear_reason == "resume"
    assert cleared.event.volume_cut_until == first.alerts[0][1].event.volume_cut_until


def _flat(text: str) -> str:
    """The status text with its wrapping undone (lines of 80 columns)."""
    return " ".join(text.split())


def test_status_says_pull_back_then_resume_in_text_and_json(fed: Fed) -> None:
    broker = Broker(configured=False)
    fed.days(BASELINE | CREEP)
    ((raised_day, raised),) = _events(fed, "rhr_creep")
    cut_until = raised.event.volume_cut_until
    now = _t(_day(28), 12)
    before = athlete_status(fed.store, "ann", "Ann", [], now)
    text = _flat(as_text([before], broker, now))
    assert f"pull back since {_day(raised_day).isoformat()} (rhr_creep)" in text
    assert f"cut volume ~40% until {cut_until}" in text
    body = as_json([before], broker, Path("s"), now)["athletes"][0]  # type: ignore[index]
    assert body["pull_back"] == {
        "state": "pull_back",
        "since_date": _day(raised_day).isoformat(),
        "rules": ["rhr_creep"],
        "volume_cut_until": cut_until,
        "back_off_until": None,  # rhr_creep's advice is the week of cut volume
        "cleared_date": None,
        "shown_until": None,
        "text": body["pull_back"]["text"],
    }
    assert body["open_alerts"][0]["volume_cut_until"] == cut_until

    fed.days(RECOVERY)
    now = _t(_day(33), 12)
    after = athlete_status(fed.store, "ann", "Ann", [], now)
    text = _flat(as_text([after], broker, now))
    assert f"resume (signals back in band since {_day(29).isoformat()})" in text
    assert "pull back since" not in text
    body = as_json([after], broker, Path("s"), now)["athletes"][0]  # type: ignore[index]
    assert body["open_alerts"] == []
    shown_until = (_day(32) + dt.timedelta(days=ph.RESUME_SHOWN_DAYS)).isoformat()
    assert body["pull_back"] == {
        "state": "resume",
        "since_date": _day(29).isoformat(),
        "rules": ["rhr_creep"],
        "volume_cut_until": None,
        "back_off_until": None,
        "cleared_date": _day(32).isoformat(),
        "shown_until": shown_until,
        "text": body["pull_back"]["text"],
    }
    # RESUME_SHOWN_DAYS after the clearing, status no longer says resume.
    later = _t(_day(32 + ph.RESUME_SHOWN_DAYS), 7)
    gone = athlete_status(fed.store, "ann", "Ann", [], later)
    assert gone.pull_back is None
    assert "resume" not in as_text([gone], broker, later)


def _evaluation(
    rule: str,
    severity: Severity,
    active: bool,
    back_in_band: bool | None = None,
    in_band_since_ns: int | None = None,
) -> RuleEvaluation:
    return RuleEvaluation(
        rule,
        severity,
        active,
        f"{rule} {active}",
        "advice",
        "src",
        {"x": 1.0},
        back_in_band=back_in_band,
        in_band_since_ns=in_band_since_ns,
    )


def test_each_clearing_says_why() -> None:
    book = AlertBook("ana")
    book.update(_evaluation("smo2_slow_recovery", Severity.PULL_BACK, True), 10)
    book.update(_evaluation("hi_spacing", Severity.WARNING, True), 10)
    # A pull-back rule whose inactive verdict is its back-in-band verdict (the last session
    # recovered): resume, since this evaluation, with its evidence.
    resumed = book.update(_evaluation("smo2_slow_recovery", Severity.PULL_BACK, False), 20)
    assert resumed is not None
    assert (resumed.state, resumed.clear_reason) == (AlertState.CLEARED, ClearReason.RESUME)
    assert (resumed.resume_since_ns, dict(resumed.resume_evidence)) == (20, {"x": 1.0})
    # A warning that is over: not_met, no resume evidence.
    over = book.update(_evaluation("hi_spacing", Severity.WARNING, False), 30)
    assert over is not None
    assert over.clear_reason is ClearReason.NOT_MET
    assert over.resume_evidence == {}
    assert over.volume_cut_until() is None
    # A pull-back rule no longer met but not back in band: stays open (hysteresis).
    book.update(_evaluation("rhr_creep", Severity.PULL_BACK, True), 40)
    assert (
        book.update(_evaluation("rhr_creep", Severity.PULL_BACK, False, back_in_band=False), 50)
        is None
    )
    assert book.is_raised("rhr_creep")
    back = book.update(
        _evaluation("rhr_creep", Severity.PULL_BACK, False, back_in_band=True, in_band_since_ns=45),
        60,
    )
    assert back is not None
    assert (back.clear_reason, back.resume_since_ns) == (
        ClearReason.RESUME,
        45,
    )
    # An info finding left open by an older book: retired.
    book.update(_evaluation("old_info", Severity.WARNING, True), 70)
    retired = book.update(_evaluation("old_info", Severity.INFO, False), 80)
    assert retired is not None
    assert retired.clear_reason is ClearReason.RETIRED


def test_a_cleared_alert_round_trips_through_its_dict_and_old_ones_still_load() -> None:
    book = AlertBook("ana")
    book.update(_evaluation("rhr_creep", Severity.PULL_BACK, True), 86_400 * NS)
    cleared = book.update(
        _evaluation("rhr_creep", Severity.PULL_BACK, False, back_in_band=True, in_band_since_ns=5),
        2 * 86_400 * NS,
    )
    assert cleared is not None
    data = cleared.to_dict()
    assert data["volume_cut_until"] == "1970-01-09"
    assert type(cleared).from_dict(data) == cleared
    old = {
        k: v
        for k, v in data.items()
        if k
        not in (
            "clear_reason",
            "clear_message",
            "resume_evidence",
            "resume_since_ns",
            "volume_cut_until",
        )
    }
    assert type(cleared).from_dict(old).clear_reason is None


def test_the_report_marks_the_raise_to_resume_span(fed: Fed, tmp_path: Path) -> None:
    from streamer.report.gather import gather_report, write_report
    from streamer.report.page import render_html

    fed.days(BASELINE | CREEP | RECOVERY)
    data = gather_report(fed.store, "ann", 28)
    (span,) = [s for s in data.alerts if s.rule == "rhr_creep"]
    assert span.resumed
    assert span.clear_reason == "resume"
    assert span.resume_since is not None
    assert span.resume_since.date() == _day(29)
    assert span.cleared is not None
    assert span.cleared.date() == _day(32)
    assert span.volume_cut_until == span.raised.date() + dt.timedelta(days=ph.PULL_BACK_DAYS)
    page = render_html(data, png=b"")
    assert "<h2>Pull back → resume</h2>" in page
    assert (
        f"<b>resume</b> {_day(32).isoformat()} (signals back in band since "
        f"{_day(29).isoformat()})" in page
    )
    png = tmp_path / "report.png"
    write_report(data, png)  # the timeline draws the resume marker without error
    assert png.read_bytes().startswith(b"\x89PNG")


def test_a_resume_clearing_is_one_alert_point_with_its_reason_and_exact_since(
    fed: Fed,
) -> None:
    from streamer.sinks.influx_schema import lines_for

    fed.days(BASELINE | CREEP | RECOVERY)
    ((raised_result, cleared_result),) = [
        [r for r in fed.store.alerts("ann") if r.rule == "rhr_creep"]
    ]
    cleared = cleared_result.payload
    result = AlertsPayload(active=(), event=cleared).result("ann", cleared_result.ts_ns)
    (line,) = lines_for(result)
    since = cleared.resume_since_ts_ns
    assert since is not None
    assert line.startswith("alert,athlete=ann,rule=rhr_creep,severity=pull_back active=0i,")
    assert 'clear_reason="resume"' in line
    assert f"resume_since_ts_ns={since}i" in line  # ns beyond a float's 53 bits, exact
    assert f'volume_cut_until="{cleared.volume_cut_until}"' in line
    assert raised_result.payload.clear_reason is None


def test_notify_says_resume_and_the_week_of_cut_volume(fed: Fed) -> None:
    from streamer.notify.channels import notice_env
    from streamer.notify.model import AlertNotice

    fed.days(BASELINE | CREEP | RECOVERY)
    raised, cleared = (
        AlertNotice.from_alert("ann", a.event.fields(), "redox/ann/alerts")
        for _, a in _events(fed, "rhr_creep")
    )
    until = raised.volume_cut_until
    assert until
    assert f"Pull back until {until}." in raised.body
    assert cleared.title == "ann: rhr_creep cleared: resume"
    assert cleared.body.startswith("Resume, slowly: signals back in band. rhr_creep not met")
    env = notice_env(cleared)
    assert (env["REDOX_CLEAR_REASON"], env["REDOX_VOLUME_CUT_UNTIL"]) == ("resume", until)
    assert cleared.as_json()["clear_reason"] == "resume"


def _morning_histories(
    recent_hr: list[float], recent_ln: list[float] | None = None
) -> tuple[list[float], list[float]]:
    """36 days: 28 baseline days (resting HR 50/52 bpm: median 51; lnRMSSD 4.40/4.50), then
    ``recent_hr`` (NaN: a missing morning) with lnRMSSD 4.5 unless ``recent_ln`` says."""
    base_hr = [50.0 if i % 2 else 52.0 for i in range(36 - len(recent_hr))]
    base_ln = [4.40 if i % 2 else 4.50 for i in range(len(base_hr))]
    ln = recent_ln if recent_ln is not None else [4.5] * len(recent_hr)
    return base_ln + ln, base_hr + recent_hr


NAN = float("nan")


@pytest.mark.parametrize(
    ("recent_hr", "recent_ln", "back", "run", "since_back"),
    [
        # 56.0 = median 51 + 5 bpm: the rule's own line, not in band (HR must be below it).
        ([51, 51, 51, 51, 56.0, 51, 51, 51], None, True, 3, 2),
        ([51, 51, 51, 51, 51, 56.0, 51, 51], None, False, 2, None),
        ([51, 51, 51, 51, 51, 51, 55.9, 51], None, True, 8, 7),
        # A missing morning is skipped: it neither breaks nor extends the run.
        ([51, 51, 51, 51, 56.0, 51, NAN, 51], None, False, 2, None),
        ([51, 51, 51, 56.0, 51, 51, NAN, 51], None, True, 3, 3),
        # lnRMSSD below its band's low edge breaks the run, whatever the heart rate.
        ([51] * 8, [4.5] * 6 + [4.3, 4.5], False, 1, None),
    ],
)
def test_rhr_creep_back_in_band_edges(
    recent_hr: list[float],
    recent_ln: list[float] | None,
    back: bool,
    run: int,
    since_back: int | None,
) -> None:
    from processors.rules import evaluate_morning

    ln, hr = _morning_histories(recent_hr, recent_ln)
    day = dt.date(2026, 5, 31)
    _, creep = evaluate_morning(ln, hr, day=day)
    assert creep.active is False
    assert creep.evidence["mornings_in_band"] == run
    assert creep.evidence["rhr_band_high_bpm"] == pytest.approx(56.0)
    if run < ph.RESUME_MORNINGS_IN_BAND:
        assert creep.back_in_band is False
        assert creep.in_band_since_ns is None
        assert "not yet back in band" in creep.message
        return
    assert creep.back_in_band is back
    assert since_back is not None
    since = day - dt.timedelta(days=since_back)
    assert creep.in_band_since_ns == _t(since, 0) - 30 * 60 * NS
    assert f"since {since.isoformat()}" in creep.message


def _statuses(out: list[Result]) -> list[StatusPayload]:
    return [r.payload_as(StatusPayload) for r in out if r.kind is Kind.STATUS]


def test_the_retained_status_carries_pull_back_then_resume_and_the_windows_end(
    tmp_path: Path,
) -> None:
    """The MQTT status says what `status` says: pull back since D with the week's end on
    the raise, resume since D on the clear, and a status without it once the "resume"
    window has ended — on the first reading after it, also after a restart."""
    path = tmp_path / "store.sqlite3"
    fed = Fed(Store(path))
    fed.days(BASELINE)
    raised_on = None
    for i, (hr, rmssd) in CREEP.items():
        statuses = _statuses(fed.day(i, hr, rmssd))
        if statuses:
            ((raised_on, status),) = [(i, s) for s in statuses]
    assert raised_on is not None
    assert status.state == "pull_back"
    assert status.pull_back_since == _day(raised_on).isoformat()
    assert status.volume_cut_until == (_day(raised_on) + dt.timedelta(days=7)).isoformat()
    assert (status.back_off_until, status.resume_since) == (None, None)
    for i in (28, 29, 30):
        assert _statuses(fed.day(i, *RECOVERY[i])) == []  # nothing changed: no status
    (cleared,) = _statuses(fed.day(32, *RECOVERY[32]))
    assert cleared.state == "ok"
    assert (cleared.pull_back_since, cleared.volume_cut_until) == (None, None)
    assert cleared.resume_since == _day(29).isoformat()
    # Within the window: in-band mornings publish nothing new.
    last_shown = 32 + ph.RESUME_SHOWN_DAYS
    for i in range(33, last_shown):
        assert _statuses(fed.day(i, 51.0, 86.0)) == [], i
    fed.store.close()
    # A restart inside the window; the first reading after it ends the "resume".
    again = Fed(Store(path))
    assert _statuses(again.day(last_shown, 51.0, 86.0)) == []  # the 7th day: still shown
    (ended,) = _statuses(again.day(last_shown + 1, 51.0, 86.0))
    assert (ended.state, ended.resume_since, ended.pull_back_since) == ("ok", None, None)
    assert _statuses(again.day(last_shown + 2, 51.0, 86.0)) == []
    # The JSON a subscriber decodes says the same.
    assert StatusPayload.from_fields(cleared.fields()) == cleared


# --- rhr_creep's resume asks for steady grip when the athlete grip-tests -------------------


def _grip(fed: Fed, day: int, post_kg: Sequence[tuple[float, float]]) -> list[Result]:
    """A grip test at 17:30 of ``day`` through the athlete state: three 50 kg MVC squeezes,
    then a post test per (minutes after, kg)."""
    from tests.test_hormetic_rules import _squeezes

    at = _t(_day(day), 17)
    items: list[tuple[str, object]] = [("grip", GripPhase(at, None))]
    items += list(_squeezes(at + 1, [50.0] * 3))
    for minute, kg in post_kg:
        start = at + round((minute + 1) * 60 * NS)
        items.append(("grip", GripPhase(start, minute)))
        items += list(_squeezes(start + 1, [kg]))
    items.append(("grip", GripEnd(at + round((post_kg[-1][0] + 2) * 60 * NS))))
    out: list[Result] = []
    for device, record in items:
        out += fed.state.process(device, record)
    for result in out:
        fed.store.record(result)
    return out


SPILLOVER = ((0.0, 40.0), (30.0, 40.0))  # 20% down at 0 and still at 30 min
STEADY = ((0.0, 49.5), (30.0, 50.0))


def test_a_recent_spillover_keeps_rhr_creep_open_until_a_steady_grip_test(fed: Fed) -> None:
    fed.days(BASELINE | CREEP)
    (grip,) = [r for r in _grip(fed, 27, SPILLOVER) if r.kind is Kind.GRIP]
    assert grip.payload_as(GripPayload).grip_class == "grip_spillover"
    fed.days(RECOVERY)  # three valid mornings in band by day 32: enough on their own
    assert fed.state.book.is_raised("rhr_creep")
    assert [e.event.state for _, e in _events(fed, "rhr_creep")] == ["raised"]
    steady = [r for r in _grip(fed, 32, STEADY) if r.kind is Kind.GRIP]
    assert steady[0].payload_as(GripPayload).grip_class == "normal"
    fed.day(33, 51.0, 86.0)
    (_, (cleared_day, cleared)) = _events(fed, "rhr_creep")
    event = cleared.event
    assert (cleared_day, event.clear_reason) == (33, "resume")
    # Back since the steady grip test (its result's time), not the first in-band morning.
    assert event.resume_since_ts_ns == steady[0].ts_ns
    assert event.resume_evidence["last_grip_spillover"] == 0.0
    assert "grip steady" in (event.clear_message or "")


def test_the_held_verdict_names_the_spillover(fed: Fed) -> None:
    fed.days(BASELINE | CREEP)
    _grip(fed, 27, SPILLOVER)
    fed.days({i: RECOVERY[i] for i in (28, 29, 30)})
    out = fed.day(32, *RECOVERY[32])
    assert [r for r in out if r.kind is Kind.ALERTS and "rhr_creep" in str(r.fields)] == []
    day = _day(32)
    reading = MorningReading(
        accepted=True,
        reject_reason=None,
        n_beats=0,
        duration_s=0.0,
        artifacts_pct=float("nan"),
        corrected_pct=float("nan"),
        ln_rmssd=math.log(86.0),
        rmssd_ms=86.0,
        resting_hr_bpm=51.0,
        mean_nn_ms=60_000 / 51.0,
        sdnn_ms=None,
        t_ns=_t(day),
        day=day,
    )
    verdict = fed.state.rules.morning(day, reading)
    (creep,) = [e for e in verdict.evaluations if e.rule_id == "rhr_creep"]
    assert creep.back_in_band is False
    assert f"the last grip test ({_day(27).isoformat()}) was a spillover" in creep.message
    assert creep.evidence["last_grip_spillover"] == 1.0


def test_a_spillover_older_than_a_week_does_not_hold_the_resume(fed: Fed) -> None:
    fed.days({i: v for i, v in BASELINE.items() if i < 20})
    _grip(fed, 19, SPILLOVER)  # day 19 17:00: 12.5 days before day 32's morning
    fed.days({i: v for i, v in BASELINE.items() if i >= 20} | CREEP | RECOVERY)
    (_, (cleared_day, cleared)) = _events(fed, "rhr_creep")
    assert (cleared_day, cleared.event.clear_reason) == (32, "resume")
    assert cleared.event.resume_since_ts_ns == _t(_day(29), 0) - 30 * 60 * NS
    assert "last_grip_spillover" not in cleared.event.resume_evidence


def test_steady_grip_all_along_leaves_since_at_the_first_in_band_morning(fed: Fed) -> None:
    fed.days(BASELINE | CREEP | {i: RECOVERY[i] for i in (28, 29)})
    _grip(fed, 29, STEADY)  # after the first in-band morning, but grip was never down
    fed.days({i: RECOVERY[i] for i in (30, 32)})
    (_, (cleared_day, cleared)) = _events(fed, "rhr_creep")
    assert (cleared_day, cleared.event.clear_reason) == (32, "resume")
    assert cleared.event.resume_since_ts_ns == _t(_day(29), 0) - 30 * 60 * NS
    assert cleared.event.resume_evidence["last_grip_spillover"] == 0.0


def test_an_imported_older_day_does_not_republish_an_older_view(fed: Fed) -> None:
    fed.days(BASELINE | CREEP | RECOVERY)  # rhr_creep cleared with resume on day 32
    assert _statuses(fed.day(33, 51.0, 86.0)) == []
    # Day 31 was missing; imported now, it is before the clearing: no status from the past.
    assert _statuses(fed.day(31, 51.0, 86.0)) == []
