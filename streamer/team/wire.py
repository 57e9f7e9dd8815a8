"""What crosses NATS between gateways and workers: subjects, partitions, message bodies.

A gateway publishes every raw notification and every protocol marker of an athlete to
``redox.raw.<athlete>`` — one subject per athlete, so JetStream keeps one total order per
athlete across that athlete's devices and markers. The server's subject mapping (see
:func:`nats_mappings`) rewrites it to ``redox.part.<p>.<athlete>``, ``p`` a deterministic
hash of the athlete id into :data:`DEFAULT_PARTITIONS` partitions, so each athlete always
lands in the same partition and a worker consumes whole partitions.

A body is one JSON object. A raw notification is the recording line of
:mod:`devices.recording` (``{"t_ns", "device", "char", "hex"}``), so a gateway forwards
bytes, never decodes them (it imports no scipy), and a worker decodes them with the same
codecs as ``replay``. A marker is ``{"t_ns", "marker": <name>, ...its fields}`` with the
names of :data:`MARKERS`; a lab entry's own ``marker`` field (which lab marker: GSH:GSSG,
dROMs, dipstick) travels as ``lab``, since ``marker`` names the wire's kind.

A device event is a record a gateway's driver emits that is no notification's decoding —
a link gap, a battery level (read, or notified outside the forwarded subscriptions) — as
:class:`DeviceEvent`: ``{"device": <config id>, "gap": {"t_ns", "device": <driver name>,
"start_ns", "end_ns", "reason"}}`` or ``{"device": <config id>, "battery": {"t_ns",
"battery_pct", "battery_mv"}}``, the record's own fields under its kind's name, so the worker
rebuilds the very record the single box's pipeline gets from the driver. A gateway puts it
in the outbox in the driver's order, between the notifications it came between.

Headers: ``Nats-Msg-Id`` = ``<gateway>:<boot>:<outbox id>``, the boot the outbox row was
queued in (JetStream drops a resend of a message it already holds, after a gateway crash
or a link loss) and ``Redox-Gateway`` =
the gateway's id (workers drop records from a gateway that does not hold the device's lease)
and ``Redox-Received`` = the gateway's wall clock when it received the message (ns; the
start of the live latency and of a marker's wait for the stream, carried with the outbox
row).

Athlete ids are the config's ids (``ID_RULE`` in :mod:`streamer.config`: letters, digits,
``-`` and ``_``), which are valid single NATS subject tokens.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Final

from devices.recording import RecordedNotification, RecordingError, parse_line
from devices.records import BatteryLevel, GapEvent, GapReason
from processors.errors import InputError
from processors.labs import LabMarker, LabTiming
from streamer.athlete.events import (
    GripEnd,
    GripPhase,
    GripPhaseEnd,
    LabEntry,
    MorningEnd,
    MorningStart,
    SessionEnd,
    SessionRpe,
    SessionStart,
)

STREAM: Final = "REDOX_RAW"
"""The JetStream stream holding every gateway's raw records and markers."""

RAW_PREFIX: Final = "redox.raw"
"""Gateways publish to ``redox.raw.<athlete>``."""

PARTITION_PREFIX: Final = "redox.part"
"""The stream stores ``redox.part.<partition>.<athlete>`` (the server's mapping)."""

DEFAULT_PARTITIONS: Final = 16
"""Partitions of the athlete space: more than workers will ever be in a club (2–4), few
enough that a worker's per-partition consumers stay cheap."""

MSG_ID_HEADER: Final = "Nats-Msg-Id"
GATEWAY_HEADER: Final = "Redox-Gateway"
RECEIVED_HEADER: Final = "Redox-Received"
"""When the gateway received the message (wall clock, ns since the epoch, decimal): what
the live latency is measured from, and — against the time the stream stored it — how long
a protocol marker waited at its gateway (the worker's marker fence,
:data:`streamer.team.worker.MARKER_BACKLOG_S`)."""

Marker = (
    MorningStart
    | MorningEnd
    | SessionStart
    | SessionEnd
    | SessionRpe
    | GripPhase
    | GripPhaseEnd
    | GripEnd
    | LabEntry
)

MARKERS: Final[dict[str, type[Marker]]] = {
    "morning_start": MorningStart,
    "morning_end": MorningEnd,
    "session_start": SessionStart,
    "session_end": SessionEnd,
    "session_rpe": SessionRpe,
    "grip_phase": GripPhase,
    "grip_phase_end": GripPhaseEnd,
    "grip_end": GripEnd,
    "lab": LabEntry,
}
"""The protocol markers a gateway forwards, by their wire name."""

_MARKER_NAMES: Final = {cls: name for name, cls in MARKERS.items()}


@dataclass(frozen=True, slots=True)
class LeaseGranted:
    """From now on ``gateway`` holds the lease on the athlete's ``device`` (the wire's
    ``device`` field): workers drop that device's notifications from any other gateway
    until the next grant. Granted leases live in a JetStream key-value bucket; the grant is
    also written into the athlete's stream so every worker, replaying or live, judges a
    record by the lease that stood at its place in the order, not by today's."""

    t_ns: int
    device: str
    gateway: str


