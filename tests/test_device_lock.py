"""One process per Bluetooth device: two commands on DIFFERENT stores (two configs) that
name one strap do not take it from each other; the second is refused in one line naming
the device, the holder's pid and command, and what to do.

The lock is the kernel's ``flock`` on a file per device address, so two holders in this
process (two open file descriptions) already compete; the subprocess tests show it between
real commands and that a SIGKILLed holder leaves nothing behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.cli import main
from streamer.store_lock import (
    DeviceBusyError,
    device_holder,
    device_lock_path,
    hold_devices,
    runtime_dir,
)

ROOT = Path(__file__).resolve().parents[1]
STRAP = "C0:00:00:00:43:01"


@pytest.fixture
def private_runtime_dir(private_device_locks: Path) -> Path:
    """The device locks of this test only (tests/conftest.py; the real one is the user's)."""
    return private_device_locks


def _config(tmp_path: Path, name: str) -> Path:
    """A config of its own store, with ann's strap at :data:`STRAP`."""
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / f"{name}.sqlite3"}"\n'
        '[[athletes]]\nid = "ann"\nname = "Ann"\n'
        f'[[athletes.devices]]\nid = "strap"\nkind = "strap"\naddress = "{STRAP}"\n'
    )
    return path


def test_a_second_holder_of_a_device_is_refused_naming_it_the_holder_and_the_fix() -> None:
    with hold_devices({STRAP: "ann/strap"}, "run"):
        # Another spelling of the same address is the same device.
        with (
            pytest.raises(DeviceBusyError) as refused,
            hold_devices({STRAP.lower(): "bob/strap"}, "morning"),
        ):
            pass
        message = str(refused.value)
        assert "\n" not in message
        assert message.startswith(f"bob/strap ({STRAP.lower()}) is in use by redox-streamer run")
        assert f"(pid {os.getpid()}, since " in message
        assert "stop that one first" in message
        assert "`redox-streamer morning` again" in message
        assert "MQTT commands" in message  # while `run` holds it, the way that works
        holder = device_holder(STRAP)
        assert holder is not None
        assert (holder.pid, holder.command) == (os.getpid(), "run")
    assert device_holder(STRAP) is None
    with hold_devices({STRAP: "ann/strap"}, "morning"):  # released: free for the next
        pass


def test_devices_are_taken_all_or_none() -> None:
    other = "C0:00:00:00:43:02"
    with hold_devices({STRAP: "ann/strap"}, "run"):
        with (
            pytest.raises(DeviceBusyError),
            hold_devices({other: "ann/moxy", STRAP: "ann/strap"}, "record"),
        ):
            pass
        assert device_holder(other) is None  # the one taken first was given back


def test_the_runtime_dir_and_lock_files_are_private(private_runtime_dir: Path) -> None:
    with hold_devices({STRAP: "ann/strap"}, "run"):
        assert device_lock_path(STRAP).parent == runtime_dir() == private_runtime_dir
        assert device_lock_path(STRAP).stat().st_mode & 0o077 == 0


def test_morning_on_another_store_is_refused_while_run_holds_the_strap_until_run_is_killed(
    tmp_path: Path, private_runtime_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The real radio path (no --emulated): the lock is taken before any Bluetooth, so no
    # adapter is needed; `run` keeps retrying the adapter meanwhile.
    first, second = _config(tmp_path, "first"), _config(tmp_path, "second")
    run = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "run", "--config", str(first), "--plain"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "REDOX_RUNTIME_DIR": str(private_runtime_dir)},
    )
    try:
        assert run.stdout is not None
        started = run.stdout.readline()  # its first status line: store and devices held
        assert started, run.stderr.read() if run.stderr else ""
        refusals = 0
        for argv in (
            ["morning", "--config", str(second), "--athlete", "ann"],
            ["run", "--config", str(second), "--duration", "1"],
            ["record", str(tmp_path / "rec.jsonl"), "--config", str(second)],
        ):
            assert main(argv) == 2, argv
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1, err
            assert f"ann/strap ({STRAP}) is in use by redox-streamer run (pid {run.pid}" in err
            assert f"then run `redox-streamer {argv[0]}` again" in err
            refusals += 1
        assert refusals == 3
        assert not (tmp_path / "rec.jsonl").exists()
    finally:
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=60)
    # The kernel dropped the lock with the process: nobody holds the strap now, and the
    # second config's `run` gets past the lock (to the missing adapter, here).
    assert device_holder(STRAP) is None
    main(["run", "--config", str(second), "--duration", "1", "--plain"])
    captured = capsys.readouterr()
    assert "is in use by" not in captured.err + captured.out
    assert "stopped: " in captured.out  # it ran its second and stopped
