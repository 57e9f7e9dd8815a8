"""Benchmark: time-domain HRV of every 60-s window slid by one beat over 24 h of nsr001.

Ours (``processors.hrv.sliding_hrv_time``: cumulative sums, all windows at once) against
hrv-analysis (``get_time_domain_features`` per window; all windows unless --ha-sample) and
NeuroKit2 (``hrv_time`` per window on a random sample, extrapolated), in the same run, on
the same windows of the same raw intervals. Prints per-window times, the ratios and
whether RMSSD is identical. Also times the streaming tracker per beat.

Targets (issue 2): identical RMSSD, ≥ 100× faster than hrv-analysis, ≥ 1000× faster than
NeuroKit2.

    python3 bench/hrv_windows.py [--nk-sample 1000] [--ha-sample 0] [--file PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from processors.hrv import sliding_hrv_time  # noqa: E402
from processors.hrv_stream import HrvTracker, LiveHrv  # noqa: E402

DEFAULT_FILE = REPO / "tests" / "data" / "nsr2db" / "nsr001_rr_secs.txt"
WINDOW_S = 60.0


def best_of(repeat: int, fn: Any) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--nk-sample", type=int, default=1000, help="NeuroKit2 windows timed")
    parser.add_argument("--ha-sample", type=int, default=0, help="hrv-analysis windows (0: all)")
    parser.add_argument("--repeat", type=int, default=7, help="repeats of our run (best taken)")
    args = parser.parse_args()

    rr = np.loadtxt(args.file)[1:] * 1000.0  # first line: time of the first beat
    print(f"{args.file.name}: {rr.size} RR intervals, {rr.sum() / 3.6e6:.2f} h")

    t_ours, windows = best_of(args.repeat, lambda: sliding_hrv_time(rr, window_s=WINDOW_S))
    n_win = windows.start.size
    per_ours = t_ours / n_win
    print(
        f"windows: {n_win} of {WINDOW_S:g} s slid by one beat "
        f"({int(np.median(windows.n_beats))} beats median)"
    )
    print(
        f"ours (cumulative sums, all windows): {t_ours * 1e3:8.2f} ms total, "
        f"{per_ours * 1e9:8.1f} ns/window"
    )

    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    import hrvanalysis

    t_import_ha = time.perf_counter() - t0
    t0 = time.perf_counter()
    import neurokit2 as nk

    t_import_nk = time.perf_counter() - t0
    print(
        f"peer import time: hrv-analysis {t_import_ha:.2f} s, NeuroKit2 {t_import_nk:.2f} s "
        "(not counted)"
    )

    rng = np.random.default_rng(0)
    ha_idx = (
        np.arange(n_win)
        if args.ha_sample <= 0 or args.ha_sample >= n_win
        else np.sort(rng.choice(n_win, args.ha_sample, replace=False))
    )
    ha_rmssd = np.empty(ha_idx.size)
    t0 = time.perf_counter()
    for k, w in enumerate(ha_idx.tolist()):
        seg = rr[windows.start[w] : windows.stop[w]]
        ha_rmssd[k] = hrvanalysis.get_time_domain_features(seg)["rmssd"]
    t_ha = time.perf_counter() - t0
    per_ha = t_ha / ha_idx.size
    print(
        f"hrv-analysis get_time_domain_features: {ha_idx.size} windows in {t_ha:.2f} s, "
        f"{per_ha * 1e6:8.1f} µs/window"
    )

    nk_idx = np.sort(rng.choice(n_win, min(args.nk_sample, n_win), replace=False))
    nk_rmssd = np.empty(nk_idx.size)
    t0 = time.perf_counter()
    for k, w in enumerate(nk_idx.tolist()):
        seg = rr[windows.start[w] : windows.stop[w]]
        out = nk.hrv_time({"RRI": seg, "RRI_Time": np.cumsum(seg) / 1000.0})
        nk_rmssd[k] = float(out["HRV_RMSSD"].iloc[0])
    t_nk = time.perf_counter() - t0
    per_nk = t_nk / nk_idx.size
    print(
        f"NeuroKit2 hrv_time: {nk_idx.size} sampled windows in {t_nk:.2f} s, "
        f"{per_nk * 1e6:8.1f} µs/window -> {per_nk * n_win:.0f} s for all (extrapolated)"
    )

    ours_ha = windows.rmssd_ms[ha_idx]
    ours_nk = windows.rmssd_ms[nk_idx]
    same_ha = int(np.count_nonzero(ours_ha == ha_rmssd))
    same_nk = int(np.count_nonzero(ours_nk == nk_rmssd))
    print(
        f"RMSSD vs hrv-analysis: {same_ha}/{ha_idx.size} bit-identical, "
        f"max |diff| {np.max(np.abs(ours_ha - ha_rmssd)):.3g} ms"
    )
    print(
        f"RMSSD vs NeuroKit2:    {same_nk}/{nk_idx.size} bit-identical, "
        f"max |diff| {np.max(np.abs(ours_nk - nk_rmssd)):.3g} ms"
    )

    ratio_ha, ratio_nk = per_ha / per_ours, per_nk / per_ours
    identical = same_ha == ha_idx.size and same_nk == nk_idx.size
    print(
        f"speed-up vs hrv-analysis: {ratio_ha:10.0f}x  (target >= 100x: "
        f"{'met' if ratio_ha >= 100 else 'NOT met'})"
    )
    print(
        f"speed-up vs NeuroKit2:    {ratio_nk:10.0f}x  (target >= 1000x: "
        f"{'met' if ratio_nk >= 1000 else 'NOT met'})"
    )
    print(f"identical RMSSD: {'yes' if identical else 'no'}")

    # The live path: one beat at a time through the O(1) tracker.
    tracker = HrvTracker(window_s=WINDOW_S)
    beats = rr[(rr >= 200.0) & (rr <= 2000.0)].tolist()
    laps = []
    for _ in range(3):
        tracker.reset()
        t0 = time.perf_counter()
        for value in beats:
            tracker.add(value)
        laps.append(time.perf_counter() - t0)
    print(
        f"streaming HrvTracker: {statistics.median(laps) / len(beats) * 1e6:.2f} µs/beat "
        f"over {len(beats)} beats"
    )
    # What the pipeline runs: each beat judged against its neighbours, then the tracker.
    live_laps = []
    for _ in range(3):
        live = LiveHrv(window_s=WINDOW_S)
        t0 = time.perf_counter()
        for value in beats:
            live.feed(value)
        live_laps.append(time.perf_counter() - t0)
    print(
        f"streaming LiveHrv.feed (gate + tracker, as the pipeline runs it): "
        f"{statistics.median(live_laps) / len(beats) * 1e6:.2f} µs/beat"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
