"""The paired-devices registry: which Bluetooth address belongs to which athlete, as what.

Stored as a small TOML file a person can read and edit, by default
``<user config dir>/redox-streamer/devices.toml`` (platformdirs)::

    # redox-streamer paired devices
    version = 1

    [[device]]
    address = "A0:9E:1A:12:34:56"
    athlete = "anna"
    kind = "strap"
    name = "Polar H10 12345678"
    role = ""

``address`` is the Bluetooth address as bleak reports it (a MAC on Linux and Windows, a
per-host UUID on macOS). ``role`` is free text for where the device sits when the kind
alone does not say (e.g. "left vastus lateralis" for a Moxy). An optional ``model`` says
which product of the kind it is (``model = "activ5"``; names in
:data:`devices.models.MODELS`); without it the name says, else the device tells when it
is first seen.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from platformdirs import user_config_dir

from devices.errors import DeviceError
from devices.kinds import DeviceKind
from devices.models import DeviceModel, candidate_models

REGISTRY_VERSION: Final = 1
REGISTRY_FILENAME: Final = "devices.toml"

_MAC = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_UUID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")


class RegistryError(DeviceError):
    """The registry file or a change to it is invalid; the message says what and where."""


def default_registry_path() -> Path:
    """``devices.toml`` in the user's config directory for redox-streamer."""
    return Path(user_config_dir("redox-streamer")) / REGISTRY_FILENAME


def normalize_address(address: str) -> str:
    """The canonical spelling of a Bluetooth address (upper case), or ``RegistryError``.

    Accepts a MAC (``AA:BB:CC:DD:EE:FF``, ``-`` separators too) or a macOS per-host UUID.
    """
    text = address.strip().upper()
    if _UUID.match(text):
        return text
    mac = text.replace("-", ":")
    if _MAC.match(mac):
        return mac
    raise RegistryError(
        f"{address!r} is not a Bluetooth address; expected a MAC like AA:BB:CC:DD:EE:FF "
        "(or a macOS device UUID) as shown by `redox-streamer scan`"
    )


@dataclass(frozen=True, slots=True)
class PairedDevice:
    """One registry entry: the device at ``address`` is ``athlete``'s ``kind`` device
    (``model``: which product of the kind, ``""`` when its name or the device says)."""

    address: str
    athlete: str
    kind: DeviceKind
    name: str = ""
    role: str = ""
    model: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", normalize_address(self.address))
        if not self.athlete.strip():
            raise RegistryError(f"device {self.address}: the athlete name is empty")
        try:
            models = self.device_models
        except ValueError as exc:
            raise RegistryError(f"device {self.address}: {exc}") from None
        if self.model:
            object.__setattr__(self, "model", models[0].name)

    @property
    def device_models(self) -> tuple[DeviceModel, ...]:
        """The models it may be (:func:`devices.models.candidate_models`)."""
        return candidate_models(self.kind, model=self.model or None, name=self.name or None)


