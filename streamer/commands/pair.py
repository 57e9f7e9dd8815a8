"""``redox-streamer pair``: the paired-devices registry — which device belongs to whom.

``pair add`` registers a device for an athlete (by address, or by scanning for the one
unpaired device of a kind), ``pair list`` shows the registry, ``pair remove`` forgets a
device. ``redox-streamer run`` streams the registry's devices of configured athletes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from devices.discovery import BluetoothUnavailableError, FoundDevice, discover
from devices.kinds import DeviceKind
from devices.models import STREAMABLE_KINDS
from devices.registry import DeviceRegistry, PairedDevice, normalize_address
from streamer.commands.scan import (
    DEFAULT_EMULATED_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    scan_emulated,
    scan_seconds,
)
from streamer.config import ID_RULE, athlete_id_arg, load_config
from streamer.errors import CliError

PAIRABLE = tuple(k for k in DeviceKind if k in STREAMABLE_KINDS)
"""Kinds with a device model: the only ones ``run`` can stream."""

DESCRIPTION = """\
Remember which Bluetooth device belongs to which athlete, so `redox-streamer run` streams
it. The registry is a small TOML file in your config directory (see `pair list`); devices
named in the config file itself need no pairing.

With an address, `pair add` registers that device (its kind is looked up by a short scan
unless --kind says it). Without one, it scans and pairs the one unpaired device of the
kind you name — wear the strap or switch the sensor on, keep other athletes' devices of
that kind away, or give the address from `redox-streamer scan`.
"""

EPILOG = """\
examples:
  redox-streamer pair add --athlete anna --kind strap      the one unpaired strap in range
  redox-streamer pair add A0:9E:1A:12:34:56 --athlete anna --kind strap
  redox-streamer pair add C4:7F:51:00:11:22 --athlete anna --kind smo2 \\
      --role "left vastus lateralis"
  redox-streamer pair list
  redox-streamer pair remove A0:9E:1A:12:34:56
  redox-streamer pair add --athlete demo --kind strap --emulated --registry /tmp/dev.toml
