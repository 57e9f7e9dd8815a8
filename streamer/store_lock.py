"""One writer per store: an exclusive lock beside it, and files only their owner can read.

Every command that writes the store (``run``, ``demo``, ``replay``, ``morning``,
``grip-test``) holds :func:`hold_store` for as long as it runs; ``notify`` holds its state
file the same way (the file names its persistent MQTT session). The lock is an
``fcntl.flock`` on ``<store>.lock``: the kernel drops it when the holder exits, however it
exits (SIGKILL, power cut), so a lock file left behind never blocks anyone. The holder
writes its pid, command and start time into the file, so a second instance refuses in
one line naming them (:class:`StoreBusyError`), instead of writing the same outboxes and
sequence numbers and taking the same broker connection and Bluetooth devices.

Readers need no lock (``report`` opens the store read-only; SQLite's WAL lets it read
while ``run`` writes); :func:`holder` tells ``doctor`` who holds a store without taking it.

One process per Bluetooth device: two commands on DIFFERENT stores (two configs) may still
name one strap, which accepts one connection at a time, so they would take it from each
other in turn. Whatever connects real devices (``run``, ``morning``, ``grip-test``,
``record``) holds :func:`hold_devices`: the same kind of lock, one file per device address
under :func:`runtime_dir` (per user: a device is the user's radio, not a store's), and a
second process asking for a held device refuses in one line naming the device, the
holder's pid and command (:class:`DeviceBusyError`). Emulated devices take no lock: they
live on a virtual link inside their process and compete with nobody.

The store, its WAL/SHM, the lock and ``config init``'s file hold health data or secrets:
they are created mode 0600 (:func:`create_private`, :func:`write_private`). SQLite gives
the WAL and SHM files the mode of the database file, so a private store keeps them
private too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import re
import socket
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from streamer.errors import StreamerError

PRIVATE_MODE: Final = 0o600
"""Read and write for the owner only: health data and secrets."""
LOCK_SUFFIX: Final = ".lock"
NOTE_BYTES: Final = 512
"""Size of the holder's note in the lock file (pid, command, host, start time, padded)."""
#: Commands that talk to the athletes' Bluetooth devices: a second one on the same store
#: would also compete for the devices (a strap accepts one connection at a time).
DEVICE_COMMANDS: Final = frozenset({"run", "morning", "grip-test"})


ENV_RUNTIME_DIR: Final = "REDOX_RUNTIME_DIR"
"""Where the device locks live, if set (tests; a system with no ``$XDG_RUNTIME_DIR``)."""
DEVICE_LOCK_PREFIX: Final = "device-"


class StoreBusyError(StreamerError):
    """Another process holds the store; the message names it (pid, command) and the fix."""


