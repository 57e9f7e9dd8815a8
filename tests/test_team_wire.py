"""The team wire format: bodies round-trip, bad bodies name the subject, and a real
nats-server maps every athlete's subject to one fixed partition."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.recording import RecordedNotification
from devices.records import BatteryLevel, GapEvent, GapReason
from processors.labs import LabMarker, LabTiming
from streamer.athlete.events import GripPhase, LabEntry, SessionEnd, SessionStart
from streamer.team import wire
from tests.servers import NatsServer

nats = pytest.importorskip("nats")

notifications = st.builds(
    RecordedNotification,
    t_ns=st.integers(0, 2**63 - 1),
    device=st.text(min_size=1, max_size=20),
    char=st.sampled_from(["2a37", "moxy", "2a63"]),
    data=st.binary(max_size=40),
)
markers = st.one_of(
    st.builds(SessionStart, t_ns=st.integers(0, 2**62), tags=st.tuples(st.text(max_size=8))),
    st.builds(SessionEnd, t_ns=st.integers(0, 2**62), rpe=st.none() | st.floats(0, 10)),
    st.builds(GripPhase, t_ns=st.integers(0, 2**62), minute=st.none() | st.floats(0, 60)),
    st.builds(
        LabEntry,
        t_ns=st.integers(0, 2**62),
        marker=st.sampled_from(LabMarker),
        value=st.floats(0, 1000),
        timing=st.none() | st.sampled_from(LabTiming),
    ),
)


leases = st.builds(
    wire.LeaseGranted,
    t_ns=st.integers(0, 2**62),
    device=st.text(min_size=1, max_size=10),
    gateway=st.text(min_size=1, max_size=10),
)


gaps = st.builds(
    GapEvent,
    t_ns=st.integers(0, 2**63 - 1),
    device=st.text(min_size=1, max_size=20),
    start_ns=st.integers(0, 2**63 - 1),
    end_ns=st.none() | st.integers(0, 2**63 - 1),
    reason=st.sampled_from(GapReason),
)
batteries = st.builds(
    BatteryLevel,
    t_ns=st.integers(0, 2**63 - 1),
    battery_pct=st.none() | st.integers(0, 100),
    battery_mv=st.none() | st.integers(0, 2**32 - 1),
)
device_events = st.builds(
    wire.DeviceEvent, device=st.text(min_size=1, max_size=10), record=gaps | batteries
)


@given(notifications | markers | leases | device_events)
def test_every_message_round_trips(message: wire.WireMessage) -> None:
    assert wire.decode("redox.part.3.ann", wire.encode(message)) == message


@pytest.mark.parametrize(
    ("message", "body"),
    [
        (
            wire.DeviceEvent("strap", GapEvent(5, "ann/strap", 3, None, GapReason.DISCONNECTED)),
            b'{"device":"strap","gap":{"t_ns":5,"device":"ann/strap","start_ns":3,'
            b'"end_ns":null,"reason":"disconnected"}}',
        ),
        (
            wire.DeviceEvent("strap", GapEvent(9, "ann/strap", 3, 9, GapReason.DISCONNECTED)),
            b'{"device":"strap","gap":{"t_ns":9,"device":"ann/strap","start_ns":3,'
            b'"end_ns":9,"reason":"disconnected"}}',
        ),
        (
            wire.DeviceEvent("strap", BatteryLevel(7, battery_pct=64)),
            b'{"device":"strap","battery":{"t_ns":7,"battery_pct":64,"battery_mv":null}}',
        ),
        (
            wire.DeviceEvent("grip", BatteryLevel(8, battery_mv=3912)),
            b'{"device":"grip","battery":{"t_ns":8,"battery_pct":null,"battery_mv":3912}}',
        ),
    ],
)
def test_device_events_have_the_documented_bodies(message: wire.DeviceEvent, body: bytes) -> None:
    # The body is the contract between gateways and workers of different versions.
    assert wire.encode(message) == body
    assert wire.decode("redox.part.3.ann", body) == message


def test_a_hand_over_gap_is_closed_at_the_grant_under_the_drivers_name() -> None:
    gap = wire.handover_gap("ann", wire.LeaseGranted(42, "strap", "gw2"))
    assert gap == GapEvent(42, "ann/strap", 42, 42, GapReason.HANDOVER)


_GAP = (
    b'{"device": "s", "gap": {"t_ns": 1, "device": %s, "start_ns": %s, "reason": %s, "end_ns": 2}}'
)


@pytest.mark.parametrize(
    ("body", "fault"),
    [
        (b"{", "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"t_ns": 1, "marker": "nap"}', "unknown marker 'nap'"),
        (b'{"t_ns": 1, "marker": "session_end", "rpm": 3}', "bad fields"),
        (b'{"t_ns": 1, "device": "s", "char": "2a37"}', "missing hex"),
        (b'{"t_ns": 1, "marker": "lab", "lab": "ldl", "value": 1}', "'ldl' is not a valid"),
        (b'{"t_ns": 1, "marker": "lab", "lab": "droms", "value": "x"}', "not a number"),
        (b'{"gap": {"t_ns": 1}}', "gap event needs its device id"),
        (b'{"device": "s", "gap": [1]}', "record is not a JSON object"),
        (_GAP % (b'"a/s"', b"1", b'"nap"'), "'nap' is not a valid GapReason"),
        (_GAP % (b'"a/s"', b"1.5", b'"stale"'), "start_ns 1.5 is not an integer"),
        (_GAP % (b'""', b"1", b'"stale"'), "needs the driver's device name"),
        (b'{"device": "s", "battery": {"t_ns": 1, "volts": 3}}', "battery event has bad fields"),
        (b'{"device": "s", "battery": {"t_ns": 1, "battery_pct": true}}', "is not an integer"),
    ],
)
def test_a_bad_body_names_the_subject_and_the_fault(body: bytes, fault: str) -> None:
    with pytest.raises(wire.WireError, match=fault) as caught:
        wire.decode("redox.part.3.ann", body)
    assert str(caught.value).startswith("redox.part.3.ann")


def test_the_server_maps_each_athlete_to_one_partition(nats_server: NatsServer) -> None:
    async def publish() -> dict[str, set[int]]:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await js.add_stream(name=wire.STREAM, subjects=wire.stream_subjects())
        athletes = [f"athlete-{i}" for i in range(37)] + ["ann", "Bob_2", "z"]
        for round_ in range(3):
            for athlete in athletes:
                body = wire.encode(SessionEnd(t_ns=round_))
                await js.publish(wire.raw_subject(athlete), body)
        seen: dict[str, set[int]] = {}
        sub = await js.subscribe(wire.stream_subjects()[0], ordered_consumer=True)
        for _ in range(3 * len(athletes)):
            msg = await sub.next_msg(timeout=10)
            partition, athlete = wire.athlete_of(msg.subject)
            seen.setdefault(athlete, set()).add(partition)
        await nc.close()
        return seen

    seen = asyncio.run(publish())
    assert len(seen) == 40
    assert all(len(partitions) == 1 for partitions in seen.values())
    used = set().union(*seen.values())
    assert used <= set(range(wire.DEFAULT_PARTITIONS))
    assert len(used) > 4, f"40 athletes hashed into only {sorted(used)}"
    # What a worker computes before any message arrives (which athletes' Home Assistant
    # entities a partition announces; migrate's outboxes) is where the server put them.
    assert {a: {wire.partition_of(a)} for a in seen} == seen


def test_a_resend_with_the_same_msg_id_is_dropped_by_the_server(nats_server: NatsServer) -> None:
    async def publish_twice() -> tuple[bool | None, int]:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await js.add_stream(name=wire.STREAM, subjects=wire.stream_subjects())
        headers = {wire.MSG_ID_HEADER: wire.msg_id("gw1", 7, 42)}
        body = wire.encode(SessionEnd(t_ns=1))
        await js.publish(wire.raw_subject("ann"), body, headers=headers)
        ack = await js.publish(wire.raw_subject("ann"), body, headers=headers)
        info = await js.stream_info(wire.STREAM)
        await nc.close()
        return ack.duplicate, info.state.messages

    duplicate, stored = asyncio.run(publish_twice())
    assert duplicate is True
    assert stored == 1
