"""Rule evaluations → the alert book → alert results and the readiness status.

:class:`Readiness` owns one athlete's :class:`~processors.alerts.AlertBook`: it applies
evaluations, saves the book when it changed (through the history handed in, if any) and
builds the ``status`` summary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from processors.alerts import Alert, AlertBook, AlertState, RuleEvaluation
from streamer.athlete.snapshot import AthleteSnapshot
from streamer.results import JsonValue, Result, StatusPayload, alert_json, alert_result


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

    def apply(self, evaluations: Sequence[RuleEvaluation], t_ns: int) -> list[Result]:
        """Alert results for what changed, then the status; nothing when nothing changed."""
        changes = self.book.update_all(list(evaluations), t_ns)
        if not changes:
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
        return StatusPayload(
            state=state,
            open_alerts=tuple(a.rule_id for a in open_alerts),
            ln_rmssd=None if morning is None else _number(morning.ln_rmssd),
            ln_rmssd_band_low=None if morning is None else _number(morning.ln_rmssd_band_low),
            ln_rmssd_band_high=None if morning is None else _number(morning.ln_rmssd_band_high),
            morning_date=None if morning is None else morning.date,
            devices_active=self._active_devices(t_ns),
        ).result(self.athlete, t_ns)


def alert_payload(alert: Alert) -> dict[str, JsonValue]:
    """An alert as the ``alerts`` payload describes it (SCHEMA.md field names): the one
    serialiser, :func:`streamer.results.alert_json`."""
    return alert_json(alert)


def _number(value: float | None) -> float | None:
    # A stored reading may hold an int (JSON has one number type): the status has floats.
    return None if value is None else float(value)
