"""The MQTT publisher against a real mosquitto: outbox delivery, order, retained state,
Last Will, clean shutdown, live samples, Home Assistant discovery, TLS and passwords."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from devices.kinds import DeviceKind
from devices.records import HeartRateSample
from streamer.app.pipeline import Sink
from streamer.config import AthleteConfig, DeviceConfig, MqttConfig, Secret
from streamer.payloads import decode_payload
from streamer.results import Kind, Result, alert_result, live_result
from streamer.sinks.backoff import Backoff
from streamer.sinks.ha_discovery import ACTION_RULES, command_configs, lab_configs
from streamer.sinks.mqtt import MqttNotConnected, MqttOutbox, MqttPublisher
from streamer.store import Store
from tests.mqtt_helpers import Subscriber, eventually, first_arrivals
from tests.servers import HOST, Mosquitto, require_binary
from tests.tls_certs import CertificateAuthority

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
FAST = Backoff(0.1, 0.5)


def _config(broker: Mosquitto, **options: object) -> MqttConfig:
    return MqttConfig(
        host=HOST, port=broker.port, publish_timeout_s=1.0, client_id="redox-test", **options
    )  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "store.sqlite3") as s:
        yield s


@contextlib.asynccontextmanager
async def running(publisher: MqttPublisher) -> AsyncIterator[MqttPublisher]:
    task = asyncio.create_task(publisher.run())
    try:
        yield publisher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


_until = eventually


def _hrv(i: int, athlete: str = "alice") -> Result:
    return Result(
        Kind.HRV, athlete, 1_700_000_000_000_000_000 + i, {"rmssd_ms": float(i), "n_beats": i}
    )


def _alert(i: int) -> Result:
    event = {
        "rule": "rhr_creep",
        "severity": "pull_back",
        "state": "raised" if i % 2 == 0 else "cleared",
        "message": f"m{i}",
        "advice": "cut",
        "raised_ts_ns": 1_000 + i,
        "cleared_ts_ns": 2_000 + i,
    }
    return alert_result("alice", event, [event] if i % 2 == 0 else [])


async def test_mqtt_connections_send_small_packets_at_once(mosquitto: Mosquitto) -> None:
    """Nagle is off on the socket paho makes (``mqtt_connect.NO_DELAY``): QoS 0 live samples
    published one after another would otherwise wait for the broker's delayed ACK of the
    one before (up to 40 ms each on Linux) — the team's live latency target is 100 ms."""
    import socket

    from streamer.sinks.mqtt_connect import mqtt_client

    client = mqtt_client(MqttConfig(host=HOST, port=mosquitto.port), tls=None, timeout_s=5)
    for _ in range(2):  # each connection's socket, a reconnection's too
        async with client:
            sock = client._client.socket()
            assert isinstance(sock, socket.socket)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_results_and_alerts_reach_a_persistent_subscriber_in_order(
    mosquitto: Mosquitto, store: Store
) -> None:
    sub = await Subscriber(HOST, mosquitto.port).start()
    publisher = MqttPublisher(_config(mosquitto), store, backoff=FAST)
    async with running(publisher):
        for i in range(60):
            publisher.accept([_hrv(i), _alert(i)])
        await sub.wait_for(
            lambda: len(sub.on("redox/alice/hrv")) >= 60 and len(sub.on("redox/alice/alerts")) >= 60
        )
        await _until(lambda: publisher.status()["outbox_depth"] == 0)
    await sub.stop()
    for topic in ("redox/alice/hrv", "redox/alice/alerts"):
        order, duplicates = first_arrivals(sub.on(topic))
        assert order == list(range(order[0], order[0] + 60))
        assert duplicates == 0
    hrv = [m.json() for m in sub.on("redox/alice/hrv")]
    assert [h["rmssd_ms"] for h in hrv] == [float(i) for i in range(60)]
    assert all(m.qos == 1 for m in sub.on("redox/alice/hrv"))
    assert sub.on("redox/alice/alerts")[1].json()["active"] == []
    assert MqttOutbox(store).depth() == 0
    status = publisher.status()
    assert status["published"] == 120
    assert status["outbox_depth"] == 0


