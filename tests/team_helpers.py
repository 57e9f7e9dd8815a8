"""Team-mode test helpers: an emulated gateway as a child process, and the stream read back.

The gateway runs ``redox-streamer gateway --emulated`` (Bumble devices on the world's one
emulated clock) so a test can SIGKILL it like a Pi losing power; what reached JetStream is
read with an ordered consumer, and what waits in the gateway's outbox straight from its
SQLite file.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.errors import Error as NatsError

from devices.recording import RecordedNotification
from streamer.team import stream as team_stream
from streamer.team import wire

ROOT = Path(__file__).resolve().parent.parent

ANN = """\
[[athletes]]
id = "ann"
[[athletes.devices]]
kind = "strap"
address = "EE:00:00:00:01:01"
[[athletes.devices]]
kind = "smo2"
address = "EE:00:00:00:01:02"
"""
"""Ann's club-file entry: a strap and a Moxy."""
BOB = """\
[[athletes]]
id = "bob"
[[athletes.devices]]
kind = "strap"
address = "EE:00:00:00:02:01"
"""
"""Bob's club-file entry: a strap."""
CONFIG = '[store]\npath = "{store}"\n\n' + ANN + "\n" + BOB
"""Two athletes, three devices: ann's strap and Moxy share one subject, bob's is another."""


def write_config(directory: Path, extra: str = "") -> Path:
    """The test config (:data:`CONFIG`, plus ``extra``) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "redox.toml"
    path.write_text(CONFIG.format(store=directory / "store.sqlite") + extra)
    return path


def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll ``condition`` every 50 ms until true; AssertionError naming ``what`` after
    ``timeout_s`` (generous: the tests run on a loaded 2-core machine)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


class GatewayProc:
    """``redox-streamer gateway --emulated`` as a child process that can be SIGKILLed."""

    def __init__(
        self,
        workdir: Path,
        gateway_id: str,
        servers: Sequence[str],
        config: Path,
        *,
        speed: float = 10.0,
        extra: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.id = gateway_id
        self.servers = list(servers)
        self.config = config
        self.speed = speed
        self.extra = list(extra)
        self.outbox = workdir / f"gateway-{gateway_id}.sqlite"
        self.log = workdir / f"gateway-{gateway_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streamer.cli",
                    "gateway",
                    "--id",
                    self.id,
                    "--nats",
                    ",".join(self.servers),
                    "--config",
                    str(self.config),
                    "--outbox",
                    str(self.outbox),
                    "--emulated",
                    "--speed",
                    str(self.speed),
                    *self.extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
            )

    def kill(self) -> None:
        """SIGKILL: the power cut."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait: the gateway drains its outbox for a few seconds and exits."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def outbox_rows(self) -> list[tuple[int, int, str, bytes]]:
        """``(id, boot, athlete, body)`` of the rows waiting in the outbox file now."""
        if not self.outbox.exists():
            return []
        db = sqlite3.connect(f"file:{self.outbox}?mode=ro", uri=True, timeout=10)
        try:
            rows = db.execute(
                "SELECT id, boot, athlete, body FROM gateway_outbox ORDER BY id"
            ).fetchall()
        except sqlite3.OperationalError:  # not created yet
            return []
        finally:
            db.close()
        return [(int(i), int(b), str(a), bytes(body)) for i, b, a, body in rows]


@dataclass(frozen=True, slots=True)
class Stored:
    """One message of the stream: its sequence, athlete, gateway, msg id and content."""

    seq: int
    athlete: str
    gateway: str
    msg_id: str
    message: wire.WireMessage
    stored_s: float
    """When the server stored it (its clock, s since the epoch)."""
    received_ns: int | None = None
    """When the gateway received it (its wall clock, ns: the ``Redox-Received`` header)."""

    @property
    def outbox_id(self) -> int:
        return int(self.msg_id.rsplit(":", 1)[1])


async def _stream_messages(servers: Sequence[str]) -> list[Stored]:
    import nats

    nc = await nats.connect(servers=list(servers), connect_timeout=5, max_reconnect_attempts=5)
    try:
        js = nc.jetstream()
        count = (await js.stream_info(wire.STREAM)).state.messages
        out: list[Stored] = []
        if count:
            # No client-side cap: the default (512k messages) drops the surplus of a larger
            # stream as a slow consumer, and the read starts again, forever (the server's flow
            # control bounds what is in flight by bytes, and these messages are small).
            sub = await js.subscribe(
                wire.stream_subjects()[0],
                ordered_consumer=True,
                pending_msgs_limit=0,
                pending_bytes_limit=0,
            )
            for _ in range(count):
                msg = await sub.next_msg(timeout=30)
                _, athlete = wire.athlete_of(msg.subject)
                headers = msg.headers or {}
                out.append(
                    Stored(
                        msg.metadata.sequence.stream,
                        athlete,
                        headers[wire.GATEWAY_HEADER],
                        headers[wire.MSG_ID_HEADER],
                        wire.decode(msg.subject, msg.data),
                        msg.metadata.timestamp.timestamp(),
                        _received_ns(headers),
                    )
                )
            await sub.unsubscribe()
        return out
    finally:
        await nc.close()


