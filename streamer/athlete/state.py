"""One athlete's processing state: device records in, result envelopes out.

:class:`AthleteState` is the :class:`streamer.pipeline.AthleteProcessor` of one athlete. It
routes each record to the handler of its signal and each protocol marker to its protocol,
and hands what they produce to the rule engine and the alert book:

* heart rate → :class:`~streamer.athlete.heart.HeartRate` (beat timeline, live HRV);
* SmO2 and power → :class:`~streamer.athlete.muscle.MuscleOxygen` (efforts);
* SpO2 → live samples and the latest value for the live view;
* battery, gaps and device housekeeping → the live view;
* force → :class:`~streamer.athlete.grip.GripProtocol` while a grip test runs;
* the protocols → :mod:`~streamer.athlete.morning`, :mod:`~streamer.athlete.session`,
  :mod:`~streamer.athlete.grip`; their ends → :class:`~streamer.athlete.rules.RuleEngine`
  → :class:`~streamer.athlete.readiness.Readiness` (alert book, status).

What must survive a restart lives in the history handed in (an
:class:`~streamer.athlete.persistence.AthleteHistory`, e.g. the store): morning readings,
sessions and grip tests (recorded by the pipeline), the alert book and the baselines (saved
here). On construction the state reloads them, so trends and alert state continue where
they were. Memory is bounded: the HRV trackers hold one window, the morning buffer and grip
traces are capped, and the histories keep only the days and sessions the rules look at.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Iterable
from typing import Final, assert_never

from devices.records import (
    BatteryLevel,
    BodySensorLocation,
    ForceSample,
    GapEvent,
    HeartRateSample,
    MeasuredSample,
    PowerSample,
    SmO2Sample,
    SpO2Sample,
    TindeqCommandResponse,
    TindeqLowPower,
    TindeqWeight,
)
from processors import physiology as ph
from processors.alerts import AlertBook
from processors.grip import GripInputError
from processors.morning import MorningReading
from processors.oxygenation import EffortRecovery
from processors.rules import RuleThresholds, hr_zone_floors_bpm
from streamer.athlete.events import (
    DayValues,
    GripEnd,
    GripPhase,
    GripPhaseEnd,
    LabEntry,
    MorningEnd,
    MorningStart,
    ProtocolEvent,
    SessionEnd,
    SessionRpe,
    SessionStart,
    is_athlete_record,
)
from streamer.athlete.force import ForceClock
from streamer.athlete.grip import GRIP_PROGRESS, GripProtocol, GripTraces, grip_result
from streamer.athlete.heart import DEFAULT_HRV_EVERY_S, HeartRate
from streamer.athlete.hormetic import GRIPS_KEPT
from streamer.athlete.hormetic import SESSIONS_KEPT as HORMETIC_SESSIONS_KEPT
from streamer.athlete.labs import LabHistory
from streamer.athlete.morning import MorningProtocol, morning_result
from streamer.athlete.muscle import MuscleOxygen, effort_result
from streamer.athlete.persistence import AthleteHistory, saved_alert_book
from streamer.athlete.readiness import Readiness
from streamer.athlete.rules import RuleEngine, SessionFacts
from streamer.athlete.session import SessionProtocol, plateau_fields, session_result
from streamer.athlete.snapshot import AthleteSnapshot
from streamer.results import (
    JsonValue,
    Kind,
    LabPayload,
    MorningPayload,
    Result,
    SessionPayload,
    live_result,
)

_LOGGER = logging.getLogger(__name__)

DEVICE_ACTIVE_S: Final = 10.0
"""A device counts as active when its last record is at most this old (record time)."""


class AthleteState:
    """Per-athlete processing; see the module docstring.

    Args:
        athlete: the athlete id (topic segment, store key).
        store: the history baselines and the alert book persist in (None: memory only).
        thresholds: rule thresholds (profile + config overrides).
        hrv_every_s: seconds of beats between rolling-HRV results.
        live: publish live samples (off while replaying history).
        morning_stabilisation_s, morning_span_s: the morning protocol (seconds discarded,
            seconds analysed); defaults from :mod:`processors.physiology`.
    """

    def __init__(
        self,
        athlete: str,
        store: AthleteHistory | None = None,
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
        self.live = live
        self.snapshot = AthleteSnapshot()
        self._last_seen: dict[str, int] = {}
        self.heart = HeartRate(athlete, self.snapshot, hrv_every_s)
        self.muscle = MuscleOxygen(athlete, self.snapshot)
        self.force_clock = ForceClock()
        self.morning = MorningProtocol(morning_stabilisation_s, morning_span_s)
        self.session = SessionProtocol()
        self.grip = GripProtocol(athlete)
        self.rules = RuleEngine(self.thresholds)
        self.labs = LabHistory(athlete, self.thresholds)
        self._zone_floors_bpm = hr_zone_floors_bpm(self.thresholds)  # None: no HR zones
        # The last finished session's summary, its time and device: an RPE entered after
        # it ended amends it (re-published with the same time, replacing the stored row).
        self._last_session: tuple[int, str | None, SessionPayload] | None = None
        self.readiness = Readiness(
            athlete,
            self.snapshot,
            self._active_devices,
            save=None if store is None else self._save_book,
        )
        self._restore()

    def set_thresholds(self, thresholds: RuleThresholds) -> None:
        """Judge by ``thresholds`` from the next record on (team mode: changed in the
        central registry): the rules, the lab rules and the heart-rate zones; the
        histories and the alert book stay. Call it between protocols: one protocol is
        judged by one set of thresholds."""
        self.thresholds = thresholds
        self.rules.thresholds = thresholds
        self.rules.hormetic.thresholds = thresholds
        self.labs.thresholds = thresholds
        self._zone_floors_bpm = hr_zone_floors_bpm(thresholds)

    @property
    def hrv_every_s(self) -> float:
        """Seconds of beats between rolling-HRV results (may change between records)."""
        return self.heart.hrv_every_s

    @hrv_every_s.setter
    def hrv_every_s(self, value: float) -> None:
        self.heart.hrv_every_s = value

    @property
    def book(self) -> AlertBook:
        """The athlete's alert book."""
        return self.readiness.book

    # --- persistence ------------------------------------------------------------------------

    def _restore(self) -> None:
        store = self.store
        if store is None:
            return
        book = saved_alert_book(store, self.athlete)
        if book is not None:  # else an empty book: nothing is open
            self.readiness.book = book
        for row in store.morning_history(self.athlete):
            day = dt.date.fromisoformat(row.date) if row.date else None
            morning = row.payload
            if day is None or not morning.accepted:
                continue
            self.rules.remember_morning(day, morning)
            self.snapshot.last_morning = morning
        self.rules.trim_days()
        # The plateau window needs more sessions than the other session rules keep.
        for session in store.sessions(self.athlete)[-HORMETIC_SESSIONS_KEPT:]:
            self.rules.remember_session(session.payload, session.ts_ns)
            self._last_session = (session.ts_ns, session.device, session.payload)
        for grip in store.grip_tests(self.athlete)[-GRIPS_KEPT:]:
            self.rules.remember_grip(grip.payload, grip.ts_ns)
        for lab in store.lab_entries(self.athlete):
            self.labs.remember(lab.payload, lab.ts_ns)
            self.readiness.note_lab(lab.payload, lab.ts_ns)
        self.readiness.restored()
        self.snapshot.open_alerts = tuple(a.rule_id for a in self.book.open_alerts())

    def _save_book(self, state: dict[str, JsonValue]) -> None:
        if self.store is not None:
            self.store.save_alert_book(self.athlete, state)

    # --- AthleteProcessor -------------------------------------------------------------------

    def process(self, device: str, record: object) -> list[Result]:
        """Feed one device record or protocol marker; returns the results it produced."""
        if not is_athlete_record(record):
            return []  # nothing a device, a driver or a protocol sends
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
            case SpO2Sample():
                return self._spo2(device, record)
            case GapEvent():
                self.snapshot.gaps += 1
                self.heart.gap(device)
                return []
            case BatteryLevel():
                if record.battery_pct is not None:
                    self.snapshot.battery_pct[device] = record.battery_pct
                return []
            case BodySensorLocation() | TindeqCommandResponse() | TindeqLowPower():
                return []  # device housekeeping: nothing to measure
            case (
                MorningStart()
                | MorningEnd()
                | SessionStart()
                | SessionEnd()
                | SessionRpe()
                | GripPhase()
                | GripPhaseEnd()
                | GripEnd()
                | DayValues()
                | LabEntry()
            ):
                return self._protocol(record)
            case _:
                assert_never(record)

    def close(self) -> list[Result]:
        """End of stream: an open session is summarised; a grip test left open is measured
        on its finished phases (Ctrl-C after the MVC and a post test keeps them; a phase
        cut short is dropped); a morning reading left open is discarded (half a reading is
        not a measurement)."""
        out = self._interrupt_grip() if self.grip.in_progress else []
        start = self.session.start_ns
        if start is None:
            return out
        return out + self._end_session(SessionEnd(self.snapshot.last_t_ns or start))

    def status_result(self, t_ns: int) -> Result:
        """The readiness summary (``<base>/<athlete>/status``) as of ``t_ns``."""
        return self.readiness.status_result(t_ns)

    # --- signals ----------------------------------------------------------------------------

    def _seen(self, device: str, t_ns: int) -> None:
        self._last_seen[device] = t_ns
        if t_ns > self.snapshot.last_t_ns:
            self.snapshot.last_t_ns = t_ns

    def _active_devices(self, t_ns: int) -> tuple[str, ...]:
        return tuple(
            sorted(d for d, seen in self._last_seen.items() if t_ns - seen <= DEVICE_ACTIVE_S * 1e9)
        )

    def _live(self, device: str, sample: MeasuredSample, **beats: list[int]) -> list[Result]:
        return [live_result(self.athlete, device, sample, **beats)] if self.live else []

    def _heart_rate(self, device: str, sample: HeartRateSample) -> list[Result]:
        self._seen(device, sample.t_ns)
        beats = self.heart.add(device, sample)
        self.session.add_heart_rate(sample.t_ns, sample.hr_bpm, self._zone_floors_bpm)
        if beats.rr_ms:
            self.morning.add(beats.rr_ms, beats.after_gap)
        return beats.results + self._live(device, sample, beat_ts_ns=beats.beat_ts_ns)

    def _smo2(self, device: str, sample: SmO2Sample) -> list[Result]:
        self._seen(device, sample.t_ns)
        efforts = self.muscle.add(device, sample)
        return [self._effort(device, e) for e in efforts] + self._live(device, sample)

    def _effort(self, device: str, effort: EffortRecovery) -> Result:
        self.session.add_effort(effort)
        return effort_result(self.athlete, device, effort)

    def _power(self, device: str, sample: PowerSample) -> list[Result]:
        self._seen(device, sample.t_ns)
        self.muscle.power(sample)
        self.session.add_power(sample.power_w)
        return self._live(device, sample)

    def _spo2(self, device: str, sample: SpO2Sample) -> list[Result]:
        self._seen(device, sample.t_ns)
        # NaN: the oximeter had no valid reading; the view keeps the last one.
        if math.isfinite(sample.spo2_pct):
            self.snapshot.spo2_pct = sample.spo2_pct
        return self._live(device, sample)

    def _force(self, device: str, samples: Iterable[ForceSample]) -> list[Result]:
        out: list[Result] = []
        for sample in samples:
            self._seen(device, sample.t_ns)
            self.snapshot.force_kg = sample.force_kg
            self.grip.add(device, sample, self.force_clock)
            out.extend(self._live(device, sample))
        return out

    # --- protocols --------------------------------------------------------------------------

    def _protocol(self, event: ProtocolEvent) -> list[Result]:
        match event:
            case MorningStart():
                self.morning.start(event.t_ns)
                self.snapshot.phase = "morning reading"
                # The strap may have been worn before: the reading starts a fresh series.
                self.heart.restart_series()
                return []
            case MorningEnd():
                return self._end_morning(event)
            case SessionStart():
                self.session.start(event.t_ns, event.tags)
                self.snapshot.phase = "session"
                return []
            case SessionEnd():
                return self._end_session(event)
            case SessionRpe():
                return self._session_rpe(event)
            case GripPhase():
                if self.grip.phase(event.minute, event.t_ns) is not None:
                    self._keep_grip("open", event.t_ns)
                self.snapshot.phase = (
                    "grip test: MVC"
                    if event.minute is None
                    else f"grip test: +{event.minute:g} min"
                )
                return []
            case GripPhaseEnd():
                if self.grip.phase_end(event.t_ns) is not None:
                    self._keep_grip("open", event.t_ns)
                self.snapshot.phase = "grip test: between tests"
                return []
            case GripEnd():
                return self._end_grip(event)
            case DayValues():
                return self._day_values(event)
            case LabEntry():
                # A lab marker entered by hand: judged against the earlier entries.
                outcome = self.labs.entry(event)
                newest = self.readiness.note_lab(outcome.result.payload_as(LabPayload), event.t_ns)
                out = [outcome.result, *self.readiness.apply(outcome.evaluations, event.t_ns)]
                if newest and all(r.kind is not Kind.STATUS for r in out):
                    # The retained status carries the last value per marker (HA's sensors).
                    out.append(self.readiness.status_result(event.t_ns))
                return out

    def _day_values(self, values: DayValues) -> list[Result]:
        # Another app's measurement of the same morning quantities: it enters the history,
        # the trends and the rules as a reading does, labelled with its source.
        reading = MorningReading(
            accepted=True,
            reject_reason=None,
            n_beats=0,
            duration_s=0.0,
            artifacts_pct=math.nan,
            corrected_pct=math.nan,
            ln_rmssd=math.log(values.rmssd_ms),
            rmssd_ms=values.rmssd_ms,
            resting_hr_bpm=values.resting_hr_bpm,
            mean_nn_ms=60_000.0 / values.resting_hr_bpm,
            sdnn_ms=None,
            t_ns=values.t_ns,
            day=values.day,
        )
        return self._morning_done(values.t_ns, values.day, reading, values.source)

    def _end_morning(self, end: MorningEnd) -> list[Result]:
        done = self.morning.end(end.t_ns)
        self.snapshot.phase = "idle"
        if done is None:
            return []
        day, reading = done
        return self._morning_done(end.t_ns, day, reading, "rr")

    def _morning_done(
        self, t_ns: int, day: dt.date, reading: MorningReading, source: str
    ) -> list[Result]:
        verdict = self.rules.morning(day, reading)
        ln_trend, rhr_trend = verdict.ln_rmssd, verdict.resting_hr
        morning = morning_result(self.athlete, t_ns, day, reading, ln_trend, rhr_trend, source)
        self.snapshot.last_morning = morning.payload_as(MorningPayload)
        if self.store is not None:
            for name, trend in (("ln_rmssd", ln_trend), ("resting_hr_bpm", rhr_trend)):
                if trend.baseline_mean is not None:
                    data: dict[str, JsonValue] = {"date": day.isoformat(), **trend.as_dict()}
                    self.store.save_baseline(self.athlete, name, data)
        return [morning, *self.readiness.apply(verdict.evaluations, t_ns)]

    def _end_session(self, end: SessionEnd) -> list[Result]:
        summary = self.session.end(end.t_ns, self.thresholds.smo2_slow_recovery_s)
        self.snapshot.phase = "idle"
        if summary is None:
            return []
        # Efforts still open at the end of the session are decided now (unrecovered); they
        # are published, not counted into the session that just closed.
        out = [self._effort(device, effort) for device, effort in self.muscle.flush()]
        sensor = self.muscle.first_sensor
        rpe = end.rpe if end.rpe is not None else summary.rpe
        recovery = summary.recovery
        self.snapshot.last_session_recovery_s = recovery.recovery_time_s
        facts = SessionFacts(summary.start_ns, end.t_ns, rpe, summary.mean_power_w, summary.zone3_s)
        verdict = self.rules.session(facts, recovery.n_efforts, recovery.recovery_time_s)
        result = session_result(
            self.athlete, end.t_ns, rpe, summary, sensor, verdict.high_intensity, verdict.plateau
        )
        self._last_session = (end.t_ns, sensor, result.payload_as(SessionPayload))
        out.append(result)
        out.extend(self.readiness.apply(verdict.evaluations, end.t_ns))
        return out

    def _session_rpe(self, event: SessionRpe) -> list[Result]:
        if self.session.start_ns is not None:
            self.session.set_rpe(event.rpe)  # the open session's: used when it ends
            return []
        last = self._last_session
        verdict = self.rules.session_rpe(event.rpe)
        if last is None or verdict is None:
            _LOGGER.warning(
                "%s: RPE %g ignored: no session to attach it to", self.athlete, event.rpe
            )
            return []
        end_ns, device, payload = last
        amended = dataclasses.replace(
            payload,
            rpe=event.rpe,
            high_intensity=verdict.high_intensity,
            **plateau_fields(verdict.plateau),
        )
        self._last_session = (end_ns, device, amended)
        # The amended summary keeps the session's time: the store replaces its row and
        # InfluxDB overwrites its point; the alerts it changes are of now.
        out = [amended.result(self.athlete, end_ns, device)]
        out.extend(self.readiness.apply(verdict.evaluations, event.t_ns))
        return out

    def _keep_grip(self, state: str, t_ns: int) -> None:
        """The grip test so far, kept after every step: Ctrl-C or a crash loses no
        finished phase (:data:`~streamer.athlete.grip.GRIP_PROGRESS`)."""
        if self.store is not None:
            data: dict[str, JsonValue] = {"state": state, "updated_ns": t_ns}
            self.store.save_baseline(self.athlete, GRIP_PROGRESS, {**data, **self.grip.progress()})

    def _interrupt_grip(self) -> list[Result]:
        t_ns = self.snapshot.last_t_ns
        traces = self.grip.interrupt()
        return self._grip_test(traces, t_ns, "interrupted")

    def _end_grip(self, end: GripEnd) -> list[Result]:
        return self._grip_test(self.grip.end(), end.t_ns, "recorded")

    def _grip_test(self, traces: GripTraces | None, t_ns: int, state: str) -> list[Result]:
        self.snapshot.phase = "idle"
        if traces is None:
            self._keep_grip("incomplete", t_ns)
            return []
        try:
            test, evaluations = self.rules.grip(traces, t_ns)
        except GripInputError as exc:
            _LOGGER.warning("%s: grip test not measured: %s", self.athlete, exc)
            self._keep_grip("unmeasured", t_ns)
            return []
        self._keep_grip(state, t_ns)
        self.snapshot.last_grip_class = test.grip_class.value
        out = [grip_result(self.athlete, t_ns, test, traces.device)]
        out.extend(self.readiness.apply(evaluations, t_ns))
        return out
