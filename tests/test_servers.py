"""The server fixtures themselves: each real server answers on its port and restarts in place."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.servers import InfluxDB1, Mosquitto, VictoriaMetrics

pytestmark = pytest.mark.integration


def test_mosquitto_delivers_a_retained_message_after_restart(mosquitto: Mosquitto) -> None:
    pub = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(mosquitto.port)]
    subprocess.run([*pub, "-t", "t/x", "-m", "hello", "-r", "-q", "1"], check=True, timeout=10)
    mosquitto.restart()
    out = subprocess.run(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(mosquitto.port),
            "-t",
            "t/x",
            "-C",
            "1",
            "-W",
            "5",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.stdout.strip() == "hello"


def test_influxdb1_accepts_v1_write_and_answers_influxql(influxdb1: InfluxDB1) -> None:
    influxdb1.query("CREATE DATABASE t")
    body = b"hrv,athlete=a rmssd_ms=42.5 1700000000000000000"
    req = urllib.request.Request(f"{influxdb1.url}/write?db=t", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204
    result = influxdb1.query('SELECT "rmssd_ms" FROM "hrv"', db="t")
    series = result["results"][0]["series"][0]  # type: ignore[index]
    assert series["values"] == [[1700000000000000000, 42.5]]


def test_influxdb1_has_no_v2_write_endpoint(influxdb1: InfluxDB1) -> None:
    req = urllib.request.Request(
        f"{influxdb1.url}/api/v2/write?org=o&bucket=b", data=b"m f=1", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 404


def test_victoria_metrics_accepts_v2_write(victoria: VictoriaMetrics) -> None:
    query = urllib.parse.urlencode({"org": "o", "bucket": "b", "precision": "ns"})
    line = f"hrv,athlete=a rmssd_ms=42.5 {time.time_ns()}".encode()
    req = urllib.request.Request(f"{victoria.url}/api/v2/write?{query}", data=line, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204
    rows = victoria.export('{__name__="hrv_rmssd_ms"}')
    assert rows, "no series exported"
    assert rows[0]["values"] == [42.5]
    assert json.dumps(rows[0]["metric"]).count('"athlete": "a"') == 1
