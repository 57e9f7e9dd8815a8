"""The store of team mode in PostgreSQL: what ``run``'s SQLite store keeps for processing.

Tables (schema ``public``) — the SQLite store's, with unique keys that make a replay write
the same rows again instead of new ones:

* history: ``morning`` (athlete, date), ``sessions`` (athlete, ts_ns, device), ``grip_tests``
  (athlete, ts_ns, device), ``alerts`` (athlete, ts_ns, rule, state); a row's ``data`` is the
  result's JSON fields as published, its ``ts_ns`` the record time the processors gave it;
* state: ``alert_book`` and ``baselines`` (the processors' JSON), ``seq`` (per-topic numbers,
  shared by every worker: a topic belongs to one athlete, an athlete to one partition);
* team: ``checkpoint`` (per partition, the last stream sequence whose outputs are written),
  ``replay_from`` (per athlete, where a takeover's replay starts and a snapshot of the
  athlete's signal windows there, see :mod:`streamer.team.worker`), ``leases`` (every
  device lease grant seen, by stream sequence), ``schema_version``.

The sinks' outboxes are per partition, in a schema ``p<N>`` each (``outbox_mqtt``,
``outbox_influx`` and their dead letters): :class:`PgStore` sets ``search_path`` to it, so
the existing sinks (:mod:`streamer.sinks.outbox`, whose SQL names unqualified tables) drain
exactly the partition the worker owns, and a partition handed over takes its undelivered
messages with it, in order.

**psycopg 3, not asyncpg.** The sinks and the pipeline use the store through a synchronous
interface (``transaction()``, ``query()``, called with ``asyncio.to_thread`` by the sinks);
psycopg 3 has the same connection in a synchronous and an asynchronous flavour, nested
``transaction()`` blocks as savepoints (the SQLite store's semantics), and one explicit
connection object per partition — the connection that holds the partition's session-level
advisory lock is the one every write of that partition goes through, so a worker whose
connection died cannot write any more. asyncpg is async only (the sinks' synchronous calls
would need a second driver) and hands out pooled connections, which is the wrong shape for
a lock that lives on one session.

Times are ns since the Unix epoch (UTC), dates ISO ``YYYY-MM-DD``, as in :mod:`streamer.store`.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg

from streamer.results import (
    AlertsPayload,
    GripPayload,
    JsonValue,
    LabPayload,
    MorningPayload,
    Result,
    SessionPayload,
    payload_type,
)
from streamer.store import HISTORY_TYPES, AlertRow, Row, StoreError, seq_seed

SCHEMA_VERSION: Final = 1

LOCK_CLASS: Final = 0x5EDB
"""The first key of the partition advisory locks (``pg_try_advisory_lock(LOCK_CLASS, p)``):
a constant of this application, so other users of the database's advisory locks don't clash."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS morning (
    athlete TEXT NOT NULL, date TEXT NOT NULL, ts_ns BIGINT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (athlete, date));
CREATE TABLE IF NOT EXISTS sessions (
    athlete TEXT NOT NULL, ts_ns BIGINT NOT NULL, device TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL, PRIMARY KEY (athlete, ts_ns, device));
CREATE TABLE IF NOT EXISTS grip_tests (
    athlete TEXT NOT NULL, ts_ns BIGINT NOT NULL, device TEXT NOT NULL DEFAULT '',
    data TEXT NOT NULL, PRIMARY KEY (athlete, ts_ns, device));
CREATE TABLE IF NOT EXISTS alerts (
    athlete TEXT NOT NULL, ts_ns BIGINT NOT NULL, rule TEXT NOT NULL, state TEXT NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (athlete, ts_ns, rule, state));
CREATE TABLE IF NOT EXISTS lab_entries (
    athlete TEXT NOT NULL, ts_ns BIGINT NOT NULL, marker TEXT NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (athlete, ts_ns, marker));
