"""The pipeline's promises: devices never wait, results are never dropped, a stuck sink
stalls nobody, shutdown flushes what it can and leaves the rest in the outbox."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.records import BatteryLevel, GapEvent, GapReason, HeartRateSample
from streamer.app.pipeline import Pipeline, install_signal_handlers
from streamer.payloads import decode_payload, encode_payload
from streamer.results import Kind, Result, live_result
from streamer.sinks.mqtt import MqttOutbox
from streamer.store import Store
from streamer.topics import Topics


class Recorder:
    """An athlete processor that remembers what it saw; one live result per sample and an
    HRV result every ``every`` beats per minute."""

    def __init__(self, athlete: str, every: int = 10) -> None:
        self.athlete = athlete
        self.every = every
        self.seen: list[tuple[str, object]] = []
        self.closed = False

    def process(self, device: str, record: object) -> Sequence[Result]:
        self.seen.append((device, record))
        if not isinstance(record, HeartRateSample):
            return ()
        out = [live_result(self.athlete, device, record)]
        if record.hr_bpm % self.every == 0:
            out.append(Result(Kind.HRV, self.athlete, record.t_ns, {"n_beats": record.hr_bpm}))
        return out

    def close(self) -> Sequence[Result]:
        self.closed = True
        return (Result(Kind.STATUS, self.athlete, 0, {"state": "ok"}),)


class OutboxSink:
    """A sink with a real SQLite outbox (the store's MQTT outbox) that delivers into a list;
    ``stuck`` makes every delivery hang forever, as a broker that stopped answering."""

    def __init__(self, name: str, store: Store, *, stuck: bool = False) -> None:
        self.name = name
        self.store = store
        self.topics = Topics()
        self.stuck = stuck
        self.live: list[Result] = []
        self.delivered: list[bytes] = []
        self._wake = asyncio.Event()
        self._never = asyncio.Event()

    def accept(self, results: Sequence[Result]) -> None:
        for r in results:
            MqttOutbox(self.store).enqueue(
                self.topics.for_result(r), partial(encode_payload, r), qos=r.qos, retain=r.retain
            )
        self._wake.set()

    def _deliver_backlog(self) -> None:
        while batch := MqttOutbox(self.store).peek(100):
            self.delivered.extend(m.payload for m in batch)
            MqttOutbox(self.store).ack(batch[-1].id)

    async def run(self) -> None:
        while True:
            if self.stuck:
                await self._never.wait()
            self._deliver_backlog()
            self._wake.clear()
            await self._wake.wait()

    async def send_live(self, batch: Sequence[Result]) -> None:
        if self.stuck:
            await self._never.wait()
        self.live.extend(batch)

    async def drain(self, timeout_s: float) -> int:
        if self.stuck:
            await self._never.wait()
        self._deliver_backlog()
        return MqttOutbox(self.store).depth()

    def status(self) -> Mapping[str, Any]:
        return {"outbox": MqttOutbox(self.store).depth()}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.sqlite3") as s:
        yield s


def hr(i: int) -> HeartRateSample:
    return HeartRateSample(t_ns=1_000_000_000 * i, hr_bpm=i, rr_ms=(1000.0,))


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait until ``condition()`` holds; the state it reads belongs to other tasks."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polling counters, there is no event to wait on
            await asyncio.sleep(0.01)


async def _run_briefly(
    pipeline: Pipeline, until: Callable[[], bool], timeout_s: float = 5.0
) -> None:
    task = asyncio.create_task(pipeline.run())
    await eventually(until, timeout_s)
    pipeline.stop()
    await asyncio.wait_for(task, timeout_s)


async def test_full_inbox_sheds_samples_and_counts_them() -> None:
    pipeline = Pipeline(lambda a: Recorder(a), None, inbox_size=10)
    accepted = [pipeline.offer("ann", "strap", hr(i)) for i in range(1, 26)]
    assert accepted == [True] * 10 + [False] * 15
    status = pipeline.status()
    assert status.athletes["ann"].shed == 15
    assert status.athletes["ann"].received == 25
    assert status.shed_total == 15


async def test_gap_and_battery_records_are_never_shed() -> None:
    pipeline = Pipeline(lambda a: Recorder(a), None, inbox_size=2)
    for i in range(1, 3):
        pipeline.offer("ann", "strap", hr(i))
    gap = GapEvent(t_ns=5, device="strap", start_ns=4, end_ns=None, reason=GapReason.DISCONNECTED)
    assert pipeline.offer("ann", "strap", gap)
    assert pipeline.offer("ann", "strap", BatteryLevel(t_ns=6, battery_pct=80))
    assert not pipeline.offer("ann", "strap", hr(3))


async def test_shed_samples_reach_the_processor_as_a_gap_before_the_next_sample() -> None:
    recorders: dict[str, Recorder] = {}

    def make(athlete: str) -> Recorder:
        recorders[athlete] = Recorder(athlete)
        return recorders[athlete]

    pipeline = Pipeline(make, None, inbox_size=3)
    for i in range(1, 7):  # 1..3 accepted, 4..6 shed
        pipeline.offer("ann", "strap", hr(i))
    task = asyncio.create_task(pipeline.run())
    await eventually(lambda: len(recorders["ann"].seen) == 3)
    pipeline.offer("ann", "strap", hr(7))
    await eventually(lambda: len(recorders["ann"].seen) == 5)
    pipeline.stop()
    await asyncio.wait_for(task, 5)
    seen = [r for _, r in recorders["ann"].seen]
    assert [type(r).__name__ for r in seen] == ["HeartRateSample"] * 3 + [
        "GapEvent",
        "HeartRateSample",
    ]
    gap = seen[3]
    assert isinstance(gap, GapEvent)
    assert gap.start_ns == hr(4).t_ns
    assert gap.end_ns == hr(7).t_ns


async def test_stuck_sink_stalls_neither_devices_nor_the_other_sink(
    store: Store, tmp_path: Path
) -> None:
    with Store(tmp_path / "other.sqlite3") as other:
        stuck = OutboxSink("stuck", store, stuck=True)
        healthy = OutboxSink("healthy", other)
        pipeline = Pipeline(
            lambda a: Recorder(a), None, [stuck, healthy], live_lane_size=200, flush_timeout_s=0.2
        )
        n = 2000
        task = asyncio.create_task(pipeline.run())
        for i in range(1, n + 1):
            assert pipeline.offer("ann", "strap", hr(i))  # never refused, never blocks
            if i % 20 == 0:
                await asyncio.sleep(0)
        await eventually(lambda: len(healthy.live) == n and len(healthy.delivered) == n // 10)
        pipeline.stop()
        await asyncio.wait_for(task, 5)
        status = pipeline.status()
        assert status.sinks["healthy"].live_shed == 0
        # The stuck sink holds one batch in its hung call; its lane kept only the newest 200.
        assert status.sinks["stuck"].live_shed >= n - 200 - 256
        # Its results wait in its outbox: 200 HRV results and the final status.
        assert MqttOutbox(store).depth() == n // 10 + 1
        assert MqttOutbox(other).depth() == 0


async def test_results_are_never_dropped_while_live_messages_are_shed(store: Store) -> None:
    stuck = OutboxSink("stuck", store, stuck=True)
    pipeline = Pipeline(
        lambda a: Recorder(a, every=5), store, [stuck], live_lane_size=4, flush_timeout_s=0.1
    )
    task = asyncio.create_task(pipeline.run())
    for i in range(1, 501):
        pipeline.offer("ann", "strap", hr(i))
        pipeline.offer("bob", "strap", hr(i))
    await eventually(lambda: pipeline.status().athletes["bob"].processed == 500)
    pipeline.stop()
    await asyncio.wait_for(task, 5)
    queued = [decode_payload(m.payload) for m in MqttOutbox(store).peek(10_000)]
    hrv = [q for q in queued if "n_beats" in q]
    assert len(hrv) == 2 * 100  # every 5th of 500 samples, for two athletes
    ann = [q["seq"] for q in hrv if q["athlete"] == "ann"]
    assert ann == list(range(ann[0], ann[0] + 100))
    assert pipeline.status().sinks["stuck"].live_shed > 0
    assert pipeline.status().durable == len(queued)
    assert pipeline.status().durable_errors == 0


async def test_shutdown_processes_the_inbox_closes_processors_and_bounds_the_flush(
    store: Store,
) -> None:
    recorders: list[Recorder] = []

    def make(athlete: str) -> Recorder:
        recorders.append(Recorder(athlete))
        return recorders[-1]

    stuck = OutboxSink("stuck", store, stuck=True)
    pipeline = Pipeline(make, store, [stuck], flush_timeout_s=0.3)
    for i in range(1, 101):
        pipeline.offer("ann", "strap", hr(i))
    task = asyncio.create_task(pipeline.run())
    await asyncio.sleep(0)
    pipeline.stop()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.wait_for(task, 5)
    assert loop.time() - t0 < 2.0  # the stuck sink got its 0.3 s, not forever
    assert recorders[0].closed
    assert len(recorders[0].seen) == 100  # queued records were processed, not dropped
    # Results and the final status stay in the outbox, undelivered, for the next start.
    topics = [m.topic for m in MqttOutbox(store).peek(1000)]
    assert topics == ["redox/ann/hrv"] * 10 + ["redox/ann/status"]


async def test_healthy_sink_drains_its_outbox_at_shutdown(store: Store) -> None:
    sink = OutboxSink("mqtt", store)
    pipeline = Pipeline(lambda a: Recorder(a), store, [sink])
    for i in range(1, 51):
        pipeline.offer("ann", "strap", hr(i))
    task = asyncio.create_task(pipeline.run())
    await asyncio.sleep(0)
    pipeline.stop()
    await asyncio.wait_for(task, 5)
    assert MqttOutbox(store).depth() == 0
    assert len(sink.delivered) == 5 + 1


async def test_crashing_sink_runner_is_restarted(store: Store) -> None:
    class Flaky(OutboxSink):
        runs = 0

        async def run(self) -> None:
            self.runs += 1
            if self.runs == 1:
                raise ConnectionError("broker went away")
            await super().run()

    flaky = Flaky("flaky", store)
    pipeline = Pipeline(lambda a: Recorder(a), None, [flaky])
    await _run_briefly(pipeline, lambda: flaky.runs >= 2)
    counters = pipeline.status().sinks["flaky"]
    assert counters.restarts == 1
    assert counters.last_error == "broker went away"


async def test_failing_processor_is_counted_and_the_athlete_goes_on() -> None:
    class Fragile(Recorder):
        def process(self, device: str, record: object) -> Sequence[Result]:
            if isinstance(record, HeartRateSample) and record.hr_bpm == 3:
                raise ValueError("bad sample")
            return super().process(device, record)

    pipeline = Pipeline(lambda a: Fragile(a), None)
    for i in range(1, 6):
        pipeline.offer("ann", "strap", hr(i))
    await _run_briefly(pipeline, lambda: pipeline.status().athletes["ann"].processed == 4)
    assert pipeline.status().athletes["ann"].errors == 1


async def test_failing_sink_accept_is_counted_as_a_durable_error(store: Store) -> None:
    class Full(OutboxSink):
        def accept(self, results: Sequence[Result]) -> None:
            raise OSError("disk full")

    pipeline = Pipeline(lambda a: Recorder(a), None, [Full("full", store)])
    pipeline.offer("ann", "strap", hr(10))
    await _run_briefly(pipeline, lambda: pipeline.status().athletes["ann"].processed == 1)
    assert pipeline.status().durable_errors == 2  # the HRV result and the closing status


async def test_sigterm_stops_the_pipeline_cleanly(store: Store) -> None:
    sink = OutboxSink("mqtt", store)
    pipeline = Pipeline(lambda a: Recorder(a), store, [sink], athletes=["ann"])
    task = asyncio.create_task(pipeline.run())
    undo = install_signal_handlers(pipeline)
    try:
        await eventually(lambda: pipeline.status().running)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(task, 5)
    finally:
        undo()
    assert pipeline.stopping
    assert [decode_payload(p)["state"] for p in sink.delivered] == ["ok"]


class CountingSource:
    def __init__(self, pipeline: Pipeline, athlete: str, n: int) -> None:
        self.name = f"{athlete}-strap"
        self.ingest = pipeline.ingest_for(athlete, "strap")
        self.n = n

    async def run(self) -> None:
        for i in range(1, self.n + 1):
            self.ingest(hr(i))
            await asyncio.sleep(0)


async def test_sources_feed_their_athletes_and_a_failing_source_is_isolated(
    store: Store,
) -> None:
    sink = OutboxSink("mem", store)
    pipeline = Pipeline(lambda a: Recorder(a), store, [sink])

    class Broken:
        name = "broken"

        async def run(self) -> None:
            raise OSError("adapter vanished")

    pipeline.add_source(CountingSource(pipeline, "ann", 200))
    pipeline.add_source(Broken())
    await _run_briefly(pipeline, lambda: len(sink.live) == 200)
    assert pipeline.status().sources["broken"].startswith("failed")
    assert pipeline.status().sources["ann-strap"] == "ended"


@settings(max_examples=60, deadline=None)
@given(
    inbox_size=st.integers(1, 20),
    schedule=st.lists(
        st.tuples(st.sampled_from(["strap", "moxy"]), st.booleans()), min_size=1, max_size=120
    ),
)
def test_every_record_is_processed_or_counted_and_no_stream_runs_across_a_shed(
    inbox_size: int, schedule: list[tuple[str, bool]]
) -> None:
    """Offers interleaved with draining: received = processed + shed, and after any shed
    sample the processor sees a gap for that device before its next sample."""

    async def scenario() -> None:
        rec: list[Recorder] = []

        def make(athlete: str) -> Recorder:
            rec.append(Recorder(athlete))
            return rec[-1]

        pipeline = Pipeline(make, None, inbox_size=inbox_size)
        task = asyncio.create_task(pipeline.run())
        shed: dict[str, list[int]] = {"strap": [], "moxy": []}
        for i, (device, drain) in enumerate(schedule, start=1):
            if not pipeline.offer("ann", device, hr(i)):
                shed[device].append(i)
            if drain:
                await asyncio.sleep(0)
        await asyncio.sleep(0)
        pipeline.stop()
        await asyncio.wait_for(task, 5)
        c = pipeline.status().athletes["ann"]
        samples = [(d, r) for d, r in rec[0].seen if isinstance(r, HeartRateSample)]
        assert c.received == len(schedule)
        assert len(samples) + c.shed == c.received
        for device, lost in shed.items():
            stream = [r for d, r in rec[0].seen if d == device]
            for i in lost:
                after = [
                    k
                    for k, r in enumerate(stream)
                    if isinstance(r, HeartRateSample | GapEvent) and r.t_ns > hr(i).t_ns
                ]
                if after:  # the first record after the hole is the gap that marks it
                    first = stream[after[0]]
                    assert isinstance(first, GapEvent)
                    assert first.start_ns <= hr(i).t_ns

    asyncio.run(scenario())


@pytest.mark.parametrize("size", [0, -1])
def test_inbox_and_lane_sizes_must_be_positive(size: int) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        Pipeline(lambda a: Recorder(a), None, inbox_size=size)


async def test_a_source_added_while_running_is_cancelled_at_stop() -> None:
    class Endless:
        name = "endless"
        cancelled = False

        async def run(self) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise

    pipeline = Pipeline(lambda a: Recorder(a), None)
    task = asyncio.create_task(pipeline.run())
    await asyncio.sleep(0)
    source = Endless()
    pipeline.add_source(source)
    await eventually(lambda: pipeline.status().sources["endless"] == "running")
    pipeline.stop()
    await asyncio.wait_for(task, 5)
    assert source.cancelled
    assert pipeline.status().sources["endless"] == "stopped"


@pytest.mark.integration
async def test_frozen_broker_stalls_neither_influxdb_nor_the_devices(
    tmp_path: Path, mosquitto: Any, influxdb1: Any
) -> None:
    """Real servers: mosquitto frozen (SIGSTOP: connections hang, nothing answers) while
    InfluxDB keeps receiving; MQTT results wait in the outbox and go out once it thaws."""
    from streamer.config import InfluxConfig, MqttConfig
    from streamer.sinks.influx import InfluxWriter
    from streamer.sinks.mqtt import MqttPublisher

    with Store(tmp_path / "store.sqlite3") as store:
        mqtt = MqttPublisher(MqttConfig.from_url(mosquitto.url, publish_timeout_s=1.0), store)
        influx = InfluxWriter(
            InfluxConfig(url=influxdb1.url, db="t", create_database=True, flush_interval_s=0.1),
            store,
        )
        pipeline = Pipeline(lambda a: Recorder(a), store, [mqtt, influx], flush_timeout_s=2.0)
        task = asyncio.create_task(pipeline.run())
        await eventually(lambda: mqtt.connected)
        assert mosquitto.proc is not None
        mosquitto.proc.send_signal(signal.SIGSTOP)
        try:
            for i in range(1, 301):
                assert pipeline.offer("ann", "strap", hr(i))
                if i % 10 == 0:
                    await asyncio.sleep(0.01)
            await eventually(lambda: influx.status()["written"] >= 300 + 30, timeout_s=10)
            assert MqttOutbox(store).depth() == 30  # the HRV results, waiting for the broker
        finally:
            mosquitto.proc.send_signal(signal.SIGCONT)
        await eventually(lambda: MqttOutbox(store).depth() == 0, timeout_s=20)
        pipeline.stop()
        await asyncio.wait_for(task, 10)
    rows = influxdb1.query("SELECT count(n_beats) FROM hrv", db="t")
    assert rows["results"][0]["series"][0]["values"][0][1] == 30