async def test_state_topics_are_retained_for_late_subscribers(
    mosquitto: Mosquitto, store: Store
) -> None:
    publisher = MqttPublisher(_config(mosquitto), store, backoff=FAST)
    async with running(publisher):
        publisher.accept(
            [
                Result(Kind.MORNING, "alice", 5, {"date": "2024-05-01", "ln_rmssd": 4.1}),
                Result(Kind.STATUS, "alice", 6, {"state": "ok", "open_alerts": []}),
                _alert(0),
                _hrv(1),
            ]
        )
        await _until(lambda: publisher.status()["outbox_depth"] == 0)
        late = await Subscriber(HOST, mosquitto.port, client_id="late", persistent=False).start()
        await late.wait_for(lambda: len(late.received) >= 4, what="retained messages")
        await late.stop()
    retained = {m.topic: m for m in late.received}
    assert set(retained) == {
        "redox/bridge/state",
        "redox/alice/morning",
        "redox/alice/status",
        "redox/alice/alerts",
    }
    assert all(m.retain for m in retained.values())
    assert retained["redox/bridge/state"].payload == b"online"
    assert retained["redox/alice/morning"].json()["ln_rmssd"] == 4.1


async def test_outbox_filled_while_broker_is_down_is_delivered_when_it_starts(
    tmp_path: Path, store: Store
) -> None:
    broker = Mosquitto(tmp_path / "late-broker")  # not started yet
    publisher = MqttPublisher(_config(broker), store, backoff=FAST)
    async with running(publisher):
        publisher.accept([_hrv(i) for i in range(25)])
        await eventually(lambda: publisher.status()["last_error"], what="a failed connect")
        assert MqttOutbox(store).depth() == 25
        assert not publisher.connected
        assert publisher.status()["last_error"]
        broker.start()
        try:
            sub = await Subscriber(HOST, broker.port).start()
            await sub.wait_for(lambda: len(sub.on("redox/alice/hrv")) >= 25)
            await sub.stop()
        finally:
            broker.stop()
    order = first_arrivals(sub.on("redox/alice/hrv"))[0]
    assert order == list(range(order[0], order[0] + 25))


async def test_clean_shutdown_drains_then_says_offline(mosquitto: Mosquitto, store: Store) -> None:
    sub = await Subscriber(HOST, mosquitto.port).start()
    publisher = MqttPublisher(_config(mosquitto), store, backoff=FAST)
    task = asyncio.create_task(publisher.run())
    await _until(lambda: publisher.connected)
    publisher.accept([_hrv(i) for i in range(10)])
    remaining = await publisher.drain(5.0)
    await asyncio.wait_for(task, 5)  # run() ends by itself after drain()
    assert remaining == 0
    await sub.wait_for(
        lambda: (
            sub.on("redox/bridge/state")[-1:] != []
            and sub.on("redox/bridge/state")[-1].payload == b"offline"
        )
    )
    await sub.stop()
    assert len(sub.on("redox/alice/hrv")) == 10
    assert [m.payload for m in sub.on("redox/bridge/state")] == [b"online", b"offline"]


async def test_last_will_says_offline_when_the_publisher_process_dies(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sub = await Subscriber(HOST, mosquitto.port).start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.publisher_proc",
        "--db",
        str(tmp_path / "p.sqlite3"),
        "--port",
        str(mosquitto.port),
        "--count",
        "1",
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).startswith(b"queued")
        assert (await proc.stdout.readline()).strip() == b"drained"
        await sub.wait_for(lambda: [m.payload for m in sub.on("redox/bridge/state")] == [b"online"])
        proc.kill()  # SIGKILL: no DISCONNECT, the broker publishes the Will
        await proc.wait()
        await sub.wait_for(lambda: len(sub.on("redox/bridge/state")) == 2, what="the Will")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await sub.stop()
    will = sub.on("redox/bridge/state")[-1]
    assert will.payload == b"offline"


