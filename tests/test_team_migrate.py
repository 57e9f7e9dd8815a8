"""``redox-streamer migrate``: single-box stores merged into PostgreSQL (a real server).

The motivating case of team mode: one athlete whose mornings were split between two
gateways, each a full island with too few days for a baseline. Merged, the history is the
one a single box would have kept, and the alert book recomputed from it is that box's.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from processors.alerts import AlertBook
from streamer.athlete.events import MorningStart
from streamer.config import Config, InfluxConfig, MqttConfig
from streamer.sinks.outbox import Entry, Outbox
from streamer.store import Store
from streamer.team import wire
from streamer.team.wire import WireMessage
from tests import team_worker_helpers as th
from tests.mqtt_helpers import Received, Subscriber, eventually
from tests.servers import Mosquitto, NatsServer, PostgreSQL

nats = pytest.importorskip("nats")

ROOT = Path(__file__).resolve().parents[1]


def test_migrate_merges_islands_into_the_single_box_history(
    postgres: PostgreSQL, tmp_path: Path
) -> None:
    days = th.athlete_days(1, 23, sessions=False)
    ((athlete, messages),) = days.items()
    # Alternate days on two boxes (as alternating gateways did): neither has a baseline.
    cuts = [i for i, m in enumerate(messages) if isinstance(m, MorningStart)] + [len(messages)]
    box: list[list[WireMessage]] = [[], []]
    for day, (start, end) in enumerate(itertools.pairwise(cuts)):
        box[day % 2].extend(messages[start:end])
    stores = [tmp_path / "pi1.sqlite3", tmp_path / "pi2.sqlite3"]
    for path, part in zip(stores, box, strict=True):
        th.oracle({athlete: part}, store=str(path))
    single = tmp_path / "single.sqlite3"
    th.oracle(days, store=str(single))
    with Store(single, read_only=True) as s:
        want_book = AlertBook.from_dict(s.load_alert_book(athlete) or {})
        want_mornings = [(r.date, r.ts_ns) for r in s.morning_history(athlete)]
        want_baselines = s.baselines(athlete)
    assert want_book.open_alerts(), "the single box raises alerts for this athlete"
    islands_open = []
    seqs: dict[str, int] = {}
    for path in stores:
        with Store(path, read_only=True) as s:
            islands_open += list(
                AlertBook.from_dict(
                    s.load_alert_book(athlete)
                    or {"athlete": athlete, "clear_after": 1, "open": [], "quiet": {}}
                ).open_alerts()
            )
            for topic, last in s.query("SELECT topic, last FROM seq"):
                seqs[str(topic)] = max(seqs.get(str(topic), 0), int(str(last)))
    assert not islands_open, "neither island alone raises one"

    done = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "migrate", "--postgres", postgres.dsn,
         *map(str, stores)],
        capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "merged 2 store(s): 1 athletes" in done.stdout

    with psycopg.connect(postgres.dsn) as conn:
        mornings = conn.execute(
            "SELECT date, ts_ns FROM morning WHERE athlete = %s ORDER BY date", (athlete,)
        ).fetchall()
        (book_text,) = conn.execute(
            "SELECT data FROM alert_book WHERE athlete = %s", (athlete,)
        ).fetchone() or ("{}",)
        pg_seqs = dict(conn.execute("SELECT topic, last FROM seq").fetchall())
        baselines = dict(
            conn.execute(
                "SELECT name, data FROM baselines WHERE athlete = %s", (athlete,)
            ).fetchall()
        )
    assert [tuple(m) for m in mornings] == want_mornings
    book = AlertBook.from_dict(json.loads(book_text))
    assert [(a.rule_id, a.raised_at_ns) for a in book.open_alerts()] == [
        (a.rule_id, a.raised_at_ns) for a in want_book.open_alerts()
    ]
    assert {name: json.loads(data) for name, data in baselines.items()} == want_baselines
    assert all(pg_seqs[topic] >= last for topic, last in seqs.items())

    # Again: merged, not doubled.
    again = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "migrate", "--postgres", postgres.dsn,
         *map(str, stores)],
        capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    with psycopg.connect(postgres.dsn) as conn:
        row = conn.execute("SELECT count(*) FROM morning").fetchone()
    assert row is not None
    assert row[0] == len(want_mornings)


def test_migrate_names_a_missing_store(postgres: PostgreSQL, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "migrate", "--postgres", postgres.dsn,
         str(tmp_path / "nope.sqlite3")],
        capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "nope.sqlite3: no such store file" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_migrate_keeps_lab_entries_and_their_open_alerts(
    postgres: PostgreSQL, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lab entries are copied (the worker's dROMs baseline goes on from them) and an open lab
    alert is carried over: lab rules are not replayed."""
    from streamer import cli
    from streamer.config import Config
    from streamer.team.migrate import migrate

    stores = []
    for box, entries in (
        ("pi1", [["droms", "300", "--date", "2026-11-01", "--time", "07:00"], ["droms", "310"]]),
        (
            "pi2",
            [
                ["lipid-dipstick", "positive"],
                ["droms", "290", "--date", "2026-11-02", "--time", "07:00"],
            ],
        ),
    ):
        store = tmp_path / f"{box}.sqlite3"
        config = tmp_path / f"{box}.toml"
        config.write_text(f'[store]\npath = "{store}"\n[[athletes]]\nid = "ann"\nname = "Ann"\n')
        for entry in entries:
            argv = [
                "log",
                *entry,
                "--timing",
                "fasted",
                "--athlete",
                "ann",
                "--config",
                str(config),
            ]
            assert cli.main(argv) == 0, capsys.readouterr().err
        stores.append(store)
    report = migrate(postgres.dsn, stores, Config(), 16)
    assert report.rows["lab_entries"] == 4
    with psycopg.connect(postgres.dsn) as conn:
        markers = conn.execute("SELECT marker FROM lab_entries ORDER BY ts_ns").fetchall()
        (book,) = conn.execute("SELECT data FROM alert_book WHERE athlete = 'ann'").fetchone() or (
            None,
        )
    assert sorted(m for (m,) in markers) == ["droms", "droms", "droms", "lipid_dipstick"]
    assert book is not None
    text = book if isinstance(book, str) else json.dumps(book)
    assert "lipid_dipstick_positive" in text


