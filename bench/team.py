"""The one-machine team simulation of issue 13 with its faults; prints the issue's targets.

Run from the repository root (as root for the network namespaces)::

    PYTHONPATH=. python3 bench/team.py                       # 60 athletes, 4 gateways
    PYTHONPATH=. python3 bench/team.py --athletes 200 --speed 2
    PYTHONPATH=. python3 bench/team.py --faults none         # steady state only
    PYTHONPATH=. python3 bench/team.py --history-days 26     # 4 weeks: alerts raised live
    PYTHONPATH=. python3 bench/team.py --steady 90           # live latency and CPU targets

``--gateways`` gateway processes (each in its own network namespace with a veth pair to a
bridge, or loopback processes where namespaces cannot be made — printed), a 3-node NATS
cluster, 2 ``redox-streamer worker`` processes, PostgreSQL, mosquitto and InfluxDB 1.6;
``--athletes``
emulated athletes' ``--days`` (a morning reading each day, a training session every other
day) on a clock ``--speed`` times faster, each day at a random gateway, 10% of sessions
handed over to another gateway half way (:mod:`tests.team_sim`). The faults follow one
another after a steady window (which gives the CPU and latency figures): the NATS stream
leader SIGKILLed, a worker SIGKILLed (the survivor's takeover timed), a worker SIGKILLed
when the most morning readings are open in its partitions, a gateway SIGKILLed and
restarted, PostgreSQL restarted, mosquitto restarted, InfluxDB SIGKILLed and started again,
a worker SIGSTOPped 20 s, a gateway's link down 30 s, every NATS node SIGKILLed and started
again 5 s later, a gateway's link down 30 s then the gateway SIGKILLed while down and
restarted. At the end each NATS node's own copy of the stream is read from its files and
the three compared (``tests/nats_store.py``; a difference is printed with the faults: the
server, not our code, then explains a difference against the oracle), the stream is
compared with the plan and what the workers kept in
PostgreSQL, published and wrote to InfluxDB with the single-box oracle on the same records.
Prints figures; asserts nothing (``tests/test_team_simulation.py`` is the test). The live
latency is from the gateway's receipt of a record (its ``Redox-Received`` stamp, read back
from the stream) to the subscriber's, split at the stream's store time; the old figure,
from the record's scheduled offer (which adds the simulated gateway's own lag behind its
schedule on this loaded machine), is printed beside it.

The fault run's clock runs ``--speed`` times faster, so its steady window carries
``athletes × speed`` live-equivalent athletes on a box that also runs the gateways, NATS,
the oracle and the subscriber: its CPU and latency figures are printed, not judged.
``--steady S`` is the targets' run: every athlete in a training session at once (its first
session cut to ``S`` record seconds, no morning, no hand-over, no faults) at real time
(``--speed 1``), so ``--athletes`` is the live load; the CPU per worker and the latency are
measured over the session after a warm-up (the gateways' lease grants), printed with the
machine's busy share and load average over that window.

Why the CPU figures differ (measured 2026-12-02, µs of worker CPU per stream message):
``bench/team_worker.py`` drains a backlog without live samples, 284; with them, 494 (live
publishing +74%); with two busy processes beside it, 490 (a busy machine does not change
it); ``--steady`` with the devices in phase (all notifying in the same millisecond), ~420;
dephased as real devices are, ~1,200: alone, each message pays its own wake-ups, NATS
read and MQTT publish (one publish per live sample is half the worker's CPU there, half of
that the kernel's TCP send). The dephased real-time run is the one that answers the target.

The CPU line scales a worker's share linearly from the athletes it carries to a quarter of
a core: a lower bound, since its passes fill as athletes are added and share their fixed
costs. ``--steady 60 --athletes 400`` carries 200 per worker, the target itself (measured
2026-12-02: 17.1 and 18.0% of a core, 21.0% before that session's changes; the box 91–96%
busy, so the latency target is missed there — the simulation's other processes want the
cores).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

from devices.recording import RecordedNotification
from streamer.athlete.events import SessionEnd, SessionStart
from streamer.team import wire
from tests import nats_store, team_history
from tests import team_sim as sim
from tests import team_worker_helpers as th

FAULTS = (
    "nats-leader-kill",
    "worker-kill",
    "worker-kill-morning",
    "gateway-kill",
    "postgres-restart",
    "mosquitto-restart",
    "influx-restart",
    "worker-stop",
    "gateway-link-down",
    "nats-restart",
    "gateway-link-down-kill",
)
STEADY_S = 25.0
"""The fault-free window at the start (wall s): CPU and live latency are measured there."""
SPACING_S = 8.0
"""Wall seconds between the end of one fault and the next (the system settles)."""
WARMUP_S = 10.0
"""``--steady``: wall seconds after the start left out of the figures (lease grants, the
workers' first messages of each athlete)."""


def session_window(
    messages: Mapping[str, Sequence[wire.WireMessage]], seconds: float
) -> dict[str, list[wire.WireMessage]]:
    """Each athlete's first training session, from its start marker, cut to its first
    ``seconds`` record seconds (its end marker kept): every athlete live at once, with the
    most devices a day has (strap, Moxy, power meter)."""
    out: dict[str, list[wire.WireMessage]] = {}
    for athlete, items in messages.items():
        start = next((n for n, m in enumerate(items) if isinstance(m, SessionStart)), None)
        if start is None:
            continue
        end = next(n for n in range(start, len(items)) if isinstance(items[n], SessionEnd))
        out[athlete] = list(items[start : end + 1])
    return sim.trim_sessions(out, seconds)


def dephase(
    messages: Mapping[str, Sequence[wire.WireMessage]], seed: int = 13
) -> dict[str, list[wire.WireMessage]]:
    """Each device's records shifted later by its own random phase within its notification
    interval: the emulated devices of every athlete notify at the same instants (180
    notifications in one millisecond every 2 s at 60 athletes), real ones on their own
    clocks. Markers stay; the oracle sees the same shifted records."""
    rng = random.Random(seed)
    out: dict[str, list[wire.WireMessage]] = {}
    for athlete, items in messages.items():
        times: dict[str, list[int]] = {}
        for m in items:
            if isinstance(m, RecordedNotification):
                times.setdefault(m.device, []).append(m.t_ns)
        phase = {
            device: int(rng.uniform(0.0, statistics.median(b - a for a, b in pairwise(t))))
            for device, t in times.items()
            if len(t) > 1
        }
        shifted = [
            replace(m, t_ns=m.t_ns + phase.get(m.device, 0))
            if isinstance(m, RecordedNotification)
            else m
            for m in items
        ]
        out[athlete] = sorted(shifted, key=lambda m: m.t_ns)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--athletes", type=int, default=60)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--gateways", type=int, default=4)
    parser.add_argument(
        "--speed", type=float, help="record s per wall s (default 5; 1 with --steady)"
    )
    parser.add_argument(
        "--steady",
        type=float,
        metavar="S",
        help="the live targets' run: every athlete in a session at once for S record s at "
        "real time, no faults (see above)",
    )
    parser.add_argument("--handover", type=float, default=0.1, help="share of sessions")
    parser.add_argument(
        "--faults", default=",".join(FAULTS), help=f"comma-separated of {FAULTS}, or none"
    )
    parser.add_argument(
        "--in-phase",
        action="store_true",
        help="--steady: every device notifying at the same instants, as emulated (a burst)",
    )
    parser.add_argument("--no-netns", action="store_true", help="gateways on loopback")
    parser.add_argument(
        "--history-days",
        type=int,
        default=0,
        help="days before the live ones, made by the single box and migrated into "
        "PostgreSQL before the workers start (tests/team_history.py): alerts raised live",
    )
    args = parser.parse_args()
    if args.speed is None:
        args.speed = 1.0 if args.steady else 5.0
    if args.steady and (args.history_days or args.speed <= 0):
        parser.error("--steady takes neither --history-days nor a --speed <= 0")
    if args.steady and args.steady / args.speed - WARMUP_S < 20:
        parser.error(
            f"--steady {args.steady:g} at speed {args.speed:g} leaves less than 20 s after "
            f"the {WARMUP_S:g} s warm-up: use --steady {(WARMUP_S + 20) * args.speed:g} or more"
        )
    faults = [] if args.faults == "none" or args.steady else args.faults.split(",")
    faults = [f for f in faults if f]
    work = Path(tempfile.mkdtemp(prefix="bench-team-"))
    history = None
    if args.history_days:
        messages, history = team_history.prepare(
            work / "history", args.athletes, args.history_days, args.days
        )
    elif args.steady:
        messages = session_window(th.athlete_days(args.athletes, args.days), args.steady)
        if not args.in_phase:
            messages = dephase(messages)
    else:
        messages = th.athlete_days(args.athletes, args.days)
    # Faults one after another: each is scheduled at the earliest time; a fault waits for
    # the system's recovery (e.g. the takeover) before the next one starts.
    schedule = [(STEADY_S + n * SPACING_S, name) for n, name in enumerate(faults)]
    simulation = sim.Simulation(
        work,
        messages,
        gateways=args.gateways,
        speed=args.speed,
        handover=0.0 if args.steady else args.handover,
        faults=schedule,
        netns=not args.no_netns,
        log=lambda text: print(text, flush=True),
        history=history,
        steady_skip_s=WARMUP_S if args.steady else 0.0,
    )
    plan_s = max(o for seg in simulation.plan for o, _ in seg.items)
    handed = sum(seg.handed_over for seg in simulation.plan)
    print(
        f"{args.athletes} athletes x {args.days} days ({sum(map(len, messages.values()))} "
        f"messages), {args.gateways} gateways, 2 workers, speed {args.speed:g}: "
        f"{plan_s:.0f} s of plan, {handed} sessions handed over; work dir {work}",
        flush=True,
    )
    started = time.monotonic()
    try:
        figures = asyncio.run(simulation.run(timeout_s=600.0))
        try:
            simulation.check_gateways_exactly_once()
            exactly_once = "yes"
        except AssertionError as exc:
            exactly_once = f"NO: {exc}"
        replicas = check_replicas(simulation)
    finally:
        simulation.stop_all()
    report(args, figures, simulation, exactly_once, time.monotonic() - started, replicas)


