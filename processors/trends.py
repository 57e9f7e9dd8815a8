"""Daily trends of morning readings: baseline, rolling mean, normal band, and trend rules.

A *daily history* is a 1-D float array with one value per calendar day, oldest first,
whose LAST element is the evaluation day ``d`` (so ``history[-1 - k]`` is day ``d − k``).
Missing or rejected days are NaN. :func:`history_from_mapping` builds one from a
``{date: value}`` mapping.

Definitions (PLEWS_2013; ARTICLE, see :mod:`processors.physiology`):

* Baseline B: the valid values of days ``d − 35 … d − 8`` (never the last 7 days, so a
  developing trend cannot drag its own reference). Valid only with ≥ 14 values.
  ``mean_B``, ``SD_B`` (ddof 1) and ``median_B``.
* Rolling mean: the mean of the valid values of days ``d − 6 … d``; needs ≥ 3 values.
* Normal band: ``mean_B ± 0.5·SD_B`` (the smallest worthwhile change).
* CV: the coefficient of variation of the last 7 days, SD (ddof 1) / mean, in percent.

Rule evaluators return frozen records carrying the numbers they decided on, so an alert can
cite its evidence. ``evaluable`` is False when there is not enough data to decide
(``reason`` says what is missing); then ``triggered`` is False.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from processors import physiology as ph

FloatArray = npt.NDArray[np.float64]


def history_from_mapping(values: Mapping[date, float], day: date, length: int = 36) -> FloatArray:
    """Daily history ending on ``day`` (inclusive), ``length`` days long, NaN where absent.

    ``length`` defaults to 36 days: enough for the baseline window ``d − 35 … d``.
    """
    if length < 1:
        raise ValueError(f"history length must be at least 1 day, got {length}")
    first = day - timedelta(days=length - 1)
    out = np.full(length, np.nan)
    for when, value in values.items():
        index = (when - first).days
        if 0 <= index < length:
            out[index] = float(value)
    return out


def _as_history(history: npt.ArrayLike) -> FloatArray:
    array = np.asarray(history, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"a daily history is 1-D (one value per day), got shape {array.shape}")
    if np.isinf(array).any():
        raise ValueError("a daily history holds finite values or NaN for missing days, not ±inf")
    return array


def _days_back(history: FloatArray, first_back: int, last_back: int) -> FloatArray:
    """Values of days ``d − first_back … d − last_back`` (first_back ≥ last_back ≥ 0).

    Days before the start of the history are treated as missing.
    """
    n = history.size
    start = n - 1 - first_back
    stop = n - last_back  # exclusive
    window = np.full(first_back - last_back + 1, np.nan)
    lo = max(start, 0)
    if stop > lo:
        window[lo - start :] = history[lo:stop]
    return window


def _valid_days_back(history: FloatArray, first_back: int, last_back: int) -> FloatArray:
    """The valid (non-NaN) values of days ``d − first_back … d − last_back``, oldest first."""
    window = _days_back(history, first_back, last_back)
    return window[~np.isnan(window)]


def _computed(named: Mapping[str, float | None]) -> dict[str, float]:
    """The entries of ``named`` that were computed (not None): an alert's evidence."""
    return {k: v for k, v in named.items() if v is not None}


@dataclass(frozen=True, slots=True)
class Baseline:
    """Baseline B of a daily series: statistics of days ``d − first … d − last``."""

    mean: float
    sd: float
    median: float
    n_days: int
    first_day_back: int
    last_day_back: int


def baseline(
    history: npt.ArrayLike,
    *,
    first_day_back: int = ph.BASELINE_FIRST_DAY_BACK,
    last_day_back: int = ph.BASELINE_LAST_DAY_BACK,
    min_valid_days: int = ph.BASELINE_MIN_VALID_DAYS,
) -> Baseline | None:
    """Baseline B from days ``d − first_day_back … d − last_day_back``, or None if too few.

    Units are those of the history (lnRMSSD in ln(ms), resting HR in bpm). SD has ddof 1.
    """
    if not first_day_back >= last_day_back >= 1:
        raise ValueError(
            f"baseline window must end before day d: got d−{first_day_back} … d−{last_day_back}"
        )
    valid = _valid_days_back(_as_history(history), first_day_back, last_day_back)
    if valid.size < max(min_valid_days, 2):
        return None
    return Baseline(
        mean=float(valid.mean()),
        sd=float(valid.std(ddof=1)),
        median=float(np.median(valid)),
        n_days=int(valid.size),
        first_day_back=first_day_back,
        last_day_back=last_day_back,
    )


