"""Merge single-box SQLite stores (``run``'s) into the team's PostgreSQL store.

* history: mornings by athlete and date — where two stores hold the same day, an accepted
  reading wins over a rejected one, then the later one; sessions, grip tests and alert
  events by their unique keys (the same row in two stores is kept once);
* ``seq``: each topic's last number is set to the highest of every store's and the
  PostgreSQL store's, so a consumer's ``seq`` rule never sees a number again;
* the alert book and baselines are **recomputed** by replaying the merged history, in time
  order, through an :class:`~streamer.athlete.AthleteState` with the athlete's thresholds:
  accepted mornings as :class:`~streamer.athlete.events.DayValues` (the rules' morning
  evaluation, baselines saved as a reading saves them), sessions through the rule engine's
  session evaluation, grip tests through ``hr_grip_flat`` (it needs only their MVC and
  day; the grip protocol's own rules need the raw force traces, which the store does not
  keep: an alert of a grip rule open in a store's book is carried over).

* outboxes: every store's undelivered MQTT and InfluxDB messages (:mod:`streamer.sinks.outbox`)
  go into the outbox of the same sink of the athlete's partition (:func:`streamer.team.wire.
  partition_of`; a message naming no athlete into partition 0's), unchanged — an MQTT message
  keeps its ``seq``, so one the box had sent but not seen acknowledged is dropped by
  consumers as a resend — each store's in its order, stores interleaved by queueing time.
  The first worker to own the partition drains them. Each message moved is remembered by a
  digest (``migrated_outbox``) in the same transaction, so a re-run moves none twice, also
  after a worker has drained them. Dead letters stay in the stores.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import heapq
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from processors.alerts import AlertBook
from streamer.app.assembly import athlete_thresholds
from streamer.athlete import AthleteState
from streamer.athlete.events import DayValues
from streamer.athlete.rules import SessionFacts
from streamer.config import Config
from streamer.results import GripPayload, JsonValue, LabPayload, MorningPayload, SessionPayload
from streamer.sinks.outbox import Entry, Outbox
from streamer.store import Row, Store, StoreError
from streamer.team.pg_store import SINKS, PgStore, connect, ensure_schema, partition_schema
from streamer.team.wire import partition_of

LAB_RULES: Final = frozenset(
    {"gsh_gssg_low", "gsh_gssg_high", "droms_rise", "lipid_dipstick_positive"}
)
"""Rules judged on lab entries entered by hand (:mod:`processors.labs`): not replayed."""

GRIP_RULE_PREFIX = "grip"
"""Rules of the grip protocol (``processors.rules`` ids start with it): not replayable."""


@dataclass
class Merged:
    """One athlete's history merged from every store."""

    mornings: dict[str, Row[MorningPayload]] = field(default_factory=dict)
    sessions: dict[tuple[int, str], Row[SessionPayload]] = field(default_factory=dict)
    grips: dict[tuple[int, str], Row[GripPayload]] = field(default_factory=dict)
    labs: dict[tuple[int, str], Row[LabPayload]] = field(default_factory=dict)
    alerts: set[tuple[int, str, str, str]] = field(default_factory=set)  # ts, rule, state, data
    books: list[dict[str, JsonValue]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What was written: rows per table, topics whose ``seq`` was raised, athletes."""

    athletes: int
    rows: dict[str, int]
    topics: int
    open_alerts: int
    outbox: dict[str, int] = field(default_factory=dict)
    """Undelivered messages moved per sink (``mqtt``, ``influx``); none twice on a re-run."""


def _better(new: Row[MorningPayload], old: Row[MorningPayload] | None) -> bool:
    if old is None:
        return True
    return (bool(new.payload.accepted), new.ts_ns) > (bool(old.payload.accepted), old.ts_ns)


def read_stores(paths: Sequence[Path]) -> tuple[dict[str, Merged], dict[str, int]]:
    """Every store's history merged per athlete, and each topic's highest ``seq``."""
    merged: dict[str, Merged] = {}
    seqs: dict[str, int] = {}
    for path in paths:
        if not path.is_file():
            raise StoreError(f"{path}: no such store file; give the path of a `run` store")
        with Store(path, read_only=True) as store:
            for athlete in store.athletes():
                m = merged.setdefault(athlete, Merged())
                for row in store.morning_history(athlete):
                    assert row.date is not None
                    if _better(row, m.mornings.get(row.date)):
                        m.mornings[row.date] = row
                for s in store.sessions(athlete):
                    m.sessions[(s.ts_ns, s.device or "")] = s
                for g in store.grip_tests(athlete):
                    m.grips[(g.ts_ns, g.device or "")] = g
                for lab in store.lab_entries(athlete):
                    m.labs[(lab.ts_ns, str(lab.data.get("marker")))] = lab
                for a in store.alerts(athlete):
                    import json

                    data = json.dumps(a.data, separators=(",", ":"), allow_nan=False)
                    m.alerts.add((a.ts_ns, a.rule, a.state, data))
                book = store.load_alert_book(athlete)
                if book is not None:
                    m.books.append(book)
            if store.has_table("seq"):
                for topic, last in store.query("SELECT topic, last FROM seq"):
                    seqs[str(topic)] = max(seqs.get(str(topic), 0), int(str(last)))
    return merged, seqs


_OUTBOX_PAGE: Final = 1000


def read_outboxes(paths: Sequence[Path]) -> dict[str, list[Entry]]:
    """Per sink (:data:`streamer.team.pg_store.SINKS`), every store's undelivered messages:
    each store's in its outbox order, the stores interleaved by queueing time."""
    out: dict[str, list[Entry]] = {}
    per_store: dict[str, list[list[Entry]]] = {sink: [] for sink in SINKS}
    for path in paths:
        with Store(path, read_only=True) as store:
            for sink in SINKS:
                outbox, entries, after = Outbox(store, sink), [], 0
                while page := outbox.peek(_OUTBOX_PAGE, after_id=after):
                    entries += page
                    after = page[-1].id
                per_store[sink].append(entries)
    for sink, lists in per_store.items():
        # merge() takes each list's items in their order: a store's order is kept even if
        # its clock stepped back.
        out[sink] = list(heapq.merge(*lists, key=lambda e: e.created_ns))
    return out


def outbox_athlete(sink: str, entry: Entry) -> str | None:
    """The athlete an outbox message is about: the MQTT payload's ``athlete``, the
    InfluxDB point's ``athlete`` tag; None when it names none."""
    if sink == "mqtt":
        try:
            athlete = json.loads(entry.payload).get("athlete")
        except (ValueError, AttributeError):
            return None
        return athlete if isinstance(athlete, str) else None
    return _line_tag(entry.payload.decode(errors="replace"), "athlete")


def _line_tag(line: str, name: str) -> str | None:
    """A tag's value in a line-protocol point (``measurement,tag=v,… fields ts``; a
    backslash escapes a comma, an equals sign or a space in a tag)."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(line)
    for c in chars:
        if c == "\\":
            current.append(next(chars, ""))
        elif c == ",":
            parts.append("".join(current))
            current = []
        elif c == " ":
            break
        else:
            current.append(c)
    parts.append("".join(current))
    for tag in parts[1:]:
        key, _, value = tag.partition("=")
        if key == name:
            return value
    return None


def _digest(sink: str, entry: Entry) -> str:
    """What identifies a store's outbox row across re-runs (and copies of the store)."""
    h = hashlib.sha256(f"{sink}\0{entry.id}\0{entry.created_ns}\0".encode())
    h.update(json.dumps(entry.meta, sort_keys=True).encode() + b"\0" + entry.payload)
    return h.hexdigest()


def move_outboxes(
    db: Any, outboxes: Mapping[str, Sequence[Entry]], partitions: int
) -> dict[str, int]:
    """Within the migration's transaction: each message into its athlete's partition outbox,
    unless an earlier run moved it. Returns how many moved per sink."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS migrated_outbox (digest TEXT PRIMARY KEY, sink TEXT NOT "
        "NULL, partition INTEGER NOT NULL, migrated_ns BIGINT NOT NULL)"
    )
    moved = dict.fromkeys(outboxes, 0)
    now_ns = time.time_ns()
    for sink, entries in outboxes.items():
        for entry in entries:
            athlete = outbox_athlete(sink, entry)
            partition = partition_of(athlete, partitions) if athlete else 0
            first = db.execute(
                "INSERT INTO migrated_outbox (digest, sink, partition, migrated_ns) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING digest",
                (_digest(sink, entry), sink, partition, now_ns),
            ).fetchone()
            if first is None:
                continue  # moved by an earlier run
            db.execute(
                f"INSERT INTO {partition_schema(partition)}.outbox_{sink} "
                "(payload, meta, created_ns) VALUES (?, ?, ?)",
                (entry.payload, json.dumps(entry.meta, separators=(",", ":")), entry.created_ns),
            )
            moved[sink] += 1
    return moved


class _Recomputed:
    """The history an athlete replays into: nothing loaded, saves kept here."""

    def __init__(self) -> None:
        self.book: dict[str, JsonValue] | None = None
        self.baselines: dict[str, dict[str, JsonValue]] = {}

    def morning_history(self, athlete: str) -> list[Row[MorningPayload]]:
        return []

    def sessions(self, athlete: str) -> list[Row[SessionPayload]]:
        return []

    def grip_tests(self, athlete: str) -> list[Row[GripPayload]]:
        return []

    def lab_entries(self, athlete: str) -> list[Row[LabPayload]]:
        return []

    def load_alert_book(self, athlete: str) -> dict[str, JsonValue] | None:
        return None

    def save_alert_book(self, athlete: str, state: Mapping[str, JsonValue]) -> None:
        self.book = dict(state)

    def save_baseline(self, athlete: str, name: str, data: Mapping[str, JsonValue]) -> None:
        self.baselines[name] = dict(data)


def recompute(athlete: str, m: Merged, config: Config) -> _Recomputed:
    """The alert book and baselines of the merged history, replayed through the rules."""
    kept = _Recomputed()
    state = AthleteState(athlete, kept, athlete_thresholds(config, athlete), live=False)
    events: list[tuple[int, int, Any]] = []
    for day, row in m.mornings.items():
        p = row.payload
        if p.accepted and p.rmssd_ms and p.resting_hr_bpm:
            events.append((row.ts_ns, 0, (day, p)))
    events += [(s.ts_ns, 1, s.payload) for s in m.sessions.values()]
    events += [(g.ts_ns, 2, g.payload) for g in m.grips.values()]
    for ts_ns, kind, item in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == 0:
            day, p = item
            values = DayValues(
                ts_ns, dt.date.fromisoformat(day), float(p.rmssd_ms), float(p.resting_hr_bpm),
                p.source or "rr",
            )  # fmt: skip
            state.process("migrate", values)
        elif kind == 1:
            s: SessionPayload = item
            start = ts_ns - round(float(s.duration_s) * 1e9)
            rpe = None if s.rpe is None else float(s.rpe)
            power = None if s.mean_power_w is None else float(s.mean_power_w)
            recovery = None if s.recovery_s is None else float(s.recovery_s)
            verdict = state.rules.session(
                SessionFacts(start, ts_ns, rpe, power), s.n_efforts, recovery
            )
            state.readiness.apply(verdict.evaluations, ts_ns)
        else:
            # hr_grip_flat is judged on each grip test as a single box judged it (its clear
            # or raise at the test's time, not the next morning's); the protocol's own rules
            # need the force traces, so their open alerts are carried over below.
            grip: GripPayload = item
            state.readiness.apply(state.rules.grip_summary(grip, ts_ns), ts_ns)
    book = state.book.to_dict()
    open_rules = {str(a["rule"]) for a in book["open"]}
    # Grip rules cannot be replayed (no raw force traces are kept) and lab rules are not:
    # carry their open alerts over. The lab entries themselves are copied, so the worker's
    # lab history (dROMs baseline) goes on from them.
    for saved in m.books:
        for alert in AlertBook.from_dict(saved).open_alerts():
            rule = alert.rule_id
            carried = rule.startswith(GRIP_RULE_PREFIX) or rule in LAB_RULES
            if carried and rule not in open_rules:
                book["open"].append(dataclasses.replace(alert, athlete=athlete).to_dict())
                open_rules.add(rule)
    book["open"].sort(key=lambda a: str(a["rule"]))
    kept.book = book
    return kept


def migrate(dsn: str, paths: Sequence[Path], config: Config, partitions: int) -> MigrationReport:
    """Merge the stores at ``paths`` into the PostgreSQL store at ``dsn``."""
    merged, seqs = read_stores(paths)
    outboxes = read_outboxes(paths)
    moved: dict[str, int] = {}
    conn = connect(dsn, application="redox-migrate")
    rows = {"morning": 0, "sessions": 0, "grip_tests": 0, "lab_entries": 0, "alerts": 0}
    opened = 0
    try:
        ensure_schema(conn, partitions)
        store = PgStore(conn, 0, "PostgreSQL")
        with store.transaction() as db:
            for athlete, m in sorted(merged.items()):
                for day, r in sorted(m.mornings.items()):
                    db.execute(
                        "INSERT INTO morning (athlete, date, ts_ns, data) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (athlete, date) DO UPDATE SET ts_ns = excluded.ts_ns, "
                        "data = excluded.data",
                        (athlete, day, r.ts_ns, _dumps(r.data)),
                    )
                    rows["morning"] += 1
                tables: list[tuple[str, Mapping[tuple[int, str], Row[Any]]]] = [
                    ("sessions", m.sessions),
                    ("grip_tests", m.grips),
                ]
                for table, items in tables:
                    for (ts, device), r2 in sorted(items.items()):
                        db.execute(
                            f"INSERT INTO {table} (athlete, ts_ns, device, data) "
                            "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                            (athlete, ts, device, _dumps(r2.data)),
                        )
                        rows[table] += 1
                for (ts, marker), lab in sorted(m.labs.items()):
                    db.execute(
                        "INSERT INTO lab_entries (athlete, ts_ns, marker, data) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (athlete, ts, marker, _dumps(lab.data)),
                    )
                    rows["lab_entries"] += 1
                for ts, rule, st, text in sorted(m.alerts):
                    db.execute(
                        "INSERT INTO alerts (athlete, ts_ns, rule, state, data) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (athlete, ts, rule, st, text),
                    )
                    rows["alerts"] += 1
                kept = recompute(athlete, m, config)
                if kept.book is not None:
                    store.save_alert_book(athlete, kept.book)
                    opened += len(AlertBook.from_dict(kept.book).open_alerts())
                for name, data in kept.baselines.items():
                    store.save_baseline(athlete, name, data)
            for topic, last in seqs.items():
                db.execute(
                    "INSERT INTO seq AS s (topic, last) VALUES (?, ?) ON CONFLICT (topic) "
                    "DO UPDATE SET last = GREATEST(s.last, excluded.last)",
                    (topic, last),
                )
            moved = move_outboxes(db, outboxes, partitions)
    finally:
        conn.close()
    return MigrationReport(len(merged), rows, len(seqs), opened, moved)


def _dumps(data: Mapping[str, object]) -> str:
    import json

    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def store_paths(paths: Sequence[str]) -> list[Path]:
    """The arguments as paths (kept for the command's messages)."""
    return [Path(p) for p in paths]
