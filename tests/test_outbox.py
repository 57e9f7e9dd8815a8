"""The generic outbox per sink: order, prefix acks, numbering with the store's per-topic
seq, dead letters, read-only reads, and the migration of stores with the old sink tables."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.sinks.influx import line_messages
from streamer.sinks.mqtt import MqttOutbox
from streamer.sinks.outbox import Message, Outbox, outbox_names
from streamer.store import SCHEMA_VERSION, Store, StoreError

# The schema-1 store as redox-streamer wrote it up to 50cd6a8 (streamer/store.py), verbatim.
OLD_SCHEMA_V1 = """
CREATE TABLE morning (
    athlete TEXT NOT NULL, date TEXT NOT NULL, ts_ns INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (athlete, date));
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY, athlete TEXT NOT NULL, ts_ns INTEGER NOT NULL,
    device TEXT, data TEXT NOT NULL);
CREATE INDEX sessions_by_time ON sessions (athlete, ts_ns);
CREATE TABLE grip_tests (
    id INTEGER PRIMARY KEY, athlete TEXT NOT NULL, ts_ns INTEGER NOT NULL,
    device TEXT, data TEXT NOT NULL);
CREATE INDEX grip_tests_by_time ON grip_tests (athlete, ts_ns);
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY, athlete TEXT NOT NULL, ts_ns INTEGER NOT NULL,
    rule TEXT NOT NULL, state TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX alerts_by_time ON alerts (athlete, ts_ns);
CREATE TABLE alert_book (
    athlete TEXT PRIMARY KEY, updated_ns INTEGER NOT NULL, data TEXT NOT NULL);
CREATE TABLE baselines (
    athlete TEXT NOT NULL, name TEXT NOT NULL, updated_ns INTEGER NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (athlete, name));
CREATE TABLE seq (topic TEXT PRIMARY KEY, last INTEGER NOT NULL);
CREATE TABLE mqtt_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
    qos INTEGER NOT NULL, retain INTEGER NOT NULL, created_ns INTEGER NOT NULL);
CREATE TABLE influx_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL, created_ns INTEGER NOT NULL);
CREATE TABLE influx_dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL, status INTEGER NOT NULL,
    error TEXT NOT NULL, created_ns INTEGER NOT NULL);
"""

# (topic, payload, qos, retain) queued by an old publisher, seq 1..5 on two topics.
OLD_MQTT = [
    ("redox/a/hrv", b'{"seq":3,"rmssd_ms":41.5}', 1, 0),
    ("redox/a/morning", b'{"seq":1,"ln_rmssd":4.1}', 1, 1),
    ("redox/a/hrv", b'{"seq":4,"rmssd_ms":40.0}', 2, 0),
    ("redox/b/alerts", b'{"seq":1,"rule":"rhr_creep"}', 1, 1),
    ("redox/a/hrv", b'{"seq":5,"rmssd_ms":39.0}', 1, 0),
]
OLD_LINES = [f"hrv,athlete=a rmssd_ms={40 + i}.0 {1_000 + i}" for i in range(6)]


def _old_store(path: Path) -> None:
    """A schema-1 file with acknowledged rows gone (ids start past 1) and rows waiting."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(OLD_SCHEMA_V1)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO seq (topic, last) VALUES ('redox/a/hrv', 5), ('redox/a/morning', 1)")
    db.execute("INSERT INTO seq (topic, last) VALUES ('redox/b/alerts', 1)")
    db.execute("INSERT INTO morning VALUES ('a', '2024-05-01', 1, '{\"ln_rmssd\":4.1}')")
    for topic, payload, qos, retain in [("redox/a/hrv", b"{}", 1, 0)] * 2 + OLD_MQTT:
        db.execute(
            "INSERT INTO mqtt_outbox (topic, payload, qos, retain, created_ns) "
            "VALUES (?, ?, ?, ?, 7)",
            (topic, payload, qos, retain),
        )
    for line in ["acked f=1 1", *OLD_LINES]:
        db.execute("INSERT INTO influx_outbox (line, created_ns) VALUES (?, 8)", (line,))
    db.execute(
        "INSERT INTO influx_dead_letter (line, status, error, created_ns) "
        "VALUES ('hrv n=1.5 1', 400, 'field type conflict', 9)"
    )
    db.execute("DELETE FROM mqtt_outbox WHERE id <= 2")  # delivered before the upgrade
    db.execute("DELETE FROM influx_outbox WHERE id <= 1")
    db.execute(
        "INSERT INTO mqtt_outbox (topic, payload, qos, retain, created_ns) "
        "VALUES ('x', x'00', 1, 0, 7)"
    )
    db.execute("DELETE FROM mqtt_outbox WHERE topic = 'x'")  # the newest id, delivered
    db.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "sub" / "redox.sqlite3")
    yield s
    s.close()


