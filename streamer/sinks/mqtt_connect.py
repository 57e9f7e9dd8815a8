"""One way to open an MQTT connection: ``[mqtt]`` config → ``aiomqtt.Client``.

The publisher (:mod:`streamer.sinks.mqtt`), the notifier (:mod:`streamer.notify.notifier`) and
``redox-streamer doctor`` all build their client here, so a setting means the same to
each of them. What differs between them is passed in: the client id, the timeout, a Last
Will, a persistent session.

Client ids (:func:`process_client_id`) are unique per process: a broker disconnects a
client when another connects with the same id, so two processes sharing one (two
streamers, or a notifier copying the streamer's) would throw each other off in turn. Only
the notifier keeps a stable id, because its persistent session is found by it. The shipped
mosquitto config (``deploy/mosquitto/mosquitto.conf``) goes further and replaces every
client id by the user name, so a reader's account cannot take over the writer's session;
there one connection per account stands, which is why ``run`` holds one connection (the
command topics are subscribed on the publisher's) and the commands that talk to a running
``run`` log in with ``[mqtt.cli]`` (:meth:`streamer.config.MqttConfig.for_cli`).

The TLS settings (``[mqtt.tls]``; TLS is on for ``mqtts://`` URLs or when that table is
present) mean:

``ca_file``
    The CA certificate(s), PEM, that the broker's certificate must chain to. Omitted: the
    system's trusted CAs. The chain is ALWAYS verified: a broker whose certificate does
    not chain to these CAs is refused during the TLS handshake, before the client sends
    anything — user name and password included.
``cert_file``, ``key_file``
    A client certificate (PEM) and its private key, presented when the broker asks for one
    (mosquitto's ``require_certificate true``). ``key_file`` may be omitted when
    ``cert_file`` holds the key too.
``insecure``
    ``true`` skips the host-name check ONLY: the certificate must still chain to
    ``ca_file`` (or the system CAs), but may name another host than the one in the URL —
    e.g. a broker reached by IP address whose certificate names its DNS name. It never
    turns certificate verification off; for testing, prefer a certificate that names the
    host.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import ssl
from collections.abc import Sequence
from typing import Final

import aiomqtt
from paho.mqtt import client as paho_client
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from streamer.config import MqttConfig
from streamer.errors import StreamerError

_CERTIFICATE_FAILED: Final = "CERTIFICATE_VERIFY_FAILED"
"""OpenSSL's reason for a refused chain or host name (aiomqtt keeps only the text)."""


NO_DELAY: Final = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
"""Every MQTT socket sends at once (Nagle off): paho makes its own socket, which asyncio's
transports would have set so, and small QoS 0 live samples sent one after another otherwise
wait for the broker's delayed ACK of the one before (up to 40 ms on Linux)."""


HOST_PART_CHARS: Final = 16
"""Characters of the host name kept in a client id (ids show in the broker's log)."""


def process_client_id(role: str, prefix: str | None = None) -> str:
    """A client id for this process only: ``<prefix>-<host>-<pid>-<random>``.

    Args:
        role: what connects (``"streamer"``, ``"doctor"``): the prefix is
            ``redox-<role>`` unless ``prefix`` is given.
        prefix: ``[mqtt] client_id`` from the config, if set: the id starts with it.

    E.g. ``redox-streamer-raspberrypi-4711-9f3a1c``: the host and pid say in the broker's
    log who connected; 24 random bits keep two processes apart even across hosts with the
    same name.
    """
    host = re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname())[:HOST_PART_CHARS] or "host"
    return f"{prefix or f'redox-{role}'}-{host}-{os.getpid()}-{secrets.token_hex(3)}"


class MqttTlsError(StreamerError):
    """A TLS file of ``[mqtt.tls]`` cannot be used; the message names it and the fix."""


