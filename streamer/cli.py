"""The ``redox-streamer`` command line.

Each sub-command lives in its own module under :mod:`streamer.commands` and exposes
``register(subparsers)``; this module only assembles them, so a reader finds a command's
behaviour in ``streamer/commands/<name>.py``.

Only the command being run is imported: the others (and Bumble, numpy, matplotlib behind
them) would cost a second and ~100 MB before ``--help`` could answer. :data:`COMMANDS`
therefore carries each command's one-line summary, which must equal the ``help=`` its
module registers (a test checks).

Errors end here: :func:`main` turns every error family of :mod:`streamer.errors` into one
line and an exit status, without a traceback. Signals and pipes end here too, once for
every command: Ctrl-C (SIGINT) and SIGTERM stop a command cleanly — a long-running one
finishes what it holds — and the CLI says so in one line and exits 130 or 143; a reader of
standard output that went away (``| head``) ends the command silently with status 141, as
SIGPIPE ends ``cat``. (SIGPIPE itself stays ignored, as Python sets it: with its default
action a broker or InfluxDB closing a socket would kill the streamer.)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import select
import signal
import sys
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import NoReturn

from streamer import __version__
from streamer.errors import (
    INPUT_STATUS,
    PIPE_CLOSED_STATUS,
    Terminated,
    signal_status,
    stop_signal_pending,
    take_stop_signal,
    user_error,
)


@dataclass(frozen=True, slots=True)
class Command:
    """A sub-command: its name, its line in ``--help`` and the module that registers it."""

    name: str
    summary: str
    module: str


# Order here is the order in `--help`; keep the demo first.
COMMANDS: tuple[Command, ...] = (
    Command(
        "demo",
        "emulated athletes and devices end to end, no hardware, no servers",
        "streamer.commands.demo",
    ),
    Command("run", "stream the paired devices of the configured athletes", "streamer.commands.run"),
    Command(
        "gateway",
        "team mode: forward devices and markers to NATS JetStream",
        "streamer.commands.gateway",
    ),
    Command(
        "session", "start or end a training session in a running `run`", "streamer.commands.session"
    ),
    Command(
        "rpe",
        "enter the perceived exertion (CR-10) of the current or last session",
        "streamer.commands.rpe",
    ),
    Command(
        "log",
        "enter a lab marker by hand: GSH:GSSG, dROMs, lipid-peroxidation dipstick",
        "streamer.commands.log",
    ),
    Command(
        "replay",
        "replay a recording of raw notifications through the pipeline",
        "streamer.commands.replay",
    ),
    Command(
        "record",
        "record raw notifications of an athlete's devices for `replay`",
        "streamer.commands.record",
    ),
    Command(
        "doctor", "check Bluetooth, broker, InfluxDB, config and store", "streamer.commands.doctor"
    ),
    Command(
        "morning", "guided morning HRV reading with a chest strap", "streamer.commands.morning"
    ),
    Command(
        "grip-test",
        "guided grip test before and after a session (Tindeq, Activ5)",
        "streamer.commands.grip_test",
    ),
    Command(
        "scan", "list Bluetooth LE devices in range and what they are", "streamer.commands.scan"
    ),
    Command("pair", "remember which device belongs to which athlete", "streamer.commands.pair"),
    Command(
        "decode",
        "decode one notification payload (hex) and print its fields",
        "streamer.commands.decode",
    ),
    Command(
        "analyze",
        "analyse a recorded file (HRV of an RR-interval file)",
        "streamer.commands.analyze",
    ),
    Command("config", "write an example config file, or check one", "streamer.commands.config"),
    Command(
        "notify",
        "turn alerts on MQTT into desktop, command or webhook notifications",
        "streamer.commands.notify",
    ),
    Command("store", "check the local store, or salvage a damaged one", "streamer.commands.store"),
    Command(
        "import",
        "import history (RR files, FIT activities) through the live path",
        "streamer.commands.import_history",
    ),
    Command(
        "worker",
        "team mode: process partitions of the raw stream into PostgreSQL",
        "streamer.commands.worker",
    ),
    Command(
        "registry",
        "team mode: the club's athletes, devices and thresholds, central in NATS",
        "streamer.commands.registry",
    ),
    Command(
        "migrate",
        "team mode: merge single-box stores into PostgreSQL",
        "streamer.commands.migrate",
    ),
    Command(
        "export",
        "export an athlete's daily values, sessions or lab entries as CSV",
        "streamer.commands.export",
    ),
    Command("status", "athletes' baselines, alerts and devices now", "streamer.commands.status"),
    Command(
        "report",
        "picture of an athlete's last weeks (PNG or HTML) from the local store",
        "streamer.commands.report",
    ),
)

DESCRIPTION = """\
Stream recovery signals from Bluetooth LE wearables (chest straps, SmO2 sensors, grip
dynamometers, power meters) to MQTT and InfluxDB, and raise pull-back alerts.

