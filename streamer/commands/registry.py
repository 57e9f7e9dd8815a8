"""``redox-streamer registry``: the club's central registry of athletes, devices and
thresholds in NATS (:mod:`streamer.team.registry`) — push a club file, show it, pair and
unpair one device. Gateways and workers follow it without a restart."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from devices.kinds import DeviceKind
from devices.models import STREAMABLE_KINDS
from devices.registry import DeviceRegistry, RegistryError, normalize_address
from streamer.config import (
    ID_RULE,
    AthleteConfig,
    Config,
    DeviceConfig,
    athlete_data,
    athlete_id_arg,
    load_config,
)
from streamer.errors import INPUT_STATUS, CliError

T = TypeVar("T")

KINDS = ", ".join(k.value for k in DeviceKind if k in STREAMABLE_KINDS)

DESCRIPTION = """\
The club's athletes, their devices (the pairing) and thresholds, kept once in NATS for
every gateway and worker of team mode (`redox-streamer gateway`, `worker`). They follow
it: a device paired here is connected by whichever gateway sees it, one unpaired is
released, a threshold changed reaches the athlete's next evaluation between two
protocols — no restart, and no Pi's file to edit.

`push` writes the [[athletes]] tables (with their [athletes.rules] and
[[athletes.devices]], and the devices paired on this machine with `redox-streamer pair`
for those athletes, as `run` streams them) and [rules] of a club file, validated as
`config check` validates them; `show` prints what the gateways and workers read; `pair`
and `unpair` change one device of one athlete. Each Pi's own file keeps only its own
things: [mqtt], [store] (and [team] registry = true if it names athletes for other uses).
"""

EPILOG = """\
examples:
  redox-streamer registry push --config club.toml --nats nats://central:4222
  redox-streamer registry push --config club.toml --nats nats://central:4222 --prune
  redox-streamer registry show --nats nats://central:4222
  redox-streamer registry pair C4:7F:51:00:11:22 --athlete anna --kind smo2 \\
      --role "left vastus lateralis" --nats nats://central:4222
  redox-streamer registry unpair smo2 --athlete anna --nats nats://central:4222

