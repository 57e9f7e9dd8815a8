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
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from devices.drivers import HeartRateDriver
from devices.kinds import DeviceKind
from devices.registry import DeviceRegistry
from processors import physiology as ph
from streamer.app.assembly import App
from streamer.app.guided import (
    EMULATED_STORE_FILENAME,
    GuidedSession,
    emulated_store_path,
    guided_session,
    kept_line,
    print_alerts,
    progress_bars,
    tick_until,
)
from streamer.app.runtime import load_emulated_scenario
from streamer.athlete import AthleteState, MorningEnd, MorningStart
from streamer.config import Config, DeviceConfig, load_config
from streamer.errors import CliError
from streamer.results import Kind, Result
from streamer.store_lock import hold_devices, hold_store

if TYPE_CHECKING:  # Bumble is imported only with --emulated
    from devices.emulated import ChestStrap
    from devices.emulated.scenario import DayState

DESCRIPTION = """\
Take the morning reading: on waking, lying still, chest strap on. The first
--stabilisation seconds are discarded, the next --span seconds are analysed (artefacts and
ectopic beats corrected; a reading with too many is rejected with the reason, never stored
as a number). The result joins the athlete's daily trend; the trend rules run at once.
"""

EPILOG = f"""\
examples:
  redox-streamer morning                          the only athlete in the config
  redox-streamer morning --athlete alice
  redox-streamer morning --emulated --speed 50    an emulated strap, 50x faster

The strap is the athlete's configured or paired one (`redox-streamer pair add`). The
reading is kept in the config's store (with --emulated and no --config: in
{EMULATED_STORE_FILENAME} in the user data dir, apart from real readings; repeated
emulated mornings build a baseline there) and sent to MQTT / InfluxDB when configured.
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
    """``--athlete --config --registry --store --emulated --speed`` (morning, grip-test)."""
    parser.add_argument("--athlete", metavar="ID", help="athlete id (default: the only one)")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="config file (default: $REDOX_CONFIG or the user config dir; with --emulated, "
        "none unless given)",
    )
    parser.add_argument(
        "--registry",
        type=Path,
        metavar="FILE",
        help="paired-devices registry (default: the user config dir)",
    )
    parser.add_argument(
        "--store",
        type=Path,
        metavar="PATH",
        help="SQLite store the results are kept in (default: the config's; with --emulated "
        f"and no --config, {EMULATED_STORE_FILENAME} beside it, apart from real readings)",
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
    parser.add_argument(
        "--emulated-scenario",
        type=Path,
        metavar="FILE",
        help="with --emulated: the athlete's body today from a scenario file (as `run "
        "--emulated-scenario`: heart rate and RMSSD, grip MVC and post-session drop)",
    )


@dataclass(frozen=True, slots=True)
class GuidedSetup:
    """What a guided command runs with: the app (store, sinks, athlete factory), the
    athlete, the device (address, or the advertised name to scan for; both None with
    ``--emulated`` and no device configured), where the results are kept, and the
    athlete's state today from ``--emulated-scenario`` (None without one)."""

    app: App
    athlete: str
    address: str | None
    name: str | None
    store_path: Path
    today: DayState | None = None


@contextlib.contextmanager
def guided_setup(args: argparse.Namespace, kind: DeviceKind) -> Iterator[GuidedSetup]:
    """The :class:`GuidedSetup` the flags ask for: the config's store, sinks, thresholds
    and device of ``kind`` (configured, or paired in the registry) — or, ``--emulated``
    without ``--config``, no sinks and :func:`~streamer.app.guided.emulated_store_path`."""
    if not args.speed > 0 or (args.speed != 1.0 and not args.emulated):
        raise CliError(f"--speed {args.speed:g}: only with --emulated, and > 0")
    if args.emulated_scenario is not None and not args.emulated:
        raise CliError("--emulated-scenario: only emulated devices follow one; add --emulated")
    config: Config | None = None
    if args.config is not None or not args.emulated:
        config = load_config(args.config)
    athlete = args.athlete
    address: str | None = None
    name: str | None = None
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
        device = _device(config, args.registry, athlete, kind)
        if device is None and not args.emulated:
            raise CliError(
                f"athlete {athlete!r} has no {kind.value} device in {config.source} nor "
                f"paired: `redox-streamer pair add --athlete {athlete} --kind {kind.value}` "
                "(see `redox-streamer scan`)"
            )
        if device is not None:
            address, name = device.address, device.name
    athlete = athlete or "athlete1"
    today: DayState | None = None
    if args.emulated_scenario is not None:
        scenario = load_emulated_scenario(
            args.emulated_scenario,
            emulated=args.emulated,
            athletes=[athlete],
            where=f"this {kind.value} test (--athlete {athlete})",
        )
        # Day 0 is today (UTC, as the store's days): the guided session's clock starts now.
        day = dt.datetime.now(dt.UTC).date()
        today = scenario.day(athlete, day, day)
    if args.store is not None:
        path: Path = args.store
    elif config is not None:
        path = config.store_path
    else:
        path = emulated_store_path()
        path.parent.mkdir(parents=True, exist_ok=True)
    command = "morning" if kind is DeviceKind.STRAP else "grip-test"
    # The device too: a `run` or another command of another config may hold it.
    radio = {address: f"{athlete}/{kind.value}"} if address and not args.emulated else {}
    with (
        hold_store(path, command),
        hold_devices(radio, command),
        App.from_config(config or Config(), store=path) as app,
    ):
        yield GuidedSetup(app, athlete, address, name, path, today)


