"""Context entered for sessions: RPE during or after a session, session intensity and
``hi_spacing``, and the command listener's parsing (bad payloads never raise)."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import pytest

from devices.records import HeartRateSample, PowerSample
from processors.profiles import thresholds_for
from processors.rules import RuleThresholds, hr_zone, hr_zone_floors_bpm, is_high_intensity
from streamer.app.commands_in import (
    CommandError,
    CommandListener,
    SessionCommand,
    parse_grip,
    parse_rpe,
    parse_session,
)
from streamer.athlete import (
    AthleteState,
    GripEnd,
    GripPhase,
    MorningEnd,
    MorningStart,
    SessionEnd,
    SessionRpe,
    SessionStart,
)
from streamer.config import MqttConfig
from streamer.results import AlertsPayload, Result, SessionPayload
from streamer.store import Store

H_NS = 3600 * 10**9
T0 = 1_790_000_000 * 10**9  # a fixed instant (2026-09-21 UTC)


def _session(
    state: AthleteState, start_ns: int, power_w: float | None, rpe: float | None = None
) -> list[Result]:
    """A 10-min session at a constant power (one sample a second), RPE given at its end."""
    out = list(state.process("command", SessionStart(start_ns, ("intervals",))))
    if power_w is not None:
        for i in range(600):
            out += state.process("power", PowerSample(start_ns + i * 10**9, power_w))
    out += state.process("command", SessionEnd(start_ns + 600 * 10**9, rpe))
    return out


def _sessions(results: list[Result]) -> list[SessionPayload]:
    return [r.payload for r in results if isinstance(r.payload, SessionPayload)]


def _raised(results: list[Result], rule: str) -> bool:
    return any(
        isinstance(r.payload, AlertsPayload)
        and r.payload.event.rule == rule
        and r.payload.event.state == "raised"
        for r in results
    )


def test_rpe_after_the_session_ended_amends_it_and_evaluates_rpe_power_mismatch(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        state = AthleteState("ann", store, live=False)
        for day in range(3):
            _session(state, T0 + day * 24 * H_NS, 200.0, rpe=5.0)
        out = _session(state, T0 + 3 * 24 * H_NS, 175.0)  # no RPE yet
        assert _sessions(out)[0].rpe is None
        assert not _raised(out, "rpe_power_mismatch")
        for r in out:
            store.record(r)  # what the pipeline does with durable results
        end_ns = T0 + 3 * 24 * H_NS + 600 * 10**9
        amended = state.process("command", SessionRpe(end_ns + 1800 * 10**9, 6.5))
        (session,) = [r for r in amended if isinstance(r.payload, SessionPayload)]
        assert session.ts_ns == end_ns  # the session's time, not the entry's
        payload = session.payload_as(SessionPayload)
        assert (payload.rpe, payload.tags, payload.high_intensity) == (6.5, ("intervals",), False)
        assert _raised(amended, "rpe_power_mismatch")  # +30% RPE for −12.5% power
        for r in amended:
            store.record(r)
        rows = store.sessions("ann")
        assert [row.payload.rpe for row in rows] == [6.5]  # replaced, not a second row


def test_rpe_from_the_store_after_a_restart_attaches_to_the_last_stored_session(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        first = AthleteState("ann", store, live=False)
        for r in _session(first, T0, 210.0, rpe=8.0):
            store.record(r)
        for r in _session(first, T0 + 30 * H_NS, 190.0):
            store.record(r)
        restarted = AthleteState("ann", store, live=False)  # e.g. `redox-streamer rpe` offline
        out = restarted.process("command", SessionRpe(T0 + 40 * H_NS, 7.0))
        assert _sessions(out)[0].high_intensity is True
        assert _raised(out, "hi_spacing")  # 30 h after the RPE-8 session (< 48 h)


def test_rpe_entered_while_the_session_runs_is_used_at_its_end() -> None:
    state = AthleteState("ann", live=False)
    state.process("command", SessionStart(T0))
    assert state.process("command", SessionRpe(T0 + 10**9, 7.0)) == []
    (payload,) = _sessions(state.process("command", SessionEnd(T0 + 60 * 10**9)))
    assert (payload.rpe, payload.high_intensity) == (7.0, True)


def test_rpe_without_any_session_changes_nothing_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = AthleteState("ann", live=False)
    with caplog.at_level(logging.WARNING):
        assert state.process("command", SessionRpe(T0, 5.0)) == []
    assert "no session to attach it to" in caplog.text


@pytest.mark.parametrize(
    ("profile", "gap_h", "fires"),
    [("default", 40, True), ("default", 50, False), ("older", 60, True), ("older", 75, False)],
)
def test_hi_spacing_spaces_high_intensity_sessions_by_the_profile(
    profile: str, gap_h: int, fires: bool
) -> None:
    state = AthleteState("ann", thresholds=thresholds_for(profile), live=False)
    _session(state, T0, None, rpe=8.0)
    _session(state, T0 + 10 * H_NS, None, rpe=3.0)  # easy: not spaced
    out = _session(state, T0 + gap_h * H_NS, None, rpe=7.0)
    evaluations = state.book.open_alerts()
    assert _raised(out, "hi_spacing") is fires
    assert ("hi_spacing" in {a.rule_id for a in evaluations}) is fires


def test_session_intensity_by_rpe_or_by_the_configured_power() -> None:
    default = RuleThresholds()
    assert is_high_intensity(7.0, None, default) is True
    assert is_high_intensity(6.5, 400.0, default) is False  # no power threshold configured
    assert is_high_intensity(None, 400.0, default) is None
    own = default.with_overrides({"high_intensity_power_w": 250})
    assert is_high_intensity(None, 260.0, own) is True
    assert is_high_intensity(4.0, 260.0, own) is True  # RPE does not veto the power
    assert is_high_intensity(4.0, 200.0, own) is False
    with pytest.raises(ValueError, match="high_intensity_power_w"):
        default.with_overrides({"high_intensity_power_w": math.inf})


def test_session_commands_round_trip_and_bad_ones_name_the_fix() -> None:
    for command in (
        SessionCommand("start"),
        SessionCommand("end", 7.5),
        SessionCommand("start", None, ("intervals", "z4")),
    ):
        assert parse_session(command.payload()) == command
    assert parse_rpe(b"7") == 7.0
    assert parse_rpe(b'{"rpe": 3.5}') == 3.5
    for bad, fix in (
        (b"begin", "send 'start', 'end'"),
        (b'{"action": "pause"}', '"action": "start" or "end"'),
        (b'{"action": "end", "rpe": 11}', "outside 0–10"),
        (b'{"action": "start", "tags": ["a b"]}', "letters, digits"),
    ):
        with pytest.raises(CommandError, match=fix):
            parse_session(bad)
    for bad in (b"", b"hard", b"NaN", b"true", b"-1"):
        with pytest.raises(CommandError):
            parse_rpe(bad)


def test_grip_commands_become_the_grip_test_markers() -> None:
    assert parse_grip(b"pre", 7) == GripPhase(7, None)
    assert parse_grip(b"post 15", 7) == GripPhase(7, 15.0)
    assert parse_grip(b'{"phase": "post", "minute": 0}', 7) == GripPhase(7, 0.0)
    assert parse_grip(b"end", 7) == GripEnd(7)
    for bad, fix in (
        (b"post", "send 'pre', 'post MINUTES'"),
        (b"post soon", "give the minutes after the session"),
        (b'{"phase": "post", "minute": true}', "give the minutes"),
        (b"post 2000", "0–1440"),
        (b"pre 5", "send 'pre'"),
        (b"{nope", "send 'pre'"),
    ):
        with pytest.raises(CommandError, match=fix):
            parse_grip(bad, 7)


def test_listener_turns_commands_into_markers_and_drops_bad_ones_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    offered: list[tuple[str, str, object]] = []
    listener = CommandListener(
        MqttConfig("localhost", base_topic="club/redox"),
        ["ann"],
        lambda *a: offered.append(a) or True,
        clock_ns=lambda: 42,
    )
    assert listener.handle("club/redox/ann/set/session", b'{"action":"start","tags":["z2"]}')
    assert listener.handle("club/redox/ann/set/rpe", b"6")
    assert listener.handle("club/redox/ann/set/session", b"end")
    assert listener.handle("club/redox/ann/set/morning", b"start")
    assert listener.handle("club/redox/ann/set/morning", b" end\n")
    assert [r for _, _, r in offered] == [
        SessionStart(42, ("z2",)),
        SessionRpe(42, 6.0),
        SessionEnd(42, None),
        MorningStart(42),
        MorningEnd(42),
    ]
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert not listener.handle("club/redox/ann/set/rpe", b"eleven")
        assert not listener.handle("club/redox/bob/set/session", b"start")
        assert not listener.handle("club/redox/ann/set/session", b"start", retained=True)
        assert not listener.handle("club/redox/ann/set/lap", b"1")
        assert not listener.handle("club/redox/ann/set/session", object())
        assert not listener.handle("club/redox/ann/set/morning", b"now")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 6  # the repeated bad RPE is said once
    assert "'eleven'" in warnings[0].getMessage()
    assert "'bob' is not in the config" in warnings[1].getMessage()
    assert "retained" in warnings[2].getMessage()
    assert (listener.accepted, listener.rejected) == (5, 8)
    assert len(offered) == 5


def test_session_and_rpe_commands_refuse_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streamer import cli

    config = tmp_path / "redox.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "s.sqlite3"}"\n[[athletes]]\nid = "ann"\nname = "Ann"\n'
    )
    common = ["--athlete", "ann", "--config", str(config)]
    for argv, said in (
        (["session", "end", "--rpe", "11", *common], "RPE 11.0 is outside 0–10"),
        (["session", "start", "--tag", "two words", *common], "tag 'two words'"),
        (["rpe", "-1", *common], "outside 0–10"),
        (["rpe", "5", "--athlete", "bob", "--config", str(config)], "--athlete bob: not in"),
        (["rpe", "5", *common], "no session of ann"),  # offline, nothing stored yet
    ):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert said in err, err
        assert "\n" not in err, err
    # No [mqtt]: a session cannot be framed offline, and it says what works instead.
    assert cli.main(["session", "start", *common]) == 1
    assert "no [mqtt] in the config" in capsys.readouterr().err


def _hr_session(
    state: AthleteState, start_ns: int, hr_bpm: float, minutes: float, rpe: float | None = None
) -> list[Result]:
    """A session with a chest strap only (1 Hz heart rate at ``hr_bpm``), no power."""
    out = list(state.process("command", SessionStart(start_ns)))
    for i in range(round(minutes * 60) + 1):
        out += state.process("strap", HeartRateSample(start_ns + i * 10**9, round(hr_bpm)))
    out += state.process("command", SessionEnd(start_ns + round(minutes * 60) * 10**9, rpe))
    return out


def test_hr_zones_are_seilers_three_zones_from_max_or_threshold_hr() -> None:
    assert hr_zone_floors_bpm(RuleThresholds()) is None  # personal: no default
    by_max = RuleThresholds(max_hr_bpm=190.0)
    assert hr_zone_floors_bpm(by_max) == pytest.approx((0.82 * 190, 0.87 * 190))
    assert [hr_zone(hr, (155.8, 165.3)) for hr in (150, 156, 165, 166)] == [1, 2, 2, 3]
    by_threshold = RuleThresholds(max_hr_bpm=190.0, threshold_hr_bpm=170.0)
    assert hr_zone_floors_bpm(by_threshold) == pytest.approx((0.82 * 190, 170.0))


def test_session_intensity_from_heart_rate_zones_only_when_power_cannot_say() -> None:
    zones = RuleThresholds(max_hr_bpm=190.0)  # zone 3 from 165.3 bpm
    assert is_high_intensity(None, None, zones, zone3_s=480.0) is True
    assert is_high_intensity(None, None, zones, zone3_s=479.0) is False
    assert is_high_intensity(None, 100.0, zones, zone3_s=900.0) is True  # no power threshold
    assert is_high_intensity(8.0, None, zones, zone3_s=0.0) is True  # RPE is not vetoed
    powered = zones.with_overrides({"high_intensity_power_w": 250})
    assert is_high_intensity(None, 200.0, powered, zone3_s=900.0) is False  # power says
    assert is_high_intensity(None, None, powered, zone3_s=900.0) is True  # no power meter


def test_hi_spacing_from_two_hard_sessions_by_heart_rate_alone() -> None:
    state = AthleteState("ann", thresholds=RuleThresholds(max_hr_bpm=190.0), live=False)
    easy = _sessions(_hr_session(state, T0, 150.0, 20))  # zone 2: not high
    assert (easy[0].high_intensity, easy[0].hr_zone3_s) == (False, 0.0)
    first = _hr_session(state, T0 + 2 * H_NS, 172.0, 9)
    (hard,) = _sessions(first)
    assert hard.high_intensity is True
    assert hard.hr_zone3_s == pytest.approx(540.0)
    assert not _raised(first, "hi_spacing")
    second = _hr_session(state, T0 + 26 * H_NS, 175.0, 9)  # 24 h later: < 48 h
    assert _raised(second, "hi_spacing")
    # Without the athlete's zones the same heart rate says nothing.
    unknown = AthleteState("bob", live=False)
    (session,) = _sessions(_hr_session(unknown, T0, 175.0, 9))
    assert (session.high_intensity, session.hr_zone3_s) == (None, None)


@pytest.mark.parametrize(
    ("key", "value"), [("max_hr_bpm", 300), ("max_hr_bpm", 60), ("threshold_hr_bpm", 200)]
)
def test_implausible_heart_rates_are_refused_naming_the_key(key: str, value: int) -> None:
    with pytest.raises(ValueError, match=key):
        RuleThresholds().with_overrides({"max_hr_bpm": 190, key: value})


def test_rpe_and_log_offline_refuse_a_store_another_process_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `run` holding the store without listening (no broker here) would not see an entry
    written beside it: the offline path takes the store's lock and names the holder."""
    from streamer import cli
    from streamer.store_lock import hold_store

    store = tmp_path / "s.sqlite3"
    config = tmp_path / "redox.toml"
    config.write_text(f'[store]\npath = "{store}"\n[[athletes]]\nid = "ann"\nname = "Ann"\n')
    common = ["--athlete", "ann", "--config", str(config)]
    with hold_store(store, "run"):
        for argv in (
            ["rpe", "5", *common],
            ["log", "droms", "310", "--timing", "fasted", *common],
        ):
            assert cli.main(argv) != 0, argv
            err = capsys.readouterr().err.strip()
            assert "run" in err, err
            assert str(os.getpid()) in err, err
            assert "\n" not in err, err
