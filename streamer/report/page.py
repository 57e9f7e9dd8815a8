"""The report page: one self-contained HTML file an athlete can open anywhere, offline.

The picture of :mod:`streamer.report.figure` is embedded as a base64 PNG (no external
assets, scripts or fonts); above it the status and the open alerts with their advice,
below it the last readings as tables. Every value from the store is HTML-escaped.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Sequence
from typing import Final

from processors.rules import CATALOGUE
from streamer.report.figure import PNG_SIZE_PX, png_bytes
from streamer.report.model import AlertSpan, ReportData, SessionPoint

LAST_READINGS: Final = 7
"""Rows of each table of last readings."""

_CSS: Final = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1240px;
color:#222;padding:0 1em}
h1{margin-bottom:.1em}.sub{color:#555;margin-top:0}
.state{display:inline-block;padding:.15em .6em;border-radius:.3em;color:#fff;font-weight:bold}
.pull_back{background:#D55E00}.caution,.warning{background:#E69F00}.ok,.info{background:#009E73}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.92em}
th,td{border-bottom:1px solid #ddd;padding:.35em .7em;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;border:1px solid #eee}.muted{color:#777;font-size:.85em}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _alerts_table(alerts: Sequence[AlertSpan]) -> str:
    if not alerts:
        return "<p>No open alerts: nothing to change.</p>"
    rows = "".join(
        f"<tr><td><code>{_e(a.rule)}</code><br>{_e(a.title)}</td>"
        f'<td><span class="state {_e(a.severity)}">{_e(a.severity.replace("_", " "))}</span></td>'
        f"<td>{a.raised:%Y-%m-%d %H:%M}</td><td>{_e(a.message)}</td><td>{_e(a.advice)}</td></tr>"
        for a in alerts
    )
    return (
        "<table><tr><th>rule</th><th>severity</th><th>raised (UTC)</th><th>why</th>"
        f"<th>what to do</th></tr>{rows}</table>"
    )


def _pull_backs_table(data: ReportData) -> str:
    """The pull-back spans of the window: raised → resume (or still open, or cleared for
    another reason), with the week of cut volume and since when the signals are back."""
    rows = []
    for a in [a for a in data.alerts if a.severity == "pull_back"][::-1]:
        if a.cleared is None:
            end = "still open: pull back"
        elif a.resumed:
            since = a.resume_since or a.cleared
            end = (
                f"<b>resume</b> {a.cleared:%Y-%m-%d} (signals back in band since {since:%Y-%m-%d})"
            )
        else:
            end = f"cleared {a.cleared:%Y-%m-%d} ({_e(a.clear_reason or 'reason not recorded')})"
        cut = "–" if a.volume_cut_until is None else a.volume_cut_until.isoformat()
        rows.append(
            f"<tr><td><code>{_e(a.rule)}</code></td><td>{a.raised:%Y-%m-%d}</td>"
            f"<td>{cut}</td><td>{end}</td></tr>"
        )
    if not rows:
        return "<p>No pull-back alerts in this period.</p>"
    return (
        "<table><tr><th>rule</th><th>pull back since</th><th>cut volume ~40% until</th>"
        "<th>then</th></tr>" + "".join(rows) + "</table>"
    )


def _mornings_table(data: ReportData) -> str:
    rows = []
    for m in [m for m in data.mornings if m.recorded][-LAST_READINGS:][::-1]:
        band = (
            "–"
            if m.ln_band_low is None or m.ln_band_high is None
            else f"{m.ln_band_low:.2f}–{m.ln_band_high:.2f}"
            + (" (provisional)" if m.baseline_status == "provisional" else "")
        )
        verdict = (m.band_position or "–") if m.accepted else f"rejected: {m.reject_reason}"
        rows.append(
            f"<tr><td>{m.day.isoformat()}</td><td class=num>{_fmt(m.ln_rmssd, '.2f')}</td>"
            f"<td class=num>{_fmt(m.rmssd_ms, '.1f')}</td><td class=num>{band}</td>"
            f"<td class=num>{_fmt(m.ln_7d_mean, '.2f')}</td><td>{_e(verdict)}</td>"
            f"<td class=num>{_fmt(m.resting_hr_bpm, '.1f')}</td>"
            f"<td class=num>{_fmt(m.rhr_baseline_median_bpm, '.1f')}</td></tr>"
        )
    if not rows:
        return "<p>No morning readings in this period.</p>"
    return (
        "<table><tr><th>date</th><th>lnRMSSD</th><th>RMSSD [ms]</th><th>normal band</th>"
        f"<th>{data.thresholds.rolling_mean_days}-day mean</th><th>vs band</th>"
        "<th>resting HR [bpm]</th><th>baseline median [bpm]</th></tr>" + "".join(rows) + "</table>"
    )


def _sessions_table(data: ReportData) -> str:
    limit = data.thresholds.smo2_slow_recovery_s
    rows = []
    for s in data.sessions[-LAST_READINGS:][::-1]:
        value = (
            "no efforts"
            if s.recovery_s is None
            else f"{'≥ ' if s.lower_bound else ''}{s.recovery_s:.0f}"
        )
        verdict = "–" if s.recovery_s is None else "slow" if s.recovery_s > limit else "recovered"
        rows.append(
            f"<tr><td>{s.at:%Y-%m-%d %H:%M}</td><td class=num>{value}</td>"
            f"<td class=num>{s.n_efforts}</td><td>{verdict}</td>"
            f"<td class=num>{_fmt(s.rpe, 'g')}</td><td class=num>{_fmt(s.mean_power_w, '.0f')}"
            f"</td><td>{_plateau(s)}</td></tr>"
        )
    if not rows:
        return "<p>No sessions in this period.</p>"
    window = data.thresholds.power_plateau_window_days
    return (
        f"<table><tr><th>session (UTC)</th><th>SmO2 recovery [s]</th><th>efforts</th>"
        f"<th>vs {limit:g} s</th><th>RPE</th><th>mean power [W]</th>"
        f"<th>power at matched effort, {window} days</th></tr>" + "".join(rows) + "</table>"
    )


def _plateau(s: SessionPoint) -> str:
    """The session's ``power_plateau`` finding in a table cell."""
    if s.power_plateau is None:
        return "–"
    change = _fmt(s.power_change_pct, "+.1f", "%")
    return f"<b>plateau</b> ({change})" if s.power_plateau else f"rising ({change})"


