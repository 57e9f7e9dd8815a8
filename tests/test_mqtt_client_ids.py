"""Client ids: unique per process, so that neither a second streamer nor a reader reusing
the streamer's configured id throws the streamer off; and on the SHIPPED broker, which
replaces client ids by user names, no account can throw another's client off at all.

The takeover is what a real mosquitto does to the older of two clients with one id: the
control test shows it happens to a client whose exact id another one reuses; the ids the
streamer uses are its configured prefix plus host, pid and random bits, so reusing the
prefix (the predictable id of before) takes over nothing. On the shipped broker even the
exact id takes over nothing, because the broker ignores it; the price is one connection
per account, which `run` (one connection: results and commands) and the CLI commands
(their own account, ``[mqtt.cli]``) respect — counted from the broker's log.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from streamer import cli
from streamer.config import MqttConfig, Secret
from streamer.results import Kind, Result
from streamer.sinks.backoff import Backoff
from streamer.sinks.mqtt import MqttPublisher
from streamer.sinks.mqtt_connect import process_client_id
from streamer.store import Store
from tests.mqtt_helpers import Subscriber, eventually, running
from tests.servers import HOST, Mosquitto
from tests.shipped_mosquitto import ShippedBroker

pytestmark = pytest.mark.integration

FAST = Backoff(0.1, 0.5)


def _hrv(i: int) -> Result:
    return Result(Kind.HRV, "ann", 1_700_000_000_000_000_000 + i, {"rmssd_ms": float(i)})


def _status(i: int) -> Result:
    """A result on a topic the read-only redox-notify account may read."""
    return Result(Kind.STATUS, "ann", 1_700_000_000_000_000_000 + i, {"state": "ok", "i": i})


def test_client_ids_differ_per_call_and_name_host_and_pid() -> None:
    ids = {process_client_id("streamer") for _ in range(100)}
    assert len(ids) == 100
    one = next(iter(ids))
    assert one.startswith("redox-streamer-")
    assert f"-{os.getpid()}-" in one
    assert process_client_id("streamer", "pi-kitchen").startswith("pi-kitchen-")


async def test_two_streamers_with_one_config_both_stay_connected(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    # The same [mqtt] section, client_id included: before, both used the same id and the
    # broker threw each out in turn whenever the other reconnected.
    config = MqttConfig(host=HOST, port=mosquitto.port, client_id="redox-streamer-pi")
    sub = await Subscriber(HOST, mosquitto.port, client_id="watch", persistent=False).start()
    with Store(tmp_path / "a.sqlite3") as a, Store(tmp_path / "b.sqlite3") as b:
        first = MqttPublisher(config, a, backoff=FAST)
        second = MqttPublisher(config, b, backoff=FAST)
        async with running(first), running(second):
            first.accept([_hrv(1)])
            second.accept([_hrv(2)])
            await sub.wait_for(lambda: len(sub.on("redox/ann/hrv")) >= 2, what="both results")
            assert first.status()["disconnects"] == second.status()["disconnects"] == 0
            assert first.status()["connects"] == second.status()["connects"] == 1
    await sub.stop()
    assert first._client_id != second._client_id


async def test_control_a_reader_with_the_streamers_id_throws_it_off_a_plain_broker(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    config = MqttConfig(host=HOST, port=mosquitto.port)
    with Store(tmp_path / "s.sqlite3") as store:
        publisher = MqttPublisher(config, store, backoff=FAST)
        async with (
            running(publisher),
            aiomqtt.Client(HOST, mosquitto.port, identifier=publisher._client_id, timeout=5),
        ):
            # The broker dropped the publisher for the newcomer with its id.
            await eventually(lambda: publisher.status()["disconnects"] >= 1, what="takeover")


async def test_on_the_shipped_broker_a_reader_reusing_the_streamers_name_cannot_throw_it_off(
    shipped_mosquitto: ShippedBroker, tmp_path: Path
) -> None:
    broker = shipped_mosquitto
    config = MqttConfig(
        host=HOST,
        port=broker.port,
        username="redox-streamer",
        password=Secret(broker.password("redox-streamer")),
    )
    watcher = await AuthSubscriber(
        HOST, broker.port, username="homeassistant", password=broker.password("homeassistant")
    ).start()
    with Store(tmp_path / "s.sqlite3") as store:
        publisher = MqttPublisher(config, store, backoff=FAST)
        async with running(publisher):
            # The predictable ids a reader could reuse (the configured prefix, the
            # notifier's own default), and the publisher's exact id, as the broker's log
            # shows it: the broker replaces each by the reader's user name.
            stolen_ids = ("redox-streamer", "redox-notify", publisher._client_id)
            for n, stolen in enumerate(stolen_ids, start=1):
                async with aiomqtt.Client(
                    HOST,
                    broker.port,
                    identifier=stolen,
                    username="redox-notify",
                    password=broker.password("redox-notify"),
                    timeout=5,
                ) as reader:
                    await reader.subscribe("redox/+/status", qos=1)
                    publisher.accept([_status(n)])
                    await watcher.wait_for(
                        lambda n=n: len(watcher.on("redox/ann/status")) >= n,  # type: ignore[misc]
                        what="a result sent while the reader is connected",
                    )
                    # The reader is connected too, under its own name, and reads it.
                    got = await _next(reader)
                    assert got.topic.value == "redox/ann/status"
            status = publisher.status()
            states = [m.payload for m in watcher.on("redox/bridge/state")]
    await watcher.stop()
    assert (status["connects"], status["disconnects"]) == (1, 0)
    assert b"offline" not in states  # no Last Will: the streamer never lost its connection
    log = _broker_log(broker)
    assert _connections(log, "redox-notify") == len(stolen_ids)
    assert _connections(log, "redox-streamer") == 1
    assert TAKEOVER not in log


TAKEOVER = "already connected, closing old connection"
"""What mosquitto logs when a client's login throws out a connected one with its id."""