def _device(
    config: Config, registry_path: Path | None, athlete: str, kind: DeviceKind
) -> DeviceConfig | None:
    """The athlete's ``kind`` device: the config's first, else the first paired one."""
    from streamer.commands.run import paired_devices

    configured = config.athlete(athlete).device(kind)
    if configured is not None:
        return configured
    devices = paired_devices(config, DeviceRegistry.load(registry_path))
    return next((d for d in devices.get(athlete, []) if d.kind is kind), None)


@contextlib.contextmanager
def open_setup(args: argparse.Namespace, kind: DeviceKind) -> Iterator[GuidedSetup]:
    """The :func:`guided_setup` of a device that must be reached by its address (None only
    when emulated): a device known only by name needs its address here."""
    with guided_setup(args, kind) as setup:
        if setup.address is None and setup.name is not None and not args.emulated:
            raise CliError(
                f"athlete {setup.athlete!r}: the {kind.value} device has no address — find "
                "it with `redox-streamer scan` and pair it with `redox-streamer pair add`"
            )
        yield setup


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer morning``."""
    if not args.stabilisation >= 0 or not args.span >= 30:
        raise CliError("--stabilisation must be >= 0 s and --span >= 30 s")
    with guided_setup(args, DeviceKind.STRAP) as setup:
        return asyncio.run(_morning(args, setup))


async def _morning(args: argparse.Namespace, setup: GuidedSetup) -> int:
    app, athlete, address = setup.app, setup.athlete, setup.address
    state = app.athlete(
        athlete, morning_stabilisation_s=args.stabilisation, morning_span_s=args.span
    )

    def strap() -> ChestStrap:
        from devices.emulated import ChestStrap
        from devices.emulated.scenario import peripheral_options

        options = {} if setup.today is None else peripheral_options(ChestStrap, setup.today)
        return ChestStrap(f"H10 {athlete}", speed=args.speed, address=address, **options)

    async with guided_session(
        app,
        state,
        HeartRateDriver,
        device_id="strap",
        what="the strap",
        address=address,
        speed=args.speed,
        emulator=strap if args.emulated else None,
        advertised_name=setup.name,
    ) as session:
        session.console.print("lie still and breathe normally.")
        session.pipeline.offer(athlete, "strap", MorningStart(session.clock.now_ns()))
        completed = await _countdown(session, state, args)
        if not completed:
            session.console.print("[yellow]stopped before the end: no reading taken[/]")
            return 130
        session.pipeline.offer(athlete, "strap", MorningEnd(session.clock.now_ns()))
        await session.pipeline.join()  # the reading is in the store (or failed) from here
        code = _report(session.console, session.results)
        if any(r.kind is Kind.MORNING for r in session.results):
            line = kept_line(session.pipeline, setup.store_path, "the reading")
            session.console.print(line, soft_wrap=True)  # a path is copied, not wrapped
    return code


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
            band = (
                "provisional band" if f.get("baseline_status") == "provisional" else "normal band"
            )
            console.print(
                f"{band} {low:.2f}–{high:.2f}; 7-day mean "
                f"{f.get('ln_rmssd_7d_mean') or float('nan'):.2f}"
            )
        if f.get("baseline_note"):
            console.print(str(f["baseline_note"]))
    else:
        console.print(f"[bold red]reading rejected[/]: {f.get('reject_reason')}")
    print_alerts(console, results)
    return 0 if f.get("accepted") else 1
