"""The defects issue 9 measured, pinned on labelled and synthetic data with known truth.

Truth is never our own output: the clean series before injection, the cardiologists'
labels of MIT-BIH record 100, or a recording known to be ectopic (Polar H10).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from devices.emulated.rr_model import Event, RestingAthlete, inject, resting_rr, rmssd
from processors.hrv import hrv_time
from processors.morning import morning_reading
from processors.rr_clean import clean_rr, quality_gate


def slow_breathing_athletes(n: int, seed: int = 7) -> list[np.ndarray]:
    """Supine, 40–55 bpm, 5–7 breaths/min, 200–450 ms of RSA: the product's users."""
    rng = np.random.default_rng(seed)
    return [
        resting_rr(
            RestingAthlete(
                hr_bpm=rng.uniform(40, 55),
                rsa_ms=rng.uniform(200, 450),
                breaths_per_min=rng.uniform(5, 7),
                breath_cv=rng.uniform(0.1, 0.25),
                jitter_ms=rng.uniform(3, 10),
            ),
            300.0,
            seed=seed * 1000 + k,
        )
        for k in range(n)
    ]


def nn_rmssd(rr: np.ndarray) -> float:
    c = clean_rr(rr)
    return hrv_time(c.nn_ms, c.breaks, c.estimated).rmssd_ms


def test_slow_breathing_athletes_with_large_rsa_pass_the_gate() -> None:
    # The previous rule (beats > 20% off the local median) rejected 57.5% of such readings.
    readings = slow_breathing_athletes(120)
    assert max(rmssd(r) for r in readings) > 140.0
    rejected = [r for r in readings if not quality_gate(r).accepted]
    assert rejected == []


def test_slow_breathing_morning_readings_are_accepted_with_their_rmssd() -> None:
    for rr in slow_breathing_athletes(10, seed=11):
        full = np.concatenate([rr, rr[:100]])  # 60-s stabilisation + 5-min span
        reading = morning_reading(full)
        assert reading.accepted, reading.reject_reason
        assert reading.rmssd_ms is not None
        assert reading.rmssd_ms > 40.0


@pytest.mark.parametrize("event", list(Event))
def test_ten_percent_ectopic_burden_is_rejected(event: Event) -> None:
    for k, clean in enumerate(slow_breathing_athletes(20, seed=3)):
        assert not quality_gate(inject(clean, event, 0.10, seed=k).rr_ms).accepted


@pytest.mark.parametrize("every", [2, 3])
def test_bigeminy_and_trigeminy_are_rejected(every: int) -> None:
    for k, clean in enumerate(slow_breathing_athletes(10, seed=5)):
        assert not quality_gate(inject(clean, Event.PVC, 0.0, seed=k, every=every).rr_ms).accepted


def test_polar_h10_recording_is_rejected(recordings: Path) -> None:
    with (recordings / "polar_h10" / "polar_h10.csv").open() as fh:
        rr = np.array([float(r["rr"]) for r in csv.DictReader(fh) if r["rr"]])
    assert not quality_gate(rr).accepted


def test_one_premature_beat_in_300_leaves_rmssd_at_its_clean_value() -> None:
    # Moving the beat after the premature one (NeuroKit2's peak-moving) left RMSSD +18%.
    clean = resting_rr(RestingAthlete(hr_bpm=60, rsa_ms=100, breaths_per_min=12), 300, seed=1)
    with_pvc = inject(clean, Event.PVC, 1 / 300, seed=3)
    assert with_pvc.n_events == 1
    assert rmssd(with_pvc.rr_ms) > 1.3 * rmssd(clean)
    assert nn_rmssd(with_pvc.rr_ms) == pytest.approx(rmssd(clean), rel=0.01)


def test_two_percent_ectopy_is_corrected_to_within_five_percent_of_truth() -> None:
    # The target: RMSSD within 5% of truth for >= 95% of readings with <= 2% ectopy,
    # over 400 readings (a few dozen are too few to tell 95% from 92%).
    readings = slow_breathing_athletes(100, seed=101)
    errors = {
        event: np.array(
            [
                abs(nn_rmssd(inject(clean, event, 0.02, seed=k).rr_ms) / rmssd(clean) - 1.0)
                for k, clean in enumerate(readings)
            ]
        )
        for event in (Event.PVC, Event.PAC, Event.MISSED, Event.EXTRA)
    }
    pooled = np.concatenate(list(errors.values()))
    assert np.mean(pooled <= 0.05) >= 0.95
    assert all(np.mean(e <= 0.05) >= 0.9 for e in errors.values())
    assert pooled.max() < 0.10


