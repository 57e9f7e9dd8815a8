"""``redox-streamer scan``: list the Bluetooth LE devices in range, and what each one is."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from devices import gatt
from devices.discovery import BluetoothUnavailableError, FoundDevice, discover
from devices.kinds import DeviceKind
from devices.models import MODELS
from streamer.errors import CliError

if TYPE_CHECKING:
    from devices.emulated import EmulatedPeripheral

DEFAULT_TIMEOUT_S = 5.0
"""Radio scan length: several advertising intervals of a slow (1–2 s) advertiser."""
DEFAULT_EMULATED_TIMEOUT_S = 0.5
"""Emulated devices advertise every 20 ms; half a second sees each many times."""

DESCRIPTION = """\
List Bluetooth LE devices in range: address, advertised name, what kind of device it is
(strap, smo2, grip, power, spo2, unknown) and its signal strength (RSSI, dBm; closer to 0
is nearer). The kind comes from the advertised services, else from the name.

With --emulated, an emulated chest strap, Moxy, Tindeq and power meter are started on a
virtual Bluetooth link and scanned through the same code: no radio needed.
"""

EPILOG = """\
examples:
  redox-streamer scan                     scan the radio for 5 s, print a table
  redox-streamer scan --timeout 15        scan longer (straps wake when worn)
  redox-streamer scan --json              machine-readable list
  redox-streamer scan --emulated          the emulated devices, no hardware

A strap advertises only while it touches skin (wet the electrodes); a Polar H10 accepts
one connection at a time unless dual connection is enabled in the Polar app.
"""


_SERVICE_NAMES = {
    gatt.HEART_RATE_SERVICE: "heart rate",
    gatt.BATTERY_SERVICE: "battery",
    gatt.CYCLING_POWER_SERVICE: "cycling power",
    gatt.PULSE_OXIMETER_SERVICE: "pulse oximeter",
    gatt.MOXY_SERVICE: "moxy",
    gatt.TINDEQ_SERVICE: "tindeq",
    gatt.ACTIV5_SERVICE: "activ5",
}


def register(subparsers: Any) -> None:
    """Add the ``scan`` sub-command."""
    parser = subparsers.add_parser(
        "scan",
        help="list Bluetooth LE devices in range and what they are",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--emulated",
        action="store_true",
        help="scan emulated devices (one of each model) on a virtual link instead of the radio",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument(
        "--timeout",
        type=scan_seconds,
        default=None,
        metavar="S",
        help=f"scan for S seconds (default {DEFAULT_TIMEOUT_S:g}; "
        f"{DEFAULT_EMULATED_TIMEOUT_S:g} with --emulated)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Scan, print what was found; exit status 0 (also when nothing was found)."""
    default = DEFAULT_EMULATED_TIMEOUT_S if args.emulated else DEFAULT_TIMEOUT_S
    timeout_s: float = args.timeout if args.timeout is not None else default
    try:
        found = asyncio.run(scan_emulated(timeout_s) if args.emulated else discover(timeout_s))
    except BluetoothUnavailableError as exc:
        raise CliError(f"{exc}; or try `redox-streamer scan --emulated`") from exc
    if args.json:
        print(json.dumps([device_json(f) for f in found], indent=2))
    else:
        print_table(found, timeout_s)
    return 0


async def scan_emulated(timeout_s: float) -> list[FoundDevice]:
    """Start one emulated device of each kind and scan them with :func:`discover`."""
    from devices.emulated import EmulatedWorld

    async with EmulatedWorld() as world:
        for peripheral in emulated_fleet():
            await world.add(peripheral)
        return await discover(timeout_s, scanner_kwargs=world.scanner_kwargs)


def emulated_fleet() -> Sequence[EmulatedPeripheral]:
    """One emulated device of each model, in the order the listing sorts them (by kind):
    the world gives them C0:00:00:00:00:01, :02, ... in that order."""
    from devices.emulated import emulator_class  # Bumble: only when emulating

    models = sorted(MODELS, key=lambda m: list(DeviceKind).index(m.kind))
    return [emulator_class(m)(m.emulated_name) for m in models]


def device_json(found: FoundDevice) -> dict[str, object]:
    """The JSON object for one device; units in field names (``rssi_dbm``)."""
    return {
        "address": found.address,
        "name": found.name,
        "kind": found.kind.value,
        "model": None if found.model is None else found.model.name,
        "rssi_dbm": found.rssi,
        "services": list(found.services),
    }


def print_table(found: Sequence[FoundDevice], timeout_s: float) -> None:
    """A table of the devices, or a hint when none was seen."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not found:
        console.print(
            f"No Bluetooth LE device seen in {timeout_s:g} s. Wake the device (a strap "
            "advertises only while worn) and scan longer with --timeout.",
            highlight=False,
        )
        return
    table = Table(title=f"Bluetooth LE devices seen in {timeout_s:g} s")
    table.add_column("address", no_wrap=True)
    table.add_column("name")
    table.add_column("kind")
    table.add_column("RSSI dBm", justify="right")
    table.add_column("services")
    for f in found:
        table.add_row(
            f.address,
            f.name or "",
            f.kind.value,
            "" if f.rssi is None else str(f.rssi),
            ", ".join(_service_name(s) for s in f.services),
        )
    console.print(table)


def _service_name(uuid: str) -> str:
    name = _SERVICE_NAMES.get(uuid)
    if name is not None:
        return name
    if uuid.endswith(gatt.BASE_UUID_SUFFIX) and uuid.startswith("0000"):
        return "0x" + uuid[4:8]
    return uuid


def scan_seconds(text: str) -> float:
    """argparse type of a scan time: seconds, > 0 and <= 3600."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: the scan time must be > 0 and <= 3600 s")
    return value
