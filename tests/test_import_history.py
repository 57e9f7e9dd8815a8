"""`redox-streamer import rr|fit`: history from files through the live path, once.

Truth is never our own output: readings come from the resting-athlete model
(``devices.emulated.rr_model``) whose RMSSD is computed here from the series itself; the
FIT files are real Garmin files (tests/data/fit) or written by Garmin's own encoder.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest

from devices.emulated.rr_model import Event, RestingAthlete, inject, resting_rr
from devices.emulated.signals import EffortSchedule, SmO2Parameters, smo2_series
from streamer.cli import main
from streamer.store import Store
from tests.fit_writer import write_activity
from tests.servers import InfluxDB1, Mosquitto

DAY0 = dt.date(2026, 10, 1)
ATHLETE = RestingAthlete(hr_bpm=48, rsa_ms=300, breaths_per_min=6)


def reading(seed: int, duration_s: float = 400.0) -> np.ndarray:
    return np.asarray(resting_rr(ATHLETE, duration_s, seed=seed))


def write_elite_hrv_exports(folder: Path, days: int) -> list[Path]:
    """One reading per day, one interval (ms) per line, named as Elite HRV names them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in range(days):
        day = DAY0 + dt.timedelta(days=d)
        path = folder / f"{day.isoformat()} 06-30-00.txt"
        path.write_text("\n".join(f"{x:.0f}" for x in reading(d)) + "\n")
        paths.append(path)
    return paths


def import_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    status = main(["import", *argv, "--json"])
    out = capsys.readouterr()
    assert status == 0, out.err
    summary: dict[str, object] = json.loads(out.out)
    return summary


def test_rr_files_import_once_and_a_second_import_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = write_elite_hrv_exports(tmp_path / "export", 20)
    store = tmp_path / "store.sqlite3"
    # Given in reverse: readings are still fed oldest first (the trends depend on it).
    args = ["rr", "--athlete", "ann", "--store", str(store), *map(str, reversed(files))]
    first = import_json(capsys, *args)
    assert (first["accepted"], first["rejected"], first["duplicate"]) == (20, 0, 0)
    with Store(store) as s:
        rows = s.morning_history("ann")
        seq_before = s.query("SELECT topic, last FROM seq ORDER BY topic")
        queued_before = s.query("SELECT count(*) FROM outbox_mqtt")
    assert [r.date for r in rows] == [(DAY0 + dt.timedelta(days=d)).isoformat() for d in range(20)]
    for d, row in enumerate(rows):
        # Morning readings are filed at their own times (06:30 local on their day).
        assert row.data["accepted"] is True
        truth = reading(d)
        assert 40 <= float(row.data["resting_hr_bpm"]) <= 56  # type: ignore[arg-type]
        assert float(row.data["n_beats"]) > 0.9 * 300 / (np.mean(truth) / 1000)  # type: ignore[arg-type]

    second = import_json(capsys, *args)
    assert (second["accepted"], second["rejected"], second["duplicate"]) == (0, 0, 20)
    with Store(store) as s:
        assert len(s.morning_history("ann")) == 20
        assert s.query("SELECT topic, last FROM seq ORDER BY topic") == seq_before
        assert s.query("SELECT count(*) FROM outbox_mqtt") == queued_before


