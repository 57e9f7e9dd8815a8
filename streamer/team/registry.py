"""The club's central registry: athletes, their devices (the pairing) and thresholds in one
JetStream key-value bucket, which every gateway and worker reads and follows (issue 13,
Identity) instead of each Pi's file.

The bucket :data:`REGISTRY_BUCKET` holds

- ``athlete.<id>``: that athlete's ``[[athletes]]`` table as JSON — ``id``, ``name``,
  ``profile``, ``rules`` (its ``[athletes.rules]`` overrides) and ``devices`` (kind,
  address and/or name, model, id, role: the pairing registry) — read by
  :func:`streamer.config.parse_athlete`, the code that reads the file's, so there is one
  schema;
- ``rules``: the club's ``[rules]`` as JSON.

Writers are ``redox-streamer registry push`` (a whole club file, merged per device with
each athlete's entry: :func:`merge_devices`), ``registry pair`` and ``registry unpair``
(one device); every write of one athlete is conditional on the revision read, so the
server — not a protocol of ours — decides a race between two coaches or two machines
pushing their own pairings, and the loser reads, merges and writes again.
Readers follow the bucket (:func:`follow`): a :class:`RegistryView` once its entries are
read and after each change. An entry that does not validate is logged as one line naming
its key and the fix (:class:`RegistryEntryError`); its athlete keeps its last valid entry
in that process (none at a start), and the other athletes are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from nats.errors import Error as NatsError
from nats.js import api
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.errors import NotFoundError as StreamNotFoundError

from streamer.cancel import cancellation_kept
from streamer.config import (
    AthleteConfig,
    Config,
    ConfigError,
    DeviceConfig,
    athlete_data,
    id_problem,
    paired_device_id,
    parse_athlete,
    parse_rules,
)
from streamer.errors import StreamerError
from streamer.team import wire
from streamer.team.stream import REGISTRY_BUCKET as REGISTRY_BUCKET  # keys: athlete_key, RULES_KEY
from streamer.team.stream import until_answered

if TYPE_CHECKING:
    from nats.js import JetStreamContext
    from nats.js.kv import KeyValue

_LOGGER: Final = logging.getLogger(__name__)

ATHLETE_PREFIX: Final = "athlete."
RULES_KEY: Final = "rules"
"""The club's ``[rules]`` (an athlete id has no ``.``, so it never meets an athlete's key)."""
HISTORY: Final = 5
"""Revisions kept per key: the last few changes stay readable (``nats kv history``)."""
RETRY_S: Final = 2.0
"""While no registry exists yet, look for it again this often (s)."""
READ_S: Final = 30.0
"""How long reading every entry of the registry once may take (s): ``registry push``,
``show``, ``pair`` and ``unpair`` end with one line after it rather than wait for ever."""
WRITE_ATTEMPTS: Final = 5
"""A read-modify-write of one athlete retried this often when another writer came between."""
FIX: Final = "fix it in the club file and `redox-streamer registry push` it"


class CentralRegistryError(StreamerError):
    """The central registry cannot be read or written as asked; the message says what to do."""


class RegistryEntryError(CentralRegistryError):
    """One entry of the registry does not validate: one line naming its key and the fix."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"central registry {key!r}: {problem} — {FIX}")


def athlete_key(athlete_id: str) -> str:
    """The key of ``athlete_id``'s entry (athlete ids are valid key tokens)."""
    return f"{ATHLETE_PREFIX}{athlete_id}"


def encode_athlete(athlete: AthleteConfig) -> bytes:
    """``athlete``'s entry: its ``[[athletes]]`` table as JSON (stable: equal for equal)."""
    return json.dumps(athlete_data(athlete), sort_keys=True, separators=(",", ":")).encode()


def encode_rules(rules: Mapping[str, float | int]) -> bytes:
    """The club's ``[rules]`` entry."""
    return json.dumps(dict(rules), sort_keys=True, separators=(",", ":")).encode()


def _one_line(exc: ConfigError) -> str:
    return "; ".join(exc.problems)


def decode_rules(value: bytes) -> dict[str, float | int]:
    """The club's ``[rules]`` from its entry; :class:`RegistryEntryError` if invalid."""
    try:
        return parse_rules(json.loads(value), source=RULES_KEY)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RegistryEntryError(RULES_KEY, f"not JSON ({exc})") from None
    except ConfigError as exc:
        raise RegistryEntryError(RULES_KEY, _one_line(exc)) from None


