"""Pipeline benchmarks against real servers; prints figures (not a test).

Run from the repository root::

    PYTHONPATH=. python3 bench/pipeline.py                 # everything, 24-h replay
    PYTHONPATH=. python3 bench/pipeline.py --hours 2       # shorter paced memory replay

It starts mosquitto and InfluxDB 1.x itself on free loopback ports (tests/servers.py) and
measures, in one run:

1. **Raw ingest rate** of that broker: a bare aiomqtt publisher loop, QoS 0, payloads of
   the size of a live heart-rate message.
2. **Replay throughput**: raw notification bytes (strap 0x2A37, Moxy) decoded by the codecs,
   through the pipeline and the per-athlete processors, to MQTT (live QoS 0 + results QoS
   1 via the outbox) and InfluxDB (line protocol, batched) — notifications/s until every
   live message was handed to the broker. Target: >= 50% of (1).
3. **Latency** notification → subscriber with 50 athletes at live rate (one strap
   notification per athlete per second, plus a Moxy every 2 s): the notification's receipt
   time is stamped before decoding, a subscriber on the same broker measures when the live
   message arrives. p50/p99/max. Target: p99 <= 20 ms. (The emulated GATT link is not in
   this path: bench/bench_emulated_link.py measures it.)
4. **Memory** of 50 athletes, in a child process that imports only the production path:
   what each layer costs to import (python + numpy, + scipy, + influxdb-client, + the
   rest), then ``--hours`` of data replayed through the whole path *paced so the sinks keep
   up* (every ``PACE_S`` emulated seconds the replay waits until the pipeline, the live
   lanes and both outboxes are empty): nothing is shed, and the RSS sampled along the way
   is that of 50 athletes' steady state (flat = bounded state). Target: peak <= 100 MB.
   A second child replays ``--stress-hours`` as fast as possible (the replay outruns the
   sinks, inboxes sit full and live messages are shed): a stress figure, the upper bound
   set by the queue caps, not the steady state.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.servers import InfluxDB1, Mosquitto


def rss_mb() -> float:
    """Current resident set size, MB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 1e6


# The memory child reports what each layer of the production path costs, so the imports
# come one layer at a time, in this order, each followed by a reading of the RSS.
IMPORT_RSS_MB: list[tuple[str, float]] = [("python + stdlib (asyncio, ssl)", rss_mb())]

import numpy as np  # noqa: E402

IMPORT_RSS_MB.append(("numpy", rss_mb()))

# What processors/ import (hrv, oxygenation, trends); each alone pulls in most of scipy.
import scipy.interpolate  # noqa: E402
import scipy.optimize  # noqa: E402
import scipy.signal  # noqa: E402
import scipy.stats  # noqa: E402, F401

IMPORT_RSS_MB.append(("scipy", rss_mb()))

# What streamer/sinks/influx_schema.py imports (the package's __init__ loads all of it).
import influxdb_client.client.write.point  # noqa: E402, F401

IMPORT_RSS_MB.append(("influxdb_client", rss_mb()))

import aiomqtt  # noqa: E402

from devices.codecs import CODECS  # noqa: E402
from devices.records import HeartRateSample, SmO2Sample  # noqa: E402
from streamer.app.pipeline import DEFAULT_INBOX_SIZE, Pipeline  # noqa: E402
from streamer.athlete import AthleteState  # noqa: E402
from streamer.config import InfluxConfig, MqttConfig  # noqa: E402
from streamer.sinks.influx import InfluxWriter  # noqa: E402
from streamer.sinks.mqtt import MqttPublisher  # noqa: E402
from streamer.store import Store  # noqa: E402

IMPORT_RSS_MB.append(("aiomqtt + devices + streamer + processors", rss_mb()))

HR = CODECS["2a37"]
MOXY = CODECS["moxy"]
POOL_S = 600  # seconds of distinct payloads per athlete, cycled
PACE_S = 10
"""Emulated seconds between two waits for the sinks in the paced memory replay: 50
athletes x 10 s is 750 live messages per sink, within a live lane (1,024), and ~1,500
InfluxDB points, under one batch (5,000)."""


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB on Linux


