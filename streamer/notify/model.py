"""What the notifier and its channels share: an alert as read off MQTT, the channel
interface and its delivery error.

Kept apart so :mod:`streamer.notify.notifier` (which calls channels) and
:mod:`streamer.notify.channels` (which formats notices) need not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Protocol

from streamer.errors import StreamerError
from streamer.results import JsonValue

_SEVERITY_LABEL: Final = {"pull_back": "pull back", "warning": "warning", "info": "info"}
SEVERITY_RANK: Final = {"info": 0, "warning": 1, "pull_back": 2}
"""Severities from least to most urgent (``notify --min-severity``)."""


def _int_or_none(value: JsonValue) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _text(value: JsonValue) -> str:
    return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """One alert transition as read from an ``alerts`` message (times in ns since epoch)."""

    athlete: str
    rule: str
    severity: str
    state: str
    message: str
    advice: str
    source: str
    raised_ts_ns: int | None
    cleared_ts_ns: int | None
    evidence: dict[str, JsonValue] = field(default_factory=dict)
    topic: str = ""
    volume_cut_until: str = ""  # pull-back: the end of its week of cut volume (UTC date)
    clear_reason: str = ""  # cleared: resume, not_met, retired ("" when not said)
    clear_message: str = ""  # cleared: the rule's verdict then

    @classmethod
    def from_alert(cls, athlete: str, alert: dict[str, JsonValue], topic: str) -> AlertNotice:
        """Parse one alert object; ``ValueError`` if it has no rule or no valid state.

        Accepts ``raised_ts_ns``/``cleared_ts_ns`` (SCHEMA.md) and the processors'
        record names ``raised_at_ns``/``cleared_at_ns``.
        """
        rule = alert.get("rule")
        state = alert.get("state")
        if not isinstance(rule, str) or not rule:
            raise ValueError(f"alert without a rule id: {alert!r}")
        if state not in ("raised", "cleared"):
            raise ValueError(f"alert {rule} has state {state!r}, expected raised/cleared")
        evidence = alert.get("evidence")
        raised = alert.get("raised_ts_ns", alert.get("raised_at_ns"))
        cleared = alert.get("cleared_ts_ns", alert.get("cleared_at_ns"))
        return cls(
            athlete=athlete,
            rule=rule,
            severity=_text(alert.get("severity")) or "warning",
            state=state,
            message=_text(alert.get("message")),
            advice=_text(alert.get("advice")),
            source=_text(alert.get("source")),
            raised_ts_ns=_int_or_none(raised),
            cleared_ts_ns=_int_or_none(cleared),
            evidence=evidence if isinstance(evidence, dict) else {},
            topic=topic,
            volume_cut_until=_text(alert.get("volume_cut_until")),
            clear_reason=_text(alert.get("clear_reason")),
            clear_message=_text(alert.get("clear_message")),
        )

    @property
    def rank(self) -> int:
        """How urgent (:data:`SEVERITY_RANK`); a severity this version does not know ranks
        as a warning, so it is notified rather than hidden."""
        return SEVERITY_RANK.get(self.severity, SEVERITY_RANK["warning"])

    @property
    def key(self) -> str:
        """What makes this notification unique: athlete, rule, raise time, state."""
        return f"{self.athlete}|{self.rule}|{self.raised_ts_ns}|{self.state}"

    @property
    def title(self) -> str:
        """One line: ``ann: rhr_creep (pull back)``, ``ann: rhr_creep cleared`` or, when
        its signals are back in band, ``ann: rhr_creep cleared: resume``."""
        if self.state == "cleared":
            resume = ": resume" if self.clear_reason == "resume" else ""
            return f"{self.athlete}: {self.rule} cleared{resume}"
        return f"{self.athlete}: {self.rule} ({_SEVERITY_LABEL.get(self.severity, self.severity)})"

    @property
    def body(self) -> str:
        """Plain text: the message (with the end of a pull-back's week of cut volume), then
        the advice (raised); or that it cleared, and why."""
        if self.state == "cleared":
            if self.clear_reason == "resume":
                return f"Resume, slowly: signals back in band. {self.clear_message}".strip()
            return f"Cleared: {self.message}".strip()
        until = f" Pull back until {self.volume_cut_until}." if self.volume_cut_until else ""
        return f"{self.message}{until}\n\n{self.advice}".strip()

    def as_json(self) -> dict[str, JsonValue]:
        """The notice as JSON data (what ``--exec`` commands get on stdin)."""
        return {
            "athlete": self.athlete,
            "rule": self.rule,
            "severity": self.severity,
            "state": self.state,
            "title": self.title,
            "message": self.message,
            "advice": self.advice,
            "source": self.source,
            "evidence": self.evidence,
            "raised_ts_ns": self.raised_ts_ns,
            "cleared_ts_ns": self.cleared_ts_ns,
            "volume_cut_until": self.volume_cut_until or None,
            "clear_reason": self.clear_reason or None,
            "clear_message": self.clear_message or None,
            "topic": self.topic,
        }


class DeliveryError(StreamerError):
    """A notification could not be delivered on one channel (the message says why)."""


class Channel(Protocol):
    """One way of telling a person about an alert."""

    name: str

    async def send(self, notice: AlertNotice) -> None:
        """Deliver ``notice``; raise :class:`DeliveryError` when it did not get through."""
        ...
