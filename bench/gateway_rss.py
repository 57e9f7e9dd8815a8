"""The thin gateway's footprint and throughput (issue 13): RSS beside the 60 MB target
(a Pi Zero 2 W), and records per second through the durable outbox to JetStream.

Run from the repository root: ``python bench/gateway_rss.py [--athletes N] [--seconds S]``.
It starts a nats-server (JetStream, the team mapping) on a free loopback port, then:

1. **outbox throughput, real-radio footprint**: a process that imports the gateway's run
   path but no emulator (what a Pi with a real radio loads: bleak and the drivers, nats-py,
   aiomqtt, the config) pushes ``--messages`` synthetic notifications through
   ``Gateway.offer`` → fsync'd SQLite outbox → JetStream PubAck → row deleted, and prints
   the rate and its peak RSS (``VmHWM``);
2. **an emulated gateway**: ``redox-streamer gateway --emulated`` with ``--athletes``
   athletes (strap + Moxy each) for ``--seconds`` s at ``--speed``; its RSS is sampled
   each second. The Bumble emulators and their virtual link run in the same process, so
   this overstates a real gateway; both figures are printed.

Figures are printed, never asserted (bench/ convention).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import NatsServer  # noqa: E402  (after the path)
from tests.team_helpers import stream_count  # noqa: E402

TARGET_MB = 60.0
"""The issue's target for a gateway's resident memory (MB)."""

THROUGHPUT = """\
import asyncio, sys, time
from devices.recording import RecordedNotification
from streamer.commands import gateway as _command  # the run path, as `gateway` loads it
from streamer.team import gateway_mqtt as _mqtt
from streamer.team.gateway import Gateway
from streamer.team.outbox import GatewayOutbox

url, path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def main() -> None:
    with GatewayOutbox(path) as outbox:
        gateway = Gateway("bench", [url], outbox, {})
        task = asyncio.create_task(gateway.run())
        await gateway.connected.wait()
        started = time.perf_counter()
        for i in range(count):
            # A heart-rate notification's size; 20 athletes' subjects.
            gateway.offer(f"a{i % 20}", RecordedNotification(time.time_ns(), "strap", "2a37",
                                                             bytes.fromhex("10480004")))
            if i % 50 == 0:
                await asyncio.sleep(0)  # notifications arrive between other work
        while gateway.stats.published < count:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    with open("/proc/self/status") as status:
        hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    heavy = [m for m in ("scipy", "influxdb_client", "processors.hrv") if m in sys.modules]
    print(f"{count / elapsed:.0f} {hwm / 1024:.1f} {elapsed:.2f} {','.join(heavy) or '-'}")

asyncio.run(main())
"""


def _config(directory: Path, athletes: int) -> Path:
    lines = [f'[store]\npath = "{directory / "store.sqlite"}"\n']
    for i in range(athletes):
        lines.append(
            f'[[athletes]]\nid = "a{i}"\n'
            f'[[athletes.devices]]\nkind = "strap"\naddress = "EE:00:00:00:{i:02X}:01"\n'
            f'[[athletes.devices]]\nkind = "smo2"\naddress = "EE:00:00:00:{i:02X}:02"\n'
        )
    path = directory / "redox.toml"
    path.write_text("\n".join(lines))
    return path


def _rss_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field))
    except (OSError, StopIteration):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--athletes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--messages", type=int, default=5000)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        work = Path(tmp)
        nats = NatsServer(work / "nats")
        nats.start()
        try:
            done = subprocess.run(
                [sys.executable, "-c", THROUGHPUT, nats.url, str(work / "t.sqlite"),
                 str(args.messages)],
                capture_output=True, text=True, env=env, check=True, cwd=work,
            )  # fmt: skip
            rate, hwm_mb, elapsed, heavy = done.stdout.split()
            print(
                f"outbox → JetStream: {args.messages} messages in {elapsed} s = {rate} msg/s "
                f"(fsync'd group commits, one PubAck at a time per athlete)"
            )
            print(
                f"real-radio run path, peak RSS: {hwm_mb} MB (target ≤ {TARGET_MB:g} MB); "
                f"heavy modules loaded: {heavy}"
            )
            config = _config(work, args.athletes)
            before = stream_count([nats.url])
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamer.cli", "gateway", "--id", "bench",
                 "--nats", nats.url, "--config", str(config), "--outbox",
                 str(work / "g.sqlite"), "--emulated", "--speed", str(args.speed)],
                env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            samples: list[int] = []
            started = time.monotonic()
            while time.monotonic() - started < args.seconds and proc.poll() is None:
                time.sleep(1.0)
                rss = _rss_kb(proc.pid, "VmRSS:")
                if rss is not None:
                    samples.append(rss)
            hwm = _rss_kb(proc.pid, "VmHWM:")
            stored = stream_count([nats.url]) - max(before, 0)
            proc.terminate()
            proc.wait(60)
        finally:
            nats.stop()
    devices = 2 * args.athletes
    steady = sorted(samples)[len(samples) // 2] / 1024 if samples else float("nan")
    print(
        f"emulated gateway, {args.athletes} athletes / {devices} devices at ×{args.speed:g} "
        f"for {args.seconds:g} s: {stored} messages stored ({stored / args.seconds:.0f}/s); "
        f"RSS median {steady:.1f} MB, peak {(hwm or 0) / 1024:.1f} MB "
        "(Bumble emulators and their link in the same process)"
    )


if __name__ == "__main__":
    main()
