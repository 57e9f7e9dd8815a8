"""``redox-streamer migrate``: single-box stores merged into PostgreSQL (a real server).

The motivating case of team mode: one athlete whose mornings were split between two
gateways, each a full island with too few days for a baseline. Merged, the history is the
one a single box would have kept, and the alert book recomputed from it is that box's.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from processors.alerts import AlertBook
from streamer.athlete.events import MorningStart
from streamer.store import Store
from streamer.team.wire import WireMessage
from tests import team_worker_helpers as th
from tests.servers import PostgreSQL

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
