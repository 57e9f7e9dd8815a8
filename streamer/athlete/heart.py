"""Heart rate → the beat timeline and the live HRV behind the quality gate.

The beat timeline is built by summing RR (re-anchored to the receipt time after a gap or
when it drifts); each interval goes into a per-strap :class:`~processors.hrv_stream.LiveHrv`
(``after_gap`` set for the first beat after a :class:`~devices.records.GapEvent`). A rolling
HRV result comes every ``hrv_every_s`` seconds of beats, judged by the same quality gate as
a morning reading (a rejected window is published with its verdict and reason, without
numbers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from devices.records import HeartRateSample
from processors import physiology as ph
from processors.hrv_stream import LiveHrv, LiveWindow
from streamer.athlete.snapshot import AthleteSnapshot
from streamer.results import HrvPayload, Result

DEFAULT_HRV_EVERY_S: Final = 5.0
"""Seconds of beats between two rolling-HRV results (the window itself is 60 s)."""
BEAT_CLOCK_TOLERANCE_S: Final = 2.0
"""When the summed-RR beat clock and the receipt clock differ by more, re-anchor."""


class BeatClock:
    """Beat times from summed RR, anchored to receipt times after gaps or drift."""

    __slots__ = ("t_ns",)

    def __init__(self) -> None:
        self.t_ns: int | None = None

    def beats(self, receipt_ns: int, rr_ms: Sequence[float], after_gap: bool) -> list[int]:
        total_ns = round(sum(rr_ms) * 1e6)
        start = None if after_gap else self.t_ns
        if start is None or abs(start + total_ns - receipt_ns) > BEAT_CLOCK_TOLERANCE_S * 1e9:
            start = receipt_ns - total_ns  # the last beat of the packet arrived at receipt
        times = []
        t = start
        for rr in rr_ms:
            t += round(rr * 1e6)
            times.append(t)
        self.t_ns = t
        return times


@dataclass(frozen=True, slots=True)
class Beats:
    """What one heart-rate sample gave: its valid RR (ms), whether they follow a gap, the
    beat times (ns) and the rolling-HRV results due."""

    rr_ms: list[float]
    after_gap: bool
    beat_ts_ns: list[int]
    results: list[Result]


class HeartRate:
    """Per-strap beat clocks and live HRV trackers of one athlete."""

    def __init__(self, athlete: str, snapshot: AthleteSnapshot, hrv_every_s: float) -> None:
        self.athlete = athlete
        self.snapshot = snapshot
        self.hrv_every_s = hrv_every_s
        self._trackers: dict[str, LiveHrv] = {}
        self._clocks: dict[str, BeatClock] = {}
        self._after_gap: set[str] = set()
        self._since_hrv_ms: dict[str, float] = {}

    def gap(self, device: str) -> None:
        """``device`` lost its link: the next beat starts a fresh series."""
        self._after_gap.add(device)
        tracker = self._trackers.get(device)
        if tracker is not None:
            tracker.mark_gap()

    def restart_series(self) -> None:
        """Every strap's next beat starts a fresh series (a morning reading begins)."""
        self._after_gap.update(self._trackers)

    def add(self, device: str, sample: HeartRateSample) -> Beats:
        """One heart-rate notification of ``device``."""
        snap = self.snapshot
        snap.hr_bpm = sample.hr_bpm
        out: list[Result] = []
        rr = [r for r in sample.rr_ms if math.isfinite(r) and r > 0]
        after_gap = device in self._after_gap
        self._after_gap.discard(device)
        beat_ts: list[int] = []
        if rr:
            snap.rr_ms = rr[-1]
            clock = self._clocks.setdefault(device, BeatClock())
            beat_ts = clock.beats(sample.t_ns, rr, after_gap)
            tracker = self._trackers.get(device)
            if tracker is None:
                tracker = self._trackers[device] = LiveHrv()
            for i, value in enumerate(rr):
                tracker.feed(value, after_gap=after_gap and i == 0)
            since = self._since_hrv_ms.get(device, 0.0) + sum(rr)
            # The window (verdict, reason, metrics) is built only when it may be published.
            window = tracker.current() if since >= 1000.0 * self.hrv_every_s else None
            # An accepted window still short of normal beats has nothing to say yet.
            if window is not None and (window.metrics is not None or not window.verdict.accepted):
                since = 0.0
                out.append(self._hrv_result(sample.t_ns, window))
            self._since_hrv_ms[device] = since
        return Beats(rr, after_gap, beat_ts, out)

    def _hrv_result(self, t_ns: int, window: LiveWindow) -> Result:
        w, verdict = window.metrics, window.verdict
        self.snapshot.ln_rmssd = None if w is None else w.ln_rmssd
        self.snapshot.rmssd_ms = None if w is None else w.rmssd_ms
        return HrvPayload(
            accepted=verdict.accepted,
            reject_reason=verdict.reject_reason,
            abnormal_pct=verdict.abnormal_pct,
            rmssd_ms=None if w is None else w.rmssd_ms,
            ln_rmssd=None if w is None else w.ln_rmssd,
            sdnn_ms=None if w is None else w.sdnn_ms,
            mean_nn_ms=None if w is None else w.mean_nn_ms,
            mean_hr_bpm=None if w is None else w.mean_hr_bpm,
            pnn50_pct=None if w is None else w.pnn50_pct,
            n_beats=None if w is None else w.n_beats,
            window_s=ph.HRV_WINDOW_S,
        ).result(self.athlete, t_ns)
