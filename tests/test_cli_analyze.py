"""``redox-streamer analyze rr``: the user-facing HRV command."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.cli import main

REPO = Path(__file__).resolve().parents[1]

REQUIRED = {
    "n_beats",
    "mean_nn_ms",
    "mean_hr_bpm",
    "sdnn_ms",
    "rmssd_ms",
    "ln_rmssd",
    "pnn50_pct",
    "lf_ms2",
    "hf_ms2",
    "lf_hf",
    "dfa_alpha1",
    "artifacts_pct",
    "accepted",
    "reject_reason",
}


@pytest.fixture
def nsr_excerpt(recordings: Path, tmp_path: Path) -> Path:
    """The first ~10 min of nsr001 in its PhysioNet layout (start time, then seconds)."""
    lines = (recordings / "nsr2db" / "nsr001_rr_secs.txt").read_text().splitlines()[:801]
    path = tmp_path / "nsr001_excerpt.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def polar_rr_file(recordings: Path, tmp_path: Path) -> Path:
    with (recordings / "polar_h10" / "polar_h10.csv").open() as fh:
        rr = [row["rr"] for row in csv.DictReader(fh) if row["rr"]]
    path = tmp_path / "polar_rr_ms.txt"
    path.write_text("\n".join(rr) + "\n")
    return path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    status = main(["analyze", "rr", *argv, "--json"])
    out = capsys.readouterr().out
    return status, json.loads(out)


def test_json_object_of_an_accepted_recording(
    nsr_excerpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, report = run_json(capsys, str(nsr_excerpt), "--first-line-is-start")
    assert status == 0
    assert report.keys() >= REQUIRED
    assert report["accepted"] is True
    assert report["reject_reason"] is None
    assert report["n_beats"] == 800
    assert report["unit"] == "s"
    for key in REQUIRED - {"accepted", "reject_reason", "n_beats"}:
        assert isinstance(report[key], float), key
    assert report["mean_hr_bpm"] == pytest.approx(60_000.0 / report["mean_nn_ms"])  # type: ignore[operator]


def test_polar_h10_recording_is_rejected_with_its_numbers_marked_untrustworthy(
    polar_rr_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Kubios users expect to see the numbers beside the warning; exit 1 says "rejected".
    status, report = run_json(capsys, str(polar_rr_file))
    assert status == 1
    assert report["accepted"] is False
    assert "deviate more than 20% from their neighbours" in str(report["reject_reason"])
    assert report["artifacts_pct"] > 40  # type: ignore[operator]
    for key in ("rmssd_ms", "ln_rmssd", "lf_ms2", "dfa_alpha1", "mean_hr_bpm"):
        assert isinstance(report[key], float)


def test_rejected_reading_table_says_its_numbers_are_not_trustworthy(
    polar_rr_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "rr", str(polar_rr_file)]) == 1
    out = capsys.readouterr().out
    assert "NOT TRUSTWORTHY" in out
    assert "verdict: REJECTED, the numbers above are not trustworthy" in out
    rmssd_line = next(line for line in out.splitlines() if line.strip().startswith("RMSSD"))
    assert "ms" in rmssd_line


def test_human_table_is_the_default(nsr_excerpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "rr", str(nsr_excerpt), "--first-line-is-start"]) == 0
    out = capsys.readouterr().out
    assert "RMSSD" in out
    assert "lnRMSSD" in out
    assert "LF/HF [welch]" in out
    assert "verdict: accepted" in out


def test_lomb_method_is_selectable(nsr_excerpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, report = run_json(capsys, str(nsr_excerpt), "--first-line-is-start", "--psd", "lomb")
    assert status == 0
    assert report["psd_method"] == "lomb"
    assert report["lf_ms2"] is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no RR intervals found"),
        ("800\nabc\n", "line 2: 'abc' is not a number"),
        ("800\n0\n810\n", "line 2: interval 0 is zero"),
        ("800\n-5\n810\n", "line 2: interval -5 is negative"),
        ("800\n810\n99999\n", "line 3: 99999 ms"),
        ("800\n810\n", "only 2 interval(s)"),
    ],
)
def test_bad_input_is_one_line_error_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    assert main(["analyze", "rr", str(path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("redox-streamer analyze: error: ")
    assert message in captured.err


def test_physionet_file_without_the_option_says_which_option(
    recordings: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = recordings / "nsr2db" / "nsr001_rr_secs.txt"
    assert main(["analyze", "rr", str(path)]) == 2
    assert "--first-line-is-start" in capsys.readouterr().err


def test_out_of_range_gate_setting_is_refused(
    nsr_excerpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "rr", str(nsr_excerpt), "--max-artifacts-pct", "0"]) == 2
    assert "--max-artifacts-pct" in capsys.readouterr().err


def test_help_teaches_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["analyze", "rr", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert "--first-line-is-start" in out
    assert "exit status" in out


def test_console_entry_point_runs_as_a_process(nsr_excerpt: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamer.cli",
            "analyze",
            "rr",
            str(nsr_excerpt),
            "--first-line-is-start",
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["accepted"] is True
    assert report["n_beats"] == 800
