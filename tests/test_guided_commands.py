"""`morning` and `grip-test` guide a protocol on emulated devices (through bleak, the
production drivers and the pipeline) at a high speed factor."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.cli import main
from streamer.store import Store

pytestmark = pytest.mark.slow


def test_morning_reading_on_an_emulated_strap_is_accepted_and_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store.sqlite3"
    status = main(
        ["morning", "--emulated", "--speed", "60", "--athlete", "ann", "--store", str(store)]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "reading accepted: lnRMSSD" in out
    assert "no baseline yet" in out
    with Store(store) as s:
        rows = s.morning_history("ann")
    assert len(rows) == 1
    assert rows[0].data["accepted"] is True
    assert 50 <= float(rows[0].data["resting_hr_bpm"]) <= 75  # type: ignore[arg-type]


def test_grip_test_on_an_emulated_tindeq_finds_the_spillover(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store.sqlite3"
    status = main(
        [
            "grip-test",
            "--emulated",
            "--speed",
            "200",
            "--post",
            "0,15,30",
            "--emulated-drop",
            "0.2",
            "--emulated-recovery-min",
            "0",
            "--store",
            str(store),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "class: grip_spillover" in out
    assert "raised grip_spillover" in out
    with Store(store) as s:
        tests = s.grip_tests("athlete1")
        alerts = [a.rule for a in s.alerts("athlete1")]
    assert [t.data["class"] for t in tests] == ["grip_spillover"]
    assert float(tests[0].data["drop_pct"]) == pytest.approx(20.0, abs=2.0)  # type: ignore[arg-type]
    assert alerts == ["grip_spillover"]


def test_grip_test_on_an_emulated_tindeq_recognises_the_good_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        [
            "grip-test",
            "--emulated",
            "--speed",
            "200",
            "--post",
            "0,15,30",
            "--emulated-drop",
            "0.16",
            "--emulated-recovery-min",
            "3",
            "--store",
            str(tmp_path / "s.sqlite3"),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "class: grip_signal" in out


@pytest.mark.parametrize("post", ["", "5,0", "a,b", "-1"])
def test_grip_test_rejects_bad_post_minutes(post: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grip-test", "--emulated", "--post", post]) == 2
    assert "--post" in capsys.readouterr().err


def test_speed_without_emulated_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["morning", "--speed", "10"]) == 2
    assert "only with --emulated" in capsys.readouterr().err


def test_morning_and_grip_test_follow_the_emulated_scenario_of_the_athlete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "week.toml"
    scenario.write_text(
        "[athletes.ann]\nhr_bpm = 48\nrmssd_ms = 95\n"
        "grip_mvc_kg = 52\ngrip_drop = 0.25\n"  # no recovery τ: still down at 30 min
    )
    store = tmp_path / "store.sqlite3"
    common = ["--emulated", "--athlete", "ann", "--store", str(store)]
    common += ["--emulated-scenario", str(scenario)]
    assert main(["morning", "--speed", "60", *common]) == 0, capsys.readouterr().out
    assert main(["grip-test", "--speed", "200", "--post", "0,30", *common]) == 0
    out = capsys.readouterr().out
    assert "class: grip_spillover" in out
    with Store(store) as s:
        (reading,) = s.morning_history("ann")
        (test,) = s.grip_tests("ann")
    assert float(reading.data["resting_hr_bpm"]) == pytest.approx(48, abs=3)  # type: ignore[arg-type]
    assert float(reading.data["rmssd_ms"]) == pytest.approx(95, rel=0.2)  # type: ignore[arg-type]
    assert float(test.data["mvc_kg"]) == pytest.approx(52, abs=1.5)  # type: ignore[arg-type]
    assert float(test.data["drop_pct"]) == pytest.approx(25, abs=2.5)  # type: ignore[arg-type]


def test_a_scenario_for_another_athlete_is_refused_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "week.toml"
    scenario.write_text("[athletes.bob]\nhr_bpm = 48\n")
    argv = ["--emulated", "--athlete", "ann", "--emulated-scenario", str(scenario)]
    assert main(["morning", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "athletes.bob is no athlete of this strap test (--athlete ann)" in err
    assert main(["grip-test", *argv[1:]]) == 2  # without --emulated
    assert "only emulated devices follow one" in capsys.readouterr().err