def _broker_log(broker: ShippedBroker) -> str:
    """The broker's whole log: read after stopping it (mosquitto's stdout is buffered)."""
    broker.server.stop()
    return broker.server.log.read_text(errors="replace")


def _connections(log: str, user: str) -> int:
    """Logins of ``user`` the broker's log shows (``connection_messages true``)."""
    pattern = rf"New client connected from \S+ as \S+ \(.*u'{re.escape(user)}'\)"
    return len(re.findall(pattern, log))


async def test_control_on_the_shipped_broker_a_second_login_of_one_account_takes_over(
    shipped_mosquitto: ShippedBroker, tmp_path: Path
) -> None:
    # The price of tying ids to accounts, and the proof that the broker's log shows a
    # takeover: whatever id it sends, a second redox-streamer login throws the first off.
    broker = shipped_mosquitto
    config = MqttConfig(
        host=HOST,
        port=broker.port,
        username="redox-streamer",
        password=Secret(broker.password("redox-streamer")),
    )
    with Store(tmp_path / "s.sqlite3") as store:
        publisher = MqttPublisher(config, store, backoff=Backoff(5.0, 5.0))
        async with (
            running(publisher),
            aiomqtt.Client(
                HOST,
                broker.port,
                identifier="anything-else",
                username="redox-streamer",
                password=broker.password("redox-streamer"),
                timeout=5,
            ),
        ):
            await eventually(lambda: publisher.status()["disconnects"] >= 1, what="takeover")
    assert TAKEOVER in _broker_log(broker)


ROOT = Path(__file__).resolve().parents[1]
RUN_DEVICES = '[[athletes.devices]]\nid = "power"\nkind = "power"\naddress = "C0:00:00:00:42:01"\n'


async def _cli(*argv: str) -> int:
    """``redox-streamer ARGV`` in this process (the console script's code path)."""
    return await asyncio.to_thread(cli.main, list(argv))