def rolling_mean(
    history: npt.ArrayLike,
    *,
    days: int = ph.ROLLING_MEAN_DAYS,
    min_values: int = ph.ROLLING_MEAN_MIN_VALUES,
) -> float | None:
    """Mean of the valid values of days ``d − days + 1 … d``, or None with < ``min_values``."""
    valid = _valid_days_back(_as_history(history), days - 1, 0)
    if valid.size < min_values:
        return None
    return float(valid.mean())


def cv_pct(
    history: npt.ArrayLike,
    *,
    days: int = ph.ROLLING_MEAN_DAYS,
    min_values: int = ph.ROLLING_MEAN_MIN_VALUES,
) -> float | None:
    """Coefficient of variation of the last ``days`` days, 100·SD(ddof 1)/mean, in percent."""
    valid = _valid_days_back(_as_history(history), days - 1, 0)
    if valid.size < max(min_values, 2):
        return None
    mean = float(valid.mean())
    if mean == 0.0:
        return None
    return float(100.0 * valid.std(ddof=1) / abs(mean))


BaselineStatus = Literal["none", "provisional", "established"]
"""How far an athlete's baseline has come: none yet, provisional (few days, wide band,
no alerts), established (the rule's valid days)."""


@dataclass(frozen=True, slots=True)
class DailyTrend:
    """Summary of one day of a daily series, for ``redox/<athlete>/morning`` and the store.

    All values are in the series' unit (``metric`` names it, e.g. ``"ln_rmssd"`` or
    ``"resting_hr_bpm"``); a field is None when its data requirement is not met.
    ``in_band`` tells whether the day's own value lies within the normal band.
    """

    metric: str
    value: float | None
    baseline_mean: float | None
    baseline_sd: float | None
    baseline_median: float | None
    baseline_days: int
    band_low: float | None
    band_high: float | None
    rolling_mean_7d: float | None
    cv_7d_pct: float | None
    in_band: bool | None
    baseline_status: BaselineStatus = "none"

    def as_dict(self) -> dict[str, float | int | str | bool | None]:
        """Flat JSON-ready mapping of the fields."""
        return {
            "metric": self.metric,
            "value": self.value,
            "baseline_mean": self.baseline_mean,
            "baseline_sd": self.baseline_sd,
            "baseline_median": self.baseline_median,
            "baseline_days": self.baseline_days,
            "baseline_status": self.baseline_status,
            "band_low": self.band_low,
            "band_high": self.band_high,
            "rolling_mean_7d": self.rolling_mean_7d,
            "cv_7d_pct": self.cv_7d_pct,
            "in_band": self.in_band,
        }


def provisional_baseline(
    history: npt.ArrayLike,
    *,
    first_day_back: int = ph.BASELINE_FIRST_DAY_BACK,
    min_valid_days: int = ph.BASELINE_PROVISIONAL_MIN_DAYS,
) -> Baseline | None:
    """A provisional baseline from the valid days ``d − first_day_back … d − 1`` (no lag),
    or None with fewer than ``min_valid_days`` (at least 2) of them. Units of the history."""
    # The established baseline's computation over the window that ends yesterday.
    return baseline(
        history, first_day_back=first_day_back, last_day_back=1, min_valid_days=min_valid_days
    )


def sd_upper_limit(sd: float, n: int, confidence: float) -> float:
    """The upper ``confidence`` limit of a population SD estimated as ``sd`` from ``n``
    normal values: sd·√((n−1)/χ²_{1−confidence, n−1}) (NIST_SD_CI). Same unit as ``sd``."""
    if n < 2:
        raise ValueError(f"an SD needs at least 2 values, got {n}")
    return sd * math.sqrt((n - 1) / float(stats.chi2.ppf(1.0 - confidence, n - 1)))