def decode_athlete(
    key: str, value: bytes, rules: Mapping[str, float | int] | None = None
) -> AthleteConfig:
    """The athlete of entry ``key`` (validated under the club's ``rules``, and its id must
    be the key's); :class:`RegistryEntryError` naming the key and the problem."""
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise RegistryEntryError(key, f"not JSON ({exc})") from None
    try:
        athlete = parse_athlete(data, rules=rules, source=key)
    except ConfigError as exc:
        raise RegistryEntryError(key, _one_line(exc)) from None
    if athlete_key(athlete.id) != key:
        raise RegistryEntryError(
            key, f"holds athlete {athlete.id!r}, not {key[len(ATHLETE_PREFIX) :]!r}"
        )
    return athlete


@dataclass(frozen=True, slots=True)
class RegistryView:
    """The registry as one process uses it: the valid athletes, the club's rules, and the
    entries that did not validate."""

    athletes: tuple[AthleteConfig, ...] = ()
    rules: Mapping[str, float | int] = field(default_factory=dict)
    problems: tuple[RegistryEntryError, ...] = ()

    def config(self, local: Config) -> Config:
        """``local`` (the process's own file: NATS, MQTT, InfluxDB, store) with the
        registry's athletes and rules."""
        return replace(local, athletes=self.athletes, rules=dict(self.rules))

    def devices(self) -> dict[str, list[DeviceConfig]]:
        """The devices to forward per athlete (what a gateway runs)."""
        return {a.id: list(a.devices) for a in self.athletes if a.devices}


class _Reader:
    """Entries → views, each entry parsed once per (value, rules), keeping each athlete's
    last valid entry when a new one does not validate."""

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[bytes, bytes, AthleteConfig | RegistryEntryError]] = {}
        self._good: dict[str, AthleteConfig] = {}
        self._rules: dict[str, float | int] = {}
        self._said: dict[str, str] = {}

    def view(self, values: Mapping[str, bytes]) -> RegistryView:
        problems: list[RegistryEntryError] = []
        rules_value = values.get(RULES_KEY, b"{}")
        try:
            self._rules = decode_rules(rules_value)
        except RegistryEntryError as exc:
            problems.append(exc)  # the last valid rules stay
        athletes: list[AthleteConfig] = []
        for key in sorted(k for k in values if k.startswith(ATHLETE_PREFIX)):
            value = values[key]
            cached = self._parsed.get(key)
            if cached is not None and cached[0] == value and cached[1] == rules_value:
                outcome = cached[2]
            else:
                try:
                    outcome = decode_athlete(key, value, self._rules)
                except RegistryEntryError as exc:
                    outcome = exc
                self._parsed[key] = (value, rules_value, outcome)
            if isinstance(outcome, RegistryEntryError):
                problems.append(outcome)
                good = self._good.get(key)
                if good is not None:
                    athletes.append(good)
            else:
                self._good[key] = outcome
                athletes.append(outcome)
        for key in [k for k in self._parsed if k not in values]:
            del self._parsed[key]
            self._good.pop(key, None)
        self._log(problems)
        return RegistryView(tuple(athletes), dict(self._rules), tuple(problems))

    def _log(self, problems: Sequence[RegistryEntryError]) -> None:
        """Each problem once (a gateway sees every change of every athlete)."""
        now = {p.key: str(p) for p in problems}
        for key, text in now.items():
            if self._said.get(key) != text:
                kept = " (its last valid entry stays in use)" if key in self._good else ""
                _LOGGER.warning("%s%s", text, kept)
        for key in [k for k in self._said if k not in now]:
            _LOGGER.info("central registry %r: valid again", key)
        self._said = now


async def _stream_replicas(js: JetStreamContext) -> int:
    """The ``REDOX_RAW`` stream's replicas (1 when it does not exist yet)."""
    try:
        info = await js.stream_info(wire.STREAM)
    except StreamNotFoundError:
        return 1
    return info.config.num_replicas or 1


