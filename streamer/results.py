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
:func:`payload_fields`. The way back is typed too: ``result.payload`` (or
:func:`parse` ``(kind, fields)``, :meth:`Payload.from_fields`) is the payload a subscriber
decodes, so consumers read ``payload.drop_pct``, never ``fields["drop_pct"]``. Each
payload field declares its unit, meaning and InfluxDB column (:func:`column`), from which
:mod:`streamer.sinks.influx_schema` derives the schema and ``docs/generate.py`` the field
tables of docs/topics.md and docs/influx-schema.md.

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
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from types import MappingProxyType
from typing import ClassVar, Final, Self, TypeVar

from devices.records import (
    ForceSample,
    HeartRateSample,
    MeasuredSample,
    PowerSample,
    SmO2Sample,
    SpO2Sample,
)
from streamer.errors import StreamerError

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
    # Lab markers entered by hand (GSH:GSSG, dROMs, lipid dipstick).
    LAB = "lab"
    # Device state: one retained topic per device, published by `run` (MQTT only).
    DEVICE = "device"

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
    ``gateway`` is the team gateway whose record produced a live sample (a team worker sets
    it from the record's ``Redox-Gateway`` header; InfluxDB tags the point with it, MQTT
    payloads do not carry it); ``None`` on one box and for durable results.
    """

    kind: Kind
    athlete: str
    ts_ns: int
    fields: Mapping[str, JsonValue] = field(default_factory=dict)
    device: str | None = None
    gateway: str | None = None
    _payload: Payload | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind(self.kind))
        if not isinstance(self.ts_ns, int) or isinstance(self.ts_ns, bool) or self.ts_ns < 0:
            raise ValueError(f"ts_ns must be a non-negative int (ns since epoch): {self.ts_ns!r}")
        if not self.athlete:
            raise ValueError("athlete must be a non-empty id")
        if (self.kind.is_live or self.kind is Kind.DEVICE) and not self.device:
            raise ValueError(f"a {self.kind.value} result needs its device")
        clash = RESERVED_KEYS.intersection(self.fields)
        if clash:
            raise ValueError(f"fields may not use the payload header keys {sorted(clash)}")
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    @property
    def payload(self) -> Payload:
        """The typed payload of :attr:`fields` (:func:`parse`, made once): what a subscriber
        decodes from the JSON. Raises :class:`PayloadError` when the fields are not one."""
        parsed = self._payload
        if parsed is None:
            parsed = parse(self.kind, self.fields)
            object.__setattr__(self, "_payload", parsed)
        return parsed

    def received_by(self, gateway: str) -> Result:
        """This result tagged with the team gateway whose record produced it
        (:attr:`gateway`). Its fields, already checked and frozen, and its payload, once
        parsed, are shared: a team worker tags every live sample (~1 µs, where
        ``dataclasses.replace`` checks and copies them again, ~4 µs)."""
        tagged = object.__new__(Result)
        for name in _RESULT_SLOTS:
            object.__setattr__(tagged, name, getattr(self, name))
        object.__setattr__(tagged, "gateway", gateway)
        return tagged

    def payload_as(self, cls: type[P]) -> P:
        """:attr:`payload` as ``cls`` (``result.payload_as(GripPayload).drop_pct``);
        :class:`PayloadError` when the result is another kind or scope."""
        if cls.KIND is not self.kind:
            raise PayloadError(f"a {self.kind.value} result is no {cls.__name__}")
        payload = self.payload
        if not isinstance(payload, cls):
            raise PayloadError(f"a {self.kind.value} result is no {cls.__name__}: {payload!r}")
        return payload

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


RETAINED_KINDS: Final = frozenset({Kind.MORNING, Kind.ALERTS, Kind.STATUS, Kind.DEVICE})


# --- one frozen payload type per result kind ----------------------------------------------
#
# Each payload type fixes a result kind's fields: their published names (units in them),
# their order in the MQTT JSON, their unit and meaning, and where each goes in InfluxDB.
# Every field is declared with :func:`column` (``field(metadata=column("float", "ms",
# "…"))``), so a new field cannot be left out of the schema or the docs by accident:
# :mod:`streamer.sinks.influx_schema` derives its measurements, tags and field types from
# these declarations, ``docs/generate.py`` the field tables of docs/topics.md and
# docs/influx-schema.md, and :func:`parse` the way back from JSON fields to the payload.

#: What a payload field becomes in InfluxDB: a field of that type, a tag, or nothing.
INFLUX_COLUMNS: Final = ("float", "int", "bool", "str", "tag", None)


def column(
    influx: str | None,
    unit: str,
    doc: str,
    *,
    name: str | None = None,
    omit_if_none: bool = False,
    influx_doc: str | None = None,
    absent: JsonValue = None,
) -> Mapping[str, object]:
    """The metadata of a payload field (``field(metadata=column(...))``).

    ``influx``: ``"float"``, ``"int"``, ``"bool"`` or ``"str"`` (an InfluxDB field of that
    type), ``"tag"``, or ``None`` (published on MQTT only). ``unit`` as docs show it
    (``"ms"``, ``"%"``, ``""`` for none) and ``doc``, what the value means, make the row of
    the field in docs/topics.md (and docs/influx-schema.md, with ``influx_doc`` instead when
    the point says something else, e.g. one ``rr_ms`` per beat). ``name``: the published
    name when it is not a Python name (``class``). ``omit_if_none``: left out of the payload
    when ``None`` instead of published as null. ``absent``: for a field added after results
    were first stored, what its absence in an older stored result stands for (the history
    outlives the code that wrote it).
    """
    if influx not in INFLUX_COLUMNS:
        raise ValueError(f"InfluxDB column {influx!r} is none of {INFLUX_COLUMNS}")
    if not doc:
        raise ValueError("a payload field needs its meaning (doc) for docs/topics.md")
    meta: dict[str, object] = {"influx": influx, "unit": unit, "doc": doc}
    if name is not None:
        meta["name"] = name
    if omit_if_none:
        meta["omit_if_none"] = True
    if influx_doc is not None:
        meta["influx_doc"] = influx_doc
    if absent is not None:
        meta["absent"] = absent
    return MappingProxyType(meta)


def published_name(f: dataclasses.Field[object]) -> str:
    """The name a payload field is published under (its attribute name unless renamed)."""
    name = f.metadata.get("name", f.name)
    return str(name)


class PayloadError(StreamerError, ValueError):
    """JSON fields that are not a payload of their kind (names the kind, the field and what
    was found)."""


@dataclass(frozen=True, slots=True)
class Payload:
    """Base of the payload types: ``KIND`` is the result kind, ``MEASUREMENT`` the InfluxDB
    measurement its results are written to, or ``None`` for a kind published on MQTT only.
    ``DEVICE``: its results carry the device they come from (``device`` topic segment,
    payload key and InfluxDB tag). ``INFLUX_OBJECT`` names a field holding a nested payload
    whose columns the point takes instead (``alerts`` → its ``event``);
    ``INFLUX_DERIVED`` point fields computed by :mod:`streamer.sinks.influx_schema`, name →
    (``float`` … ``str``, meaning)."""

    KIND: ClassVar[Kind]
    MEASUREMENT: ClassVar[str | None]
    DEVICE: ClassVar[bool] = False
    INFLUX_OBJECT: ClassVar[str | None] = None
    INFLUX_DERIVED: ClassVar[Mapping[str, tuple[str, str]]] = MappingProxyType({})

    def fields(self) -> dict[str, JsonValue]:
        """The payload as the result's JSON fields, in declaration order."""
        return payload_fields(self)

    def result(self, athlete: str, ts_ns: int, device: str | None = None) -> Result:
        """The envelope of this payload."""
        return Result(self.KIND, athlete, ts_ns, self.fields(), device)

    @classmethod
    def from_fields(cls, fields: Mapping[str, JsonValue]) -> Self:
        """The payload back from its JSON fields (:meth:`fields`, or a JSON decoder's dict).

        The inverse of :func:`payload_fields`: lists become tuples, objects nested payloads
        or dicts, ``null`` in a field that is not optional NaN (a non-finite float was
        published as null); an absent key takes the field's default, its declared
        ``absent`` value (a field newer than stored results), or ``None`` when the field is
        optional (absent and null both mean unknown). Keys the type does not know
        are ignored (SCHEMA.md: consumers ignore unknown keys). Raises
        :class:`PayloadError` naming the kind and the field.
        """
        return _dataclass_from_json(cls, fields, cls.KIND.value)