CREATE TABLE IF NOT EXISTS alert_book (
    athlete TEXT PRIMARY KEY, updated_ns BIGINT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS baselines (
    athlete TEXT NOT NULL, name TEXT NOT NULL, updated_ns BIGINT NOT NULL,
    data TEXT NOT NULL, PRIMARY KEY (athlete, name));
CREATE TABLE IF NOT EXISTS seq (topic TEXT PRIMARY KEY, last BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (
    partition INTEGER PRIMARY KEY, applied BIGINT NOT NULL, updated_ns BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS replay_from (
    athlete TEXT PRIMARY KEY, partition INTEGER NOT NULL, seq BIGINT NOT NULL,
    windows BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    athlete TEXT NOT NULL, device TEXT NOT NULL, seq BIGINT NOT NULL, gateway TEXT NOT NULL,
    partition INTEGER NOT NULL, PRIMARY KEY (athlete, device, seq));
"""

_PARTITION_SCHEMA: Final = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.outbox_{sink} (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload BYTEA NOT NULL,
    meta TEXT NOT NULL DEFAULT '{{}}', created_ns BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS {schema}.dead_letter_{sink} (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload BYTEA NOT NULL,
    meta TEXT NOT NULL DEFAULT '{{}}', status INTEGER NOT NULL, error TEXT NOT NULL,
    created_ns BIGINT NOT NULL);
"""

SINKS: Final = ("mqtt", "influx")
"""The sinks whose outboxes each partition schema holds (:data:`streamer.sinks.mqtt.OUTBOX`,
:data:`streamer.sinks.influx.OUTBOX`)."""

KEEPALIVE: Final[dict[str, Any]] = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                    "keepalives_count": 3, "tcp_user_timeout": 11_000}  # fmt: skip
"""TCP keepalives: a worker cut off from the server loses its session (and its locks) in
~11 s instead of the kernel's two hours — also with a statement sent and not acknowledged
(``tcp_user_timeout``, ms: keepalives do not run then, retransmissions would for ~15 min)."""


class PgStoreError(StoreError):
    """The PostgreSQL store cannot be used (names the server and what to do)."""


def partition_schema(partition: int) -> str:
    """The schema holding one partition's outboxes."""
    return f"p{partition}"


def connect(dsn: str, *, application: str = "redox-streamer") -> psycopg.Connection[Any]:
    """An autocommit connection (transactions are explicit) with TCP keepalives.

    :class:`PgStoreError` names the server when it cannot be reached.
    """
    try:
        return psycopg.connect(dsn, autocommit=True, application_name=application, **KEEPALIVE)
    except psycopg.Error as exc:
        raise PgStoreError(
            f"cannot connect to PostgreSQL {_safe(dsn)}: {str(exc).strip().splitlines()[0]} "
            "— check --postgres (postgresql://user@host:port/db) and that the server runs"
        ) from None


def _safe(dsn: str) -> str:
    """The DSN without a password (for messages)."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        who, where = rest.rsplit("@", 1)
        return f"{scheme}://{who.split(':', 1)[0]}@{where}"
    return dsn


def ensure_schema(conn: psycopg.Connection[Any], partitions: int) -> None:
    """Create the tables and ``partitions`` outbox schemas if missing (idempotent; several
    workers may race: serialised by a transaction-level advisory lock)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, -1)", (LOCK_CLASS,))
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        version = row[0] if row else None
        if version is None:
            conn.execute("INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION,))
        elif version > SCHEMA_VERSION:
            raise PgStoreError(
                f"the PostgreSQL store has schema version {version}, newer than this "
                f"redox-streamer understands ({SCHEMA_VERSION}): upgrade redox-streamer"
            )
        for p in range(partitions):
            for sink in SINKS:
                script = _PARTITION_SCHEMA.format(schema=partition_schema(p), sink=sink)
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)


def _dumps(data: Mapping[str, object]) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def _loads(text: object) -> dict[str, JsonValue]:
    obj = json.loads(str(text))
    if not isinstance(obj, dict):
        raise StoreError(f"corrupt row in the PostgreSQL store: {str(text)[:80]!r}")
    return obj


def _blob(value: object) -> bytes:
    if isinstance(value, bytes | memoryview):
        return bytes(value)
    raise StoreError(f"corrupt row in the PostgreSQL store: {type(value).__name__}, not bytes")


def _utc_date(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, dt.UTC).date().isoformat()


class _Cursor:
    """The slice of ``sqlite3.Connection`` the sinks' outbox SQL uses, over psycopg:
    ``?`` placeholders become ``%s`` (the outbox statements hold no other ``?`` or ``%``)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> psycopg.Cursor[Any]:
        cur = self._conn.cursor()
        cur.executemany(sql.replace("?", "%s"), rows)
        return cur


class PgStore:
    """One partition's view of the PostgreSQL store, on the connection that holds its lock.

    It has the methods of :class:`streamer.store.Store` that the pipeline's history, the
    athletes (:class:`streamer.athlete.persistence.AthleteHistory`) and the sinks
    (:mod:`streamer.sinks.outbox`, the MQTT live ``seq``) use, so they run unchanged on it.
    One connection is shared under a lock by the processing loop and the sinks' threads;
    a transaction inside another is a savepoint of it.
    """

    read_only: Final = False

    def __init__(self, conn: psycopg.Connection[Any], partition: int, label: str) -> None:
        self.conn = conn
        self.partition = partition
        self.path = label  # what messages name (as the SQLite store names its file)
        self.lock = threading.RLock()
        """Held around every statement and transaction: the processing loop and the sinks'
        threads share the connection."""
        conn.execute(f"SET search_path TO {partition_schema(partition)}, public")

    # --- the Store surface the sinks use -----------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[_Cursor]:
        """One transaction (a savepoint inside another); committed on exit."""
        with self.lock, self.conn.transaction():
            yield _Cursor(self.conn)

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """The rows of one read statement written for SQLite (``?`` placeholders)."""
        with self.lock:
            return list(_Cursor(self.conn).execute(sql, params).fetchall())

    def has_table(self, name: str) -> bool:
        """Whether ``name`` resolves on the search path (the partition's schema, public)."""
        with self.lock:
            row = self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return bool(row and row[0])

    @staticmethod
    def reserve_seq_in(db: _Cursor, topic: str, n: int) -> int:
        """:meth:`streamer.store.Store.reserve_seq_in` in PostgreSQL."""
        row = db.execute(
            "INSERT INTO seq AS s (topic, last) VALUES (?, ?) ON CONFLICT (topic) "
            "DO UPDATE SET last = s.last + ? RETURNING last",
            (topic, seq_seed() - 1 + n, n),
        ).fetchone()
        assert row is not None
        return int(row[0]) - n + 1

    def reserve_seq(self, topic: str, n: int = 1) -> int:
        """Reserve ``n`` numbers on ``topic``; returns the first (see the SQLite store)."""
        if n < 1:
            raise ValueError(f"reserve at least one number, not {n}")
        with self.transaction() as db:
            return self.reserve_seq_in(db, topic, n)

    def last_seq(self, topic: str) -> int:
        """The last number handed out on ``topic`` (0 if none)."""
        rows = self.query("SELECT last FROM seq WHERE topic = ?", (topic,))
        return int(str(rows[0][0])) if rows else 0

    # --- history ----------------------------------------------------------------------------

    def record(self, result: Result) -> bool:
        """Keep a durable result in its history table (see :meth:`streamer.store.Store.record`);
        a result with the same key (a replay, an RPE amending a session) replaces its row."""
        if payload_type(result.kind, result.fields) not in HISTORY_TYPES:
            return False
        data = _dumps(dict(result.fields))
        athlete, ts, device = result.athlete, result.ts_ns, result.device or ""
        with self.transaction() as db:
            match result.payload:
                case MorningPayload(date=day):
                    db.execute(
                        "INSERT INTO morning (athlete, date, ts_ns, data) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (athlete, date) DO UPDATE SET ts_ns = excluded.ts_ns, "
                        "data = excluded.data",
                        (athlete, day or _utc_date(ts), ts, data),
                    )
                case SessionPayload():
                    db.execute(
                        "INSERT INTO sessions (athlete, ts_ns, device, data) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (athlete, ts_ns, device) DO UPDATE SET data = excluded.data",
                        (athlete, ts, device, data),
                    )
                case GripPayload():
                    db.execute(
                        "INSERT INTO grip_tests (athlete, ts_ns, device, data) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (athlete, ts_ns, device) "
                        "DO UPDATE SET data = excluded.data",
                        (athlete, ts, device, data),
                    )
                case LabPayload(marker=marker):
                    db.execute(
                        "INSERT INTO lab_entries (athlete, ts_ns, marker, data) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (athlete, ts_ns, marker) "
                        "DO UPDATE SET data = excluded.data",
                        (athlete, ts, marker, data),
                    )
                case AlertsPayload(event=event):
                    db.execute(
                        "INSERT INTO alerts (athlete, ts_ns, rule, state, data) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (athlete, ts_ns, rule, state) "
                        "DO UPDATE SET data = excluded.data",
                        (athlete, ts, event.rule, event.state, _dumps(event.fields())),
                    )
                case _:
                    return False
        return True

    def morning_history(self, athlete: str) -> list[Row[MorningPayload]]:
        """Daily morning readings of ``athlete``, by date."""
        rows = self.query(
            "SELECT ts_ns, data, date FROM morning WHERE athlete = ? ORDER BY date", (athlete,)
        )
        return [
            Row(athlete, int(str(t)), _loads(d), None, str(day), payload_type=MorningPayload)
            for t, d, day in rows
        ]

    def sessions(self, athlete: str) -> list[Row[SessionPayload]]:
        """Session summaries of ``athlete``, oldest first."""
        return self._rows("sessions", SessionPayload, athlete)

    def grip_tests(self, athlete: str) -> list[Row[GripPayload]]:
        """Grip tests of ``athlete``, oldest first."""
        return self._rows("grip_tests", GripPayload, athlete)

    def lab_entries(self, athlete: str) -> list[Row[LabPayload]]:
        """Lab markers entered by hand of ``athlete``, oldest (sample time) first."""
        rows = self.query(
            "SELECT ts_ns, data FROM lab_entries WHERE athlete = ? ORDER BY ts_ns, marker",
            (athlete,),
        )
        return [Row(athlete, int(str(t)), _loads(d), payload_type=LabPayload) for t, d in rows]

    def _rows(self, table: str, kind: Any, athlete: str) -> list[Any]:
        rows = self.query(
            f"SELECT ts_ns, device, data FROM {table} WHERE athlete = ? ORDER BY ts_ns, device",
            (athlete,),
        )
        return [
            Row(athlete, int(str(t)), _loads(d), str(dev) or None, payload_type=kind)
            for t, dev, d in rows
        ]

    def alerts(self, athlete: str | None = None) -> list[AlertRow]:
        """Alert events (of one athlete, or all), by time."""
        rows = self.query(
            "SELECT athlete, ts_ns, rule, state, data FROM alerts "
            "WHERE (?::text IS NULL OR athlete = ?) ORDER BY ts_ns, rule, state",
            (athlete, athlete),
        )
        return [AlertRow(str(a), int(str(t)), str(r), str(s), _loads(d)) for a, t, r, s, d in rows]

    # --- state ------------------------------------------------------------------------------

    def save_alert_book(self, athlete: str, state: Mapping[str, JsonValue]) -> None:
        """Replace the alert book of ``athlete``."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO alert_book (athlete, updated_ns, data) VALUES (?, ?, ?) "
                "ON CONFLICT (athlete) DO UPDATE SET updated_ns = excluded.updated_ns, "
                "data = excluded.data",
                (athlete, time.time_ns(), _dumps(state)),
            )

    def load_alert_book(self, athlete: str) -> dict[str, JsonValue] | None:
        """The saved alert book of ``athlete``, or None."""
        rows = self.query("SELECT data FROM alert_book WHERE athlete = ?", (athlete,))
        return _loads(rows[0][0]) if rows else None

    def save_baseline(self, athlete: str, name: str, data: Mapping[str, JsonValue]) -> None:
        """Replace one baseline of ``athlete``."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO baselines (athlete, name, updated_ns, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (athlete, name) DO UPDATE SET updated_ns = excluded.updated_ns, "
                "data = excluded.data",
                (athlete, name, time.time_ns(), _dumps(data)),
            )

    # --- the partition's checkpoint -----------------------------------------------------------

    def lock_held(self) -> bool:
        """Whether this connection still holds the partition's advisory lock."""
        with self.lock:
            row = self.conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND objsubid = 2",
                (LOCK_CLASS, self.partition),
            ).fetchone()
        return bool(row and row[0])

    def checkpoint(self) -> int:
        """The last stream sequence of this partition whose outputs are written (0: none)."""
        rows = self.query("SELECT applied FROM checkpoint WHERE partition = ?", (self.partition,))
        return int(str(rows[0][0])) if rows else 0

    def set_checkpoint(self, db: _Cursor, applied: int) -> None:
        """Within the outputs' transaction: this partition's outputs through ``applied``
        are written. The lock is checked first: a worker that lost the partition fails here
        and its transaction (its outputs with it) is rolled back."""
        held = db.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = pg_backend_pid() AND classid = ? AND objid = ? AND objsubid = 2",
            (LOCK_CLASS, self.partition),
        ).fetchone()
        if not (held and held[0]):
            raise PartitionLost(f"partition {self.partition}: its lock is no longer held")
        db.execute(
            "INSERT INTO checkpoint (partition, applied, updated_ns) VALUES (?, ?, ?) "
            "ON CONFLICT (partition) DO UPDATE SET applied = excluded.applied, "
            "updated_ns = excluded.updated_ns",
            (self.partition, applied, time.time_ns()),
        )

    def replay_points(self) -> dict[str, tuple[int, bytes]]:
        """Per athlete of the partition: the stream sequence a takeover replays from and
        the snapshot of its windows there."""
        rows = self.query(
            "SELECT athlete, seq, windows FROM replay_from WHERE partition = ?", (self.partition,)
        )
        return {str(a): (int(str(s)), _blob(w)) for a, s, w in rows}

    def set_replay_point(self, db: _Cursor, athlete: str, seq: int, windows: bytes) -> None:
        """Within a transaction: ``athlete``'s replay starts at ``seq`` with ``windows``."""
        db.execute(
            "INSERT INTO replay_from (athlete, partition, seq, windows) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (athlete) DO UPDATE SET partition = excluded.partition, "
            "seq = excluded.seq, windows = excluded.windows",
            (athlete, self.partition, seq, windows),
        )

    def add_lease(self, db: _Cursor, athlete: str, device: str, seq: int, gateway: str) -> None:
        """Within a transaction: the lease grant at stream sequence ``seq``."""
        db.execute(
            "INSERT INTO leases (athlete, device, seq, gateway, partition) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (athlete, device, seq, gateway, self.partition),
        )

    def leases_before(self, seq: int) -> dict[tuple[str, str], str]:
        """The lease holder of each (athlete, device) of the partition just before ``seq``."""
        rows = self.query(
            "SELECT DISTINCT ON (athlete, device) athlete, device, gateway FROM leases "
            "WHERE partition = ? AND seq < ? ORDER BY athlete, device, seq DESC",
            (self.partition, seq),
        )
        return {(str(a), str(d)): str(g) for a, d, g in rows}


class PartitionLost(PgStoreError):
    """The worker no longer holds the partition's lock: it must stop processing it."""
