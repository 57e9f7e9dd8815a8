"""One athlete's processing: device records and protocol markers in, results out.

* :mod:`.state` — :class:`AthleteState`, the router (the pipeline's ``AthleteProcessor``);
* signals: :mod:`.heart` (beat timeline, live HRV), :mod:`.muscle` (SmO2 efforts, power as
  end of work), :mod:`.force` (the dynamometer clock);
* protocols: :mod:`.events` (the markers), :mod:`.morning`, :mod:`.session`, :mod:`.grip`,
  :mod:`.labs` (lab markers entered by hand);
* :mod:`.rules` (the rule engine over the catalogue), :mod:`.readiness` (alert book,
  status), :mod:`.persistence` (the history protocol handed in), :mod:`.snapshot`
  (what the live view reads).

The names below are loaded on first use (PEP 562): importing :mod:`.events` alone — the
markers, which a thin team gateway forwards — must not load the processors (scipy) that
:mod:`.state` and :mod:`.heart` need (issue 13).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    **dict.fromkeys(
        (
            "PROTOCOL_EVENTS",
            "AthleteRecord",
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
        ),
        "streamer.athlete.events",
    ),
    "DEFAULT_HRV_EVERY_S": "streamer.athlete.heart",
    "AthleteHistory": "streamer.athlete.persistence",
    "alert_payload": "streamer.athlete.readiness",
    "AthleteSnapshot": "streamer.athlete.snapshot",
    "AthleteState": "streamer.athlete.state",
    "live_result": "streamer.results",
}


def __getattr__(name: str) -> Any:
    """``streamer.athlete.<name>``: imported from its module on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'streamer.athlete' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
