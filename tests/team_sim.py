"""The one-machine team simulation of issue 13: gateways, a 3-node NATS cluster, workers,
PostgreSQL, mosquitto and InfluxDB 1.6 as real processes, emulated athletes' days driven
through them, and the single-box oracle on the same records (its InfluxDB points compared
by :mod:`tests.team_influx`).

The athletes' days are the demo's scenarios (:func:`tests.team_worker_helpers.athlete_days`)
on an accelerated clock: record time runs ``speed`` times faster than wall time and the
hours between a morning reading and a session shrink to ``max_gap_s`` wall seconds. Each
athlete's day is a *segment* at a random gateway; some sessions are handed over to another
gateway in the middle (the first gateway drains its outbox, releases the device leases,
the second takes them and goes on).

A gateway here is the real :class:`streamer.team.gateway.Gateway` (its fsync'd outbox, its
one-PubAck-at-a-time-per-athlete publisher, its msg ids) in its own process (``python -m
tests.team_sim gateway ...``), with the real device leases (:class:`Lease` in the KV
bucket, the grant written into the stream); only the Bluetooth drivers are replaced by the
plan's records, offered at their scheduled wall time — the gateway's ``offer`` path, so the
records are known in advance and the oracle is the single box on exactly them. A gateway
killed and restarted goes on with the records scheduled after it reached NATS again: what
its devices sent while it was dead never reached it (as with a Pi losing power). Nor does
a gateway offer a segment whose device lease another gateway held until the athlete's next
segment elsewhere began: a real one never connected the device (it skips it and says so).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import pickle
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.recording import RecordedNotification
from streamer.athlete.events import (
    GripEnd,
    GripPhase,
    GripPhaseEnd,
    MorningEnd,
    MorningStart,
    SessionEnd,
    SessionRpe,
    SessionStart,
)
from streamer.results import Kind
from streamer.team import wire
from tests import team_helpers as gh
from tests import team_influx as ti
from tests import team_worker_helpers as th
from tests.mqtt_helpers import Received, Subscriber

ROOT = Path(__file__).resolve().parents[1]
DAY_GAP_NS = 3600 * 10**9
"""Record-time gaps longer than this split an athlete's messages into days (ns)."""

INFLUX_DB = "redox"
"""The workers' InfluxDB database."""
ORACLE_DB = "oracle"
"""The database the oracle's points are written to, on the same server, for the comparison."""

Timed = tuple[float, wire.WireMessage]
"""(wall offset from the simulation's start (s), message)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One athlete's messages at one gateway (a day, or half a handed-over session)."""

    athlete: str
    gateway: str
    items: list[Timed]
    handed_over: bool = False
    """The second half of a session handed over from another gateway."""


def schedule(messages: Sequence[wire.WireMessage], speed: float, max_gap_s: float) -> list[Timed]:
    """Wall offsets of ``messages`` (s from 0): record time / ``speed``, gaps capped."""
    out: list[Timed] = []
    offset, last = 0.0, messages[0].t_ns
    for m in messages:
        offset += min((m.t_ns - last) / 1e9 / speed, max_gap_s)
        last = m.t_ns
        out.append((offset, m))
    return out


