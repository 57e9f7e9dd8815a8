"""What the long-running commands (demo, run, replay, morning, grip-test) share.

* :class:`SpeedClock` — emulated wall time for accelerated emulators: record timestamps,
  effort timing and recovery times stay physiological while the demo runs X× faster;
* :func:`emulated_athlete_devices` — an athlete's emulated strap, Moxy and power meter on an
  :class:`~devices.emulated.world.EmulatedWorld`, with the production drivers attached;
* :func:`running` — a pipeline (and its live view) running with Ctrl-C / SIGTERM asking it
  to stop, stopped and flushed on leaving;
* :func:`run_for` — run a pipeline with its view until a duration passes or a signal stops it;
* :func:`load_emulated_scenario` — ``--emulated-scenario FILE`` read and checked against the
  athletes it may name (``run``, ``morning``, ``grip-test``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devices.drivers import DeviceDriver, HeartRateDriver, MoxyDriver, PowerMeterDriver
from streamer.app.live_view import LiveView
from streamer.app.pipeline import Pipeline, ResultsNotStoredError, install_signal_handlers
from streamer.errors import CliError

if TYPE_CHECKING:  # Bumble is imported only when emulators are used (it costs ~30 MB)
    from devices.emulated import EmulatedWorld
    from devices.emulated.scenario import Scenario


def load_emulated_scenario(
    path: Path, *, emulated: bool, athletes: Collection[str], where: str
) -> Scenario:
    """The scenario of ``--emulated-scenario PATH``; :class:`CliError` (one line naming the
    file and the key) when it cannot be used, is given without ``--emulated``, or names an
    athlete not among ``athletes`` (those of ``where``: the config, or ``--athlete``)."""
    if not emulated:
        raise CliError("--emulated-scenario: only emulated devices follow one; add --emulated")
    from devices.emulated.scenario import Scenario, ScenarioError

    try:
        scenario = Scenario.load(path)
    except ScenarioError as exc:
        raise CliError(f"--emulated-scenario {exc}") from None
    unknown = sorted(set(scenario.athletes) - set(athletes))
    if unknown:
        raise CliError(
            f"{scenario.source}: athletes.{unknown[0]} is no athlete of {where} "
            f"({', '.join(sorted(athletes)) or 'none'})"
        )
    return scenario


class SpeedClock:
    """Wall-clock nanoseconds that run ``speed`` times faster than real time from now."""

    def __init__(self, speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self._t0_ns = time.time_ns()
        self._m0_ns = time.monotonic_ns()

    def now_ns(self) -> int:
        """Emulated time, ns since the epoch."""
        return self._t0_ns + round((time.monotonic_ns() - self._m0_ns) * self.speed)


@dataclass(frozen=True, slots=True)
class EmulatedDevice:
    """An emulated peripheral, its device id (topic segment) and the driver reading it."""

    device_id: str
    peripheral: Any
    driver: DeviceDriver


async def emulated_athlete_devices(
    world: EmulatedWorld,
    pipeline: Pipeline,
    athlete: str,
    *,
    index: int,
    speed: float,
    clock: SpeedClock,
    smo2_recovery_tau_s: float = 25.0,
) -> list[EmulatedDevice]:
    """Put an athlete's strap, Moxy and power meter on ``world`` and drive them with the
    production drivers (through bleak and the Bumble backend) into ``pipeline``."""
    from devices.emulated import ChestStrap, MoxySensor, PowerMeter
    from devices.emulated.signals import DEFAULT_SCHEDULE, RRParameters, SmO2Parameters
    from streamer.demo.history import MOXY, POWER, STRAP

    seed = 1000 + 10 * index
    peripherals: list[tuple[str, Any, type[DeviceDriver]]] = [
        (
            STRAP,
            ChestStrap(
                f"H10 {athlete}",
                speed=speed,
                seed=seed,
                rr_params=RRParameters(
                    mean_hr_bpm=62.0 + 3 * index, rmssd_ms=45.0, ectopic_rate=0.003
                ),
            ),
            HeartRateDriver,
        ),
        (
            MOXY,
            MoxySensor(
                f"Moxy {athlete}",
                speed=speed,
                seed=seed + 1,
                schedule=DEFAULT_SCHEDULE,
                params=SmO2Parameters(recovery_tau_s=smo2_recovery_tau_s),
            ),
            MoxyDriver,
        ),
        (
            POWER,
            PowerMeter(f"Power {athlete}", speed=speed, seed=seed + 2, schedule=DEFAULT_SCHEDULE),
            PowerMeterDriver,
        ),
    ]
    out = []
    for device_id, peripheral, driver_cls in peripherals:
        await world.add(peripheral)
        driver = driver_cls(
            peripheral.address,
            name=f"{athlete}/{device_id}",
            client_kwargs=world.client_kwargs,
            scanner_kwargs=world.scanner_kwargs,
            sink=pipeline.ingest_for(athlete, device_id),
            clock_ns=clock.now_ns,
        )
        pipeline.add_source(driver)
        out.append(EmulatedDevice(device_id, peripheral, driver))
    return out


@contextlib.asynccontextmanager
async def running(
    pipeline: Pipeline, view: LiveView | None = None
) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``pipeline`` as a task (yielded) and ``view`` beside it, SIGINT and SIGTERM asking
    the pipeline to stop; on leaving, stop it and wait while it flushes to the sinks (its
    errors are not raised here, except :class:`ResultsNotStoredError`: a command must not
    end as if results were stored), then stop the view and remove the signal handlers."""
    undo = install_signal_handlers(pipeline)
    task = asyncio.create_task(pipeline.run(), name="pipeline")
    view_task = start_view(view) if view is not None else None
    try:
        yield task
    finally:
        pipeline.stop()
        lost: ResultsNotStoredError | None = None
        try:
            with contextlib.suppress(Exception):
                try:
                    await task
                except ResultsNotStoredError as exc:
                    lost = exc
        finally:
            if view_task is not None:
                await stop_view(view_task)
            undo()
        if lost is not None:
            raise lost


