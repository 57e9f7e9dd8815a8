"""Power meters: Cycling Power service 0x1818."""

from __future__ import annotations

from devices.drivers.notify import NotifyDriver
from devices.models import model_named


class PowerMeterDriver(NotifyDriver):
    """Streams :class:`~devices.records.PowerSample` (instantaneous W) from 0x2A63,
    plus the standard battery level when the meter offers it."""

    default_model = model_named("cycling_power")
