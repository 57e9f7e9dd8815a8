"""Bad inputs end in one line of error and an exit status, never a traceback (issue 10).

Each case runs the CLI on something wrong — a flag, a missing or malformed file, a bad
config, a device that cannot be reached, a driver that fails — and checks the exit status,
that stderr holds no traceback, and that it holds exactly one ``error:`` line whose error
(that line and any indented detail lines under it) names the input at fault. Most cases
run :func:`streamer.cli.main` in-process (an escaping exception would fail the test as
surely as a traceback); a few run the real console entry in subprocesses.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import streamer.app.guided
import streamer.cli
from devices.drivers import DriverError, TindeqDriver
from devices.kinds import DeviceKind
from devices.models import DeviceModel
from streamer.cli import Command, main
from streamer.errors import INTERRUPTED_STATUS, user_error

ROOT = Path(__file__).resolve().parents[1]

STRAP_CONFIG = """\
[[athletes]]
id = "anna"
[[athletes.devices]]
id = "strap"
kind = "strap"
address = "AA:BB:CC:DD:EE:02"
[store]
path = "{store}"
"""


def the_error(stderr: str) -> str:
    """The one error on ``stderr`` (its line and indented detail lines); fails otherwise."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if ": error: " in line]
    assert len(starts) == 1, stderr
    detail = []
    for line in lines[starts[0] + 1 :]:
        if not line.startswith(" "):
            break
        detail.append(line)
    return "\n".join([lines[starts[0]], *detail])


def run_main(argv: list[str]) -> int:
    """``main(argv)``'s status, argparse's exits included."""
    try:
        return main(argv)
    except SystemExit as exc:  # argparse exits on bad flags and unknown commands
        return int(exc.code or 0)


@dataclass(frozen=True)
class Case:
    """A bad invocation: argv (``{tmp}`` is the test's directory), files to write first,
    the exit status expected and the text the error must contain (the input's name)."""

    argv: tuple[str, ...]
    names: str
    files: tuple[tuple[str, str], ...] = ()
    status: int = 2


CASES = {
    "unknown command": Case(("bogus",), "'bogus'"),
    "unknown flag": Case(("analyze", "rr", "x.txt", "--bogus"), "--bogus"),
    "bad flag value": Case(("analyze", "rr", "x.txt", "--psd", "nope"), "--psd"),
    "flag out of range": Case(("scan", "--timeout", "0"), "--timeout"),
    "missing RR file": Case(("analyze", "rr", "{tmp}/missing.txt"), "missing.txt"),
    "malformed RR file": Case(
        ("analyze", "rr", "{tmp}/rr.txt"), "rr.txt, line 3", (("rr.txt", "800\n810\nabc\n"),)
    ),
    "RR file is a directory": Case(("analyze", "rr", "{tmp}"), "{tmp}"),
    "missing SmO2 file": Case(("analyze", "smo2", "{tmp}/missing.csv"), "missing.csv"),
    "malformed SmO2 file": Case(
        ("analyze", "smo2", "{tmp}/smo2.csv"),
        "smo2.csv, line 3",
        (("smo2.csv", "time,smo2\n0,50\nx,y\n"),),
    ),
    "SmO2 file without samples": Case(
        ("analyze", "smo2", "{tmp}/empty.csv"), "empty.csv", (("empty.csv", "time,smo2\n"),)
    ),
    "config not TOML": Case(
        ("run", "--config", "{tmp}/bad.toml"), "bad.toml", (("bad.toml", "[mqtt\n"),)
    ),
    "config with a bad key": Case(
        ("config", "check", "--path", "{tmp}/bad.toml"),
        "influx.api",
        (("bad.toml", '[influx]\nurl = "http://h:8086"\napi = "v3"\ndb = "x"\n'),),
    ),
    "missing config": Case(("run", "--config", "{tmp}/none.toml"), "none.toml"),
    "registry not TOML": Case(
        ("pair", "list", "--registry", "{tmp}/reg.toml"), "reg.toml", (("reg.toml", "x = \n"),)
    ),
    "bad address": Case(
        ("pair", "add", "nonsense", "--athlete", "a", "--kind", "strap", "--registry", "{tmp}/r"),
        "'nonsense'",
    ),
    "malformed recording": Case(
        ("replay", "{tmp}/rec.jsonl"), "rec.jsonl:1", (("rec.jsonl", '{"t_ns": 1}\n'),)
    ),
    "payload too short": Case(("decode", "2a37", "16"), "2a37"),
    "store is a directory": Case(
        ("morning", "--emulated", "--store", "{tmp}"), "cannot open the store {tmp}"
    ),
    "missing store": Case(
        ("report", "--store", "{tmp}/none.sqlite3", "--out", "{tmp}/r.png"), "none.sqlite3"
    ),
    "unreadable notify state": Case(
        (
            "notify",
            "--mqtt",
            "mqtt://127.0.0.1:1",
            "--webhook",
            "http://127.0.0.1:9/x",
            "--state",
            "{tmp}/state.json",
        ),
        "state.json",
        (("state.json", "{not json"),),
    ),
}