def _findings(data: ReportData) -> str:
    """Info findings in effect: ``power_plateau`` when the last session that decided it
    found one (``grip_signal`` is in the grip table). Empty when there is none."""
    decided = [s for s in data.sessions if s.power_plateau is not None]
    if not decided or not decided[-1].power_plateau:
        return ""
    last = decided[-1]
    spec = CATALOGUE["power_plateau"]
    return (
        f"<h2>Findings</h2>\n<table><tr><th>finding</th><th>since</th><th>what</th>"
        f'<th>advice</th></tr><tr><td><span class="state info">power_plateau</span></td>'
        f"<td>{last.at:%Y-%m-%d %H:%M}</td><td>{_e(spec.title)}: "
        f"{_fmt(last.power_change_pct, '+.1f', '%')} over "
        f"{data.thresholds.power_plateau_window_days} days</td><td>{_e(spec.advice)}</td>"
        "</tr></table>"
    )


def _grips_table(data: ReportData) -> str:
    rows = []
    for g in data.grips[-LAST_READINGS:][::-1]:
        last = (
            "–"
            if g.last_drop is None
            else f"{_fmt(g.last_drop[1], '.1f')} @ {g.last_drop[0]:g} min"
        )
        rows.append(
            f"<tr><td>{g.at:%Y-%m-%d %H:%M}</td><td class=num>{_fmt(g.mvc_kg, '.1f')}</td>"
            f"<td class=num>{_fmt(g.drop_pct, '.1f')}</td>"
            f"<td class=num>{last}</td>"
            f"<td class=num>{_fmt(g.threshold_pct, '.1f')}</td><td>{_e(g.grip_class)}</td></tr>"
        )
    if not rows:
        return "<p>No grip tests in this period.</p>"
    return (
        "<table><tr><th>test (UTC)</th><th>MVC [kg]</th><th>worst drop [%]</th>"
        "<th>last test drop [%]</th><th>real-drop threshold [%]</th><th>class</th></tr>"
        + "".join(rows)
        + "</table>"
    )


