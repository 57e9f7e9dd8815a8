"""The emulated world's scenario: a day's state per athlete, refused in one line naming the
key when it cannot be used, and turned into the emulators' own parameters (the end-to-end
use is in ``tests/test_context_e2e.py``)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest

from devices.emulated import Activ5Sensor, ChestStrap, MoxySensor, PowerMeter, TindeqProgressor
from devices.emulated.oximeter import PulseOximeter
from devices.emulated.scenario import DayState, Scenario, ScenarioError, peripheral_options
from streamer.cli import main

TODAY = dt.date(2026, 12, 1)

SCENARIO = """
[athletes.ann]
hr_bpm = 50
rmssd_ms = 85
grip_mvc_kg = 48

[athletes.ann.days.0]
hr_bpm = 60
grip_drop = 0.2
grip_drop_at_s = 120

[athletes.ann.days.-1]
rmssd_ms = 70

[athletes.ann.days."2026-11-20"]
smo2_recovery_tau_s = 60
effort_rest_s = 300
power_effort_w = 250
"""


def test_a_day_is_the_athletes_every_day_values_with_that_days_own_over_them() -> None:
    scenario = Scenario.parse(SCENARIO)
    today = scenario.day("ann", TODAY, TODAY)
    assert (today.hr_bpm, today.rmssd_ms, today.grip_mvc_kg, today.grip_drop) == (
        60,
        85,
        48,
        0.2,
    )
    yesterday = scenario.day("ann", TODAY - dt.timedelta(days=1), TODAY)
    assert (yesterday.hr_bpm, yesterday.rmssd_ms, yesterday.grip_drop) == (50, 70, None)
    by_date = scenario.day("ann", dt.date(2026, 11, 20), TODAY)
    assert (by_date.smo2_recovery_tau_s, by_date.power_effort_w) == (60, 250)
    assert scenario.day("ann", TODAY + dt.timedelta(days=3), TODAY).hr_bpm == 50
    assert scenario.day("bob", TODAY, TODAY) == DayState()  # not named: the defaults


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[athletes.ann]\nhr = 50\n", "athletes.ann.hr: unknown key; known: hr_bpm"),
        ("[athletes.ann]\nhr_bpm = 250\n", "athletes.ann.hr_bpm = 250: give 30–200 bpm"),
        ("[athletes.ann]\ngrip_drop = true\n", "athletes.ann.grip_drop: give a number"),
        (
            "[athletes.ann.days.monday]\nhr_bpm = 50\n",
            "athletes.ann.days.monday: name a day by its offset",
        ),
        ("[athletes.ann.days.0]\nrmssd_ms = -4\n", "athletes.ann.days.0.rmssd_ms = -4: give"),
        ("[emulated]\nspeed = 3\n", "unknown section 'emulated'"),
        ("[athletes.ann\n", "not TOML"),
    ],
)
def test_an_unusable_scenario_is_one_line_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        Scenario.parse(text, "week.toml")
    assert str(info.value).startswith("week.toml: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_each_emulator_gets_the_days_state_as_its_own_parameters() -> None:
    state = DayState(
        hr_bpm=64,
        rmssd_ms=30,
        smo2_recovery_tau_s=55,
        effort_rest_s=240,
        power_effort_w=260,
        power_rest_w=100,
        grip_mvc_kg=40,
        grip_drop=0.25,
        grip_drop_at_s=30,
    )
    rr = peripheral_options(ChestStrap, state)["rr_params"]
    assert (rr.mean_hr_bpm, rr.rmssd_ms) == (64, 30)
    moxy = MoxySensor(**peripheral_options(MoxySensor, state))
    assert (moxy.params.recovery_tau_s, moxy.schedule.rest_s, moxy.schedule.work_s) == (55, 240, 60)
    power = peripheral_options(PowerMeter, state)
    assert (power["effort_w"], power["rest_w"], power["schedule"].rest_s) == (260, 100, 240)
    assert peripheral_options(PulseOximeter, state) == {}
    # The dynamometers: fresh before the drop, 25% down from 30 s after the start, and (no
    # recovery time constant given) not recovering within the day.
    tindeq = TindeqProgressor(**peripheral_options(TindeqProgressor, state))
    assert (tindeq.peak_at(29.0), tindeq.peak_at(31.0), tindeq.peak_at(9000.0)) == (40, 30, 30)
    activ5 = Activ5Sensor(**peripheral_options(Activ5Sensor, state))
    assert (activ5.peak_at(29.0), activ5.peak_at(31.0)) == (40, 30)
    recovering = TindeqProgressor(
        **peripheral_options(TindeqProgressor, DayState(grip_drop=0.2, grip_recovery_tau_s=60))
    )
    assert recovering.peak_at(60.0) == pytest.approx(45 * (1 - 0.2 * math.exp(-1)))


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "redox.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "s.sqlite3"}"\n[[athletes]]\nid = "ann"\n'
        '[[athletes.devices]]\nkind = "strap"\naddress = "C0:00:00:00:41:03"\n'
    )
    return path


@pytest.mark.parametrize(
    ("scenario", "emulated", "message"),
    [
        ("[athletes.ann]\nhr_bpm = 55\n", False, "--emulated-scenario: only emulated devices"),
        ("[athletes.bob]\nhr_bpm = 55\n", True, "athletes.bob is no athlete of"),
        ("[athletes.ann]\nhr_bmp = 55\n", True, "athletes.ann.hr_bmp: unknown key"),
    ],
)
def test_run_refuses_a_scenario_it_cannot_follow_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    scenario: str,
    emulated: bool,
    message: str,
) -> None:
    path = tmp_path / "week.toml"
    path.write_text(scenario)
    argv = ["run", "--config", str(_config(tmp_path)), "--emulated-scenario", str(path)]
    assert main([*argv, *(["--emulated"] if emulated else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1


def test_the_example_in_the_scenario_modules_docstring_is_a_valid_scenario() -> None:
    import textwrap

    import devices.emulated.scenario as module

    doc = module.__doc__ or ""
    example = doc.split("::\n", 1)[1].split("\n\n", 2)
    text = textwrap.dedent("\n\n".join(example[:2]))
    scenario = Scenario.parse(text, "the docstring")
    today = scenario.day("ann", TODAY, TODAY)
    assert (today.hr_bpm, today.grip_drop, today.grip_drop_at_s) == (60, 0.2, 150)