def make_plan(
    messages: Mapping[str, Sequence[wire.WireMessage]],
    gateways: Sequence[str],
    *,
    speed: float,
    handover: float = 0.1,
    seed: int = 13,
    max_gap_s: float = 3.0,
) -> list[Segment]:
    """Each athlete's day at a random gateway; a ``handover`` share of sessions handed to
    another gateway half way (at least one when there are sessions and ``handover`` > 0)."""
    rng = random.Random(seed)
    segments: list[Segment] = []
    session_days: list[tuple[int, int]] = []  # (segment index, index of the handover cut)
    for athlete, items in messages.items():
        timed = schedule(items, speed, max_gap_s)
        days: list[list[Timed]] = [[timed[0]]]
        for prev, cur in itertools.pairwise(timed):
            if cur[1].t_ns - prev[1].t_ns > DAY_GAP_NS:
                days.append([])
            days[-1].append(cur)
        for day in days:
            segments.append(Segment(athlete, rng.choice(list(gateways)), day))
            starts = [i for i, (_, m) in enumerate(day) if isinstance(m, SessionStart)]
            ends = [i for i, (_, m) in enumerate(day) if isinstance(m, SessionEnd)]
            if starts and ends:
                session_days.append((len(segments) - 1, (starts[0] + ends[0]) // 2))
    if handover > 0 and session_days and len(gateways) > 1:
        count = max(1, round(handover * len(session_days)))
        for index, cut in sorted(rng.sample(session_days, count), reverse=True):
            seg = segments[index]
            other = rng.choice([g for g in gateways if g != seg.gateway])
            segments[index : index + 1] = [
                Segment(seg.athlete, seg.gateway, seg.items[:cut]),
                Segment(seg.athlete, other, seg.items[cut:], handed_over=True),
            ]
    return segments


# --- the gateway process ------------------------------------------------------------------


async def _acquire(lease: Any, until: float = math.inf, stuck: Any = None) -> bool:
    """Take ``lease``, waiting while another gateway holds it (it drains, then releases;
    a dead one's lease expires with the bucket's TTL) — as a gateway contends. False when
    the wall time ``until`` (s) passes first: the device has moved on meanwhile.
    ``stuck`` (called once, with the seconds waited) when the wait has outlasted
    :data:`STUCK_LEASE_S`: a lease nobody renews is free by then, so someone still does."""
    from nats.errors import Error as NatsError

    since = time.monotonic()
    told = False
    while time.time() < until:
        try:
            if await lease.try_acquire():
                return True
        except (NatsError, OSError, TimeoutError):
            pass
        waited = time.monotonic() - since
        if stuck is not None and not told and waited > STUCK_LEASE_S:
            told = True
            await stuck(waited)
        await asyncio.sleep(0.1)
    return False


STUCK_LEASE_S = 75.0
"""A lease wait longer than this (s) is logged with the holder: the bucket's TTL (30 s)
frees an unrenewed lease twice over, so a live holder is still renewing it."""


class Renewal:
    """``leases`` renewed every ``every_s`` in a task of their own, within a second after a
    failure (NATS away), as :meth:`Gateway._drive` does: the key's age counts from the last
    renewal that reached it. :meth:`stop` ends it before the leases are released.

    Stopped by an event, not by cancelling the task: a cancellation can be lost — nats-py
    waits for every reply with ``asyncio.wait_for``, which on Python 3.11 returns the reply
    instead of raising when the cancellation lands in the loop turn the reply arrives in —
    and the task then renewed on for ever: CI's gw1 kept athlete9's strap after its
    hand-over (its renewals every 10 s until the run ended, read from the lease bucket's
    files) and gw3 waited for it without end. Nor is a renewal in flight cut short: one
    cancelled after the server applied it leaves the lease's revision stale, so its release
    fails and the device stays held until the TTL."""

    def __init__(
        self, leases: Sequence[Any], every_s: float, say: Any = print, live: set[Any] | None = None
    ) -> None:
        self.leases = list(leases)
        self.every_s = every_s
        self.say = say
        self.live = live if live is not None else set()
        """The gateway's renewals not stopped yet (this one in it until :meth:`stop`)."""
        self.live.add(self)
        self._stopping = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        from nats.errors import Error as NatsError

        from streamer.team.leases import LeaseLostError

        failed = False
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5 if failed else self.every_s):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            failed = False
            for lease in list(self.leases):
                try:
                    await lease.renew()
                except (NatsError, OSError, TimeoutError):
                    failed = True
                except LeaseLostError as exc:  # said, and not renewed again
                    self.leases.remove(lease)
                    self.say(f"lease lost: {exc}")

    async def stop(self) -> None:
        """End the renewals; returns once none is in flight (the leases' revisions final)."""
        self._stopping.set()
        await self.task
        self.live.discard(self)


def write_t0(t0_file: Path, t0: float) -> None:
    """Give the simulation's start signal: ``t0`` (wall s) into ``t0_file``, whole at once
    (renamed into place: a gateway polling for the file never reads it empty — a run of
    the small simulation once saw ``could not convert string to float: ''``: a gateway
    that ended at its start, and the run failed 120 s later waiting for its plan)."""
    part = t0_file.with_name(t0_file.name + ".part")
    part.write_text(repr(t0))
    os.replace(part, t0_file)


def _t0_when_written(t0_file: Path) -> float:
    """The simulation's start signal: the wall time written to ``t0_file`` (a file: it
    reaches a process in another network namespace as well) by :func:`write_t0`."""
    while True:
        with contextlib.suppress(FileNotFoundError, ValueError):  # not yet, or not whole
            return float(t0_file.read_text())
        time.sleep(0.05)


async def run_gateway(
    gateway_id: str,
    servers: list[str],
    outbox_path: Path,
    segments: list[Assigned],
    t0_file: Path,
    restarted: bool,
) -> None:
    """Drive this gateway's segments of ``plan`` through a real :class:`Gateway` until
    every one is published, its leases released; then keep publishing until stopped.

    The plan's clock starts at the wall time in ``t0_file``, written by the simulation
    once every gateway said ``ready`` (a process start takes seconds on a loaded box). A
    ``restarted`` gateway (its outbox file was there already) skips what was scheduled
    before it reached NATS again: its devices sent that to nobody (a gateway connects a
    device only with its lease, from the servers).

    SIGUSR1 prints where each unfinished athlete chain is (:func:`_chain_report`): the
    simulation asks for it when the plan is not done in time."""
    import nats

    from streamer.team.gateway import Gateway
    from streamer.team.leases import Lease
    from streamer.team.outbox import GatewayOutbox
    from streamer.team.stream import LEASE_BUCKET

    def say(text: str) -> None:
        print(f"gateway {gateway_id}: {text}", flush=True)

    with GatewayOutbox(outbox_path) as outbox:
        leftover = outbox.depth()
        gateway = Gateway(gateway_id, servers, outbox, {})
        task = asyncio.create_task(gateway.run())
        await gateway.connected.wait()
        nc = await nats.connect(
            servers=servers, max_reconnect_attempts=-1, reconnect_time_wait=0.25
        )
        kv = await nc.jetstream().key_value(LEASE_BUCKET)
        ttl = float((await kv.status()).ttl or 30.0)
        booted = time.time() if restarted else 0.0
        chains: dict[str, ChainState] = {}
        renewals: set[Renewal] = set()
        reports: set[asyncio.Task[None]] = set()  # held: the loop keeps weak references only
        t0 = math.nan  # until the start signal

        def on_sigusr1() -> None:
            report = asyncio.create_task(_chain_report(say, chains, renewals, gateway, kv, t0))
            reports.add(report)
            report.add_done_callback(reports.discard)

        # Before "ready": SIGUSR1's default action would end the process.
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, on_sigusr1)
        if restarted:
            say(f"restarted at {booted!r}")
        say("ready")
        t0 = await asyncio.to_thread(_t0_when_written, t0_file)

        async def drained() -> None:
            target = leftover + gateway.stats.offered
            while gateway.stats.published < target:  # noqa: ASYNC110  (counters, no event)
                await asyncio.sleep(0.02)

        async def free(athlete: str, devices: Sequence[str], held: dict[str, Lease]) -> None:
            """Release what this gateway still holds of ``devices`` (its own leases from
            before a crash as well: in the bucket under its name until their TTL)."""
            for d in devices:
                lease = held.pop(d, None) or Lease(kv, gateway_id, athlete, d)
                with contextlib.suppress(Exception):
                    if await lease.holder() == gateway_id and await lease.try_acquire():
                        await lease.release()

        async def chain(athlete: str, mine: list[Assigned]) -> None:
            state = chains[athlete] = ChainState()
            held: dict[str, Lease] = {}  # device → lease, carried over to the next segment
            renewal: Renewal | None = None

            def renew(leases: Sequence[Lease]) -> Renewal:
                return Renewal(leases, ttl / 3, lambda text: say(f"{athlete}: {text}"), renewals)

            for turn in mine:
                seg, keep = turn.segment, turn.keep
                state.segment = turn.index
                items = [(o, m) for o, m in seg.items if t0 + o >= booted]
                devices = sorted(devices_of(seg))
                if items:
                    state.doing = f"waiting for its start at {items[0][0]:.1f} s"
                    await asyncio.sleep(max(0.0, t0 + items[0][0] - time.time()))
                    for d in devices:
                        if d not in held:
                            held[d] = Lease(kv, gateway_id, athlete, d)
                            state.doing = f"acquiring {d} (until {turn.moves_at:.1f} s)"
                            state.lease = held[d]

                            async def stuck(
                                waited: float, lease: Lease = held[d], n: int = turn.index
                            ) -> None:
                                said = await _lease_said(kv, lease)
                                say(f"plan segment {n} waits {waited:.0f} s for {athlete}'s "
                                    f"{lease.device}: {said}")  # fmt: skip

                            acquired = await _acquire(held[d], t0 + turn.moves_at, stuck)
                            state.lease = None
                            if not acquired:
                                # Another gateway held a device until the athlete's next
                                # segment elsewhere began: a real gateway never connected
                                # it, so never received these (offering them now would put
                                # them behind that segment's records).
                                say(f"plan segment {turn.index} skipped: {athlete}'s {d} "
                                    "held elsewhere until it moved on")  # fmt: skip
                                items = []
                                break
                if not items:  # all of it while this gateway was dead, or held elsewhere
                    state.doing = "freeing its devices"
                    if renewal is not None:
                        await renewal.stop()
                        renewal = None
                    await free(athlete, devices, held)
                    continue
                for d in devices:
                    gateway.offer(athlete, wire.LeaseGranted(items[0][1].t_ns, d, gateway_id))
                if renewal is not None:
                    await renewal.stop()
                renewal = renew(list(held.values()))
                for n, (offset, message) in enumerate(items):
                    state.doing = f"offering {n + 1} of {len(items)}"
                    delay = t0 + offset - time.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    gateway.offer(athlete, message)
                # The athlete's next segment is here too: its devices stay held (a device
                # stays connected), and it starts on time — not after a wait for this
                # segment's rows, which a loaded stream can make longer than the gap.
                leaving = [held.pop(d) for d in list(held) if d not in keep]
                if not leaving:
                    continue
                # A hand-over: the next holder's grant must come after every row of ours
                # (release after flush, as Gateway._drive releases): waiting for this
                # athlete's rows, not for a count of all rows published — the athletes
                # are published concurrently, so others' later rows can make up the count
                # while this athlete's backlog is still queued (after a NATS outage).
                queued, asked = gateway.queued(athlete), time.monotonic()
                state.doing = f"handing over: waiting for {queued} rows to reach the stream"
                while not await gateway.flushed(athlete, 5.0):
                    pass  # NATS away: the leases are renewed meanwhile
                if queued:
                    waited = time.monotonic() - asked
                    say(f"{athlete} released after {queued} rows queued were in the stream "
                        f"({waited:.2f} s)")  # fmt: skip
                state.doing = "handing over: releasing"
                # Ended (not merely cancelled) before the releases: see Renewal.
                await renewal.stop()
                renewal = renew(list(held.values())) if held else None
                for lease in leaving:
                    await lease.release()
            state.doing = "done"
            if renewal is not None:
                await renewal.stop()

        by_athlete: dict[str, list[Assigned]] = {}
        for turn in segments:
            by_athlete.setdefault(turn.segment.athlete, []).append(turn)
        await asyncio.gather(*(chain(a, s) for a, s in by_athlete.items()))
        await drained()
        say(f"plan done, {gateway.stats}")
        await task  # go on until SIGTERM


@dataclass
class ChainState:
    """Where one athlete's chain of a simulated gateway is (for :func:`_chain_report`)."""

    segment: int = -1
    """The plan segment it is at."""
    doing: str = "starting"
    lease: Any = None
    """The :class:`Lease` it is acquiring, if it is."""


async def _lease_said(kv: Any, lease: Any) -> str:
    """What the bucket says of ``lease``'s key now: its holder and revision (bounded)."""
    from nats.errors import Error as NatsError
    from nats.js.errors import KeyNotFoundError

    from streamer.team.leases import LeaseValue

    try:
        async with asyncio.timeout(5.0):
            entry = await kv.get(lease.key)
    except KeyNotFoundError:  # deleted (a release) or expired
        return f"{lease.key} free"
    except (NatsError, OSError, TimeoutError) as exc:
        return f"{lease.key} unknown ({exc!r})"
    value = LeaseValue.decode(entry.value)
    holder = value.gateway if value is not None else "an unreadable value"
    return f"{lease.key} held by {holder} at revision {entry.revision}"