def test_the_reading_is_the_one_in_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RMSSD of the analysed span (after the first 60 s, 5 minutes) as numpy computes it."""
    (path,) = write_elite_hrv_exports(tmp_path / "export", 1)
    store = tmp_path / "store.sqlite3"
    import_json(capsys, "rr", "--athlete", "ann", "--store", str(store), str(path))
    rr = np.loadtxt(path)
    ends = np.cumsum(rr)
    span = rr[(ends > 60_000) & (ends <= 360_000)]
    truth = float(np.sqrt(np.mean(np.diff(span) ** 2)))
    with Store(store) as s:
        (row,) = s.morning_history("ann")
    assert float(row.data["rmssd_ms"]) == pytest.approx(truth, rel=0.01)  # type: ignore[arg-type]


def test_timestamped_csv_exports_take_their_date_from_the_first_beat(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rr = reading(3)
    t = dt.datetime(2026, 11, 3, 6, 45, 12)
    polar, hrv_logger = tmp_path / "polar_rr.txt", tmp_path / "hrvlogger_RR.csv"
    rows_polar, rows_logger, since = [], [], 0.0
    for value in rr:
        since += value
        stamp = t + dt.timedelta(milliseconds=since)
        rows_polar.append(f"{stamp.isoformat(timespec='milliseconds')};{value:.0f}")
        rows_logger.append(
            f"{stamp.isoformat(sep=' ', timespec='milliseconds')},{value:.0f},{since:.0f}"
        )
    polar.write_text("Phone timestamp;RR-interval [ms]\n" + "\n".join(rows_polar) + "\n")
    hrv_logger.write_text("date,rr,since start\n" + "\n".join(rows_logger) + "\n")
    for path, athlete in ((polar, "pol"), (hrv_logger, "log")):
        summary = import_json(
            capsys,
            "rr",
            "--athlete",
            athlete,
            "--tz",
            "UTC",
            "--store",
            str(tmp_path / "store.sqlite3"),
            str(path),
        )
        assert summary["recordings"] == [
            {"file": str(path), "date": "2026-11-03", "outcome": "accepted", "reason": None}
        ]


def test_times_without_a_zone_are_wall_clock_time_in_the_zone_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """06:30 on 3 November in Auckland (UTC+13) is 2 November UTC: filed as live would."""
    path = tmp_path / "2026-11-03 06-30-00.txt"
    path.write_text("\n".join(f"{x:.0f}" for x in reading(1)))
    summary = import_json(
        capsys,
        "rr",
        "--athlete",
        "ann",
        "--tz",
        "Pacific/Auckland",
        "--store",
        str(tmp_path / "s.sqlite3"),
        str(path),
    )
    assert summary["recordings"][0]["date"] == "2026-11-02"  # type: ignore[index]


def test_a_reading_with_many_ectopic_beats_is_rejected_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = reading(7)
    bad = inject(clean, Event.PVC, burden=0.15, seed=7).rr_ms
    path = tmp_path / "2026-11-04 06-30-00.txt"
    path.write_text("\n".join(f"{x:.0f}" for x in bad))
    summary = import_json(
        capsys, "rr", "--athlete", "ann", "--store", str(tmp_path / "s.sqlite3"), str(path)
    )
    (outcome,) = summary["recordings"]  # type: ignore[misc]
    assert outcome["outcome"] == "rejected"
    assert "abnormal" in outcome["reason"] or "beats" in outcome["reason"]


def test_a_file_without_a_date_stops_the_import_before_anything_is_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_elite_hrv_exports(tmp_path / "export", 2)
    undated = tmp_path / "reading.txt"
    undated.write_text("\n".join(f"{x:.0f}" for x in reading(5)))
    store = tmp_path / "store.sqlite3"
    status = main(
        ["import", "rr", "--athlete", "ann", "--store", str(store), *map(str, good), str(undated)]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1
    assert str(undated) in err
    assert "--date" in err
    assert not store.exists() or Store(store).morning_history("ann") == []


def test_a_garbage_line_names_the_file_and_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "2026-11-05 06-30-00.txt"
    path.write_text("1000\n1010\nhello\n990\n")
    status = main(["import", "rr", "--athlete", "ann", "--store", str(tmp_path / "s"), str(path)])
    err = capsys.readouterr().err
    assert status == 2
    assert "line 3" in err
    assert str(path) in err
    assert err.count("\n") == 1


def test_real_garmin_fit_files_import_as_sessions_once(
    tmp_path: Path, recordings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    walk, ride = (
        recordings / "fit" / "garmin-fenix-5-walk.fit",
        recordings / "fit" / "garmin-edge-820-bike.fit",
    )
    store = tmp_path / "store.sqlite3"
    args = ["fit", "--athlete", "ann", "--rpe", "3", "--store", str(store), str(walk), str(ride)]
    first = import_json(capsys, *args)
    assert (first["accepted"], first["duplicate"]) == (2, 0)
    with Store(store) as s:
        sessions = s.sessions("ann")
    assert len(sessions) == 2
    # The fēnix walk started 2017-06-11 14:32:51 UTC and lasted 45.379 s by its timer;
    # its 62 RR intervals add up to 49.6 s, so the session ends with its last beat.
    walk_start = dt.datetime(2017, 6, 11, 14, 32, 51, tzinfo=dt.UTC).timestamp()
    assert any(45.379 <= r.ts_ns / 1e9 - walk_start <= 49.6 for r in sessions)
    assert all(r.data["rpe"] == 3 for r in sessions)
    second = import_json(capsys, *args)
    assert (second["accepted"], second["duplicate"]) == (0, 2)


def test_a_short_fit_activity_as_a_morning_is_rejected_as_too_short(
    tmp_path: Path, recordings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    walk = recordings / "fit" / "garmin-fenix-5-walk.fit"
    summary = import_json(
        capsys,
        "fit",
        "--as",
        "morning",
        "--athlete",
        "ann",
        "--store",
        str(tmp_path / "s"),
        str(walk),
    )
    (outcome,) = summary["recordings"]  # type: ignore[misc]
    assert outcome["outcome"] == "rejected"
    assert outcome["date"] == "2017-06-11"


def test_fit_hrv_messages_become_the_morning_reading_they_hold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rr = reading(11, duration_s=380)
    start = dt.datetime(2026, 11, 6, 6, 15, tzinfo=dt.UTC)
    path = write_activity(
        tmp_path / "hrv.fit", start, rr_s=[x / 1000 for x in rr], sport="training"
    )
    store = tmp_path / "store.sqlite3"
    summary = import_json(
        capsys, "fit", "--as", "morning", "--athlete", "ann", "--store", str(store), str(path)
    )
    assert summary["accepted"] == 1
    ends = np.cumsum(np.round(rr))  # the FIT hrv field holds ms resolution
    span = np.round(rr)[(ends > 60_000) & (ends <= 360_000)]
    truth = float(np.sqrt(np.mean(np.diff(span) ** 2)))
    with Store(store) as s:
        (row,) = s.morning_history("ann")
    assert row.date == "2026-11-06"
    assert float(row.data["rmssd_ms"]) == pytest.approx(truth, rel=0.01)  # type: ignore[arg-type]


def test_moxy_developer_fields_in_a_fit_file_become_a_session_with_its_efforts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    schedule = EffortSchedule(first_s=60.0, work_s=60.0, rest_s=240.0, count=3)
    t, smo2, thb = smo2_series(1000.0, schedule, SmO2Parameters(recovery_tau_s=30.0), 2.0, 3)
    records: list[dict[str, object]] = [
        {"t_s": float(ts), "heart_rate": 120, "power": 250 if schedule.is_effort(ts) else 100}
        for ts in t
    ]
    start = dt.datetime(2026, 11, 7, 17, 0, tzinfo=dt.UTC)
    path = write_activity(
        tmp_path / "moxy.fit", start, records=records, smo2=list(zip(smo2, thb, strict=True))
    )
    store = tmp_path / "store.sqlite3"
    assert (
        import_json(capsys, "fit", "--athlete", "ann", "--store", str(store), str(path))["accepted"]
        == 1
    )
    with Store(store) as s:
        (session,) = s.sessions("ann")
    assert session.data["n_efforts"] == 3
    assert session.data["mean_power_w"] == pytest.approx(
        float(np.mean([r["power"] for r in records])), rel=0.05
    )  # type: ignore[arg-type]


def test_a_damaged_or_foreign_fit_file_is_refused_naming_it(
    tmp_path: Path, recordings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = (recordings / "fit" / "garmin-fenix-5-walk.fit").read_bytes()
    cut = tmp_path / "cut.fit"
    cut.write_bytes(whole[: len(whole) // 2])
    text = tmp_path / "notes.fit"
    text.write_text("not a fit file at all\n")
    store = tmp_path / "store.sqlite3"
    for path, says in ((cut, "damaged"), (text, "not a FIT file")):
        status = main(["import", "fit", "--athlete", "ann", "--store", str(store), str(path)])
        err = capsys.readouterr().err
        assert status == 2
        assert str(path) in err
        assert says in err
        assert err.count("\n") == 1
    assert not store.exists() or Store(store).sessions("ann") == []


@pytest.mark.integration
def test_imported_mornings_reach_mqtt_and_influxdb_with_their_own_times(
    tmp_path: Path,
    mosquitto: Mosquitto,
    influxdb1: InfluxDB1,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.mqtt_helpers import ThreadSubscriber

    files = write_elite_hrv_exports(tmp_path / "export", 20)
    config = tmp_path / "redox.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "store.sqlite3"}"\n'
        f'[mqtt]\nurl = "{mosquitto.url}"\n'
        f'[influx]\nurl = "{influxdb1.url}"\ndb = "redox"\ncreate_database = true\n'
        '[[athletes]]\nid = "ann"\nname = "Ann"\n'
    )
    sub = ThreadSubscriber(mosquitto.port)
    try:
        sub.sync()
        summary = import_json(
            capsys,
            "rr",
            "--athlete",
            "ann",
            "--config",
            str(config),
            "--tz",
            "UTC",
            *map(str, files),
        )
        assert summary["accepted"] == 20
        sub.wait_for(lambda: len(sub.payloads("redox/ann/morning")) >= 20, "20 morning messages")
        mornings = [json.loads(p) for p in sub.payloads("redox/ann/morning")]
    finally:
        sub.close()
    assert sorted(m["date"] for m in mornings) == [
        (DAY0 + dt.timedelta(days=d)).isoformat() for d in range(20)
    ]
    for m in mornings:  # the reading's own time: the end of its recording that morning
        assert m["time"].startswith(m["date"] + "T06:3")
    result = influxdb1.query("SELECT ln_rmssd FROM morning WHERE athlete = 'ann'", "redox")
    (series,) = result["results"][0]["series"]  # type: ignore[index]
    days = sorted(
        {
            dt.datetime.fromtimestamp(row[0] / 1e9, tz=dt.UTC).date().isoformat()
            for row in series["values"]
        }
    )
    assert days == [(DAY0 + dt.timedelta(days=d)).isoformat() for d in range(20)]
    assert all(math.isfinite(row[1]) for row in series["values"])


def write_hrv4training(path: Path, days: int, *, missing: int | None = None) -> list[float]:
    """An HRV4Training-style export (its column names, '-' for no value): rMSSD per day."""
    rng = np.random.default_rng(4)
    rmssd = [float(np.exp(4.3 + 0.12 * rng.standard_normal())) for _ in range(days)]
    lines = ["date,HR,AVNN,SDNN,rMSSD,pNN50,LF,HF,HRV4T_Recovery_Points,trainingRPE"]
    for d, value in enumerate(rmssd):
        day = DAY0 + dt.timedelta(days=d)
        shown = "-" if d == missing else f"{value:.1f}"
        lines.append(f"{day.isoformat()},{50 + d % 3},1200,80,{shown},40,900,1500,8.1,5")
    path.write_text("\n".join(lines) + "\n")
    return rmssd


def test_hrv4training_days_are_pooled_as_labelled_mornings_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "MyMeasurements.csv"
    rmssd = write_hrv4training(export, 10, missing=4)
    store = tmp_path / "store.sqlite3"
    args = ["csv", "--format", "hrv4training", "--athlete", "ann", "--store", str(store)]
    first = import_json(capsys, *args, str(export))
    assert (first["accepted"], first["rejected"], first["duplicate"]) == (9, 1, 0)
    with Store(store) as s:
        rows = s.morning_history("ann")
    assert len(rows) == 9
    for row in rows:
        d = (dt.date.fromisoformat(str(row.date)) - DAY0).days
        assert row.data["source"] == "hrv4training"
        assert float(row.data["rmssd_ms"]) == pytest.approx(round(rmssd[d], 1))  # type: ignore[arg-type]
        assert float(row.data["ln_rmssd"]) == pytest.approx(math.log(round(rmssd[d], 1)))  # type: ignore[arg-type]
        assert row.data["resting_hr_bpm"] == 50 + d % 3
    # From the fourth valid day a provisional baseline rests on them.
    assert rows[3].data["baseline_status"] == "provisional"
    second = import_json(capsys, *args, str(export))
    assert (second["accepted"], second["duplicate"]) == (0, 9)


def test_a_day_with_another_apps_value_keeps_it_and_an_rr_reading_of_that_day_is_a_duplicate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "MyMeasurements.csv"
    write_hrv4training(export, 2)
    store = tmp_path / "store.sqlite3"
    import_json(
        capsys,
        "csv",
        "--format",
        "hrv4training",
        "--athlete",
        "ann",
        "--store",
        str(store),
        str(export),
    )
    files = write_elite_hrv_exports(tmp_path / "rr", 3)
    summary = import_json(capsys, "rr", "--athlete", "ann", "--store", str(store), *map(str, files))
    assert (summary["accepted"], summary["duplicate"]) == (1, 2)


def test_a_csv_that_is_not_an_hrv4training_export_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.csv"
    other.write_text("day,score\n2026-10-01,71\n")
    store = tmp_path / "s.sqlite3"
    status = main(
        [
            "import",
            "csv",
            "--format",
            "hrv4training",
            "--athlete",
            "ann",
            "--store",
            str(store),
            str(other),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert str(other) in err
    assert "rMSSD" in err
    assert err.count("\n") == 1


ELITE = Path(__file__).parent / "data" / "elitehrv"


def elite_rows(name: str) -> list[dict[str, str]]:
    """The fixture's rows as its own CSV says them (the truth the import is held to)."""
    with (ELITE / name).open(newline="") as f:
        return list(csv.DictReader(f))


