"""Every emulator keeps its time on its world's one :class:`EmulatedClock`.

On a world with a clock, emulated time is that clock's: each emulator schedules its
notifications on it (not on a real-time timer of its own), stamps them with its readings,
and holds it at its next notification, so the clock never runs ahead of the data. Without
a world clock each emulator keeps its own timer, as before.

Two of the tests drive the clock by hand (its real time passes only when the test says),
so they wait for notifications, never for time to pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pytest
from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic

from devices import gatt as uuids
from devices.codecs import tindeq
from devices.codecs.tindeq import TindeqCommand
from devices.emulated import (
    Activ5Sensor,
    ChestStrap,
    EmulatedPeripheral,
    EmulatedWorld,
    MoxySensor,
    PowerMeter,
    PulseOximeter,
    TindeqProgressor,
)
from devices.emulated.world import EmulatedClock, UsesWorldClock
from devices.records import TindeqWeight
from tests.test_emulated_backend import find, settled, until

pytestmark = pytest.mark.timeout(120)

#: Emulated seconds per real second of the world clocks here; the emulators are made at
#: their default speed (1.0), so one that kept its own timer would be 20 times too slow.
SPEED = 20.0


@runtime_checkable
class _Stamped(Protocol):
    @property
    def t_ns(self) -> int: ...


@runtime_checkable
class _Delivering(Protocol):
    """Every emulator logs the records it notified, stamped in its emulated time."""

    @property
    def delivered(self) -> Sequence[_Stamped]: ...


def _any_payload(_payload: bytes) -> bool:
    return True


def _a_weight(payload: bytes) -> bool:
    return isinstance(tindeq.decode(payload), TindeqWeight)


@dataclass(frozen=True, slots=True)
class Case:
    """One emulator as these tests drive it.

    ``first_s``: emulated time of the first notification after a start at 0 with a
    central subscribed before then; ``period_s``: emulated seconds between notifications;
    ``per_notification``: records :attr:`_Delivering.delivered` logs per notification
    (the last one is stamped with the notification's time)."""

    make: Callable[[], EmulatedPeripheral]
    char: str
    first_s: float
    period_s: float
    per_notification: int = 1
    started_by_command: bool = False
    is_data: Callable[[bytes], bool] = _any_payload


CASES: dict[str, Case] = {
    "strap": Case(ChestStrap, uuids.HEART_RATE_MEASUREMENT, 1.0, 1.0),
    # The Moxy's sample 0 goes out at its start, before anyone subscribed.
    "moxy": Case(MoxySensor, uuids.MOXY_DATA, 2.0, 2.0),
    "power": Case(PowerMeter, uuids.CYCLING_POWER_MEASUREMENT, 1.0, 1.0),
    "oximeter": Case(PulseOximeter, uuids.PLX_CONTINUOUS_MEASUREMENT, 1.0, 1.0),
    # 8 Hz: its period (0.125 s) is a whole number of readings and exact in binary.
    "activ5": Case(lambda: Activ5Sensor(rate_hz=8.0), uuids.ACTIV5_FORCE, 0.125, 0.125),
    # 10 samples of 1/80 s a notification, stamped with the last one's time (9/80 s first).
    "tindeq": Case(
        TindeqProgressor,
        uuids.TINDEQ_DATA,
        9 / 80,
        10 / 80,
        per_notification=10,
        started_by_command=True,
        is_data=_a_weight,
    ),
}


def sent_at_s(emulator: EmulatedPeripheral, case: Case) -> list[float]:
    """Emulated time (s) of each notification ``emulator`` delivered, oldest first."""
    assert isinstance(emulator, _Delivering)
    stamps = [record.t_ns / 1e9 for record in emulator.delivered]
    return stamps[case.per_notification - 1 :: case.per_notification]


async def start_streaming(client: BleakClient, answered: asyncio.Event) -> None:
    """Start a Progressor's stream; returns once it answered a command sent after the
    start (commands are obeyed in order: the stream has started by then)."""
    for command in (TindeqCommand.START_WEIGHT, TindeqCommand.GET_BATTERY_VOLTAGE):
        await client.write_gatt_char(uuids.TINDEQ_CONTROL, tindeq.encode_command(command), True)
    async with asyncio.timeout(10.0):
        await answered.wait()


@pytest.mark.parametrize("name", list(CASES))
async def test_every_emulator_keeps_its_time_on_the_world_clock_and_holds_it_there(
    name: str,
) -> None:
    case = CASES[name]
    clock = EmulatedClock(SPEED)
    async with EmulatedWorld(clock=clock) as world:
        emulator = await world.add(case.make())
        assert isinstance(emulator, UsesWorldClock)
        assert emulator.clock is clock
        assert emulator.speed == SPEED  # the clock's pace, not the 1.0 it was made with
        assert 0.0 <= emulator.started_s <= clock.now()
        # (the clock's reading at each notification, the emulator's last send then)
        readings: list[tuple[float, float]] = []
        arrived, answered = asyncio.Event(), asyncio.Event()

        def on_data(_c: BleakGATTCharacteristic, data: bytearray) -> None:
            if not case.is_data(bytes(data)):
                answered.set()
            elif emulator.sent:  # (the callback may run before the emulator logged it)
                readings.append((clock.now(), emulator.sent[-1].t_s))
                arrived.set()

        device = await find(world, emulator.name)
        async with BleakClient(device, **world.client_kwargs) as client:  # type: ignore[arg-type]
            await client.start_notify(case.char, on_data)
            if case.started_by_command:
                await start_streaming(client, answered)
            await until(lambda: len(readings) >= 20, arrived, within_s=60.0)
            stamps = sent_at_s(emulator, case)
            now = clock.now()
    # Sent on the clock, and the clock never ran more than one notification ahead of the
    # emulator's data (a machine too loaded to keep up slows the clock down instead).
    for at_s, last_sent_s in readings:
        assert last_sent_s <= at_s <= last_sent_s + case.period_s + 1e-9
    # The notifications' stamps are the clock's times of the emulator's schedule.
    assert np.diff(stamps) == pytest.approx(case.period_s, abs=1e-6)
    assert emulator.started_s <= stamps[0]
    assert stamps[-1] <= now + 1e-9
    if not case.started_by_command:  # the schedule counts from the emulator's start
        ticks = (np.asarray(stamps) - emulator.started_s - case.first_s) / case.period_s
        assert ticks == pytest.approx(np.round(ticks), abs=1e-6)


class ManualTime:
    """The real seconds a test's clock follows: they pass only when the test says, and
    every reading is an event (an emulator waiting on the clock reads it at each wake-up).
    """

    def __init__(self) -> None:
        self.s = 0.0
        self.reads = 0
        self._read = asyncio.Event()

    def __call__(self) -> float:
        self.reads += 1
        self._read.set()
        return self.s

    async def read_again(self, times: int) -> None:
        """Until the clock was read ``times`` more times."""
        target = self.reads + times
        await until(lambda: self.reads >= target, self._read)


@pytest.mark.parametrize("name", list(CASES))
async def test_a_held_world_clock_holds_every_emulators_notifications(name: str) -> None:
    case = CASES[name]
    real = ManualTime()
    clock = EmulatedClock(SPEED, real_s=real)

    def let_pass(emulated_s: float) -> None:
        """Real time for ``emulated_s`` of the clock; an emulator's hold keeps the clock
        at its next notification, and time that passes while held does not come back."""
        real.s += emulated_s / SPEED

    async with EmulatedWorld(clock=clock) as world:
        emulator = await world.add(case.make())
        assert emulator.started_s == 0.0  # the clock has not moved yet
        received = 0
        arrived, answered = asyncio.Event(), asyncio.Event()

        def on_data(_c: BleakGATTCharacteristic, data: bytearray) -> None:
            nonlocal received
            if not case.is_data(bytes(data)):
                answered.set()
                return
            received += 1
            arrived.set()

        async def notified(n: int) -> list[float]:
            """The stamps once ``n`` notifications arrived and the emulator logged them
            (after which it waits on the clock for the next one)."""
            await until(lambda: received >= n, arrived)
            await settled(lambda: len(sent_at_s(emulator, case)) >= n)
            return sent_at_s(emulator, case)

        due = [case.first_s + j * case.period_s for j in range(5)]
        device = await find(world, emulator.name)
        async with BleakClient(device, **world.client_kwargs) as client:  # type: ignore[arg-type]
            await client.start_notify(case.char, on_data)
            if case.started_by_command:
                await start_streaming(client, answered)
            assert received == 0  # the clock still reads 0: nothing was due

            # More than enough each time: the emulator holds the clock at its next one.
            let_pass(case.first_s + case.period_s / 2)
            assert await notified(1) == pytest.approx(due[:1])
            for n in (2, 3):
                let_pass(1.5 * case.period_s)
                assert await notified(n) == pytest.approx(due[:n])
            assert clock.now() == pytest.approx(due[2])

            held_s = clock.now()
            frontier = [held_s]
            with clock.held_at(lambda: frontier[0]):
                let_pass(100 * case.period_s)  # real time goes on; the clock does not …
                await real.read_again(3)  # … and the emulator, looking, sees it held
                assert emulator.now() == held_s
                assert received == 3
                assert len(sent_at_s(emulator, case)) == 3
                frontier[0] = held_s + case.period_s  # room for one more notification
                let_pass(1.5 * case.period_s)
                assert await notified(4) == pytest.approx(due[:4])

            # Free again, from where it was held: the 100 periods do not come back.
            let_pass(1.5 * case.period_s)
            assert await notified(5) == pytest.approx(due[:5])
            assert clock.now() == pytest.approx(due[4])
        assert received == 5  # the next one is due after the clock's reading


async def test_without_a_world_clock_an_emulator_keeps_its_own_timer() -> None:
    async with EmulatedWorld() as world:
        strap = await world.add(ChestStrap(speed=SPEED))
        assert strap.clock is None
        assert strap.speed == SPEED
        assert strap.started_s == 0.0
        received = 0
        arrived = asyncio.Event()

        def on_data(_c: BleakGATTCharacteristic, _data: bytearray) -> None:
            nonlocal received
            received += 1
            arrived.set()

        device = await find(world, strap.name)
        async with BleakClient(device, **world.client_kwargs) as client:  # type: ignore[arg-type]
            await client.start_notify(uuids.HEART_RATE_MEASUREMENT, on_data)
            await until(lambda: received >= 5, arrived)
            await settled(lambda: len(strap.delivered) >= 5)
    stamps = [sample.t_ns / 1e9 for sample in strap.delivered]
    # Whole emulated seconds since the strap started, as before world clocks existed.
    assert stamps == [float(round(t)) for t in stamps]
    assert np.diff(stamps) == pytest.approx(1.0)
