"""The report picture: an athlete's last weeks on one page (matplotlib, Agg, no pyplot).

Six panels on one shared time axis (UTC), each with its legend to the right:

1. morning lnRMSSD: the readings, the normal band (baseline mean ± 0.5·SD) and the
   7-day mean; readings below the band in red, rejected readings as grey crosses;
2. resting HR: the readings, the baseline median, the creep line (median + 5 bpm) and
   the 7-day mean;
3. SmO2 recovery per session (median T95 of its efforts) against the slow-recovery line,
   and a diamond along its top at each session that found a ``power_plateau`` (info);
4. grip drop per test, coloured by class, with the test's real-drop threshold and the
   drop at the last post test (the one that tells signal from spillover);
5. lab markers entered by hand: GSH:GSSG against the article's bands (left axis), dROMs
   with the athlete's +35% line (right axis), dipsticks along the top; hollow markers are
   post-session draws (not judged);
6. an alert timeline, one row per rule, raised → cleared (solid: still open); a span that
   cleared because the signals were back in band (``clear_reason`` ``resume``) ends in a
   green diamond, "resume" and since when the signals are back in band.

Each alert is also marked where it was raised, with its rule id, on the panel of the
signal its rule watches (:data:`RULE_PANEL`), and a resume by a dotted green line. Daily
values sit at noon of their day and bands cover whole days; sessions and grip tests sit at
their time.
"""

from __future__ import annotations

import datetime as dt
import io
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

import matplotlib.dates as mdates
import matplotlib.transforms as mtransforms
import numpy as np
import numpy.typing as npt
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from processors.rules import CATALOGUE
from streamer.report.model import AlertSpan, ReportData

PNG_DPI: Final = 100
PNG_SIZE_IN: Final = (12.0, 18.5)
PNG_SIZE_PX: Final = (round(PNG_SIZE_IN[0] * PNG_DPI), round(PNG_SIZE_IN[1] * PNG_DPI))
"""Width and height of the PNG in pixels (fixed: no tight bounding box)."""
DAILY_TICKS_UP_TO_DAYS: Final = 14
"""Windows up to this many days get a labelled tick every day."""
WEEKLY_TICKS_UP_TO_DAYS: Final = 70
"""Longer windows up to this many days get a labelled tick every Monday (longer: automatic)."""

#: Which panel shows the signal a rule watches (other rules appear in the timeline only).
RULE_PANEL: Final[Mapping[str, str]] = {
    "hrv_downtrend": "hrv",
    "rhr_creep": "rhr",
    "smo2_slow_recovery": "smo2",
    "rpe_power_mismatch": "smo2",
    "hi_spacing": "smo2",
    "grip_signal": "grip",
    "grip_spillover": "grip",
    "hr_grip_flat": "rhr",
    "gsh_gssg_low": "lab",
    "gsh_gssg_high": "lab",
    "droms_rise": "lab",
    "lipid_dipstick_positive": "lab",
}

# Okabe–Ito colours: distinguishable with the common colour-vision deficiencies.
BLUE: Final = "#0072B2"
SKY: Final = "#56B4E9"
GREEN: Final = "#009E73"
ORANGE: Final = "#E69F00"
RED: Final = "#D55E00"
GREY: Final = "#7f7f7f"
INK: Final = "#222222"
SEVERITY_COLOURS: Final[Mapping[str, str]] = {"info": GREEN, "warning": ORANGE, "pull_back": RED}
STATUS_COLOURS: Final[Mapping[str, str]] = {"ok": GREEN, "caution": ORANGE, "pull_back": RED}
GRIP_CLASS_COLOURS: Final[Mapping[str, str]] = {
    "normal": SKY,
    "grip_signal": GREEN,
    "grip_spillover": RED,
}
GRIP_CLASS_LABELS: Final[Mapping[str, str]] = {
    "normal": "normal (no real drop)",
    "grip_signal": "grip_signal (back within 15 min)",
    "grip_spillover": "grip_spillover (still down at 30 min)",
}

# Bars are narrower than the gap left of a mark, so a rule id never covers its own bar.
_BAR_WIDTH_D: Final = 8 / 24
_LABEL_GAP_D: Final = 5 / 24
_SAME_MARK_FRACTION: Final = 0.03
"""Raises closer than this share of the window's width share one label (they would overlap)."""

FloatArray = npt.NDArray[np.float64]


