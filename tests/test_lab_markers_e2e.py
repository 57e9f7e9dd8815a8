"""Lab markers end to end, against a real mosquitto started from the SHIPPED config and ACL
and a real InfluxDB 1.6: ``run --emulated`` (a strap) takes entries from ``redox-streamer
log`` (published to it) and from Home Assistant's user on the ``set/<marker>`` topics; they
reach ``<base>/<athlete>/lab``, raise the lab alerts, and land in the store and InfluxDB.
Then, with no ``run`` up, ``log`` works offline against the store and still delivers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
from pathlib import Path
from typing import Any

from streamer.store import Store
from tests.servers import InfluxDB1
from tests.shipped_mosquitto import ShippedBroker
from tests.test_context_e2e import STRAP, Listener, _cli, _commands_online, _raised, _start_run


def _config(tmp_path: Path, broker: ShippedBroker, influx: InfluxDB1) -> Path:
    path = tmp_path / "redox.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "store.sqlite3"}"\n'
        f'[mqtt]\nurl = "{broker.url("redox-streamer")}"\n'
        # `log`: its own account (the shipped broker lets one connection per account
        # stand, and `run` holds redox-streamer's).
        f'[mqtt.cli]\nusername = "redox-cli"\npassword = "{broker.password("redox-cli")}"\n'
        f'[influx]\nurl = "{influx.url}"\ndb = "redox"\ncreate_database = true\n'
        '[[athletes]]\nid = "ann"\nname = "Ann"\n' + STRAP
    )
    return path


def _day(back: int) -> str:
    return (dt.date.today() - dt.timedelta(days=back)).isoformat()


def _fasted(back: int) -> tuple[str, ...]:
    """A fasted draw ``back`` days ago at 07:00 (local time)."""
    return ("--timing", "fasted", "--date", _day(back), "--time", "07:00")


def _labs(listener: Listener, since: int = 0) -> list[dict[str, Any]]:
    return listener.json_on("redox/ann/lab", since)


def _influx_rows(influx: InfluxDB1, query: str) -> list[dict[str, Any]]:
    answer = influx.query(query, "redox")
    results = answer["results"]
    assert isinstance(results, list)
    series = results[0].get("series", [])
    rows = []
    for s in series:
        for values in s["values"]:
            rows.append({**s.get("tags", {}), **dict(zip(s["columns"], values, strict=True))})
    return rows


async def test_lab_entries_over_mqtt_and_the_cli_reach_store_mqtt_influx_and_alerts(
    tmp_path: Path, shipped_mosquitto: ShippedBroker, influxdb1: InfluxDB1
) -> None:
    config = _config(tmp_path, shipped_mosquitto, influxdb1)
    common = ("--athlete", "ann", "--config", str(config))
    listener = Listener(shipped_mosquitto)
    listening = asyncio.create_task(listener.run())
    async with asyncio.timeout(10):
        await listener._ready.wait()
    run = await _start_run(config)
    try:
        await listener.until("run listening for commands", lambda: _commands_online(listener))
        # The CLI, with a running `run`: the entries go to it over MQTT, dated (the
        # emulated clock of `run` runs ahead: undated entries would be stamped by it).
        for back, value in ((10, 300), (9, 310), (8, 290)):
            assert await _cli("log", "droms", *common, str(value), *_fasted(back)) == 0
        assert await _cli("log", "gsh-gssg", *common, "95:1", *_fasted(7)) == 0
        await listener.until("gsh_gssg_low", lambda: _raised(listener, "gsh_gssg_low"))
        await listener.until("four lab results", lambda: len(_labs(listener)) == 4)
        assert not _raised(listener, "droms_rise")  # 300, 310, 290: the baseline, no verdict
        assert [lab["band"] for lab in _labs(listener)[:3]] == ["no_baseline"] * 3
        # Home Assistant's "Log dROMs (pre-training)" number and the dipstick select.
        await listener.publish("redox/ann/set/droms", b'{"value": 450, "timing": "pre-training"}')
        await listener.publish("redox/ann/set/lipid_dipstick", b"positive")
        await listener.until("droms_rise", lambda: _raised(listener, "droms_rise"))
        await listener.until(
            "lipid_dipstick_positive", lambda: _raised(listener, "lipid_dipstick_positive")
        )
        droms = [lab for lab in _labs(listener) if lab["marker"] == "droms"]
        assert droms[-1]["band"] == "above_baseline"
        assert droms[-1]["baseline_carr_u"] == 300
        assert droms[-1]["change_pct"] == 50
        # A post-session draw: published, compared with the day's resting draw, not judged.
        mark = len(listener.messages)
        post_at = ("--date", _day(7), "--time", "17:45")
        assert await _cli("log", "gsh-gssg", *common, "60", "--timing", "post-45min", *post_at) == 0
        await listener.until("the post draw", lambda: bool(_labs(listener, mark)))
        (post,) = _labs(listener, mark)
        assert (post["band"], post["judged"], round(post["change_pct"])) == (
            "post_session",
            False,
            -37,
        )
    finally:
        if run.returncode is None:
            run.send_signal(signal.SIGTERM)
        _, stderr = await run.communicate()
    assert run.returncode == 128 + signal.SIGTERM, stderr.decode()[-3000:]  # a clean stop
    assert "command dropped" not in stderr.decode()

    # Offline (no `run`): judged against the stored entries, stored, and delivered.
    await listener.until(
        "run's commands offline",
        lambda: (
            [p for t, p, _ in listener.messages if t == "redox/bridge/commands"][-1] == b"offline"
        ),
    )
    mark = len(listener.messages)
    assert await _cli("log", "gsh-gssg", *common, "180", "--timing", "fasted") == 0
    await listener.until("the offline entry on MQTT", lambda: bool(_labs(listener, mark)))
    await listener.until(
        "gsh_gssg_low cleared",
        lambda: any(
            a["event"]["rule"] == "gsh_gssg_low" and a["event"]["state"] == "cleared"
            for a in listener.json_on("redox/ann/alerts", mark)
        ),
    )
    listening.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listening

    # Home Assistant restarted: a fresh login gets the retained status, and with it the last
    # entry per marker its lab sensors read (the `lab` topic itself is not retained).
    restarted = Listener(shipped_mosquitto)
    listening = asyncio.create_task(restarted.run())
    try:
        await restarted.until(
            "the retained status",
            lambda: any(t == "redox/ann/status" and r for t, _, r in restarted.messages),
        )
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    assert not [t for t, _, r in restarted.messages if t == "redox/ann/lab" and r]
    (status,) = restarted.json_on("redox/ann/status")
    labs = status["labs"]
    assert isinstance(labs, dict)
    assert (labs["gsh_gssg"]["value"], labs["gsh_gssg"]["timing"]) == (180, "fasted")
    assert (labs["droms"]["value"], labs["droms"]["band"]) == (450, "above_baseline")
    assert labs["lipid_dipstick"]["band"] == "positive"
    # The offline entry cleared gsh_gssg_low; the positive dipstick still pulls back (its
    # day is run's emulated clock's), with its week of cut volume.
    assert status["state"] == "pull_back"
    since = dt.date.fromisoformat(str(status["pull_back_since"]))
    assert status["volume_cut_until"] == (since + dt.timedelta(days=7)).isoformat()
    assert status["resume_since"] is None

    with Store(tmp_path / "store.sqlite3", read_only=True) as store:
        rows = store.lab_entries("ann")
        alerts = {(a.rule, a.state) for a in store.alerts("ann")}
    assert [r.payload.marker for r in rows].count("droms") == 4
    assert len(rows) == 8
    assert {
        ("gsh_gssg_low", "raised"),
        ("gsh_gssg_low", "cleared"),
        ("droms_rise", "raised"),
        ("lipid_dipstick_positive", "raised"),
    } <= alerts

    points = _influx_rows(
        influxdb1, "SELECT * FROM lab WHERE athlete = 'ann' GROUP BY marker, timing"
    )
    assert len(points) == 8
    assert sorted(p["droms_carr_u"] for p in points if p["marker"] == "droms") == [
        290,
        300,
        310,
        450,
    ]
    assert {p["timing"] for p in points if p["marker"] == "gsh_gssg"} == {"fasted", "post-45min"}
    assert [p["positive"] for p in points if p["marker"] == "lipid_dipstick"] == [True]
    raised = _influx_rows(influxdb1, "SELECT active FROM alert WHERE athlete = 'ann' GROUP BY rule")
    assert {p["rule"] for p in raised if p["active"] == 1} >= {
        "gsh_gssg_low",
        "droms_rise",
        "lipid_dipstick_positive",
    }
