"""How fast a driver recovers: forced link drops and silent links on the emulated strap.

Run from the repository root: ``PYTHONPATH=. python3 bench/bench_reconnect.py [cycles]``.
Prints, per forced disconnect, the time from the drop to the first sample on the new link
(reconnect + service discovery + re-subscribe + up to one notification period), and the
watchdog's detection time for a silent link. The strap notifies every 10 ms (speed 100)
and advertises every 20 ms, so the figures are the stack's and the driver's, not the
radio's: real straps advertise every ~1 s and notify every 1 s.
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import sys
import time

from devices.discovery import discover
from devices.drivers import HeartRateDriver
from devices.emulated import ChestStrap, EmulatedWorld
from devices.policy import Backoff, ConnectionPolicy, Jitter
from devices.records import GapEvent, HeartRateSample

POLICY = ConnectionPolicy(
    backoff=Backoff(initial_s=0.001, max_s=0.02, jitter=Jitter.FULL),
    stale_after_s=0.25,
    stable_after_s=0.0,
)


async def bench(cycles: int) -> None:
    async with EmulatedWorld() as world:
        strap = await world.add(ChestStrap(speed=100.0))
        (found,) = await discover(0.15, scanner_kwargs=world.scanner_kwargs)
        assert found.ble_device is not None
        driver = HeartRateDriver(
            found.ble_device,
            policy=POLICY,
            client_kwargs=world.client_kwargs,
            rng=random.Random(0),
        )
        task = asyncio.create_task(driver.run())
        stream = driver.records()

        async def next_sample() -> None:
            while not isinstance(await anext(stream), HeartRateSample):
                pass

        async def next_gap() -> GapEvent:
            while not isinstance(record := await anext(stream), GapEvent):
                pass
            return record

        await next_sample()
        recover_s = []
        started = time.perf_counter()
        for _ in range(cycles):
            t0 = time.perf_counter()
            await strap.drop_link()
            await next_gap()  # samples queued before the drop do not count
            await next_sample()
            recover_s.append(time.perf_counter() - t0)
        total = time.perf_counter() - started

        detect_s = []
        for _ in range(5):
            t0 = time.perf_counter()
            strap.go_silent(60.0)  # emulated s = 0.6 s real
            gap = await next_gap()
            detect_s.append(time.perf_counter() - t0)
            await next_sample()
        status = driver.status
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stream.aclose()

    ms = sorted(1e3 * s for s in recover_s)
    print(f"forced disconnects: {cycles} in {total:.2f} s; drop -> first sample after the gap:")
    print(
        f"  median {statistics.median(ms):.1f} ms, p95 {ms[int(0.95 * (len(ms) - 1))]:.1f} ms, "
        f"max {ms[-1]:.1f} ms"
    )
    print(
        f"watchdog (stale_after_s={POLICY.stale_after_s}): silent link marked after "
        f"{statistics.median(detect_s) * 1e3:.0f} ms (median of {len(detect_s)}); "
        f"last gap reason {gap.reason.value}"
    )
    print(
        f"status: connects {status.connects}, failed {status.failed_connects}, "
        f"gaps {status.gaps}, stale {status.stale}"
    )


if __name__ == "__main__":
    # Bumble's controller logs every disconnect race of this torture test as a warning.
    logging.getLogger("bumble").setLevel(logging.ERROR)
    asyncio.run(bench(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