DeviceEventRecord = GapEvent | BatteryLevel
"""The driver records a gateway forwards as themselves (not as notification bytes)."""

DEVICE_EVENTS: Final[dict[str, type[GapEvent] | type[BatteryLevel]]] = {
    "gap": GapEvent,
    "battery": BatteryLevel,
}
"""The device events' records by their wire name."""

_DEVICE_EVENT_NAMES: Final = {cls: name for name, cls in DEVICE_EVENTS.items()}


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """A record the driver of the athlete's ``device`` (the config's device id: the lease's
    and the athlete state's key) emitted that is no notification's decoding: a
    :class:`~devices.records.GapEvent` (the link dropped or went silent: no RR difference
    across it) or a :class:`~devices.records.BatteryLevel`. ``record`` is the driver's own,
    its ``device`` (a gap's) the driver's name, ``<athlete>/<device id>`` as in ``run``."""

    device: str
    record: DeviceEventRecord

    @property
    def t_ns(self) -> int:
        """The record's time (ns), as every wire message has one."""
        return self.record.t_ns


def handover_gap(athlete: str, grant: LeaseGranted) -> GapEvent:
    """The gap a lease grant marks in the device's stream when the device was held before.

    A grant starts a new driver on a new link (a gateway drives a device only while it
    holds the lease, and a new holder connects after the old one let go), so beats were
    missed between the previous holder's last record and the new one's first — as when
    the single box's driver reconnects, which it marks as a gap. The previous holder's own
    gap may never reach the stream (it crashed, or was cut off and lost the lease first),
    so workers and the single-box oracle both mark this one (closed, at the grant's time).
    """
    return GapEvent(
        t_ns=grant.t_ns,
        device=f"{athlete}/{grant.device}",
        start_ns=grant.t_ns,
        end_ns=grant.t_ns,
        reason=GapReason.HANDOVER,
    )


WireMessage = RecordedNotification | Marker | LeaseGranted | DeviceEvent


class WireError(InputError, ValueError):
    """A message on a team subject is malformed; the text names the subject and the fault."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message as a worker receives it: whose it is, from which gateway, and what."""

    athlete: str
    gateway: str
    msg_id: str
    message: WireMessage


def raw_subject(athlete: str) -> str:
    """The subject a gateway publishes ``athlete``'s records and markers to."""
    return f"{RAW_PREFIX}.{athlete}"


def partition_subject(partition: int) -> str:
    """The stream subject filter of one partition (all its athletes)."""
    return f"{PARTITION_PREFIX}.{partition}.*"


def stream_subjects() -> list[str]:
    """The subjects the stream is created with (after the server's mapping)."""
    return [f"{PARTITION_PREFIX}.*.*"]


