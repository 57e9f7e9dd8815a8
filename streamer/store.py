"""The local store: one SQLite file holding history, alert state, sequence numbers and outboxes.

It is the embedded default — with no MQTT broker and no InfluxDB configured, the product
still keeps its history here — and the durability layer under both network sinks:

* history the report and dashboards read: morning readings (one per athlete and day),
  sessions (oxygenation summaries), grip tests, alert events, lab entries;
* state that must survive a restart: the alert book per athlete (a JSON blob the
  processors own), baselines, per-topic sequence numbers;
* one outbox per sink, which this module does not know: :mod:`streamer.sinks.outbox` keeps
  its tables in this file through :meth:`Store.transaction` and :meth:`Store.query`.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed row survives a crash or
SIGKILL of the process (not necessarily a power cut). A transaction opened inside another
(:meth:`Store.transaction` within one) is a savepoint of it: the pipeline keeps a result's
history row and every sink's outbox message all or none.

Damage is refused, never written over. Before the first connection the files are vetted
(:func:`store_problem`: a 0-byte or non-SQLite file, committed transactions in the WAL
beyond a damaged frame, which SQLite would silently discard), and after it ``PRAGMA
quick_check`` runs; a damaged store raises :class:`StoreCorruptError`, whose one line
names the file and ``redox-streamer store salvage`` (:mod:`streamer.commands.store`). A
new store is built beside its path and renamed into place, so a file at the path is
always a whole store. A write that fails because the disk is full (or a write I/O error)
raises :class:`StoreFullError` after rolling back: nothing of it was kept.

Sequence numbers (:meth:`Store.reserve_seq`) count up by one per message on a topic; a
topic the store has no row for starts at the wall clock in microseconds since the Unix
epoch (:func:`seq_seed`), so a deleted or reset store goes on above every number it
handed out before. Every method is synchronous and
short; asyncio callers run them with ``await asyncio.to_thread(store.method, ...)``. One
connection is shared under a lock, so the object can be used from several threads. The
schema version is kept in ``PRAGMA user_version``; opening a file written by a newer
version fails with an error that says so.

Times are nanoseconds since the Unix epoch (UTC); dates are ISO ``YYYY-MM-DD`` strings.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
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
    LabPayload,
    MorningPayload,
    PayloadError,
    Result,
    SessionPayload,
    payload_type,
)
from streamer.store_lock import create_private

SCHEMA_VERSION: Final = 3
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

# Version 3: lab markers entered by hand (``redox-streamer log``; issue 14), one row per
# entry at the sample's time.
_SCHEMA_V3: Final = """
CREATE TABLE lab_entries (
    id INTEGER PRIMARY KEY, athlete TEXT NOT NULL, ts_ns INTEGER NOT NULL,
    marker TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX lab_entries_by_time ON lab_entries (athlete, ts_ns);
"""

#: The oldest schema whose history tables this code reads (read-only mode does not migrate).
_HISTORY_SINCE: Final = 1

#: Scripts that take the schema from version i to i+1 (index i); append, never edit.
_MIGRATIONS: Final[tuple[str, ...]] = (_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3)


def default_store_path() -> Path:
    """``<user data dir>/redox-streamer/redox.sqlite3`` (platformdirs)."""
    return platformdirs.user_data_path(APP_NAME) / DEFAULT_FILENAME


class StoreError(StreamerError):
    """The store file cannot be used (names the file and what to do)."""


class StoreFullError(StoreError):
    """A write failed because the disk is full (or a write I/O error): nothing of it was kept.

    Transient: the same write succeeds once space returns.
    """


class StoreCorruptError(StoreError):
    """The store file is damaged; it was not written. The message names the file and the
    command that moves it aside and salvages what is readable.

    Attributes: ``path`` (the store file) and ``problem`` (what is wrong, without advice).
    """

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{problem}; it was not written: {salvage_hint(path)}")


def salvage_hint(path: Path | str) -> str:
    """What to run about a damaged store at ``path``."""
    return f"run `redox-streamer store salvage {path}` to move it aside and keep what is readable"


def seq_seed(now_ns: int | None = None) -> int:
    """The first ``seq`` of a topic the store has no number for: the wall clock in µs.

    A deleted or reset store therefore restarts each topic above every number handed out
    before, as long as a topic got fewer than a million numbers a second on average since it
    started and the clock did not go back. Microseconds stay below 2^53 (exact in a
    JavaScript number) until the year 2255.
    """
    return (time.time_ns() if now_ns is None else now_ns) // 1000


# --- vetting the files before SQLite touches them -------------------------------------------

_SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_WAL_MAGICS: Final = (0x377F0682, 0x377F0683)  # little- / big-endian checksums
_WAL_HEADER: Final = 32
_WAL_FRAME_HEADER: Final = 24
_SHM_DMS_BYTE: Final = 128  # SQLite's "a connection is open" lock byte in the -shm file


def _wal_checksum(data: bytes, big_endian: bool, s0: int, s1: int) -> tuple[int, int]:
    """SQLite's WAL checksum over ``data`` (a multiple of 8 bytes), continuing (s0, s1)."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def _wal_in_use(path: Path) -> bool:
    """Whether another process holds the store open (its -shm lock byte): its WAL is live,
    not left by a crash, and must not be judged while it is being written."""
    shm = Path(f"{path}-shm")
    try:
        import fcntl

        with shm.open("rb") as f:
            query = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, _SHM_DMS_BYTE, 1, 0)
            answer = fcntl.fcntl(f.fileno(), fcntl.F_GETLK, query)
            return bool(struct.unpack("hhqqi4x", answer)[0] != fcntl.F_UNLCK)
    except (OSError, ImportError, struct.error):
        return False


