"""The result envelope every sink accepts: one kind, one athlete, one time, unit-named fields.

The pipeline turns whatever the device layer and the processors produce (frozen dataclass
records) into :class:`Result` envelopes; the sinks — MQTT (:mod:`streamer.sinks.mqtt`), InfluxDB
(:mod:`streamer.sinks.influx`) and the local store (:mod:`streamer.store`) — take only envelopes,
so they never import a processor. Where a result goes (topic, QoS, retain flag,
measurement) follows from its :class:`Kind` alone; see :mod:`streamer.topics` and
:mod:`streamer.sinks.influx_schema`.

Each kind's fields are fixed by a frozen payload type (:class:`HrvPayload`,
:class:`MorningPayload`, :class:`EffortPayload` / :class:`SessionPayload`,
:class:`GripPayload`, :class:`AlertsPayload`, :class:`StatusPayload`, and one per live
kind): ``payload.result(athlete, ts_ns, device)`` is the envelope, its fields made by
:func:`payload_fields`. Each payload field declares its InfluxDB column, from which
:mod:`streamer.sinks.influx_schema` derives the schema.

Conversion helpers:

* :func:`live_result` — a device sample (``HeartRateSample`` …) to a live envelope;
* :meth:`Result.from_record` — untyped, for tests and tools: any frozen dataclass
  record (``GripTest``, a morning reading …) to an envelope, enums to their values, tuples
  to lists, nested records to objects, non-finite floats to ``None``;
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
from typing import ClassVar, Final

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
        return _dataclass_json(value)
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


# --- one frozen payload type per result kind ----------------------------------------------
#
# Each payload type fixes a result kind's fields: their published names (units in them),
# their order in the MQTT JSON, and where each goes in InfluxDB. Every field declares the
# latter in its metadata (``field(metadata=INFLUX_FLOAT)`` …, or ``MQTT_ONLY``), so a new
# field cannot be left out of the schema by accident; :mod:`streamer.sinks.influx_schema` derives
# its measurements, tags and field types from these declarations.

INFLUX_FLOAT: Final = MappingProxyType({"influx": "float"})
INFLUX_INT: Final = MappingProxyType({"influx": "int"})
INFLUX_BOOL: Final = MappingProxyType({"influx": "bool"})
INFLUX_STR: Final = MappingProxyType({"influx": "str"})
INFLUX_TAG: Final = MappingProxyType({"influx": "tag"})
MQTT_ONLY: Final = MappingProxyType({"influx": None})
"""Metadata of a payload field published on MQTT and never written to InfluxDB."""


def _named(published: str, meta: Mapping[str, object]) -> Mapping[str, object]:
    """``meta`` for a field whose published name is not a Python name (``class``)."""
    return MappingProxyType({**meta, "name": published})


def _omitted_if_none(meta: Mapping[str, object]) -> Mapping[str, object]:
    """``meta`` for a field left out of the payload when ``None`` (not published as null)."""
    return MappingProxyType({**meta, "omit_if_none": True})


def published_name(f: dataclasses.Field[object]) -> str:
    """The name a payload field is published under (its attribute name unless renamed)."""
    name = f.metadata.get("name", f.name)
    return str(name)


@dataclass(frozen=True, slots=True)
class Payload:
    """Base of the payload types: ``KIND`` is the result kind, ``MEASUREMENT`` the InfluxDB
    measurement its results are written to, or ``None`` for a kind published on MQTT only.
    ``INFLUX_OBJECT`` names a field holding a nested payload whose columns the point takes
    instead (``alerts`` → its ``event``)."""

    KIND: ClassVar[Kind]
    MEASUREMENT: ClassVar[str | None]
    INFLUX_OBJECT: ClassVar[str | None] = None
    INFLUX_DERIVED: ClassVar[Mapping[str, str]] = MappingProxyType({})
    """Point fields computed by :mod:`streamer.sinks.influx_schema`, name → ``float`` … ``str``."""

    def fields(self) -> dict[str, JsonValue]:
        """The payload as the result's JSON fields, in declaration order."""
        return payload_fields(self)

    def result(self, athlete: str, ts_ns: int, device: str | None = None) -> Result:
        """The envelope of this payload."""
        return Result(self.KIND, athlete, ts_ns, self.fields(), device)