P = TypeVar("P", bound=Payload)


_RESULT_SLOTS: Final = tuple(f.name for f in dataclasses.fields(Result))


def payload_fields(payload: Payload) -> dict[str, JsonValue]:
    """``payload`` as JSON fields: published names, declaration order, values made JSON
    (:func:`to_jsonable`: NaN → ``None``, tuples → lists, nested payloads → objects).
    This is the one place a result's MQTT JSON fields are made."""
    return _dataclass_json(payload)


def _dataclass_json(record: object) -> dict[str, JsonValue]:
    cls = type(record)
    layout = _JSON_LAYOUTS.get(cls)
    if layout is None:
        layout = _JSON_LAYOUTS[cls] = tuple(
            (f.name, published_name(f), bool(f.metadata.get("omit_if_none")))
            for f in dataclasses.fields(record)  # type: ignore[arg-type]
        )
    out: dict[str, JsonValue] = {}
    for attribute, name, omit_if_none in layout:
        value = getattr(record, attribute)
        if value is None and omit_if_none:
            continue
        out[name] = to_jsonable(value)
    return out


_JSON_LAYOUTS: dict[type, tuple[tuple[str, str, bool], ...]] = {}
"""Per dataclass, made once: (attribute, published name, omitted when None) in declaration
order. ``dataclasses.fields()`` builds its tuple anew at every call, and every live
sample's fields are made by :func:`_dataclass_json`."""


# The way back, JSON → payload, is compiled once per annotation and payload type: the
# InfluxDB sink parses every heart-rate sample, so parsing must cost little more than
# building the payload.

_Decode = Callable[[JsonValue], object]


