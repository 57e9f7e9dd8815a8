"""``redox-streamer analyze smo2 FILE``: SmO2 recovery after each effort of a recording.

Registered by :mod:`streamer.commands.analyze` as one of its targets.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from processors import physiology as phys
from processors.oxygenation import (
    ACTIVITY_KINDS,
    ActivityKind,
    EffortRecovery,
    OxygenationInputError,
    OxygenRecovery,
    analyse_session,
)
from streamer.errors import CliError
from streamer.files.smo2 import MOXY_HEADER, SmO2File, read_smo2_file

ACTIVITY_CHOICES = ("auto", "power", "hr", "none")

SMO2_DESCRIPTION = f"""\
Muscle-oxygen (SmO2) recovery after each effort of a recording, as the live pipeline
computes it. Accepted files:
  * a Moxy PC-software export: a few header lines, then
    {",".join(MOXY_HEADER)}
    (the live SmO2 column is used; the device's average lags every edge by ~4 s);
  * a CSV whose header names time (seconds, or hh:mm:ss) and smo2 (or smo2_live),
    optionally power_w (W) and hr_bpm (bpm).

What happens, in order:
  1. SmO2 is smoothed with a centred {phys.SMO2_SMOOTHING_WINDOW_S:g}-s running median;
  2. an effort is a fall more than {phys.SMO2_MIN_DESATURATION_PCT:g} points below the \
pre-effort baseline (median of the last
     {phys.SMO2_BASELINE_WINDOW_S:g} s at rest) lasting at least \
{phys.SMO2_MIN_EFFORT_S:g} s (shorter dips, e.g. in a cool-down, are not
     efforts); with power or HR, only desaturations during work count;
  3. the recovery clock starts at the END OF WORK: from power (last sample at or above the
     work level) or HR (its peak) when the file has them, else from SmO2 itself (the step
     up or the start of the rise after the work plateau; without activity a flat
     reoxygenation delay cannot be seen, so times may read short by it);
  4. T1/2 and T95 are the times from the end of work to 50% and 95% recovery of the
     desaturation (T95 read off the fitted curve when the fit is good); tau and delay come
     from a mono-exponential fit whose delay is found by search;
  5. the session recovery time is the median T95; the smo2_slow_recovery rule fires when
     it exceeds {phys.SMO2_SLOW_RECOVERY_S:g} s in {phys.SMO2_SLOW_RECOVERY_SESSIONS} \
consecutive sessions.
Times are in seconds from the file's first sample.
"""

SMO2_EPILOG = """\
examples:
  redox-streamer analyze smo2 moxy_intervals_full.csv
  redox-streamer analyze smo2 moxy_intervals_full.csv --json
  redox-streamer analyze smo2 ride.csv --activity none    # ignore the power column

exit status: 0 analysed (also when no effort is found; the output says so),
2 the file cannot be analysed (the error names the line and what to do).
"""

# Per-effort fields of the --json object, in order; units are in the names.
EFFORT_FIELDS = (
    "start_s",
    "work_end_s",
    "work_end_source",
    "baseline_pct",
    "min_pct",
    "desaturation_pct",
    "t_half_s",
    "t95_s",
    "tau_s",
    "delay_s",
    "fit_r2",
    "reox_rate_pct_s",
    "overshoot_pct",
    "recovered",
    "observed_s",
)


def register(targets: Any) -> None:
    """Add the ``smo2`` target to ``analyze``'s sub-parsers."""
    smo2 = targets.add_parser(
        "smo2",
        help="SmO2 recovery after each effort of a Moxy export or SmO2 CSV",
        description=SMO2_DESCRIPTION,
        epilog=SMO2_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    smo2.add_argument("file", metavar="FILE", help="Moxy PC-software export or time,smo2 CSV")
    smo2.add_argument(
        "--json", action="store_true", help="print one JSON object (units in the field names)"
    )
    smo2.add_argument(
        "--activity",
        choices=ACTIVITY_CHOICES,
        default="auto",
        help="column that marks work and its end: auto = power_w if present, else hr_bpm, "
        "else none (SmO2 only) (default: auto)",
    )
    smo2.set_defaults(handler=run_smo2)


def _activity(data: SmO2File, choice: str) -> tuple[ActivityKind | None, Any]:
    """The activity kind and (times, values) the user asked for, or (None, None)."""
    columns: dict[ActivityKind, Any] = {"power": data.power, "hr": data.hr}
    if choice == "none":
        return None, None
    if choice == "auto":
        for candidate in ACTIVITY_KINDS:
            series = columns[candidate]
            if series is not None and series[0].size:
                return candidate, series
        return None, None
    kind: ActivityKind = "power" if choice == "power" else "hr"
    series = columns[kind]
    if series is None or not series[0].size:
        column = "power_w" if kind == "power" else "hr_bpm"
        raise CliError(
            f"{data.path}: --activity {choice} but the file has no {column} values; "
            "add the column or use --activity none"
        )
    return kind, series


def run_smo2(args: argparse.Namespace) -> int:
    """Handler of ``analyze smo2``: 0 analysed; a bad file raises an error the CLI reports."""
    data = read_smo2_file(args.file)
    kind, series = _activity(data, args.activity)
    try:
        session = analyse_session(
            data.t_s,
            data.smo2_pct,
            activity=series,
            activity_kind=kind or "power",
        )
    except OxygenationInputError as exc:
        raise CliError(f"{data.path}: {exc}") from None
    report = build_report(data, session, kind)
    print(json.dumps(report) if args.json else format_table(report))
    return 0


def _effort(e: EffortRecovery) -> dict[str, Any]:
    values: dict[str, Any] = {
        "start_s": e.onset_s,
        "work_end_s": e.work_end_s,
        "work_end_source": e.work_end_source,
        "baseline_pct": e.baseline_pct,
        "min_pct": e.min_pct,
        "desaturation_pct": e.desaturation_pct,
        "t_half_s": e.t_half_s,
        "t95_s": e.t95_s,
        "tau_s": e.tau_s,
        "delay_s": e.delay_s,
        "fit_r2": e.fit_r2,
        "reox_rate_pct_s": e.reoxygenation_rate_pct_s,
        "overshoot_pct": e.overshoot_pct,
        "recovered": e.recovered,
        "observed_s": e.observed_s,
    }
    return {key: values[key] for key in EFFORT_FIELDS}


def build_report(
    data: SmO2File, session: OxygenRecovery, activity: ActivityKind | None
) -> dict[str, Any]:
    """The ``--json`` object: the file, its efforts and the session recovery time (s)."""
    return {
        "file": str(data.path),
        "layout": data.layout,
        "n_samples": int(data.t_s.size),
        "duration_s": float(data.t_s[-1]),
        "activity": activity,
        "n_efforts": session.n_efforts,
        "n_recovered": session.n_recovered,
        "efforts": [_effort(e) for e in session.efforts],
        "recovery_time_s": session.recovery_time_s,
        "recovery_time_is_lower_bound": session.recovery_time_is_lower_bound,
        "slow_recovery_threshold_s": phys.SMO2_SLOW_RECOVERY_S,
    }


def _cell(value: float | None, width: int = 8) -> str:
    return f"{value:>{width}.1f}" if value is not None else f"{'-':>{width}}"


def format_table(report: dict[str, Any]) -> str:
    """Human-readable table of :func:`build_report`'s object, one row per effort."""
    layout = "Moxy export" if report["layout"] == "moxy" else "CSV"
    source = report["activity"] or "SmO2 only"
    lines = [
        f"{report['file']}  ({layout}, {report['n_samples']} samples, "
        f"{report['duration_s']:g} s; end of work from {source})"
    ]
    if not report["efforts"]:
        lines.append("  no effort found (no desaturation deep and long enough)")
        return "\n".join(lines)
    lines.append(
        f"  {'effort':>6} {'start':>8} {'work end':>8} {'base %':>8} {'work %':>8} "
        f"{'T1/2 s':>8} {'T95 s':>8} {'tau s':>8} {'delay s':>8}"
    )
    for i, e in enumerate(report["efforts"], start=1):
        t95 = _cell(e["t95_s"]) if e["recovered"] else f"{'>' + format(e['observed_s'], '.0f'):>8}"
        lines.append(
            f"  {i:>6} {_cell(e['start_s'])} {_cell(e['work_end_s'])} "
            f"{_cell(e['baseline_pct'])} {_cell(e['min_pct'])} {_cell(e['t_half_s'])} "
            f"{t95} {_cell(e['tau_s'])} {_cell(e['delay_s'])}"
        )
    recovery = report["recovery_time_s"]
    threshold = report["slow_recovery_threshold_s"]
    if recovery is None:
        lines.append("  session recovery time: none (no effort was watched long enough)")
    else:
        bound = "at least " if report["recovery_time_is_lower_bound"] else ""
        verdict = "above" if recovery > threshold else "within"
        lines.append(
            f"  session recovery time (median T95): {bound}{recovery:.1f} s "
            f"({verdict} the {threshold:g}-s smo2_slow_recovery threshold)"
        )
    return "\n".join(lines)
