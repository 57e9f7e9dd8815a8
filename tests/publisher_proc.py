"""A publisher process for the fault tests: queues HRV results through the real
MqttPublisher and SQLite store, and can be SIGKILLed at any moment.

    python -m tests.publisher_proc --db FILE --port PORT --count N [--interval S]

Prints ``queued <seq>`` after each result is durably in the outbox, ``drained`` once
the outbox is empty, then keeps the connection open until killed. A new store numbers the
athlete's topic from 1 (not from the clock, as a product store does), so the tests can
read counts from ``seq``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from streamer.config import MqttConfig
from streamer.results import Kind, Result
from streamer.sinks.backoff import Backoff
from streamer.sinks.mqtt import MqttPublisher
from streamer.store import Store
from tests.mqtt_helpers import eventually


async def main(db: Path, port: int, count: int, interval_s: float, athlete: str) -> None:
    config = MqttConfig(
        host="127.0.0.1", port=port, publish_timeout_s=1.0, client_id=f"publisher-proc-{athlete}"
    )
    with Store(db) as store:
        publisher = MqttPublisher(config, store, backoff=Backoff(0.1, 0.5))
        with store.transaction() as tx:
            topic = publisher.topics.for_result(Result(Kind.HRV, athlete, 0, {}))
            tx.execute("INSERT OR IGNORE INTO seq (topic, last) VALUES (?, 0)", (topic,))
        runner = asyncio.create_task(publisher.run())
        for i in range(count):
            result = Result(Kind.HRV, athlete, time.time_ns(), {"rmssd_ms": 40.0 + i})
            publisher.accept([result])
            print(f"queued {store.last_seq(publisher.topics.for_result(result))}", flush=True)
            await asyncio.sleep(interval_s)
        await eventually(
            lambda: publisher.connected and not publisher.status()["outbox_depth"],
            timeout_s=3600,
            what="an empty outbox",
        )
        print("drained", flush=True)
        await runner


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.0)
    parser.add_argument("--athlete", default="proc")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.db, args.port, args.count, args.interval, args.athlete))
    except KeyboardInterrupt:
        sys.exit(130)
