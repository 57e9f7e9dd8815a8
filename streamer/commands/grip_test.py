"""``redox-streamer grip-test``: the guided grip test around a training session.

Before the session: tare, then maximal squeezes (the best is the MVC). After it: the same
test at each of ``--post`` minutes (default 0, 5, 15, 30), with a countdown between. The
test is measured by the processors (squeezes found in the force trace, drop against MVC,
judged against the athlete's own test noise) and classified: normal, ``grip_signal`` (a
drop that recovers within 15 min: the good kind) or ``grip_spillover`` (still down at 30
min: pull back). With ``--emulated`` an emulated Tindeq squeezes by itself and the session
is replaced by a post-session drop you choose.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from devices.drivers import TindeqDriver
from devices.kinds import DeviceKind
from processors import physiology as ph
from streamer.athlete import AthleteState, GripEnd, GripPhase
from streamer.commands.morning import add_common_arguments, open_setup
from streamer.errors import CliError
from streamer.pipeline import Pipeline, Sink, install_signal_handlers
from streamer.results import Kind, Result
from streamer.runtime import SpeedClock, wait_connected

CONNECT_TIMEOUT_S = 30.0
SQUEEZE_WINDOW_S = 8.0
"""Seconds of streaming per squeeze (hold ~3–5 s, release, a breath)."""

DESCRIPTION = """\
Guided grip test: maximal squeezes before your session (MVC), then the same test after it
at each --post minute. The drop from MVC, judged against your own test-to-test noise,
says whether the session's stress was the good kind (grip_signal: recovered within 15 min)
or spilled over (grip_spillover: still down at 30 min: pull back).
"""

EPILOG = """\
examples:
  redox-streamer grip-test                               Tindeq of the only athlete
  redox-streamer grip-test --post 0,10,30
  redox-streamer grip-test --emulated --speed 100 --emulated-drop 0.2 --emulated-recovery-min 5
"""


def register(subparsers: Any) -> None:
    """Add the ``grip-test`` sub-command."""
    parser = subparsers.add_parser(
        "grip-test", help="guided grip test before and after a session (Tindeq)",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(parser)
    parser.add_argument("--post", default="0,5,15,30", metavar="MINUTES",
                        help="minutes after the session to test (default 0,5,15,30)")
    parser.add_argument("--trials", type=int, default=ph.GRIP_MVC_TRIALS, metavar="N",
                        help=f"maximal squeezes before the session (default "
                        f"{ph.GRIP_MVC_TRIALS})")
    parser.add_argument("--post-trials", type=int, default=2, metavar="N",
                        help="squeezes at each post-session test (default 2)")
    parser.add_argument("--emulated-drop", type=float, default=0.15, metavar="F",
                        help="with --emulated: grip drop right after the session (0..0.9)")
    parser.add_argument("--emulated-recovery-min", type=float, default=4.0, metavar="M",
                        help="with --emulated: recovery time constant in minutes "
                        "(0 = no recovery)")
    parser.set_defaults(handler=run)


def parse_minutes(text: str) -> list[float]:
    """``"0,5,15,30"`` → [0, 5, 15, 30]; CliError naming the bad part."""
    try:
        minutes = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CliError(f"--post {text!r}: give minutes separated by commas, e.g. 0,5,15,30"
                       ) from None
    if not minutes or any(not math.isfinite(m) or m < 0 for m in minutes) \
            or minutes != sorted(set(minutes)):
        raise CliError(f"--post {text!r}: give increasing minutes >= 0, e.g. 0,5,15,30")
    return minutes


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer grip-test``."""
    minutes = parse_minutes(args.post)
    if args.trials < 1 or args.post_trials < 1:
        raise CliError("--trials and --post-trials need at least one squeeze")
    if not 0 <= args.emulated_drop < 0.9 or args.emulated_recovery_min < 0:
        raise CliError("--emulated-drop must be within 0..0.9 and --emulated-recovery-min >= 0")
    with open_setup(args, DeviceKind.GRIP) as (athlete, address, store, sinks, thresholds):
        return asyncio.run(_grip(args, minutes, athlete, address, store, sinks, thresholds))


