"""One athlete's processing state: device records in, result envelopes out.

:class:`AthleteState` is the :class:`streamer.pipeline.AthleteProcessor` of one athlete.
It joins the device layer and the processors without knowing either's internals:

* heart rate → the beat timeline is built by summing RR (re-anchored to the receipt time
  after a gap or when it drifts), each interval goes into a per-strap
  :class:`~processors.hrv_stream.LiveHrv` (``after_gap`` set for the first beat after a
  :class:`~devices.records.GapEvent`); a rolling HRV result every ``hrv_every_s`` seconds of
  beats, judged by the same quality gate as a morning reading (a rejected window is
  published with its verdict and reason, without numbers);
* SmO2 → a per-sensor :class:`~processors.oxygenation.EffortDetector`; one ``oxygenation``
  result per effort, and one per session at :class:`SessionEnd`;
* SpO2 (pulse oximeter) → live samples and the latest value for the live view;
* force → during a grip test (:class:`GripPhase` … :class:`GripEnd`) the traces are kept
  and measured with :func:`processors.rules.measure_grip`;
* a morning reading (:class:`MorningStart` … :class:`MorningEnd`) →
  :func:`processors.morning.morning_reading` → daily trends → rules → the
  :class:`~processors.alerts.AlertBook`.

The protocol markers (:class:`MorningStart` etc.) travel through the athlete's inbox like
device records, so they are ordered with the samples they delimit; the pipeline never sheds
them. What must survive a restart lives in the store: morning readings, sessions and grip
tests (history the pipeline records), the alert book and the baselines (saved here). On
construction the state reloads them, so trends and alert state continue where they were.

Memory is bounded: the HRV trackers hold one window, the morning buffer and grip traces
are capped, and the histories keep only the days and sessions the rules look at.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from devices.records import (
    MEASURED_SAMPLES,
    BatteryLevel,
    ForceSample,
    GapEvent,
    HeartRateSample,
    MeasuredSample,
    PowerSample,
    SmO2Sample,
    SpO2Sample,
    TindeqWeight,
)
from processors import physiology as ph
from processors.alerts import Alert, AlertBook, AlertState, RuleEvaluation
from processors.grip import GripClass, GripInputError, GripTest
from processors.hrv_stream import LiveHrv, LiveWindow
from processors.morning import MorningReading, morning_reading
from processors.oxygenation import EffortDetector, EffortRecovery, summarise_session
from processors.rules import (
    RuleThresholds,
    SessionLoad,
    evaluate_grip,
    evaluate_morning,
    evaluate_rpe_power_mismatch,
    evaluate_smo2_slow_recovery,
    measure_grip,
)
from processors.trends import DailyTrend, daily_trend, history_from_mapping
from streamer.results import (
    EffortPayload,
    GripPayload,
    HrvPayload,
    JsonValue,
    MorningPayload,
    Result,
    SessionPayload,
    StatusPayload,
    alert_json,
    alert_result,
    live_result,
)
from streamer.store import Store

_LOGGER = logging.getLogger(__name__)

DEFAULT_HRV_EVERY_S: Final = 5.0
"""Seconds of beats between two rolling-HRV results (the window itself is 60 s)."""
BEAT_CLOCK_TOLERANCE_S: Final = 2.0
"""When the summed-RR beat clock and the receipt clock differ by more, re-anchor."""
MORNING_MAX_BEATS: Final = 4000
"""A morning buffer cap: 6 min at 200 bpm is 1200 beats; more means the end was missed."""
GRIP_MAX_SAMPLES_PER_PHASE: Final = 80 * 180
"""Three minutes at the Progressor's 80 Hz per test phase."""
HISTORY_DAYS: Final = ph.BASELINE_FIRST_DAY_BACK + 1
"""Daily values kept: the baseline window reaches back to d − 35."""
SESSIONS_KEPT: Final = 16
"""Session recovery times, RPE loads and grip MVCs kept (rules look at ≤ 5–10)."""
DEVICE_ACTIVE_S: Final = 10.0
"""A device counts as active when its last record is at most this old (record time)."""


# --- protocol markers (travel through the inbox with the samples) ---------------------------


@dataclass(frozen=True, slots=True)
class MorningStart:
    """The athlete lies down for the morning reading (``t_ns``: ns since the epoch)."""

    t_ns: int


@dataclass(frozen=True, slots=True)
class MorningEnd:
    """The morning reading's recording ends; it is analysed now."""

    t_ns: int