async def open_registry(
    js: JetStreamContext, *, create: bool = False, replicas: int | None = None
) -> KeyValue | None:
    """The registry's bucket; None when it does not exist and ``create`` is false.

    Created with ``replicas`` copies (default: as many as the ``REDOX_RAW`` stream has,
    else 1): only ``registry push`` creates it, so a gateway never makes a one-copy
    registry in a three-node club. One pushed while the stream had one copy follows it
    to three: every gateway's :func:`~streamer.team.stream.ensure_stream` raises it.
    """
    try:
        return await js.key_value(REGISTRY_BUCKET)
    except BucketNotFoundError:
        if not create:
            return None
    copies = replicas or await _stream_replicas(js)
    return await js.create_key_value(
        api.KeyValueConfig(
            bucket=REGISTRY_BUCKET,
            history=HISTORY,
            storage=api.StorageType.FILE,
            replicas=copies,
        )
    )


async def _last_revision(kv: KeyValue) -> int:
    """The bucket's last revision now (0: it holds no entry). A watcher has delivered every
    current entry once it passed this one, or once the server says none is pending after
    the one it delivers (:func:`_loaded`) — the end of the first load, told by the server.
    Not nats-py's end-of-values marker (``None``): it can come before values already on
    their way to the client (nats-io/nats.py#842), so a reader saw an empty registry right
    after a push."""
    state = (await kv.status()).stream_info.state
    return int(state.last_seq) if state.messages else 0


def _loaded(entry: KeyValue.Entry, last: int) -> bool:
    """Whether ``entry`` ends a watcher's first load up to revision ``last``: it is that
    revision or a later one, or the server counts nothing pending after it (``delta``) —
    the message at ``last`` may be gone (a ``purge_deletes`` or a compaction removes
    delete markers, the stream's last sequence stays), and a reader waiting for it waited
    for ever."""
    return (entry.revision or 0) >= last or entry.delta == 0


def _apply(entries: dict[str, tuple[bytes, int]], entry: KeyValue.Entry) -> None:
    """A watcher's ``entry`` applied to ``entries`` (key → value and revision): a delete or
    a purge removes its key."""
    if entry.operation in ("DEL", "PURGE"):
        entries.pop(entry.key, None)
    else:
        entries[entry.key] = (entry.value or b"", entry.revision or 0)


async def _watch(kv: KeyValue) -> AsyncGenerator[tuple[dict[str, tuple[bytes, int]], bool]]:
    """The bucket's live entries (key → value and revision) after each change a watcher
    delivers, with whether its first load is complete (:func:`_loaded`; it stays so) — at
    once for an empty bucket. Close it (``contextlib.aclosing``): the server's consumer
    goes then."""
    entries: dict[str, tuple[bytes, int]] = {}
    # Each NATS answer awaited in cancellation_kept(): a stop swallowed here would leave
    # the watcher below waiting for the registry's next change (no timeout of its own).
    with cancellation_kept():
        last = await _last_revision(kv)
    loaded = last == 0
    if loaded:
        yield entries, loaded
    with cancellation_kept():
        watcher = await kv.watchall()
    try:
        async for entry in watcher:
            if entry is None:  # nats-py's marker: maybe early (see _last_revision)
                continue
            _apply(entries, entry)
            loaded = loaded or _loaded(entry, last)
            yield entries, loaded
    finally:
        # Shielded from a cancellation that may be running: the server's consumer goes.
        await asyncio.shield(watcher.stop())  # type: ignore[no-untyped-call]


async def read_entries(kv: KeyValue, within_s: float = READ_S) -> dict[str, tuple[bytes, int]]:
    """Every live entry now: key → (value, revision). :class:`CentralRegistryError` when
    they are not all read within ``within_s`` s (NATS not answering)."""
    seen = 0
    try:
        async with asyncio.timeout(within_s), contextlib.aclosing(_watch(kv)) as changes:
            async for entries, loaded in changes:
                if loaded:
                    return dict(entries)
                seen = max((revision for _, revision in entries.values()), default=seen)
    except TimeoutError:  # nats-py's own timeouts are TimeoutErrors too
        pass
    raise CentralRegistryError(
        f"central registry {REGISTRY_BUCKET}: not read within {within_s:g} s (up to revision "
        f"{seen}); check that NATS answers (each node's /healthz) and try again"
    )


async def read_view(kv: KeyValue) -> RegistryView:
    """The registry now, as a process starting would use it."""
    entries = await read_entries(kv)
    return _Reader().view({k: v for k, (v, _) in entries.items()})


