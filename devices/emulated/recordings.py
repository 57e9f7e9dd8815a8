"""Real recordings to replay through the emulated chest strap and Moxy.

The files live in the shared data folder (see its README for provenance and licences):

* ``nsr2db/nsrNNN_rr_secs.txt`` — one value per line in seconds; the first line is the
  time of the first beat, not an interval, and is skipped;
* ``polar_h10/polar_h10.csv`` — ``time,ecg,hr,rr``; ``rr`` (ms) is filled only on rows
  where the strap reported a beat;
* ``moxy/moxy_intervals_excerpt.csv`` — ``time,smo2_live,smo2_avg,thb`` every 2 s after
  a ``#`` comment line; ``smo2_live`` is the unsmoothed value.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from devices.emulated.signals import FloatArray


def nsr2db_rr_ms(path: Path) -> FloatArray:
    """RR intervals (ms) of an nsr2db ``*_rr_secs.txt`` file, skipping its start-time line."""
    values = np.loadtxt(path, dtype=np.float64, ndmin=1)
    if values.size < 2:
        raise ValueError(f"{path}: needs a start time and at least one RR interval")
    rr: FloatArray = values[1:] * 1000.0
    return rr


def polar_h10_rr_ms(path: Path) -> FloatArray:
    """The strap-reported RR intervals (ms) of the Polar H10 CSV, in recording order."""
    with path.open(newline="") as handle:
        rows = csv.DictReader(handle)
        if rows.fieldnames is None or "rr" not in rows.fieldnames:
            raise ValueError(f"{path}: expected a CSV with an 'rr' column")
        values = [float(row["rr"]) for row in rows if row["rr"]]
    return np.array(values, dtype=np.float64)


def moxy_smo2_pct(path: Path) -> FloatArray:
    """The live (unsmoothed) SmO2 values (%) of the Moxy excerpt, one per 2 s."""
    with path.open(newline="") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    rows = csv.DictReader(lines)
    if rows.fieldnames is None or "smo2_live" not in rows.fieldnames:
        raise ValueError(f"{path}: expected a CSV with a 'smo2_live' column")
    return np.array([float(row["smo2_live"]) for row in rows], dtype=np.float64)
