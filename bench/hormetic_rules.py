"""How often ``hr_grip_flat`` and ``power_plateau`` fire on synthetic athletes.

Prints figures, asserts nothing. ``hr_grip_flat``: steady athletes whose morning resting HR
is normal noise around their baseline (independent days, and days correlated ρ = 0.5),
grip flat and tested every other day — the share of days the rule is met by chance, for
"elevated" at mean + 0.5·SD (the normal band) and mean + 1·SD (the default); and the share
of three-day rises of +1, +1.5 and +2 SD that it catches. ``power_plateau``: a session
every other day at one RPE, session power with a 3% session-to-session CV, over three
weeks — the share found a plateau when power truly rises 0%, 2%, 5% and 10% in them.

Run: ``PYTHONPATH=. python3 bench/hormetic_rules.py``.
"""

from __future__ import annotations

import numpy as np

from processors.hormetic import GripOnDay, hr_grip_run
from processors.plateau import NS_PER_DAY, PlateauSession, power_plateau

RNG = np.random.default_rng(14)
ATHLETES = 400
DAYS = 120  # days evaluated per athlete after a 40-day baseline
GRIPS = [GripOnDay(back, 50.0 + 0.7 * float(RNG.standard_normal())) for back in range(0, 40, 2)]


def _hr(days: int, rho: float) -> np.ndarray:
    """Resting HR (bpm): mean 51, SD 2, AR(1) with ``rho``."""
    e = RNG.standard_normal(days)
    x = np.empty(days)
    x[0] = e[0]
    for i in range(1, days):
        x[i] = rho * x[i - 1] + np.sqrt(1 - rho**2) * e[i]
    return 51.0 + 2.0 * x


def _met(history: np.ndarray, elevated_sd: float) -> bool:
    # The grip tests: flat, every other day (shifted so a run of 3 days always has ≥ 1).
    return hr_grip_run(history, GRIPS, elevated_sd=elevated_sd).triggered


def chance_rate(elevated_sd: float, rho: float) -> float:
    met = total = 0
    for _ in range(ATHLETES // 4):
        hr = _hr(40 + DAYS, rho)
        for d in range(40, 40 + DAYS):
            met += _met(hr[: d + 1], elevated_sd)
            total += 1
    return met / total


def caught(rise_sd: float, elevated_sd: float) -> float:
    hits = 0
    for _ in range(ATHLETES):
        hr = _hr(43, 0.0)
        hr[-3:] += rise_sd * 2.0
        hits += _met(hr, elevated_sd)
    return hits / ATHLETES


def plateau_share(rise: float) -> float:
    found = 0
    days = list(range(0, 21, 2))
    for _ in range(ATHLETES):
        sessions = [
            PlateauSession(
                d * NS_PER_DAY,
                5.0,
                200.0 * (1.0 + rise * d / 21.0) * (1.0 + 0.03 * float(RNG.standard_normal())),
            )
            for d in days
        ]
        found += power_plateau(sessions, days[-1] * NS_PER_DAY).triggered
    return found / ATHLETES


def main() -> None:
    print("hr_grip_flat — days met by chance (steady athletes, grip flat):")
    for sd in (0.5, 1.0):
        for rho in (0.0, 0.5):
            print(
                f"  elevated from mean + {sd:g}·SD, day-to-day ρ {rho:g}: "
                f"{100 * chance_rate(sd, rho):.2f}% of days"
            )
    print("hr_grip_flat — three-day rises caught (elevated from mean + 1·SD):")
    for rise in (1.0, 1.5, 2.0):
        print(f"  +{rise:g} SD: {100 * caught(rise, 1.0):.0f}%")
    print("power_plateau — found a plateau (11 sessions in 21 days, CV 3%):")
    for rise in (0.0, 0.02, 0.05, 0.10):
        print(f"  true rise {100 * rise:.0f}% over 3 weeks: {100 * plateau_share(rise):.0f}%")


if __name__ == "__main__":
    main()