async def follow(js: JetStreamContext) -> AsyncIterator[RegistryView]:
    """Views of the registry until cancelled: one once its entries are read, then one after
    each change. While no registry exists an empty view comes first, and the bucket is
    looked for every :data:`RETRY_S` s."""
    with cancellation_kept():  # see _watch
        kv = await open_registry(js)
    if kv is None:
        _LOGGER.warning(
            "no central registry (bucket %s) yet: no athletes until one is pushed with "
            "`redox-streamer registry push --config club.toml --nats URL`",
            REGISTRY_BUCKET,
        )
        yield RegistryView()
        while kv is None:
            await asyncio.sleep(RETRY_S)
            try:
                with cancellation_kept():
                    kv = await open_registry(js)
            except (NatsError, OSError, TimeoutError) as exc:
                _LOGGER.debug("registry: %s", exc)
        _LOGGER.info("central registry %s found", REGISTRY_BUCKET)
    reader = _Reader()
    async with contextlib.aclosing(_watch(kv)) as changes:
        async for entries, loaded in changes:
            if loaded:
                yield reader.view({k: v for k, (v, _) in entries.items()})


@dataclass(slots=True)
class PushReport:
    """What ``registry push`` did, by athlete id (devices as ``"<athlete>.<device id>"``)."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    """In the registry, not in the file, left there (no ``--prune``)."""
    rules_written: bool = False
    devices_kept: list[str] = field(default_factory=list)
    """Devices in a pushed athlete's entry that the push did not name, left there (another
    machine's pairing, or one paired with ``registry pair``; no ``--prune``)."""
    devices_removed: list[str] = field(default_factory=list)
    """Such devices removed (``--prune``)."""
    devices_replaced: list[str] = field(default_factory=list)
    """Devices whose id the club file gives to another address now: the file's wins."""
    devices_renamed: list[str] = field(default_factory=list)
    """Devices whose id the club file gives to another address, kept under a new id
    because this machine's pairing names them (``"<athlete>.<old id>-><new id>"``)."""


@dataclass(frozen=True, slots=True)
class _Merged:
    devices: tuple[DeviceConfig, ...]
    kept: tuple[DeviceConfig, ...] = ()
    removed: tuple[DeviceConfig, ...] = ()
    replaced: tuple[DeviceConfig, ...] = ()
    renamed: tuple[tuple[DeviceConfig, DeviceConfig], ...] = ()
    """(as stored, as written) for each device that kept its address under a new id."""


def _address(device: DeviceConfig) -> str | None:
    return device.address.upper() if device.address else None


def _free_id(device: DeviceConfig, ids: set[str]) -> str:
    """``device``'s id, or the one ``run`` would give it beside ``ids``
    (:func:`streamer.config.paired_device_id`)."""
    return device.id if device.id not in ids else paired_device_id(device.kind, device.address, ids)


def merge_devices(
    filed: Sequence[DeviceConfig],
    paired: Sequence[DeviceConfig],
    current: Sequence[DeviceConfig],
    *,
    prune: bool = False,
) -> _Merged:
    """An athlete's devices after a push: the club file's (``filed``: they win on their id
    and address), then the registry's ``current`` ones the push does not name (another
    machine's local pairing, a ``registry pair``: kept, or removed with ``prune``), then
    those paired on the pushing machine (``paired``) that the entry lacks by address —
    renamed as ``run`` renames a second device of a kind when their id is taken. So a push
    merges per device: two machines pushing different local pairings both stay."""
    out = list(filed)
    ids = {d.id for d in out}
    addresses = {a for d in out if (a := _address(d)) is not None}
    paired_addresses = {a for d in paired if (a := _address(d)) is not None}
    kept: list[DeviceConfig] = []
    removed: list[DeviceConfig] = []
    replaced: list[DeviceConfig] = []
    taken: dict[str, DeviceConfig] = {}  # by address: stored devices whose id the file took
    for device in current:
        address = _address(device)
        if address is not None and address in addresses:
            continue  # the file's entry for this device wins
        if device.id in ids:
            if address is not None and address in paired_addresses:
                taken[address] = device  # …but this machine's pairing adds it back, renamed
            else:
                replaced.append(device)  # the file gives its id to another device
            continue
        if address is not None and address in paired_addresses:
            pass  # this machine's pairing names it too: the same device, as stored
        elif prune:
            removed.append(device)
            continue
        else:
            kept.append(device)
        out.append(device)
        ids.add(device.id)
        if address is not None:
            addresses.add(address)
    renamed: list[tuple[DeviceConfig, DeviceConfig]] = []
    for device in paired:
        address = _address(device)
        if address is not None and address in addresses:
            continue
        device = replace(device, id=_free_id(device, ids))
        out.append(device)
        ids.add(device.id)
        if address is not None:
            addresses.add(address)
            if (stored := taken.get(address)) is not None:
                renamed.append((stored, device))
    return _Merged(tuple(out), tuple(kept), tuple(removed), tuple(replaced), tuple(renamed))


