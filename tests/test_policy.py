"""The reconnection policy is data; its delays are bounded, growing and repeatable."""

from __future__ import annotations

import dataclasses
import itertools
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.models import MODELS, model_named
from devices.policy import Backoff, ConnectionPolicy, Jitter

initial = st.floats(min_value=0.001, max_value=10.0)
ratio = st.floats(min_value=1.0, max_value=1000.0)
multiplier = st.floats(min_value=1.0, max_value=4.0)
jitters = st.sampled_from(list(Jitter))


@st.composite
def backoffs(draw: st.DrawFn, jitter: st.SearchStrategy[Jitter] = jitters) -> Backoff:
    first = draw(initial)
    return Backoff(
        initial_s=first,
        max_s=first * draw(ratio),
        multiplier=draw(multiplier),
        jitter=draw(jitter),
    )


def take(backoff: Backoff, n: int, seed: int) -> list[float]:
    return list(itertools.islice(backoff.delays(random.Random(seed)), n))


@given(backoffs(), st.integers(min_value=0, max_value=2**31))
def test_every_delay_is_within_zero_and_the_cap(backoff: Backoff, seed: int) -> None:
    for delay in take(backoff, 60, seed):
        assert 0.0 <= delay <= backoff.max_s


@given(backoffs(st.just(Jitter.DECORRELATED)), st.integers(min_value=0, max_value=2**31))
def test_decorrelated_delays_never_go_below_the_initial_delay(backoff: Backoff, seed: int) -> None:
    for delay in take(backoff, 60, seed):
        assert backoff.initial_s <= delay <= backoff.max_s


@given(backoffs(), st.integers(min_value=0, max_value=200))
def test_ceiling_is_non_decreasing_and_capped(backoff: Backoff, attempt: int) -> None:
    assert backoff.ceiling_s(attempt) <= backoff.ceiling_s(attempt + 1) <= backoff.max_s
    assert backoff.ceiling_s(0) == backoff.initial_s


def test_ceiling_survives_attempt_counts_that_would_overflow_a_float() -> None:
    backoff = Backoff(initial_s=0.5, max_s=30.0, multiplier=4.0)
    assert backoff.ceiling_s(100_000) == 30.0


@given(backoffs(st.just(Jitter.NONE)))
def test_without_jitter_the_delays_are_the_ceilings(backoff: Backoff) -> None:
    assert take(backoff, 20, 0) == [backoff.ceiling_s(n) for n in range(20)]


@settings(max_examples=25, deadline=None)
@given(backoffs(st.sampled_from([Jitter.FULL, Jitter.DECORRELATED])))
def test_jittered_delays_are_non_decreasing_in_expectation(backoff: Backoff) -> None:
    # The mean over many independent outages, per retry number, may only grow. The
    # tolerance is several standard errors of a mean of `runs` uniform draws.
    runs, depth = 2000, 12
    rng = random.Random(1234)
    columns = list(
        zip(*(itertools.islice(backoff.delays(rng), depth) for _ in range(runs)), strict=True)
    )
    means = [statistics.fmean(c) for c in columns]
    tolerance = 5 * backoff.max_s / (12**0.5 * runs**0.5)
    for earlier, later in itertools.pairwise(means):
        assert later >= earlier - tolerance


def test_full_jitter_mean_is_half_the_ceiling() -> None:
    backoff = Backoff(initial_s=1.0, max_s=8.0, multiplier=2.0, jitter=Jitter.FULL)
    rng = random.Random(7)
    runs = 4000
    samples = [list(itertools.islice(backoff.delays(rng), 5)) for _ in range(runs)]
    for attempt in range(5):
        mean = statistics.fmean(s[attempt] for s in samples)
        assert mean == pytest.approx(backoff.ceiling_s(attempt) / 2, rel=0.05)


@given(backoffs(), st.integers(min_value=0, max_value=2**31))
def test_same_seed_gives_the_same_delays(backoff: Backoff, seed: int) -> None:
    assert take(backoff, 30, seed) == take(backoff, 30, seed)


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"initial_s": 0.0}, "initial_s"),
        ({"initial_s": 2.0, "max_s": 1.0}, "max_s"),
        ({"multiplier": 0.5}, "multiplier"),
    ],
)
def test_backoff_rejects_nonsense_and_names_the_field(kwargs: dict[str, float], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        Backoff(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"connect_timeout_s": 0.0}, "connect_timeout_s"),
        ({"connect_attempts": 0}, "connect_attempts"),
        ({"stale_after_s": -1.0}, "stale_after_s"),
        ({"stable_after_s": -1.0}, "stable_after_s"),
        ({"scan_timeout_s": 0.0}, "scan_timeout_s"),
    ],
)
def test_connection_policy_rejects_nonsense_and_names_the_field(
    kwargs: dict[str, float], word: str
) -> None:
    with pytest.raises(ValueError, match=word):
        ConnectionPolicy(**kwargs)  # type: ignore[arg-type]


def test_every_device_model_watches_its_link_with_a_policy() -> None:
    assert all(isinstance(m.policy, ConnectionPolicy) for m in MODELS)
    assert all(m.policy.stale_after_s is not None for m in MODELS)


def test_strap_watchdog_fires_after_a_few_missed_one_hertz_notifications() -> None:
    stale = model_named("heart_rate").policy.stale_after_s
    assert stale is not None
    assert 3.0 <= stale <= 10.0


def test_policies_are_frozen_values() -> None:
    policy = model_named("heart_rate").policy
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.stale_after_s = 1.0  # type: ignore[misc]
    faster = dataclasses.replace(policy, stale_after_s=0.5)
    assert faster.stale_after_s == 0.5
    assert policy.stale_after_s == 5.0