class Payloads:
    """Raw notification bytes of one athlete: a strap packet per second, a Moxy every 2 s."""

    def __init__(self, seed: int) -> None:
        # Plain numpy here (not devices.emulated, which imports Bumble): the memory figure
        # is that of the production path only.
        rng = np.random.default_rng(seed)
        mean_ms = 60000.0 / (60 + seed % 15)
        rr = mean_ms + 28.0 * rng.standard_normal(int(POOL_S * 1.3))
        self.hr: list[bytes] = []
        t, k = 0.0, 0
        for second in range(1, POOL_S + 1):
            packet = []
            while k < len(rr) and t + rr[k] <= second * 1000.0:
                t += rr[k]
                packet.append(float(rr[k]))
                k += 1
            hr = round(60000 / (sum(packet) / len(packet))) if packet else 60
            self.hr.append(HR.encode(HeartRateSample(0, hr, tuple(packet))))
        # SmO2 every 2 s: 60-s efforts every 3 min, fall τ 12 s, recovery τ 30 s.
        level, smo2 = 68.0, []
        for i in range(POOL_S // 2):
            t = 2.0 * i
            effort = t >= 60 and (t - 60) % 180 < 60
            target, tau = (30.0, 12.0) if effort else (68.0, 30.0)
            level += (target - level) * (1 - math.exp(-2.0 / tau))
            smo2.append(level + 0.5 * float(rng.standard_normal()))
        self.moxy = [MOXY.encode(SmO2Sample(0, round(v, 1), 12.5, i)) for i, v in enumerate(smo2)]

    def at(self, second: int) -> Iterator[tuple[str, bytes]]:
        """The notifications of emulated second ``second``: (device, payload)."""
        yield "strap", self.hr[second % len(self.hr)]
        if second % 2 == 0:
            yield "moxy", self.moxy[(second // 2) % len(self.moxy)]


def decode(device: str, data: bytes, t_ns: int) -> object:
    return (HR if device == "strap" else MOXY).decode(data, t_ns=t_ns)


class Rig:
    """Store + MQTT publisher + InfluxDB writer + pipeline, for ``athletes`` athletes."""

    def __init__(
        self,
        workdir: Path,
        mqtt_url: str,
        influx_url: str | None,
        athletes: int,
        tag: str,
        live_lane_size: int = 20_000,
    ) -> None:
        self.store = Store(workdir / f"{tag}.sqlite3")
        self.mqtt = MqttPublisher(
            MqttConfig.from_url(mqtt_url, client_id=f"bench-{tag}"), self.store, name="mqtt"
        )
        sinks: list[Any] = [self.mqtt]
        self.influx = None
        if influx_url is not None:
            self.influx = InfluxWriter(
                InfluxConfig(url=influx_url, db="bench", create_database=True), self.store
            )
            sinks.append(self.influx)
        self.ids = [f"a{i:02d}" for i in range(athletes)]
        self.pipeline = Pipeline(
            lambda a: AthleteState(a, self.store, hrv_every_s=5.0),
            self.store,
            sinks,
            athletes=self.ids,
            live_lane_size=live_lane_size,
            flush_timeout_s=30.0,
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.pipeline.run())
        async with asyncio.timeout(10):
            while not self.mqtt.connected:  # noqa: ASYNC110 - the publisher has no event
                await asyncio.sleep(0.01)

    def sinks_idle(self) -> bool:
        """True when no live message waits in a lane, both outboxes are empty and the
        InfluxDB writer's live buffer holds less than one batch (its next write is due)."""
        status = self.pipeline.status()
        if any(s.lane_depth for s in status.sinks.values()):
            return False
        if any(s["outbox_depth"] for s in status.sink_status.values()):
            return False
        return (
            self.influx is None
            or status.sink_status[self.influx.name]["buffered"] < self.influx.config.batch_size
        )

    async def settle(self) -> None:
        """Wait until every record put so far is processed and the sinks caught up."""
        await self.pipeline.join()
        while not self.sinks_idle():  # noqa: ASYNC110 - the sinks have no "idle" event
            await asyncio.sleep(0.002)

    async def stop(self) -> None:
        self.pipeline.stop()
        assert self.task is not None
        await self.task
        self.store.close()


async def raw_ingest_rate(mosquitto: Mosquitto, n: int, size: int) -> float:
    """A bare aiomqtt QoS 0 publisher loop: messages/s."""
    payload = b"x" * size
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="bench-raw") as client:
        start = time.perf_counter()
        for i in range(n):
            await client.publish(f"bench/raw/{i % 50}", payload, qos=0)
        # A QoS 1 round trip at the end: everything before it has left the socket.
        await client.publish("bench/raw/end", b"", qos=1)
        return n / (time.perf_counter() - start)


async def replay_throughput(
    workdir: Path, mosquitto: Mosquitto, influx: InfluxDB1, athletes: int, seconds: int
) -> dict[str, float]:
    """Notifications/s from raw bytes to the broker and InfluxDB, as fast as possible."""
    rig = Rig(workdir, mosquitto.url, influx.url, athletes, "throughput")
    pools = [Payloads(i) for i in range(athletes)]
    await rig.start()
    t0_ns = time.time_ns() - seconds * 1_000_000_000
    expected_live = 0
    start = time.perf_counter()
    for second in range(seconds):
        t_ns = t0_ns + second * 1_000_000_000
        for index, athlete in enumerate(rig.ids):
            for device, data in pools[index].at(second):
                await rig.pipeline.put(athlete, device, decode(device, data, t_ns))
                expected_live += 1
    await rig.pipeline.join()
    status = rig.mqtt.status()
    while (
        status["live_published"]
        + status.get("shed", 0)
        + rig.pipeline.status().sinks["mqtt"].live_shed
        < expected_live
    ):
        await asyncio.sleep(0.005)
        status = rig.mqtt.status()
    elapsed = time.perf_counter() - start
    shed = rig.pipeline.status().shed_total
    await rig.stop()
    return {
        "notifications": expected_live,
        "seconds": elapsed,
        "rate": expected_live / elapsed,
        "shed": shed,
        "live_published": status["live_published"],
        "results": status["published"],
    }


async def latency(
    workdir: Path, mosquitto: Mosquitto, influx: InfluxDB1, athletes: int, duration_s: float
) -> list[float]:
    """Notification → subscriber latency (ms) of live heart-rate messages at live rate."""
    rig = Rig(workdir, mosquitto.url, influx.url, athletes, "latency")
    pools = [Payloads(100 + i) for i in range(athletes)]
    await rig.start()
    samples: list[float] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="bench-sub") as sub:
        await sub.subscribe("redox/+/strap/live", qos=0)

        async def listen() -> None:
            async for message in sub.messages:
                now = time.time_ns()
                body = json.loads(bytes(message.payload))
                samples.append((now - body["ts_ns"]) / 1e6)

        listener = asyncio.create_task(listen())
        loop = asyncio.get_running_loop()
        start = loop.time()
        second = 0
        # Each athlete's devices notify once per second, spread over the second as
        # independent straps would be.
        while loop.time() - start < duration_s:
            for index, athlete in enumerate(rig.ids):
                due = start + second + index / athletes
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                for device, data in pools[index].at(second):
                    rig.pipeline.offer(athlete, device, decode(device, data, time.time_ns()))
            second += 1
        await asyncio.sleep(0.5)
        listener.cancel()
    shed = rig.pipeline.status().shed_total
    await rig.stop()
    if shed:
        print(f"  (latency run shed {shed} samples)")
    return samples


@dataclass
class MemoryRun:
    """RSS readings (MB) of one memory replay."""

    marks: list[tuple[float, float]]  # (fraction of the replay, RSS)
    before_rig: float
    after_rig: float  # the store, 50 athletes' states, the sinks: not yet connected
    after_start: float  # connected to the broker, tasks running
    notifications: int
    shed: int
    influx_shed: int
    seconds: float


async def memory(
    workdir: Path,
    mqtt_url: str,
    influx_url: str | None,
    athletes: int,
    hours: float,
    *,
    paced: bool,
) -> MemoryRun:
    """RSS along an accelerated replay of ``hours`` for ``athletes``, default lane sizes.

    ``paced``: every :data:`PACE_S` emulated seconds wait until the sinks caught up
    (:meth:`Rig.settle`), so nothing is shed and the queues hold what they hold at live
    rate. Otherwise as fast as possible: inboxes fill to their cap and the live lanes shed
    (counted) — the bound the caps set, not the steady state."""
    pools = [Payloads(200 + i) for i in range(athletes)]
    before_rig = rss_mb()
    rig = Rig(
        workdir, mqtt_url, influx_url, athletes, "paced" if paced else "stress", live_lane_size=1024
    )
    after_rig = rss_mb()
    await rig.start()
    after_start = rss_mb()
    seconds = int(hours * 3600)
    t0_ns = time.time_ns() - seconds * 1_000_000_000
    marks = []
    step = max(1, seconds // 12)
    notifications = 0
    start = time.perf_counter()
    for second in range(seconds):
        t_ns = t0_ns + second * 1_000_000_000
        for index, athlete in enumerate(rig.ids):
            for device, data in pools[index].at(second):
                record = decode(device, data, t_ns)
                # Paced: as the drivers do (never waits; the inbox holds one chunk, far
                # below its cap, and a shed sample would be counted). Stress: wait for room.
                if paced:
                    rig.pipeline.offer(athlete, device, record)
                else:
                    await rig.pipeline.put(athlete, device, record)
                notifications += 1
        if paced and second % PACE_S == PACE_S - 1:
            await rig.settle()
        if second % step == 0:
            marks.append((second / seconds, rss_mb()))
    await (rig.settle() if paced else rig.pipeline.join())
    marks.append((1.0, rss_mb()))
    elapsed = time.perf_counter() - start
    shed = rig.pipeline.status().shed_total
    influx_shed = rig.influx.status()["shed"] if rig.influx is not None else 0
    await rig.stop()
    return MemoryRun(
        marks, before_rig, after_rig, after_start, notifications, shed, influx_shed, elapsed
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


async def memory_child(args: argparse.Namespace) -> None:
    """The memory measurement, in a process that imports only the production path."""
    paced = args.memory_child == "paced"
    hours = args.hours if paced else args.stress_hours
    run = await memory(Path(args.workdir), args.mqtt, args.influx, 50, hours, paced=paced)
    sinks = "MQTT + InfluxDB" if args.influx else "MQTT"
    along = " ".join(f"{100 * f:.0f}%:{mb:.0f}" for f, mb in run.marks)
    shed = f"shed {run.shed:,} live messages/samples" + (
        f", InfluxDB buffer shed {run.influx_shed:,} points" if args.influx else ""
    )
    if paced:
        steps = IMPORT_RSS_MB
        layers = ", ".join(
            f"+{name} {mb - prev:.0f}" for (_, prev), (name, mb) in itertools.pairwise(steps)
        )
        print(
            f"4. memory, 50 athletes, {hours:g} h of strap+Moxy data through the whole path "
            f"({sinks}), replayed paced (waiting for the sinks every {PACE_S} emulated s; "
            f"{run.notifications:,} notifications in {run.seconds:.0f} s, {shed}):\n"
            f"   imports: {steps[0][0]} {steps[0][1]:.0f} MB, {layers} = {steps[-1][1]:.0f} MB\n"
            f"   bench payloads {run.before_rig - steps[-1][1]:+.0f}, store + 50 athlete "
            f"states + sinks {run.after_rig - run.before_rig:+.0f}, connected and running "
            f"{run.after_start - run.after_rig:+.0f} = {run.after_start:.0f} MB before the "
            f"first sample; replay {run.marks[-1][1] - run.after_start:+.0f} MB\n"
            f"   RSS along the replay {along} MB; peak RSS {peak_rss_mb():.1f} MB "
            f"(target <= 100 MB, flat)"
        )
    else:
        print(
            f"   stress (not the steady state): {hours:g} h replayed as fast as possible, "
            f"{run.notifications:,} notifications in {run.seconds:.0f} s, {shed}; inboxes "
            f"({DEFAULT_INBOX_SIZE:,} records x 50) and lanes at their caps: RSS {run.after_start:.0f} MB "
            f"before the first sample, along {along} MB; peak RSS {peak_rss_mb():.1f} MB"
        )


async def main(args: argparse.Namespace) -> None:
    from tests.servers import InfluxDB1, Mosquitto

    with tempfile.TemporaryDirectory(prefix="redox-bench-") as tmp:
        workdir = Path(tmp)
        mosquitto = Mosquitto(workdir / "mosquitto")
        influx = InfluxDB1(workdir / "influxdb")
        mosquitto.start()
        influx.start()
        try:
            print(f"servers: mosquitto {mosquitto.url}, InfluxDB {influx.url} (1.x, /write)")
            print(f"python {sys.version.split()[0]}; RSS at start {rss_mb():.1f} MB")

            raw = await raw_ingest_rate(mosquitto, args.raw_messages, 160)
            print(
                f"\n1. raw broker ingest (bare aiomqtt QoS 0 loop, 160-B payloads, "
                f"{args.raw_messages} msgs): {raw:,.0f} msg/s"
            )

            tp = await replay_throughput(
                workdir, mosquitto, influx, args.athletes, args.throughput_seconds
            )
            print(
                f"2. replay throughput, {args.athletes} athletes x "
                f"{args.throughput_seconds} s of strap+Moxy notifications "
                f"({tp['notifications']:.0f} notifications, raw bytes -> codecs -> "
                f"pipeline -> processors -> MQTT + InfluxDB): {tp['rate']:,.0f} "
                f"notifications/s = {100 * tp['rate'] / raw:.0f}% of raw ingest "
                f"(target >= 50%); {tp['live_published']:.0f} live messages, "
                f"{tp['results']:.0f} QoS 1 results, shed {tp['shed']:.0f}"
            )

            lat = await latency(workdir, mosquitto, influx, 50, args.latency_seconds)
            if lat:
                print(
                    f"3. latency notification -> subscriber, 50 athletes at live rate "
                    f"({len(lat)} messages over {args.latency_seconds:g} s): p50 "
                    f"{statistics.median(lat):.2f} ms, p99 {pct(lat, 0.99):.2f} ms, max "
                    f"{max(lat):.2f} ms (target p99 <= 20 ms)"
                )
            else:
                print("3. latency: no message received")

            # A child process without pytest, Bumble or this bench's servers imported: the
            # figure is the production path's.
            for kind in ("paced", "stress") if args.stress_hours > 0 else ("paced",):
                cmd = [
                    sys.executable,
                    __file__,
                    "--memory-child",
                    kind,
                    "--mqtt",
                    mosquitto.url,
                    "--hours",
                    str(args.hours),
                    "--stress-hours",
                    str(args.stress_hours),
                    "--workdir",
                    str(workdir),
                ]
                if not args.no_influx_memory:
                    cmd += ["--influx", influx.url]
                child = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
                out, _ = await child.communicate()
                print(out.decode().rstrip())
        finally:
            influx.stop()
            mosquitto.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--athletes", type=int, default=50, help="athletes in the throughput run")
    parser.add_argument(
        "--throughput-seconds",
        type=int,
        default=180,
        help="emulated seconds per athlete in the throughput run",
    )
    parser.add_argument("--raw-messages", type=int, default=50_000)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument(
        "--hours", type=float, default=24.0, help="hours of data in the memory replay (24 = a day)"
    )
    parser.add_argument(
        "--no-influx-memory", action="store_true", help="leave InfluxDB out of the memory replay"
    )
    parser.add_argument(
        "--stress-hours",
        type=float,
        default=1.0,
        help="hours replayed as fast as possible in the memory stress run (0 = skip it)",
    )
    parser.add_argument("--memory-child", choices=("paced", "stress"), help=argparse.SUPPRESS)
    parser.add_argument("--mqtt", help=argparse.SUPPRESS)
    parser.add_argument("--influx", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    asyncio.run(memory_child(arguments) if arguments.memory_child else main(arguments))
