"""The rule catalogue and the evaluators that turn measurements into rule verdicts.

Every rule has an id, a severity, advice and a source. Sources cite what ships with the
product: ``docs/rules.md`` (which explains each rule and lists the references in full),
the ARTICLE by its title and the papers by author and year. Each threshold lives in
:class:`RuleThresholds`, whose defaults come from :mod:`processors.physiology`; a profile
(:mod:`processors.profiles`) or the config file may override any field with
:meth:`RuleThresholds.with_overrides`.

What triggers each rule with the DEFAULT thresholds (inputs oldest first):

``hrv_downtrend`` (warning) — daily lnRMSSD history ending today (NaN = missing day), ≥ 14
    valid days in d−35…d−8 with SD_B > 0; ≥ 4 valid mornings in the last 5, every one
    below mean_B − 0.5·SD_B, and their Theil–Sen slope β < 0 with 4·|β| ≥ 0.5·SD_B.
    E.g. a 28-day history: 21 days alternating 4.0/4.2 (SD_B ≈ 0.10), then
    4.0, 3.95, 3.9, 3.85, 3.8, 3.75, 3.7. A 2-day step instead (then 4.0, 4.2, 4.1, 4.1,
    4.1, 3.7, 3.65) does not trigger: three of the last five mornings are in the band.
``rhr_creep`` (pull_back) — daily resting-HR history (bpm) ending today; ≥ 14 valid baseline
    days; the last 7 days (n valid) average ≥ 5 bpm above median_B, with
    Δ/(SD_B/√n) ≥ 2 and ≥ 5 of them above median_B. E.g. a 28-day history: 21 days
    alternating 50/52 bpm, then 57, 58, 57, 58, 57, 58, 57.
    Back in band (clears with ``resume``): the rule no longer met, and each of the last
    3 valid mornings (missing days skipped) has resting HR < median_B + 5 bpm and lnRMSSD
    ≥ mean_B − 0.5·SD_B (the ``hrv_downtrend`` band's low edge, when it has a baseline);
    since the first of those mornings. Not met but not yet back: the alert stays open.
``smo2_slow_recovery`` (pull_back) — session recovery times (s, median T95; None for
    sessions without one, which are skipped): the last 3 measured are all > 120 s.
    E.g. three sessions whose SmO2 rests ≥ 30 s at ~60%, drops to ~20% per effort and
    recovers mono-exponentially with τ ≥ 50 s (T95 ≈ 2.9·τ from the plateau end), with
    ≥ 200 s before the next effort.
``grip_signal`` (info: reported as the grip test's class, never raised as an alert, see
    :mod:`processors.alerts`) — a grip test classified ``signal``: a drop ≥ 10% in the tests
    up to 15 min, back below the drop that counts at the last test ≤ 15 min, and not still
    down at 30 min. The drop that counts is the article's 10% until the athlete has 5
    grip tests stored, then 1.65·√2·CV of their own MVCs (the acute drop stays ≥ 10%).
    E.g. no history; MVC 50 kg; 0 min 45 kg, 5 min 46 kg, 15 min 48 kg, 30 min 49 kg.
``grip_spillover`` (pull_back) — a grip test classified ``spillover``: a drop that counts
    before 30 min is still there (counts) at the first test ≥ 30 min. E.g. MVC 50 kg;
    0 min 40, 15 min 41, 30 min 42 kg. A drop first seen at 30 min is not spillover.
``rpe_power_mismatch`` (pull_back) — sessions (RPE, mean power W), the last one being
    evaluated against the mean of up to 5 sessions before it (≥ 3 needed): RPE ≥ 1.2×
    the reference RPE while power ≤ 0.9× the reference power. E.g. 5 sessions at RPE 5,
    200 W, then one at RPE 6, 180 W.
``hi_spacing`` (warning) — see :func:`processors.profiles.evaluate_spacing`: two high-intensity
    sessions < 48 h apart (72 h for ``older``), or (``elite``) a fourth consecutive one
    without a passive day. A session is high-intensity per :func:`is_high_intensity`: RPE
    ≥ 7 (CR-10), or mean power ≥ the athlete's ``high_intensity_power_w`` when configured,
    or (when power cannot say) ≥ 8 min in heart-rate zone 3 of Seiler's model when the
    athlete's ``max_hr_bpm`` or ``threshold_hr_bpm`` is configured.
    E.g. a session ending with RPE 8, and another with RPE 7 starting 24 h after it.
``hr_grip_flat`` (pull_back) — see :mod:`processors.hormetic`: resting HR above the
    established baseline's mean + 1·SD on 3 consecutive mornings, and ≥ 1 grip test
    in those days, every one without a real MVC rise (< 1.65·√2·CV over the mean of the
    athlete's earlier MVCs, ≥ 5 of them). E.g. 28 mornings alternating 50/52 bpm, then
    55, 56, 55 bpm, with 5 earlier MVCs 49/50/51/50/50 kg and 50 kg on the last day.
``power_plateau`` (info: a finding published with the session, never an alert) — see
    :mod:`processors.plateau`: over the 21 days ending at the session, ≥ 2 sessions in each
    week, and the within-RPE slope of mean session power rising by less than
    max(0.5·SD about the line, 1% of mean power). E.g. a session every other day at RPE 5
    and 200 ± 2 W for three weeks.
``gsh_gssg_low`` (pull_back), ``gsh_gssg_high`` (info), ``droms_rise`` (warning),
``lipid_dipstick_positive`` (pull_back) — lab markers entered by hand, evaluated by
    :mod:`processors.labs` (which documents the timing and baseline rules). E.g. a fasted
    GSH:GSSG of 90:1; one of 450:1 (a finding); dROMs 300, 310, 290 CARR U at rest, then 420
    (> 1.35 × 300); a positive dipstick.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from processors import physiology as ph
from processors.alerts import RuleEvaluation, Severity

# The analyses (scipy) are imported where a rule measures, not here: the catalogue and
# its thresholds are also read by the config, which a thin team gateway loads (issue 13).
if TYPE_CHECKING:
    from processors.grip import ForceTrace, GripTest
    from processors.oxygenation import OxygenRecovery

ARTICLE = '"When ROS Signals Turn Toxic: Balancing Redox in Trained Cells" (practitioner article)'
"""The ARTICLE by its title: users have the title, not our copy of the text."""


def _source(rule_section: str, *references: str) -> str:
    """A rule's citation: its section of docs/rules.md (ships with the product) + references."""
    return "; ".join((f'docs/rules.md "{rule_section}"', *references))


