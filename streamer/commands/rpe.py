"""``redox-streamer rpe``: an athlete's perceived exertion (CR-10) for the session.

With a running ``run`` or team gateway listening (see :mod:`streamer.commands.session`)
it goes to the open session, or — when none is open — amends the last finished one.
Without one it works offline against the store: the same athlete processing
(:class:`~streamer.athlete.AthleteState`, reloaded from the store) amends the last stored
session, evaluates ``rpe_power_mismatch``, ``hi_spacing`` and its ``power_plateau``
finding, and queues what changed in the sinks' outboxes (delivered now when the broker is
up, else by the next ``run``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from streamer.app.assembly import App
from streamer.app.commands_in import COMMAND_DEVICE, CommandError, check_rpe
from streamer.athlete import SessionRpe
from streamer.commands.session import add_common, load, publish_rpe
from streamer.config import Config
from streamer.errors import CliError
from streamer.results import Kind, Result, SessionPayload
from streamer.store_lock import hold_store

DESCRIPTION = """\
Give an athlete's perceived exertion for a training session: 0 (rest) to 10 (maximal) on
the CR-10 scale, for the whole session, best asked ~30 min after it (Foster et al. 2001).
It goes to the session in progress, or else to the last finished session, whose summary
it amends; with the session's mean power it feeds `rpe_power_mismatch` and
`power_plateau` (power at the same RPE), and an RPE of 7 or more makes the session
high-intensity for `hi_spacing`.

A running `redox-streamer run` gets it over MQTT; without one it is applied to the
local store directly (the alerts it changes are queued for MQTT/InfluxDB).
"""

EPILOG = """\
examples:
  redox-streamer rpe --athlete anna 7
  redox-streamer rpe --athlete anna 5.5 --config ~/redox.toml
"""


def register(subparsers: Any) -> None:
    """Add the ``rpe`` sub-command."""
    parser = subparsers.add_parser(
        "rpe",
        help="enter the perceived exertion (CR-10) of the current or last session",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("value", type=float, metavar="VALUE", help="RPE, 0-10 (CR-10)")
    add_common(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer rpe``."""
    try:
        rpe = check_rpe(args.value)
    except CommandError as exc:
        raise CliError(str(exc)) from None
    config = load(args)
    if config.mqtt is not None and publish_rpe(config.mqtt, args.athlete, rpe):
        print(f"RPE {rpe:g} sent to the running `run` for {args.athlete}")
        return 0
    return offline(config, args.athlete, rpe)


def offline(config: Config, athlete: str, rpe: float) -> int:
    """Apply the RPE to the store's last session of ``athlete``; print what changed."""
    results: list[Result] = []
    # A `run` that holds the store is not listening (else the command went to it): say
    # so rather than write beside it, where its state would not see the change.
    with hold_store(config.store_path, "rpe"), App.from_config(config) as app:
        if not app.store.sessions(athlete):
            raise CliError(
                f"no session of {athlete} in {config.store_path} to give an RPE to: "
                "record one with `redox-streamer run` and `redox-streamer session start|end`"
            )
        pipeline = app.pipeline([athlete], on_result=results.append)

        async def apply() -> None:
            task = asyncio.create_task(pipeline.run())
            await pipeline.put(athlete, COMMAND_DEVICE, SessionRpe(time.time_ns(), rpe))
            await pipeline.join()
            pipeline.stop()
            await task

        asyncio.run(apply())
    sessions = [
        r for r in results if r.kind is Kind.OXYGENATION and isinstance(r.payload, SessionPayload)
    ]
    alerts = [r for r in results if r.kind is Kind.ALERTS]
    if not sessions:
        raise CliError(f"RPE {rpe:g} for {athlete} changed nothing (see the log)")
    print(
        f"RPE {rpe:g} given to {athlete}'s last session (offline, in {config.store_path}); "
        f"{len(alerts)} alert change(s)"
    )
    return 0