async def ensure_stream_asked_again(
    js: Any, replicas: int | None = None, timeout_s: float = 60.0
) -> Any:
    """:func:`streamer.team.stream.ensure_stream` as a gateway's start calls it: asked again
    while the cluster does not answer in time (on a loaded machine, a JetStream API request
    right after the cluster formed or a leader moved can outlast nats-py's 5 s) or does not
    see all its peers yet ("no suitable peers for placement, peer offline", err 10005, on
    the move to three copies right after the cluster formed). Both seen in CI."""
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.errors import BadRequestError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await team_stream.ensure_stream(js, replicas)
        except NatsTimeout:
            if time.monotonic() > deadline:
                raise
        except BadRequestError as exc:
            if exc.err_code != 10005 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)  # the gateway's own back-off between asks, shortened


def _received_ns(headers: Mapping[str, str]) -> int | None:
    value = headers.get(wire.RECEIVED_HEADER)
    return int(value) if value is not None and value.isdigit() else None


def stream_messages(servers: Sequence[str], timeout_s: float = 60.0) -> list[Stored]:
    """Every message of ``REDOX_RAW`` in stream order.

    Asked again while the cluster answers with a timeout: after a node's loss the meta
    leader may be electing, and a consumer cannot be created until it is back."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return asyncio.run(_stream_messages(servers))
        except (TimeoutError, OSError, NatsError) as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"the stream could not be read in {timeout_s} s") from exc


async def _stream_count(servers: Sequence[str]) -> int:
    import nats

    nc = await nats.connect(servers=list(servers), connect_timeout=2, max_reconnect_attempts=1)
    try:
        return int((await nc.jetstream().stream_info(wire.STREAM)).state.messages)
    finally:
        await nc.close()


def stream_count(servers: Sequence[str]) -> int:
    """Messages in ``REDOX_RAW`` now; -1 when no server answers (or no stream yet)."""
    try:
        return asyncio.run(_stream_count(servers))
    except Exception:  # away, electing, not created yet: the caller polls again
        return -1


def check_exactly_once(stored: Sequence[Stored], left_in_outbox: Sequence[int] = ()) -> None:
    """Nothing lost, nothing twice, in order — for the messages of one gateway.

    Outbox ids are ``AUTOINCREMENT`` (never reused, across restarts too), so what the
    gateway committed is a contiguous range of ids: every one of them must be in the
    stream exactly once (or still in the outbox: ``left_in_outbox``, sent again at the
    gateway's next start — under the same msg id, so stored once). Each athlete's
    messages must stand in the stream in id order (the gateway's receipt order), and no
    notification may appear twice by its content.
    """
    ids = [m.outbox_id for m in stored]
    msg_ids = [m.msg_id for m in stored]
    assert len(set(msg_ids)) == len(msg_ids), "a msg id stored twice"
    assert len(set(ids)) == len(ids), "an outbox row stored twice (under two boots)"
    # A row may be both: stored, but its PubAck not yet received when the gateway stopped
    # (a leader change); the next start resends it and the server drops the copy.
    every = sorted(set(ids) | set(left_in_outbox))
    assert every == list(range(every[0], every[0] + len(every))), (
        f"outbox ids missing from the stream: "
        f"{sorted(set(range(every[0], every[-1] + 1)) - set(every))[:20]}"
    )
    assert every[0] == 1, f"the first {every[0] - 1} rows never reached the stream"
    by_athlete: dict[str, list[int]] = {}
    for m in stored:
        by_athlete.setdefault(m.athlete, []).append(m.outbox_id)
    for athlete, order in by_athlete.items():
        assert order == sorted(order), f"{athlete}'s messages out of order in the stream"
    keys = [
        (m.athlete, m.message.device, m.message.char, m.message.t_ns, m.message.data)
        for m in stored
        if isinstance(m.message, RecordedNotification)
    ]
    assert len(set(keys)) == len(keys), "a notification stored twice"


def longest_write_gap_s(stored: Sequence[Stored]) -> float:
    """The longest time between two consecutive stored messages (s): with devices sending
    several messages a second, the stall of writes around a fault."""
    times = [m.stored_s for m in stored]
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def notifications(stored: Sequence[Stored]) -> list[Stored]:
    """The raw notifications among ``stored``."""
    return [m for m in stored if isinstance(m.message, RecordedNotification)]


async def stream_leader(servers: list[str]) -> str:
    """The name of the node leading the raw stream now (waits out an election, ≤ 60 s)."""
    import nats

    async def quiet(_exc: Exception) -> None:
        pass  # a node away: the next one is asked

    deadline = time.monotonic() + 60
    nc = await nats.connect(servers=servers, connect_timeout=2, error_cb=quiet)
    try:
        while True:
            try:
                info = await nc.jetstream().stream_info(wire.STREAM)
                if info.cluster is not None and info.cluster.leader:
                    return str(info.cluster.leader)
            except Exception:  # electing: ask again
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.1)
    finally:
        await nc.close()
