"""`redox-streamer export csv`: the store's mornings and sessions as a spreadsheet reads them."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest

from streamer.cli import main
from streamer.store import Store
from tests.test_import_history import DAY0, write_elite_hrv_exports


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def filled_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    files = write_elite_hrv_exports(tmp_path / "export", 6)
    bad = tmp_path / "export" / f"{(DAY0 + dt.timedelta(days=6)).isoformat()} 06-30-00.txt"
    bad.write_text("1000\n" * 10)  # far too short: rejected by the gate
    store = tmp_path / "store.sqlite3"
    args = ["import", "rr", "--athlete", "ann", "--store", str(store)]
    assert main([*args, *map(str, files), str(bad)]) == 0
    capsys.readouterr()
    return store


def test_daily_rows_match_the_store_and_hide_a_rejected_readings_numbers(
    filled_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "csv", "--athlete", "ann", "--store", str(filled_store)]) == 0
    rows = _csv(capsys.readouterr().out)
    with Store(filled_store, read_only=True) as s:
        stored = s.morning_history("ann")
    assert [r["date"] for r in rows] == [m.date for m in stored]
    for row, m in zip(rows, stored, strict=True):
        if m.data["accepted"]:
            assert float(row["hrv"]) == pytest.approx(m.data["rmssd_ms"])
            assert float(row["restingHR"]) == pytest.approx(m.data["resting_hr_bpm"])
            assert row["accepted"] == "true"
        else:
            assert row["accepted"] == "false"
            assert row["hrv"] == row["restingHR"] == row["lnRMSSD"] == ""
            assert row["reject_reason"]
    # Day 4 onward has a provisional baseline (three valid days before it).
    assert [r["baseline_status"] for r in rows[:5]] == ["none"] * 3 + ["provisional"] * 2


def test_intervals_gets_its_three_wellness_columns_and_a_date_range(
    filled_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "wellness.csv"
    args = ["export", "csv", "--athlete", "ann", "--store", str(filled_store), "--intervals"]
    second, third = DAY0 + dt.timedelta(days=1), DAY0 + dt.timedelta(days=2)
    assert main([*args, "--from", str(second), "--to", str(third), "--out", str(out)]) == 0
    assert "2 daily rows of ann" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert lines[0] == "date,restingHR,hrv"
    assert [line.split(",")[0] for line in lines[1:]] == [str(second), str(third)]


def test_sessions_export_their_span_and_numbers(
    tmp_path: Path, recordings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store.sqlite3"
    walk = recordings / "fit" / "garmin-fenix-5-walk.fit"
    argv = ["import", "fit", "--athlete", "ann", "--rpe", "4", "--store", str(store), str(walk)]
    assert main(argv) == 0
    capsys.readouterr()
    argv = ["export", "csv", "--athlete", "ann", "--what", "sessions", "--store", str(store)]
    assert main(argv) == 0
    (row,) = _csv(capsys.readouterr().out)
    assert row["start_utc"].startswith("2017-06-11T14:32:5")
    assert float(row["duration_s"]) > 45
    assert row["rpe"] == "4.0"
    # One walk with RPE: too few sessions for the plateau; no HR zones configured.
    assert (row["power_plateau"], row["power_change_pct"], row["hr_zone3_s"]) == ("", "", "")


def test_a_missing_store_or_a_reversed_range_is_one_line_that_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.sqlite3"
    assert main(["export", "csv", "--athlete", "ann", "--store", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err
    assert "import" in err
    assert err.count("\n") == 1
    argv = ["export", "csv", "--athlete", "ann", "--from", "2026-02-01", "--to", "2026-01-01"]
    assert main([*argv, "--store", str(missing)]) == 2
    assert "swap them" in capsys.readouterr().err


def test_labs_export_each_entry_with_its_timing_value_and_band(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_lab_markers import POST, droms, gsh, process, stick

    path = tmp_path / "store.sqlite3"
    with Store(path) as store:
        process(store, [gsh(0, 95.0), gsh(0.1, 60.0, POST), droms(1, 300.0), stick(2, True)])
    argv = ["export", "csv", "--athlete", "ann", "--what", "labs", "--store", str(path)]
    assert main(argv) == 0
    rows = _csv(capsys.readouterr().out)
    assert [(r["marker"], r["timing"], r["band"]) for r in rows] == [
        ("gsh_gssg", "fasted", "leaning_oxidative"),
        ("gsh_gssg", "post-45min", "post_session"),
        ("droms", "fasted", "no_baseline"),
        ("lipid_dipstick", "", "positive"),
    ]
    assert rows[0]["taken_utc"] == "2026-11-02T07:00:00+00:00"
    assert (rows[0]["gsh_gssg_ratio"], rows[0]["droms_carr_u"]) == ("95.0", "")
    assert [r["judged"] for r in rows[:2]] == ["true", "false"]
    # The post-session draw is set against the same day's resting one: 60 vs 95.
    assert float(rows[1]["change_pct"]) == pytest.approx(100 * (60 - 95) / 95, abs=0.1)
    assert rows[2]["droms_carr_u"] == "300.0"
    assert rows[3]["positive"] == "true"
    # --from/--to select by the day the sample was taken.
    argv += ["--from", "2026-11-03", "--to", "2026-11-03"]
    assert main(argv) == 0
    assert [r["marker"] for r in _csv(capsys.readouterr().out)] == ["droms"]


def test_session_columns_keep_their_order_and_add_zone3_and_the_plateau() -> None:
    from streamer.commands.export import SESSION_COLUMNS

    names = [name for name, _ in SESSION_COLUMNS]
    # The columns a spreadsheet already reads stay where they were; new ones come after.
    assert names[:10] == [
        "start_utc",
        "end_utc",
        "duration_s",
        "rpe",
        "mean_power_w",
        "n_efforts",
        "n_recovered",
        "recovery_s",
        "recovery_is_lower_bound",
        "device",
    ]
    assert names[10:] == ["hr_zone3_s", "power_plateau", "power_change_pct"]
