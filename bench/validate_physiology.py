"""Validation of every measurement a verdict rests on, in one run: prints the tables.

* HRV (``bench/validate_hrv.py``): the quality gate's false rejects on clean readings
  (synthetic slow-breathing athletes, a broad HR × RSA × breathing grid, real NSRDB
  windows) and its detection of ectopic readings (injected PVC/PAC/missed/extra beats at
  1–20% burden, bigeminy, trigeminy, the Polar H10 recording); RMSSD error of accepted
  readings against truth (the clean series before injection; the labelled NN intervals of
  MIT-BIH 100) beside NeuroKit2's kubios method and hrv-analysis.
* SmO2 (``bench/validate_smo2.py``): T½, T95 and τ against synthetic recoveries of known
  parameters, with and without a power column, and the efforts of the real Moxy files.

Targets (issue 9): ≥ 99% of clean readings accepted; ≥ 95% of readings with ≥ 10% ectopic
burden rejected; accepted readings' RMSSD within 5% of truth for ≥ 95% of readings with
≤ 2% ectopy; SmO2 T95 within 5 s or 15% of truth.

    python3 bench/validate_physiology.py [--readings 200]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import validate_hrv
import validate_smo2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=200, help="slow-breathing athletes")
    args = parser.parse_args()
    print("# HRV: quality gate and ectopic correction")
    print(validate_hrv.report(args.readings))
    print("\n# SmO2: recovery timing")
    print(validate_smo2.report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
