"""``redox-streamer log``: a lab marker entered by hand (GSH:GSSG, dROMs, lipid dipstick).

With a running ``run`` or team gateway listening (see :mod:`streamer.commands.session`)
the entry goes to it over ``<base>/<athlete>/set/<marker>``
(:mod:`streamer.app.lab_commands`; a gateway forwards it to the athlete's worker as the
wire's ``lab`` marker). Without one it works offline against the store, as ``rpe`` does:
the same athlete processing (:class:`~streamer.athlete.AthleteState`, reloaded from the
store) judges it against the athlete's earlier entries, stores it and queues the result
and the alerts it changes in the sinks' outboxes (delivered now when the servers are up,
else by the next ``run``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from typing import Any, Final

from processors import physiology as ph
from processors.labs import (
    LabInputError,
    LabMarker,
    LabTiming,
    parse_dipstick,
    parse_gsh_gssg,
)
from streamer.app.assembly import App
from streamer.app.commands_in import COMMAND_DEVICE
from streamer.app.lab_commands import LabCommand
from streamer.commands.session import add_common, load, send_if_listening
from streamer.config import Config, date_arg
from streamer.errors import CliError
from streamer.results import Kind, LabPayload, Result
from streamer.store_lock import hold_store

DESCRIPTION = """\
Enter a lab marker by hand: a value from a blood or urine test, with when the sample was
taken. It is stored, published (MQTT <base>/<athlete>/lab, InfluxDB "lab"), drawn in the
report and judged by the lab rules (docs/rules.md). These are practitioner heuristics from
the article "When ROS Signals Turn Toxic", not medical advice.

  gsh-gssg        glutathione ratio, reduced (GSH) to oxidized (GSSG), as n:1 (180 or
                  180:1), from a blood assay. Below 100:1 "leaning oxidative" (a pull-back
                  alert), 150-300:1 the range for trained people, above 400:1 "likely
                  over-supplemented" (a finding, no alert).
  droms           reactive oxygen metabolites (d-ROMs test), in CARR U (1 CARR U =
                  0.08 mg/dL H2O2; typical 250-300), drawn after 10 min of rest. Flagged
                  when more than 35% above your own baseline: the median of your last 5
                  earlier resting values; no verdict until 3 exist.
  lipid-dipstick  urine lipid-peroxidation strip: positive or negative. Positive means pull
                  back; negative says nothing on its own (the strip reads only above
                  5 umol/L): cross-check with blood every 6 weeks.

--timing is required for gsh-gssg and droms: one hard interval session drops GSH:GSSG by
~40% within 15 min, so the bands are for resting draws (fasted, pre-training); a
post-45min draw is stored and compared with the same day's resting draw, not judged.

A running `redox-streamer run` gets the entry over MQTT; without one it is applied to the
local store directly (results and alerts queued for MQTT/InfluxDB).
"""

EPILOG = """\
examples:
  redox-streamer log gsh-gssg --athlete anna 180:1 --timing fasted
  redox-streamer log gsh-gssg --athlete anna 110 --timing post-45min --time 09:50
  redox-streamer log droms --athlete anna 310 --timing pre-training --date 2026-11-28 --time 07:15
  redox-streamer log lipid-dipstick --athlete anna positive
