"""Physiology constants and rule defaults, each beside its source.

Every threshold the software applies is defined here once. Rule thresholds are
practitioner heuristics, not clinical standards; they are defaults that a profile or the
config file may override (see :mod:`processors.profiles`).

Sources
-------
Full references are in ``docs/rules.md`` ("Sources"), which ships with the product.

ARTICLE
    "When ROS Signals Turn Toxic: Balancing Redox in Trained Cells", practitioner article
    (Advanced Mitochondrial Optimization). The rules, their figures and the pull-back advice;
    ``docs/rules.md`` quotes the passages each rule comes from.
REVIEW
    2026 review, Free Radical Biology and Medicine 242: redox signalling in exercise and
    ageing (NOX2-derived H2O2 as the adaptive signal, blunted responses with age).
LIPPONEN_2019
    Lipponen J.A., Tarvainen M.P. (2019). A robust algorithm for heart rate variability time
    series artefact correction using novel beat classification. J Med Eng Technol 43(3):173–181.
TARVAINEN_2014
    Tarvainen M.P., Niskanen J.-P., Lipponen J.A., Ranta-aho P.O., Karjalainen P.A. (2014).
    Kubios HRV – heart rate variability analysis software. Comput Methods Programs Biomed
    113:210–220 (artefact correction: detected artefacts replaced by interpolated values
    using cubic spline interpolation).
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
ESCO_FLATT_2014
    Esco M.R., Flatt A.A. (2014). Ultra-short-term heart rate variability indexes at rest and
    post-exercise in athletes: evaluating the agreement with accepted recommendations.
    J Sports Sci Med 13:535–541 (60-s lnRMSSD agrees with 5-min values).
HRVANALYSIS_105
    hrv-analysis 1.0.5 (Aura Healthcare), ``get_frequency_domain_features``: 4 Hz
    resampling, Hann-windowed Welch segments of 256 samples, 50% overlap, 4096-point FFT,
    mean removal. We match those, but NOT its default ``interpolation_method="linear"``: we
    resample with a cubic spline, as its ``interpolation_method="cubic"`` does. Against
    that, with ``detrend="constant"``, our LF, HF and LF/HF are equal (relative 1e-15) and
    our default linear detrend is within 0.1% (nsr001, five 5-min segments). Against its
    default linear interpolation they differ: on 27 5-min segments of nsr001 its LF/HF is
    12–36% (median 19%) above ours, because linear interpolation attenuates HF (its HF is
    12–31% lower, LF 1–6% lower).
NIST_SD_CI
    NIST/SEMATECH e-Handbook of Statistical Methods, 7.2.6.2 / 1.3.5.8 (chi-square test and
    confidence limits for a standard deviation): with n values from a normal population,
    σ ≤ s·√((n−1)/χ²_{α, n−1}) with confidence 1−α.
ELITEHRV_WHOOP
    Comparable tools' onboarding, as they document it: Elite HRV shows a labelled baseline
    estimate after 2 readings and builds it over ~2 weeks; WHOOP calibrates after 4 nights
    from population priors. (Product behaviour, not a study; cited for the day counts.)
FOSTER_2001
    Foster C., Florhaug J.A., Franklin J., Gottschall L., Hrovatin L.A., Parker S., Doleshal
    P., Dodge C. (2001). A new approach to monitoring exercise training. J Strength Cond Res
    15(1):109–115 (session RPE on the CR-10 scale, asked ~30 min after the session).
SEILER_KJERLAND_2006
    Seiler K.S., Kjerland G.Ø. (2006). Quantifying training intensity distribution in elite
    endurance athletes: is there evidence for an "optimal" distribution? Scand J Med Sci
    Sports 16:49–56 (session RPE mapped onto three zones: CR-10 ≥ 7 is zone 3, above the
    second ventilatory threshold).
SEILER_2010
    Seiler S. (2010). What is best practice for training intensity and duration
    distribution in endurance athletes? Int J Sports Physiol Perform 5(3):276–291 (the
    three-zone model, and Table 1's heart-rate equivalents: zones 1–2 of the Norwegian
    five-zone scale below 82% HRmax, zone 3 82–87%, zones 4–5 from 87%).
HELGERUD_2007
    Helgerud J. et al. (2007). Aerobic high-intensity intervals improve VO2max more than
    moderate training. Med Sci Sports Exerc 39(4):665–671 (4 × 4 min at 90–95% HRmax).
VANDERPLAS_2018
    VanderPlas J.T. (2018). Understanding the Lomb–Scargle periodogram. ApJS 236:16
    (frequency grid: ~5 samples per peak width).
"""

