"""The pipeline's promises: devices never wait, results are never dropped, a stuck sink
stalls nobody, shutdown flushes what it can and leaves the rest in the outbox."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.records import BatteryLevel, GapEvent, GapReason, HeartRateSample
from streamer.pipeline import Envelope, Pipeline, install_signal_handlers


class ListOutbox:
    """The outbox contract in its simplest durable-enough form for these tests."""

    def __init__(self) -> None:
        self.rows: list[Envelope] = []

    def append(self, envelopes: Sequence[Envelope]) -> None:
        self.rows.extend(envelopes)


class Recorder:
    """An athlete processor that remembers what it saw; one live message per sample and a
    durable result every ``every`` samples."""

    def __init__(self, athlete: str, every: int = 10) -> None:
        self.athlete = athlete
        self.every = every
        self.seen: list[tuple[str, object]] = []
        self.closed = False

    def process(self, device: str, record: object) -> Sequence[Envelope]:
        self.seen.append((device, record))
        if not isinstance(record, HeartRateSample):
            return ()
        out = [Envelope("live", self.athlete, record.t_ns, {"hr_bpm": record.hr_bpm}, device)]
        if record.hr_bpm % self.every == 0:
            out.append(Envelope("hrv", self.athlete, record.t_ns, {"n": record.hr_bpm}))
        return out

    def close(self) -> Sequence[Envelope]:
        self.closed = True
        return (Envelope("status", self.athlete, 0, {"state": "ok"}),)


class MemorySink:
    """A sink that delivers into lists; ``stuck`` makes every call hang forever."""

    def __init__(self, name: str, outbox: ListOutbox, *, stuck: bool = False) -> None:
        self.name = name
        self.outbox = outbox
        self.stuck = stuck
        self.live: list[Envelope] = []
        self.delivered = 0  # cursor into the outbox
        self._wake = asyncio.Event()
        self._never = asyncio.Event()

    async def run(self) -> None:
        while True:
            if self.stuck:
                await self._never.wait()
            self.delivered = len(self.outbox.rows)
            self._wake.clear()
            await self._wake.wait()

    def wake(self) -> None:
        self._wake.set()

    async def send_live(self, batch: Sequence[Envelope]) -> None:
        if self.stuck:
            await self._never.wait()
        self.live.extend(batch)

    async def drain(self, timeout_s: float) -> int:
        if self.stuck:
            await self._never.wait()
        self.delivered = len(self.outbox.rows)
        return 0

    def status(self) -> Mapping[str, Any]:
        return {"delivered": self.delivered, "backlog": len(self.outbox.rows) - self.delivered}


def hr(i: int) -> HeartRateSample:
    return HeartRateSample(t_ns=1_000_000_000 * i, hr_bpm=i, rr_ms=(1000.0,))


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait until ``condition()`` holds; the state it reads belongs to other tasks."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - polling counters, there is no event to wait on
            await asyncio.sleep(0.01)


async def _run_briefly(pipeline: Pipeline, until: Callable[[], bool],
                       timeout_s: float = 5.0) -> None:
    task = asyncio.create_task(pipeline.run())
    await eventually(until, timeout_s)
    pipeline.stop()
    await asyncio.wait_for(task, timeout_s)


async def test_full_inbox_sheds_samples_and_counts_them() -> None:
    outbox = ListOutbox()
    pipeline = Pipeline(lambda a: Recorder(a), outbox, inbox_size=10)
    accepted = [pipeline.offer("ann", "strap", hr(i)) for i in range(1, 26)]
    assert accepted == [True] * 10 + [False] * 15
    status = pipeline.status()
    assert status.athletes["ann"].shed == 15
    assert status.athletes["ann"].received == 25
    assert status.shed_total == 15


async def test_gap_and_battery_records_are_never_shed() -> None:
    pipeline = Pipeline(lambda a: Recorder(a), ListOutbox(), inbox_size=2)
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

    pipeline = Pipeline(make, ListOutbox(), inbox_size=3)
    for i in range(1, 7):  # 1..3 accepted, 4..6 shed
        pipeline.offer("ann", "strap", hr(i))
    task = asyncio.create_task(pipeline.run())
    await asyncio.sleep(0.05)  # the worker empties the inbox
    pipeline.offer("ann", "strap", hr(7))
    await asyncio.sleep(0.05)
    pipeline.stop()
    await asyncio.wait_for(task, 5)
    seen = [r for _, r in recorders["ann"].seen]
    assert [type(r).__name__ for r in seen] == ["HeartRateSample"] * 3 + [
        "GapEvent", "HeartRateSample"]
    gap = seen[3]
    assert isinstance(gap, GapEvent)
    assert gap.start_ns == hr(4).t_ns
    assert gap.end_ns == hr(7).t_ns


async def test_stuck_sink_stalls_neither_devices_nor_the_other_sink() -> None:
    outbox = ListOutbox()
    stuck = MemorySink("stuck", outbox, stuck=True)
    healthy = MemorySink("healthy", outbox)
    pipeline = Pipeline(lambda a: Recorder(a), outbox, [stuck, healthy], live_lane_size=200,
                        flush_timeout_s=0.2)
    n = 2000

    async def device() -> None:
        for i in range(1, n + 1):
            assert pipeline.offer("ann", "strap", hr(i))  # never refused, never blocks
            if i % 20 == 0:
                await asyncio.sleep(0)

    task = asyncio.create_task(pipeline.run())
    await device()
    await eventually(lambda: len(healthy.live) == n)
    pipeline.stop()
    await asyncio.wait_for(task, 5)
    status = pipeline.status()
    assert len(healthy.live) == n
    assert healthy.delivered == len(outbox.rows)
    # The stuck sink holds one batch in its hung call; its lane kept only the newest 200.
    assert status.sinks["stuck"].live_shed >= n - 200 - 256
    assert status.sinks["healthy"].live_shed == 0


async def test_results_are_never_dropped_while_live_messages_are_shed() -> None:
    outbox = ListOutbox()
    stuck = MemorySink("stuck", outbox, stuck=True)
    pipeline = Pipeline(lambda a: Recorder(a, every=5), outbox, [stuck], live_lane_size=4,
                        flush_timeout_s=0.1)
    task = asyncio.create_task(pipeline.run())
    for i in range(1, 501):
        pipeline.offer("ann", "strap", hr(i))
        pipeline.offer("bob", "strap", hr(i))
    await asyncio.sleep(0.2)
    pipeline.stop()
    await asyncio.wait_for(task, 5)
    hrv = [e for e in outbox.rows if e.kind == "hrv"]
    assert len(hrv) == 2 * 100  # every 5th of 500 samples, for two athletes
    assert pipeline.status().sinks["stuck"].live_shed > 0
    assert pipeline.status().durable_appended == len(outbox.rows)


async def test_shutdown_processes_the_inbox_closes_processors_and_bounds_the_flush() -> None:
    outbox = ListOutbox()
    recorders: list[Recorder] = []

    def make(athlete: str) -> Recorder:
        recorders.append(Recorder(athlete))
        return recorders[-1]

    stuck = MemorySink("stuck", outbox, stuck=True)
    pipeline = Pipeline(make, outbox, [stuck], flush_timeout_s=0.3)
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
    # Results and the final status are in the outbox, undelivered, for the next start.
    assert [e.kind for e in outbox.rows].count("hrv") == 10
    assert outbox.rows[-1].kind == "status"
    assert stuck.status()["backlog"] == len(outbox.rows)


async def test_crashing_sink_runner_is_restarted() -> None:
    outbox = ListOutbox()

    class Flaky(MemorySink):
        runs = 0

        async def run(self) -> None:
            self.runs += 1
            if self.runs == 1:
                raise ConnectionError("broker went away")
            await super().run()

    flaky = Flaky("flaky", outbox)
    pipeline = Pipeline(lambda a: Recorder(a), outbox, [flaky])
    await _run_briefly(pipeline, lambda: flaky.runs >= 2)
    counters = pipeline.status().sinks["flaky"]
    assert counters.restarts == 1
    assert counters.last_error == "broker went away"


async def test_failing_processor_is_counted_and_the_athlete_goes_on() -> None:
    class Fragile(Recorder):
        def process(self, device: str, record: object) -> Sequence[Envelope]:
            if isinstance(record, HeartRateSample) and record.hr_bpm == 3:
                raise ValueError("bad sample")
            return super().process(device, record)

    pipeline = Pipeline(lambda a: Fragile(a), ListOutbox())
    for i in range(1, 6):
        pipeline.offer("ann", "strap", hr(i))
    await _run_briefly(pipeline, lambda: pipeline.status().athletes["ann"].processed == 4)
    assert pipeline.status().athletes["ann"].errors == 1


async def test_sigterm_stops_the_pipeline_cleanly() -> None:
    outbox = ListOutbox()
    pipeline = Pipeline(lambda a: Recorder(a), outbox, athletes=["ann"])
    task = asyncio.create_task(pipeline.run())
    undo = install_signal_handlers(pipeline)
    try:
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(task, 5)
    finally:
        undo()
    assert pipeline.stopping
    assert [e.kind for e in outbox.rows] == ["status"]


class CountingSource:
    def __init__(self, pipeline: Pipeline, athlete: str, n: int) -> None:
        self.name = f"{athlete}-strap"
        self.ingest = pipeline.ingest_for(athlete, "strap")
        self.n = n

    async def run(self) -> None:
        for i in range(1, self.n + 1):
            self.ingest(hr(i))
            await asyncio.sleep(0)


async def test_sources_feed_their_athletes_and_a_failing_source_is_isolated() -> None:
    outbox = ListOutbox()
    sink = MemorySink("mem", outbox)
    pipeline = Pipeline(lambda a: Recorder(a), outbox, [sink])

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
    schedule=st.lists(st.tuples(st.sampled_from(["strap", "moxy"]), st.booleans()),
                      min_size=1, max_size=120),
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

        pipeline = Pipeline(make, ListOutbox(), inbox_size=inbox_size)
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
                after = [k for k, r in enumerate(stream)
                         if isinstance(r, HeartRateSample | GapEvent) and r.t_ns > hr(i).t_ns]
                if after:  # the first record after the hole is the gap that marks it
                    first = stream[after[0]]
                    assert isinstance(first, GapEvent)
                    assert first.start_ns <= hr(i).t_ns

    asyncio.run(scenario())


@pytest.mark.parametrize("size", [0, -1])
def test_inbox_and_lane_sizes_must_be_positive(size: int) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        Pipeline(lambda a: Recorder(a), ListOutbox(), inbox_size=size)
