"""The SQLite store: history queries, state across reopen, ordered outboxes, versioning."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.results import (
    AlertsPayload,
    EffortPayload,
    GripPayload,
    Kind,
    MorningPayload,
    Result,
    SessionPayload,
    alert_result,
)
from streamer.store import SCHEMA_VERSION, Store, StoreError, seq_seed

DAY_NS = 86_400 * 10**9


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "sub" / "redox.sqlite3")
    yield s
    s.close()


def test_new_file_is_created_in_wal_mode_with_the_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "s.sqlite3"
    with Store(path) as s:
        assert s.schema_version == SCHEMA_VERSION
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_file_from_a_newer_version_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match=r"newer.*store\.path"):
        Store(path)


def test_morning_history_is_one_row_per_day_in_date_order(store: Store) -> None:
    store.save_morning("alice", "2024-05-03", 3, {"ln_rmssd": 4.0})
    store.save_morning("alice", "2024-05-01", 1, {"ln_rmssd": 4.2})
    store.save_morning("alice", "2024-05-01", 2, {"ln_rmssd": 4.3})  # a retake replaces
    store.save_morning("bob", "2024-05-02", 2, {"ln_rmssd": 3.0})
    rows = store.morning_history("alice")
    assert [(r.date, r.data["ln_rmssd"]) for r in rows] == [
        ("2024-05-01", 4.3),
        ("2024-05-03", 4.0),
    ]
    assert [r.date for r in store.morning_history("alice", "2024-05-02", "2024-05-31")] == [
        "2024-05-03"
    ]


def _morning(day: str, ln_rmssd: float | None = 4.0) -> MorningPayload:
    return MorningPayload(
        date=day,
        ln_rmssd=ln_rmssd,
        rmssd_ms=None,
        resting_hr_bpm=52.0,
        artifacts_pct=0.0,
        corrected_pct=0.0,
        n_beats=300,
        accepted=True,
        reject_reason=None,
        ln_rmssd_baseline_mean=None,
        ln_rmssd_baseline_sd=None,
        ln_rmssd_band_low=None,
        ln_rmssd_band_high=None,
        ln_rmssd_7d_mean=None,
        ln_rmssd_cv_pct=None,
        rhr_baseline_median_bpm=None,
        rhr_7d_mean_bpm=None,
    )


_GRIP = GripPayload(
    mvc_kg=45.0,
    peak_kg=41.0,
    drop_pct=9.0,
    minutes_after=0.0,
    threshold_pct=10.0,
    threshold_basis="article",
    grip_class="normal",
    noise_cv_pct=None,
    drops_pct={"0": 9.0},
)


def test_record_routes_results_to_their_history_as_published(store: Store) -> None:
    morning = _morning("1970-01-06").result("a", 5 * DAY_NS)
    session = SessionPayload(
        recovery_s=121.0,
        recovery_is_lower_bound=False,
        n_efforts=3,
        n_recovered=3,
        duration_s=1800.0,
        rpe=None,
        mean_power_w=None,
    ).result("a", 10, "moxy")
    effort = EffortPayload(
        work_end_source="power",
        baseline_pct=70.0,
        min_pct=30.0,
        t_half_s=20.0,
        t95_s=60.0,
        tau_s=25.0,
        delay_s=2.0,
        reox_rate_pct_s=1.5,
        overshoot_pct=3.0,
        recovered=True,
        observed_s=90.0,
    ).result("a", 11, "moxy")
    grip = _GRIP.result("a", 12, "tindeq")
    event = {
        "rule": "grip_spillover",
        "severity": "pull_back",
        "state": "raised",
        "raised_ts_ns": 13,
    }
    alerts = alert_result("a", event, [event])
    assert store.record(morning)
    assert store.record(session)
    assert not store.record(effort)
    assert store.record(grip)
    assert store.record(alerts)
    assert not store.record(Result(Kind.HRV, "a", 1, {}))  # not history: not even parsed
    (m,) = store.morning_history("a")
    assert (m.date, m.data, m.payload) == ("1970-01-06", dict(morning.fields), morning.payload)
    (s,) = store.sessions("a")
    assert (s.device, s.data, s.payload) == ("moxy", dict(session.fields), session.payload)
    (g,) = store.grip_tests("a")
    assert (g.data, g.payload.drop_pct) == (dict(grip.fields), 9.0)
    (alert,) = store.alerts("a")
    assert (alert.rule, alert.state, alert.ts_ns) == ("grip_spillover", "raised", 13)
    assert alert.data == alerts.fields["event"]
    assert alert.payload == alerts.payload_as(AlertsPayload).event


def test_a_grip_test_stored_before_threshold_basis_existed_still_reads(store: Store) -> None:
    old = {k: v for k, v in _GRIP.fields().items() if k != "threshold_basis"}
    store.add_grip_test("a", 1, old, "tindeq")
    (row,) = store.grip_tests("a")
    assert row.payload == dataclasses.replace(_GRIP, threshold_basis="unknown")


def test_a_history_row_that_is_no_result_of_its_table_is_named(store: Store) -> None:
    store.add_grip_test("a", 7, {"drop_pct": 9.0}, "tindeq")
    (row,) = store.grip_tests("a")
    assert row.data == {"drop_pct": 9.0}  # the raw row still reads
    with pytest.raises(
        StoreError,
        match=r"'a' at 1970-01-01T00:00:00\+00:00 \(ts_ns 7\) is not a GripPayload"
        r".*'mvc_kg'.*fix or delete",
    ):
        _ = row.payload


def test_range_queries_are_half_open(store: Store) -> None:
    for t in (1, 2, 3):
        store.add_grip_test("a", t, {"n": t})
        store.add_alert("a", t, "rhr_creep", "raised", {"n": t})
    store.add_alert("b", 2, "rhr_creep", "raised", {})
    assert [r.ts_ns for r in store.grip_tests("a", 2, 3)] == [2]
    assert [r.ts_ns for r in store.alerts(None, 2, 4)] == [2, 2, 3]
    assert [r.athlete for r in store.alerts("b")] == ["b"]
    store.save_morning("c", "2024-01-01", 1, {})
    assert store.athletes() == ["a", "b", "c"]


def test_alert_book_and_baselines_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with Store(path) as s:
        s.save_alert_book("a", {"open": ["rhr_creep"], "since": {"rhr_creep": 5}})
        s.save_baseline("a", "ln_rmssd", {"mean": 4.1, "sd": 0.2})
        s.save_baseline("a", "ln_rmssd", {"mean": 4.2, "sd": 0.2})
        s.save_baseline("a", "grip_mvc", {"kg": [40.0, 41.0]})
    with Store(path) as s:
        assert s.load_alert_book("a") == {"open": ["rhr_creep"], "since": {"rhr_creep": 5}}
        assert s.load_alert_book("b") is None
        assert s.load_baseline("a", "ln_rmssd") == {"mean": 4.2, "sd": 0.2}
        assert set(s.baselines("a")) == {"grip_mvc", "ln_rmssd"}


def test_seq_is_per_topic_and_never_repeats_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    before = seq_seed()
    with Store(path) as s:
        first = s.reserve_seq("t/a")
        assert first >= before  # a new topic starts at the clock (µs)
        assert s.reserve_seq("t/a", 10) == first + 1
        assert s.reserve_seq("t/b") >= before
    with Store(path) as s:
        assert s.reserve_seq("t/a") == first + 11
        assert s.last_seq("t/a") == first + 11
        assert s.last_seq("nope") == 0


def test_read_only_store_reads_history_and_never_touches_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with Store(path) as s:
        s.save_morning("a", "2024-05-01", 1, {"ln_rmssd": 4.0})
    before = (path.stat().st_mtime_ns, path.read_bytes())
    with Store(path, read_only=True) as ro:
        assert ro.read_only
        assert [r.data for r in ro.morning_history("a")] == [{"ln_rmssd": 4.0}]
        assert ro.athletes() == ["a"]
        with pytest.raises(StoreError, match="read-only"):
            ro.save_morning("a", "2024-05-02", 2, {})
        with pytest.raises(StoreError, match="read-only"):
            ro.reserve_seq("t")
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before


def test_read_only_store_refuses_a_missing_file_without_creating_it(tmp_path: Path) -> None:
    path = tmp_path / "none" / "s.sqlite3"
    with pytest.raises(StoreError, match="no such store file"):
        Store(path, read_only=True)
    assert not path.parent.exists()


def test_read_only_store_refuses_a_newer_file_and_a_non_store(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite3"
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store(newer, read_only=True)
    other = tmp_path / "other.sqlite3"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(StoreError, match="not a redox-streamer store"):
        Store(other, read_only=True)
    text = tmp_path / "text.sqlite3"
    text.write_text("not a database at all, just some words " * 20)
    with pytest.raises(StoreError, match="cannot read"):
        Store(text, read_only=True)