PULL_BACK_ADVICE = (
    f"Cut training volume by ~{ph.PULL_BACK_VOLUME_CUT:.0%} for one week "
    f"({ph.PULL_BACK_DAYS} days), not 10%; resume when morning signals return to their "
    "normal band."
)


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A catalogue entry: what the rule is called, how severe, what to do, where from."""

    rule_id: str
    severity: Severity
    title: str
    advice: str
    source: str


CATALOGUE: Mapping[str, RuleSpec] = {
    spec.rule_id: spec
    for spec in (
        RuleSpec(
            "hrv_downtrend",
            Severity.WARNING,
            "Morning HRV trending down",
            "Earliest warning of redox imbalance: keep the next sessions easy and watch the "
            "coming mornings. If it persists: " + PULL_BACK_ADVICE,
            _source("hrv_downtrend", ARTICLE, "Plews et al. 2013 (smallest worthwhile change)"),
        ),
        RuleSpec(
            "rhr_creep",
            Severity.PULL_BACK,
            "Resting heart rate creeping up",
            "Redox balance likely off: pull back high-intensity load. " + PULL_BACK_ADVICE,
            _source("rhr_creep", ARTICLE + ": 5–7 bpm over a ten-day block"),
        ),
        RuleSpec(
            "smo2_slow_recovery",
            Severity.PULL_BACK,
            "Slow muscle-oxygen recovery after efforts",
            "Dial back intensity or add a rest day. " + PULL_BACK_ADVICE,
            _source("smo2_slow_recovery", ARTICLE),
        ),
        RuleSpec(
            "grip_signal",
            Severity.INFO,
            "Post-session grip drop that recovered quickly",
            "Acute signalling, the good kind of stress: no change needed.",
            _source("grip_signal", ARTICLE, "Hopkins 2000 (1.65·√2·CV)"),
        ),
        RuleSpec(
            "grip_spillover",
            Severity.PULL_BACK,
            "Grip still down 30 minutes after the session",
            "Oxidative spillover: pull back. " + PULL_BACK_ADVICE,
            _source("grip_spillover", ARTICLE, "Hopkins 2000 (1.65·√2·CV)"),
        ),
        RuleSpec(
            "rpe_power_mismatch",
            Severity.PULL_BACK,
            "Harder effort for less power",
            '"Digging a hole": ' + PULL_BACK_ADVICE,
            _source("rpe_power_mismatch", ARTICLE),
        ),
        RuleSpec(
            "hi_spacing",
            # A warning, not info: its advice asks for a change (space the sessions), and
            # info findings are never raised as alerts.
            Severity.WARNING,
            "High-intensity sessions too close together",
            "Leave the profile's recovery window between high-intensity sessions "
            "(48 h; 72 h for older athletes; elite: a passive day after every third).",
            _source("Profiles", ARTICLE, "review, Free Radic Biol Med 242 (2026): ageing"),
        ),
        RuleSpec(
            "hr_grip_flat",
            Severity.PULL_BACK,
            "Morning HR up and grip flat for three days",
            "You have probably drifted past the hormetic zone: back off intensity for "
            f"{ph.HR_GRIP_BACK_OFF_H:g} h (the message says until when) and let glutathione "
            "regenerate.",
            _source(
                "hr_grip_flat",
                ARTICLE,
                "Plews et al. 2013 (normal band)",
                "Hopkins 2000 (1.65·√2·CV)",
            ),
        ),
        RuleSpec(
            "power_plateau",
            # Info: the article asks to look at recovery hygiene, not to change the load.
            Severity.INFO,
            "Power at matched effort flat for three weeks",
            "Stop looking at the training plan, look at recovery hygiene: sleep (is the last "
            "meal within two hours of bedtime?) and training density (two high-intensity "
            "sessions back to back without glycogen restored?).",
            _source("power_plateau", ARTICLE, "Foster et al. 2001 (session RPE)"),
        ),
        # Lab markers entered by hand (processors/labs.py evaluates them).
        RuleSpec(
            "gsh_gssg_low",
            Severity.PULL_BACK,
            "Glutathione ratio leaning oxidative",
            "A resting GSH:GSSG below 100:1 leans toward oxidative stress (not necessarily "
            "toxic): pull back. " + PULL_BACK_ADVICE,
            _source("gsh_gssg_low", ARTICLE + ": below 100:1, leaning oxidative"),
        ),
        RuleSpec(
            "gsh_gssg_high",
            # A finding, not an alert: the lab entry's result says it (its `finding`).
            Severity.INFO,
            "Glutathione ratio likely over-supplemented",
            "Above 400:1 the ratio is likely over-supplemented, blunting the ROS signal that "
            "drives adaptation: worth reviewing antioxidant supplements with whoever "
            "prescribed them. No training change needed.",
            _source("gsh_gssg_high", ARTICLE + ": above 400:1, likely over-supplemented"),
        ),
        RuleSpec(
            "droms_rise",
            Severity.WARNING,
            "dROMs above the athlete's own baseline",
            "Circulating oxidative stress more than 35% above your own resting baseline: the "
            "recovery phase needs protection. Keep the next sessions easy and re-test at "
            "rest. If it persists: " + PULL_BACK_ADVICE,
            _source("droms_rise", ARTICLE + ": dROMs more than 35% above baseline"),
        ),
        RuleSpec(
            "lipid_dipstick_positive",
            Severity.PULL_BACK,
            "Urine lipid-peroxidation dipstick positive",
            "A positive strip (above its 5 µmol/L sensitivity): pull back. " + PULL_BACK_ADVICE,
            _source("lipid_dipstick_positive", ARTICLE + ": if it goes positive, pull back"),
        ),
    )
}


@dataclass(frozen=True, slots=True)
class RuleThresholds:
    """Every rule threshold, defaults from :mod:`processors.physiology` (units in names)."""

    baseline_first_day_back: int = ph.BASELINE_FIRST_DAY_BACK
    baseline_last_day_back: int = ph.BASELINE_LAST_DAY_BACK
    baseline_min_valid_days: int = ph.BASELINE_MIN_VALID_DAYS
    rolling_mean_days: int = ph.ROLLING_MEAN_DAYS
    rolling_mean_min_values: int = ph.ROLLING_MEAN_MIN_VALUES
    normal_band_sd: float = ph.NORMAL_BAND_SD
    hrv_downtrend_window_days: int = ph.HRV_DOWNTREND_WINDOW_DAYS
    hrv_downtrend_min_valid_days: int = ph.HRV_DOWNTREND_MIN_VALID_DAYS
    rhr_creep_delta_bpm: float = ph.RHR_CREEP_DELTA_BPM
    rhr_creep_min_z: float = ph.RHR_CREEP_MIN_Z
    rhr_creep_window_days: int = ph.RHR_CREEP_WINDOW_DAYS
    rhr_creep_min_days_above: int = ph.RHR_CREEP_MIN_DAYS_ABOVE
    smo2_slow_recovery_s: float = ph.SMO2_SLOW_RECOVERY_S
    smo2_slow_recovery_sessions: int = ph.SMO2_SLOW_RECOVERY_SESSIONS
    grip_signal_drop: float = ph.GRIP_SIGNAL_DROP
    grip_signal_recovery_min: float = ph.GRIP_SIGNAL_RECOVERY_MIN
    grip_spillover_min: float = ph.GRIP_SPILLOVER_MIN
    grip_min_baseline_sessions: int = ph.GRIP_MIN_BASELINE_SESSIONS
    grip_noise_z: float = ph.GRIP_NOISE_Z
    rpe_rise: float = ph.RPE_RISE
    power_fall: float = ph.POWER_FALL
    rpe_reference_sessions: int = ph.RPE_REFERENCE_SESSIONS
    rpe_min_reference_sessions: int = ph.RPE_MIN_REFERENCE_SESSIONS
    resume_mornings_in_band: int = ph.RESUME_MORNINGS_IN_BAND
    resume_grip_recent_days: float = ph.RESUME_GRIP_RECENT_DAYS
    hi_spacing_h: float = ph.HIGH_INTENSITY_SPACING_H
    high_intensity_rpe: float = ph.HIGH_INTENSITY_RPE
    high_intensity_power_w: float | None = None  # personal (second threshold / FTP): no default
    max_hr_bpm: float | None = None  # personal (HRmax): heart-rate zones need it, no default
    threshold_hr_bpm: float | None = None  # personal (HR at the second threshold), optional
    high_intensity_zone3_s: float = ph.HIGH_INTENSITY_ZONE3_S
    passive_day_every: int | None = None  # elite: ph.ELITE_PASSIVE_DAY_EVERY
    hr_grip_run_days: int = ph.HR_GRIP_RUN_DAYS
    hr_grip_elevated_sd: float = ph.HR_GRIP_ELEVATED_SD
    hr_grip_min_grip_tests: int = ph.HR_GRIP_MIN_GRIP_TESTS
    hr_grip_back_off_h: float = ph.HR_GRIP_BACK_OFF_H
    power_plateau_window_days: int = ph.POWER_PLATEAU_WINDOW_DAYS
    power_plateau_min_sessions_per_week: int = ph.POWER_PLATEAU_MIN_SESSIONS_PER_WEEK
    power_plateau_min_matched_sessions: int = ph.POWER_PLATEAU_MIN_MATCHED_SESSIONS
    power_plateau_min_span_days: int = ph.POWER_PLATEAU_MIN_SPAN_DAYS
    power_plateau_min_rise: float = ph.POWER_PLATEAU_MIN_RISE
    gsh_gssg_low_ratio: float = ph.GSH_GSSG_LOW
    gsh_gssg_trained_low_ratio: float = ph.GSH_GSSG_TRAINED_LOW
    gsh_gssg_high_ratio: float = ph.GSH_GSSG_HIGH
    droms_rise_fraction: float = ph.DROMS_RISE
    droms_baseline_min_values: int = ph.DROMS_BASELINE_MIN_VALUES
    droms_baseline_values: int = ph.DROMS_BASELINE_VALUES

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"threshold {f.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"threshold {f.name} must be a finite number ≥ 0, got {value}")
        low, high = ph.MAX_HR_PLAUSIBLE_BPM
        if self.max_hr_bpm is not None and not low <= self.max_hr_bpm <= high:
            raise ValueError(
                f"max_hr_bpm must be the athlete's maximum heart rate, {low:g}–{high:g} bpm, "
                f"got {self.max_hr_bpm:g}"
            )
        if self.threshold_hr_bpm is not None:
            top = self.max_hr_bpm if self.max_hr_bpm is not None else high
            if not ph.MAX_HR_PLAUSIBLE_BPM[0] / 2 <= self.threshold_hr_bpm < top:
                raise ValueError(
                    f"threshold_hr_bpm must be the heart rate at the second threshold, "
                    f"{low / 2:g} bpm up to below max_hr_bpm ({top:g}), got "
                    f"{self.threshold_hr_bpm:g}"
                )
        if self.baseline_last_day_back < self.rolling_mean_days:
            raise ValueError(
                f"baseline_last_day_back ({self.baseline_last_day_back}) must lie before the "
                f"{self.rolling_mean_days}-day rolling window (the baseline never uses it)"
            )
        if self.baseline_first_day_back < self.baseline_last_day_back:
            raise ValueError("baseline_first_day_back must be ≥ baseline_last_day_back")
        for name in ("hr_grip_run_days", "power_plateau_window_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"threshold {name} must be ≥ 1 day, got {getattr(self, name)}")
        if (
            not self.gsh_gssg_low_ratio
            <= self.gsh_gssg_trained_low_ratio
            <= self.gsh_gssg_high_ratio
        ):
            raise ValueError(
                "GSH:GSSG thresholds must rise: gsh_gssg_low_ratio ≤ "
                "gsh_gssg_trained_low_ratio ≤ gsh_gssg_high_ratio, got "
                f"{self.gsh_gssg_low_ratio}, {self.gsh_gssg_trained_low_ratio}, "
                f"{self.gsh_gssg_high_ratio}"
            )
        if not 1 <= self.droms_baseline_min_values <= self.droms_baseline_values:
            raise ValueError(
                "dROMs baseline: 1 ≤ droms_baseline_min_values ≤ droms_baseline_values, got "
                f"{self.droms_baseline_min_values}, {self.droms_baseline_values}"
            )

    def with_overrides(self, overrides: Mapping[str, Any]) -> RuleThresholds:
        """A copy with fields replaced; unknown names or wrong types raise ValueError."""
        names = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in names:
                known = ", ".join(sorted(names))
                raise ValueError(f"unknown rule threshold {key!r}; known: {known}")
            default = getattr(RuleThresholds(), key)
            if (
                isinstance(default, int)
                and not isinstance(default, bool)
                and key
                not in (
                    "passive_day_every",
                    "high_intensity_power_w",
                    "max_hr_bpm",
                    "threshold_hr_bpm",
                )
            ):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError(f"rule threshold {key} must be a whole number, got {value!r}")
            if (
                key == "passive_day_every"
                and value is not None
                and (not isinstance(value, int) or isinstance(value, bool) or value < 1)
            ):
                raise ValueError(f"passive_day_every must be a whole number ≥ 1, got {value!r}")
            changes[key] = value
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, float | int | None]:
        """Field name → value, e.g. for ``doctor`` output or persisted config."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


