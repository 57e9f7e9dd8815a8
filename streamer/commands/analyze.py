"""``redox-streamer analyze rr FILE``: HRV of an RR-interval file, judged before it is believed."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from processors import physiology as phys
from processors.hrv import PSD_METHODS, HrvMetrics, hrv_metrics
from processors.rr_clean import CleanResult, QualityVerdict, clean_rr, quality_gate
from streamer.commands import analyze_smo2
from streamer.errors import CliError
from streamer.files.rr import UNITS, RrFile, read_rr_file

DESCRIPTION = """\
Analyse recorded data offline with the same processors the live pipeline uses.

  rr FILE   heart-rate variability of an RR-interval file
  smo2 FILE SmO2 recovery after each effort (Moxy export or time,smo2 CSV)
"""

RR_DESCRIPTION = f"""\
Heart-rate variability of an RR-interval file: one interval per line, in milliseconds or
seconds (detected: a median below {phys.RR_UNIT_SECONDS_BELOW:g} means seconds; or give --unit).
Blank lines and lines starting with # are skipped.

What happens, in order:
  1. quality gate on the raw intervals: the reading is rejected when more than
     {100 * phys.QUALITY_MAX_ABNORMAL_SHARE:g}% of beats deviate more than \
{100 * phys.QUALITY_NEIGHBOUR_DEVIATION:g}% (of the local median) from the mean of their
     two neighbours (frequent ectopic beats, a noisy strap; the smooth swings of slow
     breathing pass): a rejected reading still shows its numbers, marked untrustworthy;
  2. intervals outside {phys.RR_MIN_MS:g}-{phys.RR_MAX_MS:g} ms are dropped as gaps \
(never differenced across);
  3. artefacts and ectopic beats are detected (Lipponen & Tarvainen 2019) and corrected as
     Kubios does: flagged intervals replaced by cubic-spline interpolation, a premature beat
     and its pause as one event; beats within {100 * phys.CORRECTION_MIN_DEVIATION:g}% of \
their neighbours are left alone;
  4. time domain (mean NN, mean HR = 60000/mean NN, SDNN, RMSSD, lnRMSSD, SDSD, pNN50 over
     successive differences), LF/HF power in ms² (Welch on a 4 Hz cubic resampling,
     detrended, 64-s Hann segments; or Lomb-Scargle with --psd lomb) and DFA alpha1
     (4-16 beats). Spectra need >= 64 s of gap-free beats, alpha1 >= 32 beats.
"""

RR_EPILOG = """\
examples:
  redox-streamer analyze rr morning.txt
  redox-streamer analyze rr morning.txt --json
  redox-streamer analyze rr nsr001_rr_secs.txt --first-line-is-start --json
  redox-streamer analyze rr strap.txt --unit ms --psd lomb

