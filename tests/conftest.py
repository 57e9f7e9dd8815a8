"""Shared fixtures: real servers on free loopback ports (see tests/servers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import InfluxDB1, Mosquitto, VictoriaMetrics
from tests.shipped_mosquitto import ShippedBroker, start_shipped_mosquitto

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real recordings in ../shared/data (see its README for provenance)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recordings not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path / "mosquitto")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def influxdb1(tmp_path: Path) -> Iterator[InfluxDB1]:
    server = InfluxDB1(tmp_path / "influxdb")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(tmp_path / "vm")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def shipped_mosquitto(tmp_path: Path) -> Iterator[ShippedBroker]:
    """mosquitto started from deploy/mosquitto (config, ACL, make-passwd.sh) on a free port."""
    broker = start_shipped_mosquitto(tmp_path / "shipped-mosquitto")
    yield broker
    broker.server.stop()