@dataclass(frozen=True, slots=True)
class SessionStart:
    """A training session starts (SmO2 efforts and power are attributed to it)."""

    t_ns: int


@dataclass(frozen=True, slots=True)
class SessionEnd:
    """A training session ends; ``rpe`` is the athlete's perceived exertion (CR-10), if given."""

    t_ns: int
    rpe: float | None = None


@dataclass(frozen=True, slots=True)
class GripPhase:
    """A grip-test phase begins: ``minute`` None for the pre-session MVC trials, else the
    minutes after the session this post-session test stands for."""

    t_ns: int
    minute: float | None = None


@dataclass(frozen=True, slots=True)
class GripEnd:
    """The grip test is complete: measure and classify it."""

    t_ns: int


ProtocolEvent = MorningStart | MorningEnd | SessionStart | SessionEnd | GripPhase | GripEnd
PROTOCOL_EVENTS: Final = (MorningStart, MorningEnd, SessionStart, SessionEnd, GripPhase, GripEnd)


# --- what the live view reads ---------------------------------------------------------------


@dataclass
class AthleteSnapshot:
    """Latest values for the live view (None until seen)."""

    hr_bpm: int | None = None
    rr_ms: float | None = None
    ln_rmssd: float | None = None
    rmssd_ms: float | None = None
    smo2_pct: float | None = None
    force_kg: float | None = None
    power_w: int | None = None
    spo2_pct: float | None = None
    battery_pct: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    last_morning: dict[str, JsonValue] | None = None
    last_session_recovery_s: float | None = None
    last_grip_class: str | None = None
    open_alerts: tuple[str, ...] = ()
    alerts_raised: int = 0
    phase: str = "idle"
    last_t_ns: int = 0


class _BeatClock:
    """Beat times from summed RR, anchored to receipt times after gaps or drift."""

    __slots__ = ("t_ns",)

    def __init__(self) -> None:
        self.t_ns: int | None = None

    def beats(self, receipt_ns: int, rr_ms: Sequence[float], after_gap: bool) -> list[int]:
        total_ns = round(sum(rr_ms) * 1e6)
        start = None if after_gap else self.t_ns
        if start is None or abs(start + total_ns - receipt_ns) > BEAT_CLOCK_TOLERANCE_S * 1e9:
            start = receipt_ns - total_ns  # the last beat of the packet arrived at receipt
        times = []
        t = start
        for rr in rr_ms:
            t += round(rr * 1e6)
            times.append(t)
        self.t_ns = t
        return times


