"""``redox-streamer worker``: a team worker — partitions of the raw stream → PostgreSQL.

The work is in :mod:`streamer.team.worker` (processing, takeover) and
:mod:`streamer.team.partitions` (who owns what); this module parses the flags and runs it
until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

from streamer.config import ID_RULE, Config, MqttConfig, id_problem, load_config
from streamer.errors import CliError, note_stop_signal

DESCRIPTION = """\
Process whole partitions of the team's raw stream (NATS JetStream, fed by
`redox-streamer gateway`): each athlete's records and markers go through the same
processors and rules as `run`, results are kept in PostgreSQL and delivered to the
config's MQTT broker and InfluxDB. A partition is owned by one worker at a time (a
PostgreSQL advisory lock); when a worker dies another takes its partitions over and goes
on where its checkpoint says, without losing or repeating a result.
"""

EPILOG = """\
examples:
  redox-streamer worker --id w1 --nats nats://central:4222 \\
      --postgres postgresql://redox@central/redox --config /etc/redox/club.toml
  redox-streamer worker --id w2 ...     a second worker: the 16 partitions split 8 + 8

athletes' profiles and rules come from the club's central registry in NATS
(`redox-streamer registry push`; a change reaches each athlete between two protocols, no
restart) when the config names no athletes or says [team] registry = true, else from the
config's [[athletes]] and [rules]; an athlete nobody names gets the default profile. The
config's [mqtt] and [influx] sections give the sinks. The PostgreSQL tables are
made on first start; `redox-streamer migrate` brings single-box stores in.
"""


DEFAULT_LINGER_MS = 20.0
"""``--linger-ms``'s default: :data:`streamer.team.worker.DEFAULT_LINGER_S` (not imported
here: the command's parser loads nothing of the worker)."""
MAX_LINGER_MS = 1000.0
"""The longest linger taken: a live sample that late is no longer live."""


def _worker_id(text: str) -> str:
    problem = id_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def register(subparsers: Any) -> None:
    """Add the ``worker`` sub-command."""
    parser = subparsers.add_parser(
        "worker",
        help="team mode: process partitions of the raw stream into PostgreSQL",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--id", required=True, type=_worker_id, help=f"this worker's id (unique); {ID_RULE}"
    )
    parser.add_argument(
        "--nats", required=True, metavar="URL", help="NATS server URL(s), comma separated"
    )
    parser.add_argument(
        "--postgres", required=True, metavar="DSN", help="postgresql://user[:pw]@host[:port]/db"
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="athletes, rules, sinks")
    parser.add_argument("--mqtt", metavar="URL", help="MQTT broker (instead of the config's)")
    parser.add_argument(
        "--max-partitions",
        type=int,
        metavar="N",
        help="own at most N partitions (default: an even share of the live workers)",
    )
    parser.add_argument(
        "--no-live", action="store_true", help="do not publish live samples (QoS 0)"
    )
    parser.add_argument(
        "--linger-ms",
        type=float,
        metavar="MS",
        default=DEFAULT_LINGER_MS,
        help="how long a message arriving alone waits for others to be handled, written "
        "and published with it: fewer wake-ups per message, that much later live samples "
        f"(default {DEFAULT_LINGER_MS:g}; 0: at once)",
    )
    parser.set_defaults(handler=run)


def _said_if_failed(task: asyncio.Task[None]) -> None:
    """Log the survivor watch's end by an error of its own (a bug: it rides out MQTT's) at
    once, not at the worker's stop."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        logging.getLogger(__name__).error(
            "the gateways' survivor watch ended: %r", exc, exc_info=exc
        )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer worker``."""
    from streamer.team.worker import Worker, WorkerOptions

    config = load_config(args.config) if args.config is not None else Config()
    if args.mqtt:
        try:
            config = replace(config, mqtt=MqttConfig.from_url(args.mqtt))
        except ValueError as exc:
            raise CliError(f"--mqtt: {exc}") from None
    if args.max_partitions is not None and args.max_partitions < 0:
        raise CliError(f"--max-partitions {args.max_partitions}: give 0 or more")
    if not 0 <= args.linger_ms <= MAX_LINGER_MS:  # NaN too
        raise CliError(
            f"--linger-ms {args.linger_ms:g}: give 0 to {MAX_LINGER_MS:g} (the live latency "
            "target is 100 ms)"
        )
    if not args.postgres.startswith(("postgresql://", "postgres://")) and "=" not in args.postgres:
        raise CliError(
            f"--postgres {args.postgres!r}: give a URL postgresql://user@host:port/db "
            "or a libpq string 'host=… dbname=…'"
        )
    if logging.getLogger().level > logging.INFO or not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    options = WorkerOptions(
        max_partitions=args.max_partitions,
        live=not args.no_live,
        linger_s=args.linger_ms / 1000,
    )
    worker = Worker(
        args.id,
        nats_url=args.nats,
        dsn=args.postgres,
        config=config,
        options=options,
        registry=config.uses_registry,
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):

            def stop(sig: signal.Signals = sig) -> None:
                note_stop_signal(sig)
                worker.stop()

            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop)
        surviving = None
        if config.mqtt is not None:  # a lone gateway's devices, should it die for good
            from streamer.team.worker_survivor import WorkerSurvivor

            survivor = WorkerSurvivor(config.mqtt, args.id)
            surviving = asyncio.create_task(survivor.run(), name="gateways' survivor")
            surviving.add_done_callback(_said_if_failed)
        try:
            await worker.run()
        finally:
            if surviving is not None:
                surviving.cancel()
                await asyncio.gather(surviving, return_exceptions=True)

    asyncio.run(main())
    return 0
