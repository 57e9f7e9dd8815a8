"""``redox-streamer import rr|fit``: history from files, through the live path.

Each recording goes through the same quality gate, processors, store and sinks as live
data (:mod:`streamer.importing.feed`), so Grafana shows the history as soon as it is
imported, and baselines are there for the next live morning.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from streamer.app.assembly import App, AthleteOptions
from streamer.config import (
    Config,
    athlete_id_arg,
    date_arg,
    optional_config,
)
from streamer.errors import CliError
from streamer.files.rr import UNITS
from streamer.importing.daily_csv import FORMATS
from streamer.importing.model import FitActivity, ImportSummary, RrRecording
from streamer.store import StoreError, default_store_path
from streamer.store_lock import hold_store

DESCRIPTION = """\
Import history from files, through the same quality gate, processors, store and sinks
(MQTT, InfluxDB) as live data, with the recordings' own times.

  rr FILE...   morning readings from RR-interval files
  fit FILE...  training sessions (or morning readings) from FIT activity files
  csv FILE...  daily morning values from another app's export (HRV4Training, Elite HRV)

Importing the same file twice changes nothing: a day that already has a morning reading,
or a session already stored, is reported as a duplicate.
"""

RR_DESCRIPTION = """\
Morning readings from RR-interval files, one reading per file:
  * one interval per line, ms or s (Elite HRV's raw export, Kubios' RR text, the files of
    `analyze rr`); the reading's start comes from --date, else a '# 2026-11-03 06:45:12'
    comment line, else the file name ('2026-11-03 06-45-12.txt', as Elite HRV names them);
  * a timestamped CSV with an RR column (Polar Sensor Logger 'Phone timestamp;RR-interval
    [ms]', HRV Logger 'date,rr,since start'): the start is the first beat's time.
Times without a zone are in --tz (default: this machine's zone); a date without a time is
filed on that date.

Each reading is analysed as a live one: the first --stabilisation-s seconds are discarded,
the next 5 minutes analysed, and the quality gate accepts or rejects it. Apps that record
only the reading itself (Elite HRV, a Kubios export) need --stabilisation-s 0.
"""

FIT_DESCRIPTION = """\
Training sessions from FIT activity files (Garmin and other head units): RR intervals from
`hrv` messages, heart rate and power from records, SmO2 and THb from Moxy's Connect IQ
developer fields. Each activity becomes one session (SmO2 efforts and recovery, mean
power, --rpe); with --as morning, an activity's RR (an HRV stress test, say) becomes that
day's morning reading instead.
"""

CSV_DESCRIPTION = """\
Daily morning values from another app's CSV export, pooled into the morning history only
where they are the same measurement as a reading here:
  hrv4training  HRV4Training's export: rMSSD (ms) and HR (bpm) of its 60-s morning
                reading (60-s and 5-min lnRMSSD agree at rest: Esco & Flatt 2014)
  elitehrv      Elite HRV's web-dashboard CSV export ('Member,Date,Datetime,Type,HRV,
                lnRmssd,Rmssd,...,HR,...'): Rmssd (ms) and HR (bpm) of its Morning
                Readiness readings (Type 'readiness'), dated by Datetime (or Date Time
                Start); other reading types are rejected, never pooled. Its 'HRV' column
                is a scaled ln(rMSSD) score and is never read as rMSSD. A team export
                holding several members needs --member NAME. (The app's own export is raw
                RR text: import it with `import rr`.)
Each day becomes that day's morning, labelled with its source (the payload's `source`),
so baselines and trends start from it; a day's first pooled reading wins. Nothing is
converted across metrics: SDNN, the apps' scaled scores and questionnaires are not read.
A day that already has a reading is left as it is.
"""

EPILOG = """\
examples:
  redox-streamer import rr --athlete anna --stabilisation-s 0 ~/EliteHRV/export/*.txt
  redox-streamer import rr --athlete anna --date 2026-11-03 morning.txt
  redox-streamer import fit --athlete anna ~/garmin/activities/*.fit
  redox-streamer import fit --athlete anna --as morning hrv-stress-test.fit
  redox-streamer import csv --format hrv4training --athlete anna MyMeasurements.csv
  redox-streamer import csv --format elitehrv --athlete anna "EliteHRV_Export.csv"

exit status: 0 every file read (some readings may be rejected or duplicates: the summary
says which and why), 2 a file cannot be read (nothing was imported; the error names it).
"""


_T = TypeVar("_T")


def register(subparsers: Any) -> None:
    """Add the ``import`` sub-command and its ``rr`` and ``fit`` targets."""
    parser = subparsers.add_parser(
        "import",
        help="import history (RR files, FIT activities) through the live path",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    targets = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    rr = targets.add_parser(
        "rr",
        help="morning readings from RR-interval files",
        description=RR_DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rr.add_argument("files", nargs="+", type=Path, metavar="FILE", help="RR files")
    rr.add_argument(
        "--date",
        type=date_arg,
        metavar="YYYY-MM-DD",
        help="the reading's date (one file only; default: from the file)",
    )
    rr.add_argument("--unit", choices=UNITS, default="auto", help="unit (default: detect)")
    rr.add_argument(
        "--tz", metavar="ZONE", help="zone of times without one (default: this machine's)"
    )
    rr.add_argument(
        "--stabilisation-s",
        type=float,
        metavar="S",
        help="seconds discarded at the start of each reading (default: as live, 60)",
    )
    rr.set_defaults(handler=run_rr)
    fit = targets.add_parser(
        "fit",
        help="training sessions (or morning readings) from FIT activity files",
        description=FIT_DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("files", nargs="+", type=Path, metavar="FILE", help="FIT activity files")
    fit.add_argument(
        "--as",
        dest="as_",
        choices=("session", "morning"),
        default="session",
        help="what each activity is (default: session)",
    )
    fit.add_argument(
        "--rpe", type=_rpe, metavar="0-10", help="perceived exertion (CR-10) of every session"
    )
    fit.add_argument(
        "--stabilisation-s",
        type=float,
        metavar="S",
        help="with --as morning: seconds discarded at the start (default: as live, 60)",
    )
    fit.set_defaults(handler=run_fit)
    daily = targets.add_parser(
        "csv",
        help="daily morning values from another app's CSV export (HRV4Training, Elite HRV)",
        description=CSV_DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    daily.add_argument("files", nargs="+", type=Path, metavar="FILE", help="CSV exports")
    daily.add_argument(
        "--format", choices=FORMATS, required=True, help="which app exported the file"
    )
    daily.add_argument(
        "--member",
        metavar="NAME",
        help="elitehrv: the member whose readings to import, as the file's Member column "
        "spells it (needed when a team export holds several)",
    )
    daily.set_defaults(handler=run_csv)
    for target in (rr, fit, daily):
        target.add_argument(
            "--athlete", required=True, type=athlete_id_arg, help="whose history this is"
        )
        target.add_argument(
            "--config",
            type=Path,
            metavar="FILE",
            help="config: the athlete's profile and rules, the MQTT and InfluxDB sinks, the "
            "store (default: $REDOX_CONFIG or the default config file, if there is one)",
        )
        target.add_argument(
            "--store",
            type=Path,
            metavar="PATH",
            help=f"SQLite store (default: the config's, else {default_store_path()})",
        )
        target.add_argument(
            "--json", action="store_true", help="print the summary as one JSON object"
        )


def _rpe(text: str) -> float:
    from streamer.app.commands_in import check_rpe  # the one RPE check (CLI, MQTT)

    try:
        return check_rpe(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: RPE is a number from 0 to 10 (CR-10)"
        ) from None


def _config(args: argparse.Namespace) -> Config:
    return optional_config(args.config) or Config()


@contextmanager
def _app(args: argparse.Namespace) -> Iterator[App]:
    """The app over the store, which this import holds alone while it writes."""
    config = _config(args)
    options: AthleteOptions = {"live": False}
    if getattr(args, "stabilisation_s", None) is not None:
        if not 0 <= args.stabilisation_s <= 600:
            raise CliError(f"--stabilisation-s {args.stabilisation_s:g}: give 0 to 600 seconds")
        options["morning_stabilisation_s"] = args.stabilisation_s
    store = args.store or config.store_path
    with hold_store(store, "import"):
        try:
            app = App.from_config(config, store=store, **options)
        except StoreError as exc:
            raise CliError(f"--store: {exc}") from None
        with app:
            yield app


def _progress(total_files: int) -> Callable[[int, int], None]:
    """A progress line on a terminal (stderr), nothing otherwise."""
    if not sys.stderr.isatty():
        return lambda done, total: None

    def show(done: int, total: int) -> None:
        end = "\n" if done == total else ""
        print(f"\rimporting: {done}/{total} recordings", end=end, file=sys.stderr, flush=True)

    return show


def _report(summary: ImportSummary, args: argparse.Namespace) -> int:
    if args.json:
        print(
            json.dumps(
                {
                    "athlete": args.athlete,
                    **summary.counts(),
                    "recordings": [
                        {
                            "file": str(o.source),
                            "date": o.day.isoformat(),
                            "outcome": o.outcome,
                            "reason": o.reason or None,
                        }
                        for o in summary.outcomes
                    ],
                }
            )
        )
        return 0
    for o in summary.outcomes:
        if o.outcome != "accepted":
            print(f"{o.source}: {o.day} {o.outcome}: {o.reason}")
    print(f"{args.athlete}: {summary.line()}")
    return 0


def _read_all(files: Sequence[Path], read: Callable[[Path], _T]) -> list[_T]:
    """Every file read before anything is fed, so a bad file stops the import whole."""
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise CliError(f"{missing[0]}: no such file ({len(missing)} of {len(files)} missing)")
    return [read(f) for f in files]


def run_rr(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer import rr``."""
    from streamer.importing.feed import import_mornings
    from streamer.importing.rr_recordings import read_rr_recording, zone

    if args.date is not None and len(args.files) > 1:
        raise CliError(f"--date applies to one file; {len(args.files)} given (drop --date)")
    tz = zone(args.tz)
    recordings: list[RrRecording] = _read_all(
        args.files, lambda f: read_rr_recording(f, date=args.date, unit=args.unit, tz=tz)
    )
    with _app(args) as app:
        summary = asyncio.run(
            import_mornings(app, args.athlete, recordings, progress=_progress(len(recordings)))
        )
    return _report(summary, args)


def run_fit(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer import fit``."""
    from streamer.importing.feed import import_mornings, import_sessions
    from streamer.importing.fit_activities import read_fit_activity

    activities: list[FitActivity] = _read_all(args.files, read_fit_activity)
    with _app(args) as app:
        if args.as_ == "morning":
            empty = [a.source for a in activities if not a.rr_ms]
            if empty:
                raise CliError(
                    f"{empty[0]}: no RR intervals (hrv messages) in this activity; record "
                    "it with a chest strap and HRV logging on, or import it as a session"
                )
            recordings = [
                RrRecording(a.source, a.start_ns, a.rr_ms, "FIT file") for a in activities
            ]
            summary = asyncio.run(
                import_mornings(app, args.athlete, recordings, progress=_progress(len(recordings)))
            )
        else:
            summary = asyncio.run(
                import_sessions(
                    app,
                    args.athlete,
                    activities,
                    rpe=args.rpe,
                    progress=_progress(len(activities)),
                )
            )
    return _report(summary, args)


def run_csv(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer import csv``."""
    from streamer.importing.daily_csv import DailyValue, read_elitehrv, read_hrv4training
    from streamer.importing.feed import import_days

    read: Callable[[Path], list[DailyValue]]
    if args.format == "elitehrv":
        read = partial(read_elitehrv, member=args.member)
    elif args.member is not None:
        raise CliError("--member picks a member of an Elite HRV team export (drop it)")
    else:
        read = read_hrv4training
    values = [v for rows in _read_all(args.files, read) for v in rows]
    with _app(args) as app:
        summary = asyncio.run(
            import_days(app, args.athlete, values, progress=_progress(len(values)))
        )
    return _report(summary, args)