def _materialise(case: Case, tmp: Path) -> tuple[list[str], str]:
    for name, text in case.files:
        (tmp / name).write_text(text, encoding="utf-8")
    return [arg.format(tmp=tmp) for arg in case.argv], case.names.format(tmp=tmp)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_one_line_naming_it_and_status_2(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, names = _materialise(case, tmp_path)
    status = run_main(argv)
    err = capsys.readouterr().err
    assert status == case.status, err
    assert names in the_error(err)


def test_a_driver_error_at_start_up_of_run_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # How `run` ended in a traceback: driver_for refused a configured device's kind.
    def no_driver(what: DeviceModel | DeviceKind | tuple[DeviceModel], *a: Any, **k: Any) -> Any:
        kind = what if isinstance(what, DeviceKind | DeviceModel) else what[0]
        kind = kind if isinstance(kind, DeviceKind) else kind.kind
        raise DriverError(f"no driver for {kind.value} devices; drivers exist for: smo2")

    monkeypatch.setattr("streamer.commands.run.driver_for", no_driver)
    config = tmp_path / "redox.toml"
    config.write_text(STRAP_CONFIG.format(store=tmp_path / "s.sqlite3"), encoding="utf-8")
    status = run_main(
        ["run", "--config", str(config), "--registry", str(tmp_path / "r"), "--plain"]
    )
    error = the_error(capsys.readouterr().err)
    assert status == 2
    assert "no driver for strap devices" in error
    assert "redox-streamer doctor" in error  # what to do


@pytest.mark.slow
def test_a_driver_error_from_a_connected_driver_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def tare_fails(self: TindeqDriver) -> None:
        raise DriverError(f"{self.name} is not connected; cannot send tare")

    monkeypatch.setattr(TindeqDriver, "tare", tare_fails)
    argv = ["grip-test", "--emulated", "--speed", "200", "--store", str(tmp_path / "s.sqlite3")]
    status = run_main(argv)
    error = the_error(capsys.readouterr().err)
    assert status == 2
    assert "athlete1/tindeq is not connected; cannot send tare" in error


@pytest.mark.slow
def test_a_configured_device_that_never_connects_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No adapter here (or, with one, no such device): the strap never connects.
    monkeypatch.setattr(streamer.app.guided, "CONNECT_TIMEOUT_S", 0.5)
    config = tmp_path / "redox.toml"
    config.write_text(STRAP_CONFIG.format(store=tmp_path / "s.sqlite3"), encoding="utf-8")
    status = run_main(["morning", "--config", str(config)])
    error = the_error(capsys.readouterr().err)
    assert status == 2
    if "no usable Bluetooth adapter" in error:  # said at once, with the fix (issue 11)
        assert "bluetoothctl" in error
    else:
        assert "AA:BB:CC:DD:EE:02 did not connect" in error
        assert "redox-streamer scan" in error


def test_no_bluetooth_adapter_for_scan_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from devices.discovery import BluetoothUnavailableError

    async def no_adapter(timeout_s: float) -> Any:
        raise BluetoothUnavailableError("no usable Bluetooth adapter: hci0 is powered off")

    monkeypatch.setattr("streamer.commands.scan.discover", no_adapter)
    status = run_main(["scan"])
    error = the_error(capsys.readouterr().err)
    assert status == 2
    assert "hci0 is powered off" in error
    assert "scan --emulated" in error


def _interrupting_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command ``slow`` whose module is interrupted (Ctrl-C) while it is imported."""
    (tmp_path / "interrupted_command.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    slow = Command("slow", "a command that takes long to import", "interrupted_command")
    monkeypatch.setattr(streamer.cli, "COMMANDS", (*streamer.cli.COMMANDS, slow))


def test_ctrl_c_while_a_command_loads_exits_130_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupting_command(tmp_path, monkeypatch)
    assert main(["slow"]) == INTERRUPTED_STATUS
    assert capsys.readouterr() == ("", "redox-streamer slow: stopped by SIGINT\n")


def test_ctrl_c_in_a_command_exits_130_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("streamer.commands.decode.run", interrupted)
    assert main(["decode", "2a19", "55"]) == INTERRUPTED_STATUS
    assert capsys.readouterr() == ("", "redox-streamer decode: stopped by SIGINT\n")


def test_ctrl_c_while_a_class_is_built_is_an_interruption_not_a_bug(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C while Bumble's modules load surfaced as "RuntimeError: Error calling
    # __set_name__" (the KeyboardInterrupt only its cause) and printed 45 lines.
    def interrupted(args: Any) -> int:
        class Named:
            def __set_name__(self, owner: type, name: str) -> None:
                raise KeyboardInterrupt

        type("Built", (), {"field": Named()})
        return 0

    monkeypatch.setattr("streamer.commands.decode.run", interrupted)
    assert main(["decode", "2a19", "55"]) == INTERRUPTED_STATUS
    assert capsys.readouterr() == ("", "redox-streamer decode: stopped by SIGINT\n")


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: Any) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr("streamer.commands.decode.run", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["decode", "2a19", "55"])


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            FileNotFoundError(2, "No such file or directory", "ride.csv"),
            "ride.csv: No such file or directory; check the path and its permissions",
        ),
        (DriverError("strap: not connected"), "strap: not connected; `redox-streamer doctor`"),
    ],
)
def test_user_error_names_the_input_and_what_to_do(error: Exception, expected: str) -> None:
    found = user_error(error)
    assert found is not None
    assert found.message.startswith(expected)
    assert found.status == 2


def test_a_socket_error_without_a_file_is_not_a_user_error() -> None:
    assert user_error(ConnectionRefusedError(111, "Connection refused")) is None


def test_input_errors_are_still_value_errors() -> None:
    from processors.grip import GripInputError
    from processors.oxygenation import OxygenationInputError

    assert issubclass(GripInputError, ValueError)
    assert issubclass(OxygenationInputError, ValueError)


SUBPROCESS_CASES = (
    "unknown flag",
    "missing RR file",
    "malformed SmO2 file",
    "config not TOML",
    "registry not TOML",
)


def test_the_console_entry_prints_no_traceback(tmp_path: Path) -> None:
    entry = "import sys; from streamer.cli import main; sys.exit(main())"
    started: list[tuple[str, Case, str, subprocess.Popen[str]]] = []
    for name in SUBPROCESS_CASES:  # started together: most of the time is imports
        case = CASES[name]
        directory = tmp_path / name.replace(" ", "_")
        directory.mkdir()
        argv, names = _materialise(case, directory)
        proc = subprocess.Popen(
            [sys.executable, "-c", entry, *argv],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append((name, case, names, proc))
    for name, case, names, proc in started:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == case.status, (name, err)
        assert names in the_error(err), name
