"""A provisional baseline from day 4, honest about itself, and never a source of alerts."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest

from devices.emulated.rr_model import RestingAthlete, resting_rr
from processors import physiology as ph
from processors.trends import daily_trend, sd_upper_limit
from streamer.athlete import AthleteState, MorningEnd, MorningStart
from streamer.cli import main
from streamer.importing.feed import strap_notifications
from streamer.results import Kind, Result
from streamer.store import Store

NAN = math.nan


def test_fewer_than_three_valid_days_give_no_baseline() -> None:
    trend = daily_trend([4.2, NAN, 4.3, 4.25], "ln_rmssd")
    assert trend.baseline_status == "none"
    assert trend.baseline_mean is None
    assert trend.band_low is None
    assert trend.baseline_days == 0


def test_three_valid_days_give_a_provisional_band_widened_to_the_sds_upper_limit() -> None:
    days = [4.20, 4.40, 4.30]
    trend = daily_trend([*days, 4.1], "ln_rmssd")
    assert trend.baseline_status == "provisional"
    assert trend.baseline_days == 3
    s = float(np.std(days, ddof=1))
    # chi-square with 2 degrees of freedom: its 10% quantile is −2·ln(0.9) in closed form.
    upper = s * math.sqrt(2 / (-2 * math.log(0.9)))
    assert sd_upper_limit(s, 3, 0.90) == pytest.approx(upper, rel=1e-12)
    assert trend.band_low == pytest.approx(np.mean(days) - ph.NORMAL_BAND_SD * upper)
    assert trend.band_high == pytest.approx(np.mean(days) + ph.NORMAL_BAND_SD * upper)
    assert trend.in_band is (trend.band_low <= 4.1 <= trend.band_high)


def test_the_provisional_band_narrows_as_days_come_and_is_replaced_at_fourteen() -> None:
    rng = np.random.default_rng(1)
    values = list(4.3 + 0.15 * rng.standard_normal(40))
    widths = []
    statuses = []
    for d in range(1, len(values) + 1):
        t = daily_trend(values[:d], "ln_rmssd")
        statuses.append(t.baseline_status)
        if t.band_low is not None and t.band_high is not None:
            widths.append((t.baseline_status, t.band_high - t.band_low, t.baseline_sd))
    assert statuses[:3] == ["none"] * 3
    assert statuses[3] == "provisional"  # day 4: three valid days before it
    # Established once 14 valid days lie in d−35 … d−8: day 22.
    assert statuses.index("established") == 21
    for status, width, sd in widths:
        assert sd is not None
        if status == "established":
            assert width == pytest.approx(2 * ph.NORMAL_BAND_SD * sd)
        else:
            assert width > 2 * ph.NORMAL_BAND_SD * sd


def _reading_records(
    state: AthleteState, day: dt.date, rr: np.ndarray, t_hour: int = 6
) -> list[Result]:
    start = int(dt.datetime.combine(day, dt.time(t_hour), tzinfo=dt.UTC).timestamp()) * 10**9
    out = state.process("strap", MorningStart(start))
    for sample in strap_notifications(start, [float(x) for x in rr]):
        out += state.process("strap", sample)
    end = start + int(np.sum(rr) * 1e6) + 1
    return out + state.process("strap", MorningEnd(end))


def test_no_pull_back_alert_comes_from_a_provisional_baseline(tmp_path: Path) -> None:
    """Ten good mornings, then five crashing ones: with an established baseline this is an
    hrv_downtrend; with a provisional one the payload says the alert waits."""
    store = Store(tmp_path / "s.sqlite3")
    state = AthleteState("ann", store)
    day0 = dt.date(2026, 10, 1)
    mornings: list[Result] = []
    alerts: list[Result] = []
    for d in range(15):
        calm = d < 10
        athlete = RestingAthlete(hr_bpm=48 if calm else 60, rsa_ms=300 if calm else 60)
        out = _reading_records(state, day0 + dt.timedelta(days=d), resting_rr(athlete, 400, d))
        mornings += [r for r in out if r.kind is Kind.MORNING]
        alerts += [r for r in out if r.kind is Kind.ALERTS]
    assert [m.fields["baseline_status"] for m in mornings[:4]] == ["none"] * 3 + ["provisional"]
    last = mornings[-1].fields
    assert last["accepted"] is True
    assert last["baseline_status"] == "provisional"
    assert isinstance(last["ln_rmssd"], float)
    assert isinstance(last["ln_rmssd_band_low"], float)
    assert last["ln_rmssd"] < last["ln_rmssd_band_low"]  # visibly low against the band ...
    assert "no pull-back alert until 14" in str(last["baseline_note"])
    raised = [a for a in alerts if json.dumps(dict(a.fields)).find('"raised"') >= 0]
    assert raised == []  # ... and yet no alert raised
    store.close()


@pytest.mark.slow
def test_twenty_one_imported_days_make_the_first_live_morning_established(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Import 21 mornings up to yesterday (14 of them in the window d−35 … d−8), then a live
    morning on an emulated strap: its baseline is established on the athlete's first day."""
    today = dt.datetime.now(dt.UTC).date()
    folder = tmp_path / "export"
    folder.mkdir()
    files = []
    for back in range(21, 0, -1):
        day = today - dt.timedelta(days=back)
        path = folder / f"{day.isoformat()}.txt"
        rr = resting_rr(RestingAthlete(hr_bpm=58, rsa_ms=220), 400, seed=back)
        path.write_text("\n".join(f"{x:.0f}" for x in rr))
        files.append(str(path))
    store = tmp_path / "store.sqlite3"
    assert main(["import", "rr", "--athlete", "ann", "--store", str(store), *files]) == 0
    capsys.readouterr()
    status = main(
        ["morning", "--emulated", "--speed", "60", "--athlete", "ann", "--store", str(store)]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "normal band" in out
    with Store(store) as s:
        rows = s.morning_history("ann")
    assert len(rows) == 22
    live = rows[-1].data
    assert live["date"] == today.isoformat()
    assert live["baseline_status"] == "established"
    assert live["baseline_days"] == 14
