"""The network side's retry policies: one ``Backoff``, exponential, capped, equal jitter.

The ``Backoff`` itself (every jitter mode, validation, repeatability) is pinned in
tests/test_policy.py; here are the policies ``streamer`` builds from it.
"""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

import devices.policy
from streamer.sinks import backoff as policies
from streamer.sinks.backoff import NOTIFY_RECONNECT, SINK_RESTART, Backoff, Jitter, network_backoff


def test_streamer_and_devices_share_one_backoff_class() -> None:
    assert Backoff is devices.policy.Backoff


def test_without_jitter_delays_double_up_to_the_cap() -> None:
    b = Backoff(0.5, 4.0, 2.0, jitter=Jitter.NONE)
    assert list(itertools.islice(b.delays(random.Random(0)), 6)) == [0.5, 1, 2, 4, 4, 4]


@given(st.integers(min_value=0, max_value=2**31))
def test_equal_jitter_stays_between_half_and_all_of_the_ceiling(seed: int) -> None:
    b = network_backoff(0.1, 30.0)
    delays = itertools.islice(b.delays(random.Random(seed)), 40)
    for attempt, delay in enumerate(delays):
        ceiling = b.ceiling_s(attempt)
        assert ceiling / 2 <= delay <= ceiling


def test_equal_jitter_spreads_clients_apart() -> None:
    rng = random.Random(1)
    b = network_backoff(1.0, 1.0)
    assert len({round(next(b.delays(rng)), 6) for _ in range(20)}) == 20


@pytest.mark.parametrize(("first", "cap"), [(0.0, 1.0), (2.0, 1.0)])
def test_nonsense_network_policies_are_refused(first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        network_backoff(first, cap)


def test_notifier_waits_one_second_first_and_at_most_thirty() -> None:
    assert (NOTIFY_RECONNECT.initial_s, NOTIFY_RECONNECT.max_s) == (1.0, 30.0)
    assert NOTIFY_RECONNECT.jitter is Jitter.EQUAL


def test_sink_restarts_are_not_jittered_and_capped_at_ten_seconds() -> None:
    delays = list(itertools.islice(SINK_RESTART.delays(random.Random(0)), 7))
    assert delays == [0.5, 1, 2, 4, 8, 10, 10]


def test_every_named_policy_is_a_backoff() -> None:
    named = {n: v for n, v in vars(policies).items() if n.isupper()}
    assert named
    assert all(isinstance(v, Backoff) for v in named.values())