DEFAULT_THRESHOLDS: RuleThresholds = RuleThresholds()


def _evaluation(
    rule_id: str, active: bool | None, message: str, evidence: Mapping[str, float]
) -> RuleEvaluation:
    spec = CATALOGUE[rule_id]
    return RuleEvaluation(
        rule_id=rule_id,
        severity=spec.severity,
        active=active,
        message=message,
        advice=spec.advice,
        source=spec.source,
        evidence=evidence,
    )


def evaluate_hrv_downtrend(
    ln_rmssd_history: npt.ArrayLike, thresholds: RuleThresholds = DEFAULT_THRESHOLDS
) -> RuleEvaluation:
    """``hrv_downtrend`` for the last day of a daily lnRMSSD history (NaN = missing day)."""
    from processors.trends import hrv_downtrend

    th = thresholds
    result = hrv_downtrend(
        ln_rmssd_history,
        window_days=th.hrv_downtrend_window_days,
        min_valid_days=th.hrv_downtrend_min_valid_days,
        band_sd=th.normal_band_sd,
        first_day_back=th.baseline_first_day_back,
        last_day_back=th.baseline_last_day_back,
        baseline_min_days=th.baseline_min_valid_days,
    )
    if result.triggered:
        message = (
            f"Morning lnRMSSD has been below its normal band (from {result.band_low:.2f}) on "
            f"each of the last {result.valid_days_in_window} mornings and is falling "
            f"({result.slope_per_day:+.3f}/day, {result.slope_change:.2f} over "
            f"{result.window_days} days)."
        )
    else:
        message = f"hrv_downtrend not met: {result.reason}"
    return _evaluation(
        "hrv_downtrend", result.triggered if result.evaluable else None, message, result.evidence()
    )


