"""The application assembly (``streamer.app.assembly``) every long-running command builds, and what
``replay`` now takes from it: the config's thresholds and sinks, as ``run`` does."""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from devices.codecs import CODECS
from devices.emulated.signals import EffortSchedule, SmO2Parameters, smo2_points
from devices.recording import iter_records
from devices.records import SmO2Sample
from processors import physiology as ph
from processors.profiles import thresholds_for
from processors.rules import RuleThresholds
from streamer.app.assembly import App, athlete_thresholds
from streamer.athlete import SessionEnd, SessionStart
from streamer.cli import main
from streamer.config import Config, InfluxConfig, MqttConfig, load_config
from streamer.results import Kind, Result
from streamer.sinks.mqtt import MqttOutbox
from streamer.store import Store
from tests.mqtt_helpers import ThreadSubscriber
from tests.servers import InfluxDB1, Mosquitto

T0_NS = 1_767_000_000_000_000_000


def write_smo2_session(path: Path) -> None:
    """A Moxy's raw notifications over three 60-s efforts that recover in ~3 min each."""
    codec = CODECS["moxy"]
    schedule = EffortSchedule(first_s=60.0, work_s=60.0, rest_s=240.0, count=3)
    points = smo2_points(schedule, SmO2Parameters(recovery_tau_s=60.0), 2.0, seed=5)
    lines = []
    previous = None
    for k, p in enumerate(itertools.islice(points, 500)):
        sample = SmO2Sample(
            T0_NS + round(p.t_s * 1e9), round(p.smo2_pct, 1), round(p.thb_gdl, 2), k % 256, previous
        )
        previous = sample.smo2_pct
        hex_ = codec.encode(sample).hex()
        lines.append(
            json.dumps({"t_ns": sample.t_ns, "device": "moxy", "char": "moxy", "hex": hex_})
        )
    path.write_text("\n".join(lines) + "\n")


def write_config(tmp_path: Path, body: str = "", *, rules: str = "") -> Path:
    """Athlete ``ann`` (with ``rules`` in her own rules table) and ``body`` after."""
    path = tmp_path / "redox.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "store.sqlite3"}"\n'
        f'[[athletes]]\nid = "ann"\nname = "Ann"\n[athletes.rules]\n{rules}\n{body}'
    )
    return path


ONE_SLOW_SESSION = "smo2_slow_recovery_sessions = 1\n"
"""A rule override that lets one session with recovery > 120 s raise smo2_slow_recovery."""


def alert_events(results: list[dict[str, Any]]) -> list[tuple[object, object]]:
    return [
        (r["event"]["rule"], r["event"]["state"]) for r in results if r["kind"] == Kind.ALERTS.value
    ]


# --- the assembly -------------------------------------------------------------------------


def test_sinks_are_the_ones_the_config_names_mqtt_first() -> None:
    with App.from_config(Config(), store=":memory:") as app:
        assert app.sinks == ()
    config = Config(
        mqtt=MqttConfig.from_url("mqtt://127.0.0.1:1"),
        influx=InfluxConfig(url="http://127.0.0.1:1", db="redox"),
    )
    with App.from_config(config, store=":memory:") as app:
        assert [s.name for s in app.sinks] == ["mqtt", "influx"]


