"""Lab markers entered by hand: GSH:GSSG, dROMs and the urine lipid-peroxidation dipstick.

These are lab assays, not wearables (ARTICLE, "Biomarkers for oxidative stress"): the
athlete enters a value with the draw's timing (:class:`LabTiming`), and the evaluators
below turn it into verdicts of the catalogue rules (:mod:`processors.rules`), thresholds
from :class:`~processors.rules.RuleThresholds` (defaults and their sources in
:mod:`processors.physiology`).

Timing. The bands are for *resting* draws — ``fasted`` or ``pre-training`` (for dROMs, the
article's "after ten minutes of rest"). A ``post-45min`` draw is not judged against them:
one high-intensity session can drop GSH:GSSG by 40% within 15 min (GSH_GSSG_HIIT_DROP), so
a post-session value below 100:1 says the session happened, not that the athlete leans
oxidative. Post draws are stored, published and drawn, their evaluations are undecided
(``active`` None: they neither raise nor clear an alert), and a GSH:GSSG post draw is set
against the same day's last resting draw (its change in %), the comparison the article's
three draws are for. A dROMs post draw never enters the baseline.

``gsh_gssg_low`` (pull_back) — a resting ratio below ``gsh_gssg_low_ratio`` (100:1). Hysteresis:
    from ``gsh_gssg_trained_low_ratio`` (150:1, the trained range's floor) up it is not met (an
    open alert clears); between the two it is undecided (an open alert stays open, none is
    raised) — "not leaning" is not yet "back in the normal band".
``gsh_gssg_high`` (info) — a resting ratio above ``gsh_gssg_high_ratio`` (400:1): "likely
    over-supplemented (blunting the signal)". A finding reported in the lab result
    (``finding``), never an alert.
``droms_rise`` (warning) — a resting dROMs value more than ``droms_rise_fraction`` (35%) above the
    athlete's own baseline: the median of their last ``droms_baseline_values`` (5) earlier
    resting dROMs. With fewer than ``droms_baseline_min_values`` (3) there is no baseline
    and no verdict (undecided, and the result says how many more are needed).
``lipid_dipstick_positive`` (pull_back) — a positive strip. A negative strip says nothing
    on its own (the strip only reads above 5 µmol/L; false negatives are common in
    well-adapted athletes): it is never a finding that all is well. It does end an open
    dipstick alert — the condition "the last strip was positive" no longer holds — and its
    message says to cross-check with blood.
"""

from __future__ import annotations

import enum
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from processors import physiology as ph
from processors.alerts import RuleEvaluation
from processors.errors import InputError
from processors.rules import DEFAULT_THRESHOLDS, RuleThresholds, evaluation_for


class LabMarker(enum.StrEnum):
    """A lab marker the athlete can enter."""

    GSH_GSSG = "gsh_gssg"
    DROMS = "droms"
    LIPID_DIPSTICK = "lipid_dipstick"


class LabTiming(enum.StrEnum):
    """When the sample was taken (ARTICLE: "fasted, pre-training, and 45 minutes
    post-session gives you three useful data points")."""

    FASTED = "fasted"
    PRE_TRAINING = "pre-training"
    POST_45MIN = "post-45min"

    @property
    def resting(self) -> bool:
        """Whether the bands apply: fasted and pre-training draws are resting ones."""
        return self is not LabTiming.POST_45MIN


MARKER_UNITS: Final = {
    LabMarker.GSH_GSSG: ":1",
    LabMarker.DROMS: "CARR U",
    LabMarker.LIPID_DIPSTICK: "",
}
"""What each marker's value is in (the dipstick's value is 1 positive, 0 negative)."""


class LabInputError(InputError, ValueError):
    """A lab value or timing that means nothing; the message names it and the fix."""


def parse_gsh_gssg(text: str) -> float:
    """A GSH:GSSG ratio from ``180``, ``180:1`` or ``180/1`` (n:1); LabInputError else."""
    raw = text.strip()
    number, sep, one = raw.replace("/", ":").partition(":")
    try:
        ratio = float(number)
        denominator = float(one) if sep else 1.0
    except ValueError:
        raise LabInputError(
            f"GSH:GSSG {text!r} is not a ratio: give it as n:1, e.g. 180 or 180:1"
        ) from None
    if not (math.isfinite(denominator) and denominator > 0):
        raise LabInputError(f"GSH:GSSG {text!r}: the second number must be > 0, e.g. 180:1")
    return check_gsh_gssg(ratio / denominator)


def check_gsh_gssg(ratio: float) -> float:
    """A plausible GSH:GSSG ratio (n:1) as a float; LabInputError names the range."""
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not math.isfinite(ratio):
        raise LabInputError(f"GSH:GSSG {ratio!r} is not a number: give n of n:1, e.g. 180")
    if not ph.GSH_GSSG_MIN <= ratio <= ph.GSH_GSSG_MAX:
        raise LabInputError(
            f"GSH:GSSG {ratio:g}:1 is outside {ph.GSH_GSSG_MIN:g}–{ph.GSH_GSSG_MAX:g}:1: give "
            "reduced over oxidized glutathione (trained people: ~150–300), not a percentage"
        )
    return float(ratio)


