"""``redox-streamer run``: the real thing — paired devices, the pipeline, the sinks.

Devices come from the config file (``[[athletes.devices]]`` with an address, or a name the
driver scans for) and from the paired-devices registry (``redox-streamer pair``) for
configured athletes. Each gets its production driver (bleak, reconnect with back-off, gaps
marked); results go to the local store and to MQTT / InfluxDB when configured. Runs until
Ctrl-C / SIGTERM (or ``--duration``), then flushes what it can and keeps the rest in the
outbox.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devices.drivers import DeviceDriver, driver_for
from devices.registry import DeviceRegistry
from streamer.app import device_state
from streamer.app.assembly import App
from streamer.app.live_view import LiveView, ViewModel, sink_problem
from streamer.app.runtime import load_emulated_scenario, run_for, running
from streamer.config import Config, DeviceConfig, load_config, paired_device_id
from streamer.errors import CliError
from streamer.store_lock import hold_devices, hold_store

if TYPE_CHECKING:  # Bumble is imported only with --emulated
    from devices.emulated.scenario import Scenario

DESCRIPTION = """\
Stream the paired devices of every configured athlete: chest straps (HR, RR -> HRV),
SmO2 sensors (efforts and recovery), grip dynamometers, power meters and pulse oximeters
(SpO2). Results are kept in the local store and published to MQTT and InfluxDB when the
config names them; when a server is away they wait in the store's outbox and are
delivered, in order, when it returns. Stop with Ctrl-C: what cannot be delivered in a few
seconds stays in the outbox.

Without a usable Bluetooth adapter (none, powered off, no permission, BlueZ not running)
it says so with the fix and keeps retrying: an adapter plugged in later is used. It exits
1 when no device connected during the whole run for that reason.
"""

EPILOG = """\
examples:
  redox-streamer run                          the default config file
  redox-streamer run --config ~/redox.toml
  redox-streamer run --duration 3600          one hour, then stop cleanly
  redox-streamer run --emulated --speed 10    the same devices, emulated: no hardware
  redox-streamer run --emulated --emulated-scenario week.toml
                                              … whose athletes' bodies follow a scenario

while it runs (over MQTT; Home Assistant has buttons for them):
  redox-streamer session start --athlete alice --tag intervals
  redox-streamer session end --athlete alice --rpe 7
  redox-streamer rpe --athlete alice 6       the RPE of the last session, later

set-up, in order:
  redox-streamer config init                  write a commented example config
  redox-streamer scan                         find your devices
  redox-streamer pair add --athlete alice --kind strap    pair the strap in range
  redox-streamer doctor                       check adapter, broker, InfluxDB, config
  redox-streamer run