async def _chain_report(
    say: Any,
    chains: Mapping[str, ChainState],
    renewals: set[Renewal],
    gateway: Any,
    kv: Any,
    t0: float,
) -> None:
    """Print where each unfinished athlete chain is: its segment, what it waits for (a
    lease: its holder and revision in the bucket; a hand-over: its rows still queued), and
    the leases this gateway still renews (a finished chain renews none), between a
    ``chains at`` and a ``chains end`` line."""
    running = {a: c for a, c in chains.items() if c.doing != "done"}
    say(f"chains at {time.time() - t0:.1f} s: {len(running)} of {len(chains)} unfinished; "
        f"outbox {gateway.outbox.depth()} rows, {gateway.stats}")  # fmt: skip
    for athlete, c in sorted(running.items()):
        extra = f"; {await _lease_said(kv, c.lease)}" if c.lease is not None else ""
        say(f"chain {athlete}: plan segment {c.segment}: {c.doing}{extra}; "
            f"{gateway.queued(athlete)} rows queued")  # fmt: skip
    renewing = sorted(f"{lease.key} (revision {lease.revision})"
                      for r in renewals for lease in r.leases)  # fmt: skip
    say(f"renewing: {', '.join(renewing) or 'nothing'}")
    say("chains end")


def devices_of(seg: Segment) -> set[str]:
    """The devices whose records ``seg`` holds (the leases its gateway takes)."""
    return {m.device for _, m in seg.items if isinstance(m, RecordedNotification)}


def keep_for_next(plan: Sequence[Segment], n: int) -> set[str]:
    """The devices of ``plan[n]`` its gateway keeps at its end: those of the athlete's next
    segment when that is at the same gateway (nothing is handed over), else none."""
    seg = plan[n]
    nxt = next((s for s in plan[n + 1 :] if s.athlete == seg.athlete), None)
    if nxt is None or nxt.gateway != seg.gateway:
        return set()
    return devices_of(nxt)


def moves_at(plan: Sequence[Segment], n: int) -> float:
    """The wall offset (s) at which a device of ``plan[n]`` is due at another gateway: the
    first item of the athlete's first later segment elsewhere that shares a device;
    infinity when there is none."""
    seg = plan[n]
    devices = devices_of(seg)
    for later in plan[n + 1 :]:
        elsewhere = later.athlete == seg.athlete and later.gateway != seg.gateway
        if elsewhere and devices & devices_of(later):
            return later.items[0][0]
    return math.inf


@dataclass(frozen=True, slots=True)
class Assigned:
    """One segment of a gateway's share of the plan, with what its chain must know."""

    index: int
    """Its place in the plan (named in the gateway's log when it is skipped)."""
    segment: Segment
    keep: set[str]
    """The devices its gateway keeps at its end (:func:`keep_for_next`)."""
    moves_at: float
    """When its devices are due elsewhere (:func:`moves_at`): past it, it is skipped."""


def gateway_main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id", required=True)
    parser.add_argument("--nats", required=True)
    parser.add_argument("--outbox", type=Path, required=True)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--t0-file", type=Path, required=True)
    args = parser.parse_args(argv)

    restarted = args.outbox.exists()
    plan: list[Segment] = pickle.loads(args.plan.read_bytes())
    segments = [
        Assigned(n, seg, keep_for_next(plan, n), moves_at(plan, n))
        for n, seg in enumerate(plan)
        if seg.gateway == args.id
    ]

    async def main() -> None:
        task = asyncio.create_task(
            run_gateway(
                args.id, args.nats.split(","), args.outbox, segments, args.t0_file, restarted
            )
        )
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())


# --- processes --------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@dataclass
class Proc:
    """A child process (gateway or worker) that can be killed, stopped and restarted."""

    name: str
    argv: list[str]
    log: Path
    prefix: list[str] = field(default_factory=list)
    """Prepended to ``argv`` (``ip netns exec NS``)."""
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*self.prefix, sys.executable, *self.argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_env(),
                cwd=ROOT,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    @property
    def running(self) -> bool:
        """Started and not ended (a SIGSTOPped process runs)."""
        return self.proc is not None and self.proc.poll() is None

    def state(self, lines: int = 8) -> str:
        """Whether it runs, and the last ``lines`` lines of its log: when it runs, those
        it said itself (``gateway …``, ``publishing …``: not the NATS client's tracebacks
        of a server away); when it ended, whatever came last (its own traceback)."""
        text = self.log.read_text(errors="replace").splitlines()
        code = self.proc.poll() if self.proc is not None else None
        if code is not None:
            return f"ended with exit code {code}; its log ends:\n" + "\n".join(text[-lines:])
        said = [line for line in text if line.startswith(("gateway ", "publishing "))]
        return "still runs; the last lines it said:\n" + "\n".join(said[-lines:])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def gateway_proc(workdir: Path, gateway_id: str, servers: Sequence[str], plan: Path) -> Proc:
    return Proc(
        gateway_id,
        ["-m", "tests.team_sim", "gateway", "--id", gateway_id, "--nats", ",".join(servers),
         "--outbox", str(workdir / f"outbox-{gateway_id}.sqlite"), "--plan", str(plan),
         "--t0-file", str(workdir / "t0")],
        workdir / f"gateway-{gateway_id}.log",
    )  # fmt: skip


def worker_proc(
    workdir: Path,
    worker_id: str,
    servers: Sequence[str],
    dsn: str,
    mqtt_url: str,
    config: Path | None = None,
) -> Proc:
    """A ``redox-streamer worker`` process; ``config`` gives its other sinks (InfluxDB)."""
    return Proc(
        worker_id,
        ["-m", "streamer.cli", "worker", "--id", worker_id, "--nats", ",".join(servers),
         "--postgres", dsn, "--mqtt", mqtt_url,
         *(["--config", str(config)] if config is not None else [])],
        workdir / f"worker-{worker_id}.log",
    )  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def box_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (/proc/stat):
    the load the measured processes shared the cores with."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields[:8]) - idle) / tick, sum(fields[:8]) / tick


@dataclass
class TimedSubscriber(Subscriber):
    """A :class:`Subscriber` that also notes each message's arrival (wall s)."""

    arrived: list[float] = field(default_factory=list)

    def _record(self, m: Any) -> None:
        self.arrived.append(time.time())
        super()._record(m)


# --- what the stream and the subscriber hold ------------------------------------------------


def key_of(m: wire.WireMessage) -> tuple[object, ...]:
    """What identifies a message by its content."""
    if isinstance(m, RecordedNotification):
        return ("n", m.device, m.char, m.t_ns, m.data)
    return (type(m).__name__, m.t_ns)


#: The marker fence of deploy/README.md, restated: the protocol markers (an RPE is checked
#: but moves nothing), and how long a marker must have waited at its gateway to count as a
#: cut-off gateway's backlog (s).
FENCED = (MorningStart, MorningEnd, SessionStart, SessionEnd, SessionRpe, GripPhase,
          GripPhaseEnd, GripEnd)  # fmt: skip
FENCE_BACKLOG_S = 20.0


def waited_s(s: gh.Stored) -> float | None:
    """How long a message waited at its gateway before the stream stored it (s; None
    without a receipt stamp): the stored time to the µs, as nats-py gives it to a worker."""
    if s.received_ns is None:
        return None
    return (round(s.stored_s * 1e6) * 1000 - s.received_ns) / 1e9


def accepted(
    stored: Sequence[gh.Stored], *, grants: bool = False
) -> dict[str, list[wire.WireMessage]]:
    """Per athlete, what a worker processes, in stream order: notifications and device
    events from the gateway holding the device's lease at their place (the worker's rule),
    markers but a late one (a protocol marker older than the last one taken, which another
    gateway sent, held back at its gateway over 20 s: a cut-off gateway's backlog); the
    grants too with ``grants`` (the oracle marks a hand-over's gap by them). Written here
    again from the rules in deploy/README.md, not imported from the worker: the oracle must
    not share the worker's mistakes."""
    leases: dict[tuple[str, str], str] = {}
    last_marker: dict[str, tuple[int, str]] = {}  # athlete → (t_ns, gateway) taken last
    out: dict[str, list[wire.WireMessage]] = {}
    for s in stored:
        m = s.message
        if isinstance(m, wire.LeaseGranted):
            leases[(s.athlete, m.device)] = m.gateway
            if grants:
                out.setdefault(s.athlete, []).append(m)
            continue
        if isinstance(m, RecordedNotification | wire.DeviceEvent):
            holder = leases.get((s.athlete, m.device))
            if holder is not None and holder != s.gateway:
                continue
        elif isinstance(m, FENCED):
            t_last, by = last_marker.get(s.athlete, (m.t_ns, s.gateway))
            held_s = waited_s(s)
            backlog = held_s is not None and held_s > FENCE_BACKLOG_S
            if s.gateway and by and by != s.gateway and m.t_ns < t_last and backlog:
                continue
            if not isinstance(m, SessionRpe) and m.t_ns >= t_last:
                last_marker[s.athlete] = (m.t_ns, s.gateway)
        out.setdefault(s.athlete, []).append(m)
    return out


