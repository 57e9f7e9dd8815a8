"""A device configured by kind and address alone, of a kind with several models.

A grip device may be a Tindeq Progressor (which must be told to stream) or an Activ5
(which streams by itself): driving an Activ5 as a Progressor streams nothing. When the
configuration does not say which (``model = …``, or a name that identifies it), the device
tells: :class:`ResolvingDriver` asks it when it is first seen
(:func:`devices.discovery.identify_model`: its advertisement, else its GATT services), then
runs the model's own driver for the rest of its life.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Sequence
from typing import Any, Final

from bleak import BleakClient
from bleak.backends.device import BLEDevice

from devices.discovery import ModelUnknownError, identify_model
from devices.drivers.base import DeviceDriver, DriverError, DriverStatus
from devices.errors import DeviceUnavailableError
from devices.models import DeviceModel, load_class

_LOGGER = logging.getLogger(__name__)

_BASE_ARGUMENTS: Final = frozenset(inspect.signature(DeviceDriver.__init__).parameters) - {
    "self",
    "device",
    "model",
}


class ResolvingDriver(DeviceDriver):
    """Identifies which of ``candidates`` the device is, then drives it as that model.

    Args:
        device: bleak's handle or an address (as for :class:`DeviceDriver`).
        candidates: the models it may be (two or more, of one kind).
        **kwargs: for the model's driver (:func:`devices.drivers.driver_for`): the
            :class:`DeviceDriver` arguments, and options of a model's driver class.

    Until the device has told, :attr:`resolved` is ``None``, :attr:`model` is the first
    candidate and :attr:`status` counts the attempts to ask it; a device not seen (asleep,
    away) is asked again after the policy's back-off, for ever. A device whose services
    match none of the candidates ends :meth:`run`: :attr:`failed` is set and
    ``status.last_error`` holds the one-line :class:`~devices.discovery.ModelUnknownError`
    (logged once): no driver can stream it.
    """

    def __init__(
        self, device: BLEDevice | str, *, candidates: Sequence[DeviceModel], **kwargs: Any
    ) -> None:
        if len(candidates) < 2 or len({m.kind for m in candidates}) != 1:
            raise ValueError("ResolvingDriver needs two or more candidate models of one kind")
        base = {k: v for k, v in kwargs.items() if k in _BASE_ARGUMENTS}
        super().__init__(device, model=candidates[0], **base)
        self.candidates = tuple(candidates)
        self.resolved: DeviceModel | None = None
        self._device = device
        self._kwargs = {k: v for k, v in kwargs.items() if k != "sink"}
        self._inner: DeviceDriver | None = None
        self.failed = False  # the device is none of the candidates: run() has ended

    @property
    def driver(self) -> DeviceDriver | None:
        """The model's own driver, once the device has told which model it is."""
        return self._inner

    @property
    def status(self) -> DriverStatus:
        """The model's driver's status once resolved; before, the attempts to identify it."""
        inner = self._inner
        if inner is None:
            return super().status
        # Records dropped for a slow reader of records() are counted here, not there.
        status = inner.status
        return dataclasses.replace(status, dropped=status.dropped + self._dropped)

    @property
    def connected(self) -> bool:
        """True while the model's driver has a subscribed link."""
        return self._inner is not None and self._inner.connected

    async def run(self) -> None:
        """Identify the model (retrying while the device is away), then run its driver until
        cancelled; returns when the device is none of the candidates (see :attr:`failed`)."""
        if self._running:
            raise DriverError(f"{self.name}: run() is already running")
        self._running = True
        delays = self.policy.backoff.delays(self._rng)
        try:
            while self._inner is None:
                try:
                    model, _ = await identify_model(
                        self.address,
                        self.candidates,
                        timeout_s=self.policy.scan_timeout_s,
                        scanner_kwargs=self._scanner_kwargs,
                        client_kwargs=self._client_kwargs,
                    )
                except ModelUnknownError as exc:
                    # No driver can stream it: said once, in one line (and in the status);
                    # the other devices of a `run` stream on.
                    self._last_error = str(exc)
                    self.failed = True
                    _LOGGER.error("%s: %s", self.name, exc)
                    return
                except DeviceUnavailableError as exc:  # away, asleep, no adapter: later
                    self._failed_connects += 1
                    self._last_error = f"identify: {exc}"
                    _LOGGER.debug("%s: %s", self.name, self._last_error)
                    await asyncio.sleep(next(delays))
                    continue
                self.model = self.resolved = model
                _LOGGER.info("%s: %s is a %s", self.name, self.address, model.title)
                self._inner = self._driver_of(model)
            await self._inner.run()
        finally:
            self._running = False

    def _driver_of(self, model: DeviceModel) -> DeviceDriver:
        """``model``'s driver, as :func:`devices.drivers.driver_for` makes it, writing into
        this driver's sink or queue."""
        cls = load_class(model.driver)
        if not (isinstance(cls, type) and issubclass(cls, DeviceDriver)):
            raise TypeError(f"model {model.name!r}: {model.driver} is not a DeviceDriver")
        # Options of another candidate's driver class (a Progressor's stream=) do not apply.
        accepted = _BASE_ARGUMENTS | set(inspect.signature(cls).parameters)
        given = {k: v for k, v in self._kwargs.items() if k in accepted}
        options = {**model.driver_options, **given}
        return cls(self._device, model=model, sink=self._emit, **options)

    async def _subscribe(self, client: BleakClient) -> None:
        raise DriverError(f"{self.name}: the model's own driver subscribes, once resolved")