class _Mismatch(Exception):
    """A value that is not what its field declares; ``path`` is where, below the field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _expected(what: str, value: JsonValue) -> _Mismatch:
    return _Mismatch("", f"expected {what}, got {value!r}")


_DECODERS: dict[object, _Decode] = {}


def _decoder(tp: object) -> _Decode:
    """The function that turns JSON data into a value of the annotation ``tp``."""
    found = _DECODERS.get(tp)
    if found is None:
        found = _DECODERS[tp] = _make_decoder(tp)
    return found


def _make_decoder(tp: object) -> _Decode:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"payload fields take one type or None, not {tp}")
        inner = _decoder(args[0])

        def optional(value: JsonValue) -> object:
            return None if value is None else inner(value)

        return optional
    if tp is float:

        def real(value: JsonValue) -> object:
            if value is None:
                return math.nan  # a non-finite float is published as null
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value  # an int stays one: fields → payload → fields is exact
            raise _expected("float", value)

        return real
    if tp is int:

        def integer(value: JsonValue) -> object:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise _expected("int", value)

        return integer
    if tp is bool or tp is str:
        name = "bool" if tp is bool else "str"

        def plain(value: JsonValue) -> object:
            if isinstance(value, tp):
                return value
            raise _expected(name, value)

        return plain
    if origin is tuple:
        item_type, *rest = typing.get_args(tp)
        if rest != [Ellipsis]:
            raise TypeError(f"payload tuples are tuple[X, ...], not {tp}")
        item = _decoder(item_type)

        def sequence(value: JsonValue) -> object:
            if not isinstance(value, list):
                raise _expected("a list", value)
            out = []
            for i, v in enumerate(value):
                try:
                    out.append(item(v))
                except _Mismatch as exc:
                    raise _Mismatch(f"[{i}]{exc.path}", exc.message) from None
            return tuple(out)

        return sequence
    if origin in (Mapping, dict):
        key_type, value_type = typing.get_args(tp)
        if key_type is not str:
            raise TypeError(f"payload objects have str keys, not {tp}")
        member = _decoder(value_type)

        def mapping(value: JsonValue) -> object:
            if not isinstance(value, dict):
                raise _expected("an object", value)
            out = {}
            for k, v in value.items():
                try:
                    out[k] = member(v)
                except _Mismatch as exc:
                    raise _Mismatch(f".{k}{exc.path}", exc.message) from None
            return out

        return mapping
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        cls = tp

        def record(value: JsonValue) -> object:
            if not isinstance(value, dict):
                raise _expected("an object", value)
            return _build(cls, value)

        return record
    raise TypeError(f"no JSON form of {tp} in a payload")


_D = TypeVar("_D")

# How a field is filled when its key is missing, or that it is a constant of the type.
_REQUIRED, _DEFAULT, _NONE, _ABSENT, _CONSTANT = range(5)

_Plan = list[tuple[str, str, _Decode, int, object]]
_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    """(attribute, key, decoder, what a missing key means, its value) per field of ``cls``."""
    plan = _PLANS.get(cls)
    if plan is not None:
        return plan
    hints = typing.get_type_hints(cls)
    plan = []
    for f in dataclasses.fields(cls):
        decode = _decoder(hints[f.name])
        extra: object = None
        if not f.init:
            mode, extra = _CONSTANT, f.default  # ``scope``: the fields must say the same
        elif "absent" in f.metadata:
            absent: JsonValue = f.metadata["absent"]
            mode, extra = _ABSENT, decode(absent)
        elif f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
            mode = _DEFAULT
        elif type(None) in typing.get_args(hints[f.name]):
            mode = _NONE  # absent and null both mean unknown
        else:
            mode = _REQUIRED
        plan.append((f.name, published_name(f), decode, mode, extra))
    _PLANS[cls] = plan
    return plan


def _build(cls: type[_D], data: Mapping[str, JsonValue]) -> _D:
    values: dict[str, object] = {}
    for attribute, key, decode, mode, extra in _plan(cls):
        if key in data:
            value = data[key]
            if mode == _CONSTANT:
                if value != extra:
                    raise _Mismatch(f".{key}", f"expected {extra!r}, got {value!r}")
                continue
            try:
                values[attribute] = decode(value)
            except _Mismatch as exc:
                raise _Mismatch(f".{key}{exc.path}", exc.message) from None
        elif mode == _ABSENT:
            values[attribute] = extra
        elif mode == _NONE:
            values[attribute] = None
        elif mode == _REQUIRED:
            raise _Mismatch("", f"no {key!r} field (got {sorted(data)})")
    return cls(**values)


def _dataclass_from_json(cls: type[_D], data: Mapping[str, JsonValue], where: str) -> _D:
    """``data`` as the dataclass ``cls``; :class:`PayloadError` names ``where`` and the field."""
    try:
        return _build(cls, data)
    except _Mismatch as exc:
        raise PayloadError(f"{where}{exc.path}: {exc.message}") from None


@dataclass(frozen=True, slots=True)
class HeartRatePayload(Payload):
    """Live heart rate: ``rr_ms`` oldest first; ``beat_ts_ns`` the beat times when the
    pipeline knows them (absent otherwise). InfluxDB gets one ``rr_ms`` point per beat."""

    KIND: ClassVar[Kind] = Kind.HEART_RATE
    MEASUREMENT: ClassVar[str | None] = "heart_rate"
    DEVICE: ClassVar[bool] = True

    hr_bpm: int = field(
        metadata=column(
            "float",
            "bpm",
            "heart rate the strap reports",
            influx_doc="heart rate the strap reported, at the notification's time",
        )
    )
    rr_ms: tuple[float, ...] = field(
        metadata=column(
            "float",
            "ms",
            "beat-to-beat intervals in this notification, oldest first (may be empty)",
            influx_doc="one beat-to-beat interval, at the time of its beat (raw, before "
            "artefact correction)",
        )
    )
    beat_ts_ns: tuple[int, ...] | None = field(
        default=None,
        metadata=column(
            None,
            "ns",
            "the time of each beat in `rr_ms`, when known (RR values can arrive seconds "
            "after the beat)",
            omit_if_none=True,
        ),
    )


@dataclass(frozen=True, slots=True)
class SmO2Payload(Payload):
    """Live muscle oxygenation (``None``: no valid value)."""

    KIND: ClassVar[Kind] = Kind.SMO2
    MEASUREMENT: ClassVar[str | None] = "smo2"
    DEVICE: ClassVar[bool] = True

    smo2_pct: float | None = field(metadata=column("float", "%", "muscle oxygen saturation"))
    thb_gdl: float | None = field(metadata=column("float", "g/dl", "total haemoglobin"))


@dataclass(frozen=True, slots=True)
class ForcePayload(Payload):
    """Live force."""

    KIND: ClassVar[Kind] = Kind.FORCE
    MEASUREMENT: ClassVar[str | None] = "force"
    DEVICE: ClassVar[bool] = True

    force_kg: float | None = field(metadata=column("float", "kg", "force on the dynamometer"))


@dataclass(frozen=True, slots=True)
class PowerPayload(Payload):
    """Live power."""

    KIND: ClassVar[Kind] = Kind.POWER
    MEASUREMENT: ClassVar[str | None] = "power"
    DEVICE: ClassVar[bool] = True

    power_w: int = field(metadata=column("float", "W", "instantaneous power"))


@dataclass(frozen=True, slots=True)
class SpO2Payload(Payload):
    """Live pulse oximetry (``None``: the oximeter had no valid reading). Not "spo2" in
    InfluxDB: next to the muscle's "smo2" that name invites a wrong query."""

    KIND: ClassVar[Kind] = Kind.SPO2
    MEASUREMENT: ClassVar[str | None] = "pulse_oximetry"
    DEVICE: ClassVar[bool] = True

    spo2_pct: float | None = field(
        metadata=column(
            "float",
            "%",
            "arterial oxygen saturation; null when the oximeter had no valid reading",
            influx_doc="arterial oxygen saturation",
        )
    )
    pulse_bpm: float | None = field(
        metadata=column(
            "float",
            "bpm",
            "pulse rate; null when the oximeter had no valid reading",
            influx_doc="pulse rate",
        )
    )


