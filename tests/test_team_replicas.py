"""The lease and registry buckets follow the ``REDOX_RAW`` stream to three replicas.

A bucket keeps the replicas it was made with: a registry pushed while the club's stream had
one copy, or a lease bucket made by a gateway started without ``--replicas``, would live on
one node of a three-node club and stop leases or the athletes' registry with it.
:func:`streamer.team.stream.ensure_stream` (every gateway's start) raises both when the
stream has three — best effort, since a gateway must start while a node is down. On a real
3-node cluster: the order of the first push and the first ``--replicas 3`` gateway does not
matter; with a node SIGKILLed a real :class:`~streamer.team.gateway.Gateway` starts, and
the next start with every node up leaves both buckets with three current copies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from nats.errors import Error as NatsError

from streamer.config import Config, parse_config
from streamer.team import stream, wire
from streamer.team.gateway import Gateway
from streamer.team.outbox import GatewayOutbox
from streamer.team.registry import open_registry, push, read_view
from tests.servers import HOST, NatsServer, nats_cluster, start_all
from tests.team_helpers import ensure_stream_asked_again
from tests.test_deploy_stage2 import COPIES_S

pytest.importorskip("nats")


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[NatsServer]]:
    servers = nats_cluster(tmp_path / "nats")
    try:
        start_all(servers)
        yield servers
    finally:
        for server in servers:
            server.stop()


async def _push_ann(kv: Any) -> None:
    """The club file naming ann, pushed as ``registry push`` does — to a bucket just made:
    in a cluster its stream's interest reaches the node this client talks to a moment
    after the creation's answer (no responders until then; the push waits for it)."""
    await push(kv, parse_config('[[athletes]]\nid = "ann"\nname = "Ann"\n'))


def _replicas(info: Any) -> int:
    return int(info.config.num_replicas or 1)


def test_a_registry_pushed_before_the_stream_has_three_copies_follows_it_to_three(
    nodes: list[NatsServer], caplog: pytest.LogCaptureFixture
) -> None:
    import nats

    async def check() -> None:
        nc = await nats.connect([n.url for n in nodes])
        try:
            js = nc.jetstream()
            # The coach pushes first, before any gateway: one copy (no stream yet).
            kv = await open_registry(js, create=True)
            assert kv is not None
            await _push_ann(kv)
            registry = stream.bucket_stream(stream.REGISTRY_BUCKET)
            assert _replicas(await js.stream_info(registry)) == 1
            # A gateway without --replicas changes nothing…
            await ensure_stream_asked_again(js)
            assert _replicas(await js.stream_info(registry)) == 1
            # …the first one with --replicas 3 raises the stream and both buckets.
            with caplog.at_level(logging.WARNING, logger="streamer.team.stream"):
                await ensure_stream_asked_again(js, 3)
            for name in (wire.STREAM, registry, stream.bucket_stream(stream.LEASE_BUCKET)):
                await stream.wait_current(js, name, 3, COPIES_S)
            assert (await read_view(kv)).config(Config()).athletes[0].name == "Ann"
            assert [r.getMessage() for r in caplog.records] == []
        finally:
            await nc.close()

    asyncio.run(check())


def _meta_leader(nodes: list[NatsServer]) -> str:
    """The cluster's meta leader once one is elected, as a running node's monitoring
    endpoint says (polled: 60 s at most)."""
    deadline = time.monotonic() + 60
    while True:
        for node in (n for n in nodes if n.running):
            url = f"http://{HOST}:{node.http_port}/jsz"
            with urllib.request.urlopen(url, timeout=5) as answer:
                leader = json.load(answer)["meta_cluster"].get("leader")
            if leader:
                return str(leader)
        assert time.monotonic() < deadline, "no meta leader elected"
        time.sleep(0.2)


