"""Context entered while ``run`` streams: MQTT command topics → protocol markers.

A running ``run`` subscribes to ``<base>/+/set/+`` on its publisher's connection (a
:class:`streamer.sinks.mqtt.Listener` of :meth:`~streamer.sinks.mqtt.MqttPublisher.listen`:
one MQTT connection per ``run``, with the publisher's reconnection and back-off) and turns
each command into the markers the pipeline already carries
(:mod:`streamer.athlete.events`), stamped with the clock the devices' records are stamped
with, so a session starts and ends exactly where the command falls among the samples:

====================================  ======================================================
topic                                 payload
====================================  ======================================================
``<base>/<athlete>/set/session``      ``start`` | ``end`` | JSON ``{"action": "start"|"end",
                                      "rpe": 0–10, "tags": ["intervals", …]}``
``<base>/<athlete>/set/rpe``          a number 0–10 (CR-10), or JSON ``{"rpe": 7}``
``<base>/<athlete>/set/morning``      ``start`` | ``end``: the morning reading, lying still
                                      with the strap on (what ``redox-streamer morning``
                                      guides, here while ``run`` holds the strap)
``<base>/<athlete>/set/grip``         ``pre`` | ``post MINUTES`` | ``end`` (or JSON
                                      ``{"phase": "post", "minute": 15}``): the grip
                                      test's phases on the dynamometer ``run`` holds
``<base>/<athlete>/set/gsh_gssg``,   a lab marker entered by hand: ``VALUE TIMING`` or JSON
``…/set/droms``,                      ``{"value": …, "timing": "fasted", "time": ISO}``
``…/set/lipid_dipstick``              (:mod:`streamer.app.lab_commands`)
``<base>/bridge/commands``            ``online`` / ``offline`` (retained): whether a ``run``
                                      listens for commands; it listens while this says
                                      ``online`` AND ``<base>/bridge/state`` does (the
                                      connection's Last Will says ``offline`` there; a
                                      publisher that does not listen clears this when
                                      it connects)
====================================  ======================================================

``start`` → :class:`SessionStart` (tags kept in the summary; an RPE given with it is the
open session's); ``end`` → :class:`SessionEnd` (with its RPE); ``rpe`` →
:class:`SessionRpe`, for the open session or else the last finished one; ``morning``
``start`` / ``end`` → :class:`MorningStart` / :class:`MorningEnd`; ``grip`` ``pre`` /
``post M`` / ``end`` → :class:`GripPhase` (None / M) / :class:`GripEnd`; a lab marker →
:class:`LabEntry` at the sample's time. A bad payload, an
unknown athlete or a retained command (it would replay at every restart) is logged once per
topic and problem and dropped: a command never stops ``run``. ``redox-streamer session``,
``rpe`` and ``log`` publish these (:mod:`streamer.commands.session`); Home Assistant's
buttons and number (:mod:`streamer.sinks.ha_discovery`) too.

Nothing lost, nothing late, nothing twice: ``run``'s session is persistent
(:data:`streamer.sinks.mqtt.LISTENER_SESSION_EXPIRY_S`), so the broker queues a command sent
while ``run`` reconnects and delivers it when ``run`` is back, and resends one whose PUBACK
it never got. The CLI wraps each command in an envelope (:func:`envelope`): ``{"id": …,
"sent": unix s, "command": "<the payload above>"}``. ``run`` applies an id once (a resent
command is dropped as a repeat) and drops a command sent more than :data:`COMMAND_TTL_S`
ago, so a command queued while ``run`` was away for long never acts late; the CLI also sets
that as the MQTT 5 message expiry interval, so a broker drops it from the queue itself. A
bare payload (Home Assistant's) has neither id nor time: it is applied as it comes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal

from processors.labs import LabInputError
from streamer.app.lab_commands import LAB_TOPICS, parse_lab
from streamer.athlete.events import (
    GripEnd,
    GripPhase,
    MorningEnd,
    MorningStart,
    ProtocolEvent,
    SessionEnd,
    SessionRpe,
    SessionStart,
)
from streamer.config import MqttConfig
from streamer.topics import Topics, segment

_LOGGER: Final = logging.getLogger(__name__)

SESSION: Final = "session"
"""``<base>/<athlete>/set/session``."""
RPE: Final = "rpe"
"""``<base>/<athlete>/set/rpe``."""
MORNING: Final = "morning"
"""``<base>/<athlete>/set/morning``."""
GRIP: Final = "grip"
"""``<base>/<athlete>/set/grip``."""
GRIP_MAX_MINUTE: Final = 24 * 60.0
"""A post-session grip test stands for at most a day after the session (minutes)."""
COMMANDS_ONLINE: Final = b"online"
COMMANDS_OFFLINE: Final = b"offline"
COMMAND_DEVICE: Final = "command"
"""The device name markers from commands are offered under."""
RPE_MAX: Final = 10.0
"""CR-10: 0 (rest) … 10 (maximal)."""
_TAG: Final = re.compile(r"[A-Za-z0-9_.-]{1,32}")
MAX_TAGS: Final = 8

COMMAND_TTL_S: Final = 120
"""A command older than this (s since the CLI sent it) is dropped, not applied: the
athlete's context (a session start, an RPE) means something only near when it was given.
Long enough for ``run``'s reconnection back-off and a broker restart; also the MQTT 5
message expiry interval the CLI publishes with."""
SEEN_IDS_KEPT: Final = 4096
"""Command ids remembered to drop a repeat (a few per athlete a day: hours of commands)."""
SEEN_IDS_S: Final = 3600.0
"""How long a command id is remembered (s): longer than any resend of a live session."""

SessionAction = Literal["start", "end"]


class CommandError(ValueError):
    """A command payload that means nothing; the message names the input and the fix."""


@dataclass(frozen=True, slots=True)
class SessionCommand:
    """``start`` or ``end`` of a session, with an optional RPE (CR-10) and tags."""

    action: SessionAction
    rpe: float | None = None
    tags: tuple[str, ...] = ()

    def payload(self) -> bytes:
        """The command as published: the bare action, or JSON when it carries more."""
        if self.rpe is None and not self.tags:
            return self.action.encode()
        data: dict[str, object] = {"action": self.action}
        if self.rpe is not None:
            data["rpe"] = self.rpe
        if self.tags:
            data["tags"] = list(self.tags)
        return json.dumps(data, separators=(",", ":")).encode()

    def markers(self, t_ns: int) -> list[ProtocolEvent]:
        """The protocol markers of this command at ``t_ns``."""
        if self.action == "start":
            start: list[ProtocolEvent] = [SessionStart(t_ns, self.tags)]
            return start + ([SessionRpe(t_ns, self.rpe)] if self.rpe is not None else [])
        return [SessionEnd(t_ns, self.rpe)]


def command_topic(topics: Topics, athlete: str, command: str) -> str:
    """``<base>/<athlete>/set/<command>``."""
    return f"{topics.base}/{segment(athlete)}/set/{command}"


def commands_state_topic(topics: Topics) -> str:
    """``<base>/bridge/commands``: ``online`` while a ``run`` listens (retained)."""
    return topics.bridge_commands


def envelope(
    payload: bytes, *, sent_s: float | None = None, command_id: str | None = None
) -> bytes:
    """``payload`` as the CLI publishes it: JSON ``{"id", "sent", "command"}`` — a random id
    (a resent copy is applied once) and the wall time it was sent (s since the epoch: one
    older than :data:`COMMAND_TTL_S` is not applied)."""
    data = {
        "id": command_id or secrets.token_hex(8),
        "sent": round(time.time() if sent_s is None else sent_s, 3),
        "command": payload.decode(),
    }
    return json.dumps(data, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Envelope:
    """A command as received: its payload, and the CLI's id and send time when it had them."""

    payload: bytes
    id: str | None = None
    sent_s: float | None = None