def check_replicas(simulation: sim.Simulation) -> nats_store.Divergence | str:
    """Each NATS node's own copy of the raw stream, compared message by message (the nodes
    are stopped for it: a running node keeps recent writes in memory). A consumer reads one
    node's copy, so a difference between them — nats-server before 2.10.23 can keep an old
    leader's uncommitted message after a whole-cluster crash — reaches the workers as a
    difference against the oracle that no check of ours can see. A string when it could
    not be done."""
    try:
        return nats_store.stop_and_compare(simulation.nats, simulation.servers)
    except Exception as exc:  # the report goes on: say why this line is missing
        return f"not compared: {type(exc).__name__}: {exc}"


def report(
    args: argparse.Namespace,
    f: sim.Figures,
    simulation: sim.Simulation,
    exactly_once: str,
    wall_s: float,
    replicas: nats_store.Divergence | str,
) -> None:
    s = f.stream
    lat = f.live_latency_s
    p50, p99 = sim.percentile(lat, 50), sim.percentile(lat, 99)
    live_athletes = f.athletes * args.speed  # live-equivalent: the clock runs `speed` x
    per_worker = live_athletes / 2
    cpu = max(f.worker_cpu.values(), default=float("nan"))
    at_quarter = per_worker * 0.25 / cpu if cpu > 0 else math.nan
    # The targets are about live operation: judged on the real-time run only.
    judged = args.speed == 1
    rate = _notification_rate(simulation)
    under = (
        f"{live_athletes:.0f} live{'' if judged else '-equivalent'} athletes "
        f"({f.athletes} x speed {args.speed:g}{', in a session at once' if args.steady else ''}"
        f"{'' if not args.steady else ', devices in phase' if args.in_phase else ', devices dephased'}"
        f"), {rate:.0f} notifications/s; window {f.steady_s:.0f} s: machine "
        f"{100 * f.box_busy:.0f}% busy ({os.cpu_count()} cores), load average "
        f"{f.load_average:.1f}"
    )
    leader = getattr(simulation, "leader_stall_s", None)
    whole = getattr(simulation, "nats_restart_stall_s", None)
    morning_open = getattr(simulation, "morning_open", None)
    takeover = getattr(simulation, "takeover_s", None)

    def line(target: str, value: str, good: bool | None) -> None:
        mark = "   " if good is None else ("ok " if good else "NO ")
        print(f"  {mark} {target:<48} {value}")

    print(f"\n{f.network}; run took {wall_s:.0f} s; faults:")
    for name, what in f.faults.items():
        print(f"  - {name}: {what}")
    server = _nats_version(simulation)
    if isinstance(replicas, str):
        print(f"  - NATS replicas ({server}): {replicas}")
    else:
        print(f"  - NATS replicas ({server}): {replicas.summary()}")
        for view in replicas.nodes.values():
            for example in view.examples:
                print(f"      {example}")
    print("\ntargets (issue 13):")
    print(f"  (steady window: {under}{'' if judged else '; accelerated: printed, not judged'})")
    line("raw records lost 0", f"{s.lost} of {s.planned} (+{s.missed_while_dead} sent to a "
         f"dead gateway, +{s.missed_while_cut_off} to a cut-off one before its kill, "
         f"+{s.missed_while_held_elsewhere} of segments skipped: the device held elsewhere)",
         s.lost == 0)  # fmt: skip
    line("records dropped by the workers' lease rule", f"{s.dropped_by_lease} (in the stream "
         "after their device's lease passed to another gateway)", s.dropped_by_lease == 0)  # fmt: skip
    line("  a cut-off gateway's late records, dropped", f"{s.dropped_after_cut_off} (sent "
         "after its leases expired and passed on: by design, deploy/README.md)", None)  # fmt: skip
    line("duplicates in the stream 0", str(s.duplicates), s.duplicates == 0)
    line("per-athlete reorders 0: within a device/markers", str(s.reorders), s.reorders == 0)
    line("  between an athlete's devices and markers", str(s.interleave_reorders),
         s.interleave_reorders == 0)  # fmt: skip
    for late in f.late_markers[:12]:
        print(f"        {late}")
    line("  accepted markers: longest wait at a gateway", f"{f.marker_wait_s:.1f} s "
         "(stored in the stream - Redox-Received)", None)  # fmt: skip
    line("each gateway's outbox rows in the stream once", exactly_once, exactly_once == "yes")
    identical = None if isinstance(replicas, str) else not replicas.diverged
    line("NATS replicas identical (each node's store)", "not compared" if identical is None
         else "yes" if identical else "NO: the workers may have read different streams "
         "(see the faults above)", identical)  # fmt: skip
    line("durable results identical to the oracle (PG)", str(f.history_identical),
         f.history_identical)  # fmt: skip
    line("every result at the MQTT subscriber", str(f.mqtt_complete), f.mqtt_complete)
    line("duplicate notifications 0", str(f.mqtt.get("doubles")), f.mqtt.get("doubles") == 0)
    line("per-topic seq strictly increasing", f"{f.mqtt.get('backwards')} going back; "
         f"{f.mqtt.get('resends')} exact resends (same seq), "
         f"{f.mqtt.get('changed_resends')} changed", f.mqtt.get("backwards") == 0)  # fmt: skip
    line("alert events (oracle)", f"{f.alerts} (identical rows)", None)
    i = f.influx
    line("durable InfluxDB points identical to the oracle", f"{i.identical}: {i.expected} "
         f"points, {i.missing} missing, {i.extra} not in the oracle; {i.rewrites} written "
         "twice (an identical overwrite)", i.identical)  # fmt: skip
    line("live InfluxDB points tagged with their gateway", f"{i.live_tagged} tagged, "
         f"{i.live_untagged} without", i.live_tagged > 0 and i.live_untagged == 0)  # fmt: skip
    line(">= 200 athletes per worker at <= 25% of a core",
         f"{per_worker:.0f} live-equivalent athletes per worker at "
         f"{100 * cpu:.1f}% of a core -> {at_quarter:.0f} at 25%",
         at_quarter >= 200 if judged else None)  # fmt: skip
    st = f.live_stages
    r50, r99 = sim.percentile(st.receipt, 50), sim.percentile(st.receipt, 99)
    line("live latency receipt -> subscriber p99 <= 100 ms",
         f"p50 {1000 * r50:.0f} ms, p99 {1000 * r99:.0f} ms ({len(st.receipt)} samples, "
         "steady window, from the gateway's Redox-Received stamp)",
         r99 <= 0.1 if judged else None)  # fmt: skip
    for what, values in (("receipt -> stored in the stream", st.to_stream),
                         ("stored in the stream -> subscriber", st.from_stream)):  # fmt: skip
        line(f"  of which {what}", f"p50 {1000 * sim.percentile(values, 50):.0f} ms, "
             f"p99 {1000 * sim.percentile(values, 99):.0f} ms", None)  # fmt: skip
    for kind, values in sorted(st.by_kind.items()):
        line(f"  {kind} samples", f"p50 {1000 * sim.percentile(values, 50):.0f} ms, "
             f"p99 {1000 * sim.percentile(values, 99):.0f} ms ({len(values)})", None)  # fmt: skip
    line("  live samples sent again (takeovers)", f"{len(st.resent)}" + (
         f", p50 {sim.percentile(st.resent, 50):.1f} s, max {max(st.resent):.1f} s after their "
         "receipt (what came after a partition's last checkpoint; whole run)"
         if st.resent else ""), None)  # fmt: skip
    line("  from the record's scheduled offer (old figure)",
         f"p50 {1000 * p50:.0f} ms, p99 {1000 * p99:.0f} ms ({len(lat)} samples; adds the "
         "simulated gateway's lag behind its schedule)", None)  # fmt: skip
    line("NATS leader loss stalls writes <= 10 s",
         "not run" if leader is None else f"{leader:.2f} s (longest gap between stored "
         "messages)", None if leader is None else leader <= 10)  # fmt: skip
    line("a killed worker's partitions resume <= 15 s",
         "not run" if takeover is None else f"{takeover:.2f} s (all held by the survivor)",
         None if takeover is None else takeover <= 15)  # fmt: skip
    line("whole NATS restart: writes stall (no target)",
         "not run" if whole is None else f"{whole:.1f} s from the kill to the first write "
         "(5 s of it the cluster away)", None)  # fmt: skip
    line("worker killed during morning readings",
         "not run" if morning_open is None else f"{morning_open} readings open in its "
         "partitions; results identical above", None)  # fmt: skip
    print(f"  results drained {f.drained_s:.1f} s after the plan's end")
    for gid, proc in simulation.gws.items():
        stalls = re.findall(r"publishing resumed after ([0-9.]+ s)", proc.log.read_text())
        print(f"  gateway {gid}: publishing stalls {', '.join(stalls) or 'none'}")
    for point in i.diff[0]:
        print(f"  InfluxDB point missing: {str(point)[:400]}")
    for point in i.diff[1]:
        print(f"  InfluxDB point not in the oracle: {str(point)[:400]}")
    for kind, (missing, extra) in getattr(simulation, "history_diff", {}).items():
        for row in missing[:5]:
            print(f"  {kind} missing in PostgreSQL: {str(row)[:400]}")
        for row in extra[:5]:
            print(f"  {kind} in PostgreSQL, not in the oracle: {str(row)[:400]}")


def _notification_rate(simulation: sim.Simulation) -> float:
    """Device notifications per wall second the plan offers in the steady window."""
    start, end = (t - simulation.t0 for t in simulation.steady)
    count = sum(
        start <= offset <= end
        for seg in simulation.plan
        for offset, m in seg.items
        if isinstance(m, RecordedNotification)
    )
    return count / max(1e-9, end - start)


def _nats_version(simulation: sim.Simulation) -> str:
    import subprocess

    binary = simulation.nats[0].binary
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip().removeprefix("nats-server: ") or binary


if __name__ == "__main__":
    main()
