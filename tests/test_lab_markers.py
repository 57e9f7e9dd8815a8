"""Lab markers entered by hand (issue 14): GSH:GSSG, dROMs, the lipid dipstick.

The rules are driven through ``run``'s processing path: the entries are MQTT command
payloads handed to the :class:`CommandListener` (as ``run`` receives them) or markers put
in the :class:`Pipeline` inbox (as ``redox-streamer log`` offline does), processed by
:class:`AthleteState` with a real :class:`Store`, which records every result. Constructed
histories sit on the thresholds' edges, lack a baseline, or carry a timing that is not
judged.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from processors.labs import (
    LabInputError,
    LabMarker,
    LabTiming,
    droms_baseline,
    evaluate_gsh_gssg,
    parse_gsh_gssg,
)
from processors.rules import CATALOGUE, RuleThresholds
from streamer.app.commands_in import COMMAND_DEVICE, CommandListener
from streamer.app.lab_commands import LabCommand, parse_lab
from streamer.app.pipeline import Pipeline
from streamer.athlete import AthleteState
from streamer.athlete.events import LabEntry
from streamer.commands.log import command_from_args, sample_time_ns
from streamer.config import AthleteConfig, MqttConfig
from streamer.errors import CliError
from streamer.results import AlertsPayload, Kind, LabPayload, Result, StatusPayload
from streamer.sinks.ha_discovery import discovery_messages
from streamer.store import SCHEMA_VERSION, Store
from streamer.topics import Topics

DAY_NS = 86_400 * 10**9
T0 = int(dt.datetime(2026, 11, 2, 7, 0, tzinfo=dt.UTC).timestamp()) * 10**9
"""07:00 UTC on a Monday: the first draw; draw n is n days later."""

F, PRE, POST = LabTiming.FASTED, LabTiming.PRE_TRAINING, LabTiming.POST_45MIN


@dataclasses.dataclass
class Run:
    """What one batch of entries produced through the pipeline."""

    results: list[Result]

    @property
    def labs(self) -> list[LabPayload]:
        return [r.payload_as(LabPayload) for r in self.results if r.kind is Kind.LAB]

    def alerts(self) -> list[tuple[str, str]]:
        """(rule, raised|cleared) of every alert change, in order."""
        out = []
        for r in self.results:
            if r.kind is Kind.ALERTS:
                event = r.payload_as(AlertsPayload).event
                out.append((event.rule, event.state))
        return out


def process(
    store: Store, entries: Sequence[LabEntry], thresholds: RuleThresholds | None = None
) -> Run:
    """``entries`` through the pipeline, as ``redox-streamer log`` offline puts them."""
    results: list[Result] = []

    async def go() -> None:
        pipeline = Pipeline(
            lambda a: AthleteState(a, store, thresholds, live=False),
            store,
            athletes=["ann"],
            on_result=results.append,
        )
        task = asyncio.create_task(pipeline.run())
        for entry in entries:
            await pipeline.put("ann", COMMAND_DEVICE, entry)
        await pipeline.join()
        pipeline.stop()
        await task

    asyncio.run(go())
    return Run(results)


def commands(store: Store, payloads: Sequence[tuple[str, bytes]], now_ns: int) -> Run:
    """MQTT command payloads as ``run``'s command listener receives them, stamped ``now_ns``
    (entries without a ``time``)."""
    results: list[Result] = []

    async def go() -> None:
        pipeline = Pipeline(
            lambda a: AthleteState(a, store, live=False),
            store,
            athletes=["ann"],
            on_result=results.append,
        )
        task = asyncio.create_task(pipeline.run())
        listener = CommandListener(
            MqttConfig("localhost"), ["ann"], pipeline.offer, clock_ns=lambda: now_ns
        )
        for topic, payload in payloads:
            assert listener.handle(f"redox/ann/set/{topic}", payload), (topic, payload)
        await pipeline.join()
        pipeline.stop()
        await task

    asyncio.run(go())
    return Run(results)


def gsh(day: float, ratio: float, timing: LabTiming = F) -> LabEntry:
    return LabEntry(T0 + round(day * DAY_NS), LabMarker.GSH_GSSG, ratio, timing)


def droms(day: float, value: float, timing: LabTiming = F) -> LabEntry:
    return LabEntry(T0 + round(day * DAY_NS), LabMarker.DROMS, value, timing)


def stick(day: float, positive: bool) -> LabEntry:
    return LabEntry(T0 + round(day * DAY_NS), LabMarker.LIPID_DIPSTICK, float(positive))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store.sqlite3")


# --- GSH:GSSG ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "band", "raised"),
    [
        (99.9, "leaning_oxidative", True),
        (100.0, "below_trained", False),  # "below 100:1": 100 itself is not
        (150.0, "trained", False),
        (300.0, "trained", False),
        (400.0, "above_trained", False),
        (400.1, "over_supplemented", False),  # a finding, never an alert
    ],
)
def test_a_resting_ratio_is_banded_and_only_below_100_raises(
    store: Store, ratio: float, band: str, raised: bool
) -> None:
    run = process(store, [gsh(0, ratio)])
    (lab,) = run.labs
    assert (lab.band, lab.judged, lab.gsh_gssg_ratio, lab.timing) == (band, True, ratio, "fasted")
    assert lab.finding == ("gsh_gssg_high" if ratio > 400 else None)
    assert run.alerts() == ([("gsh_gssg_low", "raised")] if raised else [])
    assert [r.payload.gsh_gssg_ratio for r in store.lab_entries("ann")] == [ratio]


def test_the_low_alert_clears_only_back_in_the_trained_range(store: Store) -> None:
    run = process(store, [gsh(0, 90), gsh(1, 149.9, PRE), gsh(2, 120), gsh(3, 150)])
    assert run.alerts() == [("gsh_gssg_low", "raised"), ("gsh_gssg_low", "cleared")]
    cleared = [r for r in run.results if r.kind is Kind.ALERTS][-1]
    assert cleared.ts_ns == T0 + 3 * DAY_NS  # by the 150:1 draw, not the 149.9 or 120 ones


def test_a_post_session_draw_is_not_judged_and_is_set_against_the_days_resting_one(
    store: Store,
) -> None:
    # 160:1 fasted, then one hard session: 96:1 at 45 min (-40%), "leaning" if judged.
    run = process(store, [gsh(0, 160), gsh(0.45, 96, POST), gsh(1.45, 90, POST)])
    fasted, post, alone = run.labs
    assert fasted.band == "trained"
    assert (post.band, post.judged, post.finding) == ("post_session", False, None)
    assert post.change_pct == pytest.approx(-40.0)
    assert alone.change_pct is None  # no resting draw that day: nothing to compare with
    assert run.alerts() == []


def test_a_post_session_draw_neither_raises_nor_clears(store: Store) -> None:
    run = process(store, [gsh(0, 80), gsh(0.45, 200, POST), gsh(1.45, 40, POST)])
    assert run.alerts() == [("gsh_gssg_low", "raised")]
    with Store(store.path) as again:
        restarted = AthleteState("ann", again)
    assert [a.rule_id for a in restarted.book.open_alerts()] == ["gsh_gssg_low"]


def test_a_gsh_gssg_value_without_its_timing_is_refused_with_the_fix() -> None:
    with pytest.raises(LabInputError, match=r"needs its timing: fasted, pre-training"):
        LabCommand(LabMarker.GSH_GSSG, 180.0)
    with pytest.raises(LabInputError, match=r"needs its timing"):
        parse_lab(LabMarker.DROMS, b"300")
    with pytest.raises(LabInputError, match=r"outside 1–2000:1"):
        parse_lab(LabMarker.GSH_GSSG, b"5000 fasted")
    with pytest.raises(LabInputError, match=r"timing 'after'"):
        parse_lab(LabMarker.GSH_GSSG, b"180 after")
    assert parse_gsh_gssg("180:1") == parse_gsh_gssg("180") == parse_gsh_gssg("360:2") == 180.0


# --- dROMs ------------------------------------------------------------------------------


def test_droms_has_no_verdict_before_three_resting_values(store: Store) -> None:
    run = process(store, [droms(0, 300), droms(1, 310), droms(2, 900)])
    assert [lab.band for lab in run.labs] == ["no_baseline"] * 3
    assert all(not lab.judged and lab.baseline_carr_u is None for lab in run.labs)
    assert run.alerts() == []


@pytest.mark.parametrize(
    ("value", "raised"),
    [(405.0, False), (405.01, True)],  # baseline 300: exactly +35% is not "more than"
)
def test_droms_raises_only_more_than_35_percent_over_the_median_baseline(
    store: Store, value: float, raised: bool
) -> None:
    run = process(store, [droms(0, 290), droms(1, 300), droms(2, 380), droms(3, value)])
    last = run.labs[-1]
    assert last.baseline_carr_u == 300.0  # the median: the 380 does not drag it up
    assert last.judged
    assert last.band == ("above_baseline" if raised else "within_baseline")
    assert run.alerts() == ([("droms_rise", "raised")] if raised else [])


def test_droms_baseline_is_the_last_five_resting_values_taken_before_the_entry(
    store: Store,
) -> None:
    # Six resting values, a post-session one that must not count, then a back-dated one
    # (taken before the last two, entered after them).
    entries = [droms(d, v) for d, v in enumerate([100, 200, 200, 200, 300, 300])]
    entries.append(droms(5.5, 1000, POST))
    run = process(store, [*entries, droms(7, 404), droms(3.5, 270)])
    # 404 against the median of 200, 200, 200, 300, 300 (the 100 is the sixth back): +102%.
    judged, backdated = run.labs[-2:]
    assert judged.baseline_carr_u == 200.0
    assert run.labs[-3].band == "post_session"  # the 1000: not judged, not in the baseline
    # 270 at day 3.5: its baseline is the values taken before it: 100, 200, 200, 200.
    assert backdated.baseline_carr_u == 200.0
    assert backdated.change_pct == pytest.approx(35.0)
    # Judged in its result, but behind the newer 404: the open alert follows that one.
    assert backdated.band == "within_baseline"
    assert run.alerts() == [("droms_rise", "raised")]


def test_droms_baseline_survives_a_restart_from_the_store(store: Store) -> None:
    process(store, [droms(0, 300), droms(1, 300), droms(2, 300)])
    with Store(store.path) as again:  # a new run: the athlete reloads its entries
        run = process(again, [droms(3, 500)])
    assert run.labs[0].baseline_carr_u == 300.0
    assert run.alerts() == [("droms_rise", "raised")]
    assert droms_baseline([300.0, 310.0]) is None


# --- dipstick ---------------------------------------------------------------------------


def test_a_positive_strip_pulls_back_and_a_negative_one_only_ends_that(store: Store) -> None:
    first_negative = process(store, [stick(0, False)])
    assert first_negative.alerts() == []  # negative alone says nothing: no finding, no alert
    assert first_negative.labs[0].band == "negative"
    run = process(store, [stick(1, True), stick(2, True), stick(3, False)])
    assert run.alerts() == [
        ("lipid_dipstick_positive", "raised"),
        ("lipid_dipstick_positive", "cleared"),
    ]
    assert [lab.positive for lab in run.labs] == [True, True, False]
    assert CATALOGUE["lipid_dipstick_positive"].severity.value == "pull_back"


# --- MQTT commands (what run receives) ------------------------------------------------------


def test_mqtt_command_payloads_reach_the_rules_and_the_store(store: Store) -> None:
    at = "2026-11-10T06:45:00Z"
    run = commands(
        store,
        [
            ("gsh_gssg", b"95:1 fasted"),
            ("droms", b'{"value": 300, "timing": "fasted", "time": "2026-11-01T06:45:00Z"}'),
            ("droms", b'{"value": 300, "timing": "pre-training", "time": "2026-11-02T06:45:00Z"}'),
            ("droms", b'{"value": 300, "timing": "fasted", "time": "2026-11-03T06:45:00Z"}'),
            ("droms", f'{{"value": 450, "timing": "fasted", "time": "{at}"}}'.encode()),
            ("lipid_dipstick", b"positive"),
        ],
        now_ns=T0 + 10 * DAY_NS,
    )
    assert run.alerts() == [
        ("gsh_gssg_low", "raised"),
        ("droms_rise", "raised"),
        ("lipid_dipstick_positive", "raised"),
    ]
    rows = store.lab_entries("ann")
    assert [r.payload.marker for r in rows] == ["droms"] * 4 + ["gsh_gssg", "lipid_dipstick"]
    stamped = dt.datetime.fromisoformat(at).timestamp() * 1e9
    assert rows[3].ts_ns == stamped  # the sample's time, not the arrival's
    assert rows[4].ts_ns == T0 + 10 * DAY_NS  # no time given: when the command arrived


@pytest.mark.parametrize(
    ("topic", "payload", "why"),
    [
        ("gsh_gssg", b"180", "needs its timing"),
        ("gsh_gssg", b"-4 fasted", "outside 1–2000:1"),
        ("droms", b"lots fasted", "not a number"),
        ("droms", b"three hundred fasted", "send 'VALUE TIMING'"),
        ("lipid_dipstick", b"maybe", "give positive or negative"),
        ("droms", b'{"value": 300, "timing": "fasted", "time": "2026-11-01 06:45"}', "no zone"),
        ("droms", b'{"value": 300, "timing": "fasted", "time": "2099-01-01T00:00Z"}', "future"),
    ],
)
def test_a_bad_lab_command_is_dropped_with_its_reason_and_run_goes_on(
    caplog: pytest.LogCaptureFixture, topic: str, payload: bytes, why: str
) -> None:
    offered: list[object] = []
    listener = CommandListener(
        MqttConfig("localhost"),
        ["ann"],
        lambda a, d, r: offered.append(r) or True,
        clock_ns=lambda: T0,
    )
    assert not listener.handle(f"redox/ann/set/{topic}", payload)
    assert offered == []
    assert why in caplog.text
    assert "Traceback" not in caplog.text


# --- the CLI's parsing ----------------------------------------------------------------------


def _args(marker: LabMarker, value: str, timing: LabTiming | None = None) -> argparse.Namespace:
    return argparse.Namespace(lab_marker=marker, value=value, timing=timing, date=None, time=None)


def test_cli_values_become_the_command_it_publishes() -> None:
    command = command_from_args(_args(LabMarker.GSH_GSSG, "180:1", PRE))
    assert command.payload() == b'{"value":180.0,"timing":"pre-training"}'
    assert command_from_args(_args(LabMarker.LIPID_DIPSTICK, "neg")).payload() == (
        b'{"value":"negative"}'
    )
    with pytest.raises(CliError, match=r"dROMs 'lots' is not a number: give CARR U"):
        command_from_args(_args(LabMarker.DROMS, "lots", F))
    with pytest.raises(CliError, match=r"give --time HH:MM too"):
        sample_time_ns(dt.date(2020, 1, 1), None)
    when = sample_time_ns(dt.date(2026, 11, 2), dt.time(7, 15))
    assert when == round(dt.datetime(2026, 11, 2, 7, 15).astimezone().timestamp() * 1e9)


def test_thresholds_are_configurable_and_checked() -> None:
    th = RuleThresholds().with_overrides({"gsh_gssg_low_ratio": 120, "droms_rise_fraction": 0.5})
    assert evaluate_gsh_gssg(110.0, F, thresholds=th).band == "leaning_oxidative"
    with pytest.raises(ValueError, match=r"GSH:GSSG thresholds must rise"):
        RuleThresholds(gsh_gssg_low_ratio=200.0)
    with pytest.raises(ValueError, match=r"droms_baseline_min_values"):
        RuleThresholds(droms_baseline_min_values=6)


# --- Home Assistant ---------------------------------------------------------------------


def test_home_assistant_lab_entities_publish_what_run_parses() -> None:
    athlete = AthleteConfig(id="alice", name="Alice")
    messages = {t: json.loads(p) for t, p in discovery_messages(Topics("club/redox"), [athlete])}
    numbers = {
        t: c for t, c in messages.items() if t.startswith("homeassistant/number/redox_alice/log_")
    }
    assert len(numbers) == 2 * len(LabTiming)  # GSH:GSSG and dROMs, one per timing
    acl = (Path(__file__).resolve().parents[1] / "deploy/mosquitto/acl").read_text()
    for config in numbers.values():
        topic = config["command_topic"]
        marker = LabMarker(topic.rsplit("/", 1)[1])
        assert f"topic write redox/+/set/{marker.value}" in acl
        # HA renders the template with the entered value: the payload run parses.
        payload = config["command_template"].replace("{{ value }}", "180")
        command = parse_lab(marker, payload.encode())
        assert command.value == 180.0
        assert command.timing is not None
        assert command.timing.value in config["name"]
    select = messages["homeassistant/select/redox_alice/log_lipid_dipstick/config"]
    assert select["command_topic"] == "club/redox/alice/set/lipid_dipstick"
    assert [parse_lab(LabMarker.LIPID_DIPSTICK, o.encode()).value for o in select["options"]] == [
        1.0,
        0.0,
    ]
    sensor = messages["homeassistant/sensor/redox_alice/lab_gsh_gssg/config"]
    # The retained status, not the lab topic: the sensor has its value after an HA restart.
    assert sensor["state_topic"] == "club/redox/alice/status"
    assert "value_json.labs.gsh_gssg.value" in sensor["value_template"]
    stick_sensor = messages["homeassistant/sensor/redox_alice/lab_lipid_dipstick/config"]
    assert "value_json.labs.lipid_dipstick.band" in stick_sensor["value_template"]


def test_home_assistant_lab_sensors_render_the_retained_status(store: Store) -> None:
    """The sensors' templates, rendered as HA renders them (Jinja2), on the status ``run``
    publishes: each marker's value; a marker not entered yet keeps the sensor's state."""
    jinja2 = pytest.importorskip("jinja2")
    athlete = AthleteConfig(id="ann", name="Ann")
    messages = {t: json.loads(p) for t, p in discovery_messages(Topics("redox"), [athlete])}
    run = process(store, [gsh(0, 180.0), stick(1, True)])
    status = [r for r in run.results if r.kind is Kind.STATUS][-1]
    value_json = json.loads(json.dumps(dict(status.fields)))

    def render(key: str) -> str:
        config = messages[f"homeassistant/sensor/redox_ann/{key}/config"]
        assert config["state_topic"] == "redox/ann/status"
        template = jinja2.Environment().from_string(config["value_template"])
        return template.render(value_json=value_json, states=lambda entity: "kept")

    assert render("lab_gsh_gssg") == "180.0"
    assert render("lab_lipid_dipstick") == "positive"
    assert render("lab_droms") == "kept"  # never entered: HA keeps what it shows
    del value_json["labs"]  # a status retained before it carried labs
    assert render("lab_gsh_gssg") == "kept"


def test_the_retained_status_carries_each_markers_newest_entry(store: Store) -> None:
    """Home Assistant's lab sensors read the retained status: every entry that is its
    marker's newest republishes it; a back-dated one does not replace the newer value;
    a restarted streamer still carries them."""
    run = process(store, [gsh(1, 180.0), droms(2, 300.0), stick(3, False), gsh(0, 90.0)])
    statuses = [r.payload_as(StatusPayload) for r in run.results if r.kind is Kind.STATUS]
    # gsh(0, 90) is leaning oxidative but back-dated behind gsh(1): the alert follows the
    # newest sample and the status keeps it, so nothing is published for it.
    assert len(statuses) == 3
    last = statuses[-1].labs
    assert sorted(last) == ["droms", "gsh_gssg", "lipid_dipstick"]
    assert (last["gsh_gssg"].value, last["gsh_gssg"].timing) == (180.0, "fasted")
    assert (last["gsh_gssg"].band, last["gsh_gssg"].date) == ("trained", "2026-11-03")
    assert (last["droms"].value, last["droms"].band) == (300.0, "no_baseline")
    assert (last["lipid_dipstick"].value, last["lipid_dipstick"].band) == (0.0, "negative")
    # The JSON round trip a subscriber makes.
    assert StatusPayload.from_fields(statuses[-1].fields()) == statuses[-1]
    # A restart: the labs come back from the store's history with the next status.
    again = process(store, [droms(4, 310.0)])
    (status,) = [r.payload_as(StatusPayload) for r in again.results if r.kind is Kind.STATUS]
    assert status.labs["gsh_gssg"].value == 180.0
    assert status.labs["droms"].value == 310.0


# --- the store ------------------------------------------------------------------------------


def test_a_schema_2_store_gains_the_lab_table_and_is_read_without_it(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with Store(path):
        pass
    db = sqlite3.connect(path, isolation_level=None)  # as redox-streamer before issue 14 left it
    db.execute("DROP TABLE lab_entries")
    db.execute("PRAGMA user_version = 2")
    db.close()
    with Store(path, read_only=True) as reader:  # report: never migrates
        assert reader.schema_version == 2
        assert reader.lab_entries("ann") == []
        assert reader.athletes() == []
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 3
        run = process(store, [stick(0, True)])
        assert [r.payload.positive for r in store.lab_entries("ann")] == [True]
        assert store.athletes() == ["ann"]
    assert run.alerts() == [("lipid_dipstick_positive", "raised")]
