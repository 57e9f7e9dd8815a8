"""Weeks of emulated history through the real pipeline, into any sinks (tests' data source).

:func:`replay` feeds the demo's scenarios (:mod:`streamer.demo.history`) through
:class:`streamer.pipeline.Pipeline` with the real per-athlete processing
(:class:`streamer.athlete.AthleteState`: processors, rules, alert book) and hands the
results to the given sinks: ``days`` of history ending the day before yesterday with live
samples off, then yesterday replayed once more with live samples on (heart rate, RR, SmO2,
power, force, and a minute of SpO2), so that every kind of result exists and lies in the
past.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devices.records import SpO2Sample
from streamer.app.pipeline import Pipeline, Sink
from streamer.athlete import AthleteState
from streamer.demo.history import day_records, history_dates, replay_history, scenarios
from streamer.results import Result
from streamer.store import Store


class CaptureSink:
    """A pipeline sink that keeps every result it is given, durable and live."""

    name = "capture"

    def __init__(self) -> None:
        self.results: list[Result] = []

    def accept(self, results: Sequence[Result]) -> None:
        self.results.extend(results)

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def send_live(self, batch: Sequence[Result]) -> None:
        self.results.extend(batch)

    async def drain(self, timeout_s: float) -> int:
        return 0

    def status(self) -> Mapping[str, Any]:
        return {"results": len(self.results)}


def _oximetry(day: dt.date) -> list[SpO2Sample]:
    """A minute of pulse-oximeter samples at 07:00 UTC of ``day`` (1 Hz), one without a
    valid value: the demo's scenarios have no oximeter, and every live kind must exist."""
    start_ns = int(dt.datetime(day.year, day.month, day.day, 7, tzinfo=dt.UTC).timestamp()) * 10**9
    samples = [SpO2Sample(start_ns + i * 10**9, 96.0 + i % 3, 58.0 + i % 5) for i in range(60)]
    samples.append(SpO2Sample(start_ns + 60 * 10**9, float("nan"), float("nan")))
    return samples


async def replay(
    store_path: Path,
    sinks: Sequence[Sink],
    *,
    athletes: int = 2,
    days: int = 26,
    settle: Sequence[Any] = (),
) -> list[str]:
    """Replay ``days`` of history plus one live day for ``athletes`` into ``sinks``.

    ``settle`` are sinks with a ``status()`` holding ``outbox_depth`` and ``buffered``
    (the InfluxDB writer): the replay waits until they have written everything before
    stopping the pipeline. Returns the athlete ids.
    """
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    dates = history_dates(days, today=yesterday)  # ends the day before yesterday
    plans = scenarios(athletes, days)
    with Store(store_path) as store:
        states: dict[str, AthleteState] = {}

        def make(athlete: str) -> AthleteState:
            states[athlete] = AthleteState(athlete, store, live=False, hrv_every_s=60.0)
            return states[athlete]

        # History replays far faster than real time: lanes big enough that no live sample
        # is shed, and time to deliver at shutdown even on a busy machine.
        pipeline = Pipeline(
            make,
            store,
            list(sinks),
            athletes=[p.athlete for p in plans],
            live_lane_size=1_000_000,
            flush_timeout_s=30.0,
        )
        task = asyncio.create_task(pipeline.run())
        try:
            await replay_history(pipeline.put, plans, dates)
            await pipeline.join()
            for state in states.values():
                state.live = True
            for plan in plans:
                for device, record in day_records(plan, plan.days[-1], yesterday):
                    await pipeline.put(plan.athlete, device, record)
                for record in _oximetry(yesterday):
                    await pipeline.put(plan.athlete, "oximeter", record)
            await pipeline.join()
            async with asyncio.timeout(120):
                # Live samples wait in the pipeline's lanes, then in the sinks' batches
                # (written about every second): wait until all are through.
                while any(c.lane_depth for c in pipeline.status().sinks.values()) or any(  # noqa: ASYNC110
                    s.status()["outbox_depth"] or s.status()["buffered"] for s in settle
                ):
                    await asyncio.sleep(0.1)
        finally:
            pipeline.stop()
            await task
    return [p.athlete for p in plans]