@dataclass
class StreamFacts:
    """Lost, duplicated and reordered messages: the stream against the plan."""

    planned: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    reorders: int = 0
    """Accepted messages after a later-planned one *of the same source*: one device's
    records and device events, or the athlete's protocol markers. What the processors need
    (:func:`source_of`): each device's state is its own (a strap's beat clock and HRV
    window, an SmO2 sensor's effort detector, which skips a sample older than its last),
    and the markers open and close the protocols in their order."""
    interleave_reorders: int = 0
    """Accepted messages after a later-planned one *of another source* of the athlete. The
    stream keeps each gateway's arrival order only: with two gateways holding one athlete's
    devices at once (strap on A, SmO2 on B) their interleaving is arrival order, off by a
    publish's milliseconds (which no processor notices), by an outage's seconds after a
    NATS restart. Where it matters: a marker against the records of the protocol it opens
    or closes (a morning's RR after its end is left out of the reading), and power against
    an SmO2 effort decided before the power arrived. In this simulation one gateway at a
    time carries an athlete (a hand-over releases after its rows are in the stream), so the
    plan's interleaving is reachable and this must be 0 as well; the exception, a gateway
    cut off past its leases' TTL whose backlog comes after the next gateway's rows, is
    dropped by the workers' rules (``dropped_after_cut_off``), not accepted out of order."""
    missed_while_dead: int = 0
    """Scheduled while their gateway was down (never received: not lost by the system)."""
    missed_while_cut_off: int = 0
    """Scheduled at a gateway cut off from the servers and killed before its link came
    back, and not in the stream: a segment that began meanwhile waited for its device
    leases (a gateway connects a device only with its lease) and was never received."""
    missed_while_held_elsewhere: int = 0
    """Of a segment its gateway skipped (logged): another gateway held a device's lease
    until the athlete's next segment elsewhere began — a restarted gateway whose devices
    moved on — so a real gateway never connected the device for them."""
    dropped_after_cut_off: int = 0
    """In the stream, scheduled at a gateway cut off from the servers and killed, but sent
    after its leases expired (their TTL) and another gateway took them: the workers drop a
    former holder's late records, and its protocol markers older than the next gateway's,
    by design (deploy/README.md, "the lease rule")."""
    dropped_by_lease: int = 0
    """In the stream but dropped by the workers' lease rule, and not explained by a cut-off:
    records from a gateway that did not hold the device's lease at that place in it."""


def _windows(
    windows: Sequence[tuple[str, float, float]], plan: Sequence[Segment], t0: float
) -> set[tuple[str, tuple[object, ...]]]:
    """(athlete, key) of what ``plan`` scheduled at a gateway within its (gateway, from,
    to) wall windows (± 1 s)."""
    out: set[tuple[str, tuple[object, ...]]] = set()
    for gateway, start, end in windows:
        for seg in plan:
            if seg.gateway == gateway:
                for offset, m in seg.items:
                    if start - 1.0 <= t0 + offset <= end + 1.0:
                        out.add((seg.athlete, key_of(m)))
    return out


def stream_facts(
    planned: Mapping[str, Sequence[wire.WireMessage]],
    got: Mapping[str, Sequence[wire.WireMessage]],
    dead: Sequence[tuple[str, float, float]] = (),
    plan: Sequence[Segment] = (),
    t0: float = 0.0,
    *,
    raw: Mapping[str, Sequence[wire.WireMessage]] | None = None,
    cut_off: Sequence[tuple[str, float, float]] = (),
    skipped: Sequence[int] = (),
) -> StreamFacts:
    """Compare per athlete ``got`` (what the workers accept) with ``planned``; ``dead`` =
    (gateway, from, to) wall windows of a killed gateway, ``cut_off`` those of a gateway
    cut off then killed and ``skipped`` the plan's segments a gateway skipped (their devices
    held elsewhere): their scheduled records missing from the stream are counted apart;
    what is in ``raw`` (the whole stream) but not accepted is counted as dropped by the
    lease rule (apart again when a cut-off explains it)."""
    missed = _windows(dead, plan, t0)
    unreached = _windows(cut_off, plan, t0)
    elsewhere = {(plan[n].athlete, key_of(m)) for n in skipped for _, m in plan[n].items}
    facts = StreamFacts()
    for athlete, items in planned.items():
        index = {key_of(m): i for i, m in enumerate(items)}
        received = [key_of(m) for m in got.get(athlete, [])]
        in_stream = {key_of(m) for m in (raw or {}).get(athlete, [])}
        facts.planned += len(items)
        facts.delivered += len(received)
        facts.duplicates += len(received) - len(set(received))
        for k in set(index) - set(received):
            if k in in_stream and (athlete, k) in unreached:
                facts.dropped_after_cut_off += 1
            elif k in in_stream:
                facts.dropped_by_lease += 1
            elif (athlete, k) in elsewhere:
                facts.missed_while_held_elsewhere += 1
            elif (athlete, k) in missed:
                facts.missed_while_dead += 1
            elif (athlete, k) in unreached:
                facts.missed_while_cut_off += 1
            else:
                facts.lost += 1
        order = [
            (index[k], source_of(m)) for m in got.get(athlete, []) if (k := key_of(m)) in index
        ]
        last: dict[str, int] = {}
        for i, source in order:
            if i < last.get(source, -1):
                facts.reorders += 1
            last[source] = max(i, last.get(source, -1))
        facts.interleave_reorders += sum(
            1 for (a, sa), (b, sb) in itertools.pairwise(order) if b < a and sa != sb
        )
    return facts


def source_of(m: wire.WireMessage) -> str:
    """The source whose own order the processors need: the device of a record or device
    event, ``markers`` for the athlete's protocol markers (see :class:`StreamFacts`)."""
    if isinstance(m, RecordedNotification | wire.DeviceEvent):
        return m.device
    return "markers"


def marker_holds(
    stored: Sequence[gh.Stored],
    got: Mapping[str, Sequence[wire.WireMessage]],
    planned: Mapping[str, Sequence[wire.WireMessage]],
) -> tuple[float, list[str]]:
    """Of ``got`` (:func:`accepted` of ``stored``): the longest any protocol marker waited
    at its gateway before the stream stored it (s), and a line per marker behind a
    later-planned message of the athlete: what it is, its gateway, how long it waited,
    what it came after."""
    held: dict[tuple[str, tuple[object, ...]], tuple[str, float | None]] = {}
    for st in stored:
        held.setdefault((st.athlete, key_of(st.message)), (st.gateway, waited_s(st)))
    longest = 0.0
    lines: list[str] = []
    for athlete, items in planned.items():
        index = {key_of(m): i for i, m in enumerate(items)}
        latest: tuple[int, wire.WireMessage] | None = None
        for m in got.get(athlete, []):
            k = key_of(m)
            if k not in index:
                continue
            gateway, wait = held.get((athlete, k), ("?", None))
            if isinstance(m, FENCED) and wait is not None:
                longest = max(longest, wait)
            if latest is not None and index[k] < latest[0] and source_of(m) == "markers":
                waited = "?" if wait is None else f"{wait:.1f} s"
                after = latest[1]
                what = type(after).__name__
                if source_of(after) != "markers":
                    what += f" of {source_of(after)}"
                ahead_s = (items[latest[0]].t_ns - m.t_ns) / 1e9
                lines.append(
                    f"{athlete}: {type(m).__name__} of {gateway} (waited {waited}) after "
                    f"{what}, planned {ahead_s:.0f} s of record time later"
                )
            if latest is None or index[k] > latest[0]:
                latest = (index[k], m)
    return longest, lines


Live = tuple[str, int, float, str]
"""A live sample at the subscriber: (athlete, record time (ns), arrival (wall s), its topic
after the athlete's name)."""


