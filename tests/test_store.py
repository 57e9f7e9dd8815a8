"""The SQLite store: history queries, state across reopen, ordered outboxes, versioning."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.results import Kind, Result, alert_result
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


def test_record_routes_results_to_their_history(store: Store) -> None:
    assert store.record(Result(Kind.MORNING, "a", 5 * DAY_NS, {"ln_rmssd": 4.0}))
    assert store.record(
        Result(Kind.OXYGENATION, "a", 10, {"scope": "session", "recovery_s": 121.0}, "moxy")
    )
    assert not store.record(Result(Kind.OXYGENATION, "a", 11, {"scope": "effort"}, "moxy"))
    assert store.record(Result(Kind.GRIP, "a", 12, {"drop_pct": 9.0}, "tindeq"))
    event = {
        "rule": "grip_spillover",
        "severity": "pull_back",
        "state": "raised",
        "raised_ts_ns": 13,
    }
    assert store.record(alert_result("a", event, [event]))
    assert not store.record(Result(Kind.HRV, "a", 1, {}))
    assert store.morning_history("a")[0].date == "1970-01-06"
    assert [r.data["recovery_s"] for r in store.sessions("a")] == [121.0]
    assert store.sessions("a")[0].device == "moxy"
    assert [r.data["drop_pct"] for r in store.grip_tests("a")] == [9.0]
    (alert,) = store.alerts("a")
    assert (alert.rule, alert.state, alert.ts_ns) == ("grip_spillover", "raised", 13)


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
