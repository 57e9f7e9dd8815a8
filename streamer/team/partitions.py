"""Which worker processes which partition: PostgreSQL advisory locks, first come.

A partition is owned by the worker whose connection holds ``pg_try_advisory_lock(LOCK_CLASS,
p)`` (:data:`streamer.team.pg_store.LOCK_CLASS`). The server releases it when that session
ends — the worker exits, is killed, or is cut off (TCP keepalives, ~11 s) — so ownership
needs no protocol of ours: every worker tries, every ``claim_every_s``, to lock partitions
that nobody holds, up to its share.

A worker's share is ``ceil(P / live workers)`` (or a fixed ``--max-partitions``); the live
workers are the distinct ``redox-worker:<id>`` sessions the server lists in
``pg_stat_activity``, so the survivors' share grows the moment a worker's sessions end, and a
worker above its share (a new worker joined) lets the excess go, newest first, for the
newcomer to take.

A worker stopping cleanly first renames its control session ``redox-worker-stopping:<id>``
(:func:`mark_stopping`), lets its partitions go, then asks whether another worker runs on
(:func:`others_running`): one that is neither it nor stopping. Of two workers stopping at
once, at least the one that asks last sees no other (each renamed itself before asking), so
it is the one to say the partitions are offline; a worker that sees another running leaves
its partitions' availability ``online`` for the one that will take them.
"""

from __future__ import annotations

import math
from typing import Any, Final

APPLICATION_PREFIX: Final = "redox-worker:"
"""``application_name`` of a worker's sessions: ``redox-worker:<id>`` (its control
connection) and ``redox-worker:<id>:p<N>`` (a partition's lock connection)."""


STOPPING_PREFIX: Final = "redox-worker-stopping:"
"""``application_name`` of a stopping worker's control session (not a live worker's)."""


def mark_stopping(conn: Any, worker_id: str) -> None:
    """Rename the control session of ``worker_id``: it is stopping (see the module)."""
    conn.execute("SELECT set_config('application_name', %s, false)", (STOPPING_PREFIX + worker_id,))


def others_running(conn: Any, worker_id: str) -> bool:
    """Whether a worker other than ``worker_id``, and not stopping, has a session now."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s "
        "AND split_part(application_name, ':', 2) <> %s "
        "AND split_part(application_name, ':', 2) NOT IN (SELECT split_part(application_name, "
        "':', 2) FROM pg_stat_activity WHERE application_name LIKE %s)",
        (APPLICATION_PREFIX + "%", worker_id, STOPPING_PREFIX + "%"),
    ).fetchone()
    return bool(row and row[0])


def live_workers(conn: Any) -> int:
    """How many workers have a session on the server now (at least 1: the caller)."""
    row = conn.execute(
        "SELECT count(DISTINCT split_part(application_name, ':', 2)) FROM pg_stat_activity "
        "WHERE application_name LIKE %s",
        (APPLICATION_PREFIX + "%",),
    ).fetchone()
    return max(1, int(row[0]) if row else 1)


def share(partitions: int, workers: int, fixed: int | None = None) -> int:
    """Partitions one worker may own: ``fixed`` if given, else an even split, rounded up."""
    if fixed is not None:
        return max(0, min(fixed, partitions))
    return math.ceil(partitions / max(1, workers))


def held_partitions(conn: Any) -> dict[int, str]:
    """Every held partition lock → the ``application_name`` of the session holding it."""
    from streamer.team.pg_store import LOCK_CLASS

    rows = conn.execute(
        "SELECT l.objid, a.application_name FROM pg_locks l JOIN pg_stat_activity a "
        "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s "
        "AND l.objsubid = 2",
        (LOCK_CLASS,),
    ).fetchall()
    return {int(p): str(app) for p, app in rows}
