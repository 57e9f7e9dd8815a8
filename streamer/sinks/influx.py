"""The InfluxDB writer: line protocol over HTTP, batched, retried, never losing a result.

Points are serialised by influxdb-client's ``Point`` (:mod:`streamer.sinks.influx_schema`) and
written with a small HTTP client of our own (stdlib ``urllib`` in a worker thread), because
influxdb-client writes only through ``/api/v2/write`` — which InfluxDB 1.6 answers 404 —
and its batching mode drops a batch after its retry time and buffers only in memory.

APIs, chosen by ``influx.api`` in the config:

* ``v1`` — ``POST /write?db=&rp=&precision=ns`` with HTTP basic auth (user/password);
  accepted by InfluxDB 1.x, 2.x (with a DBRP mapping), 3.x and VictoriaMetrics.
  ``create_database = true`` issues ``CREATE DATABASE`` at start and when the server says
  the database does not exist.
* ``v2`` — ``POST /api/v2/write?org=&bucket=&precision=ns`` with ``Authorization: Token``.

Delivery:

* Results (everything :meth:`InfluxWriter.accept` gets) go to the store's InfluxDB outbox
  at once, in one transaction — durable before ``accept`` returns.
* Live samples (:meth:`InfluxWriter.send_live`) are buffered in memory (at most
  ``max_buffer_points``; beyond, the oldest are shed and counted) and written every
  ``flush_interval_s`` or ``batch_size`` points. While the server is unreachable they are
  spilled to the outbox instead (up to ``outbox_max_points``), so an outage loses nothing;
  a crash of this process loses at most the last ``flush_interval_s`` of live samples.
* The outbox is written oldest first, ``batch_size`` points at a time, and a point leaves
  it only after the server accepted it (2xx). Connection errors, timeouts, 5xx, 429 and
  401/403/404 (wrong credentials or database: fixable without losing data) are retried
  with exponential back-off and jitter, in order.
* HTTP 400 means bad data (e.g. a field type conflict — InfluxDB 1.x refuses a field
  whose type differs from the one in the shard). The batch is bisected until the bad
  points are isolated: good points are written (rewriting an identical point is harmless
  in InfluxDB), bad ones go to the store's dead-letter table with the server's message
  and are counted — a bad point never blocks the queue. 413 (too large) splits the batch.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Final

from streamer.config import InfluxConfig
from streamer.results import Result
from streamer.sinks.backoff import Backoff, network_backoff
from streamer.sinks.influx_schema import lines_for
from streamer.sinks.outbox import Message, Outbox
from streamer.store import Store

_LOGGER: Final = logging.getLogger(__name__)
_ERROR_TEXT_CHARS: Final = 300
OUTBOX: Final = "influx"
"""The InfluxDB sink's outbox in the store (:class:`streamer.outbox.Outbox`): one point
(a line-protocol line, UTF-8) per message."""


def line_messages(lines: Sequence[str]) -> list[Message]:
    """Line-protocol points as outbox messages (UTF-8)."""
    return [Message(line.encode()) for line in lines]


class _Outcome(Enum):
    DONE = "done"  # written (or the bad points dead-lettered)
    RETRY = "retry"  # the server is unreachable or refused for a fixable reason


@dataclass
class InfluxStatus:
    """Counters for the live view (:meth:`InfluxWriter.status` returns them as a dict)."""

    url: str
    api: str
    healthy: bool | None = None  # None until the first write
    written: int = 0  # points accepted by the server
    batches: int = 0
    failed_attempts: int = 0
    outbox_depth: int = 0
    buffered: int = 0
    shed: int = 0  # live points dropped (buffer or outbox over its cap)
    dead_lettered: int = 0
    last_error: str | None = None
    last_write_ns: int | None = None
    # The server answered and refused the last write (401/403/404/…: wrong database,
    # bucket or credentials): fixable by the user, so shown as such, not as an outage.
    refused: bool = False


class InfluxWriter:
    """Writes results and live samples to InfluxDB through the store's outbox.

    Args:
        config: URL, API (v1/v2) and its credentials, batching and retry settings.
        store: the SQLite store holding the outbox and the dead letters.
        name: the sink's name in the pipeline's status.
        backoff: delays between retries (default from ``config``).
    """

    def __init__(
        self,
        config: InfluxConfig,
        store: Store,
        *,
        name: str = "influx",
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.store = store
        self.outbox = Outbox(store, OUTBOX)
        self._backoff = backoff or network_backoff(config.retry_min_s, config.retry_max_s)
        self._rng = random.Random()
        self._status = InfluxStatus(
            url=config.url, api=config.api, outbox_depth=self.outbox.depth()
        )
        self._buffer: deque[str] = deque()
        self._buffer_since = 0.0
        self._wake = asyncio.Event()
        self._retry_at = 0.0
        self._delays = self._backoff.delays(self._rng)
        self._flush_now = False
        self._closing = False
        self._in_flight = 0  # live points popped from the buffer, their write not yet done
        self._write_url, self._headers = self._endpoint()

    # --- Sink protocol ----------------------------------------------------------------------

    def accept(self, results: Sequence[Result]) -> None:
        """Put the points of ``results`` in the outbox (one SQLite transaction) and wake
        the writer. Live results are accepted too (durably) but belong in send_live."""
        self.wake(self.enqueue(results))

    def enqueue(self, results: Sequence[Result]) -> int:
        """:meth:`accept`'s part in the store: the points queued, in the caller's
        transaction if one is open. Touches nothing of the event loop, so a thread may call
        it (team mode writes off the loop); :meth:`wake` then, on the loop, once the
        transaction committed. Returns how many points were queued."""
        lines = [line for r in results for line in lines_for(r)]
        if not lines:
            return 0
        self.outbox.enqueue_many(line_messages(lines))
        return len(lines)

    def wake(self, queued: int) -> None:
        """:meth:`accept`'s part on the event loop: ``queued`` points more in the outbox
        (:meth:`enqueue`, committed): the writer goes and writes them."""
        if not queued:
            return
        self._status.outbox_depth += queued
        self._wake.set()

    async def send_live(self, batch: Sequence[Result]) -> None:
        """Buffer the points of live results for the next batch (never waits on the network).

        Over ``max_buffer_points`` the oldest buffered points are shed and counted.
        """
        self.buffer_live(batch)

    def buffer_live(self, batch: Sequence[Result]) -> None:
        """:meth:`send_live` as a plain call (it never waits): a team worker's partitions
        buffer each pass's samples with it, not in a task per pass."""
        lines = [line for r in batch for line in lines_for(r)]
        if not lines:
            return
        if self._closing:  # drained already: nobody will flush the buffer
            self._spill(lines)
            return
        if not self._buffer:
            self._buffer_since = time.monotonic()
        self._buffer.extend(lines)
        overflow = len(self._buffer) - self.config.max_buffer_points
        for _ in range(max(0, overflow)):
            self._buffer.popleft()
        if overflow > 0:
            self._status.shed += overflow
        self._status.buffered = len(self._buffer)
        if len(self._buffer) >= self.config.batch_size:
            self._wake.set()

    async def run(self) -> None:
        """Write the outbox and the live buffer until cancelled or drained."""
        if self.config.api == "v1" and self.config.create_database:
            with contextlib.suppress(OSError, urllib.error.URLError):
                await asyncio.to_thread(self._create_database)
        try:
            while not self._stop_requested():
                await self._step()
        except asyncio.CancelledError:
            lines = list(self._buffer)  # kept in the outbox for the next start
            self._buffer.clear()
            # In a thread: the store may be busy for long (a team partition's commit
            # waiting on a lock until its stop cancels it), and the loop must not wait.
            await asyncio.to_thread(self._spill, lines)
            raise

    async def drain(self, timeout_s: float) -> int:
        """Write what can be written within ``timeout_s``; buffered points that could not
        be written are kept in the outbox. Returns the points left in the outbox."""
        self._flush_now = True
        self._wake.set()
        # Leave a margin so that the spill below happens within the caller's budget.
        for _ in range(max(1, int((timeout_s - 0.25) / 0.02))):
            # A batch in flight is neither buffered nor in the outbox: wait for its answer
            # too, or cancelling the writer would spill points the server already has.
            if not self._buffer and self._status.outbox_depth == 0 and not self._in_flight:
                break
            await asyncio.sleep(0.02)
        self._closing = True
        self._spill(list(self._buffer))
        self._buffer.clear()
        self._status.buffered = 0
        self._wake.set()
        return self._status.outbox_depth

    def status(self) -> dict[str, Any]:
        """The counters (:class:`InfluxStatus`) as a dict."""
        return asdict(self._status)

    # --- the loop ---------------------------------------------------------------------------

    def _stop_requested(self) -> bool:
        return self._closing

    def _buffer_due(self, now: float) -> bool:
        return bool(self._buffer) and (
            self._flush_now
            or len(self._buffer) >= self.config.batch_size
            or now - self._buffer_since >= self.config.flush_interval_s
        )

    async def _step(self) -> None:
        now = time.monotonic()
        if self._status.outbox_depth > 0 and now >= self._retry_at:
            await self._write_outbox_batch()
            return
        if self._buffer_due(now):
            chunk = [
                self._buffer.popleft()
                for _ in range(min(self.config.batch_size, len(self._buffer)))
            ]
            self._status.buffered = len(self._buffer)
            if self._status.outbox_depth > 0 or now < self._retry_at:
                # The server is away: keep the points, in order, behind the outbox.
                self._spill(chunk + list(self._buffer))
                self._buffer.clear()
                self._status.buffered = 0
                return
            self._in_flight = len(chunk)
            try:
                outcome = await self._write(chunk)
            except asyncio.CancelledError:
                self._spill(chunk)
                raise
            finally:
                self._in_flight = 0
            if outcome is _Outcome.RETRY:
                self._spill(chunk + list(self._buffer))
                self._buffer.clear()
                self._status.buffered = 0
            return
        timeouts = []
        if self._buffer:
            timeouts.append(self._buffer_since + self.config.flush_interval_s - now)
        if self._status.outbox_depth > 0:
            timeouts.append(self._retry_at - now)
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, min(timeouts)) if timeouts else None):
                await self._wake.wait()

    async def _write_outbox_batch(self) -> None:
        batch = await asyncio.to_thread(self.outbox.peek, self.config.batch_size)
        if not batch:
            self._status.outbox_depth = 0
            return
        outcome = await self._write([x.payload.decode() for x in batch])
        if outcome is _Outcome.DONE:
            await asyncio.to_thread(self.outbox.ack, batch[-1].id)
            self._status.outbox_depth = max(0, self._status.outbox_depth - len(batch))

    def _spill(self, lines: list[str]) -> None:
        """Append live points to the outbox, shedding what exceeds ``outbox_max_points``."""
        if not lines:
            return
        room = max(0, self.config.outbox_max_points - self._status.outbox_depth)
        if len(lines) > room:
            self._status.shed += len(lines) - room
            lines = lines[:room]
        self.outbox.enqueue_many(line_messages(lines))
        self._status.outbox_depth += len(lines)

    # --- HTTP -------------------------------------------------------------------------------

    def _endpoint(self) -> tuple[str, dict[str, str]]:
        return write_endpoint(self.config)

    def _post(self, url: str, body: bytes, content_type: str | None = None) -> tuple[int, str]:
        headers = dict(self._headers)
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                return int(response.status), response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode("utf-8", "replace")

    def _create_database(self) -> None:
        db = (self.config.db or "").replace('"', '\\"')
        body = urllib.parse.urlencode({"q": f'CREATE DATABASE "{db}"'}).encode()
        status, text = self._post(
            f"{self.config.url}/query", body, "application/x-www-form-urlencoded"
        )
        if status >= 300:
            raise OSError(f"CREATE DATABASE failed: HTTP {status} {text[:_ERROR_TEXT_CHARS]}")
        _LOGGER.info("InfluxDB %s: database %r ready", self.config.url, self.config.db)

    async def _write(self, lines: list[str]) -> _Outcome:
        """Write ``lines``; bad points are dead-lettered, fixable failures ask for a retry."""
        try:
            status, text = await asyncio.to_thread(
                self._post, self._write_url, "\n".join(lines).encode()
            )
        except (OSError, urllib.error.URLError, TimeoutError) as exc:
            return self._retry_later(f"{type(exc).__name__}: {exc}", refused=False)
        text = text.strip()[:_ERROR_TEXT_CHARS]
        if 200 <= status < 300:
            self._on_written(len(lines))
            return _Outcome.DONE
        if status in (400, 413) and len(lines) > 1:
            half = len(lines) // 2
            for part in (lines[:half], lines[half:]):
                if await self._write(part) is _Outcome.RETRY:
                    return _Outcome.RETRY
            return _Outcome.DONE
        if status == 400 or status == 413:
            self.outbox.dead_letter(line_messages(lines), status, text)
            self._status.dead_lettered += len(lines)
            self._status.last_error = f"HTTP {status}: point dead-lettered: {text}"
            _LOGGER.error(
                "InfluxDB rejected a point as bad data (HTTP %d: %s); kept in the "
                "dead-letter table: %s",
                status,
                text,
                lines[0][:200],
            )
            return _Outcome.DONE
        if status == 404 and self.config.api == "v1" and self.config.create_database:
            with contextlib.suppress(OSError, urllib.error.URLError):
                await asyncio.to_thread(self._create_database)
        return self._retry_later(
            f"HTTP {status}: {text} — {refusal_hint(status, self.config, text)}",
            refused=(400 <= status < 500 and status not in (408, 429))
            or "retention policy not found" in text,
        )

    def _on_written(self, n: int) -> None:
        self._status.written += n
        self._status.batches += 1
        self._status.healthy = True
        self._status.refused = False
        self._status.last_write_ns = time.time_ns()
        self._delays = self._backoff.delays(self._rng)  # the next outage starts afresh
        self._retry_at = 0.0

    def _retry_later(self, error: str, *, refused: bool) -> _Outcome:
        delay = next(self._delays)
        self._status.refused = refused
        self._retry_at = time.monotonic() + delay
        if self._status.healthy is not False or error != self._status.last_error:
            _LOGGER.warning(
                "InfluxDB %s: write failed (%s); keeping points in the outbox, "
                "retrying with back-off",
                self.config.url,
                error,
            )
        self._status.healthy = False
        self._status.failed_attempts += 1
        self._status.last_error = error
        return _Outcome.RETRY