def _x(when: dt.datetime) -> float:
    """matplotlib's date number (days) of ``when``: every x value of the figure is one."""
    return float(mdates.date2num(when))  # type: ignore[no-untyped-call]


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _noon(day: dt.date) -> float:
    return _x(_midnight(day)) + 0.5


def _series(values: Iterable[float | None]) -> FloatArray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _day_steps(data: ReportData, values: Iterable[float | None]) -> tuple[FloatArray, FloatArray]:
    """x at every day's start plus the window end, y repeated: each value covers its day."""
    y = _series(values)
    days = [*(m.day for m in data.mornings), data.end + dt.timedelta(days=1)]
    x = np.array([_x(_midnight(d)) for d in days], dtype=np.float64)
    return x, np.append(y, y[-1] if y.size else np.nan)


def _drawn(artist: Artist) -> bool:
    """Whether a labelled artist shows anything (an all-NaN series draws nothing)."""
    if isinstance(artist, Line2D):
        return bool(np.isfinite(np.asarray(artist.get_ydata(), dtype=np.float64)).any())
    if isinstance(artist, PolyCollection):
        return len(artist.get_paths()) > 0
    return True


def _legend(ax: Axes, handles: Sequence[Artist] | None = None) -> None:
    """The panel's legend in the right margin, top-aligned with the panel; only what is
    drawn is explained."""
    if handles is None:
        handles = [h for h in ax.get_legend_handles_labels()[0] if _drawn(h)]
    if handles:
        ax.legend(
            handles=list(handles),
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
            frameon=False,
            borderaxespad=0.0,
        )


def _margin_note(ax: Axes, text: str) -> None:
    """A small note in the right margin, under the panel's legend."""
    ax.text(
        1.01,
        0.0,
        textwrap.fill(text, 46),
        transform=ax.transAxes,
        va="bottom",
        ha="left",
        fontsize=7.5,
        color=GREY,
        style="italic",
    )


def _title(ax: Axes, text: str) -> None:
    ax.set_title(text, loc="left", fontsize=10, fontweight="bold")


def _empty(ax: Axes, text: str) -> None:
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=9,
        color=GREY,
        style="italic",
    )


def _mark_alerts(ax: Axes, data: ReportData, panel: str) -> None:
    """A dashed line where each rule of this panel was raised, its id just left of it."""
    marks = sorted(
        (
            s
            for s in data.alerts
            if RULE_PANEL.get(s.rule) == panel and s.raised >= _midnight(data.start)
        ),
        key=lambda s: s.raised,
    )
    transform = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    same_mark = dt.timedelta(days=_SAME_MARK_FRACTION * data.days)
    groups: list[list[AlertSpan]] = []
    for span in marks:
        if groups and span.raised - groups[-1][0].raised < same_mark:
            groups[-1].append(span)  # raised together: one label, not two on top of each other
        else:
            groups.append([span])
    for group in groups:
        colour = SEVERITY_COLOURS.get(group[0].severity, GREY)
        for span in group:
            ax.axvline(
                _x(span.raised),
                color=SEVERITY_COLOURS.get(span.severity, GREY),
                linestyle="--",
                linewidth=1.2,
                zorder=1,
            )
        # Rotated, one line per rule: the ids of a group stand side by side, never overflow.
        ax.text(
            _x(group[0].raised) - _LABEL_GAP_D,
            0.97,
            "\n".join(s.rule for s in group),
            transform=transform,
            rotation=90,
            va="top",
            ha="right",
            fontsize=7.5,
            color=colour,
            fontweight="bold",
            zorder=5,
            clip_on=True,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1.0},
        )
    for span in data.alerts:
        if span.resumed and span.cleared is not None and RULE_PANEL.get(span.rule) == panel:
            ax.axvline(_x(span.cleared), color=GREEN, linestyle=":", linewidth=1.4, zorder=1)