def evaluate_rhr_creep(
    resting_hr_history: npt.ArrayLike, thresholds: RuleThresholds = DEFAULT_THRESHOLDS
) -> RuleEvaluation:
    """``rhr_creep`` for the last day of a daily resting-HR history in bpm (NaN = missing)."""
    from processors.trends import rhr_creep

    th = thresholds
    result = rhr_creep(
        resting_hr_history,
        delta_bpm=th.rhr_creep_delta_bpm,
        min_z=th.rhr_creep_min_z,
        window_days=th.rhr_creep_window_days,
        min_days_above=th.rhr_creep_min_days_above,
        first_day_back=th.baseline_first_day_back,
        last_day_back=th.baseline_last_day_back,
        baseline_min_days=th.baseline_min_valid_days,
    )
    if result.triggered:
        message = (
            f"Resting HR is {result.delta_bpm:.1f} bpm above its baseline median "
            f"({result.baseline_median_bpm:.1f} bpm) over the last {result.n_days} days, "
            f"{result.days_above} of them above it."
        )
    else:
        message = f"rhr_creep not met: {result.reason}"
    return _evaluation(
        "rhr_creep", result.triggered if result.evaluable else None, message, result.evidence()
    )


@dataclass(frozen=True, slots=True)
class RecentGrip:
    """The athlete's last grip test within ``resume_grip_recent_days`` before a morning:
    when it was taken (ns since the epoch), whether it was a spillover, and — when it was
    not — since when grip is steady again (the first test after the last spillover, ns;
    None: no spillover before it)."""

    t_ns: int
    spillover: bool
    steady_since_ns: int | None = None


