"""Each JetStream replica's own copy of a stream, read from its files, and the replicas compared.

A client cannot see a replica's copy: an ordered consumer reads whichever node serves it,
and nats-server 2.9.10 can leave the nodes holding different messages at one sequence
after a whole-cluster SIGKILL (a leader's uncommitted message kept; ``bench/team.py``'s
"nats-restart" fault found it). So this reads the message blocks of each node's file
store directly — ``<store_dir>/jetstream/$G/streams/<stream>/msgs/<n>.blk``, the format of
nats-server's ``server/filestore.go`` (``writeMsgRecord`` / ``rebuildStateLocked``), the
same in 2.9 and 2.15 when the stream is neither compressed nor encrypted (ours are not):

    record = rl:u32 | seq:u64 | ts:i64 | slen:u16 | subject | [hlen:u32 | headers] | data | hash:8

all little-endian; ``rl`` is the whole record's length, its top bit set when headers follow;
``seq``'s top bit marks an erased message, the next one a delete tombstone (2.10+). Read
the files of a stopped node (a running one keeps recent writes in memory).

Used by ``bench/nats_divergence.py`` (the reproduction) and ``bench/team.py`` (its end).
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from streamer.team import wire

if TYPE_CHECKING:
    from tests.servers import NatsServer

_RECORD_HEADER: Final = struct.Struct("<IQqH")
"""rl, seq, ts (ns), subject length: ``msgHdrSize`` = 22 bytes."""
_HASH_SIZE: Final = 8
_HEADERS_BIT: Final = 1 << 31
_ERASED_BIT: Final = 1 << 63
_TOMBSTONE_BIT: Final = 1 << 62


@dataclass(frozen=True)
class StoredMessage:
    """One message as a replica's file store holds it."""

    seq: int
    subject: str
    msg_id: str | None
    """Its ``Nats-Msg-Id`` header (None without one)."""
    data: bytes
    ts_ns: int
    """When that node stored it (its clock, ns since the epoch)."""

    def key(self) -> tuple[str, str | None, bytes]:
        """What must be equal on every replica at this sequence."""
        return (self.subject, self.msg_id, self.data)


def store_dir_of(node_workdir: Path, node: str) -> Path:
    """A :class:`tests.servers.NatsServer`'s JetStream store directory (``js-<node>``)."""
    return node_workdir / f"js-{node}"


def _msg_id(headers: bytes) -> str | None:
    for line in headers.split(b"\r\n")[1:]:  # the first line is ``NATS/1.0``
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == wire.MSG_ID_HEADER.lower().encode():
            return value.strip().decode()
    return None


def read_block(buf: bytes) -> tuple[list[StoredMessage], int]:
    """The live messages of one ``.blk`` file's bytes, and the number of bytes left over at
    its end that are not a whole record (a write torn by a kill; the server truncates it)."""
    messages: list[StoredMessage] = []
    index = 0
    while index + _RECORD_HEADER.size <= len(buf):
        rl, seq, ts, slen = _RECORD_HEADER.unpack_from(buf, index)
        has_headers = bool(rl & _HEADERS_BIT)
        rl &= ~_HEADERS_BIT
        if rl < _RECORD_HEADER.size + slen + _HASH_SIZE or index + rl > len(buf):
            break
        body = buf[index + _RECORD_HEADER.size : index + rl - _HASH_SIZE]
        index += rl
        if seq & (_ERASED_BIT | _TOMBSTONE_BIT) or seq == 0:
            continue
        subject = body[:slen].decode()
        rest = body[slen:]
        headers = b""
        if has_headers:
            (hlen,) = struct.unpack_from("<I", rest)
            headers, rest = rest[4 : 4 + hlen], rest[4 + hlen :]
        messages.append(StoredMessage(seq, subject, _msg_id(headers), bytes(rest), ts))
    return messages, len(buf) - index


def read_stream(store_dir: Path, stream: str = wire.STREAM) -> dict[int, StoredMessage]:
    """``stream``'s messages in one node's store, by sequence (a later record of a sequence
    replaces an earlier one, as the server's rebuild does). Empty when it has none."""
    msgs = store_dir / "jetstream" / "$G" / "streams" / stream / "msgs"
    by_seq: dict[int, StoredMessage] = {}
    for block in sorted(msgs.glob("*.blk"), key=lambda p: int(p.stem)):
        messages, _torn = read_block(block.read_bytes())
        for message in messages:
            by_seq[message.seq] = message
    return by_seq


@dataclass
class NodeView:
    """One replica against the others."""

    messages: int
    last_seq: int
    differing_seqs: list[int] = field(default_factory=list)
    """Sequences where this node's message is not the majority's (or it has none there)."""
    missing_ids: list[str] = field(default_factory=list)
    """Msg ids some other node holds and this one does not."""
    twice_ids: list[str] = field(default_factory=list)
    """Msg ids this node holds at more than one sequence."""
    shifts: Counter[int] = field(default_factory=Counter)
    """This node's sequence minus the majority's, for the same msg id (0 left out)."""
    examples: list[str] = field(default_factory=list)
    """The first few differing sequences, each with this node's message and the majority's."""