async def run_for(
    pipeline: Pipeline, duration_s: float | None, on_tick: Callable[[], None] | None = None
) -> None:
    """Wait until ``duration_s`` real seconds pass (None: for ever) or the pipeline is asked
    to stop (signal); then ask it to stop."""
    loop = asyncio.get_running_loop()
    deadline = None if duration_s is None else loop.time() + duration_s
    while not pipeline.stopping and (deadline is None or loop.time() < deadline):
        await asyncio.sleep(0.1)
        if on_tick is not None:
            on_tick()
    pipeline.stop()


async def stop_view(view_task: asyncio.Task[None]) -> None:
    """Cancel the view task (it prints its final state) and wait for it."""
    view_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await view_task


def start_view(view: LiveView) -> asyncio.Task[None]:
    """Run ``view`` as a task."""
    return asyncio.create_task(view.run(), name="live view")


async def wait_connected(
    driver: DeviceDriver,
    timeout_s: float,
    what: str,
    stopping: Callable[[], bool] = lambda: False,
) -> None:
    """Wait until ``driver`` has a subscribed link, or ``stopping()`` says a signal asked
    to stop (then return at once: the caller sees it stopping), or raise a CliError saying
    what to do."""
    from streamer.errors import CliError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not driver.connected and not stopping():
        adapter = driver.status.adapter_error
        if adapter is not None:
            # No device can connect without an adapter: say so now, not after the timeout.
            raise CliError(adapter)
        if loop.time() > deadline:
            status = driver.status
            raise CliError(
                f"{what} {driver.address} did not connect within {timeout_s:.0f} s"
                + (f" ({status.last_error})" if status.last_error else "")
                + "; wake it (wear the strap / squeeze the dynamometer), check the address "
                "with `redox-streamer scan`, and close other apps connected to it"
            )
        await asyncio.sleep(0.05)