from __future__ import annotations

from typing import Final

# --- Plausible RR range -------------------------------------------------------------------
# Beyond these an interval is not one between two heartbeats of a living adult: inputs
# outside are removed as impossible (the next beat follows a gap), not corrected. 3000 ms,
# not 2000: a bradycardic athlete's compensatory pause after a premature beat lasts two
# sinus cycles minus the coupling interval (at 40 bpm ~2.4 s), and sinus pauses of 2–3 s
# are common in trained people at rest; cutting them made the premature beat before them
# look like the end of a run and entered it into RMSSD (independent review, issue 9).
RR_MIN_MS: Final = 200.0  # 300 bpm
RR_MAX_MS: Final = 3000.0  # 20 bpm
# RR files (streamer/files/rr.py): values a file may hold at all. Intervals outside
# RR_MIN_MS..RR_MAX_MS but inside these are artefacts or recording gaps that cleaning handles;
# outside these they are not intervals (a timestamp, a sample index, a wrong unit) and the file
# is refused. 50 ms: two detections cannot be closer than a QRS complex lasts (~80–100 ms).
# 60 s: longer than any pause a recording can be analysed around.
RR_FILE_MIN_MS: Final = 50.0
RR_FILE_MAX_MS: Final = 60_000.0
# Unit detection: a file whose median value is below this is in seconds (no RR interval lasts
# 10 ms and none lasts 10 s, so the two readings never overlap).
RR_UNIT_SECONDS_BELOW: Final = 10.0

# --- RR quality gate (issue 9; measured by bench/validate_physiology.py) -------------------
# Each beat is compared with the mean of its two neighbours, relative to its local median
# (rr_clean.neighbour_deviation); a reading is rejected when more than
# QUALITY_MAX_ABNORMAL_SHARE of its beats deviate more than QUALITY_NEIGHBOUR_DEVIATION.
# Why these numbers (project choice, measured): resting athletes breathing 5–7/min at
# 40–55 bpm with 200–450 ms of RSA (devices/emulated/rr_model.py) put at most ~2.5% of their
# beats past 20%, and the broader grid (40–70 bpm, 5–15 breaths/min) at most ~6%; real NSRDB
# 5-min windows mostly 0–3%. One ectopic event marks 2–4 beats (itself, its pause, and
# neighbours it pulls off their line), so a 10% ectopic burden marks ≥ 16% of beats,
# bigeminy ~100%, trigeminy ~65%, the Polar H10 recording 66%. The older rule (share of
# beats > 20% off the local *median*, limit 5%) rejected a third of slow-breathing
# athletes: RSA carries beats far from the median along a smooth line.
QUALITY_NEIGHBOUR_DEVIATION: Final = 0.20
QUALITY_MAX_ABNORMAL_SHARE: Final = 0.10
# Local median for the gate: centred window of 11 beats, the median-filter order of
# LIPPONEN_2019 (so the gate and the corrector look at the same neighbourhood).
QUALITY_MEDIAN_BEATS: Final = 11