def payload_fields(payload: Payload) -> dict[str, JsonValue]:
    """``payload`` as JSON fields: published names, declaration order, values made JSON
    (:func:`to_jsonable`: NaN → ``None``, tuples → lists, nested payloads → objects).
    This is the one place a result's MQTT JSON fields are made."""
    return _dataclass_json(payload)


def _dataclass_json(record: object) -> dict[str, JsonValue]:
    out: dict[str, JsonValue] = {}
    for f in dataclasses.fields(record):  # type: ignore[arg-type]
        value = getattr(record, f.name)
        if value is None and f.metadata.get("omit_if_none"):
            continue
        out[published_name(f)] = to_jsonable(value)
    return out


@dataclass(frozen=True, slots=True)
class HeartRatePayload(Payload):
    """Live heart rate: ``rr_ms`` oldest first; ``beat_ts_ns`` the beat times when the
    pipeline knows them (absent otherwise). InfluxDB gets one ``rr_ms`` point per beat."""

    KIND: ClassVar[Kind] = Kind.HEART_RATE
    MEASUREMENT: ClassVar[str | None] = "heart_rate"

    hr_bpm: int = field(metadata=INFLUX_FLOAT)
    rr_ms: tuple[float, ...] = field(metadata=INFLUX_FLOAT)
    beat_ts_ns: tuple[int, ...] | None = field(default=None, metadata=_omitted_if_none(MQTT_ONLY))


@dataclass(frozen=True, slots=True)
class SmO2Payload(Payload):
    """Live muscle oxygenation (``None``: no valid value)."""

    KIND: ClassVar[Kind] = Kind.SMO2
    MEASUREMENT: ClassVar[str | None] = "smo2"

    smo2_pct: float | None = field(metadata=INFLUX_FLOAT)
    thb_gdl: float | None = field(metadata=INFLUX_FLOAT)


@dataclass(frozen=True, slots=True)
class ForcePayload(Payload):
    """Live force."""

    KIND: ClassVar[Kind] = Kind.FORCE
    MEASUREMENT: ClassVar[str | None] = "force"

    force_kg: float | None = field(metadata=INFLUX_FLOAT)


@dataclass(frozen=True, slots=True)
class PowerPayload(Payload):
    """Live power."""

    KIND: ClassVar[Kind] = Kind.POWER
    MEASUREMENT: ClassVar[str | None] = "power"

    power_w: int = field(metadata=INFLUX_FLOAT)


@dataclass(frozen=True, slots=True)
class SpO2Payload(Payload):
    """Live pulse oximetry (``None``: the oximeter had no valid reading). Not "spo2" in
    InfluxDB: next to the muscle's "smo2" that name invites a wrong query."""

    KIND: ClassVar[Kind] = Kind.SPO2
    MEASUREMENT: ClassVar[str | None] = "pulse_oximetry"

    spo2_pct: float | None = field(metadata=INFLUX_FLOAT)
    pulse_bpm: float | None = field(metadata=INFLUX_FLOAT)


@dataclass(frozen=True, slots=True)
class HrvPayload(Payload):
    """A rolling HRV window and the quality gate's verdict (a rejected window: no numbers)."""

    KIND: ClassVar[Kind] = Kind.HRV
    MEASUREMENT: ClassVar[str | None] = "hrv"

    accepted: bool = field(metadata=INFLUX_BOOL)
    reject_reason: str | None = field(metadata=MQTT_ONLY)
    abnormal_pct: float | None = field(metadata=INFLUX_FLOAT)
    rmssd_ms: float | None = field(metadata=INFLUX_FLOAT)
    ln_rmssd: float | None = field(metadata=INFLUX_FLOAT)
    sdnn_ms: float | None = field(metadata=INFLUX_FLOAT)
    mean_nn_ms: float | None = field(metadata=INFLUX_FLOAT)
    mean_hr_bpm: float | None = field(metadata=INFLUX_FLOAT)
    pnn50_pct: float | None = field(metadata=INFLUX_FLOAT)
    n_beats: int | None = field(metadata=INFLUX_INT)
    window_s: float = field(metadata=MQTT_ONLY)