async def _entry(kv: KeyValue, key: str) -> tuple[bytes, int] | None:
    """``key``'s value and revision now; None when it has none (never written, deleted)."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return None
    return entry.value or b"", entry.revision or 0


async def push(
    kv: KeyValue,
    config: Config,
    *,
    prune: bool = False,
    paired: Mapping[str, Sequence[DeviceConfig]] | None = None,
) -> PushReport:
    """Write ``config``'s ``[rules]`` and every athlete, merged per device with the entry in
    the registry (:func:`merge_devices`, with ``paired``: the devices paired on this machine
    per athlete) and written at the revision read — read again and merged again when
    another writer came between, so two machines pushing at once both keep their devices.
    Entries that are already equal are left alone (no change for the gateways to follow);
    ``prune`` deletes the athletes the file no longer names, and the devices it and this
    machine's pairing do not."""
    report = PushReport()
    current = await read_entries(kv)
    rules = encode_rules(config.rules)
    if current.get(RULES_KEY, (None, 0))[0] != rules:
        await until_answered(partial(kv.put, RULES_KEY, rules))
        report.rules_written = True
    wanted = {athlete_key(a.id): a for a in config.athletes}
    for key, athlete in wanted.items():
        entry = current.get(key)
        for _ in range(WRITE_ATTEMPTS):
            try:
                stored = None if entry is None else decode_athlete(key, entry[0])
            except RegistryEntryError:
                stored = None  # an invalid entry is replaced by the file's
            merged = merge_devices(
                athlete.devices,
                (paired or {}).get(athlete.id, ()),
                stored.devices if stored is not None else (),
                prune=prune,
            )
            value = encode_athlete(replace(athlete, devices=merged.devices))
            if entry is not None and entry[0] == value:
                report.unchanged.append(athlete.id)
                break
            try:
                if entry is None:
                    await until_answered(partial(kv.create, key, value))
                else:
                    await until_answered(partial(kv.update, key, value, last=entry[1]))
            except KeyWrongLastSequenceError:
                entry = await _entry(kv, key)  # another writer came between: merge again
                continue
            report.written.append(athlete.id)
            break
        else:
            raise CentralRegistryError(
                f"{key}: changed by another writer {WRITE_ATTEMPTS} times while this push "
                "tried; push again"
            )
        if entry is None or entry[0] != value:  # written: say what the merge did
            for devices, into in (
                (merged.kept, report.devices_kept),
                (merged.removed, report.devices_removed),
                (merged.replaced, report.devices_replaced),
            ):
                into.extend(f"{athlete.id}.{d.id}" for d in devices)
            report.devices_renamed.extend(
                f"{athlete.id}.{old.id}->{new.id}" for old, new in merged.renamed
            )
    for key in sorted(k for k in current if k.startswith(ATHLETE_PREFIX) and k not in wanted):
        athlete_id = key[len(ATHLETE_PREFIX) :]
        if prune:
            await until_answered(partial(kv.delete, key))
            report.removed.append(athlete_id)
        else:
            report.kept.append(athlete_id)
    return report