# --- Artefact / ectopic-beat correction (LIPPONEN_2019, Kubios) ---------------------------
# Thresholds are ALPHA × quartile deviation of |dRR| (and |mRR|) over a centred window of
# QD_WINDOW_BEATS; mRR is the deviation from an 11-beat median; C1, C2 bound the ectopic
# region of the S11–S12 plane. Values as published.
LIPPONEN_ALPHA: Final = 5.2
LIPPONEN_QD_WINDOW_BEATS: Final = 91
LIPPONEN_MEDIAN_BEATS: Final = 11
LIPPONEN_C1: Final = 0.13
LIPPONEN_C2: Final = 0.17
# Detection is repeated on the corrected series while the number of artefacts falls (as
# NeuroKit2's ``signal_fixpeaks(iterative=True)``); bounded so a pathological series ends.
LIPPONEN_MAX_PASSES: Final = 10
# A Lipponen-labelled beat is treated as an artefact only when it also lies
# CORRECTION_MIN_DEVIATION (share of the local median) from the mean of its neighbours, and
# an unlabelled beat is one when it lies beyond CORRECTION_UNLABELLED_DEVIATION. Project
# choice, measured (bench/validate_hrv.py): on quiet, 1/128-s quantised NSRDB hours the
# adaptive thresholds fall to ~20–30 ms and label 3–10% of ordinary sinus beats (median 3.6%
# off their neighbours); with 300–450 ms of RSA they grow until a premature beat or an extra
# detection slips under them, while the steepest genuine RSA beats reach ~20% off their
# neighbours. Premature beats with their pause lie 25–70% off. 15% / 30% left 0.01% of clean
# athletes' beats changed (10% / 20%: 0.09%, and those are the steepest beats, so RMSSD fell)
# and kept RMSSD within 5% of truth for 98.6% of readings with <= 2% ectopy. Correction then
# follows Kubios (TARVAINEN_2014): artefact intervals are replaced by cubic-spline
# interpolation, a premature beat and its pause as one event.
CORRECTION_MIN_DEVIATION: Final = 0.15
CORRECTION_UNLABELLED_DEVIATION: Final = 0.30
# A run of 1–PREMATURE_RUN_MAX_BEATS premature beats (a PAC couplet or triplet) is found by
# its edges: RR steps down by more than PREMATURE_RUN_STEP of the local median, the run's
# beats all lie that far below the rhythm around them, and RR steps back up as much. Inside
# the run each beat sits on the line through its neighbours, so the other detectors miss it
# (independent review, issue 9). Project choice, measured in bench/validate_hrv.py against
# false corrections on slow-breathing athletes, whose RSA moves RR smoothly.
PREMATURE_RUN_STEP: Final = 0.25
PREMATURE_RUN_MAX_BEATS: Final = 4

# --- HRV frequency bands (TASK_FORCE_1996), Hz ---------------------------------------------
LF_BAND_HZ: Final = (0.04, 0.15)
HF_BAND_HZ: Final = (0.15, 0.40)
# pNN50 threshold (TASK_FORCE_1996).
PNN50_THRESHOLD_MS: Final = 50.0
# DFA short-term scale range in beats (PENG_1995).
DFA_ALPHA1_SCALES: Final = (4, 16)
# DFA boxes are non-overlapping and laid from the first beat (PENG_1995); each scale needs
# at least this many boxes, so α1 needs ≥ 2 × 16 = 32 beats.
DFA_MIN_BOXES: Final = 2
# Spectral estimation (TASK_FORCE_1996 bands above). Welch: the NN series is resampled at
# RESAMPLE_HZ with a cubic spline, detrended, cut into Hann-windowed segments of
# WELCH_SEGMENT_SAMPLES (64 s at 4 Hz: 0.016 Hz resolution, 7 bins in LF) overlapping by
# WELCH_OVERLAP, each zero-padded to WELCH_NFFT points (HRVANALYSIS_105 with cubic
# interpolation; its default linear interpolation gives an LF/HF 12–36% higher).
RESAMPLE_HZ: Final = 4.0
WELCH_SEGMENT_SAMPLES: Final = 256
WELCH_OVERLAP: Final = 0.5
WELCH_NFFT: Final = 4096
# Lomb–Scargle: evaluated on the beat times themselves (no resampling), frequency step
# 1 / (LOMB_OVERSAMPLING × record duration), 5 points per peak width as astropy's default
# (VANDERPLAS_2018: coarser grids under-sample the peaks; band powers drop ~5–8%); scaled to a
# one-sided density in ms²/Hz whose integral over 0..Nyquist is the variance (Parseval).
# The grid is coarsened to at most LOMB_MAX_FREQUENCIES points to bound the O(beats ×
# frequencies) cost on long records (project choice; a 5-min reading needs ~540).
LOMB_OVERSAMPLING: Final = 5
LOMB_MAX_FREQUENCIES: Final = 5000
# Sliding-window HRV (streaming tracker, bench): 60-s windows, the ultra-short span whose
# lnRMSSD agrees with 5-min values at rest (ESCO_FLATT_2014).
HRV_WINDOW_S: Final = 60.0

# --- Morning reading (docs/rules.md "Measurement protocols") ------------------------------
MORNING_STABILISATION_S: Final = 60.0
# Analysed span after stabilisation: 5 min, the standard short-term recording
# (TASK_FORCE_1996); 60 s is enough for lnRMSSD alone (ESCO_FLATT_2014) and can be configured.
MORNING_SPAN_S: Final = 300.0
# A reading whose recorded beats cover less than this share of the span (strap dropped out,
# reading stopped early) is rejected. Project choice: at most 30 s missing of 5 min.
MORNING_MIN_COVERAGE: Final = 0.9

