"""Each device's connection, battery and last-seen time, published retained on MQTT by ``run``.

:class:`DeviceStates` runs as one more source of ``run``'s pipeline: it looks at the
drivers every :data:`DEVICE_STATE_CHECK_S` (:meth:`DeviceStates.check`), and when the
pipeline stops it — sources are cancelled before the sinks' final flush — it publishes
the last states (:meth:`DeviceStates.stop`) in time for that flush.

A device's :class:`~streamer.results.DeviceStatePayload` goes to
``<base>/<athlete>/<device>/state`` (retained, QoS 1, through the MQTT sink's outbox like
every other result) when what a reader acts on changes — connected or not, the
connection phase, the battery level, the problem, the first notification — and every
:data:`DEVICE_STATE_REFRESH_S` while it stays connected, so that ``last_seen_ts_ns``
stays fresh without one message per notification. At the end each device is published
once more as ``stopped``: the retained state then says that ``run`` ended, not that a
strap is still connected.

Home Assistant reads these topics through the ``connectivity`` and ``battery`` entities of
:func:`streamer.sinks.ha_discovery.device_configs`; ``redox-streamer status`` reads them
from another process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Protocol

from devices.drivers import DriverStatus
from streamer.config import Config, DeviceConfig
from streamer.results import DeviceStatePayload, Result

DEVICE_STATE_REFRESH_S: Final = 10.0
"""Longest time between two states of a connected device, s: its ``last_seen_ts_ns`` is
never older than this while it streams (one small retained message per device per 10 s)."""
DEVICE_STATE_CHECK_S: Final = 1.0
"""How often the drivers are looked at, s: a change is published within this."""


class DriverLike(Protocol):
    """What is read of a driver (:class:`devices.drivers.DeviceDriver`)."""

    @property
    def status(self) -> DriverStatus: ...


class ResultSink(Protocol):
    """Where states go: the MQTT sink's :meth:`~streamer.sinks.mqtt.MqttPublisher.accept`."""

    def accept(self, results: Sequence[Result]) -> None: ...


def connection_phase(status: DriverStatus) -> str:
    """``connected``, ``connecting`` (never connected in this run) or ``reconnecting``."""
    if status.connected:
        return "connected"
    return "reconnecting" if status.connects else "connecting"


def device_state(
    status: DriverStatus, model: str, battery_pct: int | None, *, stopped: bool = False
) -> DeviceStatePayload:
    """The state of the device behind ``status``; ``stopped``: ``run`` is ending."""
    connected = status.connected and not stopped
    problem = None if connected or stopped else (status.adapter_error or status.last_error)
    return DeviceStatePayload(
        device_kind=status.kind.value,
        model=model,
        address=status.address or None,
        connected=connected,
        connection="stopped" if stopped else connection_phase(status),
        battery_pct=battery_pct,
        last_seen_ts_ns=status.last_seen_ns,
        reconnects=status.reconnects,
        gaps=status.gaps,
        problem=problem,
    )


def with_streamed_devices(config: Config, devices: Mapping[str, Sequence[DeviceConfig]]) -> Config:
    """``config`` whose athletes list the devices ``run`` streams (paired ones included), so
    that Home Assistant discovery offers a connectivity and a battery entity for each."""
    return replace(
        config,
        athletes=tuple(
            replace(a, devices=tuple(devices.get(a.id, a.devices))) for a in config.athletes
        ),
    )


@dataclass
class _Sent:
    payload: DeviceStatePayload
    at_ns: int


def _what_matters(payload: DeviceStatePayload) -> DeviceStatePayload:
    """The payload without what changes all the time (counters, the last-seen time; its
    first value matters: "never seen" becomes "seen")."""
    seen = None if payload.last_seen_ts_ns is None else 0
    return replace(payload, last_seen_ts_ns=seen, reconnects=0, gaps=0)


class DeviceStates:
    """Publishes the state of ``run``'s devices to ``sinks`` (see the module docstring).

    Args:
        drivers: athlete → (device id, driver) pairs, as ``run`` builds them.
        battery_pct: the battery level (%) last reported by ``(athlete, device)``, or None.
        sinks: the MQTT sinks (their ``accept``); none: nothing is published.
        clock_ns: wall clock, ns since the epoch (the states' time).
        refresh_s: longest time between two states of a connected device, s.
        check_s: how often :meth:`run` looks at the drivers, s.
    """

    name = "device states"

    def __init__(
        self,
        drivers: Mapping[str, Sequence[tuple[str, DriverLike]]],
        battery_pct: Callable[[str, str], int | None],
        sinks: Sequence[ResultSink],
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        refresh_s: float = DEVICE_STATE_REFRESH_S,
        check_s: float = DEVICE_STATE_CHECK_S,
    ) -> None:
        self.drivers = drivers
        self.battery_pct = battery_pct
        self.sinks = tuple(sinks)
        self.clock_ns = clock_ns
        self.refresh_ns = round(refresh_s * 1e9)
        self.check_s = check_s
        self._sent: dict[tuple[str, str], _Sent] = {}
        self.published = 0

    async def run(self) -> None:
        """Check every ``check_s`` until cancelled; then publish every device as stopped."""
        try:
            while True:
                self.check()
                await asyncio.sleep(self.check_s)  # a polling period, not a wait for an event
        except asyncio.CancelledError:
            self.stop()
            raise

    def check(self) -> None:
        """Publish the states that changed, or that were not refreshed for ``refresh_s``."""
        self._publish(stopped=False)

    def stop(self) -> None:
        """Publish every device as ``stopped`` (call once, as ``run`` stops)."""
        self._publish(stopped=True)

    def _publish(self, *, stopped: bool) -> None:
        if not self.sinks:
            return
        now = self.clock_ns()
        out: list[Result] = []
        for athlete, items in self.drivers.items():
            for device_id, driver in items:
                status = driver.status
                model = getattr(getattr(driver, "model", None), "name", status.kind.value)
                payload = device_state(
                    status, str(model), self.battery_pct(athlete, device_id), stopped=stopped
                )
                sent = self._sent.get((athlete, device_id))
                due = (
                    sent is None
                    or _what_matters(sent.payload) != _what_matters(payload)
                    or (payload.connected and now - sent.at_ns >= self.refresh_ns)
                )
                if due:
                    self._sent[(athlete, device_id)] = _Sent(payload, now)
                    out.append(payload.result(athlete, now, device_id))
        if out:
            for sink in self.sinks:
                sink.accept(out)
            self.published += len(out)


def for_run(
    sinks: Sequence[object],
    drivers: Mapping[str, Sequence[tuple[str, DriverLike]]],
    battery_pct: Callable[[str, str], int | None],
) -> DeviceStates:
    """The device states of ``run``, published to its MQTT sinks (none: a no-op); add it
    to the pipeline as a source (``pipeline.add_source``)."""
    from streamer.sinks.mqtt import MqttPublisher

    mqtt = [s for s in sinks if isinstance(s, MqttPublisher)]
    return DeviceStates(drivers, battery_pct, mqtt)