@dataclass(frozen=True, slots=True)
class HrvPayload(Payload):
    """A rolling HRV window and the quality gate's verdict (a rejected window: no numbers)."""

    KIND: ClassVar[Kind] = Kind.HRV
    MEASUREMENT: ClassVar[str | None] = "hrv"

    accepted: bool = field(metadata=column("bool", "", "the window passed the quality gate"))
    reject_reason: str | None = field(metadata=column(None, "", "why it did not"))
    abnormal_pct: float | None = field(
        metadata=column("float", "%", "beats in the window more than 20% off their neighbours")
    )
    rmssd_ms: float | None = field(
        metadata=column(
            "float", "ms", "root mean square of successive differences (normal-to-normal)"
        )
    )
    ln_rmssd: float | None = field(metadata=column("float", "ln(ms)", "natural log of RMSSD"))
    sdnn_ms: float | None = field(
        metadata=column("float", "ms", "standard deviation of the intervals")
    )
    mean_nn_ms: float | None = field(metadata=column("float", "ms", "mean interval"))
    mean_hr_bpm: float | None = field(
        metadata=column("float", "bpm", "mean heart rate: 60 000 / mean interval")
    )
    pnn50_pct: float | None = field(
        metadata=column("float", "%", "share of successive differences above 50 ms")
    )
    n_beats: int | None = field(metadata=column("int", "beats", "intervals in the window"))
    window_s: float = field(metadata=column(None, "s", "window length (60)"))


@dataclass(frozen=True, slots=True)
class MorningPayload(Payload):
    """A morning reading (date = its UTC day) with the baselines and bands after it."""

    KIND: ClassVar[Kind] = Kind.MORNING
    MEASUREMENT: ClassVar[str | None] = "morning"

    date: str = field(
        metadata=column(None, "", "the calendar day of the reading (`YYYY-MM-DD`, UTC)")
    )
    ln_rmssd: float | None = field(metadata=column("float", "ln(ms)", "the reading's lnRMSSD"))
    rmssd_ms: float | None = field(metadata=column("float", "ms", "its RMSSD"))
    resting_hr_bpm: float | None = field(metadata=column("float", "bpm", "resting heart rate"))
    artifacts_pct: float | None = field(
        metadata=column("float", "%", "beats the quality gate found abnormal")
    )
    corrected_pct: float | None = field(
        metadata=column(None, "%", "beats the artefact correction changed")
    )
    n_beats: int = field(metadata=column(None, "beats", "intervals analysed"))
    accepted: bool = field(
        metadata=column(
            "bool",
            "",
            "false: too many artefacts or too short; the numbers are not used for trends",
            influx_doc="false: rejected (too many artefacts, too short); filter with "
            '`"accepted" = true`',
        )
    )
    reject_reason: str | None = field(metadata=column(None, "", "why it was rejected"))
    ln_rmssd_baseline_mean: float | None = field(
        metadata=column("float", "ln(ms)", "mean lnRMSSD over the baseline days (d−35 … d−8)")
    )
    ln_rmssd_baseline_sd: float | None = field(
        metadata=column("float", "ln(ms)", "their standard deviation")
    )
    ln_rmssd_band_low: float | None = field(
        metadata=column("float", "ln(ms)", "normal band, low edge: mean − 0.5·SD")
    )
    ln_rmssd_band_high: float | None = field(
        metadata=column("float", "ln(ms)", "normal band, high edge: mean + 0.5·SD")
    )
    ln_rmssd_7d_mean: float | None = field(
        metadata=column("float", "ln(ms)", "mean of the last 7 days")
    )
    ln_rmssd_cv_pct: float | None = field(
        metadata=column("float", "%", "coefficient of variation of the last 7 days")
    )
    rhr_baseline_median_bpm: float | None = field(
        metadata=column("float", "bpm", "median resting HR over the baseline days")
    )
    rhr_7d_mean_bpm: float | None = field(
        metadata=column("float", "bpm", "mean resting HR of the last 7 days")
    )
    baseline_status: str = field(
        default="none",
        metadata=column(
            "str",
            "",
            "`none`; `provisional` (from 3 valid mornings: a band widened to the SD's upper "
            "90% confidence limit, no pull-back alerts); `established` (14 valid mornings in "
            "d−35 … d−8)",
        ),
    )
    baseline_days: int = field(
        default=0, metadata=column("int", "days", "valid mornings the baseline rests on")
    )
    baseline_note: str | None = field(
        default=None,
        metadata=column(None, "", "what a reader must know while the baseline is not established"),
    )
    source: str = field(
        default="rr",
        metadata=column(
            "str",
            "",
            "`rr`: a reading analysed here (live or imported RR); else the app whose daily "
            "values were imported (`hrv4training`, `elitehrv`: no beats, so `n_beats` is 0 "
            "and the quality fields are null)",
        ),
    )


