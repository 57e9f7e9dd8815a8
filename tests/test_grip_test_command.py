"""`grip-test` end to end on emulated dynamometers (bleak → Bumble → the emulators, the
production drivers, the pipeline and the store): an Activ5 as well as a Progressor, each
test shown and kept as it ends, Ctrl-C keeping what finished, and ``--emulated`` without
``--config`` keeping the result where the help says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.athlete.grip import GRIP_PROGRESS
from streamer.cli import main
from streamer.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[1]


def _flat(text: str) -> str:
    """Output without line breaks or spaces: rich wraps long lines at 80 columns."""
    return "".join(text.split())


def test_grip_test_on_an_emulated_activ5_is_classified_and_kept_where_the_help_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("REDOX_CONFIG", raising=False)
    with pytest.raises(SystemExit):
        main(["grip-test", "--help"])
    assert "emulated.sqlite3" in capsys.readouterr().out
    status = main(
        [
            "grip-test",
            "--emulated",
            "--model",
            "activ5",
            "--speed",
            "30",
            "--post",
            "0,6",
            "--emulated-drop",
            "0.2",
            "--emulated-recovery-min",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    store = tmp_path / "data" / "redox-streamer" / "emulated.sqlite3"
    assert _flat(f"kept in {store}") in _flat(out)
    assert "Activ5 isometric force sensor connected" in out
    # Each test's result is shown as it ends, before the test's class.
    shown = [out.index(f"{label}: best") for label in ("MVC", "+0 min", "+6 min")]
    assert shown == sorted(shown)
    assert shown[-1] < out.index("class: grip_signal")
    with Store(store) as s:
        (test,) = s.grip_tests("athlete1")
        kept = s.load_baseline("athlete1", GRIP_PROGRESS)
    assert test.device == "activ5"
    assert test.data["class"] == "grip_signal"
    drops = test.data["drops_pct"]
    assert isinstance(drops, dict)
    # 20% down at the session's end, recovering with τ 1 min during the +0 test itself.
    assert 12.0 <= float(drops["0"]) <= 20.5  # type: ignore[arg-type]
    assert float(test.data["mvc_kg"]) == pytest.approx(30.0, abs=1.5)  # type: ignore[arg-type]
    assert kept is not None
    assert kept["state"] == "recorded"


def test_a_configured_grip_device_given_by_address_alone_tells_its_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "redox.toml"
    store = tmp_path / "store.sqlite3"
    config.write_text(
        f'[store]\npath = "{store}"\n[[athletes]]\nid = "ann"\n'
        '[[athletes.devices]]\nkind = "grip"\nid = "hand"\naddress = "C0:00:00:00:41:01"\n'
    )
    status = main(
        ["grip-test", "--config", str(config), "--emulated", "--speed", "200", "--post", "0"]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "Tindeq Progressor connected" in out  # asked, not assumed: see the resolution tests
    with Store(store) as s:
        (test,) = s.grip_tests("ann")
    assert test.device == "hand"


def _interrupt_after(line_start: str, store: Path, post: str) -> tuple[int, str]:
    """Run grip-test on an emulated Progressor, send SIGINT (Ctrl-C) once a line starting
    with ``line_start`` is printed, and return its exit status and output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env.pop("REDOX_CONFIG", None)
    command = [sys.executable, "-m", "streamer.cli", "grip-test", "--emulated"]
    command += ["--speed", "200", "--post", post, "--store", str(store)]
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith(line_start):
                process.send_signal(signal.SIGINT)
                break
        lines.extend(process.stdout)
        status = process.wait()
    return status, "".join(lines)


def test_ctrl_c_after_a_post_test_keeps_the_mvc_and_the_tests_that_finished(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store.sqlite3"
    status, out = _interrupt_after("+0 min: best", store, "0,30")
    assert status == 130, out
    assert "stopped before the end" in out
    assert "class:" in out
    with Store(store) as s:
        (test,) = s.grip_tests("athlete1")
        kept = s.load_baseline("athlete1", GRIP_PROGRESS)
    drops = test.data["drops_pct"]
    assert isinstance(drops, dict)
    assert list(drops) == ["0"]
    assert kept is not None
    assert kept["state"] == "interrupted"


def test_ctrl_c_after_the_mvc_keeps_the_mvc(tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite3"
    status, out = _interrupt_after("MVC: best", store, "10,30")
    assert status == 130, out
    assert "the MVC is kept" in out
    with Store(store) as s:
        assert s.grip_tests("athlete1") == []
        kept = s.load_baseline("athlete1", GRIP_PROGRESS)
    assert kept is not None
    assert kept["state"] == "incomplete"
    steps = kept["steps"]
    assert isinstance(steps, list)
    (mvc,) = steps
    assert isinstance(mvc, dict)
    assert mvc["minute"] is None
    assert float(mvc["best_kg"]) == pytest.approx(45.0, abs=2.0)  # type: ignore[arg-type]
