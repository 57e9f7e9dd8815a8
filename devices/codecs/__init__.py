"""Pure GATT codecs: ``decode(bytes) -> record`` and ``encode(record) -> bytes``.

Every codec module (``heart_rate``, ``battery``, ``moxy``, ``tindeq``, ``plx``,
``cycling_power``, ``activ5``; ``sfloat`` for the IEEE-11073 number format) has
``decode(data, *, t_ns=0)``, ``encode(record)`` and ``to_json(record)``, and raises only
:class:`CodecError`. :data:`CODECS` gathers them under the short characteristic names the
CLI and recordings use (see :data:`devices.gatt.CHARACTERISTICS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from devices import gatt
from devices.codecs import activ5, battery, cycling_power, heart_rate, moxy, plx, tindeq
from devices.codecs.errors import CodecError
from devices.records import (
    BatteryLevel,
    BodySensorLocation,
    DeviceRecord,
    ForceSample,
    HeartRateSample,
    PowerSample,
    SmO2Sample,
    SpO2Sample,
    TindeqCommandResponse,
    TindeqLowPower,
    TindeqWeight,
)

__all__ = ["CODECS", "Codec", "CodecError", "codec_for_uuid", "parse_hex"]


@dataclass(frozen=True, slots=True)
class Codec:
    """One characteristic's codec: the uniform face of a codec module.

    ``decode``/``encode`` raise :class:`CodecError` only; ``encode`` also rejects a record
    of the wrong type. ``to_json`` gives flat JSON-ready fields with units in their names.
    """

    characteristic: gatt.Characteristic
    record_types: tuple[type, ...]
    _decode: Callable[..., Any]
    _encode: Callable[[Any], bytes]
    _to_json: Callable[[Any], dict[str, object]]

    @property
    def name(self) -> str:
        """The short name (``"2a37"``, ``"moxy"``, …)."""
        return self.characteristic.name

    @property
    def uuid(self) -> str:
        """The characteristic's full 128-bit UUID."""
        return self.characteristic.uuid

    def decode(self, data: bytes, *, t_ns: int = 0) -> DeviceRecord:
        """Decode one notification payload; ``t_ns`` is its receipt time."""
        record: DeviceRecord = self._decode(bytes(data), t_ns=t_ns)
        return record

    def encode(self, record: DeviceRecord) -> bytes:
        """Encode a record as this characteristic's payload."""
        if not isinstance(record, self.record_types):
            expected = " or ".join(t.__name__ for t in self.record_types)
            raise CodecError(
                f"{self.name}: cannot encode a {type(record).__name__}; expected {expected}"
            )
        return self._encode(record)

    def to_json(self, record: DeviceRecord) -> dict[str, object]:
        """The record's fields for JSON, units in the names (``hr_bpm``, ``smo2_pct``, …)."""
        if not isinstance(record, self.record_types):
            raise CodecError(f"{self.name}: cannot describe a {type(record).__name__}")
        return self._to_json(record)


def _codec(
    name: str,
    types: tuple[type, ...],
    decode: Callable[..., Any],
    encode: Callable[[Any], bytes],
    to_json: Callable[[Any], dict[str, object]],
) -> Codec:
    return Codec(gatt.CHARACTERISTICS[name], types, decode, encode, to_json)


CODECS: Mapping[str, Codec] = MappingProxyType(
    {
        c.name: c
        for c in (
            _codec(
                "2a37", (HeartRateSample,), heart_rate.decode, heart_rate.encode, heart_rate.to_json
            ),
            _codec(
                "2a38",
                (BodySensorLocation,),
                heart_rate.decode_location,
                heart_rate.encode_location,
                heart_rate.location_to_json,
            ),
            _codec("2a19", (BatteryLevel,), battery.decode, battery.encode, battery.to_json),
            _codec("2a5f", (SpO2Sample,), plx.decode, plx.encode, plx.to_json),
            _codec(
                "2a63",
                (PowerSample,),
                cycling_power.decode,
                cycling_power.encode,
                cycling_power.to_json,
            ),
            _codec("moxy", (SmO2Sample,), moxy.decode, moxy.encode, moxy.to_json),
            _codec(
                "tindeq",
                (TindeqWeight, TindeqCommandResponse, TindeqLowPower),
                tindeq.decode,
                tindeq.encode,
                tindeq.to_json,
            ),
            _codec("activ5", (ForceSample,), activ5.decode, activ5.encode, activ5.to_json),
        )
    }
)
"""Every codec by short characteristic name."""

_BY_UUID: Mapping[str, Codec] = MappingProxyType({c.uuid: c for c in CODECS.values()})


def codec_for_uuid(uuid: str) -> Codec | None:
    """The codec of the characteristic with this UUID (any spelling bleak gives), or None."""
    char = gatt.characteristic_for_uuid(uuid)
    return None if char is None else _BY_UUID.get(char.uuid)


_HEX_SEPARATORS = str.maketrans("", "", " \t\n:-_,")


def parse_hex(text: str) -> bytes:
    """Bytes from hex text, tolerant of spaces, colons, dashes and a ``0x`` prefix.

    ``"CB 06 15 02"``, ``"cb:06:15:02"`` and ``"0xcb061502"`` are the same payload.
    Raises :class:`CodecError` naming the offending character or the odd length.
    """
    compact = text.strip()
    if compact[:2].lower() == "0x":
        compact = compact[2:]
    compact = compact.translate(_HEX_SEPARATORS)
    for i, ch in enumerate(compact):
        if ch not in "0123456789abcdefABCDEF":
            raise CodecError(f"hex {text!r}: {ch!r} (hex digit {i + 1}) is not a hex digit")
    if len(compact) % 2:
        raise CodecError(f"hex {text!r}: {len(compact)} hex digits, not a whole number of bytes")
    return bytes.fromhex(compact)
