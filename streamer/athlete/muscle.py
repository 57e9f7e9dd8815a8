"""SmO2 and power → efforts: a per-sensor :class:`~processors.oxygenation.EffortDetector`,
one ``oxygenation`` result per effort; power marks the end of work for every sensor."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from devices.records import PowerSample, SmO2Sample
from processors.oxygenation import EffortDetector, EffortRecovery
from streamer.athlete.snapshot import AthleteSnapshot
from streamer.results import EffortPayload, Result

_LOGGER = logging.getLogger(__name__)


class MuscleOxygen:
    """The SmO2 sensors of one athlete, each with its effort detector."""

    def __init__(self, athlete: str, snapshot: AthleteSnapshot) -> None:
        self.athlete = athlete
        self.snapshot = snapshot
        self._detectors: dict[str, EffortDetector] = {}

    @property
    def first_sensor(self) -> str | None:
        """The first SmO2 sensor seen (the device of a session summary)."""
        return next(iter(self._detectors), None)

    def add(self, device: str, sample: SmO2Sample) -> list[EffortRecovery]:
        """One SmO2 sample; returns the efforts it completed."""
        self.snapshot.smo2_pct = sample.smo2_pct
        detector = self._detectors.get(device)
        if detector is None:
            detector = self._detectors[device] = EffortDetector()
        try:
            return detector.add(sample.t_ns / 1e9, sample.smo2_pct)
        except ValueError as exc:  # out-of-order or impossible sample: skip it, say why
            _LOGGER.warning("%s/%s: SmO2 sample skipped: %s", self.athlete, device, exc)
            return []

    def power(self, sample: PowerSample) -> None:
        """Power marks the end of work for every sensor's efforts: recovery is timed from
        it (issue 9), not from the deepest dip."""
        self.snapshot.power_w = sample.power_w
        for detector in self._detectors.values():
            detector.add_activity(sample.t_ns / 1e9, sample.power_w)

    def flush(self) -> Iterator[tuple[str, EffortRecovery]]:
        """Efforts still open are decided now (unrecovered), with their sensor."""
        for device, detector in self._detectors.items():
            for effort in detector.flush():
                yield device, effort


def effort_result(athlete: str, device: str, e: EffortRecovery) -> Result:
    """The ``oxygenation`` result of one effort."""
    return EffortPayload(
        work_end_source=e.work_end_source,
        baseline_pct=e.baseline_pct,
        min_pct=e.min_pct,
        t_half_s=e.t_half_s,
        t95_s=e.t95_s,
        tau_s=e.tau_s,
        delay_s=e.delay_s,
        reox_rate_pct_s=e.reoxygenation_rate_pct_s,
        overshoot_pct=e.overshoot_pct,
        recovered=e.recovered,
        observed_s=e.observed_s,
    ).result(athlete, round(e.work_end_s * 1e9), device)