find an address with `redox-streamer scan` on a Pi near the device.
"""


def register(subparsers: Any) -> None:
    """Add the ``registry`` sub-command with ``push``, ``show``, ``pair`` and ``unpair``."""
    parser = subparsers.add_parser(
        "registry",
        help="team mode: the club's athletes, devices and thresholds, central in NATS",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="registry_action", metavar="ACTION")

    push = actions.add_parser(
        "push",
        help="write a club file's athletes and [rules] to the central registry",
        description="Write every [[athletes]] table of the config (devices and\n"
        "[athletes.rules] included) and its [rules] to the central registry; entries\n"
        "already equal are left alone. Athletes in the registry but not in the file\n"
        "stay, unless --prune. Devices paired on this machine (`redox-streamer pair`)\n"
        "for the file's athletes are pushed too: the registry gets what `run` streams\n"
        "here; devices paired for athletes the file does not name are listed, not pushed.\n"
        "A push merges per device: an athlete's devices already in the registry that\n"
        "neither the file nor this machine's pairing names (another machine's pairing,\n"
        "`registry pair`) stay, unless --prune; the file's devices win on their id and\n"
        "address. Two machines pushing different local pairings both keep theirs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    push.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="the club file (default: $REDOX_CONFIG or the user config dir)",
    )
    push.add_argument(
        "--prune",
        action="store_true",
        help="remove the athletes the file no longer names, and the devices of its athletes "
        "that neither it nor this machine's pairing names",
    )
    push.add_argument(
        "--pairing",
        type=Path,
        metavar="FILE",
        help="the devices paired on this machine with `redox-streamer pair` (what `run "
        "--registry` reads; default: devices.toml in the user config dir): those of the "
        "file's athletes are pushed with them, as `run` would stream them",
    )
    push.add_argument(
        "--replicas",
        type=int,
        choices=(1, 3),
        help="copies of the registry when this push creates it (default: as many as the "
        "team's stream has, else 1)",
    )
    _nats_option(push)
    push.set_defaults(handler=run_push)

    show = actions.add_parser(
        "show",
        help="print the central registry as gateways and workers read it",
        description="Print the club's rules and each athlete with its devices; entries "
        "that do not validate are listed as errors (exit status 2).",
    )
    show.add_argument("--json", action="store_true", help="print JSON")
    _nats_option(show)
    show.set_defaults(handler=run_show)

    pair = actions.add_parser(
        "pair",
        help="pair one device with an athlete in the central registry",
        description="Add a device to an athlete's entry in the central registry; the\n"
        "gateway that sees it takes its lease and forwards it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pair.add_argument(
        "address", metavar="ADDRESS", help="the device's address as `redox-streamer scan` shows it"
    )
    pair.add_argument(
        "--athlete",
        required=True,
        type=athlete_id_arg,
        metavar="ID",
        help=f"athlete id, one in the registry ({ID_RULE})",
    )
    pair.add_argument("--kind", required=True, metavar="KIND", help=KINDS)
    pair.add_argument(
        "--model", metavar="NAME", help="which product of the kind (e.g. activ5; default: "
        "from --name, else the device tells when first seen)",
    )  # fmt: skip
    pair.add_argument("--name", metavar="TEXT", help="its advertised name")
    pair.add_argument(
        "--id", dest="device_id", metavar="ID", help="topic segment (default: the kind)"
    )
    pair.add_argument("--role", metavar="TEXT", help='where it sits (e.g. "left vastus lateralis")')
    pair.add_argument(
        "--replace", action="store_true", help="re-pair an address the athlete already has"
    )
    _nats_option(pair)
    pair.set_defaults(handler=run_pair)

    unpair = actions.add_parser(
        "unpair",
        help="remove one device of an athlete from the central registry",
        description="Remove a device from an athlete's entry; the gateway holding it stops "
        "it and releases its lease.",
    )
    unpair.add_argument("device", metavar="DEVICE", help="the device's id or address")
    unpair.add_argument(
        "--athlete", required=True, type=athlete_id_arg, metavar="ID", help="athlete id"
    )
    _nats_option(unpair)
    unpair.set_defaults(handler=run_unpair)

    parser.set_defaults(handler=lambda _args: _usage(parser))


def _nats_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nats",
        required=True,
        metavar="URL[,URL...]",
        help="NATS server URLs (any nodes of the cluster), comma-separated",
    )


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return INPUT_STATUS


def _with_registry(
    args: argparse.Namespace, work: Callable[[Any], Awaitable[T]], *, create: bool = False
) -> T:
    """Run ``work(kv)`` on the registry's bucket; NATS failures as one line."""
    try:
        import nats
        from nats.errors import Error as NatsError
    except ImportError:
        raise CliError(
            "registry needs nats-py, which is not installed: pip install 'redox-streamer[team]'"
        ) from None
    from streamer.commands.gateway import _servers
    from streamer.team.registry import REGISTRY_BUCKET, open_registry

    servers = _servers(args.nats)

    async def quiet(_exc: Exception) -> None:
        """nats-py would log each failed attempt with its traceback: the one line below
        says it."""

    async def main() -> T:
        try:
            # One attempt per server (0 would retry for ever), then the one-line refusal.
            nc = await nats.connect(
                servers=servers,
                connect_timeout=5,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                error_cb=quiet,
            )
        except (NatsError, OSError, TimeoutError) as exc:
            raise CliError(
                f"--nats {args.nats}: cannot reach NATS ({exc or type(exc).__name__}) — is "
                "nats-server running there, with JetStream?"
            ) from None
        try:
            kv = await open_registry(
                nc.jetstream(), create=create, replicas=getattr(args, "replicas", None)
            )
            if kv is None:
                raise CliError(
                    f"no central registry (bucket {REGISTRY_BUCKET}) on {args.nats} yet — "
                    "write one with `redox-streamer registry push --config club.toml`"
                )
            return await work(kv)
        except (NatsError, TimeoutError) as exc:
            raise CliError(
                f"--nats {args.nats}: the registry could not be read or written "
                f"({exc or type(exc).__name__}) — is JetStream enabled, and the cluster up?"
            ) from None
        finally:
            await nc.close()

    return asyncio.run(main())


def local_pairing(
    config: Config, registry: DeviceRegistry
) -> tuple[dict[str, list[DeviceConfig]], list[str]]:
    """The devices paired in ``registry`` for ``config``'s athletes that the file does not
    list, as ``run`` streams them (:func:`streamer.commands.run.paired_devices`: a
    configured address wins, a second device of a kind gets an id of its own), per
    athlete; and one ``"<athlete>: <id> (<kind> <address>)"`` per device."""
    from streamer.commands.run import paired_devices

    streamed = paired_devices(config, registry)
    paired = {a.id: list(streamed.get(a.id, a.devices))[len(a.devices) :] for a in config.athletes}
    added = [
        f"{athlete}: {d.id} ({d.kind.value} {d.address})"
        for athlete, devices in paired.items()
        for d in devices
    ]
    return {a: d for a, d in paired.items() if d}, added