class AthleteState:
    """Per-athlete processing; see the module docstring.

    Args:
        athlete: the athlete id (topic segment, store key).
        store: where baselines and the alert book persist (None: memory only).
        thresholds: rule thresholds (profile + config overrides).
        hrv_every_s: seconds of beats between rolling-HRV results.
        live: publish live samples (off while replaying history).
        morning_stabilisation_s, morning_span_s: the morning protocol (seconds discarded,
            seconds analysed); defaults from :mod:`processors.physiology`.
    """

    def __init__(
        self,
        athlete: str,
        store: Store | None = None,
        thresholds: RuleThresholds | None = None,
        *,
        hrv_every_s: float = DEFAULT_HRV_EVERY_S,
        live: bool = True,
        morning_stabilisation_s: float = ph.MORNING_STABILISATION_S,
        morning_span_s: float = ph.MORNING_SPAN_S,
    ) -> None:
        if hrv_every_s <= 0:
            raise ValueError(f"hrv_every_s must be > 0 seconds, got {hrv_every_s}")
        self.athlete = athlete
        self.store = store
        self.thresholds = thresholds or RuleThresholds()
        self.hrv_every_s = hrv_every_s
        self.live = live
        self.morning_stabilisation_s = morning_stabilisation_s
        self.morning_span_s = morning_span_s
        self.snapshot = AthleteSnapshot()
        # Force samples: device clock (µs) anchored to the receipt clock, per device.
        self._force_anchor: dict[str, tuple[int, int]] = {}  # device -> (anchor ns, last µs)
        self._trackers: dict[str, LiveHrv] = {}
        self._clocks: dict[str, _BeatClock] = {}
        self._after_gap: set[str] = set()
        self._since_hrv_ms: dict[str, float] = {}
        self._detectors: dict[str, EffortDetector] = {}
        self._last_seen: dict[str, int] = {}
        # Morning reading in progress: RR (ms) and break flags.
        self._morning_start: int | None = None
        self._morning_rr: list[float] = []
        self._morning_breaks: list[bool] = []
        # Session in progress.
        self._session_start: int | None = None
        self._session_efforts: list[EffortRecovery] = []
        self._power_sum = 0.0
        self._power_n = 0
        # Grip test in progress: phase key (None = pre) -> (t s, kg) trace.
        self._grip_active = False
        self._grip_minute: float | None = None
        self._grip_traces: dict[float | None, tuple[list[float], list[float]]] = {}
        # Histories the rules need (bounded), reloaded from the store.
        self._ln_rmssd: dict[dt.date, float] = {}
        self._rhr: dict[dt.date, float] = {}
        self._recoveries: deque[float | None] = deque(maxlen=SESSIONS_KEPT)
        self._loads: deque[SessionLoad] = deque(maxlen=SESSIONS_KEPT)
        self._mvcs: deque[float] = deque(maxlen=SESSIONS_KEPT)
        self.book = AlertBook(athlete)
        self._reload()

    # --- persistence ------------------------------------------------------------------------

    def _reload(self) -> None:
        store = self.store
        if store is None:
            return
        saved = store.load_alert_book(self.athlete)
        if saved is not None:
            try:
                self.book = AlertBook.from_dict(saved)
            except ValueError:
                _LOGGER.exception("alert book of %s is unreadable; starting empty", self.athlete)
        for row in store.morning_history(self.athlete):
            day = dt.date.fromisoformat(row.date) if row.date else None
            if day is None or row.data.get("accepted") is not True:
                continue
            ln, rhr = row.data.get("ln_rmssd"), row.data.get("resting_hr_bpm")
            if isinstance(ln, int | float) and isinstance(rhr, int | float):
                self._ln_rmssd[day] = float(ln)
                self._rhr[day] = float(rhr)
            self.snapshot.last_morning = row.data
        self._trim_days()
        for row in store.sessions(self.athlete)[-SESSIONS_KEPT:]:
            recovery = row.data.get("recovery_s")
            self._recoveries.append(float(recovery) if isinstance(recovery, int | float) else None)
            rpe, power = row.data.get("rpe"), row.data.get("mean_power_w")
            if isinstance(rpe, int | float) and isinstance(power, int | float) and power > 0:
                self._loads.append(SessionLoad(float(rpe), float(power)))
        for row in store.grip_tests(self.athlete)[-SESSIONS_KEPT:]:
            mvc = row.data.get("mvc_kg")
            if isinstance(mvc, int | float) and mvc > 0:
                self._mvcs.append(float(mvc))
        self.snapshot.open_alerts = tuple(a.rule_id for a in self.book.open_alerts())

    def _save_book(self) -> None:
        if self.store is not None:
            self.store.save_alert_book(self.athlete, self.book.to_dict())

    def _trim_days(self) -> None:
        for series in (self._ln_rmssd, self._rhr):
            if series:
                newest = max(series)
                for day in [d for d in series if (newest - d).days >= HISTORY_DAYS]:
                    del series[day]

    # --- AthleteProcessor -------------------------------------------------------------------

    def process(self, device: str, record: object) -> list[Result]:
        """Feed one device record or protocol marker; returns the results it produced."""
        match record:
            case HeartRateSample():
                return self._heart_rate(device, record)
            case SmO2Sample():
                return self._smo2(device, record)
            case ForceSample():
                return self._force(device, (record,))
            case TindeqWeight():
                return self._force(device, record.samples)
            case PowerSample():
                return self._power(device, record)
            case GapEvent():
                self._gap(device, record)
                return []
            case BatteryLevel():
                if record.battery_pct is not None:
                    self.snapshot.battery_pct[device] = record.battery_pct
                return []
            case (
                MorningStart()
                | MorningEnd()
                | SessionStart()
                | SessionEnd()
                | GripPhase()
                | GripEnd()
            ):
                return self._protocol(record)
            case _ if isinstance(record, MEASURED_SAMPLES):
                # A sample nothing here analyses (SpO2, a new device kind's): published
                # live, never dropped without a word.
                return self._live_only(device, record)
            case _:
                return []

    def close(self) -> list[Result]:
        """End of stream: an open session is summarised (a morning or grip test left open
        is discarded: half a protocol is not a measurement)."""
        out: list[Result] = []
        if self._session_start is not None:
            out.extend(
                self._end_session(SessionEnd(self.snapshot.last_t_ns or self._session_start))
            )
        return out

    # --- devices ----------------------------------------------------------------------------

    def _seen(self, device: str, t_ns: int) -> None:
        self._last_seen[device] = t_ns
        if t_ns > self.snapshot.last_t_ns:
            self.snapshot.last_t_ns = t_ns

    def _gap(self, device: str, gap: GapEvent) -> None:
        self.snapshot.gaps += 1
        self._after_gap.add(device)
        tracker = self._trackers.get(device)
        if tracker is not None:
            tracker.mark_gap()

    def _heart_rate(self, device: str, sample: HeartRateSample) -> list[Result]:
        self._seen(device, sample.t_ns)
        snap = self.snapshot
        snap.hr_bpm = sample.hr_bpm
        out: list[Result] = []
        rr = [r for r in sample.rr_ms if math.isfinite(r) and r > 0]
        after_gap = device in self._after_gap
        self._after_gap.discard(device)
        beat_ts: list[int] = []
        if rr:
            snap.rr_ms = rr[-1]
            clock = self._clocks.setdefault(device, _BeatClock())
            beat_ts = clock.beats(sample.t_ns, rr, after_gap)
            tracker = self._trackers.get(device)
            if tracker is None:
                tracker = self._trackers[device] = LiveHrv()
            window: LiveWindow | None = None
            for i, value in enumerate(rr):
                window = tracker.add(value, after_gap=after_gap and i == 0) or window
            since = self._since_hrv_ms.get(device, 0.0) + sum(rr)
            # An accepted window still short of normal beats has nothing to say yet.
            speaks = window is not None and (
                window.metrics is not None or not window.verdict.accepted
            )
            if window is not None and speaks and since >= 1000.0 * self.hrv_every_s:
                since = 0.0
                out.append(self._hrv_result(sample.t_ns, window))
            self._since_hrv_ms[device] = since
            if self._morning_start is not None and len(self._morning_rr) < MORNING_MAX_BEATS:
                self._morning_breaks.extend([after_gap] + [False] * (len(rr) - 1))
                self._morning_rr.extend(rr)
        if self.live:
            out.append(live_result(self.athlete, device, sample, beat_ts_ns=beat_ts))
        return out

    def _hrv_result(self, t_ns: int, window: LiveWindow) -> Result:
        w, verdict = window.metrics, window.verdict
        self.snapshot.ln_rmssd = None if w is None else w.ln_rmssd
        self.snapshot.rmssd_ms = None if w is None else w.rmssd_ms
        return HrvPayload(
            accepted=verdict.accepted,
            reject_reason=verdict.reject_reason,
            abnormal_pct=verdict.abnormal_pct,
            rmssd_ms=None if w is None else w.rmssd_ms,
            ln_rmssd=None if w is None else w.ln_rmssd,
            sdnn_ms=None if w is None else w.sdnn_ms,
            mean_nn_ms=None if w is None else w.mean_nn_ms,
            mean_hr_bpm=None if w is None else w.mean_hr_bpm,
            pnn50_pct=None if w is None else w.pnn50_pct,
            n_beats=None if w is None else w.n_beats,
            window_s=ph.HRV_WINDOW_S,
        ).result(self.athlete, t_ns)

    def _smo2(self, device: str, sample: SmO2Sample) -> list[Result]:
        self._seen(device, sample.t_ns)
        self.snapshot.smo2_pct = sample.smo2_pct
        detector = self._detectors.get(device)
        if detector is None:
            detector = self._detectors[device] = EffortDetector()
        out: list[Result] = []
        try:
            efforts = detector.add(sample.t_ns / 1e9, sample.smo2_pct)
        except ValueError as exc:  # out-of-order or impossible sample: skip it, say why
            _LOGGER.warning("%s/%s: SmO2 sample skipped: %s", self.athlete, device, exc)
            efforts = []
        for effort in efforts:
            out.append(self._effort_result(device, effort))
        if self.live:
            out.append(live_result(self.athlete, device, sample))
        return out

    def _effort_result(self, device: str, e: EffortRecovery) -> Result:
        if self._session_start is not None:
            self._session_efforts.append(e)
        return EffortPayload(
            work_end_source=e.work_end_source,
            baseline_pct=e.baseline_pct,
            min_pct=e.min_pct,
            t_half_s=e.t_half_s,
            t95_s=e.t95_s,
            tau_s=e.tau_s,
            delay_s=e.delay_s,
            reox_rate_pct_s=e.reoxygenation_rate_pct_s,
            overshoot_pct=e.overshoot_pct,
            recovered=e.recovered,
            observed_s=e.observed_s,
        ).result(self.athlete, round(e.work_end_s * 1e9), device)

    def _power(self, device: str, sample: PowerSample) -> list[Result]:
        self._seen(device, sample.t_ns)
        self.snapshot.power_w = sample.power_w
        # Power marks the end of work for every SmO2 sensor's efforts: recovery is timed
        # from it (issue 9), not from the deepest dip.
        for detector in self._detectors.values():
            detector.add_activity(sample.t_ns / 1e9, sample.power_w)
        if self._session_start is not None:
            self._power_sum += sample.power_w
            self._power_n += 1
        return [live_result(self.athlete, device, sample)] if self.live else []

    def _live_only(self, device: str, sample: MeasuredSample) -> list[Result]:
        self._seen(device, sample.t_ns)
        # NaN: the oximeter had no valid reading; the view keeps the last one.
        if isinstance(sample, SpO2Sample) and math.isfinite(sample.spo2_pct):
            self.snapshot.spo2_pct = sample.spo2_pct
        return [live_result(self.athlete, device, sample)] if self.live else []

    def _force(self, device: str, samples: Iterable[ForceSample]) -> list[Result]:
        out: list[Result] = []
        trace = None
        if self._grip_active:
            trace = self._grip_traces.setdefault(self._grip_minute, ([], []))
        for sample in samples:
            self._seen(device, sample.t_ns)
            self.snapshot.force_kg = sample.force_kg
            if trace is not None and len(trace[0]) < GRIP_MAX_SAMPLES_PER_PHASE:
                t_s = self._force_time_ns(device, sample) / 1e9
                if not trace[0] or t_s > trace[0][-1]:
                    trace[0].append(t_s)
                    trace[1].append(sample.force_kg)
            if self.live:
                out.append(live_result(self.athlete, device, sample))
        return out

    def _force_time_ns(self, device: str, sample: ForceSample) -> int:
        """A force sample's time: the dynamometer's µs clock anchored to the receipt time.

        A Progressor packs several samples, stamped with one receipt time, into a
        notification; its own clock (``t_us``) orders them. The anchor is reset when that
        clock starts again (a new measurement) or wraps.
        """
        if sample.t_us is None:
            return sample.t_ns
        anchor = self._force_anchor.get(device)
        if anchor is None or sample.t_us < anchor[1]:
            anchor = (sample.t_ns - sample.t_us * 1000, sample.t_us)
        self._force_anchor[device] = (anchor[0], sample.t_us)
        return anchor[0] + sample.t_us * 1000

    # --- protocols --------------------------------------------------------------------------

    def _protocol(self, event: ProtocolEvent) -> list[Result]:
        match event:
            case MorningStart():
                self._morning_start = event.t_ns
                self._morning_rr.clear()
                self._morning_breaks.clear()
                self.snapshot.phase = "morning reading"
                # The strap may have been worn before: the reading starts a fresh series.
                self._after_gap.update(self._trackers)
                return []
            case MorningEnd():
                return self._end_morning(event)
            case SessionStart():
                self._session_start = event.t_ns
                self._session_efforts = []
                self._power_sum, self._power_n = 0.0, 0
                self.snapshot.phase = "session"
                return []
            case SessionEnd():
                return self._end_session(event)
            case GripPhase():
                self._grip_active = True
                self._grip_minute = event.minute
                if event.minute is None:
                    self._grip_traces.clear()
                self.snapshot.phase = (
                    "grip test: MVC"
                    if event.minute is None
                    else f"grip test: +{event.minute:g} min"
                )
                return []
            case GripEnd():
                return self._end_grip(event)

    def _end_morning(self, end: MorningEnd) -> list[Result]:
        start = self._morning_start
        self._morning_start = None
        self.snapshot.phase = "idle"
        if start is None:
            return []
        day = dt.datetime.fromtimestamp(start / 1e9, tz=dt.UTC).date()
        reading = morning_reading(
            self._morning_rr,
            self._morning_breaks,
            t_ns=end.t_ns,
            day=day,
            stabilisation_s=self.morning_stabilisation_s,
            span_s=self.morning_span_s,
        )
        self._morning_rr.clear()
        self._morning_breaks.clear()
        if reading.accepted and reading.ln_rmssd is not None and reading.resting_hr_bpm:
            self._ln_rmssd[day] = reading.ln_rmssd
            self._rhr[day] = reading.resting_hr_bpm
        else:
            self._ln_rmssd.pop(day, None)
            self._rhr.pop(day, None)
        self._trim_days()
        ln_hist = history_from_mapping(self._ln_rmssd, day, HISTORY_DAYS)
        rhr_hist = history_from_mapping(self._rhr, day, HISTORY_DAYS)
        th = self.thresholds
        trend_kwargs = {
            "first_day_back": th.baseline_first_day_back,
            "last_day_back": th.baseline_last_day_back,
            "min_valid_days": th.baseline_min_valid_days,
            "rolling_days": th.rolling_mean_days,
            "rolling_min_values": th.rolling_mean_min_values,
            "band_sd": th.normal_band_sd,
        }
        ln_trend = daily_trend(ln_hist, "ln_rmssd", **trend_kwargs)  # type: ignore[arg-type]
        rhr_trend = daily_trend(rhr_hist, "resting_hr_bpm", **trend_kwargs)  # type: ignore[arg-type]
        morning = self._morning_result(end.t_ns, day, reading, ln_trend, rhr_trend)
        self.snapshot.last_morning = dict(morning.fields)
        if self.store is not None:
            for name, trend in (("ln_rmssd", ln_trend), ("resting_hr_bpm", rhr_trend)):
                if trend.baseline_mean is not None:
                    data: dict[str, JsonValue] = {"date": day.isoformat(), **trend.as_dict()}
                    self.store.save_baseline(self.athlete, name, data)
        out = [morning]
        out.extend(self._apply(evaluate_morning(ln_hist, rhr_hist, th), end.t_ns))
        return out

    def _morning_result(
        self, t_ns: int, day: dt.date, r: MorningReading, ln: DailyTrend, rhr: DailyTrend
    ) -> Result:
        return MorningPayload(
            date=day.isoformat(),
            ln_rmssd=r.ln_rmssd,
            rmssd_ms=r.rmssd_ms,
            resting_hr_bpm=r.resting_hr_bpm,
            artifacts_pct=r.artifacts_pct,
            corrected_pct=r.corrected_pct,
            n_beats=r.n_beats,
            accepted=r.accepted,
            reject_reason=r.reject_reason,
            ln_rmssd_baseline_mean=ln.baseline_mean,
            ln_rmssd_baseline_sd=ln.baseline_sd,
            ln_rmssd_band_low=ln.band_low,
            ln_rmssd_band_high=ln.band_high,
            ln_rmssd_7d_mean=ln.rolling_mean_7d,
            ln_rmssd_cv_pct=ln.cv_7d_pct,
            rhr_baseline_median_bpm=rhr.baseline_median,
            rhr_7d_mean_bpm=rhr.rolling_mean_7d,
        ).result(self.athlete, t_ns)

    def _end_session(self, end: SessionEnd) -> list[Result]:
        start = self._session_start
        self._session_start = None
        self.snapshot.phase = "idle"
        if start is None:
            return []
        out: list[Result] = []
        # Efforts still open at the end of the session are decided now (unrecovered).
        for device, detector in self._detectors.items():
            for effort in detector.flush():
                out.append(self._effort_result(device, effort))
        session = summarise_session(
            self._session_efforts,
            start / 1e9,
            end.t_ns / 1e9,
            slow_after_s=self.thresholds.smo2_slow_recovery_s,
        )
        mean_power = self._power_sum / self._power_n if self._power_n else None
        smo2_device = next(iter(self._detectors), None)
        out.append(
            SessionPayload(
                recovery_s=session.recovery_time_s,
                recovery_is_lower_bound=session.recovery_time_is_lower_bound,
                n_efforts=session.n_efforts,
                n_recovered=session.n_recovered,
                duration_s=(end.t_ns - start) / 1e9,
                rpe=end.rpe,
                mean_power_w=mean_power,
            ).result(self.athlete, end.t_ns, smo2_device)
        )
        self.snapshot.last_session_recovery_s = session.recovery_time_s
        evaluations: list[RuleEvaluation] = []
        if session.n_efforts:
            self._recoveries.append(session.recovery_time_s)
            evaluations.append(evaluate_smo2_slow_recovery(list(self._recoveries), self.thresholds))
        if end.rpe is not None and end.rpe > 0 and mean_power:
            self._loads.append(SessionLoad(float(end.rpe), mean_power))
            evaluations.append(evaluate_rpe_power_mismatch(list(self._loads), self.thresholds))
        self._session_efforts = []
        out.extend(self._apply(evaluations, end.t_ns))
        return out

    def _end_grip(self, end: GripEnd) -> list[Result]:
        traces = self._grip_traces
        self._grip_traces = {}
        self._grip_active = False
        self.snapshot.phase = "idle"
        pre = traces.pop(None, None)
        post = {m: (t, f) for m, (t, f) in traces.items() if m is not None and t}
        if pre is None or not pre[0] or not post:
            _LOGGER.warning(
                "%s: grip test ended without MVC trials or post tests; ignored", self.athlete
            )
            return []
        try:
            test = measure_grip(pre, post, list(self._mvcs), self.thresholds)
        except GripInputError as exc:
            _LOGGER.warning("%s: grip test not measured: %s", self.athlete, exc)
            return []
        self._mvcs.append(test.mvc_kg)
        self.snapshot.last_grip_class = test.grip_class.value
        out = [self._grip_result(end.t_ns, test)]
        out.extend(self._apply(evaluate_grip(test, self.thresholds), end.t_ns))
        return out

    def _grip_result(self, t_ns: int, test: GripTest) -> Result:
        worst = max(test.post, key=lambda p: p.drop_pct)
        label = {GripClass.SIGNAL: "grip_signal", GripClass.SPILLOVER: "grip_spillover"}.get(
            test.grip_class, test.grip_class.value
        )
        device = next(
            (d for d in self._last_seen if d not in self._trackers and d not in self._detectors),
            None,
        )
        return GripPayload(
            mvc_kg=test.mvc_kg,
            peak_kg=worst.best_kg,
            drop_pct=test.drop_pct,
            minutes_after=worst.minute,
            threshold_pct=test.real_drop_threshold_pct,
            threshold_basis=test.threshold_basis.value,
            grip_class=label,
            noise_cv_pct=test.noise_cv_pct,
            drops_pct={f"{p.minute:g}": p.drop_pct for p in test.post},
        ).result(self.athlete, t_ns, device)

    # --- rules → alerts → status -----------------------------------------------------------

    def _apply(self, evaluations: Sequence[RuleEvaluation], t_ns: int) -> list[Result]:
        changes = self.book.update_all(list(evaluations), t_ns)
        if not changes:
            return []
        self._save_book()
        open_alerts = self.book.open_alerts()
        self.snapshot.open_alerts = tuple(a.rule_id for a in open_alerts)
        out: list[Result] = []
        for alert in changes:
            if alert.state is AlertState.RAISED:
                self.snapshot.alerts_raised += 1
            out.append(alert_result(self.athlete, alert, open_alerts, ts_ns=t_ns))
        out.append(self.status_result(t_ns))
        return out

    def status_result(self, t_ns: int) -> Result:
        """The readiness summary (``<base>/<athlete>/status``) as of ``t_ns``."""
        open_alerts = self.book.open_alerts()
        severities = {a.severity.value for a in open_alerts}
        state = (
            "pull_back"
            if "pull_back" in severities
            else "caution"
            if "warning" in severities
            else "ok"
        )
        morning = self.snapshot.last_morning or {}
        active = sorted(
            d for d, seen in self._last_seen.items() if t_ns - seen <= DEVICE_ACTIVE_S * 1e9
        )
        return StatusPayload(
            state=state,
            open_alerts=tuple(a.rule_id for a in open_alerts),
            ln_rmssd=_number(morning.get("ln_rmssd")),
            ln_rmssd_band_low=_number(morning.get("ln_rmssd_band_low")),
            ln_rmssd_band_high=_number(morning.get("ln_rmssd_band_high")),
            morning_date=_text(morning.get("date")),
            devices_active=tuple(active),
        ).result(self.athlete, t_ns)


def alert_payload(alert: Alert) -> dict[str, JsonValue]:
    """An alert as the ``alerts`` payload describes it (SCHEMA.md field names): the one
    serialiser, :func:`streamer.results.alert_json`."""
    return alert_json(alert)


def _number(value: JsonValue) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: JsonValue) -> str | None:
    return value if isinstance(value, str) else None
