"""``redox-streamer grip-test``: the guided grip test around a training session.

Before the session: tare (a Progressor), then maximal squeezes (the best is the MVC). After
it: the same test at each of ``--post`` minutes (default 0, 5, 15, 30), with a countdown
between. Each test is measured as it ends — shown at once and kept in the store — and the
whole test by the processors (squeezes found in the force trace, drop against MVC, judged
against the athlete's own test noise) and classified: normal, ``grip_signal`` (a drop that
recovers within 15 min: the good kind) or ``grip_spillover`` (still down at 30 min: pull
back). Ctrl-C keeps what finished: the MVC and the post tests done so far.

The dynamometer is a Tindeq Progressor or an Activ5: the config's ``model``, its name, or —
given by address alone — the device itself says which. With ``--emulated`` an emulated one
(``--model``, default a Progressor) squeezes by itself and the session is replaced by a
post-session drop you choose.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from devices.discovery import identify_model
from devices.drivers import DeviceDriver, ResolvingDriver, TindeqDriver, driver_for
from devices.kinds import DeviceKind
from devices.models import DeviceModel, candidate_models, models_of
from processors import physiology as ph
from streamer.app.assembly import App
from streamer.app.guided import (
    CONNECT_TIMEOUT_S,
    GuidedSession,
    guided_session,
    print_alerts,
    progress_bars,
    tick_until,
)
from streamer.athlete import AthleteState, GripEnd, GripPhase, GripPhaseEnd
from streamer.athlete.grip import GRIP_PROGRESS, GripStep
from streamer.commands.morning import add_common_arguments, open_setup
from streamer.errors import CliError
from streamer.results import Kind, Result
from streamer.store import default_store_path

if TYPE_CHECKING:  # Bumble is imported only with --emulated
    from devices.emulated import EmulatedPeripheral

SQUEEZE_WINDOW_S = 8.0
"""Seconds of streaming per squeeze (hold ~3–5 s, release, a breath)."""

EMULATED_STORE_NAME = "emulated.sqlite3"
"""The store of ``--emulated`` without ``--config`` or ``--store``, beside the default one:
emulated tests are kept, but never mixed into a real athlete's history."""

DESCRIPTION = """\
Guided grip test with a Tindeq Progressor or an Activ5: maximal squeezes before your
session (MVC), then the same test after it at each --post minute. Each test's result is
shown and kept in the store as it ends (Ctrl-C keeps what finished). The drop from MVC,
judged against your own test-to-test noise, says whether the session's stress was the good
kind (grip_signal: recovered within 15 min) or spilled over (grip_spillover: still down at
30 min: pull back).

Results go to the config's store (or --store). With --emulated and no --config they go to
emulated.sqlite3 in the user data dir (beside the default store), never to a real
athlete's history.
"""

EPILOG = """\
examples:
  redox-streamer grip-test                               the dynamometer of the only athlete
  redox-streamer grip-test --post 0,10,30
  redox-streamer grip-test --emulated --speed 100 --emulated-drop 0.2 --emulated-recovery-min 5
  redox-streamer grip-test --emulated --model activ5 --speed 20
"""


def register(subparsers: Any) -> None:
    """Add the ``grip-test`` sub-command."""
    parser = subparsers.add_parser(
        "grip-test",
        help="guided grip test before and after a session (Tindeq, Activ5)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--model",
        metavar="MODEL",
        help=f"which dynamometer: {' or '.join(m.name for m in models_of(DeviceKind.GRIP))} "
        "(default: the config's, else the device says; with --emulated: the one emulated, "
        f"default {models_of(DeviceKind.GRIP)[0].name})",
    )
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


def emulated_store_path() -> Path:
    """Where ``grip-test --emulated`` keeps results without ``--config`` or ``--store``."""
    return default_store_path().with_name(EMULATED_STORE_NAME)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer grip-test``."""
    minutes = parse_minutes(args.post)
    if args.trials < 1 or args.post_trials < 1:
        raise CliError("--trials and --post-trials need at least one squeeze")
    if not 0 <= args.emulated_drop < 0.9 or args.emulated_recovery_min < 0:
        raise CliError("--emulated-drop must be within 0..0.9 and --emulated-recovery-min >= 0")
    if args.model is not None:
        try:
            candidate_models(DeviceKind.GRIP, model=args.model)
        except ValueError as exc:
            raise CliError(f"--model: {exc}") from None
    if args.emulated and args.config is None and args.store is None:
        args.store = emulated_store_path()
    with open_setup(args, DeviceKind.GRIP) as setup:
        today = setup.today
        if today is not None:
            # The scenario's athlete today: her MVC, and the drop her session leaves (else
            # the --emulated-drop and --emulated-recovery-min flags').
            args.emulated_peak_kg = today.grip_mvc_kg
            if today.grip_drop is not None:
                args.emulated_drop = today.grip_drop
                tau_s = today.grip_recovery_tau_s
                args.emulated_recovery_min = 0.0 if tau_s is None else tau_s / 60.0
        return asyncio.run(_grip(args, minutes, setup.app, setup.athlete, setup.address))


def _device(
    args: argparse.Namespace, app: App, athlete: str
) -> tuple[str, tuple[DeviceModel, ...]]:
    """The grip device's id (topic segment) and the models it may be."""
    configured = next((a for a in app.config.athletes if a.id == athlete), None)
    device = configured.device(DeviceKind.GRIP) if configured is not None else None
    if args.model is not None:
        models = candidate_models(DeviceKind.GRIP, model=args.model)
    elif device is not None:
        models = device.device_models
    else:  # --emulated without a configured device: emulate the kind's first model
        models = models_of(DeviceKind.GRIP)[:1]
    if device is not None:
        return device.id, models
    return (models[0].name if len(models) == 1 else DeviceKind.GRIP.value), models


