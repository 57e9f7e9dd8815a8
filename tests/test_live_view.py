"""The live view shows what the pipeline and the athletes know, as a table on a terminal
and as plain lines elsewhere."""

from __future__ import annotations

import asyncio
import io

from rich.console import Console

from devices.records import HeartRateSample, SpO2Sample
from streamer.app.live_view import LiveView, ViewModel, plain_lines, render
from streamer.app.pipeline import Pipeline
from streamer.athlete import AthleteState
from streamer.demo.history import HistoryProgress


def _model() -> tuple[ViewModel, AthleteState]:
    state = AthleteState("ann")
    state.process("strap", HeartRateSample(1, 61, (980.0,)))
    pipeline = Pipeline(lambda a: state, None, athletes=["ann"])
    model = ViewModel(
        title="t",
        pipeline_status=pipeline.status,
        snapshots={"ann": state.snapshot},
        history=HistoryProgress(total_days=4, days_done=1, records=10),
    )
    return model, state


def test_plain_lines_carry_each_athletes_latest_values_and_the_replay_progress() -> None:
    model, _ = _model()
    lines = plain_lines(model)
    assert "history 1/4 athlete-days" in lines[0]
    assert lines[1].startswith("  ann: HR 61 RR 980")
    assert lines[1].endswith("alerts: none")


def test_spo2_shows_once_an_oximeter_reports_and_a_reading_without_value_keeps_the_last() -> None:
    model, state = _model()
    assert "SpO2 –" in plain_lines(model)[1]
    state.process("finger", SpO2Sample(2, 97.0, 64.0))
    state.process("finger", SpO2Sample(3, float("nan"), float("nan")))
    assert "SpO2 97" in plain_lines(model)[1]
    console = Console(file=io.StringIO(), width=200, force_terminal=True)
    console.print(render(model))
    assert "SpO2 %" in console.file.getvalue()  # type: ignore[attr-defined]


def test_athlete_publishes_spo2_samples_live_instead_of_dropping_them() -> None:
    state = AthleteState("ann")
    (result,) = state.process("finger", SpO2Sample(5, 96.0, 61.0))
    assert (result.kind.value, result.device, result.ts_ns) == ("spo2", "finger", 5)
    assert dict(result.fields) == {"spo2_pct": 96.0, "pulse_bpm": 61.0}
    assert AthleteState("bob", live=False).process("finger", SpO2Sample(5, 96.0, 61.0)) == []


def test_the_table_renders_the_athlete_row() -> None:
    model, _ = _model()
    console = Console(file=io.StringIO(), width=160, force_terminal=True)
    console.print(render(model))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "ann" in text
    assert "61" in text
    assert "history" in text


async def test_without_a_terminal_the_view_prints_plain_lines_periodically() -> None:
    model, _ = _model()
    out = io.StringIO()
    view = LiveView(model, console=Console(file=out), plain_every_s=0.05)
    assert view.plain
    task = asyncio.create_task(view.run())
    async with asyncio.timeout(10):  # a line every 0.05 s: wait for three, however loaded
        while out.getvalue().count("ann: HR 61") < 3:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert out.getvalue().count("ann: HR 61") >= 3