"""

#: CLI name → marker.
MARKERS: Final = {
    "gsh-gssg": LabMarker.GSH_GSSG,
    "droms": LabMarker.DROMS,
    "lipid-dipstick": LabMarker.LIPID_DIPSTICK,
}

_VALUE_HELP: Final = {
    LabMarker.GSH_GSSG: (
        f"GSH:GSSG as n:1, e.g. 180 or 180:1 ({ph.GSH_GSSG_MIN:g}-{ph.GSH_GSSG_MAX:g})"
    ),
    LabMarker.DROMS: f"dROMs in CARR U, e.g. 310 ({ph.DROMS_MIN_CARR_U:g}-{ph.DROMS_MAX_CARR_U:g})",
    LabMarker.LIPID_DIPSTICK: "positive or negative",
}

_SUMMARIES: Final = {
    LabMarker.GSH_GSSG: "glutathione ratio GSH:GSSG (n:1), with its timing",
    LabMarker.DROMS: "dROMs in CARR U after 10 min of rest, with its timing",
    LabMarker.LIPID_DIPSTICK: "urine lipid-peroxidation dipstick: positive or negative",
}


def _time_arg(text: str) -> dt.time:
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time of day; use HH:MM") from None


def _timing_arg(text: str) -> LabTiming:
    try:
        return LabTiming(text)
    except ValueError:
        known = ", ".join(t.value for t in LabTiming)
        raise argparse.ArgumentTypeError(f"{text!r}: use one of {known}") from None


def register(subparsers: Any) -> None:
    """Add the ``log`` sub-command and its markers."""
    parser = subparsers.add_parser(
        "log",
        help="enter a lab marker by hand: GSH:GSSG, dROMs, lipid-peroxidation dipstick",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    markers = parser.add_subparsers(dest="marker", metavar="MARKER", required=True)
    for name, marker in MARKERS.items():
        sub = markers.add_parser(
            name,
            help=_SUMMARIES[marker],
            description=DESCRIPTION,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("value", metavar="VALUE", help=_VALUE_HELP[marker])
        sub.add_argument(
            "--timing",
            type=_timing_arg,
            required=marker is not LabMarker.LIPID_DIPSTICK,
            metavar="WHEN",
            help="when the sample was taken: fasted, pre-training (both resting: judged) or "
            "post-45min (45 min after the session: stored, not judged)"
            + ("" if marker is not LabMarker.LIPID_DIPSTICK else "; optional here"),
        )
        sub.add_argument(
            "--date",
            type=date_arg,
            metavar="YYYY-MM-DD",
            help="the day the sample was taken, local time (default: today)",
        )
        sub.add_argument(
            "--time",
            type=_time_arg,
            metavar="HH:MM",
            help="the time of day it was taken, local time (default: now; required with an "
            "earlier --date)",
        )
        add_common(sub)
        sub.set_defaults(handler=run, lab_marker=marker)


def sample_time_ns(
    day: dt.date | None, at: dt.time | None, now: dt.datetime | None = None
) -> int | None:
    """When the sample was taken (ns since the epoch), from ``--date``/``--time`` in local
    time; None when neither is given (the receiving ``run`` stamps it)."""
    if day is None and at is None:
        return None
    now = now or dt.datetime.now().astimezone()
    if at is None:
        if day != now.date():
            raise CliError(f"--date {day}: give --time HH:MM too (when the sample was taken)")
        return time.time_ns()
    when = dt.datetime.combine(day or now.date(), at).astimezone()
    return round(when.timestamp() * 1e9)


def command_from_args(args: argparse.Namespace) -> LabCommand:
    """The lab command of the parsed arguments; CliError names a bad value and the fix."""
    marker: LabMarker = args.lab_marker
    try:
        if marker is LabMarker.GSH_GSSG:
            value = parse_gsh_gssg(args.value)
        elif marker is LabMarker.DROMS:
            try:
                value = float(args.value)
            except ValueError:
                raise LabInputError(
                    f"dROMs {args.value!r} is not a number: give CARR U, e.g. 310"
                ) from None
        else:
            value = 1.0 if parse_dipstick(args.value) else 0.0
        return LabCommand(marker, value, args.timing, sample_time_ns(args.date, args.time))
    except LabInputError as exc:
        raise CliError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer log``."""
    command = command_from_args(args)
    config = load(args)
    marker = command.marker
    if config.mqtt is not None and asyncio.run(
        send_if_listening(config.mqtt, args.athlete, marker.value, command.payload())
    ):
        print(f"{_describe(command)} sent to the running `run` for {args.athlete}")
        return 0
    return offline(config, args.athlete, command)


def _describe(command: LabCommand) -> str:
    marker = command.marker
    if marker is LabMarker.LIPID_DIPSTICK:
        text = f"lipid dipstick {'positive' if command.value > 0 else 'negative'}"
    elif marker is LabMarker.GSH_GSSG:
        text = f"GSH:GSSG {command.value:g}:1"
    else:
        text = f"dROMs {command.value:g} CARR U"
    return text + (f" ({command.timing.value})" if command.timing is not None else "")


def offline(config: Config, athlete: str, command: LabCommand) -> int:
    """Judge and store the entry with the store's history of ``athlete``; print the verdict."""
    results: list[Result] = []
    try:
        entry = command.entry(time.time_ns())
    except LabInputError as exc:
        raise CliError(str(exc)) from None
    # A `run` that holds the store is not listening (else the command went to it): say
    # so rather than write beside it, where its state would not see the change.
    with hold_store(config.store_path, "log"), App.from_config(config) as app:
        pipeline = app.pipeline([athlete], on_result=results.append)

        async def apply() -> None:
            task = asyncio.create_task(pipeline.run())
            await pipeline.put(athlete, COMMAND_DEVICE, entry)
            await pipeline.join()
            pipeline.stop()
            await task

        asyncio.run(apply())
    labs = [r.payload for r in results if r.kind is Kind.LAB]
    alerts = [r.payload for r in results if r.kind is Kind.ALERTS]
    if not labs or not isinstance(labs[0], LabPayload):
        raise CliError(f"{_describe(command)} for {athlete} was not recorded (see the log)")
    lab = labs[0]
    verdict = lab.band.replace("_", " ")
    if lab.finding:
        verdict += f"; finding: {lab.finding}"
    if lab.change_pct is not None:
        verdict += f"; {lab.change_pct:+.0f}%"
    print(
        f"{_describe(command)} logged for {athlete} (offline, in {config.store_path}): "
        f"{verdict}; {len(alerts)} alert change(s)"
    )
    for alert in alerts:
        event = getattr(alert, "event", None)
        if event is not None:
            print(
                f"  {event.state} {event.rule}"
                + (f": {event.message}" if event.state == "raised" else "")
            )
    return 0
