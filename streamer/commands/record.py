"""``redox-streamer record FILE``: raw notifications to JSON Lines, as ``replay`` reads them.

The devices are the ones ``run`` streams for one athlete (the config's and the paired
registry's), each with its production driver — connection, reconnection, subscriptions and
commands exactly as in ``run`` — but every notification payload is written as it arrived
(:class:`devices.recording.NotificationRecorder`: ``{"t_ns", "device", "char", "hex"}``,
one line each, flushed line by line so a crash loses nothing) before it is decoded. Nothing
goes through the pipeline, the store or the sinks: a recording is the raw input, replayed
later with ``redox-streamer replay FILE`` through the same codecs and processors.

``--emulated`` records emulators instead of radios: the config's devices, or without
``--config`` a chest strap and a Moxy (the shipped sample was made so); with ``--speed X``
they run X times faster and the recorded times follow the emulated clock, so a recording
of minutes takes seconds and still replays at a physiological pace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from devices.drivers import DeviceDriver, driver_class
from devices.recording import NotificationRecorder
from devices.registry import DeviceRegistry
from streamer.app.runtime import SpeedClock
from streamer.commands.run import device_labels, paired_devices
from streamer.config import ID_RULE, Config, DeviceConfig, athlete_id_arg, load_config, parse_config
from streamer.errors import STOP_SIGNALS, CliError, note_stop_signal
from streamer.store_lock import hold_devices

DESCRIPTION = """\
Record the raw Bluetooth notifications of one athlete's devices to a JSON Lines file, one
{"t_ns", "device", "char", "hex"} object per notification — the format `redox-streamer
replay` reads. The devices are those `run` streams (the config's and the paired ones),
connected by the same drivers; nothing is analysed or sent anywhere while recording.
Stop with Ctrl-C, or give --duration.

--emulated records emulators instead of radios: the config's devices, or without --config
an emulated chest strap and Moxy SmO2 sensor.
"""

EPILOG = """\
examples:
  redox-streamer record morning.jsonl --athlete ann           until Ctrl-C
  redox-streamer record ride.jsonl --duration 3600
  redox-streamer record sample.jsonl --emulated --duration 30 --speed 10
                                          five emulated minutes in 30 s
  redox-streamer replay morning.jsonl --morning                then analyse it
"""

CANCEL_AGAIN_S: Final = 1.0
"""A driver still running this long after it was cancelled is cancelled again (s)."""

EMULATED_CONFIG = """\
[[athletes]]
id = "athlete1"
[[athletes.devices]]
kind = "strap"
address = "EE:00:00:00:00:01"
[[athletes.devices]]
kind = "smo2"
address = "EE:00:00:00:00:02"
"""
"""What ``record --emulated`` records without a config: one athlete's strap and Moxy."""


def register(subparsers: Any) -> None:
    """Add the ``record`` sub-command."""
    parser = subparsers.add_parser(
        "record",
        help="record raw notifications of an athlete's devices for `replay`",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="JSON Lines file to write (new)")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="config file (default: $REDOX_CONFIG or the user config dir; "
        "with --emulated: none, an emulated strap and Moxy)",
    )
    parser.add_argument(
        "--registry",
        type=Path,
        metavar="FILE",
        help="paired-devices registry (default: the user config dir)",
    )
    parser.add_argument(
        "--athlete",
        type=athlete_id_arg,
        metavar="ID",
        help=f"whose devices (default: the config's only athlete); {ID_RULE}",
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="stop after S real seconds (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--emulated", action="store_true", help="record emulated devices (no hardware)"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="with --emulated: emulated seconds per real second (default 1)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer record``."""
    if args.duration is not None and not 0 < args.duration < float("inf"):
        raise CliError(f"--duration {args.duration:g}: give seconds > 0, or leave it out")
    if not 0 < args.speed <= 1000:
        raise CliError(f"--speed {args.speed:g}: give a number from above 0 to 1000")
    if args.speed != 1.0 and not args.emulated:
        raise CliError("--speed: only emulated devices can run faster; add --emulated")
    if args.file.exists():
        raise CliError(
            f"{args.file}: already exists — give a new file name (a recording holds one "
            "session), or delete it"
        )
    if not args.file.parent.is_dir():
        raise CliError(
            f"{args.file}: the folder {args.file.parent} does not exist — create it, or "
            "give a file in an existing folder"
        )
    if args.emulated and args.config is None:
        config = parse_config(EMULATED_CONFIG, source="(emulated strap and Moxy)")
        registry = None
    else:
        config = load_config(args.config)
        registry = None if args.emulated else DeviceRegistry.load(args.registry)
    athlete = _athlete(config, args.athlete)
    devices = paired_devices(config, registry).get(athlete, [])
    if not devices:
        raise CliError(
            f"athlete {athlete!r} has no devices to record: add them to the config, or pair "
            "them with `redox-streamer pair add`"
        )
    # What `run` locks: a `run` holding the strap would lose it to the recording.
    radios = {} if args.emulated else device_labels({athlete: devices})
    with hold_devices(radios, "record"):
        return asyncio.run(_record(args, athlete, devices))


def _athlete(config: Config, wanted: str | None) -> str:
    ids = [a.id for a in config.athletes]
    if wanted is None:
        if len(ids) != 1:
            raise CliError(
                f"--athlete: say whose devices to record ({', '.join(ids) or 'none'} "
                f"configured in {config.source})"
            )
        return ids[0]
    if wanted not in ids:
        raise CliError(
            f"--athlete {wanted!r} is not in {config.source}; known: {', '.join(ids) or 'none'}"
        )
    return wanted


def recording_driver(
    device: DeviceConfig, recorder: NotificationRecorder, **kwargs: Any
) -> DeviceDriver:
    """``device``'s production driver, with every notification it subscribes to written to
    ``recorder`` (under the device's id) before it is decoded."""
    model = device.device_model
    if model is None:
        names = ", ".join(m.name for m in device.device_models)
        raise CliError(
            f"device {device.id!r}: recording needs its model, and the config leaves it to "
            f"the device; add model = one of {names} to it in the config"
        )
    base = driver_class(model)

    class Recording(base):  # type: ignore[valid-type,misc]  # a class chosen at run time
        async def _start_notify(
            self, client: Any, char_uuid: str, decode: Any, *, required: bool = True
        ) -> bool:
            def tap(data: bytes, *, t_ns: int = 0) -> Any:
                recorder.record(device.id, char_uuid, data, t_ns=t_ns)
                return decode(data, t_ns=t_ns)

            started: bool = await super()._start_notify(client, char_uuid, tap, required=required)
            return started

    assert device.address is not None  # paired_devices refuses a device without one
    options = {**model.driver_options, **kwargs}
    driver: DeviceDriver = Recording(device.address, model=model, **options)
    return driver


async def _record(args: argparse.Namespace, athlete: str, devices: list[DeviceConfig]) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(sig: Any) -> None:
        note_stop_signal(sig)  # the CLI exits 128 + sig once the file is closed
        stop.set()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    counts: Counter[str] = Counter()
    started = time.monotonic()
    try:
        async with contextlib.AsyncExitStack() as stack:
            kwargs: dict[str, Any] = {"sink": _counter(counts)}
            if args.emulated:
                kwargs.update(await _emulators(stack, athlete, devices, args.speed))
            recorder = stack.enter_context(NotificationRecorder(args.file))
            drivers = [
                recording_driver(d, recorder, name=f"{athlete}/{d.id}", **kwargs) for d in devices
            ]
            names = ", ".join(f"{d.id} {d.address}" for d in devices)
            print(
                f"recording {athlete} ({names}) to {args.file}; "
                + (f"{args.duration:g} s" if args.duration else "Ctrl-C to stop"),
                file=sys.stderr,
                flush=True,
            )
            tasks = [asyncio.create_task(d.run(), name=d.name) for d in drivers]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.duration):
                    await stop.wait()
            await _cancel_all(tasks)
            count = recorder.count
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
    per_device = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
    print(
        f"recorded {count} notifications in {time.monotonic() - started:.0f} s to {args.file} "
        f"(decoded: {per_device}); replay with `redox-streamer replay {args.file}`"
    )
    if count == 0:
        print(
            "nothing was recorded: no device connected — `redox-streamer doctor` checks the "
            "adapter, `redox-streamer scan` lists the devices in range",
            file=sys.stderr,
        )
    return 0


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until they end, cancelling again any that goes on: a
    cancellation that lands while a driver connects can be swallowed below it (bleak,
    the retry connector), and that driver would then wait on its link for ever."""
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_AGAIN_S)


def _counter(counts: Counter[str]) -> Callable[[object], None]:
    """A driver sink that only counts the decoded records by type (for the summary)."""

    def count(record: object) -> None:
        counts[type(record).__name__] += 1

    return count


async def _emulators(
    stack: contextlib.AsyncExitStack, athlete: str, devices: list[DeviceConfig], speed: float
) -> dict[str, Any]:
    """Emulators of ``devices`` on a virtual link; the drivers' options to reach them, with
    a clock that runs ``speed`` times faster (times in the file stay physiological)."""
    import devices.emulated as emulated

    world = await stack.enter_async_context(emulated.EmulatedWorld())
    for device in devices:
        # A device the config leaves to tell its model: the kind's first model here.
        cls = emulated.emulator_class(device.device_models[0])
        await world.add(
            cls(device.name or f"{athlete} {device.id}", speed=speed, address=device.address)
        )
    return {
        "client_kwargs": world.client_kwargs,
        "scanner_kwargs": world.scanner_kwargs,
        "clock_ns": SpeedClock(speed).now_ns,
    }
