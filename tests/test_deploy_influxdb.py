"""The shipped InfluxDB 1.x set-up (deploy/influxdb/v1) on a real InfluxDB 1.6 with auth on.

setup.iql is run the way setup.sh runs it (comments dropped, ``${NAME}`` filled, one
statement at a time, as the admin); setup.sh itself is run too where curl exists. Then
the streamer's real writer writes as user ``redox`` and Grafana's user reads it back.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamer.config import InfluxConfig, Secret
from streamer.results import Kind, Result
from streamer.sinks.influx import InfluxWriter
from streamer.store import Store
from tests.servers import InfluxDB1

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "influxdb"
SETUP_IQL = DEPLOY / "v1" / "setup.iql"
SETUP_SH = DEPLOY / "v1" / "setup.sh"
PASSWORDS = {"admin": "admin-pw", "redox": "redox-pw", "grafana": "grafana-pw"}
ENV = {
    "INFLUX_ADMIN_PASSWORD": PASSWORDS["admin"],
    "REDOX_INFLUX_PASSWORD": PASSWORDS["redox"],
    "GRAFANA_INFLUX_PASSWORD": PASSWORDS["grafana"],
}
# Yesterday, whole second: inside the 400-day policy (older points are dropped by it).
T0 = (int(time.time()) // 86_400 - 1) * 86_400 * 1_000_000_000


def iql_statements(text: str, env: dict[str, str]) -> list[str]:
    """setup.iql as setup.sh sends it: no comments, ``${NAME}`` filled, split on ``;``."""
    body = " ".join(line for line in text.splitlines() if not line.strip().startswith("--"))

    def fill(match: re.Match[str]) -> str:
        return env[match.group(1)]

    return [re.sub(r"\$\{(\w+)\}", fill, s).strip() for s in body.split(";") if s.strip()]


def http(
    server: InfluxDB1,
    path: str,
    data: bytes,
    user: str | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST to the server as ``user`` (None: anonymous); (status, decoded JSON or text)."""
    url = f"{server.url}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url, data=data, method="POST")
    if user is not None:
        token = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            status, body = int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body) if body else None
    except json.JSONDecodeError:
        return status, body.decode()


def query(server: InfluxDB1, q: str, user: str | None, db: str | None = None) -> tuple[int, Any]:
    params = {"q": q, **({"db": db} if db else {})}
    return http(server, "/query", urllib.parse.urlencode(params).encode(), user)


def run_iql(server: InfluxDB1) -> None:
    for statement in iql_statements(SETUP_IQL.read_text(), ENV):
        status, answer = query(server, statement, "admin")
        assert status == 200, (statement, answer)
        assert "error" not in answer["results"][0], (statement, answer)


def run_setup_sh(server: InfluxDB1) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl not installed: setup.sh needs it (the .iql run covers the statements)")
    done = subprocess.run(
        [str(SETUP_SH), server.url],
        env={"PATH": "/usr/bin:/bin", **ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "ready" in done.stdout
    assert PASSWORDS["redox"] not in done.stdout + done.stderr


@pytest.fixture
def secured_influx(tmp_path: Path) -> Iterator[InfluxDB1]:
    """InfluxDB 1.6 with authentication on and one admin user, as the README sets it up."""
    server = InfluxDB1(tmp_path / "influxdb")
    server.config.write_text(
        server.config.read_text().replace("[http]\n", "[http]\n  auth-enabled = true\n")
    )
    server.start()
    # With auth on and no user yet, InfluxDB accepts exactly this: the first admin.
    status, answer = query(
        server, f"CREATE USER admin WITH PASSWORD '{PASSWORDS['admin']}' WITH ALL PRIVILEGES", None
    )
    assert status == 200, answer
    yield server
    server.stop()


@pytest.fixture(params=["iql", "setup.sh"])
def set_up(request: pytest.FixtureRequest, secured_influx: InfluxDB1) -> InfluxDB1:
    (run_iql if request.param == "iql" else run_setup_sh)(secured_influx)
    return secured_influx


def test_setup_makes_the_400d_policy_the_default(set_up: InfluxDB1) -> None:
    status, answer = query(set_up, 'SHOW RETENTION POLICIES ON "redox"', "admin")
    assert status == 200
    (series,) = answer["results"][0]["series"]
    rows = [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]
    default = [r for r in rows if r["default"]]
    assert [(r["name"], r["duration"], r["shardGroupDuration"]) for r in default] == [
        ("400d", "9600h0m0s", "168h0m0s")
    ]


def test_setup_is_idempotent(set_up: InfluxDB1) -> None:
    run_iql(set_up)  # a second run changes nothing and reports no error


def test_anonymous_access_is_refused(set_up: InfluxDB1) -> None:
    assert query(set_up, "SHOW DATABASES", None)[0] == 401


def test_streamer_user_writes_with_the_real_writer_and_grafana_reads(
    set_up: InfluxDB1, tmp_path: Path
) -> None:
    config = InfluxConfig(
        url=set_up.url, db="redox", username="redox", password=Secret(PASSWORDS["redox"])
    )
    morning = Result(
        Kind.MORNING, "ann", T0, {"ln_rmssd": 4.1, "resting_hr_bpm": 51.0, "accepted": True}
    )

    async def write() -> dict[str, Any]:
        with Store(tmp_path / "store.sqlite3") as store:
            writer = InfluxWriter(config, store)
            writer.accept([morning])
            task = asyncio.create_task(writer.run())
            try:
                left = await writer.drain(10.0)
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert left == 0
            return writer.status()

    status = asyncio.run(write())
    assert status["written"] == 1, status
    code, answer = query(set_up, 'SELECT "ln_rmssd" FROM "morning"', "grafana", "redox")
    assert code == 200
    assert answer["results"][0]["series"][0]["values"] == [
        [dt.datetime.fromtimestamp(T0 // 10**9, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), 4.1]
    ]


def test_grafana_user_cannot_write_and_streamer_user_cannot_read(set_up: InfluxDB1) -> None:
    line = f"morning,athlete=ann ln_rmssd=1.0 {T0}".encode()
    status, _ = http(set_up, "/write", line, "grafana", {"db": "redox"})
    assert status == 403
    status, answer = query(set_up, 'SELECT * FROM "morning"', "redox", "redox")
    assert status == 403 or "error" in answer["results"][0], answer


def test_iql_statements_are_filled_and_split() -> None:
    statements = iql_statements(SETUP_IQL.read_text(), ENV)
    assert statements[0] == 'CREATE DATABASE "redox"'
    assert "CREATE USER \"grafana\" WITH PASSWORD 'grafana-pw'" in statements
    assert not any("${" in s or "--" in s for s in statements)


@pytest.mark.parametrize("script", sorted(DEPLOY.glob("v*/setup.sh")), ids=lambda p: p.parent.name)
def test_setup_scripts_are_valid_posix_sh(script: Path) -> None:
    assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0
