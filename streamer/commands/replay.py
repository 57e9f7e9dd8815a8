"""``redox-streamer replay FILE``: a recording through the same codecs and pipeline.

A recording is JSON Lines of raw notifications (``{"t_ns", "device", "char", "hex"}``,
see :mod:`devices.recording`). Each payload is decoded by its characteristic's codec at its
recorded receipt time, then goes through the pipeline and the processors exactly as live
data does; the results are printed. With ``--config`` the athlete's profile thresholds and
the config's sinks (MQTT, InfluxDB) apply as in ``run`` (the assembly is
:class:`streamer.app.App`); ``--mqtt`` publishes to a broker of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from devices.recording import RecordingError, replay
from streamer.app.assembly import App
from streamer.app.pipeline import Pipeline
from streamer.app.runtime import running
from streamer.athlete import MorningEnd, MorningStart, SessionEnd, SessionStart
from streamer.config import ID_RULE, Config, MqttConfig, athlete_id_arg, load_config
from streamer.errors import CliError
from streamer.payloads import iso_time
from streamer.results import Result
from streamer.store import StoreError
from streamer.store_lock import hold_store

DESCRIPTION = """\
Replay a recording of raw Bluetooth notifications (JSON Lines, one
{"t_ns", "device", "char", "hex"} object per line) through the same codecs, pipeline and
processors as live data, and print the results: rolling HRV, SmO2 efforts, grip tests, and
with --morning or --session the reading or session summary and the rules' alerts.

With --config the results belong to a configured athlete: its profile's thresholds and
rules apply, and they go to the config's MQTT broker and InfluxDB as `run` sends them.
"""

SAMPLE_RECORDING: Final = Path(__file__).resolve().parents[1] / "data" / "sample_strap_moxy.jsonl"
"""Six emulated minutes of a chest strap and a Moxy (HRV windows and an SmO2 effort with its
recovery), made with ``redox-streamer record --emulated --duration 24 --speed 15``; shipped
in the package."""

EPILOG = f"""\
a sample recording to try (6 emulated minutes of a chest strap and a Moxy, made with
`redox-streamer record --emulated`):
  {SAMPLE_RECORDING}

examples:
  redox-streamer replay SAMPLE.jsonl --session        the sample above: HRV, SmO2 effort
  redox-streamer replay session.jsonl                 as fast as possible, results as text
  redox-streamer replay session.jsonl --speed 1       at the recorded pace
  redox-streamer replay morning.jsonl --morning --json
  redox-streamer replay session.jsonl --session --mqtt mqtt://127.0.0.1:1883
  redox-streamer replay morning.jsonl --morning --config ~/redox.toml --athlete ann

A recording's "device" names become the device ids; results belong to --athlete.
Make a recording with `redox-streamer record FILE` (real devices, or --emulated).
"""


def register(subparsers: Any) -> None:
    """Add the ``replay`` sub-command."""
    parser = subparsers.add_parser(
        "replay",
        help="replay a recording of raw notifications through the pipeline",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="JSON Lines recording")
    parser.add_argument(
        "--speed",
        type=float,
        default=0.0,
        metavar="X",
        help="1 = recorded pace, 10 = ten times faster, 0 = as fast as possible (default)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="apply this config: the athlete's profile and rules, its MQTT and InfluxDB sinks",
    )
    parser.add_argument(
        "--athlete",
        type=athlete_id_arg,
        help="athlete id (default: the config's only athlete; without --config: replay); "
        + ID_RULE,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--morning",
        action="store_true",
        help="the recording is a morning reading: analyse it as one",
    )
    mode.add_argument(
        "--session",
        action="store_true",
        help="the recording is a training session: summarise it as one",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per result")
    parser.add_argument("--live", action="store_true", help="print live samples too (many lines)")
    parser.add_argument(
        "--mqtt", metavar="URL", help="also publish to this broker (instead of the config's)"
    )
    parser.add_argument(
        "--store", type=Path, metavar="PATH", help="SQLite store (default: in memory, nothing kept)"
    )
    parser.add_argument(
        "--skip-malformed",
        action="store_true",
        help="skip malformed lines and payloads the codec rejects (counted, the first "
        "named) instead of stopping at the first",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer replay``."""
    if not args.file.is_file():
        raise CliError(f"{args.file}: no such recording file")
    if not (args.speed >= 0 and math.isfinite(args.speed)):
        raise CliError(f"--speed {args.speed:g}: give 0 (as fast as possible) or more")
    config, athlete = _config(args)
    store = args.store if args.store else ":memory:"
    with contextlib.ExitStack() as stack:
        stack.enter_context(hold_store(store, "replay"))
        try:
            app = stack.enter_context(App.from_config(config, store=store))
        except StoreError as exc:
            raise CliError(f"--store: {exc}") from None
        try:
            return asyncio.run(_replay(args, app, athlete))
        except RecordingError as exc:
            raise CliError(
                f"{exc}; fix or remove that line, or pass --skip-malformed to go on past "
                "malformed lines"
            ) from None


