"""The resume signal end to end, on a real mosquitto and a real InfluxDB 1.6: a history
imported with ``redox-streamer import csv`` (through the live pipeline: gate, trends, rule
engine, alert book) raises ``rhr_creep`` and then clears it because the morning signals
are back in band; MQTT subscribers see raised-then-cleared with ``clear_reason`` ``resume``
and its evidence, InfluxDB has both points with the new fields, and ``status`` says
"resume (signals back in band since D)" in text and JSON.

The history ends yesterday so that ``status`` (which looks at now) still shows the resume.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from processors import physiology as ph
from streamer.cli import main
from tests.servers import InfluxDB1, Mosquitto
from tests.test_resume import BASELINE, CREEP, RECOVERY

LAST = 32  # the last day of the constructed history (tests.test_resume): yesterday


def _write_history(path: Path, first: dt.date) -> None:
    """An HRV4Training-style export of the constructed history (day 31 missing)."""
    rows = ["date,HR,rMSSD"]
    for i, (hr, rmssd) in sorted((BASELINE | CREEP | RECOVERY).items()):
        rows.append(f"{(first + dt.timedelta(days=i)).isoformat()},{hr:g},{rmssd:g}")
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.integration
def test_raised_then_cleared_with_resume_reaches_mqtt_influxdb_and_status(
    tmp_path: Path,
    mosquitto: Mosquitto,
    influxdb1: InfluxDB1,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.mqtt_helpers import ThreadSubscriber

    today = dt.datetime.now(dt.UTC).date()
    first = today - dt.timedelta(days=LAST + 1)
    export = tmp_path / "hrv4training.csv"
    _write_history(export, first)
    config = tmp_path / "redox.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "store.sqlite3"}"\n'
        f'[mqtt]\nurl = "{mosquitto.url}"\n'
        f'[influx]\nurl = "{influxdb1.url}"\ndb = "redox"\ncreate_database = true\n'
        '[[athletes]]\nid = "ann"\nname = "Ann"\n'
    )
    common = ("--athlete", "ann", "--config", str(config))
    sub = ThreadSubscriber(mosquitto.port)
    try:
        sub.sync()
        assert main(["import", "csv", "--format", "hrv4training", str(export), *common]) == 0
        capsys.readouterr()

        def rhr_events() -> list[dict[str, object]]:
            events = [json.loads(p)["event"] for p in sub.payloads("redox/ann/alerts")]
            return [e for e in events if e["rule"] == "rhr_creep"]

        sub.wait_for(lambda: len(rhr_events()) >= 2, "rhr_creep raised and cleared on MQTT")
    finally:
        sub.close()

    raised, cleared = rhr_events()
    resumed_on = first + dt.timedelta(days=29)
    assert raised["state"] == "raised"
    assert raised["clear_reason"] is None
    raised_day = dt.datetime.fromtimestamp(int(raised["raised_ts_ns"]) / 1e9, dt.UTC).date()  # type: ignore[call-overload]
    volume_cut_until = (raised_day + dt.timedelta(days=ph.PULL_BACK_DAYS)).isoformat()
    assert raised["volume_cut_until"] == volume_cut_until
    assert cleared["state"] == "cleared"
    assert cleared["clear_reason"] == "resume"
    assert cleared["volume_cut_until"] == volume_cut_until
    evidence = cleared["resume_evidence"]
    assert isinstance(evidence, dict)
    assert evidence["mornings_in_band"] == ph.RESUME_MORNINGS_IN_BAND
    assert "baseline_median_bpm" in evidence  # the rule's own evidence, reused
    since_ns = cleared["resume_since_ts_ns"]
    assert isinstance(since_ns, int)
    assert dt.datetime.fromtimestamp(since_ns / 1e9, dt.UTC).date() == resumed_on

    answer = influxdb1.query(
        'SELECT "state", "active", "clear_reason", "resume_since_ts_ns", "volume_cut_until" '
        'FROM "alert" WHERE "athlete" = \'ann\' AND "rule" = \'rhr_creep\'',
        "redox",
    )
    (series,) = answer["results"][0]["series"]  # type: ignore[index]
    rows = [dict(zip(series["columns"], row, strict=True)) for row in series["values"]]
    assert [(r["state"], r["active"], r["clear_reason"]) for r in rows] == [
        ("raised", 1, None),
        ("cleared", 0, "resume"),
    ]
    assert rows[1]["resume_since_ts_ns"] == since_ns
    assert [r["volume_cut_until"] for r in rows] == [volume_cut_until] * 2
    resumes = influxdb1.query(
        'SELECT "clear_message", "rule" FROM "alert" WHERE "clear_reason" = \'resume\'',
        "redox",
    )
    # The Grafana "Resume" annotation's query: one event, with its rule and why.
    ((_, message, rule),) = resumes["results"][0]["series"][0]["values"]  # type: ignore[index]
    assert rule == "rhr_creep"
    assert "back in band" in message

    assert main(["status", *common, "--json", "--timeout", "10"]) == 0
    (ann,) = json.loads(capsys.readouterr().out)["athletes"]
    assert ann["open_alerts"] == []
    assert ann["pull_back"]["state"] == "resume"
    assert ann["pull_back"]["since_date"] == resumed_on.isoformat()
    assert ann["pull_back"]["rules"] == ["rhr_creep"]
    assert main(["status", *common, "--timeout", "10"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"resume (signals back in band since {resumed_on.isoformat()})" in text
