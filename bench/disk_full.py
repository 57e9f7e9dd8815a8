"""Disk full under the store, on a real small filesystem; prints figures (not a test).

Run from the repository root, as root (it mounts a tmpfs)::

    PYTHONPATH=. python3 bench/disk_full.py                      # 4 MB, full for 20 s
    PYTHONPATH=. python3 bench/disk_full.py --size-mb 16 --full-s 40

It starts mosquitto and InfluxDB 1.x on free loopback ports (tests/servers.py), mounts a
tmpfs of ``--size-mb`` and puts the store on it, and runs the real pipeline (store,
MqttPublisher, InfluxWriter) with one athlete producing ``--rate`` durable results a
second (HRV results and, every tenth, an alert that is also history). After ``--warm-s``
a filler file takes every free byte of the filesystem for ``--full-s`` (and every byte
freed meanwhile, as a runaway log would), then is deleted, and the run goes on for
``--after-s``.

Counted: results produced (by the processor), delivered to MQTT (distinct ``seq`` on the
HRV and alert topics, a QoS 1 subscriber on a persistent session), points in InfluxDB,
duplicates, ``seq`` holes, the most results waiting in memory, log lines (and tracebacks)
the run printed, and how it ended. A second run keeps the filesystem full to the end with
a small ``waiting_max``: it must stop and name what was not stored.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer.app.pipeline import Pipeline, ResultsNotStoredError
from streamer.config import InfluxConfig, MqttConfig
from streamer.results import Kind, Result, alert_result
from streamer.sinks.backoff import Backoff
from streamer.sinks.influx import InfluxWriter
from streamer.sinks.mqtt import MqttPublisher
from streamer.store import Store
from tests.mqtt_helpers import Subscriber, eventually, first_arrivals
from tests.servers import InfluxDB1, Mosquitto

ATHLETE = "ann"
TOPICS = (f"redox/{ATHLETE}/hrv", f"redox/{ATHLETE}/alerts")


class Producer:
    """One durable result per record: an HRV window, every tenth an alert event."""

    def __init__(self) -> None:
        self.produced: list[Result] = []

    def process(self, device: str, record: object) -> Sequence[Result]:
        assert isinstance(record, int)
        t_ns = time.time_ns()
        if record % 10 == 0:
            event: dict[str, Any] = {
                "rule": "rhr_creep",
                "severity": "pull_back",
                "state": "raised",
                "raised_ts_ns": t_ns,
                "n": record,
            }
            result = alert_result(ATHLETE, event, [event])
        else:
            fields = {"n": record, "rmssd_ms": 40.0 + record % 7, "sdnn_ms": 55.5, "hr_bpm": 58.0}
            result = Result(Kind.HRV, ATHLETE, t_ns, fields)
        self.produced.append(result)
        return [result]

    def close(self) -> Sequence[Result]:
        return ()


class LogCount(logging.Handler):
    """Counts what the run logs (warnings and up) and how many carry a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines = 0
        self.tracebacks = 0
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1
        self.tracebacks += record.exc_info is not None
        if len(self.samples) < 6:
            self.samples.append(f"{record.levelname} {record.getMessage()[:150]}")


