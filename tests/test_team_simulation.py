"""The one-machine team simulation (issue 13, "Show"), small: 3 gateway processes, a
3-node NATS cluster, 2 worker processes, PostgreSQL and mosquitto; 12 athletes' two days
on a clock 20 times faster, each day at a random gateway, sessions handed over mid-way; a
worker SIGKILLed, PostgreSQL restarted and the NATS stream leader SIGKILLed on the way.
The single-box oracle on the same records says what must come out. ``bench/team.py`` runs
the bigger one with faults and prints the issue's targets."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from tests import team_sim as sim
from tests import team_worker_helpers as th


def test_gateways_and_workers_match_the_single_box_oracle(tmp_path: Path) -> None:
    messages = sim.trim_sessions(th.athlete_days(12, 2), keep_s=600.0)
    # Faults during the second morning (from 21.5 s) and the session (from 43 s): the
    # takeover of a killed worker's partitions, every partition's lock lost with
    # PostgreSQL, the stream's leader lost.
    faults = [(24.0, "worker-kill"), (32.0, "postgres-restart"), (46.0, "nats-leader-kill")]
    simulation = sim.Simulation(
        tmp_path, messages, gateways=3, speed=20.0, handover=0.25, faults=faults
    )
    assert any(seg.handed_over for seg in simulation.plan), "a session is handed over"
    assert len({seg.gateway for seg in simulation.plan}) == 3
    try:
        figures = asyncio.run(simulation.run(timeout_s=120.0))
        simulation.check_gateways_exactly_once()
    finally:
        simulation.stop_all()
    stream = figures.stream
    print(f"\n{dataclasses.replace(figures, live_latency_s=[])}")
    assert (stream.lost, stream.duplicates, stream.reorders) == (0, 0, 0)
    assert stream.delivered == stream.planned == figures.messages
    assert figures.history_identical
    assert figures.mqtt_complete
    assert figures.mqtt["doubles"] == figures.mqtt["backwards"] == 0
    assert figures.mqtt["changed_resends"] == 0
    assert figures.live_latency_s, "live samples reached the subscriber"
    assert figures.worker_cpu
    assert set(figures.faults) == {name for _, name in faults}
    assert all(share > 0 for share in figures.worker_cpu.values())
