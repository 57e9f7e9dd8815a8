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
import socket
from collections.abc import Iterator
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


class StoreBusyError(StreamerError):
    """Another process holds the store; the message names it (pid, command) and the fix."""


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


def _open_lock(store: Path) -> int:
    """Open (creating 0600) the lock file of ``store``; :class:`StoreBusyError` never."""
    path = lock_path(store)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_MODE)
    except OSError as exc:
        raise StreamerError(
            f"cannot create the store's lock file {path}: {exc.strerror or exc}; set "
            "store.path in the config (or --store) to a writable place"
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
    fd = _open_lock(path)
    try:
        if not _try_lock(fd):
            raise StoreBusyError(busy_message(path, command, _read_holder(fd)))
        note = {
            "pid": os.getpid(),
            "command": command,
            "host": socket.gethostname(),
            "since": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        }
        # One write of a fixed size over the previous note: a reader sees the old note or
        # the new one, never a mix (JSON allows the trailing blanks).
        os.pwrite(fd, json.dumps(note).ljust(NOTE_BYTES - 1).encode()[: NOTE_BYTES - 1] + b"\n", 0)
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
