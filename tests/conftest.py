"""Shared fixtures: real servers on free loopback ports (see tests/servers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, settings

from tests.servers import (
    InfluxDB1,
    Mosquitto,
    NatsServer,
    PostgreSQL,
    ServerProcess,
    VictoriaMetrics,
)
from tests.shipped_mosquitto import TEAM_CONF, ShippedBroker, start_shipped_mosquitto

# CI machines are loaded (2 cores, other jobs): a property holds or fails whatever the time
# an example takes, so no per-example deadline and no "too slow" health check.
settings.register_profile("loaded", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("loaded")

# Real recordings shipped with the tests (copied from shared/data; provenance and licences
# in tests/data/README.md), so a clone runs every test.
RECORDINGS = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def recordings() -> Path:
    """The real recordings in tests/data (see its README for provenance and licences)."""
    if not RECORDINGS.is_dir():
        pytest.skip(f"real recordings not found at {RECORDINGS}")
    return RECORDINGS


@pytest.fixture(autouse=True)
def private_device_locks(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test's device locks (streamer.store_lock.hold_devices) in a directory of its
    own: tests that run real-radio commands on the same made-up addresses, in parallel
    sessions of one user, must not refuse each other a device."""
    path = tmp_path_factory.mktemp("runtime")
    monkeypatch.setenv("REDOX_RUNTIME_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def private_user_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """An empty user config dir per test: a command that falls back to its default files
    (the pairing registry's devices.toml, config.toml) must not read the developer's own."""
    path = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(path))
    return path


S = TypeVar("S", bound=ServerProcess)


def _serving(server: S) -> Iterator[S]:
    """Start ``server`` for one test and stop it after."""
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    yield from _serving(Mosquitto(tmp_path / "mosquitto"))


@pytest.fixture
def influxdb1(tmp_path: Path) -> Iterator[InfluxDB1]:
    yield from _serving(InfluxDB1(tmp_path / "influxdb"))


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    yield from _serving(VictoriaMetrics(tmp_path / "vm"))


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """One nats-server with JetStream and the team partition mapping."""
    yield from _serving(NatsServer(tmp_path / "nats"))


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[PostgreSQL]:
    """A PostgreSQL cluster of its own (``.dsn``); its directory is removed after."""
    server = PostgreSQL(tmp_path / "postgres")
    try:
        yield from _serving(server)
    finally:
        server.remove()


@pytest.fixture
def shipped_mosquitto(tmp_path: Path) -> Iterator[ShippedBroker]:
    """mosquitto started from deploy/mosquitto (config, ACL, make-passwd.sh) on a free port."""
    broker = start_shipped_mosquitto(tmp_path / "shipped-mosquitto")
    yield broker
    broker.server.stop()


@pytest.fixture
def team_mosquitto(tmp_path: Path) -> Iterator[ShippedBroker]:
    """mosquitto started from team mode's deploy/team/mosquitto.conf with the shipped ACL
    and make-passwd.sh, on a free port."""
    broker = start_shipped_mosquitto(tmp_path / "team-mosquitto", TEAM_CONF)
    try:
        yield broker
    finally:
        broker.server.stop()