def wal_problem(path: Path) -> str | None:
    """Why the WAL beside ``path`` would lose committed transactions, or None.

    SQLite replays WAL frames up to the first one whose checksum fails and silently drops
    the rest. After a crash only the frames being written can be torn, so a frame of the
    WAL's current generation (its salts) *after* a bad one is a committed transaction that
    opening the store would discard (and whose ``seq`` numbers it would hand out again).
    """
    wal = Path(f"{path}-wal")
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"its WAL {wal} cannot be read ({exc.strerror or exc})"
    if len(data) <= _WAL_HEADER or _wal_in_use(path):
        return None
    magic, _, page_size, _, salt1, salt2, c0, c1 = struct.unpack(">8I", data[:_WAL_HEADER])
    if magic not in _WAL_MAGICS:
        return f"its WAL {wal} has a damaged header (committed transactions in it would be lost)"
    big = magic == _WAL_MAGICS[1]
    s0, s1 = _wal_checksum(data[:24], big, 0, 0)
    if (s0, s1) != (c0, c1) or not 512 <= page_size <= 65536:
        return f"its WAL {wal} has a damaged header (committed transactions in it would be lost)"
    frame = _WAL_FRAME_HEADER + page_size
    offset, broken_at = _WAL_HEADER, None
    while offset + frame <= len(data):
        head = data[offset : offset + _WAL_FRAME_HEADER]
        _, _, f_salt1, f_salt2, f0, f1 = struct.unpack(">6I", head)
        same_generation = (f_salt1, f_salt2) == (salt1, salt2)
        if broken_at is None:
            n0, n1 = _wal_checksum(head[:8], big, s0, s1)
            n0, n1 = _wal_checksum(data[offset + _WAL_FRAME_HEADER : offset + frame], big, n0, n1)
            if same_generation and (n0, n1) == (f0, f1):
                s0, s1 = n0, n1
            else:
                broken_at = offset
        elif same_generation:
            return (
                f"its WAL {wal} is damaged at byte {broken_at}, before transactions that "
                "were committed (opening it would discard them)"
            )
        offset += frame
    return None


def store_problem(path: Path) -> str | None:
    """What is wrong with the store files at ``path`` before SQLite opens them, or None.

    A missing file is no problem (a new store is made). A 0-byte file is never one this
    code leaves (new stores are renamed into place whole), so it is a store that was cut.
    """
    try:
        if not path.is_file():
            return None  # missing (made new), or a directory SQLite will refuse to open
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError:
        return None  # not damage: SQLite's own error names the file and the cause
    if size == 0:
        return f"the store {path} is empty (0 bytes): it was cut short"
    if head != _SQLITE_MAGIC:
        return f"{path} is not a SQLite file (a damaged store, or the wrong path)"
    problem = wal_problem(path)
    return f"the store {path} is damaged: {problem}" if problem else None


