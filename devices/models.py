"""Every device model the streamer can stream, in one table: :data:`MODELS`.

A *model* is a concrete product family (a chest strap speaking the Heart Rate service, a
Moxy, a Tindeq Progressor, an Activ5, a Cycling Power meter, a PLX pulse oximeter); it
belongs to a *kind* (:class:`~devices.kinds.DeviceKind`: what it is for). Everything else
that depends on the model is derived from its row here:

* discovery — which advertised services and names identify it
  (:func:`devices.discovery.classify`);
* the driver — which characteristics it subscribes to and how they are decoded
  (:attr:`DeviceModel.streams`, names in :data:`devices.codecs.CODECS`), the driver class
  (:func:`devices.drivers.driver_for`) and its reconnection policy;
* the emulator that stands in for it on the virtual link (``run --emulated``, ``scan
  --emulated``, the tests);
* what records it yields, and so which kinds ``config check`` accepts
  (:data:`STREAMABLE_KINDS`).

Adding a model of a known kind is one row and its emulator (a driver class only when the
device must be told to stream; :class:`~devices.drivers.notify.NotifyDriver` serves the
rest). A new kind adds its :class:`~devices.kinds.DeviceKind` member and what the streamer
publishes of its records (live kind in :mod:`streamer.results`, measurement in
:mod:`streamer.sinks.influx_schema`, docs/topics.md and docs/influx-schema.md).

Driver and emulator classes are named by import path and loaded when first asked for: the
drivers import discovery, which classifies from this table (a cycle otherwise), and the
emulators pull in Bumble, which a real-radio run never needs.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from devices import gatt
from devices.kinds import DeviceKind
from devices.policy import ConnectionPolicy
from devices.records import ForceSample, HeartRateSample, PowerSample, SmO2Sample, SpO2Sample

_NO_OPTIONS: Final[Mapping[str, object]] = MappingProxyType({})


# Identity equality: each model is one row of the table, and a mapping field is unhashable.
@dataclass(frozen=True, slots=True, eq=False)
class DeviceModel:
    """One product family: how to recognise it, drive it, emulate it, and what it yields.

    Attributes:
        name: the model's id (``config``'s ``model = "…"``, logs), lower-case.
        title: a human name for listings.
        kind: what the device is for.
        services: advertised service UUIDs (bleak's 128-bit form) that identify it.
        name_pattern: advertised names that identify it when it advertises no service.
        streams: short names of the notify characteristics the driver subscribes to
            (keys of :data:`devices.codecs.CODECS`).
        records: the measured record types its driver emits (battery and gap records
            come from every driver and are not listed).
        policy: connect timeout, backoff, watchdog (``stale_after_s``, seconds).
        driver: ``"module:Class"`` of its :class:`~devices.drivers.base.DeviceDriver`
            (:func:`devices.drivers.driver_class` imports it).
        emulator: ``"module:Class"`` of its
            :class:`~devices.emulated.peripheral.EmulatedPeripheral`
            (:func:`devices.emulated.emulator_class` imports it).
        emulated_name: the name its emulator advertises when nothing else is asked for.
        driver_options: keyword arguments :func:`devices.drivers.driver_for` gives the
            driver so that it streams on its own (a Progressor streams only when told).
    """

    name: str
    title: str
    kind: DeviceKind
    services: tuple[str, ...]
    name_pattern: re.Pattern[str]
    streams: tuple[str, ...]
    records: tuple[type, ...]
    policy: ConnectionPolicy
    driver: str
    emulator: str
    emulated_name: str
    driver_options: Mapping[str, object] = field(default_factory=lambda: _NO_OPTIONS)

    def __post_init__(self) -> None:
        if self.kind is DeviceKind.UNKNOWN:
            raise ValueError(f"model {self.name!r}: a model belongs to a known kind")
        object.__setattr__(self, "services", tuple(gatt.normalize_uuid(u) for u in self.services))
        missing = [c for c in self.streams if c not in gatt.CHARACTERISTICS]
        if missing or not self.streams:
            raise ValueError(f"model {self.name!r}: unknown characteristics {missing}")
        object.__setattr__(self, "driver_options", MappingProxyType(dict(self.driver_options)))


def load_class(path: str) -> object:
    """The object named by ``"module:attribute"`` (imported now). The table names drivers and
    emulators this way so that ``devices.models`` imports neither: both import it."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _names(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


# Most specific first: classification takes the first row whose service is advertised (a
# vendor service says more than a standard one: a Moxy may also offer the Heart Rate
# service), else the first whose name pattern matches. The first row of a kind is the
# kind's default model.
# Watchdog limits are a few notification periods: long enough to ride out a missed packet
# or two, short enough that a dead link is noticed before the athlete is.
MODELS: Final[tuple[DeviceModel, ...]] = (
    DeviceModel(
        name="moxy",
        title="Moxy muscle-oxygen sensor",
        kind=DeviceKind.SMO2,
        services=(gatt.MOXY_SERVICE,),
        name_pattern=_names(r"moxy"),
        streams=("moxy",),
        records=(SmO2Sample,),
        # A Moxy notifies every couple of seconds (2 s in the emulator): 5 missed.
        policy=ConnectionPolicy(stale_after_s=10.0),
        driver="devices.drivers.moxy:MoxyDriver",
        emulator="devices.emulated.moxy:MoxySensor",
        emulated_name="Moxy EMU1",
    ),
    DeviceModel(
        name="tindeq",
        title="Tindeq Progressor",
        kind=DeviceKind.GRIP,
        services=(gatt.TINDEQ_SERVICE,),
        # "grip" alone names no product: the Progressor is the kind's default.
        name_pattern=_names(r"progressor|tindeq|\bgrip"),
        streams=("tindeq",),
        records=(ForceSample,),
        # ~80 Hz, but only between "start" and "stop": the driver arms its watchdog
        # only while it has asked for a stream.
        policy=ConnectionPolicy(stale_after_s=2.0),
        driver="devices.drivers.tindeq:TindeqDriver",
        emulator="devices.emulated.tindeq:TindeqProgressor",
        emulated_name="Progressor_EMU1",
        driver_options={"stream": True},
    ),
    DeviceModel(
        name="activ5",
        title="Activ5 isometric force sensor",
        kind=DeviceKind.GRIP,
        services=(gatt.ACTIV5_SERVICE,),
        name_pattern=_names(r"activ5"),
        streams=("activ5",),
        records=(ForceSample,),
        # It notifies ~10 Hz whenever connected: 20 missed readings.
        policy=ConnectionPolicy(stale_after_s=2.0),
        driver="devices.drivers.notify:NotifyDriver",
        emulator="devices.emulated.activ5:Activ5Sensor",
        emulated_name="ACTIV5-EMU1",
    ),
    DeviceModel(
        name="pulse_oximeter",
        title="Pulse oximeter (PLX service 0x1822)",
        kind=DeviceKind.SPO2,
        services=(gatt.PULSE_OXIMETER_SERVICE,),
        name_pattern=_names(r"oximeter|spo2|o2ring|checkme|nonin"),
        streams=("2a5f",),
        records=(SpO2Sample,),
        # PLX continuous measurements come ~1/s: 5 missed.
        policy=ConnectionPolicy(stale_after_s=5.0),
        driver="devices.drivers.notify:NotifyDriver",
        emulator="devices.emulated.oximeter:PulseOximeter",
        emulated_name="Oximeter EMU1",
    ),
    DeviceModel(
        name="cycling_power",
        title="Power meter (Cycling Power service 0x1818)",
        kind=DeviceKind.POWER,
        services=(gatt.CYCLING_POWER_SERVICE,),
        name_pattern=_names(r"assioma|4iiii|stages|favero|quarq|powertap|power ?meter"),
        streams=("2a63",),
        records=(PowerSample,),
        # ~1/s while the cranks turn; many fall silent when they stop, so the limit is
        # loose (a reconnect of a sleeping meter is harmless).
        policy=ConnectionPolicy(stale_after_s=10.0),
        driver="devices.drivers.power:PowerMeterDriver",
        emulator="devices.emulated.power:PowerMeter",
        emulated_name="Power EMU1",
    ),
    DeviceModel(
        name="heart_rate",
        title="Heart-rate strap (Heart Rate service 0x180D)",
        kind=DeviceKind.STRAP,
        services=(gatt.HEART_RATE_SERVICE,),
        name_pattern=_names(r"polar h\d|\bh(7|9|10)\b|\bhrm|tickr|heart ?rate|coospo"),
        streams=("2a37",),
        records=(HeartRateSample,),
        # Straps notify ~1/s (Polar H10, Garmin HRM): 5 missed notifications.
        policy=ConnectionPolicy(stale_after_s=5.0),
        driver="devices.drivers.heart_rate:HeartRateDriver",
        emulator="devices.emulated.strap:ChestStrap",
        emulated_name="Polar H10 EMU1",
    ),
)
"""Every model, most specific first (see the comment above)."""

_BY_NAME: Final[Mapping[str, DeviceModel]] = MappingProxyType({m.name: m for m in MODELS})

STREAMABLE_KINDS: Final[frozenset[DeviceKind]] = frozenset(m.kind for m in MODELS)
"""Kinds with at least one model: exactly what ``run`` can stream and ``config`` accepts."""


def model_named(name: str) -> DeviceModel:
    """The model called ``name`` (case-insensitive); ``ValueError`` names the choices."""
    try:
        return _BY_NAME[name.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown device model {name!r}; expected one of: {', '.join(_BY_NAME)}"
        ) from None


def models_of(kind: DeviceKind) -> tuple[DeviceModel, ...]:
    """The models of ``kind``, the default one first (empty for ``unknown``)."""
    return tuple(m for m in MODELS if m.kind is kind)


def default_model(kind: DeviceKind) -> DeviceModel:
    """The model assumed for a ``kind`` device when nothing says which one it is.

    Raises ``ValueError`` for a kind without a model (``unknown``).
    """
    models = models_of(kind)
    if not models:
        known = ", ".join(sorted(k.value for k in STREAMABLE_KINDS))
        raise ValueError(f"no device model streams {kind.value} devices; models exist for: {known}")
    return models[0]


def identify(
    name: str | None, services: Iterable[str], *, among: Collection[DeviceModel] = MODELS
) -> DeviceModel | None:
    """The model a device is, from its advertised services, else its name; ``None`` if none.

    ``among`` narrows the candidates (e.g. the models of a configured kind).
    """
    advertised = set()
    for uuid in services:
        # An advertisement is foreign input: a UUID we cannot read identifies nothing.
        with contextlib.suppress(ValueError):
            advertised.add(gatt.normalize_uuid(uuid))
    candidates = [m for m in MODELS if m in among]
    for model in candidates:
        if advertised.intersection(model.services):
            return model
    if name:
        for model in candidates:
            if model.name_pattern.search(name):
                return model
    return None


def candidate_models(
    kind: DeviceKind, *, model: str | None = None, name: str | None = None
) -> tuple[DeviceModel, ...]:
    """The models a configured ``kind`` device may be: the one ``model`` names, else the one
    its advertised ``name`` identifies among the kind's models, else every model of the kind
    (most kinds have one; a grip device with only an address may be a Progressor or an
    Activ5, and says which when it is seen: :func:`devices.discovery.identify_model`).

    Raises ``ValueError`` when ``model`` is unknown or of another kind, or ``kind`` has no
    model.
    """
    if model is not None:
        chosen = model_named(model)
        if chosen.kind is not kind:
            others = ", ".join(m.name for m in models_of(kind)) or "none"
            raise ValueError(
                f"model {chosen.name!r} is a {chosen.kind.value} device, not {kind.value} "
                f"({kind.value} models: {others})"
            )
        return (chosen,)
    default_model(kind)  # raises for a kind without a model
    models = models_of(kind)
    named = identify(name, (), among=models)
    return (named,) if named is not None else models


def model_for(
    kind: DeviceKind, *, model: str | None = None, name: str | None = None
) -> DeviceModel | None:
    """The model of a configured ``kind`` device when the configuration tells it (the
    ``model`` named, the one its ``name`` identifies, or the kind's only model); ``None``
    when only the device can tell (see :func:`candidate_models`). Never a guess: an Activ5
    configured by address alone must not be driven as a Progressor.

    Raises ``ValueError`` as :func:`candidate_models`.
    """
    models = candidate_models(kind, model=model, name=name)
    return models[0] if len(models) == 1 else None
