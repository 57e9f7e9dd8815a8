"""The athlete's trend report: what the local store knows of their last weeks, as numbers.

:func:`gather_report` reads the store (:class:`streamer.store.Store`) into the small typed
records of :mod:`streamer.report.model`: one ``MorningPoint`` per calendar day of the
window (UTC), the session SmO2 recovery times, the grip tests, and the alerts as spans from
raised to cleared. The normal band (baseline mean ± 0.5·SD), baseline median and 7-day
means are computed with :func:`processors.trends.daily_trend` from the store's accepted
morning readings, exactly as the pipeline computes them, with the athlete's rule thresholds.

Drawing is kept apart so the numbers can be checked on their own:
:mod:`streamer.report.figure` makes the picture (PNG), :mod:`streamer.report.page` the
self-contained HTML page; :func:`write_report` picks one by the file's suffix.

Times are UTC throughout (store dates are UTC dates).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

from processors.rules import CATALOGUE, DEFAULT_THRESHOLDS, RuleThresholds
from processors.trends import DailyTrend, daily_trend, history_from_mapping
from streamer.athlete.persistence import saved_alert_book
from streamer.errors import StreamerError
from streamer.report.model import (
    AlertSpan,
    GripPoint,
    LabPoint,
    MorningPoint,
    ReportData,
    SessionPoint,
)
from streamer.results import (
    AlertPayload,
    GripPayload,
    LabPayload,
    MorningPayload,
    SessionPayload,
)
from streamer.store import AlertRow, Row, Store, StoreError

DEFAULT_DAYS: Final = 28
OUTPUT_SUFFIXES: Final = (".png", ".html", ".htm")


class ReportError(StreamerError):
    """The report cannot be made from this store (the message says why and what to do)."""


def _finite(value: float | None) -> float | None:
    """``value`` as a float, or ``None`` when unknown (null, or NaN: stored as null)."""
    return None if value is None or not math.isfinite(value) else float(value)


def _utc(ts_ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC)


def _day_start_ns(day: dt.date) -> int:
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return int(midnight.timestamp()) * 1_000_000_000


def known_athletes(path: Path) -> list[str]:
    """Athlete ids that have any history (mornings, sessions, grip tests, alerts) in the store
    file at ``path``, sorted.

    The store is opened read-only (:class:`streamer.store.Store` with ``read_only=True``):
    the file is never created, migrated or modified.
    """
    try:
        with Store(path, read_only=True) as store:
            return store.athletes()
    except StoreError as exc:
        raise ReportError(f"cannot read the athletes of the store {path}: {exc}") from exc


def _trend(
    values: Mapping[dt.date, float], day: dt.date, metric: str, th: RuleThresholds
) -> DailyTrend:
    history = history_from_mapping(values, day, th.baseline_first_day_back + 1)
    return daily_trend(
        history,
        metric,
        first_day_back=th.baseline_first_day_back,
        last_day_back=th.baseline_last_day_back,
        min_valid_days=th.baseline_min_valid_days,
        rolling_days=th.rolling_mean_days,
        rolling_min_values=th.rolling_mean_min_values,
        band_sd=th.normal_band_sd,
    )


def _mornings(
    rows: Sequence[Row[MorningPayload]], start: dt.date, end: dt.date, th: RuleThresholds
) -> tuple[MorningPoint, ...]:
    by_day = {dt.date.fromisoformat(r.date): r.payload for r in rows if r.date}
    ln: dict[dt.date, float] = {}
    rhr: dict[dt.date, float] = {}
    for day, reading in by_day.items():
        ln_value, rhr_value = _finite(reading.ln_rmssd), _finite(reading.resting_hr_bpm)
        # Only accepted readings are numbers the trends may use (as in the pipeline).
        if reading.accepted and ln_value is not None and rhr_value is not None:
            ln[day], rhr[day] = ln_value, rhr_value
    out = []
    for offset in range((end - start).days + 1):
        day = start + dt.timedelta(days=offset)
        morning = by_day.get(day)
        ln_trend = _trend(ln, day, "ln_rmssd", th)
        rhr_trend = _trend(rhr, day, "resting_hr_bpm", th)
        accepted = day in ln
        out.append(
            MorningPoint(
                day=day,
                recorded=morning is not None,
                accepted=accepted,
                reject_reason=None
                if morning is None or accepted
                else (morning.reject_reason or "not accepted"),
                ln_rmssd=ln_trend.value,
                rmssd_ms=_finite(morning.rmssd_ms) if morning is not None and accepted else None,
                resting_hr_bpm=rhr_trend.value,
                ln_band_low=ln_trend.band_low,
                ln_band_high=ln_trend.band_high,
                ln_baseline_mean=ln_trend.baseline_mean,
                ln_7d_mean=ln_trend.rolling_mean_7d,
                rhr_baseline_median_bpm=rhr_trend.baseline_median,
                rhr_7d_mean_bpm=rhr_trend.rolling_mean_7d,
                baseline_status=ln_trend.baseline_status,
            )
        )
    return tuple(out)


def _session(row: Row[SessionPayload]) -> SessionPoint:
    session = row.payload
    return SessionPoint(
        at=_utc(row.ts_ns),
        recovery_s=_finite(session.recovery_s),
        lower_bound=session.recovery_is_lower_bound,
        n_efforts=session.n_efforts,
        device=row.device,
        rpe=_finite(session.rpe),
        mean_power_w=_finite(session.mean_power_w),
        power_plateau=session.power_plateau,
        power_change_pct=_finite(session.power_change_pct),
    )


def _grip(row: Row[GripPayload]) -> GripPoint | None:
    grip = row.payload
    drop = _finite(grip.drop_pct)
    if drop is None:
        return None
    drops: list[tuple[float, float]] = []
    for minute, value in grip.drops_pct.items():
        try:
            at_minute = float(minute)
        except ValueError:
            continue
        if math.isfinite(value):  # NaN: stored as null, no drop measured
            drops.append((at_minute, float(value)))
    return GripPoint(
        at=_utc(row.ts_ns),
        mvc_kg=_finite(grip.mvc_kg),
        drop_pct=drop,
        threshold_pct=_finite(grip.threshold_pct),
        grip_class=grip.grip_class or "normal",
        drops_pct=tuple(sorted(drops)),
    )


def _lab(row: Row[LabPayload]) -> LabPoint | None:
    lab = row.payload
    value: float | None
    if lab.marker == "lipid_dipstick":
        value = None if lab.positive is None else (1.0 if lab.positive else 0.0)
    else:
        value = _finite(lab.gsh_gssg_ratio if lab.marker == "gsh_gssg" else lab.droms_carr_u)
    if value is None:
        return None
    return LabPoint(
        at=_utc(row.ts_ns),
        marker=lab.marker,
        value=value,
        timing=lab.timing,
        band=lab.band,
        judged=lab.judged,
        baseline=_finite(lab.baseline_carr_u),
        change_pct=_finite(lab.change_pct),
    )


def _span(rule: str, alert: AlertPayload, raised: dt.datetime) -> AlertSpan:
    spec = CATALOGUE.get(rule)
    return AlertSpan(
        rule=rule,
        severity=alert.severity or (spec.severity.value if spec else "info"),
        title=spec.title if spec else rule,
        message=alert.message,
        advice=alert.advice or (spec.advice if spec else ""),
        raised=raised,
        cleared=None,
        volume_cut_until=_date_or_none(alert.volume_cut_until),
    )


def _date_or_none(text: str | None) -> dt.date | None:
    try:
        return None if text is None else dt.date.fromisoformat(text)
    except ValueError:
        return None  # not a date: nothing to draw


def alert_spans(events: Iterable[AlertRow]) -> list[AlertSpan]:
    """Pair each rule's ``raised`` event with the ``cleared`` that follows it, oldest first.

    A ``cleared`` with no open span is ignored; a second ``raised`` of a rule that is still
    open (the alert book never does this) closes the first span at that moment. A span
    takes its clearing's reason (a raise → resume span when ``resume``).
    """
    spans: list[AlertSpan] = []
    open_index: dict[str, int] = {}
    for event in sorted(events, key=lambda e: e.ts_ns):
        at = _utc(event.ts_ns)
        index = open_index.pop(event.rule, None)
        if index is not None:
            closing = event.payload if event.state == "cleared" else None
            spans[index] = _closed(spans[index], at, closing)
        if event.state == "raised":
            open_index[event.rule] = len(spans)
            spans.append(_span(event.rule, event.payload, at))
    return spans


def _closed(span: AlertSpan, at: dt.datetime, clearing: AlertPayload | None) -> AlertSpan:
    if clearing is None:
        return dataclasses.replace(span, cleared=at)
    since = clearing.resume_since_ts_ns
    return dataclasses.replace(
        span,
        cleared=at,
        clear_reason=clearing.clear_reason,
        resume_since=None if since is None else _utc(since),
    )


def _open_alerts(store: Store, athlete: str, spans: Sequence[AlertSpan]) -> tuple[AlertSpan, ...]:
    book = saved_alert_book(store, athlete)
    if book is not None:  # else the event history tells what is open
        return tuple(
            AlertSpan(
                a.rule_id,
                a.severity.value,
                CATALOGUE[a.rule_id].title if a.rule_id in CATALOGUE else a.rule_id,
                a.message,
                a.advice,
                _utc(a.raised_at_ns),
                None,
                volume_cut_until=a.volume_cut_until(),
            )
            for a in book.open_alerts()
        )
    return tuple(sorted((s for s in spans if s.cleared is None), key=lambda s: s.rule))


def gather_report(
    store: Store,
    athlete: str,
    days: int = DEFAULT_DAYS,
    *,
    end: dt.date | None = None,
    thresholds: RuleThresholds = DEFAULT_THRESHOLDS,
) -> ReportData:
    """Read ``athlete``'s last ``days`` days (UTC dates, ending ``end``) from ``store``.

    ``end`` defaults to the last day with any data for the athlete, so a report of an
    athlete who stopped recording shows their last weeks, dated. ``thresholds`` set the
    baseline window, band width (SD multiple), the resting-HR creep delta (bpm) and the
    slow-recovery line (s); pass the athlete's own (profile and config) to match the
    alerts. Raises :class:`ReportError` if the store holds nothing for ``athlete``.
    """
    if days < 1:
        raise ValueError(f"a report covers at least 1 day, got {days}")
    mornings = store.morning_history(athlete)
    events = store.alerts(athlete)
    last_session = store.sessions(athlete)[-1:]
    last_grip = store.grip_tests(athlete)[-1:]
    last_lab = store.lab_entries(athlete)[-1:]
    if end is None:
        candidates = [dt.date.fromisoformat(r.date) for r in mornings[-1:] if r.date]
        candidates += [_utc(r.ts_ns).date() for r in last_session]
        candidates += [_utc(r.ts_ns).date() for r in last_grip]
        candidates += [_utc(r.ts_ns).date() for r in last_lab]
        candidates += [_utc(e.ts_ns).date() for e in events[-1:]]
        if not candidates:
            raise ReportError(f"the store holds no readings of athlete {athlete!r}")
        end = max(candidates)
    start = end - dt.timedelta(days=days - 1)
    since_ns, until_ns = _day_start_ns(start), _day_start_ns(end + dt.timedelta(days=1))
    window_start, window_end = _utc(since_ns), _utc(until_ns)
    spans = alert_spans(events)
    in_window = tuple(
        s
        for s in spans
        if s.raised < window_end and (s.cleared is None or s.cleared >= window_start)
    )
    grips = (_grip(r) for r in store.grip_tests(athlete, since_ns, until_ns))
    labs = (_lab(r) for r in store.lab_entries(athlete, since_ns, until_ns))
    return ReportData(
        athlete=athlete,
        start=start,
        end=end,
        mornings=_mornings(mornings, start, end, thresholds),
        sessions=tuple(_session(r) for r in store.sessions(athlete, since_ns, until_ns)),
        grips=tuple(g for g in grips if g is not None),
        alerts=in_window,
        open_alerts=_open_alerts(store, athlete, spans),
        thresholds=thresholds,
        labs=tuple(lab for lab in labs if lab is not None),
    )


def write_report(data: ReportData, path: Path) -> None:
    """Write the report to ``path``: ``.png`` a picture, ``.html``/``.htm`` a page."""
    # Imported here: matplotlib takes a noticeable fraction of a second to import, and
    # `report --help` and the report's errors need none of it.
    from streamer.report.figure import render_png
    from streamer.report.page import render_html

    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        render_png(data, path)
    elif suffix in (".html", ".htm"):
        Path(path).write_text(render_html(data), encoding="utf-8")
    else:
        raise ValueError(f"{path}: the report is written as .png or .html, not {suffix!r}")