class DeviceRegistry:
    """Paired devices keyed by address, loaded from and saved to one TOML file.

    Changes stay in memory until :meth:`save`.
    """

    def __init__(self, path: Path, devices: Iterable[PairedDevice] = ()) -> None:
        self.path = path
        self._devices: dict[str, PairedDevice] = {}
        for device in devices:
            self.add(device)

    @classmethod
    def load(cls, path: Path | None = None) -> DeviceRegistry:
        """The registry stored at ``path`` (default :func:`default_registry_path`).

        A missing file is an empty registry; an unreadable or invalid one raises
        ``RegistryError`` naming the file and the problem.
        """
        path = path if path is not None else default_registry_path()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            raise RegistryError(f"cannot read the device registry {path}: {exc}") from exc
        except UnicodeDecodeError:
            raise RegistryError(
                f"{path} is not UTF-8 text, so not a device registry; pass the right "
                "--registry, or remove it and pair again"
            ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RegistryError(
                f"{path} is not valid TOML ({exc}); fix it or remove it and pair again"
            ) from exc
        version = data.get("version", REGISTRY_VERSION)
        if version != REGISTRY_VERSION:
            raise RegistryError(
                f"{path}: registry version {version!r} is not supported "
                f"(this redox-streamer reads version {REGISTRY_VERSION})"
            )
        entries = data.get("device", [])
        if not isinstance(entries, list):
            raise RegistryError(f"{path}: 'device' must be an array of tables ([[device]])")
        registry = cls(path)
        for number, entry in enumerate(entries, start=1):
            registry.add(_entry_to_device(entry, path, number))
        return registry

    def save(self) -> None:
        """Write the registry to :attr:`path` atomically (a crash never leaves half a file)."""
        lines = ["# redox-streamer paired devices", f"version = {REGISTRY_VERSION}"]
        for device in self:
            lines += [
                "",
                "[[device]]",
                f"address = {_toml_string(device.address)}",
                f"athlete = {_toml_string(device.athlete)}",
                f"kind = {_toml_string(device.kind.value)}",
                f"name = {_toml_string(device.name)}",
                f"role = {_toml_string(device.role)}",
            ]
            if device.model:
                lines.append(f"model = {_toml_string(device.model)}")
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            raise RegistryError(f"cannot write the device registry {self.path}: {exc}") from exc

    def add(self, device: PairedDevice, *, replace: bool = False) -> None:
        """Register ``device``; an address already registered needs ``replace=True``."""
        existing = self._devices.get(device.address)
        if existing is not None and not replace:
            raise RegistryError(
                f"{device.address} is already paired to {existing.athlete} as "
                f"{existing.kind.value}; remove it first or replace it"
            )
        self._devices[device.address] = device

    def remove(self, address: str) -> PairedDevice:
        """Forget the device at ``address`` and return its entry."""
        key = normalize_address(address)
        try:
            return self._devices.pop(key)
        except KeyError:
            raise RegistryError(
                f"{key} is not in the device registry {self.path}; "
                f"paired: {', '.join(self._devices) or 'none'}"
            ) from None

    def get(self, address: str) -> PairedDevice | None:
        """The entry for ``address``, or ``None`` when it is not paired."""
        return self._devices.get(normalize_address(address))

    def for_athlete(self, athlete: str) -> list[PairedDevice]:
        """Every device paired to ``athlete``, in address order."""
        return [d for d in self if d.athlete == athlete]

    def __iter__(self) -> Iterator[PairedDevice]:
        return iter(sorted(self._devices.values(), key=lambda d: d.address))

    def __len__(self) -> int:
        return len(self._devices)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        try:
            return normalize_address(address) in self._devices
        except RegistryError:
            return False


def _entry_to_device(entry: object, path: Path, number: int) -> PairedDevice:
    where = f"{path}, device #{number}"
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: expected a table with address, athlete and kind")
    missing = [key for key in ("address", "athlete", "kind") if key not in entry]
    if missing:
        raise RegistryError(f"{where}: missing {', '.join(missing)}")
    keys = ("address", "athlete", "kind", "name", "role", "model")
    fields = {key: entry.get(key, "") for key in keys}
    wrong = [key for key, value in fields.items() if not isinstance(value, str)]
    if wrong:
        raise RegistryError(f"{where}: {', '.join(wrong)} must be text")
    try:
        kind = DeviceKind.parse(fields["kind"])
    except ValueError as exc:
        raise RegistryError(f"{where}: {exc}") from None
    try:
        return PairedDevice(
            address=fields["address"],
            athlete=fields["athlete"],
            kind=kind,
            name=fields["name"],
            role=fields["role"],
            model=fields["model"],
        )
    except RegistryError as exc:
        raise RegistryError(f"{where}: {exc}") from None


def _toml_string(text: str) -> str:
    # A JSON string is a TOML basic string except that TOML also forbids a raw DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
