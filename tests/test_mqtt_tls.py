"""One meaning of every TLS setting for the publisher, the notifier, ``doctor`` and a
worker's live link.

The first three build their client with :mod:`streamer.sinks.mqtt_connect`, the live link
(:mod:`streamer.sinks.mqtt_live`, paho directly) its TLS context there; here each of them meets a
real mosquitto with a TLS-only listener (certificates from throw-away CAs,
tests/tls_certs.py) and a password file:

* the CA that signed the broker's certificate connects; an unrelated CA is refused, also
  with ``insecure``;
* ``insecure`` skips the host-name check only: a certificate for another host is refused
  without it and accepted with it;
* a broker that requires a client certificate gets the configured one;
* a client that cannot verify the broker never sends it its login (checked with a TLS
  listener that records what arrives).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from streamer.commands.doctor import check_mqtt
from streamer.config import MqttConfig, Secret
from streamer.notify.model import AlertNotice
from streamer.notify.notifier import Notifier, NotifyError, SeenStore, run_notifier
from streamer.sinks.backoff import Backoff
from streamer.sinks.mqtt import MqttPublisher
from streamer.sinks.mqtt_connect import MqttTlsError, tls_context
from streamer.sinks.mqtt_live import LiveLink
from streamer.store import Store
from tests.mqtt_helpers import eventually
from tests.servers import HOST, Mosquitto, require_binary
from tests.tls_certs import CertificateAuthority

pytestmark = pytest.mark.integration

USER, PASSWORD = "redox", "pw-Tl5!q9"
CLIENTS = ("publisher", "notifier", "doctor", "live link")


@dataclass(frozen=True)
class Pki:
    ca: Path
    """Signed every certificate below."""
    other_ca: Path
    """An unrelated CA: signed nothing here."""
    server: tuple[Path, Path]
    """For localhost and 127.0.0.1 (the address the clients dial)."""
    elsewhere: tuple[Path, Path]
    """For broker.invalid only: a valid chain that names another host."""
    client: tuple[Path, Path]
    """A client certificate."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority.create(directory, "trusted")
    other = CertificateAuthority.create(directory, "unrelated")
    return Pki(
        ca=ca.path,
        other_ca=other.path,
        server=ca.issue("server", ("localhost", HOST)),
        elsewhere=ca.issue("elsewhere", ("broker.invalid",)),
        client=ca.issue("client", client=True),
    )


