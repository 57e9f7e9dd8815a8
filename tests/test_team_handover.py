"""A session handed over between two gateways while the whole NATS cluster is away.

The old holder's devices went on while every node was down, so its outbox holds a backlog
of the athlete's records when the session moves. The workers take a device's holder to be
whoever's grant came last in stream order: if the old holder released its leases before
that backlog was in the stream, the new holder's grant could be stored first and the
workers would drop the old holder's late-but-legitimate records (or, for the athlete's
device the new holder did not take, accept them after the new holder's, out of order).
:meth:`streamer.team.gateway.Gateway.release_after_flush` releases only after the
athlete's rows are acknowledged: a real :class:`Gateway` pair on a real 3-node cluster
SIGKILLed and started again, with other athletes streaming through the old holder all the
while (their rows, published concurrently, must not count for the handed-over athlete's).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import pytest

from devices.recording import RecordedNotification
from streamer.team import wire
from streamer.team.gateway import Gateway
from streamer.team.leases import Lease
from streamer.team.outbox import GatewayOutbox
from tests.servers import NatsServer, nats_cluster, start_all
from tests.team_helpers import ensure_stream_asked_again, stream_messages
from tests.team_sim import accepted

pytest.importorskip("nats")

OTHERS = [f"bob{n}" for n in range(12)]
"""Athletes streaming through the old holder during the whole test."""


def _note(device: str, n: int) -> RecordedNotification:
    """The ``n``-th notification of ``device`` (record time n × 100 ms)."""
    return RecordedNotification((n + 1) * 100_000_000, device, "2a37", bytes([0, 60 + n % 100]))


async def _acquire(lease: Lease) -> None:
    """Take ``lease`` as a contending gateway does: try again until it is free (often:
    the moment it is released)."""
    from nats.errors import Error as NatsError

    while True:
        with contextlib.suppress(NatsError, OSError, TimeoutError):
            if await lease.try_acquire():
                return
        await asyncio.sleep(0.02)


async def _handover(tmp_path: Path, nodes: list[NatsServer]) -> dict[str, Any]:
    """Ann's strap and SmO2 at gateway A; every node SIGKILLed while A goes on; the
    session handed to gateway B (the strap only) before the cluster is back. What A had
    queued for ann when it asked to release, in the ``facts``."""
    import nats

    servers = [n.url for n in nodes]
    nc = await nats.connect(servers=servers, max_reconnect_attempts=-1, reconnect_time_wait=0.25)
    kv = await ensure_stream_asked_again(nc.jetstream(), 3)
    facts: dict[str, Any] = {}
    with (
        GatewayOutbox(tmp_path / "a.sqlite") as box_a,
        GatewayOutbox(tmp_path / "b.sqlite") as box_b,
    ):
        gw_a = Gateway("gwA", servers, box_a, {})
        gw_b = Gateway("gwB", servers, box_b, {})
        runs = [asyncio.create_task(gw.run()) for gw in (gw_a, gw_b)]
        await gw_a.connected.wait()
        await gw_b.connected.wait()
        held = [Lease(kv, "gwA", "ann", d) for d in ("strap", "smo2")]
        for lease in held:
            await _acquire(lease)
            gw_a.offer("ann", wire.LeaseGranted(0, lease.device, "gwA"))
        stop_others = asyncio.Event()

        async def others() -> None:  # the rest of the room, all along
            n = 0
            while not stop_others.is_set():
                for athlete in OTHERS:
                    gw_a.offer(athlete, _note("strap", n))
                n += 1
                await asyncio.sleep(0.01)

        feeder = asyncio.create_task(others())
        n = 0
        for _ in range(20):  # NATS up
            for device in ("strap", "smo2"):
                gw_a.offer("ann", _note(device, n))
            n += 1
        assert await gw_a.flushed("ann", 30.0)
        for node in nodes:  # all at once: no quorum left
            assert node.proc is not None
            node.proc.send_signal(signal.SIGKILL)
        for node in nodes:
            await asyncio.to_thread(node.kill)
        for _ in range(150):  # the session goes on at A while the cluster is away
            for device in ("strap", "smo2"):
                gw_a.offer("ann", _note(device, n))
            n += 1
            await asyncio.sleep(0.002)
        # Ann's last rows come in a burst: once the cluster is back they make one long
        # chain of PubAcks in a round whose other athletes' short chains (rows offered
        # after the release was asked) finish first — a count of rows published reaches
        # ann's offered count while her tail is still queued.
        for _ in range(150):
            for device in ("strap", "smo2"):
                gw_a.offer("ann", _note(device, n))
            n += 1
        facts["ann_offered_at_a"] = 2 * n
        facts["queued_at_release"] = not await gw_a.flushed("ann", 0.0)

        async def release_a() -> None:
            for lease in held:
                while not await gw_a.release_after_flush(lease, "ann", 5.0):
                    pass  # NATS away: wait on

        releasing = asyncio.create_task(release_a())
        await asyncio.to_thread(start_all, nodes)
        # B contends as soon as the cluster is back: it takes the strap the moment A lets
        # it go.
        strap_b = Lease(kv, "gwB", "ann", "strap")
        await _acquire(strap_b)
        gw_b.offer("ann", wire.LeaseGranted(0, "strap", "gwB"))
        for _ in range(50):
            gw_b.offer("ann", _note("strap", n))
            n += 1
        facts["planned_strap"] = n
        assert await gw_b.flushed("ann", 60.0)
        await releasing
        stop_others.set()
        await feeder
        for athlete in OTHERS:
            assert await gw_a.flushed(athlete, 60.0), f"{athlete}'s rows published"
        await strap_b.release()
        for gw in (gw_a, gw_b):
            await gw.stop(5.0)
        for task in runs:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
    await nc.close()
    return facts


def test_a_handover_during_a_nats_outage_releases_only_after_the_backlog(
    tmp_path: Path,
) -> None:
    nodes = nats_cluster(tmp_path / "nats")
    start_all(nodes)
    try:
        facts = asyncio.run(_handover(tmp_path, nodes))
        stored = stream_messages([n.url for n in nodes], 120.0)
    finally:
        for node in nodes:
            node.stop()
    assert facts["queued_at_release"], "A still held ann's records when it asked to release"
    ann = [s for s in stored if s.athlete == "ann"]
    grant_b = next(
        i
        for i, s in enumerate(ann)
        if isinstance(s.message, wire.LeaseGranted) and s.message.gateway == "gwB"
    )
    from_a = [i for i, s in enumerate(ann) if s.gateway == "gwA"]
    assert max(from_a) < grant_b, "every record of A's is in the stream before B's grant"
    assert len(from_a) == 2 + facts["ann_offered_at_a"], "each of A's rows once"
    # What the workers accept: every record, none dropped by the lease rule, each device's
    # records in their order.
    kept = [m for m in accepted(stored)["ann"] if isinstance(m, RecordedNotification)]
    assert len(kept) == facts["ann_offered_at_a"] + 50
    for device, count in (
        ("strap", facts["planned_strap"]),
        ("smo2", facts["ann_offered_at_a"] // 2),
    ):
        assert [m.t_ns for m in kept if m.device == device] == [
            _note(device, i).t_ns for i in range(count)
        ]
