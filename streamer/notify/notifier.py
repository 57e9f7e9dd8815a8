"""Turn alerts on MQTT into notifications, once per alert.

The streamer publishes ``<base>/<athlete>/alerts`` (QoS 1, retained; see docs/topics.md):
``{"schema":1, "seq", "ts_ns", "athlete", "active":[alert...], "event":alert}`` where an
alert is ``{rule, severity, state, message, advice, evidence, source, raised_ts_ns,
cleared_ts_ns}``. The notifier subscribes with a persistent session, so alerts raised while
it was away are queued by the broker, and:

* notifies the ``event`` when it is ``raised`` (and, if asked, when it is ``cleared``) and
  its severity is at least the notifier's ``min_severity`` (default ``warning``: an
  ``info`` finding such as ``grip_signal`` — no change needed — is not pushed);
* also notifies any ``active`` alert it has not delivered yet — so an alert missed while
  the session was gone (expired, broker wiped) is caught up from the retained message;
* delivers each alert ONCE per channel: the key ``athlete | rule | raised_ts_ns | state``
  is kept in a small JSON state file after a successful delivery, so neither MQTT's
  at-least-once redelivery, nor the retained copy re-sent on every (re)subscribe, nor a
  restart of the notifier notifies twice. A delivery that failed is not recorded and is
  tried again the next time the alert is seen (the next message for that athlete, or the
  retained copy after a reconnect).

Channels (desktop, command, webhook) are in :mod:`streamer.notify.channels`; the CLI is
``redox-streamer notify`` (:mod:`streamer.commands.notify`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiomqtt
from aiomqtt.exceptions import MqttConnectError

from streamer.cancel import cancellation_kept
from streamer.config import MqttConfig
from streamer.errors import StreamerError
from streamer.notify.model import SEVERITY_RANK, Channel, DeliveryError
from streamer.notify.model import AlertNotice as AlertNotice
from streamer.payloads import decode_payload
from streamer.results import JsonValue
from streamer.sinks.backoff import NOTIFY_RECONNECT
from streamer.sinks.mqtt_connect import (
    MqttTlsError,
    describe_failure,
    is_certificate_refused,
    mqtt_client,
    tls_context,
)

_LOGGER = logging.getLogger(__name__)

STATE_SCHEMA: Final = 1
MAX_REMEMBERED: Final = 5000
"""Delivered-alert keys kept in the state file (oldest forgotten first); a few per day."""
MQTT_TIMEOUT_S: Final = 10.0
SESSION_EXPIRY_S: Final = 14 * 24 * 3600
"""MQTT 5 session expiry: as long as the shipped broker keeps a persistent session (14 d)."""
#: CONNACK codes that retrying cannot fix (3.1.1: bad credentials / not authorised;
#: MQTT 5: bad user name or password / not authorised).
_AUTH_REFUSED: Final = frozenset({4, 5, 134, 135})
DEFAULT_MIN_SEVERITY: Final = "warning"
"""Notify warnings and pull-backs; ``info`` findings ask for no change (``--min-severity``)."""


class NotifyError(StreamerError):
    """The notifier cannot run (refused credentials, bad state file); says what to do."""


def alerts_in_message(topic: str, payload: bytes | str) -> list[AlertNotice]:
    """The alerts an ``alerts`` message tells about: its event first, then the open ones.

    ``ValueError`` if the payload is not a schema-1 alerts object. Malformed alert entries
    are skipped with a warning (one bad entry must not hide the others).
    """
    obj = decode_payload(payload)
    athlete = obj.get("athlete")
    if not isinstance(athlete, str) or not athlete:
        parts = topic.split("/")
        athlete = parts[-2] if len(parts) >= 2 else ""
    entries: list[JsonValue] = [obj.get("event")]
    active = obj.get("active")
    if isinstance(active, list):
        entries.extend(active)
    notices: dict[str, AlertNotice] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        try:
            notice = _without_nul(AlertNotice.from_alert(athlete, entry, topic))
        except ValueError as exc:
            _LOGGER.warning("skipping a malformed alert on %s: %s", topic, exc)
            continue
        notices.setdefault(notice.key, notice)
    return list(notices.values())


def _without_nul(notice: AlertNotice) -> AlertNotice:
    """``notice`` with every NUL in its text replaced by U+FFFD.

    A NUL cannot go into a command's argument or environment (``notify-send``, ``--exec``
    refuse it with ValueError); an alert carrying one crashed the notifier, and, retained
    on the broker, at every start.
    """
    changes: dict[str, Any] = {
        f.name: value.replace("\0", "\N{REPLACEMENT CHARACTER}")
        for f in dataclasses.fields(notice)
        if isinstance(value := getattr(notice, f.name), str) and "\0" in value
    }
    return dataclasses.replace(notice, **changes) if changes else notice


class SeenStore:
    """Delivered (channel, alert key) pairs, persisted in a small JSON file.

    Written atomically (temporary file + rename) after every change, so a crash leaves
    the old or the new file, never half of one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: dict[str, float] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text())
                seen = data["seen"] if data.get("schema") == STATE_SCHEMA else None
                if not isinstance(seen, dict):
                    raise ValueError("no 'seen' object")
                self._seen = {str(k): float(v) for k, v in seen.items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise NotifyError(
                    f"notify state file {path} is unreadable ({exc}): delete it (alerts "
                    "still open will then be notified once more) or pass another --state"
                ) from exc

    @staticmethod
    def _id(channel: str, key: str) -> str:
        return f"{channel}|{key}"

    def __contains__(self, item: tuple[str, str]) -> bool:
        return self._id(*item) in self._seen

    def add(self, channel: str, key: str) -> None:
        """Record a delivery and save the file."""
        self._seen[self._id(channel, key)] = time.time()
        if len(self._seen) > MAX_REMEMBERED:
            newest = sorted(self._seen.items(), key=lambda kv: kv[1])[-MAX_REMEMBERED:]
            self._seen = dict(newest)
        self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=self.path.name, dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"schema": STATE_SCHEMA, "seen": self._seen}, f)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


