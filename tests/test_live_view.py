"""The live view shows what the pipeline and the athletes know, as a table on a terminal
and as plain lines elsewhere."""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

from rich.console import Console

from devices.records import ForceSample, HeartRateSample, PowerSample, SmO2Sample, SpO2Sample
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
    assert "SpO2 97%" in _rendered(model, width=200)


def test_athlete_publishes_spo2_samples_live_instead_of_dropping_them() -> None:
    state = AthleteState("ann")
    (result,) = state.process("finger", SpO2Sample(5, 96.0, 61.0))
    assert (result.kind.value, result.device, result.ts_ns) == ("spo2", "finger", 5)
    assert dict(result.fields) == {"spo2_pct": 96.0, "pulse_bpm": 61.0}
    assert AthleteState("bob", live=False).process("finger", SpO2Sample(5, 96.0, 61.0)) == []


def _rendered(model: ViewModel, *, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=False)
    console.print(render(model))
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


@dataclass
class _Status:
    connected: bool
    reconnects: int = 0
    gaps: int = 0
    adapter_error: str | None = None


@dataclass
class _Device:
    name: str
    status: _Status


def _busy_model() -> ViewModel:
    """Two athletes with every signal, one with a long id, five devices, an open alert."""
    ids = ["athlete-with-a-long-id", "bob"]
    states = {a: AthleteState(a) for a in ids}
    for state in states.values():
        state.process("strap", HeartRateSample(1, 61, (980.0,)))
        state.process("moxy", SmO2Sample(2, 55.4, 12.3))
        state.process("crank", PowerSample(3, 212))
        state.process("tindeq", ForceSample(4, 32.1))
        state.process("finger", SpO2Sample(5, 97.0, 64.0))
    pipeline = Pipeline(lambda a: states[a], None, athletes=ids)
    return ViewModel(
        title="redox-streamer run — 2 athletes, 5 devices",
        pipeline_status=pipeline.status,
        snapshots={a: s.snapshot for a, s in states.items()},
        devices={
            ids[0]: [
                ("strap", _Device("s", _Status(True, reconnects=2, gaps=3))),
                ("smo2", _Device("m", _Status(False, reconnects=1))),
                ("power", _Device("p", _Status(True))),
            ],
            "bob": [("grip", _Device("g", _Status(True))), ("spo2", _Device("o", _Status(True)))],
        },
    )


def test_the_table_is_readable_at_80_columns_nothing_cut_to_an_ellipsis() -> None:
    model = _busy_model()
    text = _rendered(model, width=80)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "…" not in text
    for value in ("HR 61", "RR 980 ms", "SmO2 55.4%", "power 212 W", "force 32.1 kg", "SpO2 97%"):
        assert text.count(value) == 2, value  # whole, on one line, for both athletes
    for device in ("strap(r2,g3)", "smo2(down,r1)", "power", "grip", "spo2"):
        assert device in text
    assert "athlete-with-a-" in text  # a long id folds onto a second line, whole
    assert "alerts" in text


def test_without_data_the_alerts_column_is_no_green_ok() -> None:
    pipeline = Pipeline(lambda a: AthleteState(a), None, athletes=["ann"])
    model = ViewModel(
        title="t",
        pipeline_status=pipeline.status,
        snapshots={"ann": AthleteState("ann").snapshot},
        devices={"ann": [("strap", _Device("s", _Status(False)))]},
    )
    text = _rendered(model, width=80)
    assert " ok " not in text
    assert "no data yet" in text
    assert "alerts: –" in plain_lines(model)[1]


def test_an_unusable_adapter_is_one_line_with_its_fix_in_the_table_and_the_plain_lines() -> None:
    model = _busy_model()
    problem = "no usable Bluetooth adapter: it is powered off — `bluetoothctl power on`"
    for _, device in model.devices["bob"]:
        assert isinstance(device, _Device)
        device.status = _Status(False, adapter_error=problem)
    text = _rendered(model, width=200)
    assert text.count("bluetoothctl power on") == 1
    assert f"{problem}; retrying" in text
    assert plain_lines(model)[1] == f"  {problem}; retrying"


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