def nats_mappings(partitions: int = DEFAULT_PARTITIONS) -> dict[str, str]:
    """The server's ``mappings`` block: ``redox.raw.<athlete>`` → its partition's subject.

    The hash is the server's own (``partition()``, NATS ≥ 2.8), so no process of ours has to
    agree with another on it.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    target = f"{PARTITION_PREFIX}.{{{{partition({partitions},1)}}}}.{{{{wildcard(1)}}}}"
    return {f"{RAW_PREFIX}.*": target}


def nats_mappings_conf(partitions: int = DEFAULT_PARTITIONS) -> str:
    """:func:`nats_mappings` as a nats-server config block (``deploy/nats/mappings.conf``)."""
    lines = [f'  "{src}": "{dst}"' for src, dst in nats_mappings(partitions).items()]
    return "mappings = {\n" + "\n".join(lines) + "\n}\n"


_FNV32_OFFSET: Final = 0x811C9DC5
_FNV32_PRIME: Final = 0x01000193


def partition_of(athlete: str, partitions: int = DEFAULT_PARTITIONS) -> int:
    """The partition the server's mapping (:func:`nats_mappings`) puts ``athlete`` in.

    nats-server's ``partition(n, 1)`` is FNV-1a (32 bit) of the wildcard's token, modulo
    ``n``; the server stays the one that routes, this is for what must be known before a
    message arrives — the athletes whose Home Assistant entities a partition announces, the
    partition outbox an athlete's migrated messages go to. A test holds it to a real server.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    h = _FNV32_OFFSET
    for byte in athlete.encode():
        h = ((h ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return h % partitions


def athlete_of(subject: str) -> tuple[int, str]:
    """``(partition, athlete)`` of a stored subject ``redox.part.<p>.<athlete>``."""
    parts = subject.split(".")
    if len(parts) != 4 or ".".join(parts[:2]) != PARTITION_PREFIX or not parts[2].isdecimal():
        raise WireError(f"{subject}: not a partition subject ({PARTITION_PREFIX}.<p>.<athlete>)")
    return int(parts[2]), parts[3]


def msg_id(gateway: str, boot: int, outbox_id: int) -> str:
    """The de-duplication id of a gateway's outbox row: unique across its restarts."""
    return f"{gateway}:{boot}:{outbox_id}"


def encode(message: WireMessage) -> bytes:
    """The JSON body of a raw notification, a marker, a lease grant or a device event."""
    if isinstance(message, LeaseGranted):
        grant = {"lease": dataclasses.asdict(message)}
        return json.dumps(grant, separators=(",", ":")).encode()
    if isinstance(message, DeviceEvent):
        fields = dataclasses.asdict(message.record)
        if isinstance(message.record, GapEvent):
            fields["reason"] = message.record.reason.value
        event = {"device": message.device, _DEVICE_EVENT_NAMES[type(message.record)]: fields}
        return json.dumps(event, separators=(",", ":")).encode()
    if isinstance(message, RecordedNotification):
        body: dict[str, Any] = {
            "t_ns": message.t_ns,
            "device": message.device,
            "char": message.char,
            "hex": message.data.hex(),
        }
    else:
        body = dataclasses.asdict(message)
        if isinstance(message, LabEntry):
            body["lab"] = body.pop("marker").value
            body["timing"] = None if message.timing is None else message.timing.value
        body["marker"] = _MARKER_NAMES[type(message)]
        if isinstance(message, SessionStart):
            body["tags"] = list(message.tags)
    return json.dumps(body, separators=(",", ":")).encode()


def decode(subject: str, body: bytes) -> WireMessage:
    """The message in ``body``; :class:`WireError` names ``subject`` and the fault."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"{subject}: body is not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise WireError(f"{subject}: body is not a JSON object")
    if "lease" in obj:
        lease = obj["lease"]
        try:
            grant = LeaseGranted(**lease)
        except TypeError as exc:
            raise WireError(f"{subject}: lease grant has bad fields ({exc})") from None
        if not isinstance(grant.t_ns, int) or not grant.device or not grant.gateway:
            raise WireError(f"{subject}: lease grant needs t_ns, device and gateway")
        return grant
    if "marker" not in obj:
        for event, event_cls in DEVICE_EVENTS.items():
            if event in obj:
                return _device_event(subject, obj, event, event_cls)
    name = obj.pop("marker", None)
    if name is None:
        try:
            return parse_line(body, subject, 0)
        except RecordingError as exc:
            raise WireError(str(exc)) from None
    cls = MARKERS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise WireError(f"{subject}: unknown marker {name!r}; known: {', '.join(MARKERS)}")
    if "tags" in obj and isinstance(obj["tags"], list):
        obj["tags"] = tuple(obj["tags"])
    try:
        if cls is LabEntry:
            obj["marker"] = LabMarker(obj.pop("lab", None))
            timing = obj.get("timing")
            obj["timing"] = None if timing is None else LabTiming(timing)
            value = obj.get("value")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise WireError(f"{subject}: lab entry value {value!r} is not a number")
            obj["value"] = float(value)
        marker = cls(**obj)
    except WireError:
        raise
    except (TypeError, ValueError) as exc:
        raise WireError(f"{subject}: marker {name} has bad fields ({exc})") from None
    if isinstance(marker.t_ns, bool) or not isinstance(marker.t_ns, int):
        raise WireError(f"{subject}: marker {name} t_ns {marker.t_ns!r} is not an integer")
    return marker


def _device_event(
    subject: str, obj: dict[str, Any], name: str, cls: type[GapEvent] | type[BatteryLevel]
) -> DeviceEvent:
    """The :class:`DeviceEvent` of a decoded body whose ``name`` key holds ``cls``'s fields."""
    device, fields = obj.get("device"), obj[name]
    if not isinstance(device, str) or not device:
        raise WireError(f"{subject}: {name} event needs its device id")
    if not isinstance(fields, dict):
        raise WireError(f"{subject}: {name} event's record is not a JSON object")
    fields = dict(fields)
    try:
        if cls is GapEvent:
            fields["reason"] = GapReason(fields.get("reason"))
        record = cls(**fields)
    except (TypeError, ValueError) as exc:
        raise WireError(f"{subject}: {name} event has bad fields ({exc})") from None
    ints = {"t_ns": record.t_ns}
    optional: dict[str, object] = {}
    if isinstance(record, GapEvent):
        ints["start_ns"] = record.start_ns
        optional["end_ns"] = record.end_ns
        if not isinstance(record.device, str) or not record.device:
            raise WireError(f"{subject}: gap event needs the driver's device name")
    else:
        optional = {"battery_pct": record.battery_pct, "battery_mv": record.battery_mv}
    for field_name, value in [*ints.items(), *optional.items()]:
        if value is None and field_name in optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise WireError(f"{subject}: {name} event {field_name} {value!r} is not an integer")
    return DeviceEvent(device, record)