def _plot_hrv(ax: Axes, data: ReportData) -> None:
    th = data.thresholds
    steps, low = _day_steps(data, (m.ln_band_low for m in data.mornings))
    _, high = _day_steps(data, (m.ln_band_high for m in data.mornings))
    _, base = _day_steps(data, (m.ln_baseline_mean for m in data.mornings))
    _, provisional = _day_steps(
        data, (1.0 if m.baseline_status == "provisional" else 0.0 for m in data.mornings)
    )
    # The established band solid; a provisional one (a few days only) hatched and paler,
    # so nobody reads a first week's wide guess as the athlete's normal range.
    ax.fill_between(
        steps,
        np.where(provisional == 1.0, np.nan, low),
        np.where(provisional == 1.0, np.nan, high),
        step="post",
        color=SKY,
        alpha=0.35,
        linewidth=0,
        label=f"normal band (mean ± {th.normal_band_sd:g}·SD)",
    )
    ax.fill_between(
        steps,
        np.where(provisional == 1.0, low, np.nan),
        np.where(provisional == 1.0, high, np.nan),
        step="post",
        facecolor="none",
        edgecolor=SKY,
        hatch="///",
        linewidth=0,
        label="provisional band (few days: wider, no alerts)",
    )
    ax.step(
        steps, base, where="post", color=SKY, linewidth=1.0, linestyle=":", label="baseline mean"
    )
    noons = np.array([_noon(m.day) for m in data.mornings], dtype=np.float64)
    ax.plot(
        noons,
        _series(m.ln_7d_mean for m in data.mornings),
        color=BLUE,
        linewidth=2.2,
        label=f"{th.rolling_mean_days}-day mean",
    )
    ln = _series(m.ln_rmssd for m in data.mornings)
    below = np.array([m.band_position == "below" for m in data.mornings], dtype=bool)
    ax.plot(
        noons, np.where(below, np.nan, ln), "o", color=INK, markersize=5, label="morning reading"
    )
    if below.any():
        ax.plot(
            noons, np.where(below, ln, np.nan), "o", color=RED, markersize=5, label="below the band"
        )
    rejected = [_noon(m.day) for m in data.mornings if m.recorded and not m.accepted]
    if rejected:
        transform = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
        ax.plot(
            rejected,
            [0.06] * len(rejected),
            "x",
            color=GREY,
            markersize=7,
            markeredgewidth=2,
            transform=transform,
            label="reading rejected (artefacts)",
        )
    if np.isnan(ln).all():
        _empty(ax, "no accepted morning readings in this period")
        ax.set_yticks([])
    elif all(m.ln_band_low is None for m in data.mornings):
        _margin_note(
            ax,
            f"No band yet: the baseline needs ≥ {th.baseline_min_valid_days} "
            f"valid mornings in days d−{th.baseline_first_day_back} … "
            f"d−{th.baseline_last_day_back}.",
        )
    _title(ax, "Morning HRV — lnRMSSD (higher: better recovered)")
    ax.set_ylabel("lnRMSSD [ln ms]")
    _mark_alerts(ax, data, "hrv")
    _legend(ax)


def _plot_rhr(ax: Axes, data: ReportData) -> None:
    th = data.thresholds
    steps, median = _day_steps(data, (m.rhr_baseline_median_bpm for m in data.mornings))
    ax.step(
        steps,
        median,
        where="post",
        color=GREY,
        linestyle="--",
        linewidth=1.2,
        label="baseline median",
    )
    ax.step(
        steps,
        median + th.rhr_creep_delta_bpm,
        where="post",
        color=RED,
        linestyle=":",
        linewidth=1.2,
        label=f"median + {th.rhr_creep_delta_bpm:g} bpm (creep line)",
    )
    noons = np.array([_noon(m.day) for m in data.mornings], dtype=np.float64)
    ax.plot(
        noons,
        _series(m.rhr_7d_mean_bpm for m in data.mornings),
        color=ORANGE,
        linewidth=2.2,
        label=f"{th.rolling_mean_days}-day mean",
    )
    rhr = _series(m.resting_hr_bpm for m in data.mornings)
    ax.plot(noons, rhr, "o", color=INK, markersize=5, label="morning resting HR")
    if np.isnan(rhr).all():
        _empty(ax, "no accepted morning readings in this period")
        ax.set_yticks([])
    _title(ax, "Resting heart rate (lower: better recovered)")
    ax.set_ylabel("resting HR [bpm]")
    _mark_alerts(ax, data, "rhr")
    _legend(ax)


