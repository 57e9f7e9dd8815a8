"""What an athlete keeps across restarts, as a small protocol handed in from outside.

:class:`AthleteHistory` names the history methods :class:`~streamer.athlete.AthleteState`
uses; :class:`streamer.store.Store` has them. The pipeline records the results themselves
(morning readings, sessions, grip tests); the athlete reads them back on construction and
saves only its alert book and baselines. ``None`` instead of a history keeps everything in
memory.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

from processors.alerts import AlertBook
from streamer.results import GripPayload, JsonValue, LabPayload, MorningPayload, SessionPayload

_LOGGER = logging.getLogger(__name__)

_P_co = TypeVar("_P_co", MorningPayload, SessionPayload, GripPayload, LabPayload, covariant=True)


class HistoryRow(Protocol[_P_co]):
    """One history row as the athlete reads it (:class:`streamer.store.Row` is one)."""

    @property
    def ts_ns(self) -> int:
        """The result's time, ns since the epoch."""
        ...

    @property
    def device(self) -> str | None:
        """The device the result came from, if any."""
        ...

    @property
    def date(self) -> str | None:
        """The row's day (ISO), for morning readings."""
        ...

    @property
    def payload(self) -> _P_co:
        """The stored result, typed."""
        ...


class AthleteHistory(Protocol):
    """The history one athlete reads on start and writes as it goes."""

    def morning_history(self, athlete: str) -> Sequence[HistoryRow[MorningPayload]]:
        """Daily morning readings, by date."""
        ...

    def sessions(self, athlete: str) -> Sequence[HistoryRow[SessionPayload]]:
        """Session summaries, oldest first."""
        ...

    def grip_tests(self, athlete: str) -> Sequence[HistoryRow[GripPayload]]:
        """Grip tests, oldest first."""
        ...

    def lab_entries(self, athlete: str) -> Sequence[HistoryRow[LabPayload]]:
        """Lab markers entered by hand, oldest (sample time) first."""
        ...

    def load_alert_book(self, athlete: str) -> dict[str, JsonValue] | None:
        """The saved alert-book state, or None."""
        ...

    def save_alert_book(self, athlete: str, state: Mapping[str, JsonValue]) -> None:
        """Replace the alert-book state."""
        ...

    def save_baseline(self, athlete: str, name: str, data: Mapping[str, JsonValue]) -> None:
        """Replace one baseline (``ln_rmssd``, ``resting_hr_bpm``)."""
        ...


class AlertBookSource(Protocol):
    """Where a saved alert book is read from (the store, or an :class:`AthleteHistory`)."""

    def load_alert_book(self, athlete: str) -> dict[str, JsonValue] | None:
        """The saved alert-book state, or None."""
        ...


def saved_alert_book(source: AlertBookSource, athlete: str) -> AlertBook | None:
    """The alert book saved for ``athlete`` (what ``run`` keeps: the open alerts); None when
    none was saved or it cannot be read (logged once), so the caller falls back — an empty
    book for a running athlete, the raised-and-not-cleared events for a reader."""
    saved = source.load_alert_book(athlete)
    if saved is None:
        return None
    try:
        return AlertBook.from_dict(saved)
    except ValueError as exc:
        _LOGGER.warning("the saved alert book of %s is unreadable (%s); not used", athlete, exc)
        return None
