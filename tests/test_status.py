"""`redox-streamer status`: the athlete part from a store filled by `import rr`, the device
part from the retained states a real `run --emulated` publishes on a real mosquitto."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from devices.drivers import DriverStatus
from devices.kinds import DeviceKind
from processors.alerts import AlertBook, RuleEvaluation, Severity
from streamer.app.device_state import DeviceStates
from streamer.cli import main
from streamer.results import RESERVED_KEYS, DeviceStatePayload, Result
from streamer.store import Store
from tests.servers import Mosquitto
from tests.shipped_mosquitto import PASSWORDS, ShippedBroker
from tests.test_docs_in_sync import TOPIC_SECTIONS, row
from tests.test_import_history import write_elite_hrv_exports

ROOT = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, mqtt: str = "", devices: str = "") -> Path:
    path = tmp_path / "redox.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "store.sqlite3"}"\n{mqtt}\n'
        f'[[athletes]]\nid = "ann"\nname = "Ann"\n{devices}'
    )
    return path


def _status(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["status", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def imported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A config without a broker and its store, filled with 6 mornings by `import rr`."""
    config = _config(tmp_path)
    files = write_elite_hrv_exports(tmp_path / "export", 6)
    assert (
        main(["import", "rr", "--athlete", "ann", "--config", str(config), *map(str, files)]) == 0
    )
    capsys.readouterr()
    return config


