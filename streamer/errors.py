"""Errors that reach the user, and the one table that turns them into a line and a status.

Three families, each based in the package that raises it (``devices`` and ``processors``
must not import this one):

* :class:`devices.errors.DeviceError` — a payload, a recording, the device registry
  (``CodecError``, ``RecordingError``, ``RegistryError``), or a device or adapter that
  cannot be used now (:class:`~devices.errors.DeviceUnavailableError`: ``DriverError``,
  ``BluetoothUnavailableError``);
* :class:`processors.errors.InputError` — numbers or a file of them that cannot be
  analysed (``OxygenationInputError``, ``GripInputError``, ``RrFileError``,
  ``SmO2FileError``);
* :class:`StreamerError` — the streamer's own: a flag, the config, the store, a report, the
  notifier (``CliError``, ``ConfigError``, ``StoreError``, ``ReportError``,
  ``NotifyError``, ``DeliveryError``).

Their messages name the input at fault and what to do. :func:`user_error` is what the
command line (:func:`streamer.cli.main`) asks; a command catches an error itself only to
add what it alone knows (which flag, which file).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Final

from devices.errors import DeviceError, DeviceUnavailableError
from processors.errors import InputError

INPUT_STATUS: Final = 2
"""Exit status when an input cannot be used (argparse uses it for bad flags too)."""
INTERRUPTED_STATUS: Final = 128 + signal.SIGINT
"""Exit status after Ctrl-C: 128 + SIGINT (130), as shells report it."""
TERMINATED_STATUS: Final = 128 + signal.SIGTERM
"""Exit status after SIGTERM (``kill``, ``timeout``, systemd stop): 143."""
PIPE_CLOSED_STATUS: Final = 128 + signal.SIGPIPE
"""Exit status when the reader of standard output went away (``| head``): 141, what a
process killed by SIGPIPE reports."""

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
"""The signals that ask a command to stop: it finishes what it holds, then exits with
``128 + signal``."""


def signal_status(sig: int) -> int:
    """The conventional exit status after stopping for ``sig``: 128 + its number."""
    return 128 + int(sig)


class Terminated(BaseException):
    """SIGTERM arrived where no command handles it yet (start-up, a synchronous command):
    it unwinds like Ctrl-C's ``KeyboardInterrupt`` and the CLI exits with status 143."""


_received: list[signal.Signals] = []


def note_stop_signal(sig: signal.Signals) -> None:
    """Remember that ``sig`` asked the running command to stop (called from the signal
    handler of a long-running command, which then stops cleanly and returns): the CLI exits
    with ``128 + sig`` instead of the command's status and says so in one line."""
    _received.append(sig)


def stop_signal_pending() -> bool:
    """True when a stop signal was noted and not yet taken (the command is stopping)."""
    return bool(_received)


def take_stop_signal() -> signal.Signals | None:
    """The first stop signal noted since the last call, and forget them all."""
    first = _received[0] if _received else None
    _received.clear()
    return first


class StreamerError(Exception):
    """The streamer cannot use what it was given: a flag, the config, the store, a channel.

    The message names it and says what to do.
    """


class CliError(StreamerError):
    """A message a command composed for the user: the CLI prints it as one line, status 2.

    The message names the bad input and what to do about it.
    """


@dataclass(frozen=True, slots=True)
class ErrorFamily:
    """Errors deriving from ``base``: the exit status and any advice added to the message."""

    base: type[Exception]
    status: int
    advice: str = ""


FAMILIES: Final[tuple[ErrorFamily, ...]] = (
    ErrorFamily(StreamerError, INPUT_STATUS),
    ErrorFamily(InputError, INPUT_STATUS),
    # Before DeviceError, its base: first match wins. Its messages say what failed, not
    # where to look.
    ErrorFamily(
        DeviceUnavailableError,
        INPUT_STATUS,
        "`redox-streamer doctor` checks the adapter and the config, `redox-streamer scan` "
        "lists the devices in range",
    ),
    ErrorFamily(DeviceError, INPUT_STATUS),
)
"""Every family the CLI reports as one line, most specific first."""


@dataclass(frozen=True, slots=True)
class UserError:
    """What the CLI prints after ``error:`` and the status it exits with."""

    message: str
    status: int


def user_error(exc: BaseException) -> UserError | None:
    """The message and exit status for ``exc``; None when it is a bug (let it show).

    A file-system ``OSError`` (one with a file name) also counts: a path the user gave that
    the system refuses, wherever it was opened.
    """
    for family in FAMILIES:
        if isinstance(exc, family.base):
            message = str(exc) or type(exc).__name__
            return UserError(
                f"{message}; {family.advice}" if family.advice else message, family.status
            )
    if isinstance(exc, OSError) and exc.filename is not None:
        return UserError(
            f"{exc.filename}: {exc.strerror or exc}; check the path and its permissions",
            INPUT_STATUS,
        )
    return None
