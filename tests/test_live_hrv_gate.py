"""Live HRV windows carry the morning reading's quality verdict (issue 9, item 3).

Replaying the Polar H10 recording (frequent premature ventricular beats) used to publish
rolling RMSSD of 370–460 ms; a rejected window now says why and carries no numbers.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.codecs import CODECS
from devices.emulated.rr_model import Event, RestingAthlete, inject, resting_rr, rmssd
from devices.records import HeartRateSample, SensorContact
from processors.hrv_stream import LiveHrv
from processors.rr_clean import abnormal_beats, beat_deviation, neighbour_deviation
from tests.mqtt_helpers import ThreadSubscriber
from tests.servers import Mosquitto

ROOT = Path(__file__).resolve().parents[1]


def polar_rr(recordings: Path) -> tuple[list[int], list[float]]:
    with (recordings / "polar_h10" / "polar_h10.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["rr"]]
    return [int(float(r["time"])) for r in rows], [float(r["rr"]) for r in rows]


def write_strap_recording(path: Path, times_ns: list[int], rr_ms: list[float]) -> None:
    """Raw Heart Rate Measurement notifications, one per beat, as JSON Lines."""
    codec = CODECS["2a37"]
    with path.open("w") as fh:
        for t, rr in zip(times_ns, rr_ms, strict=True):
            hr = round(60_000 / rr)
            sample = HeartRateSample(t, hr, (rr,), SensorContact.DETECTED)
            line = {"t_ns": t, "device": "strap", "char": "2a37", "hex": codec.encode(sample).hex()}
            fh.write(json.dumps(line) + "\n")


def live_windows(rr: list[float] | np.ndarray) -> list:  # type: ignore[type-arg]
    tracker = LiveHrv()
    return [w for w in (tracker.add(float(x)) for x in rr) if w is not None]


def test_live_windows_of_the_polar_h10_recording_are_rejected_without_numbers(
    recordings: Path,
) -> None:
    windows = live_windows(polar_rr(recordings)[1])
    assert len(windows) > 600
    assert not any(w.verdict.accepted for w in windows)
    assert all(w.metrics is None for w in windows)
    assert all(
        "deviate more than 20% from their neighbours" in str(w.verdict.reject_reason)
        for w in windows
    )


def test_live_windows_of_a_slow_breathing_athlete_are_accepted() -> None:
    rr = resting_rr(RestingAthlete(hr_bpm=42, rsa_ms=420, breaths_per_min=5.5), 600, seed=4)
    windows = live_windows(rr)
    assert windows
    assert all(w.verdict.accepted for w in windows)
    assert all(w.metrics is not None for w in windows[5:])


def test_one_premature_beat_stays_out_of_the_live_rmssd() -> None:
    clean = resting_rr(RestingAthlete(hr_bpm=60, rsa_ms=120, breaths_per_min=12), 120, seed=2)
    with_pvc = inject(clean, Event.PVC, 0.0, seed=1, every=len(clean) - 20).rr_ms
    assert rmssd(with_pvc) > 1.2 * rmssd(clean)  # the PVC alone would add > 20%
    last = live_windows(with_pvc)[-1]
    assert last.verdict.accepted
    assert last.metrics is not None
    assert last.metrics.rmssd_ms == pytest.approx(rmssd(clean[-55:]), rel=0.1)


beats = st.lists(st.floats(min_value=300.0, max_value=1800.0), min_size=1, max_size=120)


@settings(max_examples=80, deadline=None)
@given(rr=beats, gap_at=st.lists(st.integers(min_value=1, max_value=119), max_size=3))
def test_live_judge_flags_the_beats_the_batch_gate_flags(
    rr: list[float], gap_at: list[int]
) -> None:
    breaks = np.zeros(len(rr), dtype=bool)
    breaks[[i for i in gap_at if i < len(rr)]] = True
    tracker = LiveHrv(window_beats=max(len(rr), 4))
    for value, gap in zip(rr, breaks.tolist(), strict=True):
        tracker.add(value, after_gap=gap)
    tracker.mark_gap()
    expected = int(abnormal_beats(rr, breaks).sum())
    if len(rr) >= 4:
        window = tracker.current()
        assert window is not None
        assert window.verdict.n_abnormal == expected
        assert window.verdict.n_beats == len(rr)


@settings(max_examples=80, deadline=None)
@given(
    run=st.lists(st.floats(min_value=300.0, max_value=1800.0), min_size=1, max_size=40),
    data=st.data(),
)
def test_beat_deviation_equals_the_batch_neighbour_deviation(
    run: list[float], data: st.DataObject
) -> None:
    i = data.draw(st.integers(min_value=0, max_value=len(run) - 1))
    segment = run[max(0, i - 5) : i + 6]
    assert beat_deviation(segment, i - max(0, i - 5)) == pytest.approx(
        float(neighbour_deviation(run)[i]), rel=1e-12, abs=1e-12
    )


def test_replayed_polar_h10_recording_gives_rejected_hrv_results_only(
    recordings: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from streamer.cli import main

    recording = tmp_path / "polar.jsonl"
    write_strap_recording(recording, *polar_rr(recordings))
    assert main(["replay", str(recording), "--json"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    hrv = [r for r in results if r["kind"] == "hrv"]
    assert len(hrv) > 50
    for r in hrv:
        assert r["accepted"] is False
        assert r["rmssd_ms"] is None
        assert r["ln_rmssd"] is None
        assert "deviate more than 20%" in r["reject_reason"]


@pytest.mark.integration
def test_polar_h10_replay_publishes_no_untrustworthy_hrv_to_mosquitto(
    recordings: Path, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    recording = tmp_path / "polar.jsonl"
    write_strap_recording(recording, *polar_rr(recordings))
    sub = ThreadSubscriber(mosquitto.port)
    try:
        sub.sync()  # the subscription is in place before the replay publishes
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "streamer.cli",
                "replay",
                str(recording),
                "--athlete",
                "polar",
                "--mqtt",
                mosquitto.url,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        # The replay's last HRV result is published before it exits; the subscriber reads
        # the broker's copy: wait for the count the replay printed.
        printed = sum(" hrv: " in line for line in result.stdout.splitlines())
        assert printed > 50
        sub.wait_for(
            lambda: len(sub.payloads("redox/polar/hrv")) >= printed, f"{printed} HRV messages"
        )
    finally:
        sub.close()
    for payload in sub.payloads("redox/polar/hrv"):
        message = json.loads(payload)
        assert message["accepted"] is False
        assert message["rmssd_ms"] is None
        assert message["abnormal_pct"] > 10.0