def evaluate_morning(
    ln_rmssd_history: npt.ArrayLike,
    resting_hr_history: npt.ArrayLike,
    thresholds: RuleThresholds = DEFAULT_THRESHOLDS,
    *,
    day: dt.date | None = None,
    recent_grip: RecentGrip | None = None,
) -> list[RuleEvaluation]:
    """Both morning rules for one new morning reading (histories end on the same day,
    ``day``, which dates ``rhr_creep``'s back-in-band run; None: undated). ``recent_grip``:
    the last grip test of the recent days, which ``rhr_creep``'s resume also asks."""
    hrv = evaluate_hrv_downtrend(ln_rmssd_history, thresholds)
    creep = evaluate_rhr_creep(resting_hr_history, thresholds)
    back = morning_back_in_band(
        creep, hrv, ln_rmssd_history, resting_hr_history, day, thresholds, recent_grip
    )
    return [hrv, back]


def morning_back_in_band(
    creep: RuleEvaluation,
    hrv: RuleEvaluation,
    ln_rmssd_history: npt.ArrayLike,
    resting_hr_history: npt.ArrayLike,
    day: dt.date | None = None,
    thresholds: RuleThresholds = DEFAULT_THRESHOLDS,
    recent_grip: RecentGrip | None = None,
) -> RuleEvaluation:
    """``creep`` (an ``rhr_creep`` evaluation) with its back-in-band verdict: whether the
    morning signals are back in their normal band, on how many mornings, since when —
    and, when the athlete grip-tested recently (``recent_grip``), whether grip is steady.

    The bands are the rules' own, from their evidence: resting HR below the baseline
    median (``baseline_median_bpm``) + ``rhr_creep_delta_bpm``, lnRMSSD at or above the
    ``hrv_downtrend`` band's low edge (``band_low_ln_ms``; not required while lnRMSSD has
    no baseline). Counted back from the last day over valid mornings (missing days are
    skipped: they neither break nor extend the run); back when the run is at least
    ``resume_mornings_in_band`` long. The article pairs the morning signals with "steady
    grip strength": with a ``recent_grip`` that was a spillover the athlete is not back
    (grip steady again after a spillover later than the first in-band morning moves
    "since" to that test; none: the mornings alone decide). Only an inactive evaluation is
    asked (an active or undecidable one is returned unchanged: its evidence is what raised
    it).
    """
    th = thresholds
    median = creep.evidence.get("baseline_median_bpm")
    if creep.active is not False or median is None:
        return creep
    rhr_high = median + th.rhr_creep_delta_bpm
    ln_low = hrv.evidence.get("band_low_ln_ms")
    ln = np.asarray(ln_rmssd_history, dtype=np.float64)
    rhr = np.asarray(resting_hr_history, dtype=np.float64)
    if ln.shape != rhr.shape:
        raise ValueError(
            f"morning histories must end on the same day: {ln.size} lnRMSSD and {rhr.size} "
            "resting-HR days"
        )
    run, first_back = 0, None
    for back in range(rhr.size):
        hr, lnv = rhr[-1 - back], ln[-1 - back]
        if math.isnan(hr):
            continue
        if hr >= rhr_high or (ln_low is not None and not (lnv >= ln_low)):
            break
        run, first_back = run + 1, back
    need = th.resume_mornings_in_band
    mornings_back = run >= need
    grip_steady = recent_grip is None or not recent_grip.spillover
    back_in_band = mornings_back and grip_steady
    evidence = dict(creep.evidence)
    evidence.update(
        {
            "mornings_in_band": float(run),
            "mornings_in_band_needed": float(need),
            "rhr_band_high_bpm": rhr_high,
        }
    )
    if ln_low is not None:
        evidence["ln_rmssd_band_low_ln_ms"] = ln_low
    if recent_grip is not None:
        evidence["last_grip_spillover"] = float(recent_grip.spillover)
        evidence["last_grip_test_s"] = recent_grip.t_ns / 1e9
    since_ns = None
    since_text = ""
    if first_back is not None and day is not None:
        since = day - dt.timedelta(days=first_back)
        since_ns = int(dt.datetime(since.year, since.month, since.day, tzinfo=dt.UTC).timestamp())
        since_ns *= 1_000_000_000
        since_text = f" since {since.isoformat()}"
        steady = None if recent_grip is None else recent_grip.steady_since_ns
        if steady is not None and steady > since_ns:
            # Back only once grip was steady again after a spillover: since that test.
            since_ns = steady
            since_text = f" since {_utc_day(steady)} (grip steady again)"
    signals = f"resting HR < {rhr_high:.1f} bpm" + (
        "" if ln_low is None else f" and lnRMSSD ≥ {ln_low:.2f}"
    )
    grip_text = "" if recent_grip is None else " and grip steady"
    if back_in_band:
        message = f"; morning signals back in band ({signals}){grip_text} on {run} mornings"
        message += since_text
    elif mornings_back and recent_grip is not None:
        message = (
            f"; morning signals back in band ({signals}) on {run} mornings, but grip is not "
            f"steady: the last grip test ({_utc_day(recent_grip.t_ns)}) was a spillover"
        )
    else:
        message = f"; not yet back in band ({signals}): {run} of {need} mornings"
    message = creep.message + message
    return dataclasses.replace(
        creep,
        message=message,
        evidence=evidence,
        back_in_band=back_in_band,
        in_band_since_ns=since_ns if back_in_band else None,
    )


