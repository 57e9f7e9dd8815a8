"""Start-up cost of the command line: wall time and peak RSS beside the targets.

Run from the repository root: ``python bench/startup.py [--repeat N]``. Each command runs
as a fresh subprocess N times (default 7); the table shows the best wall time and the
largest peak RSS. The floor is ``python -c pass``: what the interpreter costs before any
of our code runs.

Peak RSS is the child's own ``VmHWM`` (``/proc/self/status``, read at exit). Its
``ru_maxrss`` would not do: Linux carries the high-water mark of the image a child was
forked from across ``exec``, so every child would read at least this script's own RSS.
Without ``/proc`` the bench falls back to ``ru_maxrss`` from ``os.wait4`` and says so.

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

HWM_PREFIX = "startup-bench VmHWM kB: "
PRELUDE = f"""\
import atexit, os
def _report_hwm():
    with open('/proc/self/status') as status:
        kib = next(line.split()[1] for line in status if line.startswith('VmHWM:'))
    os.write(2, b'\\n{HWM_PREFIX}' + kib.encode() + b'\\n')
if os.path.exists('/proc/self/status'):
    atexit.register(_report_hwm)
"""
"""Run first in each child: prints the child's peak RSS to stderr as it exits."""


@dataclass(frozen=True)
class Case:
    """One command line and its targets (None: no target, shown for comparison)."""

    label: str
    code_and_args: tuple[str, ...]
    """``python -c CODE ARGS...``"""
    max_s: float | None = None
    max_mib: float | None = None


CASES = (
    Case("python -c pass", ("pass",)),
    Case("redox-streamer --help", (ENTRY, "--help"), 0.3, 50.0),
    Case("redox-streamer --version", (ENTRY, "--version"), 0.3, 50.0),
    Case("redox-streamer analyze --help", (ENTRY, "analyze", "--help")),
)


def measure(code_and_args: tuple[str, ...], env: dict[str, str]) -> tuple[float, float, bool]:
    """(wall seconds, peak RSS MiB, whether that is VmHWM) of one run; raises if it fails."""
    code, *args = code_and_args
    argv = [sys.executable, "-c", PRELUDE + code, *args]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[3:])} exited {proc.returncode}: {err.strip()}")
    hwm = [line for line in err.splitlines() if line.startswith(HWM_PREFIX)]
    if hwm:
        return wall, int(hwm[-1].removeprefix(HWM_PREFIX)) / 1024, True
    return wall, usage.ru_maxrss / 1024, False


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
    exact = True
    print(f"{'command':<32} {'wall s':>7} {'target':>7} {'':4} {'RSS MiB':>8} {'target':>7}")
    for case in CASES:
        runs = [measure(case.code_and_args, env) for _ in range(args.repeat)]
        wall = min(w for w, _, _ in runs)
        rss = max(r for _, r, _ in runs)
        exact = exact and all(e for _, _, e in runs)
        print(
            f"{case.label:<32} {wall:>7.3f} "
            f"{'' if case.max_s is None else f'{case.max_s:.2f}':>7} "
            f"{_verdict(wall, case.max_s):4} {rss:>8.1f} "
            f"{'' if case.max_mib is None else f'{case.max_mib:.0f}':>7} "
            f"{_verdict(rss, case.max_mib)}"
        )
    if not exact:
        print("no /proc: RSS is ru_maxrss, at least this script's own RSS (see the docstring)")


if __name__ == "__main__":
    main()
