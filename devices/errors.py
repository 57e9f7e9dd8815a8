"""The bases of the errors :mod:`devices` raises on purpose.

Every such error names the device, file or payload at fault, so a caller can show its
message as it is: the command line turns any :class:`DeviceError` into one line and an
exit status (:mod:`streamer.errors`), without importing the module that raised it.
"""

from __future__ import annotations


class DeviceError(Exception):
    """A device, a payload or a file about devices (registry, recording) cannot be used.

    Subclasses: ``CodecError``, ``RecordingError``, ``RegistryError`` and
    :class:`DeviceUnavailableError`.
    """


class DeviceUnavailableError(DeviceError):
    """A device or the Bluetooth adapter cannot be used now: no usable adapter, a device
    not connected or not answering, a kind with no driver.

    Unlike a bad file, the same command may work once the device is on and in range.
    Subclasses: ``DriverError``, ``BluetoothUnavailableError``.
    """