# --- Daily trends (PLEWS_2013; ARTICLE) ----------------------------------------------------
BASELINE_FIRST_DAY_BACK: Final = 35  # baseline B spans days d−35 … d−8
BASELINE_LAST_DAY_BACK: Final = 8
BASELINE_MIN_VALID_DAYS: Final = 14
ROLLING_MEAN_DAYS: Final = 7
ROLLING_MEAN_MIN_VALUES: Final = 3
NORMAL_BAND_SD: Final = 0.5  # smallest worthwhile change, PLEWS_2013
# A provisional baseline before the established one (which needs BASELINE_MIN_VALID_DAYS
# valid mornings in d−35 … d−8): from BASELINE_PROVISIONAL_MIN_DAYS valid mornings on any of
# days d−35 … d−1 (no lag: there is no history to lag behind), so a new athlete sees a band
# from day 4 instead of day 22 (ELITEHRV_WHOOP: 2–4 readings before a first estimate; 3 is
# the fewest whose SD says anything, and what the 7-day rolling mean already needs). Its
# band is mean ± NORMAL_BAND_SD·s_up, s_up the upper BASELINE_PROVISIONAL_SD_CONFIDENCE
# confidence limit of the SD from those n days (NIST_SD_CI): with 3 days s_up ≈ 3.1·s, with
# 7 ≈ 1.65·s, with 13 ≈ 1.4·s — wide while few days say little. Labelled "provisional" in
# every payload; no pull-back alert is raised from it (the rules use the established
# baseline only).
BASELINE_PROVISIONAL_MIN_DAYS: Final = 3
BASELINE_PROVISIONAL_SD_CONFIDENCE: Final = 0.90

# hrv_downtrend — ARTICLE: "a simple morning heart-rate variability measurement that trends
# downward over five days is your earliest warning". Read as: over the last
# HRV_DOWNTREND_WINDOW_DAYS mornings (at most one missing: HRV_DOWNTREND_MIN_VALID_DAYS),
# every morning lies below the normal band — down on each of the days, not one or two bad
# nights after normal ones (a step) — and their Theil–Sen trend line falls by at least the
# smallest worthwhile change NORMAL_BAND_SD·SD_B (PLEWS_2013: smaller changes are
# day-to-day noise; a level that stays low is not a trend). A trend line, not "each morning
# lower than the last": mornings wiggle from day to day by about SD_B itself, so a genuine
# decline seldom falls on every single morning.
HRV_DOWNTREND_WINDOW_DAYS: Final = 5
HRV_DOWNTREND_MIN_VALID_DAYS: Final = 4

# rhr_creep — ARTICLE: "a resting heart rate creeping up 5–7 bpm over a ten-day block";
# "when it creeps up 5+ beats for a week, pull back".
RHR_CREEP_DELTA_BPM: Final = 5.0
RHR_CREEP_MIN_Z: Final = 2.0
RHR_CREEP_WINDOW_DAYS: Final = 7
RHR_CREEP_MIN_DAYS_ABOVE: Final = 5

# --- Oxygenation recovery (ARTICLE) --------------------------------------------------------
SMO2_SLOW_RECOVERY_S: Final = 120.0
SMO2_SLOW_RECOVERY_SESSIONS: Final = 3
SMO2_RECOVERY_FRACTION: Final = 0.95  # T95

# --- Grip (ARTICLE; HOPKINS_2000) ---------------------------------------------------------
# ARTICLE: "A 10% drop post-workout that recovers within 15 minutes suggests acute
# signaling. A drop that lingers past 30 minutes hints at oxidative spillover."
GRIP_SIGNAL_DROP: Final = 0.10  # the article's 10%: grip_signal's drop; counts until CV known
GRIP_SIGNAL_RECOVERY_MIN: Final = 15.0  # … that recovers within 15 min: the good kind
GRIP_SPILLOVER_MIN: Final = 30.0  # a drop seen after the session and still there at 30 min
# A drop counts only beyond the test's own noise: 1.65·√2·CV (HOPKINS_2000, ~90% confidence),
# CV = the athlete's own MVC variation over GRIP_MIN_BASELINE_SESSIONS stored sessions
# (project choice). Until then the noise is unknown, and a guessed CV would move the
# article's line (a 5% guess gives 11.7%, which no "10% drop" passes): the article's
# GRIP_SIGNAL_DROP is the drop that counts, and the result says so.
GRIP_MIN_BASELINE_SESSIONS: Final = 5
GRIP_NOISE_Z: Final = 1.65  # HOPKINS_2000: threshold = 1.65·√2·CV
GRIP_MVC_TRIALS: Final = 3  # best of ~3 maximal squeezes before the session (protocol)

