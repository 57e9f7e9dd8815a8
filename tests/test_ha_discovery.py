"""Home Assistant discovery configs: every entity available through the Last Will,
unique ids, a binary sensor per actionable rule, templates that read our payloads."""

from __future__ import annotations

import json

from devices.kinds import DeviceKind
from processors.rules import CATALOGUE
from streamer.config import AthleteConfig, DeviceConfig
from streamer.sinks.ha_discovery import ACTION_RULES, discovery_messages
from streamer.topics import Topics


def _athletes() -> list[AthleteConfig]:
    return [
        AthleteConfig(
            "alice", "Alice", devices=(DeviceConfig("chest", DeviceKind.STRAP, name="H10"),)
        ),
        AthleteConfig("bob", "Bob"),  # no strap: no heart-rate sensor
    ]


def test_every_entity_is_unique_and_tied_to_the_bridge_state() -> None:
    messages = discovery_messages(Topics("club/redox"), _athletes())
    configs = [json.loads(p) for _, p in messages]
    assert len({c["unique_id"] for c in configs}) == len(configs)
    for config in configs:
        assert config["availability"][0]["topic"] == "club/redox/bridge/state"
        # Sensors read a state topic; buttons and the RPE number publish a command topic.
        topic = config.get("state_topic") or config["command_topic"]
        assert topic.startswith("club/redox/")


def test_heart_rate_sensor_reads_the_strap_live_topic_only_when_there_is_a_strap() -> None:
    topics = [t for t, _ in discovery_messages(Topics(), _athletes())]
    assert "homeassistant/sensor/redox_alice/hr/config" in topics
    assert "homeassistant/sensor/redox_bob/hr/config" not in topics
    hr = dict(discovery_messages(Topics(), _athletes()))[
        "homeassistant/sensor/redox_alice/hr/config"
    ]
    assert json.loads(hr)["state_topic"] == "redox/alice/chest/live"


def test_spo2_sensor_reads_the_oximeter_live_topic_only_when_there_is_an_oximeter() -> None:
    athletes = [
        AthleteConfig("cy", "Cy", devices=(DeviceConfig("finger", DeviceKind.SPO2, name="O2"),)),
        *_athletes(),
    ]
    messages = dict(discovery_messages(Topics(), athletes))
    config = json.loads(messages["homeassistant/sensor/redox_cy/spo2/config"])
    assert config["state_topic"] == "redox/cy/finger/live"
    assert config["value_template"] == "{{ value_json.spo2_pct }}"
    assert config["unit_of_measurement"] == "%"
    assert not [t for t in messages if t.endswith("/spo2/config") and "redox_cy" not in t]


def test_one_binary_sensor_per_rule_that_asks_for_action() -> None:
    assert set(ACTION_RULES) == {r for r, s in CATALOGUE.items() if s.severity.value != "info"}
    assert "grip_signal" not in ACTION_RULES
    topics = [t for t, _ in discovery_messages(Topics(), _athletes()[:1])]
    rules = [t.split("/")[3] for t in topics if "/binary_sensor/" in t and "/device_" not in t]
    assert sorted(rules) == sorted(ACTION_RULES)


def test_each_device_has_a_connectivity_and_a_battery_entity_on_its_state_topic() -> None:
    messages = {t: json.loads(p) for t, p in discovery_messages(Topics(), _athletes())}
    link = messages["homeassistant/binary_sensor/redox_alice/device_chest_connected/config"]
    battery = messages["homeassistant/sensor/redox_alice/device_chest_battery/config"]
    assert link["state_topic"] == battery["state_topic"] == "redox/alice/chest/state"
    assert link["device_class"] == "connectivity"
    assert link["value_template"] == "{{ 'ON' if value_json.connected else 'OFF' }}"
    assert (link["payload_on"], link["payload_off"]) == ("ON", "OFF")
    assert battery["device_class"] == "battery"
    assert battery["unit_of_measurement"] == "%"
    assert battery["value_template"] == "{{ value_json.battery_pct }}"
    # Bob has no device: no device entities.
    assert not [t for t in messages if "redox_bob/device_" in t]


def test_session_buttons_and_rpe_number_publish_on_the_command_topics() -> None:
    messages = {t: json.loads(p) for t, p in discovery_messages(Topics("club/redox"), _athletes())}
    start = messages["homeassistant/button/redox_alice/session_start/config"]
    end = messages["homeassistant/button/redox_alice/session_end/config"]
    rpe = messages["homeassistant/number/redox_alice/rpe/config"]
    assert (start["command_topic"], start["payload_press"]) == (
        "club/redox/alice/set/session",
        "start",
    )
    assert (end["command_topic"], end["payload_press"]) == ("club/redox/alice/set/session", "end")
    assert rpe["command_topic"] == "club/redox/alice/set/rpe"
    assert (rpe["min"], rpe["max"]) == (0, 10.0)
    # What HA publishes is what run's listener parses.
    from streamer.app.commands_in import parse_rpe, parse_session

    assert parse_session(start["payload_press"].encode()).action == "start"
    assert parse_session(end["payload_press"].encode()).action == "end"
    assert parse_rpe(b"7.5") == 7.5
    assert "homeassistant/button/redox_bob/session_start/config" in messages
