"""`redox-streamer demo` end to end, as a user runs it: a subprocess, a real broker, a
subscriber that sees every kind of topic."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mqtt_helpers import ThreadSubscriber
from tests.servers import Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
DEMO = [
    sys.executable,
    "-m",
    "streamer.cli",
    "demo",
    "--athletes",
    "2",
    "--days",
    "28",
    "--duration",
    "8",
    "--speed",
    "20",
    "--plain",
]


@pytest.fixture
def subscriber_factory() -> Iterator[list[ThreadSubscriber]]:
    subs: list[ThreadSubscriber] = []
    yield subs
    for s in subs:
        s.close()


def _check_traffic(sub: ThreadSubscriber) -> None:
    topics = sub.topics()
    assert "redox/bridge/state" in topics
    assert sub.payloads("redox/bridge/state")[0] == "online"
    assert sub.payloads("redox/bridge/state")[-1] == "offline"  # clean shutdown says so
    for athlete in ("athlete1", "athlete2"):
        for leaf in ("hrv", "morning", "oxygenation", "grip"):
            assert f"redox/{athlete}/{leaf}" in topics, f"no {athlete}/{leaf} message"
        for device in ("strap", "moxy", "power"):
            assert f"redox/{athlete}/{device}/live" in topics, f"no {athlete}/{device}/live"
    # The over-reaching athlete raises alerts (and a status with each change); the steady
    # one none: its good grip drop is the grip result's class, not an alert.
    assert {"redox/athlete1/alerts", "redox/athlete1/status"} <= topics
    assert "redox/athlete2/alerts" not in topics
    raised = {
        event["rule"]
        for payload in sub.payloads("redox/athlete1/alerts")
        for event in [json.loads(payload)["event"]]
        if event["state"] == "raised"
    }
    assert raised == {
        "hrv_downtrend",
        "rhr_creep",
        "smo2_slow_recovery",
        "grip_spillover",
        "rpe_power_mismatch",
        "hr_grip_flat",
        "gsh_gssg_low",
        "droms_rise",
        "lipid_dipstick_positive",
    }
    # The good kind of grip drop is the grip result's class, never an alert to push.
    classes = {
        json.loads(p)["class"]
        for a in ("athlete1", "athlete2")
        for p in sub.payloads(f"redox/{a}/grip")
    }
    assert "grip_signal" in classes
    assert all(
        json.loads(p)["event"]["severity"] != "info"
        for a in ("athlete1", "athlete2")
        for p in sub.payloads(f"redox/{a}/alerts")
    )
    live = json.loads(sub.payloads("redox/athlete1/strap/live")[-1])
    assert live["kind"] == "heart_rate"
    assert 30 <= live["hr_bpm"] <= 120
    # Sequence numbers increase per topic: consumers can drop duplicates.
    seqs = sub.seqs("redox/athlete1/hrv")
    assert seqs == sorted(seqs)


def test_demo_publishes_every_topic_to_a_real_mosquitto(
    mosquitto: Mosquitto, subscriber_factory: list[ThreadSubscriber], tmp_path: Path
) -> None:
    sub = ThreadSubscriber(mosquitto.port)
    subscriber_factory.append(sub)
    sub.sync()  # the subscription is in place before the demo publishes
    store = tmp_path / "demo.sqlite3"
    result = subprocess.run(
        [*DEMO, "--mqtt", mosquitto.url, "--store", str(store)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"store: {store}" in result.stdout
    assert "0 messages left in the outbox" in result.stdout
    sub.sync()  # everything the demo published has arrived
    _check_traffic(sub)
    # The command the demo suggests next draws the weeks it replayed.
    suggested = re.search(r"next: `redox-streamer (report [^`]+)`", result.stdout)
    assert suggested is not None, result.stdout[-2000:]
    report = subprocess.run(
        [sys.executable, "-m", "streamer.cli", *suggested.group(1).split()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    assert "report of athlete1" in report.stdout
    assert (tmp_path / "weeks.png").stat().st_size > 10_000


def test_demo_without_mqtt_starts_an_embedded_broker_that_mosquitto_sub_can_watch(
    subscriber_factory: list[ThreadSubscriber],
) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        DEMO, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    port = None
    head = []
    deadline = time.monotonic() + 30
    while port is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        head.append(line)
        match = re.search(r"mosquitto_sub -h 127\.0\.0\.1 -p (\d+)", line)
        if match:
            port = int(match.group(1))
    assert port is not None, "".join(head)
    assert any("temporary" in line for line in head)  # says where the store is
    sub = ThreadSubscriber(port)
    subscriber_factory.append(sub)
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == 0, err[-3000:]
    assert "alerts raised:" in out
    assert "next: keep the history with --store" in out
    # Subscribed after the start: the retained state topics still arrive, and the live
    # session's messages flow. (The broker ended with the demo: what mosquitto_sub got
    # is read by the subscriber's thread.)
    expected = {"redox/bridge/state", "redox/athlete1/alerts", "redox/athlete1/status"} | {
        f"redox/{athlete}/{leaf}"
        for athlete in ("athlete1", "athlete2")
        for leaf in ("morning", "strap/live", "hrv")
    }
    sub.wait_for(lambda: expected <= sub.topics(), f"the topics {sorted(expected)}")


def test_demo_rejects_bad_options_with_one_line_naming_them() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "demo", "--speed", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--speed 0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
