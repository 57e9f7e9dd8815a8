"""Home Assistant MQTT discovery: the config messages that make sensors appear in HA.

For each configured athlete, under ``<ha_prefix>/<component>/redox_<athlete>/<key>/config``
(retained, QoS 1), one HA device "Redox <name>" with:

* sensors: heart rate (``hr_bpm`` of the strap's live topic; unavailable after 2 min
  without data), SpO2 (``spo2_pct`` of the pulse oximeter's live topic, %, likewise),
  morning lnRMSSD and resting HR (``morning``), SmO2 recovery time (the
  session ``recovery_s`` of ``oxygenation``, s), last grip drop (``drop_pct`` of ``grip``,
  %), readiness (``state`` of ``status``);
* one binary sensor (device class ``problem``) per alert rule that asks for action
  (severity warning or pull-back): ON while the rule is in the ``active`` list of the
  retained ``alerts`` topic;
* per device of the athlete (:func:`device_configs`): a ``connectivity`` binary sensor
  (``connected`` of the retained ``<base>/<athlete>/<device>/state``) and a ``battery``
  sensor (``battery_pct``, %).
* context entry (:func:`command_configs`): "Session start" and "Session end" buttons
  publishing ``start`` / ``end`` on ``<base>/<athlete>/set/session``, "Morning reading
  start" and "end" on ``<base>/<athlete>/set/morning``, and an "RPE" number
  (0–10, CR-10) publishing on ``<base>/<athlete>/set/rpe`` — the command topics a running
  ``run`` listens to (:mod:`streamer.app.commands_in`; the shipped ACL lets the
  ``homeassistant`` user write them).
* lab markers (:func:`lab_configs`): a sensor per marker (GSH:GSSG, dROMs, dipstick; the
  last value from the retained ``<base>/<athlete>/status``, so it survives an HA
  restart), "Log GSH:GSSG (fasted)" … numbers per marker and timing and a "Log
  lipid-peroxidation dipstick" select, publishing on
  ``<base>/<athlete>/set/gsh_gssg|droms|lipid_dipstick``.

Every entity's availability is the publisher's state topic (``topics.bridge_state``), its
Last Will: ``<base>/bridge/state`` for ``run``, so entities go unavailable when the streamer
dies; ``<base>/partition/<p>/state`` for a team worker's partition
(:mod:`streamer.team.worker`), which names no worker, so the configs are the same bytes
whichever worker owns the athlete's partition (Home Assistant ignores an unchanged config)
and a partition changing hands neither changes nor blinks them. The publisher re-sends
these configs when ``homeassistant/status`` says ``online`` (HA restarted).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from devices.kinds import DeviceKind
from processors.alerts import Severity
from processors.rules import CATALOGUE
from streamer import __version__
from streamer.config import AthleteConfig
from streamer.payloads import BRIDGE_OFFLINE, BRIDGE_ONLINE
from streamer.results import (
    AlertPayload,
    AlertsPayload,
    DeviceStatePayload,
    GripPayload,
    HeartRatePayload,
    Kind,
    LabLatest,
    MorningPayload,
    Payload,
    SessionPayload,
    SpO2Payload,
    StatusPayload,
    payload_constants,
    payload_key,
)
from streamer.topics import Topics, slug

#: Rules with a binary sensor: those whose alert asks for action.
ACTION_RULES: Final = tuple(
    r for r, spec in CATALOGUE.items() if spec.severity is not Severity.INFO
)
LIVE_EXPIRE_S: Final = 120
_SESSION_SCOPE: Final = payload_constants(SessionPayload)[payload_key(SessionPayload, "scope")]


def _key(cls: type[Payload] | type[AlertPayload] | type[LabLatest], attribute: str) -> str:
    """The JSON key of a payload field (a renamed or removed field fails here, not in HA)."""
    return payload_key(cls, attribute)


def _value(cls: type[Payload], attribute: str) -> str:
    """The value template of one payload field: ``{{ value_json.<key> }}``."""
    return f"{{{{ value_json.{_key(cls, attribute)} }}}}"


def _entity(
    topics: Topics,
    athlete: AthleteConfig,
    key: str,
    name: str,
    state_topic: str,
    value_template: str,
    **extra: Any,
) -> dict[str, Any]:
    node = f"redox_{slug(athlete.id)}"
    return {
        "name": name,
        "unique_id": f"{node}_{key}",
        "object_id": f"{node}_{key}",
        "state_topic": state_topic,
        "value_template": value_template,
        "availability": [
            {
                "topic": topics.bridge_state,
                "payload_available": BRIDGE_ONLINE.decode(),
                "payload_not_available": BRIDGE_OFFLINE.decode(),
            }
        ],
        "device": {
            "identifiers": [node],
            "name": f"Redox {athlete.name}",
            "manufacturer": "redox-streamer",
            "model": "recovery signals",
            "sw_version": __version__,
        },
        **extra,
    }


def discovery_configs(topics: Topics, athlete: AthleteConfig) -> list[tuple[str, dict[str, Any]]]:
    """(config topic, config object) of every entity of ``athlete``."""
    node = f"redox_{slug(athlete.id)}"
    morning = topics.athlete(athlete.id, Kind.MORNING)
    out: list[tuple[str, dict[str, Any]]] = []

    def sensor(key: str, *args: str, **extra: Any) -> None:
        out.append(
            (topics.ha_config("sensor", node, key), _entity(topics, athlete, key, *args, **extra))
        )

    strap = athlete.device(DeviceKind.STRAP)
    if strap is not None:
        sensor(
            "hr",
            "Heart rate",
            topics.live(athlete.id, strap.id),
            _value(HeartRatePayload, "hr_bpm"),
            unit_of_measurement="bpm",
            state_class="measurement",
            icon="mdi:heart-pulse",
            expire_after=LIVE_EXPIRE_S,
        )
    oximeter = athlete.device(DeviceKind.SPO2)
    if oximeter is not None:
        sensor(
            "spo2",
            "SpO2",
            topics.live(athlete.id, oximeter.id),
            _value(SpO2Payload, "spo2_pct"),
            unit_of_measurement="%",
            state_class="measurement",
            icon="mdi:water-percent",
            expire_after=LIVE_EXPIRE_S,
        )
    sensor(
        "ln_rmssd",
        "Morning lnRMSSD",
        morning,
        _value(MorningPayload, "ln_rmssd"),
        state_class="measurement",
        icon="mdi:heart-flash",
        suggested_display_precision=2,
    )
    sensor(
        "resting_hr",
        "Resting heart rate",
        morning,
        _value(MorningPayload, "resting_hr_bpm"),
        unit_of_measurement="bpm",
        state_class="measurement",
        icon="mdi:heart",
    )
    # The oxygenation topic carries per-effort and per-session results: keep the last
    # session value when an effort message arrives.
    smo2_entity = f"sensor.{node}_smo2_recovery"
    sensor(
        "smo2_recovery",
        "SmO2 recovery time",
        topics.athlete(athlete.id, Kind.OXYGENATION),
        f"{{{{ value_json.{_key(SessionPayload, 'recovery_s')} "
        f"if value_json.{_key(SessionPayload, 'scope')} == '{_SESSION_SCOPE}' "
        f"else states('{smo2_entity}') }}}}",
        unit_of_measurement="s",
        device_class="duration",
        state_class="measurement",
    )
    sensor(
        "grip_drop",
        "Last grip drop",
        topics.athlete(athlete.id, Kind.GRIP),
        _value(GripPayload, "drop_pct"),
        unit_of_measurement="%",
        state_class="measurement",
        icon="mdi:hand-back-right",
    )
    sensor(
        "readiness",
        "Readiness",
        topics.athlete(athlete.id, Kind.STATUS),
        _value(StatusPayload, "state"),
        icon="mdi:run",
    )
    alerts = topics.athlete(athlete.id, Kind.ALERTS)
    for rule in ACTION_RULES:
        template = (
            f"{{{{ 'ON' if (value_json.{_key(AlertsPayload, 'active')} | selectattr("
            f"'{_key(AlertPayload, 'rule')}', 'equalto', '{rule}') | list | count) > 0 "
            "else 'OFF' }}"
        )
        out.append(
            (
                topics.ha_config("binary_sensor", node, rule),
                _entity(
                    topics,
                    athlete,
                    rule,
                    CATALOGUE[rule].title,
                    alerts,
                    template,
                    device_class="problem",
                    payload_on="ON",
                    payload_off="OFF",
                ),
            )
        )
    out.extend(device_configs(topics, athlete))
    return out


def device_configs(topics: Topics, athlete: AthleteConfig) -> list[tuple[str, dict[str, Any]]]:
    """(config topic, config object) of each device's connectivity and battery entities,
    read from its retained state topic (``run`` publishes it: :mod:`streamer.app.device_state`)."""
    node = f"redox_{slug(athlete.id)}"
    out: list[tuple[str, dict[str, Any]]] = []
    for device in athlete.devices:
        state = topics.device_state(athlete.id, device.id)
        key = f"device_{slug(device.id)}"
        connected = _key(DeviceStatePayload, "connected")
        out.append(
            (
                topics.ha_config("binary_sensor", node, f"{key}_connected"),
                _entity(
                    topics,
                    athlete,
                    f"{key}_connected",
                    f"{device.id} connection",
                    state,
                    f"{{{{ 'ON' if value_json.{connected} else 'OFF' }}}}",
                    device_class="connectivity",
                    payload_on="ON",
                    payload_off="OFF",
                    entity_category="diagnostic",
                ),
            )
        )
        out.append(
            (
                topics.ha_config("sensor", node, f"{key}_battery"),
                _entity(
                    topics,
                    athlete,
                    f"{key}_battery",
                    f"{device.id} battery",
                    state,
                    _value(DeviceStatePayload, "battery_pct"),
                    device_class="battery",
                    unit_of_measurement="%",
                    state_class="measurement",
                    entity_category="diagnostic",
                ),
            )
        )
    return out


def command_configs(topics: Topics, athlete: AthleteConfig) -> list[tuple[str, dict[str, Any]]]:
    """(config topic, config object) of ``athlete``'s command entities: session start and
    end buttons, the RPE number. They have no state: a press or a value is a command."""
    from streamer.app.commands_in import MORNING, RPE, RPE_MAX, SESSION, command_topic

    node = f"redox_{slug(athlete.id)}"
    out: list[tuple[str, dict[str, Any]]] = []

    def command(component: str, key: str, name: str, topic: str, **extra: Any) -> None:
        config = _entity(topics, athlete, key, name, "", "", command_topic=topic, **extra)
        del config["state_topic"], config["value_template"]
        out.append((topics.ha_config(component, node, key), config))

    session = command_topic(topics, athlete.id, SESSION)
    command(
        "button", "session_start", "Session start", session, payload_press="start", icon="mdi:play"
    )
    command("button", "session_end", "Session end", session, payload_press="end", icon="mdi:stop")
    morning = command_topic(topics, athlete.id, MORNING)
    command(
        "button",
        "morning_start",
        "Morning reading start",
        morning,
        payload_press="start",
        icon="mdi:bed-clock",
    )
    command(
        "button",
        "morning_end",
        "Morning reading end",
        morning,
        payload_press="end",
        icon="mdi:weather-sunset-up",
    )
    command(
        "number",
        "rpe",
        "RPE (CR-10) of the current or last session",
        command_topic(topics, athlete.id, RPE),
        min=0,
        max=RPE_MAX,
        step=0.5,
        mode="box",
        icon="mdi:gauge",
    )
    return out


def lab_configs(topics: Topics, athlete: AthleteConfig) -> list[tuple[str, dict[str, Any]]]:
    """(config topic, config object) of ``athlete``'s lab-marker entities: a sensor per
    marker (its last value from the retained ``<base>/<athlete>/status``'s ``labs``), a
    number per marker and timing for GSH:GSSG and dROMs (the timing is part of the
    command: the bands are for resting draws) and a select for the dipstick, publishing on
    ``<base>/<athlete>/set/<marker>`` (:mod:`streamer.app.lab_commands`)."""
    from processors import physiology as ph
    from processors.labs import LabMarker, LabTiming
    from streamer.app.commands_in import command_topic

    node = f"redox_{slug(athlete.id)}"
    status = topics.athlete(athlete.id, Kind.STATUS)
    out: list[tuple[str, dict[str, Any]]] = []
    labs = _key(StatusPayload, "labs")
    sensors = (
        (LabMarker.GSH_GSSG, "GSH:GSSG ratio", "value", ":1", "mdi:test-tube"),
        (LabMarker.DROMS, "dROMs", "value", "CARR U", "mdi:test-tube"),
        (LabMarker.LIPID_DIPSTICK, "Lipid-peroxidation dipstick", "band", None, "mdi:water"),
    )
    for marker, name, attribute, unit, icon in sensors:
        key = f"lab_{marker.value}"
        # The retained status carries each marker's last entry, so the sensor has its value
        # again after an HA restart (the `lab` topic is not retained). A status from
        # before it carried labs, or without this marker yet: keep the sensor's state.
        entry = f"value_json.{labs}.{marker.value}"
        template = (
            f"{{{{ {entry}.{_key(LabLatest, attribute)} "
            f"if value_json.{labs} is defined and '{marker.value}' in value_json.{labs} "
            f"else states('sensor.{node}_{key}') }}}}"
        )
        extra: dict[str, Any] = {"icon": icon}
        if unit is not None:
            extra.update(unit_of_measurement=unit, state_class="measurement")
        config = _entity(topics, athlete, key, name, status, template, **extra)
        out.append((topics.ha_config("sensor", node, key), config))

    def command(component: str, key: str, name: str, topic: str, **extra: Any) -> None:
        config = _entity(topics, athlete, key, name, "", "", command_topic=topic, **extra)
        del config["state_topic"], config["value_template"]
        out.append((topics.ha_config(component, node, key), config))

    ranges = {
        LabMarker.GSH_GSSG: ("GSH:GSSG", ph.GSH_GSSG_MIN, ph.GSH_GSSG_MAX, ":1"),
        LabMarker.DROMS: ("dROMs", ph.DROMS_MIN_CARR_U, ph.DROMS_MAX_CARR_U, "CARR U"),
    }
    for marker, (label, low, high, unit) in ranges.items():
        for timing in LabTiming:
            command(
                "number",
                f"log_{marker.value}_{timing.value.replace('-', '_')}",
                f"Log {label} ({timing.value})",
                command_topic(topics, athlete.id, marker.value),
                command_template=f'{{"value": {{{{ value }}}}, "timing": "{timing.value}"}}',
                min=low,
                max=high,
                step=1,
                mode="box",
                unit_of_measurement=unit,
                icon="mdi:test-tube",
            )
    command(
        "select",
        "log_lipid_dipstick",
        "Log lipid-peroxidation dipstick",
        command_topic(topics, athlete.id, LabMarker.LIPID_DIPSTICK.value),
        options=["positive", "negative"],
        icon="mdi:water",
    )
    return out


def discovery_messages(
    topics: Topics, athletes: Sequence[AthleteConfig]
) -> list[tuple[str, bytes]]:
    """(topic, JSON payload) of every discovery config, to publish retained with QoS 1."""
    return [
        (topic, json.dumps(config, separators=(",", ":")).encode())
        for athlete in athletes
        for topic, config in (
            *discovery_configs(topics, athlete),
            *command_configs(topics, athlete),
            *lab_configs(topics, athlete),
        )
    ]