class DeviceBusyError(StreamerError):
    """Another process holds a Bluetooth device; the message names the device, the holder
    (pid, command) and the fix."""


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a store lock, as its holder wrote it (None: not written yet or unreadable)."""

    pid: int | None
    command: str | None
    host: str | None
    since: str | None

    def describe(self) -> str:
        """``redox-streamer run (pid 4711, since 2026-12-01 06:58 UTC)``."""
        what = f"redox-streamer {self.command}" if self.command else "another redox-streamer"
        facts = [f"pid {self.pid}" if self.pid is not None else "pid unknown"]
        if self.host and self.host != socket.gethostname():
            facts.append(f"on host {self.host}")  # a store on a shared disk
        if self.since:
            facts.append(f"since {self.since}")
        return f"{what} ({', '.join(facts)})"


def lock_path(store: Path) -> Path:
    """The lock file of the store at ``store``: ``<store>.lock`` beside it."""
    return store.with_name(store.name + LOCK_SUFFIX)


def create_private(path: Path) -> bool:
    """Create ``path`` empty with mode 0600 unless it exists; True when it was created.

    ``O_EXCL`` with the mode given at creation: there is no moment at which another user
    could open the file while it was readable to them.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def write_private(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` readable by its owner only (mode 0600).

    An existing file is overwritten and its mode narrowed to 0600: what is written now
    may be a secret even if the old content was not. ``OSError`` as ``open`` raises it.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), PRIVATE_MODE)
        f.write(text)


def _read_holder(fd: int) -> Holder:
    """The holder's note in the lock file (never raises: a note being written reads empty)."""
    try:
        raw = os.pread(fd, NOTE_BYTES, 0)
        data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    pid = data.get("pid")

    def text(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) else None

    return Holder(
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        command=text("command"),
        host=text("host"),
        since=text("since"),
    )


STORE_LOCK_FIX: Final = "set store.path in the config (or --store) to a writable place"


def _open_lock(path: Path, fix: str) -> int:
    """Open (creating 0600) the lock file ``path``; ``fix`` completes the error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_MODE)
    except OSError as exc:
        raise StreamerError(
            f"cannot create the lock file {path}: {exc.strerror or exc}; {fix}"
        ) from exc


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def busy_message(store: Path, command: str, holder: Holder) -> str:
    """The one line a second instance prints: who holds ``store`` and what to do."""
    if command == "notify":  # its "store" is the state file, which names its MQTT session
        return (
            f"the notify state file {store} is in use by {holder.describe()}: two notifiers "
            "on one state file share its MQTT session and throw each other off — stop that "
            "one first, or give this one another --state FILE"
        )
    if command in DEVICE_COMMANDS and holder.command in DEVICE_COMMANDS:
        return (
            f"{holder.describe()} is using the store {store} and the athletes' devices; "
            f"stop it first (Ctrl-C in its terminal, or `systemctl stop redox-streamer`), "
            f"then run `redox-streamer {command}` again"
        )
    return (
        f"the store {store} is in use by {holder.describe()}: one process at a time may "
        f"write it — stop that one first, or give `{command}` another store (--store PATH, "
        "or [store] path in its config)"
    )


def _take(path: Path, command: str, fix: str) -> tuple[int, Holder | None]:
    """Open ``path`` (0600) and lock it: ``(fd, None)`` with this process's note written
    in it, or ``(-1, the holder)`` when another process holds it. Never waits.

    ``fix`` completes the error when the file cannot be created."""
    fd = _open_lock(path, fix)
    try:
        if not _try_lock(fd):
            other = _read_holder(fd)
            os.close(fd)
            return -1, other
        note = {
            "pid": os.getpid(),
            "command": command,
            "host": socket.gethostname(),
            "since": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        }
        # One write of a fixed size over the previous note: a reader sees the old note or
        # the new one, never a mix (JSON allows the trailing blanks).
        os.pwrite(fd, json.dumps(note).ljust(NOTE_BYTES - 1).encode()[: NOTE_BYTES - 1] + b"\n", 0)
    except BaseException:
        os.close(fd)
        raise
    return fd, None


@contextlib.contextmanager
def hold_store(store: Path | str, command: str) -> Iterator[None]:
    """Hold the exclusive lock of the store at ``store`` while the block runs.

    ``":memory:"`` needs no lock. Raises :class:`StoreBusyError` at once (never waits)
    when another process holds it.

    Args:
        store: the store's file (need not exist yet: its directory is created).
        command: the command taking it (``"run"``), for the message a second one prints.
    """
    if str(store) == ":memory:":
        yield
        return
    path = Path(store).expanduser()
    fd, other = _take(lock_path(path), command, STORE_LOCK_FIX)
    if other is not None:
        raise StoreBusyError(busy_message(path, command, other))
    try:
        yield
    finally:
        # Closing the descriptor drops the lock; the file stays (deleting it would let a
        # waiting process lock a file that a third one has already replaced).
        os.close(fd)


def holder(store: Path | str) -> Holder | None:
    """Who holds the store's lock now, or None when nobody does (or it has no lock file).

    Never creates the lock file and never blocks: ``doctor`` asks this to say that a
    running ``run`` has the store.
    """
    path = lock_path(Path(store).expanduser())
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _read_holder(fd)
    finally:
        os.close(fd)


# --- devices ---------------------------------------------------------------------------------


def runtime_dir() -> Path:
    """Where the device locks live: ``$REDOX_RUNTIME_DIR``, else
    ``$XDG_RUNTIME_DIR/redox-streamer`` (per user, emptied at logout or boot), else
    ``<tmp>/redox-streamer-<uid>``.

    The last is in a world-writable place: it is created 0700 and used only when it is a
    real directory of this user's, so another user cannot plant it or read who holds what.
    """
    chosen = os.environ.get(ENV_RUNTIME_DIR)
    if chosen:
        return Path(chosen).expanduser()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        path = Path(xdg) / "redox-streamer"
        path.mkdir(mode=0o700, exist_ok=True)
        return path
    path = Path(tempfile.gettempdir()) / f"redox-streamer-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not path.is_dir() or path.is_symlink() or info.st_uid != os.getuid():
        raise StreamerError(
            f"{path} is not a directory of this user's: remove it, or set "
            f"{ENV_RUNTIME_DIR} to a private directory for redox-streamer's device locks"
        )
    return path


def device_lock_path(address: str) -> Path:
    """The lock file of the device at ``address`` (``C0:00:…``; a CoreBluetooth UUID too):
    ``device-C00000…`` under :func:`runtime_dir`, one per device whatever its spelling."""
    key = re.sub(r"[^0-9A-Z]", "", address.upper()) or "unknown"
    return runtime_dir() / f"{DEVICE_LOCK_PREFIX}{key}.lock"


def device_busy_message(address: str, label: str, command: str, holder: Holder) -> str:
    """The one line a second process asking for a held device prints."""
    mqtt_way = (
        " (while `run` holds it, its MQTT commands <base>/<athlete>/set/morning and "
        "set/grip take the morning reading and the grip test: docs/topics.md, Commands)"
        if holder.command == "run" and command in ("morning", "grip-test")
        else ""
    )
    return (
        f"{label} ({address}) is in use by {holder.describe()}: a Bluetooth device accepts "
        f"one connection at a time — stop that one first (Ctrl-C in its terminal, or "
        f"`systemctl stop redox-streamer`), then run `redox-streamer {command}` again"
        f"{mqtt_way}"
    )


@contextlib.contextmanager
def hold_devices(devices: Mapping[str, str], command: str) -> Iterator[None]:
    """Hold the lock of every device in ``devices`` (address → what to call it, e.g.
    ``"ann's strap"``) while the block runs: all or none.

    Raises :class:`DeviceBusyError` at once (never waits) naming the first device another
    process holds, and releases those taken before it. The kernel drops the locks when
    the holder exits, however it exits (SIGKILL included).
    """
    taken: list[int] = []
    fix = f"set {ENV_RUNTIME_DIR} to a writable private directory"
    try:
        for address, label in sorted(devices.items()):
            fd, other = _take(device_lock_path(address), command, fix)
            if other is not None:
                raise DeviceBusyError(device_busy_message(address, label, command, other))
            taken.append(fd)
        yield
    finally:
        for fd in taken:
            os.close(fd)


def device_holder(address: str) -> Holder | None:
    """Who holds the device at ``address`` now, or None (never creates or takes a lock)."""
    try:
        fd = os.open(device_lock_path(address), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _read_holder(fd)
    finally:
        os.close(fd)