"""


def register(subparsers: Any) -> None:
    """Add the ``pair`` sub-command with ``add``, ``list`` and ``remove``."""
    parser = subparsers.add_parser(
        "pair",
        help="remember which device belongs to which athlete",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="pair_action", metavar="ACTION")

    add = actions.add_parser(
        "add",
        help="pair a device with an athlete",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add.add_argument(
        "address",
        nargs="?",
        metavar="ADDRESS",
        help="the device's address as `redox-streamer scan` shows it "
        "(default: scan for the one unpaired device of --kind)",
    )
    add.add_argument(
        "--athlete",
        required=True,
        type=athlete_id_arg,  # the config's own check: what pairs here, `run` can stream
        metavar="ID",
        help=f"athlete id, as in the config file's [[athletes]] id ({ID_RULE})",
    )
    add.add_argument(
        "--kind",
        type=_kind,
        metavar="KIND",
        help="strap, smo2, grip or power (default: what the scan says it is)",
    )
    add.add_argument(
        "--role",
        default="",
        metavar="TEXT",
        help='where the device sits when the kind does not say it (e.g. "left vastus lateralis")',
    )
    add.add_argument(
        "--name", default=None, metavar="TEXT", help="a name to show (default: the advertised name)"
    )
    add.add_argument(
        "--replace", action="store_true", help="re-pair an address that is already paired"
    )
    add.add_argument(
        "--timeout",
        type=scan_seconds,
        default=None,
        metavar="S",
        help=f"scan time (default {DEFAULT_TIMEOUT_S:g} s)",
    )
    add.add_argument(
        "--emulated",
        action="store_true",
        help="scan the emulated devices instead of the radio (try it out)",
    )
    add.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="config file, to check the athlete exists "
        "(default: $REDOX_CONFIG or the user config dir)",
    )
    _registry_option(add)
    add.set_defaults(handler=run_add)

    listing = actions.add_parser("list", help="show the paired devices")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    _registry_option(listing)
    listing.set_defaults(handler=run_list)

    remove = actions.add_parser("remove", help="forget a paired device")
    remove.add_argument("address", metavar="ADDRESS", help="the address to forget")
    _registry_option(remove)
    remove.set_defaults(handler=run_remove)

    parser.set_defaults(handler=lambda _args: _usage(parser))


def _registry_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry",
        type=Path,
        metavar="FILE",
        help="registry file (default: devices.toml in the user config dir)",
    )


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def run_add(args: argparse.Namespace) -> int:
    """Pair one device; print what was paired and where it is kept."""
    registry = _load(args.registry)
    address, kind, advertised = _target(args, registry)
    if kind not in PAIRABLE:
        raise CliError(
            f"{address} is a {kind.value} device; redox-streamer streams "
            f"{', '.join(k.value for k in PAIRABLE)} devices"
        )
    existing = registry.get(address)
    if existing is not None and not args.replace:
        raise CliError(
            f"{address} is already paired to {existing.athlete} as {existing.kind.value}; "
            "`pair remove` it first or add --replace"
        )
    name = args.name if args.name is not None else advertised
    device = PairedDevice(address, args.athlete, kind, name or "", args.role)
    registry.add(device, replace=True)
    registry.save()
    label = f" ({device.name})" if device.name else ""
    print(
        f"paired {device.address}{label} to {device.athlete} as {device.kind.value}; "
        f"kept in {registry.path}"
    )
    _warn_unknown_athlete(args.config, device.athlete)
    return 0


def _target(
    args: argparse.Namespace, registry: DeviceRegistry
) -> tuple[str, DeviceKind, str | None]:
    """The device to pair: (address, kind, advertised name) from the flags and a scan."""
    if args.address is None:
        if args.kind is None:
            raise CliError(
                f"give the device's ADDRESS, or --kind ({', '.join(k.value for k in PAIRABLE)}) "
                "to pair the one unpaired device of that kind in range"
            )
        found = _choose(_scan(args, args.kind), registry, args.kind, _timeout(args))
        return found.address, args.kind, found.name
    address = normalize_address(args.address)
    if args.kind is not None:  # nothing to learn from a scan
        return address, args.kind, None
    seen = _find(_scan(args, None), address)
    if seen is None:
        raise CliError(
            f"{address} was not seen in a {_timeout(args):g} s scan, so its kind is "
            "unknown: wake the device and try again, or give --kind "
            "(strap, smo2, grip or power)"
        )
    return address, seen.kind, seen.name


def run_list(args: argparse.Namespace) -> int:
    """Print the registry as a table, or JSON with ``--json``."""
    registry = _load(args.registry)
    if args.json:
        print(json.dumps([_device_json(d) for d in registry], indent=2))
        return 0
    if not len(registry):
        print(
            f"No paired devices in {registry.path}. Pair one with "
            "`redox-streamer pair add --athlete ID --kind strap`."
        )
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Paired devices ({registry.path})")
    for column in ("athlete", "kind", "address", "name", "role"):
        table.add_column(column, no_wrap=column == "address")
    for d in sorted(registry, key=lambda d: (d.athlete, d.kind.value, d.address)):
        table.add_row(d.athlete, d.kind.value, d.address, d.name, d.role)
    Console().print(table)
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """Forget one device."""
    registry = _load(args.registry)
    device = registry.remove(args.address)
    registry.save()
    print(
        f"removed {device.address} ({device.kind.value} of {device.athlete}) from {registry.path}"
    )
    return 0


def _load(path: Path | None) -> DeviceRegistry:
    return DeviceRegistry.load(path)


def _timeout(args: argparse.Namespace) -> float:
    if args.timeout is not None:
        return float(args.timeout)
    return DEFAULT_EMULATED_TIMEOUT_S if args.emulated else DEFAULT_TIMEOUT_S


def _scan(args: argparse.Namespace, kind: DeviceKind | None) -> list[FoundDevice]:
    timeout_s = _timeout(args)
    try:
        found = asyncio.run(scan_emulated(timeout_s) if args.emulated else discover(timeout_s))
    except BluetoothUnavailableError as exc:
        raise CliError(f"{exc}; or give --kind with the address to pair without scanning") from exc
    return [f for f in found if kind is None or f.kind is kind]


def _find(found: Sequence[FoundDevice], address: str) -> FoundDevice | None:
    return next((f for f in found if normalize_address(f.address) == address), None)


def _choose(
    found: Sequence[FoundDevice], registry: DeviceRegistry, kind: DeviceKind, timeout_s: float
) -> FoundDevice:
    """The one unpaired device of ``kind``; an error listing them when it is not one."""
    unpaired = [f for f in found if f.address not in registry]
    if len(unpaired) == 1:
        return unpaired[0]
    if not unpaired:
        paired = len(found) - len(unpaired)
        extra = f" ({paired} already paired; `pair list` shows them)" if paired else ""
        raise CliError(
            f"no unpaired {kind.value} device seen in {timeout_s:g} s{extra}: "
            "wake it (a strap advertises only while worn) and scan longer with "
            "--timeout"
        )
    candidates = "; ".join(
        f"{f.address} {f.name or '(no name)'} {'' if f.rssi is None else f'{f.rssi} dBm'}".strip()
        for f in unpaired
    )
    raise CliError(
        f"{len(unpaired)} unpaired {kind.value} devices in range ({candidates}); "
        "give the ADDRESS of the one to pair (the strongest signal is nearest)"
    )


def _warn_unknown_athlete(config_path: Path | None, athlete: str) -> None:
    """Say so when ``run`` would ignore the pairing: the athlete is not configured."""
    try:
        config = load_config(config_path)
    except CliError:
        return  # no or a bad config: `run` and `doctor` say what to do about it
    if athlete not in {a.id for a in config.athletes}:
        print(
            f"note: {athlete!r} is not an athlete in {config.source}; `redox-streamer run` "
            "streams devices of configured athletes only — add an [[athletes]] table with "
            f"id = {json.dumps(athlete)}",
            file=sys.stderr,
        )


def _device_json(device: PairedDevice) -> dict[str, str]:
    return {
        "address": device.address,
        "athlete": device.athlete,
        "kind": device.kind.value,
        "name": device.name,
        "role": device.role,
    }


def _kind(text: str) -> DeviceKind:
    try:
        return DeviceKind.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