def import_elite(
    capsys: pytest.CaptureFixture[str], store: Path, *files: Path, member: str | None = None
) -> dict[str, object]:
    extra = ["--member", member] if member is not None else []
    return import_json(
        capsys,
        "csv",
        "--format",
        "elitehrv",
        "--athlete",
        "ann",
        "--store",
        str(store),
        *extra,
        *map(str, files),
    )


def test_elitehrv_morning_readiness_rmssd_and_hr_are_pooled_once_and_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = ELITE / "readiness_export.csv"
    store = tmp_path / "store.sqlite3"
    first = import_elite(capsys, store, export)
    # 18 rows: 14 pooled; two 'open' readings (one on a day with no other reading) and the
    # score-only row rejected; a day's later second Morning Readiness reading a duplicate.
    assert (first["accepted"], first["rejected"], first["duplicate"]) == (14, 3, 1)
    reasons = {
        r["date"]: r["reason"]
        for r in first["recordings"]  # type: ignore[attr-defined]
        if r["outcome"] != "accepted"
    }
    assert "'open' reading" in reasons["2026-10-03"]
    assert "'open' reading" in reasons["2026-10-10"]
    assert "HRV score" in reasons["2026-10-07"]
    assert "2026-10-05 is stored" in reasons["2026-10-05"]
    # The truth: each day's earliest Morning Readiness row with an Rmssd, as the file says.
    truth: dict[str, dict[str, str]] = {}
    for row in sorted(elite_rows(export.name), key=lambda r: r["Datetime"]):
        if row["Type"] == "readiness" and row["Rmssd"]:
            truth.setdefault(row["Date"], row)
    with Store(store) as s:
        rows = s.morning_history("ann")
    assert [r.date for r in rows] == sorted(truth)
    for row in rows:
        src = truth[str(row.date)]
        assert row.data["source"] == "elitehrv"
        assert float(row.data["rmssd_ms"]) == pytest.approx(float(src["Rmssd"]))  # type: ignore[arg-type]
        # Rmssd, never the HRV score (a scaled lnRMSSD, ~68 here against ~85 ms).
        assert float(row.data["rmssd_ms"]) != pytest.approx(float(src["HRV"]))  # type: ignore[arg-type]
        assert float(row.data["ln_rmssd"]) == pytest.approx(float(src["lnRmssd"]), abs=1e-4)  # type: ignore[arg-type]
        assert float(row.data["resting_hr_bpm"]) == pytest.approx(float(src["HR"]))  # type: ignore[arg-type]
    assert rows[3].data["baseline_status"] == "provisional"
    with Store(store) as s:
        queued = s.query("SELECT count(*) FROM outbox_mqtt")
    second = import_elite(capsys, store, export)
    assert (second["accepted"], second["rejected"], second["duplicate"]) == (0, 3, 15)
    with Store(store) as s:
        assert len(s.morning_history("ann")) == 14
        assert s.query("SELECT count(*) FROM outbox_mqtt") == queued


