"""One athlete's processing: device records and protocol markers in, results out.

* :mod:`.state` — :class:`AthleteState`, the router (the pipeline's ``AthleteProcessor``);
* signals: :mod:`.heart` (beat timeline, live HRV), :mod:`.muscle` (SmO2 efforts, power as
  end of work), :mod:`.force` (the dynamometer clock);
* protocols: :mod:`.events` (the markers), :mod:`.morning`, :mod:`.session`, :mod:`.grip`,
  :mod:`.labs` (lab markers entered by hand);
* :mod:`.rules` (the rule engine over the catalogue), :mod:`.readiness` (alert book,
  status), :mod:`.persistence` (the history protocol handed in), :mod:`.snapshot`
  (what the live view reads).
"""

from streamer.athlete.events import (
    PROTOCOL_EVENTS,
    AthleteRecord,
    DayValues,
    GripEnd,
    GripPhase,
    GripPhaseEnd,
    MorningEnd,
    MorningStart,
    ProtocolEvent,
    SessionEnd,
    SessionRpe,
    SessionStart,
)
from streamer.athlete.heart import DEFAULT_HRV_EVERY_S
from streamer.athlete.persistence import AthleteHistory
from streamer.athlete.readiness import alert_payload
from streamer.athlete.snapshot import AthleteSnapshot
from streamer.athlete.state import AthleteState
from streamer.results import live_result

__all__ = [
    "DEFAULT_HRV_EVERY_S",
    "PROTOCOL_EVENTS",
    "AthleteHistory",
    "AthleteRecord",
    "AthleteSnapshot",
    "AthleteState",
    "DayValues",
    "GripEnd",
    "GripPhase",
    "GripPhaseEnd",
    "MorningEnd",
    "MorningStart",
    "ProtocolEvent",
    "SessionEnd",
    "SessionRpe",
    "SessionStart",
    "alert_payload",
    "live_result",
]
