"""The result envelope every sink accepts: one kind, one athlete, one time, unit-named fields.

The pipeline turns whatever the device layer and the processors produce (frozen dataclass
records) into :class:`Result` envelopes; the sinks — MQTT (:mod:`streamer.mqtt`), InfluxDB
(:mod:`streamer.influx`) and the local store (:mod:`streamer.store`) — take only envelopes,
so they never import a processor. Where a result goes (topic, QoS, retain flag,
measurement) follows from its :class:`Kind` alone; see :mod:`streamer.topics` and
:mod:`streamer.influx_schema`.

Conversion helpers:

* :func:`live_result` — a device sample (``HeartRateSample`` …) to a live envelope;
* :meth:`Result.from_record` — any frozen dataclass record (``GripTest``, a morning
  reading …) to an envelope, enums to their values, tuples to lists, nested records to
  objects, non-finite floats to ``None``;
* :func:`alert_result` — an alert event plus the athlete's open alerts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from types import MappingProxyType
from typing import Final

from devices.records import (
    ForceSample,
    HeartRateSample,
    MeasuredSample,
    PowerSample,
    SmO2Sample,
    SpO2Sample,
)

#: A value that survives JSON encoding unchanged.
JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


class Kind(enum.StrEnum):
    """What a result is; fixes its topic, QoS, retain flag and InfluxDB measurement."""

    # Live samples: QoS 0, high rate, may be shed under pressure.
    HEART_RATE = "heart_rate"
    SMO2 = "smo2"
    FORCE = "force"
    POWER = "power"
    SPO2 = "spo2"
    # Results: QoS 1, never dropped.
    HRV = "hrv"
    MORNING = "morning"
    OXYGENATION = "oxygenation"
    GRIP = "grip"
    ALERTS = "alerts"
    STATUS = "status"

    @property
    def is_live(self) -> bool:
        """True for high-rate device samples (QoS 0, no outbox)."""
        return self in LIVE_KINDS


LIVE_KINDS: Final = frozenset({Kind.HEART_RATE, Kind.SMO2, Kind.FORCE, Kind.POWER, Kind.SPO2})

#: Keys every JSON payload carries in its header; a result's fields may not use them.
RESERVED_KEYS: Final = frozenset({"schema", "seq", "ts_ns", "time", "athlete", "device", "kind"})


def to_jsonable(value: object) -> JsonValue:
    """``value`` as plain JSON data.

    Enums become their values, dataclasses and mappings become objects, tuples/lists/sets
    become lists, NaN and ±inf become ``None`` (JSON has no non-finite numbers), numpy
    scalars and arrays become Python numbers and lists, dates and times become ISO-8601
    strings. Anything else raises ``TypeError`` naming the type, rather than turning it into
    a string silently.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [to_jsonable(v) for v in items]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    # numpy scalars and arrays, without importing numpy here.
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return to_jsonable(tolist())
    raise TypeError(f"cannot put a {type(value).__name__} into a result payload: {value!r}")


def record_fields(
    record: object,
    *,
    rename: Mapping[str, str] | None = None,
    drop: Sequence[str] = ("t_ns", "ts_ns"),
) -> dict[str, JsonValue]:
    """The fields of a dataclass ``record`` as JSON data, renamed and without header keys.

    ``rename`` maps a record's attribute name to its published name (e.g.
    ``{"grip_class": "class"}``); names in ``drop`` and the payload header keys
    (:data:`RESERVED_KEYS`) are left out.
    """
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        raise TypeError(f"expected a dataclass record, got {type(record).__name__}")
    names = rename or {}
    out: dict[str, JsonValue] = {}
    for f in dataclasses.fields(record):
        if f.name in drop:
            continue
        name = names.get(f.name, f.name)
        if name in RESERVED_KEYS:
            continue
        out[name] = to_jsonable(getattr(record, f.name))
    return out


