"""The application assembled from a config: what every long-running command builds.

``run``, ``demo``, ``replay``, ``morning`` and ``grip-test`` get the same things from an
:class:`App`:

* the store (opened from the config's path, a path given, or a store already open);
* the sinks the config names (:func:`build_sinks`: MQTT, InfluxDB) — the one place sinks
  are wired;
* the one factory of athletes (:meth:`App.athlete`): the athlete's profile thresholds with
  the config's ``[rules]`` and the athlete's own rules on top;
* the pipeline over them (:meth:`App.pipeline`).

Athletes save their alert book and baselines as they go, in the middle of processing a
record. While the disk under the store is full those saves cannot fail the record (its
results would be lost): :class:`AthleteStateWrites` keeps the newest of each in memory and
writes them in the pipeline's next transaction of results, all or none with them.

A command without a config file (``demo``, ``replay`` without ``--config``, a guided
protocol with ``--emulated``) builds a :class:`~streamer.config.Config` from its flags and
assembles it the same way; :func:`serving_broker` starts an embedded MQTT broker when that
config names none (``demo``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypedDict, Unpack

from processors.profiles import thresholds_for
from processors.rules import RuleThresholds
from streamer.app.pipeline import Pipeline, Sink
from streamer.athlete import AthleteState
from streamer.config import Config, MqttConfig
from streamer.results import (
    GripPayload,
    JsonValue,
    LabPayload,
    MorningPayload,
    Result,
    SessionPayload,
)
from streamer.sinks.mqtt import MqttPublisher
from streamer.store import Row, Store, StoreFullError

if TYPE_CHECKING:
    from streamer.demo.embedded_broker import EmbeddedBroker


_LOGGER = logging.getLogger(__name__)


class AthleteStateWrites:
    """The store as athletes see it: reads pass through, and an alert book or baseline the
    store cannot take now (disk full) is kept — the newest per athlete and name — until
    :meth:`flush` writes it (in the pipeline's transaction of results, see :class:`_History`).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: dict[tuple[str, str], dict[str, JsonValue]] = {}

    @property
    def pending(self) -> int:
        """Saves waiting for the store."""
        return len(self._pending)

    def morning_history(self, athlete: str) -> list[Row[MorningPayload]]:
        """The store's daily morning readings of ``athlete``."""
        return self.store.morning_history(athlete)

    def sessions(self, athlete: str) -> list[Row[SessionPayload]]:
        """The store's session summaries of ``athlete``."""
        return self.store.sessions(athlete)

    def grip_tests(self, athlete: str) -> list[Row[GripPayload]]:
        """The store's grip tests of ``athlete``."""
        return self.store.grip_tests(athlete)

    def lab_entries(self, athlete: str) -> list[Row[LabPayload]]:
        """The store's lab entries of ``athlete``."""
        return self.store.lab_entries(athlete)

    def load_alert_book(self, athlete: str) -> dict[str, JsonValue] | None:
        """The newest alert book of ``athlete``: waiting to be saved, else the store's."""
        return self._pending.get((athlete, "")) or self.store.load_alert_book(athlete)

    def save_alert_book(self, athlete: str, state: Mapping[str, JsonValue]) -> None:
        """Save the alert book now, or as soon as the store can be written."""
        self._save((athlete, ""), state)

    def save_baseline(self, athlete: str, name: str, data: Mapping[str, JsonValue]) -> None:
        """Save one baseline now, or as soon as the store can be written."""
        self._save((athlete, name), data)

    def flush(self) -> None:
        """Write every waiting save; raises :class:`StoreFullError` (and keeps them) if the
        store still cannot take them."""
        for key, data in list(self._pending.items()):
            self._write(key, data)
            del self._pending[key]

    def _save(self, key: tuple[str, str], data: Mapping[str, JsonValue]) -> None:
        self._pending.pop(key, None)  # this one is newer
        try:
            self._write(key, data)
        except StoreFullError:
            self._pending[key] = dict(data)

    def _write(self, key: tuple[str, str], data: Mapping[str, JsonValue]) -> None:
        athlete, name = key
        if name:
            self.store.save_baseline(athlete, name, data)
        else:
            self.store.save_alert_book(athlete, data)


class _History:
    """The pipeline's history: the store, with the athletes' waiting saves written first in
    each transaction (so they are kept with the results, or wait with them)."""

    def __init__(self, store: Store, writes: AthleteStateWrites) -> None:
        self.store = store
        self.writes = writes

    def record(self, result: Result) -> bool:
        return self.store.record(result)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[object]:
        with self.store.transaction() as db:
            self.writes.flush()
            yield db


class AthleteOptions(TypedDict, total=False):
    """How an app's athletes process (see :class:`~streamer.athlete.AthleteState`)."""

    hrv_every_s: float
    live: bool
    morning_stabilisation_s: float
    morning_span_s: float


def build_sinks(config: Config, store: Store) -> list[Sink]:
    """The sinks ``config`` names, in order: MQTT, then InfluxDB."""
    sinks: list[Sink] = []
    if config.mqtt is not None:
        sinks.append(MqttPublisher(config.mqtt, store, athletes=config.athletes))
    if config.influx is not None:
        from streamer.sinks.influx import InfluxWriter

        sinks.append(InfluxWriter(config.influx, store))
    return sinks


def athlete_thresholds(config: Config, athlete_id: str) -> RuleThresholds:
    """A configured athlete's thresholds (profile, ``[rules]``, its own rules); for an
    athlete the config does not name, the default profile with ``[rules]``."""
    if any(a.id == athlete_id for a in config.athletes):
        return config.thresholds_for(athlete_id)
    return thresholds_for("default", config.rules)


class App:
    """The store, the sinks and the factories of athletes and pipelines for one config.

    Build it with :meth:`from_config`; it is a context manager that closes the store when it
    opened it.
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        sinks: Iterable[Sink],
        *,
        owns_store: bool = False,
        athlete_options: AthleteOptions | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.sinks: tuple[Sink, ...] = tuple(sinks)
        self.athlete_options: AthleteOptions = athlete_options or {}
        self.states: dict[str, AthleteState] = {}
        """Every athlete made so far, by id (what live views and guided protocols watch)."""
        self.state_writes = AthleteStateWrites(store)
        """The athletes' alert books and baselines on their way to the store."""
        self._owns_store = owns_store

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        store: Store | Path | str | None = None,
        **athlete_options: Unpack[AthleteOptions],
    ) -> App:
        """The app of ``config``.

        Args:
            config: athletes (profiles, rules), sinks (``mqtt``, ``influx``), store path.
            store: an open store (kept open), a path or ``":memory:"`` (opened here, closed
                with the app); None: the config's ``store_path``.
            athlete_options: defaults for every athlete :meth:`athlete` makes.

        Raises StoreError when the store cannot be opened.
        """
        owns = not isinstance(store, Store)
        opened = store if isinstance(store, Store) else Store(store or config.store_path)
        try:
            sinks = build_sinks(config, opened)
        except BaseException:
            if owns:
                opened.close()
            raise
        return cls(config, opened, sinks, owns_store=owns, athlete_options=athlete_options)

    def athlete(self, athlete_id: str, **options: Unpack[AthleteOptions]) -> AthleteState:
        """The one factory of athletes: ``athlete_id``'s state with its thresholds from the
        config, the app's options and ``options`` on top; remembered in :attr:`states`."""
        merged: AthleteOptions = {**self.athlete_options, **options}
        state = AthleteState(
            athlete_id, self.state_writes, athlete_thresholds(self.config, athlete_id), **merged
        )
        self.states[athlete_id] = state
        return state

    def pipeline(
        self,
        athletes: Iterable[str] | None = None,
        *,
        on_result: Callable[[Result], None] | None = None,
    ) -> Pipeline:
        """A pipeline into the store and the sinks; each athlete is the one made already
        (:attr:`states`) or a new one from :meth:`athlete`.

        Args:
            athletes: athletes whose processors exist from the start (None: the config's).
            on_result: called with every result, in order (printing, guided protocols).
        """
        ids = [a.id for a in self.config.athletes] if athletes is None else list(athletes)

        def processor_for(athlete_id: str) -> AthleteState:
            if athlete_id in self.states:
                return self.states[athlete_id]
            return self.athlete(athlete_id)

        return Pipeline(
            processor_for,
            _History(self.store, self.state_writes),
            self.sinks,
            athletes=ids,
            on_result=on_result,
        )

    def close(self) -> None:
        """Write the athletes' waiting saves (one log line if the disk is still full) and
        close the store if this app opened it."""
        try:
            self.state_writes.flush()
        except StoreFullError as exc:
            _LOGGER.error(
                "%d alert books or baselines not saved (%s): alerts may be raised again",
                self.state_writes.pending,
                exc,
            )
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> App:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.asynccontextmanager
async def serving_broker(config: Config) -> AsyncIterator[tuple[Config, EmbeddedBroker | None]]:
    """``config`` and None when it names an MQTT broker; otherwise an embedded broker
    (MQTT 3.1.1 on loopback) serving while inside, and ``config`` publishing to it."""
    if config.mqtt is not None:
        yield config, None
        return
    from streamer.demo.embedded_broker import EmbeddedBroker

    async with EmbeddedBroker() as broker:
        yield replace(config, mqtt=MqttConfig.from_url(broker.address.url)), broker