class MqttFacts(th.SeqRule):
    """Durable results at a subscriber through the documented consumer rule
    (:class:`th.SeqRule`), and live samples' arrival times."""

    def __init__(self, sub: TimedSubscriber) -> None:
        super().__init__()
        self.sub = sub
        self.read = 0
        self.live: list[Live] = []

    def update(self) -> set[tuple[str, str]]:
        received: list[Received] = self.sub.received
        for m, at in zip(received[self.read :], self.sub.arrived[self.read :], strict=False):
            self.read += 1
            if any(f"/{w}/" in m.topic for w in ("worker", "partition", "bridge", "gateway")):
                continue
            body = m.json()
            seq = body.pop("seq")
            assert isinstance(seq, int)
            if m.qos == 0 and not m.retain:
                ts_ns = body["ts_ns"]
                assert isinstance(ts_ns, int)
                athlete = str(body["athlete"])
                kind = m.topic.split(f"/{athlete}/", 1)[-1]
                self.live.append((athlete, ts_ns, at, kind))
                continue
            self.take(m.topic, m.payload, body, seq)
        return self.kept


def first_arrivals(live: Sequence[Live]) -> tuple[list[Live], list[Live]]:
    """``live`` split into each sample's first arrival and its repeats (a takeover sends
    again those after the partition's last checkpoint). A repeat is the same (athlete,
    record time, topic): one sample per notification and topic, as the simulation's strap,
    Moxy and power meter give (a grip dynamometer's notification gives several at one
    time: not simulated)."""
    firsts: list[Live] = []
    repeats: list[Live] = []
    seen: set[tuple[str, int, str]] = set()
    for sample in live:
        athlete, ts_ns, _, kind = sample
        key = (athlete, ts_ns, kind)
        (repeats if key in seen else firsts).append(sample)
        seen.add(key)
    return firsts, repeats


def latencies(live: Sequence[Live], plan: Sequence[Segment], t0: float,
              window: tuple[float, float] | None = None) -> list[float]:  # fmt: skip
    """The record's *scheduled* offer → subscriber, per live sample's first arrival (s);
    within ``window`` (wall s) of offers when given. Includes the simulated gateway's own
    lag behind its schedule (a loaded machine's event loop): :func:`receipt_latencies` is
    the measure."""
    when = {
        (seg.athlete, m.t_ns): t0 + offset
        for seg in plan
        for offset, m in seg.items
        if isinstance(m, RecordedNotification)
    }
    out = []
    for athlete, ts_ns, at, _ in first_arrivals(live)[0]:
        sent = when.get((athlete, ts_ns))
        if sent is None or (window is not None and not window[0] <= sent <= window[1]):
            continue
        out.append(at - sent)
    return out


@dataclass
class LiveStages:
    """Per live sample in the steady window (s): the whole way from the gateway's receipt
    (its ``Redox-Received`` stamp) to the subscriber, and its two halves at the stream's
    store time — the gateway's (outbox fsync, publish, the cluster's quorum) and the
    worker's (consume, process, publish live, mosquitto)."""

    receipt: list[float] = field(default_factory=list)
    to_stream: list[float] = field(default_factory=list)
    from_stream: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    """``receipt`` per live sample topic (after the athlete's name)."""
    resent: list[float] = field(default_factory=list)
    """Gateway receipt → subscriber of each live sample that came again (the whole run): a
    takeover sends again those after the partition's last checkpoint. The latencies above
    are each sample's first arrival."""

    def __repr__(self) -> str:  # the figures' print: percentiles, not every sample
        parts = [
            f"{name} p50 {1000 * percentile(v, 50):.0f} ms p99 {1000 * percentile(v, 99):.0f} ms"
            for name, v in (("receipt", self.receipt), ("to_stream", self.to_stream),
                            ("from_stream", self.from_stream))
        ]  # fmt: skip
        return f"LiveStages({len(self.receipt)} samples: {', '.join(parts)})"


def receipt_latencies(live: Sequence[Live], stored: Sequence[gh.Stored],
                      window: tuple[float, float] | None = None) -> LiveStages:  # fmt: skip
    """Gateway receipt → subscriber of each live sample whose record is in ``stored`` with
    a receipt stamp, received within ``window`` (wall s) when given: its first arrival (a
    repeat, at any time, goes to ``resent``: :func:`first_arrivals`). A sample is matched
    to its notification by (athlete, record time); of two notifications with the same key
    the earlier receipt counts (the larger latency)."""
    when: dict[tuple[str, int], tuple[float, float]] = {}
    for s in stored:
        if isinstance(s.message, RecordedNotification) and s.received_ns is not None:
            key = (s.athlete, s.message.t_ns)
            got = (s.received_ns / 1e9, s.stored_s)
            when[key] = min(when.get(key, got), got)
    out = LiveStages()
    firsts, repeats = first_arrivals(live)
    for athlete, ts_ns, at, _ in repeats:
        if (stamps := when.get((athlete, ts_ns))) is not None:
            out.resent.append(at - stamps[0])
    for athlete, ts_ns, at, kind in firsts:
        stamps = when.get((athlete, ts_ns))
        if stamps is None:
            continue
        received, stored_s = stamps
        if window is not None and not window[0] <= received <= window[1]:
            continue
        out.receipt.append(at - received)
        out.by_kind.setdefault(kind, []).append(at - received)
        out.to_stream.append(stored_s - received)
        out.from_stream.append(at - stored_s)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100), nan for none."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, int(q) - 1))]


# --- the whole simulation --------------------------------------------------------------------


@dataclass
class Figures:
    """What one simulation run measured."""

    athletes: int = 0
    gateways: int = 0
    messages: int = 0
    stream: StreamFacts = field(default_factory=StreamFacts)
    marker_wait_s: float = 0.0
    """The longest an accepted protocol marker waited at its gateway (s)."""
    late_markers: list[str] = field(default_factory=list)
    """Accepted markers behind a later-planned message of their athlete (:func:`marker_holds`)."""
    history_identical: bool = False
    mqtt_complete: bool = False
    mqtt: dict[str, int] = field(default_factory=dict)
    alerts: int = 0
    """Alert events (raised or cleared) the oracle's results hold: those of the live days."""
    streaming_s: float = 0.0
    drained_s: float = 0.0
    """From the plan's end to every result in PostgreSQL and at the subscriber (s)."""
    worker_cpu: dict[str, float] = field(default_factory=dict)
    """Each worker's share of a core in the steady window (CPU s / wall s)."""
    box_busy: float = float("nan")
    """The whole machine's busy share of all its cores in the steady window (0–1)."""
    load_average: float = float("nan")
    """The 1-minute load average at the steady window's end."""
    steady_s: float = 0.0
    """The steady window's length (wall s)."""
    live_latency_s: list[float] = field(default_factory=list)
    """Scheduled offer → subscriber of the live samples offered in the steady window (s):
    from the start to the first fault (includes the simulated gateway's lag)."""
    live_stages: LiveStages = field(default_factory=LiveStages)
    """Gateway receipt → subscriber in the steady window, and its halves (s)."""
    faults: dict[str, str] = field(default_factory=dict)
    """Each fault and what was measured around it."""
    influx: ti.InfluxFacts = field(default_factory=ti.InfluxFacts)
    """The workers' durable InfluxDB points against the oracle's, and the live tagging."""
    network: str = "loopback"


def trim_sessions(
    messages: Mapping[str, Sequence[wire.WireMessage]], keep_s: float
) -> dict[str, list[wire.WireMessage]]:
    """Each session's records cut to its first ``keep_s`` record seconds (the end marker
    kept): shorter runs; the oracle sees the same cut records."""
    out: dict[str, list[wire.WireMessage]] = {}
    for athlete, items in messages.items():
        kept: list[wire.WireMessage] = []
        start: int | None = None
        for m in items:
            if isinstance(m, SessionStart):
                start = m.t_ns
            elif isinstance(m, SessionEnd):
                start = None
            elif start is not None and m.t_ns - start > keep_s * 1e9:
                continue
            kept.append(m)
        out[athlete] = kept
    return out


