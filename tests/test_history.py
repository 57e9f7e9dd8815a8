"""The demo history, replayed through the real pipeline, processors and store, makes every
rule fire — and the state it leaves behind survives a restart."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from processors.rules import CATALOGUE
from streamer.app.pipeline import Pipeline
from streamer.athlete import AthleteState
from streamer.demo.history import (
    DEFAULT_DAYS,
    day_records,
    history_dates,
    replay_history,
    scenarios,
)
from streamer.store import Store

TODAY = dt.date(2025, 3, 1)
#: Every rule of docs/rules.md.
RULE_IDS = (
    "hrv_downtrend",
    "rhr_creep",
    "smo2_slow_recovery",
    "grip_signal",
    "grip_spillover",
    "rpe_power_mismatch",
    "hr_grip_flat",
    "power_plateau",
    "gsh_gssg_low",
    "droms_rise",
    "lipid_dipstick_positive",
)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default history (2 athletes, 28 days) replayed once into a store file."""
    import asyncio

    path = tmp_path_factory.mktemp("history") / "store.sqlite3"

    async def run() -> None:
        with Store(path) as store:
            plans = scenarios(2, DEFAULT_DAYS)
            pipeline = Pipeline(
                lambda a: AthleteState(a, store, live=False, hrv_every_s=60.0), store
            )
            task = asyncio.create_task(pipeline.run())
            await replay_history(pipeline.put, plans, history_dates(DEFAULT_DAYS, TODAY))
            await pipeline.join()
            pipeline.stop()
            await task

    asyncio.run(run())
    return path


def test_every_rule_fires_over_the_default_history(replayed: Path) -> None:
    with Store(replayed) as store:
        raised = {a.rule for a in store.alerts() if a.state == "raised"}
        grip_classes = {
            g.data["class"] for a in ("athlete1", "athlete2") for g in store.grip_tests(a)
        }
    # Info rules are findings in their result, never alerts; every other rule raises one.
    assert raised == {r for r in RULE_IDS if CATALOGUE[r].severity.raises_alerts}
    assert "grip_signal" in grip_classes


def test_over_reaching_athlete_ends_with_every_pull_back_alert_open(replayed: Path) -> None:
    with Store(replayed) as store:
        state = AthleteState("athlete1", store)
    open_rules = {a.rule_id for a in state.book.open_alerts()}
    assert open_rules == {
        "hrv_downtrend",
        "rhr_creep",
        "smo2_slow_recovery",
        "rpe_power_mismatch",
        "grip_spillover",
        "hr_grip_flat",
        "gsh_gssg_low",
        "droms_rise",
        "lipid_dipstick_positive",
    }


def test_steady_athlete_raises_no_alert_and_its_good_grip_drop_is_reported_as_such(
    replayed: Path,
) -> None:
    with Store(replayed) as store:
        events = [(a.rule, a.state) for a in store.alerts("athlete2")]
        classes = [g.data["class"] for g in store.grip_tests("athlete2")]
    assert events == []
    assert "grip_signal" in classes


def test_steady_power_at_steady_effort_is_reported_as_a_power_plateau_finding(
    replayed: Path,
) -> None:
    # athlete2 trains every other day at RPE ~5 and the same power for weeks: a plateau,
    # once three weeks of sessions are stored; a finding in the session summary only.
    with Store(replayed) as store:
        found = [s.payload.power_plateau for s in store.sessions("athlete2")]
    assert found[0] is None
    assert found[-1] is True


def test_the_ectopic_morning_is_rejected_with_its_reason_not_stored_as_a_number(
    replayed: Path,
) -> None:
    with Store(replayed) as store:
        mornings = store.morning_history("athlete1")
    assert len(mornings) == DEFAULT_DAYS
    rejected = [m for m in mornings if m.data["accepted"] is False]
    assert [m.date for m in rejected] == [history_dates(DEFAULT_DAYS, TODAY)[4].isoformat()]
    assert rejected[0].data["ln_rmssd"] is None
    assert "ectopic" in str(rejected[0].data["reject_reason"])


def test_restarted_state_continues_with_the_same_baselines_and_alerts(
    replayed: Path, tmp_path: Path
) -> None:
    """A fresh AthleteState on the store reloads histories and the alert book: replaying
    the last day again produces the same morning numbers and no second raise."""
    copy = tmp_path / "copy.sqlite3"
    shutil.copy(replayed, copy)  # the module's store stays as the replay left it
    with Store(copy) as store:
        before = store.morning_history("athlete1")[-1].data
        state = AthleteState("athlete1", store, live=False, hrv_every_s=60.0)
        assert {a.rule_id for a in state.book.open_alerts()} >= {"rhr_creep", "hrv_downtrend"}
        plan = scenarios(2, DEFAULT_DAYS)[0]
        last_day = history_dates(DEFAULT_DAYS, TODAY)[-1]
        out = []
        for device, record in day_records(plan, plan.days[-1], last_day):
            out.extend(state.process(device, record))
    morning = next(r for r in out if r.kind.value == "morning")
    for key in (
        "ln_rmssd",
        "ln_rmssd_baseline_mean",
        "ln_rmssd_band_low",
        "rhr_baseline_median_bpm",
    ):
        assert morning.fields[key] == pytest.approx(before[key])
    assert not [r for r in out if r.kind.value == "alerts"]  # already open: not re-raised


def test_scenarios_need_at_least_one_athlete_and_day() -> None:
    with pytest.raises(ValueError, match="at least one athlete"):
        scenarios(0)
    with pytest.raises(ValueError, match="at least one day"):
        scenarios(1, 0)
