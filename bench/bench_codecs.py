"""Decode/encode throughput of every codec and of an unpaced replay; prints figures.

Run from the repository root: ``PYTHONPATH=. python3 bench/bench_codecs.py``. For scale: a chest strap sends ~1 notification/s,
a Tindeq ~10/s (8 samples each at 80 Hz), a Moxy 0.5/s; one process serves a few athletes.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from devices.codecs import CODECS, parse_hex
from devices.recording import NotificationRecorder, replay

PAYLOADS = {
    "2a37": "16 48 00 04 20 03",
    "2a38": "01",
    "2a19": "55",
    "2a5f": "1F CF F3 3C 00 62 00 3D 00 60 00 3B 00 20 00 01 00 00 19 F0",
    "2a63": "20 00 FA 00 0A 00 00 04",
    "moxy": "CB 06 15 02 16 02 C0 04 00",
    "tindeq": "01 40" + " 00 00 20 41 10 27 00 00" * 8,
    "activ5": "10 00",
}


def _rate(call: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return n / (time.perf_counter() - start)


async def _replay_rate(path: Path) -> tuple[int, float]:
    start = time.perf_counter()
    count = 0
    async for _ in replay(path, speed=0):
        count += 1
    return count, count / (time.perf_counter() - start)


def main() -> None:
    n = 20_000
    print(f"{'codec':<8} {'decode/s':>12} {'encode/s':>12}")
    for name, text in PAYLOADS.items():
        codec = CODECS[name]
        data = parse_hex(text)
        record = codec.decode(data)
        dec = _rate(lambda c=codec, d=data: c.decode(d), n)
        enc = _rate(lambda c=codec, r=record: c.encode(r), n)
        print(f"{name:<8} {dec:>12,.0f} {enc:>12,.0f}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "session.jsonl"
        payload = parse_hex(PAYLOADS["2a37"])
        start = time.perf_counter()
        with NotificationRecorder(path) as recorder:
            for i in range(n):
                recorder.record("strap", "2a37", payload, t_ns=i * 1_000_000_000)
        record_rate = n / (time.perf_counter() - start)
        count, rate = asyncio.run(_replay_rate(path))
    print(f"record (flush every line): {record_rate:,.0f} notifications/s")
    print(f"replay speed=0: {count} notifications at {rate:,.0f}/s")


if __name__ == "__main__":
    main()
