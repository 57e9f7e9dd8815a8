"""Result envelopes → InfluxDB points (SCHEMA.md), derived from the payload types.

Every payload type of :mod:`streamer.results` declares its measurement (or ``None``: MQTT
only, as ``status``) and each of its fields whether it is a tag, a field of which type, or
MQTT only; a field that declares nothing fails at import. :data:`MEASUREMENT`,
:data:`FIELD_TYPES` and :data:`TAG_FIELDS` are derived from them here, and
``docs/generate.py`` writes the tables of docs/influx-schema.md from the same declarations
(tags ``athlete`` always, ``device`` on results from one device, ``gateway`` on live
samples a team worker wrote: :attr:`Result.gateway`).

Two kinds are shaped by hand: a heart-rate sample is one ``rr_ms`` point per beat (at the
beat's time) with ``hr_bpm`` at the sample's time, and an ``alerts`` result one ``alert``
point for its ``event`` (its tags and string fields, and ``active`` 1 raised / 0 cleared).

Field types never change: InfluxDB 1.x rejects a field whose type differs from the one
already in the shard, so integers are written as floats except ``n_beats``, ``n_efforts``
and ``active``. The schema is closed: fields a result carries beyond these are published on
MQTT but not written to InfluxDB. ``None`` and non-finite values are left out (a point
with no field left is not written). Times are nanoseconds.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from influxdb_client.client.write import point as _point_module
from influxdb_client.domain import write_precision as _precision_module

from streamer.results import (
    PAYLOAD_TYPES,
    AlertsPayload,
    HeartRatePayload,
    JsonValue,
    Kind,
    Payload,
    Result,
    published_name,
)


class Point(Protocol):
    """What we use of ``influxdb_client.Point`` (the library ships no type hints for it)."""

    def to_line_protocol(self, precision: Any = None) -> str: ...


# influxdb-client's Point serialises line protocol (escaping, number formats); untyped.
_POINT: Any = _point_module.Point
_NS: Any = _precision_module.WritePrecision.NS

FLOAT: Final = float
INT: Final = int
BOOL: Final = bool
STR: Final = str


class SchemaError(ValueError):
    """A result field cannot be written with its schema type (names measurement and field)."""


def _columns(cls: type) -> list[tuple[str, str | None]]:
    """(published name, ``float``/``int``/``bool``/``str``/``tag`` or None) per field."""
    out: list[tuple[str, str | None]] = []
    for f in dataclasses.fields(cls):
        if "influx" not in f.metadata:
            raise SchemaError(
                f"{cls.__name__}.{f.name} declares no InfluxDB column: give it "
                'field(metadata=column("float", unit, doc)) or column(None, …) (MQTT only)'
            )
        column = f.metadata["influx"]
        out.append((published_name(f), None if column is None else str(column)))
    return out


def derive(
    payload_types: Sequence[type[Payload]] = PAYLOAD_TYPES,
) -> tuple[
    dict[str, dict[str, type]], dict[Kind, str], dict[str, tuple[str, ...]], frozenset[Kind]
]:
    """FIELD_TYPES, MEASUREMENT, TAG_FIELDS and MQTT_ONLY_KINDS from the payload types
    (``docs/generate.py`` derives the documented schema the same way)."""
    field_types: dict[str, dict[str, type]] = {}
    measurement: dict[Kind, str] = {}
    tags: dict[str, list[str]] = {}
    mqtt_only: set[Kind] = set()
    for cls in payload_types:
        name = cls.MEASUREMENT
        if name is None:
            mqtt_only.add(cls.KIND)
            continue
        if measurement.setdefault(cls.KIND, name) != name:
            raise SchemaError(f"{cls.KIND.value} results go to two measurements")
        source = cls
        if cls.INFLUX_OBJECT is not None:
            source = typing.get_type_hints(cls)[cls.INFLUX_OBJECT]
        types = field_types.setdefault(name, {})
        derived = [(name, kind) for name, (kind, _doc) in cls.INFLUX_DERIVED.items()]
        columns = [*_columns(source), *derived]
        for column, kind in columns:
            if kind == "tag":
                if column not in tags.setdefault(name, []):
                    tags[name].append(column)
            elif kind is not None and types.setdefault(column, _TYPES[kind]) is not _TYPES[kind]:
                raise SchemaError(f"{name}.{column} is declared with two types")
    if mqtt_only & set(measurement):
        raise SchemaError("a kind is both MQTT-only and written to InfluxDB")
    return field_types, measurement, {m: tuple(t) for m, t in tags.items()}, frozenset(mqtt_only)


_TYPES: Final[Mapping[str, type]] = {"float": FLOAT, "int": INT, "bool": BOOL, "str": STR}

_FIELD_TYPES, _MEASUREMENT, _TAG_FIELDS, _MQTT_ONLY = derive()

#: measurement → field → Python type written (float, int, bool or str), declared on the
#: payload types of :mod:`streamer.results`.
FIELD_TYPES: Final[Mapping[str, Mapping[str, type]]] = _FIELD_TYPES

#: Kind → measurement, from the payload types' ``MEASUREMENT``.
MEASUREMENT: Final[Mapping[Kind, str]] = _MEASUREMENT

#: Kinds whose payload types declare ``MEASUREMENT = None``: published on MQTT only
#: (``status``: a state topic, derived from the others; ``device``: a device's connection).
MQTT_ONLY_KINDS: Final[frozenset[Kind]] = _MQTT_ONLY

#: Result fields that become tags (measurement → field names), besides athlete/device.
TAG_FIELDS: Final[Mapping[str, tuple[str, ...]]] = _TAG_FIELDS


def _coerce(
    measurement: str, name: str, kind: type, value: JsonValue
) -> float | int | bool | str | None:
    if value is None:
        return None
    if kind is STR:
        return str(value)
    if kind is BOOL:
        if isinstance(value, bool):
            return value
        raise SchemaError(f"{measurement}.{name}: expected a bool, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SchemaError(f"{measurement}.{name}: expected a number, got {value!r}")
    if not math.isfinite(value):
        return None
    if kind is INT:
        if isinstance(value, int):
            return value  # exact: a time in ns is beyond a float's 53 bits
        if float(value) != int(value):
            raise SchemaError(f"{measurement}.{name}: expected a whole number, got {value!r}")
        return int(value)
    return float(value)


def _point(
    measurement: str, tags: Mapping[str, str], ts_ns: int, fields: Mapping[str, JsonValue]
) -> Point | None:
    types = FIELD_TYPES[measurement]
    point = _POINT(measurement)
    for key in sorted(tags):
        if tags[key] != "":
            point.tag(key, tags[key])
    written = 0
    for name, kind in types.items():
        if name not in fields:
            continue
        value = _coerce(measurement, name, kind, fields[name])
        if value is not None:
            point.field(name, value)
            written += 1
    if written == 0:
        return None
    timed: Point = point.time(ts_ns, _NS)
    return timed


def _beat_times_ns(
    ts_ns: int, rr_ms: Sequence[float], beat_ts_ns: Sequence[int] | None
) -> list[int]:
    """Beat times: given by the pipeline, else the last beat at ``ts_ns`` and the earlier
    ones back-summed from the intervals (straps send RR without timestamps)."""
    if beat_ts_ns is not None and len(beat_ts_ns) == len(rr_ms):
        return list(beat_ts_ns)
    times: list[int] = []
    t = ts_ns
    for rr in reversed(rr_ms):
        times.append(t)
        if math.isfinite(rr):
            t -= round(float(rr) * 1e6)
    return times[::-1]


def points_for(result: Result) -> list[Point]:
    """The InfluxDB points of ``result`` (empty for ``status`` and for field-less results).

    A heart-rate sample gives one point with ``hr_bpm`` at ``ts_ns`` and one ``rr_ms``
    point per beat; beat times come from a ``beat_ts_ns`` list field when the pipeline
    knows them, else the last beat is put at ``ts_ns`` (merged with the ``hr_bpm`` point)
    and earlier beats back-summed. An ``alerts`` result gives one ``alert`` point for its
    ``event``.
    """
    measurement = MEASUREMENT.get(result.kind)
    if measurement is None:
        return []
    tags = {"athlete": result.athlete}
    if result.device:
        tags["device"] = result.device
    if result.gateway and result.kind.is_live:
        # Team mode: which room's radio received it (a strap handed between gateways
        # shows where the gap was).
        tags["gateway"] = result.gateway
    fields = result.fields

    if result.kind is Kind.ALERTS:
        event = result.payload_as(AlertsPayload).event
        # Every column the alert declares (state, message, advice, clear_reason, …).
        alert_fields: dict[str, JsonValue] = dict(event.fields())
        alert_fields["active"] = 1 if event.state == "raised" else 0
        alert_tags = {"athlete": result.athlete}
        alert_tags.update({t: str(event.fields().get(t) or "") for t in TAG_FIELDS["alert"]})
        point = _point("alert", alert_tags, result.ts_ns, alert_fields)
        return [point] if point is not None else []

    for name in TAG_FIELDS.get(measurement, ()):
        value = fields.get(name)
        if value is not None:
            tags[name] = str(value)

    if result.kind is Kind.HEART_RATE:
        heart = result.payload_as(HeartRatePayload)
        times = _beat_times_ns(result.ts_ns, heart.rr_ms, heart.beat_ts_ns)
        points: list[Point] = []
        merged = False
        for t, value in zip(times, heart.rr_ms, strict=False):
            beat_fields: dict[str, JsonValue] = {"rr_ms": value}
            if t == result.ts_ns:
                beat_fields["hr_bpm"] = heart.hr_bpm
                merged = True
            p = _point("heart_rate", tags, t, beat_fields)
            if p is not None:
                points.append(p)
        if not merged:
            p = _point("heart_rate", tags, result.ts_ns, {"hr_bpm": heart.hr_bpm})
            if p is not None:
                points.append(p)
        return points

    point = _point(measurement, tags, result.ts_ns, fields)
    return [point] if point is not None else []


def lines_for(result: Result) -> list[str]:
    """:func:`points_for` as line-protocol strings (one point per string)."""
    return [line for p in points_for(result) if (line := p.to_line_protocol())]
