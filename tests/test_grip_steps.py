"""A grip test is measured step by step: each phase as it ends (shown and kept in the
history), force between phases is not part of the test (an Activ5 streams all the time),
and a test stopped mid-way keeps its finished phases — the half-done one is dropped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devices.records import ForceSample
from streamer.athlete import AthleteState, GripEnd, GripPhase, GripPhaseEnd
from streamer.athlete.grip import GRIP_PROGRESS
from streamer.results import Kind, Result
from streamer.store import Store

RATE_HZ = 10.0  # an Activ5's notifications


class Dyno:
    """Force samples at 10 Hz on one clock: rests and squeezes of a given peak."""

    def __init__(self) -> None:
        self.t_ns = 1_700_000_000 * 10**9

    def samples(self, seconds: float, kg: float) -> Iterator[ForceSample]:
        for _ in range(round(seconds * RATE_HZ)):
            self.t_ns += round(1e9 / RATE_HZ)
            yield ForceSample(self.t_ns, kg)

    def squeezes(self, *peaks: float) -> Iterator[ForceSample]:
        for peak in peaks:
            yield from self.samples(2.0, 0.0)
            yield from self.samples(3.0, peak)
        yield from self.samples(1.0, 0.0)


def feed(state: AthleteState, records: Iterator[object]) -> list[Result]:
    return [r for record in records for r in state.process("grip", record)]


@pytest.fixture
def store() -> Iterator[Store]:
    with Store(":memory:") as s:
        yield s


def test_each_phase_is_measured_as_it_ends_and_force_between_phases_is_ignored(
    store: Store,
) -> None:
    state = AthleteState("ann", store, live=False)
    dyno = Dyno()
    feed(state, iter([GripPhase(dyno.t_ns, None)]))
    feed(state, dyno.squeezes(40.0, 42.0))
    feed(state, iter([GripPhaseEnd(dyno.t_ns)]))
    (mvc,) = state.grip.steps
    assert (mvc.minute, mvc.best_kg, mvc.peaks_kg, mvc.drop_pct) == (None, 42.0, (40.0, 42.0), None)
    kept = store.load_baseline("ann", GRIP_PROGRESS)
    assert kept is not None
    assert kept["state"] == "open"
    assert kept["steps"] == [mvc.as_dict()]
    # Between tests an Activ5 keeps streaming: a 60 kg squeeze there is no MVC.
    feed(state, dyno.squeezes(60.0))
    feed(state, iter([GripPhase(dyno.t_ns, 0.0)]))
    feed(state, dyno.squeezes(33.6))
    feed(state, iter([GripPhaseEnd(dyno.t_ns)]))
    post = state.grip.steps[-1]
    assert post.minute == 0.0
    assert post.drop_pct == pytest.approx(20.0)
    out = feed(state, iter([GripEnd(dyno.t_ns)]))
    (grip,) = [r for r in out if r.kind is Kind.GRIP]
    assert grip.fields["mvc_kg"] == 42.0
    assert grip.fields["drops_pct"] == {"0": pytest.approx(20.0)}
    assert grip.device == "grip"
    kept = store.load_baseline("ann", GRIP_PROGRESS)
    assert kept is not None
    assert kept["state"] == "recorded"
    assert [s["minute"] for s in kept["steps"]] == [None, 0.0]  # type: ignore[index,union-attr]


def test_a_test_stopped_mid_way_keeps_its_finished_phases_and_drops_the_half_done_one(
    store: Store,
) -> None:
    state = AthleteState("ann", store, live=False)
    dyno = Dyno()
    feed(state, iter([GripPhase(dyno.t_ns, None)]))
    feed(state, dyno.squeezes(40.0))
    feed(state, iter([GripPhaseEnd(dyno.t_ns), GripPhase(dyno.t_ns, 0.0)]))
    feed(state, dyno.squeezes(34.0))
    feed(state, iter([GripPhaseEnd(dyno.t_ns), GripPhase(dyno.t_ns, 15.0)]))
    feed(state, dyno.samples(1.0, 5.0))  # Ctrl-C while the +15 test starts
    out = state.close()
    (grip,) = [r for r in out if r.kind is Kind.GRIP]
    assert grip.fields["drops_pct"] == {"0": pytest.approx(15.0)}
    assert grip.fields["class"] == "pending"  # an acute drop, no test at 15 min yet
    kept = store.load_baseline("ann", GRIP_PROGRESS)
    assert kept is not None
    assert kept["state"] == "interrupted"
    assert len(kept["steps"]) == 2  # type: ignore[arg-type]


def test_an_mvc_alone_is_kept_though_no_test_can_be_classified(store: Store) -> None:
    state = AthleteState("ann", store, live=False)
    dyno = Dyno()
    feed(state, iter([GripPhase(dyno.t_ns, None)]))
    feed(state, dyno.squeezes(41.0))
    feed(state, iter([GripPhaseEnd(dyno.t_ns)]))
    assert [r for r in state.close() if r.kind is Kind.GRIP] == []
    kept = store.load_baseline("ann", GRIP_PROGRESS)
    assert kept is not None
    assert kept["state"] == "incomplete"
    assert kept["steps"][0]["best_kg"] == 41.0  # type: ignore[index,call-overload]


def test_a_post_test_without_a_squeeze_is_left_out_not_the_whole_test() -> None:
    state = AthleteState("ann", live=False)
    dyno = Dyno()
    feed(state, iter([GripPhase(dyno.t_ns, None)]))
    feed(state, dyno.squeezes(40.0))
    feed(state, iter([GripPhaseEnd(dyno.t_ns), GripPhase(dyno.t_ns, 0.0)]))
    feed(state, dyno.samples(5.0, 0.3))  # the athlete did not squeeze
    feed(state, iter([GripPhaseEnd(dyno.t_ns), GripPhase(dyno.t_ns, 5.0)]))
    feed(state, dyno.squeezes(39.0))
    assert state.grip.steps[-1].best_kg is None
    out = feed(state, iter([GripEnd(dyno.t_ns)]))
    (grip,) = [r for r in out if r.kind is Kind.GRIP]
    assert list(grip.fields["drops_pct"]) == ["5"]  # type: ignore[call-overload]


def test_phases_without_end_markers_still_make_a_test() -> None:
    """The markers of before (GripPhase … GripEnd, e.g. the demo's history) still work."""
    state = AthleteState("ann", live=False)
    dyno = Dyno()
    feed(state, iter([GripPhase(dyno.t_ns, None)]))
    feed(state, dyno.squeezes(40.0))
    feed(state, iter([GripPhase(dyno.t_ns, 0.0)]))
    feed(state, dyno.squeezes(36.0))
    out = feed(state, iter([GripEnd(dyno.t_ns)]))
    (grip,) = [r for r in out if r.kind is Kind.GRIP]
    assert grip.fields["drops_pct"] == {"0": pytest.approx(10.0)}
    assert [s.minute for s in state.grip.steps] == [None, 0.0]