async def _grip(
    args: argparse.Namespace,
    minutes: list[float],
    app: App,
    athlete: str,
    address: str | None,
) -> int:
    state = app.athlete(athlete)
    device_id, models = _device(args, app, athlete)
    if not args.emulated and len(models) > 1:
        # Asked now, not on the first squeeze: a wrong address or a dynamometer that is
        # neither is one line naming both (DeviceError), before the athlete starts.
        assert address is not None  # open_setup refuses a real device without one
        either = " or ".join(m.name for m in models)
        print(f"asking the dynamometer {address} whether it is a {either} …")
        model, _ = await identify_model(address, models, timeout_s=CONNECT_TIMEOUT_S)
        models = (model,)
    emulated_model = models[0]  # a device left to tell is emulated as the kind's first

    def emulator() -> EmulatedPeripheral:
        from devices.emulated import emulator_class

        cls = emulator_class(emulated_model)
        peak = getattr(args, "emulated_peak_kg", None)
        options = {} if peak is None else {"peak_kg": peak}
        return cls(  # type: ignore[call-arg]
            emulated_model.emulated_name, speed=args.speed, address=address, rest_s=3.0, **options
        )

    def make_driver(device: str, **kwargs: Any) -> DeviceDriver:
        if any(m.driver_options.get("stream") for m in models):
            kwargs["stream"] = False  # a Progressor streams only during a test phase
        return driver_for(models, device, **kwargs)

    async with guided_session(
        app,
        state,
        make_driver,
        device_id=device_id,
        what="the dynamometer",
        address=address,
        speed=args.speed,
        emulator=emulator if args.emulated else None,
    ) as session:
        test = _Test(session, state, athlete, device_id, args)
        session.console.print(
            f"{test.dynamometer.model.title} connected; each test is kept in "
            f"{app.store.path} as it ends"
        )
        finished = await test.run(minutes)
        if finished:
            session.pipeline.offer(athlete, device_id, GripEnd(session.clock.now_ns()))
            await session.pipeline.join()
    # Leaving the session stopped the pipeline: an interrupted test was measured on what
    # finished (AthleteState.close) and kept with the rest.
    if test.no_mvc:
        session.console.print("[red]no squeeze found in the MVC trials: squeeze hard, retry[/]")
        return 1
    if not finished:
        return _stopped(session.console, state, session.results, app.store.path)
    return _report(session.console, session.results)