@dataclass
class Divergence:
    """The replicas of one stream compared message by message."""

    nodes: dict[str, NodeView]
    compared_seqs: int
    """Sequences held by any node."""
    note: str = ""
    """What to bear in mind (e.g. a follower was not current when the nodes stopped)."""

    @property
    def diverged(self) -> bool:
        return any(v.differing_seqs or v.missing_ids or v.twice_ids for v in self.nodes.values())

    def summary(self) -> str:
        """One line: identical, or how each differing node differs."""
        note = f" ({self.note})" if self.note else ""
        return self._summary() + note

    def _summary(self) -> str:
        counts = sorted({v.messages for v in self.nodes.values()})
        if not self.diverged:
            return (
                f"replicas identical ({', '.join(map(str, counts))} messages on "
                f"{len(self.nodes)} nodes, compared message by message)"
            )
        parts = []
        for name, v in self.nodes.items():
            if not (v.differing_seqs or v.missing_ids or v.twice_ids):
                continue
            first = f" from seq {v.differing_seqs[0]}" if v.differing_seqs else ""
            shifts = ", ".join(f"{s:+d}: {n}" for s, n in sorted(v.shifts.items()))
            parts.append(
                f"{name} differs at {len(v.differing_seqs)} seqs{first} "
                f"({v.messages} messages, last seq {v.last_seq}; "
                f"{len(v.missing_ids)} msg ids missing, {len(v.twice_ids)} twice; "
                f"seq shifts {{{shifts}}})"
            )
        return "replicas DIVERGE: " + "; ".join(parts)


EXAMPLES: Final = 5
"""Differing sequences described per node."""


def _show(message: StoredMessage | None) -> str:
    if message is None:
        return "nothing"
    return f"{message.subject} {message.msg_id} ({len(message.data)} B)"


def compare(replicas: Mapping[str, Mapping[int, StoredMessage]]) -> Divergence:
    """Each node's copy against the majority at every sequence any node holds.

    With three nodes a message two of them hold is the committed one; a sequence where all
    differ counts against every node. Msg ids are compared as sets too (a message kept at
    one node's sequence but lost at another shows up as a shift of the later ones)."""
    names = list(replicas)
    seqs = sorted(set().union(*(r.keys() for r in replicas.values())))
    majority_seq: dict[str, int] = {}  # msg id → the majority's sequence of it
    views = {n: NodeView(len(r), max(r, default=0)) for n, r in replicas.items()}
    for seq in seqs:
        keys = {n: (replicas[n][seq].key() if seq in replicas[n] else None) for n in names}
        votes = Counter(keys.values())
        winner, count = votes.most_common(1)[0]
        agreed = winner if count * 2 > len(names) else None
        held_by_majority = next(
            (m for o in names if (m := replicas[o].get(seq)) is not None and m.key() == agreed),
            None,
        )
        for n in names:
            if agreed is None or keys[n] != agreed:
                views[n].differing_seqs.append(seq)
                if len(views[n].examples) < EXAMPLES:
                    views[n].examples.append(
                        f"seq {seq}: {n} has {_show(replicas[n].get(seq))}, "
                        f"the majority {_show(held_by_majority)}"
                    )
        if agreed is not None and agreed[1] is not None:
            majority_seq.setdefault(agreed[1], seq)
    every_id = set().union(
        *({m.msg_id for m in r.values() if m.msg_id is not None} for r in replicas.values())
    )
    for n, r in replicas.items():
        held = Counter(m.msg_id for m in r.values() if m.msg_id is not None)
        views[n].twice_ids = sorted(i for i, c in held.items() if c > 1)
        views[n].missing_ids = sorted(every_id - held.keys())
        for seq, m in r.items():
            if m.msg_id is not None and m.msg_id in majority_seq:
                shift = seq - majority_seq[m.msg_id]
                if shift:
                    views[n].shifts[shift] += 1
    return Divergence(views, len(seqs))


def compare_nodes(store_dirs: Mapping[str, Path], stream: str = wire.STREAM) -> Divergence:
    """:func:`compare` of the stopped nodes' stores (node name → its store directory)."""
    return compare({n: read_stream(d, stream) for n, d in store_dirs.items()})


def stop_and_compare(nodes: Sequence[NatsServer], servers: list[str]) -> Divergence:
    """Wait until every replica is current (60 s at most), stop the ``nodes`` (gracefully:
    their stores flushed) and compare their copies of ``REDOX_RAW``. A comparison made
    without every replica current says so in its :attr:`Divergence.note`."""
    import asyncio

    current = asyncio.run(replicas_current(servers, 60))
    for node in nodes:
        node.stop()
    divergence = compare_nodes({n.node: store_dir_of(n.workdir, n.node) for n in nodes})
    if not current:
        divergence.note = "replicas not current after 60 s"
    return divergence


async def replicas_current(servers: list[str], timeout_s: float = 30.0) -> bool:
    """Wait until the stream's leader reports every replica current with no lag
    (:func:`streamer.team.stream.wait_current`, whatever copies it has); whether it did
    within ``timeout_s`` (compare the stores only then: a lagging follower is no
    divergence)."""
    import nats

    from streamer.team import stream

    nc = await nats.connect(servers=servers, connect_timeout=5)
    try:
        await stream.wait_current(nc.jetstream(), wire.STREAM, 1, timeout_s)
    except stream.StreamMoveError:
        return False
    finally:
        await nc.close()
    return True
