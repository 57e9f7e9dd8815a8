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
