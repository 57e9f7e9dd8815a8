"""Device leases: one gateway at a time connects a device, the one holding its lease.

A lease is a key ``<athlete>.<device>`` in the JetStream key-value bucket
(:data:`streamer.team.stream.LEASE_BUCKET`) whose value names the gateway, with the
bucket's TTL as its expiry. Every write is conditional on the revision the writer last
saw, so the server — not a protocol of ours — decides a race. The rules, kept simple:

1. **Acquire** a free key with ``create`` (fails if someone holds it). The gateway that
   already holds it (its own restart) takes it back with ``update`` at the revision it
   reads. A gateway contends for a free key only when it sees the device advertising
   (a connected device does not advertise: a held one is invisible to others), after a
   short wait that shrinks with the RSSI it sees it at (:func:`contention_delay_s`):
   with several gateways in range the strongest signal tries first and wins. A gateway
   with no free slot (``max_devices`` leases held) does not contend at all.
2. **Renew** every third of the TTL with ``update`` at the held revision. A revision
   mismatch means another gateway took the key after it expired: the lease is lost and
   the gateway stops that device's driver. A renewal that fails because NATS is away is
   retried; the device keeps streaming into the outbox meanwhile.
3. **Release** (delete at the held revision) when the device has not been connected for
   ``idle_release_s`` — the athlete walked to another room — so a gateway that sees the
   device can acquire it without waiting for the TTL. The holder never yields a connected
   device to a stronger signal: no flapping between two rooms' gateways. **Release after
   flush**: only once every row of the athlete queued before is acknowledged by the stream
   (:meth:`streamer.team.gateway.Gateway.release_after_flush`); a stop with NATS away
   leaves the lease to the TTL, as a crash does. Released earlier, the next holder's grant
   could reach the stream before this gateway's backlog, and the workers would drop it.

On each acquisition the gateway writes a :class:`streamer.team.wire.LeaseGranted` into the
athlete's stream before any of that device's records (workers judge each record by the
grant that precedes it).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

if TYPE_CHECKING:
    from nats.js.kv import KeyValue

_LOGGER: Final = logging.getLogger(__name__)

WEAKEST_RSSI_DBM: Final = -100
"""An RSSI at or below this (or unknown) waits the longest before contending (dBm)."""
STRONGEST_RSSI_DBM: Final = -40
"""An RSSI at or above this contends at once (dBm): within a metre or two."""
MAX_CONTENTION_DELAY_S: Final = 1.5
"""The weakest signal's wait before contending (s): long against the few ms a ``create``
takes, short against a device reconnecting."""


def contention_delay_s(rssi_dbm: int | None) -> float:
    """How long to wait before contending for a free lease, seen at ``rssi_dbm`` (s)."""
    if rssi_dbm is None:
        return MAX_CONTENTION_DELAY_S
    span = STRONGEST_RSSI_DBM - WEAKEST_RSSI_DBM
    weakness = (
        STRONGEST_RSSI_DBM - min(max(rssi_dbm, WEAKEST_RSSI_DBM), STRONGEST_RSSI_DBM)
    ) / span
    return MAX_CONTENTION_DELAY_S * weakness


def lease_key(athlete: str, device: str) -> str:
    """The bucket key of ``athlete``'s ``device`` (both config ids: valid key tokens)."""
    return f"{athlete}.{device}"


@dataclass(frozen=True, slots=True)
class LeaseValue:
    """What a lease says: who holds it, the RSSI it was taken at (dBm), when (ns)."""

    gateway: str
    rssi: int | None
    t_ns: int

    def encode(self) -> bytes:
        """The JSON value stored under the key."""
        return json.dumps(
            {"gateway": self.gateway, "rssi": self.rssi, "t_ns": self.t_ns},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, value: bytes | None) -> LeaseValue | None:
        """The lease in ``value``; None for an empty or foreign value (treated as free)."""
        try:
            obj = json.loads(value or b"")
            return cls(str(obj["gateway"]), obj.get("rssi"), int(obj.get("t_ns", 0)))
        except (ValueError, KeyError, TypeError):
            return None


class LeaseLostError(Exception):
    """Another gateway holds the lease now; the message names it."""


class Lease:
    """One device's lease as this gateway sees it: acquire, renew, release."""

    def __init__(self, kv: KeyValue, gateway: str, athlete: str, device: str) -> None:
        self.kv = kv
        self.gateway = gateway
        self.athlete = athlete
        self.device = device
        self.key = lease_key(athlete, device)
        self.revision: int | None = None
        """The revision this gateway wrote last; None while it does not hold the lease."""

    @property
    def held(self) -> bool:
        """Whether this gateway holds the lease (as of its last write)."""
        return self.revision is not None

    def _value(self, rssi: int | None) -> bytes:
        return LeaseValue(self.gateway, rssi, time.time_ns()).encode()

    async def holder(self) -> str | None:
        """The gateway holding the key now, or None when it is free."""
        try:
            entry = await self.kv.get(self.key)
        except KeyNotFoundError:
            return None
        value = LeaseValue.decode(entry.value)
        return value.gateway if value is not None else None

    async def try_acquire(self, rssi: int | None = None) -> bool:
        """Take the lease if it is free or already ours; False when another gateway has it.

        Raises NATS errors when the server cannot be reached (the caller retries)."""
        try:
            self.revision = await self.kv.create(self.key, self._value(rssi))
            return True
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await self.kv.get(self.key)
        except KeyNotFoundError:
            return False  # it expired between the two calls: contend again next round
        value = LeaseValue.decode(entry.value)
        if value is not None and value.gateway != self.gateway:
            return False
        # Ours from before a restart (or unreadable): take it back at the revision seen.
        try:
            self.revision = await self.kv.update(self.key, self._value(rssi), last=entry.revision)
        except KeyWrongLastSequenceError:
            return False
        return True

    async def renew(self, rssi: int | None = None) -> None:
        """Renew the held lease; :class:`LeaseLostError` if another gateway took it."""
        if self.revision is None:
            raise LeaseLostError(f"{self.key}: not held by {self.gateway}")
        try:
            self.revision = await self.kv.update(self.key, self._value(rssi), last=self.revision)
        except KeyWrongLastSequenceError:
            self.revision = None
            holder = await self.holder()
            # Our own write whose reply was lost (a leader change): take it back.
            if holder == self.gateway and await self.try_acquire(rssi):
                return
            raise LeaseLostError(
                f"{self.key}: lease taken by {holder or 'nobody (expired)'}"
            ) from None

    async def release(self) -> None:
        """Give the lease up (deleted at the held revision); never raises."""
        revision, self.revision = self.revision, None
        if revision is None:
            return
        try:
            await self.kv.delete(self.key, last=revision)
        except (KeyWrongLastSequenceError, NatsError, TimeoutError) as exc:
            # Taken already, or NATS away: it expires with the TTL anyway.
            _LOGGER.debug("%s: release: %s", self.key, exc)