def daily_trend(
    history: npt.ArrayLike,
    metric: str,
    *,
    first_day_back: int = ph.BASELINE_FIRST_DAY_BACK,
    last_day_back: int = ph.BASELINE_LAST_DAY_BACK,
    min_valid_days: int = ph.BASELINE_MIN_VALID_DAYS,
    rolling_days: int = ph.ROLLING_MEAN_DAYS,
    rolling_min_values: int = ph.ROLLING_MEAN_MIN_VALUES,
    band_sd: float = ph.NORMAL_BAND_SD,
    provisional_min_days: int = ph.BASELINE_PROVISIONAL_MIN_DAYS,
    provisional_confidence: float = ph.BASELINE_PROVISIONAL_SD_CONFIDENCE,
) -> DailyTrend:
    """Baseline, normal band (mean_B ± band_sd·SD_B), 7-day rolling mean and CV for day d.

    Before the established baseline has ``min_valid_days`` days, a provisional one (see
    :func:`provisional_baseline`) with a band widened to the SD's upper confidence limit;
    ``baseline_status`` says which (``none`` | ``provisional`` | ``established``).
    """
    array = _as_history(history)
    base = baseline(
        array,
        first_day_back=first_day_back,
        last_day_back=last_day_back,
        min_valid_days=min_valid_days,
    )
    status: BaselineStatus = "established"
    band_sd_value = None if base is None else base.sd
    if base is None:
        base = provisional_baseline(
            array, first_day_back=first_day_back, min_valid_days=provisional_min_days
        )
        status = "none" if base is None else "provisional"
        if base is not None:
            band_sd_value = sd_upper_limit(base.sd, base.n_days, provisional_confidence)
    value = None if array.size == 0 or math.isnan(array[-1]) else float(array[-1])
    low = high = None
    in_band = None
    if base is not None and band_sd_value is not None:
        low = base.mean - band_sd * band_sd_value
        high = base.mean + band_sd * band_sd_value
        if value is not None:
            in_band = low <= value <= high
    return DailyTrend(
        metric=metric,
        value=value,
        baseline_mean=None if base is None else base.mean,
        baseline_sd=None if base is None else base.sd,
        baseline_median=None if base is None else base.median,
        baseline_days=0 if base is None else base.n_days,
        band_low=low,
        band_high=high,
        rolling_mean_7d=rolling_mean(array, days=rolling_days, min_values=rolling_min_values),
        cv_7d_pct=cv_pct(array, days=rolling_days, min_values=rolling_min_values),
        in_band=in_band,
        baseline_status=status,
    )


@dataclass(frozen=True, slots=True)
class HrvDowntrend:
    """Evidence for the ``hrv_downtrend`` rule on a lnRMSSD history (units: ln(ms)).

    Over the valid mornings of the last ``window_days``: ``slope_per_day`` is their
    Theil–Sen slope and ``slope_change`` = (window_days − 1)·|slope| the fall of that line
    across the window, against ``min_change`` = band_sd·SD_B; ``days_below_band`` of them
    lie below ``band_low`` = mean_B − band_sd·SD_B, the highest being ``highest_value``.
    """

    triggered: bool
    evaluable: bool
    reason: str
    valid_days_in_window: int
    window_days: int
    days_below_band: int
    slope_per_day: float | None
    slope_change: float | None
    min_change: float | None
    highest_value: float | None
    band_low: float | None
    baseline_mean: float | None
    baseline_sd: float | None

    def evidence(self) -> dict[str, float]:
        """Unit-named numbers for an alert (only those that were computed)."""
        named = {
            "slope_ln_ms_per_day": self.slope_per_day,
            "change_over_window_ln_ms": self.slope_change,
            "min_change_ln_ms": self.min_change,
            "days_below_band": float(self.days_below_band),
            "highest_in_window_ln_ms": self.highest_value,
            "band_low_ln_ms": self.band_low,
            "baseline_mean_ln_ms": self.baseline_mean,
            "baseline_sd_ln_ms": self.baseline_sd,
            "valid_days_in_window": float(self.valid_days_in_window),
        }
        return _computed(named)


