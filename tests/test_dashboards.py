"""Every query of every shipped Grafana dashboard runs on a real InfluxDB 1.6 and returns data.

The database is filled the way production fills it: the demo's emulated history
(:mod:`streamer.demo.history`: 26 days of mornings, sessions and grip tests per athlete, the
first athlete over-reaching in the last week) goes through the real pipeline, processors,
rules and alert book, and reaches InfluxDB through the real writer
(:mod:`streamer.sinks.influx`, :mod:`streamer.sinks.influx_schema`); then one more day is replayed
with live samples on (heart rate, RR, SmO2, power, force). Each panel target, template
variable and annotation query is then run with Grafana's macros substituted; a query
that InfluxDB rejects, or that returns no value, fails.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.alerts import AlertBook, RuleEvaluation
from processors.rules import CATALOGUE
from streamer.config import InfluxConfig
from streamer.results import Result, alert_result
from streamer.sinks.influx import InfluxWriter
from streamer.sinks.influx_schema import FIELD_TYPES
from streamer.store import Store
from tests.dashboard_queries import (
    INFLUX_DATASOURCE_UID,
    Query,
    dashboard_queries,
    datasource_uids,
    identifiers,
    load,
    panels_without_targets,
    shipped_dashboards,
    substitute,
    time_filter,
)
from tests.emulated_history import replay
from tests.servers import InfluxDB1

DB = "redox"
ATHLETES = 2  # athlete1 over-reaches in its last week (alerts), athlete2 stays steady
HISTORY_DAYS = 26  # ≥ 3 weeks, and ≥ 22 so baselines, trends and their alerts exist
INTERVAL = "1h"  # what Grafana picks for 30 days on a ~1000 px wide panel, rounded
TAGS = frozenset({"athlete", "device", "rule", "severity", "scope", "class", "marker", "timing"})

DASHBOARD_FILES = shipped_dashboards()
QUERIES = [q for path in DASHBOARD_FILES for q in dashboard_queries(path)]


# --- static checks: the JSON is what Grafana and the schema expect ---------------------------


def test_both_dashboards_are_shipped() -> None:
    assert {p.stem for p in DASHBOARD_FILES} >= {"athlete", "team"}


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_every_panel_has_raw_influxql_targets(path: Path) -> None:
    assert panels_without_targets(path) == []
    queries = dashboard_queries(path)
    assert queries
    not_raw = [q.where for q in queries if not q.raw or not q.text.strip()]
    assert not_raw == [], "builder-mode or empty queries cannot be tested here"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_dashboards_use_only_the_provisioned_datasource(path: Path) -> None:
    assert datasource_uids(path) == {INFLUX_DATASOURCE_UID}


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: f"{q.dashboard}: {q.where}")
def test_query_names_only_schema_measurements_fields_and_tags(query: Query) -> None:
    measurements, names, aliases = identifiers(query.text)
    assert measurements, f"no FROM measurement in {query.text}"
    unknown_measurements = measurements - set(FIELD_TYPES)
    assert not unknown_measurements, (
        f"not in streamer/sinks/influx_schema.py: {unknown_measurements}"
    )
    known = TAGS.union(*(FIELD_TYPES[m] for m in measurements)) | aliases
    assert names <= known, (
        f"{sorted(names - known)} are neither fields nor tags of {sorted(measurements)}"
    )


def test_athlete_dashboard_offers_the_athlete_variable_from_morning() -> None:
    athlete = load(next(p for p in DASHBOARD_FILES if p.stem == "athlete"))
    (var,) = [v for v in athlete["templating"]["list"] if v["name"] == "athlete"]
    assert var["query"] == 'SHOW TAG VALUES FROM "morning" WITH KEY = "athlete"'


def test_substitution_fills_every_variable_and_refuses_unknown_ones() -> None:
    text = (
        'SELECT mean("x") FROM "m" WHERE "a" =~ /^$athlete$/ AND [[athlete]] AND '
        "${athlete:regex} AND $timeFilter GROUP BY time($__interval) LIMIT $__interval_ms"
    )
    out = substitute(
        text,
        {
            "athlete": "ann",
            "timeFilter": "time > 0",
            "__interval": "1h",
            "__interval_ms": "3600000",
        },
    )
    assert (
        out == 'SELECT mean("x") FROM "m" WHERE "a" =~ /^ann$/ AND ann AND ann AND '
        "time > 0 GROUP BY time(1h) LIMIT 3600000"
    )
    with pytest.raises(KeyError, match=r"\$device"):
        substitute("WHERE device = '$device'", {})


# --- the real database --------------------------------------------------------------------


async def _fill(influx: InfluxDB1, store_path: Path) -> None:
    """History through the real pipeline and writer, then one day with live samples, and
    one alert that came and went."""
    config = InfluxConfig(url=influx.url, db=DB, create_database=True)
    with Store(store_path.with_suffix(".writer.sqlite3")) as outbox:
        writer = InfluxWriter(config, outbox)
        await replay(store_path, [writer], athletes=ATHLETES, days=HISTORY_DAYS, settle=[writer])
        assert writer.status()["outbox_depth"] == 0
        # Every alert of the history is still open at its end (the steady athlete's good
        # grip drop is a finding, not an alert): a warning raised and cleared since feeds
        # the "Alert cleared" annotations, a pull-back raised and resumed the "Resume"
        # ones. (The replay drained and closed its writer.)
        writer = InfluxWriter(config, outbox)
        writer.accept(_raised_and_cleared("athlete1", "hrv_downtrend"))
        writer.accept(_raised_and_cleared("athlete1", "grip_spillover"))
        task = asyncio.create_task(writer.run())
        try:
            left = await writer.drain(30.0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        status = writer.status()
    assert left == 0
    assert (status["outbox_depth"], status["dead_lettered"], status["shed"]) == (0, 0, 0), status


def _raised_and_cleared(athlete: str, rule: str) -> list[Result]:
    """The two alert results of ``rule`` raised two days ago and cleared yesterday (a
    pull-back rule: with the reason ``resume``, its inactive verdict being back in band)."""
    day_ns = 86_400 * 10**9
    now_ns = time.time_ns()
    book = AlertBook(athlete)
    evaluation = _evaluate(rule)
    raised = book.update(evaluation(True), now_ns - 2 * day_ns)
    cleared = book.update(evaluation(False), now_ns - day_ns)
    assert raised is not None
    assert cleared is not None
    return [
        alert_result(athlete, raised, [raised], ts_ns=now_ns - 2 * day_ns),
        alert_result(athlete, cleared, [], ts_ns=now_ns - day_ns),
    ]


def _evaluate(rule: str) -> Callable[[bool], RuleEvaluation]:
    spec = CATALOGUE[rule]

    def evaluation(active: bool) -> RuleEvaluation:
        return RuleEvaluation(rule, spec.severity, active, spec.title, spec.advice, spec.source)

    return evaluation


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    workdir = tmp_path_factory.mktemp("dashboards")
    server = InfluxDB1(workdir / "influxdb")
    server.start()
    try:
        asyncio.run(_fill(server, workdir / "store.sqlite3"))
        yield server
    finally:
        server.stop()


def _run(influx: InfluxDB1, text: str) -> list[dict[str, Any]]:
    """Run one InfluxQL statement; fail with the server's message if it is rejected."""
    try:
        answer = influx.query(text, DB)
    except urllib.error.HTTPError as exc:  # a parse error is HTTP 400 with a JSON body
        raise AssertionError(f"InfluxDB rejected {text!r}: {exc.read().decode()}") from None
    results = answer.get("results")
    assert isinstance(results, list), f"no results for {text}: {answer}"
    assert results, f"no results for {text}: {answer}"
    result = results[0]
    assert "error" not in result, f"InfluxDB rejected {text!r}: {result['error']}"
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def _has_values(series: list[dict[str, Any]]) -> bool:
    """At least one row with a non-null value besides its time."""
    for s in series:
        columns = s["columns"]
        for row in s.get("values", []):
            if any(v is not None for c, v in zip(columns, row, strict=True) if c != "time"):
                return True
    return False


