"""Team worker throughput against real servers; prints figures (not a test).

Run from the repository root::

    PYTHONPATH=. python3 bench/team_worker.py                  # 40 athletes, 2 days
    PYTHONPATH=. python3 bench/team_worker.py --athletes 100 --days 1
    PYTHONPATH=. python3 bench/team_worker.py --live --hog 2   # the conditions of team.py
    PYTHONPATH=. python3 bench/team_worker.py --realtime 40 --athletes 60  # live, real time

It starts PostgreSQL, nats-server and mosquitto on free loopback ports (tests/servers.py),
publishes ``--days`` of emulated history per athlete (a morning reading every day, a
training session with strap, Moxy and power meter every other day: the demo's scenarios)
to the raw stream, then runs one ``redox-streamer worker`` process (no live samples) until
every morning and session is in PostgreSQL, and prints:

* the worker's CPU time (user + system, from /proc) over the record time it processed:
  the share of a core one athlete streaming live costs, and how many athletes one worker
  carries at 25% of a core. The messages are there when it starts, so this is throughput:
  live, each message costs the same work (its transaction when it has outputs), spread
  out in time;
* messages/s and PostgreSQL transactions.

``--live`` has the worker publish its live samples (QoS 0, to mosquitto, and a subscriber
taking them as ``bench/team.py``'s does), ``--hog N`` runs N busy processes beside it (the
cores shared as in the whole simulation): what makes ``bench/team.py``'s figure differ from
this one's (see the CPU line there).

``--realtime S`` is the live case without the rest of ``bench/team.py``'s simulation: every
athlete in a training session at once, each device on its own phase (``bench/team.py``'s
``session_window`` and ``dephase``), published to the stream by this process at real time
for ``S`` record seconds while one live worker runs; it prints the worker's share of a
core over the window after a warm-up, athletes per worker at 25% of a core, µs of CPU per
stream message, and the live latency from the publish to a ``mosquitto_sub`` receipt
(p50/p99), with the machine's busy share and load average: the quick loop for the
worker's per-wake-up cost (``--linger-ms`` is handed to the worker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

import nats
import psycopg

from devices.recording import RecordedNotification
from streamer.team import wire
from tests import team_worker_helpers as th
from tests.servers import Mosquitto, NatsServer, PostgreSQL

ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_box() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields[:8]) - fields[3] - fields[4]) / tick, sum(fields[:8]) / tick


def record_seconds(messages: list[object]) -> float:
    """Seconds of record time with data: each stretch (morning, session) from its first to
    its last notification, stretches split at gaps over ten minutes."""
    times = sorted(m.t_ns for m in messages if isinstance(m, RecordedNotification))
    total, start, last = 0.0, times[0], times[0]
    for t in times[1:]:
        if t - last > 600e9:
            total += (last - start) / 1e9
            start = t
        last = t
    return total + (last - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--athletes", type=int, default=40)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--live", action="store_true", help="publish live samples too")
    parser.add_argument("--hog", type=int, default=0, metavar="N", help="N busy processes beside")
    parser.add_argument(
        "--realtime", type=float, metavar="S", help="live at real time for S record seconds"
    )
    parser.add_argument("--linger-ms", type=float, help="the worker's --linger-ms")
    args = parser.parse_args()
    if args.realtime:
        realtime(args)
        return
    messages = th.athlete_days(args.athletes, args.days)
    total = sum(len(m) for m in messages.values())
    live_s = sum(record_seconds(m) for m in messages.values())
    mornings = args.athletes * args.days
    sessions = sum(1 for m in messages.values() for x in m if type(x).__name__ == "SessionEnd")
    work = Path(tempfile.mkdtemp(prefix="bench-team-"))
    pg, ns, mq = PostgreSQL(work / "pg"), NatsServer(work / "nats"), Mosquitto(work / "mq")
    for server in (pg, ns, mq):
        server.start()
    try:

        async def publish() -> None:
            nc = await nats.connect(ns.url)
            js = nc.jetstream()
            await th.ensure_stream(js)
            await th.publish(js, messages)
            await nc.close()

        asyncio.run(publish())
        # A subscriber to everything (mosquitto's fan-out work, as in team.py), and the hogs.
        sub = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(mq.port), "-t", "#"]
        helpers = [subprocess.Popen(sub, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        helpers += [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hog)
        ]
        box0 = cpu_box()
        worker = subprocess.Popen(
            [sys.executable, "-m", "streamer.cli", "worker", "--id", "bench", "--nats", ns.url,
             "--postgres", pg.dsn, "--mqtt", mq.url, *([] if args.live else ["--no-live"])],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        started = time.monotonic()
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            while True:
                try:
                    m = conn.execute("SELECT count(*) FROM morning").fetchone()
                    s = conn.execute("SELECT count(*) FROM sessions").fetchone()
                except psycopg.errors.UndefinedTable:
                    m = s = (0,)
                if m and s and m[0] >= mornings and s[0] >= sessions:
                    break
                if worker.poll() is not None:
                    raise SystemExit(f"the worker exited with {worker.returncode}")
                time.sleep(0.2)
            wall = time.monotonic() - started
            cpu = cpu_seconds(worker.pid)
            box1 = cpu_box()
            row = conn.execute("SELECT xact_commit FROM pg_stat_database "
                               "WHERE datname = current_database()").fetchone()  # fmt: skip
        worker.terminate()
        worker.wait(30)
        for helper in helpers:
            helper.kill()
            helper.wait(30)
        busy = (box1[0] - box0[0]) / max(1e-9, box1[1] - box0[1])
        per_athlete = cpu / live_s  # cores per athlete streaming live
        print(
            f"{args.athletes} athletes x {args.days} days: {total} messages, "
            f"{live_s / 3600:.1f} h of record time ({mornings} mornings, {sessions} sessions); "
            f"live samples {'published' if args.live else 'off'}, {args.hog} hogs beside: "
            f"machine {100 * busy:.0f}% busy ({os.cpu_count()} cores), load average "
            f"{os.getloadavg()[0]:.1f}"
        )
        print(
            f"worker: {wall:.1f} s wall, {cpu:.1f} s CPU (incl. ~1 s start-up) -> "
            f"{total / cpu:.0f} messages per CPU-second ({1e6 * cpu / total:.0f} us each)"
        )
        print(
            f"one athlete live costs {per_athlete * 100:.3f}% of a core: "
            f"{0.25 / per_athlete:.0f} athletes per worker at 25% of a core"
        )
        print(f"PostgreSQL commits: {row[0] if row else '?'}")
    finally:
        for server in (pg, ns, mq):
            server.stop()
        pg.remove()


REALTIME_WARMUP_S: Final = 8.0
"""``--realtime``: wall seconds after the first publish left out of the figures (each
athlete's first messages: state made, Home Assistant announced)."""


def realtime(args: argparse.Namespace) -> None:
    """``--realtime``: see the module docstring."""
    from bench.team import dephase, session_window

    if args.realtime - REALTIME_WARMUP_S < 15:
        raise SystemExit(f"--realtime {args.realtime:g}: give {REALTIME_WARMUP_S + 15:g} or more")
    messages = dephase(session_window(th.athlete_days(args.athletes, 1), args.realtime))
    # Every athlete's session starts at once: offsets from each athlete's first message.
    plan: list[tuple[float, str, wire.WireMessage]] = []
    for athlete, items in messages.items():
        first = items[0].t_ns
        # The session's end marker keeps its own time: sent right after the last record.
        last = max(m.t_ns for m in items if isinstance(m, RecordedNotification))
        plan += [((min(m.t_ns, last) - first) / 1e9, athlete, m) for m in items]
    plan.sort(key=lambda p: p[0])
    work = Path(tempfile.mkdtemp(prefix="bench-team-rt-"))
    pg, ns, mq = PostgreSQL(work / "pg"), NatsServer(work / "nats"), Mosquitto(work / "mq")
    for server in (pg, ns, mq):
        server.start()
    helpers: list[subprocess.Popen[bytes]] = []
    worker = None
    try:
        out = (work / "sub.txt").open("wb")
        sub = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(mq.port), "-t", "#",
               "-F", "%U %q %r %p"]  # fmt: skip
        helpers.append(subprocess.Popen(sub, stdout=out, stderr=subprocess.DEVNULL))
        helpers += [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hog)
        ]

        async def make_stream() -> None:
            nc = await nats.connect(ns.url)
            await th.ensure_stream(nc.jetstream())
            await nc.close()

        asyncio.run(make_stream())
        linger = [] if args.linger_ms is None else ["--linger-ms", str(args.linger_ms)]
        worker = subprocess.Popen(
            [sys.executable, "-m", "streamer.cli", "worker", "--id", "bench", "--nats", ns.url,
             "--postgres", pg.dsn, "--mqtt", mq.url, *linger],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=(work / "worker.log").open("wb"),
        )  # fmt: skip
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            while True:  # every partition claimed (a bench: polling is fine here)
                row = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                ).fetchone()
                if row and row[0] >= wire.DEFAULT_PARTITIONS:
                    break
                if worker.poll() is not None:
                    raise SystemExit(f"the worker exited with {worker.returncode}")
                time.sleep(0.2)
        sent: dict[tuple[str, int], float] = {}
        window: list[tuple[float, float, tuple[float, float]]] = []

        async def publish() -> None:
            nc = await nats.connect(ns.url)
            loop = asyncio.get_running_loop()
            t0 = loop.time() + 0.5
            wall0 = time.time() - loop.time()
            measuring = False
            for n, (offset, athlete, message) in enumerate(plan):
                if not measuring and offset >= REALTIME_WARMUP_S:
                    measuring = True
                    window.append((time.time(), cpu_seconds(worker.pid), cpu_box()))
                delay = t0 + offset - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # the schedule, not a synchronisation
                if isinstance(message, RecordedNotification):
                    sent[(athlete, message.t_ns)] = wall0 + loop.time()
                hdrs = {wire.GATEWAY_HEADER: "gw1", wire.MSG_ID_HEADER: f"gw1:1:{n}"}
                await nc.publish(wire.raw_subject(athlete), wire.encode(message), headers=hdrs)
            window.append((time.time(), cpu_seconds(worker.pid), cpu_box()))
            await nc.flush()
            await nc.close()

        asyncio.run(publish())
        (w0, c0, b0), (w1, c1, b1) = window
        stream_msgs = sum(1 for offset, _, _ in plan if offset >= REALTIME_WARMUP_S)
        time.sleep(1.0)  # the last samples reach the subscriber (a bench: a grace, not a sync)
        helpers[0].terminate()
        helpers[0].wait(10)
        out.close()
        lat = []
        for line in (work / "sub.txt").read_text().splitlines():
            at, qos, retained, payload = line.split(" ", 3)
            if qos != "0" or retained != "0" or not payload.startswith("{"):
                continue
            body = json.loads(payload)
            got = sent.get((str(body.get("athlete")), body.get("ts_ns")))
            if got is not None and w0 <= got <= w1:
                lat.append(float(at) - got)
        cpu = (c1 - c0) / (w1 - w0)
        busy = (b1[0] - b0[0]) / max(1e-9, b1[1] - b0[1])
        lat.sort()
        pct = (
            [1000 * lat[min(len(lat) - 1, int(q * len(lat)))] for q in (0.5, 0.99)]
            if lat
            else [math.nan] * 2
        )
        print(
            f"{args.athletes} athletes live at real time, devices dephased, linger "
            f"{'default' if args.linger_ms is None else f'{args.linger_ms:g} ms'}; window "
            f"{w1 - w0:.0f} s, {stream_msgs / (w1 - w0):.0f} stream messages/s: machine "
            f"{100 * busy:.0f}% busy ({os.cpu_count()} cores), load average "
            f"{os.getloadavg()[0]:.1f}, {args.hog} hogs beside"
        )
        print(
            f"worker: {100 * cpu:.1f}% of a core -> {args.athletes * 0.25 / cpu:.0f} athletes "
            f"at 25%; {1e6 * (c1 - c0) / max(1, stream_msgs):.0f} us CPU per stream message"
        )
        worker.terminate()
        worker.wait(30)
        let_go = re.findall(
            r"(\d+) messages in (\d+) passes, (\d+) transactions",
            (work / "worker.log").read_text(),
        )
        msgs, passes, commits = (sum(int(x[i]) for x in let_go) for i in range(3))
        print(
            f"worker over the whole run: {msgs} messages in {passes} passes "
            f"({msgs / max(1, passes):.2f} per pass), {commits} transactions"
        )
        print(
            f"live latency publish -> subscriber: p50 {pct[0]:.1f} ms, p99 {pct[1]:.1f} ms "
            f"({len(lat)} samples)"
        )
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(30)
        for helper in helpers:
            helper.kill()
            helper.wait(30)
        for server in (pg, ns, mq):
            server.stop()
        pg.remove()


if __name__ == "__main__":
    main()
