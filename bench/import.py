"""How fast history imports: a year of mornings, a season of FIT activities.

Prints figures, asserts nothing. Each import runs the command's own code (the live gate,
processors and store, no sinks) on files written here:

* a year of daily RR files (one interval per line, named as Elite HRV names them), each a
  6.5-min reading of the resting-athlete model — target: the year in <= 10 s;
* a season of FIT activities (1 Hz records with heart rate and power, hrv messages, Moxy
  SmO2 developer fields), written with Garmin's encoder, beside the bare decode of the same
  files by garmin-fit-sdk (what the import uses) and fitdecode, in the same run.

Usage: PYTHONPATH=. python3 bench/import.py [--days 365] [--activities 40] [--hours 1]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devices.emulated.rr_model import RestingAthlete, resting_rr
from devices.emulated.signals import EffortSchedule, SmO2Parameters, smo2_series
from streamer.app.assembly import App
from streamer.config import Config
from streamer.importing.feed import import_mornings, import_sessions
from streamer.importing.fit_activities import read_fit_activity
from streamer.importing.rr_recordings import read_rr_recording
from tests.fit_writer import write_activity


def write_year(folder: Path, days: int) -> list[Path]:
    folder.mkdir()
    start = dt.date(2025, 1, 1)
    paths = []
    for d in range(days):
        athlete = RestingAthlete(hr_bpm=46 + 4 * np.sin(d / 9), rsa_ms=280)
        rr = resting_rr(athlete, 390.0, seed=d)
        path = folder / f"{(start + dt.timedelta(days=d)).isoformat()} 06-30-00.txt"
        path.write_text("\n".join(f"{x:.0f}" for x in rr) + "\n")
        paths.append(path)
    return paths


def write_season(folder: Path, n: int, hours: float) -> list[Path]:
    folder.mkdir()
    paths = []
    duration = 3600.0 * hours
    schedule = EffortSchedule(first_s=600.0, work_s=240.0, rest_s=360.0, count=None)
    for k in range(n):
        t, smo2, thb = smo2_series(duration, schedule, SmO2Parameters(), 1.0, seed=k)
        records: list[dict[str, object]] = [
            {
                "t_s": float(ts),
                "heart_rate": 150 if schedule.is_effort(ts) else 120,
                "power": 300 if schedule.is_effort(ts) else 150,
            }
            for ts in t
        ]
        rr = [0.45] * int(duration / 0.45)
        start = dt.datetime(2025, 3, 1, 17, tzinfo=dt.UTC) + dt.timedelta(days=2 * k)
        paths.append(
            write_activity(
                folder / f"ride{k:03d}.fit",
                start,
                rr_s=rr,
                records=records,
                smo2=list(zip(smo2, thb, strict=True)),
            )
        )
    return paths


def decode_sdk(paths: list[Path]) -> int:
    from garmin_fit_sdk import Decoder, Stream

    n = 0
    for p in paths:
        msgs, _ = Decoder(Stream.from_file(str(p))).read()
        n += sum(len(v) for v in msgs.values() if isinstance(v, list))
    return n


def decode_fitdecode(paths: list[Path]) -> int | None:
    try:
        import fitdecode
    except ImportError:
        return None
    n = 0
    for p in paths:
        with fitdecode.FitReader(str(p)) as reader:
            n += sum(1 for frame in reader if frame.frame_type == fitdecode.FIT_FRAME_DATA)
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--activities", type=int, default=40)
    parser.add_argument("--hours", type=float, default=1.0)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = write_year(root / "rr", args.days)
        t0 = time.perf_counter()
        recordings = [read_rr_recording(f) for f in files]
        t1 = time.perf_counter()
        with App.from_config(Config(), store=root / "rr.sqlite3", live=False) as app:
            summary = asyncio.run(import_mornings(app, "bench", recordings))
        t2 = time.perf_counter()
        beats = sum(len(r.rr_ms) for r in recordings)
        print(
            f"RR year: {args.days} files, {beats:,} beats: read {t1 - t0:.2f} s, "
            f"imported {t2 - t1:.2f} s, {t2 - t0:.2f} s in all (target 10 s); "
            f"{args.days / (t2 - t0):.0f} readings/s; {summary.line()}"
        )

        fits = write_season(root / "fit", args.activities, args.hours)
        size = sum(p.stat().st_size for p in fits) / 2**20
        t0 = time.perf_counter()
        n_sdk = decode_sdk(fits)
        t1 = time.perf_counter()
        n_fd = decode_fitdecode(fits)
        t2 = time.perf_counter()
        activities = [read_fit_activity(p) for p in fits]
        t3 = time.perf_counter()
        with App.from_config(Config(), store=root / "fit.sqlite3", live=False) as app:
            summary = asyncio.run(import_sessions(app, "bench", activities))
        t4 = time.perf_counter()
        samples = sum(len(a.samples) for a in activities)
        print(f"FIT season: {len(fits)} activities of {args.hours:g} h, {size:.1f} MiB")
        print(f"  bare decode, garmin-fit-sdk: {t1 - t0:.2f} s ({n_sdk:,} messages)")
        if n_fd is None:
            print("  bare decode, fitdecode: not installed (pip install '.[peers]')")
        else:
            print(f"  bare decode, fitdecode:      {t2 - t1:.2f} s ({n_fd:,} messages)")
        print(
            f"  import: read {t3 - t2:.2f} s + pipeline {t4 - t3:.2f} s = {t4 - t2:.2f} s, "
            f"{samples:,} samples ({samples / (t4 - t3):,.0f}/s in the pipeline), "
            f"{len(fits) / (t4 - t2):.2f} activities/s; {summary.line()}"
        )


if __name__ == "__main__":
    main()
