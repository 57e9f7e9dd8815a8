"""``redox-streamer gateway``: a thin Bluetooth gateway of team mode (issue 13).

The configured athletes' devices, connected by the production drivers as ``run`` connects
them, but nothing is analysed here: each raw notification, each lease grant and each
protocol marker (MQTT command topics) goes through a durable local outbox to NATS
JetStream (:mod:`streamer.team.gateway`); workers run the processors. Imports stay thin:
no scipy, no influxdb-client, no processors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from streamer.config import Config, DeviceConfig, load_config
from streamer.errors import STOP_SIGNALS, CliError, note_stop_signal

DESCRIPTION = """\
Run a thin gateway of team mode: connect the configured athletes' devices (a device at a
time per gateway: the one holding its lease in NATS), and forward every raw notification
and every protocol marker (session, RPE, morning and grip commands over MQTT) to NATS
JetStream through a durable local outbox. Nothing is analysed here: `redox-streamer
worker` does that. A link loss or a NATS restart loses nothing: the outbox keeps the
messages and resends them; the server drops the copies it already has.

Athletes and their devices come from the club's central registry in NATS (`redox-streamer
registry push` writes it; the gateway follows its changes without a restart) when the
config names no athletes or says [team] registry = true; else from the config's
[[athletes]]. The config keeps this Pi's own things: [mqtt], [store].

With [mqtt] in the config the gateway says online/offline on
<base>/gateway/<id>/state (retained, its Last Will) and takes its share of the command
topics.
"""

EPILOG = """\
examples:
  redox-streamer gateway --id gym-1 --nats nats://central:4222
  redox-streamer gateway --id gym-1 --nats nats://n1:4222,nats://n2:4222,nats://n3:4222
  redox-streamer gateway --id test --nats nats://127.0.0.1:4222 --emulated --speed 10

On the central box, once: redox-streamer registry push --config club.toml --nats URL
"""

_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
DRAIN_S: Final = 5.0
"""At a stop, the outbox is published for at most this long (s); the rest waits in it."""


def register(subparsers: Any) -> None:
    """Add the ``gateway`` sub-command."""
    parser = subparsers.add_parser(
        "gateway",
        help="team mode: forward devices and markers to NATS JetStream",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--id", required=True, metavar="ID", help="this gateway's id (letters, digits, - _)"
    )
    parser.add_argument(
        "--nats",
        required=True,
        metavar="URL[,URL...]",
        help="NATS server URLs (any nodes of the cluster), comma-separated",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="config file (default: $REDOX_CONFIG or the user config dir)",
    )
    parser.add_argument(
        "--outbox",
        type=Path,
        metavar="FILE",
        help="the outbox file (default: gateway-<id>.sqlite beside the config's store)",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        choices=(1, 3),
        help="the stream's replicas to ensure (default: keep the existing stream's)",
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)"
    )
    parser.add_argument(
        "--emulated",
        action="store_true",
        help="serve the configured devices from emulators on a virtual link (no hardware), "
        "and have each athlete train: session start, 30 emulated minutes, end with an RPE",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="with --emulated: emulated seconds per real second (default 1)",
    )
    parser.set_defaults(handler=run)


def _servers(text: str) -> list[str]:
    urls = [u.strip() for u in text.split(",") if u.strip()]
    bad = [u for u in urls if not re.fullmatch(r"(nats|tls)://[^\s/]+(:\d+)?/?", u)]
    if not urls or bad:
        raise CliError(
            f"--nats {text!r}: give nats://HOST:PORT URLs separated by commas "
            "(e.g. nats://central:4222)"
        )
    return urls


def configured_devices(config: Config) -> dict[str, list[DeviceConfig]]:
    """The devices to forward per athlete: the config's (every gateway reads one config)."""
    return {a.id: list(a.devices) for a in config.athletes if a.devices}


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer gateway``."""
    if not _ID.fullmatch(args.id):
        raise CliError(
            f"--id {args.id!r}: give the gateway a name of 1-32 letters, digits, '_' or '-' "
            "(e.g. gym-1); it names its msg ids, leases and MQTT client"
        )
    servers = _servers(args.nats)
    if args.duration is not None and not args.duration > 0:
        raise CliError(f"--duration {args.duration:g}: give seconds > 0, or leave it out")
    if not args.speed > 0:
        raise CliError(f"--speed {args.speed:g}: give a number > 0")
    if args.speed != 1.0 and not args.emulated:
        raise CliError("--speed: only emulated devices can run faster; add --emulated")
    try:
        import nats  # noqa: F401  (the team extra)
    except ImportError:
        raise CliError(
            "gateway needs nats-py, which is not installed: pip install 'redox-streamer[team]'"
        ) from None
    config = load_config(args.config)
    devices = {} if config.uses_registry else configured_devices(config)
    if not devices and not config.uses_registry:
        raise CliError(
            f"{config.source}: no athlete has devices — add [[athletes.devices]] tables "
            "(see `redox-streamer config init`)"
        )
    outbox_path = args.outbox or config.store_path.with_name(f"gateway-{args.id}.sqlite")
    from streamer.store_lock import StoreBusyError, holder
    from streamer.team.outbox import GatewayOutbox

    try:
        outbox = GatewayOutbox(outbox_path)
    except StoreBusyError:
        who = holder(outbox_path)
        raise CliError(
            f"the gateway outbox {outbox_path} is in use by "
            f"{who.describe() if who else 'another process'}: one gateway per outbox — stop "
            "it first, or give this one another --outbox FILE"
        ) from None
    with outbox:
        return asyncio.run(_run(args, config, servers, devices, outbox))


async def _emulators(
    stack: contextlib.AsyncExitStack, devices: Mapping[str, Sequence[DeviceConfig]], speed: float
) -> dict[str, Any]:
    """Emulators of ``devices`` on one virtual link and the world's one clock (as
    ``run --emulated``); the drivers' options to reach them, and ``emulate``: puts an
    emulator of each device not yet emulated on the link (the registry's new devices)."""
    import devices.emulated as emulated
    from devices.emulated.clock import EmulatedClock

    clock = EmulatedClock(speed)
    world = await stack.enter_async_context(emulated.EmulatedWorld(clock=clock))
    emulated_devices: set[tuple[str, str | None, str | None]] = set()

    async def emulate(devices: Mapping[str, Sequence[DeviceConfig]]) -> None:
        for athlete, items in devices.items():
            for device in items:
                name = device.name or f"{athlete} {device.id}"
                if (device.kind.value, device.address, name) in emulated_devices:
                    continue
                emulated_devices.add((device.kind.value, device.address, name))
                cls = emulated.emulator_class(device.device_models[0])
                await world.add(cls(name, speed=speed, address=device.address))

    await emulate(devices)
    return {
        "client_kwargs": world.client_kwargs,
        "scanner_kwargs": world.scanner_kwargs,
        "clock_ns": clock.now_ns,
        "clock": clock,
        "emulate": emulate,
    }


async def _run(
    args: argparse.Namespace,
    config: Config,
    servers: list[str],
    devices: dict[str, list[DeviceConfig]],
    outbox: Any,
) -> int:
    from streamer.team.gateway import Gateway

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(sig: Any) -> None:
        note_stop_signal(sig)
        stop.set()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    async with contextlib.AsyncExitStack() as stack:
        kwargs: dict[str, Any] = {}
        if args.emulated:
            kwargs = await _emulators(stack, devices, args.speed)
        clock_ns = kwargs.pop("clock_ns", time.time_ns)
        clock = kwargs.pop("clock", None)
        emulate = kwargs.pop("emulate", None)
        # The athletes now (the registry's change): the emulated sessions and the MQTT
        # commands read this one dict.
        athletes = dict.fromkeys(devices)
        commands: Any = None

        async def prepare(new: Mapping[str, Sequence[DeviceConfig]]) -> None:
            if emulate is not None:
                await emulate(new)
            athletes.clear()
            athletes.update(dict.fromkeys(new))
            if commands is not None:
                commands.set_athletes(athletes)

        gateway = Gateway(
            args.id,
            servers,
            outbox,
            devices,
            driver_kwargs={**kwargs, "clock_ns": clock_ns},
            clock_ns=clock_ns,
            replicas=args.replicas,
            follow_registry=config.uses_registry,
            prepare_devices=prepare,
        )
        tasks = [asyncio.create_task(gateway.run(), name="gateway")]
        if clock is not None:
            from streamer.team.emulated import emulated_sessions

            sessions = emulated_sessions(gateway.offer_marker_of, athletes.keys(), clock)
            tasks.append(asyncio.create_task(sessions, name="emulated sessions"))
        if config.mqtt is not None:
            from streamer.team.gateway_mqtt import GatewayCommands

            commands = GatewayCommands(
                config.mqtt,
                args.id,
                list(athletes),
                gateway.offer_marker,
                clock_ns=clock_ns,
                devices=gateway,  # the held devices' connection states, as `run` publishes
                keeper=outbox,  # their last words, kept across a restart
            )
            gateway.on_stream = commands.set_stream  # commands left while NATS is away
            tasks.append(asyncio.create_task(commands.run(), name="mqtt"))
        source = (
            "devices from the central registry (followed)"
            if config.uses_registry
            else f"{sum(len(d) for d in devices.values())} devices of {len(devices)} athletes"
        )
        print(
            f"gateway {args.id} (boot {outbox.boot}): {source} → {','.join(servers)}; "
            f"outbox {outbox.path}",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.duration):
                done, _ = await asyncio.wait(
                    [*tasks, asyncio.create_task(stop.wait())],
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in done:
                    if task in tasks:
                        task.result()  # a crashed part ends the gateway with its error
        # The sources first (commands, the emulated protocol), then the devices and the
        # outbox: nothing offered after the last commit.
        for task in tasks[1:]:
            task.cancel()
        await asyncio.gather(*tasks[1:], return_exceptions=True)
        await gateway.stop(DRAIN_S)
        tasks[0].cancel()
        await asyncio.gather(tasks[0], return_exceptions=True)
        stats = gateway.stats
        depth = outbox.depth()
        print(
            f"stopped: {stats.published} messages published ({stats.duplicates} duplicates "
            f"dropped by the server), {depth} left in the outbox {outbox.path}",
            flush=True,
        )
    for sig in STOP_SIGNALS:
        loop.remove_signal_handler(sig)
    return 0
