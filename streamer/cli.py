"""The ``redox-streamer`` command line.

Each sub-command lives in its own module under :mod:`streamer.commands` and exposes
``register(subparsers)``; this module only assembles them, so a reader finds a command's
behaviour in ``streamer/commands/<name>.py``.

Only the command being run is imported: the others (and Bumble, numpy, matplotlib behind
them) would cost a second and ~100 MB before ``--help`` could answer. :data:`COMMANDS`
therefore carries each command's one-line summary, which must equal the ``help=`` its
module registers (a test checks).

Errors end here: :func:`main` turns every error family of :mod:`streamer.errors` into one
line and an exit status, and Ctrl-C into status 130, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from streamer import __version__
from streamer.errors import INPUT_STATUS, INTERRUPTED_STATUS, user_error


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
        "session", "start or end a training session in a running `run`", "streamer.commands.session"
    ),
    Command(
        "rpe",
        "enter the perceived exertion (CR-10) of the current or last session",
        "streamer.commands.rpe",
    ),
    Command(
        "replay",
        "replay a recording of raw notifications through the pipeline",
        "streamer.commands.replay",
    ),
    Command(
        "doctor", "check Bluetooth, broker, InfluxDB, config and store", "streamer.commands.doctor"
    ),
    Command(
        "morning", "guided morning HRV reading with a chest strap", "streamer.commands.morning"
    ),
    Command(
        "grip-test",
        "guided grip test before and after a session (Tindeq)",
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
    Command(
        "import",
        "import history (RR files, FIT activities) through the live path",
        "streamer.commands.import_history",
    ),
    Command(
        "export",
        "export an athlete's daily values or sessions as CSV",
        "streamer.commands.export",
    ),
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


def build_parser(load: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the commands named in ``load`` registered by their modules (None:
    every command); the others are listed with their summary but take no arguments."""
    parser = argparse.ArgumentParser(
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
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt:
        # Also while a command's modules load, before it can handle Ctrl-C itself.
        return INTERRUPTED_STATUS


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
        print(f"redox-streamer {args.command}: error: {error.message}", file=sys.stderr)
        return error.status
    return status


if __name__ == "__main__":
    sys.exit(main())