def _is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)


def _is_corrupt(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


#: A history table's payload type.
H = TypeVar("H", MorningPayload, SessionPayload, GripPayload, LabPayload)

#: The result payloads kept in the history (each in its table; see :meth:`Store.record`).
HISTORY_TYPES: Final = (MorningPayload, SessionPayload, GripPayload, AlertsPayload, LabPayload)


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


_T = TypeVar("_T", MorningPayload, SessionPayload, GripPayload, AlertPayload, LabPayload)


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
        self._depth = 0  # transactions open (the outer one, then savepoints)
        self._doomed: StoreError | None = None  # an inner failure the outer one must share
        if read_only:
            self._db = self._open_read_only()
            self._check_readable()
            self._check_integrity()
            return
        if isinstance(self.path, Path):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the store directory {self.path.parent}: {exc}; "
                    "set store.path in the config to a writable place"
                ) from exc
            self._vet(self.path)
            if not self.path.exists():
                self._create(self.path)
        self._db = self._connect(self.path)
        self._check_integrity()
        self._migrate()

    @staticmethod
    def _vet(path: Path) -> None:
        """Refuse damaged files before any connection (one would rewrite the WAL)."""
        problem = store_problem(path)
        if problem:
            raise StoreCorruptError(path, problem)

    @staticmethod
    def _connect(path: Path | str) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(
                str(path), timeout=10.0, check_same_thread=False, isolation_level=None
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            # The WAL is folded into the file every 256 pages (1 MB, not SQLite's 4 MB) and
            # cut back to 1 MB after a burst: on a small disk a WAL that took the last free
            # byte can never be checkpointed again (the file may need a page to take it).
            db.execute("PRAGMA wal_autocheckpoint=256")
            db.execute("PRAGMA journal_size_limit=1048576")
            db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            if _is_corrupt(exc):
                raise StoreCorruptError(path, f"the store {path} is damaged ({exc})") from exc
            raise StoreError(f"cannot open the store {path}: {exc}") from exc
        return db

    def _create(self, path: Path) -> None:
        """Build a new store beside ``path`` and rename it into place: a file at the path
        is then always a whole store, never a half-made (0-byte) one."""
        part = path.with_name(f".{path.name}.new-{os.getpid()}")
        part.unlink(missing_ok=True)
        try:
            # Mode 0600 before any health data is in it; SQLite gives its WAL the same.
            create_private(part)
            db = self._connect(part)
            self._db = db
            self._migrate()
            db.close()
            # A WAL left by a store whose file was deleted would be replayed into this new
            # file (SQLite cannot tell it is another database's): keep it aside, unused.
            stale = Path(f"{path}-wal")
            if stale.exists():
                stale.replace(f"{path}-wal.orphaned-{time.time_ns()}")
            Path(f"{path}-shm").unlink(missing_ok=True)
            part.replace(path)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot create the store {path}: {exc}") from exc
        except OSError as exc:
            raise StoreError(
                f"cannot create the store {path}: {exc.strerror or exc}; "
                "set store.path in the config to a writable place"
            ) from exc
        finally:
            for leftover in (part, Path(f"{part}-wal"), Path(f"{part}-shm")):
                leftover.unlink(missing_ok=True)

    def _check_integrity(self) -> None:
        """``PRAGMA quick_check`` (a few ms per MB): a damaged store is refused, unwritten."""
        problems = self.integrity_problems(quick=True)
        if problems:
            self._db.close()
            raise StoreCorruptError(
                self.path, f"the store {self.path} is damaged (integrity check: {problems[0]})"
            )

    def integrity_problems(self, *, quick: bool = True) -> list[str]:
        """What ``PRAGMA quick_check`` (or the slower ``integrity_check``) finds; [] if sound."""
        pragma = "quick_check" if quick else "integrity_check"
        try:
            with self._lock:
                rows = self._db.execute(f"PRAGMA {pragma}").fetchall()
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        found = [str(r[0]) for r in rows]
        return [] if found == ["ok"] else found

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
        """One IMMEDIATE transaction under the lock (other processes wait on busy_timeout);
        inside another, a savepoint of it (all or none with the outer one).

        A failure for want of space (or a write I/O error) is rolled back and raised as
        :class:`StoreFullError`; damage found while writing as :class:`StoreCorruptError`.
        """
        if self.read_only:
            raise StoreError(f"the store {self.path} is open read-only: it cannot be written")
        with self._lock:
            if self._depth:
                yield from self._savepoint()
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._depth = 1
                self._doomed = None
                yield self._db
                if self._doomed is not None:  # an inner write failed and was swallowed
                    raise self._doomed
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:  # SQLite may have rolled back already (FULL)
                    with suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                failure = self._failure(exc) if isinstance(exc, sqlite3.Error) else exc
                if isinstance(failure, StoreFullError):
                    self._reclaim()
                if failure is not exc:
                    raise failure from exc
                raise
            finally:
                self._depth = 0
                self._doomed = None

    def _savepoint(self) -> Iterator[sqlite3.Connection]:
        name = f"inner_{self._depth}"
        self._db.execute(f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield self._db
        except BaseException as exc:
            failure = self._failure(exc) if isinstance(exc, sqlite3.Error) else exc
            if isinstance(failure, StoreFullError | StoreCorruptError):
                # SQLite may have rolled the whole transaction back: the outer one fails too.
                self._doomed = failure
            if self._db.in_transaction:
                with suppress(sqlite3.Error):
                    self._db.execute(f"ROLLBACK TO {name}")
                    self._db.execute(f"RELEASE {name}")
            if failure is not exc:
                raise failure from exc
            raise
        finally:
            self._depth -= 1
        self._db.execute(f"RELEASE {name}")

    def _reclaim(self) -> None:
        """After a write refused for want of space: fold the WAL into the file and cut it
        to nothing. A WAL that filled the disk is only reused after a checkpoint, and the
        automatic one waits for 1000 pages (4 MB) — on a small disk, for ever."""
        with suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _failure(self, exc: sqlite3.Error) -> Exception:
        """The store's error for a failed SQLite write: full, damaged, or as it was (a bug)."""
        if _is_full(exc):
            return StoreFullError(
                f"the store {self.path} cannot be written ({exc}): free space on its disk"
            )
        if _is_corrupt(exc):
            return StoreCorruptError(self.path, f"the store {self.path} is damaged ({exc})")
        return exc

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
                if _is_corrupt(exc) and not self.read_only:
                    raise StoreCorruptError(
                        self.path, f"the store {self.path} is damaged ({exc})"
                    ) from exc
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

    def add_lab_entry(self, athlete: str, ts_ns: int, data: Mapping[str, JsonValue]) -> None:
        """Store a lab marker entered by hand (``ts_ns``: when the sample was taken). One of
        the same athlete, time and marker replaces it (an entry sent twice is kept once)."""
        marker = str(data.get("marker"))
        with self._tx() as db:
            db.execute(
                "DELETE FROM lab_entries WHERE athlete = ? AND ts_ns = ? AND marker = ?",
                (athlete, ts_ns, marker),
            )
            db.execute(
                "INSERT INTO lab_entries (athlete, ts_ns, marker, data) VALUES (?, ?, ?, ?)",
                (athlete, ts_ns, marker, _dumps(data)),
            )

    def lab_entries(
        self, athlete: str, since_ns: int | None = None, until_ns: int | None = None
    ) -> list[Row[LabPayload]]:
        """Lab entries of ``athlete`` with ``since_ns <= ts_ns < until_ns``, oldest first
        (none in a store older than schema 3, read without migrating)."""
        if not self.has_table("lab_entries"):
            return []
        rows = self._query(
            "SELECT athlete, ts_ns, data FROM lab_entries WHERE athlete = ? "
            "AND ts_ns >= ? AND ts_ns < ? ORDER BY ts_ns, id",
            (
                athlete,
                since_ns if since_ns is not None else -(2**63),
                until_ns if until_ns is not None else 2**63 - 1,
            ),
        )
        return [Row(str(a), _int(t), _loads(str(d)), payload_type=LabPayload) for a, t, d in rows]

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
        """Athlete ids with any history (morning, session, grip test, alert, lab entry), sorted."""
        labs = " UNION SELECT athlete FROM lab_entries" if self.has_table("lab_entries") else ""
        rows = self._query(
            "SELECT athlete FROM morning UNION SELECT athlete FROM sessions "
            "UNION SELECT athlete FROM grip_tests UNION SELECT athlete FROM alerts"
            + labs
            + " ORDER BY athlete"
        )
        return [str(a) for (a,) in rows]

    def record(self, result: Result) -> bool:
        """Keep ``result`` in the history table it belongs to; ``False`` if it has none.

        ``morning`` → one row per athlete and date (the payload's ``date``, else the UTC
        date of ``ts_ns``); ``oxygenation`` with ``scope == "session"`` → sessions;
        ``grip`` → grip tests; ``alerts`` → its ``event`` in the alert history; ``lab`` →
        lab entries. Live
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
            case LabPayload():
                self.add_lab_entry(result.athlete, result.ts_ns, fields)
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
        # A new topic starts at the clock (seq_seed - 1 + n is its last number).
        row = db.execute(
            "INSERT INTO seq (topic, last) VALUES (?, ?) ON CONFLICT (topic) "
            "DO UPDATE SET last = last + ? RETURNING last",
            (topic, seq_seed() - 1 + n, n),
        ).fetchone()
        return int(row[0]) - n + 1

    def reserve_seq(self, topic: str, n: int = 1) -> int:
        """Reserve ``n`` sequence numbers on ``topic``; returns the first.

        A topic's numbers count up by one from :func:`seq_seed` (the clock in µs when the
        store first numbered it). Reserved numbers are never handed out again, even after
        a crash or with a new store: callers that reserve blocks for speed (live samples)
        may leave gaps, never repeats.
        """
        if n < 1:
            raise ValueError(f"reserve at least one number, not {n}")
        with self._tx() as db:
            return self.reserve_seq_in(db, topic, n)

    def last_seq(self, topic: str) -> int:
        """The last sequence number handed out on ``topic`` (0 if none)."""
        rows = self._query("SELECT last FROM seq WHERE topic = ?", (topic,))
        return _int(rows[0][0]) if rows else 0

    def reseed_seq(self, now_ns: int | None = None) -> int:
        """Raise every topic's last number to at least :func:`seq_seed` (after a salvage,
        whose copy may lack the newest numbers); returns how many topics moved."""
        with self._tx() as db:
            return db.execute(
                "UPDATE seq SET last = ? WHERE last < ?", (seq_seed(now_ns),) * 2
            ).rowcount


# --- checking and salvaging a store file ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreCheck:
    """What ``redox-streamer store check`` found: ``problems`` empty when the store is sound."""

    path: Path
    problems: list[str]
    schema_version: int = 0
    topics: int = 0
    outboxes: dict[str, int] | None = None


def check_store_file(path: Path, *, full: bool = True) -> StoreCheck:
    """Vet the files and run ``PRAGMA integrity_check`` (``quick_check`` if not ``full``) on a
    read-only connection, which never checkpoints, rewrites or deletes the WAL."""
    if not path.exists():
        raise StoreError(f"no store at {path}; nothing to check")
    problem = store_problem(path)
    if problem:
        return StoreCheck(path, [problem])
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the store {path} to check it: {exc}") from exc
    try:
        found = [str(r[0]) for r in db.execute(f"PRAGMA {'integrity' if full else 'quick'}_check")]
        if found != ["ok"]:
            return StoreCheck(path, found)
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        names = [str(n) for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        topics = int(db.execute("SELECT count(*) FROM seq").fetchone()[0]) if "seq" in names else 0
        outboxes = {
            n.removeprefix("outbox_"): int(db.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0])
            for n in sorted(names)
            if n.startswith("outbox_")
        }
    except sqlite3.DatabaseError as exc:
        return StoreCheck(path, [str(exc)])
    finally:
        db.close()
    return StoreCheck(path, [], version, topics, outboxes)


@dataclass(frozen=True, slots=True)
class Salvage:
    """What ``redox-streamer store salvage`` did: where the damaged files went, the rows it
    kept per table, the tables or stretches it could not read, and the topics reseeded."""

    moved_to: Path
    kept: dict[str, int]
    unreadable: list[str]
    reseeded: int


_WAL_FILES: Final = ("", "-wal", "-shm")


def salvage_store(path: Path, *, now_ns: int | None = None) -> Salvage:
    """Move the store at ``path`` (and its ``-wal``/``-shm``) aside to
    ``<name>.damaged-<UTC time>``, then build a new store at ``path`` from what is readable
    in it, table by table and row by row (past a damaged stretch of a table, reading goes
    on at the next readable row). The moved files are read through a private copy and stay
    as they were found.

    Every topic's ``seq`` is then raised to at least the clock (:meth:`Store.reseed_seq`):
    the copy may lack the newest numbers, and no number may be handed out twice.
    """
    import shutil
    import tempfile

    if not path.exists():
        raise StoreError(f"no store at {path}; nothing to salvage")
    stamp = dt.datetime.fromtimestamp(
        (time.time_ns() if now_ns is None else now_ns) / 1e9, dt.UTC
    ).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in _WAL_FILES:
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(f"{aside}{suffix}")
    kept: dict[str, int] = {}
    unreadable: list[str] = []
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".salvage-") as tmp:
        copy = Path(tmp) / "copy.sqlite3"
        for suffix in _WAL_FILES[:2]:  # the -shm is rebuilt from the WAL
            if Path(f"{aside}{suffix}").exists():
                shutil.copyfile(f"{aside}{suffix}", f"{copy}{suffix}")
        with Store(path) as new:
            src = sqlite3.connect(str(copy), isolation_level=None)
            try:
                for table, create in _readable_tables(src, unreadable):
                    if not new.has_table(table):
                        try:
                            with new.transaction() as db:
                                db.execute(create)
                        except sqlite3.Error:
                            unreadable.append(f"table {table}: its definition is unusable")
                            continue
                    kept[table] = _copy_table(src, new, table, unreadable)
            finally:
                src.close()
            reseeded = new.reseed_seq(now_ns)
    return Salvage(aside, kept, unreadable, reseeded)


def _readable_tables(src: sqlite3.Connection, unreadable: list[str]) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the source's own tables that can be listed."""
    try:
        rows = src.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND sql IS NOT NULL ORDER BY name"
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        unreadable.append(f"the list of tables ({exc})")
        return []
    return [(str(n), str(s)) for n, s in rows]