@dataclass(frozen=True, slots=True)
class MorningPayload(Payload):
    """A morning reading (date = its UTC day) with the baselines and bands after it."""

    KIND: ClassVar[Kind] = Kind.MORNING
    MEASUREMENT: ClassVar[str | None] = "morning"

    date: str = field(metadata=MQTT_ONLY)
    ln_rmssd: float | None = field(metadata=INFLUX_FLOAT)
    rmssd_ms: float | None = field(metadata=INFLUX_FLOAT)
    resting_hr_bpm: float | None = field(metadata=INFLUX_FLOAT)
    artifacts_pct: float | None = field(metadata=INFLUX_FLOAT)
    corrected_pct: float | None = field(metadata=MQTT_ONLY)
    n_beats: int = field(metadata=MQTT_ONLY)
    accepted: bool = field(metadata=INFLUX_BOOL)
    reject_reason: str | None = field(metadata=MQTT_ONLY)
    ln_rmssd_baseline_mean: float | None = field(metadata=INFLUX_FLOAT)
    ln_rmssd_baseline_sd: float | None = field(metadata=INFLUX_FLOAT)
    ln_rmssd_band_low: float | None = field(metadata=INFLUX_FLOAT)
    ln_rmssd_band_high: float | None = field(metadata=INFLUX_FLOAT)
    ln_rmssd_7d_mean: float | None = field(metadata=INFLUX_FLOAT)
    ln_rmssd_cv_pct: float | None = field(metadata=INFLUX_FLOAT)
    rhr_baseline_median_bpm: float | None = field(metadata=INFLUX_FLOAT)
    rhr_7d_mean_bpm: float | None = field(metadata=INFLUX_FLOAT)
    baseline_status: str = field(default="none", metadata=INFLUX_STR)
    baseline_days: int = field(default=0, metadata=INFLUX_INT)
    baseline_note: str | None = field(default=None, metadata=MQTT_ONLY)
    source: str = field(default="rr", metadata=INFLUX_STR)


@dataclass(frozen=True, slots=True)
class EffortPayload(Payload):
    """One SmO2 effort's recovery (``oxygenation`` with ``scope`` ``effort``)."""

    KIND: ClassVar[Kind] = Kind.OXYGENATION
    MEASUREMENT: ClassVar[str | None] = "oxygen_recovery"

    scope: str = field(default="effort", init=False, metadata=INFLUX_TAG)
    work_end_source: str = field(metadata=MQTT_ONLY)
    baseline_pct: float | None = field(metadata=INFLUX_FLOAT)
    min_pct: float | None = field(metadata=INFLUX_FLOAT)
    t_half_s: float | None = field(metadata=INFLUX_FLOAT)
    t95_s: float | None = field(metadata=INFLUX_FLOAT)
    tau_s: float | None = field(metadata=INFLUX_FLOAT)
    delay_s: float | None = field(metadata=MQTT_ONLY)
    reox_rate_pct_s: float | None = field(metadata=INFLUX_FLOAT)
    overshoot_pct: float | None = field(metadata=INFLUX_FLOAT)
    recovered: bool = field(metadata=MQTT_ONLY)
    observed_s: float | None = field(metadata=MQTT_ONLY)


@dataclass(frozen=True, slots=True)
class SessionPayload(Payload):
    """A training session's summary (``oxygenation`` with ``scope`` ``session``)."""

    KIND: ClassVar[Kind] = Kind.OXYGENATION
    MEASUREMENT: ClassVar[str | None] = "oxygen_recovery"

    scope: str = field(default="session", init=False, metadata=INFLUX_TAG)
    recovery_s: float | None = field(metadata=INFLUX_FLOAT)
    recovery_is_lower_bound: bool = field(metadata=MQTT_ONLY)
    n_efforts: int = field(metadata=INFLUX_INT)
    n_recovered: int = field(metadata=MQTT_ONLY)
    duration_s: float = field(metadata=MQTT_ONLY)
    rpe: float | None = field(metadata=MQTT_ONLY)
    mean_power_w: float | None = field(metadata=MQTT_ONLY)