def _plot_smo2(ax: Axes, data: ReportData) -> None:
    limit = data.thresholds.smo2_slow_recovery_s
    measured = [(s, s.recovery_s) for s in data.sessions if s.recovery_s is not None]
    for s, recovery in measured:
        ax.bar(
            _x(s.at),
            recovery,
            width=_BAR_WIDTH_D,
            color=RED if recovery > limit else GREEN,
            hatch="///" if s.lower_bound else None,
            edgecolor="white",
            linewidth=0.5,
            zorder=2,
        )
    line = ax.axhline(
        limit,
        color=RED,
        linestyle="--",
        linewidth=1.2,
        zorder=1,
        label=f"{limit:g}-s slow-recovery line",
    )
    handles: list[Artist] = []
    if any(r <= limit for _, r in measured):
        handles.append(Patch(color=GREEN, label=f"recovered within {limit:g} s"))
    if any(r > limit for _, r in measured):
        handles.append(Patch(color=RED, label=f"slower than {limit:g} s"))
    handles.append(line)
    if any(s.lower_bound for s, _ in measured):
        handles.append(
            Patch(
                facecolor="white",
                edgecolor=GREY,
                hatch="///",
                label="unrecovered at session end (≥)",
            )
        )
    plateau = [_x(s.at) for s in data.sessions if s.power_plateau]
    if plateau:
        # The power_plateau finding (info) sits with its session, along the panel's top.
        (found,) = ax.plot(
            plateau,
            [1.0] * len(plateau),
            "D",
            color=GREEN,
            markersize=6,
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            zorder=3,
            label="power_plateau (info finding)",
        )
        handles.append(found)
    unmeasured = [_x(s.at) for s in data.sessions if s.recovery_s is None]
    if unmeasured:
        (marker,) = ax.plot(
            unmeasured,
            [0.0] * len(unmeasured),
            "^",
            color=GREY,
            markersize=7,
            clip_on=False,
            zorder=3,
            label="session without efforts",
        )
        handles.append(marker)
    if not data.sessions:
        _empty(ax, "no sessions in this period")
    ax.set_ylim(0.0, 1.18 * max([limit, *(r for _, r in measured)]))
    _title(ax, "Muscle-oxygen (SmO2) recovery per session — median T95 of its efforts")
    ax.set_ylabel("recovery [s]")
    _mark_alerts(ax, data, "smo2")
    _legend(ax, handles)


def _plot_grip(ax: Axes, data: ReportData) -> None:
    classes: list[str] = []
    for g in data.grips:
        at = _x(g.at)
        ax.bar(
            at,
            g.drop_pct,
            width=_BAR_WIDTH_D,
            color=GRIP_CLASS_COLOURS.get(g.grip_class, GREY),
            edgecolor="white",
            linewidth=0.5,
            zorder=2,
        )
        if g.grip_class not in classes:
            classes.append(g.grip_class)
        if g.threshold_pct is not None:
            ax.hlines(
                g.threshold_pct,
                at - 0.75 * _BAR_WIDTH_D,
                at + 0.75 * _BAR_WIDTH_D,
                color=INK,
                linewidth=1.2,
                zorder=3,
            )
        if g.last_drop is not None:
            ax.plot(
                at,
                g.last_drop[1],
                "D",
                markerfacecolor="white",
                markeredgecolor=INK,
                markersize=5,
                zorder=4,
            )
    ordered = [c for c in GRIP_CLASS_COLOURS if c in classes]
    ordered += [c for c in classes if c not in GRIP_CLASS_COLOURS]
    handles: list[Artist] = [
        Patch(color=GRIP_CLASS_COLOURS.get(c, GREY), label=GRIP_CLASS_LABELS.get(c, c))
        for c in ordered
    ]
    if data.grips:
        minutes = {g.last_drop[0] for g in data.grips if g.last_drop is not None}
        handles += [
            Line2D(
                [],
                [],
                marker="D",
                markerfacecolor="white",
                markeredgecolor=INK,
                linestyle="none",
                markersize=5,
                label=(
                    f"drop at the last test ({min(minutes):g} min)"
                    if len(minutes) == 1
                    else "drop at the last test"
                ),
            ),
            Line2D([], [], color=INK, linewidth=1.2, label="real-drop threshold (test noise)"),
        ]
    else:
        _empty(ax, "no grip tests in this period")
    top = max(
        [
            10.0,
            *(g.drop_pct for g in data.grips),
            *(g.threshold_pct for g in data.grips if g.threshold_pct is not None),
        ]
    )
    ax.set_ylim(0.0, 1.18 * top)
    _title(ax, "Grip strength drop after the session — worst post test")
    ax.set_ylabel("drop [% of MVC]")
    _mark_alerts(ax, data, "grip")
    _legend(ax, handles)