def _config(args: argparse.Namespace) -> tuple[Config, str]:
    """The config to assemble (the file's, or an empty one) with ``--mqtt`` applied, and
    the athlete the results belong to."""
    config = load_config(args.config) if args.config is not None else Config()
    athlete: str = args.athlete or "replay"
    if args.config is not None:
        ids = [a.id for a in config.athletes]
        if args.athlete is None:
            if len(ids) != 1:
                raise CliError(
                    f"--athlete: say which athlete ({', '.join(ids) or 'none'} configured "
                    f"in {config.source})"
                )
            athlete = ids[0]
        elif args.athlete not in ids:
            raise CliError(
                f"--athlete {args.athlete!r} is not in {config.source}; known: "
                f"{', '.join(ids) or 'none'}"
            )
    if args.mqtt:
        try:
            config = replace(config, mqtt=MqttConfig.from_url(args.mqtt))
        except ValueError as exc:
            raise CliError(f"--mqtt: {exc}") from None
    return config, athlete


def describe(result: Result) -> str:
    """One human line for a result."""
    fields = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in result.fields.items()
        if v is not None and not isinstance(v, list | dict)
    )
    device = f"/{result.device}" if result.device else ""
    return f"{iso_time(result.ts_ns)} {result.athlete}{device} {result.kind.value}: {fields}"


async def _replay(args: argparse.Namespace, app: App, athlete: str) -> int:
    printed = 0
    skipped: list[RecordingError] = []
    interrupted = False  # a signal stopped the pipeline before the end of the file

    def show(result: Result) -> None:
        nonlocal printed
        if result.kind.is_live and not args.live:
            return
        printed += 1
        if args.json:
            print(
                json.dumps(
                    {
                        "kind": result.kind.value,
                        "athlete": result.athlete,
                        "device": result.device,
                        "ts_ns": result.ts_ns,
                        **result.fields,
                    },
                    allow_nan=False,
                ),
                flush=True,
            )
        else:
            print(describe(result), flush=True)

    # Live samples are made when printed or when a sink takes them, as in `run`.
    app.athlete(athlete, live=args.live or bool(app.sinks))
    pipeline = app.pipeline([athlete], on_result=show)
    start, end = (
        (MorningStart, MorningEnd)
        if args.morning
        else (SessionStart, SessionEnd)
        if args.session
        else (None, None)
    )

    async def feed() -> int | None:
        """Put every record into the pipeline; the first receipt time (None: none)."""
        nonlocal interrupted
        first_t: int | None = None
        last_t = 0
        async for device, record in replay(
            args.file, speed=args.speed, skip_malformed=args.skip_malformed, on_skip=skipped.append
        ):
            t_ns = int(getattr(record, "t_ns", 0))
            if first_t is None:
                first_t = t_ns
                if start is not None:
                    await pipeline.put(athlete, device, start(t_ns - 1))
            last_t = max(last_t, t_ns)
            if not await pipeline.put(athlete, device, record):
                interrupted = True
                return first_t
        if end is not None and first_t is not None:
            await pipeline.put(athlete, "recording", end(last_t + 1))
        return first_t

    async with running(pipeline) as pipeline_task:
        # Feeding waits on the pipeline (inbox room, pacing): it must end when the pipeline
        # ends — stopped by a signal, or failed (stdout closed under `| head`) — or it
        # would wait for ever.
        feeder = asyncio.create_task(feed(), name="replay feed")
        await asyncio.wait({feeder, pipeline_task}, return_when=asyncio.FIRST_COMPLETED)
        if feeder.done():
            await _join_alive(pipeline, pipeline_task)  # what was read is processed
        else:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
    failure = None if pipeline_task.cancelled() else pipeline_task.exception()
    if failure is not None:
        raise failure  # e.g. stdout closed: the CLI says how that ends
    interrupted = interrupted or feeder.cancelled()
    first_t = None if feeder.cancelled() else feeder.result()  # a bad line raises here
    if first_t is None and not interrupted:
        raise CliError(
            f"{args.file}: the recording holds no notification"
            + (f" that could be read ({len(skipped)} malformed lines skipped)" if skipped else "")
            + " — give a recording made with `redox-streamer record`"
        )
    if skipped:
        print(
            f"skipped {len(skipped)} malformed line(s) (--skip-malformed); the first: {skipped[0]}",
            file=sys.stderr,
        )
    if not printed and not args.json and not interrupted:
        print(
            "no results: the recording is too short for an HRV window, effort or test "
            "(try --morning or --session)",
            file=sys.stderr,
        )
    return 0


async def _join_alive(pipeline: Pipeline, task: asyncio.Task[None]) -> None:
    """Wait until the pipeline has processed what it holds, unless it ends first."""
    join = asyncio.create_task(pipeline.join())
    await asyncio.wait({join, task}, return_when=asyncio.FIRST_COMPLETED)
    if not join.done():
        join.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await join
