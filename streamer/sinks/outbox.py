"""One durable outbox per sink, kept in the store's SQLite file.

A sink (``streamer.sinks.mqtt``, ``streamer.sinks.influx``, the next one) queues what it must
deliver with :class:`Outbox`, drains it in insertion order and acknowledges the delivered prefix.
A row is opaque to the store: ``payload`` bytes (an MQTT message body, a line-protocol
point) and ``meta``, a small JSON object the sink owns (the MQTT topic, QoS and retain
flag; nothing for InfluxDB). What a sink's server rejects as bad data goes to the sink's
dead-letter table with the server's status and words.

Each outbox is two tables named from the sink — ``outbox_<sink>`` and
``dead_letter_<sink>`` — created on first use; ``id`` increases in insertion order and is
never reused. Every method is synchronous and short (one transaction); asyncio callers
run them with ``asyncio.to_thread``. On a store opened read-only, reads of an outbox
that was never created are empty and writes raise :class:`streamer.store.StoreError`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from streamer.results import JsonValue
from streamer.store import Store, StoreError

_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,39}")

# The DDL of schema 2 (``streamer.store`` migration 2 creates the first two outboxes with it).
_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS outbox_{name} ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL, "
    "meta TEXT NOT NULL DEFAULT '{{}}', created_ns INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS dead_letter_{name} ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL, "
    "meta TEXT NOT NULL DEFAULT '{{}}', status INTEGER NOT NULL, error TEXT NOT NULL, "
    "created_ns INTEGER NOT NULL)",
)


@dataclass(frozen=True, slots=True)
class Message:
    """What a sink queues: opaque ``payload`` bytes and the sink's own ``meta`` fields."""

    payload: bytes
    meta: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Entry:
    """A queued message (``id`` increases in insertion order)."""

    id: int
    payload: bytes
    meta: dict[str, JsonValue]
    created_ns: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the sink's server rejected as bad data, with its status and words."""

    id: int
    payload: bytes
    meta: dict[str, JsonValue]
    status: int
    error: str
    created_ns: int


def _meta(message: Message) -> str:
    return json.dumps(message.meta, separators=(",", ":"), allow_nan=False)


def _bytes(value: object) -> bytes:
    if isinstance(value, bytes | memoryview):
        return bytes(value)
    return str(value).encode()


def _int(value: object) -> int:
    if isinstance(value, int):
        return value
    raise StoreError(f"corrupt outbox row: expected an integer, found {value!r}")


def _loads(text: object) -> dict[str, JsonValue]:
    obj = json.loads(str(text))
    if not isinstance(obj, dict):
        raise StoreError(f"corrupt outbox row: meta {str(text)[:80]!r} is not an object")
    return obj


class Outbox:
    """The outbox of the sink ``name`` (lower-case letters, digits, ``_``) in ``store``."""

    def __init__(self, store: Store, name: str) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"an outbox name is lower-case letters, digits and _, not {name!r}")
        self.store = store
        self.name = name
        self._table = f"outbox_{name}"
        self._dead = f"dead_letter_{name}"
        self._exists = store.has_table(self._table) and store.has_table(self._dead)
        if not self._exists and not store.read_only:
            with store.transaction() as db:
                for statement in _DDL:
                    db.execute(statement.format(name=name))
            self._exists = True

    # --- queue ------------------------------------------------------------------------------

    def enqueue(self, message: Message) -> None:
        """Append one message."""
        self.enqueue_many([message])

    def enqueue_many(self, messages: Sequence[Message]) -> None:
        """Append ``messages`` in the given order, in one transaction."""
        if not messages:
            return
        now = time.time_ns()
        with self.store.transaction() as db:
            db.executemany(
                f"INSERT INTO {self._table} (payload, meta, created_ns) VALUES (?, ?, ?)",
                [(m.payload, _meta(m), now) for m in messages],
            )

    def enqueue_numbered(self, items: Sequence[tuple[str, Callable[[int], Message]]]) -> list[int]:
        """Append ``(counter, render)`` items in order, all or none, in one transaction.

        Each ``render`` gets the next number of its ``counter`` (the store's per-topic
        sequence, :meth:`streamer.store.Store.reserve_seq`), reserved in the same
        transaction: a number is used only by a message that is durably queued, and a
        failing ``render`` queues nothing and uses no number. Returns the numbers.
        """
        now = time.time_ns()
        numbers: list[int] = []
        with self.store.transaction() as db:
            for counter, render in items:
                # The store's own method: the PostgreSQL store of team mode has its SQL.
                number = self.store.reserve_seq_in(db, counter, 1)
                message = render(number)
                db.execute(
                    f"INSERT INTO {self._table} (payload, meta, created_ns) VALUES (?, ?, ?)",
                    (message.payload, _meta(message), now),
                )
                numbers.append(number)
        return numbers

    def peek(self, limit: int = 100, after_id: int = 0) -> list[Entry]:
        """The oldest ``limit`` messages with ``id > after_id``, in insertion order."""
        if not self._exists:
            return []
        rows = self.store.query(
            f"SELECT id, payload, meta, created_ns FROM {self._table} WHERE id > ? "
            "ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [Entry(_int(i), _bytes(p), _loads(m), _int(c)) for i, p, m, c in rows]

    def ack(self, through_id: int) -> int:
        """Remove every message with ``id <= through_id``; returns how many."""
        with self.store.transaction() as db:
            return db.execute(f"DELETE FROM {self._table} WHERE id <= ?", (through_id,)).rowcount

    def depth(self) -> int:
        """Messages waiting."""
        if not self._exists:
            return 0
        return _int(self.store.query(f"SELECT count(*) FROM {self._table}")[0][0])

    # --- dead letters -----------------------------------------------------------------------

    def dead_letter(self, messages: Sequence[Message], status: int, error: str) -> None:
        """Keep messages the server rejected as bad data (its ``status`` and ``error`` text)."""
        if not messages:
            return
        now = time.time_ns()
        with self.store.transaction() as db:
            db.executemany(
                f"INSERT INTO {self._dead} (payload, meta, status, error, created_ns) "
                "VALUES (?, ?, ?, ?, ?)",
                [(m.payload, _meta(m), status, error, now) for m in messages],
            )

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters."""
        if not self._exists:
            return []
        rows = self.store.query(
            f"SELECT id, payload, meta, status, error, created_ns FROM {self._dead} "
            "ORDER BY id LIMIT ?",
            (limit,),
        )
        return [
            DeadLetter(_int(i), _bytes(p), _loads(m), _int(s), str(e), _int(c))
            for i, p, m, s, e, c in rows
        ]


def outbox_names(store: Store) -> list[str]:
    """The sinks with an outbox in ``store``, sorted."""
    rows = store.query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'outbox\\_%' "
        "ESCAPE '\\' ORDER BY name"
    )
    return [str(n).removeprefix("outbox_") for (n,) in rows]


__all__ = ["DeadLetter", "Entry", "Message", "Outbox", "outbox_names"]