async def _change_athlete(kv: KeyValue, athlete_id: str, change: Any) -> AthleteConfig:
    """Read ``athlete_id``'s entry, apply ``change`` (data → data, raising
    :class:`CentralRegistryError` to refuse), validate, and write it at the revision read:
    retried when another writer came between."""
    if (problem := id_problem(athlete_id)) is not None:
        raise CentralRegistryError(f"--athlete: {problem}")
    key = athlete_key(athlete_id)
    for _ in range(WRITE_ATTEMPTS):
        entries = await read_entries(kv)
        if key not in entries:
            known = ", ".join(k[len(ATHLETE_PREFIX) :] for k in sorted(entries) if "." in k)
            raise CentralRegistryError(
                f"athlete {athlete_id!r} is not in the central registry (it holds: "
                f"{known or 'nobody'}) — add an [[athletes]] table for it to the club file "
                "and `redox-streamer registry push` it"
            )
        value, revision = entries[key]
        rules_value = entries.get(RULES_KEY, (b"{}", 0))[0]
        rules = decode_rules(rules_value)
        old = decode_athlete(key, value, rules)
        data = change(athlete_data(old), entries)
        try:
            athlete = parse_athlete(data, rules=rules, source=key)
        except ConfigError as exc:
            raise CentralRegistryError(f"{key}: {_one_line(exc)}") from None
        try:
            await kv.update(key, encode_athlete(athlete), last=revision)
        except KeyWrongLastSequenceError:
            continue  # another writer came between: read again
        return athlete
    raise CentralRegistryError(
        f"{key}: changed by another writer {WRITE_ATTEMPTS} times while this one tried; try again"
    )


def _address_owner(entries: Mapping[str, tuple[bytes, int]], address: str) -> str | None:
    """``athlete.device`` holding ``address`` in the registry, if any."""
    for key, (value, _) in entries.items():
        if not key.startswith(ATHLETE_PREFIX):
            continue
        try:
            devices = json.loads(value).get("devices", [])
        except (ValueError, AttributeError):
            continue
        for d in devices if isinstance(devices, list) else []:
            if isinstance(d, dict) and str(d.get("address", "")).upper() == address.upper():
                return f"{key[len(ATHLETE_PREFIX) :]}.{d.get('id')}"
    return None


async def pair(
    kv: KeyValue, athlete_id: str, device: Mapping[str, str], *, replace: bool = False
) -> DeviceConfig:
    """Add ``device`` (``[[athletes.devices]]`` keys: kind, address, name, model, id, role)
    to ``athlete_id``'s entry. An address this athlete has already is replaced only with
    ``replace``; one another athlete has is refused (unpair it there first: one athlete's
    entry changes at a time). Returns the device as stored."""
    address = device.get("address")

    def change(data: dict[str, Any], entries: Mapping[str, tuple[bytes, int]]) -> dict[str, Any]:
        devices = list(data.get("devices", []))
        if address:
            owner = _address_owner(entries, address)
            if owner is not None and not replace:
                raise CentralRegistryError(
                    f"{address} is already paired as {owner}; `registry unpair` it first "
                    "or add --replace"
                )
            if owner is not None and owner.split(".")[0] != athlete_id:
                raise CentralRegistryError(
                    f"{address} is paired to {owner}: `registry unpair --athlete "
                    f"{owner.split('.')[0]} {address}` first (one athlete's entry is "
                    "changed at a time)"
                )
            devices = [d for d in devices if str(d.get("address", "")).upper() != address.upper()]
        devices.append(dict(device))
        return {**data, "devices": devices}

    athlete = await _change_athlete(kv, athlete_id, change)
    return athlete.devices[-1]


async def unpair(kv: KeyValue, athlete_id: str, which: str) -> DeviceConfig:
    """Remove ``athlete_id``'s device whose id or address is ``which``; the device as it was.
    The gateway holding its lease stops it and releases the lease."""
    gone: list[DeviceConfig] = []

    def change(data: dict[str, Any], _entries: Mapping[str, tuple[bytes, int]]) -> dict[str, Any]:
        devices = parse_athlete(data).devices
        match = [d for d in devices if which == d.id or which.upper() == (d.address or "").upper()]
        if not match:
            have = ", ".join(f"{d.id} ({d.address or d.name})" for d in devices)
            raise CentralRegistryError(
                f"athlete {athlete_id!r} has no device {which!r} in the central registry "
                f"(it has: {have or 'none'}) — give a device id or address from "
                "`redox-streamer registry show`"
            )
        gone[:] = match[:1]
        kept = [d for d in data.get("devices", []) if d.get("id") != match[0].id]
        return {**data, "devices": kept}

    await _change_athlete(kv, athlete_id, change)
    return gone[0]