class _Test:
    """The steps of one guided test on a connected dynamometer."""

    def __init__(
        self,
        session: GuidedSession[DeviceDriver, EmulatedPeripheral],
        state: AthleteState,
        athlete: str,
        device_id: str,
        args: argparse.Namespace,
    ) -> None:
        self.session = session
        self.state = state
        self.athlete = athlete
        self.device_id = device_id
        self.args = args
        driver = session.driver
        inner = driver.driver if isinstance(driver, ResolvingDriver) else driver
        assert inner is not None  # connected: the model is known
        self.dynamometer: DeviceDriver = inner
        # A Progressor is tared and told to stream; an Activ5 streams all the time and the
        # protocol keeps only what falls inside a phase.
        self.progressor = inner if isinstance(inner, TindeqDriver) else None
        self.peak_kg = float(getattr(session.emulator, "peak_kg", 0.0))
        self.session_end_ns = 0
        self.drop_start_ns = 0  # when an emulated Activ5's session drop began
        self.no_mvc = False  # the MVC trials held no squeeze: nothing to measure against

    async def run(self, minutes: list[float]) -> bool:
        """MVC, the session, the post tests; False when stopped (Ctrl-C, SIGTERM)."""
        if self.progressor is not None:
            await self.progressor.tare()
        mvc = await self.phase(None, self.args.trials)
        if mvc is None:
            return False
        if mvc.best_kg is None:
            self.no_mvc = True
            return False
        await self.session_break()
        for minute in minutes:
            due = self.session_end_ns + round(minute * 60e9)
            if not await self.wait_until(due, f"test at +{minute:g} min"):
                return False
            if await self.phase(minute, self.args.post_trials) is None:
                return False
        return True

    async def session_break(self) -> None:
        console, emulator = self.session.console, self.session.emulator
        if emulator is None:
            console.print("now train. Press Enter when the session is over.")
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        else:
            drop, tau_min = self.args.emulated_drop, self.args.emulated_recovery_min
            console.print(
                f"(emulated session: grip {drop:.0%} down, recovering with τ {tau_min:g} min)"
            )
            start_drop = getattr(emulator, "start_session_drop", None)
            if start_drop is not None:  # a Progressor emulates the drop itself
                start_drop(drop, tau_min * 60.0 or math.inf)
            else:
                # An Activ5 takes the peak of when a squeeze starts (emulate_drop): the
                # emulated session lasts one squeeze, so that the one under way ends in it.
                self.drop_start_ns = self.session.clock.now_ns()
                due = self.drop_start_ns + round(SQUEEZE_WINDOW_S * 1e9)
                await self.wait_until(due, "emulated session")
        self.session_end_ns = self.session.clock.now_ns()

    def emulate_drop(self) -> None:
        """An emulated Activ5 squeezes at the peak the session left by now (called on every
        tick after the session: a squeeze takes the peak of when it starts)."""
        emulator = self.session.emulator
        if emulator is None or not self.drop_start_ns:
            return
        from devices.emulated.signals import grip_peak_after_session

        tau_s = self.args.emulated_recovery_min * 60.0 or math.inf
        since_s = (self.session.clock.now_ns() - self.drop_start_ns) / 1e9
        peak = grip_peak_after_session(self.peak_kg, self.args.emulated_drop, since_s, tau_s)
        setattr(emulator, "peak_kg", peak)  # noqa: B010 (an Activ5Sensor attribute)

    async def phase(self, minute: float | None, squeezes: int) -> GripStep | None:
        """One test: squeezes, then its result shown (and kept by the athlete's state);
        None when stopped before it finished."""
        session, clock = self.session, self.session.clock
        label = "MVC (before the session)" if minute is None else f"+{minute:g} min"
        session.console.print(
            f"[bold]{label}[/]: {squeezes} maximal squeeze(s), ~4 s each, relax between"
        )
        session.pipeline.offer(self.athlete, self.device_id, GripPhase(clock.now_ns(), minute))
        if self.progressor is not None:
            await self.progressor.start_streaming()
        try:
            done = await self.wait_until(
                clock.now_ns() + round(squeezes * SQUEEZE_WINDOW_S * 1e9),
                "squeeze!",
                show_force=True,
            )
        finally:
            if self.progressor is not None:
                await self.progressor.stop_streaming()
        if not done:
            return None
        session.pipeline.offer(self.athlete, self.device_id, GripPhaseEnd(clock.now_ns()))
        await session.pipeline.join()
        step = next(s for s in reversed(self.state.grip.steps) if s.minute == minute)
        session.console.print(_step_line(step))
        return step

    async def wait_until(self, due_ns: int, label: str, *, show_force: bool = False) -> bool:
        clock, pipeline = self.session.clock, self.session.pipeline
        start = clock.now_ns()
        total = max(1e-9, (due_ns - start) / 1e9)
        snapshot = self.state.snapshot
        with progress_bars(self.session.console, transient=True) as progress:
            bar = progress.add_task(f"{label:<18}", total=total, info="")

            def done() -> bool:
                self.emulate_drop()
                now = clock.now_ns()
                force = snapshot.force_kg
                info = f"{force:5.1f} kg" if show_force and force is not None else ""
                progress.update(bar, completed=min(total, (now - start) / 1e9), info=info)
                return now >= due_ns

            return await tick_until(pipeline, done, 0.05)


def _step_line(step: GripStep) -> str:
    """One test's result as the athlete reads it."""
    label = "MVC" if step.minute is None else f"+{step.minute:g} min"
    if step.best_kg is None:
        return f"{label}: [yellow]no squeeze found[/] — was the dynamometer squeezed?"
    peaks = ", ".join(f"{p:.1f}" for p in step.peaks_kg)
    line = f"{label}: best {step.best_kg:.1f} kg (squeezes {peaks} kg)"
    if step.drop_pct is not None:
        way = "below" if step.drop_pct >= 0 else "above"
        line += f", {abs(step.drop_pct):.1f}% {way} your MVC"
    return line + " — kept"


def _stopped(console: Console, state: AthleteState, results: list[Result], store: object) -> int:
    """What a stopped test kept, said; exit status 130 (interrupted)."""
    steps = state.grip.steps
    if any(r.kind is Kind.GRIP for r in results):
        done = ", ".join(f"+{s.minute:g}" for s in steps if s.minute is not None)
        console.print(
            f"[yellow]stopped before the end[/]: the test is kept in {store}, classified on "
            f"the tests that finished (MVC and {done} min)"
        )
        _report(console, results)
    elif any(s.minute is None and s.best_kg is not None for s in steps):
        console.print(
            f"[yellow]stopped before a post-session test finished[/]: the MVC is kept in "
            f"{store} ({GRIP_PROGRESS} of the athlete); a class needs a post-session test"
        )
    else:
        console.print("[yellow]stopped before the MVC trials finished: nothing recorded[/]")
    return 130


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