def _utc_day(t_ns: int) -> str:
    return dt.datetime.fromtimestamp(t_ns / 1e9, tz=dt.UTC).date().isoformat()


def evaluate_smo2_slow_recovery(
    session_recovery_times_s: Sequence[float | None],
    thresholds: RuleThresholds = DEFAULT_THRESHOLDS,
) -> RuleEvaluation:
    """``smo2_slow_recovery`` over session recovery times (s), oldest first.

    Sessions without a recovery time (None: no effort measured) are skipped, so they
    neither break nor extend a run. Undecidable with fewer measured sessions than needed.
    """
    th = thresholds
    need = th.smo2_slow_recovery_sessions
    measured = [float(v) for v in session_recovery_times_s if v is not None]
    if any(not math.isfinite(v) or v < 0 for v in measured):
        raise ValueError("session recovery times must be finite seconds ≥ 0 (or None)")
    if len(measured) < need:
        return _evaluation(
            "smo2_slow_recovery",
            None,
            f"smo2_slow_recovery needs {need} sessions with a recovery time, has {len(measured)}",
            {"sessions_measured": float(len(measured))},
        )
    last = measured[-need:]
    active = all(v > th.smo2_slow_recovery_s for v in last)
    evidence = {f"recovery_time_{need - i}_sessions_ago_s": v for i, v in enumerate(last, start=1)}
    evidence["threshold_s"] = th.smo2_slow_recovery_s
    times = ", ".join(f"{v:.0f} s" for v in last)
    message = (
        f"SmO2 recovery took > {th.smo2_slow_recovery_s:g} s in each of the last {need} "
        f"sessions ({times})."
        if active
        else f"smo2_slow_recovery not met: last {need} sessions {times}"
    )
    return _evaluation("smo2_slow_recovery", active, message, evidence)


