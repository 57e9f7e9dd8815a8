"""What the parts of the emulated link share: bleak's names for Bumble values, and the
central as the bleak backend sees it.

The world (:mod:`devices.emulated.world`) builds the backend's keyword arguments and the
backend (:mod:`devices.emulated.backend`) calls back into the world; the peripherals
(:mod:`devices.emulated.peripheral`) name their characteristics as bleak does. Each of
them imports this module and none of them imports another one back: the backend knows the
world only as an :class:`EmulatedCentral`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bleak.uuids import normalize_uuid_str
from bumble import core
from bumble.device import Advertisement, Connection, Device
from bumble.hci import Address

AdvertisementListener = Callable[[Advertisement], None]
"""Called with every advertisement (and scan response) the central receives."""


def address_key(address: Address) -> str:
    """The bleak-style address string of a Bumble address: ``"C0:00:00:00:00:01"``."""
    return str(address.to_string(with_type_qualifier=False))


def bleak_uuid(uuid: core.UUID) -> str:
    """A Bumble UUID in bleak's form: 128-bit, lower case (``0000180d-0000-1000-…``)."""
    return normalize_uuid_str(uuid.to_hex_str("-"))


class EmulatedCentral(Protocol):
    """The central a :class:`~devices.emulated.backend.BumbleClient` or
    :class:`~devices.emulated.backend.BumbleScanner` works through (an
    :class:`~devices.emulated.world.EmulatedWorld`).

    Attributes:
        mtu: ATT MTU (bytes) a client requests after connecting, unless told otherwise.
    """

    mtu: int

    @property
    def central(self) -> Device:
        """The Bumble central shared by every scanner and client (its keystore pairs)."""
        ...

    async def start_scan(self, token: object, listener: AdvertisementListener) -> None:
        """Deliver every advertisement to ``listener`` until :meth:`stop_scan` (token)."""
        ...

    async def stop_scan(self, token: object) -> None:
        """Stop delivering advertisements to the listener registered under ``token``."""
        ...

    async def find_address(self, address: str, *, within_s: float) -> Address | None:
        """Scan up to ``within_s`` (real) seconds for an advertiser with this address."""
        ...

    async def connect(self, address: Address, *, connect_timeout_s: float) -> Connection:
        """Open an LE connection to ``address`` within ``connect_timeout_s`` real seconds."""
        ...
