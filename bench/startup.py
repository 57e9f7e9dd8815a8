"""Start-up cost of the command line: wall time and peak RSS beside the targets.

Run from the repository root: ``python bench/startup.py [--repeat N]``. Each command runs
as a fresh subprocess N times (default 7); the table shows the best wall time and the
largest peak RSS (the child's own ``ru_maxrss`` from ``os.wait4``, KiB on Linux). The
floor is ``python -c pass``: what the interpreter costs before any of our code runs.

``redox-streamer`` is run the way its console script runs it (``from streamer.cli import
main``) with this checkout first on ``PYTHONPATH``, so the figures are this tree's and do
not include a launcher such as a pyenv shim.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ENTRY = "import sys; from streamer.cli import main; sys.exit(main())"
"""What the ``redox-streamer`` console script does (see pyproject's [project.scripts])."""


@dataclass(frozen=True)
class Case:
    """One command line and its targets (None: no target, shown for comparison)."""

    label: str
    argv: tuple[str, ...]
    max_s: float | None = None
    max_mib: float | None = None


CASES = (
    Case("python -c pass", (sys.executable, "-c", "pass")),
    Case("redox-streamer --help", (sys.executable, "-c", ENTRY, "--help"), 0.3, 50.0),
    Case("redox-streamer --version", (sys.executable, "-c", ENTRY, "--version"), 0.3, 50.0),
    Case("redox-streamer analyze --help", (sys.executable, "-c", ENTRY, "analyze", "--help")),
)


def measure(argv: tuple[str, ...], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one run of ``argv``; raises if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait4 gives this child's own rusage; getrusage(RUSAGE_CHILDREN) would be the maximum
    # over every child so far, hiding a small command measured after a big one.
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {err.strip()}")
    return wall, usage.ru_maxrss / 1024


def _verdict(value: float, limit: float | None) -> str:
    if limit is None:
        return ""
    return "ok" if value <= limit else "OVER"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per command (default 7)")
    args = parser.parse_args()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    print(f"best of {args.repeat} runs; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"{'command':<32} {'wall s':>7} {'target':>7} {'':4} {'RSS MiB':>8} {'target':>7}")
    for case in CASES:
        runs = [measure(case.argv, env) for _ in range(args.repeat)]
        wall = min(w for w, _ in runs)
        rss = max(r for _, r in runs)
        print(
            f"{case.label:<32} {wall:>7.3f} "
            f"{'' if case.max_s is None else f'{case.max_s:.2f}':>7} "
            f"{_verdict(wall, case.max_s):4} {rss:>8.1f} "
            f"{'' if case.max_mib is None else f'{case.max_mib:.0f}':>7} "
            f"{_verdict(rss, case.max_mib)}"
        )


if __name__ == "__main__":
    main()
