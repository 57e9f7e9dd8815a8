"""The store under faults (issue 11, data safety 1–3), with real mosquitto and InfluxDB
where the test is about delivery.

* A full disk (SQLite's ``max_page_count`` on the store's connection: the same
  ``database or disk is full`` a full filesystem gives; ``bench/disk_full.py`` mounts a
  real one) holds results in memory, loses none, and says so; what cannot be kept ends
  the run with an error naming it.
* A deleted store never sends a topic's ``seq`` backwards.
* A damaged store (0 bytes, a page of garbage, garbage in the WAL after a SIGKILL) is
  refused without being written, and ``store salvage`` keeps what is readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from devices.records import HeartRateSample
from streamer.app.assembly import AthleteStateWrites, _History
from streamer.app.pipeline import Pipeline, ResultsNotStoredError
from streamer.cli import main
from streamer.commands.doctor import check_store
from streamer.config import InfluxConfig, MqttConfig
from streamer.errors import user_error
from streamer.results import Kind, Result, live_result
from streamer.sinks.backoff import Backoff
from streamer.sinks.influx import InfluxWriter
from streamer.sinks.mqtt import MqttOutbox, MqttPublisher
from streamer.store import (
    Store,
    StoreCorruptError,
    StoreFullError,
    salvage_store,
    seq_seed,
)
from tests.mqtt_helpers import Received, Subscriber, eventually, first_arrivals
from tests.test_store import _GRIP

REPO = Path(__file__).resolve().parents[1]
PAGE = 4096


# --- helpers -----------------------------------------------------------------------------------


def fill(store: Store) -> None:
    """The store's disk is full from now on: its file may not grow by one page, and the
    room left in its pages is taken by filler rows."""
    with store.transaction() as db:
        db.execute("CREATE TABLE IF NOT EXISTS filler (pad BLOB)")
    (pages,) = store.query("PRAGMA page_count")[0]
    store.query(f"PRAGMA max_page_count = {pages}")
    for size in (4000, 1000, 100, 10):
        with contextlib.suppress(StoreFullError):
            for _ in range(10_000):
                with store.transaction() as db:
                    db.execute("INSERT INTO filler VALUES (zeroblob(?))", (size,))


def free(store: Store) -> None:
    """Space returns."""
    store.query("PRAGMA max_page_count = 1073741823")


class Beats:
    """An athlete processor: a live result per beat and an HRV result every ``every``."""

    def __init__(self, athlete: str, every: int = 5) -> None:
        self.athlete = athlete
        self.every = every
        self.produced: list[Result] = []

    def process(self, device: str, record: object) -> Sequence[Result]:
        assert isinstance(record, HeartRateSample)
        out = [live_result(self.athlete, device, record)]
        if record.hr_bpm % self.every == 0:
            hrv = Result(Kind.HRV, self.athlete, record.t_ns, {"n_beats": record.hr_bpm})
            out.append(hrv)
            self.produced.append(hrv)
        return out

    def close(self) -> Sequence[Result]:
        return ()


def beat(i: int) -> HeartRateSample:
    return HeartRateSample(t_ns=1_700_000_000_000_000_000 + 10**9 * i, hr_bpm=i, rr_ms=(900.0,))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def follow_seq_rule(messages: Sequence[Received]) -> tuple[int, int]:
    """A consumer as docs/topics.md asks: keep the last seq per topic, drop a message whose
    seq is not greater. Returns (kept, dropped)."""
    last: dict[str, int] = {}
    kept = dropped = 0
    for m in messages:
        seq = m.json()["seq"]
        assert isinstance(seq, int)
        if seq <= last.get(m.topic, -1):
            dropped += 1
            continue
        last[m.topic] = seq
        kept += 1
    return kept, dropped


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.sqlite3") as s:
        yield s


# --- the store itself --------------------------------------------------------------------------


def test_a_write_the_full_disk_refuses_keeps_nothing_of_it_and_succeeds_later(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite3"
    with Store(path) as s:
        fill(s)
        rows = iter(range(1000))
        with pytest.raises(StoreFullError, match=rf"{path}.*full.*free space"):  # noqa: PT012
            for i in rows:
                s.add_session("ann", i, {"pad": "x" * 2000, "i": i})
        kept = s.sessions("ann")
        assert [r.data["i"] for r in kept] == list(range(len(kept)))  # whole rows only
        free(s)
        s.add_session("ann", 5000, {"i": 5000})
        assert len(s.sessions("ann")) == len(kept) + 1


def test_an_inner_transaction_is_a_savepoint_of_the_outer_one(store: Store) -> None:
    with pytest.raises(RuntimeError, match="outer"), store.transaction():  # noqa: PT012
        store.save_morning("a", "2024-05-01", 1, {"x": 1})
        raise RuntimeError("the outer one fails")
    assert store.morning_history("a") == []
    with store.transaction():
        store.save_morning("a", "2024-05-01", 1, {"x": 1})
        with pytest.raises(ValueError, match="inner"), store.transaction():  # noqa: PT012
            store.add_session("a", 2, {"y": 2})
            raise ValueError("only the inner one fails")
    assert [r.data for r in store.morning_history("a")] == [{"x": 1}]
    assert store.sessions("a") == []


# --- 1. disk full: results wait, nothing is lost -----------------------------------------------


@pytest.mark.integration
async def test_results_wait_while_the_disk_is_full_and_all_reach_mqtt_and_influxdb(
    tmp_path: Path, mosquitto: Any, influxdb1: Any
) -> None:
    n_beats, every = 400, 5
    produced = n_beats // every
    sub = await Subscriber("127.0.0.1", mosquitto.port, client_id="disk-full-sub").start()
    with Store(tmp_path / "store.sqlite3") as store:
        mqtt = MqttPublisher(
            MqttConfig.from_url(mosquitto.url, publish_timeout_s=1.0),
            store,
            backoff=Backoff(0.1, 0.5),
        )
        influx = InfluxWriter(
            InfluxConfig(url=influxdb1.url, db="t", create_database=True, flush_interval_s=0.1),
            store,
        )
        beats = Beats("ann", every)
        pipeline = Pipeline(lambda a: beats, store, [mqtt, influx], flush_timeout_s=5.0)
        task = asyncio.create_task(pipeline.run())
        await eventually(lambda: mqtt.connected, what="the broker")
        fill(store)
        for i in range(1, n_beats + 1):
            await pipeline.put("ann", "strap", beat(i))
        await pipeline.join()
        status = pipeline.status()
        # What the pages still had room for was stored; everything after waits in memory,
        # in order, and is said so once.
        assert status.waiting > produced // 2
        assert status.durable + status.waiting == produced
        assert status.store_line is not None
        assert "full" in status.store_line
        assert "wait in memory" in status.store_line
        assert MqttOutbox(store).depth() <= status.durable
        free(store)
        await eventually(lambda: pipeline.status().waiting == 0, what="space to be used")
        await sub.wait_for(
            lambda: len({m.json()["seq"] for m in sub.on("redox/ann/hrv")}) >= produced,
            what="every HRV result",
        )
        await eventually(lambda: influx.status()["outbox_depth"] == 0, what="InfluxDB")
        pipeline.stop()
        await asyncio.wait_for(task, 20)
        assert pipeline.status().durable == produced
        assert pipeline.status().store_problem is None
    await sub.stop()
    order, duplicates = first_arrivals(sub.on("redox/ann/hrv"))
    # 0 lost: one seq per result, none skipped, in the order produced.
    assert order == list(range(order[0], order[0] + produced))
    assert [m.json()["n_beats"] for m in sub.on("redox/ann/hrv")][:produced] == [
        r.fields["n_beats"] for r in beats.produced
    ]
    rows = influxdb1.query("SELECT count(n_beats) FROM hrv", db="t")
    assert rows["results"][0]["series"][0]["values"][0][1] == produced
    print(f"\ndisk full: {produced} produced, {len(order)} delivered, {duplicates} duplicates")


async def test_more_waiting_than_the_bound_stops_and_names_what_was_not_stored(
    store: Store,
) -> None:
    # A broker that is not there: the results' way is the outbox, which the full disk refuses.
    nowhere = MqttPublisher(MqttConfig(host="127.0.0.1", port=1), store)
    pipeline = Pipeline(lambda a: Beats(a, 10), store, [nowhere], waiting_max=20)
    task = asyncio.create_task(pipeline.run())
    fill(store)
    for i in range(1, 2001):
        pipeline.offer("ann", "strap", beat(i))
    with pytest.raises(ResultsNotStoredError) as caught:
        await asyncio.wait_for(task, 20)
    message = str(caught.value)
    found = re.match(r"(\d+) results were NOT stored \(ann: (\d+) hrv; ", message)
    assert found is not None, message
    # Every one of the 200 results is either in the outbox or named as not stored.
    assert int(found[1]) == int(found[2]) > 20
    assert int(found[1]) + MqttOutbox(store).depth() == 200
    assert str(store.path) in message
    assert "free space" in message
    assert "\n" not in message
    # The command line turns it into its one line and a non-zero status.
    error = user_error(caught.value)
    assert error is not None
    assert error.status != 0
    assert error.message == message


def test_athlete_saves_wait_for_space_and_go_with_the_next_results(store: Store) -> None:
    writes = AthleteStateWrites(store)
    fill(store)
    # The disk is full while the athlete saves: the record is not failed, the save waits.
    big = {"pad": "x" * 50_000}
    writes.save_alert_book("ann", big)
    writes.save_baseline("ann", "ln_rmssd", {"mean": 4.1, **big})
    assert writes.pending == 2
    assert writes.load_alert_book("ann") == big  # the athlete reads its newest state
    assert store.load_alert_book("ann") is None
    history = _History(store, writes)
    with pytest.raises(StoreFullError), history.transaction():
        history.record(_GRIP.result("ann", 1, "tindeq"))
    assert writes.pending == 2
    assert store.grip_tests("ann") == []
    free(store)
    with history.transaction():
        history.record(_GRIP.result("ann", 1, "tindeq"))
    assert writes.pending == 0
    assert store.load_alert_book("ann") == big
    assert store.load_baseline("ann", "ln_rmssd") == {"mean": 4.1, **big}
    assert len(store.grip_tests("ann")) == 1


# --- 2. seq after a lost store -----------------------------------------------------------------


@pytest.mark.integration
async def test_a_deleted_store_never_sends_seq_backwards(tmp_path: Path, mosquitto: Any) -> None:
    path = tmp_path / "store.sqlite3"
    sub = await Subscriber("127.0.0.1", mosquitto.port, client_id="seq-rule-sub").start()
    per_run = 20

    async def one_run(first: int) -> None:
        with Store(path) as store:
            publisher = MqttPublisher(
                MqttConfig.from_url(mosquitto.url, publish_timeout_s=1.0),
                store,
                backoff=Backoff(0.1, 0.5),
            )
            runner = asyncio.create_task(publisher.run())
            await eventually(lambda: publisher.connected, what="the broker")
            for i in range(first, first + per_run):
                publisher.accept([Result(Kind.HRV, "ann", i, {"rmssd_ms": float(i)})])
            await publisher.send_live([live_result("ann", "strap", beat(first))])
            await eventually(lambda: publisher.status()["outbox_depth"] == 0, what="delivery")
            await publisher.drain(2.0)
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    await one_run(0)
    for leftover in list(tmp_path.glob("store.sqlite3*")):  # noqa: ASYNC240
        leftover.unlink()  # the store is lost between the runs
    await one_run(per_run)
    await sub.wait_for(lambda: len(sub.on("redox/ann/hrv")) >= 2 * per_run, what="both runs")
    await sub.stop()
    messages = [m for m in sub.received if m.topic.startswith("redox/ann/")]
    kept, dropped = follow_seq_rule(messages)
    assert dropped == 0
    assert kept == 2 * per_run + 2  # HRV results and one live sample per run
    assert [m.json()["rmssd_ms"] for m in sub.on("redox/ann/hrv")] == [
        float(i) for i in range(2 * per_run)
    ]


# --- 3. a damaged store ------------------------------------------------------------------------


def _store_with_history(path: Path, rows: int = 400) -> int:
    """A store with ``rows`` sessions and 50 queued MQTT messages; returns the last seq."""
    with Store(path) as s:
        for i in range(rows):
            s.add_session("ann", i, {"pad": "y" * 300, "i": i})
        outbox = MqttOutbox(s)
        for _ in range(50):
            outbox.enqueue("redox/ann/hrv", lambda n: f'{{"seq":{n}}}'.encode())
        return s.last_seq("redox/ann/hrv")


def test_a_store_deleted_without_its_wal_starts_clean_and_above_the_old_numbers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite3"
    last = _killed_writer(path)  # its messages are in the WAL only
    path.unlink()  # the store file is deleted; its -wal and -shm stay behind
    with Store(path) as s:
        assert s.integrity_problems(quick=False) == []
        assert MqttOutbox(s).depth() == 0  # nothing of the old WAL replayed into it
        assert MqttOutbox(s).enqueue("redox/ann/alerts", lambda n: b"{}") > last
    assert len(list(tmp_path.glob("store.sqlite3-wal.orphaned-*"))) == 1


def test_a_zero_byte_store_is_refused_untouched_with_the_salvage_command(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    path.touch()
    with pytest.raises(StoreCorruptError) as caught:
        Store(path)
    message = str(caught.value)
    assert f"the store {path} is empty (0 bytes)" in message
    assert f"redox-streamer store salvage {path}" in message
    assert path.stat().st_size == 0
    assert not Path(f"{path}-wal").exists()


def test_a_page_of_garbage_is_refused_unwritten_by_run_and_doctor_and_salvaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "store.sqlite3"
    last = _store_with_history(path)
    data = bytearray(path.read_bytes())
    page = data.index(b'"i":200}') // PAGE  # a page of the sessions table
    data[page * PAGE : (page + 1) * PAGE] = os.urandom(PAGE)
    path.write_bytes(bytes(data))
    before = digest(path)
    with pytest.raises(StoreCorruptError, match=r"damaged \(integrity check"):
        Store(path)
    doctor = check_store(path)
    assert doctor.ok is False
    assert "damaged" in doctor.detail
    assert f"store salvage {path}" in doctor.fix
    assert main(["store", "check", str(path)]) == 1
    assert f"DAMAGED {path}" in capsys.readouterr().out
    assert digest(path) == before  # nobody wrote over it
    assert main(["store", "salvage", str(path)]) == 0
    out = capsys.readouterr().out
    assert "moved the damaged store to" in out
    assert "unreadable: table sessions" in out
    (aside,) = tmp_path.glob("store.sqlite3.damaged-*[!lm]")  # not its -wal/-shm
    assert digest(aside) == before  # kept as it was found
    assert main(["store", "check", str(path)]) == 0
    with Store(path) as s:
        sessions = [i for r in s.sessions("ann") if isinstance(i := r.data["i"], int)]
        assert 300 <= len(sessions) < 400  # one leaf page of rows lost, the rest kept
        assert sessions == sorted(sessions)
        assert MqttOutbox(s).depth() == 50
        assert MqttOutbox(s).enqueue("redox/ann/hrv", lambda n: b"{}") > last


def test_salvage_refuses_a_sound_store_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "store.sqlite3"
    _store_with_history(path, rows=3)
    assert main(["store", "check", str(path)]) == 0
    assert "sound" in capsys.readouterr().out
    assert main(["store", "salvage", str(path)]) == 2
    assert "is sound: nothing to salvage" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.damaged-*"))


_KILLED_WRITER = """
import sys, time
from pathlib import Path
from streamer.sinks.mqtt import MqttOutbox
from streamer.store import Store
store = Store(Path(sys.argv[1]))
store.query("PRAGMA wal_autocheckpoint = 0")  # every transaction stays in the WAL
outbox = MqttOutbox(store)
pad = "z" * 600
for i in range(120):  # one transaction each: one commit frame or more each in the WAL
    outbox.enqueue("redox/ann/alerts", lambda n: f'{{"seq":{n},"pad":"{pad}"}}'.encode())