def unwrap(payload: bytes) -> Envelope:
    """The command inside an :func:`envelope`, or a bare payload as it is."""
    if not payload.lstrip().startswith(b"{"):
        return Envelope(payload)
    try:
        data = json.loads(payload)
    except ValueError:
        return Envelope(payload)  # the command's own parser names the problem
    if not (isinstance(data, dict) and "command" in data and "id" in data):
        return Envelope(payload)  # a command's own JSON ({"action": …}, {"rpe": …})
    command, command_id, sent = data["command"], data["id"], data.get("sent")
    if not (isinstance(command, str) and isinstance(command_id, str) and command_id):
        raise CommandError(f'command envelope {payload[:60]!r}: needs a string "id" and "command"')
    if sent is not None and (isinstance(sent, bool) or not isinstance(sent, int | float)):
        raise CommandError(f'command envelope {payload[:60]!r}: "sent" must be unix seconds')
    return Envelope(command.encode(), command_id[:64], None if sent is None else float(sent))


def check_rpe(value: object) -> float:
    """A CR-10 RPE as a float; :class:`CommandError` for anything but a number 0–10."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandError(f"RPE {value!r} is not a number: give 0–10 (CR-10)")
    rpe = float(value)
    if not (math.isfinite(rpe) and 0.0 <= rpe <= RPE_MAX):
        raise CommandError(f"RPE {value!r} is outside 0–10: give a CR-10 rating")
    return rpe


def check_tags(tags: Iterable[object]) -> tuple[str, ...]:
    """Session tags: up to 8 words of ``[A-Za-z0-9_.-]``, 32 characters each."""
    out = tuple(tags)
    if len(out) > MAX_TAGS:
        raise CommandError(f"{len(out)} tags: give at most {MAX_TAGS}")
    for tag in out:
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise CommandError(
                f"tag {tag!r}: use 1–32 letters, digits, '_', '-' or '.' (e.g. intervals)"
            )
    return out  # type: ignore[return-value]  # checked above: every one is a str


def parse_session(payload: bytes) -> SessionCommand:
    """A ``set/session`` payload; :class:`CommandError` says what is wrong with it."""
    text = payload.decode("utf-8", "replace").strip()
    if text in ("start", "end"):
        return SessionCommand(text)  # type: ignore[arg-type]  # one of the two literals
    try:
        data = json.loads(text)
    except ValueError:
        raise CommandError(
            f"session command {text[:40]!r}: send 'start', 'end' or JSON "
            '{"action": "start"|"end", "rpe": 0-10, "tags": [...]}'
        ) from None
    if not isinstance(data, dict) or data.get("action") not in ("start", "end"):
        raise CommandError(
            f'session command {text[:40]!r}: its JSON needs "action": "start" or "end"'
        )
    rpe = data.get("rpe")
    tags = data.get("tags", [])
    if not isinstance(tags, list):
        raise CommandError(f"session command tags {tags!r}: give a list of words")
    return SessionCommand(data["action"], None if rpe is None else check_rpe(rpe), check_tags(tags))


def parse_rpe(payload: bytes) -> float:
    """A ``set/rpe`` payload: a number, or JSON ``{"rpe": number}``."""
    text = payload.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        raise CommandError(f"RPE {text[:40]!r} is not a number: give 0–10 (CR-10)") from None
    if isinstance(data, dict):
        data = data.get("rpe")
    return check_rpe(data)


def parse_morning(payload: bytes, t_ns: int) -> ProtocolEvent:
    """A ``set/morning`` payload (``start`` | ``end``) as its marker at ``t_ns``."""
    text = payload.decode("utf-8", "replace").strip()
    if text == "start":
        return MorningStart(t_ns)
    if text == "end":
        return MorningEnd(t_ns)
    raise CommandError(f"morning command {text[:40]!r}: send 'start' or 'end'")


def parse_grip(payload: bytes, t_ns: int) -> ProtocolEvent:
    """A ``set/grip`` payload as its marker at ``t_ns``: ``pre`` (the MVC trials before the
    session), ``post M`` (the test M minutes after it), ``end`` (measure and classify)."""
    text = payload.decode("utf-8", "replace").strip()
    usage = "send 'pre', 'post MINUTES', 'end' or JSON {\"phase\": \"post\", \"minute\": 15}"
    phase, _, minute_text = text.partition(" ")
    minute: object = minute_text.strip() or None
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise CommandError(f"grip command {text[:40]!r}: {usage}") from None
        if not isinstance(data, dict):
            raise CommandError(f"grip command {text[:40]!r}: {usage}")
        phase, minute = str(data.get("phase")), data.get("minute")
    if phase == "pre" and minute is None:
        return GripPhase(t_ns, None)
    if phase == "end" and minute is None:
        return GripEnd(t_ns)
    if phase == "post" and minute is not None:
        try:
            value = float(minute)  # type: ignore[arg-type]  # a str or a JSON number
        except (TypeError, ValueError):
            value = math.nan
        if isinstance(minute, bool) or not (0.0 <= value <= GRIP_MAX_MINUTE):
            raise CommandError(
                f"grip post minute {minute!r}: give the minutes after the session, "
                f"0–{GRIP_MAX_MINUTE:g}"
            )
        return GripPhase(t_ns, value)
    raise CommandError(f"grip command {text[:40]!r}: {usage}")


class CommandListener:
    """MQTT commands of the configured athletes → protocol markers: a listener on the
    publisher's connection (:meth:`streamer.sinks.mqtt.MqttPublisher.listen`).

    Args:
        config: the ``[mqtt]`` settings ``run`` publishes with (the base topic).
        athletes: configured athlete ids; commands for others are dropped.
        offer: where markers go (:meth:`streamer.app.pipeline.Pipeline.offer`).
        clock_ns: the clock the devices' records are stamped with (emulated under
            ``run --emulated``), ns since the epoch.
    """

    name = "mqtt commands"

    def __init__(
        self,
        config: MqttConfig,
        athletes: Iterable[str],
        offer: Callable[[str, str, object], bool],
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        wall_s: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.topics = Topics(config.base_topic, config.ha_prefix)
        self._athletes = {segment(a): a for a in athletes}
        self._offer = offer
        self._clock_ns = clock_ns
        self._wall_s = wall_s  # the CLI's envelopes carry wall time, even when emulated
        self._warned: set[tuple[str, str]] = set()
        self._seen: OrderedDict[str, float] = OrderedDict()  # id → wall time applied
        self.accepted = 0
        self.rejected = 0
        self.repeats = 0
        self.subscribed = asyncio.Event()

    @property
    def filters(self) -> tuple[str, ...]:
        """``<base>/+/set/+``: every athlete's commands (others' are dropped in :meth:`handle`)."""
        return (f"{self.topics.base}/+/set/+",)

    def announce(self, listening: bool) -> tuple[tuple[str, bytes], ...]:
        """``<base>/bridge/commands`` ``online`` / ``offline`` (retained)."""
        state = COMMANDS_ONLINE if listening else COMMANDS_OFFLINE
        return ((commands_state_topic(self.topics), state),)

    def on_link(self, up: bool) -> None:
        """:attr:`subscribed` is set while the connection's subscriptions stand."""
        if up:
            self.subscribed.set()
        else:
            self.subscribed.clear()

    def handle(self, topic: str, payload: object, *, retained: bool = False) -> bool:
        """One command message; True when it became markers. Never raises."""
        try:
            data = payload if isinstance(payload, bytes) else str(payload).encode()
            command = unwrap(data)
            if command.id is not None and self._repeat(command.id):
                self.repeats += 1
                _LOGGER.info(
                    "command on %s: id %s applied already, repeat dropped", topic, command.id
                )
                return False
            self._check_age(topic, command)
            athlete, markers = self._markers(topic, command.payload, retained)
        except CommandError as exc:
            self._reject(topic, str(exc))
            return False
        except Exception as exc:  # a bug here must not stop run: say it once, go on
            _LOGGER.exception("command on %s not handled", topic)
            self._reject(topic, f"{type(exc).__name__}: {exc}", logged=True)
            return False
        for marker in markers:
            self._offer(athlete, COMMAND_DEVICE, marker)
        if command.id is not None:
            self._seen[command.id] = self._wall_s()
        self.accepted += 1
        _LOGGER.info("command on %s: %s", topic, ", ".join(type(m).__name__ for m in markers))
        return True

    def _repeat(self, command_id: str) -> bool:
        """True when ``command_id`` was applied already; forgets ids past their time."""
        now = self._wall_s()
        while self._seen and (
            len(self._seen) > SEEN_IDS_KEPT or next(iter(self._seen.values())) < now - SEEN_IDS_S
        ):
            self._seen.popitem(last=False)
        return command_id in self._seen

    def _check_age(self, topic: str, command: Envelope) -> None:
        if command.sent_s is None:
            return
        age_s = self._wall_s() - command.sent_s
        if age_s > COMMAND_TTL_S:
            raise CommandError(
                f"{topic}: command sent {age_s:.0f} s ago, more than {COMMAND_TTL_S} s: "
                "dropped so that it does not act late — send it again if it still holds "
                "(if it was just sent, the sender's clock is behind this host's: sync both "
                "with NTP)"
            )

    def _markers(
        self, topic: str, payload: object, retained: bool
    ) -> tuple[str, list[ProtocolEvent]]:
        levels = topic[len(self.topics.base) + 1 :].split("/")
        if len(levels) != 3 or levels[1] != "set":
            raise CommandError(f"{topic}: not a command topic (<base>/<athlete>/set/<command>)")
        athlete = self._athletes.get(levels[0])
        if athlete is None:
            raise CommandError(f"{topic}: athlete {levels[0]!r} is not in the config")
        if retained:
            raise CommandError(
                f"{topic}: a retained command is ignored (it would replay at every start): "
                "publish commands without the retain flag, and clear it with an empty "
                "retained message"
            )
        data = payload if isinstance(payload, bytes) else str(payload).encode()
        now = self._clock_ns()
        if levels[2] == SESSION:
            return athlete, parse_session(data).markers(now)
        if levels[2] == RPE:
            return athlete, [SessionRpe(now, parse_rpe(data))]
        if levels[2] == MORNING:
            return athlete, [parse_morning(data, now)]
        if levels[2] == GRIP:
            return athlete, [parse_grip(data, now)]
        marker = LAB_TOPICS.get(levels[2])
        if marker is not None:  # a lab marker entered by hand (streamer.app.lab_commands)
            try:
                return athlete, [parse_lab(marker, data).entry(now)]
            except LabInputError as exc:
                raise CommandError(str(exc)) from None
        known = ", ".join((SESSION, RPE, MORNING, GRIP, *LAB_TOPICS))
        raise CommandError(f"{topic}: unknown command {levels[2]!r} (known: {known})")

    def _reject(self, topic: str, reason: str, *, logged: bool = False) -> None:
        self.rejected += 1
        key = (topic, reason)
        if key in self._warned:
            return  # said once: a device repeating a bad command must not flood the log
        self._warned.add(key)
        if not logged:
            _LOGGER.warning("command dropped: %s", reason)