async def _grip(args: argparse.Namespace, minutes: list[float], athlete: str,
                address: str | None, store: Any, sinks: list[Sink], thresholds: Any) -> int:
    console = Console()
    clock = SpeedClock(args.speed)
    results: list[Result] = []
    state = AthleteState(athlete, store, thresholds)
    pipeline = Pipeline(lambda a: state, store, sinks, athletes=[athlete],
                        on_result=results.append)
    async with contextlib.AsyncExitStack() as stack:
        kwargs: dict[str, Any] = {}
        emulator = None
        if args.emulated:
            from devices.emulated import EmulatedWorld, TindeqProgressor

            world = await stack.enter_async_context(EmulatedWorld())
            emulator = await world.add(TindeqProgressor(f"Progressor {athlete}", speed=args.speed,
                                                        address=address, rest_s=3.0))
            address = emulator.address
            kwargs = {"client_kwargs": world.client_kwargs,
                      "scanner_kwargs": world.scanner_kwargs}
        assert address is not None
        driver = TindeqDriver(address, name=f"{athlete}/tindeq", clock_ns=clock.now_ns,
                              sink=pipeline.ingest_for(athlete, "tindeq"), **kwargs)
        pipeline.add_source(driver)
        undo = install_signal_handlers(pipeline)
        task = asyncio.create_task(pipeline.run())
        try:
            console.print(f"connecting to the dynamometer {address} …")
            await wait_connected(driver, CONNECT_TIMEOUT_S, "the dynamometer")
            await driver.tare()
            ok = await _phase(console, pipeline, driver, clock, athlete, None, args.trials)
            if ok:
                if emulator is not None:
                    tau = args.emulated_recovery_min * 60.0 or math.inf
                    emulator.start_session_drop(args.emulated_drop, tau)
                    console.print(f"(emulated session: grip {args.emulated_drop:.0%} down, "
                                  f"recovering with τ {args.emulated_recovery_min:g} min)")
                else:
                    console.print("now train. Press Enter when the session is over.")
                    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
                session_end = clock.now_ns()
            for minute in minutes if ok else []:
                due = session_end + round(minute * 60e9)
                ok = await _wait_until(console, pipeline, clock, due, f"test at +{minute:g} min")
                ok = ok and await _phase(console, pipeline, driver, clock, athlete, minute,
                                         args.post_trials)
                if not ok:
                    break
            if not ok:
                console.print("[yellow]stopped before the end: no test recorded[/]")
                return 130
            pipeline.offer(athlete, "tindeq", GripEnd(clock.now_ns()))
            await pipeline.join()
        finally:
            pipeline.stop()
            with contextlib.suppress(Exception):
                await task
            undo()
    return _report(console, results)


async def _phase(console: Console, pipeline: Pipeline, driver: TindeqDriver, clock: SpeedClock,
                 athlete: str, minute: float | None, squeezes: int) -> bool:
    label = "MVC (before the session)" if minute is None else f"+{minute:g} min"
    console.print(f"[bold]{label}[/]: {squeezes} maximal squeeze(s), ~4 s each, relax between")
    pipeline.offer(athlete, "tindeq", GripPhase(clock.now_ns(), minute))
    await driver.start_streaming()
    try:
        return await _wait_until(console, pipeline, clock,
                                 clock.now_ns() + round(squeezes * SQUEEZE_WINDOW_S * 1e9),
                                 "squeeze!", show_force=True)
    finally:
        await driver.stop_streaming()


async def _wait_until(console: Console, pipeline: Pipeline, clock: SpeedClock, due_ns: int,
                      label: str, *, show_force: bool = False) -> bool:
    start = clock.now_ns()
    total = max(1e-9, (due_ns - start) / 1e9)
    state = pipeline.processor(next(iter(pipeline.athletes)))
    with Progress(TextColumn(f"{label:<18}"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeRemainingColumn(), console=console, transient=True) as progress:
        bar = progress.add_task(label, total=total, info="")
        while not pipeline.stopping:
            now = clock.now_ns()
            info = ""
            if show_force and isinstance(state, AthleteState):
                force = state.snapshot.force_kg
                info = f"{force:5.1f} kg" if force is not None else ""
            progress.update(bar, completed=min(total, (now - start) / 1e9), info=info)
            if now >= due_ns:
                return True
            await asyncio.sleep(0.05)
    return False


def _report(console: Console, results: list[Result]) -> int:
    grip = next((r for r in results if r.kind is Kind.GRIP), None)
    if grip is None:
        console.print("[red]no test came out: no squeeze was found in the force trace[/]")
        return 1
    f = grip.fields
    drops = f.get("drops_pct")
    console.print(f"MVC {f['mvc_kg']:.1f} kg; drops " + ", ".join(
        f"+{m} min {d:.1f}%" for m, d in (drops.items() if isinstance(drops, dict) else [])
        if isinstance(d, float)) + f"; real-drop threshold {f['threshold_pct']:.1f}%")
    colour = {"grip_spillover": "bold red", "grip_signal": "green"}.get(str(f["class"]), "bold")
    console.print(f"class: [{colour}]{f['class']}[/]")
    for r in results:
        if r.kind is Kind.ALERTS:
            event = r.fields["event"]
            if isinstance(event, dict):
                console.print(f"[bold]{event.get('state')}[/] {event.get('rule')}: "
                              f"{event.get('message')} {event.get('advice')}")
    return 0
