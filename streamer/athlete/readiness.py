"""Rule evaluations → the alert book → alert results and the readiness status.

:class:`Readiness` owns one athlete's :class:`~processors.alerts.AlertBook`: it applies
evaluations, saves the book when it changed (through the history handed in, if any) and
builds the ``status`` summary — with the pull-back/resume state and the last lab entry per
marker, so the retained status topic alone tells Home Assistant what to show after a
restart. The status is published on every alert change, on a lab entry that is a marker's
newest, and when the pull-back/resume state changes without an alert changing (the
"resume" window ending, checked on each evaluation such as a new day's reading).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from processors import physiology as ph
from processors.alerts import (
    BACK_OFF_UNTIL_KEY,
    Alert,
    AlertBook,
    AlertState,
    RuleEvaluation,
    Severity,
)
from streamer.athlete.snapshot import AthleteSnapshot
from streamer.results import (
    JsonValue,
    LabLatest,
    LabPayload,
    Result,
    StatusPayload,
    alert_json,
    alert_result,
)

DAY_NS = 86_400 * 1_000_000_000

PullBackView = tuple[str | None, str | None, str | None, str | None]
"""(pull_back_since, volume_cut_until, back_off_until, resume_since) of the status."""


class Readiness:
    """The alert book of one athlete and its status.

    Args:
        athlete: the athlete id.
        snapshot: updated with the open alerts and the alerts raised.
        active_devices: the devices active at a time (ns), for the status.
        save: called with the book's state after every change (None: not saved).
    """

    def __init__(
        self,
        athlete: str,
        snapshot: AthleteSnapshot,
        active_devices: Callable[[int], tuple[str, ...]],
        save: Callable[[dict[str, JsonValue]], None] | None = None,
    ) -> None:
        self.athlete = athlete
        self.snapshot = snapshot
        self.book = AlertBook(athlete)
        self._active_devices = active_devices
        self._save = save
        self.labs: dict[str, LabLatest] = {}  # the newest entry per marker (sample time)
        self._shown: PullBackView = (None, None, None, None)
        self._shown_at_ns = 0  # the time of the status that showed it

    def restored(self) -> None:
        """After the book was restored: the pull-back view the last published status
        showed, as of the book's latest event (so a "resume" window that ended while the
        streamer was down is re-published on the next evaluation)."""
        times = [a.raised_at_ns for a in self.book.open_alerts()]
        times += [a.cleared_at_ns or 0 for a in self.book.resumed_alerts()]
        self._shown_at_ns = max(times, default=0)
        self._shown = self.pull_back_view(self._shown_at_ns)

    def note_lab(self, lab: LabPayload, t_ns: int) -> bool:
        """Keep ``lab`` (taken at ``t_ns``) when it is its marker's newest; True then."""
        current = self.labs.get(lab.marker)
        if current is not None and current.ts_ns > t_ns:
            return False  # back-dated behind a newer sample: the status keeps the newer
        self.labs[lab.marker] = LabLatest.of(lab, t_ns)
        return True

    def apply(self, evaluations: Sequence[RuleEvaluation], t_ns: int) -> list[Result]:
        """Alert results for what changed, then the status; only the status when the
        pull-back/resume state changed by itself (the resume window ended); else nothing."""
        changes = self.book.update_all(list(evaluations), t_ns)
        if not changes:
            # Only forward in time: an imported older day must not put back an older view.
            if t_ns > self._shown_at_ns and self.pull_back_view(t_ns) != self._shown:
                return [self.status_result(t_ns)]
            return []
        if self._save is not None:
            self._save(self.book.to_dict())
        open_alerts = self.book.open_alerts()
        self.snapshot.open_alerts = tuple(a.rule_id for a in open_alerts)
        out: list[Result] = []
        for alert in changes:
            if alert.state is AlertState.RAISED:
                self.snapshot.alerts_raised += 1
            out.append(alert_result(self.athlete, alert, open_alerts, ts_ns=t_ns))
        out.append(self.status_result(t_ns))
        return out

    def status_result(self, t_ns: int) -> Result:
        """The readiness summary (``<base>/<athlete>/status``) as of ``t_ns``."""
        open_alerts = self.book.open_alerts()
        severities = {a.severity.value for a in open_alerts}
        state = (
            "pull_back"
            if "pull_back" in severities
            else "caution"
            if "warning" in severities
            else "ok"
        )
        morning = self.snapshot.last_morning
        view = self.pull_back_view(t_ns)
        self._shown, self._shown_at_ns = view, max(self._shown_at_ns, t_ns)
        pull_back_since, volume_cut_until, back_off_until, resume_since = view
        return StatusPayload(
            state=state,
            open_alerts=tuple(a.rule_id for a in open_alerts),
            ln_rmssd=None if morning is None else _number(morning.ln_rmssd),
            ln_rmssd_band_low=None if morning is None else _number(morning.ln_rmssd_band_low),
            ln_rmssd_band_high=None if morning is None else _number(morning.ln_rmssd_band_high),
            morning_date=None if morning is None else morning.date,
            devices_active=self._active_devices(t_ns),
            pull_back_since=pull_back_since,
            volume_cut_until=volume_cut_until,
            back_off_until=back_off_until,
            resume_since=resume_since,
            labs=dict(sorted(self.labs.items())),
        ).result(self.athlete, t_ns)

    def pull_back_view(self, t_ns: int) -> PullBackView:
        """Where the athlete stands on pulling back as of ``t_ns``, as ``redox-streamer
        status`` says it: while pull-back alerts are open, the day the first was raised,
        the latest end of their weeks of cut volume and ``hr_grip_flat``'s own back-off end;
        else, for ``RESUME_SHOWN_DAYS`` after a pull-back alert cleared with ``resume``, the
        day its signals are back in band since."""
        pulling = [a for a in self.book.open_alerts() if a.severity is Severity.PULL_BACK]
        if pulling:
            cuts = [c.isoformat() for a in pulling if (c := a.volume_cut_until()) is not None]
            back_offs = [
                a.evidence[BACK_OFF_UNTIL_KEY] for a in pulling if BACK_OFF_UNTIL_KEY in a.evidence
            ]
            return (
                _day(min(a.raised_at_ns for a in pulling)),
                max(cuts) if cuts else None,
                _time_s(max(back_offs)) if back_offs else None,
                None,
            )
        shown_from = t_ns - ph.RESUME_SHOWN_DAYS * DAY_NS
        resumed = [
            a
            for a in self.book.resumed_alerts()
            if a.cleared_at_ns is not None and shown_from <= a.cleared_at_ns <= t_ns
        ]
        if not resumed:
            return (None, None, None, None)
        since = max(
            a.resume_since_ns if a.resume_since_ns is not None else a.cleared_at_ns or 0
            for a in resumed
        )
        return (None, None, None, _day(since))


def alert_payload(alert: Alert) -> dict[str, JsonValue]:
    """An alert as the ``alerts`` payload describes it (SCHEMA.md field names): the one
    serialiser, :func:`streamer.results.alert_json`."""
    return alert_json(alert)


def _day(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC).date().isoformat()


def _time_s(ts_s: float) -> str:
    return dt.datetime.fromtimestamp(ts_s, tz=dt.UTC).isoformat(timespec="minutes")


def _number(value: float | None) -> float | None:
    # A stored reading may hold an int (JSON has one number type): the status has floats.
    return None if value is None else float(value)
