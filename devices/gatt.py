"""GATT UUIDs of the services and characteristics the streamer talks to.

UUIDs are full 128-bit lower-case strings, the form bleak reports and accepts. The short
names (``"2a37"``, ``"moxy"``, ...) are what the CLI, recordings and the codec registry
(:data:`devices.codecs.CODECS`) use for a characteristic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"
"""The Bluetooth Base UUID minus its first 32 bits, where 16- and 32-bit UUIDs go."""


def uuid16(short: int) -> str:
    """The full 128-bit UUID string of a 16-bit SIG-assigned UUID (e.g. ``0x2A37``)."""
    if not 0 <= short <= 0xFFFF:
        raise ValueError(f"{short:#x} is not a 16-bit UUID")
    return f"0000{short:04x}{BASE_UUID_SUFFIX}"


def normalize_uuid(uuid: str) -> str:
    """``uuid`` as a full lower-case 128-bit string; accepts ``"2A37"`` and ``"0x2a37"``."""
    text = uuid.strip().lower()
    text = text.removeprefix("0x")
    if len(text) == 4:
        return uuid16(int(text, 16))
    if len(text) == 8:
        return f"{int(text, 16):08x}{BASE_UUID_SUFFIX}"
    if len(text) == 36:
        return text
    raise ValueError(f"{uuid!r} is not a 16-, 32- or 128-bit UUID")


# --- Services ---
HEART_RATE_SERVICE = uuid16(0x180D)
BATTERY_SERVICE = uuid16(0x180F)
CYCLING_POWER_SERVICE = uuid16(0x1818)
PULSE_OXIMETER_SERVICE = uuid16(0x1822)
TINDEQ_SERVICE = "7e4e1701-1ea6-40c9-9dcc-13d34ffead57"
MOXY_SERVICE = "6404d801-4cb9-11e8-b566-0800200c9a66"
ACTIV5_SERVICE = uuid16(0x5000)  # vendor-chosen 16-bit value, not SIG-assigned

# --- Characteristics ---
HEART_RATE_MEASUREMENT = uuid16(0x2A37)  # notify
BODY_SENSOR_LOCATION = uuid16(0x2A38)  # read
BATTERY_LEVEL = uuid16(0x2A19)  # read, notify
CYCLING_POWER_MEASUREMENT = uuid16(0x2A63)  # notify
PLX_CONTINUOUS_MEASUREMENT = uuid16(0x2A5F)  # notify
TINDEQ_DATA = "7e4e1702-1ea6-40c9-9dcc-13d34ffead57"  # notify: responses and weights
TINDEQ_CONTROL = "7e4e1703-1ea6-40c9-9dcc-13d34ffead57"  # write: commands
MOXY_DATA = "6404d804-4cb9-11e8-b566-0800200c9a66"  # notify
ACTIV5_FORCE = uuid16(0xF0FE)  # notify


@dataclass(frozen=True, slots=True)
class Characteristic:
    """A characteristic the streamer decodes: its short name, UUIDs and a human title."""

    name: str
    uuid: str
    service_uuid: str
    title: str


def _table(*chars: Characteristic) -> Mapping[str, Characteristic]:
    return MappingProxyType({c.name: c for c in chars})


CHARACTERISTICS: Mapping[str, Characteristic] = _table(
    Characteristic(
        "2a37", HEART_RATE_MEASUREMENT, HEART_RATE_SERVICE, "Heart Rate Measurement (0x2A37)"
    ),
    Characteristic(
        "2a38", BODY_SENSOR_LOCATION, HEART_RATE_SERVICE, "Body Sensor Location (0x2A38)"
    ),
    Characteristic("2a19", BATTERY_LEVEL, BATTERY_SERVICE, "Battery Level (0x2A19)"),
    Characteristic(
        "2a5f",
        PLX_CONTINUOUS_MEASUREMENT,
        PULSE_OXIMETER_SERVICE,
        "PLX Continuous Measurement (0x2A5F)",
    ),
    Characteristic(
        "2a63",
        CYCLING_POWER_MEASUREMENT,
        CYCLING_POWER_SERVICE,
        "Cycling Power Measurement (0x2A63)",
    ),
    Characteristic("moxy", MOXY_DATA, MOXY_SERVICE, "Moxy SmO2 sensor data"),
    Characteristic("tindeq", TINDEQ_DATA, TINDEQ_SERVICE, "Tindeq Progressor data"),
    Characteristic("activ5", ACTIV5_FORCE, ACTIV5_SERVICE, "Activ5 force"),
)
"""Decodable characteristics by short name, in the order the CLI lists them."""

_BY_UUID: Mapping[str, Characteristic] = MappingProxyType(
    {c.uuid: c for c in CHARACTERISTICS.values()}
)


def characteristic_for_uuid(uuid: str) -> Characteristic | None:
    """The known characteristic with this UUID (any accepted spelling), or ``None``."""
    try:
        return _BY_UUID.get(normalize_uuid(uuid))
    except ValueError:
        return None
