"""The local store: one SQLite file holding history, alert state, sequence numbers and outboxes.

It is the embedded default — with no MQTT broker and no InfluxDB configured, the product
still keeps its history here — and the durability layer under both network sinks:

* history the report and dashboards read: morning readings (one per athlete and day),
  sessions (oxygenation summaries), grip tests, alert events;
* state that must survive a restart: the alert book per athlete (a JSON blob the
  processors own), baselines, per-topic sequence numbers;
* one outbox per sink, which this module does not know: :mod:`streamer.sinks.outbox` keeps
  its tables in this file through :meth:`Store.transaction` and :meth:`Store.query`.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed row survives a crash or
SIGKILL of the process (not necessarily a power cut). Every method is synchronous and
short; asyncio callers run them with ``await asyncio.to_thread(store.method, ...)``. One
connection is shared under a lock, so the object can be used from several threads. The
schema version is kept in ``PRAGMA user_version``; opening a file written by a newer
version fails with an error that says so.

Times are nanoseconds since the Unix epoch (UTC); dates are ISO ``YYYY-MM-DD`` strings.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Generic, Self, TypeVar

import platformdirs

from streamer.errors import StreamerError
from streamer.results import (
    AlertPayload,
    AlertsPayload,
    GripPayload,
    JsonValue,
    MorningPayload,
    PayloadError,
    Result,
    SessionPayload,
    payload_type,
)

SCHEMA_VERSION: Final = 2
APP_NAME: Final = "redox-streamer"
DEFAULT_FILENAME: Final = "redox.sqlite3"

_SCHEMA_V1: Final = """
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

# Version 2: one generic outbox per sink (``streamer.sinks.outbox``: ``outbox_<sink>`` and
# ``dead_letter_<sink>``, an opaque payload and the sink's JSON meta) instead of the
# MQTT- and InfluxDB-shaped tables; queued rows move over with their ids, in order.
_SCHEMA_V2: Final = """
CREATE TABLE outbox_mqtt (
    id INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}', created_ns INTEGER NOT NULL);
CREATE TABLE dead_letter_mqtt (
    id INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}', status INTEGER NOT NULL, error TEXT NOT NULL,
    created_ns INTEGER NOT NULL);
CREATE TABLE outbox_influx (
    id INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}', created_ns INTEGER NOT NULL);
CREATE TABLE dead_letter_influx (
    id INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}', status INTEGER NOT NULL, error TEXT NOT NULL,
    created_ns INTEGER NOT NULL);
INSERT INTO outbox_mqtt (id, payload, meta, created_ns)
    SELECT id, payload, json_object('topic', topic, 'qos', qos,
        'retain', json(CASE WHEN retain THEN 'true' ELSE 'false' END)), created_ns
    FROM mqtt_outbox ORDER BY id;
INSERT INTO outbox_influx (id, payload, meta, created_ns)
    SELECT id, CAST(line AS BLOB), '{}', created_ns FROM influx_outbox ORDER BY id;
INSERT INTO dead_letter_influx (id, payload, meta, status, error, created_ns)
    SELECT id, CAST(line AS BLOB), '{}', status, error, created_ns
    FROM influx_dead_letter ORDER BY id;
DELETE FROM sqlite_sequence WHERE name IN ('outbox_mqtt', 'outbox_influx', 'dead_letter_influx');
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'outbox_mqtt', seq FROM sqlite_sequence WHERE name = 'mqtt_outbox'
    UNION ALL SELECT 'outbox_influx', seq FROM sqlite_sequence WHERE name = 'influx_outbox'
    UNION ALL SELECT 'dead_letter_influx', seq FROM sqlite_sequence
        WHERE name = 'influx_dead_letter';
DROP TABLE mqtt_outbox;
DROP TABLE influx_outbox;
DROP TABLE influx_dead_letter;
"""

#: The oldest schema whose history tables this code reads (read-only mode does not migrate).
_HISTORY_SINCE: Final = 1

#: Scripts that take the schema from version i to i+1 (index i); append, never edit.
_MIGRATIONS: Final[tuple[str, ...]] = (_SCHEMA_V1, _SCHEMA_V2)


