"""Topic names: the SCHEMA.md tree, and user names can never change a topic's shape."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.results import Kind, Result
from streamer.topics import MAX_SEGMENT_CHARS, Topics, base_topic, segment, slug


def _is_safe_level(level: str) -> bool:
    return (
        bool(level)
        and not any(c in "+#/" for c in level)
        and not any(unicodedata.category(c) in {"Cc", "Cs", "Cn"} for c in level)
        and not level.startswith("$")
    )


@given(st.text())
def test_segment_never_contains_wildcards_separators_or_control_chars(name: str) -> None:
    level = segment(name)
    assert _is_safe_level(level)
    assert len(level) <= MAX_SEGMENT_CHARS
    level.encode("utf-8")  # MQTT topics are UTF-8: no lone surrogates may survive


@given(st.text(), st.text())
def test_live_topic_has_exactly_five_levels_whatever_the_names(athlete: str, device: str) -> None:
    topic = Topics("redox").live(athlete, device)
    levels = topic.split("/")
    assert len(levels) == 4
    assert levels[0] == "redox"
    assert levels[3] == "live"
    assert all(_is_safe_level(lv) for lv in levels)


@given(st.text(), st.text())
def test_device_state_topic_has_four_levels_and_no_athlete_topic_matches_its_filter(
    athlete: str, device: str
) -> None:
    topics = Topics("redox")
    levels = topics.device_state(athlete, device).split("/")
    assert len(levels) == 4
    assert levels[0] == "redox"
    assert levels[3] == "state"
    assert all(_is_safe_level(lv) for lv in levels)
    # `status` subscribes to this filter: athlete topics and the bridge state have 3 levels.
    assert topics.device_states == "redox/+/+/state"
    assert len(topics.bridge_state.split("/")) == 3


@given(st.text(), st.sampled_from([k for k in Kind if not k.is_live and k is not Kind.DEVICE]))
def test_athlete_topics_keep_their_shape(athlete: str, kind: Kind) -> None:
    levels = Topics("home/redox").athlete(athlete, kind).split("/")
    assert levels[:2] == ["home", "redox"]
    assert len(levels) == 4
    assert all(_is_safe_level(lv) for lv in levels)


def test_plain_ids_pass_through_unchanged() -> None:
    t = Topics()
    assert t.bridge_state == "redox/bridge/state"
    assert t.live("alice", "strap") == "redox/alice/strap/live"
    assert t.athlete("alice", Kind.MORNING) == "redox/alice/morning"
    assert t.athlete("bob-2", Kind.ALERTS) == "redox/bob-2/alerts"
    assert t.ha_status == "homeassistant/status"


def test_dangerous_names_are_replaced_not_dropped() -> None:
    assert segment("a/b") == "a_b"
    assert segment("+#") == "__"
    assert segment("x\x00y\ny") == "x_y_y"
    assert segment("$SYS") == "_SYS"
    assert segment("   ") == "_"


def test_result_topic_follows_its_kind() -> None:
    t = Topics("r")
    live = Result(Kind.SMO2, "al/ice", 1, {"smo2_pct": 60.0}, device="moxy 1")
    assert t.for_result(live) == "r/al_ice/moxy 1/live"
    grip = Result(Kind.GRIP, "alice", 1, {"drop_pct": 5.0}, device="tindeq")
    assert t.for_result(grip) == "r/alice/grip"


def test_live_kind_needs_the_live_builder() -> None:
    with pytest.raises(ValueError, match="live"):
        Topics().athlete("alice", Kind.HEART_RATE)


@pytest.mark.parametrize("bad", ["", "/", " / "])
def test_empty_base_topic_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        base_topic(bad)


def test_base_topic_levels_are_sanitised() -> None:
    assert base_topic("/home/+/redox/") == "home/_/redox"


@given(st.text())
def test_slug_is_a_home_assistant_object_id(name: str) -> None:
    s = slug(name)
    assert s
    assert all(c.isascii() and (c.isalnum() or c == "_") and not c.isupper() for c in s)


def test_ha_config_topic() -> None:
    assert Topics().ha_config("binary_sensor", "redox_Alice", "rhr creep") == (
        "homeassistant/binary_sensor/redox_alice/rhr_creep/config"
    )