@dataclass(frozen=True, slots=True)
class GripPayload(Payload):
    """A grip test: MVC, the worst post-session test, the threshold used and the class."""

    KIND: ClassVar[Kind] = Kind.GRIP
    MEASUREMENT: ClassVar[str | None] = "grip_test"

    mvc_kg: float = field(metadata=INFLUX_FLOAT)
    peak_kg: float = field(metadata=INFLUX_FLOAT)
    drop_pct: float = field(metadata=INFLUX_FLOAT)
    minutes_after: float = field(metadata=INFLUX_FLOAT)
    threshold_pct: float = field(metadata=INFLUX_FLOAT)
    threshold_basis: str = field(metadata=MQTT_ONLY)
    grip_class: str = field(metadata=_named("class", INFLUX_TAG))
    noise_cv_pct: float | None = field(metadata=MQTT_ONLY)
    drops_pct: Mapping[str, float] = field(metadata=MQTT_ONLY)


@dataclass(frozen=True, slots=True)
class AlertPayload:
    """One alert as SCHEMA.md describes it; the ``alert`` point takes its columns."""

    rule: str = field(metadata=INFLUX_TAG)
    severity: str = field(metadata=INFLUX_TAG)
    state: str = field(metadata=INFLUX_STR)
    message: str = field(default="", metadata=INFLUX_STR)
    advice: str = field(default="", metadata=INFLUX_STR)
    evidence: Mapping[str, float] = field(default_factory=dict, metadata=MQTT_ONLY)
    source: str = field(default="", metadata=MQTT_ONLY)
    raised_ts_ns: int | None = field(default=None, metadata=MQTT_ONLY)
    cleared_ts_ns: int | None = field(default=None, metadata=MQTT_ONLY)

    @classmethod
    def of(cls, alert: object) -> AlertPayload:
        """From a ``processors.alerts.Alert``, its ``to_dict()``, or a mapping in schema
        form; ``ValueError`` when rule, severity or state is missing."""
        data = to_jsonable(alert)
        if not isinstance(data, dict):
            raise TypeError(f"an alert must be a record or a mapping, got {type(alert).__name__}")
        data = {_ALERT_RENAMES.get(k, k): v for k, v in data.items()}
        missing = [k for k in ("rule", "severity", "state") if data.get(k) is None]
        if missing:
            raise ValueError(f"alert has no {', '.join(missing)}: {data!r}")
        evidence = data.get("evidence")
        return cls(
            rule=str(data["rule"]),
            severity=str(data["severity"]),
            state=str(data["state"]),
            message=str(data.get("message") or ""),
            advice=str(data.get("advice") or ""),
            evidence={
                str(k): float(v)
                for k, v in (evidence.items() if isinstance(evidence, dict) else ())
                if isinstance(v, int | float)
            },
            source=str(data.get("source") or ""),
            raised_ts_ns=_int_or_none(data.get("raised_ts_ns")),
            cleared_ts_ns=_int_or_none(data.get("cleared_ts_ns")),
        )


def _int_or_none(value: JsonValue) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class AlertsPayload(Payload):
    """The athlete's open alerts and the event that changed them. InfluxDB gets one
    ``alert`` point from ``event``: its tags and string fields, and ``active`` (1 raised,
    0 cleared)."""

    KIND: ClassVar[Kind] = Kind.ALERTS
    MEASUREMENT: ClassVar[str | None] = "alert"
    INFLUX_OBJECT: ClassVar[str | None] = "event"
    INFLUX_DERIVED: ClassVar[Mapping[str, str]] = MappingProxyType({"active": "int"})

    active: tuple[AlertPayload, ...] = field(metadata=MQTT_ONLY)
    event: AlertPayload = field(metadata=MQTT_ONLY)