async def test_live_samples_are_qos0_and_fail_fast_without_a_connection(
    mosquitto: Mosquitto, store: Store
) -> None:
    sub = await Subscriber(HOST, mosquitto.port).start()
    publisher = MqttPublisher(_config(mosquitto), store, backoff=FAST)
    samples = [
        live_result("alice", "strap", HeartRateSample(i, 60 + i, (1000.0,))) for i in range(20)
    ]
    with pytest.raises(MqttNotConnected):
        await publisher.send_live(samples[:1])
    async with running(publisher):
        await _until(lambda: publisher.connected)
        await publisher.send_live(samples)
        await sub.wait_for(lambda: len(sub.on("redox/alice/strap/live")) == 20)
    await sub.stop()
    live = sub.on("redox/alice/strap/live")
    assert [m.json()["hr_bpm"] for m in live] == list(range(60, 80))
    first = live[0].json()["seq"]
    assert [m.json()["seq"] for m in live] == list(range(first, first + 20))
    assert {m.json()["kind"] for m in live} == {"heart_rate"}
    assert MqttOutbox(store).depth() == 0  # live samples never touch the outbox
    assert publisher.status()["live_published"] == 20
    assert publisher.status()["shed"] == 1


async def test_accept_refuses_live_results(mosquitto: Mosquitto, store: Store) -> None:
    publisher = MqttPublisher(_config(mosquitto), store)
    assert isinstance(publisher, Sink)  # what the pipeline drives
    with pytest.raises(ValueError, match="send_live"):
        publisher.accept([live_result("a", "s", HeartRateSample(1, 60))])


async def test_home_assistant_configs_are_resent_when_ha_comes_online(
    mosquitto: Mosquitto, store: Store
) -> None:
    athlete = AthleteConfig(
        "alice", "Alice", devices=(DeviceConfig("strap", DeviceKind.STRAP, name="H10"),)
    )
    sub = await Subscriber(HOST, mosquitto.port, topic="homeassistant/#").start()
    publisher = MqttPublisher(
        _config(mosquitto, ha_discovery=True), store, athletes=[athlete], backoff=FAST
    )
    # Six sensors, a problem sensor per action rule, connectivity and battery per device,
    # the command buttons and number, the lab-marker sensors, numbers and select.
    per_round = (
        6
        + len(ACTION_RULES)
        + 2 * len(athlete.devices)
        + len(command_configs(publisher.topics, athlete))
        + len(lab_configs(publisher.topics, athlete))
    )
    async with running(publisher):
        await sub.wait_for(lambda: len(sub.received) >= per_round, what="discovery configs")
        async with aiomqtt.Client(HOST, mosquitto.port) as ha:
            await ha.publish("homeassistant/status", b"online")
        await sub.wait_for(lambda: len(sub.received) >= 2 * per_round + 1, what="configs re-sent")
        late = await Subscriber(
            HOST,
            mosquitto.port,
            topic="homeassistant/+/+/+/config",
            client_id="late",
            persistent=False,
        ).start()
        await late.wait_for(lambda: len(late.received) >= per_round, what="retained configs")
        await late.stop()
    await sub.stop()
    configs = {m.topic: m.json() for m in sub.received if m.topic.endswith("/config")}
    hr = configs["homeassistant/sensor/redox_alice/hr/config"]
    assert hr["state_topic"] == "redox/alice/strap/live"
    assert hr["availability"] == [
        {
            "topic": "redox/bridge/state",
            "payload_available": "online",
            "payload_not_available": "offline",
        }
    ]
    rule = configs["homeassistant/binary_sensor/redox_alice/rhr_creep/config"]
    assert rule["state_topic"] == "redox/alice/alerts"
    assert rule["device_class"] == "problem"
    assert len(configs) == per_round
    assert {m.topic for m in late.received} == set(configs)
    assert all(m.retain for m in late.received)
    assert publisher.status()["ha_configs_sent"] == 2 * per_round


# --- TLS and passwords ------------------------------------------------------------------------


def _make_certs(directory: Path) -> tuple[Path, Path, Path]:
    """A new CA, and a server certificate it signed for localhost and 127.0.0.1."""
    ca = CertificateAuthority.create(directory, "test")
    cert, key = ca.issue("server", ("localhost", HOST))
    return ca.path, cert, key