@dataclass(frozen=True, slots=True)
class EffortPayload(Payload):
    """One SmO2 effort's recovery (``oxygenation`` with ``scope`` ``effort``)."""

    KIND: ClassVar[Kind] = Kind.OXYGENATION
    MEASUREMENT: ClassVar[str | None] = "oxygen_recovery"
    DEVICE: ClassVar[bool] = True

    scope: str = field(default="effort", init=False, metadata=column("tag", "", "`effort`"))
    work_end_source: str = field(
        metadata=column(
            None,
            "",
            "what marked the end of work: `power` (a power meter), `hr` or `smo2` (the trace "
            "itself)",
        )
    )
    baseline_pct: float | None = field(
        metadata=column("float", "%", "SmO2 at rest before the effort")
    )
    min_pct: float | None = field(
        metadata=column("float", "%", "SmO2 at the end of work (median of the last 20 s)")
    )
    t_half_s: float | None = field(
        metadata=column("float", "s", "time to recover half of the drop")
    )
    t95_s: float | None = field(
        metadata=column("float", "s", "time to recover 95% of the drop (the recovery time)")
    )
    tau_s: float | None = field(
        metadata=column(
            "float", "s", "time constant of a delayed mono-exponential fit of the recovery"
        )
    )
    delay_s: float | None = field(
        metadata=column(None, "s", "the fit's delay before reoxygenation begins")
    )
    reox_rate_pct_s: float | None = field(metadata=column("float", "%/s", "reoxygenation rate"))
    overshoot_pct: float | None = field(
        metadata=column("float", "%", "hyperaemic overshoot above the baseline")
    )
    recovered: bool = field(
        metadata=column(
            None,
            "",
            "false: not back to 95% before the next effort or the end (times are lower bounds)",
        )
    )
    observed_s: float | None = field(
        metadata=column(None, "s", "how long the recovery was watched")
    )


@dataclass(frozen=True, slots=True)
class SessionPayload(Payload):
    """A training session's summary (``oxygenation`` with ``scope`` ``session``)."""

    KIND: ClassVar[Kind] = Kind.OXYGENATION
    MEASUREMENT: ClassVar[str | None] = "oxygen_recovery"
    DEVICE: ClassVar[bool] = True

    scope: str = field(default="session", init=False, metadata=column("tag", "", "`session`"))
    recovery_s: float | None = field(
        metadata=column(
            "float",
            "s",
            "the session's recovery time: median T95 of its efforts (the "
            "`smo2_slow_recovery` input)",
        )
    )
    recovery_is_lower_bound: bool = field(
        metadata=column(None, "", "true when unrecovered efforts make it a lower bound")
    )
    n_efforts: int = field(metadata=column("int", "", "efforts detected"))
    n_recovered: int = field(metadata=column(None, "", "of which recovered"))
    duration_s: float = field(metadata=column(None, "s", "session length"))
    rpe: float | None = field(
        metadata=column(None, "0–10", "perceived exertion entered for the session")
    )
    mean_power_w: float | None = field(metadata=column(None, "W", "mean power over the session"))
    high_intensity: bool | None = field(
        default=None,
        metadata=column(
            None,
            "",
            "high-intensity by its RPE (≥ 7), power or time in heart-rate zone 3 "
            "(docs/rules.md, `hi_spacing`); null: none known",
        ),
    )
    tags: tuple[str, ...] = field(
        default=(), metadata=column(None, "", "the labels given with `session start --tag`")
    )
    power_plateau: bool | None = field(
        default=None,
        metadata=column(
            "bool",
            "",
            "the `power_plateau` finding (info): power at matched effort (same RPE) flat for "
            "21 days while ≥ 2 sessions a week were logged (docs/rules.md); null: undecided "
            "(too few sessions with RPE and power)",
        ),
    )
    power_change_pct: float | None = field(
        default=None,
        metadata=column(
            "float",
            "%",
            "`power_plateau`'s input: the change of power at matched effort over the 21 days "
            "ending with this session, in percent of its mean; null: undecided",
        ),
    )
    hr_zone3_s: float | None = field(
        default=None,
        metadata=column(
            None,
            "s",
            "time in heart-rate zone 3 of Seiler's model (above 87% of `max_hr_bpm`, or from "
            "`threshold_hr_bpm`); null: no heart rate or no zones configured",
        ),
    )


@dataclass(frozen=True, slots=True)
class GripPayload(Payload):
    """A grip test: MVC, the worst post-session test, the threshold used and the class."""

    KIND: ClassVar[Kind] = Kind.GRIP
    MEASUREMENT: ClassVar[str | None] = "grip_test"
    DEVICE: ClassVar[bool] = True

    mvc_kg: float = field(
        metadata=column("float", "kg", "pre-session maximal voluntary contraction")
    )
    peak_kg: float = field(
        metadata=column("float", "kg", "best squeeze of the post test with the largest drop")
    )
    drop_pct: float = field(
        metadata=column("float", "%", "largest drop below MVC after the session")
    )
    minutes_after: float = field(metadata=column("float", "min", "when that drop was measured"))
    threshold_pct: float = field(
        metadata=column(
            "float",
            "%",
            "the drop that counts: beyond the athlete's own test noise (1.65·√2·CV), or the "
            "article's 10% until that is known",
            influx_doc="drop that counts for this test (own noise, or the article's 10% until "
            "it is known; the MQTT payload's `threshold_basis` says which)",
        )
    )
    threshold_basis: str = field(
        metadata=column(
            None,
            "",
            "`personal` (own noise, from 5 stored grip tests on) or `article` (the article's "
            "10%: own noise not yet known); `unknown` in grip tests stored before it existed",
            absent="unknown",
        )
    )
    grip_class: str = field(
        metadata=column(
            "tag",
            "",
            "`normal`, `grip_signal` (recovered within 15 min: the good kind), "
            "`grip_spillover` (still down at 30 min), `delayed` (recovered only by 30 min), "
            "`pending` (not recovered at 15 min, no 30-min test) or `late` (a drop first "
            "seen at 30 min)",
            name="class",
            influx_doc="`normal`, `grip_signal`, `grip_spillover`, `delayed`, `pending`, `late`",
        )
    )
    noise_cv_pct: float | None = field(
        metadata=column(
            None,
            "%",
            "the athlete's test-to-test MVC variation behind a `personal` threshold; null "
            "with `article`",
        )
    )
    drops_pct: Mapping[str, float] = field(
        metadata=column(
            None, "%", 'drop at each post test, keyed by minutes after (`"0"`, `"5"`, …)'
        )
    )