def test_elitehrv_rows_of_other_reading_types_leave_the_baseline_as_it_would_be_without_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same export without its 'open' readings and its score-only row: every day's
    # baseline must come out identical, so none reached it (one 'open' reading is the only
    # reading of its day, so nothing but its type keeps it out).
    export = ELITE / "readiness_export.csv"
    lines = export.read_text().splitlines()
    kept = [
        line
        for line in lines
        if ",open," not in line and not line.startswith("Sample Athlete,2026-10-07,")
    ]
    assert len(kept) == len(lines) - 3
    only_morning = tmp_path / "only_morning.csv"
    only_morning.write_text("\n".join(kept) + "\n")
    import_elite(capsys, tmp_path / "a.sqlite3", export)
    import_elite(capsys, tmp_path / "b.sqlite3", only_morning)
    fields = ("ln_rmssd_baseline_mean", "ln_rmssd_baseline_sd", "baseline_days", "baseline_status")
    with Store(tmp_path / "a.sqlite3") as a, Store(tmp_path / "b.sqlite3") as b:
        with_others = [(r.date, [r.data[f] for f in fields]) for r in a.morning_history("ann")]
        without = [(r.date, [r.data[f] for f in fields]) for r in b.morning_history("ann")]
    assert with_others == without
    assert with_others[-1][1][0] is not None  # a baseline exists to compare


