"""``redox-streamer morning``: the guided morning reading with a chest strap.

Lie still, strap on: a countdown through the stabilisation period, a progress bar through
the analysed span, then the reading (lnRMSSD, resting HR, accepted or rejected with the
reason), where it sits in the athlete's normal band, and any alert the rules raised. The
reading goes through the same pipeline, store and sinks as ``run``, so trends continue.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from devices.drivers import HeartRateDriver
from devices.kinds import DeviceKind
from processors import physiology as ph
from streamer.app.assembly import App
from streamer.app.guided import (
    GuidedSession,
    guided_session,
    print_alerts,
    progress_bars,
    tick_until,
)
from streamer.athlete import AthleteState, MorningEnd, MorningStart
from streamer.config import Config, load_config
from streamer.errors import CliError
from streamer.results import Kind, Result
from streamer.store_lock import hold_store

if TYPE_CHECKING:  # Bumble is imported only with --emulated
    from devices.emulated import ChestStrap

DESCRIPTION = """\
Take the morning reading: on waking, lying still, chest strap on. The first
--stabilisation seconds are discarded, the next --span seconds are analysed (artefacts and
ectopic beats corrected; a reading with too many is rejected with the reason, never stored
as a number). The result joins the athlete's daily trend; the trend rules run at once.
"""

EPILOG = """\
examples:
  redox-streamer morning                          the only athlete in the config
  redox-streamer morning --athlete alice
  redox-streamer morning --emulated --speed 50    an emulated strap, 50x faster
