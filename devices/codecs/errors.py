"""The one error every codec raises."""

from __future__ import annotations

from devices.errors import DeviceError


class CodecError(DeviceError, ValueError):
    """A payload (or a record to encode) does not fit its characteristic's format.

    The message names the characteristic, the field and the byte offset that is wrong, e.g.
    ``"2a37: RR interval at offset 4 needs 2 bytes, the packet has 5"``. Drivers count
    these and go on; the CLI prints the message as one line.
    """