def _copy_table(src: sqlite3.Connection, new: Store, table: str, unreadable: list[str]) -> int:
    """Copy the readable rows of ``table`` (columns both stores have) in rowid order."""
    try:
        src_cols = [str(r[1]) for r in src.execute(f'PRAGMA table_info("{table}")')]
        new_cols = {str(r[1]) for r in new.query(f'PRAGMA table_info("{table}")')}
        top = src.execute(f'SELECT max(rowid) FROM "{table}"').fetchone()[0]
    except sqlite3.DatabaseError as exc:
        unreadable.append(f"table {table} ({exc})")
        return 0
    cols = [c for c in src_cols if c in new_cols]
    if not cols or top is None:
        return 0
    names = ", ".join(f'"{c}"' for c in cols)
    insert = f'INSERT OR REPLACE INTO "{table}" ({names}) VALUES ({", ".join("?" * len(cols))})'
    select = f'SELECT rowid, {names} FROM "{table}" WHERE rowid > ? ORDER BY rowid'
    copied, after = 0, -(2**63)
    while after < top:
        rows: list[tuple[object, ...]] = []
        try:
            for row in src.execute(select, (after,)):
                rows.append(row)
        except sqlite3.DatabaseError as exc:
            resume = _next_readable_rowid(src, table, (rows[-1][0] if rows else after), top)
            last_good = rows[-1][0] if rows else after
            unreadable.append(f"table {table}: rows after rowid {last_good} up to {resume} ({exc})")
            after = max(resume, int(after) + 1)  # always onwards
        else:
            after = top
        if rows:
            with new.transaction() as db:
                db.executemany(insert, [r[1:] for r in rows])
            copied += len(rows)
    return copied


def _next_readable_rowid(src: sqlite3.Connection, table: str, after: object, top: int) -> int:
    """The rowid after which reading ``table`` can go on past a damaged stretch: steps of
    growing size until a seek works (``top`` when none does)."""
    base = int(after)  # type: ignore[call-overload]
    step = 1
    while base + step < top:
        try:
            row = src.execute(
                f'SELECT rowid FROM "{table}" WHERE rowid > ? ORDER BY rowid LIMIT 1',
                (base + step,),
            ).fetchone()
            if row is None:
                return top
            # The first readable row after the stretch; read from just before it.
            return int(row[0]) - 1
        except sqlite3.DatabaseError:
            step *= 4
    return top