def hrv_downtrend(
    ln_rmssd_history: npt.ArrayLike,
    *,
    window_days: int = ph.HRV_DOWNTREND_WINDOW_DAYS,
    min_valid_days: int = ph.HRV_DOWNTREND_MIN_VALID_DAYS,
    band_sd: float = ph.NORMAL_BAND_SD,
    first_day_back: int = ph.BASELINE_FIRST_DAY_BACK,
    last_day_back: int = ph.BASELINE_LAST_DAY_BACK,
    baseline_min_days: int = ph.BASELINE_MIN_VALID_DAYS,
) -> HrvDowntrend:
    """``hrv_downtrend`` on day d: "trends downward over 5 consecutive days".

    Over the mornings of days d − window_days + 1 … d, all must hold:

    1. ≥ ``min_valid_days`` (4 of 5) are valid: at most one missing morning;
    2. consecutive: every valid morning lies below the normal band, mean_B − band_sd·SD_B
       (a step of one or two bad nights leaves the mornings before it in the band);
    3. downward: their Theil–Sen slope β < 0 with (window_days − 1)·|β| ≥ band_sd·SD_B,
       the smallest worthwhile change (a level that stays low is not a trend, and a fall
       smaller than the SWC is day-to-day noise).
    """
    array = _as_history(ln_rmssd_history)
    base = baseline(
        array,
        first_day_back=first_day_back,
        last_day_back=last_day_back,
        min_valid_days=baseline_min_days,
    )
    window = _days_back(array, window_days - 1, 0)
    mask = ~np.isnan(window)
    values = window[mask]
    n_valid = int(values.size)
    band_low = None if base is None else base.mean - band_sd * base.sd
    min_change = None if base is None else band_sd * base.sd
    below = 0 if band_low is None else int((values < band_low).sum())

    def result(
        triggered: bool, evaluable: bool, reason: str, slope: float | None = None
    ) -> HrvDowntrend:
        return HrvDowntrend(
            triggered=triggered,
            evaluable=evaluable,
            reason=reason,
            valid_days_in_window=n_valid,
            window_days=window_days,
            days_below_band=below,
            slope_per_day=slope,
            slope_change=None if slope is None else (window_days - 1) * abs(slope),
            min_change=min_change,
            highest_value=float(values.max()) if n_valid else None,
            band_low=band_low,
            baseline_mean=None if base is None else base.mean,
            baseline_sd=None if base is None else base.sd,
        )

    if base is None or band_low is None or min_change is None:
        return result(False, False, f"baseline needs ≥ {baseline_min_days} valid days")
    if n_valid < max(min_valid_days, 2):
        return result(
            False,
            False,
            f"only {n_valid} valid days in the last {window_days} (need {min_valid_days})",
        )
    days = np.arange(window_days, dtype=np.float64)[mask]
    slope = float(stats.theilslopes(values, days).slope)
    failed = []
    if below < n_valid:
        failed.append(
            f"{n_valid - below} of {n_valid} mornings within or above the normal band "
            f"(from {band_low:.2f})"
        )
    if not (slope < 0.0 and (window_days - 1) * abs(slope) >= min_change):
        failed.append(
            f"no worthwhile fall: trend {slope:+.3f}/day, "
            f"{(window_days - 1) * -slope:+.3f} over the window (need ≤ {-min_change:.3f})"
        )
    if failed:
        return result(False, True, "; ".join(failed), slope)
    return result(True, True, f"below the normal band on all {n_valid} mornings and falling", slope)