# --- Perceived exertion vs power (ARTICLE: "digging a hole") ------------------------------
RPE_RISE: Final = 0.20
POWER_FALL: Final = 0.10

# --- Pull-back advice and spacing (ARTICLE) -----------------------------------------------
PULL_BACK_VOLUME_CUT: Final = 0.40  # "cut training volume by about 40% for one week, not 10%"
PULL_BACK_DAYS: Final = 7
HIGH_INTENSITY_SPACING_H: Final = 48.0
HIGH_INTENSITY_SPACING_OLDER_H: Final = 72.0  # late fifties (ARTICLE; REVIEW: blunted responses)
ELITE_PASSIVE_DAY_EVERY: Final = 3  # a passive day after every third high-intensity session

# --- Resume after a pull-back (ARTICLE; counts are ours) ----------------------------------
# ARTICLE: "Watch for the return of morning hunger, steady grip strength, and sleep that
# feels continuous. That is your signal to resume, slowly." The article gives no count of
# days; the project takes three valid mornings running back in the normal band, the same
# "three days running" the article uses for the morning-HR + grip warning sign (a single
# good morning is within day-to-day noise). See docs/rules.md "Resume".
RESUME_MORNINGS_IN_BAND: Final = 3
# "… and steady grip strength": for rhr_creep, when the athlete has grip-tested within the
# last week before the morning, the last such test must not be a spillover (still down 30
# min after the session) for the signals to count as back in band. A week: the span of the
# pull-back itself (project choice); an older test says nothing about grip now, and an
# athlete who does not grip-test is judged on the morning signals alone.
RESUME_GRIP_RECENT_DAYS: Final = 7
# How long `status` keeps saying "resume (signals back in band since D)" after the last
# pull-back alert cleared: the article's "resume, slowly" — one week, the length of the
# pull-back itself (project choice).
RESUME_SHOWN_DAYS: Final = 7

# --- Session intensity (FOSTER_2001; SEILER_KJERLAND_2006) --------------------------------
# Which sessions are high-intensity (hi_spacing spaces those): a session RPE ≥ 7 on the
# CR-10 scale (FOSTER_2001's session RPE; SEILER_KJERLAND_2006 map 7–10 to zone 3, above the
# second ventilatory threshold) — the athlete's own rating, entered with `session end
# --rpe` or `rpe`. Or, when the athlete's config gives `high_intensity_power_w` (their power
# at the second threshold, e.g. FTP from a test; no default: it is personal), a mean power
# at or above it. Mean power under-reads interval sessions (the rests pull it down), so the
# power criterion only adds sessions RPE missed; an RPE below 7 does not veto it.
HIGH_INTENSITY_RPE: Final = 7.0

# --- Heart-rate zones (SEILER_2010; SEILER_KJERLAND_2006; HELGERUD_2007) -------------------
# Seiler's three-zone model: zone 1 below the first ventilatory threshold, zone 2 between the
# two, zone 3 above the second. Without a lab test the zones are read from heart rate as a
# fraction of the athlete's maximum (`max_hr_bpm`, no default: it is personal): zone 2 from
# 82%, zone 3 from 87% of HRmax (SEILER_2010, Table 1). With the athlete's own threshold HR
# (`threshold_hr_bpm`: HR at the second threshold, e.g. LTHR from a test) zone 3 starts
# there instead. A session without power (no meter, or no `high_intensity_power_w`) is
# high-intensity when it spends at least HIGH_INTENSITY_ZONE3_S in zone 3: a 4 × 4-min
# interval session at 90–95% HRmax (HELGERUD_2007) does, after the heart rate's ~1–2 min
# climb into each interval; a steady zone-1/2 ride with a closing sprint does not. (The
# 8 min is our reading of that session, not a published cut-off.)
HR_ZONE2_FRACTION_OF_MAX: Final = 0.82
HR_ZONE3_FRACTION_OF_MAX: Final = 0.87
HIGH_INTENSITY_ZONE3_S: Final = 480.0
HR_ZONE_MAX_SAMPLE_GAP_S: Final = (
    5.0  # a heart-rate sample stands for ≤ 5 s (a dropout is no zone time)
)
MAX_HR_PLAUSIBLE_BPM: Final = (120.0, 230.0)  # a configured HRmax outside this is a typo

