"""The live link: one MQTT connection that carries a process's QoS 0 live samples, each
written to the socket inside the publishing call.

Why not aiomqtt: for a QoS 0 publish aiomqtt makes an event and a task waiting for paho's
``on_publish``, and registers the socket's writer with the loop (through the loop's
self-pipe) instead of letting paho write; ``bench/mqtt_live_publish.py`` measures
100–250 µs of CPU per live sample that way against 30–80 µs through paho writing inline.
A team worker sends every live sample of its athletes, so that difference is a large part
of its CPU (issue 13: 200 athletes per worker at 25% of a core). Measured 2026-12-02 in one
run of that bench: this link 31–44 µs per sample one at a time and 14–18 µs in batches of 5,
aiomqtt 143–199 and 61–74 µs; a worker at real time (``bench/team_worker.py --realtime 40
--athletes 200``, five rounds alternating with the aiomqtt path) ~390 → ~340 µs of CPU per
stream message.

How: a paho-mqtt client driven by the asyncio loop through paho's public external-loop API
(``socket()``, ``loop_read``, ``loop_write``, ``loop_misc``, ``want_write``; paho's
``examples/loop_asyncio.py``), but without its write-registration callbacks: with none
set, paho writes a publish to the socket inside ``publish()``. :meth:`LiveLink.publish` is
therefore a plain synchronous call — no task, no await. The loop watches the socket for
reading (CONNACK, PINGRESP, the broker's hang-up), calls ``loop_misc`` every second
(keepalive), and watches it for writing only while paho holds bytes the socket did not take
(``want_write()``: its buffer was full). While it is, later calls' samples are shed rather
than queued behind them — a live sample that cannot leave now is worth nothing later; only
the rest of the one call whose write the socket cut short waits in paho (that call's batch).

Connections: TCP and TLS are set up by paho's blocking ``connect()`` in a thread (the DNS
lookup, the handshake), then CONNACK is awaited on the loop. A fresh paho client per
connection; reconnection in :meth:`LiveLink.run`'s task with the sinks' back-off
(:mod:`streamer.sinks.backoff`); a failure to connect is logged once per outage, not per
attempt or per sample. A stop while a TLS handshake runs in that thread ends :meth:`run` at
once, but the process's exit waits for the thread (paho's connect timeout, 5 s). The link
has no Last Will and no subscriptions: whether a process is
up is said on a connection of its own. While it is down, :meth:`LiveLink.publish` sends
nothing and returns at once; QoS 0 retries nothing.

Who uses it: a team worker (:class:`streamer.team.worker.Worker`), one link shared by all
its partitions' publishers (client id ``redox-worker-<id>-live``). Single-box ``run`` does
not: the shipped single-box broker gives each account one connection
(``use_username_as_clientid``), so a second one would throw ``run``'s own publisher — and
its command listener — off; and a box's handful of athletes makes the saving small.

Settings are :class:`~streamer.config.MqttConfig`'s as :mod:`streamer.sinks.mqtt_connect`
reads them for every other connection: host and port, user name and password (handed to
paho only, never logged), TLS (the same :func:`~streamer.sinks.mqtt_connect.tls_context`),
protocol, keepalive, and TCP_NODELAY (:data:`~streamer.sinks.mqtt_connect.NO_DELAY`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import ssl
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from streamer.config import MqttConfig
from streamer.sinks.backoff import Backoff, network_backoff
from streamer.sinks.mqtt_connect import NO_DELAY, MqttTlsError, describe_failure, tls_context

_LOGGER: Final = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0
"""Longest wait for TCP + TLS + CONNACK before trying again (as the publisher's)."""
STABLE_S: Final = 10.0
"""A connection lost sooner than this after CONNACK counts as a failed attempt for the
back-off (s), and a run of them is logged once: a link that the broker drops at once
(a second client with the same id) must not reconnect at the shortest delay for ever."""
MISC_EVERY_S: Final = 1.0
"""How often paho's ``loop_misc`` runs while connected (s): it sends PINGREQ when the
keepalive is due and closes a connection whose PINGRESP is overdue (paho asks for ~1 s)."""


class LiveLinkError(ConnectionError):
    """The broker refused the connection (CONNACK with a failure code)."""


@dataclass
class LiveLinkStatus:
    """The link's counters (:meth:`LiveLink.status` returns them as a dict)."""

    broker: str
    client_id: str
    connected: bool = False
    connects: int = 0
    disconnects: int = 0  # connections lost after CONNACK
    published: int = 0  # samples written (or queued behind a partial write) on the socket
    shed: int = 0  # samples refused: no connection (see shed_while_down), the socket full, or
    # the write failed
    last_error: str | None = None


class LiveLink:
    """One MQTT connection for live samples (QoS 0), written inline (see the module).

    Args:
        config: the broker and its settings (the same as the process's other connections).
        client_id: the connection's client id, e.g. ``redox-worker-<id>-live``.
        backoff: delays between connection attempts (default from ``config``).

    :meth:`run` (once) connects and keeps the connection until cancelled; :meth:`publish`
    sends on it from the same event loop.
    """

    def __init__(
        self, config: MqttConfig, client_id: str, *, backoff: Backoff | None = None
    ) -> None:
        self.config = config
        self.client_id = client_id
        self._backoff = backoff or network_backoff(config.reconnect_min_s, config.reconnect_max_s)
        self._rng = random.Random()
        self._status = LiveLinkStatus(broker=config.url, client_id=client_id)
        self._tls: ssl.SSLContext | None = None
        self._client: paho.Client | None = None
        """The client whose connection is up (after CONNACK): what :meth:`publish` uses."""
        self._io: paho.Client | None = None
        """The client whose socket the loop watches (from the TCP connect to its close)."""
        self._fd = -1
        self._writing = False
        self._lost = asyncio.Event()  # the watched socket closed
        self._connack: asyncio.Future[None] | None = None
        self._opener = concurrent.futures.ThreadPoolExecutor(1, "mqtt-live-connect")
        """Where paho's blocking connect runs (DNS, TCP, TLS handshake): off the loop."""
        self.up = asyncio.Event()
        """Set while the connection is up (after CONNACK), cleared when it is lost."""

    # --- publishing ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the connection is up and can take a sample now."""
        return self._client is not None

    def publish(self, messages: Sequence[tuple[str, bytes]]) -> int:
        """Send ``(topic, payload)`` messages with QoS 0, in order, on the socket now.

        Returns how many were written (or queued behind a partial write, which the loop
        finishes); the rest are shed: none when the link is down or the socket is still
        full from before, the remainder when the connection fails meanwhile. Never raises
        for the network's sake and never waits.
        """
        client = self._client
        if client is None or client.want_write():
            self._status.shed += len(messages)
            if client is not None:
                self._flush_later(client)
            return 0
        sent = 0
        for topic, payload in messages:
            if client.publish(topic, payload, qos=0).rc != paho.MQTT_ERR_SUCCESS:
                break  # the write failed: paho closed the socket (_socket_closed)
            sent += 1
        self._flush_later(client)
        self._status.published += sent
        self._status.shed += len(messages) - sent
        return sent

    def shed_while_down(self, count: int) -> None:
        """Count ``count`` samples a publisher shed without handing them over, because the
        link was down (it numbers no ``seq`` for them then)."""
        self._status.shed += count

    def status(self) -> dict[str, Any]:
        """The counters (:class:`LiveLinkStatus`) as a dict."""
        return asdict(self._status)

    # --- the connection -----------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, keep the connection, reconnect with back-off after a failure or a loss;
        until cancelled, then say DISCONNECT and close the socket."""
        delays = self._backoff.delays(self._rng)
        failures = 0  # attempts failed since the link was last up
        said = False  # this outage was logged: once, not per attempt or per sample
        # The last connection was lost within STABLE_S (another client with the same id,
        # a broker dropping it at once): the back-off goes on growing, said once.
        flapping = False
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    await self._connect()
                except (OSError, TimeoutError, MqttTlsError) as exc:
                    failures += 1
                    self._status.last_error = describe_failure(self.config, exc)[:300]
                    _LOGGER.log(
                        logging.DEBUG if said else logging.WARNING,
                        "MQTT live link %s: cannot connect (%s); retrying with back-off",
                        self.config.url,
                        self._status.last_error,
                    )
                    said = True
                else:
                    _LOGGER.log(
                        logging.DEBUG if flapping else logging.INFO,
                        "MQTT live link connected to %s as %s%s",
                        self.config.url,
                        self.client_id,
                        f" after {failures} failed attempts" if failures else "",
                    )
                    failures = 0
                    up_at = loop.time()
                    await self._keep()
                    self._status.disconnects += 1
                    said_flapping = flapping
                    flapping = loop.time() - up_at < STABLE_S
                    if not flapping:
                        delays = self._backoff.delays(self._rng)
                    _LOGGER.log(
                        logging.DEBUG if said_flapping and flapping else logging.WARNING,
                        "MQTT live link %s lost (%s): live samples are shed until it is back",
                        self.config.url,
                        self._status.last_error or "closed",
                    )
                    said = True
                await asyncio.sleep(next(delays))
        finally:
            self._close()
            self._opener.shutdown(wait=False)  # a connect in flight closes its own socket

    async def _connect(self) -> None:
        """One connection: TCP + TLS + CONNECT in a thread, CONNACK on the loop."""
        if self.config.tls and self._tls is None:
            self._tls = await asyncio.to_thread(tls_context, self.config)
        client = self._make_client()
        loop = asyncio.get_running_loop()
        # A plain future of the thread's, not run_in_executor's: a stop meanwhile must
        # still close the socket the thread opens (below), once the thread is done.
        opening = self._opener.submit(
            client.connect, self.config.host, self.config.port, self.config.keepalive_s
        )
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                rc = await asyncio.wrap_future(opening)
        except BaseException:
            opening.add_done_callback(lambda _: _close_socket(client))
            raise
        if rc != paho.MQTT_ERR_SUCCESS:
            _close_socket(client)
            raise ConnectionError(paho.error_string(rc))
        sock = client.socket()
        if sock is None:
            raise ConnectionError("the connection closed before CONNACK")
        self._connack = loop.create_future()
        self._lost.clear()
        self._io = client
        self._fd = sock.fileno()
        loop.add_reader(self._fd, self._readable, client, sock)
        try:
            # A future and asyncio.timeout, no wait_for: a stop arriving with CONNACK is
            # not swallowed on Python 3.11 (streamer.cancel), nothing here needs keeping.
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await self._connack
        except BaseException:
            self._close()
            raise
        self._client = client
        self._status.last_error = None  # what ends this connection is said afresh
        self._status.connected = True
        self._status.connects += 1
        self.up.set()

    async def _keep(self) -> None:
        """Until the connection is lost: paho's housekeeping every :data:`MISC_EVERY_S`."""
        while self._io is not None and not self._lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(MISC_EVERY_S):
                    await self._lost.wait()
            if self._io is not None:
                client = self._io
                client.loop_misc()  # a PINGREQ meeting a full socket is held by paho
                self._flush_later(client)

    def _make_client(self) -> paho.Client:
        config = self.config
        v5 = config.protocol == "5"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
            clean_session=None if v5 else True,
        )
        if config.username is not None:
            client.username_pw_set(
                config.username, config.password.reveal() if config.password else None
            )
        if self._tls is not None:
            client.tls_set_context(self._tls)
        client.on_socket_open = _no_delay
        client.on_socket_close = self._socket_closed
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        return client

    # --- paho's callbacks and the loop's ------------------------------------------------------

    def _readable(self, client: paho.Client, sock: object) -> None:
        client.loop_read()
        # Under TLS, bytes already decrypted wait in the SSL object, not in the socket: the
        # loop would not call again for them.
        while client.socket() is sock and isinstance(sock, ssl.SSLSocket) and sock.pending():
            client.loop_read()

    def _writable(self, client: paho.Client) -> None:
        client.loop_write()
        if client.socket() is not None and not client.want_write():
            self._unwatch_writes()

    def _flush_later(self, client: paho.Client) -> None:
        """After any paho call that may write: while paho holds bytes the socket did not
        take, the loop writes them once it can (else a held PINGREQ would leave every
        sample shed until the keepalive dropped the connection)."""
        if client is self._io and not self._writing and client.want_write():
            asyncio.get_running_loop().add_writer(self._fd, self._writable, client)
            self._writing = True

    def _unwatch_writes(self) -> None:
        if self._writing:
            asyncio.get_running_loop().remove_writer(self._fd)
            self._writing = False

    def _connected(
        self,
        client: paho.Client,
        _userdata: object,
        _flags: object,
        reason: ReasonCode,
        _properties: object,
    ) -> None:
        if client is not self._io or self._connack is None or self._connack.done():
            return
        if reason.is_failure:
            self._connack.set_exception(LiveLinkError(f"the broker refused: {reason}"))
        else:
            self._connack.set_result(None)

    def _disconnected(
        self,
        client: paho.Client,
        _userdata: object,
        _flags: object,
        reason: ReasonCode,
        _properties: object,
    ) -> None:
        # paho says it after the socket closed (_socket_closed): the client is gone by then.
        if reason.is_failure:
            self._status.last_error = str(reason)

    def _socket_closed(self, client: paho.Client, _userdata: object, sock: object) -> None:
        # Only the watched client's socket closes on the loop; a connect abandoned in its
        # thread closes its own there, and nothing of the loop's is touched then.
        if client is not self._io:
            return
        self._unwatch_writes()
        asyncio.get_running_loop().remove_reader(self._fd)
        self._io = None
        self._client = None
        self._fd = -1
        self._status.connected = False
        self.up.clear()
        self._lost.set()
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(ConnectionError("the broker closed the connection"))

    def _close(self) -> None:
        """Say DISCONNECT (written inline when the socket takes it) and close the socket."""
        client = self._io
        if client is None:
            return
        with contextlib.suppress(OSError):
            client.disconnect()  # paho closes the socket once DISCONNECT is written
        if self._io is client:  # not written (the socket full): close it anyway
            sock = client.socket()
            self._socket_closed(client, None, sock)
            if sock is not None:
                sock.close()


def _no_delay(_client: paho.Client, _userdata: object, sock: Any) -> None:
    sock.setsockopt(*NO_DELAY[0])


def _close_socket(client: paho.Client) -> None:
    """Close the socket of a client whose connection was abandoned (never watched)."""
    sock = client.socket()
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