def _variables(influx: InfluxDB1, dashboard: dict[str, Any]) -> dict[str, str]:
    """Grafana's macros plus each template variable at its default (first) value, found by
    running the variable's own query."""
    values = {
        "timeFilter": time_filter(dashboard),
        "__interval": INTERVAL,
        "__interval_ms": str(3_600_000),
    }
    for var in dashboard["templating"]["list"]:
        series = _run(influx, substitute(var["query"], values))
        options = sorted(str(row[-1]) for s in series for row in s.get("values", []))
        assert options, f"variable {var['name']} has no values"
        values[var["name"]] = options[0]
    return values


@pytest.mark.integration
def test_replayed_history_covers_three_weeks(influx: InfluxDB1) -> None:
    series = _run(influx, 'SELECT count("ln_rmssd") FROM "morning" GROUP BY "athlete"')
    assert {s["tags"]["athlete"] for s in series} == {"athlete1", "athlete2"}
    assert all(s["values"][0][1] >= 21 for s in series)


@pytest.mark.integration
@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_every_dashboard_query_runs_and_returns_data(influx: InfluxDB1, path: Path) -> None:
    dashboard = load(path)
    variables = _variables(influx, dashboard)
    empty: list[str] = []
    for query in dashboard_queries(path):
        text = substitute(query.text, variables)
        if not _has_values(_run(influx, text)):
            empty.append(f"{query.where}: {text}")
    assert empty == [], "queries without data:\n" + "\n".join(empty)


@pytest.mark.integration
def test_athlete_variable_lists_every_athlete(influx: InfluxDB1) -> None:
    series = _run(influx, 'SHOW TAG VALUES FROM "morning" WITH KEY = "athlete"')
    assert sorted(row[1] for s in series for row in s["values"]) == ["athlete1", "athlete2"]


@pytest.mark.integration
def test_a_broken_query_is_caught(influx: InfluxDB1) -> None:
    # What the dashboard test does with a typo: a misspelled field returns nothing, a
    # syntax error is rejected by the server. Either fails the dashboard test.
    misspelled = 'SELECT "ln_rmsd" FROM "morning" WHERE time >= now() - 30d'
    assert not _has_values(_run(influx, misspelled))
    with pytest.raises(AssertionError, match="InfluxDB rejected"):
        _run(influx, 'SELECT "ln_rmssd" FORM "morning"')


@pytest.mark.integration
def test_team_open_alerts_panel_shows_the_over_reaching_athletes_alerts(
    influx: InfluxDB1,
) -> None:
    team = load(next(p for p in DASHBOARD_FILES if p.stem == "team"))
    (query,) = [
        q
        for q in dashboard_queries(next(p for p in DASHBOARD_FILES if p.stem == "team"))
        if q.where.startswith("panel 'Open alerts'")
    ]
    series = _run(influx, substitute(query.text, _variables(influx, team)))
    open_rules = {(s["tags"]["athlete"], s["tags"]["rule"]) for s in series}
    pull_back = {r for a, r in open_rules if a == "athlete1"}
    assert {"rhr_creep", "smo2_slow_recovery"} <= pull_back, open_rules