@dataclass
class NotifyStats:
    """Counters since start: messages handled to the end, deliveries, failed deliveries, alerts
    already delivered (skipped), messages that were not redox alerts, alerts less severe
    than the notifier's minimum (skipped)."""

    messages: int = 0
    delivered: int = 0
    failed: int = 0
    duplicates: int = 0
    malformed: int = 0
    below_min_severity: int = 0


class Notifier:
    """Decides which alerts to notify and hands them to every channel once."""

    def __init__(
        self,
        channels: Sequence[Channel],
        seen: SeenStore,
        *,
        include_cleared: bool = False,
        min_severity: str = DEFAULT_MIN_SEVERITY,
    ) -> None:
        if not channels:
            raise ValueError("a notifier needs at least one channel")
        if min_severity not in SEVERITY_RANK:
            raise ValueError(
                f"min_severity {min_severity!r}: expected one of {', '.join(SEVERITY_RANK)}"
            )
        self.channels = list(channels)
        self.seen = seen
        self.include_cleared = include_cleared
        self.min_rank = SEVERITY_RANK[min_severity]
        self.stats = NotifyStats()

    async def handle(self, topic: str, payload: bytes | str) -> list[tuple[str, AlertNotice]]:
        """Notify what ``payload`` (an alerts message on ``topic``) holds that is new.

        Returns the (channel name, notice) pairs delivered now.
        """
        try:
            notices = alerts_in_message(topic, payload)
        except ValueError as exc:
            self.stats.malformed += 1
            self.stats.messages += 1
            _LOGGER.warning(
                "ignoring a message on %s that is not a redox alerts payload: %s", topic, exc
            )
            return []
        delivered: list[tuple[str, AlertNotice]] = []
        for notice in notices:
            if notice.state == "cleared" and not self.include_cleared:
                continue
            if notice.rank < self.min_rank:
                self.stats.below_min_severity += 1
                continue
            for channel in self.channels:
                if (channel.name, notice.key) in self.seen:
                    self.stats.duplicates += 1
                    continue
                try:
                    await channel.send(notice)
                except DeliveryError as exc:
                    self.stats.failed += 1
                    _LOGGER.error(
                        "%s: %s not delivered (will retry when seen again): %s",
                        channel.name,
                        notice.title,
                        exc,
                    )
                    continue
                self.seen.add(channel.name, notice.key)
                self.stats.delivered += 1
                delivered.append((channel.name, notice))
                _LOGGER.info("%s: notified %s", channel.name, notice.title)
        self.stats.messages += 1
        return delivered


