"""Lab markers as commands: ``<base>/<athlete>/set/<marker>`` payloads ↔ :class:`LabEntry`.

=======================================  ================================================
topic                                    payload
=======================================  ================================================
``<base>/<athlete>/set/gsh_gssg``        ``180 fasted`` | ``180:1 pre-training`` | JSON
                                         ``{"value": 180, "timing": "post-45min",
                                         "time": "2026-12-01T07:10:00Z"}``
``<base>/<athlete>/set/droms``           ``310 fasted`` | JSON ``{"value": 310, "timing":
                                         "pre-training"}`` (CARR U)
``<base>/<athlete>/set/lipid_dipstick``  ``positive`` | ``negative`` | JSON ``{"value":
                                         "positive", "timing": "fasted"}``
=======================================  ================================================

The timing (``fasted``, ``pre-training``, ``post-45min``) is required for GSH:GSSG and
dROMs: the bands are for resting draws (:mod:`processors.labs`). ``time`` (ISO-8601 with a
zone, when the sample was taken) defaults to when the command arrives. ``redox-streamer
log`` publishes these (:meth:`LabCommand.payload`); so do Home Assistant's lab numbers and
select (:mod:`streamer.sinks.ha_discovery`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Final

from processors.labs import (
    LabInputError,
    LabMarker,
    LabTiming,
    check_droms,
    check_gsh_gssg,
    parse_dipstick,
    parse_gsh_gssg,
    parse_timing,
)
from streamer.athlete.events import LabEntry

LAB_TOPICS: Final = {m.value: m for m in LabMarker}
"""Command topic name (``set/<name>``) → marker."""
MAX_FUTURE_NS: Final = 5 * 60 * 10**9
"""A sample time may run ahead of the receiving clock by this much (clocks differ)."""


@dataclass(frozen=True, slots=True)
class LabCommand:
    """One lab entry as a command: the marker, its value (n of n:1, CARR U, or 1.0/0.0 for
    a positive/negative dipstick), the draw's timing and when the sample was taken (ns since
    the epoch; None: when the command arrives)."""

    marker: LabMarker
    value: float
    timing: LabTiming | None = None
    t_ns: int | None = None

    def __post_init__(self) -> None:
        if self.marker is LabMarker.GSH_GSSG:
            check_gsh_gssg(self.value)
        elif self.marker is LabMarker.DROMS:
            check_droms(self.value)
        if self.timing is None and self.marker is not LabMarker.LIPID_DIPSTICK:
            name = "GSH:GSSG" if self.marker is LabMarker.GSH_GSSG else "dROMs"
            raise LabInputError(
                f"a {name} value needs its timing: fasted, pre-training or post-45min (one "
                "hard session drops GSH:GSSG ~40% within 15 min, so the bands are for resting "
                "draws)"
            )

    def payload(self) -> bytes:
        """The command as published: JSON with the value, timing and time when given."""
        data: dict[str, object] = {
            "value": ("positive" if self.value > 0 else "negative")
            if self.marker is LabMarker.LIPID_DIPSTICK
            else self.value
        }
        if self.timing is not None:
            data["timing"] = self.timing.value
        if self.t_ns is not None:
            when = dt.datetime.fromtimestamp(self.t_ns / 1e9, tz=dt.UTC)
            data["time"] = when.isoformat(timespec="seconds").replace("+00:00", "Z")
        return json.dumps(data, separators=(",", ":")).encode()

    def entry(self, now_ns: int) -> LabEntry:
        """The marker at the sample's time (``now_ns`` when none was given)."""
        t_ns = now_ns if self.t_ns is None else self.t_ns
        if t_ns > now_ns + MAX_FUTURE_NS:
            raise LabInputError(
                f"{self.marker.value} sample time {_iso(t_ns)} is in the future: give when "
                "the sample was taken"
            )
        return LabEntry(t_ns, self.marker, self.value, self.timing)


def _iso(t_ns: int) -> str:
    return dt.datetime.fromtimestamp(t_ns / 1e9, tz=dt.UTC).isoformat(timespec="seconds")


def _value(marker: LabMarker, raw: object) -> float:
    if marker is LabMarker.LIPID_DIPSTICK:
        if isinstance(raw, bool):
            return 1.0 if raw else 0.0
        return 1.0 if parse_dipstick(str(raw)) else 0.0
    if isinstance(raw, str):
        if marker is LabMarker.GSH_GSSG:
            return parse_gsh_gssg(raw)
        try:
            return check_droms(float(raw))
        except ValueError:
            raise LabInputError(f"dROMs {raw!r} is not a number: give CARR U, e.g. 300") from None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise LabInputError(f"{marker.value} value {raw!r} is not a number")
    return float(raw)


def parse_time(text: object) -> int:
    """An ISO-8601 time with a zone (``2026-12-01T07:10:00Z``) as ns since the epoch."""
    if not isinstance(text, str):
        raise LabInputError(f"time {text!r}: give ISO-8601 with a zone, e.g. 2026-12-01T07:10Z")
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise LabInputError(
            f"time {text!r}: give ISO-8601 with a zone, e.g. 2026-12-01T07:10:00Z"
        ) from None
    if when.tzinfo is None:
        raise LabInputError(f"time {text!r} has no zone: add Z (UTC) or +01:00")
    return round(when.timestamp() * 1e9)


def parse_lab(marker: LabMarker, payload: bytes) -> LabCommand:
    """A ``set/<marker>`` payload: ``VALUE [TIMING]`` or JSON ``{"value", "timing", "time"}``;
    :class:`LabInputError` (a ``ValueError``) says what is wrong."""
    text = payload.decode("utf-8", "replace").strip()
    timing: LabTiming | None = None
    t_ns: int | None = None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise LabInputError(
                f"{marker.value} command {text[:40]!r}: send 'VALUE TIMING' or JSON "
                '{"value": ..., "timing": "fasted"}'
            ) from None
        if not isinstance(data, dict) or "value" not in data:
            raise LabInputError(f'{marker.value} command {text[:40]!r}: its JSON needs "value"')
        raw: object = data["value"]
        if data.get("timing") is not None:
            timing = parse_timing(str(data["timing"]))
        if data.get("time") is not None:
            t_ns = parse_time(data["time"])
    else:
        words = text.split()
        if not words or len(words) > 2:
            raise LabInputError(
                f"{marker.value} command {text[:40]!r}: send 'VALUE TIMING', e.g. '180 fasted'"
            )
        raw = words[0]
        if len(words) == 2:
            timing = parse_timing(words[1])
    return LabCommand(marker, _value(marker, raw), timing, t_ns)
