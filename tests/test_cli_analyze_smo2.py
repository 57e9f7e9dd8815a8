"""``redox-streamer analyze smo2``: SmO2 recovery of a Moxy export or an SmO2 CSV."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from processors import physiology as ph
from streamer.cli import main

EFFORT_KEYS = {"start_s", "work_end_s", "baseline_pct", "min_pct", "t_half_s", "t95_s", "tau_s"}


@pytest.fixture
def full_moxy(recordings: Path) -> Path:
    return recordings / "moxy" / "moxy_intervals_full.csv"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    status = main(["analyze", "smo2", *argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


def test_json_of_the_moxy_export_lists_each_effort_timed_from_the_end_of_work(
    full_moxy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, report = run_json(capsys, str(full_moxy))
    assert status == 0
    assert report["layout"] == "moxy"
    assert len(report["efforts"]) == 4
    for effort in report["efforts"]:
        assert effort.keys() >= EFFORT_KEYS
        assert effort["work_end_s"] > effort["start_s"]
    first = report["efforts"][0]
    assert first["work_end_s"] == pytest.approx(364.0, abs=3.0)
    assert first["t95_s"] == pytest.approx(21.0, abs=3.0)
    assert first["tau_s"] == pytest.approx(8.0, abs=3.0)
    t95s = [e["t95_s"] for e in report["efforts"]]
    assert report["recovery_time_s"] == pytest.approx(float(np.median(t95s)))
    assert report["recovery_time_s"] < ph.SMO2_SLOW_RECOVERY_S


def test_human_output_is_one_row_per_effort_and_the_session_verdict(
    full_moxy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "smo2", str(full_moxy)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "Moxy export" in out[0]
    assert "SmO2 only" in out[0]
    assert "T95 s" in out[1]
    rows = [line.split() for line in out[2:6]]
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]
    assert float(rows[0][6]) == pytest.approx(21.0, abs=3.0)  # the T95 column
    assert "within the 120-s smo2_slow_recovery threshold" in out[6]


def synthetic_csv(path: Path, *, with_power: bool) -> None:
    """Rest at 60%, work 100-220 s at 25% (300 W), SmO2 flat for 10 s after work, then
    back to 60% with τ 12 s; 1-s samples."""
    t = np.arange(0.0, 500.0, 1.0)
    y = np.full_like(t, 60.0)
    y[(t >= 100) & (t < 230)] = 25.0
    rec = t >= 230
    y[rec] = 25.0 + 35.0 * (1 - np.exp(-(t[rec] - 230.0) / 12.0))
    power = np.where((t >= 100) & (t < 220), 300.0, 90.0)
    header = "time,smo2,power_w" if with_power else "time,smo2"
    rows = [
        f"{ti:g},{yi:.2f},{pi:g}" if with_power else f"{ti:g},{yi:.2f}"
        for ti, yi, pi in zip(t, y, power, strict=True)
    ]
    path.write_text(header + "\n" + "\n".join(rows) + "\n")


def test_csv_with_a_power_column_takes_the_end_of_work_from_power(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ride.csv"
    synthetic_csv(path, with_power=True)
    status, report = run_json(capsys, str(path))
    assert status == 0
    assert report["activity"] == "power"
    (effort,) = report["efforts"]
    assert effort["work_end_source"] == "power"
    assert effort["work_end_s"] == pytest.approx(220.0, abs=1.0)
    # 10 s of SmO2 still at the work level, then 95% of the way back with τ = 12 s.
    assert effort["t95_s"] == pytest.approx(10.0 + 12.0 * np.log(20.0), abs=1.5)
    assert effort["tau_s"] == pytest.approx(12.0, rel=0.05)
    # Ignoring the power column, the flat delay is invisible: the clock starts at the rise.
    status, report = run_json(capsys, str(path), "--activity", "none")
    assert report["efforts"][0]["work_end_s"] == pytest.approx(230.0, abs=2.0)


def test_plain_time_smo2_csv_is_analysed_from_smo2_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "smo2.csv"
    synthetic_csv(path, with_power=False)
    status, report = run_json(capsys, str(path))
    assert status == 0
    assert report["activity"] is None
    assert report["efforts"][0]["work_end_source"] == "smo2"


def test_file_without_efforts_says_so_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rest.csv"
    path.write_text("time,smo2\n" + "\n".join(f"{i * 2},60" for i in range(100)) + "\n")
    assert main(["analyze", "smo2", str(path)]) == 0
    assert "no effort found" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        ("time,smo2\n0,50\n2,5O\n", (), "line 3: SmO2 '5O' is not a number"),
        ("time,smo2\n0,50\n2,150\n", (), "line 3: SmO2 150 is outside 0-100%"),
        ("hello\n", (), "no header found"),
        ("time,smo2\n0,50\n2,50\n", ("--activity", "power"), "no power_w values"),
    ],
)
def test_bad_input_is_one_line_naming_the_file_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    extra: tuple[str, ...],
    message: str,
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    assert main(["analyze", "smo2", str(path), *extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0]
    assert message in lines[0]


def test_missing_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "smo2", str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "cannot read the file" in err[0]


def test_help_teaches_formats_examples_and_exit_statuses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["analyze", "smo2", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for text in ("SmO2 Live", "time", "power_w", "END OF WORK", "examples:", "exit status"):
        assert text in out