def evaluate_grip(
    test: GripTest, thresholds: RuleThresholds = DEFAULT_THRESHOLDS
) -> list[RuleEvaluation]:
    """``grip_signal`` and ``grip_spillover`` for one classified grip test.

    Pass the ``thresholds`` the test was classified with (:func:`measure_grip`): the
    messages cite the tests up to ``grip_signal_recovery_min`` and from
    ``grip_spillover_min``. A ``pending`` test (not recovered by then, no late test yet)
    leaves ``grip_spillover`` undecided. Every message ends with the test's threshold note:
    the article's 10% or the athlete's own noise.
    """
    from processors.grip import GripClass

    th = thresholds
    evidence = test.evidence()
    cls = test.grip_class
    note = test.threshold_note()
    early = [p for p in test.post if p.minute <= th.grip_signal_recovery_min]
    if cls is GripClass.SIGNAL and early:
        signal_message = (
            f"Grip dropped {max(p.drop_pct for p in early):.1f}% after the session and was "
            f"back to {early[-1].drop_pct:.1f}% by {early[-1].minute:g} min. {note}"
        )
    else:
        signal_message = f"grip_signal not met: session class {cls.value}. {note}"
    signal = _evaluation("grip_signal", cls is GripClass.SIGNAL, signal_message, evidence)

    late = [p for p in test.post if p.minute >= th.grip_spillover_min]
    before = [p for p in test.post if p.minute < th.grip_spillover_min]
    if cls is GripClass.SPILLOVER and late and before:
        first = max(before, key=lambda p: p.drop_pct)
        spill_message = (
            f"Grip was {first.drop_pct:.1f}% down {first.minute:g} min after the session and "
            f"still {late[0].drop_pct:.1f}% down at {late[0].minute:g} min. {note}"
        )
    elif cls is GripClass.LATE and late:
        spill_message = (
            f"grip_spillover not met: the {late[0].drop_pct:.1f}% drop at "
            f"{late[0].minute:g} min was not there in the tests before it (a drop first seen "
            f"late is not one still present). {note}"
        )
    else:
        spill_message = f"grip_spillover not met: session class {cls.value}. {note}"
    spill_active = None if cls is GripClass.PENDING else cls is GripClass.SPILLOVER
    spill = _evaluation("grip_spillover", spill_active, spill_message, evidence)
    return [signal, spill]


def measure_grip(
    pre: ForceTrace,
    post: Mapping[float, ForceTrace],
    baseline_mvcs_kg: Sequence[float] = (),
    thresholds: RuleThresholds = DEFAULT_THRESHOLDS,
) -> GripTest:
    """Classify a grip test from force traces (t s, kg) with the thresholds' grip settings."""
    from processors.grip import grip_test_from_traces

    th = thresholds
    return grip_test_from_traces(
        pre,
        post,
        baseline_mvcs_kg,
        signal_drop=th.grip_signal_drop,
        recovery_min=th.grip_signal_recovery_min,
        spillover_min=th.grip_spillover_min,
        noise_z=th.grip_noise_z,
        min_baseline_sessions=th.grip_min_baseline_sessions,
    )


def measure_oxygenation(
    t_s: npt.ArrayLike,
    smo2_pct: npt.ArrayLike,
    thresholds: RuleThresholds = DEFAULT_THRESHOLDS,
    *,
    activity: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
    activity_threshold: float | None = None,
) -> OxygenRecovery:
    """A session's oxygenation recovery, unrecovered efforts counted per the thresholds."""
    from processors.oxygenation import analyse_session

    return analyse_session(
        t_s,
        smo2_pct,
        activity=activity,
        activity_threshold=activity_threshold,
        slow_after_s=thresholds.smo2_slow_recovery_s,
    )


@dataclass(frozen=True, slots=True)
class SessionLoad:
    """A session's perceived exertion (RPE, e.g. Borg CR-10) and mean power (W)."""

    rpe: float
    power_w: float