@dataclass(frozen=True, slots=True)
class LabPayload(Payload):
    """A lab marker entered by hand (``redox-streamer log``, ``<base>/<athlete>/set/<marker>``)
    and its reading against the rules (:mod:`processors.labs`); the result's time is when
    the sample was taken. Each marker fills its own value field, the others are left out."""

    KIND: ClassVar[Kind] = Kind.LAB
    MEASUREMENT: ClassVar[str | None] = "lab"

    marker: str = field(metadata=column("tag", "", "`gsh_gssg`, `droms` or `lipid_dipstick`"))
    timing: str | None = field(
        metadata=column(
            "tag",
            "",
            "when the sample was taken: `fasted`, `pre-training` (both resting: the bands "
            "apply) or `post-45min` (45 min after the session: not judged); null for a "
            "dipstick entered without one",
            influx_doc="`fasted`, `pre-training`, `post-45min` (absent for a dipstick without one)",
        )
    )
    gsh_gssg_ratio: float | None = field(
        default=None,
        metadata=column(
            "float",
            ":1",
            "reduced to oxidized glutathione, n of n:1 (`gsh_gssg` only)",
            omit_if_none=True,
        ),
    )
    droms_carr_u: float | None = field(
        default=None,
        metadata=column(
            "float",
            "CARR U",
            "reactive oxygen metabolites (1 CARR U = 0.08 mg/dL H2O2; `droms` only)",
            omit_if_none=True,
        ),
    )
    positive: bool | None = field(
        default=None,
        metadata=column(
            "bool",
            "",
            "the urine lipid-peroxidation strip read positive (`lipid_dipstick` only)",
            omit_if_none=True,
        ),
    )
    band: str = field(
        default="",
        metadata=column(
            "str",
            "",
            "GSH:GSSG: `leaning_oxidative` (< 100:1), `below_trained` (100–150), `trained` "
            "(150–300), `above_trained` (300–400), `over_supplemented` (> 400); dROMs: "
            "`above_baseline` (> 35% over it), `within_baseline`, `no_baseline` (fewer than "
            "3 earlier resting values); dipstick: `positive`, `negative`; any marker drawn "
            "`post-45min`: `post_session`",
            influx_doc="the value's band (see docs/topics.md `<base>/<athlete>/lab`)",
        ),
    )
    judged: bool = field(
        default=False,
        metadata=column(
            "bool",
            "",
            "the value was set against the rule's thresholds (false: post-session draw, or "
            "dROMs without a baseline yet)",
        ),
    )
    finding: str | None = field(
        default=None,
        metadata=column(None, "", "an `info` rule the entry meets (`gsh_gssg_high`), else null"),
    )
    baseline_carr_u: float | None = field(
        default=None,
        metadata=column(
            "float",
            "CARR U",
            "dROMs: the athlete's baseline, the median of their last 5 earlier resting "
            "values (absent with fewer than 3)",
            omit_if_none=True,
        ),
    )
    change_pct: float | None = field(
        default=None,
        metadata=column(
            "float",
            "%",
            "dROMs: change against that baseline; GSH:GSSG drawn `post-45min`: change "
            "against the same day's last resting draw (absent without one)",
            omit_if_none=True,
        ),
    )


@dataclass(frozen=True, slots=True)
class AlertPayload:
    """One alert as SCHEMA.md describes it; the ``alert`` point takes its columns."""

    rule: str = field(metadata=column("tag", "", "rule id (docs/rules.md)"))
    severity: str = field(
        metadata=column(
            "tag",
            "",
            "`warning` or `pull_back` (`info` rules such as `grip_signal` are findings "
            "reported in their result, never alerts; a store from before may still clear one)",
            influx_doc="`warning` or `pull_back` (an `info` one only when an old one clears)",
        )
    )
    state: str = field(metadata=column("str", "", "`raised` or `cleared`"))
    message: str = field(
        default="",
        metadata=column("str", "", "what was seen, with the numbers", influx_doc="what was seen"),
    )
    advice: str = field(
        default="",
        metadata=column(
            "str",
            "",
            "what to do (for pull-back rules: cut volume ~40% for a week, …)",
            influx_doc="what to do",
        ),
    )
    evidence: Mapping[str, float] = field(
        default_factory=dict,
        metadata=column(
            None, "", "the numbers behind it, unit-named (`delta_bpm`, `recovery_time_s`, …)"
        ),
    )
    source: str = field(
        default="", metadata=column(None, "", "where the rule and its threshold come from")
    )
    raised_ts_ns: int | None = field(
        default=None, metadata=column(None, "ns", "when it was raised, ns since the epoch")
    )
    cleared_ts_ns: int | None = field(
        default=None, metadata=column(None, "ns", "when it cleared (null while it is open)")
    )
    volume_cut_until: str | None = field(
        default=None,
        metadata=column(
            "str",
            "",
            "pull-back alerts: the end of the week of ~40% cut volume, the raised day + 7 "
            "(UTC date, `YYYY-MM-DD`); null for warnings",
        ),
    )
    clear_reason: str | None = field(
        default=None,
        metadata=column(
            "str",
            "",
            "why it cleared: `resume` (a pull-back rule's signals back in their normal "
            'band, docs/rules.md "Resume"), `not_met` (a warning\'s condition no longer '
            "holds), `retired` (a rule that no longer raises alerts); null while raised",
            influx_doc="`resume`, `not_met` or `retired` (cleared events only)",
        ),
    )
    clear_message: str | None = field(
        default=None,
        metadata=column(
            "str",
            "",
            "the rule's verdict when it cleared, with the numbers (null while raised)",
            influx_doc="the rule's verdict when it cleared",
        ),
    )
    resume_since_ts_ns: int | None = field(
        default=None,
        metadata=column(
            "int",
            "ns",
            "`resume`: since when the signals are back in band (the first in-band morning, "
            "or the session or grip test that was), ns since the epoch",
        ),
    )
    resume_evidence: Mapping[str, float] = field(
        default_factory=dict,
        metadata=column(
            None,
            "",
            "`resume`: the rule's own numbers when it cleared (e.g. `mornings_in_band`, "
            "`rhr_band_high_bpm`, `delta_bpm`); empty otherwise",
        ),
    )

    @classmethod
    def of(cls, alert: object) -> AlertPayload:
        """From a ``processors.alerts.Alert``, its ``to_dict()``, or a mapping in schema
        form; ``ValueError`` when rule, severity or state is missing."""
        to_dict = getattr(alert, "to_dict", None)
        # A processors Alert says more in its to_dict() than its fields (volume_cut_until).
        data = to_jsonable(to_dict() if callable(to_dict) else alert)
        if not isinstance(data, dict):
            raise TypeError(f"an alert must be a record or a mapping, got {type(alert).__name__}")
        data = {_ALERT_RENAMES.get(k, k): v for k, v in data.items()}
        missing = [k for k in ("rule", "severity", "state") if data.get(k) is None]
        if missing:
            raise ValueError(f"alert has no {', '.join(missing)}: {data!r}")
        evidence = data.get("evidence")
        resume = data.get("resume_evidence")
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
            volume_cut_until=_str_or_none(data.get("volume_cut_until")),
            clear_reason=_str_or_none(data.get("clear_reason")),
            clear_message=_str_or_none(data.get("clear_message")),
            resume_since_ts_ns=_int_or_none(data.get("resume_since_ts_ns")),
            resume_evidence={
                str(k): float(v)
                for k, v in (resume.items() if isinstance(resume, dict) else ())
                if isinstance(v, int | float)
            },
        )

    @classmethod
    def from_fields(cls, fields: Mapping[str, JsonValue]) -> AlertPayload:
        """The alert back from its JSON object, as :meth:`Payload.from_fields` does."""
        return _dataclass_from_json(cls, fields, "alert")

    def fields(self) -> dict[str, JsonValue]:
        """The alert as its JSON object (SCHEMA.md order)."""
        return _dataclass_json(self)


