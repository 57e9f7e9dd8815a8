"""`doctor` checks what `run` needs of InfluxDB — the database or bucket exists and the
credentials may write to it — against real servers (InfluxDB 1.6, with and without
authentication, and VictoriaMetrics); and a write the server refuses is a visible status of
`run`'s live view, with the points waiting counted (issue 11)."""

from __future__ import annotations

import base64
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamer.app.live_view import _sink_line, sink_problem
from streamer.commands.doctor import check_influx
from streamer.config import InfluxConfig, Secret
from streamer.results import Kind, Result
from streamer.sinks.backoff import Backoff
from streamer.sinks.influx import InfluxWriter
from streamer.store import Store
from tests.mqtt_helpers import eventually
from tests.servers import InfluxDB1, VictoriaMetrics
from tests.test_influx_integration import running

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000_000_000


class InfluxDB1Auth(InfluxDB1):
    """InfluxDB 1.6 with ``auth-enabled = true``: an admin, and a user who may only read."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        text = self.config.read_text().replace("[http]\n", "[http]\n  auth-enabled = true\n")
        self.config.write_text(text)

    def as_user(self, q: str, user: str) -> None:
        """Run InfluxQL as ``user`` (``name:password``); raises on an HTTP error."""
        body = urllib.parse.urlencode({"q": q}).encode()
        token = base64.b64encode(user.encode()).decode()
        request = urllib.request.Request(
            f"{self.url}/query", data=body, headers={"Authorization": f"Basic {token}"}
        )
        urllib.request.urlopen(request, timeout=10).close()

    def ready(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.url}/ping", timeout=1).close()
        except (urllib.error.URLError, OSError):
            return False
        return True


@pytest.fixture
def influxdb_auth(tmp_path: Path) -> Iterator[InfluxDB1Auth]:
    server = InfluxDB1Auth(tmp_path / "influxdb-auth")
    server.start()
    server.as_user("CREATE USER admin WITH PASSWORD 'adm-pw' WITH ALL PRIVILEGES", "x:y")
    server.as_user('CREATE DATABASE "redox"', "admin:adm-pw")
    server.as_user("CREATE USER reader WITH PASSWORD 'rd-pw'", "admin:adm-pw")
    server.as_user('GRANT READ ON "redox" TO "reader"', "admin:adm-pw")
    yield server
    server.stop()


def v1(url: str, **options: Any) -> InfluxConfig:
    values: dict[str, Any] = {"url": url, "api": "v1", "db": "redox", "timeout_s": 2.0}
    values.update(options)
    return InfluxConfig(**values)


def test_doctor_fails_when_the_database_does_not_exist_and_says_how_to_create_it(
    influxdb1: InfluxDB1,
) -> None:
    check = check_influx(v1(influxdb1.url))
    assert check.ok is False
    assert check.needed
    assert "refuses writes to database 'redox': HTTP 404" in check.detail
    assert "database not found" in check.detail
    assert 'CREATE DATABASE "redox"' in check.fix
    assert "create_database = true" in check.fix
    assert "FAIL  influxdb:" in check.line()


def test_doctor_passes_once_the_database_exists_or_run_will_create_it(
    influxdb1: InfluxDB1,
) -> None:
    creating = check_influx(v1(influxdb1.url, create_database=True))
    assert creating.ok is True
    assert "`run` creates it" in creating.detail
    influxdb1.query('CREATE DATABASE "redox"')
    check = check_influx(v1(influxdb1.url))
    assert check.ok is True
    assert "database 'redox' accepts writes" in check.detail
    assert influxdb1.query("SHOW MEASUREMENTS", "redox")["results"] == [{"statement_id": 0}]


def test_doctor_fails_on_a_missing_retention_policy(influxdb1: InfluxDB1) -> None:
    influxdb1.query('CREATE DATABASE "redox"')
    check = check_influx(v1(influxdb1.url, rp="weekly"))
    assert check.ok is False
    assert "retention policy 'weekly'" in check.fix


def test_doctor_fails_for_a_user_who_may_not_write_and_for_a_wrong_password(
    influxdb_auth: InfluxDB1Auth,
) -> None:
    reader = check_influx(v1(influxdb_auth.url, username="reader", password=Secret("rd-pw")))
    assert reader.ok is False
    assert "HTTP 403" in reader.detail
    assert "not authorized to write" in reader.detail
    assert 'GRANT WRITE ON "redox"' in reader.fix
    wrong = check_influx(v1(influxdb_auth.url, username="admin", password=Secret("nope")))
    assert wrong.ok is False
    assert "HTTP 401" in wrong.detail
    assert "rd-pw" not in reader.line() + wrong.line()
    assert "nope" not in wrong.line()
    admin = check_influx(v1(influxdb_auth.url, username="admin", password=Secret("adm-pw")))
    assert admin.ok is True, admin.line()


def test_doctor_fails_for_the_v2_api_on_a_server_without_it(influxdb1: InfluxDB1) -> None:
    check = check_influx(InfluxConfig(url=influxdb1.url, api="v2", org="club", bucket="redox"))
    assert check.ok is False
    assert "bucket 'redox' (org 'club')" in check.detail
    assert 'use api = "v1"' in check.fix


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_doctor_passes_for_victoria_metrics_on_both_apis(
    victoria: VictoriaMetrics, api: str
) -> None:
    config = InfluxConfig(url=victoria.url, api=api, db="redox", org="club", bucket="redox")  # type: ignore[arg-type]
    check = check_influx(config)
    assert check.ok is True, check.line()
    assert "accepts writes" in check.detail


async def test_a_refused_write_is_a_visible_status_with_the_points_waiting(
    influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    with Store(tmp_path / "store.sqlite3") as store:
        writer = InfluxWriter(
            v1(influxdb1.url, flush_interval_s=0.05), store, backoff=Backoff(0.1, 0.3)
        )
        results = [Result(Kind.HRV, "ann", T0 + i, {"rmssd_ms": 40.0 + i}) for i in range(3)]
        async with running(writer):
            writer.accept(results)
            await eventually(lambda: writer.status()["failed_attempts"] >= 1)
            status = writer.status()
            line = _sink_line("influx", status, 0)
            assert status["refused"] is True
            assert "influx delivered 0 points waiting 3 shed 0 — REFUSED: HTTP 404" in line
            assert "database not found" in line
            assert "CREATE DATABASE" in line
            assert sink_problem(status) is not None
            influxdb1.query('CREATE DATABASE "redox"')
            # The points are counted written before their outbox rows are acknowledged: wait
            # for both (a loaded machine shows "delivered 3 points waiting 3" in between).
            done = "influx delivered 3 points waiting 0 shed 0"
            await eventually(lambda: _sink_line("influx", writer.status(), 0) == done, 10)
            status = writer.status()
            assert sink_problem(status) is None
            assert _sink_line("influx", status, 0) == done


async def test_an_unreachable_server_is_not_called_a_refusal(tmp_path: Path) -> None:
    from tests.servers import free_port

    with Store(tmp_path / "store.sqlite3") as store:
        writer = InfluxWriter(
            v1(f"http://127.0.0.1:{free_port()}"), store, backoff=Backoff(0.1, 0.3)
        )
        async with running(writer):
            writer.accept([Result(Kind.HRV, "ann", T0, {"rmssd_ms": 40.0})])
            await eventually(lambda: writer.status()["failed_attempts"] >= 1)
        assert "UNREACHABLE" in _sink_line("influx", writer.status(), 0)


def test_run_shows_a_refused_write_in_its_status_and_its_last_line(
    influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    """The issue's case: the database does not exist. `run` used to show "influx outbox 0"
    while every write got 404; now the status says REFUSED with the fix, and what waits."""
    import subprocess
    import sys

    config = tmp_path / "redox.toml"
    config.write_text(
        f'[store]\npath = "{tmp_path / "s.sqlite3"}"\n'
        f'[influx]\nurl = "{influxdb1.url}"\ndb = "redox"\nflush_interval_s = 0.2\n'
        '[[athletes]]\nid = "ann"\n[[athletes.devices]]\nkind = "strap"\n'
        'address = "C0:00:00:00:10:01"\n'
    )
    root = Path(__file__).resolve().parents[1]
    argv = ["run", "--config", str(config), "--registry", str(tmp_path / "d.toml")]
    options = ["--emulated", "--speed", "20", "--duration", "6", "--plain"]
    result = subprocess.run(
        [sys.executable, "-m", "streamer.cli", *argv, *options],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    refused = [line for line in lines if line.startswith("  sink influx delivered 0 points")]
    assert any("— REFUSED: HTTP 404" in line and "CREATE DATABASE" in line for line in refused)
    waiting = [int(line.split("waiting ")[1].split()[0]) for line in refused]
    assert max(waiting) > 0
    assert "influx: " in lines[-1]
    assert "left in the outbox (REFUSED: HTTP 404" in lines[-1]