class Simulation:
    """The servers, ``gateways`` gateway processes and two worker processes (their InfluxDB
    sink through a counting relay) on this machine; :meth:`run` drives ``messages`` through
    them and compares with the oracle.

    ``faults`` = (wall offset from the start (s), name) of :meth:`fault`; ``netns`` puts
    each gateway in its own network namespace (:mod:`tests.team_netns`); ``history``: a
    single-box store of the earlier days, migrated into PostgreSQL before the workers start
    and the oracle's starting point (:mod:`tests.team_history`); ``steady_skip_s``: wall s
    after the start left out of the steady window's CPU and latency figures."""

    def __init__(
        self,
        workdir: Path,
        messages: Mapping[str, Sequence[wire.WireMessage]],
        *,
        gateways: int = 3,
        workers: int = 2,
        speed: float = 20.0,
        handover: float = 0.1,
        seed: int = 13,
        faults: Sequence[tuple[float, str]] = (),
        netns: bool = False,
        log: Any = None,
        history: Path | None = None,
        steady_skip_s: float = 0.0,
    ) -> None:
        from tests.servers import InfluxDB1, Mosquitto, PostgreSQL, nats_cluster

        self.workdir = workdir
        self.messages = {a: list(m) for a, m in messages.items()}
        self.gateway_ids = [f"gw{i + 1}" for i in range(gateways)]
        self.worker_ids = [f"w{i + 1}" for i in range(workers)]
        self.plan = make_plan(self.messages, self.gateway_ids, speed=speed,
                              handover=handover, seed=seed)  # fmt: skip
        self.faults = sorted(faults)
        self.netns = netns
        self.history = history
        self.steady_skip_s = steady_skip_s
        self.say = log or (lambda text: None)
        workdir.mkdir(parents=True, exist_ok=True)
        self.pg = PostgreSQL(workdir / "pg")
        self.nats = nats_cluster(workdir / "nats")
        self.mq = Mosquitto(workdir / "mq")
        self.influx = InfluxDB1(workdir / "influx")
        self.relay: ti.RelayProcess | None = None
        self.worker_config = workdir / "worker.toml"
        self.gws: dict[str, Proc] = {}
        self.wks: dict[str, Proc] = {}
        self.dead: list[tuple[str, float, float]] = []
        self.cut_off: list[tuple[str, float, float]] = []
        """(gateway, link down, killed) wall windows of :meth:`_link_down_kill`."""
        self.figures = Figures(athletes=len(messages), gateways=gateways,
                               messages=sum(len(m) for m in self.messages.values()))  # fmt: skip
        self.t0 = 0.0
        self.net: Any = None

    @property
    def servers(self) -> list[str]:
        if self.net is not None:
            return [self.net.url(n.port) for n in self.nats]
        return [n.url for n in self.nats]

    def start_servers(self) -> None:
        from tests.servers import start_all

        (self.workdir / "nats").mkdir(parents=True, exist_ok=True)
        self.pg.start()
        self.mq.start()
        self.influx.start()
        self.relay = ti.RelayProcess(self.influx.url, self.workdir)
        self.relay.start()
        self.worker_config.write_text(ti.worker_config(self.relay.url, INFLUX_DB))
        start_all(self.nats)

    def stop_all(self) -> None:
        for proc in [*self.gws.values(), *self.wks.values()]:
            with contextlib.suppress(Exception):
                proc.stop()
        for server in [*self.nats, self.mq, self.pg, self.influx]:
            with contextlib.suppress(Exception):
                server.stop()
        if self.relay is not None:
            self.relay.stop()
        with contextlib.suppress(Exception):
            self.pg.remove()
        if self.net is not None:
            self.net.close()

    async def _ensure_stream(self) -> None:
        import nats

        nc = await nats.connect(servers=self.servers, connect_timeout=5)
        try:
            # Asked again as a gateway does: the lease bucket's three copies, asked for right
            # after the cluster formed, outlasted nats-py's 5 s once (2026-12-03).
            await gh.ensure_stream_asked_again(nc.jetstream(), 3)
        finally:
            await nc.close()

    async def run(self, timeout_s: float = 600.0) -> Figures:
        plan_file = self.workdir / "plan.pickle"
        plan_file.write_bytes(pickle.dumps(self.plan))
        if self.netns:
            from tests.servers import HOST
            from tests.team_netns import Namespaces, NamespacesUnavailable

            try:
                self.net = Namespaces.create(self.gateway_ids)
            except NamespacesUnavailable as exc:
                self.figures.network = f"loopback processes (no network namespaces: {exc})"
            else:
                self.figures.network = self.net.describe()
                for node in self.nats:  # clients reach the nodes on the bridge's address
                    text = node.config.read_text()
                    node.config.write_text(
                        # the client port only (the first listen:), not the routes'
                        text.replace(f"listen: {HOST}:", f"listen: {self.net.host}:", 1)
                    )
        self.start_servers()
        await self._ensure_stream()
        if self.history is not None:  # the earlier weeks, migrated as a club moving over does
            from tests import team_history

            migrated = await asyncio.to_thread(team_history.migrate, self.pg.dsn, self.history)
            self.say(f"history: {migrated}")
        sub = TimedSubscriber("127.0.0.1", self.mq.port, client_id="sim-sub")
        await sub.start()
        facts = MqttFacts(sub)
        for wid in self.worker_ids:
            self.wks[wid] = worker_proc(self.workdir, wid, self.servers, self.pg.dsn,
                                        self.mq.url, self.worker_config)  # fmt: skip
            self.wks[wid].start()
        for gid in self.gateway_ids:
            proc = gateway_proc(self.workdir, gid, self.servers, plan_file)
            if self.net is not None:
                proc.prefix = self.net.prefix(gid)
            self.gws[gid] = proc
            proc.start()
        for gid, proc in self.gws.items():
            await _wait(lambda p=proc: "ready" in p.log.read_text(errors="replace"),
                        120, f"gateway {gid} connected")  # fmt: skip
        self.t0 = time.time() + 0.5
        write_t0(self.workdir / "t0", self.t0)
        end = self.t0 + max(o for seg in self.plan for o, _ in seg.items)
        # The steady window: from the start (after ``steady_skip_s``: the gateways' lease
        # grants at the start are no steady load) to the first fault (or the plan's end).
        await asyncio.sleep(max(0.0, self.t0 + self.steady_skip_s - time.time()))
        steady_start = time.time()
        cpu0 = {w: cpu_seconds(p.pid) for w, p in self.wks.items()}
        box0 = box_cpu_seconds()
        steady_end = min([end] + [self.t0 + at for at, _ in self.faults])
        await asyncio.sleep(max(0.0, steady_end - time.time()))
        self.steady = (steady_start, time.time())
        box1 = box_cpu_seconds()
        self.figures.steady_s = self.steady[1] - self.steady[0]
        self.figures.worker_cpu = {
            w: (cpu_seconds(p.pid) - cpu0[w]) / self.figures.steady_s for w, p in self.wks.items()
        }
        self.figures.box_busy = (box1[0] - box0[0]) / max(1e-9, box1[1] - box0[1])
        self.figures.load_average = os.getloadavg()[0]
        for at, name in self.faults:
            await asyncio.sleep(max(0.0, self.t0 + at - time.time()))
            self.say(f"[{time.time() - self.t0:6.1f} s] fault: {name}")
            result = await self.fault(name, facts)
            self.figures.faults[name] = result
            self.say(f"[{time.time() - self.t0:6.1f} s]   {result}")
        await asyncio.sleep(max(0.0, end - time.time()))
        self.figures.streaming_s = time.time() - self.t0
        for gid, proc in self.gws.items():

            def done_or_ended(p: Proc = proc) -> bool:
                return "plan done" in p.log.read_text(errors="replace") or not p.running

            try:
                await _wait(done_or_ended, timeout_s, f"gateway {gid} publishing its plan")
            except AssertionError as exc:
                # Its chains and every gateway's renewals: a lease it waits for may be
                # held by another that renews it still.
                others = [await chain_report(p) for g, p in self.gws.items() if g != gid]
                raise AssertionError(
                    "\n".join([f"{exc}; {await chain_report(proc)}", *others])
                ) from None
            if "plan done" not in proc.log.read_text(errors="replace"):
                raise AssertionError(f"gateway {gid} ended before its plan was published; "
                                     f"{proc.name} {proc.state()}")  # fmt: skip
        # A restarted gateway skips what was scheduled before it reached NATS again (its
        # devices sent that to nobody): the dead window ends there, not at the spawn.
        for n, (gid, start, end) in enumerate(self.dead):
            log = self.gws[gid].log.read_text(errors="replace")
            restarts = [float(t) for t in re.findall(rf"gateway {gid}: restarted at (\S+)", log)]
            later = [t for t in restarts if t >= end]
            self.dead[n] = (gid, start, min(later) if later else end)
        stored = await asyncio.to_thread(gh.stream_messages, self.servers, 120.0)
        got = accepted(stored)
        raw: dict[str, list[wire.WireMessage]] = {}
        for s in stored:
            raw.setdefault(s.athlete, []).append(s.message)
        skipped = [
            int(n)
            for proc in self.gws.values()
            for n in re.findall(r"plan segment (\d+) skipped", proc.log.read_text(errors="replace"))
        ]
        self.figures.stream = stream_facts(
            self.messages, got, self.dead, self.plan, self.t0,
            raw=raw, cut_off=self.cut_off, skipped=skipped,
        )  # fmt: skip
        self._exactly_once = stored
        self.figures.marker_wait_s, self.figures.late_markers = marker_holds(
            stored, got, self.messages
        )
        live = accepted(stored, grants=True)  # the grants and device events too
        if self.history is not None:  # the single box goes on from the same history
            from tests import team_history

            expected, want_rows = await asyncio.to_thread(
                team_history.oracle, self.history, live, self.workdir / "oracle.sqlite3"
            )
        else:
            expected = await asyncio.to_thread(th.oracle, live)
            want_rows = th.oracle_rows(expected)
        want_mqtt = th.expected_messages(expected)
        self.expected = expected
        self.figures.alerts = sum(r.kind is Kind.ALERTS for r in expected)

        def done() -> bool:
            try:
                rows = th.history_rows(self.pg.dsn)
            except Exception:
                return False
            return rows == want_rows and want_mqtt <= facts.update()

        started = time.time()
        with contextlib.suppress(AssertionError):
            await _wait(done, timeout_s, "every result in PostgreSQL and at the subscriber")
        self.figures.drained_s = time.time() - started
        have_rows = th.history_rows(self.pg.dsn)
        self.figures.history_identical = have_rows == want_rows
        self.history_diff = {
            kind: (sorted(set(want_rows[kind]) - set(have_rows[kind])),
                   sorted(set(have_rows[kind]) - set(want_rows[kind])))
            for kind in want_rows
        }  # fmt: skip
        self.figures.mqtt_complete = want_mqtt <= facts.update()
        self.figures.mqtt = dict(facts.facts)
        self.figures.influx = await self._influx_facts(expected, timeout_s)
        self.figures.live_latency_s = latencies(facts.live, self.plan, self.t0, self.steady)
        self.figures.live_stages = receipt_latencies(facts.live, stored, self.steady)
        self.live = facts.live
        self.received = facts.kept
        await sub.stop()
        return self.figures

    async def _influx_facts(self, expected: Sequence[Any], timeout_s: float) -> ti.InfluxFacts:
        """The oracle's points in their own database, then the workers' compared with them
        (waiting for the workers' outboxes to drain to InfluxDB)."""
        url = self.influx.url
        await asyncio.to_thread(ti.write_oracle, url, ORACLE_DB, expected)
        compared: list[ti.InfluxFacts] = []

        def same() -> bool:
            compared[:] = [ti.compare(url, INFLUX_DB, ORACLE_DB)]
            return compared[0].identical

        with contextlib.suppress(AssertionError):
            await _wait(same, timeout_s, "the oracle's durable points in InfluxDB", every_s=1.0)
        influx = compared[-1]
        assert self.relay is not None
        influx.rewrites = self.relay.rewrites()
        return influx

    def check_gateways_exactly_once(self) -> None:
        """Per gateway: every outbox row in the stream once, in order (its msg ids)."""
        for gid in self.gateway_ids:
            mine = [s for s in self._exactly_once if s.gateway == gid]
            if mine:
                gh.check_exactly_once(mine)

    # -- faults --------------------------------------------------------------------------

    async def fault(self, name: str, facts: MqttFacts) -> str:
        """Inflict ``name`` and wait for the system to recover; what was measured."""
        if name == "nats-leader-kill":
            return await self._leader_kill()
        if name == "worker-kill":
            return await self._worker_kill()
        if name == "worker-stop":
            return await self._worker_stop(facts)
        if name == "gateway-kill":
            return await self._gateway_kill()
        if name == "gateway-link-down":
            return await self._link_down()
        if name == "postgres-restart":
            return await self._restart(self.pg, "PostgreSQL")
        if name == "mosquitto-restart":
            return await self._restart(self.mq, "mosquitto")
        if name == "nats-restart":
            return await self._nats_restart()
        if name == "gateway-link-down-kill":
            return await self._link_down_kill()
        if name == "worker-kill-morning":
            return await self._worker_kill_morning()
        if name == "influx-restart":
            return await self._influx_restart()
        raise ValueError(f"unknown fault {name!r}")

    async def _leader_kill(self) -> str:
        leader = await gh.stream_leader(self.servers)
        node = next(n for n in self.nats if n.node == leader)
        killed_at = time.time()
        await asyncio.to_thread(node.kill)
        others = [u for n, u in zip(self.nats, self.servers, strict=True) if n is not node]
        new = await gh.stream_leader(others)
        await asyncio.sleep(5.0)  # some writes after the election, then the node back
        await asyncio.to_thread(node.start)
        stored = await asyncio.to_thread(gh.stream_messages, self.servers, 120.0)
        around = [s.stored_s for s in stored if killed_at - 5 <= s.stored_s <= killed_at + 60]
        stall = max((b - a for a, b in itertools.pairwise(sorted(around))), default=float("nan"))
        self.leader_stall_s = stall
        return f"leader {leader} SIGKILLed, new leader {new}; longest write gap {stall:.2f} s"

    async def _worker_kill(self) -> str:
        victim = self.worker_ids[0]
        survivor = self.worker_ids[1]
        proc = self.wks[victim]
        killed_at = time.monotonic()
        await asyncio.to_thread(proc.kill)
        return await self._takeover(victim, survivor, killed_at)

    async def _takeover(self, victim: str, survivor: str, killed_at: float) -> str:
        """Wait for ``survivor`` to hold every partition; restart ``victim``."""
        import psycopg

        from streamer.team.partitions import held_partitions

        proc = self.wks[victim]

        def taken() -> bool:
            with psycopg.connect(self.pg.dsn, autocommit=True) as conn:
                held = held_partitions(conn)
            return len(held) == wire.DEFAULT_PARTITIONS and all(
                app.split(":")[1] == survivor for app in held.values()
            )

        await _wait(taken, 120, "the survivor holding every partition")
        took = time.monotonic() - killed_at
        self.takeover_s = max(took, getattr(self, "takeover_s", 0.0))  # the slowest kill's
        proc.start()  # back: the partitions are shared again
        return f"worker {victim} SIGKILLed: {survivor} held every partition after {took:.2f} s"

    async def _worker_stop(self, facts: MqttFacts) -> str:
        proc = self.wks[self.worker_ids[1]]
        before = len(facts.sub.received)
        proc.signal(signal.SIGSTOP)
        await asyncio.sleep(20.0)  # the fault itself: 20 s frozen
        during = len(facts.sub.received) - before
        proc.signal(signal.SIGCONT)
        return (
            f"worker {proc.name} SIGSTOPped 20 s: {during} messages reached the subscriber "
            "meanwhile (the other worker's partitions); its own stayed locked by its live "
            "PostgreSQL session, so they waited and caught up after SIGCONT"
        )

    async def _gateway_kill(self) -> str:
        gid = self.gateway_ids[-1]
        proc = self.gws[gid]
        start = time.time()
        await asyncio.to_thread(proc.kill)
        await asyncio.sleep(3.0)  # powered off for 3 s
        proc.start()
        self.dead.append((gid, start, time.time()))
        return f"gateway {gid} SIGKILLed, restarted 3 s later"

    async def _link_down(self) -> str:
        if self.net is None:
            return "skipped: no network namespaces (loopback gateways)"
        gid = self.gateway_ids[0]
        self.net.link(gid, up=False)
        await asyncio.sleep(30.0)  # the fault itself: the link away for 30 s
        self.net.link(gid, up=True)
        return f"gateway {gid}'s link down 30 s, then up"

    def _held_by(self, worker_id: str) -> set[int]:
        """The partitions ``worker_id`` holds now (its PostgreSQL advisory locks)."""
        import psycopg

        from streamer.team.partitions import held_partitions

        with psycopg.connect(self.pg.dsn, autocommit=True) as conn:
            held = held_partitions(conn)
        return {p for p, app in held.items() if app.split(":")[1] == worker_id}

    async def _partition_of(self) -> dict[str, int]:
        """Each athlete's partition, from the stream's subjects (the server's hash)."""
        import nats

        nc = await nats.connect(servers=self.servers, connect_timeout=5)
        try:
            info = await nc.jetstream().stream_info(wire.STREAM, subjects_filter=">")
        finally:
            await nc.close()
        out = {}
        for subject in info.state.subjects or {}:
            number, athlete = wire.athlete_of(subject)
            out[athlete] = number
        return out

    def _mornings(self) -> list[tuple[str, float, float]]:
        """(athlete, start, end) wall offsets (s) of every morning reading in the plan."""
        out = []
        for seg in self.plan:
            start = None
            for offset, m in seg.items:
                if isinstance(m, MorningStart):
                    start = offset
                elif isinstance(m, MorningEnd) and start is not None:
                    out.append((seg.athlete, start, offset))
                    start = None
        return out

    async def _worker_kill_morning(self, horizon_s: float = 30.0) -> str:
        """SIGKILL a worker at the moment, within ``horizon_s``, when the most morning
        readings are open in the partitions it holds (from the plan). The victim is the
        worker holding the most partitions now (after an earlier kill the restarted one
        may hold none yet)."""
        held = {w: await asyncio.to_thread(self._held_by, w) for w in self.worker_ids[:2]}
        victim = max(held, key=lambda w: len(held[w]))
        survivor = next(w for w in held if w != victim)
        mine = held[victim]
        partition = await self._partition_of()
        windows = [(s, e) for a, s, e in self._mornings() if partition.get(a) in mine]
        now = time.time() - self.t0 + 0.5

        def open_at(t: float) -> int:
            return sum(1 for s, e in windows if s < t < e)

        moments = [now + 0.25 * k for k in range(int(horizon_s / 0.25))]
        best = max(moments, key=lambda t: (open_at(t), -t))
        await asyncio.sleep(max(0.0, self.t0 + best - time.time()))
        at = time.time() - self.t0
        open_now = open_at(at)
        killed_at = time.monotonic()
        await asyncio.to_thread(self.wks[victim].kill)
        self.morning_open = open_now
        took = await self._takeover(victim, survivor, killed_at)
        return (
            f"{took}; {open_now} morning readings open in its {len(mine)} partitions at the "
            f"kill ({at:.1f} s into the plan)"
        )

    def _outbox_state(self, gid: str) -> tuple[int, int]:
        """(rows, highest id) in gateway ``gid``'s outbox file now."""
        path = self.workdir / f"outbox-{gid}.sqlite"
        if not path.exists():
            return 0, 0
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
            rows, top = db.execute("SELECT count(*), max(id) FROM gateway_outbox").fetchone()
        return int(rows), int(top or 0)

    def _outboxes_past(self, tops: Mapping[str, int]) -> bool:
        """Every row at or below ``tops`` (per gateway) has left its outbox."""
        for gid, top in tops.items():
            path = self.workdir / f"outbox-{gid}.sqlite"
            with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
                (left,) = db.execute(
                    "SELECT count(*) FROM gateway_outbox WHERE id <= ?", (top,)
                ).fetchone()
            if left:
                return False
        return True

    async def _last_seq(self) -> int:
        """The raw stream's last sequence number now."""
        import nats

        nc = await nats.connect(servers=self.servers, connect_timeout=5)
        try:
            return int((await nc.jetstream().stream_info(wire.STREAM)).state.last_seq)
        finally:
            await nc.close()

    async def _first_stored_after(self, seq: int, t: float) -> float:
        """When the server stored the first message after ``seq`` that is later than
        ``t`` (wall s), waiting for one."""
        import nats
        from nats.js.api import ConsumerConfig, DeliverPolicy

        nc = await nats.connect(servers=self.servers, connect_timeout=5)
        try:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                    opt_start_seq=seq + 1)  # fmt: skip
            sub = await nc.jetstream().subscribe(
                wire.stream_subjects()[0], ordered_consumer=True, config=config
            )
            while True:
                msg = await sub.next_msg(timeout=120)
                stored = float(msg.metadata.timestamp.timestamp())
                if stored > t:
                    await sub.unsubscribe()
                    return stored
        finally:
            await nc.close()

    async def _nats_restart(self, down_s: float = 5.0) -> str:
        """Every NATS node SIGKILLed at once, ``down_s`` away, started again; the gateways
        keep their rows meanwhile. The stall: the kill → the first message stored after."""
        from tests.servers import start_all

        before = await self._last_seq()
        for node in self.nats:  # all at once: no two nodes left to form a quorum
            assert node.proc is not None
            node.proc.send_signal(signal.SIGKILL)
        killed_at = time.time()
        for node in self.nats:
            await asyncio.to_thread(node.kill)  # reaped, ports free
        await asyncio.sleep(down_s)  # the fault itself: the whole cluster away
        states = {gid: await asyncio.to_thread(self._outbox_state, gid) for gid in self.gws}
        held = sum(rows for rows, _ in states.values())
        started = time.time()
        await asyncio.to_thread(start_all, self.nats)
        up_s = time.time() - started
        try:
            stall = await self._first_stored_after(before, killed_at) - killed_at
        except TimeoutError:  # nothing stored for 120 s: the run's figures say the rest
            stall = float("nan")
        self.nats_restart_stall_s = stall
        tops = {gid: top for gid, (_, top) in states.items()}
        caught_up = await _took(lambda: self._outboxes_past(tops), 300, killed_at)
        return (
            f"all {len(self.nats)} NATS nodes SIGKILLed, started again after {down_s:.0f} s "
            f"(ready in {up_s:.1f} s); the gateways' outboxes held {held} rows; writes stalled "
            f"{stall:.1f} s, the backlog was in the stream {caught_up} after the kill"
        )

    async def _link_down_kill(self, down_s: float = 30.0) -> str:
        """A gateway's link down ``down_s``, SIGKILLed while down, restarted: what its
        outbox held is sent by the new process (same msg ids), once."""
        if self.net is None:
            return "skipped: no network namespaces (loopback gateways)"
        gid = self.gateway_ids[1 % len(self.gateway_ids)]
        proc = self.gws[gid]
        down = time.time()
        self.net.link(gid, up=False)
        await asyncio.sleep(down_s)  # the fault itself: the link away
        held, top = await asyncio.to_thread(self._outbox_state, gid)
        start = time.time()
        await asyncio.to_thread(proc.kill)
        self.cut_off.append((gid, down, start))
        self.net.link(gid, up=True)
        proc.start()
        self.dead.append((gid, start, time.time()))
        sent = await _took(lambda: self._outboxes_past({gid: top}), 300, start)
        return (
            f"gateway {gid}'s link down {down_s:.0f} s, SIGKILLed while down with {held} rows "
            f"in its outbox, restarted: they were in the stream {sent} after the kill"
        )

    async def _influx_restart(self) -> str:
        """InfluxDB SIGKILLed and started again: the workers' outboxes keep what it missed."""
        assert self.relay is not None
        started = time.time()
        await asyncio.to_thread(self.influx.kill)
        await asyncio.to_thread(self.influx.start)
        away = time.time() - started
        relay = self.relay
        resumed = await _took(lambda: relay.last_accepted > started + away, 300, started)
        return (
            f"InfluxDB SIGKILLed and started again ({away:.1f} s away); writes accepted again "
            f"{resumed} after the kill"
        )

    async def _restart(self, server: Any, what: str) -> str:
        started = time.monotonic()
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        return f"{what} restarted ({time.monotonic() - started:.1f} s away)"


