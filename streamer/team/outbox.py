"""A gateway's durable outbox: one SQLite row per message, until JetStream acknowledged it.

Like :mod:`streamer.sinks.outbox` (rows in insertion order, ``AUTOINCREMENT`` ids never
reused, a delivered prefix deleted), but in a file of its own — a gateway has no store —
with ``synchronous=FULL``: every committed batch is fsync'd before its rows may be
published, so a row JetStream has seen is a row that survives a power cut.

The file also holds the gateway's **boot**, incremented (and fsync'd) each time the file
is opened, and each row the boot it was queued in: ``Nats-Msg-Id`` =
``<gateway>:<row's boot>:<id>`` (:func:`streamer.team.wire.msg_id`) is unique across
restarts, and a row queued before a crash and resent after it keeps its id — the server
drops the resend if the first send had reached it. A new file starts its boot at the
wall clock's seconds, not at 1, so a gateway whose outbox file was lost (a re-imaged SD
card) does not reuse the ids of its previous life inside the server's de-duplication
window — the server would drop its new messages as resends.

One process at a time: the file is locked (``flock`` on ``<file>.lock``) while open, and a
second gateway on it is refused with the holder named. Methods are synchronous and short;
asyncio callers run them in a thread.

Beside the rows, the file keeps each device's last retained state message at a stop
(:meth:`GatewayOutbox.keep_device_states`): a ``stopped`` that could not reach the broker
then is published at the next start (:mod:`streamer.team.gateway_mqtt`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

from streamer.store_lock import create_private, hold_store

_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS gateway_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS gateway_outbox ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, boot INTEGER NOT NULL, athlete TEXT NOT NULL, "
    "body BLOB NOT NULL, created_ns INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS gateway_device_state (topic TEXT PRIMARY KEY, "
    "athlete TEXT NOT NULL, device TEXT NOT NULL, payload BLOB NOT NULL)",
)


@dataclass(frozen=True, slots=True)
class Row:
    """One queued message: for ``athlete``'s subject, the wire ``body`` (JSON bytes),
    queued during ``boot``; ``created_ns`` is when the gateway received it (wall ns)."""

    id: int
    boot: int
    athlete: str
    body: bytes
    created_ns: int


@dataclass(frozen=True, slots=True)
class KeptState:
    """A device's last retained state message as the gateway made it: the ``payload``
    bytes (its ``seq`` inside) for ``topic``, of ``athlete``'s ``device``."""

    topic: str
    athlete: str
    device: str
    payload: bytes


class GatewayOutbox:
    """The outbox file at ``path`` (created 0600), opened for one gateway process."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._stack = ExitStack()
        try:
            self._stack.enter_context(hold_store(self.path, "gateway"))
            create_private(self.path)
            self._db = sqlite3.connect(
                str(self.path), timeout=10.0, check_same_thread=False, isolation_level=None
            )
            self._stack.callback(self._db.close)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._lock = threading.Lock()
            with self._transaction() as db:
                for ddl in _DDL:
                    db.execute(ddl)
                row = db.execute("SELECT value FROM gateway_meta WHERE key = 'boot'").fetchone()
                boot = int(time.time()) if row is None else int(row[0]) + 1
                db.execute(
                    "INSERT INTO gateway_meta (key, value) VALUES ('boot', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (boot,),
                )
        except BaseException:
            self._stack.close()
            raise
        self.boot: int = boot
        """This start's boot number (the middle of every ``Nats-Msg-Id``)."""

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def append(
        self, rows: Sequence[tuple[str, bytes] | tuple[str, bytes, int]], delete_through: int = 0
    ) -> list[int]:
        """Queue ``(athlete, body[, received_ns])`` rows in one fsync'd transaction; their
        ids, in order. ``received_ns`` (wall ns) defaults to the commit's time.

        The same transaction deletes the rows up to ``delete_through`` (acknowledged by
        JetStream, as :meth:`ack_through`): a publisher's deletions ride on the writer's
        fsync instead of one of their own."""
        now = time.time_ns()
        ids: list[int] = []
        with self._transaction() as db:
            if delete_through:
                db.execute("DELETE FROM gateway_outbox WHERE id <= ?", (delete_through,))
            for row in rows:
                athlete, body = row[0], row[1]
                received = row[2] if len(row) == 3 else now
                cursor = db.execute(
                    "INSERT INTO gateway_outbox (boot, athlete, body, created_ns) "
                    "VALUES (?, ?, ?, ?)",
                    (self.boot, athlete, body, received),
                )
                assert cursor.lastrowid is not None
                ids.append(cursor.lastrowid)
        return ids

    def peek(self, limit: int, after: int = 0) -> list[Row]:
        """The oldest ``limit`` rows with an id above ``after``, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, boot, athlete, body, created_ns FROM gateway_outbox WHERE id > ? "
                "ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [Row(int(i), int(n), str(a), bytes(b), int(c)) for i, n, a, b, c in rows]

    def ack_through(self, last_id: int) -> None:
        """Delete every row up to ``last_id``: JetStream acknowledged them, in order.

        A deletion lost in a crash only means a resend the server drops as a duplicate."""
        with self._transaction() as db:
            db.execute("DELETE FROM gateway_outbox WHERE id <= ?", (last_id,))

    def depth(self) -> int:
        """Rows waiting for JetStream's acknowledgement."""
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM gateway_outbox").fetchone()
        return int(count)

    def keep_device_states(self, states: Sequence[KeptState]) -> None:
        """Replace the kept device states with ``states`` (one fsync'd transaction): the
        last word of each device at a stop, for the next start to publish again
        (:mod:`streamer.team.gateway_mqtt`)."""
        with self._transaction() as db:
            db.execute("DELETE FROM gateway_device_state")
            db.executemany(
                "INSERT OR REPLACE INTO gateway_device_state (topic, athlete, device, payload) "
                "VALUES (?, ?, ?, ?)",
                [(s.topic, s.athlete, s.device, s.payload) for s in states],
            )

    def kept_device_states(self) -> list[KeptState]:
        """The device states kept at the last stop (:meth:`keep_device_states`)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT topic, athlete, device, payload FROM gateway_device_state ORDER BY topic"
            ).fetchall()
        return [KeptState(str(t), str(a), str(d), bytes(p)) for t, a, d, p in rows]

    def close(self) -> None:
        """Close the file and release its lock."""
        self._stack.close()

    def __enter__(self) -> GatewayOutbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