def tls_context(config: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context for ``config`` (see the module docstring), or None without TLS.

    Reads the certificate files: call it off the event loop where that matters.
    :class:`MqttTlsError` names a file that cannot be read or used.
    """
    if not config.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise MqttTlsError(
            f"mqtt.tls.ca_file {config.ca_file}: cannot load CA certificates ({exc}) — "
            "give a PEM file with the CA that signed the broker's certificate"
        ) from exc
    if config.cert_file is not None:
        try:
            context.load_cert_chain(
                str(config.cert_file), str(config.key_file) if config.key_file else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise MqttTlsError(
                f"mqtt.tls.cert_file {config.cert_file}"
                f"{f' / key_file {config.key_file}' if config.key_file else ''}: cannot load "
                f"the client certificate ({exc}) — give the PEM certificate and its key"
            ) from exc
    # The chain is always verified (create_default_context: CERT_REQUIRED); `insecure`
    # only lets the certificate name another host.
    context.check_hostname = not config.tls_insecure
    return context


def mqtt_client(
    config: MqttConfig,
    *,
    tls: ssl.SSLContext | None,
    timeout_s: float,
    identifier: str | None = None,
    will: aiomqtt.Will | None = None,
    session_expiry_s: int | None = None,
    logger: logging.Logger | None = None,
    max_inflight_messages: int | None = None,
) -> aiomqtt.Client:
    """A client for the broker of ``config``: host, port, credentials, protocol, keepalive
    and ``tls`` (from :func:`tls_context`).

    Args:
        tls: the context from :func:`tls_context` (None without TLS).
        timeout_s: aiomqtt's timeout for connecting and for each call.
        identifier: the client id; None: a random one.
        will: the Last Will, if any.
        session_expiry_s: None: a clean session; else a persistent one that the broker
            keeps this long while the client is away (MQTT 5; 3.1.1 keeps it until the
            broker's own limit).
        logger: where aiomqtt and paho log (never the password).
        max_inflight_messages: QoS 1 messages unacknowledged at once (paho's default: 20).
    """
    v5 = config.protocol == "5"
    persistent = session_expiry_s is not None
    return aiomqtt.Client(
        config.host,
        config.port,
        username=config.username,
        password=config.password.reveal() if config.password else None,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        will=will,
        clean_session=None if v5 else not persistent,
        clean_start=False if v5 and persistent else paho_client.MQTT_CLEAN_START_FIRST_ONLY,
        properties=(
            _session_expiry(session_expiry_s) if v5 and session_expiry_s is not None else None
        ),
        timeout=timeout_s,
        keepalive=config.keepalive_s,
        tls_context=tls,
        logger=logger,
        max_inflight_messages=max_inflight_messages,
        socket_options=NO_DELAY,
    )


def probe_topic(base: str, who: str) -> str:
    """``<base>/bridge/probe/<who>-<random>``: a topic of one client's own (see
    :func:`read_retained`); the shipped ACL lets the CLI account use ``<base>/bridge/probe/#``."""
    return f"{base}/bridge/probe/{who}-{secrets.token_hex(6)}"


async def read_retained(
    client: aiomqtt.Client, filters: Sequence[str], probe: str
) -> list[aiomqtt.Message]:
    """The retained messages on ``filters``, all of them, without waiting for a time.

    After subscribing, this client publishes to ``probe`` (a topic of its own, subscribed
    too): the broker delivers a client's messages in order, so the probe arrives after
    every retained message the subscriptions deliver. Bound the call with a timeout: a
    broker whose ACL drops the probe never echoes it.
    """
    for topic_filter in (*filters, probe):
        await client.subscribe(topic_filter, qos=1)
    await client.publish(probe, b"?", qos=1)
    out: list[aiomqtt.Message] = []
    async for message in client.messages:
        if message.topic.matches(probe):
            break
        out.append(message)
    return out


def is_certificate_refused(exc: BaseException) -> bool:
    """True when ``exc`` says the broker's certificate was refused (untrusted chain or,
    without ``insecure``, a host name it does not name)."""
    text = f"{exc} {exc.__cause__ or ''}"
    return _CERTIFICATE_FAILED in text or "certificate verify failed" in text


def describe_failure(config: MqttConfig, exc: BaseException) -> str:
    """What went wrong connecting to ``config``'s broker, in its settings' terms."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if is_certificate_refused(exc):
        trust = f"mqtt.tls.ca_file {config.ca_file}" if config.ca_file else "the system CAs"
        return (
            f"the broker's certificate was refused ({detail}): it must be signed by a CA in "
            f"{trust} and name {config.host} (or set mqtt.tls.insecure to skip the "
            "host-name check only)"
        )
    return detail


def _session_expiry(seconds: int) -> Properties:
    """MQTT 5 CONNECT properties: keep the session (and its queue) ``seconds`` while away."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = seconds
    return props