def test_migrate_judges_hr_grip_flat_on_grip_tests_as_the_single_box(
    postgres: PostgreSQL, tmp_path: Path
) -> None:
    """The demo's over-reaching athlete3 (grip tests, lab draws, sessions; 28 days, the
    demo's real path): its ``hr_grip_flat`` alert clears at a grip test that shows grip
    rising. The book recomputed by ``migrate`` is the single box's, that clearing time
    included (it was the next morning's when grip tests were only remembered: the worker's
    status then said "resume since" a day late)."""
    import asyncio
    import datetime as dt

    from streamer.app.assembly import App
    from streamer.config import Config
    from streamer.demo.history import replay_history, scenarios
    from streamer.team.migrate import migrate

    (plan,) = scenarios(3, 28)[2:]  # athlete3: its seed is its index's
    store = tmp_path / "box.sqlite3"
    dates = [dt.date(2026, 3, 1) + dt.timedelta(days=d) for d in range(28)]

    async def replay() -> None:
        with App.from_config(Config(), store=str(store)) as app:
            app.athlete(plan.athlete, live=False)
            pipeline = app.pipeline([plan.athlete])
            task = asyncio.create_task(pipeline.run())
            await replay_history(pipeline.put, [plan], dates)
            await pipeline.join()
            pipeline.stop()
            await task

    asyncio.run(replay())
    with Store(store, read_only=True) as s:
        want = s.load_alert_book(plan.athlete)
        grips = len(s.grip_tests(plan.athlete))
    assert want is not None
    assert grips > 0
    resumed = want.get("resumed")
    assert isinstance(resumed, list)
    rules = [a.get("rule") for a in resumed if isinstance(a, dict)]
    assert "hr_grip_flat" in rules, "the single box clears hr_grip_flat at a grip test"
    migrate(postgres.dsn, [store], Config(), 16)
    with psycopg.connect(postgres.dsn) as conn:
        row = conn.execute(
            "SELECT data FROM alert_book WHERE athlete = %s", (plan.athlete,)
        ).fetchone()
    assert row is not None
    got = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    assert got == want