@contextlib.contextmanager
def tls_broker(
    work: Path, pki: Pki, server: tuple[Path, Path], *, require_client_cert: bool = False
) -> Iterator[Mosquitto]:
    """mosquitto with one TLS listener presenting ``server``, user ``redox`` only."""
    passwd_tool = require_binary("mosquitto_passwd", "mosquitto")
    work.mkdir(parents=True, exist_ok=True)
    passwd = work / "passwd"
    subprocess.run([passwd_tool, "-b", "-c", str(passwd), USER, PASSWORD], check=True)
    conf = work / "mosquitto-tls.conf"
    broker = Mosquitto(work, config_file=conf)
    cert, key = server
    conf.write_text(
        f"listener {broker.port} {HOST}\ncafile {pki.ca}\ncertfile {cert}\nkeyfile {key}\n"
        + ("require_certificate true\n" if require_client_cert else "")
        + f"allow_anonymous false\npassword_file {passwd}\npersistence false\n"
        "log_type error\n" + ("user root\n" if os.geteuid() == 0 else "")
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def tls_config(port: int, ca: Path, **options: object) -> MqttConfig:
    return replace(
        MqttConfig(
            host=HOST,
            port=port,
            tls=True,
            ca_file=ca,
            username=USER,
            password=Secret(PASSWORD),
            publish_timeout_s=1.0,
        ),
        **options,
    )


# --- the three clients, each asked the same question: did it get in? ---------------------


@dataclass(frozen=True)
class Outcome:
    connected: bool
    error: str


class _NoChannel:
    name = "none"

    async def send(self, notice: AlertNotice) -> None:
        raise AssertionError(f"no alert was published, yet {notice} arrived")


async def _publisher(config: MqttConfig, work: Path) -> Outcome:
    with Store(work / "store.sqlite3") as store:
        publisher = MqttPublisher(config, store, backoff=Backoff(0.1, 0.5))
        task = asyncio.create_task(publisher.run())
        try:
            await eventually(
                lambda: publisher.status()["connects"] or publisher.status()["disconnects"],
                what="the publisher to connect or be refused",
            )
            # Stopped as the application stops it: a cancel that lands as a publish
            # completes can be lost inside aiomqtt on Python 3.11 (asyncio.wait_for).
            await publisher.drain(0.5)
            async with asyncio.timeout(10):
                await task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        status = publisher.status()
        return Outcome(status["connects"] > 0, str(status["last_error"]))


async def _notifier(config: MqttConfig, work: Path) -> Outcome:
    notifier = Notifier([_NoChannel()], SeenStore(work / "seen.json"))
    subscribed = asyncio.Event()
    task = asyncio.create_task(
        run_notifier(config, notifier, client_id="redox-tls-test", subscribed=subscribed)
    )
    waiter = asyncio.create_task(subscribed.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    for t in (task, waiter):
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError, NotifyError):
            await t
    if waiter in done:
        return Outcome(True, "")
    if task in done:
        exc = task.exception()
        assert isinstance(exc, NotifyError), exc
        return Outcome(False, str(exc))
    raise AssertionError("the notifier neither subscribed nor gave up within 20 s")


async def _doctor(config: MqttConfig, work: Path) -> Outcome:
    check = await asyncio.to_thread(check_mqtt, config)  # it runs its own event loop
    return Outcome(bool(check.ok), check.detail)


async def _live_link(config: MqttConfig, work: Path) -> Outcome:
    link = LiveLink(config, "redox-worker-tls-live", backoff=Backoff(0.1, 0.5))
    task = asyncio.create_task(link.run())
    try:
        await eventually(
            lambda: link.status()["connects"] or link.status()["last_error"],
            what="the live link to connect or be refused",
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    status = link.status()
    return Outcome(status["connects"] > 0, str(status["last_error"]))


CONNECT: dict[str, Callable[[MqttConfig, Path], Awaitable[Outcome]]] = {
    "publisher": _publisher,
    "notifier": _notifier,
    "doctor": _doctor,
    "live link": _live_link,
}


# --- against a real TLS mosquitto ----------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
async def test_the_ca_that_signed_the_broker_connects(
    client: str, pki: Pki, tmp_path: Path
) -> None:
    with tls_broker(tmp_path / "broker", pki, pki.server) as broker:
        outcome = await CONNECT[client](tls_config(broker.port, pki.ca), tmp_path)
    assert outcome == Outcome(True, outcome.error)


@pytest.mark.parametrize("insecure", [False, True])
@pytest.mark.parametrize("client", CLIENTS)
async def test_a_wrong_ca_is_refused_even_when_insecure(
    client: str, insecure: bool, pki: Pki, tmp_path: Path
) -> None:
    with tls_broker(tmp_path / "broker", pki, pki.server) as broker:
        config = tls_config(broker.port, pki.other_ca, tls_insecure=insecure)
        outcome = await CONNECT[client](config, tmp_path)
    assert not outcome.connected
    assert "certificate was refused" in outcome.error
    assert str(pki.other_ca) in outcome.error  # names the setting to fix


@pytest.mark.parametrize("insecure", [False, True])
@pytest.mark.parametrize("client", CLIENTS)
async def test_insecure_only_skips_the_host_name_check(
    client: str, insecure: bool, pki: Pki, tmp_path: Path
) -> None:
    with tls_broker(tmp_path / "broker", pki, pki.elsewhere) as broker:
        config = tls_config(broker.port, pki.ca, tls_insecure=insecure)
        outcome = await CONNECT[client](config, tmp_path)
    assert outcome.connected is insecure
    if not insecure:
        assert "certificate was refused" in outcome.error


@pytest.mark.parametrize("client", CLIENTS)
async def test_the_client_certificate_is_presented(client: str, pki: Pki, tmp_path: Path) -> None:
    cert, key = pki.client
    with tls_broker(tmp_path / "broker", pki, pki.server, require_client_cert=True) as broker:
        config = tls_config(broker.port, pki.ca, cert_file=cert, key_file=key)
        outcome = await CONNECT[client](config, tmp_path)
    assert outcome == Outcome(True, outcome.error)


# --- the login stays with the client -------------------------------------------------------


class _Listener:
    def __init__(self) -> None:
        self.port = 0
        self.received = bytearray()
        self.arrived = asyncio.Condition()
        self.writers: list[asyncio.StreamWriter] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        while chunk := await reader.read(4096):
            async with self.arrived:
                self.received += chunk
                self.arrived.notify_all()


@contextlib.asynccontextmanager
async def recording_tls_listener(cert: tuple[Path, Path]) -> AsyncIterator[_Listener]:
    """A TLS listener on a free port that records every byte a client sends after the
    handshake (and never answers)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, cert))
    listener = _Listener()
    server = await asyncio.start_server(listener.serve, HOST, 0, ssl=context)
    listener.port = server.sockets[0].getsockname()[1]
    try:
        yield listener
    finally:
        server.close()
        for writer in listener.writers:
            writer.close()
        await server.wait_closed()


@pytest.mark.parametrize("insecure", [False, True])
@pytest.mark.parametrize("client", CLIENTS)
async def test_no_client_sends_its_login_to_a_broker_it_cannot_verify(
    client: str, insecure: bool, pki: Pki, tmp_path: Path
) -> None:
    impostor = CertificateAuthority.create(tmp_path / "impostor", "impostor")
    async with recording_tls_listener(impostor.issue("fake", ("localhost", HOST))) as listener:
        config = tls_config(listener.port, pki.ca, tls_insecure=insecure)
        outcome = await CONNECT[client](config, tmp_path)
    assert not outcome.connected
    assert "certificate was refused" in outcome.error
    assert bytes(listener.received) == b""


async def test_the_listener_does_record_a_login_it_was_trusted_with(
    pki: Pki, tmp_path: Path
) -> None:
    # The control for the test above: with the right CA the login arrives and is seen.
    async with recording_tls_listener(pki.server) as listener:
        notifier = Notifier([_NoChannel()], SeenStore(tmp_path / "seen.json"))
        task = asyncio.create_task(
            run_notifier(tls_config(listener.port, pki.ca), notifier, client_id="control")
        )
        try:
            async with listener.arrived, asyncio.timeout(20):
                await listener.arrived.wait_for(lambda: PASSWORD.encode() in listener.received)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# --- the context itself --------------------------------------------------------------------


def test_insecure_keeps_the_chain_verified(pki: Pki) -> None:
    strict = tls_context(MqttConfig(host=HOST, tls=True, ca_file=pki.ca))
    loose = tls_context(MqttConfig(host=HOST, tls=True, ca_file=pki.ca, tls_insecure=True))
    assert strict is not None
    assert loose is not None
    assert (strict.verify_mode, strict.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert (loose.verify_mode, loose.check_hostname) == (ssl.CERT_REQUIRED, False)


def test_no_tls_means_no_context() -> None:
    assert tls_context(MqttConfig(host=HOST)) is None


def test_a_client_certificate_without_its_key_is_named(pki: Pki) -> None:
    cert, _ = pki.client
    with pytest.raises(MqttTlsError, match=r"mqtt\.tls\.cert_file .*client\.pem"):
        tls_context(MqttConfig(host=HOST, tls=True, ca_file=pki.ca, cert_file=cert))
