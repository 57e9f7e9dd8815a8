"""``redox-streamer decode``: decode one notification payload, for people debugging a device."""

from __future__ import annotations

import argparse
import json
from typing import Any

from devices.codecs import CODECS, Codec, CodecError, codec_for_uuid, parse_hex
from streamer.errors import CliError

DESCRIPTION = """\
Decode one Bluetooth LE notification payload with the same codec the streamer uses, and
print its fields with their units. Use it to check what your own device sends (copy the
bytes from nRF Connect, bluetoothctl or a recording's "hex" field).

CHAR is the characteristic:
  2a37    Heart Rate Measurement (HR, RR intervals, sensor contact, energy)
  2a38    Body Sensor Location
  2a19    Battery Level
  2a5f    PLX Continuous Measurement (SpO2, pulse rate; IEEE-11073 SFLOAT)
  2a63    Cycling Power Measurement (power and its optional fields)
  moxy    Moxy SmO2 sensor data (SmO2, previous SmO2, tHb)
  tindeq  Tindeq Progressor data (weights, command responses, low-power warning)
  activ5  Activ5 force
A full UUID (e.g. 00002a37-0000-1000-8000-00805f9b34fb) works too.

HEX is the payload; spaces, colons and dashes between bytes are ignored.
"""

EPILOG = """\
examples:
  redox-streamer decode 2a37 "16 48 00 04 20 03"
  redox-streamer decode moxy CB 06 15 02 16 02 C0 04 00
  redox-streamer decode tindeq 01:08:00:00:20:41:10:27:00:00 --json
  redox-streamer decode 2a5f 00CFF33C00

A payload that does not fit its characteristic's format gets a one-line error naming the
field and byte offset that is wrong, and exit status 2.
"""


def register(subparsers: Any) -> None:
    """Add the ``decode`` sub-command."""
    parser = subparsers.add_parser(
        "decode",
        help="decode one notification payload (hex) and print its fields",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("char", metavar="CHAR", help="characteristic: " + ", ".join(CODECS))
    parser.add_argument("hex", metavar="HEX", nargs="+", help="payload bytes in hex")
    parser.add_argument(
        "--json", action="store_true", help="print JSON with units in the field names"
    )
    parser.set_defaults(handler=run)


def _codec(char: str) -> Codec:
    codec = CODECS.get(char.strip().lower()) or codec_for_uuid(char)
    if codec is None:
        raise CliError(
            f"unknown characteristic {char!r}; use one of {', '.join(CODECS)} or a full UUID"
        )
    return codec


def _text(value: object) -> str:
    if value is None:
        return "no valid value"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format(value, ".10g")
    if isinstance(value, dict):
        return ", ".join(f"{k} {_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) if value else "none"
    return str(value)


def render(title: str, size: int, fields: dict[str, object]) -> str:
    """The human form: a title line, then one ``name  value`` line per field."""
    lines = [f"{title}, {size} byte{'s' if size != 1 else ''}"]
    width = max((len(name) for name in fields), default=0)
    for name, value in fields.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"  {name:<{width}}  {len(value)}")
            lines.extend(f"  {'':<{width}}    {_text(item)}" for item in value)
        else:
            lines.append(f"  {name:<{width}}  {_text(value)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Decode ``args.hex`` with ``args.char``'s codec and print the fields."""
    codec = _codec(args.char)
    try:
        payload = parse_hex(" ".join(args.hex))
    except CodecError as exc:
        raise CliError(f'{exc}; give the payload as hex bytes, e.g. "10 48 00 04"') from None
    try:
        record = codec.decode(payload)
    except CodecError as exc:
        raise CliError(
            f"{exc}; give the whole {codec.name} payload as it arrived (nRF Connect, "
            'bluetoothctl or a recording\'s "hex" field)'
        ) from None
    fields = codec.to_json(record)
    if args.json:
        print(json.dumps({"char": codec.name, **fields}, allow_nan=False))
    else:
        print(render(codec.characteristic.title, len(payload), fields))
    return 0