def _plot_labs(ax: Axes, data: ReportData) -> None:
    """Lab markers entered by hand: GSH:GSSG (left axis, n:1) against the article's bands,
    dROMs (right axis, CARR U) with the athlete's +35% line, dipsticks along the top.
    Filled markers are resting draws (judged), hollow ones post-session (not judged)."""
    th = data.thresholds
    gsh = [lab for lab in data.labs if lab.marker == "gsh_gssg"]
    droms = [lab for lab in data.labs if lab.marker == "droms"]
    sticks = [lab for lab in data.labs if lab.marker == "lipid_dipstick"]
    handles: list[Artist] = []
    top = max([th.gsh_gssg_high_ratio * 1.15, *(1.1 * lab.value for lab in gsh)])
    ax.set_ylim(0.0, top)
    ax.axhspan(th.gsh_gssg_trained_low_ratio, 300.0, color=GREEN, alpha=0.12, zorder=0)
    ax.axhline(th.gsh_gssg_low_ratio, color=RED, linestyle=":", linewidth=1.0, zorder=1)
    ax.axhline(th.gsh_gssg_high_ratio, color=ORANGE, linestyle=":", linewidth=1.0, zorder=1)
    handles += [
        Patch(color=GREEN, alpha=0.25, label="GSH:GSSG trained 150–300:1"),
        Line2D(
            [],
            [],
            color=RED,
            linestyle=":",
            label=f"< {th.gsh_gssg_low_ratio:g}:1 leaning oxidative",
        ),
        Line2D(
            [],
            [],
            color=ORANGE,
            linestyle=":",
            label=f"> {th.gsh_gssg_high_ratio:g}:1 over-supplemented",
        ),
    ]
    for resting in (True, False):
        points = [lab for lab in gsh if lab.resting is resting]
        if points:
            ax.plot(
                [_x(lab.at) for lab in points],
                [lab.value for lab in points],
                "o",
                color=BLUE,
                markerfacecolor=BLUE if resting else "white",
                markersize=6,
                zorder=4,
            )
            handles.append(
                Line2D(
                    [],
                    [],
                    marker="o",
                    color=BLUE,
                    markerfacecolor=BLUE if resting else "white",
                    linestyle="none",
                    label="GSH:GSSG " + ("resting" if resting else "post (not judged)"),
                )
            )
    ax.set_ylabel("GSH:GSSG [n:1]")
    if droms:
        right = ax.twinx()
        right.spines["top"].set_visible(False)
        right.tick_params(labelsize=8.5)
        right.set_ylabel("dROMs [CARR U]", fontsize=8.5)
        right.set_ylim(0.0, 1.2 * max(lab.value for lab in droms))
        for resting in (True, False):
            points = [lab for lab in droms if lab.resting is resting]
            if points:
                right.plot(
                    [_x(lab.at) for lab in points],
                    [lab.value for lab in points],
                    "D",
                    color=INK,
                    markerfacecolor=INK if resting else "white",
                    markersize=5,
                    zorder=4,
                )
        for lab in droms:
            if lab.baseline is not None:
                at = _x(lab.at)
                right.hlines(
                    lab.baseline * (1.0 + th.droms_rise_fraction),
                    at - 0.6 * _BAR_WIDTH_D,
                    at + 0.6 * _BAR_WIDTH_D,
                    color=RED,
                    linewidth=1.4,
                    zorder=3,
                )
        handles += [
            Line2D(
                [],
                [],
                marker="D",
                color=INK,
                linestyle="none",
                markersize=5,
                label="dROMs (right axis)",
            ),
            Line2D(
                [],
                [],
                color=RED,
                linewidth=1.4,
                label=f"dROMs own baseline +{th.droms_rise_fraction:.0%}",
            ),
        ]
    transform = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    for lab in sticks:
        positive = lab.value > 0
        ax.text(
            _x(lab.at),
            0.92,
            "+" if positive else "−",
            transform=transform,
            ha="center",
            va="center",
            fontsize=11 if positive else 9,
            fontweight="bold",
            color=RED if positive else GREY,
            zorder=5,
        )
    if sticks:
        handles.append(
            Line2D(
                [],
                [],
                marker="$+$",
                color=RED,
                linestyle="none",
                label="dipstick + / − (top)",
            )
        )
    if not data.labs:
        _empty(ax, "no lab entries in this period (redox-streamer log)")
    _title(ax, "Lab markers — GSH:GSSG, dROMs, lipid-peroxidation dipstick")
    _mark_alerts(ax, data, "lab")
    if handles:  # right of the dROMs axis's ticks and label
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.105 if droms else 1.01, 1.0),
            fontsize=7.5,
            frameon=False,
            borderaxespad=0.0,
        )


