"""The retry policy: exponential, capped, jittered downwards only."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.backoff import Backoff


def test_without_jitter_delays_double_up_to_the_cap() -> None:
    b = Backoff(0.5, 4.0, 2.0, jitter=0.0)
    assert [b.delay(i) for i in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0))
def test_jittered_delay_stays_within_its_band(attempt: int, seed: int) -> None:
    b = Backoff(0.1, 30.0, 2.0, jitter=0.5)
    nominal = min(30.0, 0.1 * 2.0 ** min(attempt, 64))
    delay = b.delay(attempt, random.Random(seed))
    assert nominal * 0.5 <= delay <= nominal


def test_jitter_spreads_clients_apart() -> None:
    rng = random.Random(1)
    delays = {round(Backoff(1.0, 1.0).delay(0, rng), 6) for _ in range(20)}
    assert len(delays) == 20


@pytest.mark.parametrize("args", [(0.0, 1.0), (2.0, 1.0), (1.0, 2.0, 0.5), (1.0, 2.0, 2.0, 1.5)])
def test_nonsense_policies_are_refused(args: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="back-off"):
        Backoff(*args)