async def test_run_holds_one_connection_and_the_cli_commands_use_their_own_account(
    shipped_mosquitto: ShippedBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = shipped_mosquitto
    config = tmp_path / "redox.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "store.sqlite3"}"\n'
        f'[mqtt]\nurl = "{broker.url("redox-streamer")}"\n'
        f'[mqtt.cli]\nusername = "redox-cli"\npassword = "{broker.password("redox-cli")}"\n'
        '[[athletes]]\nid = "ann"\nname = "Ann"\n' + RUN_DEVICES
    )
    watcher = await AuthSubscriber(
        HOST,
        broker.port,
        username="homeassistant",
        password=broker.password("homeassistant"),
        topic="redox/#",
    ).start()
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "streamer.cli", "run", "--config", str(config), "--emulated", "--plain"),
        *("--speed", "20", "--duration", "600"),  # a bound only: the test stops it
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await watcher.wait_for(
            lambda: [m.payload for m in watcher.on("redox/bridge/commands")][-1:] == [b"online"],
            what="run listening for commands",
            timeout_s=60,
        )
        # Takeover attempts: readers logging in with the ids a reader could know.
        for stolen in ("redox-streamer", "redox-cli", "redox-notify"):
            async with aiomqtt.Client(
                HOST,
                broker.port,
                identifier=stolen,
                username="redox-notify",
                password=broker.password("redox-notify"),
                timeout=5,
            ):
                pass
        common = ("--athlete", "ann", "--config", str(config))
        assert await _cli("session", "start", *common, "--tag", "intervals") == 0
        assert await _cli("rpe", "6", *common) == 0
        assert await _cli("session", "end", *common) == 0
        assert "sent to the running `run`" in capsys.readouterr().out

        def sessions() -> list[dict[str, object]]:
            payloads = (json.loads(m.payload) for m in watcher.on("redox/ann/oxygenation"))
            return [p for p in payloads if p.get("scope") == "session"]

        await watcher.wait_for(
            lambda: bool(sessions()), what="the session framed by the commands", timeout_s=60
        )
        (summary,) = sessions()
        assert (summary["rpe"], summary["tags"]) == (6, ["intervals"])
        assert await _cli("status", "--config", str(config), "--json") == 0
        shown = json.loads(capsys.readouterr().out)["broker"]
        assert (shown["reachable"], shown["bridge"], shown["problem"]) == (True, "online", None)
        await _cli("doctor", "--config", str(config), "--no-bluetooth")
        doctor = capsys.readouterr().out
        assert "accepts connections as redox-cli; redox-streamer is logged in by the" in doctor
    finally:
        if run.returncode is None:
            run.send_signal(signal.SIGTERM)
        _, stderr = await run.communicate()
        await watcher.stop()
    assert run.returncode == 128 + signal.SIGTERM, stderr.decode()[-3000:]
    assert "connection lost or refused" not in stderr.decode()
    states = [m.payload for m in watcher.on("redox/bridge/state")]
    assert states.count(b"offline") == 1  # said once: at the clean stop
    assert states[-1] == b"offline"
    log = _broker_log(broker)
    # One connection for the whole run (results and commands), never thrown off, though
    # three readers logged in with the ids a reader could know; the commands' five logins
    # (session, rpe, session, status, doctor) as redox-cli.
    assert _connections(log, "redox-streamer") == 1
    assert _connections(log, "redox-cli") == 5
    assert _connections(log, "redox-notify") == 3
    assert TAKEOVER not in log


async def _next(client: aiomqtt.Client, timeout_s: float = 5.0) -> aiomqtt.Message:
    async with asyncio.timeout(timeout_s):
        return await anext(aiter(client.messages))


@dataclass
class AuthSubscriber(Subscriber):
    """A :class:`Subscriber` (clean session) that logs in."""

    username: str = ""
    password: str = ""
    persistent: bool = False

    async def _run(self) -> None:
        while True:
            client = aiomqtt.Client(
                self.host,
                self.port,
                username=self.username,
                password=self.password,
                identifier=self.username,
                timeout=3,
            )
            try:
                async with client:
                    self.connects += 1
                    await client.subscribe(self.topic, qos=1)
                    self._subscribed.set()
                    async for m in client.messages:
                        self._record(m)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)


def test_the_cli_account_comes_from_mqtt_cli_or_the_environment_else_mqtt_s_own() -> None:
    from streamer.config import ConfigError, parse_config

    base = '[mqtt]\nurl = "mqtt://pi:1883"\nusername = "redox-streamer"\npassword = "s"\n'
    single = parse_config(base, env={}).mqtt
    assert single is not None
    assert single.for_cli() is single  # one account for everything keeps working
    table = parse_config(base + '[mqtt.cli]\nusername = "redox-cli"\npassword = "c"\n', env={})
    assert table.mqtt is not None
    cli_config = table.mqtt.for_cli()
    assert (cli_config.username, cli_config.password, cli_config.host) == (
        "redox-cli",
        Secret("c"),
        "pi",
    )
    env = {"REDOX_MQTT_CLI_USERNAME": "redox-cli", "REDOX_MQTT_CLI_PASSWORD": "e"}
    from_env = parse_config(base, env=env).mqtt
    assert from_env is not None
    assert from_env.for_cli().username == "redox-cli"
    assert from_env.for_cli().password == Secret("e")
    with pytest.raises(ConfigError, match=r"mqtt\.cli\.username: missing.*redox-cli"):
        parse_config(base + '[mqtt.cli]\npassword = "c"\n', env={})
