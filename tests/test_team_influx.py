"""The team simulation's InfluxDB check (:mod:`tests.team_influx`) on a real InfluxDB 1.6:
the relay counts a durable point written twice, the comparison sees a missing and a foreign
point, and live points without their gateway tag are counted."""

from __future__ import annotations

import urllib.parse
import urllib.request
from pathlib import Path

from streamer.sinks.influx_schema import lines_for
from tests import team_influx as ti
from tests import team_worker_helpers as th
from tests.servers import InfluxDB1


def _write(url: str, db: str, lines: list[str]) -> None:
    target = f"{url}/write?" + urllib.parse.urlencode({"db": db, "precision": "ns"})
    with urllib.request.urlopen(urllib.request.Request(target, data="\n".join(lines).encode())):
        pass


def test_the_relay_counts_rewrites_and_the_comparison_sees_every_difference(
    influxdb1: InfluxDB1, tmp_path: Path
) -> None:
    results = th.oracle(th.athlete_days(1, 1, sessions=False))
    lines = [line for r in results for line in lines_for(r)]
    assert lines, "the oracle's morning reading gives durable points"
    assert ti.write_oracle(influxdb1.url, "oracle", results) == len(lines)
    relay = ti.RelayProcess(influxdb1.url, tmp_path)
    relay.start()
    try:
        ti.query(relay.url, 'CREATE DATABASE "redox"')
        _write(relay.url, "redox", lines)
        assert relay.rewrites() == 0
        assert relay.last_accepted > 0
        live = [
            "heart_rate,athlete=a1,device=strap,gateway=gw1 hr_bpm=61i 1000",
            "heart_rate,athlete=a1,device=strap,gateway=gw2 hr_bpm=62i 2000",
        ]
        _write(relay.url, "redox", [lines[0], *live])  # a resent batch: one durable point
        assert relay.rewrites() == 1  # live points are not counted
    finally:
        relay.stop()
    facts = ti.compare(influxdb1.url, "redox", "oracle")
    assert facts.identical
    assert (facts.expected, facts.live_tagged, facts.live_untagged) == (len(lines), 2, 0)

    # A point with another time (a duplicate the server cannot merge), one left out, a
    # live point without its gateway.
    point, t_ns = lines[-1].rsplit(" ", 1)  # the time is the line's last word
    untagged = "heart_rate,athlete=a1,device=strap hr_bpm=63i 3000"
    _write(influxdb1.url, "redox", [f"{point} {int(t_ns) + 1}", untagged])
    _write(influxdb1.url, "oracle", [f"{point} {int(t_ns) + 2}"])
    facts = ti.compare(influxdb1.url, "redox", "oracle")
    assert not facts.identical
    assert (facts.missing, facts.extra, facts.live_untagged) == (1, 1, 1)