@dataclass(frozen=True, slots=True)
class RhrCreep:
    """Evidence for the ``rhr_creep`` rule on a resting-HR history (bpm).

    ``delta_bpm`` = mean of the valid days among the last ``window_days`` − median_B;
    ``z`` = delta / (SD_B / √n) with n = ``n_days`` (valid days in the window);
    ``days_above`` counts window days strictly above median_B.
    """

    triggered: bool
    evaluable: bool
    reason: str
    n_days: int
    window_days: int
    delta_bpm: float | None
    z: float | None
    days_above: int
    baseline_median_bpm: float | None
    baseline_sd_bpm: float | None
    window_mean_bpm: float | None

    def evidence(self) -> dict[str, float]:
        """Unit-named numbers for an alert (only those that were computed)."""
        named = {
            "delta_bpm": self.delta_bpm,
            "z": self.z,
            "days_above_baseline_median": float(self.days_above),
            "days_with_values": float(self.n_days),
            "baseline_median_bpm": self.baseline_median_bpm,
            "baseline_sd_bpm": self.baseline_sd_bpm,
            "mean_last_days_bpm": self.window_mean_bpm,
        }
        return _computed(named)


def rhr_creep(
    resting_hr_history: npt.ArrayLike,
    *,
    delta_bpm: float = ph.RHR_CREEP_DELTA_BPM,
    min_z: float = ph.RHR_CREEP_MIN_Z,
    window_days: int = ph.RHR_CREEP_WINDOW_DAYS,
    min_days_above: int = ph.RHR_CREEP_MIN_DAYS_ABOVE,
    first_day_back: int = ph.BASELINE_FIRST_DAY_BACK,
    last_day_back: int = ph.BASELINE_LAST_DAY_BACK,
    baseline_min_days: int = ph.BASELINE_MIN_VALID_DAYS,
) -> RhrCreep:
    """``rhr_creep`` on day d: all three must hold.

    1. Δ = mean(valid days of the last ``window_days``) − median_B ≥ ``delta_bpm`` (5 bpm);
    2. Δ / (SD_B/√n) ≥ ``min_z`` (2), n = valid days in the window;
    3. ≥ ``min_days_above`` (5) of those days strictly above median_B.

    With SD_B = 0 (a perfectly flat baseline) z is +inf when Δ > 0.
    """
    array = _as_history(resting_hr_history)
    base = baseline(
        array,
        first_day_back=first_day_back,
        last_day_back=last_day_back,
        min_valid_days=baseline_min_days,
    )
    valid = _valid_days_back(array, window_days - 1, 0)
    n = int(valid.size)

    def result(
        triggered: bool,
        evaluable: bool,
        reason: str,
        days_above: int = 0,
        delta: float | None = None,
        z: float | None = None,
        window_mean: float | None = None,
    ) -> RhrCreep:
        return RhrCreep(
            triggered=triggered,
            evaluable=evaluable,
            reason=reason,
            n_days=n,
            window_days=window_days,
            delta_bpm=delta,
            z=z,
            days_above=days_above,
            baseline_median_bpm=None if base is None else base.median,
            baseline_sd_bpm=None if base is None else base.sd,
            window_mean_bpm=window_mean,
        )

    if base is None:
        return result(False, False, f"baseline needs ≥ {baseline_min_days} valid days")
    days_above = int((valid > base.median).sum())
    if n < min_days_above:
        return result(
            False,
            False,
            f"only {n} valid days in the last {window_days} (need {min_days_above})",
            days_above,
        )
    window_mean = float(valid.mean())
    delta = window_mean - base.median
    if base.sd > 0.0:
        z = delta / (base.sd / math.sqrt(n))
    else:
        z = math.inf if delta > 0 else (-math.inf if delta < 0 else 0.0)
    failed = []
    if delta < delta_bpm:
        failed.append(f"rise {delta:.1f} bpm < {delta_bpm:g}")
    if z < min_z:
        failed.append(f"z {z:.2f} < {min_z:g}")
    if days_above < min_days_above:
        failed.append(f"{days_above} days above the baseline median < {min_days_above}")
    triggered = not failed
    reason = "sustained rise above the baseline median" if triggered else "; ".join(failed)
    return result(triggered, True, reason, days_above, delta, z, window_mean)