# --- Oxygenation effort detection (issue 2, item 5) ---------------------------------------
# Signal-processing defaults for finding efforts in a Moxy SmO2 stream. Moxy samples every
# ~0.5–2 s and its own "avg" channel is a trailing mean (~4 s lag at 2 s/sample), so we
# smooth the live value with a centred median (keeps edges, rejects single-sample spikes).
SMO2_SMOOTHING_WINDOW_S: Final = 9.0  # centred: ±4.5 s (5 samples at 2 s, 9 at 1 s)
SMO2_MAX_GAP_S: Final = 10.0  # a longer silence splits the stream: never smoothed across
SMO2_BASELINE_WINDOW_S: Final = 30.0  # pre-effort baseline: median of the last 30 s at rest
SMO2_BASELINE_MAX_AGE_S: Final = 300.0  # a baseline older than this (e.g. across a gap) is void
# An effort is a desaturation at least this many SmO2 percentage points below the
# pre-effort baseline; interval efforts desaturate by 15–40 points, noise is ~±3.
SMO2_MIN_DESATURATION_PCT: Final = 10.0
# An effort must stay below that level for at least this long. Cool-down dips on the real
# Moxy file (tests/data/moxy/moxy_intervals_full.csv, t = 1520 s and 1712 s) stay below it for
# 6–12 s; a work interval of ≥ 20 s stays below for its length plus the recovery delay.
# Project choice, from that file.
SMO2_MIN_EFFORT_S: Final = 20.0
# Recovery is timed from the END OF WORK (issue 9, item 4): from power (the last sample at
# or above the work threshold) or HR (its peak) when present, else from the SmO2 trace: the
# last smoothed sample before the final rise within max(SMO2_MIN_PLATEAU_PCT,
# SMO2_WORK_END_RISE_FRACTION × depth) of the work level, the work level being the median
# live SmO2 over SMO2_WORK_LEVEL_WINDOW_S. Plateau noise after smoothing is ~±2 points on
# Moxy data (~±3 on the noisy real file), hence 3 points; the same band decides whether a
# fitted recovery asymptote is the baseline or an overshoot above it, and which rest samples
# (within the band of the baseline) are fitted jointly as observations of that asymptote
# (issue 9: on synthetic sessions the window's last rest samples are often already falling
# into the effort and pulled the joint level ~0.9 point low; within the band, ~0.2).
# Project choices.
SMO2_MIN_PLATEAU_PCT: Final = 3.0
SMO2_WORK_END_RISE_FRACTION: Final = 0.10
SMO2_WORK_LEVEL_WINDOW_S: Final = 20.0  # ten 2-s Moxy samples: median error ~0.5 pt at ±2 pt
# Recovery kinetics: y = y0 until a delay TD after the end of work, then a mono-exponential
# rise with time constant τ. TD is found by a grid search in steps of SMO2_DELAY_STEP_S up
# to SMO2_MAX_DELAY_S: reoxygenation starts 5–15 s after work on Moxy recordings (the real
# file: ~14 s), so 60 s bounds it with margin; 0.5 s is a quarter of Moxy's 2-s sampling.
SMO2_MAX_DELAY_S: Final = 60.0
SMO2_DELAY_STEP_S: Final = 0.5
# T95 is read off the fitted curve when the fit explains at least this share of the variance
# (else off the smoothed trace). Project choice: the real Moxy file's four recoveries fit with
# R² 0.87–0.96; a recovery that is not one exponential (two phases, a dip) falls below.
SMO2_MIN_FIT_R2: Final = 0.8
# Live power without a session-wide threshold: work and rest must differ by at least this
# much (W) within an effort's window for the power to mark the end of work (project choice:
# an easy spin at 80–120 W against intervals at 200 W and more).
SMO2_AUTO_POWER_MIN_SPREAD_W: Final = 50.0
SMO2_MAX_RECOVERY_S: Final = 600.0  # recovery still incomplete after this: censored
# Hyperaemic overshoot is looked for this long after the smoothed T95 crossing; when the
# fitted T95 comes later than the data then reach, the watch goes on (once) to this long
# after the fitted T95, so that the curve T95 is read from is covered by data.
SMO2_OVERSHOOT_WINDOW_S: Final = 60.0