@pytest.mark.parametrize("event", [Event.INTERPOLATED_PVC, Event.PAC_RUN])
def test_interpolated_pvcs_and_pac_runs_are_mostly_corrected(event: Event) -> None:
    # Found by an independent review: a merged interpolated PVC counted as measured, and
    # the beats inside a PAC run sit on the line through their neighbours.
    readings = slow_breathing_athletes(60, seed=202)
    corrected, raw = [], []
    for k, clean in enumerate(readings):
        injected = inject(clean, event, 0.01, seed=k).rr_ms
        corrected.append(abs(nn_rmssd(injected) / rmssd(clean) - 1.0))
        raw.append(abs(rmssd(injected) / rmssd(clean) - 1.0))
    assert np.mean(np.array(corrected) <= 0.05) >= 0.9
    assert np.median(corrected) < 0.1 * np.median(raw)


def test_compensatory_pause_over_two_seconds_stays_out_of_rmssd() -> None:
    # At 45 bpm a PVC's pause (two sinus cycles minus the coupling) passes 2000 ms; it was
    # cut as implausible and the premature beat merged into a "measured" interval: +35%.
    i = np.arange(300)
    clean = np.round(1330 + 60 * np.sin(2 * np.pi * i / 8.0))
    k = 150
    pause = clean[k] + clean[k + 1] - 550.0
    assert pause > 2000.0
    with_pvc = np.concatenate([clean[:k], [550.0, pause], clean[k + 2 :]])
    assert nn_rmssd(with_pvc) == pytest.approx(rmssd(clean), rel=0.01)


def test_premature_beat_at_the_end_of_a_reading_stays_out_of_rmssd() -> None:
    clean = resting_rr(RestingAthlete(hr_bpm=58, rsa_ms=80, breaths_per_min=12), 300, seed=8)
    assert nn_rmssd(np.append(clean, 0.45 * clean[-1])) == pytest.approx(rmssd(clean), rel=0.01)


def mitdb100(recordings: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with (recordings / "mitdb100" / "mitdb100_rr_labelled.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return (
        np.array([float(r["t_s"]) for r in rows]),
        np.array([float(r["rr_ms"]) for r in rows]),
        np.array([r["label"] == "N" for r in rows]),
    )


def test_mitdb100_windows_are_accepted_with_rmssd_near_their_labelled_nn_intervals(
    recordings: Path,
) -> None:
    # Before: every 5-min window +15.5% to +26% above the RMSSD of its NN intervals.
    t, rr, normal = mitdb100(recordings)
    nn = normal.copy()
    nn[1:] &= normal[:-1]
    nn[0] = False
    errors = []
    for w0 in range(0, 1800, 300):
        idx = np.flatnonzero((t > w0) & (t <= w0 + 300))
        both = nn[idx[:-1]] & nn[idx[1:]]
        d = np.diff(rr[idx])[both]
        truth = float(np.sqrt(np.mean(d * d)))
        assert quality_gate(rr[idx]).accepted
        errors.append(nn_rmssd(rr[idx]) / truth - 1.0)
    # The last window holds a 697 → 889 ms pair the annotators labelled normal (12% early);
    # taken as an ectopic pair it costs that window ~8%.
    assert all(abs(e) <= 0.05 for e in errors[:5]), errors
    assert abs(errors[5]) <= 0.09, errors


def test_sinus_beats_of_a_healthy_recording_are_left_alone(recordings: Path) -> None:
    # Before: 3.6% of the beats of this hour were "corrected" (and 7.9% of nsr001's 2nd hour).
    for name, hour in (("nsr003", 1), ("nsr001", 1)):
        rr = np.loadtxt(recordings / "nsr2db" / f"{name}_rr_secs.txt")[1:] * 1000.0
        ends = np.cumsum(rr) / 3.6e6
        segment = rr[(ends > hour) & (ends <= hour + 1)]
        assert clean_rr(segment).corrected_pct < 0.5