def test_status_json_gives_the_baseline_the_last_reading_and_its_band_from_the_store(
    imported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _status(capsys, "--config", str(imported), "--json")
    assert code == 0, err
    status = json.loads(out)
    (ann,) = status["athletes"]
    with Store(tmp_path / "store.sqlite3", read_only=True) as store:
        last = store.morning_history("ann")[-1].payload
    assert ann["athlete"] == "ann"
    assert ann["name"] == "Ann"
    # Six imported mornings: the sixth rests on a provisional baseline of the five before.
    assert (ann["baseline_status"], ann["baseline_days"]) == ("provisional", 5)
    assert ann["baseline_note"] == last.baseline_note
    assert ann["last_reading"]["date"] == last.date
    assert ann["last_reading"]["ln_rmssd"] == pytest.approx(last.ln_rmssd, abs=1e-4)
    assert ann["last_reading"]["accepted"] is True
    assert ann["band"]["ln_rmssd_band_low"] == pytest.approx(last.ln_rmssd_band_low, abs=1e-4)
    assert ann["band"]["ln_rmssd_band_high"] == pytest.approx(last.ln_rmssd_band_high, abs=1e-4)
    assert ann["open_alerts"] == []
    assert ann["devices"] is None  # no broker: unknown, not "none"
    assert status["broker"] == {
        "configured": False,
        "url": None,
        "reachable": False,
        "problem": None,
        "bridge": None,
    }


def test_status_text_fits_80_columns_and_says_there_is_no_broker(
    imported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _status(capsys, "--config", str(imported))
    assert code == 0, err
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, out
    assert lines[0] == "ann — Ann"
    assert "provisional, 5 valid mornings" in out
    assert "pull-back alert until 14" in out  # the payload's note, wrapped
    assert "alerts        none open" in out
    assert "no broker configured" in out


def test_open_alerts_say_since_when_from_the_alert_book_else_from_the_events(
    imported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raised_ns = 1_791_000_000_000_000_000  # 2026-10-03 UTC
    book = AlertBook("ann")
    evaluation = RuleEvaluation(
        "rhr_creep", Severity.WARNING, True, "resting HR 6 bpm above baseline", "", ""
    )
    alert = book.update(evaluation, raised_ns)
    assert alert is not None
    with Store(tmp_path / "store.sqlite3") as store:
        store.save_alert_book("ann", book.to_dict())
    code, out, err = _status(capsys, "--config", str(imported), "--json")
    assert code == 0, err
    (open_alert,) = json.loads(out)["athletes"][0]["open_alerts"]
    assert open_alert["rule"] == "rhr_creep"
    assert open_alert["severity"] == "warning"
    assert open_alert["since_ts_ns"] == raised_ns
    assert open_alert["since_time"].startswith("2026-10-0")
    code, out, err = _status(capsys, "--config", str(imported))
    assert "rhr_creep (warning) since 2026-10-0" in out
    assert max(len(line) for line in out.splitlines()) <= 80

    # Without a readable book (a store `run` never kept one for), the raised events tell.
    with Store(tmp_path / "store.sqlite3") as store:
        store.query("DELETE FROM alert_book")
        store.add_alert("ann", raised_ns, "hrv_downtrend", "raised", alert_fields(raised_ns))
        store.add_alert("ann", raised_ns + 1, "rhr_creep", "raised", alert_fields(raised_ns))
        store.add_alert("ann", raised_ns + 2, "rhr_creep", "cleared", alert_fields(raised_ns))
    code, out, err = _status(capsys, "--config", str(imported), "--json")
    assert code == 0, err
    opened = json.loads(out)["athletes"][0]["open_alerts"]
    assert [(a["rule"], a["since_ts_ns"]) for a in opened] == [("hrv_downtrend", raised_ns)]


def alert_fields(raised_ns: int) -> dict[str, Any]:
    return {"severity": "pull_back", "message": "lnRMSSD 7-day mean low", "raised_ts_ns": raised_ns}


def test_no_store_is_one_line_naming_the_commands_that_fill_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = _status(capsys, "--config", str(_config(tmp_path)))
    assert code != 0
    assert err.count("\n") == 1
    assert str(tmp_path / "store.sqlite3") in err
    assert "`run`, `morning` or `import` fill one" in err


def test_an_unknown_athlete_is_one_line_naming_the_known_ones(
    imported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _status(capsys, "--config", str(imported), "--athlete", "bob")
    assert code != 0
    assert err.count("\n") == 1
    assert "--athlete bob" in err
    assert "known: ann" in err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_broker_leaves_the_athlete_part_and_says_device_state_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    config = _config(tmp_path, f'[mqtt]\nurl = "mqtt://127.0.0.1:{port}"\n')
    files = write_elite_hrv_exports(tmp_path / "export", 3)
    assert (
        main(["import", "rr", "--athlete", "ann", "--config", str(config), *map(str, files)]) == 0
    )
    capsys.readouterr()
    code, out, err = _status(capsys, "--config", str(config))
    assert code == 0, err
    assert "broker unreachable: device state unknown" in out
    assert f"127.0.0.1:{port}" in out
    assert "baseline" in out
    code, out, err = _status(capsys, "--config", str(config), "--json")
    status = json.loads(out)
    assert status["broker"]["reachable"] is False
    assert status["broker"]["problem"]
    assert status["athletes"][0]["devices"] is None


# --- the device state `run` publishes --------------------------------------------------------


def _driver_status(connected: bool, connects: int, last_seen_ns: int | None) -> DriverStatus:
    return DriverStatus(
        name="ann/strap",
        address="C0:00:00:00:30:01",
        kind=DeviceKind.STRAP,
        running=True,
        connected=connected,
        connects=connects,
        reconnects=max(0, connects - 1),
        failed_connects=0,
        gaps=0,
        stale=0,
        malformed=0,
        dropped=0,
        records=0,
        last_seen_ns=last_seen_ns,
        last_error=None if connected else "device not found",
    )


class _Driver:
    def __init__(self) -> None:
        self.status = _driver_status(False, 0, None)


class _Sink:
    def __init__(self) -> None:
        self.results: list[Result] = []

    def accept(self, results: list[Result]) -> None:
        self.results.extend(results)


def test_a_device_state_is_published_on_change_and_refreshed_only_while_connected() -> None:
    driver, sink, now = _Driver(), _Sink(), [0]
    battery: dict[str, int] = {}
    states = DeviceStates(
        {"ann": [("strap", driver)]},
        lambda a, d: battery.get(d),
        [sink],
        clock_ns=lambda: now[0],
        refresh_s=60,
    )
    states.check()
    states.check()  # nothing changed: nothing new
    driver.status = _driver_status(True, 1, None)
    states.check()  # connected, nothing heard yet
    driver.status = _driver_status(True, 1, 5)
    states.check()  # the first notification: published at once
    driver.status = _driver_status(True, 1, 10)
    now[0] = 30 * 10**9
    states.check()  # only last seen changed, before the refresh is due
    battery["strap"] = 80
    states.check()
    now[0] = 95 * 10**9
    driver.status = _driver_status(True, 1, 90 * 10**9)
    states.check()  # refresh: last seen moves on
    states.stop()
    got = [r.payload_as(DeviceStatePayload) for r in sink.results]
    assert [(p.connection, p.battery_pct) for p in got] == [
        ("connecting", None),
        ("connected", None),
        ("connected", None),
        ("connected", 80),
        ("connected", 80),
        ("stopped", 80),
    ]
    assert got[0].problem == "device not found"
    assert [p.last_seen_ts_ns for p in got[1:3]] == [None, 5]
    assert got[4].last_seen_ts_ns == 90 * 10**9
    assert got[-1].connected is False
    assert {r.device for r in sink.results} == {"strap"}
    assert all(r.retain for r in sink.results)


async def _wait_for_states(port: int, until: Any, timeout_s: float) -> dict[str, dict[str, Any]]:
    """Retained and new messages on redox/#, until ``until(messages)`` is true."""
    seen: dict[str, dict[str, Any]] = {}
    async with asyncio.timeout(timeout_s), aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe("redox/#", qos=1)
        await client.subscribe("homeassistant/#", qos=1)
        async for message in client.messages:
            payload = message.payload
            assert isinstance(payload, bytes)
            text = payload.decode()
            seen[str(message.topic)] = json.loads(text) if text.startswith("{") else {"text": text}
            if until(seen):
                return seen
    raise AssertionError("unreachable")


async def _status_json(config: Path) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer.cli",
        "status",
        "--config",
        str(config),
        "--json",
        "--timeout",
        "30",  # a bound only: a loaded machine may be slow to connect
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.integration
@pytest.mark.timeout(180)
async def test_status_reads_the_device_states_run_emulated_publishes_and_keeps_after_it_stops(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    devices = (
        '[[athletes.devices]]\nid = "strap"\nkind = "strap"\naddress = "C0:00:00:00:30:01"\n'
        '[[athletes.devices]]\nid = "moxy"\nkind = "smo2"\naddress = "C0:00:00:00:30:02"\n'
    )
    config = _config(tmp_path, f'[mqtt]\nurl = "{mosquitto.url}"\nha_discovery = true\n', devices)
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer.cli",
        "run",
        "--config",
        str(config),
        "--emulated",
        "--duration",
        "120",  # a bound only: the test stops it
        "--plain",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )

    def strap_connected_with_battery(seen: dict[str, dict[str, Any]]) -> bool:
        strap = seen.get("redox/ann/strap/state", {})
        moxy = seen.get("redox/ann/moxy/state", {})
        return bool(
            strap.get("connected")
            and strap.get("battery_pct") is not None
            and moxy.get("connected")
        )

    try:
        seen = await _wait_for_states(mosquitto.port, strap_connected_with_battery, 90)
        running = await _status_json(config)
    finally:
        if run.returncode is None:
            run.send_signal(signal.SIGTERM)  # what Ctrl-C does: flush and stop
        stdout, stderr = await run.communicate()
    # Stopped by SIGTERM after a clean flush: 128 + 15, as shells and systemd expect.
    assert run.returncode == 128 + signal.SIGTERM, stderr.decode()[-3000:]

    # Home Assistant: a connectivity and a battery entity per device, on its state topic.
    for device in ("strap", "moxy"):
        link = seen[f"homeassistant/binary_sensor/redox_ann/device_{device}_connected/config"]
        battery = seen[f"homeassistant/sensor/redox_ann/device_{device}_battery/config"]
        assert link["device_class"] == "connectivity"
        assert battery["device_class"] == "battery"
        assert link["state_topic"] == battery["state_topic"] == f"redox/ann/{device}/state"
    # Every key published is documented in docs/topics.md.
    section = TOPIC_SECTIONS["`<base>/<athlete>/<device>/state`"]
    for key in seen["redox/ann/strap/state"].keys() - RESERVED_KEYS:
        assert row(section, f"`{key}`") is not None, f"device state key {key} not documented"

    assert running["broker"]["reachable"] is True
    assert running["broker"]["bridge"] == "online"
    by_id = {d["device"]: d for d in running["athletes"][0]["devices"]}
    assert by_id.keys() == {"strap", "moxy"}
    strap = by_id["strap"]
    assert strap["connected"] is True
    assert strap["connection"] == "connected"
    assert strap["device_kind"] == "strap"
    assert 0 <= strap["battery_pct"] <= 100
    assert strap["last_seen_age_s"] < 60
    assert strap["last_seen_ts_ns"] <= time.time_ns()

    # After a clean stop the retained states say "stopped", and the bridge "offline".
    stopped = await _status_json(config)
    assert stopped["broker"]["bridge"] == "offline"
    for device in stopped["athletes"][0]["devices"]:
        assert (device["connection"], device["connected"]) == ("stopped", False), device
    assert "stopped:" in stdout.decode()


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_status_text_names_the_run_state_from_the_bridge(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Before any `run`: reachable broker, no device state published yet."""
    config = _config(
        tmp_path,
        f'[mqtt]\nurl = "{mosquitto.url}"\n',
        '[[athletes.devices]]\nid = "strap"\nkind = "strap"\naddress = "C0:00:00:00:30:01"\n',
    )
    Store(tmp_path / "store.sqlite3").close()  # an empty store: `run` has not run yet
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer.cli",
        "status",
        "--config",
        str(config),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "strap: no state published yet" in text
    assert "no `run` has published here yet" in text
    assert max(len(line) for line in text.splitlines()) <= 80


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_user_whose_acl_drops_the_probe_is_told_the_states_may_be_incomplete(
    tmp_path: Path, shipped_mosquitto: ShippedBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped ACL lets `homeassistant` read redox/# but not publish there: the probe
    that marks the end of the retained states never comes back (the bound is the wait)."""
    port = shipped_mosquitto.port
    Store(tmp_path / "store.sqlite3").close()
    for user, ok in (("redox-streamer", True), ("redox-cli", True), ("homeassistant", False)):
        url = f"mqtt://{user}:{PASSWORDS[user]}@127.0.0.1:{port}"
        config = _config(tmp_path, f'[mqtt]\nurl = "{url}"\n')
        code, out, err = _status(capsys, "--config", str(config), "--json", "--timeout", "3")
        assert code == 0, err
        assert PASSWORDS[user] not in out
        broker = json.loads(out)["broker"]
        assert broker["reachable"] is True
        if ok:
            assert broker["problem"] is None
        else:
            assert "may be incomplete" in broker["problem"]
            assert "ACL" in broker["problem"]