def write_endpoint(config: InfluxConfig) -> tuple[str, dict[str, str]]:
    """The write URL (v1 ``/write`` or v2 ``/api/v2/write`` with its query) and the
    headers (credentials) of ``config`` — the writer's, and ``doctor``'s probe."""
    c = config
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if c.api == "v1":
        params = {"db": c.db or "", "precision": "ns"}
        if c.rp:
            params["rp"] = c.rp
        url = f"{c.url}/write?{urllib.parse.urlencode(params)}"
        if c.username:
            password = c.password.reveal() if c.password else ""
            token = base64.b64encode(f"{c.username}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
    else:
        params = {"org": c.org or "", "bucket": c.bucket or "", "precision": "ns"}
        url = f"{c.url}/api/v2/write?{urllib.parse.urlencode(params)}"
        if c.token:
            headers["Authorization"] = f"Token {c.token.reveal()}"
    return url, headers


def refusal_hint(status: int, config: InfluxConfig, text: str = "") -> str:
    """What to do about a write the server refused with HTTP ``status`` (and ``text``), in
    the config's terms."""
    if status in (401, 403):
        if config.api == "v1":
            return (
                "check influx.username/password (or REDOX_INFLUX_PASSWORD) and that the "
                f'user may write: GRANT WRITE ON "{config.db}" TO "<user>"'
            )
        return "check influx.token (or REDOX_INFLUX_TOKEN) and its write permission"
    if status == 404:
        if config.api == "v1":
            return (
                f"database {config.db!r} missing or no /write here: create it "
                f'(CREATE DATABASE "{config.db}"), set create_database = true, or check '
                "influx.url"
            )
        return (
            f"bucket {config.bucket!r} / org {config.org!r} not found, or no "
            '/api/v2/write here (InfluxDB 1.x before 1.8: use api = "v1")'
        )
    if "retention policy not found" in text:
        return f"retention policy {config.rp!r} does not exist in {config.db!r}: fix influx.rp"
    return "the server is unavailable; retrying"
