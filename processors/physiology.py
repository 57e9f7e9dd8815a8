"""Physiology constants and rule defaults, each beside its source.

Every threshold the software applies is defined here once. Rule thresholds are
practitioner heuristics, not clinical standards; they are defaults that a profile or the
config file may override (see :mod:`processors.profiles`).

Sources
-------
ARTICLE
    "When ROS Signals Turn Toxic: Balancing Redox in Trained Cells", practitioner article,
    ``shared/seeds/002_1397d631b66fe15f.txt`` (summarised in ``shared/RULES.md``).
REVIEW
    2026 review, Free Radical Biology and Medicine 242, redox signalling in exercise and
    ageing, ``shared/seeds/000_850884cea7f047a4.txt``.
LIPPONEN_2019
    Lipponen J.A., Tarvainen M.P. (2019). A robust algorithm for heart rate variability time
    series artefact correction using novel beat classification. J Med Eng Technol 43(3):173–181.
TASK_FORCE_1996
    Task Force of the ESC and NASPE (1996). Heart rate variability: standards of measurement,
    physiological interpretation and clinical use. Circulation 93:1043–1065.
PLEWS_2013
    Plews D.J., Laursen P.B., Stanley J., Kilding A.E., Buchheit M. (2013). Training
    adaptation and heart rate variability in elite endurance athletes. Sports Med 43:773–781
    (lnRMSSD, 7-day rolling mean, smallest worthwhile change 0.5·SD).
PENG_1995 / DFA
    Peng C.-K. et al. (1995). Quantification of scaling exponents and crossover phenomena in
    nonstationary heartbeat time series. Chaos 5:82–87 (short-term α1 over 4–16 beats).
HOPKINS_2000
    Hopkins W.G. (2000). Measures of reliability in sports medicine and science. Sports Med
    30:1–15 (a change is real beyond 1.65·√2·typical error, ~90% confidence).
"""

from __future__ import annotations

from typing import Final

# --- Plausible RR range -------------------------------------------------------------------
# Beyond these an interval is not a heartbeat of a living adult at rest or exercise
# (30–300 bpm); inputs outside are rejected as impossible, not corrected.
RR_MIN_MS: Final = 200.0  # 300 bpm
RR_MAX_MS: Final = 2000.0  # 30 bpm

# --- RR quality gate (issue 2; fixed-rule check alongside LIPPONEN_2019) ------------------
# A reading is rejected when more than QUALITY_MAX_ABNORMAL_SHARE of beats deviate more than
# QUALITY_DEVIATION_SHARE from the local median.
QUALITY_DEVIATION_SHARE: Final = 0.20
QUALITY_MAX_ABNORMAL_SHARE: Final = 0.05

# --- HRV frequency bands (TASK_FORCE_1996), Hz ---------------------------------------------
LF_BAND_HZ: Final = (0.04, 0.15)
HF_BAND_HZ: Final = (0.15, 0.40)
# pNN50 threshold (TASK_FORCE_1996).
PNN50_THRESHOLD_MS: Final = 50.0
# DFA short-term scale range in beats (PENG_1995).
DFA_ALPHA1_SCALES: Final = (4, 16)

# --- Morning reading (RULES.md "Measurement protocols") ------------------------------------
MORNING_STABILISATION_S: Final = 60.0

# --- Daily trends (PLEWS_2013; ARTICLE) ----------------------------------------------------
BASELINE_FIRST_DAY_BACK: Final = 35  # baseline B spans days d−35 … d−8
BASELINE_LAST_DAY_BACK: Final = 8
BASELINE_MIN_VALID_DAYS: Final = 14
ROLLING_MEAN_DAYS: Final = 7
ROLLING_MEAN_MIN_VALUES: Final = 3
NORMAL_BAND_SD: Final = 0.5  # smallest worthwhile change, PLEWS_2013

# hrv_downtrend — ARTICLE: "HRV trending downward over 5 consecutive days".
HRV_DOWNTREND_WINDOW_DAYS: Final = 5
HRV_DOWNTREND_MIN_VALID_DAYS: Final = 4

# rhr_creep — ARTICLE: "resting HR up 5–7 bpm over a 10-day block".
RHR_CREEP_DELTA_BPM: Final = 5.0
RHR_CREEP_MIN_Z: Final = 2.0
RHR_CREEP_WINDOW_DAYS: Final = 7
RHR_CREEP_MIN_DAYS_ABOVE: Final = 5

# --- Oxygenation recovery (ARTICLE) --------------------------------------------------------
SMO2_SLOW_RECOVERY_S: Final = 120.0
SMO2_SLOW_RECOVERY_SESSIONS: Final = 3
SMO2_RECOVERY_FRACTION: Final = 0.95  # T95

# --- Grip (ARTICLE; HOPKINS_2000) ---------------------------------------------------------
GRIP_SIGNAL_DROP: Final = 0.10  # ~10% drop right after a session
GRIP_SIGNAL_RECOVERY_MIN: Final = 15.0  # … that recovers within 15 min: the good kind
GRIP_SPILLOVER_MIN: Final = 30.0  # still down at 30 min: spillover
GRIP_DEFAULT_CV: Final = 0.05  # test noise until ≥ GRIP_MIN_BASELINE_SESSIONS are known
GRIP_MIN_BASELINE_SESSIONS: Final = 5
GRIP_MVC_TRIALS: Final = 3
GRIP_NOISE_Z: Final = 1.65  # HOPKINS_2000: threshold = 1.65·√2·CV

# --- Perceived exertion vs power (ARTICLE: "digging a hole") ------------------------------
RPE_RISE: Final = 0.20
POWER_FALL: Final = 0.10

# --- Pull-back advice and spacing (ARTICLE) -----------------------------------------------
PULL_BACK_VOLUME_CUT: Final = 0.40  # "cut training volume by about 40% for one week, not 10%"
PULL_BACK_DAYS: Final = 7
HIGH_INTENSITY_SPACING_H: Final = 48.0
HIGH_INTENSITY_SPACING_OLDER_H: Final = 72.0  # late fifties (ARTICLE; REVIEW: blunted responses)
ELITE_PASSIVE_DAY_EVERY: Final = 3  # a passive day after every third high-intensity session
