"""One athlete's lab markers: each :class:`~streamer.athlete.events.LabEntry` against the
rules of :mod:`processors.labs`, with the history those rules need.

The history is the athlete's earlier entries, refilled from the store on start
(:meth:`LabHistory.remember`): resting dROMs values for the baseline, and resting GSH:GSSG
draws for the post-session comparison. Entries may be back-dated (``redox-streamer log
--date``), so each is judged against the entries taken *before* it, not those entered
before it; and the alert book follows the newest sample of each marker, so a back-dated
entry behind a newer one is judged in its result but neither raises nor clears an alert.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Final

from processors.alerts import RuleEvaluation
from processors.labs import (
    LabMarker,
    LabTiming,
    LabVerdict,
    evaluate_dipstick,
    evaluate_droms,
    evaluate_gsh_gssg,
)
from processors.rules import RuleThresholds
from streamer.athlete.events import LabEntry
from streamer.results import LabPayload, Result

KEPT: Final = 64
"""Resting values kept per marker (the dROMs baseline looks at the last 5 before an entry)."""


def _day(t_ns: int) -> dt.date:
    # UTC days, as the store's are.
    return dt.datetime.fromtimestamp(t_ns / 1e9, tz=dt.UTC).date()


@dataclass(frozen=True, slots=True)
class LabOutcome:
    """A lab entry's result (the ``lab`` envelope) and the evaluations for the alert book."""

    result: Result
    evaluations: list[RuleEvaluation]


class LabHistory:
    """The lab entries the rules look back at, and the evaluation of a new one."""

    def __init__(self, athlete: str, thresholds: RuleThresholds) -> None:
        self.athlete = athlete
        self.thresholds = thresholds
        # (t_ns, value) of resting draws, sorted by t_ns.
        self._resting: dict[LabMarker, list[tuple[int, float]]] = {m: [] for m in LabMarker}
        # The newest judged sample per marker (resting draws, dipsticks): the alert book
        # follows it, so a back-dated entry does not raise or clear what a newer one says.
        self._newest: dict[LabMarker, int] = {}

    def remember(self, payload: LabPayload, t_ns: int) -> None:
        """An entry from the history (the store's ``lab`` rows)."""
        marker = LabMarker(payload.marker)
        timing = None if payload.timing is None else LabTiming(payload.timing)
        value = {
            LabMarker.GSH_GSSG: payload.gsh_gssg_ratio,
            LabMarker.DROMS: payload.droms_carr_u,
        }.get(marker)
        if value is not None and timing is not None and timing.resting:
            self._keep(marker, t_ns, float(value))
        if marker is LabMarker.LIPID_DIPSTICK or (timing is not None and timing.resting):
            self._newest[marker] = max(t_ns, self._newest.get(marker, t_ns))

    def _keep(self, marker: LabMarker, t_ns: int, value: float) -> None:
        series = self._resting[marker]
        bisect.insort(series, (t_ns, value))
        del series[:-KEPT]

    def _before(self, marker: LabMarker, t_ns: int) -> list[tuple[int, float]]:
        series = self._resting[marker]
        return series[: bisect.bisect_left(series, (t_ns, float("-inf")))]

    def entry(self, entry: LabEntry) -> LabOutcome:
        """Judge ``entry`` against the earlier entries, then remember it."""
        th = self.thresholds
        timing = entry.timing
        verdict: LabVerdict
        values: dict[str, float | bool] = {}
        match entry.marker:
            case LabMarker.GSH_GSSG:
                if timing is None:
                    raise ValueError("a GSH:GSSG entry needs its timing")
                earlier = self._before(LabMarker.GSH_GSSG, entry.t_ns)
                day = _day(entry.t_ns)
                same_day = [v for t, v in earlier if _day(t) == day]
                resting = same_day[-1] if same_day else None
                verdict = evaluate_gsh_gssg(entry.value, timing, resting, th)
                values["gsh_gssg_ratio"] = entry.value
            case LabMarker.DROMS:
                if timing is None:
                    raise ValueError("a dROMs entry needs its timing")
                earlier = self._before(LabMarker.DROMS, entry.t_ns)
                verdict = evaluate_droms(entry.value, timing, [v for _, v in earlier], th)
                values["droms_carr_u"] = entry.value
            case LabMarker.LIPID_DIPSTICK:
                verdict = evaluate_dipstick(entry.value > 0)
                values["positive"] = entry.value > 0
        if timing is not None and timing.resting and entry.marker is not LabMarker.LIPID_DIPSTICK:
            self._keep(entry.marker, entry.t_ns, entry.value)
        evaluations = verdict.evaluations
        newest = self._newest.get(entry.marker)
        if newest is not None and entry.t_ns < newest:
            # Back-dated behind a newer sample: judged in its result, but the alerts follow
            # the newest sample.
            when = dt.datetime.fromtimestamp(newest / 1e9, tz=dt.UTC).isoformat(timespec="minutes")
            evaluations = [
                dataclasses.replace(
                    e,
                    active=None,
                    message=f"{e.message} (taken before the newest entry, {when}: the alert "
                    "follows that one)",
                )
                for e in evaluations
            ]
        elif entry.marker is LabMarker.LIPID_DIPSTICK or (timing is not None and timing.resting):
            self._newest[entry.marker] = entry.t_ns
        payload = LabPayload(
            marker=entry.marker.value,
            timing=None if timing is None else timing.value,
            gsh_gssg_ratio=_float(values.get("gsh_gssg_ratio")),
            droms_carr_u=_float(values.get("droms_carr_u")),
            positive=_bool(values.get("positive")),
            band=verdict.band,
            judged=verdict.judged,
            finding=verdict.finding,
            baseline_carr_u=verdict.baseline,
            change_pct=verdict.change_pct,
        )
        return LabOutcome(payload.result(self.athlete, entry.t_ns), evaluations)


def _float(value: float | bool | None) -> float | None:
    return None if value is None or isinstance(value, bool) else float(value)


def _bool(value: float | bool | None) -> bool | None:
    return value if isinstance(value, bool) else None
