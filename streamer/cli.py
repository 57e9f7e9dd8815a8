"""The ``redox-streamer`` command line.

Each sub-command lives in its own module under :mod:`streamer.commands` and exposes
``register(subparsers)``; this module only assembles them, so a reader finds a command's
behaviour in ``streamer/commands/<name>.py``.

Errors end here: :func:`main` turns every error family of :mod:`streamer.errors` into one
line and an exit status, and Ctrl-C into status 130, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from streamer import __version__
from streamer.errors import INPUT_STATUS, INTERRUPTED_STATUS, user_error

# Order here is the order in `--help`.
COMMAND_MODULES: tuple[str, ...] = (
    # one line per command module; keep the demo first
    "demo",
    "run",
    "replay",
    "doctor",
    "morning",
    "grip_test",
    "scan",
    "pair",
    "decode",
    "analyze",
    "config",
    "notify",
    "report",
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redox-streamer",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"streamer.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Also while the commands' modules load, before a command can handle Ctrl-C itself.
        return INTERRUPTED_STATUS


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
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