@pytest.fixture
def tls_mosquitto(tmp_path: Path) -> Iterator[tuple[Mosquitto, Path]]:
    """mosquitto on TLS only, with a password file: user 'redox', password 'pw-Zq81!x'."""
    passwd_tool = require_binary("mosquitto_passwd", "mosquitto")
    work = tmp_path / "tls-broker"
    ca, cert, key = _make_certs(work / "certs")
    passwd = work / "passwd"
    subprocess.run([passwd_tool, "-b", "-c", str(passwd), "redox", "pw-Zq81!x"], check=True)
    conf = work / "mosquitto-tls.conf"
    broker = Mosquitto(work, config_file=conf)
    conf.write_text(
        f"listener {broker.port} {HOST}\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        f"allow_anonymous false\npassword_file {passwd}\npersistence false\n"
        "log_type error\n" + ("user root\n" if os.geteuid() == 0 else "")
    )
    broker.start()
    yield broker, ca
    broker.stop()


def _tls_config(broker: Mosquitto, ca: Path, password: str) -> MqttConfig:
    """The publisher's config for the TLS broker, as user ``redox`` with ``password``."""
    return MqttConfig(
        host=HOST,
        port=broker.port,
        tls=True,
        ca_file=ca,
        username="redox",
        password=Secret(password),
        publish_timeout_s=1.0,
    )


async def test_tls_with_password_connects_and_never_logs_the_secret(
    tls_mosquitto: tuple[Mosquitto, Path], store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    broker, ca = tls_mosquitto
    caplog.set_level(logging.DEBUG)
    config = _tls_config(broker, ca, "pw-Zq81!x")
    publisher = MqttPublisher(config, store, backoff=FAST)
    async with running(publisher):
        publisher.accept([_hrv(1)])
        await _until(lambda: publisher.status()["published"] == 1)
    logging.getLogger("test").info("status %s config %r", publisher.status(), config)
    assert "pw-Zq81!x" not in caplog.text
    assert "Sending CONNECT" in caplog.text  # the client library did log at DEBUG


async def test_wrong_password_is_reported_and_nothing_is_lost(
    tls_mosquitto: tuple[Mosquitto, Path], store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    broker, ca = tls_mosquitto
    caplog.set_level(logging.DEBUG)
    config = _tls_config(broker, ca, "wrong-Hq27")
    publisher = MqttPublisher(config, store, backoff=FAST)
    async with running(publisher):
        publisher.accept([_hrv(1)])
        await _until(lambda: publisher.status()["disconnects"] >= 2)
    status = publisher.status()
    assert status["connects"] == 0
    assert "auth" in str(status["last_error"]).lower()
    assert MqttOutbox(store).depth() == 1
    assert "wrong-Hq27" not in caplog.text


async def test_untrusted_server_certificate_is_refused(
    tls_mosquitto: tuple[Mosquitto, Path], store: Store, tmp_path: Path
) -> None:
    broker, _ = tls_mosquitto
    other_ca, _, _ = _make_certs(tmp_path / "other")
    config = MqttConfig(
        host=HOST,
        port=broker.port,
        tls=True,
        ca_file=other_ca,
        username="redox",
        password=Secret("pw-Zq81!x"),
        publish_timeout_s=1.0,
    )
    publisher = MqttPublisher(config, store, backoff=FAST)
    async with running(publisher):
        await _until(lambda: publisher.status()["disconnects"] >= 1)
    assert publisher.status()["connects"] == 0
    assert "certificate" in str(publisher.status()["last_error"]).lower()


def test_payload_header_is_what_consumers_dedupe_on() -> None:
    body = decode_payload(b'{"schema":1,"seq":3,"ts_ns":1}')
    assert body["seq"] == 3


async def test_mqtt5_protocol_delivers_too(mosquitto: Mosquitto, store: Store) -> None:
    sub = await Subscriber(HOST, mosquitto.port).start()
    publisher = MqttPublisher(_config(mosquitto, protocol="5"), store, backoff=FAST)
    async with running(publisher):
        publisher.accept([_hrv(i) for i in range(5)])
        await sub.wait_for(lambda: len(sub.on("redox/alice/hrv")) == 5)
    await sub.stop()
    order = first_arrivals(sub.on("redox/alice/hrv"))[0]
    assert order == list(range(order[0], order[0] + 5))
