"""MQTT topic names (SCHEMA.md): one builder, sanitised segments.

==========================================  ===  ========  =====================================
topic                                       QoS  retained  payload
==========================================  ===  ========  =====================================
``<base>/bridge/state``                     1    yes       ``online`` / ``offline`` (LWT)
``<base>/<athlete>/<device>/live``          0    no        heart_rate, smo2, force, power, spo2
``<base>/<athlete>/hrv``                    1    no        rolling HRV window
``<base>/<athlete>/morning``                1    yes       daily reading + baseline band
``<base>/<athlete>/oxygenation``            1    no        per effort / per session recovery
``<base>/<athlete>/grip``                   1    no        grip test and its class
``<base>/<athlete>/alerts``                 1    yes       open alerts + the event that changed them
``<base>/<athlete>/status``                 1    yes       readiness summary
``<base>/<athlete>/lab``                    1    no        a lab marker entered by hand
``<base>/<athlete>/<device>/state``         1    yes       device connection, battery, last seen
``<prefix>/<component>/<node>/<obj>/config``  1  yes       Home Assistant discovery
==========================================  ===  ========  =====================================

Athlete and device segments come from user-given names, so :func:`segment` replaces what
would change a topic's meaning: the wildcards ``+`` and ``#``, the level separator ``/``,
control characters, surrogates and unassigned code points. Distinct names can therefore
map to one segment (``a/b`` and ``a_b``); the config validator keeps athlete and device
ids to ``[A-Za-z0-9_-]`` so that this never happens for configured ids.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Final

from streamer.results import Kind, Result

DEFAULT_BASE: Final = "redox"
DEFAULT_HA_PREFIX: Final = "homeassistant"
#: Longest segment in characters; longer names are cut (topics have a 64 KiB limit, and
#: readable trees want short levels).
MAX_SEGMENT_CHARS: Final = 64
_REPLACEMENT: Final = "_"
_FORBIDDEN: Final = frozenset("+#/")
# Control, surrogate and unassigned code points; U+0000 is a control char (Cc).
_BAD_CATEGORIES: Final = frozenset({"Cc", "Cs", "Cn"})

#: The athlete-level topic suffix of each non-live kind.
_SUFFIX: Final = {
    Kind.HRV: "hrv",
    Kind.MORNING: "morning",
    Kind.OXYGENATION: "oxygenation",
    Kind.GRIP: "grip",
    Kind.ALERTS: "alerts",
    Kind.STATUS: "status",
    Kind.LAB: "lab",
}


RESERVED_LEVELS: Final = frozenset({"bridge", "gateway", "worker", "partition"})
"""First topic levels under the base that name services, not athletes
(``<base>/bridge/state``, ``<base>/gateway/<id>/state``, ``<base>/worker/<id>/state``,
``<base>/partition/<p>/state``): an athlete with one of these ids would share their topics."""


@functools.lru_cache(maxsize=4096)  # a few per athlete and device; every live sample asks
def segment(name: str) -> str:
    """``name`` as one safe topic level: never empty, no ``+ # /``, no control characters.

    Leading/trailing whitespace is stripped and a leading ``$`` (reserved for broker
    topics such as ``$SYS``) is replaced.
    """
    chars = [
        _REPLACEMENT if c in _FORBIDDEN or unicodedata.category(c) in _BAD_CATEGORIES else c
        for c in name.strip()
    ]
    text = "".join(chars)[:MAX_SEGMENT_CHARS]
    if text.startswith("$"):
        text = _REPLACEMENT + text[1:]
    return text or _REPLACEMENT


def base_topic(base: str) -> str:
    """A validated base topic: one or more safe levels joined by ``/`` (``home/redox``)."""
    levels = [lv for lv in base.strip().strip("/").split("/") if lv.strip()]
    if not levels:
        raise ValueError(f"base topic {base!r} is empty: use e.g. 'redox'")
    return "/".join(segment(lv) for lv in levels)


_SLUG_BAD: Final = re.compile(r"[^a-z0-9_]+")


def slug(name: str) -> str:
    """``name`` as a Home Assistant object id: lower-case ``[a-z0-9_]``, never empty."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    text = _SLUG_BAD.sub("_", text).strip("_")
    return text[:MAX_SEGMENT_CHARS] or "x"


class Topics:
    """Topic names under one base topic (``redox`` unless configured)."""

    def __init__(self, base: str = DEFAULT_BASE, ha_prefix: str = DEFAULT_HA_PREFIX) -> None:
        self.base = base_topic(base)
        self.ha_prefix = base_topic(ha_prefix)

    @property
    def bridge_state(self) -> str:
        """``<base>/bridge/state``: ``online``/``offline``, retained, the Last Will."""
        return f"{self.base}/bridge/state"

    @property
    def bridge_commands(self) -> str:
        """``<base>/bridge/commands``: ``online`` while a ``run`` listens for commands,
        retained; a publisher that does not listen clears it when it connects."""
        return f"{self.base}/bridge/commands"

    def live(self, athlete: str, device: str) -> str:
        """``<base>/<athlete>/<device>/live``: QoS 0 samples."""
        return f"{self.base}/{segment(athlete)}/{segment(device)}/live"

    def athlete(self, athlete: str, kind: Kind) -> str:
        """``<base>/<athlete>/<hrv|morning|oxygenation|grip|alerts|status|lab>``."""
        if kind.is_live:
            raise ValueError(f"{kind.value} is a live kind: use Topics.live(athlete, device)")
        if kind is Kind.DEVICE:
            raise ValueError("device state is per device: use Topics.device_state(athlete, device)")
        return f"{self.base}/{segment(athlete)}/{_SUFFIX[kind]}"

    def for_result(self, result: Result) -> str:
        """The topic a result is published on."""
        if result.kind.is_live:
            assert result.device is not None  # Result enforces it for live kinds
            return self.live(result.athlete, result.device)
        if result.kind is Kind.DEVICE:
            assert result.device is not None  # Result enforces it for device state
            return self.device_state(result.athlete, result.device)
        return self.athlete(result.athlete, result.kind)

    def device_state(self, athlete: str, device: str) -> str:
        """``<base>/<athlete>/<device>/state``: the device's connection, retained."""
        return f"{self.base}/{segment(athlete)}/{segment(device)}/state"

    @property
    def device_states(self) -> str:
        """``<base>/+/+/state``: every device state (a subscription filter)."""
        return f"{self.base}/+/+/state"

    @property
    def ha_status(self) -> str:
        """``homeassistant/status``: Home Assistant says ``online`` when it (re)starts."""
        return f"{self.ha_prefix}/status"

    def ha_config(self, component: str, node_id: str, object_id: str) -> str:
        """``<prefix>/<component>/<node_id>/<object_id>/config`` (discovery config)."""
        return f"{self.ha_prefix}/{slug(component)}/{slug(node_id)}/{slug(object_id)}/config"
