"""One writer per store (the lock beside it), and private files (mode 0600).

Second instances are real processes: the lock is the kernel's (``flock``), so only another
process shows that it holds.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from streamer.cli import main
from streamer.store import Store
from streamer.store_lock import (
    NOTE_BYTES,
    StoreBusyError,
    hold_store,
    holder,
    lock_path,
    write_private,
)

ROOT = Path(__file__).resolve().parents[1]
HOLD = """\
import sys
from streamer.store_lock import hold_store
with hold_store(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    sys.stdin.read()
"""


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def held_by_another_process(store: Path, command: str) -> Iterator[subprocess.Popen[str]]:
    """A child process holding the store's lock as ``command`` until the block ends."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(store), command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "held\n"
        yield proc
    finally:
        if proc.poll() is None:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)


def test_a_second_holder_is_refused_naming_the_first_ones_pid_and_command(
    tmp_path: Path,
) -> None:
    store = tmp_path / "s.sqlite3"
    with held_by_another_process(store, "demo") as proc:
        with pytest.raises(StoreBusyError) as refused, hold_store(store, "replay"):
            pass
        message = str(refused.value)
        assert f"pid {proc.pid}" in message
        assert "redox-streamer demo" in message
        assert str(store) in message
        assert "--store" in message  # what to do
        assert "\n" not in message
        seen = holder(store)
        assert seen is not None
        assert (seen.pid, seen.command) == (proc.pid, "demo")
    # Released with the process: the next one gets it.
    with hold_store(store, "replay"):
        mine = holder(store)
        assert mine is not None
        assert (mine.pid, mine.command) == (os.getpid(), "replay")
    assert holder(store) is None


def test_the_lock_goes_with_a_killed_holder_and_its_stale_note_blocks_nothing(
    tmp_path: Path,
) -> None:
    store = tmp_path / "s.sqlite3"
    with held_by_another_process(store, "run") as proc:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert json.loads(lock_path(store).read_text())["pid"] == proc.pid  # the note stays
    with hold_store(store, "run"):
        note = lock_path(store).read_bytes()
    assert len(note) == NOTE_BYTES
    assert json.loads(note)["pid"] == os.getpid()


def test_a_lock_file_of_garbage_is_overwritten_not_trusted(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite3"
    lock_path(store).write_bytes(b"\xff\x00garbage" * 100)
    with (
        held_by_another_process(store, "demo"),
        pytest.raises(StoreBusyError, match="redox-streamer demo"),
        hold_store(store, "x"),
    ):
        pass


def test_an_in_memory_store_needs_no_lock(tmp_path: Path) -> None:
    with hold_store(":memory:", "replay"), hold_store(":memory:", "replay"):
        pass


def test_morning_while_run_holds_the_store_says_run_has_it_and_the_devices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s.sqlite3"
    with held_by_another_process(store, "run") as proc:
        status = main(["morning", "--emulated", "--store", str(store), "--athlete", "ann"])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1, err
    assert f"redox-streamer run (pid {proc.pid}" in err
    assert "devices" in err
    assert "stop it first" in err
    assert "redox-streamer morning" in err


@pytest.mark.slow
def test_every_store_writing_command_refuses_while_a_real_run_holds_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store.sqlite3"
    config = tmp_path / "redox.toml"
    config.write_text(
        f'[store]\npath = "{store}"\n'
        '[[athletes]]\nid = "ann"\nname = "Ann"\n'
        '[[athletes.devices]]\nkind = "strap"\naddress = "C0:00:00:00:10:01"\n'
        '[[athletes.devices]]\nkind = "grip"\naddress = "C0:00:00:00:10:03"\n'
    )
    recording = tmp_path / "rec.jsonl"
    recording.write_text("")
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamer.cli",
            "run",
            "--config",
            str(config),
            "--emulated",
            "--plain",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert run.stdout is not None
        first = run.stdout.readline()  # the first status line: streaming, store held
        assert first, run.stderr.read() if run.stderr else ""
        seconds = {
            "run": ["run", "--config", str(config), "--emulated"],
            "morning": ["morning", "--config", str(config), "--emulated", "--athlete", "ann"],
            "grip-test": ["grip-test", "--config", str(config), "--emulated", "--athlete", "ann"],
            "demo": ["demo", "--store", str(store), "--days", "0", "--duration", "1"],
            "replay": ["replay", str(recording), "--store", str(store)],
        }
        for command, argv in seconds.items():
            assert main(argv) == 2, command
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1, err
            assert f"redox-streamer run (pid {run.pid}" in err, (command, err)
            assert f"`redox-streamer {command}`" in err or f"`{command}`" in err, err
    finally:
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)
    assert run.returncode == 128 + signal.SIGINT  # Ctrl-C: a clean stop, status 130


def test_doctor_names_the_holder_and_only_reads_a_held_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store.sqlite3"
    Store(store).close()
    config = tmp_path / "redox.toml"
    config.write_text(f'[store]\npath = "{store}"\n')
    with held_by_another_process(store, "run") as proc:
        main(["doctor", "--config", str(config), "--no-bluetooth"])
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "store:" in x)
    assert line.startswith("OK")
    assert f"in use by redox-streamer run (pid {proc.pid}" in line


# --- private files ----------------------------------------------------------------------------


def test_a_new_store_its_wal_shm_and_lock_are_private(tmp_path: Path) -> None:
    store = tmp_path / "new" / "s.sqlite3"
    old = os.umask(0o022)  # the usual umask: files would be world-readable
    try:
        with hold_store(store, "run"), Store(store) as s:
            s.reserve_seq("t")
            files = [store, Path(f"{store}-wal"), Path(f"{store}-shm"), lock_path(store)]
            assert {f.name: oct(_mode(f)) for f in files} == {f.name: "0o600" for f in files}
    finally:
        os.umask(old)


def test_config_init_writes_a_private_file_and_narrows_one_it_overwrites(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = tmp_path / "fresh.toml"
    old = os.umask(0o022)
    try:
        assert main(["config", "init", "--path", str(fresh)]) == 0
        assert _mode(fresh) == 0o600
        shared = tmp_path / "shared.toml"
        shared.write_text("# old\n")
        shared.chmod(0o644)
        assert main(["config", "init", "--path", str(shared), "--force"]) == 0
        assert _mode(shared) == 0o600
        assert "[mqtt]" in shared.read_text()
    finally:
        os.umask(old)
    capsys.readouterr()


def test_write_private_replaces_the_content(tmp_path: Path) -> None:
    path = tmp_path / "f"
    write_private(path, "a much longer first text\n")
    write_private(path, "short\n")
    assert path.read_text() == "short\n"
    assert _mode(path) == 0o600


def test_a_second_notifier_on_one_state_file_is_refused_before_it_connects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its state file names its persistent MQTT session: two would throw each other off.
    state = tmp_path / "notify-state.json"
    with held_by_another_process(state, "notify") as proc:
        status = main(
            ["notify", "--mqtt", "mqtt://127.0.0.1:9", "--state", str(state), "--exec", "true"]
        )
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1, err
    assert f"notify state file {state} is in use by redox-streamer notify (pid {proc.pid}" in err
    assert "--state" in err
