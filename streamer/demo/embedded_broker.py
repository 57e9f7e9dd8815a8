"""An embedded MQTT broker on loopback for the zero-set-up demo.

``redox-streamer demo`` without ``--mqtt`` starts this in-process broker (amqtt) so that
the demo publishes through the same MQTT path as production and anyone can watch::

    mosquitto_sub -h 127.0.0.1 -p PORT -t 'redox/#' -v

amqtt speaks MQTT 3.1.1 only: clients must connect with protocol 3.1.1 (see
:data:`PROTOCOL`). It is a demo convenience, not a production broker (no persistence); the
publisher's tests run against a real mosquitto.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self

from amqtt.broker import Broker

LOOPBACK: Final = "127.0.0.1"
#: The MQTT protocol level amqtt implements (3.1.1, protocol level 4).
PROTOCOL: Final = "3.1.1"
_BIND_ATTEMPTS: Final = 5

_LOGGER = logging.getLogger(__name__)


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the embedded broker listens."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """``mqtt://host:port``, the form ``--mqtt`` and the config accept."""
        return f"mqtt://{self.host}:{self.port}"

    def watch_command(self, base_topic: str = "redox") -> str:
        """A shell command that prints every message the demo publishes."""
        return f"mosquitto_sub -h {self.host} -p {self.port} -V mqttv311 -t '{base_topic}/#' -v"


class EmbeddedBroker:
    """amqtt running in this event loop on a free loopback port; an async context manager.

    Args:
        port: a fixed port, or ``None`` for a free one chosen at start.
    """

    def __init__(self, port: int | None = None) -> None:
        self._requested_port = port
        self._broker: Broker | None = None
        self._address: BrokerAddress | None = None

    @property
    def address(self) -> BrokerAddress:
        """Host and port (only while running)."""
        if self._address is None:
            raise RuntimeError("the embedded broker is not running: use 'async with'")
        return self._address

    async def start(self) -> BrokerAddress:
        """Start listening; returns the address. Retries when a chosen port was taken."""
        # Quiet amqtt: it logs every connection at INFO, which would flood the live view.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        last_error: Exception | None = None
        attempts = 1 if self._requested_port is not None else _BIND_ATTEMPTS
        for _ in range(attempts):
            port = self._requested_port or _free_loopback_port()
            broker = Broker(self._config(port))
            try:
                await broker.start()
            except Exception as exc:  # amqtt wraps OSError (port taken) in BrokerError
                last_error = exc
                continue
            self._broker = broker
            self._address = BrokerAddress(LOOPBACK, port)
            _LOGGER.info("embedded MQTT broker on %s", self._address.url)
            return self._address
        raise RuntimeError(
            f"could not start the embedded MQTT broker on {LOOPBACK}: {last_error}; "
            "pass --mqtt URL to use an existing broker instead"
        )

    async def stop(self) -> None:
        """Disconnect every client and close the listener."""
        broker, self._broker = self._broker, None
        self._address = None
        if broker is not None:
            await broker.shutdown()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @staticmethod
    def _config(port: int) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{LOOPBACK}:{port}"}},
            # No $SYS publisher and no packet logger: only what the demo sends.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