print(store.last_seq("redox/ann/alerts"), flush=True)
time.sleep(3600)  # SIGKILLed here: no checkpoint, the WAL stays as it is
"""


def _killed_writer(path: Path) -> int:
    """A process that queues 120 messages and is SIGKILLed; returns its last seq."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    last = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return last


def _wal_frames(path: Path) -> tuple[bytes, int]:
    wal = Path(f"{path}-wal").read_bytes()
    page_size = int.from_bytes(wal[8:12], "big")
    return wal, 24 + page_size


def test_garbage_in_the_wal_after_a_kill_is_refused_and_salvage_keeps_seq_going_up(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite3"
    last = _killed_writer(path)
    wal, frame = _wal_frames(path)
    assert (len(wal) - 32) // frame > 40  # the queued messages are in the WAL only
    # Garbage over frame 20: the transactions after it were committed.
    start = 32 + 20 * frame
    Path(f"{path}-wal").write_bytes(wal[:start] + os.urandom(frame) + wal[start + frame :])
    before = (digest(path), digest(Path(f"{path}-wal")))
    with pytest.raises(StoreCorruptError, match=r"WAL .* damaged at byte .* committed"):
        Store(path)
    assert (digest(path), digest(Path(f"{path}-wal"))) == before
    result = salvage_store(path)
    assert result.reseeded == 1
    with Store(path) as s:
        kept = MqttOutbox(s).depth()
        assert 0 < kept < 120  # the transactions before the damage
        assert MqttOutbox(s).enqueue("redox/ann/alerts", lambda n: b"{}") > last


def test_a_clean_or_torn_wal_after_a_kill_is_no_damage(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    last = _killed_writer(path)
    wal, frame = _wal_frames(path)
    torn = tmp_path / "torn.sqlite3"
    torn.write_bytes(path.read_bytes())
    Path(f"{torn}-wal").write_bytes(wal[: len(wal) - frame // 2])  # a frame half written
    with Store(path) as s:  # the WAL as the kill left it: every transaction is there
        assert MqttOutbox(s).depth() == 120
        assert s.last_seq("redox/ann/alerts") == last
    with Store(torn) as s:
        assert 118 <= MqttOutbox(s).depth() < 120  # only the torn transaction is gone


def test_a_new_topic_starts_at_the_clock(store: Store) -> None:
    before = seq_seed()
    assert before <= store.reserve_seq("redox/x/hrv") <= seq_seed()


async def test_commands_do_not_end_as_if_results_were_stored(store: Store) -> None:
    """``running`` (run, demo, replay, morning, grip-test) passes ResultsNotStoredError on."""
    from streamer.app.runtime import running

    nowhere = MqttPublisher(MqttConfig(host="127.0.0.1", port=1), store)
    pipeline = Pipeline(lambda a: Beats(a, 10), store, [nowhere], waiting_max=5)
    fill(store)
    with pytest.raises(ResultsNotStoredError, match="results were NOT stored"):  # noqa: PT012
        async with running(pipeline):
            for i in range(1, 2001):
                await pipeline.put("ann", "strap", beat(i))
            await pipeline.join()
