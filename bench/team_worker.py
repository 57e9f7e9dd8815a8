"""Team worker throughput against real servers; prints figures (not a test).

Run from the repository root::

    PYTHONPATH=. python3 bench/team_worker.py                  # 40 athletes, 2 days
    PYTHONPATH=. python3 bench/team_worker.py --athletes 100 --days 1
    PYTHONPATH=. python3 bench/team_worker.py --live --hog 2   # the conditions of team.py

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
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
import psycopg

from devices.recording import RecordedNotification
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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