def _plot_alerts(ax: Axes, data: ReportData, x_end: dt.datetime) -> None:
    order = list(CATALOGUE)
    rules = sorted(
        {s.rule for s in data.alerts},
        key=lambda r: (order.index(r) if r in order else len(order), r),
    )
    x_start = _midnight(data.start)
    right_end = _x(x_end)
    for row, rule in enumerate(rules):
        for span in (s for s in data.alerts if s.rule == rule):
            left = _x(max(span.raised, x_start))
            right = _x(min(span.cleared or x_end, x_end))
            ax.barh(
                row,
                max(right - left, 0.08),
                left=left,
                height=0.6,
                color=SEVERITY_COLOURS.get(span.severity, GREY),
                alpha=0.95 if span.cleared is None else 0.4,
                zorder=2,
            )
            if span.cleared is None:
                ax.plot(
                    right_end,
                    row,
                    ">",
                    color=SEVERITY_COLOURS.get(span.severity, GREY),
                    markersize=7,
                    clip_on=False,
                    zorder=3,
                )
            elif span.resumed and span.cleared < x_end:
                ax.plot(right, row, "D", color=GREEN, markersize=6, zorder=3)
                since = span.resume_since or span.cleared
                label = f"resume {span.cleared:%d %b} · in band since {since:%d %b}"
                # Beside the marker when there is room to its right, else before the span.
                room = (right_end - right) / max(right_end - _x(x_start), 1e-9)
                ax.text(
                    right if room > 0.35 else left,
                    row,
                    f"  {label}" if room > 0.35 else f"{label}  ",
                    va="center",
                    ha="left" if room > 0.35 else "right",
                    fontsize=7.5,
                    color=INK,
                )
            elif span.cleared < x_end:
                ax.text(
                    right,
                    row,
                    f" cleared {span.cleared:%d %b}",
                    va="center",
                    ha="left",
                    fontsize=7.5,
                    color=INK,
                )
    if rules:
        ax.set_yticks(range(len(rules)), rules, fontsize=8.5)
        ax.set_ylim(len(rules) - 0.5, -0.5)
    else:
        ax.set_yticks([])
        _empty(ax, "no alerts in this period")
    _title(ax, "Alerts — raised → cleared (◆ resume: signals back in band)")
    handles: list[Artist] = [
        Patch(color=SEVERITY_COLOURS[s], label=s.replace("_", " "))
        for s in SEVERITY_COLOURS
        if any(a.severity == s for a in data.alerts)
    ]
    if any(a.cleared is None for a in data.alerts):
        handles.append(
            Line2D(
                [],
                [],
                marker=">",
                color=INK,
                linestyle="none",
                markersize=7,
                label="still open (solid)",
            )
        )
    if any(a.cleared is not None for a in data.alerts):
        handles.append(Patch(color=GREY, alpha=0.4, label="cleared (faded)"))
    if any(a.resumed for a in data.alerts):
        handles.append(
            Line2D(
                [],
                [],
                marker="D",
                color=GREEN,
                linestyle="none",
                markersize=6,
                label="resume: back in band",
            )
        )
    _legend(ax, handles)