# --- Grip squeeze detection (issue 2, item 6) ----------------------------------------------
# A squeeze starts above max(GRIP_SQUEEZE_MIN_KG, GRIP_SQUEEZE_ON_FRACTION·max force) and ends
# below half of that (hysteresis against tremor near the threshold).
GRIP_SQUEEZE_MIN_KG: Final = 2.0
GRIP_SQUEEZE_ON_FRACTION: Final = 0.3
GRIP_SQUEEZE_MIN_DURATION_S: Final = 0.2

# --- rpe_power_mismatch reference (ARTICLE; window is ours) ------------------------------
RPE_REFERENCE_SESSIONS: Final = 5  # reference = mean of the athlete's last 5 sessions
RPE_MIN_REFERENCE_SESSIONS: Final = 3

# --- Morning HR and grip, three days running (ARTICLE; PLEWS_2013; HOPKINS_2000) ----------
# ARTICLE: "if your morning heart rate is elevated and your grip strength feels flat for
# three days running, you have probably drifted past the hormetic zone. Back off intensity
# for 48 hours and let glutathione regenerate." Read as (processors/hormetic.py):
# * elevated: the morning's resting HR lies beyond its day-to-day noise, above the
#   established baseline's mean + HR_GRIP_ELEVATED_SD·SD (the band of processors/trends.py,
#   widened; a provisional baseline raises nothing). One SD, not the normal band's
#   NORMAL_BAND_SD (PLEWS_2013's smallest worthwhile change, which judges the 7-day mean):
#   a single morning wiggles by about one SD, so ~31% of ordinary mornings lie above
#   mean + 0.5·SD and three in a row would happen by chance ~3% of days (an alert a month);
#   above mean + 1·SD ~16% do, three in a row ~0.4% of days (project choice);
# * flat: the grip MVC shows no real rise over the athlete's own MVC baseline (their grip
#   tests on days d−35 … d−3, before the run): MVC < mean·(1 + GRIP_NOISE_Z·√2·CV), the
#   test's own noise as processors/grip.py computes it (HOPKINS_2000; CV known from
#   GRIP_MIN_BASELINE_SESSIONS tests — until then the rule is undecided, no noise is
#   guessed). A fall counts as flat too: it is not the rise an adapting athlete shows;
# * three days running: HR_GRIP_RUN_DAYS consecutive calendar days (UTC), each with an
#   accepted morning reading above the band. Grip is tested around sessions, not every
#   morning, so the run needs at least HR_GRIP_MIN_GRIP_TESTS grip test(s) among its days,
#   every one flat (project choice). A day without a morning reading breaks the run: it
#   cannot be raised across a gap, and a gap neither raises nor clears (missing data never
#   clears an alert); a measured day in the band, or a grip test that rose, clears it.
HR_GRIP_RUN_DAYS: Final = 3
HR_GRIP_ELEVATED_SD: Final = 1.0
HR_GRIP_MIN_GRIP_TESTS: Final = 1
HR_GRIP_BACK_OFF_H: Final = 48.0  # "Back off intensity for 48 hours"

# --- Power plateau (ARTICLE; PLEWS_2013; FOSTER_2001) ------------------------------------
# ARTICLE: "If your wattage has flatlined for three weeks despite perfect compliance, stop
# looking at the training plan—look at recovery hygiene." Read as (processors/plateau.py),
# over the POWER_PLATEAU_WINDOW_DAYS days ending with the session evaluated:
# * matched effort: sessions of the same perceived exertion, the session RPE on the CR-10
#   scale rounded to a whole point (FOSTER_2001); each RPE with ≥ 2 sessions is a group, and
#   the power trend is the slope of mean session power over time *within* the groups (one
#   regression line, a level per group), so a hard session never compares with an easy one;
# * flat: that slope, over the window, rises by less than the smallest worthwhile change:
#   NORMAL_BAND_SD × the session-to-session SD about the line (PLEWS_2013's 0.5·SD applied
#   to the athlete's own power noise at matched effort — project choice), and at least
#   POWER_PLATEAU_MIN_RISE of their mean power (project choice: without it a perfectly
#   repeatable series would have a change of 0 W to beat). A fall counts as flat: wattage
#   that does not rise is the plateau (rpe_power_mismatch watches the steep falls);
# * compliance: the athlete kept training — at least POWER_PLATEAU_MIN_SESSIONS_PER_WEEK
#   sessions in each of the window's three weeks (no plan is stored, so compliance is the
#   training logged; project choice: two a week is the least a plan for progress holds);
# * enough to decide: ≥ POWER_PLATEAU_MIN_MATCHED_SESSIONS sessions in groups, the first
#   and last at least POWER_PLATEAU_MIN_SPAN_DAYS apart; else the finding is undecided.
# An info finding, not an alert: published with the session (`power_plateau`).
POWER_PLATEAU_WINDOW_DAYS: Final = 21  # "flatlined for three weeks"
POWER_PLATEAU_MIN_SESSIONS_PER_WEEK: Final = 2
POWER_PLATEAU_MIN_MATCHED_SESSIONS: Final = 4
POWER_PLATEAU_MIN_SPAN_DAYS: Final = 14
POWER_PLATEAU_MIN_RISE: Final = 0.01
# --- Lab markers entered by hand (issue 14; ARTICLE "Biomarkers for oxidative stress") ------
# Lab assays, not wearables: the athlete enters them (`redox-streamer log`, MQTT set/<marker>)
# with the draw's timing. What a timing means: `fasted` (on waking, before food), `pre-training`
# (before the session, rested) — both "resting" draws, what the bands below describe — and
# `post-45min` (45 min after the session), the article's third data point.

