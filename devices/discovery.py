"""Finding devices: scan advertisements, merge them per address, classify what each is.

The scanner is ``bleak.BleakScanner``; pass ``scanner_kwargs`` (e.g. the emulated world's
``backend=…``) to scan something other than the real radio — the code path is the same.
Classification (:func:`devices.models.identify`) trusts advertised service UUIDs first and
falls back to the advertised name (many straps and meters advertise only a name, or only
some services, until connected); both come from :data:`devices.models.MODELS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
    BleakError,
)
from bleak.uuids import normalize_uuid_str

from devices.errors import DeviceError, DeviceUnavailableError
from devices.kinds import DeviceKind
from devices.models import MODELS, DeviceModel, identify

SERVICE_KINDS: Final[tuple[tuple[str, DeviceKind], ...]] = tuple(
    (uuid, model.kind) for model in MODELS for uuid in model.services
)
"""Advertised service UUID (bleak's 128-bit form) → kind, most specific first (from
:data:`devices.models.MODELS`)."""

NAME_KINDS: Final[tuple[tuple[re.Pattern[str], DeviceKind], ...]] = tuple(
    (model.name_pattern, model.kind) for model in MODELS
)
"""Advertised-name patterns → kind, for devices that do not advertise their services (from
:data:`devices.models.MODELS`)."""


class BluetoothUnavailableError(DeviceUnavailableError):
    """No usable Bluetooth adapter: missing, powered off, blocked, or no BlueZ/D-Bus.

    The message says what the operating system reported and what to check.
    """


class DeviceNotSeenError(DeviceUnavailableError):
    """A device did not advertise within the time allowed (it may be asleep or away)."""


class ModelUnknownError(DeviceError):
    """A device offers the services of none of the models it was configured as: no driver
    can stream it (the message names the address, the models and the fix)."""


@dataclass(frozen=True, slots=True)
class FoundDevice:
    """One device seen while scanning.

    ``rssi`` is the latest received signal strength in dBm (``None`` if the backend gave
    none); ``services`` are the advertised service UUIDs in bleak's 128-bit lower-case
    form, sorted. ``model`` is the product family it was identified as (``None`` for an
    unknown device); give it to :func:`devices.drivers.driver_for`. ``ble_device`` is
    bleak's handle, ready to give to a driver.
    """

    address: str
    name: str | None
    kind: DeviceKind
    rssi: int | None
    services: tuple[str, ...]
    ble_device: BLEDevice | None = field(default=None, compare=False, repr=False, hash=False)
    model: DeviceModel | None = field(default=None, compare=False)


def classify(name: str | None, services: Iterable[str]) -> DeviceKind:
    """The kind of a device from its advertised services, else its name."""
    model = identify(name, services)
    return DeviceKind.UNKNOWN if model is None else model.kind


class _Sightings:
    """Advertisements merged per address: an advertisement and its scan response arrive
    separately (one may carry the name, the other the services)."""

    def __init__(self) -> None:
        self.devices: dict[str, BLEDevice] = {}
        self.names: dict[str, str | None] = {}
        self.rssi: dict[str, int | None] = {}
        self.services: dict[str, set[str]] = {}

    def add(self, device: BLEDevice, adv: AdvertisementData) -> str:
        key = device.address.upper()
        self.devices[key] = device
        name = adv.local_name or device.name
        if name or key not in self.names:
            self.names[key] = name
        self.rssi[key] = adv.rssi
        self.services.setdefault(key, set()).update(
            normalize_uuid_str(u) for u in adv.service_uuids
        )
        return key

    def found(self, key: str) -> FoundDevice:
        name, services = self.names[key], self.services[key]
        device = self.devices[key]
        model = identify(name, services)
        return FoundDevice(
            address=device.address,
            name=name,
            kind=DeviceKind.UNKNOWN if model is None else model.kind,
            rssi=self.rssi[key],
            services=tuple(sorted(services)),
            ble_device=device,
            model=model,
        )


_KIND_ORDER: Final = {kind: number for number, kind in enumerate(DeviceKind)}


async def discover(
    timeout_s: float = 5.0,
    *,
    scanner_kwargs: Mapping[str, Any] | None = None,
    kinds: Collection[DeviceKind] | None = None,
) -> list[FoundDevice]:
    """Scan for ``timeout_s`` seconds and return each device seen once.

    Sorted by kind, then strongest signal first. ``kinds`` keeps only those kinds.
    Raises :class:`BluetoothUnavailableError` when there is no usable adapter.
    """
    sightings = _Sightings()

    def on_advertisement(device: BLEDevice, adv: AdvertisementData) -> None:
        sightings.add(device, adv)

    await _scan_until(asyncio.Event(), timeout_s, on_advertisement, scanner_kwargs)
    found = [sightings.found(key) for key in sightings.devices]
    if kinds is not None:
        found = [f for f in found if f.kind in kinds]
    return sorted(found, key=lambda f: (_KIND_ORDER[f.kind], -(f.rssi or -999), f.address))


async def find_device(
    address: str,
    timeout_s: float = 10.0,
    *,
    scanner_kwargs: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> FoundDevice | None:
    """Scan until the device at ``address`` (any case) — or, with ``name``, the first one
    advertising exactly that name — advertises, or ``timeout_s`` passes.

    Returns ``None`` when it was not seen. Raises :class:`BluetoothUnavailableError`
    when there is no usable adapter.
    """
    wanted = address.strip().upper()
    sightings = _Sightings()
    seen = asyncio.Event()
    hit: list[str] = []

    def on_advertisement(device: BLEDevice, adv: AdvertisementData) -> None:
        key = sightings.add(device, adv)
        if (wanted and key == wanted) or (name is not None and sightings.names[key] == name):
            hit.append(key)
            seen.set()

    await _scan_until(seen, timeout_s, on_advertisement, scanner_kwargs)
    return sightings.found(hit[0]) if hit else None


def _either(models: Sequence[DeviceModel]) -> str:
    names = [m.name for m in models]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


async def identify_model(
    address: str,
    candidates: Sequence[DeviceModel],
    *,
    timeout_s: float = 10.0,
    scanner_kwargs: Mapping[str, Any] | None = None,
    client_kwargs: Mapping[str, Any] | None = None,
) -> tuple[DeviceModel, BLEDevice]:
    """Which of ``candidates`` the device at ``address`` is, and bleak's handle to it.

    Its advertisement decides when it can (advertised services, then name, as
    :func:`devices.models.identify`); else one connection reads its GATT services (many
    devices advertise only some services, or only a name). ``timeout_s`` (seconds) bounds
    the scan and, again, the connection.

    Raises :class:`DeviceNotSeenError` when it does not advertise within ``timeout_s`` and
    ``DeviceUnavailableError`` when the connection fails (both: try again later),
    :class:`ModelUnknownError` when its services match none of ``candidates``, and
    :class:`BluetoothUnavailableError` without a usable adapter.
    """
    if not candidates:
        raise ValueError("identify_model needs at least one candidate model")
    kind = candidates[0].kind.value
    found = await find_device(address, timeout_s, scanner_kwargs=scanner_kwargs)
    if found is None or found.ble_device is None:
        raise DeviceNotSeenError(
            f"{kind} device {address} was not seen advertising within {timeout_s:g} s, so "
            f"whether it is a {_either(candidates)} is not known yet — wake it (squeeze it) "
            "and keep it in range"
        )
    model = identify(found.name, found.services, among=candidates)
    if model is not None:
        return model, found.ble_device
    try:
        async with asyncio.timeout(timeout_s):
            async with BleakClient(found.ble_device, **dict(client_kwargs or {})) as client:
                services = [service.uuid for service in client.services]
    except (BleakError, TimeoutError, OSError) as exc:
        raise DeviceUnavailableError(
            f"{kind} device {address}: reading its services to tell whether it is a "
            f"{_either(candidates)} failed ({type(exc).__name__}: {exc})"
        ) from exc
    model = identify(None, services, among=candidates)
    if model is None:
        raise ModelUnknownError(
            f"{kind} device {address} ({found.name or 'no name'}) offers the services of "
            f"none of {', '.join(m.name for m in candidates)}; check the address with "
            f'`redox-streamer scan`, or set model = "{candidates[0].name}" if it is one'
        )
    return model, found.ble_device


async def _scan_until(
    done: asyncio.Event,
    timeout_s: float,
    callback: AdvertisementDataCallback,
    scanner_kwargs: Mapping[str, Any] | None,
) -> None:
    try:
        async with BleakScanner(detection_callback=callback, **dict(scanner_kwargs or {})):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout_s)
    except (BleakError, OSError) as exc:
        raise BluetoothUnavailableError(explain_adapter_error(exc)) from exc


_NOT_RUNNING: Final = "org.freedesktop.DBus.Error.ServiceUnknown"
_DENIED: Final = frozenset(
    {
        "org.freedesktop.DBus.Error.AccessDenied",
        "org.bluez.Error.NotAuthorized",
        "org.bluez.Error.NotPermitted",
    }
)
_NOT_READY: Final = "org.bluez.Error.NotReady"

FIX_NO_ADAPTER: Final = (
    "plug in a Bluetooth LE adapter (a USB dongle) or enable the built-in one; "
    "`bluetoothctl list` shows what BlueZ sees"
)
FIX_POWERED_OFF: Final = "`bluetoothctl power on` (and `rfkill unblock bluetooth` if it is blocked)"
FIX_DENIED: Final = (
    "run as a user in the `bluetooth` group (`sudo usermod -aG bluetooth $USER`, then log in "
    "again) or allow it in the D-Bus policy of org.bluez"
)
FIX_NO_BLUEZ: Final = (
    "start BlueZ (`sudo systemctl enable --now bluetooth`) and check the adapter with "
    "`bluetoothctl show`"
)
FIX_NO_DBUS: Final = (
    "start D-Bus and BlueZ (`sudo systemctl enable --now dbus bluetooth`; in a container, "
    "mount the host's /run/dbus), then check the adapter with `bluetoothctl show`"
)


def adapter_problem(exc: BaseException) -> str | None:
    """What an exception from bleak says about the *adapter*, as one line with the fix;
    None when it is about a device (not in range, refused the connection, ...).

    Mapped: bleak's ``BleakBluetoothNotAvailableError`` by its ``reason`` (no adapter,
    no LE central role, powered off, permission denied); BlueZ over D-Bus as bleak raises
    it — ``BleakDBusError`` ``ServiceUnknown`` (bluetoothd not running), ``AccessDenied``
    / ``NotAuthorized`` / ``NotPermitted`` (permission), ``NotReady`` (powered off or
    blocked); and the OS errors of connecting to the D-Bus system bus itself
    (``FileNotFoundError``: no socket — what bleak raises on a machine without
    BlueZ or D-Bus, ``ConnectionRefusedError``, ``PermissionError``).
    """
    if isinstance(exc, BluetoothUnavailableError):
        return str(exc)
    reported = _reported(exc)
    if isinstance(exc, BleakBluetoothNotAvailableError):
        reason = exc.reason
        if reason is BleakBluetoothNotAvailableReason.NO_BLUETOOTH:
            cause, fix = "no Bluetooth adapter", FIX_NO_ADAPTER
        elif reason is BleakBluetoothNotAvailableReason.NO_BLE_CENTRAL_ROLE:
            cause = "the Bluetooth adapter cannot act as an LE central"
            fix = "use a Bluetooth 4.0+ LE adapter (a USB dongle)"
        elif reason is BleakBluetoothNotAvailableReason.POWERED_OFF:
            cause, fix = "the Bluetooth adapter is powered off", FIX_POWERED_OFF
        elif reason in (
            BleakBluetoothNotAvailableReason.DENIED_BY_USER,
            BleakBluetoothNotAvailableReason.DENIED_BY_SYSTEM,
            BleakBluetoothNotAvailableReason.DENIED_BY_UNKNOWN,
        ):
            cause, fix = "permission to use Bluetooth denied", FIX_DENIED
        else:
            cause, fix = "Bluetooth is not available", f"{FIX_POWERED_OFF}; {FIX_NO_ADAPTER}"
    elif isinstance(exc, BleakDBusError):
        name = exc.dbus_error
        if name == _NOT_RUNNING:
            cause, fix = "BlueZ (bluetoothd) is not running", FIX_NO_BLUEZ
        elif name in _DENIED:
            cause, fix = "permission denied by BlueZ / D-Bus", FIX_DENIED
        elif name == _NOT_READY:
            cause, fix = "the Bluetooth adapter is not ready (powered off?)", FIX_POWERED_OFF
        else:
            return None
    elif isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        cause, fix = "no D-Bus system bus, so no BlueZ", FIX_NO_DBUS
    elif isinstance(exc, PermissionError):
        cause, fix = "permission denied on the D-Bus system bus", FIX_DENIED
    else:
        return None
    return f"no usable Bluetooth adapter: {cause} ({reported}) — {fix}"


def _reported(exc: BaseException) -> str:
    """``Type: message`` as bleak or the OS said it (bleak's reason enum left out)."""
    text = exc.args[0] if isinstance(exc, BleakBluetoothNotAvailableError) else str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def explain_adapter_error(exc: BaseException) -> str:
    """A one-line explanation of a scan failure and what to check (no CLI flags named)."""
    problem = adapter_problem(exc)
    if problem is not None:
        return problem
    reported = _reported(exc)
    return (
        f"no usable Bluetooth adapter: it refused to scan ({reported}) — check it with "
        "`bluetoothctl show` / `bluetoothctl power on` / `rfkill unblock bluetooth`"
    )