@dataclass(frozen=True, slots=True)
class StatusPayload(Payload):
    """The readiness summary: a state topic derived from the others, MQTT only."""

    KIND: ClassVar[Kind] = Kind.STATUS
    MEASUREMENT: ClassVar[str | None] = None

    state: str = field(metadata=MQTT_ONLY)
    open_alerts: tuple[str, ...] = field(metadata=MQTT_ONLY)
    ln_rmssd: float | None = field(metadata=MQTT_ONLY)
    ln_rmssd_band_low: float | None = field(metadata=MQTT_ONLY)
    ln_rmssd_band_high: float | None = field(metadata=MQTT_ONLY)
    morning_date: str | None = field(metadata=MQTT_ONLY)
    devices_active: tuple[str, ...] = field(metadata=MQTT_ONLY)


PAYLOAD_TYPES: Final[tuple[type[Payload], ...]] = (
    HeartRatePayload,
    SmO2Payload,
    ForcePayload,
    PowerPayload,
    SpO2Payload,
    HrvPayload,
    MorningPayload,
    EffortPayload,
    SessionPayload,
    GripPayload,
    AlertsPayload,
    StatusPayload,
)
"""Every payload type; each result kind has at least one (``oxygenation`` has two)."""


def live_result(
    athlete: str,
    device: str,
    sample: MeasuredSample,
    *,
    beat_ts_ns: Sequence[int] = (),
) -> Result:
    """A live envelope from a device sample, with exactly the fields of SCHEMA.md.

    Heart rate: ``hr_bpm`` and ``rr_ms`` (list, oldest first), and ``beat_ts_ns`` when
    given; SmO2: ``smo2_pct``, ``thb_gdl``; force: ``force_kg``; power: ``power_w``; SpO2:
    ``spo2_pct``, ``pulse_bpm`` (``None`` when the oximeter had no valid reading).
    """
    payload: Payload
    match sample:
        case HeartRateSample():
            payload = HeartRatePayload(
                sample.hr_bpm,
                tuple(float(r) for r in sample.rr_ms),
                tuple(beat_ts_ns) or None,
            )
        case SmO2Sample():
            payload = SmO2Payload(sample.smo2_pct, sample.thb_gdl)
        case ForceSample():
            payload = ForcePayload(sample.force_kg)
        case PowerSample():
            payload = PowerPayload(sample.power_w)
        case SpO2Sample():
            payload = SpO2Payload(sample.spo2_pct, sample.pulse_bpm)
        case _:
            raise TypeError(f"no live kind for {type(sample).__name__}")
    return payload.result(athlete, sample.t_ns, device)


#: Names the processors' ``Alert`` uses → names of the alert object in SCHEMA.md.
_ALERT_RENAMES: Final = {
    "rule_id": "rule",
    "raised_at_ns": "raised_ts_ns",
    "cleared_at_ns": "cleared_ts_ns",
}


def alert_json(alert: object) -> dict[str, JsonValue]:
    """One alert as the SCHEMA.md object ``{rule, severity, state, message, advice,
    evidence, source, raised_ts_ns, cleared_ts_ns}`` (see :meth:`AlertPayload.of`)."""
    return _dataclass_json(AlertPayload.of(alert))


def alert_result(
    athlete: str,
    event: object,
    active: Sequence[object],
    *,
    ts_ns: int | None = None,
) -> Result:
    """The ``alerts`` envelope: the event that changed the book and every open alert.

    ``event`` and each of ``active`` are alerts as :meth:`AlertPayload.of` takes them. The
    time defaults to the event's ``cleared_ts_ns`` when cleared, else its
    ``raised_ts_ns``.
    """
    payload = AlertsPayload(
        active=tuple(AlertPayload.of(a) for a in active), event=AlertPayload.of(event)
    )
    when = ts_ns
    if when is None:
        cleared = payload.event.state == "cleared"
        when = payload.event.cleared_ts_ns if cleared else payload.event.raised_ts_ns
        if when is None:
            key = "cleared_ts_ns" if cleared else "raised_ts_ns"
            raise ValueError(f"alert event has no integer {key}: pass ts_ns=")
    return payload.result(athlete, when)
