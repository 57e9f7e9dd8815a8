"""Pipes and signals end every command cleanly, once, at the CLI entry (issue 11).

`replay FILE | head` hung for ever and ignored Ctrl-C and SIGTERM (its printing callback
died with the pipe and the feeder waited for room in an inbox nobody emptied);
`analyze rr | head` printed a BrokenPipeError traceback. Now a closed standard output ends
a command silently with status 141 (what SIGPIPE gives `cat`), and SIGINT / SIGTERM stop
it with one line and status 130 / 143.

These run the real console entry in subprocesses and synchronise on what the process
prints (its first result, its "recording" line), never on sleeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devices.recording import read_recording
from streamer.cli import main
from streamer.commands.replay import SAMPLE_RECORDING
from streamer.errors import PIPE_CLOSED_STATUS, TERMINATED_STATUS, signal_status

ROOT = Path(__file__).resolve().parents[1]
RR_FILE = ROOT / "tests" / "data" / "nsr2db" / "nsr001_rr_secs.txt"
WAIT_S = 60.0
"""Generous for a loaded machine: before the fix these waited for ever."""


def _cli(*argv: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        text=True,
        **kwargs,
    )


def test_replay_into_a_pipe_closed_after_one_line_ends_with_141_and_no_traceback() -> None:
    # At the recorded pace the next line comes a second later, into a pipe nobody reads.
    proc = _cli(
        "replay",
        str(SAMPLE_RECORDING),
        "--live",
        "--speed",
        "1",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert "heart_rate" in proc.stdout.readline()
    proc.stdout.close()  # `| head -1` exits
    assert proc.wait(WAIT_S) == PIPE_CLOSED_STATUS
    assert proc.stderr.read() == ""


@pytest.mark.parametrize(
    "argv",
    [
        ("analyze", "rr", str(RR_FILE), "--first-line-is-start"),
        ("analyze", "rr", str(RR_FILE), "--first-line-is-start", "--json"),
        ("decode", "2a37", "1632ea041604"),
        ("replay", str(SAMPLE_RECORDING)),
        ("replay", str(SAMPLE_RECORDING), "--json"),
    ],
    ids=["analyze rr", "analyze rr --json", "decode", "replay", "replay --json"],
)
def test_a_command_writing_into_a_pipe_nobody_reads_ends_with_141_silently(
    argv: tuple[str, ...],
) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes its first byte
    try:
        proc = _cli(*argv, stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    _, err = proc.communicate(timeout=WAIT_S)
    assert (proc.returncode, err) == (PIPE_CLOSED_STATUS, "")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_paced_replay_stops_at_a_signal_with_one_line_and_128_plus_it(
    sig: signal.Signals,
) -> None:
    proc = _cli(
        "replay",
        str(SAMPLE_RECORDING),
        "--live",
        "--speed",
        "1",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert "heart_rate" in proc.stdout.readline()  # replaying, six minutes to go
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == signal_status(sig)
    assert err == f"redox-streamer replay: stopped by {sig.name}\n"


def test_record_stops_at_sigterm_and_leaves_a_recording_replay_reads(tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    proc = _cli(
        "record",
        str(out),
        "--emulated",
        "--speed",
        "20",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith("recording athlete1")
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == TERMINATED_STATUS, err
    assert err == "redox-streamer record: stopped by SIGTERM\n" or (
        # stopped before any device connected: said too, still one status
        "nothing was recorded" in err and err.endswith("stopped by SIGTERM\n")
    )
    assert stdout.startswith("recorded ")
    list(read_recording(out))  # every line written is a valid recording line


def test_sigterm_in_a_synchronous_command_is_one_line_and_143(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def terminated(args: Any) -> int:
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to this (main) thread
        raise AssertionError("SIGTERM did not end the command")

    monkeypatch.setattr("streamer.commands.decode.run", terminated)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["decode", "2a19", "55"]) == TERMINATED_STATUS
    assert capsys.readouterr() == ("", "redox-streamer decode: stopped by SIGTERM\n")
    assert signal.getsignal(signal.SIGTERM) == before  # the CLI's handler is gone again


RUN_CONFIG = """\
[store]
path = "{store}"
[[athletes]]
id = "ann"
[[athletes.devices]]
kind = "strap"
address = "EE:00:00:00:00:01"
"""


@pytest.mark.parametrize(
    ("argv", "ready"),
    [
        (("morning", "--emulated", "--store", "{dir}/s.sqlite3"), "connecting to the strap"),
        (("grip-test", "--emulated", "--store", "{dir}/s.sqlite3"), "connecting to the dyna"),
        (("run", "--emulated", "--plain", "--config", "{dir}/redox.toml"), "streaming"),
        (("demo", "--plain", "--store", "{dir}/s.sqlite3"), "store:"),
    ],
    ids=["morning", "grip-test", "run", "demo"],
)
def test_sigterm_while_devices_connect_stops_with_one_line_and_143(
    argv: tuple[str, ...], ready: str, tmp_path: Path
) -> None:
    # A cancellation landing while a driver connected was swallowed below it (3.11's
    # wait_for) and the driver then waited on its link for ever: `morning` and
    # `grip-test` hung on SIGTERM, and `morning` first waited out its 30 s connect timeout.
    (tmp_path / "redox.toml").write_text(RUN_CONFIG.format(store=tmp_path / "s.sqlite3"))
    proc = _cli(
        *(arg.replace("{dir}", str(tmp_path)) for arg in argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert ready in proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=WAIT_S)
    assert (proc.returncode, err) == (
        TERMINATED_STATUS,
        f"redox-streamer {argv[0]}: stopped by SIGTERM\n",
    )
