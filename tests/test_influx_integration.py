"""The InfluxDB writer against real servers: InfluxDB 1.6 through the v1 API (read back with
InfluxQL) and VictoriaMetrics through the v2 API (read back with its export API)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from devices.records import HeartRateSample, SmO2Sample
from streamer.app.pipeline import Sink
from streamer.config import InfluxConfig, Secret
from streamer.results import Kind, Result, alert_result, live_result
from streamer.sinks.backoff import Backoff
from streamer.sinks.influx import InfluxWriter, line_messages
from streamer.sinks.outbox import Outbox
from streamer.store import Store
from tests.mqtt_helpers import eventually
from tests.servers import InfluxDB1, VictoriaMetrics

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000_000_000
FAST = Backoff(0.1, 0.3)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.sqlite3") as s:
        yield s


def v1_config(server: InfluxDB1, **options: Any) -> InfluxConfig:
    values: dict[str, Any] = {
        "url": server.url,
        "api": "v1",
        "db": "redox",
        "create_database": True,
        "flush_interval_s": 0.05,
        "timeout_s": 2.0,
    }
    values.update(options)
    return InfluxConfig(**values)


@contextlib.asynccontextmanager
async def running(writer: InfluxWriter) -> AsyncIterator[InfluxWriter]:
    task = asyncio.create_task(writer.run())
    try:
        yield writer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def rows(server: InfluxDB1, q: str) -> list[dict[str, Any]]:
    """InfluxQL result rows as dicts (column → value)."""
    result = server.query(q, "redox")
    out: list[dict[str, Any]] = []
    for statement in result.get("results", []):  # type: ignore[union-attr]
        for series in statement.get("series", []):
            for values in series["values"]:
                out.append(dict(zip(series["columns"], values, strict=True)))
    return out


def field_types(server: InfluxDB1, measurement: str) -> dict[str, str]:
    return {
        r["fieldKey"]: r["fieldType"] for r in rows(server, f'SHOW FIELD KEYS FROM "{measurement}"')
    }


RESULTS = [
    Result(
        Kind.HRV,
        "alice",
        T0 + 1,
        {"rmssd_ms": 42.0, "ln_rmssd": 3.7377, "sdnn_ms": 50.5, "n_beats": 120, "window_s": 300},
    ),
    Result(
        Kind.MORNING,
        "alice",
        T0 + 2,
        {
            "date": "2023-11-14",
            "ln_rmssd": 4.1,
            "resting_hr_bpm": 48,
            "accepted": True,
            "reject_reason": None,
        },
    ),
    Result(
        Kind.OXYGENATION,
        "alice",
        T0 + 3,
        {"scope": "session", "recovery_s": 131.5, "n_efforts": 6},
        "moxy",
    ),
    Result(
        Kind.GRIP,
        "alice",
        T0 + 4,
        {"class": "grip_spillover", "mvc_kg": 45.5, "drop_pct": 13.0, "minutes_after": 30},
        "tindeq",
    ),
    alert_result(
        "alice",
        {
            "rule": "rhr_creep",
            "severity": "pull_back",
            "state": "raised",
            "message": "RHR up 6 bpm",
            "advice": "cut 40%",
            "raised_ts_ns": T0 + 5,
        },
        [],
    ),
]


async def test_v1_results_and_live_samples_read_back_with_influxql(
    influxdb1: InfluxDB1, store: Store
) -> None:
    writer = InfluxWriter(v1_config(influxdb1), store, backoff=FAST)
    assert isinstance(writer, Sink)  # what the pipeline drives
    async with running(writer):
        writer.accept(RESULTS)
        await writer.send_live(
            [
                live_result(
                    "alice", "strap", HeartRateSample(T0 + 10_000_000_000, 61, (1000.0, 980.0))
                ),
                live_result("alice", "moxy", SmO2Sample(T0 + 10_000_000_000, 55.5, 12.25)),
            ]
        )
        assert await writer.drain(10.0) == 0
    hrv = rows(influxdb1, "SELECT * FROM hrv")
    assert hrv == [
        {
            "time": T0 + 1,
            "athlete": "alice",
            "ln_rmssd": 3.7377,
            "n_beats": 120,
            "rmssd_ms": 42.0,
            "sdnn_ms": 50.5,
        }
    ]
    assert field_types(influxdb1, "hrv")["n_beats"] == "integer"
    assert field_types(influxdb1, "hrv")["rmssd_ms"] == "float"
    (morning,) = rows(influxdb1, "SELECT * FROM morning")
    assert (morning["accepted"], morning["resting_hr_bpm"]) == (True, 48.0)
    assert field_types(influxdb1, "morning")["resting_hr_bpm"] == "float"
    (ox,) = rows(influxdb1, "SELECT * FROM oxygen_recovery")
    assert (ox["scope"], ox["device"], ox["recovery_s"], ox["n_efforts"]) == (
        "session",
        "moxy",
        131.5,
        6,
    )
    (grip,) = rows(influxdb1, "SELECT * FROM grip_test")
    assert (grip["class"], grip["drop_pct"]) == ("grip_spillover", 13.0)
    (alert,) = rows(influxdb1, "SELECT * FROM alert")
    assert (alert["rule"], alert["severity"], alert["active"], alert["state"]) == (
        "rhr_creep",
        "pull_back",
        1,
        "raised",
    )
    hr = rows(influxdb1, "SELECT hr_bpm, rr_ms FROM heart_rate")
    assert hr == [
        {"time": T0 + 9_020_000_000, "hr_bpm": None, "rr_ms": 1000.0},
        {"time": T0 + 10_000_000_000, "hr_bpm": 61.0, "rr_ms": 980.0},
    ]
    (smo2,) = rows(influxdb1, "SELECT * FROM smo2")
    assert (smo2["smo2_pct"], smo2["thb_gdl"]) == (55.5, 12.25)
    status = writer.status()
    assert status["written"] == 8
    assert status["healthy"] is True


async def test_drain_waits_for_a_batch_in_flight_and_nothing_written_is_spilled(
    influxdb1: InfluxDB1, store: Store
) -> None:
    """Shutdown while a live batch is on the wire: drain waits for the server's answer, so
    cancelling the writer afterwards neither loses the batch nor puts points the server
    already has back in the outbox (found in CI: drain returned 0 before the answer)."""
    writer = InfluxWriter(v1_config(influxdb1, batch_size=2, timeout_s=5.0), store, backoff=FAST)
    hr = [
        live_result("dora", "strap", HeartRateSample(T0 + i * 1_000_000_000, 60 + i, ()))
        for i in range(4)
    ]
    async with running(writer):
        await writer.send_live(hr[:2])  # creates the database, writes: the server is up
        await eventually(lambda: writer.status()["written"] == 2, timeout_s=10.0)
        os.kill(influxdb1.proc.pid, signal.SIGSTOP)  # the next write hangs on the wire
        try:
            await writer.send_live(hr[2:])  # a full batch: the writer sends it now
            await eventually(lambda: writer.status()["buffered"] == 0, timeout_s=5.0)
            draining = asyncio.create_task(writer.drain(8.0))
            await asyncio.sleep(0.5)
            assert not draining.done()  # still waiting for the answer
        finally:
            os.kill(influxdb1.proc.pid, signal.SIGCONT)
        assert await draining == 0
    assert writer.status()["written"] == 4
    assert Outbox(store, "influx").depth() == 0  # nothing spilled by the cancel
    values = rows(influxdb1, "SELECT hr_bpm FROM heart_rate WHERE athlete = 'dora'")
    assert [r["hr_bpm"] for r in values] == [60.0, 61.0, 62.0, 63.0]


async def test_a_cancel_spills_the_buffer_without_the_event_loop_waiting_for_the_store(
    influxdb1: InfluxDB1, store: Store
) -> None:
    """Cancelled while another thread holds the store (a team partition's commit waiting on
    a lock, until the partition's stop cancels it): the buffered live points go to the
    outbox from a thread — the event loop, every partition's, turns meanwhile — and are
    there once the store is free (the spill on the loop froze the whole worker)."""
    config = v1_config(influxdb1, batch_size=1000, flush_interval_s=3600, create_database=False)
    writer = InfluxWriter(config, store, backoff=FAST)
    hr = [
        live_result("erin", "strap", HeartRateSample(T0 + i * 1_000_000_000, 60 + i, ()))
        for i in range(3)
    ]
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store.transaction():
            holding.set()
            release.wait(30)

    task = asyncio.create_task(writer.run())
    holder = threading.Thread(target=hold)
    try:
        await asyncio.sleep(0)  # one turn: the writer runs, waiting for points (no I/O first)
        await writer.send_live(hr)
        assert writer.status()["buffered"] == 3
        holder.start()
        await asyncio.to_thread(holding.wait, 30)
        task.cancel()
        for _ in range(5):
            await asyncio.sleep(0)  # turns of the loop: the cancelled writer's spill waits
        assert not task.done(), "the spill waits for the store, off the loop"
    finally:
        release.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        holder.join(30)
    assert Outbox(store, "influx").depth() == 3, "the buffered points kept for the next start"


async def test_field_type_conflict_is_dead_lettered_and_does_not_block(
    influxdb1: InfluxDB1, store: Store
) -> None:
    writer = InfluxWriter(v1_config(influxdb1), store, backoff=FAST)
    async with running(writer):
        writer.accept([Result(Kind.HRV, "a", T0, {"n_beats": 10})])
        await eventually(lambda: writer.status()["written"] == 1)
        # A float where the shard holds an integer (e.g. from an older writer).
        Outbox(store, "influx").enqueue_many(
            line_messages(["hrv,athlete=a n_beats=1.5 " + str(T0 + 1)])
        )
        writer.accept([Result(Kind.HRV, "a", T0 + 2, {"n_beats": 12, "rmssd_ms": 30.0})])
        assert await writer.drain(10.0) == 0
    assert [r["n_beats"] for r in rows(influxdb1, "SELECT n_beats FROM hrv")] == [10, 12]
    (dead,) = Outbox(store, "influx").dead_letters()
    assert dead.status == 400
    assert "conflict" in dead.error
    assert dead.payload.decode().startswith("hrv,athlete=a n_beats=1.5")
    assert writer.status()["dead_lettered"] == 1


async def test_missing_database_is_retried_with_a_hint_then_written(
    influxdb1: InfluxDB1, store: Store
) -> None:
    writer = InfluxWriter(v1_config(influxdb1, create_database=False), store, backoff=FAST)
    async with running(writer):
        writer.accept(RESULTS[:1])
        await eventually(lambda: writer.status()["failed_attempts"] >= 1)
        assert "create_database = true" in str(writer.status()["last_error"])
        assert Outbox(store, "influx").depth() == 1
        influxdb1.query('CREATE DATABASE "redox"')
        await eventually(lambda: writer.status()["written"] == 1, timeout_s=10)
    assert len(rows(influxdb1, "SELECT * FROM hrv")) == 1


async def test_credentials_never_reach_the_logs(
    influxdb1: InfluxDB1, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = v1_config(
        influxdb1,
        db="nope",
        create_database=False,
        username="redox",
        password=Secret("Infl-pw-77q"),
    )
    writer = InfluxWriter(config, store, backoff=FAST)
    async with running(writer):
        writer.accept(RESULTS[:1])
        await eventually(lambda: writer.status()["failed_attempts"] >= 2)
    text = caplog.text + str(writer.status()) + repr(config)
    assert "Infl-pw-77q" not in text
    assert "redox:Infl" not in text
    assert "HTTP 404" in str(writer.status()["last_error"])


def _vm_values(server: VictoriaMetrics, match: str) -> dict[str, tuple[list[float], list[int]]]:
    """metric name + labels → (values, timestamps in ms) from VictoriaMetrics' export."""
    out = {}
    for row in server.export(match):
        metric = row["metric"]
        assert isinstance(metric, dict)
        key = ",".join(f"{k}={v}" for k, v in sorted(metric.items()))
        out[key] = (row["values"], row["timestamps"])
    return out  # type: ignore[return-value]


async def test_v2_api_writes_to_victoria_metrics(victoria: VictoriaMetrics, store: Store) -> None:
    config = InfluxConfig(
        url=victoria.url,
        api="v2",
        org="club",
        bucket="redox",
        token=Secret("vm-token"),
        flush_interval_s=0.05,
        timeout_s=2.0,
    )
    writer = InfluxWriter(config, store, backoff=FAST)
    now = 1_750_000_000_000_000_000
    async with running(writer):
        writer.accept(
            [
                Result(Kind.HRV, "alice", now, {"rmssd_ms": 42.5, "n_beats": 120}),
                Result(Kind.HRV, "alice", now + 60_000_000_000, {"rmssd_ms": 40.0, "n_beats": 118}),
            ]
        )
        await writer.send_live([live_result("bob", "moxy", SmO2Sample(now, 61.5, 11.0))])
        assert await writer.drain(10.0) == 0
    hrv = _vm_values(victoria, '{__name__=~"hrv_.*"}')
    rmssd = next(v for k, v in hrv.items() if "__name__=hrv_rmssd_ms" in k and "athlete=alice" in k)
    assert rmssd == ([42.5, 40.0], [now // 1_000_000, now // 1_000_000 + 60_000])
    beats = next(v for k, v in hrv.items() if "__name__=hrv_n_beats" in k)
    assert beats[0] == [120, 118]
    smo2 = _vm_values(victoria, '{__name__="smo2_smo2_pct"}')
    ((key, (values, _)),) = smo2.items()
    assert "athlete=bob" in key
    assert "device=moxy" in key
    assert values == [61.5]
    assert writer.status()["written"] == 3