"""


def register(subparsers: Any) -> None:
    """Add the ``morning`` sub-command."""
    parser = subparsers.add_parser(
        "morning",
        help="guided morning HRV reading with a chest strap",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--stabilisation",
        type=float,
        default=ph.MORNING_STABILISATION_S,
        metavar="S",
        help=f"seconds discarded first (default {ph.MORNING_STABILISATION_S:g})",
    )
    parser.add_argument(
        "--span",
        type=float,
        default=ph.MORNING_SPAN_S,
        metavar="S",
        help=f"seconds analysed (default {ph.MORNING_SPAN_S:g}; 60 is enough for lnRMSSD alone)",
    )
    parser.set_defaults(handler=run)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--athlete --config --store --emulated --speed`` (morning and grip-test)."""
    parser.add_argument("--athlete", metavar="ID", help="athlete id (default: the only one)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="config file")
    parser.add_argument(
        "--store", type=Path, metavar="PATH", help="SQLite store (default: the config's)"
    )
    parser.add_argument(
        "--emulated",
        action="store_true",
        help="use an emulated device on a virtual link (no hardware)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="with --emulated: emulated seconds per real second (default 1)",
    )


@contextlib.contextmanager
def open_setup(args: argparse.Namespace, kind: DeviceKind) -> Iterator[tuple[App, str, str | None]]:
    """(the app, athlete id, device address or None) from the flags: the config's store,
    sinks and thresholds, or — ``--emulated`` without ``--config`` — a temporary store
    and no sinks."""
    if not args.speed > 0 or (args.speed != 1.0 and not args.emulated):
        raise CliError(f"--speed {args.speed:g}: only with --emulated, and > 0")
    config: Config | None = None
    if args.config is not None or not args.emulated:
        config = load_config(args.config)
    athlete = args.athlete
    address = None
    if config is not None:
        ids = [a.id for a in config.athletes]
        if athlete is None:
            if len(ids) != 1:
                raise CliError(
                    f"--athlete: say which athlete ({', '.join(ids) or 'none'} configured)"
                )
            athlete = ids[0]
        elif athlete not in ids:
            raise CliError(
                f"--athlete {athlete!r} is not in {config.source}; known: "
                f"{', '.join(ids) or 'none'}"
            )
        device = config.athlete(athlete).device(kind)
        if device is None and not args.emulated:
            raise CliError(
                f"athlete {athlete!r} has no {kind.value} device in "
                f"{config.source}: add one (see `redox-streamer scan`)"
            )
        address = device.address if device else None
        if device is not None and not address and not args.emulated:
            raise CliError(
                f"athlete {athlete!r}: the {kind.value} device has no address — "
                "find it with `redox-streamer scan`"
            )
    athlete = athlete or "athlete1"
    with contextlib.ExitStack() as stack:
        if args.store is not None:
            path: Path | str = args.store
        elif config is not None:
            path = config.store_path
        else:
            path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "redox.sqlite3"
        command = "morning" if kind is DeviceKind.STRAP else "grip-test"
        stack.enter_context(hold_store(path, command))
        app = stack.enter_context(App.from_config(config or Config(), store=path))
        yield app, athlete, address


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer morning``."""
    if not args.stabilisation >= 0 or not args.span >= 30:
        raise CliError("--stabilisation must be >= 0 s and --span >= 30 s")
    with open_setup(args, DeviceKind.STRAP) as (app, athlete, address):
        return asyncio.run(_morning(args, app, athlete, address))


async def _morning(args: argparse.Namespace, app: App, athlete: str, address: str | None) -> int:
    state = app.athlete(
        athlete, morning_stabilisation_s=args.stabilisation, morning_span_s=args.span
    )

    def strap() -> ChestStrap:
        from devices.emulated import ChestStrap

        return ChestStrap(f"H10 {athlete}", speed=args.speed, address=address)

    async with guided_session(
        app,
        state,
        HeartRateDriver,
        device_id="strap",
        what="the strap",
        address=address,
        speed=args.speed,
        emulator=strap if args.emulated else None,
    ) as session:
        session.console.print("lie still and breathe normally.")
        session.pipeline.offer(athlete, "strap", MorningStart(session.clock.now_ns()))
        completed = await _countdown(session, state, args)
        if not completed:
            session.console.print("[yellow]stopped before the end: no reading taken[/]")
            return 130
        session.pipeline.offer(athlete, "strap", MorningEnd(session.clock.now_ns()))
        await session.pipeline.join()
    return _report(session.console, session.results)


async def _countdown(
    session: GuidedSession[HeartRateDriver, ChestStrap],
    state: AthleteState,
    args: argparse.Namespace,
) -> bool:
    total: float = args.stabilisation + args.span
    with progress_bars(session.console, transient=False) as progress:
        stab = progress.add_task("stabilising", total=args.stabilisation or 1, info="")
        rec = progress.add_task("recording  ", total=args.span, info="")
        start = session.clock.now_ns()

        def done() -> bool:
            elapsed = (session.clock.now_ns() - start) / 1e9
            hr = f"HR {state.snapshot.hr_bpm or '–'} bpm"
            progress.update(stab, completed=min(elapsed, args.stabilisation), info=hr)
            progress.update(rec, completed=max(0.0, elapsed - args.stabilisation), info=hr)
            return elapsed >= total

        return await tick_until(session.pipeline, done, 0.1)


def _report(console: Console, results: list[Result]) -> int:
    morning = next((r for r in results if r.kind is Kind.MORNING), None)
    if morning is None:
        console.print("[red]no reading came out: the strap sent no beats?[/]")
        return 1
    f = morning.fields
    if f.get("accepted"):
        console.print(
            f"[bold green]reading accepted[/]: lnRMSSD {f['ln_rmssd']:.2f} "
            f"(RMSSD {f['rmssd_ms']:.0f} ms), resting HR {f['resting_hr_bpm']:.0f} bpm, "
            f"artefacts {f['artifacts_pct']:.1f}%"
        )
        low, high = f.get("ln_rmssd_band_low"), f.get("ln_rmssd_band_high")
        if isinstance(low, float) and isinstance(high, float):
            console.print(
                f"normal band {low:.2f}–{high:.2f}; 7-day mean "
                f"{f.get('ln_rmssd_7d_mean') or float('nan'):.2f}"
            )
        else:
            console.print("no baseline yet (it needs 14 valid mornings in the last 5 weeks)")
    else:
        console.print(f"[bold red]reading rejected[/]: {f.get('reject_reason')}")
    print_alerts(console, results)
    return 0 if f.get("accepted") else 1