"""


def register(subparsers: Any) -> None:
    """Add the ``run`` sub-command."""
    parser = subparsers.add_parser(
        "run",
        help="stream the paired devices of the configured athletes",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="config file (default: $REDOX_CONFIG or the user config dir)",
    )
    parser.add_argument(
        "--registry",
        type=Path,
        metavar="FILE",
        help="paired-devices registry (default: the user config dir)",
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)"
    )
    parser.add_argument("--plain", action="store_true", help="plain lines, no live table")
    parser.add_argument(
        "--emulated",
        action="store_true",
        help="serve the configured and paired devices from emulators on a virtual link "
        "(test the set-up without hardware)",
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
        help="with --emulated: what each athlete's body does, day by day (TOML: heart rate "
        "and RMSSD, SmO2 recovery, power, grip MVC and post-session drop; "
        "devices/emulated/scenario.py describes it)",
    )
    parser.set_defaults(handler=run)


def paired_devices(
    config: Config, registry: DeviceRegistry | None
) -> dict[str, list[DeviceConfig]]:
    """The devices to stream per athlete: the config's, then the registry's for configured
    athletes (a registry entry never overrides a configured address).

    A configured device with a name and no address is streamed too: its driver scans for
    that advertised name (what ``config check`` accepts, ``run`` runs)."""
    out: dict[str, list[DeviceConfig]] = {}
    used: set[str] = set()
    for athlete in config.athletes:
        for device in athlete.devices:
            out.setdefault(athlete.id, []).append(device)
            if device.address:
                used.add(device.address.upper())
    if registry is not None:
        known = {a.id for a in config.athletes}
        for paired in registry:
            if paired.athlete in known and paired.address.upper() not in used:
                ids = {d.id for d in out.get(paired.athlete, [])}
                out.setdefault(paired.athlete, []).append(
                    DeviceConfig(
                        paired_device_id(paired.kind, paired.address, ids),
                        paired.kind,
                        paired.address,
                        paired.name or None,
                        paired.role or None,
                        model=paired.model or None,
                    )
                )
                used.add(paired.address.upper())
    return out


def adapter_error(drivers: Mapping[str, Sequence[tuple[str, DeviceDriver]]]) -> str | None:
    """The Bluetooth adapter's problem as the drivers last met it (one line with its fix),
    or None while every driver's last attempt got past the adapter."""
    for items in drivers.values():
        for _device_id, driver in items:
            problem = driver.status.adapter_error
            if problem is not None:
                return problem
    return None


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer run``."""
    if args.duration is not None and not args.duration > 0:
        raise CliError(f"--duration {args.duration:g}: give seconds > 0, or leave it out")
    if not args.speed > 0:
        raise CliError(f"--speed {args.speed:g}: give a number > 0")
    if args.emulated_scenario is not None and not args.emulated:
        raise CliError("--emulated-scenario: only emulated devices follow one; add --emulated")
    config = load_config(args.config)
    args.scenario = (
        None
        if args.emulated_scenario is None
        else load_emulated_scenario(
            args.emulated_scenario,
            emulated=args.emulated,
            athletes=[a.id for a in config.athletes],
            where=str(config.source),
        )
    )
    if not config.athletes:
        raise CliError(
            f"{config.source}: no athletes configured — add an [[athletes]] table "
            "(see `redox-streamer config init`)"
        )
    # --emulated too: it serves the same devices (configured and paired) from emulators.
    registry = DeviceRegistry.load(args.registry)
    devices = paired_devices(config, registry)
    if not any(devices.values()):
        raise CliError(
            "no devices to stream: add devices to the athletes in the config, or "
            "pair them with `redox-streamer pair`"
        )
    # Every streamed device (paired ones too) gets its Home Assistant entities.
    config = device_state.with_streamed_devices(config, devices)
    # The devices too: another config's `run` or `morning` may name the same strap.
    radios = {} if args.emulated else device_labels(devices)
    with (
        hold_store(config.store_path, "run"),
        hold_devices(radios, "run"),
        App.from_config(config) as app,
    ):
        return asyncio.run(_run(args, app, devices))


def device_labels(devices: Mapping[str, Sequence[DeviceConfig]]) -> dict[str, str]:
    """Address → ``athlete/device`` of the devices with an address (what
    :func:`~streamer.store_lock.hold_devices` locks; a device known by name only is found
    by a scan, and locked by nobody)."""
    return {
        d.address: f"{athlete}/{d.id}"
        for athlete, items in devices.items()
        for d in items
        if d.address
    }


async def _emulators(
    stack: contextlib.AsyncExitStack,
    devices: dict[str, list[DeviceConfig]],
    speed: float,
    scenario: Scenario | None = None,
) -> dict[str, Any]:
    import devices.emulated as emulated
    from devices.emulated.clock import EmulatedClock
    from devices.emulated.scenario import peripheral_options

    # The world's one clock stamps the records too: at --speed X an effort, a recovery
    # and a session last their physiological time, not 1/X of it.
    clock = EmulatedClock(speed)
    world = await stack.enter_async_context(emulated.EmulatedWorld(clock=clock))
    # The scenario's day 0 is the day the world's clock starts in (UTC, as the store's days).
    today = dt.datetime.fromtimestamp(clock.now_ns() / 1e9, tz=dt.UTC).date()
    for athlete, items in devices.items():
        state = scenario.day(athlete, today, today) if scenario is not None else None
        for device in items:
            cls = emulated.emulator_class(device.device_models[0])
            # A device the config leaves to tell its model: the kind's first model here.
            # A device known by name only advertises that name; the driver finds it by it.
            name = device.name or f"{athlete} {device.id}"
            options = peripheral_options(cls, state) if state is not None else {}
            await world.add(cls(name, speed=speed, address=device.address, **options))
    return {
        "client_kwargs": world.client_kwargs,
        "scanner_kwargs": world.scanner_kwargs,
        "clock_ns": clock.now_ns,
    }


async def _run(args: argparse.Namespace, app: App, devices: dict[str, list[DeviceConfig]]) -> int:
    config = app.config
    ids = [a.id for a in config.athletes]
    pipeline = app.pipeline(ids)
    async with contextlib.AsyncExitStack() as stack:
        kwargs: dict[str, Any] = {}
        if args.emulated:
            kwargs = await _emulators(stack, devices, args.speed, args.scenario)
        drivers: dict[str, Sequence[tuple[str, DeviceDriver]]] = {}
        for athlete, items in devices.items():
            made = []
            for device in items:
                driver = driver_for(
                    device.device_models,  # several: the device tells which at connect
                    device.address or "",
                    name=f"{athlete}/{device.id}",
                    sink=pipeline.ingest_for(athlete, device.id),
                    advertised_name=None if device.address else device.name,
                    **kwargs,
                )
                pipeline.add_source(driver)
                made.append((device.id, driver))
            drivers[athlete] = made
        if config.mqtt is not None:
            # Session start/end and RPE from `redox-streamer session|rpe` and Home Assistant,
            # on the publisher's own connection: one MQTT connection per `run`.
            from streamer.app.commands_in import CommandListener
            from streamer.sinks.mqtt import MqttPublisher

            listener = CommandListener(
                config.mqtt, ids, pipeline.offer, clock_ns=kwargs.get("clock_ns", time.time_ns)
            )
            for sink in app.sinks:
                if isinstance(sink, MqttPublisher):
                    sink.listen(listener)
        model = ViewModel(
            title=f"redox-streamer run — {len(ids)} athletes, "
            f"{sum(len(v) for v in devices.values())} devices",
            pipeline_status=pipeline.status,
            snapshots={a: app.states[a].snapshot for a in ids},
            devices=drivers,
            notes=[f"store: {config.store_path}"],
            phase="streaming",
        )
        view = LiveView(model, force_plain=args.plain)
        watch = AdapterWatch(drivers, view.say)
        # Each device's state on MQTT (retained), the last one "stopped" (before the flush).
        pipeline.add_source(
            device_state.for_run(
                app.sinks, drivers, lambda a, d: app.states[a].snapshot.battery_pct.get(d)
            )
        )
        async with running(pipeline, view) as task:
            await run_for(pipeline, args.duration, on_tick=watch.check)
            model.phase = "stopping: flushing to the sinks"
            await task
    status = pipeline.status()
    outboxes = "; ".join(
        f"{name}: {s.get('outbox_depth', 0)} left in the outbox"
        + (f" ({problem})" if (problem := sink_problem(s)) and "REFUSED" in problem else "")
        for name, s in status.sink_status.items()
    )
    print(
        f"stopped: {status.durable} results stored in {config.store_path}; "
        + (outboxes or "no MQTT or InfluxDB configured")
    )
    connected = any(d.status.connects for items in drivers.values() for _, d in items)
    if not connected and watch.problem is not None:
        # Nothing was streamed because of the adapter: not a success (issue 11).
        print(f"no device connected during the run: {watch.problem}")
        return 1
    return 0


class AdapterWatch:
    """Says once when the Bluetooth adapter becomes unusable (with the fix) and once when
    it is usable again; the drivers keep retrying meanwhile."""

    def __init__(
        self, drivers: Mapping[str, Sequence[tuple[str, DeviceDriver]]], say: Callable[[str], None]
    ) -> None:
        self.drivers = drivers
        self.say = say
        self.problem: str | None = None
        self._said: str | None = None

    def check(self) -> None:
        """Called every tick of ``run_for``: compare the drivers' adapter status."""
        problem = adapter_error(self.drivers)
        if problem is not None:
            self.problem = problem
        if problem != self._said:
            if problem is not None:
                self.say(f"{problem}; retrying — plug in or power on an adapter at any time")
            elif self._said is not None:
                self.say("Bluetooth adapter usable again: connecting to the devices")
            self._said = problem
