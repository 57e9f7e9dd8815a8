"""What the guided protocols (``morning``, ``grip-test``) share: one athlete, one device.

* :func:`guided_session` — the pipeline for one :class:`~streamer.athlete.AthleteState`,
  the device (an emulator on a virtual link when asked), its production driver and the
  signal handlers (:func:`streamer.runtime.running`); it yields once the driver is
  connected, and leaving it stops the pipeline (flushing the sinks);
* :func:`progress_bars` and :func:`tick_until` — the countdown the athlete watches;
* :func:`print_alerts` — the rules' alerts after the protocol.

The flags both commands take and what they resolve to (the :class:`~streamer.app.App`:
store, sinks, athlete factory; the athlete; the address) are
:func:`streamer.commands.morning.add_common_arguments` and ``open_setup``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from devices.drivers import DeviceDriver
from streamer.app.assembly import App
from streamer.app.pipeline import Pipeline
from streamer.app.runtime import SpeedClock, running, wait_connected
from streamer.athlete import AthleteState
from streamer.results import AlertsPayload, Kind, Result
from streamer.store import default_store_path

if TYPE_CHECKING:  # Bumble is imported only when emulators are used
    from devices.emulated.clock import EmulatedClock
    from devices.emulated.peripheral import EmulatedPeripheral

CONNECT_TIMEOUT_S = 30.0
"""Real seconds a guided protocol waits for its device before it gives up."""

EMULATED_STORE_FILENAME = "emulated.sqlite3"
"""The store of ``--emulated`` runs without a config: beside the real one, never mixed."""


def emulated_store_path() -> Path:
    """``<user data dir>/redox-streamer/emulated.sqlite3``: where ``morning --emulated``
    and ``grip-test --emulated`` keep their results when no ``--config`` names a store —
    kept (repeated runs build a trend to try the baselines on), apart from real readings."""
    return default_store_path().with_name(EMULATED_STORE_FILENAME)


def kept_line(pipeline: Pipeline, store_path: Path, what: str) -> str:
    """Where ``what`` (e.g. "the reading") now is: kept in the store, and whether every
    result reached it (a failed write is said, never "kept")."""
    status = pipeline.status()
    if status.durable_errors:
        return (
            f"[bold red]{what} NOT kept[/]: {status.durable_errors} result(s) could not be "
            f"written to {store_path} (see the error above)"
        )
    sinks = ", ".join(status.sinks)
    queued = f"; queued for {sinks}" if sinks else ""
    return f"{what} kept in {store_path}{queued}"


D = TypeVar("D", bound=DeviceDriver)
P = TypeVar("P", bound="EmulatedPeripheral")


@dataclass(frozen=True, slots=True)
class GuidedSession(Generic[D, P]):
    """A running one-device session: where to print, the clock records are stamped with
    (with an emulator, the emulated world's one clock, which the emulator shares), the
    pipeline, the connected driver, the emulator (None on real hardware) and every
    result the pipeline produced so far, in order."""

    console: Console
    clock: SpeedClock | EmulatedClock
    pipeline: Pipeline
    driver: D
    emulator: P | None
    results: list[Result]


@contextlib.asynccontextmanager
async def guided_session(
    app: App,
    state: AthleteState,
    driver_cls: Callable[..., D],
    *,
    device_id: str,
    what: str,
    address: str | None,
    speed: float,
    emulator: Callable[[], P] | None = None,
    advertised_name: str | None = None,
) -> AsyncIterator[GuidedSession[D, P]]:
    """Run ``state``'s pipeline with one ``driver_cls`` device and yield once it is connected.

    Args:
        app: the store and the sinks the pipeline writes to.
        state: the athlete's processor, made by ``app.athlete``.
        driver_cls: the production driver class for the device.
        device_id: the device's id in topics and driver names (``"strap"``, ``"tindeq"``).
        what: the device as the user is told about it (``"the strap"``).
        address: the device's address; with ``emulator`` the emulator's, if given.
        speed: emulated seconds per real second (record timestamps, emulator pace).
        emulator: makes the emulated peripheral (called once its virtual link exists);
            None on real hardware.
        advertised_name: on real hardware without an address, the device's advertised
            name: the driver finds it by scanning for that name.

    Raises CliError when the device does not connect within :data:`CONNECT_TIMEOUT_S`.
    """
    console = Console()
    clock: SpeedClock | EmulatedClock = SpeedClock(speed)
    results: list[Result] = []
    athlete = state.athlete
    pipeline = app.pipeline([athlete], on_result=results.append)
    async with contextlib.AsyncExitStack() as stack:
        kwargs: dict[str, Any] = {}
        peripheral: P | None = None
        if emulator is not None:
            from devices.emulated import EmulatedWorld
            from devices.emulated.clock import EmulatedClock

            # One emulated clock for the emulator, the deadlines and the timestamps: an
            # emulator that falls behind on a loaded machine holds it back (issue 10).
            clock = EmulatedClock(speed)
            world = await stack.enter_async_context(EmulatedWorld(clock=clock))
            peripheral = await world.add(emulator())
            address = peripheral.address
            kwargs = {"client_kwargs": world.client_kwargs, "scanner_kwargs": world.scanner_kwargs}
        if address is None and advertised_name is None:
            raise ValueError("guided_session needs an address, an advertised name or an emulator")
        if address is None:
            kwargs["advertised_name"] = advertised_name
        driver = driver_cls(
            address or "",
            name=f"{athlete}/{device_id}",
            clock_ns=clock.now_ns,
            sink=pipeline.ingest_for(athlete, device_id),
            **kwargs,
        )
        pipeline.add_source(driver)
        async with running(pipeline):
            console.print(f"connecting to {what} {address or repr(advertised_name)} …")
            await wait_connected(driver, CONNECT_TIMEOUT_S, what, lambda: pipeline.stopping)
            yield GuidedSession(console, clock, pipeline, driver, peripheral, results)


def progress_bars(console: Console, *, transient: bool) -> Progress:
    """Bars showing their description, the bar, the task's ``info`` field (live HR, force)
    and the time left; ``transient`` bars vanish when done."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )


async def tick_until(pipeline: Pipeline, done: Callable[[], bool], every_s: float) -> bool:
    """Call ``done`` every ``every_s`` real seconds: True once it says so, False when the
    pipeline is asked to stop first (Ctrl-C, SIGTERM)."""
    while not pipeline.stopping:
        if done():
            return True
        await asyncio.sleep(every_s)
    return False


def print_alerts(console: Console, results: list[Result]) -> None:
    """One line per alert event among ``results``: state, rule, message and advice."""
    for r in results:
        if r.kind is Kind.ALERTS:
            event = r.payload_as(AlertsPayload).event
            console.print(f"[bold]{event.state}[/] {event.rule}: {event.message} {event.advice}")