async def chain_report(proc: Proc, within_s: float = 20.0) -> str:
    """Where each of gateway ``proc``'s unfinished athlete chains is, as it says on SIGUSR1
    (:func:`_chain_report`); its log's last lines when it does not say within ``within_s``."""
    marker = f"gateway {proc.name}: chains end"

    def said() -> int:
        return proc.log.read_text(errors="replace").count(marker)

    before = said()
    try:
        proc.signal(signal.SIGUSR1)
        await _wait(lambda: said() > before, within_s, f"{proc.name}'s chain report")
    except (AssertionError, OSError) as exc:
        tail = proc.log.read_text(errors="replace").splitlines()[-20:]
        return f"{proc.name}: no chain report ({exc}); its log ends:\n" + "\n".join(tail)
    text = proc.log.read_text(errors="replace")
    start = text.rindex(f"gateway {proc.name}: chains at")
    return text[start : text.rindex(marker) + len(marker)]


async def _took(condition: Any, timeout_s: float, since: float) -> str:
    """How long after ``since`` (wall s) ``condition`` held ("not within …" after
    ``timeout_s``): a fault's recovery, reported rather than failing the whole run."""
    try:
        await _wait(condition, timeout_s, "recovery")
    except AssertionError:
        return f"not within {timeout_s:.0f} s"
    return f"{time.time() - since:.1f} s"


async def _wait(condition: Any, timeout_s: float, what: str, every_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(every_s)


if __name__ == "__main__":
    if sys.argv[1:2] == ["gateway"]:
        gateway_main(sys.argv[2:])
    else:
        raise SystemExit("usage: python -m tests.team_sim gateway --id ID --nats URLS ...")