def test_store_of_the_old_schema_keeps_every_queued_message_line_and_dead_letter(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    _old_store(path)
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        mqtt = MqttOutbox(store)
        messages = mqtt.peek(100)
        assert [(m.topic, m.payload, m.qos, m.retain) for m in messages] == [
            (t, p, q, bool(r)) for t, p, q, r in OLD_MQTT
        ]
        assert [m.id for m in messages] == [3, 4, 5, 6, 7]
        influx = Outbox(store, "influx")
        entries = influx.peek(100)
        assert [e.payload.decode() for e in entries] == OLD_LINES
        assert [e.id for e in entries] == [2, 3, 4, 5, 6, 7]
        (dead,) = influx.dead_letters()
        assert (dead.payload, dead.status, dead.error) == (
            b"hrv n=1.5 1",
            400,
            "field type conflict",
        )
        # Numbering goes on where it stopped: no seq and no outbox id is handed out twice.
        assert store.last_seq("redox/a/hrv") == 5
        assert mqtt.enqueue("redox/a/hrv", lambda n: str(n).encode()) == 6
        assert mqtt.peek(100)[-1].id == 9  # 8 was used (and delivered) before the upgrade
        assert [m.payload for m in mqtt.peek(100, after_id=7)] == [b"6"]
        assert outbox_names(store) == ["influx", "mqtt"]
        assert store.morning_history("a")[0].data == {"ln_rmssd": 4.1}
        tables = {
            str(n) for (n,) in store.query("SELECT name FROM sqlite_master WHERE type='table'")
        }
        assert not tables & {"mqtt_outbox", "influx_outbox", "influx_dead_letter"}


def test_read_only_store_of_the_old_schema_reads_history_and_is_not_migrated(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    _old_store(path)
    with Store(path, read_only=True) as store:
        assert store.athletes() == ["a"]
        assert store.schema_version == 1
    with Store(path, read_only=True) as store:
        assert store.schema_version == 1


def test_outbox_name_is_a_plain_identifier(store: Store) -> None:
    with pytest.raises(ValueError, match="lower-case"):
        Outbox(store, "mqtt; DROP TABLE seq")


def test_outboxes_of_two_sinks_are_independent(store: Store) -> None:
    a, b = Outbox(store, "a"), Outbox(store, "b")
    a.enqueue_many([Message(b"1"), Message(b"2", {"k": [1, "x"]})])
    b.enqueue(Message(b"3"))
    assert [(e.payload, e.meta) for e in a.peek()] == [(b"1", {}), (b"2", {"k": [1, "x"]})]
    assert a.ack(a.peek()[-1].id) == 2
    assert (a.depth(), b.depth()) == (0, 1)


def test_read_only_outbox_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with Store(path) as s:
        Outbox(s, "influx").enqueue_many(line_messages(["m f=1 1"]))
    with Store(path, read_only=True) as ro:
        assert Outbox(ro, "influx").depth() == 1
        assert Outbox(ro, "never").depth() == 0
        assert Outbox(ro, "never").peek() == []
        with pytest.raises(StoreError, match="read-only"):
            Outbox(ro, "influx").ack(10)


def test_mqtt_outbox_is_fifo_numbered_and_acked_by_prefix(store: Store) -> None:
    seqs = [
        MqttOutbox(store).enqueue("r/a/hrv", lambda n: f"m{n}".encode(), retain=i == 1)
        for i in range(3)
    ]
    assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2]
    msgs = MqttOutbox(store).peek(10)
    assert [m.payload for m in msgs] == [f"m{n}".encode() for n in seqs]
    assert [m.retain for m in msgs] == [False, True, False]
    assert MqttOutbox(store).ack(msgs[1].id) == 2
    assert [m.payload for m in MqttOutbox(store).peek()] == [f"m{seqs[2]}".encode()]
    assert MqttOutbox(store).depth() == 1


def test_failed_render_uses_no_sequence_number(store: Store) -> None:
    def boom(seq: int) -> bytes:
        raise RuntimeError("bad payload")

    with pytest.raises(RuntimeError):
        MqttOutbox(store).enqueue("t", boom)
    assert MqttOutbox(store).depth() == 0
    assert store.last_seq("t") == 0
    first = MqttOutbox(store).enqueue("t", lambda n: b"x")
    assert store.last_seq("t") == first


def test_influx_outbox_keeps_order_and_dead_letters(store: Store) -> None:
    Outbox(store, "influx").enqueue_many(line_messages(["m f=1 1", "m f=2 2"]))
    Outbox(store, "influx").enqueue_many(line_messages(["m f=3 3"]))
    lines = Outbox(store, "influx").peek(2)
    assert [x.payload.decode() for x in lines] == ["m f=1 1", "m f=2 2"]
    Outbox(store, "influx").ack(lines[-1].id)
    assert [x.payload.decode() for x in Outbox(store, "influx").peek()] == ["m f=3 3"]
    Outbox(store, "influx").dead_letter(line_messages(['m f="x" 4']), 400, "field type conflict")
    (dead,) = Outbox(store, "influx").dead_letters()
    assert (dead.status, dead.error) == (400, "field type conflict")


def test_concurrent_writers_from_threads_lose_nothing(store: Store) -> None:
    def worker(k: int) -> None:
        for _i in range(50):
            MqttOutbox(store).enqueue(f"t/{k}", lambda n: str(n).encode())

    firsts = [MqttOutbox(store).enqueue(f"t/{k}", lambda n: b"first") for k in range(4)]
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert MqttOutbox(store).depth() == 204
    assert all(store.last_seq(f"t/{k}") == firsts[k] + 50 for k in range(4))


def test_second_process_sees_committed_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with Store(path) as writer, Store(path) as reader:
        Outbox(writer, "influx").enqueue_many(line_messages(["m f=1 1"]))
        assert Outbox(reader, "influx").depth() == 1


def test_enqueue_many_is_all_or_nothing(store: Store) -> None:
    def bad(seq: int) -> bytes:
        raise ValueError("cannot render")

    first, second = MqttOutbox(store).enqueue_many(
        [("a", lambda n: b"1", 1, False), ("a", lambda n: b"2", 1, True)]
    )
    assert second == first + 1
    with pytest.raises(ValueError, match="render"):
        MqttOutbox(store).enqueue_many([("a", lambda n: b"3", 1, False), ("b", bad, 1, False)])
    assert [m.payload for m in MqttOutbox(store).peek()] == [b"1", b"2"]
    assert store.last_seq("a") == second
