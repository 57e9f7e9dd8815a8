"""What a Bluetooth device is for: the device families the streamer knows.

Discovery classifies advertisements into these kinds, the registry stores them, the
reconnection policy table and the driver table are keyed by them.
"""

from __future__ import annotations

from enum import Enum


class DeviceKind(Enum):
    """A device family; the value is the short name used in files, JSON and the CLI."""

    STRAP = "strap"  # chest strap: Heart Rate service 0x180D, HR + RR
    SMO2 = "smo2"  # muscle-oxygen sensor (Moxy)
    GRIP = "grip"  # grip / force dynamometer (Tindeq Progressor, Activ5)
    POWER = "power"  # Cycling Power service 0x1818
    SPO2 = "spo2"  # Pulse Oximeter service 0x1822
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, text: str) -> DeviceKind:
        """The kind named ``text`` (case-insensitive); ``ValueError`` names the choices."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            choices = ", ".join(k.value for k in cls)
            raise ValueError(f"unknown device kind {text!r}; expected one of: {choices}") from None