_LAB_NAMES = {"gsh_gssg": "GSH:GSSG", "droms": "dROMs", "lipid_dipstick": "lipid dipstick"}


def _labs_table(data: ReportData) -> str:
    rows = []
    for lab in data.labs[-LAST_READINGS:][::-1]:
        if lab.marker == "lipid_dipstick":
            value = "positive" if lab.value > 0 else "negative"
        elif lab.marker == "gsh_gssg":
            value = f"{lab.value:g}:1"
        else:
            value = f"{lab.value:g} CARR U"
        rows.append(
            f"<tr><td>{lab.at:%Y-%m-%d %H:%M}</td><td>{_e(_LAB_NAMES.get(lab.marker, lab.marker))}"
            f"</td><td class=num>{_e(value)}</td><td>{_e(lab.timing or '–')}</td>"
            f"<td>{_e(lab.band.replace('_', ' '))}{'' if lab.judged else ' (not judged)'}</td>"
            f"<td class=num>{_fmt(lab.baseline, '.0f')}</td>"
            f"<td class=num>{_fmt(lab.change_pct, '+.0f')}</td></tr>"
        )
    if not rows:
        return (
            "<p>No lab entries in this period (enter them with "
            "<code>redox-streamer log</code>).</p>"
        )
    return (
        "<table><tr><th>sample (UTC)</th><th>marker</th><th>value</th><th>timing</th>"
        "<th>band</th><th>dROMs baseline [CARR U]</th><th>change [%]</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def render_html(data: ReportData, png: bytes | None = None) -> str:
    """A self-contained HTML page: the picture (embedded base64 PNG), the open alerts with
    their advice, and the last readings. ``png`` reuses an already rendered picture."""
    picture = base64.b64encode(png if png is not None else png_bytes(data)).decode("ascii")
    latest = data.latest_morning
    if latest is None:
        summary = "no accepted morning reading in this period"
    else:
        band = (
            ""
            if latest.ln_band_low is None or latest.ln_band_high is None
            else f" ({latest.band_position} the "
            f"{'provisional' if latest.baseline_status == 'provisional' else 'normal'} band "
            f"{latest.ln_band_low:.2f}–"
            f"{latest.ln_band_high:.2f})"
        )
        summary = (
            f"latest morning {latest.day.isoformat()}: lnRMSSD "
            f"<b>{_fmt(latest.ln_rmssd, '.2f')}</b>{band}, resting HR "
            f"{_fmt(latest.resting_hr_bpm, '.1f', ' bpm')}"
        )
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    state = data.status
    width, height = PNG_SIZE_PX
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(data.athlete)} — recovery report, {data.start.isoformat()} to \
{data.end.isoformat()}</title>
<style>{_CSS}</style></head>
<body>
<h1>{_e(data.athlete)} — recovery report</h1>
<p class="sub">{data.start.isoformat()} to {data.end.isoformat()} ({data.days} days, UTC) ·
<span class="state {state}">{_e(state.replace("_", " "))}</span> · {summary}</p>
<h2>Open alerts</h2>
{_alerts_table(data.open_alerts)}
{_findings(data)}
<img src="data:image/png;base64,{picture}" width="{width}" height="{height}"
alt="Trends of {_e(data.athlete)}: morning lnRMSSD with its normal band, resting heart rate,
SmO2 recovery per session, grip drops, lab markers and alerts">
<h2>Pull back → resume</h2>
{_pull_backs_table(data)}
<h2>Last morning readings</h2>
{_mornings_table(data)}
<h2>Last sessions</h2>
{_sessions_table(data)}
<h2>Last grip tests</h2>
{_grips_table(data)}
<h2>Last lab entries</h2>
{_labs_table(data)}
<p class="muted">Generated {generated} by redox-streamer from the local store. The thresholds
are practitioner heuristics (see docs/rules.md), configurable, and not medical advice.</p>
</body></html>
"""


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    """``value`` formatted, "–" for None; never "-0.0" (a drop of -0.04% reads as 0.0)."""
    if value is None:
        return "–"
    text = f"{value:{spec}}"
    if text.startswith("-") and float(text) == 0.0:
        text = text[1:]
    return f"{text}{unit}"