def check_droms(value: float) -> float:
    """A plausible dROMs value (CARR U) as a float; LabInputError names the range."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LabInputError(f"dROMs {value!r} is not a number: give CARR U, e.g. 300")
    if not ph.DROMS_MIN_CARR_U <= value <= ph.DROMS_MAX_CARR_U:
        raise LabInputError(
            f"dROMs {value:g} is outside {ph.DROMS_MIN_CARR_U:g}–{ph.DROMS_MAX_CARR_U:g} CARR U "
            "(normal ~250–300; 1 CARR U = 0.08 mg/dL H2O2): give the value in CARR U"
        )
    return float(value)


def parse_dipstick(text: str) -> bool:
    """``positive``/``pos``/``+``/``1`` → True, ``negative``/``neg``/``-``/``0`` → False."""
    word = text.strip().lower()
    if word in ("positive", "pos", "+", "1", "true"):
        return True
    if word in ("negative", "neg", "-", "0", "false"):
        return False
    raise LabInputError(f"lipid dipstick {text!r}: give positive or negative")


def parse_timing(text: str) -> LabTiming:
    """A timing from its name (``fasted``, ``pre-training``, ``post-45min``; ``_`` for
    ``-`` also accepted); LabInputError lists them."""
    word = text.strip().lower().replace("_", "-")
    try:
        return LabTiming(word)
    except ValueError:
        known = ", ".join(t.value for t in LabTiming)
        raise LabInputError(f"timing {text!r}: give one of {known}") from None


@dataclass(frozen=True, slots=True)
class LabVerdict:
    """A lab entry's reading against the rules: ``band`` (what the value means, e.g.
    ``trained``), ``finding`` (an info rule met, e.g. ``gsh_gssg_high``; None if none),
    ``baseline`` (dROMs: the athlete's, CARR U; None without one), ``change_pct`` (dROMs:
    vs that baseline; GSH:GSSG post draw: vs the same day's resting draw), the
    evaluations for the alert book, and ``judged`` (False: not set against the bands)."""

    band: str
    judged: bool
    evaluations: list[RuleEvaluation]
    finding: str | None = None
    baseline: float | None = None
    change_pct: float | None = None
    baseline_values: int = 0


def gsh_gssg_band(ratio: float, th: RuleThresholds = DEFAULT_THRESHOLDS) -> str:
    """The article's band of a resting ratio (n:1)."""
    if ratio < th.gsh_gssg_low_ratio:
        return "leaning_oxidative"
    if ratio < th.gsh_gssg_trained_low_ratio:
        return "below_trained"
    if ratio <= ph.GSH_GSSG_TRAINED_HIGH:
        return "trained"
    if ratio <= th.gsh_gssg_high_ratio:
        return "above_trained"
    return "over_supplemented"


def evaluate_gsh_gssg(
    ratio: float,
    timing: LabTiming,
    resting_same_day: float | None = None,
    thresholds: RuleThresholds = DEFAULT_THRESHOLDS,
) -> LabVerdict:
    """``gsh_gssg_low`` and ``gsh_gssg_high`` for one GSH:GSSG entry (n:1); see the module
    docstring. ``resting_same_day``: the same day's last resting ratio, for a post draw."""
    th = thresholds
    ratio = check_gsh_gssg(ratio)
    evidence = {"gsh_gssg_ratio": ratio}
    if not timing.resting:
        change = None
        if resting_same_day is not None and resting_same_day > 0:
            change = 100.0 * (ratio / resting_same_day - 1.0)
            evidence["resting_same_day_ratio"] = resting_same_day
            evidence["change_from_resting_pct"] = change
        message = (
            f"GSH:GSSG {ratio:g}:1 drawn {timing.value}: not judged against the resting bands "
            f"(one hard session can drop it ~{ph.GSH_GSSG_HIIT_DROP:.0%} within 15 min)"
            + ("" if change is None else f"; {change:+.0f}% against today's resting draw")
        )
        evaluations = [
            evaluation_for(rule, None, message, evidence)
            for rule in ("gsh_gssg_low", "gsh_gssg_high")
        ]
        return LabVerdict("post_session", False, evaluations, change_pct=change)
    band = gsh_gssg_band(ratio, th)
    evidence.update(
        {
            "low_threshold_ratio": th.gsh_gssg_low_ratio,
            "trained_low_ratio": th.gsh_gssg_trained_low_ratio,
            "high_threshold_ratio": th.gsh_gssg_high_ratio,
        }
    )
    low: bool | None
    if ratio < th.gsh_gssg_low_ratio:
        low = True
        low_message = (
            f"GSH:GSSG {ratio:g}:1 ({timing.value}) is below {th.gsh_gssg_low_ratio:g}:1: leaning "
            "toward oxidative stress."
        )
    elif ratio >= th.gsh_gssg_trained_low_ratio:
        low = False
        low_message = (
            f"gsh_gssg_low not met: {ratio:g}:1 ({timing.value}) is at or above "
            f"{th.gsh_gssg_trained_low_ratio:g}:1."
        )
    else:
        low = None
        low_message = (
            f"gsh_gssg_low undecided: {ratio:g}:1 ({timing.value}) is no longer below "
            f"{th.gsh_gssg_low_ratio:g}:1 but not yet back in the trained range "
            f"(from {th.gsh_gssg_trained_low_ratio:g}:1)."
        )
    high = ratio > th.gsh_gssg_high_ratio
    high_message = (
        f"GSH:GSSG {ratio:g}:1 ({timing.value}) is above {th.gsh_gssg_high_ratio:g}:1: likely "
        "over-supplemented (blunting the signal)."
        if high
        else f"gsh_gssg_high not met: {ratio:g}:1 is at or below {th.gsh_gssg_high_ratio:g}:1."
    )
    evaluations = [
        evaluation_for("gsh_gssg_low", low, low_message, evidence),
        evaluation_for("gsh_gssg_high", high, high_message, evidence),
    ]
    return LabVerdict(band, True, evaluations, finding="gsh_gssg_high" if high else None)


def droms_baseline(
    earlier_resting: Sequence[float], thresholds: RuleThresholds = DEFAULT_THRESHOLDS
) -> float | None:
    """The athlete's dROMs baseline (CARR U): the median of the last
    ``droms_baseline_values`` earlier resting values; None with fewer than
    ``droms_baseline_min_values``."""
    th = thresholds
    recent = list(earlier_resting)[-th.droms_baseline_values :]
    if len(recent) < th.droms_baseline_min_values:
        return None
    return float(statistics.median(recent))


def evaluate_droms(
    value: float,
    timing: LabTiming,
    earlier_resting: Sequence[float],
    thresholds: RuleThresholds = DEFAULT_THRESHOLDS,
) -> LabVerdict:
    """``droms_rise`` for one dROMs entry (CARR U) against the athlete's earlier resting
    values (oldest first); see the module docstring."""
    th = thresholds
    value = check_droms(value)
    baseline = droms_baseline(earlier_resting, th)
    used = min(len(earlier_resting), th.droms_baseline_values)
    evidence: dict[str, float] = {"droms_carr_u": value, "baseline_values": float(used)}
    if baseline is not None:
        evidence["baseline_carr_u"] = baseline
        evidence["threshold_carr_u"] = baseline * (1.0 + th.droms_rise_fraction)
    change = None if baseline is None else 100.0 * (value / baseline - 1.0)
    if change is not None:
        evidence["change_pct"] = change
    if not timing.resting:
        message = (
            f"dROMs {value:g} CARR U drawn {timing.value}: not judged (the rule is for a "
            "reading after ten minutes of rest) and not part of the baseline"
        )
        return LabVerdict(
            "post_session",
            False,
            [evaluation_for("droms_rise", None, message, evidence)],
            baseline=baseline,
            change_pct=change,
            baseline_values=used,
        )
    if baseline is None or change is None:
        need = th.droms_baseline_min_values - len(earlier_resting)
        message = (
            f"droms_rise undecided: no baseline yet ({len(earlier_resting)} earlier resting "
            f"dROMs; {th.droms_baseline_min_values} needed, {need} more)"
        )
        return LabVerdict(
            "no_baseline",
            False,
            [evaluation_for("droms_rise", None, message, evidence)],
            baseline_values=used,
        )
    # Rounded to 1e-9 so that "exactly 35% above" stays exactly that (not more).
    active = round(change / 100.0, 9) > th.droms_rise_fraction
    message = (
        f"dROMs {value:g} CARR U ({timing.value}) is {change:+.0f}% against the baseline "
        f"{baseline:g} (median of the last {used} resting values; limit "
        f"+{th.droms_rise_fraction:.0%})."
    )
    if not active:
        message = "droms_rise not met: " + message
    band = "above_baseline" if active else "within_baseline"
    return LabVerdict(
        band,
        True,
        [evaluation_for("droms_rise", active, message, evidence)],
        baseline=baseline,
        change_pct=change,
        baseline_values=used,
    )


def evaluate_dipstick(positive: bool) -> LabVerdict:
    """``lipid_dipstick_positive`` for one strip; see the module docstring."""
    sensitivity = ph.LIPID_DIPSTICK_SENSITIVITY_UMOL_L
    evidence = {"positive": 1.0 if positive else 0.0, "sensitivity_umol_l": sensitivity}
    if positive:
        message = (
            f"Urine lipid-peroxidation dipstick positive (reads above {sensitivity:g} µmol/L)."
        )
        band = "positive"
    else:
        message = (
            "lipid_dipstick_positive not met: the strip is negative, which says nothing on its "
            f"own (it reads only above {sensitivity:g} µmol/L): cross-check with blood every "
            f"{ph.LIPID_DIPSTICK_CROSS_CHECK_WEEKS} weeks."
        )
        band = "negative"
    return LabVerdict(
        band, True, [evaluation_for("lipid_dipstick_positive", positive, message, evidence)]
    )
