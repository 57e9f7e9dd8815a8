"""Figures of the emulated Bluetooth link (Bumble virtual controllers, bleak backend).

Run from the repository root: ``PYTHONPATH=. python3 bench/bench_emulated_link.py``.
Prints: scan-to-found time, connect (+ MTU + full discovery) time, the drop → reconnect
→ re-subscribe → first notification cycle, and the notification throughput of a
Tindeq streaming at a high emulated speed. For scale: a real strap sends ~1
notification/s, a Progressor ~8–10/s; a real BLE reconnect takes 0.1–2 s.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic

from devices import gatt as uuids
from devices.codecs import tindeq
from devices.codecs.tindeq import TindeqCommand
from devices.emulated import ChestStrap, EmulatedWorld, TindeqProgressor
from devices.records import TindeqWeight

CYCLES = 50


async def main() -> None:
    """Measure and print the figures."""
    async with EmulatedWorld() as world:
        strap = await world.add(ChestStrap(speed=100.0))

        t0 = time.perf_counter()
        device = await BleakScanner.find_device_by_address(
            strap.address, timeout=5.0, **world.scanner_kwargs
        )
        print(f"scan until found (20-ms advertising): {1e3 * (time.perf_counter() - t0):7.1f} ms")
        assert device is not None

        dropped = asyncio.Event()
        got: asyncio.Queue[bytes] = asyncio.Queue()

        def on_hrm(_c: BleakGATTCharacteristic, data: bytearray) -> None:
            got.put_nowait(bytes(data))

        client = BleakClient(
            device, disconnected_callback=lambda _c: dropped.set(), **world.client_kwargs
        )
        t0 = time.perf_counter()
        await client.connect()
        print(f"connect + MTU + discovery:            {1e3 * (time.perf_counter() - t0):7.1f} ms")

        cycles = []
        for _ in range(CYCLES):
            t0 = time.perf_counter()
            if not client.is_connected:
                await client.connect()
            await client.start_notify(uuids.HEART_RATE_MEASUREMENT, on_hrm)
            await got.get()
            cycles.append(time.perf_counter() - t0)
            dropped.clear()
            await strap.drop_link()
            await dropped.wait()
        print(
            f"reconnect + resubscribe + first notification, {CYCLES} cycles: "
            f"median {1e3 * statistics.median(cycles):.1f} ms, "
            f"max {1e3 * max(cycles):.1f} ms (the strap notifies every 10 ms here)"
        )

        grip = await world.add(TindeqProgressor(speed=20.0))
        found = await BleakScanner.find_device_by_address(
            grip.address, timeout=5.0, **world.scanner_kwargs
        )
        assert found is not None
        samples = 0

        def on_data(_c: BleakGATTCharacteristic, data: bytearray) -> None:
            nonlocal samples
            record = tindeq.decode(bytes(data))
            if isinstance(record, TindeqWeight):
                samples += len(record.samples)

        async with BleakClient(found, **world.client_kwargs) as grip_client:
            await grip_client.start_notify(uuids.TINDEQ_DATA, on_data)
            await grip_client.write_gatt_char(
                uuids.TINDEQ_CONTROL, tindeq.encode_command(TindeqCommand.START_WEIGHT), True
            )
            t0 = time.perf_counter()
            await asyncio.sleep(2.0)
            elapsed = time.perf_counter() - t0
        print(
            f"Tindeq at 20x (1600 samples/s asked): {samples / elapsed:7.0f} samples/s, "
            f"{samples / elapsed / 10:5.0f} notifications/s decoded through bleak"
        )


if __name__ == "__main__":
    asyncio.run(main())