def default_client_id(state_path: Path) -> str:
    """A stable MQTT client id for a persistent session: one per host and state file.

    Two notifiers with different state files on one host get different ids, so they do
    not take each other's session over.
    """
    digest = hashlib.sha1(
        f"{socket.gethostname()}|{state_path.resolve()}".encode(), usedforsecurity=False
    ).hexdigest()
    return f"redox-notify-{digest[:8]}"


def alerts_filter(base: str) -> str:
    """The subscription: ``<base>/+/alerts``."""
    return f"{base.strip('/')}/+/alerts"


def _describe(mqtt: MqttConfig) -> str:
    user = f" as {mqtt.username}" if mqtt.username else ""
    return f"{mqtt.url}{user}"


async def run_notifier(
    mqtt: MqttConfig, notifier: Notifier, *, client_id: str, subscribed: asyncio.Event | None = None
) -> None:
    """Subscribe to ``<base>/+/alerts`` and notify, reconnecting until cancelled.

    A persistent session (clean session off, QoS 1) under ``client_id`` keeps alerts
    raised while the notifier is away. ``subscribed`` is set once the subscription is
    acknowledged (after each reconnect). Refused credentials, a broker certificate that
    does not verify (see :mod:`streamer.sinks.mqtt_connect`; the login is then never sent) and
    unusable TLS files raise :class:`NotifyError` (retrying cannot fix them); other
    connection errors are retried with back-off (:data:`streamer.backoff.NOTIFY_RECONNECT`).
    """
    topic_filter = alerts_filter(mqtt.base_topic)
    try:
        context = await asyncio.to_thread(tls_context, mqtt)  # reads certificate files
    except MqttTlsError as exc:
        raise NotifyError(str(exc)) from exc
    rng = random.Random()
    delays = NOTIFY_RECONNECT.delays(rng)
    while True:
        try:
            async with contextlib.AsyncExitStack() as stack:
                # A cancel (Ctrl-C) arriving with CONNACK or SUBACK must stop the notifier,
                # not be lost in aiomqtt's wait_for (see cancellation_kept).
                with cancellation_kept():
                    client = await stack.enter_async_context(
                        mqtt_client(
                            mqtt,
                            tls=context,
                            timeout_s=MQTT_TIMEOUT_S,
                            identifier=client_id,
                            session_expiry_s=SESSION_EXPIRY_S,
                        )
                    )
                    await client.subscribe(topic_filter, qos=1)
                if subscribed is not None:
                    subscribed.set()
                _LOGGER.info(
                    "subscribed to %s on %s (client id %s)",
                    topic_filter,
                    _describe(mqtt),
                    client_id,
                )
                delays = NOTIFY_RECONNECT.delays(rng)  # the next outage starts afresh
                async for message in client.messages:
                    await notifier.handle(message.topic.value, message.payload)
        except MqttConnectError as exc:
            if _reason_code(exc) in _AUTH_REFUSED:
                raise NotifyError(
                    f"{_describe(mqtt)} refused the login ({exc}): check --username/"
                    "--password (or REDOX_MQTT_USERNAME/REDOX_MQTT_PASSWORD) and the broker's "
                    "password file and ACL"
                ) from exc
            delay = next(delays)
            _LOGGER.warning(
                "cannot connect to %s (%s); retrying in %g s", _describe(mqtt), exc, delay
            )
        except aiomqtt.MqttError as exc:
            if is_certificate_refused(exc):
                raise NotifyError(
                    f"{_describe(mqtt)}: {describe_failure(mqtt, exc)}; the login was not sent"
                ) from exc
            delay = next(delays)
            _LOGGER.warning(
                "connection to %s lost (%s); reconnecting in %g s", _describe(mqtt), exc, delay
            )
        await asyncio.sleep(delay)


def _reason_code(exc: MqttConnectError) -> int:
    """The CONNACK code as an int (paho gives a ``ReasonCode`` or a plain int)."""
    rc = getattr(exc, "rc", 0)
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else 0
