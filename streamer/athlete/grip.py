"""The grip-test protocol (:class:`GripPhase` … :class:`GripEnd`): force traces per phase,
kept while a test runs, and the grip device they came from."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from devices.records import ForceSample
from processors.grip import GripClass, GripTest
from streamer.athlete.force import ForceClock
from streamer.results import GripPayload, Result

_LOGGER = logging.getLogger(__name__)

GRIP_MAX_SAMPLES_PER_PHASE: Final = 80 * 180
"""Three minutes at the Progressor's 80 Hz per test phase."""

Trace = tuple[list[float], list[float]]
"""Times (s) and forces (kg) of one phase."""


@dataclass(frozen=True, slots=True)
class GripTraces:
    """A finished test's traces: the pre-session MVC trials and the post tests by minute,
    and the device that measured them."""

    pre: Trace
    post: dict[float, Trace]
    device: str | None


class GripProtocol:
    """One grip test in progress: phase key (None = pre) → trace."""

    def __init__(self, athlete: str) -> None:
        self.athlete = athlete
        self._active = False
        self._minute: float | None = None
        self._traces: dict[float | None, Trace] = {}
        self._devices: dict[str, None] = {}  # grip devices that measured, in order

    def phase(self, minute: float | None) -> None:
        """A phase begins: ``None`` (the MVC trials) starts the test afresh."""
        self._active = True
        self._minute = minute
        if minute is None:
            self._traces.clear()

    def add(self, device: str, sample: ForceSample, clock: ForceClock) -> None:
        """A force sample of grip device ``device``: kept while a phase is open."""
        if not self._active:
            return
        trace = self._traces.setdefault(self._minute, ([], []))
        if len(trace[0]) < GRIP_MAX_SAMPLES_PER_PHASE:
            t_s = clock.time_ns(device, sample) / 1e9
            if not trace[0] or t_s > trace[0][-1]:
                trace[0].append(t_s)
                trace[1].append(sample.force_kg)
                self._devices.setdefault(device)

    def end(self) -> GripTraces | None:
        """The finished test's traces (None, logged, without MVC trials or post tests)."""
        traces = self._traces
        devices = self._devices
        self._traces, self._devices = {}, {}
        self._active = False
        pre = traces.pop(None, None)
        post = {m: (t, f) for m, (t, f) in traces.items() if m is not None and t}
        if pre is None or not pre[0] or not post:
            _LOGGER.warning(
                "%s: grip test ended without MVC trials or post tests; ignored", self.athlete
            )
            return None
        return GripTraces(pre, post, next(iter(devices), None))


def grip_result(athlete: str, t_ns: int, test: GripTest, device: str | None) -> Result:
    """The ``grip`` result of a measured test (``device``: the grip device)."""
    worst = max(test.post, key=lambda p: p.drop_pct)
    label = {GripClass.SIGNAL: "grip_signal", GripClass.SPILLOVER: "grip_spillover"}.get(
        test.grip_class, test.grip_class.value
    )
    return GripPayload(
        mvc_kg=test.mvc_kg,
        peak_kg=worst.best_kg,
        drop_pct=test.drop_pct,
        minutes_after=worst.minute,
        threshold_pct=test.real_drop_threshold_pct,
        threshold_basis=test.threshold_basis.value,
        grip_class=label,
        noise_cv_pct=test.noise_cv_pct,
        drops_pct={f"{p.minute:g}": p.drop_pct for p in test.post},
    ).result(athlete, t_ns, device)
