"""Live ``seq`` blocks reserved away from the event loop (:mod:`streamer.sinks.live_seq`).

The reservations run in a real thread (the store's part is a counter here, as the store's
``reserve_seq`` hands out the first of ``n`` new numbers); every wait is on the refill's
event, never a sleep.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

from streamer.sinks.live_seq import LIVE_SEQ_BLOCK, LiveSeqs
from tests.mqtt_helpers import eventually


class _Counter:
    """``reserve_seq`` of a store: blocks one after the other, from the thread it runs in."""

    def __init__(self) -> None:
        self.next = 1_000
        self.calls: list[tuple[str, int]] = []
        self.threads: set[int] = set()
        self.fail = 0  # this many calls raise, as a store away does

    def __call__(self, topic: str, n: int) -> int:
        self.threads.add(threading.get_ident())
        if self.fail:
            self.fail -= 1
            raise OSError("store away")
        self.calls.append((topic, n))
        first, self.next = self.next, self.next + n
        return first


async def _refilled(seqs: LiveSeqs, refilled: asyncio.Event) -> None:
    refilled.clear()
    seqs.refill()
    await asyncio.wait_for(refilled.wait(), 30)


async def test_numbers_come_from_blocks_asked_ahead_in_the_thread_and_only_increase() -> None:
    store = _Counter()
    refilled = asyncio.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        seqs = LiveSeqs(store, executor, refilled.set)
        assert seqs.take("a") is None, "no block at hand before the first comes"
        await _refilled(seqs, refilled)
        assert threading.get_ident() not in store.threads, "reserved off the loop"
        half = LIVE_SEQ_BLOCK // 2 + 1
        taken = [seqs.take("a") for _ in range(half)]
        assert taken == list(range(1_000, 1_000 + half))
        # Half the block used: the next one is asked for now, long before it is needed.
        await _refilled(seqs, refilled)
        assert store.calls == [("a", LIVE_SEQ_BLOCK)] * 2
        rest = [seqs.take("a") for _ in range(LIVE_SEQ_BLOCK)]
        assert None not in rest, "the spare block follows on without a wait"
        numbers = [n for n in taken + rest if n is not None]
        assert numbers == sorted(set(numbers)), "strictly increasing across blocks"


async def test_topics_wanted_together_go_in_one_reservation_at_a_time() -> None:
    store = _Counter()
    refilled = asyncio.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        seqs = LiveSeqs(store, executor, refilled.set)
        assert seqs.take("a") is None
        assert seqs.take("b") is None
        seqs.refill()
        assert seqs.take("c") is None
        seqs.refill()  # one in flight: "c" waits for the next call
        await asyncio.wait_for(refilled.wait(), 30)
        assert sorted(t for t, _ in store.calls) == ["a", "b"]
        assert seqs.take("c") is None  # still wanted
        await _refilled(seqs, refilled)
        assert [t for t, _ in store.calls][-1] == "c"
        assert {seqs.take(t) is not None for t in "abc"} == {True}


async def test_a_failed_reservation_is_asked_again_by_itself_after_a_while() -> None:
    """The store away: no retry at every pass (one failed transaction per pass on the
    partition's thread), and one after RETRY_S even if no sample of the topic comes to
    ask — its held samples are not left waiting for the next."""
    store = _Counter()
    store.fail = 1
    refilled = asyncio.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        seqs = LiveSeqs(store, executor, refilled.set)
        assert seqs.take("a") is None
        seqs.refill()
        await eventually(lambda: seqs.failed_reservations == 1, 30, "the failure")
        for _ in range(3):  # passes within RETRY_S: nothing asked
            assert seqs.take("a") is None
            seqs.refill()
        await asyncio.wait_for(refilled.wait(), 30)  # asked again by itself
        assert store.calls == [("a", LIVE_SEQ_BLOCK)], "once more, not once per pass"
        assert seqs.take("a") == 1_000


async def test_a_stopped_executor_asks_nothing_and_raises_nothing() -> None:
    store = _Counter()
    executor = concurrent.futures.ThreadPoolExecutor(1)
    executor.shutdown()
    seqs = LiveSeqs(store, executor, lambda: None)
    assert seqs.take("a") is None
    seqs.refill()  # its partition is stopping: the held samples go with it
    assert store.calls == []
    assert seqs.take("a") is None
