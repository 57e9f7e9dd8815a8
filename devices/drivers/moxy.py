"""Moxy muscle-oxygen sensors: vendor service 6404d801-…"""

from __future__ import annotations

from devices.drivers.notify import NotifyDriver
from devices.models import model_named


class MoxyDriver(NotifyDriver):
    """Streams :class:`~devices.records.SmO2Sample` (SmO2 %, tHb g/dL) from the data
    characteristic, plus the standard battery level when the sensor offers it."""

    default_model = model_named("moxy")
