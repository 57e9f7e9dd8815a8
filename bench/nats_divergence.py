"""Do a JetStream cluster's replicas still hold the same stream after a whole-cluster SIGKILL?

Run from the repository root::

    PYTHONPATH=. python3 bench/nats_divergence.py --trials 20
    PYTHONPATH=. python3 bench/nats_divergence.py --binary /usr/sbin/nats-server --trials 40

Each trial, for each ``--binary`` (default: Debian's 2.9.10 and the pip-installed or
``$REDOX_NATS_SERVER`` build): a fresh 3-node cluster (``tests/servers.py``), the
``REDOX_RAW`` stream with 3 replicas made as team mode makes it
(``streamer.team.stream.ensure_stream``, by the gateway), and a real
:class:`streamer.team.gateway.Gateway` in this process publishing ``--athletes`` athletes'
synthetic notifications at ``--rate`` per second through its fsync'd outbox (msg ids,
one PubAck at a time per athlete, resend on timeout). After ``--flow`` s every node is
SIGKILLed at once, started again ``--down`` s later; the gateway resends what was not
acknowledged while publishing goes on ``--after`` s more, then drains. Once the leader
reports every replica current, the nodes are stopped and each one's file store is read
(``tests/nats_store.py``) and compared message by message (seq → subject, msg id, data):
a replica that differs, the sequences where it does, msg ids it lacks or holds twice and
the shift of its sequence numbers against the majority's.

Prints figures; asserts nothing.

Measured 2026-12-02 on the shared 2-core box (loaded: a 200-athlete bench beside it),
200 athletes at 700 messages/s (bench/team.py's 200 athletes at speed 2), kill after 2 s,
cluster down 2 s:

=========================================  ==================  ==================
                                           2.9.10 (Debian)     2.15.1 (PyPI)
=========================================  ==================  ==================
leader killed with the followers           0 of 39 diverged    0 of 40 diverged
(``--leader-lag 0``, as bench/team.py)     (26 leader changes) (29 leader changes)
leader killed 50 ms after the followers    **13 of 30**        0 of 30
(``--leader-lag 50``)                      (17 leader changes) (20 leader changes)
=========================================  ==================  ==================

Every 2.9.10 divergence had the old leader come back as a follower (13 of the 17 trials
where the leadership moved); the old leader's copy then held the messages it had logged
alone in another order (9 trials: 6–16 sequences differ) or lacked messages the gateway
had been acknowledged, every later sequence there shifted down by as many (4 trials: 1,
2, 6 and 13 messages missing on that node) — the pattern of bench/team.py's 200-athlete
run (one message lost on the old leader n3, later sequences shifted by one). Back to back
the kill rarely leaves the leader with log entries of its own (bench/team.py hit it once);
50 ms gives it time to log proposals no follower will store, which is when 2.9.10 keeps
them (nats-io/nats-server#5957, #6027; fixed in 2.10.23).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devices.recording import RecordedNotification  # noqa: E402  (after the path)
from streamer.team.gateway import Gateway  # noqa: E402
from streamer.team.outbox import GatewayOutbox  # noqa: E402
from tests import nats_store  # noqa: E402
from tests.servers import nats_cluster, start_all  # noqa: E402

DEBIAN = "/usr/sbin/nats-server"


@dataclass
class Trial:
    """One trial's figures."""

    offered: int
    held_at_kill: int
    """Outbox rows not yet acknowledged when the nodes were killed."""
    resends: int
    duplicates: int
    """PubAcks that said the server already had the msg id (a resend it dropped)."""
    current: bool
    """Whether the leader reported every replica current before the stop."""
    leaders: tuple[str | None, str | None]
    """The stream's leader before the kill and at the end."""
    divergence: nats_store.Divergence
    lost: dict[str, int]
    """Node → outbox rows (msg ids) the gateway had acknowledged that its store lacks."""
    seconds: float


async def _produce(gateway: Gateway, athletes: int, rate: float, stop: asyncio.Event) -> int:
    """Offer notifications round-robin over ``athletes`` at ``rate`` per second; how many."""
    n = 0
    started = time.monotonic()
    while not stop.is_set():
        due = int((time.monotonic() - started) * rate)
        while n < due:
            # Unique data per message: two messages are equal only if they are the same one.
            note = RecordedNotification(n, "strap", "2a37", n.to_bytes(8, "little"))
            gateway.offer(f"a{n % athletes}", note)
            n += 1
        await asyncio.sleep(0.01)
    return n


async def _leader(urls: list[str]) -> str | None:
    """The stream's leader node now (None if the cluster does not say)."""
    import nats

    from streamer.team import wire

    nc = await nats.connect(servers=urls, connect_timeout=2)
    try:
        info = await nc.jetstream().stream_info(wire.STREAM)
        return info.cluster.leader if info.cluster is not None else None
    finally:
        await nc.close()


