"""An emulated Tindeq Progressor grip dynamometer.

Service ``7e4e1701-…``; data ``…1702`` (notify), control ``…1703`` (write). Commands
written to the control characteristic are obeyed: tare (0x64) zeroes the scale at the
current reading, start (0x65) streams weights, stop (0x66) ends the stream, battery
(0x6F) answers with a command response carrying uint32 mV, app version (0x6B) with an
ASCII string. While started it samples at ``rate_hz`` (80 Hz) and packs
``samples_per_packet`` ``<float32 kg, uint32 µs>`` pairs per notification (fewer if the
link's MTU is too small).

The force is a train of maximal squeezes (:func:`devices.emulated.signals.grip_squeeze`)
separated by ``rest_s`` of rest, on top of an untared offset of ``bias_kg``. The peak of
each squeeze is :attr:`TindeqProgressor.peak_kg`, or — after :meth:`start_session_drop`,
or from ``session_drop``'s time after the Progressor starts (an emulated-world scenario,
:mod:`devices.emulated.scenario`) — the post-session peak that dropped by a fraction and
recovers with a time constant.

On a world with a clock (:class:`devices.emulated.clock.EmulatedClock`) the Progressor
keeps its time on it, as every emulated peripheral does, and while streaming (only then:
idle, it waits for a command, not for the clock) holds it at its next packet: at a high
speed on a loaded machine emulated time slows down rather than run ahead of the weights.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Unpack

import numpy as np
from bumble import gatt
from bumble.core import UUID
from bumble.device import Connection

from devices import gatt as uuids
from devices.codecs import tindeq
from devices.codecs.errors import CodecError
from devices.codecs.tindeq import TindeqCommand
from devices.emulated.peripheral import (
    SENT_LOG_LENGTH,
    EmulatedPeripheral,
    LinkOptions,
    notify_characteristic,
)
from devices.emulated.signals import FloatArray, grip_peak_after_session, grip_squeeze
from devices.records import ForceSample, TindeqCommandResponse, TindeqLowPower, TindeqWeight

_LOGGER = logging.getLogger(__name__)

APP_VERSION = b"EMU-1.0"
#: Bytes of one weight sample and of a response header.
_PAIR = tindeq.WEIGHT_PAIR_SIZE
_HEADER = 2


class TindeqProgressor(EmulatedPeripheral):
    """Emulated Tindeq Progressor.

    Args:
        name: advertised name.
        peak_kg: peak force of each squeeze (kg).
        rest_s: rest before each squeeze (emulated s).
        rate_hz: sampling rate while started.
        samples_per_packet: weight samples per notification (1..31).
        bias_kg: what the scale reads at rest before a tare (kg).
        noise_kg: measurement noise (kg, standard deviation).
        battery_mv: battery voltage reported on request (mV).
        session_drop: ``(drop_fraction, recovery_tau_s, at_s)``: from ``at_s`` emulated
            seconds after the Progressor starts the peaks are those after a session (see
            :meth:`start_session_drop`); None: only when that is called.
        seed: noise seed.
        speed, address, advertising_interval_ms: see :class:`EmulatedPeripheral`.

    Attributes:
        commands: every command received, in order.
        delivered: weight samples actually notified (bounded), oldest first.
    """

    kind = "grip"

    def __init__(
        self,
        name: str = "Progressor_EMU",
        *,
        peak_kg: float = 45.0,
        rest_s: float = 2.0,
        rate_hz: float = 80.0,
        samples_per_packet: int = 10,
        bias_kg: float = 0.6,
        noise_kg: float = 0.05,
        battery_mv: int = 3900,
        session_drop: tuple[float, float, float] | None = None,
        seed: int = 0,
        **link: Unpack[LinkOptions],
    ) -> None:
        super().__init__(name, **link)
        if not 1 <= samples_per_packet <= tindeq.MAX_PAYLOAD // _PAIR:
            raise ValueError(f"samples_per_packet must be within 1..31, got {samples_per_packet}")
        if rate_hz <= 0 or rest_s < 0 or peak_kg < 0:
            raise ValueError("rate_hz must be > 0, rest_s >= 0 and peak_kg >= 0")
        self.peak_kg = peak_kg
        self.rest_s = rest_s
        self.rate_hz = rate_hz
        self.samples_per_packet = samples_per_packet
        self.bias_kg = bias_kg
        self.noise_kg = noise_kg
        self.battery_mv = battery_mv
        self.commands: list[TindeqCommand] = []
        self.delivered: deque[ForceSample] = deque(maxlen=SENT_LOG_LENGTH)
        self.tare_kg = 0.0
        self._last_raw_kg = bias_kg  # the load cell's latest raw reading (kg)
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._session: tuple[float, float, float, float] | None = None
        if session_drop is not None:
            drop, tau, at_s = session_drop
            grip_peak_after_session(peak_kg, drop, 0.0, tau)  # validates
            if at_s < 0:
                raise ValueError(f"session_drop at_s must be >= 0, got {at_s}")
        self._scheduled_drop = session_drop
        self._measuring = asyncio.Event()
        self._stream_id = 0  # counts starts and stops: a stream ends when it changes
        self._commands_in: asyncio.Queue[bytes] = asyncio.Queue()
        self._cycle_cache: dict[int, FloatArray] = {}
        self._data = notify_characteristic(uuids.TINDEQ_DATA)
        self._control: gatt.Characteristic[bytes] = gatt.Characteristic(
            uuids.TINDEQ_CONTROL,
            gatt.Characteristic.Properties.WRITE
            | gatt.Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
            gatt.Characteristic.WRITEABLE,
            gatt.CharacteristicValue(write=self._on_control_write),
        )

    # -- GATT ----------------------------------------------------------------------

    def build_services(self) -> Sequence[gatt.Service]:
        """The Progressor service: data (notify) and control (write)."""
        return [gatt.Service(uuids.TINDEQ_SERVICE, [self._data, self._control])]

    def advertised_services(self) -> Sequence[UUID]:
        """The Progressor service UUID."""
        return [UUID(uuids.TINDEQ_SERVICE)]

    def malformed(self, char: gatt.Characteristic[bytes], payload: bytes) -> bytes:
        """The frame with its last 3 bytes cut: the length byte no longer matches."""
        return payload[: max(_HEADER + 1, len(payload) - 3)]

    def _on_control_write(self, connection: Connection, value: bytes) -> None:
        # Answering from inside the ATT write handler would notify before the write
        # response goes out; the command loop answers after it.
        self._commands_in.put_nowait(bytes(value))

    @property
    def is_measuring(self) -> bool:
        """True between a start and a stop command."""
        return self._measuring.is_set()

    # -- force model ------------------------------------------------------------------

    def start_session_drop(self, drop_fraction: float, recovery_tau_s: float) -> None:
        """From now, peaks start ``drop_fraction`` below :attr:`peak_kg` and recover with
        time constant ``recovery_tau_s`` (emulated s; ``math.inf`` = no recovery)."""
        grip_peak_after_session(self.peak_kg, drop_fraction, 0.0, recovery_tau_s)  # validates
        self._session = (self.peak_kg, drop_fraction, recovery_tau_s, self.now())

    def peak_at(self, t_s: float) -> float:
        """The squeeze peak (kg) at emulated time ``t_s``."""
        session = self._session
        if session is None and self._scheduled_drop is not None:
            drop, tau, at_s = self._scheduled_drop
            session = (self.peak_kg, drop, tau, self.started_s + at_s)
        if session is None or t_s < session[3]:
            return self.peak_kg
        baseline, drop, tau, start = session
        return grip_peak_after_session(baseline, drop, t_s - start, tau)

    def _cycle(self, index: int, peak_kg: float) -> FloatArray:
        cycle = self._cycle_cache.get(index)
        if cycle is None:
            rest = np.clip(
                self.noise_kg * self._rng.standard_normal(round(self.rest_s * self.rate_hz)),
                0.0,
                None,
            )
            squeeze = grip_squeeze(
                peak_kg, self.rate_hz, noise_kg=self.noise_kg, seed=self._seed + index
            )
            cycle = np.concatenate([rest, squeeze])
            self._cycle_cache = {index: cycle}  # only the current cycle is ever needed
        return cycle

    # -- emulation -----------------------------------------------------------------------

    async def run(self) -> None:
        """Obey commands and stream weights while started."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._obey())
            group.create_task(self._stream())

    async def _obey(self) -> None:
        while True:
            raw = await self._commands_in.get()
            try:
                command, _payload = tindeq.decode_command(raw)
            except CodecError as exc:
                _LOGGER.debug("%s: ignoring control write %s: %s", self.name, raw.hex(), exc)
                continue
            self.commands.append(command)
            if command is TindeqCommand.TARE:
                self.tare_kg = self._last_raw_kg
            elif command is TindeqCommand.START_WEIGHT:
                if not self._measuring.is_set():
                    self._stream_id += 1
                self._measuring.set()
            elif command is TindeqCommand.STOP_WEIGHT:
                self._stream_id += 1
                self._measuring.clear()
                self._last_raw_kg = self.bias_kg
            elif command is TindeqCommand.GET_BATTERY_VOLTAGE:
                response = tindeq.battery_response(0, self.battery_mv)
                await self.notify(self._data, tindeq.encode(response))
            elif command is TindeqCommand.GET_APP_VERSION:
                response = TindeqCommandResponse(0, APP_VERSION)
                await self.notify(self._data, tindeq.encode(response))

    async def _stream(self) -> None:
        while True:
            await self._measuring.wait()
            stream = self._stream_id
            with self.pacing_clock():
                start_s = self.now()
                index = 0  # sample index since start
                cycle_index, cycle_start = 0, 0
                self._cycle_cache.clear()  # a new stream, new squeezes (peaks may differ)
                cycle = self._cycle(0, self.peak_at(start_s))
                while self._stream_id == stream:
                    per_packet = min(
                        self.samples_per_packet,
                        max(1, (self.min_mtu() - 3 - _HEADER) // _PAIR),
                    )
                    samples = []
                    for _ in range(per_packet):
                        if index - cycle_start >= cycle.size:
                            cycle_index, cycle_start = cycle_index + 1, index
                            peak = self.peak_at(start_s + index / self.rate_hz)
                            cycle = self._cycle(cycle_index, peak)
                        self._last_raw_kg = float(cycle[index - cycle_start]) + self.bias_kg
                        force = self._last_raw_kg - self.tare_kg
                        t_us = round(index * 1e6 / self.rate_hz)
                        samples.append(
                            ForceSample(
                                t_ns=round((start_s + index / self.rate_hz) * 1e9),
                                force_kg=float(np.float32(force)),
                                t_us=t_us & 0xFFFFFFFF,
                            )
                        )
                        index += 1
                    await self.sleep_until(start_s + (index - 1) / self.rate_hz)
                    if self._stream_id != stream:  # stopped (and maybe started again)
                        break
                    payload = tindeq.encode(TindeqWeight(0, tuple(samples)))
                    if await self.notify_intact(self._data, payload):
                        self.delivered.extend(samples)

    async def send_low_power_warning(self) -> None:
        """Notify the low-power warning (response code 4)."""
        with contextlib.suppress(Exception):
            await self.notify(self._data, tindeq.encode(TindeqLowPower(0)))
