"""Record raw notifications to JSON Lines and replay them through the codecs."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices import gatt
from devices.codecs import CODECS, heart_rate, moxy, tindeq
from devices.recording import (
    NotificationRecorder,
    RecordingError,
    iter_records,
    read_recording,
    replay,
)
from devices.records import (
    DeviceRecord,
    ForceSample,
    HeartRateSample,
    SensorContact,
    SmO2Sample,
    TindeqWeight,
)
from tests.codec_strategies import heart_rate_samples, smo2_samples, tindeq_records


async def _collect(path: Path, **kwargs: object) -> list[tuple[str, DeviceRecord]]:
    return [pair async for pair in replay(path, **kwargs)]  # type: ignore[arg-type]


def _session(recordings: Path) -> list[tuple[int, str, str, bytes]]:
    """A 3-device session built from the real recordings: strap RR, Moxy SmO2, grip."""
    notifications: list[tuple[int, str, str, bytes]] = []
    t0 = 1_700_000_000_000_000_000
    with (recordings / "polar_h10" / "polar_h10.csv").open() as f:
        rr_ms = [float(row["rr"]) for row in csv.DictReader(f) if row["rr"]][:120]
    t = t0
    for i in range(0, len(rr_ms), 2):
        chunk = tuple(rr_ms[i : i + 2])
        t += int(sum(chunk) * 1e6)
        sample = HeartRateSample(t, 72, chunk, SensorContact.DETECTED)
        notifications.append((t, "strap", "2a37", heart_rate.encode(sample)))
    with (recordings / "moxy" / "moxy_intervals_excerpt.csv").open() as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))[:40]
    previous = None
    for k, row in enumerate(rows):
        smo2 = round(float(row["smo2_live"]), 1)
        sample = SmO2Sample(t0 + k * 2_000_000_000, smo2, round(float(row["thb"]), 2), k, previous)
        notifications.append((sample.t_ns, "moxy", "moxy", moxy.encode(sample)))
        previous = smo2
    for k in range(20):
        when = t0 + k * 62_500_000
        samples = tuple(ForceSample(when, 20.0 + k + j / 4, (k * 5 + j) * 12_500) for j in range(5))
        notifications.append((when, "grip", "tindeq", tindeq.encode(TindeqWeight(when, samples))))
    notifications.sort(key=lambda n: n[0])
    return notifications


async def test_recorded_session_replays_to_the_records_it_was_recorded_from(
    tmp_path: Path, recordings: Path
) -> None:
    path = tmp_path / "session.jsonl"
    live: list[tuple[str, DeviceRecord]] = []
    with NotificationRecorder(path) as recorder:
        for t_ns, device, char, payload in _session(recordings):
            # what a driver does on each notification: decode it and record the raw bytes
            live.append((device, CODECS[char].decode(payload, t_ns=t_ns)))
            recorder.record(device, char, payload, t_ns=t_ns)
    assert len(live) > 100
    assert await _collect(path, speed=0) == live
    assert list(iter_records(path)) == live


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    records=st.lists(
        st.one_of(
            heart_rate_samples().map(lambda r: ("2a37", r)),
            smo2_samples().map(lambda r: ("moxy", r)),
            tindeq_records().map(lambda r: ("tindeq", r)),
        ),
        max_size=20,
    )
)
def test_any_recorded_records_read_back_identical(
    tmp_path: Path, records: list[tuple[str, DeviceRecord]]
) -> None:
    path = tmp_path / f"prop-{time.monotonic_ns()}.jsonl"
    with NotificationRecorder(path) as recorder:
        for char, record in records:
            recorder.record(f"dev-{char}", char, CODECS[char].encode(record), t_ns=record.t_ns)
    assert list(iter_records(path)) == [(f"dev-{char}", record) for char, record in records]


def test_lines_have_the_documented_fields(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    with NotificationRecorder(path, clock=lambda: 42) as recorder:
        recorder.record("strap-1", gatt.HEART_RATE_MEASUREMENT.upper(), bytearray(b"\x10\x48"))
    assert json.loads(path.read_text()) == {
        "t_ns": 42,
        "device": "strap-1",
        "char": "2a37",  # a UUID is stored as the short name
        "hex": "1048",
    }


async def test_recorder_works_from_an_async_notification_callback(tmp_path: Path) -> None:
    path = tmp_path / "async.jsonl"
    recorder = NotificationRecorder(path)

    async def on_notify(device: str, data: bytearray) -> None:
        recorder.record(device, "2a19", data)
        await asyncio.sleep(0)

    await asyncio.gather(*(on_notify(f"dev{i}", bytearray([i])) for i in range(50)))
    # flushed on every line: readable before the recorder is closed
    assert [n.data[0] for n in read_recording(path)] == list(range(50))
    recorder.close()
    with pytest.raises(RecordingError, match="closed"):
        recorder.record("dev", "2a19", b"\x01")


def test_recording_an_unknown_characteristic_is_refused(tmp_path: Path) -> None:
    with (
        NotificationRecorder(tmp_path / "r.jsonl") as recorder,
        pytest.raises(RecordingError, match="'2a99' has no codec"),
    ):
        recorder.record("dev", "2a99", b"\x00")


def test_flush_every_batches_writes(tmp_path: Path) -> None:
    path = tmp_path / "batched.jsonl"
    with NotificationRecorder(path, flush_every=10) as recorder:
        for i in range(9):
            recorder.record("d", "2a19", bytes([i]), t_ns=i)
        assert path.read_text() == ""
        recorder.record("d", "2a19", b"\x09", t_ns=9)
        assert len(path.read_text().splitlines()) == 10


GOOD = '{"t_ns": 1, "device": "d", "char": "2a19", "hex": "55"}'


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("not json", r"r\.jsonl:2: not JSON"),
        ("[1, 2]", "r.jsonl:2: expected a JSON object, got list"),
        ('{"t_ns": 1, "device": "d", "char": "2a19"}', "r.jsonl:2: missing hex"),
        ('{"t_ns": "1", "device": "d", "char": "2a19", "hex": "55"}', "r.jsonl:2: t_ns '1'"),
        ('{"t_ns": true, "device": "d", "char": "2a19", "hex": "55"}', "r.jsonl:2: t_ns True"),
        ('{"t_ns": 1, "device": "", "char": "2a19", "hex": "55"}', "r.jsonl:2: device ''"),
        ('{"t_ns": 1, "device": "d", "char": "nope", "hex": "55"}', "r.jsonl:2: .*'nope'"),
        ('{"t_ns": 1, "device": "d", "char": "2a19", "hex": "5z"}', "r.jsonl:2: .*'z'"),
    ],
)
def test_malformed_lines_name_their_line_number(
    tmp_path: Path, bad_line: str, message: str
) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(f"{GOOD}\n{bad_line}\n{GOOD}\n")
    with pytest.raises(RecordingError, match=message):
        list(read_recording(path))


async def test_malformed_payload_names_its_line_unless_skipped(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    bad = '{"t_ns": 2, "device": "d", "char": "2a19", "hex": "ff"}'
    path.write_text(f"{GOOD}\n\n{bad}\n{GOOD}\n")
    with pytest.raises(RecordingError, match=r"r\.jsonl:3: 2a19: battery level 255 %"):
        await _collect(path, speed=0)
    assert len(await _collect(path, speed=0, skip_malformed=True)) == 2


async def test_accelerated_replay_keeps_the_recorded_spacing(tmp_path: Path) -> None:
    path = tmp_path / "paced.jsonl"
    with NotificationRecorder(path) as recorder:
        for k in range(11):  # 1 s of notifications, 100 ms apart
            recorder.record("d", "2a19", b"\x50", t_ns=5_000_000_000 + k * 100_000_000)
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []
    before = loop.time()
    async for _ in replay(path, speed=10):
        arrivals.append(loop.time())
    # Each record is due 10 ms after the one before on the replay's own clock, which starts
    # no earlier than `before`: never early. A late record is not made up by delaying the
    # rest (they keep their due times), so gaps may shrink under load; the total may not.
    for k, arrival in enumerate(arrivals):
        assert arrival - before >= k * 0.010 - 1e-6
    assert arrivals[-1] - arrivals[0] < 0.5


async def test_fast_replay_does_not_wait(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    with NotificationRecorder(path) as recorder:
        for k in range(100):  # an hour between notifications
            recorder.record("d", "2a19", b"\x50", t_ns=k * 3_600_000_000_000)
    start = time.monotonic()
    assert len(await _collect(path, speed=0)) == 100
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("speed", [-1.0, float("nan"), float("inf")])
async def test_invalid_speed_is_rejected(tmp_path: Path, speed: float) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(GOOD + "\n")
    with pytest.raises(ValueError, match="speed"):
        await _collect(path, speed=speed)