exit status: 0 accepted, 1 rejected by the quality gate (the reason is printed),
2 the file cannot be analysed (the error names the line and what to do).
"""

# Fields of the --json object, in order; units are in the names.
JSON_FIELDS = (
    "file",
    "unit",
    "start_s",
    "n_beats",
    "n_nn",
    "duration_s",
    "mean_nn_ms",
    "mean_hr_bpm",
    "sdnn_ms",
    "rmssd_ms",
    "ln_rmssd",
    "sdsd_ms",
    "pnn50_pct",
    "lf_ms2",
    "hf_ms2",
    "lf_hf",
    "psd_method",
    "dfa_alpha1",
    "artifacts_pct",
    "corrected_pct",
    "n_gaps",
    "accepted",
    "reject_reason",
)


def register(subparsers: Any) -> None:
    """Add the ``analyze`` sub-command and its ``rr`` and ``smo2`` targets."""
    parser = subparsers.add_parser(
        "analyze",
        help="analyse a recorded file (HRV of an RR-interval file)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    rr = targets.add_parser(
        "rr",
        help="heart-rate variability of an RR-interval file",
        description=RR_DESCRIPTION,
        epilog=RR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rr.add_argument("file", metavar="FILE", help="RR intervals, one per line (ms or s)")
    rr.add_argument(
        "--json", action="store_true", help="print one JSON object (units in the field names)"
    )
    rr.add_argument(
        "--first-line-is-start",
        action="store_true",
        help="the first line is the time of the first beat, not an interval (PhysioNet "
        "nsr2db exports)",
    )
    rr.add_argument(
        "--unit", choices=UNITS, default="auto", help="unit of the values (default: detect)"
    )
    rr.add_argument(
        "--psd",
        choices=PSD_METHODS,
        default="welch",
        help="spectral method for LF/HF (default: welch)",
    )
    rr.add_argument(
        "--max-artifacts-pct",
        type=float,
        default=100 * phys.QUALITY_MAX_ABNORMAL_SHARE,
        metavar="PCT",
        help="reject when more than PCT%% of beats are abnormal (default: %(default)g)",
    )
    rr.add_argument(
        "--deviation-pct",
        type=float,
        default=100 * phys.QUALITY_NEIGHBOUR_DEVIATION,
        metavar="PCT",
        help="a beat is abnormal beyond PCT%% (of its local median) from the mean of its "
        "neighbours (default: %(default)g)",
    )
    rr.set_defaults(handler=run_rr)
    analyze_smo2.register(targets)


def run_rr(args: argparse.Namespace) -> int:
    """Handler of ``analyze rr``: 0 accepted, 1 rejected by the gate; bad input raises."""
    for name in ("max_artifacts_pct", "deviation_pct"):
        value = getattr(args, name)
        if not 0 < value <= 100:
            flag = "--" + name.replace("_", "-")
            raise CliError(f"{flag} {value:g} is outside 0-100; give a percentage")
    rr_file = read_rr_file(args.file, unit=args.unit, first_line_is_start=args.first_line_is_start)
    if rr_file.rr_ms.size < 3:
        raise CliError(
            f"{args.file}: only {rr_file.rr_ms.size} interval(s); HRV needs at least 3 "
            "(and ~5 min for a meaningful reading)"
        )

    verdict = quality_gate(
        rr_file.rr_ms,
        max_deviation=args.deviation_pct / 100,
        max_abnormal_share=args.max_artifacts_pct / 100,
    )
    cleaned = clean_rr(rr_file.rr_ms)
    # A rejected reading still gets its numbers (Kubios users expect to see them beside the
    # warning); the verdict marks them untrustworthy.
    try:
        metrics: HrvMetrics | None = hrv_metrics(
            cleaned.nn_ms, cleaned.breaks, estimated=cleaned.estimated, psd_method=args.psd
        )
    except ValueError as exc:
        if verdict.accepted:
            raise CliError(f"{args.file}: {exc}") from None
        metrics = None
    report = build_report(rr_file, verdict, cleaned, metrics, args.psd)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table(report))
    return 0 if verdict.accepted else 1


def build_report(
    rr_file: RrFile,
    verdict: QualityVerdict,
    cleaned: CleanResult,
    metrics: HrvMetrics | None,
    psd_method: str,
) -> dict[str, Any]:
    """The flat result object (``--json``). A rejected reading carries its HRV fields too,
    with ``accepted`` false and ``reject_reason``: they are not to be trusted."""

    def metric(name: str) -> float | None:
        if metrics is None:
            return None
        value = getattr(metrics, name)
        return None if value is None or not math.isfinite(value) else float(value)

    report: dict[str, Any] = {
        "file": str(rr_file.path),
        "unit": rr_file.unit,
        "start_s": rr_file.start_s,
        "n_beats": int(rr_file.rr_ms.size),
        "n_nn": int(cleaned.nn_ms.size),
        "duration_s": float(rr_file.rr_ms.sum()) / 1000.0,
        "psd_method": psd_method,
        "artifacts_pct": verdict.abnormal_pct,
        "corrected_pct": cleaned.corrected_pct,
        "n_gaps": int(cleaned.breaks[1:].sum()) if cleaned.breaks.size else 0,
        "accepted": verdict.accepted,
        "reject_reason": verdict.reject_reason,
    }
    # The other fields are HrvMetrics attributes of the same name.
    return {key: report[key] if key in report else metric(key) for key in JSON_FIELDS}


_LABELS = {
    "n_beats": ("intervals read", ""),
    "n_nn": ("NN after correction", ""),
    "duration_s": ("duration", "s"),
    "mean_nn_ms": ("mean NN", "ms"),
    "mean_hr_bpm": ("mean HR", "bpm"),
    "sdnn_ms": ("SDNN", "ms"),
    "rmssd_ms": ("RMSSD", "ms"),
    "ln_rmssd": ("lnRMSSD", "ln ms"),
    "sdsd_ms": ("SDSD", "ms"),
    "pnn50_pct": ("pNN50", "%"),
    "lf_ms2": ("LF 0.04-0.15 Hz", "ms²"),
    "hf_ms2": ("HF 0.15-0.40 Hz", "ms²"),
    "lf_hf": ("LF/HF", ""),
    "dfa_alpha1": ("DFA alpha1", ""),
    "artifacts_pct": ("abnormal beats (gate)", "%"),
    "corrected_pct": ("corrected beats", "%"),
    "n_gaps": ("gaps", ""),
}


def format_table(report: dict[str, Any]) -> str:
    """Human-readable two-column table of :func:`build_report`'s object."""
    unit_note = report["unit"] + (
        f", starts at {report['start_s']:g} s" if report["start_s"] else ""
    )
    lines = [f"{report['file']}  ({unit_note})"]
    if not report["accepted"]:
        lines.append("  NOT TRUSTWORTHY: rejected by the quality gate (reason below)")
    for key, (label, unit) in _LABELS.items():
        value = report[key]
        if value is None:
            shown = "too short" if report["accepted"] else "n/a"
            unit = ""
        elif isinstance(value, float):
            shown = f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
        else:
            shown = str(value)
        if key in ("lf_ms2", "hf_ms2", "lf_hf") and value is not None:
            label = f"{label} [{report['psd_method']}]"
        lines.append(f"  {label:<28} {shown:>12} {unit}".rstrip())
    if report["accepted"]:
        lines.append("  verdict: accepted")
    else:
        reason = report["reject_reason"]
        lines.append(f"  verdict: REJECTED, the numbers above are not trustworthy - {reason}")
    return "\n".join(lines)