def _header(fig: Figure, data: ReportData) -> None:
    colour = STATUS_COLOURS[data.status]
    fig.text(
        0.06, 0.977, f"{data.athlete} — recovery report", fontsize=17, fontweight="bold", va="top"
    )
    fig.text(
        0.06,
        0.950,
        f"{data.start:%a %d %b %Y} – {data.end:%a %d %b %Y}  ({data.days} days, UTC)",
        fontsize=10,
        va="top",
        color="#333333",
    )
    latest = data.latest_morning
    if latest is None or latest.ln_rmssd is None:
        morning = "no accepted morning reading in this period"
    else:
        band = (
            ""
            if latest.ln_band_low is None or latest.ln_band_high is None
            else f" ({latest.band_position} the "
            f"{'provisional' if latest.baseline_status == 'provisional' else 'normal'} band "
            f"{latest.ln_band_low:.2f}–"
            f"{latest.ln_band_high:.2f})"
        )
        hr = (
            "" if latest.resting_hr_bpm is None else f", resting HR {latest.resting_hr_bpm:.0f} bpm"
        )
        morning = f"latest morning {latest.day:%a %d %b}: lnRMSSD {latest.ln_rmssd:.2f}{band}{hr}"
    fig.text(0.06, 0.930, morning, fontsize=10, va="top", color="#333333")
    fig.text(
        0.97,
        0.977,
        data.status.replace("_", " ").upper(),
        fontsize=17,
        fontweight="bold",
        va="top",
        ha="right",
        color=colour,
    )
    opened = ", ".join(a.rule for a in data.open_alerts)
    fig.text(
        0.06,
        0.910,
        f"open now: {opened}" if opened else "no open alerts now",
        fontsize=9.5,
        va="top",
        color=colour,
    )


def render_figure(data: ReportData) -> Figure:
    """The report as a matplotlib figure on an Agg canvas, :data:`PNG_SIZE_PX` at
    :data:`PNG_DPI`."""
    fig = Figure(figsize=PNG_SIZE_IN, dpi=PNG_DPI)
    FigureCanvasAgg(fig)
    n_rules = len({s.rule for s in data.alerts})
    grid = fig.add_gridspec(
        6,
        1,
        height_ratios=[3.2, 2.2, 2.0, 2.0, 2.0, 0.7 + 0.32 * max(n_rules, 1)],
        left=0.13,
        right=0.765,
        top=0.86,
        bottom=0.07,
        hspace=0.45,
    )
    first = fig.add_subplot(grid[0])
    axes = [first, *(fig.add_subplot(grid[i], sharex=first) for i in range(1, 6))]
    x_start = _midnight(data.start)
    x_end = _midnight(data.end + dt.timedelta(days=1))
    _plot_hrv(axes[0], data)
    _plot_rhr(axes[1], data)
    _plot_smo2(axes[2], data)
    _plot_grip(axes[3], data)
    _plot_labs(axes[4], data)
    _plot_alerts(axes[5], data, x_end)
    first.set_xlim(_x(x_start), _x(x_end))
    bottom = axes[-1].xaxis
    if data.days <= DAILY_TICKS_UP_TO_DAYS:
        bottom.set_major_locator(mdates.DayLocator(tz=dt.UTC))  # type: ignore[no-untyped-call]
    elif data.days <= WEEKLY_TICKS_UP_TO_DAYS:
        # Training is planned in weeks: a labelled tick each Monday, a small one each day.
        bottom.set_major_locator(mdates.WeekdayLocator(mdates.MO, tz=dt.UTC))  # type: ignore[no-untyped-call]
        bottom.set_minor_locator(mdates.DayLocator(tz=dt.UTC))  # type: ignore[no-untyped-call]
    else:
        bottom.set_major_locator(
            mdates.AutoDateLocator(  # type: ignore[no-untyped-call]
                minticks=4, maxticks=10, tz=dt.UTC
            )
        )
    bottom.set_major_formatter(mdates.DateFormatter("%a\n%d %b", tz=dt.UTC))  # type: ignore[no-untyped-call]
    axes[-1].set_xlabel("date (UTC)")
    for ax in axes:
        ax.grid(True, axis="x", which="major", color="#d8d8d8", linewidth=0.8)
        ax.grid(True, axis="y", color="#eeeeee", linewidth=0.6)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.tick_params(labelsize=8.5)
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    _header(fig, data)
    fig.text(
        0.06,
        0.01,
        "Thresholds are practitioner heuristics (docs/rules.md), configurable, and "
        "not medical advice. Morning values are per calendar day; sessions and grip tests "
        "at their time.",
        fontsize=7.5,
        color=GREY,
    )
    return fig


def png_bytes(data: ReportData) -> bytes:
    """The report picture as PNG bytes, :data:`PNG_SIZE_PX` pixels."""
    buffer = io.BytesIO()
    render_figure(data).savefig(buffer, format="png", dpi=PNG_DPI, facecolor="white")
    return buffer.getvalue()


def render_png(data: ReportData, path: Path) -> None:
    """Write the report picture to ``path`` (PNG, :data:`PNG_SIZE_PX` pixels)."""
    Path(path).write_bytes(png_bytes(data))