def test_an_athlete_gets_its_profile_then_the_config_rules_then_its_own(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[rules]\nrhr_creep_delta_bpm = 7\n", rules="grip_noise_z = 3\n")
    path.write_text(path.read_text().replace('name = "Ann"', 'name = "Ann"\nprofile = "older"'))
    config = load_config(path)
    with App.from_config(config, store=":memory:") as app:
        ann = app.athlete("ann")
        assert ann.thresholds == config.thresholds_for("ann")
        assert ann.thresholds.hi_spacing_h == ph.HIGH_INTENSITY_SPACING_OLDER_H
        assert (ann.thresholds.rhr_creep_delta_bpm, ann.thresholds.grip_noise_z) == (7, 3)
        # An athlete the config does not name: the default profile with [rules].
        assert app.athlete("guest").thresholds == thresholds_for("default", config.rules)
        assert app.states.keys() == {"ann", "guest"}


def test_without_a_config_athletes_keep_the_rule_defaults() -> None:
    assert athlete_thresholds(Config(), "replay") == RuleThresholds()


def test_options_given_to_the_app_reach_every_athlete_and_calls_override_them() -> None:
    with App.from_config(Config(), store=":memory:", live=False, hrv_every_s=60.0) as app:
        first = app.athlete("a")
        second = app.athlete("b", live=True)
    assert (first.live, first.hrv_every_s) == (False, 60.0)
    assert (second.live, second.hrv_every_s) == (True, 60.0)


def test_the_pipeline_runs_the_athlete_made_already(tmp_path: Path) -> None:
    with App.from_config(load_config(write_config(tmp_path)), store=":memory:") as app:
        made = app.athlete("ann", morning_span_s=60.0)
        pipeline = app.pipeline()
        assert pipeline.athletes == ("ann",)
        assert pipeline.processor("ann") is made


def test_the_app_closes_the_store_it_opened_and_not_one_it_was_given(tmp_path: Path) -> None:
    with Store(tmp_path / "given.sqlite3") as given:
        with App.from_config(Config(), store=given):
            pass
        assert MqttOutbox(given).depth() == 0  # still open
    with App.from_config(Config(), store=tmp_path / "own.sqlite3") as app:
        own = app.store
    with pytest.raises(sqlite3.ProgrammingError):  # closed
        MqttOutbox(own).depth()


# --- replay honours the config as run does -------------------------------------------------


def test_replay_with_a_config_applies_the_athletes_thresholds_as_run_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "session.jsonl"
    write_smo2_session(recording)
    config_path = write_config(tmp_path, rules=ONE_SLOW_SESSION)

    assert main(["replay", str(recording), "--session", "--json"]) == 0
    plain = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert alert_events(plain) == []  # the default needs three slow sessions

    assert (
        main(["replay", str(recording), "--session", "--json", "--config", str(config_path)]) == 0
    )
    replayed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["athlete"] for r in replayed} == {"ann"}  # the config's only athlete
    assert alert_events(replayed) == [("smo2_slow_recovery", "raised")]

    # What run does: the app's athlete factory, the same records, the same session.
    records = list(iter_records(recording))
    with App.from_config(load_config(config_path), store=":memory:") as app:
        ann = app.athlete("ann")
        out: list[Result] = ann.process("moxy", SessionStart(records[0][1].t_ns - 1))
        for device, record in records:
            out += ann.process(device, record)
        out += ann.process("recording", SessionEnd(records[-1][1].t_ns + 1))
    from_run = [{"kind": r.kind.value, **r.fields} for r in out if r.kind is Kind.ALERTS]
    assert alert_events(from_run) == alert_events(replayed)


def test_replay_with_a_config_of_several_athletes_asks_which(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "session.jsonl"
    write_smo2_session(recording)
    config = write_config(tmp_path, '[[athletes]]\nid = "bob"\nname = "Bob"\n')
    assert main(["replay", str(recording), "--config", str(config)]) == 2
    assert "--athlete: say which athlete (ann, bob" in capsys.readouterr().err
    assert main(["replay", str(recording), "--config", str(config), "--athlete", "eve"]) == 2
    assert "--athlete 'eve' is not in" in capsys.readouterr().err
    assert main(["replay", str(recording), "--config", str(config), "--athlete", "bob"]) == 0


@pytest.mark.integration
def test_replay_with_influxdb_configured_writes_the_points(
    tmp_path: Path, influxdb1: InfluxDB1, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "session.jsonl"
    write_smo2_session(recording)
    config = write_config(
        tmp_path,
        f'[influx]\nurl = "{influxdb1.url}"\ndb = "redox"\ncreate_database = true\n',
        rules=ONE_SLOW_SESSION,
    )
    assert main(["replay", str(recording), "--session", "--config", str(config)]) == 0
    capsys.readouterr()
    result = influxdb1.query("SELECT * FROM oxygen_recovery WHERE athlete = 'ann'", "redox")
    (series,) = result["results"][0]["series"]  # type: ignore[index]
    scope = series["columns"].index("scope")
    scopes = [row[scope] for row in series["values"]]
    assert scopes == ["effort", "effort", "effort", "session"]
    alerts = influxdb1.query("SELECT * FROM alert", "redox")
    assert alerts["results"][0]["series"]  # type: ignore[index]
    # Live SmO2 samples go to the sink, as in run.
    smo2 = influxdb1.query("SELECT count(smo2_pct) FROM smo2", "redox")
    assert smo2["results"][0]["series"][0]["values"][0][1] == 500  # type: ignore[index]


@pytest.mark.integration
def test_replay_with_mqtt_configured_publishes_under_the_configured_athlete(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "session.jsonl"
    write_smo2_session(recording)
    config = write_config(tmp_path, f'[mqtt]\nurl = "{mosquitto.url}"\n')
    sub = ThreadSubscriber(mosquitto.port)
    try:
        sub.sync()
        assert main(["replay", str(recording), "--session", "--config", str(config)]) == 0
        sub.wait_for(
            lambda: len(sub.payloads("redox/ann/oxygenation")) >= 4, "4 oxygenation messages"
        )
    finally:
        sub.close()
    capsys.readouterr()