# --- what a single box had not delivered ---------------------------------------------------------


def _unreachable_sinks() -> Config:
    """MQTT and InfluxDB on ports nobody listens on: every result stays in the outboxes."""
    from tests.servers import free_port

    return Config(
        mqtt=MqttConfig.from_url(f"mqtt://127.0.0.1:{free_port()}"),
        influx=InfluxConfig(url=f"http://127.0.0.1:{free_port()}", db="redox"),
    )


def _pending(path: Path) -> dict[str, list[Entry]]:
    with Store(path, read_only=True) as store:
        return {sink: Outbox(store, sink).peek(100_000) for sink in ("mqtt", "influx")}


def _boxes_with_pending_outboxes(tmp_path: Path) -> tuple[list[Path], dict[str, str]]:
    """Two boxes, one athlete each, whose broker and InfluxDB were never reachable; and
    each athlete's box path."""
    days = th.athlete_days(2, 2, sessions=False)
    stores, owner = [], {}
    for n, (athlete, messages) in enumerate(sorted(days.items())):
        path = tmp_path / f"box{n}.sqlite3"
        th.oracle({athlete: messages}, config=_unreachable_sinks(), store=str(path))
        stores.append(path)
        owner[athlete] = str(path)
    return stores, owner


def _pg_outbox(dsn: str, partition: int, sink: str) -> list[tuple[bytes, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"SELECT payload, meta FROM p{partition}.outbox_{sink} ORDER BY id"  # type: ignore[arg-type]
        ).fetchall()
    return [(bytes(p), str(m)) for p, m in rows]


def test_migrate_queues_each_boxs_undelivered_messages_in_its_athletes_partition_once(
    postgres: PostgreSQL, tmp_path: Path
) -> None:
    """Every pending MQTT and InfluxDB message of both boxes lands in the outbox of its
    athlete's partition, unchanged and in its box's order; each topic's seq in PostgreSQL is
    at or above every pending message's; a re-run moves nothing again, also after a worker
    drained the outboxes."""
    from streamer.team.migrate import migrate

    stores, owner = _boxes_with_pending_outboxes(tmp_path)
    pending = {path: _pending(path) for path in stores}
    assert all(p["mqtt"] and p["influx"] for p in pending.values()), "pending rows to move"
    report = migrate(postgres.dsn, stores, Config(), 16)
    assert report.outbox == {
        sink: sum(len(p[sink]) for p in pending.values()) for sink in ("mqtt", "influx")
    }
    for athlete, path in owner.items():
        partition = wire.partition_of(athlete)
        for sink in ("mqtt", "influx"):
            want = [e.payload for e in pending[Path(path)][sink]]
            got = [p for p, _ in _pg_outbox(postgres.dsn, partition, sink)]
            # Both athletes may share a partition: this athlete's rows, in its box's order.
            mine = [p for p in got if p in set(want)]
            assert mine == want, f"{athlete} {sink} in partition {partition}"
        metas = [json.loads(m) for _, m in _pg_outbox(postgres.dsn, partition, "mqtt")]
        assert all({"topic", "qos", "retain"} <= set(m) for m in metas)
    with psycopg.connect(postgres.dsn) as conn:
        pg_seqs = dict(conn.execute("SELECT topic, last FROM seq").fetchall())
    for p in pending.values():
        for entry in p["mqtt"]:
            seq = json.loads(entry.payload)["seq"]
            assert pg_seqs[str(entry.meta["topic"])] >= seq

    def total() -> int:
        return sum(
            len(_pg_outbox(postgres.dsn, wire.partition_of(a), sink))
            for a in {wire.partition_of(a): a for a in owner}.values()
            for sink in ("mqtt", "influx")
        )

    moved = total()
    assert moved == sum(report.outbox.values())
    again = migrate(postgres.dsn, stores, Config(), 16)
    assert again.outbox == {"mqtt": 0, "influx": 0}
    assert total() == moved
    # A worker drained them; migrating again must not queue them a second time.
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        for p in range(16):
            conn.execute(f"DELETE FROM p{p}.outbox_mqtt")  # type: ignore[arg-type]
            conn.execute(f"DELETE FROM p{p}.outbox_influx")  # type: ignore[arg-type]
    assert migrate(postgres.dsn, stores, Config(), 16).outbox == {"mqtt": 0, "influx": 0}
    assert total() == 0


@pytest.mark.parametrize(
    ("line", "athlete"),
    [
        ("morning,athlete=ann rmssd_ms=50 1", "ann"),
        ("grip,device=t,athlete=b_2,class=x drop_pct=3i 1", "b_2"),
        (r"hr,device=a\,b\ c,athlete=z hr_bpm=60 1", "z"),
        ("hr hr_bpm=60 1", None),
    ],
)
def test_an_influx_point_names_its_athlete_by_its_tag(line: str, athlete: str | None) -> None:
    from streamer.team.migrate import outbox_athlete

    assert outbox_athlete("influx", Entry(1, line.encode(), {}, 1)) == athlete


def test_migrated_undelivered_messages_reach_the_broker_once_through_a_worker(
    postgres: PostgreSQL, nats_server: NatsServer, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """End to end: boxes with pending MQTT messages → migrate → a worker owning every
    partition drains them to a real mosquitto: each exactly once, in each topic's seq
    order, and the partitions' outboxes are empty after."""
    from streamer.team.migrate import migrate
    from streamer.team.worker import Worker, WorkerOptions

    stores, _ = _boxes_with_pending_outboxes(tmp_path)
    pending = [e for path in stores for e in _pending(path)["mqtt"]]
    want = {(str(e.meta["topic"]), json.loads(e.payload)["seq"]) for e in pending}
    assert len(want) == len(pending) > 0
    assert migrate(postgres.dsn, stores, Config(), 16).outbox["mqtt"] == len(pending)

    async def scenario() -> list[Received]:
        sub = await Subscriber("127.0.0.1", mosquitto.port, client_id="migrated-sub").start()
        nc = await nats.connect(nats_server.url)
        await th.ensure_stream(nc.jetstream())
        await nc.close()
        worker = Worker(
            "w",
            nats_url=nats_server.url,
            dsn=postgres.dsn,
            config=Config(mqtt=MqttConfig.from_url(mosquitto.url)),
            options=WorkerOptions(live=False),
        )
        task = asyncio.create_task(worker.run())

        def delivered() -> set[tuple[str, int]]:
            return {
                (m.topic, int(m.json()["seq"]))  # type: ignore[call-overload]
                for m in sub.received
                if m.payload.startswith(b"{")
            }

        try:
            await sub.wait_for(
                lambda: want <= delivered() or task.done(), 300, "the migrated messages"
            )
            await eventually(lambda: _left(postgres.dsn) == 0, 60, "the outboxes drained")
        finally:
            worker.stop()
            await task
            await sub.stop()
        return sub.received

    received = asyncio.run(scenario())
    got = [
        (m.topic, int(m.json()["seq"]))  # type: ignore[call-overload]
        for m in received
        if m.payload.startswith(b"{")
    ]
    assert sorted(got) == sorted(want), "each pending message once"
    for topic in {t for t, _ in want}:
        seqs = [s for t, s in got if t == topic]
        assert seqs == sorted(seqs), f"{topic} out of order"


def _left(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return sum(
            int((conn.execute(f"SELECT count(*) FROM p{p}.outbox_mqtt").fetchone() or (0,))[0])  # type: ignore[arg-type]
            for p in range(16)
        )