def _int_or_none(value: JsonValue) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str_or_none(value: JsonValue) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True, slots=True)
class AlertsPayload(Payload):
    """The athlete's open alerts and the event that changed them. InfluxDB gets one
    ``alert`` point from ``event``: its tags and string fields, and ``active`` (1 raised,
    0 cleared)."""

    KIND: ClassVar[Kind] = Kind.ALERTS
    MEASUREMENT: ClassVar[str | None] = "alert"
    INFLUX_OBJECT: ClassVar[str | None] = "event"
    INFLUX_DERIVED: ClassVar[Mapping[str, tuple[str, str]]] = MappingProxyType(
        {"active": ("int", "1 raised, 0 cleared: the last value per rule says whether it is open")}
    )

    active: tuple[AlertPayload, ...] = field(
        metadata=column(None, "", "every alert open after this change (empty when none)")
    )
    event: AlertPayload = field(metadata=column(None, "", "the alert that changed"))


@dataclass(frozen=True, slots=True)
class LabLatest:
    """A marker's last lab entry as the ``status`` payload carries it (retained, so Home
    Assistant's lab sensors keep their value over a restart)."""

    value: float | None = field(
        metadata=column(
            None,
            "",
            "GSH:GSSG ratio (n of n:1) or dROMs (CARR U); the dipstick: 1 positive, 0 negative",
        )
    )
    timing: str | None = field(
        metadata=column(None, "", "`fasted`, `pre-training`, `post-45min`; null: none given")
    )
    band: str = field(metadata=column(None, "", "its band, as in the `lab` payload"))
    date: str = field(metadata=column(None, "", "the UTC day the sample was taken"))
    ts_ns: int = field(metadata=column(None, "ns", "when the sample was taken"))

    @classmethod
    def of(cls, lab: LabPayload, ts_ns: int) -> LabLatest:
        """From a ``lab`` result's payload and its time (when the sample was taken)."""
        value = lab.gsh_gssg_ratio if lab.gsh_gssg_ratio is not None else lab.droms_carr_u
        if value is None and lab.positive is not None:
            value = 1.0 if lab.positive else 0.0
        day = dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC).date().isoformat()
        return cls(value, lab.timing, lab.band, day, ts_ns)


@dataclass(frozen=True, slots=True)
class StatusPayload(Payload):
    """The readiness summary: a state topic derived from the others, MQTT only."""

    KIND: ClassVar[Kind] = Kind.STATUS
    MEASUREMENT: ClassVar[str | None] = None

    state: str = field(
        metadata=column(
            None,
            "",
            "`pull_back` if a pull-back alert is open, else `caution` if a warning is, else `ok`",
        )
    )
    open_alerts: tuple[str, ...] = field(metadata=column(None, "", "rule ids of the open alerts"))
    ln_rmssd: float | None = field(metadata=column(None, "ln(ms)", "last morning lnRMSSD"))
    ln_rmssd_band_low: float | None = field(metadata=column(None, "ln(ms)", "its band, low edge"))
    ln_rmssd_band_high: float | None = field(metadata=column(None, "ln(ms)", "its band, high edge"))
    morning_date: str | None = field(metadata=column(None, "", "the day of that morning reading"))
    devices_active: tuple[str, ...] = field(
        metadata=column(None, "", "devices heard from in the last 10 s")
    )
    pull_back_since: str | None = field(
        default=None,
        metadata=column(
            None,
            "",
            "while a pull-back alert is open: the UTC day the first of them was raised "
            "(`YYYY-MM-DD`); null otherwise",
        ),
    )
    volume_cut_until: str | None = field(
        default=None,
        metadata=column(
            None,
            "",
            "while pulling back: the latest end of the open alerts' weeks of ~40% cut volume "
            "(UTC date); null when none has one (`hr_grip_flat` has its own back-off)",
        ),
    )
    back_off_until: str | None = field(
        default=None,
        metadata=column(
            None,
            "",
            "while `hr_grip_flat` is open: the end of its 48 h of lower intensity (UTC, ISO "
            "8601); null otherwise",
        ),
    )
    resume_since: str | None = field(
        default=None,
        metadata=column(
            None,
            "",
            "no pull-back alert open and one cleared with `resume` within the last 7 days: "
            "the UTC day its signals are back in band since (the latest of those); null "
            "otherwise. Re-published when that window ends, on the next reading",
        ),
    )
    labs: Mapping[str, LabLatest] = field(
        default_factory=dict,
        metadata=column(
            None,
            "",
            "the last lab entry per marker (`gsh_gssg`, `droms`, `lipid_dipstick`): a lab "
            "value object each (below); markers never entered are absent",
        ),
    )


