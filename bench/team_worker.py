"""Team worker throughput against real servers; prints figures (not a test).

Run from the repository root::

    PYTHONPATH=. python3 bench/team_worker.py                  # 40 athletes, 2 days
    PYTHONPATH=. python3 bench/team_worker.py --athletes 100 --days 1

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
        worker = subprocess.Popen(
            [sys.executable, "-m", "streamer.cli", "worker", "--id", "bench", "--nats", ns.url,
             "--postgres", pg.dsn, "--mqtt", mq.url, "--no-live"],
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
            row = conn.execute("SELECT xact_commit FROM pg_stat_database "
                               "WHERE datname = current_database()").fetchone()  # fmt: skip
        worker.terminate()
        worker.wait(30)
        per_athlete = cpu / live_s  # cores per athlete streaming live
        print(
            f"{args.athletes} athletes x {args.days} days: {total} messages, "
            f"{live_s / 3600:.1f} h of record time ({mornings} mornings, {sessions} sessions)"
        )
        print(
            f"worker: {wall:.1f} s wall, {cpu:.1f} s CPU (incl. ~1 s start-up) -> "
            f"{total / cpu:.0f} messages per CPU-second"
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