def evaluate_rpe_power_mismatch(
    sessions: Sequence[SessionLoad], thresholds: RuleThresholds = DEFAULT_THRESHOLDS
) -> RuleEvaluation:
    """``rpe_power_mismatch`` for the LAST session against the mean of the ones before it.

    Reference = mean RPE and mean power of up to ``rpe_reference_sessions`` (5) sessions
    preceding the last one; undecidable with fewer than ``rpe_min_reference_sessions`` (3).
    Active when RPE ≥ (1 + rpe_rise)·reference RPE and power ≤ (1 − power_fall)·reference
    power. Compare sessions of the same kind (the caller's choice).
    """
    th = thresholds
    for s in sessions:
        if not (math.isfinite(s.rpe) and s.rpe > 0 and math.isfinite(s.power_w) and s.power_w > 0):
            raise ValueError(f"session RPE and power must be positive numbers, got {s}")
    if not sessions:
        return _evaluation("rpe_power_mismatch", None, "rpe_power_mismatch: no session", {})
    current = sessions[-1]
    reference = sessions[:-1][-th.rpe_reference_sessions :] if th.rpe_reference_sessions else []
    if len(reference) < max(th.rpe_min_reference_sessions, 1):
        return _evaluation(
            "rpe_power_mismatch",
            None,
            f"rpe_power_mismatch needs {th.rpe_min_reference_sessions} earlier sessions, "
            f"has {len(reference)}",
            {"reference_sessions": float(len(reference))},
        )
    ref_rpe = float(np.mean([s.rpe for s in reference]))
    ref_power = float(np.mean([s.power_w for s in reference]))
    rpe_change = current.rpe / ref_rpe - 1.0
    power_change = current.power_w / ref_power - 1.0
    # Rounded to 1e-9 so that "exactly 20% up" is not lost to binary fractions.
    active = round(rpe_change, 9) >= th.rpe_rise and round(power_change, 9) <= -th.power_fall
    evidence = {
        "rpe": current.rpe,
        "reference_rpe": ref_rpe,
        "rpe_change_pct": 100.0 * rpe_change,
        "power_w": current.power_w,
        "reference_power_w": ref_power,
        "power_change_pct": 100.0 * power_change,
        "reference_sessions": float(len(reference)),
    }
    message = (
        f"RPE {100 * rpe_change:+.0f}% while power {100 * power_change:+.0f}% against the last "
        f"{len(reference)} sessions."
    )
    if not active:
        message = "rpe_power_mismatch not met: " + message
    return _evaluation("rpe_power_mismatch", active, message, evidence)


def hr_zone_floors_bpm(
    thresholds: RuleThresholds = DEFAULT_THRESHOLDS,
) -> tuple[float, float] | None:
    """Where zones 2 and 3 of Seiler's three-zone model start (bpm), or None when the
    athlete's config gives neither ``max_hr_bpm`` nor ``threshold_hr_bpm``.

    Zone 2 from 82% and zone 3 from 87% of ``max_hr_bpm`` (SEILER_2010, Table 1); zone 3
    from ``threshold_hr_bpm`` when given (and zone 2 then from 82/87 of it without a max).
    """
    th = thresholds
    if th.max_hr_bpm is None and th.threshold_hr_bpm is None:
        return None
    if th.threshold_hr_bpm is not None:
        zone3 = th.threshold_hr_bpm
        zone2 = (
            th.max_hr_bpm * ph.HR_ZONE2_FRACTION_OF_MAX
            if th.max_hr_bpm is not None
            else zone3 * ph.HR_ZONE2_FRACTION_OF_MAX / ph.HR_ZONE3_FRACTION_OF_MAX
        )
        return min(zone2, zone3), zone3
    assert th.max_hr_bpm is not None
    return (
        th.max_hr_bpm * ph.HR_ZONE2_FRACTION_OF_MAX,
        th.max_hr_bpm * ph.HR_ZONE3_FRACTION_OF_MAX,
    )


def hr_zone(hr_bpm: float, floors_bpm: tuple[float, float]) -> int:
    """The three-zone model's zone (1, 2 or 3) of a heart rate (bpm), given
    :func:`hr_zone_floors_bpm`."""
    zone2, zone3 = floors_bpm
    return 3 if hr_bpm >= zone3 else 2 if hr_bpm >= zone2 else 1


def is_high_intensity(
    rpe: float | None,
    mean_power_w: float | None,
    thresholds: RuleThresholds = DEFAULT_THRESHOLDS,
    *,
    zone3_s: float | None = None,
) -> bool | None:
    """Whether a session was high-intensity (what ``hi_spacing`` spaces); None when
    neither its RPE, nor its power (with ``high_intensity_power_w`` configured), nor its
    time in heart-rate zones is known.

    High when the RPE (CR-10) is ≥ ``high_intensity_rpe`` (7: FOSTER_2001,
    SEILER_KJERLAND_2006 zone 3), or the mean power (W) is ≥ ``high_intensity_power_w``,
    or — only when power cannot say (no power, or no ``high_intensity_power_w``) — its
    time in heart-rate zone 3 (``zone3_s``, s; :func:`hr_zone_floors_bpm`) is ≥
    ``high_intensity_zone3_s`` (SEILER_2010, HELGERUD_2007).
    """
    th = thresholds
    by_rpe = None if rpe is None else rpe >= th.high_intensity_rpe
    by_power = (
        None
        if th.high_intensity_power_w is None or mean_power_w is None
        else mean_power_w >= th.high_intensity_power_w
    )
    by_hr = (
        None if by_power is not None or zone3_s is None else zone3_s >= th.high_intensity_zone3_s
    )
    if by_rpe is None and by_power is None and by_hr is None:
        return None
    return bool(by_rpe) or bool(by_power) or bool(by_hr)


def evaluation_for(
    rule_id: str, active: bool | None, message: str, evidence: Mapping[str, float]
) -> RuleEvaluation:
    """A catalogue-backed evaluation for rules evaluated elsewhere (e.g. ``hi_spacing``)."""
    if rule_id not in CATALOGUE:
        raise ValueError(f"unknown rule {rule_id!r}; known: {', '.join(sorted(CATALOGUE))}")
    return _evaluation(rule_id, active, message, evidence)
