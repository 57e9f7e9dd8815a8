"""The protocol markers: they travel through an athlete's inbox with the samples they delimit.

The pipeline never sheds them, so a morning reading, a session or a grip test begins and
ends exactly where the markers stand among the records.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final, TypeGuard, get_args

from devices.records import DeviceRecord, GapEvent
from processors.labs import LabMarker, LabTiming


@dataclass(frozen=True, slots=True)
class MorningStart:
    """The athlete lies down for the morning reading (``t_ns``: ns since the epoch)."""

    t_ns: int


@dataclass(frozen=True, slots=True)
class MorningEnd:
    """The morning reading's recording ends; it is analysed now."""

    t_ns: int


@dataclass(frozen=True, slots=True)
class SessionStart:
    """A training session starts (SmO2 efforts and power are attributed to it); ``tags``
    are the user's labels for it (e.g. its kind: ``intervals``), kept in its summary."""

    t_ns: int
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """A training session ends; ``rpe`` is the athlete's perceived exertion (CR-10), if given."""

    t_ns: int
    rpe: float | None = None


@dataclass(frozen=True, slots=True)
class SessionRpe:
    """The athlete's perceived exertion (CR-10, 0–10) for the open session, or — when none
    is open — for the last finished one, whose summary it amends (RPE is asked ~30 min
    after the session, FOSTER_2001 in :mod:`processors.physiology`)."""

    t_ns: int
    rpe: float


@dataclass(frozen=True, slots=True)
class GripPhase:
    """A grip-test phase begins: ``minute`` None for the pre-session MVC trials, else the
    minutes after the session this post-session test stands for."""

    t_ns: int
    minute: float | None = None


@dataclass(frozen=True, slots=True)
class GripPhaseEnd:
    """The open grip-test phase's squeezes are over: it is complete and measured now, and
    force until the next :class:`GripPhase` is not part of the test (a dynamometer that
    streams all the time, like the Activ5). A phase without it is complete at the next
    phase or at :class:`GripEnd`; one still open when the stream stops is dropped."""

    t_ns: int


@dataclass(frozen=True, slots=True)
class GripEnd:
    """The grip test is complete: measure and classify it."""

    t_ns: int


@dataclass(frozen=True, slots=True)
class DayValues:
    """A day's morning values measured by another app and imported (``source`` names it):
    RMSSD (ms) and resting HR (bpm) pooled into the morning history like a reading's."""

    t_ns: int
    day: dt.date
    rmssd_ms: float
    resting_hr_bpm: float
    source: str


@dataclass(frozen=True, slots=True)
class LabEntry:
    """A lab marker entered by hand (:mod:`processors.labs`): ``t_ns`` when the sample was
    taken, ``value`` the marker's number (GSH:GSSG n of n:1, dROMs in CARR U, the dipstick
    1.0 positive / 0.0 negative), ``timing`` the draw's (None: not given, dipstick only)."""

    t_ns: int
    marker: LabMarker
    value: float
    timing: LabTiming | None = None


ProtocolEvent = (
    MorningStart
    | MorningEnd
    | SessionStart
    | SessionEnd
    | SessionRpe
    | GripPhase
    | GripPhaseEnd
    | GripEnd
    | DayValues
    | LabEntry
)
PROTOCOL_EVENTS: Final = (
    MorningStart,
    MorningEnd,
    SessionStart,
    SessionEnd,
    SessionRpe,
    GripPhase,
    GripPhaseEnd,
    GripEnd,
    DayValues,
    LabEntry,
)

AthleteRecord = DeviceRecord | GapEvent | ProtocolEvent
"""Everything the pipeline carries to an athlete: what a codec decodes, the gaps a driver
reports, and the protocol markers. :meth:`AthleteState.process` matches it exhaustively,
so mypy flags a record type added here and handled nowhere."""

_ATHLETE_RECORD_TYPES: Final = (*get_args(DeviceRecord), GapEvent, *PROTOCOL_EVENTS)


def is_athlete_record(record: object) -> TypeGuard[AthleteRecord]:
    """Whether ``record`` is one of :data:`AthleteRecord`."""
    return isinstance(record, _ATHLETE_RECORD_TYPES)