async def trial(work: Path, args: argparse.Namespace) -> Trial:
    """One cluster, one flow, one whole-cluster SIGKILL, one comparison (see the module)."""
    started = time.monotonic()
    nodes = nats_cluster(work / "nats")
    urls = [n.url for n in nodes]
    try:
        # Inside the try: a node that fails to start must not leave the others running.
        await asyncio.to_thread(start_all, nodes)
        with GatewayOutbox(work / "gw.sqlite") as outbox:
            gateway = Gateway("gw1", urls, outbox, {}, replicas=3)
            run = asyncio.create_task(gateway.run())
            await gateway.connected.wait()
            stop = asyncio.Event()
            producer = asyncio.create_task(_produce(gateway, args.athletes, args.rate, stop))
            await asyncio.sleep(args.flow)
            leader = await _leader(urls)
            # All at once (no two nodes left to form a quorum), the stream's leader last, as
            # it happened in bench/team.py's run (the followers gone a moment before it).
            # --leader-lag keeps the leader alive a moment longer: it goes on writing
            # proposals to its own log that no follower will ever store.
            for node in sorted(nodes, key=lambda n: n.node == leader):
                assert node.proc is not None
                if node.node == leader and args.leader_lag:
                    await asyncio.sleep(args.leader_lag / 1000)  # the gateway goes on sending
                node.proc.send_signal(signal.SIGKILL)
            held = outbox.depth()
            for node in nodes:
                await asyncio.to_thread(node.kill)  # reaped, ports free
            await asyncio.sleep(args.down)
            await asyncio.to_thread(start_all, nodes)
            await asyncio.sleep(args.after)
            stop.set()
            offered = await producer
            await gateway.stop(drain_s=180)
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)  # (never swallow our own cancel)
            acknowledged = range(1, offered + 1)  # outbox ids of this one boot
            stats = gateway.stats
        current = await nats_store.replicas_current(urls, 60)
        leader_after = await _leader(urls)
        for node in nodes:
            await asyncio.to_thread(node.stop)  # graceful: stores flushed
        replicas = {
            n.node: nats_store.read_stream(nats_store.store_dir_of(n.workdir, n.node))
            for n in nodes
        }
    finally:
        for node in nodes:
            with contextlib.suppress(Exception):
                node.kill()
    lost = {}
    for name, replica in replicas.items():
        # msg id = gw1:<boot>:<outbox id>; the ids of one outbox file are 1, 2, ...
        ids = {int(m.msg_id.rsplit(":", 1)[1]) for m in replica.values() if m.msg_id}
        lost[name] = sum(1 for i in acknowledged if i not in ids)
    return Trial(
        offered=offered,
        held_at_kill=held,
        resends=stats.resends,
        duplicates=stats.duplicates,
        current=current,
        leaders=(leader, leader_after),
        divergence=nats_store.compare(replicas),
        lost=lost,
        seconds=time.monotonic() - started,
    )


def _version(binary: str) -> str:
    import subprocess

    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip().removeprefix("nats-server: ") or "?"


async def run_binary(binary: str, args: argparse.Namespace) -> None:
    os.environ["REDOX_NATS_SERVER"] = binary  # tests/servers.py's nats_binary() reads it
    version = _version(binary)
    print(
        f"\n{binary} ({version}): {args.trials} trials, {args.athletes} athletes at "
        f"{args.rate:g}/s, kill after {args.flow:g} s, down {args.down:g} s, leader killed "
        f"{args.leader_lag:g} ms after the followers",
        flush=True,
    )
    diverged = 0
    shifted = 0
    lost_trials = 0
    not_current = 0
    held: list[int] = []
    for t in range(args.trials):
        work = Path(tempfile.mkdtemp(prefix="nats-div-"))
        try:
            result = await trial(work, args)
        except Exception as exc:  # a trial that could not run: say so, go on
            print(f"  trial {t + 1}: not run: {type(exc).__name__}: {exc}"[:400], flush=True)
            continue
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        d = result.divergence
        held.append(result.held_at_kill)
        diverged += d.diverged
        shifted += any(v.shifts for v in d.nodes.values())
        lost_trials += any(result.lost.values())
        not_current += not result.current
        lost = ", ".join(f"{n} {c}" for n, c in result.lost.items() if c) or "none"
        print(
            f"  trial {t + 1}: {result.offered} offered, {result.held_at_kill} unacknowledged "
            f"at the kill, {result.resends} resends, {result.duplicates} dropped as "
            f"duplicates; acknowledged rows missing on a node: {lost}; "
            f"leader {result.leaders[0]} -> {result.leaders[1]}; "
            f"{'' if result.current else 'replicas NOT current; '}{d.summary()} "
            f"[{result.seconds:.0f} s]",
            flush=True,
        )
    runs = len(held)
    print(
        f"{version}: {diverged} of {runs} trials diverged ({shifted} with shifted sequence "
        f"numbers, {lost_trials} with an acknowledged message missing on a node, "
        f"{not_current} not current at the end); rows unacknowledged at the kill: "
        f"median {sorted(held)[len(held) // 2] if held else 0}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--binary",
        action="append",
        help=f"a nats-server to test (repeatable; default {DEBIAN} and the pip-installed one "
        "or $REDOX_NATS_SERVER)",
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--athletes", type=int, default=200, help="concurrent publish chains")
    parser.add_argument(
        "--rate",
        type=float,
        default=700.0,
        help="messages offered per s (bench/team.py's 200 athletes at speed 2: ~700)",
    )
    parser.add_argument("--flow", type=float, default=2.0, help="s of publishing before the kill")
    parser.add_argument("--down", type=float, default=5.0, help="s the cluster is away")
    parser.add_argument("--after", type=float, default=1.0, help="s of publishing after")
    parser.add_argument(
        "--leader-lag",
        type=float,
        default=0.0,
        help="ms between the followers' SIGKILL and the leader's (0: back to back, as in "
        "bench/team.py)",
    )
    parser.add_argument("--keep", action="store_true", help="keep each trial's directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    binaries = args.binary
    if not binaries:
        from tests.servers import nats_binary

        binaries = list(dict.fromkeys([DEBIAN, nats_binary()]))
    for binary in binaries:
        asyncio.run(run_binary(binary, args))


if __name__ == "__main__":
    main()