@dataclass(frozen=True, slots=True)
class DeviceStatePayload(Payload):
    """One device's connection as ``run`` sees it: retained, re-published when the
    connection or the battery changes and every 10 s while connected (for
    ``last_seen_ts_ns``), and once with ``connection`` ``stopped`` when ``run`` ends
    (:mod:`streamer.app.device_state`). MQTT only; its time is when it was published."""

    KIND: ClassVar[Kind] = Kind.DEVICE
    MEASUREMENT: ClassVar[str | None] = None
    DEVICE: ClassVar[bool] = True

    device_kind: str = field(
        metadata=column(None, "", "what the device is for: `strap`, `smo2`, `grip`, `power` …")
    )
    model: str = field(metadata=column(None, "", "its model (the device table's row name)"))
    address: str | None = field(
        metadata=column(None, "", "its Bluetooth address (null while found by name only)")
    )
    connected: bool = field(
        metadata=column(None, "", "true while a subscribed link is up (HA `connectivity`)")
    )
    connection: str = field(
        metadata=column(
            None,
            "",
            "`connected`; `connecting` (not yet connected in this run); `reconnecting` (the "
            "link was lost, retrying with back-off); `stopped` (`run` ended)",
        )
    )
    battery_pct: int | None = field(
        metadata=column(
            None, "%", "battery level the device last reported (null: not reported this run)"
        )
    )
    last_seen_ts_ns: int | None = field(
        metadata=column(
            None, "ns", "when its last notification arrived, ns since the epoch (null: never)"
        )
    )
    reconnects: int = field(metadata=column(None, "", "connections after the first, this run"))
    gaps: int = field(metadata=column(None, "", "interruptions marked in its stream, this run"))
    problem: str | None = field(
        metadata=column(
            None,
            "",
            "why it is not connected, when known: the Bluetooth adapter's problem with its "
            "fix, else the last connection error",
        )
    )


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
    DeviceStatePayload,
    LabPayload,
)
"""Every payload type; each result kind has at least one (``oxygenation`` has two, told
apart by their constant ``scope``). The one table :func:`parse`, the InfluxDB schema and the
docs are derived from."""


_TYPES_OF_KIND: Final[Mapping[Kind, tuple[type[Payload], ...]]] = {
    kind: tuple(cls for cls in PAYLOAD_TYPES if cls.KIND is kind) for kind in Kind
}


def payload_constants(cls: type[Payload]) -> dict[str, object]:
    """The published fields a payload type fixes, key → value (``init=False`` fields:
    ``SessionPayload`` → ``{"scope": "session"}``)."""
    return {published_name(f): f.default for f in dataclasses.fields(cls) if not f.init}


def payload_type(kind: Kind | str, fields: Mapping[str, JsonValue]) -> type[Payload]:
    """The payload type of a ``kind`` result with these ``fields`` (for ``oxygenation``, the
    one whose ``scope`` they carry). Raises :class:`PayloadError` when none fits."""
    kind = Kind(kind)
    candidates = _TYPES_OF_KIND[kind]
    if len(candidates) == 1:
        return candidates[0]
    for cls in candidates:
        if all(fields.get(k) == v for k, v in payload_constants(cls).items()):
            return cls
    told = " or ".join(
        ", ".join(f"{k}={v!r}" for k, v in payload_constants(cls).items()) for cls in candidates
    )
    raise PayloadError(f"a {kind.value} result needs {told}; got {dict(fields)!r}")


def parse(kind: Kind | str, fields: Mapping[str, JsonValue]) -> Payload:
    """The typed payload of a ``kind`` result's JSON ``fields`` (see
    :meth:`Payload.from_fields`); :class:`PayloadError` when they are not one."""
    return payload_type(kind, fields).from_fields(fields)


def payload_key(cls: type[Payload] | type[AlertPayload] | type[LabLatest], attribute: str) -> str:
    """The published key of ``cls``'s field ``attribute`` (``GripPayload``, ``"grip_class"``
    → ``"class"``), for consumers that must name a key in text (Home Assistant templates);
    ``AttributeError`` if ``cls`` has no such field, so a renamed field fails at import."""
    for f in dataclasses.fields(cls):
        if f.name == attribute:
            return published_name(f)
    raise AttributeError(f"{cls.__name__} has no payload field {attribute!r}")


def _check_declared() -> None:
    """Every payload field is declared with :func:`column` (its unit, meaning, column)."""
    for cls in (*PAYLOAD_TYPES, AlertPayload, LabLatest):
        for f in dataclasses.fields(cls):
            if "doc" not in f.metadata:
                raise TypeError(
                    f"{cls.__name__}.{f.name} is not declared: give it "
                    'field(metadata=column("float", "ms", "what it means"))'
                )


_check_declared()


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
    result = payload.result(athlete, sample.t_ns, device)
    if not any(v is None or (isinstance(v, list) and None in v) for v in result.fields.values()):
        # Without a null (a NaN published) the fields parse back to this very payload:
        # kept, not parsed again by the InfluxDB sink for every sample (~4% of a team
        # worker's CPU). A NaN would parse back as None where the field is optional.
        object.__setattr__(result, "_payload", payload)
    return result


#: Names the processors' ``Alert`` uses → names of the alert object in SCHEMA.md.
_ALERT_RENAMES: Final = {
    "rule_id": "rule",
    "raised_at_ns": "raised_ts_ns",
    "cleared_at_ns": "cleared_ts_ns",
    "resume_since_ns": "resume_since_ts_ns",
}


def alert_json(alert: object) -> dict[str, JsonValue]:
    """One alert as the SCHEMA.md object ``{rule, severity, state, message, advice,
    evidence, source, raised_ts_ns, cleared_ts_ns, volume_cut_until, clear_reason,
    clear_message, resume_since_ts_ns, resume_evidence}`` (see :meth:`AlertPayload.of`)."""
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
