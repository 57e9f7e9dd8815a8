"""The grip-test protocol (:class:`GripPhase` … :class:`GripPhaseEnd` … :class:`GripEnd`):
force traces per phase, kept while a test runs, each phase measured as it ends (best
squeeze, drop from the MVC), and the grip device they came from."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final, cast

from devices.records import ForceSample
from processors.grip import GripClass, GripInputError, GripTest, find_squeezes
from streamer.athlete.force import ForceClock
from streamer.results import GripPayload, JsonValue, Result

_LOGGER = logging.getLogger(__name__)

GRIP_MAX_SAMPLES_PER_PHASE: Final = 80 * 180
"""Three minutes at the Progressor's 80 Hz per test phase."""

GRIP_PROGRESS: Final = "grip_test"
"""The history's name (``save_baseline``) for the athlete's latest grip test step by step:
:meth:`GripProtocol.progress` with its ``state`` (``open``, ``recorded``, ``interrupted``:
recorded from the finished phases, ``incomplete``: too few phases for a test,
``unmeasured``: no squeeze in the MVC trials or a post test)."""

Trace = tuple[list[float], list[float]]
"""Times (s) and forces (kg) of one phase."""


@dataclass(frozen=True, slots=True)
class GripTraces:
    """A finished test's traces: the pre-session MVC trials and the post tests by minute,
    and the device that measured them."""

    pre: Trace
    post: dict[float, Trace]
    device: str | None


@dataclass(frozen=True, slots=True)
class GripStep:
    """One finished phase of a grip test, measured as it ends.

    ``minute`` is None for the pre-session MVC trials, else the minutes after the session.
    ``peaks_kg`` are its squeezes' peaks (kg; empty when none was found) and ``best_kg``
    the best of them. ``drop_pct`` is a post test's drop from the test's MVC (percent of
    MVC; negative: stronger), None for the MVC itself or without a squeeze on either side.
    """

    minute: float | None
    t_ns: int
    peaks_kg: tuple[float, ...]
    best_kg: float | None
    drop_pct: float | None

    def as_dict(self) -> dict[str, JsonValue]:
        """JSON fields (``minute`` null for the MVC)."""
        return {
            "minute": self.minute,
            "t_ns": self.t_ns,
            "peaks_kg": list(self.peaks_kg),
            "best_kg": self.best_kg,
            "drop_pct": self.drop_pct,
        }


_NOT_OPEN: Final = object()
"""No phase is open (the minute of an open phase may be None: the MVC trials)."""


class GripProtocol:
    """One grip test in progress: phase key (None = pre) → trace, and each finished phase
    measured (:attr:`steps`) as it ends."""

    def __init__(self, athlete: str) -> None:
        self.athlete = athlete
        self._open: float | object | None = _NOT_OPEN  # the minute of the open phase
        self._traces: dict[float | None, Trace] = {}  # finished phases, and the open one
        self._devices: dict[str, None] = {}  # grip devices that measured, in order
        self._steps: list[GripStep] = []

    @property
    def in_progress(self) -> bool:
        """True from the MVC trials' start until the test ends."""
        return self._open is not _NOT_OPEN or bool(self._traces)

    @property
    def steps(self) -> tuple[GripStep, ...]:
        """The test's finished phases so far, in order, each measured."""
        return tuple(self._steps)

    def progress(self) -> dict[str, JsonValue]:
        """The test so far as JSON (kept in the athlete's history after every step, so
        that neither Ctrl-C nor a crash loses a finished phase)."""
        return {
            "device": next(iter(self._devices), None),
            "steps": [step.as_dict() for step in self._steps],
        }

    def phase(self, minute: float | None, t_ns: int = 0) -> GripStep | None:
        """A phase begins: ``None`` (the MVC trials) starts the test afresh. A phase still
        open is finished first (and returned, measured)."""
        finished = self.phase_end(t_ns) if self._open is not _NOT_OPEN else None
        if minute is None:
            self._traces.clear()
            self._devices.clear()
            self._steps.clear()
            finished = None
        self._open = minute
        self._traces.pop(minute, None)  # a phase done again replaces the earlier one
        self._steps = [s for s in self._steps if s.minute != minute]
        return finished

    def phase_end(self, t_ns: int) -> GripStep | None:
        """The open phase's squeezes are over: measure it (None when no phase is open)."""
        if self._open is _NOT_OPEN:
            return None
        minute = cast(float | None, self._open)
        self._open = _NOT_OPEN
        step = self._measure(minute, t_ns)
        self._steps.append(step)
        return step

    def add(self, device: str, sample: ForceSample, clock: ForceClock) -> None:
        """A force sample of grip device ``device``: kept while a phase is open."""
        if self._open is _NOT_OPEN:
            return
        trace = self._traces.setdefault(cast(float | None, self._open), ([], []))
        if len(trace[0]) < GRIP_MAX_SAMPLES_PER_PHASE:
            t_s = clock.time_ns(device, sample) / 1e9
            if not trace[0] or t_s > trace[0][-1]:
                trace[0].append(t_s)
                trace[1].append(sample.force_kg)
                self._devices.setdefault(device)

    def end(self) -> GripTraces | None:
        """The finished test's traces, an open phase included (None, logged, without MVC
        trials or post tests)."""
        self.phase_end(0)
        return self._take()

    def interrupt(self) -> GripTraces | None:
        """The stream stops mid-test: the finished phases' traces (a phase still open is
        incomplete and dropped); None, logged, without MVC trials and a post test."""
        if self._open is not _NOT_OPEN:
            self._traces.pop(cast(float | None, self._open), None)
            self._open = _NOT_OPEN
        return self._take()

    def _take(self) -> GripTraces | None:
        traces, self._traces = self._traces, {}
        self._open = _NOT_OPEN
        pre = traces.pop(None, None)
        # A post test measured without a squeeze says nothing of the grip: left out.
        empty = {s.minute for s in self._steps if s.minute is not None and not s.peaks_kg}
        post = {m: (t, f) for m, (t, f) in traces.items() if m is not None and t and m not in empty}
        if pre is None or not pre[0] or not post:
            _LOGGER.warning(
                "%s: grip test ended without MVC trials or post tests; ignored", self.athlete
            )
            return None
        return GripTraces(pre, post, next(iter(self._devices), None))

    def _measure(self, minute: float | None, t_ns: int) -> GripStep:
        t_s, force_kg = self._traces.get(minute, ([], []))
        try:
            peaks = tuple(s.peak_kg for s in find_squeezes(t_s, force_kg))
        except GripInputError as exc:
            _LOGGER.warning("%s: grip phase %s not measured: %s", self.athlete, minute, exc)
            peaks = ()
        best = max(peaks) if peaks else None
        mvc = next((s.best_kg for s in self._steps if s.minute is None), None)
        drop = None
        if minute is not None and best is not None and mvc:
            drop = 100.0 * (mvc - best) / mvc
        return GripStep(minute, t_ns, peaks, best, drop)


GRIP_CLASS_LABELS: Final = {GripClass.SIGNAL: "grip_signal", GripClass.SPILLOVER: "grip_spillover"}
"""The ``class`` a grip result publishes for these classes (their rule ids); the others
publish their own value."""


def grip_result(athlete: str, t_ns: int, test: GripTest, device: str | None) -> Result:
    """The ``grip`` result of a measured test (``device``: the grip device)."""
    worst = max(test.post, key=lambda p: p.drop_pct)
    label = GRIP_CLASS_LABELS.get(test.grip_class, test.grip_class.value)
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