# GSH:GSSG (reduced to oxidized glutathione, a ratio n:1), gsh_gssg_low — ARTICLE: "A ratio
# below 100:1 indicates the cell is leaning toward oxidative stress — not necessarily toxic,
# but leaning."
GSH_GSSG_LOW: Final = 100.0
# ARTICLE: "The sweet spot lives between 150:1 and 300:1 for most trained individuals." An
# open gsh_gssg_low alert clears only from the range's floor on (project choice: between 100
# and 150:1 a ratio is no longer "leaning" but not back in the normal band, and the
# article's advice resumes "when signals return to their normal band").
GSH_GSSG_TRAINED_LOW: Final = 150.0
GSH_GSSG_TRAINED_HIGH: Final = 300.0
# gsh_gssg_high (info) — ARTICLE: "Above 400:1 and you are likely over-supplemented,
# suppressing the ROS bursts that drive mitochondrial biogenesis."
GSH_GSSG_HIGH: Final = 400.0
# ARTICLE: "a single high-intensity interval session can drop your ratio by 40% within fifteen
# minutes. Timing the blood draw matters — fasted, pre-training, and 45 minutes post-session
# gives you three useful data points." The bands above are for resting draws; a post-session
# draw is not judged against them (a 40% drop would put a 160:1 athlete at 96:1, "leaning
# oxidative" from one good session). It is stored, published and drawn, and set against the
# same day's resting draw (its drop in %), which is what a post draw is for.
GSH_GSSG_HIIT_DROP: Final = 0.40
# Plausible entry range (n:1): assays report ~1–1000:1; outside it the value is a typo or
# another unit (e.g. the GSSG share in %), and is refused with the fix.
GSH_GSSG_MIN: Final = 1.0
GSH_GSSG_MAX: Final = 2000.0

# dROMs (derivatives of reactive oxygen metabolites, CARR U; 1 CARR U ≈ 0.08 mg/dL H2O2) —
# ARTICLE: "only if the dROMs reading exceeds baseline by more than 35% after ten minutes of
# rest". The baseline is the athlete's own: the median of their last DROMS_BASELINE_VALUES
# earlier resting dROMs (fasted or pre-training, the draw taken after ten minutes of rest);
# with fewer than DROMS_BASELINE_MIN_VALUES there is no baseline and no verdict (project
# choice: 3 is the fewest whose median resists one odd value; 5 keeps it recent).
DROMS_RISE: Final = 0.35
DROMS_BASELINE_MIN_VALUES: Final = 3
DROMS_BASELINE_VALUES: Final = 5
# Plausible entry range (CARR U): healthy ~250–300, high oxidative stress > 500; the
# photometric assay reads up to ~1000.
DROMS_MIN_CARR_U: Final = 50.0
DROMS_MAX_CARR_U: Final = 1500.0

# Urine lipid-peroxidation dipstick (malondialdehyde) — ARTICLE: "cheap, fifteen-second read,
# but only sensitive above 5 μmol/L. False negatives are common in well-adapted athletes. I use
# it as a binary filter: if it goes positive, pull back; if negative, still cross-check with
# blood every six weeks."
LIPID_DIPSTICK_SENSITIVITY_UMOL_L: Final = 5.0
LIPID_DIPSTICK_CROSS_CHECK_WEEKS: Final = 6