def fill_filesystem(directory: Path) -> tuple[Path, int]:
    """A file that takes every free byte of ``directory``'s filesystem (grown again on
    each call, as another program would); the bytes it added."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    written = 0
    with filler.open("ab", buffering=0) as f:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    written += f.write(chunk[:size])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler, written


@dataclass
class Outcome:
    produced: int
    delivered: int
    duplicates: int
    holes: int
    influx_points: int
    waiting_peak: int
    store_lines: list[str]
    ended: str
    logs: LogCount


async def one_run(
    mount: Path,
    mosquitto: Mosquitto,
    influx: InfluxDB1,
    *,
    rate: float,
    warm_s: float,
    full_s: float,
    after_s: float,
    waiting_max: int,
    database: str,
    client_id: str,
) -> Outcome:
    logs = LogCount()
    logging.getLogger().addHandler(logs)
    sub = await Subscriber("127.0.0.1", mosquitto.port, client_id=client_id).start()
    producer = Producer()
    waiting_peak = 0
    store_lines: list[str] = []
    ended = "ok (exit 0)"
    filler: Path | None = None
    store = Store(mount / "redox.sqlite3")
    try:
        mqtt = MqttPublisher(
            MqttConfig.from_url(mosquitto.url, publish_timeout_s=2.0),
            store,
            backoff=Backoff(0.2, 2.0),
        )
        writer = InfluxWriter(
            InfluxConfig(url=influx.url, db=database, create_database=True, flush_interval_s=0.2),
            store,
        )
        pipeline = Pipeline(
            lambda a: producer, store, [mqtt, writer], waiting_max=waiting_max, flush_timeout_s=20
        )
        task = asyncio.create_task(pipeline.run())
        await eventually(lambda: mqtt.connected, what="the broker")
        start = time.monotonic()
        n = 0
        phase = "warm"
        while True:
            elapsed = time.monotonic() - start
            if phase == "warm" and elapsed >= warm_s:
                filler, size = fill_filesystem(mount)
                print(f"  {elapsed:5.1f} s: filesystem full (filler {size / 1e6:.2f} MB)")
                phase = "full"
            elif phase == "full" and full_s >= 0 and elapsed >= warm_s + full_s:
                assert filler is not None
                filler.unlink()
                filler = None
                print(f"  {elapsed:5.1f} s: space returned")
                phase = "after"
            elif elapsed >= warm_s + max(full_s, 0) + after_s or pipeline.stopping:
                break
            elif phase == "full":
                # Whatever the store frees (it cuts its WAL when refused), the filler takes.
                fill_filesystem(mount)
            n += 1
            if not await pipeline.put(ATHLETE, "strap", n):
                break
            status = pipeline.status()
            waiting_peak = max(waiting_peak, status.waiting)
            if status.store_line and len(store_lines) < 1:
                store_lines.append(status.store_line)
            await asyncio.sleep(1 / rate)
        pipeline.stop()
        try:
            await asyncio.wait_for(task, 60)
        except ResultsNotStoredError as exc:
            ended = f"stopped, exit 2: {exc}"
        with contextlib.suppress(AssertionError):
            await sub.wait_for(
                lambda: (
                    sum(len({m.json()["seq"] for m in sub.on(t) if not m.retain}) for t in TOPICS)
                    >= len(producer.produced)
                ),
                timeout_s=20,
                what="every result",
            )
    finally:
        if filler is not None:
            filler.unlink()
        store.close()
        await sub.stop()
        logging.getLogger().removeHandler(logs)
    delivered = duplicates = holes = 0
    for topic in TOPICS:
        # Not the retained alert an earlier run left on the broker: this run's messages.
        order, dups = first_arrivals([m for m in sub.on(topic) if not m.retain])
        delivered += len(order)
        duplicates += dups
        if order:
            holes += (max(order) - min(order) + 1) - len(order)
    points = 0
    for measurement in ("hrv", "alert"):
        with contextlib.suppress(Exception):
            rows = influx.query(f"SELECT count(*) FROM {measurement}", database)
            values = rows["results"][0]["series"][0]["values"][0]  # type: ignore[index]
            points += max(v for v in values[1:] if isinstance(v, int))
    return Outcome(
        len(producer.produced),
        delivered,
        duplicates,
        holes,
        points,
        waiting_peak,
        store_lines,
        ended,
        logs,
    )


def report(title: str, out: Outcome) -> None:
    print(f"\n{title}")
    print(f"  produced {out.produced} results; delivered to MQTT {out.delivered} (distinct seq)")
    print(
        f"  lost {out.produced - out.delivered}; duplicates {out.duplicates}; seq holes {out.holes}"
    )
    print(f"  InfluxDB points {out.influx_points} (one per result)")
    print(f"  most results waiting in memory: {out.waiting_peak}")
    for line in out.store_lines:
        print(f"  status line: {line}")
    print(f"  log lines (warning+) {out.logs.lines}, with a traceback {out.logs.tracebacks}")
    for sample in out.logs.samples:
        print(f"    {sample}")
    print(f"  ended: {out.ended}")


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="disk-full-") as tmp:
        work = Path(tmp)
        mount = work / "small"
        mount.mkdir()
        mounted = await asyncio.to_thread(
            subprocess.run,
            ["mount", "-t", "tmpfs", "-o", f"size={args.size_mb}m", "tmpfs", str(mount)],
            capture_output=True,
            text=True,
        )
        if mounted.returncode != 0:
            print(f"cannot mount a tmpfs ({mounted.stderr.strip()}): run as root", file=sys.stderr)
            return 1
        mosquitto = Mosquitto(work / "mosquitto")
        influx = InfluxDB1(work / "influxdb")
        mosquitto.start()
        influx.start()
        try:
            print(
                f"store on a {args.size_mb} MB tmpfs; {args.rate:g} results/s; full from "
                f"{args.warm_s:g} s for {args.full_s:g} s, then {args.after_s:g} s more"
            )
            out = await one_run(
                mount,
                mosquitto,
                influx,
                rate=args.rate,
                warm_s=args.warm_s,
                full_s=args.full_s,
                after_s=args.after_s,
                waiting_max=10_000,
                database="full_then_free",
                client_id="bench-disk-full-1",
            )
            report("1. full, then space returns", out)
            for leftover in mount.iterdir():
                leftover.unlink()
            print(f"\nfull to the end with waiting_max {args.small_bound}:")
            out = await one_run(
                mount,
                mosquitto,
                influx,
                rate=args.rate,
                warm_s=2.0,
                full_s=-1,
                after_s=args.small_bound / args.rate * 1.5,
                waiting_max=args.small_bound,
                database="never_free",
                client_id="bench-disk-full-2",
            )
            report("2. full to the end (the bound is exceeded)", out)
        finally:
            mosquitto.stop()
            influx.stop()
            await asyncio.to_thread(subprocess.run, ["umount", str(mount)], check=False)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=4, help="tmpfs size (MB)")
    parser.add_argument("--rate", type=float, default=20.0, help="durable results a second")
    parser.add_argument("--warm-s", type=float, default=5.0, help="seconds before filling")
    parser.add_argument("--full-s", type=float, default=20.0, help="seconds the disk is full")
    parser.add_argument("--after-s", type=float, default=10.0, help="seconds after space returns")
    parser.add_argument("--small-bound", type=int, default=100, help="waiting_max of run 2")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(asyncio.run(main(parser.parse_args())))
