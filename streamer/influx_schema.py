"""Result envelopes → InfluxDB points (SCHEMA.md), the one place the schema is written down.

===================  ===========================  ============================================
measurement          tags                         fields (type)
===================  ===========================  ============================================
``heart_rate``       athlete, device              hr_bpm (float); per beat: rr_ms (float) at
                                                  the beat time
``hrv``              athlete                      rmssd_ms, ln_rmssd, sdnn_ms, mean_nn_ms,
                                                  mean_hr_bpm, pnn50_pct, abnormal_pct
                                                  (float), n_beats (int), accepted (bool);
                                                  a rejected window has no HRV fields
``morning``          athlete                      ln_rmssd, rmssd_ms, resting_hr_bpm,
                                                  artifacts_pct, baseline/band/7-day fields
                                                  (float), accepted (bool)
``smo2``             athlete, device              smo2_pct, thb_gdl (float)
``power``            athlete, device              power_w (float)
``force``            athlete, device              force_kg (float)
``pulse_oximetry``   athlete, device              spo2_pct, pulse_bpm (float)
``oxygen_recovery``  athlete, [device], scope     baseline_pct, min_pct, t_half_s, t95_s,
                                                  tau_s, reox_rate_pct_s, overshoot_pct,
                                                  recovery_s (float), n_efforts (int)
``grip_test``        athlete, [device], class     mvc_kg, peak_kg, drop_pct, minutes_after,
                                                  threshold_pct (float)
``alert``            athlete, rule, severity      state, message, advice (string), active (int
                                                  1 raised / 0 cleared)
===================  ===========================  ============================================

Field types never change: InfluxDB 1.x rejects a field whose type differs from the one
already in the shard, so integers are written as floats except ``n_beats``, ``n_efforts``
and ``active``. The schema is closed: fields a result carries beyond these are published on
MQTT but not written to InfluxDB. ``None`` and non-finite values are left out (a point
with no field left is not written). Times are nanoseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from influxdb_client.client.write import point as _point_module
from influxdb_client.domain import write_precision as _precision_module

from streamer.results import JsonValue, Kind, Result


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

_MORNING_FLOATS: Final = (
    "ln_rmssd",
    "rmssd_ms",
    "resting_hr_bpm",
    "artifacts_pct",
    "ln_rmssd_baseline_mean",
    "ln_rmssd_baseline_sd",
    "ln_rmssd_band_low",
    "ln_rmssd_band_high",
    "ln_rmssd_7d_mean",
    "ln_rmssd_cv_pct",
    "rhr_baseline_median_bpm",
    "rhr_7d_mean_bpm",
)

#: measurement → field → Python type written (float, int, bool or str).
FIELD_TYPES: Final[Mapping[str, Mapping[str, type]]] = {
    "heart_rate": {"hr_bpm": FLOAT, "rr_ms": FLOAT},
    "hrv": {
        "rmssd_ms": FLOAT,
        "ln_rmssd": FLOAT,
        "sdnn_ms": FLOAT,
        "mean_nn_ms": FLOAT,
        "mean_hr_bpm": FLOAT,
        "pnn50_pct": FLOAT,
        "n_beats": INT,
        "abnormal_pct": FLOAT,
        "accepted": BOOL,
    },
    "morning": {**dict.fromkeys(_MORNING_FLOATS, FLOAT), "accepted": BOOL},
    "smo2": {"smo2_pct": FLOAT, "thb_gdl": FLOAT},
    "power": {"power_w": FLOAT},
    "force": {"force_kg": FLOAT},
    # Not "spo2": next to the muscle's "smo2" that name invites a wrong query.
    "pulse_oximetry": {"spo2_pct": FLOAT, "pulse_bpm": FLOAT},
    "oxygen_recovery": {
        "baseline_pct": FLOAT,
        "min_pct": FLOAT,
        "t_half_s": FLOAT,
        "t95_s": FLOAT,
        "tau_s": FLOAT,
        "reox_rate_pct_s": FLOAT,
        "overshoot_pct": FLOAT,
        "recovery_s": FLOAT,
        "n_efforts": INT,
    },
    "grip_test": {
        "mvc_kg": FLOAT,
        "peak_kg": FLOAT,
        "drop_pct": FLOAT,
        "minutes_after": FLOAT,
        "threshold_pct": FLOAT,
    },
    "alert": {"state": STR, "active": INT, "message": STR, "advice": STR},
}

#: Kind → measurement; ``status`` has none (it is a state topic, derived from the others).
MEASUREMENT: Final[Mapping[Kind, str]] = {
    Kind.HEART_RATE: "heart_rate",
    Kind.SMO2: "smo2",
    Kind.FORCE: "force",
    Kind.POWER: "power",
    Kind.SPO2: "pulse_oximetry",
    Kind.HRV: "hrv",
    Kind.MORNING: "morning",
    Kind.OXYGENATION: "oxygen_recovery",
    Kind.GRIP: "grip_test",
    Kind.ALERTS: "alert",
}

#: Result fields that become tags (measurement → field names), besides athlete/device.
TAG_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "oxygen_recovery": ("scope",),
    "grip_test": ("class",),
}


class SchemaError(ValueError):
    """A result field cannot be written with its schema type (names measurement and field)."""


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


def _beat_times_ns(ts_ns: int, rr_ms: Sequence[JsonValue], beat_ts_ns: JsonValue) -> list[int]:
    """Beat times: given by the pipeline, else the last beat at ``ts_ns`` and the earlier
    ones back-summed from the intervals (straps send RR without timestamps)."""
    if isinstance(beat_ts_ns, list) and len(beat_ts_ns) == len(rr_ms):
        return [int(t) for t in beat_ts_ns if isinstance(t, int | float)]
    times: list[int] = []
    t = ts_ns
    for rr in reversed(rr_ms):
        times.append(t)
        if isinstance(rr, int | float) and not isinstance(rr, bool):
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
    fields = result.fields

    if result.kind is Kind.ALERTS:
        event = fields.get("event")
        if not isinstance(event, dict):
            raise SchemaError("alert: the result has no 'event' object")
        state = event.get("state")
        alert_fields: dict[str, JsonValue] = {
            "state": state,
            "active": 1 if state == "raised" else 0,
            "message": event.get("message"),
            "advice": event.get("advice"),
        }
        alert_tags = {
            "athlete": result.athlete,
            "rule": str(event.get("rule") or ""),
            "severity": str(event.get("severity") or ""),
        }
        point = _point("alert", alert_tags, result.ts_ns, alert_fields)
        return [point] if point is not None else []

    for name in TAG_FIELDS.get(measurement, ()):
        value = fields.get(name)
        if value is not None:
            tags[name] = str(value)

    if result.kind is Kind.HEART_RATE:
        rr = fields.get("rr_ms")
        rr_list = rr if isinstance(rr, list) else []
        times = _beat_times_ns(result.ts_ns, rr_list, fields.get("beat_ts_ns"))
        points: list[Point] = []
        merged = False
        for t, value in zip(times, rr_list, strict=False):
            beat_fields: dict[str, JsonValue] = {"rr_ms": value}
            if t == result.ts_ns:
                beat_fields["hr_bpm"] = fields.get("hr_bpm")
                merged = True
            p = _point("heart_rate", tags, t, beat_fields)
            if p is not None:
                points.append(p)
        if not merged:
            p = _point("heart_rate", tags, result.ts_ns, {"hr_bpm": fields.get("hr_bpm")})
            if p is not None:
                points.append(p)
        return points

    point = _point(measurement, tags, result.ts_ns, fields)
    return [point] if point is not None else []


def lines_for(result: Result) -> list[str]:
    """:func:`points_for` as line-protocol strings (one point per string)."""
    return [line for p in points_for(result) if (line := p.to_line_protocol())]