def test_an_elitehrv_team_export_needs_a_member_and_imports_only_that_members_readings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = ELITE / "team_export.csv"
    store = tmp_path / "store.sqlite3"
    argv = ["import", "csv", "--format", "elitehrv", "--athlete", "ann", "--store", str(store)]
    assert main([*argv, str(export)]) == 2
    err = capsys.readouterr().err
    for named in (str(export), "--member", "Second Athlete"):
        assert named in err
    assert err.count("\n") == 1
    assert not store.exists()  # refused before the store is opened
    summary = import_elite(capsys, store, export, member="Second Athlete")
    assert (summary["accepted"], summary["rejected"], summary["duplicate"]) == (3, 0, 0)
    with Store(store) as s:
        got = [float(r.data["rmssd_ms"]) for r in s.morning_history("ann")]  # type: ignore[arg-type]
    assert got == [80.0, 81.0, 82.0]


def test_elitehrv_later_header_dates_by_date_time_start_and_reads_rmssd_not_the_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = ELITE / "dashboard_export_new_header.csv"
    store = tmp_path / "store.sqlite3"
    summary = import_elite(capsys, store, export)
    assert summary["accepted"] == 3
    truth = elite_rows(export.name)
    with Store(store) as s:
        rows = s.morning_history("ann")
    assert [r.date for r in rows] == [t["Date Time Start"][:10] for t in truth]
    assert [float(r.data["rmssd_ms"]) for r in rows] == [float(t["Rmssd"]) for t in truth]  # type: ignore[arg-type]
    assert [float(r.data["resting_hr_bpm"]) for r in rows] == [float(t["HR"]) for t in truth]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "names"),
    [
        # An HRV4Training export given as Elite HRV's: the header is refused on line 1.
        ("date,HR,AVNN,SDNN,rMSSD\n2026-10-01,50,1200,80,60.1\n", ["line 1", "Rmssd"]),
        # A real header, a row whose time is not a time.
        (
            "Member,Date,Datetime,Type,HRV,lnRmssd,Rmssd,HR\n"
            "A,2026-10-01,2026-10-01 06:10:00,readiness,65,4.2,70.0,50\n"
            "A,2026-10-02,yesterday,readiness,65,4.2,70.0,50\n",
            ["line 3", "'yesterday'"],
        ),
        # An HRV score in the Rmssd column's place would be a number; a word is refused.
        (
            "Member,Date,Datetime,Type,HRV,lnRmssd,Rmssd,HR\n"
            "A,2026-10-01,2026-10-01 06:10:00,readiness,65,4.2,high,50\n",
            ["line 2", "'high'"],
        ),
    ],
)
def test_a_file_that_is_not_a_readable_elitehrv_export_is_refused_in_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, names: list[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    store = tmp_path / "s.sqlite3"
    argv = ["import", "csv", "--format", "elitehrv", "--athlete", "ann", "--store", str(store)]
    assert main([*argv, str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err
    for name in names:
        assert name in err
    assert err.count("\n") == 1
    assert not store.exists()  # every file is read before the store is opened


def test_a_fit_ride_with_heart_rate_only_is_high_intensity_by_its_zone_3_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Eleven minutes at 170 bpm, no power: above 87% of the athlete's max HR (185 → zone 3
    # from 161 bpm) for ≥ 8 min, so the imported session counts for hi_spacing.
    records: list[dict[str, object]] = [{"t_s": float(i), "heart_rate": 170} for i in range(660)]
    start = dt.datetime(2026, 11, 7, 17, 0, tzinfo=dt.UTC)
    path = write_activity(tmp_path / "ride.fit", start, records=records)
    config = tmp_path / "redox.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "store.sqlite3"}"\n'
        '[[athletes]]\nid = "ann"\n[athletes.rules]\nmax_hr_bpm = 185\n'
    )
    summary = import_json(capsys, "fit", "--athlete", "ann", "--config", str(config), str(path))
    assert summary["accepted"] == 1
    with Store(tmp_path / "store.sqlite3") as s:
        (session,) = s.sessions("ann")
    assert session.payload.mean_power_w is None
    assert session.payload.hr_zone3_s == pytest.approx(659, abs=5)
    assert session.payload.high_intensity is True


def test_member_is_refused_for_an_export_that_has_no_members(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "MyMeasurements.csv"
    write_hrv4training(export, 2)
    argv = ["import", "csv", "--format", "hrv4training", "--athlete", "ann", "--member", "X"]
    assert main([*argv, "--store", str(tmp_path / "s.sqlite3"), str(export)]) == 2
    err = capsys.readouterr().err
    assert "--member" in err
    assert err.count("\n") == 1
