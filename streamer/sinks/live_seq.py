"""Live samples' per-topic ``seq`` numbers, reserved in blocks away from the event loop.

A live topic's numbers come from the store in blocks (:data:`LIVE_SEQ_BLOCK`, one write per
block), so that they keep increasing across restarts and owners. A team worker's
partitions publish their live samples on the event loop they all share, while the store is
the partition's PostgreSQL connection, which the partition's writing thread holds for each
commit: tens of milliseconds when the disk is slow, as long as it likes when another session
holds a lock the commit needs, and until TCP gives up when the server stops answering. A
block reserved on the loop would stop every partition of the worker for that long (measured
before this module: the whole worker stalled behind one partition's commit waiting on a
table lock). :class:`LiveSeqs` asks for blocks in a thread instead — the partition's writing
thread, behind its commits — and ahead of need: the next block once half the current one is
used, so a topic in use does not wait while the store answers. A topic with no number at
hand (its first sample after a start or takeover, or the store slow to answer or away)
gets ``None``; its publisher holds such samples until the block comes and sheds those held
longer than a few seconds (:meth:`streamer.sinks.mqtt.MqttPublisher.publish_live`). A
failed reservation is asked again :data:`RETRY_S` later.

The single-box publisher numbers on its own connection's loop from its local SQLite store
(:meth:`streamer.sinks.mqtt.MqttPublisher.send_live`), as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Final

_LOGGER = logging.getLogger(__name__)

LIVE_SEQ_BLOCK: Final = 1000
"""Sequence numbers reserved at once for a live topic (one store write per block)."""
RETRY_S: Final = 1.0
"""After a failed reservation (the store away), how long until it is asked again (s): not
at every pass, and also when no sample comes to ask."""


class LiveSeqs:
    """Per-topic live numbers from blocks that ``reserve(topic, n)`` (the store's
    ``reserve_seq``: the first of ``n`` new numbers) hands out in ``executor``'s thread
    (None: the loop's default executor). ``on_refill`` is called on the loop after blocks
    came, for the samples waiting for them."""

    def __init__(
        self,
        reserve: Callable[[str, int], int],
        executor: concurrent.futures.Executor | None,
        on_refill: Callable[[], None],
    ) -> None:
        self._reserve = reserve
        self._executor = executor
        self._on_refill = on_refill
        self._current: dict[str, tuple[int, int]] = {}  # topic -> (next, end exclusive)
        self._spare: dict[str, tuple[int, int]] = {}  # the block after the current one
        self._wanted: set[str] = set()  # topics to ask a block for at the next refill
        self._asked: set[str] = set()  # topics of the reservation in flight
        self._retry_at = 0.0  # loop time before which no reservation is asked (a failure)
        self._closed = False
        self.failed_reservations = 0

    def take(self, topic: str) -> int | None:
        """The next number of ``topic``, or None when it has none at hand (then a block is
        wanted: see :meth:`refill`)."""
        nxt, end = self._current.get(topic, (0, 0))
        if nxt >= end:
            spare = self._spare.pop(topic, None)
            if spare is None:
                self._want(topic)
                return None
            nxt, end = spare
        if end - nxt <= LIVE_SEQ_BLOCK // 2:
            self._want(topic)  # half used: the next block comes before it is needed
        self._current[topic] = (nxt + 1, end)
        return nxt

    def _want(self, topic: str) -> None:
        if topic not in self._spare and topic not in self._asked:
            self._wanted.add(topic)

    def refill(self) -> None:
        """Ask for the blocks wanted since the last call, in the executor's thread; one
        reservation at a time (those wanted meanwhile go with the next call). Call it on
        the event loop, after taking numbers."""
        if not self._wanted or self._asked or self._closed:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._retry_at:
            return  # the retry after a failure is set (_reserved)
        asked, self._wanted = self._wanted, set()
        try:
            future = loop.run_in_executor(self._executor, self._reserve_blocks, sorted(asked))
        except RuntimeError:  # the executor is shut down: its partition is stopping
            return
        self._asked = asked
        future.add_done_callback(self._reserved)

    def close(self) -> None:
        """Ask for no more blocks (the publisher's partition stops); one in flight is let
        be, and :attr:`on_refill` is not called for it."""
        self._closed = True

    @property
    def closed(self) -> bool:
        """:meth:`close` was called."""
        return self._closed

    def _reserve_blocks(self, topics: list[str]) -> dict[str, int]:
        return {topic: self._reserve(topic, LIVE_SEQ_BLOCK) for topic in topics}

    def _reserved(self, future: asyncio.Future[dict[str, int]]) -> None:
        asked, self._asked = self._asked, set()
        if self._closed:
            return
        failure = "cancelled" if future.cancelled() else future.exception()
        if failure is not None:
            # The store away (PostgreSQL restarting): asked again RETRY_S later;
            # meanwhile the samples of these topics are held or shed (QoS 0).
            self.failed_reservations += 1
            self._wanted |= asked
            _LOGGER.debug("live seq blocks for %d topics not reserved: %s", len(asked), failure)
            loop = asyncio.get_running_loop()
            self._retry_at = loop.time() + RETRY_S
            loop.call_later(RETRY_S, self.refill)
            return
        for topic, first in future.result().items():
            block = (first, first + LIVE_SEQ_BLOCK)
            nxt, end = self._current.get(topic, (0, 0))
            if nxt >= end:
                self._current[topic] = block
            else:
                self._spare[topic] = block  # reserved after the current one: above it
        self._on_refill()