async def _info(js: Any, name: str) -> Any:
    """Stream ``name``'s info once it answers (a bucket's one node may just have started)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        try:
            return await js.stream_info(name)
        except (NatsError, TimeoutError):
            assert loop.time() < deadline, f"{name} does not answer"
        await asyncio.sleep(0.2)


async def _stream_leader_off(nc: Any, name: str, node: str) -> None:
    """Have stream ``name``'s leader be another node than ``node`` (a stepdown, then
    polled: the raw stream must answer while ``node`` is dead)."""
    js = nc.jetstream()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        info = await js.stream_info(name)
        if info.cluster.leader not in (None, node):
            return
        if info.cluster.leader == node:
            await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{name}", b"", timeout=10)
        assert loop.time() < deadline, f"{name}'s leader stays on {node}"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("killed", ["the meta leader", "another node"])
def test_a_gateway_starts_with_a_node_sigkilled_and_the_next_start_raises_the_buckets(
    nodes: list[NatsServer], tmp_path: Path, caplog: pytest.LogCaptureFixture, killed: str
) -> None:
    """The state an older club is left in — stream raised to three, lease bucket and
    registry with one copy each — then one node SIGKILLed and a gateway started.

    Which node dies decides what the server does with the raise: the meta leader (no
    JetStream API request is answered until the others elect a new one, so the raise is
    refused and one warning names both buckets), or another node (the raise is taken, the
    dead node a peer that catches up when it is back). The dead node holds neither
    bucket's one copy (a bucket whose only copy is dead cannot be used at all; where a
    copy goes is the server's choice): when only the other role's node is free, the meta
    leader's node is stopped and started again until the leadership has moved."""
    import nats

    servers = [n.url for n in nodes]
    leases = stream.bucket_stream(stream.LEASE_BUCKET)
    registry = stream.bucket_stream(stream.REGISTRY_BUCKET)

    async def before() -> NatsServer:
        nc = await nats.connect(servers, max_reconnect_attempts=-1, reconnect_time_wait=0.25)
        try:
            js = nc.jetstream()
            await ensure_stream_asked_again(js)  # a stage-2 gateway without --replicas
            kv = await open_registry(js, create=True)
            assert kv is not None
            await _push_ann(kv)
            await stream.raise_replicas(js, wire.STREAM, 3)  # as move-streams.py does
            held = {(await _info(js, n)).cluster.leader for n in (leases, registry)}
            for _ in range(10):
                await stream.wait_current(js, wire.STREAM, 3, COPIES_S)
                meta = await asyncio.to_thread(_meta_leader, nodes)
                wanted = [
                    n
                    for n in nodes
                    if n.node not in held and (n.node == meta) == (killed == "the meta leader")
                ]
                if wanted:
                    await _stream_leader_off(nc, wire.STREAM, wanted[0].node)
                    return wanted[0]
                # The meta leader elsewhere: its node stopped and started again.
                leader = next(n for n in nodes if n.node == meta)
                await asyncio.to_thread(leader.stop)
                await asyncio.to_thread(leader.start)
            raise AssertionError(f"no node for {killed} without a bucket's copy")
        finally:
            await nc.close()

    async def gateway_starts() -> None:
        with GatewayOutbox(tmp_path / "gw.sqlite") as box:
            gw = Gateway("gwA", servers, box, {})
            run = asyncio.create_task(gw.run())
            try:
                await asyncio.wait_for(gw.connected.wait(), 60)
            finally:
                await gw.stop(5.0)
                run.cancel()
                await asyncio.gather(run, return_exceptions=True)

    async def copies() -> dict[str, int]:
        nc = await nats.connect([n.url for n in nodes if n.running])
        try:
            js = nc.jetstream()
            return {name: _replicas(await js.stream_info(name)) for name in (leases, registry)}
        finally:
            await nc.close()

    victim = asyncio.run(before())
    victim.kill()
    with caplog.at_level(logging.WARNING, logger="streamer.team.stream"):
        asyncio.run(gateway_starts())
    warned = [r.getMessage() for r in caplog.records if r.name == "streamer.team.stream"]
    if killed == "the meta leader":
        assert len(warned) == 1, warned
        assert f"bucket {stream.LEASE_BUCKET} (" in warned[0]
        assert f"bucket {stream.REGISTRY_BUCKET} (" in warned[0]
        assert "restart one" in warned[0]
        assert asyncio.run(copies()) == {leases: 1, registry: 1}
    else:
        assert warned == []
        assert asyncio.run(copies()) == {leases: 3, registry: 3}

    victim.start()

    async def next_start() -> None:
        nc = await nats.connect(servers)
        try:
            js = nc.jetstream()
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="streamer.team.stream"):
                kv = await ensure_stream_asked_again(js)  # the next gateway's start
            assert [r.getMessage() for r in caplog.records] == []
            for name in (wire.STREAM, leases, registry):
                await stream.wait_current(js, name, 3, COPIES_S)
            assert (await kv.status()).ttl == stream.DEFAULT_LEASE_TTL_S
            view = await read_view(await js.key_value(stream.REGISTRY_BUCKET))
            assert view.config(Config()).athletes[0].name == "Ann"
        finally:
            await nc.close()

    asyncio.run(next_start())