def run_push(args: argparse.Namespace) -> int:
    """Write the club file's athletes (with the devices paired here), merged per device
    with the registry's entries, and the rules; say what changed."""
    from streamer.team.registry import push

    config = load_config(args.config)
    if not config.athletes:
        raise CliError(
            f"{config.source}: no [[athletes]] to push — give the club file with --config"
        )
    pairing = DeviceRegistry.load(args.pairing)
    paired, added = local_pairing(config, pairing)
    named = {a.id for a in config.athletes}
    strangers = sorted(
        f"{d.athlete} ({d.kind.value} {d.address})" for d in pairing if d.athlete not in named
    )
    report = _with_registry(
        args, lambda kv: push(kv, config, prune=args.prune, paired=paired), create=True
    )
    if added:
        print(f"paired on this machine ({pairing.path}), pushed with the file: {'; '.join(added)}")
    parts = [f"{len(report.written)} athletes written" + _ids(report.written)]
    parts.append(f"{len(report.unchanged)} unchanged")
    if report.rules_written:
        parts.append("club [rules] written")
    if report.removed:
        parts.append(f"{len(report.removed)} removed" + _ids(report.removed))
    if report.devices_removed:
        parts.append(
            f"{len(report.devices_removed)} devices removed" + _ids(report.devices_removed)
        )
    print(f"central registry on {args.nats}: {', '.join(parts)}")
    if report.devices_kept:
        print(
            f"note: {len(report.devices_kept)} devices in the registry are neither in "
            f"{config.source} nor paired here{_ids(report.devices_kept)}: they stay (another "
            "machine's pairing, or `registry pair`); --prune removes them",
            file=sys.stderr,
        )
    if report.devices_replaced:
        print(
            f"note: {config.source} gives the ids of {len(report.devices_replaced)} devices "
            f"in the registry to other addresses{_ids(report.devices_replaced)}: the file's "
            "replace them — give a device its own id in the file to keep both",
            file=sys.stderr,
        )
    if report.devices_renamed:
        print(
            f"note: {config.source} gives the ids of {len(report.devices_renamed)} devices "
            f"paired here to other addresses: renamed{_ids(report.devices_renamed)}",
            file=sys.stderr,
        )
    if report.kept:
        print(
            f"note: {len(report.kept)} athletes in the registry are not in {config.source}"
            f"{_ids(report.kept)}: they stay; --prune removes them",
            file=sys.stderr,
        )
    if strangers:
        print(
            f"note: devices paired in {pairing.path} for athletes not in {config.source} were "
            f"not pushed: {', '.join(strangers)} — add the athletes to the file, or pair "
            "each with `redox-streamer registry pair ADDRESS --athlete ID --kind KIND`",
            file=sys.stderr,
        )
    return 0


def _ids(ids: list[str]) -> str:
    return f" ({', '.join(ids)})" if ids else ""


def run_show(args: argparse.Namespace) -> int:
    """Print the registry; its invalid entries as errors (status 2)."""
    from streamer.team.registry import read_view

    view = _with_registry(args, read_view)
    if args.json:
        body = {
            "rules": dict(view.rules),
            "athletes": [athlete_data(a) for a in view.athletes],
            "problems": [str(p) for p in view.problems],
        }
        print(json.dumps(body, indent=2))
    else:
        print(f"central registry on {args.nats}: {len(view.athletes)} athletes")
        if view.rules:
            print("rules: " + ", ".join(f"{k} = {v}" for k, v in sorted(view.rules.items())))
        for athlete in view.athletes:
            print(_athlete_line(athlete))
    for problem in view.problems:
        print(f"redox-streamer registry show: error: {problem}", file=sys.stderr)
    return INPUT_STATUS if view.problems else 0


def _athlete_line(a: AthleteConfig) -> str:
    devices = ", ".join(
        f"{d.id} ({d.kind.value}{' ' + d.model if d.model else ''} {d.address or d.name}"
        f"{', ' + d.role if d.role else ''})"
        for d in a.devices
    )
    overrides = f", overrides {dict(a.rules)}" if a.rules else ""
    return f"athlete {a.id} ({a.name}), profile {a.profile}{overrides}: {devices or 'no devices'}"


def run_pair(args: argparse.Namespace) -> int:
    """Pair one device in the registry."""
    from streamer.team.registry import pair

    try:
        address = normalize_address(args.address)
    except RegistryError as exc:
        raise CliError(f"ADDRESS: {exc}") from None
    fields = {
        "kind": args.kind,
        "address": address,
        "name": args.name,
        "model": args.model,
        "id": args.device_id,
        "role": args.role,
    }
    device = {k: v for k, v in fields.items() if v is not None}
    stored = _with_registry(args, lambda kv: pair(kv, args.athlete, device, replace=args.replace))
    print(
        f"paired {stored.address} to {args.athlete} as {stored.id} ({stored.kind.value}) in "
        f"the central registry on {args.nats}; the gateway that sees it takes it"
    )
    return 0


def run_unpair(args: argparse.Namespace) -> int:
    """Remove one device from the registry."""
    from streamer.team.registry import unpair

    gone = _with_registry(args, lambda kv: unpair(kv, args.athlete, args.device))
    print(
        f"unpaired {gone.id} ({gone.kind.value} {gone.address or gone.name}) of {args.athlete} "
        f"in the central registry on {args.nats}; its gateway releases it"
    )
    return 0