def _record_time_ns(record: object) -> int | None:
    for name in ("t_ns", "ts_ns"):
        value = getattr(record, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


@dataclass(frozen=True, slots=True)
class Result:
    """One thing to deliver: a live sample, a metric, a reading, an alert update, a status.

    ``ts_ns`` is the result's time in nanoseconds since the Unix epoch (UTC). ``device`` is
    the device's topic segment (required for live kinds and for ``oxygenation``/``grip``
    results that come from one device; ``None`` otherwise). ``fields`` are unit-named JSON
    values (``hr_bpm``, ``rr_ms``, ``ln_rmssd`` …); they are copied and frozen.
    """

    kind: Kind
    athlete: str
    ts_ns: int
    fields: Mapping[str, JsonValue] = field(default_factory=dict)
    device: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind(self.kind))
        if not isinstance(self.ts_ns, int) or isinstance(self.ts_ns, bool) or self.ts_ns < 0:
            raise ValueError(f"ts_ns must be a non-negative int (ns since epoch): {self.ts_ns!r}")
        if not self.athlete:
            raise ValueError("athlete must be a non-empty id")
        if self.kind.is_live and not self.device:
            raise ValueError(f"a live {self.kind.value} result needs its device")
        clash = RESERVED_KEYS.intersection(self.fields)
        if clash:
            raise ValueError(f"fields may not use the payload header keys {sorted(clash)}")
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    @property
    def qos(self) -> int:
        """MQTT QoS: 0 for live samples, 1 for everything else."""
        return 0 if self.kind.is_live else 1

    @property
    def retain(self) -> bool:
        """Whether the MQTT message is retained: state topics (morning, alerts, status)."""
        return self.kind in RETAINED_KINDS

    @classmethod
    def from_record(
        cls,
        kind: Kind | str,
        athlete: str,
        record: object,
        *,
        device: str | None = None,
        ts_ns: int | None = None,
        rename: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> Result:
        """An envelope from a dataclass ``record`` (see :func:`record_fields`).

        The time is ``ts_ns`` if given, else the record's ``t_ns``/``ts_ns`` attribute;
        ``extra`` adds or overrides fields (e.g. ``{"scope": "session"}``).
        """
        when = ts_ns if ts_ns is not None else _record_time_ns(record)
        if when is None:
            raise ValueError(
                f"{type(record).__name__} has no t_ns/ts_ns: pass ts_ns= (ns since epoch)"
            )
        fields = record_fields(record, rename=rename)
        if extra:
            fields.update({k: to_jsonable(v) for k, v in extra.items()})
        return cls(Kind(kind), athlete, when, fields, device)


RETAINED_KINDS: Final = frozenset({Kind.MORNING, Kind.ALERTS, Kind.STATUS})


def live_result(
    athlete: str,
    device: str,
    sample: MeasuredSample,
) -> Result:
    """A live envelope from a device sample, with exactly the fields of SCHEMA.md.

    Heart rate: ``hr_bpm`` and ``rr_ms`` (list, oldest first); SmO2: ``smo2_pct``,
    ``thb_gdl``; force: ``force_kg``; power: ``power_w``; SpO2: ``spo2_pct``,
    ``pulse_bpm`` (``None`` when the oximeter had no valid reading).
    """
    fields: dict[str, JsonValue]
    match sample:
        case HeartRateSample():
            kind = Kind.HEART_RATE
            fields = {"hr_bpm": sample.hr_bpm, "rr_ms": [float(r) for r in sample.rr_ms]}
        case SmO2Sample():
            kind = Kind.SMO2
            fields = {
                "smo2_pct": to_jsonable(sample.smo2_pct),
                "thb_gdl": to_jsonable(sample.thb_gdl),
            }
        case ForceSample():
            kind = Kind.FORCE
            fields = {"force_kg": to_jsonable(sample.force_kg)}
        case PowerSample():
            kind = Kind.POWER
            fields = {"power_w": sample.power_w}
        case SpO2Sample():
            kind = Kind.SPO2
            fields = {
                "spo2_pct": to_jsonable(sample.spo2_pct),
                "pulse_bpm": to_jsonable(sample.pulse_bpm),
            }
        case _:
            raise TypeError(f"no live kind for {type(sample).__name__}")
    return Result(kind, athlete, sample.t_ns, fields, device)


#: Names the processors' ``Alert`` uses → names of the alert object in SCHEMA.md.
_ALERT_RENAMES: Final = {
    "rule_id": "rule",
    "raised_at_ns": "raised_ts_ns",
    "cleared_at_ns": "cleared_ts_ns",
}
# Already in the payload header (or meaningless inside it).
_ALERT_DROPPED: Final = frozenset({"schema", "athlete"})


def alert_json(alert: object) -> dict[str, JsonValue]:
    """One alert as the SCHEMA.md object ``{rule, severity, state, message, advice,
    evidence, source, raised_ts_ns, cleared_ts_ns}``.

    Accepts a ``processors.alerts.Alert`` (``rule_id``/``raised_at_ns``/``cleared_at_ns``
    are renamed), its ``to_dict()``, or a mapping already in schema form.
    """
    value = to_jsonable(alert)
    if not isinstance(value, dict):
        raise TypeError(f"an alert must be a record or a mapping, got {type(alert).__name__}")
    return {_ALERT_RENAMES.get(k, k): v for k, v in value.items() if k not in _ALERT_DROPPED}


def alert_result(
    athlete: str,
    event: object,
    active: Sequence[object],
    *,
    ts_ns: int | None = None,
    extra: Mapping[str, object] | None = None,
) -> Result:
    """The ``alerts`` envelope: the event that changed the book and every open alert.

    ``event`` and each of ``active`` are alerts as :func:`alert_json` takes them. The
    time defaults to the event's ``cleared_ts_ns`` when cleared, else its
    ``raised_ts_ns``.
    """
    event_json = alert_json(event)
    active_json: list[JsonValue] = [alert_json(a) for a in active]
    when = ts_ns
    if when is None:
        key = "cleared_ts_ns" if event_json.get("state") == "cleared" else "raised_ts_ns"
        stamp = event_json.get(key)
        if not isinstance(stamp, int) or isinstance(stamp, bool):
            raise ValueError(f"alert event has no integer {key}: pass ts_ns=")
        when = stamp
    fields: dict[str, JsonValue] = {"active": active_json, "event": event_json}
    if extra:
        fields.update({k: to_jsonable(v) for k, v in extra.items()})
    return Result(Kind.ALERTS, athlete, when, fields)
