"""The team simulation with weeks of history: alerts raised and cleared live, identical to
the single-box oracle (issue 13, "durable results and alert events identical").

Ten athletes' first 26 days go into a single-box SQLite store through the single-box
pipeline and into PostgreSQL with the real ``redox-streamer migrate``; their last two days
run, 30 times faster, through 3 gateway processes, a 3-node NATS cluster and 2 worker
processes, with a worker SIGKILLed while the first live morning is open. The oracle is the
single box going on from a copy of the same store (:mod:`tests.team_history`). The
athletes' scenarios are chosen so the live window raises both morning pull-back rules and
the session warnings, and clears some of them (one a resume on three mornings in band, two
of them from the migrated history).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from collections import Counter
from pathlib import Path

from streamer.results import AlertsPayload, Kind
from tests import team_history as hi
from tests import team_sim as sim
from tests import team_worker_helpers as th

ATHLETES = 10
HISTORY_DAYS = 26


def test_live_alerts_after_a_migrated_history_match_the_single_box(tmp_path: Path) -> None:
    live, store = hi.prepare(tmp_path / "history", ATHLETES, HISTORY_DAYS, keep_s=600.0)
    # The first live morning is open from 0 to ~12 s (370 record s at speed 30).
    faults = [(6.0, "worker-kill")]
    simulation = sim.Simulation(tmp_path / "sim", live, gateways=3, speed=30.0,
                                handover=0.25, faults=faults, history=store)  # fmt: skip
    try:
        figures = asyncio.run(simulation.run(timeout_s=120.0))
        simulation.check_gateways_exactly_once()
        pg_rows = th.history_rows(simulation.pg.dsn)
    finally:
        simulation.stop_all()
    print(f"\n{dataclasses.replace(figures, live_latency_s=[])}")
    events = hi.alert_events(simulation.expected)
    raised = Counter(rule for _, _, rule, state in events if state == "raised")
    cleared = Counter(rule for _, _, rule, state in events if state == "cleared")
    print(f"live alerts raised {dict(raised)}, cleared {dict(cleared)}")
    for kind, (missing, extra) in simulation.history_diff.items():
        for row in [*missing, *extra][:4]:
            print(f"{kind} differs: {str(row)[:300]}")

    # The live window raises the morning pull-back rules and the session warnings, and
    # clears some: a resume (rhr_creep), back in band (hrv_downtrend), warnings not met.
    assert all(day >= HISTORY_DAYS for _, day, _, _ in events)
    assert {"hrv_downtrend", "rhr_creep"} <= set(raised)
    assert {"smo2_slow_recovery", "rpe_power_mismatch"} <= set(raised)
    assert {"hrv_downtrend", "rhr_creep", "smo2_slow_recovery", "rpe_power_mismatch"} <= set(
        cleared
    )
    reasons = {
        r.payload.event.clear_reason
        for r in simulation.expected
        if isinstance(r.payload, AlertsPayload) and r.payload.event.state == "cleared"
    }
    assert "resume" in reasons
    assert figures.alerts == len(events) > 0

    stream = figures.stream
    assert (stream.lost, stream.duplicates, stream.reorders) == (0, 0, 0)
    assert stream.interleave_reorders == 0
    assert figures.faults["worker-kill"].startswith("worker w1 SIGKILLed")
    # PostgreSQL holds the single box's whole history: migrated days and live ones, alerts
    # raised and cleared with the same times and evidence.
    assert figures.history_identical
    live_alerts = [r for r in simulation.expected if r.kind is Kind.ALERTS]
    assert {(r.athlete, r.ts_ns) for r in live_alerts} <= {(a, t) for a, t, *_ in pg_rows["alerts"]}
    # Every alert event reached the subscriber, none under two seqs.
    assert th.expected_messages(live_alerts) <= simulation.received
    assert figures.mqtt_complete
    assert figures.mqtt["doubles"] == figures.mqtt["backwards"] == 0

    # The baselines came across: the first live morning rests on an established baseline of
    # the migrated mornings; the same live records without the history have none.
    first_live = [
        json.loads(str(data))
        for athlete, day, _, data in pg_rows["morning"]
        if day == (hi.FIRST + dt.timedelta(days=HISTORY_DAYS)).isoformat()
    ]
    assert len(first_live) == ATHLETES
    assert all(m["baseline_status"] == "established" for m in first_live if m["accepted"])
    assert sum(m["accepted"] for m in first_live) >= ATHLETES - 1
    alone = th.oracle({"athlete1": live["athlete1"]})
    statuses = {r.fields.get("baseline_status") for r in alone if r.kind is Kind.MORNING}
    assert statuses == {"none"}
