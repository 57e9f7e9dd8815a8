"""The emulated protocol of ``gateway --emulated``: athletes training on the world's clock.

With emulated devices there is nobody to press "session start": each configured athlete
trains in a loop — :class:`SessionStart` (tagged ``emulated``), ``SESSION_S`` of the
emulated strap's and Moxy's data, :class:`SessionEnd` with an RPE, a rest — stamped on the
world's one emulated clock like the devices' notifications, so the markers stand among the
records where a real athlete's button press would. Workers then see sessions to analyse
without an MQTT broker in the loop (the MQTT command topics still work beside it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

from streamer.athlete.events import SessionEnd, SessionStart

if TYPE_CHECKING:
    from devices.emulated.clock import EmulatedClock

SESSION_S: Final = 30 * 60.0
"""An emulated session's length (emulated s): a short interval workout."""
REST_S: Final = 15 * 60.0
"""Between two emulated sessions (emulated s)."""
SESSION_RPE: Final = 6.0
"""The RPE (CR-10) each emulated session ends with: hard, not maximal."""
TAG: Final = "emulated"


async def emulated_sessions(
    offer: Callable[[str, object], None],
    athletes: Iterable[str],
    clock: EmulatedClock,
    *,
    session_s: float = SESSION_S,
    rest_s: float = REST_S,
) -> None:
    """Offer each athlete's session markers on ``clock`` until cancelled."""
    t_s = clock.now()
    while True:
        ids = list(athletes)  # each session's own: a live view may change between them
        start_ns = clock.now_ns()
        for athlete in ids:
            offer(athlete, SessionStart(start_ns, (TAG,)))
        t_s += session_s
        await clock.sleep_until(t_s)
        end_ns = clock.now_ns()
        for athlete in ids:
            offer(athlete, SessionEnd(end_ns, SESSION_RPE))
        t_s += rest_s
        await clock.sleep_until(t_s)
