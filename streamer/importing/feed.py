"""Imported recordings through the live pipeline: the same gate, processors, store and sinks.

A morning reading is fed as a live one is: a :class:`MorningStart` marker, one heart-rate
sample per beat (as a strap notifies, at its beat time), a :class:`MorningEnd`; a FIT
activity as a session between :class:`SessionStart` and :class:`SessionEnd`. So an imported
reading passes the quality gate, lands in the history, moves the baseline, may raise or
clear a rule's alert, and reaches MQTT and InfluxDB with its own time — exactly as it would
have live. Recordings are fed oldest first, whatever order the files were given in.

Idempotent: a morning whose day the store already holds, or a session ending at a time the
store already holds, is a ``duplicate`` and is not fed again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Sequence

from devices.records import HeartRateSample
from streamer.app.assembly import App
from streamer.app.runtime import running
from streamer.athlete import (
    AthleteRecord,
    DayValues,
    MorningEnd,
    MorningStart,
    SessionEnd,
    SessionStart,
)
from streamer.importing.daily_csv import DailyValue
from streamer.importing.model import FitActivity, ImportOutcome, ImportSummary, RrRecording
from streamer.importing.rr_recordings import start_of_day
from streamer.results import Kind, MorningPayload, Result

IMPORT_DEVICE = "import"
"""The device name imported samples carry (what the live view and the store show)."""

Progress = Callable[[int, int], None]
"""Called with (recordings done, recordings in all) as the import advances."""


def day_of(start_ns: int) -> dt.date:
    """The day a reading starting at ``start_ns`` is filed under (its UTC date, as live)."""
    return dt.datetime.fromtimestamp(start_ns / 1e9, tz=dt.UTC).date()


def strap_notifications(start_ns: int, rr_ms: Sequence[float]) -> Iterator[HeartRateSample]:
    """The intervals as a chest strap notifies them: once a second, carrying the intervals
    that ended since the last notification (ms), its rate from them (bpm), at the time of
    its last beat (ns)."""
    t_ms = 0.0
    next_tick_ms = 1000.0
    chunk: list[float] = []
    for rr in rr_ms:
        t_ms += rr
        chunk.append(rr)
        if t_ms >= next_tick_ms:
            hr = max(1, min(255, round(60_000.0 * len(chunk) / sum(chunk))))
            yield HeartRateSample(start_ns + round(t_ms * 1e6), hr, tuple(chunk))
            chunk = []
            next_tick_ms = (t_ms // 1000.0 + 1.0) * 1000.0
    if chunk:
        hr = max(1, min(255, round(60_000.0 * len(chunk) / sum(chunk))))
        yield HeartRateSample(start_ns + round(t_ms * 1e6), hr, tuple(chunk))


async def _feed(
    app: App,
    athlete: str,
    batches: Sequence[Iterable[tuple[str, AthleteRecord]]],
    progress: Progress | None,
    on_result: Callable[[Result], None] | None,
) -> None:
    """Put each batch of (device, record) into ``athlete``'s inbox, in order, reporting
    progress per batch; return once everything is processed and handed to the sinks."""
    pipeline = app.pipeline([athlete], on_result=on_result)
    async with running(pipeline):
        for done, batch in enumerate(batches, start=1):
            for device, record in batch:
                await pipeline.put(athlete, device, record)
            if progress is not None:
                progress(done, len(batches))
        await pipeline.join()


def _morning_records(rec: RrRecording) -> Iterator[tuple[str, AthleteRecord]]:
    yield IMPORT_DEVICE, MorningStart(rec.start_ns)
    for sample in strap_notifications(rec.start_ns, rec.rr_ms):
        yield IMPORT_DEVICE, sample
    yield IMPORT_DEVICE, MorningEnd(rec.end_ns + 1)


def _session_records(act: FitActivity, rpe: float | None) -> Iterator[tuple[str, AthleteRecord]]:
    yield IMPORT_DEVICE, SessionStart(act.start_ns)
    for sample in act.samples:
        yield IMPORT_DEVICE, sample
    yield IMPORT_DEVICE, SessionEnd(act.end_ns + 1, rpe)


async def import_mornings(
    app: App,
    athlete: str,
    recordings: Sequence[RrRecording],
    *,
    progress: Progress | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> ImportSummary:
    """Feed ``recordings`` as morning readings of ``athlete`` (oldest first) and say what
    became of each: accepted, rejected by the gate (with its reason), or duplicate."""
    summary = ImportSummary()
    taken: set[dt.date] = set()
    pending: list[tuple[RrRecording, dt.date]] = []
    for rec in sorted(recordings, key=lambda r: r.start_ns):
        day = day_of(rec.start_ns)
        if day in taken or app.store.morning_history(athlete, day, day):
            summary.outcomes.append(
                ImportOutcome(rec.source, day, "duplicate", f"a reading of {day} is stored")
            )
            continue
        taken.add(day)
        pending.append((rec, day))
    mornings: dict[str, MorningPayload] = {}

    def collect(result: Result) -> None:
        if result.kind is Kind.MORNING:
            morning = result.payload_as(MorningPayload)
            mornings[morning.date] = morning
        if on_result is not None:
            on_result(result)

    await _feed(app, athlete, [_morning_records(rec) for rec, _ in pending], progress, collect)
    for rec, day in pending:
        morning = mornings.get(day.isoformat())
        if morning is None:
            outcome = ImportOutcome(rec.source, day, "rejected", "no reading came out")
        elif morning.accepted:
            outcome = ImportOutcome(rec.source, day, "accepted")
        else:
            reason = morning.reject_reason or "rejected by the quality gate"
            outcome = ImportOutcome(rec.source, day, "rejected", reason)
        summary.outcomes.append(outcome)
    return summary


async def import_sessions(
    app: App,
    athlete: str,
    activities: Sequence[FitActivity],
    *,
    rpe: float | None = None,
    progress: Progress | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> ImportSummary:
    """Feed ``activities`` as training sessions of ``athlete`` (oldest first): their RR,
    heart rate, power and SmO2 between session markers; ``rpe`` (CR-10) for each, if given."""
    summary = ImportSummary()
    pending: list[FitActivity] = []
    ends: set[int] = set()
    for act in sorted(activities, key=lambda a: a.start_ns):
        end_ns = act.end_ns + 1
        day = day_of(act.start_ns)
        if end_ns in ends or app.store.sessions(athlete, end_ns, end_ns + 1):
            summary.outcomes.append(
                ImportOutcome(act.source, day, "duplicate", "this session is stored")
            )
            continue
        ends.add(end_ns)
        pending.append(act)
    await _feed(app, athlete, [_session_records(a, rpe) for a in pending], progress, on_result)
    summary.outcomes.extend(
        ImportOutcome(a.source, day_of(a.start_ns), "accepted") for a in pending
    )
    return summary


async def import_days(
    app: App,
    athlete: str,
    values: Sequence[DailyValue],
    *,
    progress: Progress | None = None,
    on_result: Callable[[Result], None] | None = None,
) -> ImportSummary:
    """Pool other apps' daily morning values into ``athlete``'s morning history (oldest
    first): each becomes that day's reading, labelled with its source. A value that is not
    the same measurement (``not_pooled``) is rejected with that reason; a day already
    holding a reading is a duplicate; a day without both RMSSD and HR is rejected."""
    summary = ImportSummary()
    taken: set[dt.date] = set()
    pending: list[DayValues] = []
    for value in sorted(values, key=lambda v: v.day):
        where = value.path.with_name(f"{value.path.name}:{value.line}")
        if value.not_pooled is not None:  # another measurement: never in the morning history
            summary.outcomes.append(ImportOutcome(where, value.day, "rejected", value.not_pooled))
        elif value.day in taken or app.store.morning_history(athlete, value.day, value.day):
            reason = f"a reading of {value.day} is stored"
            summary.outcomes.append(ImportOutcome(where, value.day, "duplicate", reason))
        elif value.rmssd_ms is None or value.resting_hr_bpm is None:
            reason = "no rMSSD or no HR that day"
            summary.outcomes.append(ImportOutcome(where, value.day, "rejected", reason))
        else:
            taken.add(value.day)
            pending.append(
                DayValues(
                    start_of_day(value.day),
                    value.day,
                    value.rmssd_ms,
                    value.resting_hr_bpm,
                    value.source,
                )
            )
            summary.outcomes.append(ImportOutcome(where, value.day, "accepted"))
    await _feed(app, athlete, [[(e.source, e)] for e in pending], progress, on_result)
    return summary
