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
import math
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console

from devices.drivers import TindeqDriver
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
from streamer.athlete import AthleteState, GripEnd, GripPhase
from streamer.commands.morning import add_common_arguments, open_setup
from streamer.errors import CliError
from streamer.results import Kind, Result

if TYPE_CHECKING:  # Bumble is imported only with --emulated
    from devices.emulated import TindeqProgressor

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
        "grip-test",
        help="guided grip test before and after a session (Tindeq)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--post",
        default="0,5,15,30",
        metavar="MINUTES",
        help="minutes after the session to test (default 0,5,15,30)",
    )
    parser.add_argument(
        "--trials",
        type=int,
        default=ph.GRIP_MVC_TRIALS,
        metavar="N",
        help=f"maximal squeezes before the session (default {ph.GRIP_MVC_TRIALS})",
    )
    parser.add_argument(
        "--post-trials",
        type=int,
        default=2,
        metavar="N",
        help="squeezes at each post-session test (default 2)",
    )
    parser.add_argument(
        "--emulated-drop",
        type=float,
        default=0.15,
        metavar="F",
        help="with --emulated: grip drop right after the session (0..0.9)",
    )
    parser.add_argument(
        "--emulated-recovery-min",
        type=float,
        default=4.0,
        metavar="M",
        help="with --emulated: recovery time constant in minutes (0 = no recovery)",
    )
    parser.set_defaults(handler=run)


def parse_minutes(text: str) -> list[float]:
    """``"0,5,15,30"`` → [0, 5, 15, 30]; CliError naming the bad part."""
    try:
        minutes = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CliError(
            f"--post {text!r}: give minutes separated by commas, e.g. 0,5,15,30"
        ) from None
    if (
        not minutes
        or any(not math.isfinite(m) or m < 0 for m in minutes)
        or minutes != sorted(set(minutes))
    ):
        raise CliError(f"--post {text!r}: give increasing minutes >= 0, e.g. 0,5,15,30")
    return minutes


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer grip-test``."""
    minutes = parse_minutes(args.post)
    if args.trials < 1 or args.post_trials < 1:
        raise CliError("--trials and --post-trials need at least one squeeze")
    if not 0 <= args.emulated_drop < 0.9 or args.emulated_recovery_min < 0:
        raise CliError("--emulated-drop must be within 0..0.9 and --emulated-recovery-min >= 0")
    with open_setup(args, DeviceKind.GRIP) as (app, athlete, address):
        return asyncio.run(_grip(args, minutes, app, athlete, address))


async def _grip(
    args: argparse.Namespace,
    minutes: list[float],
    app: App,
    athlete: str,
    address: str | None,
) -> int:
    state = app.athlete(athlete)

    def progressor() -> TindeqProgressor:
        from devices.emulated import TindeqProgressor

        return TindeqProgressor(
            f"Progressor {athlete}", speed=args.speed, address=address, rest_s=3.0
        )

    async with guided_session(
        app,
        state,
        TindeqDriver,
        device_id="tindeq",
        what="the dynamometer",
        address=address,
        speed=args.speed,
        emulator=progressor if args.emulated else None,
    ) as session:
        console, pipeline, clock = session.console, session.pipeline, session.clock
        await session.driver.tare()
        ok = await _phase(session, athlete, None, args.trials)
        if ok:
            if session.emulator is not None:
                tau = args.emulated_recovery_min * 60.0 or math.inf
                session.emulator.start_session_drop(args.emulated_drop, tau)
                console.print(
                    f"(emulated session: grip {args.emulated_drop:.0%} down, "
                    f"recovering with τ {args.emulated_recovery_min:g} min)"
                )
            else:
                console.print("now train. Press Enter when the session is over.")
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            session_end = clock.now_ns()
        for minute in minutes if ok else []:
            due = session_end + round(minute * 60e9)
            ok = await _wait_until(session, due, f"test at +{minute:g} min")
            ok = ok and await _phase(session, athlete, minute, args.post_trials)
            if not ok:
                break
        if not ok:
            console.print("[yellow]stopped before the end: no test recorded[/]")
            return 130
        pipeline.offer(athlete, "tindeq", GripEnd(clock.now_ns()))
        await pipeline.join()
    return _report(console, session.results)


async def _phase(
    session: GuidedSession[TindeqDriver, TindeqProgressor],
    athlete: str,
    minute: float | None,
    squeezes: int,
) -> bool:
    label = "MVC (before the session)" if minute is None else f"+{minute:g} min"
    session.console.print(
        f"[bold]{label}[/]: {squeezes} maximal squeeze(s), ~4 s each, relax between"
    )
    session.pipeline.offer(athlete, "tindeq", GripPhase(session.clock.now_ns(), minute))
    await session.driver.start_streaming()
    try:
        return await _wait_until(
            session,
            session.clock.now_ns() + round(squeezes * SQUEEZE_WINDOW_S * 1e9),
            "squeeze!",
            show_force=True,
        )
    finally:
        await session.driver.stop_streaming()


async def _wait_until(
    session: GuidedSession[TindeqDriver, TindeqProgressor],
    due_ns: int,
    label: str,
    *,
    show_force: bool = False,
) -> bool:
    clock, pipeline = session.clock, session.pipeline
    start = clock.now_ns()
    total = max(1e-9, (due_ns - start) / 1e9)
    state = pipeline.processor(next(iter(pipeline.athletes)))
    with progress_bars(session.console, transient=True) as progress:
        bar = progress.add_task(f"{label:<18}", total=total, info="")

        def done() -> bool:
            now = clock.now_ns()
            info = ""
            if show_force and isinstance(state, AthleteState):
                force = state.snapshot.force_kg
                info = f"{force:5.1f} kg" if force is not None else ""
            progress.update(bar, completed=min(total, (now - start) / 1e9), info=info)
            return now >= due_ns

        return await tick_until(pipeline, done, 0.05)


def _report(console: Console, results: list[Result]) -> int:
    grip = next((r for r in results if r.kind is Kind.GRIP), None)
    if grip is None:
        console.print("[red]no test came out: no squeeze was found in the force trace[/]")
        return 1
    f = grip.fields
    drops = f.get("drops_pct")
    console.print(
        f"MVC {f['mvc_kg']:.1f} kg; drops "
        + ", ".join(
            f"+{m} min {d:.1f}%"
            for m, d in (drops.items() if isinstance(drops, dict) else [])
            if isinstance(d, float)
        )
        + f"; a drop counts from {f['threshold_pct']:.1f}% "
        + (
            "(your own test noise)"
            if f.get("threshold_basis") == "personal"
            else "(the article's figure until your own test noise is known)"
        )
    )
    colour = {"grip_spillover": "bold red", "grip_signal": "green"}.get(str(f["class"]), "bold")
    console.print(f"class: [{colour}]{f['class']}[/]")
    print_alerts(console, results)
    return 0