def test_wait_current_names_a_bucket_with_fewer_copies_than_wanted_within_its_bound(
    nats_server: NatsServer,
) -> None:
    """On one node the lease bucket has one copy: waiting for three ends after the bound
    given, with one line naming the bucket, its stream and what raises it."""
    import nats

    async def check() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            await stream.ensure_stream(js)
            leases = stream.bucket_stream(stream.LEASE_BUCKET)
            assert (await stream.wait_current(js, leases, 1, COPIES_S)).config.name == leases
            started = time.monotonic()
            with pytest.raises(stream.StreamMoveError) as raised:
                await stream.wait_current(js, leases, 3, 0.5)
            assert time.monotonic() - started < 10  # bounded: 0.5 s and one poll, not more
            assert str(raised.value).startswith(
                f"bucket {stream.LEASE_BUCKET} (stream {leases}): 3 current copies wanted, "
                "not there after 0.5 s (only 1 configured (a gateway started with "
                "--replicas 3 raises it)); check"
            )
        finally:
            await nc.close()

    asyncio.run(check())


def test_wait_current_names_the_copy_on_a_dead_node_and_returns_once_it_caught_up(
    nodes: list[NatsServer],
) -> None:
    """A follower's node SIGKILLed and one message stored by the other two: the wait ends
    after its bound naming that node; started again, the node catches up and the wait
    returns the stream's info with every copy current."""
    import nats

    async def victim() -> NatsServer:
        """A node holding neither the stream's leader nor the meta leader: the stream goes
        on answering while it is dead."""
        nc = await nats.connect([n.url for n in nodes])
        try:
            js = nc.jetstream()
            await ensure_stream_asked_again(js, 3)
            info = await stream.wait_current(js, wire.STREAM, 3, COPIES_S)
            spared = {info.cluster.leader, await asyncio.to_thread(_meta_leader, nodes)}
            return next(n for n in nodes if n.node not in spared)
        finally:
            await nc.close()

    async def check(dead: NatsServer) -> None:
        # Through the other nodes only: a client of the dead one would be reconnecting.
        nc = await nats.connect([n.url for n in nodes if n is not dead])
        try:
            js = nc.jetstream()
            await asyncio.to_thread(dead.kill)
            await stream.until_answered(
                partial(js.publish, f"{wire.RAW_PREFIX}.ann", b"x", headers={"Nats-Msg-Id": "a"})
            )
            with pytest.raises(stream.StreamMoveError) as raised:
                await stream.wait_current(js, wire.STREAM, 3, 1.0)
            text = str(raised.value)
            assert text.startswith(f"stream {wire.STREAM}: 3 current copies wanted"), text
            lagging = text.split("(", 1)[1].split(")", 1)[0].split("; ")
            assert [why.split(" ", 1)[0] for why in lagging] == [dead.node], text
            await asyncio.to_thread(dead.start)
            info = await stream.wait_current(js, wire.STREAM, 3, COPIES_S)
            assert info.state.messages == 1
            peers = info.cluster.replicas
            assert len(peers) == 2
            assert all(p.current and not p.lag for p in peers)
        finally:
            await nc.close()

    asyncio.run(check(asyncio.run(victim())))


async def test_wait_current_stopped_as_nats_answers_ends() -> None:
    """``wait_current`` (``move-streams``) stopped just as the stream's info arrives ends:
    nats-py waits for the reply with ``asyncio.wait_for``, which on Python 3.11 returns the
    answer and drops the stop; the wait then polled on until its bound, so an operator's
    Ctrl-C hung for ``within_s``. The stand-in answers the way nats-py does (a follower
    lagging, so the wait would go on); the race is the point."""
    from types import SimpleNamespace

    loop = asyncio.get_running_loop()
    answer: asyncio.Future[object] = loop.create_future()
    asked = asyncio.Event()
    asks = 0

    class Js:
        async def stream_info(self, name: str) -> object:
            nonlocal asks
            asks += 1
            asked.set()
            return await asyncio.wait_for(answer, 10)  # as nats-py waits for a reply

    lagging = SimpleNamespace(name="n2", offline=False, current=True, lag=5)
    info = SimpleNamespace(
        config=SimpleNamespace(num_replicas=3),
        cluster=SimpleNamespace(leader="n1", replicas=[lagging, lagging]),
    )
    task = asyncio.create_task(stream.wait_current(Js(), wire.STREAM, 3, 600.0))  # type: ignore[arg-type]
    await asked.wait()
    await asyncio.sleep(0)  # the task now waits inside nats-py's wait_for
    answer.set_result(info)
    await asyncio.sleep(0)  # the reply is in, the wait for it not yet back: the stop now
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=10)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=10)
    assert done, "wait_current polled on after its stop"
    assert task.cancelled()
    assert asks == 1