def default_store_path() -> Path:
    """``<user data dir>/redox-streamer/redox.sqlite3`` (platformdirs)."""
    return platformdirs.user_data_path(APP_NAME) / DEFAULT_FILENAME


class StoreError(StreamerError):
    """The store file cannot be used (names the file and what to do)."""


#: A history table's payload type.
H = TypeVar("H", MorningPayload, SessionPayload, GripPayload)

#: The result payloads kept in the history (each in its table; see :meth:`Store.record`).
HISTORY_TYPES: Final = (MorningPayload, SessionPayload, GripPayload, AlertsPayload)


@dataclass(frozen=True, slots=True)
class Row(Generic[H]):
    """One history row: its time (ns), athlete, optional device/date, and its result.

    ``data`` is the result's JSON fields as stored; :attr:`payload` is them typed (the
    table's payload type, ``payload_type``).
    """

    athlete: str
    ts_ns: int
    data: dict[str, JsonValue]
    device: str | None = None
    date: str | None = None
    payload_type: type[H] = field(kw_only=True, repr=False)
    _payload: H | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def payload(self) -> H:
        """The stored result as its payload type; :class:`StoreError` when the row is not one."""
        parsed = self._payload
        if parsed is None:
            parsed = _parsed(self.payload_type, self.data, self.athlete, self.ts_ns)
            object.__setattr__(self, "_payload", parsed)
        return parsed


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One alert event in the history; :attr:`payload` is ``data`` typed."""

    athlete: str
    ts_ns: int
    rule: str
    state: str
    data: dict[str, JsonValue]

    @property
    def payload(self) -> AlertPayload:
        """The stored alert, its rule and state those of the row (:class:`StoreError` when
        the row is not one)."""
        data = {**self.data, "rule": self.rule, "state": self.state}
        return _parsed(AlertPayload, data, self.athlete, self.ts_ns)


_T = TypeVar("_T", MorningPayload, SessionPayload, GripPayload, AlertPayload)


def _parsed(cls: type[_T], data: Mapping[str, JsonValue], athlete: str, ts_ns: int) -> _T:
    try:
        return cls.from_fields(data)
    except PayloadError as exc:
        when = dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC).isoformat(timespec="seconds")
        raise StoreError(
            f"a stored row of {athlete!r} at {when} (ts_ns {ts_ns}) is not a {cls.__name__} "
            f"({exc}): written by another program or version; fix or delete that row"
        ) from exc


def _dumps(data: Mapping[str, object]) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def _loads(text: str) -> dict[str, JsonValue]:
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise StoreError(f"corrupt JSON row in the store: {text[:80]!r}")
    return obj


def _int(value: object) -> int:
    if isinstance(value, int):
        return value
    raise StoreError(f"corrupt store: expected an integer, found {value!r}")


def _iso_date(day: dt.date | str) -> str:
    return day.isoformat() if isinstance(day, dt.date) else dt.date.fromisoformat(day).isoformat()


def _utc_date(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC).date().isoformat()


class Store:
    """The SQLite store at ``path`` (created with its directory if missing).

    ``path=None`` uses :func:`default_store_path`; ``":memory:"`` gives a private
    in-memory store (tests). Close it with :meth:`close` or use it as a context manager.

    ``read_only=True`` opens an existing file with a SQLite ``mode=ro`` connection for
    readers such as ``report``: the file is never created, migrated or written, every
    write raises :class:`StoreError`, and a missing file, a file that is no store or one
    written by a newer redox-streamer is refused with a :class:`StoreError` that says so.
    """

    def __init__(self, path: Path | str | None = None, *, read_only: bool = False) -> None:
        if path is None:
            path = default_store_path()
        self.path = path if path == ":memory:" else Path(path).expanduser()
        self.read_only = read_only
        self._lock = threading.RLock()
        if read_only:
            self._db = self._open_read_only()
            self._check_readable()
            return
        if isinstance(self.path, Path):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the store directory {self.path.parent}: {exc}; "
                    "set store.path in the config to a writable place"
                ) from exc
        try:
            self._db = sqlite3.connect(
                str(self.path), timeout=10.0, check_same_thread=False, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {self.path}: {exc}") from exc
        self._migrate()

    def _open_read_only(self) -> sqlite3.Connection:
        """A ``mode=ro`` connection to an existing file: never creates, migrates or writes."""
        if not isinstance(self.path, Path):
            raise StoreError("an in-memory store cannot be opened read-only")
        if not self.path.is_file():
            raise StoreError(f"no such store file {self.path}; nothing to read")
        uri = self.path.resolve().as_uri() + "?mode=ro"
        try:
            db = sqlite3.connect(
                uri, uri=True, timeout=10.0, check_same_thread=False, isolation_level=None
            )
            db.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store {self.path} read-only: {exc}") from exc
        return db

    def _check_readable(self) -> None:
        """Refuse a file that is no store, or one newer than this code (it is not migrated)."""
        try:
            version = self.schema_version
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot read the store {self.path}: {exc}") from exc
        if version < _HISTORY_SINCE or version > SCHEMA_VERSION:
            self._db.close()
            if version == 0:
                raise StoreError(f"{self.path} is not a redox-streamer store (no schema)")
            raise StoreError(
                f"the store {self.path} has schema version {version}, newer than this "
                f"redox-streamer understands ({SCHEMA_VERSION}): upgrade redox-streamer"
            )

    # --- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction under the lock (other processes wait on busy_timeout)."""
        if self.read_only:
            raise StoreError(f"the store {self.path} is open read-only: it cannot be written")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, for modules that keep tables of their own in this file
        (``streamer.sinks.outbox``); committed on exit, rolled back on an exception."""
        with self._tx() as db:
            yield db

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        """The rows of one read-only statement (for modules with tables of their own)."""
        return self._query(sql, params)

    def has_table(self, name: str) -> bool:
        """Whether the file holds a table called ``name``."""
        return bool(
            self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        )

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                return list(self._db.execute(sql, params).fetchall())
            except sqlite3.Error as exc:
                if not self.read_only:
                    raise
                raise StoreError(f"cannot read the store {self.path}: {exc}") from exc

    @property
    def schema_version(self) -> int:
        """The schema version of the open file (``PRAGMA user_version``)."""
        (version,) = self._query("PRAGMA user_version")[0]
        assert isinstance(version, int)
        return version

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store {self.path} has schema version {version}, newer than this "
                f"redox-streamer understands ({SCHEMA_VERSION}): upgrade redox-streamer or "
                "set store.path to another file"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._tx() as db:
                for statement in _MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {target}")

    # --- history ----------------------------------------------------------------------------

    def save_morning(
        self, athlete: str, day: dt.date | str, ts_ns: int, data: Mapping[str, JsonValue]
    ) -> None:
        """Store the morning reading of ``athlete`` on ``day`` (replaces that day's one)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO morning (athlete, date, ts_ns, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (athlete, date) DO UPDATE SET ts_ns = excluded.ts_ns, "
                "data = excluded.data",
                (athlete, _iso_date(day), ts_ns, _dumps(data)),
            )

    def morning_history(
        self, athlete: str, start: dt.date | str | None = None, end: dt.date | str | None = None
    ) -> list[Row[MorningPayload]]:
        """Daily morning readings of ``athlete`` from ``start`` to ``end`` inclusive, by date."""
        rows = self._query(
            "SELECT athlete, ts_ns, data, date FROM morning WHERE athlete = ? "
            "AND date >= ? AND date <= ? ORDER BY date",
            (
                athlete,
                _iso_date(start) if start else "0000-01-01",
                _iso_date(end) if end else "9999-12-31",
            ),
        )
        return [
            Row(str(a), _int(t), _loads(str(d)), None, str(day), payload_type=MorningPayload)
            for a, t, d, day in rows
        ]

    def add_session(
        self, athlete: str, ts_ns: int, data: Mapping[str, JsonValue], device: str | None = None
    ) -> None:
        """Store a session summary (oxygenation recovery per session); one of the same
        athlete, time and device replaces it (an RPE entered after the session amends it)."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM sessions WHERE athlete = ? AND ts_ns = ? AND device IS ?",
                (athlete, ts_ns, device),
            )
            db.execute(
                "INSERT INTO sessions (athlete, ts_ns, device, data) VALUES (?, ?, ?, ?)",
                (athlete, ts_ns, device, _dumps(data)),
            )

    def sessions(
        self, athlete: str, since_ns: int | None = None, until_ns: int | None = None
    ) -> list[Row[SessionPayload]]:
        """Session summaries of ``athlete`` with ``since_ns <= ts_ns < until_ns``, oldest first."""
        return self._rows("sessions", SessionPayload, athlete, since_ns, until_ns)

    def add_grip_test(
        self, athlete: str, ts_ns: int, data: Mapping[str, JsonValue], device: str | None = None
    ) -> None:
        """Store a grip test."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO grip_tests (athlete, ts_ns, device, data) VALUES (?, ?, ?, ?)",
                (athlete, ts_ns, device, _dumps(data)),
            )

    def grip_tests(
        self, athlete: str, since_ns: int | None = None, until_ns: int | None = None
    ) -> list[Row[GripPayload]]:
        """Grip tests of ``athlete`` with ``since_ns <= ts_ns < until_ns``, oldest first."""
        return self._rows("grip_tests", GripPayload, athlete, since_ns, until_ns)

    def _rows(
        self,
        table: str,
        kind: type[H],
        athlete: str,
        since_ns: int | None,
        until_ns: int | None,
    ) -> list[Row[H]]:
        rows = self._query(
            f"SELECT athlete, ts_ns, data, device FROM {table} WHERE athlete = ? "
            "AND ts_ns >= ? AND ts_ns < ? ORDER BY ts_ns, id",
            (
                athlete,
                since_ns if since_ns is not None else -(2**63),
                until_ns if until_ns is not None else 2**63 - 1,
            ),
        )
        return [
            Row(
                str(a),
                _int(t),
                _loads(str(d)),
                None if dev is None else str(dev),
                payload_type=kind,
            )
            for a, t, d, dev in rows
        ]

    def add_alert(
        self, athlete: str, ts_ns: int, rule: str, state: str, data: Mapping[str, JsonValue]
    ) -> None:
        """Store an alert event (``state`` ``raised`` or ``cleared``)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO alerts (athlete, ts_ns, rule, state, data) VALUES (?, ?, ?, ?, ?)",
                (athlete, ts_ns, rule, state, _dumps(data)),
            )

    def alerts(
        self, athlete: str | None = None, since_ns: int | None = None, until_ns: int | None = None
    ) -> list[AlertRow]:
        """Alert events (of one athlete, or all) with ``since_ns <= ts_ns < until_ns``."""
        rows = self._query(
            "SELECT athlete, ts_ns, rule, state, data FROM alerts WHERE "
            "(? IS NULL OR athlete = ?) AND ts_ns >= ? AND ts_ns < ? ORDER BY ts_ns, id",
            (
                athlete,
                athlete,
                since_ns if since_ns is not None else -(2**63),
                until_ns if until_ns is not None else 2**63 - 1,
            ),
        )
        return [AlertRow(str(a), _int(t), str(r), str(s), _loads(str(d))) for a, t, r, s, d in rows]

    def athletes(self) -> list[str]:
        """Athlete ids with any history (morning, session, grip test, alert), sorted."""
        rows = self._query(
            "SELECT athlete FROM morning UNION SELECT athlete FROM sessions "
            "UNION SELECT athlete FROM grip_tests UNION SELECT athlete FROM alerts "
            "ORDER BY athlete"
        )
        return [str(a) for (a,) in rows]

    def record(self, result: Result) -> bool:
        """Keep ``result`` in the history table it belongs to; ``False`` if it has none.

        ``morning`` → one row per athlete and date (the payload's ``date``, else the UTC
        date of ``ts_ns``); ``oxygenation`` with ``scope == "session"`` → sessions;
        ``grip`` → grip tests; ``alerts`` → its ``event`` in the alert history. Live
        samples, HRV windows, per-effort oxygenation and status are not history. A row
        holds the result's JSON fields as published.
        """
        if payload_type(result.kind, result.fields) not in HISTORY_TYPES:
            return False
        fields = dict(result.fields)
        match result.payload:
            case MorningPayload(date=day):
                self.save_morning(
                    result.athlete, day or _utc_date(result.ts_ns), result.ts_ns, fields
                )
            case SessionPayload():
                self.add_session(result.athlete, result.ts_ns, fields, result.device)
            case GripPayload():
                self.add_grip_test(result.athlete, result.ts_ns, fields, result.device)
            case AlertsPayload(event=event):
                self.add_alert(
                    result.athlete, result.ts_ns, event.rule, event.state, event.fields()
                )
            case _:
                return False
        return True

    # --- state ------------------------------------------------------------------------------

    def save_alert_book(self, athlete: str, state: Mapping[str, JsonValue]) -> None:
        """Replace the alert-book state (a JSON object owned by the processors) of ``athlete``."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO alert_book (athlete, updated_ns, data) VALUES (?, ?, ?) "
                "ON CONFLICT (athlete) DO UPDATE SET updated_ns = excluded.updated_ns, "
                "data = excluded.data",
                (athlete, time.time_ns(), _dumps(state)),
            )

    def load_alert_book(self, athlete: str) -> dict[str, JsonValue] | None:
        """The saved alert-book state of ``athlete``, or ``None``."""
        rows = self._query("SELECT data FROM alert_book WHERE athlete = ?", (athlete,))
        return _loads(str(rows[0][0])) if rows else None

    def save_baseline(self, athlete: str, name: str, data: Mapping[str, JsonValue]) -> None:
        """Replace the baseline ``name`` (e.g. ``ln_rmssd``, ``grip_mvc``) of ``athlete``."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO baselines (athlete, name, updated_ns, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (athlete, name) DO UPDATE SET updated_ns = excluded.updated_ns, "
                "data = excluded.data",
                (athlete, name, time.time_ns(), _dumps(data)),
            )

    def load_baseline(self, athlete: str, name: str) -> dict[str, JsonValue] | None:
        """The saved baseline ``name`` of ``athlete``, or ``None``."""
        rows = self._query(
            "SELECT data FROM baselines WHERE athlete = ? AND name = ?", (athlete, name)
        )
        return _loads(str(rows[0][0])) if rows else None

    def baselines(self, athlete: str) -> dict[str, dict[str, JsonValue]]:
        """Every saved baseline of ``athlete`` by name."""
        rows = self._query(
            "SELECT name, data FROM baselines WHERE athlete = ? ORDER BY name", (athlete,)
        )
        return {str(n): _loads(str(d)) for n, d in rows}

    # --- sequence numbers -------------------------------------------------------------------

    @staticmethod
    def reserve_seq_in(db: sqlite3.Connection, topic: str, n: int) -> int:
        """:meth:`reserve_seq` inside a :meth:`transaction` (``db``) that also queues the
        numbered message, so a number is used only by a message that is durably kept."""
        row = db.execute(
            "INSERT INTO seq (topic, last) VALUES (?, ?) ON CONFLICT (topic) "
            "DO UPDATE SET last = last + ? RETURNING last",
            (topic, n, n),
        ).fetchone()
        return int(row[0]) - n + 1

    def reserve_seq(self, topic: str, n: int = 1) -> int:
        """Reserve ``n`` sequence numbers on ``topic``; returns the first (numbers start at 1).

        Reserved numbers are never handed out again, even after a crash: callers that
        reserve blocks for speed (live samples) may leave gaps, never repeats.
        """
        if n < 1:
            raise ValueError(f"reserve at least one number, not {n}")
        with self._tx() as db:
            return self.reserve_seq_in(db, topic, n)

    def last_seq(self, topic: str) -> int:
        """The last sequence number handed out on ``topic`` (0 if none)."""
        rows = self._query("SELECT last FROM seq WHERE topic = ?", (topic,))
        return _int(rows[0][0]) if rows else 0
