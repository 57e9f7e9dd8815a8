#!/usr/bin/env python3
"""Carry the club's NATS streams from the stage-1 server to the stage-2 cluster.

A nats-server restarted into a cluster deletes the streams it made on its own (orphans,
30 s after it starts), and the workers' checkpoints are stream sequences: so the raw stream
and the registry are saved from the stage-1 server first and restored into the cluster with
their sequences, then given three replicas (deploy/README.md, section 9, "From stage 1 to
stage 2"). Run it with the Python that has redox-streamer's team extra:

  # stage 1 still running, gateways and workers stopped:
  /opt/redox-streamer/bin/python deploy/nats/move-streams.py backup \
      --nats nats://127.0.0.1:4222 --to /var/backups/redox-nats
  # the three nodes running (the old store moved aside):
  /opt/redox-streamer/bin/python deploy/nats/move-streams.py restore \
      --nats nats://n1:4222,nats://n2:4222,nats://n3:4222 --from /var/backups/redox-nats
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import nats
import nats.aio.client
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from streamer.team import stream


def _servers(text: str) -> list[str]:
    return [url.strip() for url in text.split(",") if url.strip()]


async def _connect(servers: list[str]) -> nats.aio.client.Client:
    try:
        return await nats.connect(servers, connect_timeout=5, max_reconnect_attempts=3)
    except (NatsError, OSError, TimeoutError) as exc:
        raise stream.StreamMoveError(
            f"cannot reach NATS at {','.join(servers)} ({exc or type(exc).__name__}); "
            "check --nats and that nats-server runs there"
        ) from exc


async def backup(servers: list[str], directory: Path) -> None:
    nc = await _connect(servers)
    try:
        js = nc.jetstream()
        for name in stream.MOVED_STREAMS:
            try:
                await js.stream_info(name)
            except NotFoundError:
                print(f"{name}: not on this server, nothing to save")
                continue
            state = await stream.backup_stream(nc, name, directory)
            after = (await js.stream_info(name)).state.last_seq
            if after != state["last_seq"]:
                # Not a backup to restore from: what was written after it would be lost.
                for suffix in (".json", ".snap"):
                    (directory / f"{name}{suffix}").unlink(missing_ok=True)
                raise stream.StreamMoveError(
                    f"{name}: written during the backup (last sequence {state['last_seq']}, "
                    f"now {after}); stop every gateway (and registry push), then back up again"
                )
            print(
                f"{name}: {state['messages']} messages, sequences {state['first_seq']}-"
                f"{state['last_seq']} saved in {directory}"
            )
    finally:
        await nc.close()


async def restore(servers: list[str], directory: Path, replicas: int, wait_s: float) -> None:
    nc = await _connect(servers)
    try:
        js = nc.jetstream()
        for name in stream.MOVED_STREAMS:
            if not (directory / f"{name}.json").exists():
                print(f"{name}: not in {directory}, nothing to restore")
                continue
            state = await stream.restore_stream(nc, name, directory)
            await stream.raise_replicas(js, name, replicas)
            print(
                f"{name}: {state['messages']} messages, sequences {state['first_seq']}-"
                f"{state['last_seq']} restored, {replicas} replicas asked"
            )
        await stream.ensure_stream(js, replicas)  # the lease bucket, with as many copies
        for name in stream.MOVED_STREAMS:
            if (directory / f"{name}.json").exists():
                info = await stream.wait_current(js, name, replicas, wait_s)
                print(f"{name}: {info.config.num_replicas or 1} copies current")
        # Measured on 2.15.1: a restored stream takes a resent Nats-Msg-Id as new until its
        # nodes have read it from disk at a start; a gateway's row sent before the move and
        # unacknowledged would be stored twice.
        print(
            "now restart each node, one after the other (systemctl restart nats-server, "
            "then wait for curl -s 127.0.0.1:8222/healthz to say ok), before the gateways "
            "start: only then are the message ids of the last 2 h known again"
        )
    finally:
        await nc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    b = sub.add_parser("backup", help="save the streams from the stage-1 server")
    b.add_argument("--nats", required=True, help="the stage-1 server's URL")
    b.add_argument("--to", required=True, type=Path, help="a directory for the backup")
    r = sub.add_parser("restore", help="restore them into the cluster, three replicas")
    r.add_argument("--nats", required=True, help="the cluster's URLs, comma-separated")
    r.add_argument("--from", dest="source", required=True, type=Path, help="the backup directory")
    r.add_argument("--replicas", type=int, default=3, choices=(1, 3))
    r.add_argument("--wait", type=float, default=120.0, help="seconds for the copies (120)")
    args = parser.parse_args()
    try:
        if args.step == "backup":
            asyncio.run(backup(_servers(args.nats), args.to))
        else:
            asyncio.run(restore(_servers(args.nats), args.source, args.replicas, args.wait))
    except (stream.StreamMoveError, NatsError, OSError, TimeoutError) as exc:
        print(f"move-streams {args.step}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