Start here:
  redox-streamer demo            emulated athletes and devices, no hardware, no servers
  redox-streamer analyze rr FILE HRV of an RR-interval file
  redox-streamer analyze smo2 FILE
                                 SmO2 recovery after efforts, from a Moxy export or CSV
  redox-streamer <command> --help
"""


class _Parser(argparse.ArgumentParser):
    """argparse whose refusal of a flag is one line that also says where the fix is.

    Sub-command parsers are made of the same class (argparse's default), so this covers
    every command's flags.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(INPUT_STATUS, f"{self.prog}: error: {message} — see `{self.prog} --help`\n")


def build_parser(load: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the commands named in ``load`` registered by their modules (None:
    every command); the others are listed with their summary but take no arguments."""
    parser = _Parser(
        prog="redox-streamer",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        if load is None or command.name in load:
            importlib.import_module(command.module).register(sub)
        else:
            sub.add_parser(command.name, help=command.summary, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    name = _command_name(args)
    take_stop_signal()  # a signal noted by an earlier in-process call is not this one's
    try:
        with _sigterm_unwinds():
            status = _main(args)
            sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except KeyboardInterrupt:
        # Also while a command's modules load, before it can handle Ctrl-C itself.
        return _stopped(name, signal.SIGINT)
    except Terminated:
        return _stopped(name, signal.SIGTERM)
    except BaseException as exc:
        if _is_broken_pipe(exc) and _stdout_closed():
            return PIPE_CLOSED_STATUS
        sig = _signal_behind(exc)
        if sig is not None:
            return _stopped(name, sig)
        raise
    sig = take_stop_signal()
    return status if sig is None else _stopped(name, sig)


def _command_name(argv: Sequence[str]) -> str:
    """The command ``argv`` names, for the closing line ("" before one is named)."""
    names = {command.name for command in COMMANDS}
    return next((arg for arg in argv if arg in names), "")


def _stopped(command: str, sig: signal.Signals) -> int:
    """Say in one line that ``sig`` stopped ``command``; its status (128 + sig)."""
    prog = f"redox-streamer {command}".rstrip()
    with contextlib.suppress(OSError, ValueError):  # stderr may be gone too
        print(f"{prog}: stopped by {sig.name}", file=sys.stderr, flush=True)
    return signal_status(sig)


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` (like Ctrl-C's ``KeyboardInterrupt``) while the
    command runs, so it ends through the same clean path; long-running commands replace
    this with their own handler (their pipeline stops and flushes) while they stream."""

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _signal_behind(exc: BaseException) -> signal.Signals | None:
    """The stop signal whose exception caused ``exc``, if one did: Ctrl-C while a class is
    being built (as Bumble's modules load) comes out as ``RuntimeError: Error calling
    __set_name__``, with the ``KeyboardInterrupt`` only as its cause."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        e = pending.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, KeyboardInterrupt):
            return signal.SIGINT
        if isinstance(e, Terminated):
            return signal.SIGTERM
        if isinstance(e, BaseExceptionGroup):
            pending.extend(e.exceptions)
        pending.extend(x for x in (e.__cause__, e.__context__) if x is not None)
    return None


def _is_broken_pipe(exc: BaseException) -> bool:
    """``exc`` is a BrokenPipeError, or a group (from a task group) of nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_broken_pipe(e) for e in exc.exceptions)
    return isinstance(exc, BrokenPipeError)


def _stdout_closed() -> bool:
    """True when standard output is a pipe nobody reads any more; it is then pointed at
    /dev/null so the interpreter's final flush cannot raise again.

    A BrokenPipeError from a socket (a broker that went away) is not this, and stays a bug.
    """
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        closed = any(event & select.POLLERR for _, event in poller.poll(0))
        if closed:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (tests capture stdout)
        return False
    return closed


def _main(argv: list[str]) -> int:
    # First find the command with every command a stub (argparse's own --help, --version
    # and errors for an unknown command exit here), then parse for real with it loaded.
    found, _ = build_parser(()).parse_known_args(argv)
    parser = build_parser({found.command} if found.command else ())
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return INPUT_STATUS
    try:
        status: int = handler(args)
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise  # a bug: its traceback is what a report needs
        if stop_signal_pending():
            # Stopping made it fail (a device not connected yet, a test cut short): the
            # line that says why is main's "stopped by SIG...", and the status its.
            return error.status
        print(f"redox-streamer {args.command}: error: {error.message}", file=sys.stderr)
        return error.status
    return status


if __name__ == "__main__":
    sys.exit(main())
