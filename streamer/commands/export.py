"""``redox-streamer export csv``: an athlete's daily values, sessions or lab entries as CSV.

The daily file's first columns carry intervals.icu's wellness field names (``date``,
``restingHR``, ``hrv`` = RMSSD in ms), so its wellness CSV import maps them; the others are
this tool's own, units in their names. ``docs/export.md`` documents every column.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final

from streamer.config import date_arg, optional_config
from streamer.errors import CliError
from streamer.results import LabPayload, MorningPayload, SessionPayload
from streamer.store import Row, Store, StoreError, default_store_path

DESCRIPTION = """\
Export an athlete's history from the local store as CSV (UTF-8, comma-separated, one
header row, empty cells for values that do not exist).

  daily     one row per morning: date, restingHR, hrv (intervals.icu's wellness fields),
            then lnRMSSD, its baseline and band, the 7-day mean, the reading's quality
  sessions  one row per training session: start and end (UTC), duration, RPE, mean
            power, SmO2 efforts and recovery time, time in HR zone 3, the power plateau
  labs      one row per lab entry (GSH:GSSG, dROMs, lipid dipstick): when taken, timing,
            value, band and what the rules made of it

Columns are documented in docs/export.md; a spreadsheet reads the file as it is, and
intervals.icu's wellness CSV import reads the daily file (use --intervals for a file with
only the three columns it knows).
"""

EPILOG = """\
examples:
  redox-streamer export csv --athlete anna > anna-daily.csv
  redox-streamer export csv --athlete anna --what sessions --from 2026-10-01 --out s.csv
  redox-streamer export csv --athlete anna --intervals --out wellness.csv
  redox-streamer export csv --athlete anna --what labs --out anna-labs.csv
"""

DAILY_COLUMNS: Final = (
    ("date", "date"),
    ("restingHR", "resting_hr_bpm"),
    ("hrv", "rmssd_ms"),
    ("lnRMSSD", "ln_rmssd"),
    ("accepted", "accepted"),
    ("reject_reason", "reject_reason"),
    ("artifacts_pct", "artifacts_pct"),
    ("baseline_status", "baseline_status"),
    ("baseline_days", "baseline_days"),
    ("lnRMSSD_baseline_mean", "ln_rmssd_baseline_mean"),
    ("lnRMSSD_band_low", "ln_rmssd_band_low"),
    ("lnRMSSD_band_high", "ln_rmssd_band_high"),
    ("lnRMSSD_7d_mean", "ln_rmssd_7d_mean"),
    ("lnRMSSD_cv_pct", "ln_rmssd_cv_pct"),
    ("restingHR_baseline_median", "rhr_baseline_median_bpm"),
    ("restingHR_7d_mean", "rhr_7d_mean_bpm"),
)
"""CSV column ← morning payload field; the first three are intervals.icu's wellness names."""

INTERVALS_COLUMNS: Final = 3

SESSION_COLUMNS: Final = (
    ("start_utc", None),
    ("end_utc", None),
    ("duration_s", "duration_s"),
    ("rpe", "rpe"),
    ("mean_power_w", "mean_power_w"),
    ("n_efforts", "n_efforts"),
    ("n_recovered", "n_recovered"),
    ("recovery_s", "recovery_s"),
    ("recovery_is_lower_bound", "recovery_is_lower_bound"),
    ("device", None),
    # Appended after `device` (issue 14), so the earlier columns keep their positions.
    ("hr_zone3_s", "hr_zone3_s"),
    ("power_plateau", "power_plateau"),
    ("power_change_pct", "power_change_pct"),
)
"""CSV column ← session payload field (None: from the row itself)."""

LAB_COLUMNS: Final = (
    ("taken_utc", None),
    ("marker", "marker"),
    ("timing", "timing"),
    ("gsh_gssg_ratio", "gsh_gssg_ratio"),
    ("droms_carr_u", "droms_carr_u"),
    ("positive", "positive"),
    ("band", "band"),
    ("judged", "judged"),
    ("finding", "finding"),
    ("baseline_carr_u", "baseline_carr_u"),
    ("change_pct", "change_pct"),
)
"""CSV column ← lab payload field (None: the row's time, when the sample was taken)."""


def register(subparsers: Any) -> None:
    """Add the ``export`` sub-command and its ``csv`` target."""
    parser = subparsers.add_parser(
        "export",
        help="export an athlete's daily values, sessions or lab entries as CSV",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    targets = parser.add_subparsers(dest="target", metavar="FORMAT", required=True)
    csv_parser = targets.add_parser(
        "csv",
        help="CSV for a spreadsheet or intervals.icu",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    csv_parser.add_argument("--athlete", required=True, help="whose history")
    csv_parser.add_argument(
        "--what", choices=("daily", "sessions", "labs"), default="daily", help="default: daily"
    )
    csv_parser.add_argument("--from", dest="start", type=date_arg, metavar="YYYY-MM-DD")
    csv_parser.add_argument("--to", dest="end", type=date_arg, metavar="YYYY-MM-DD")
    csv_parser.add_argument(
        "--intervals",
        action="store_true",
        help="daily: only date, restingHR and hrv (intervals.icu's wellness fields)",
    )
    csv_parser.add_argument(
        "--out", type=Path, metavar="FILE", help="write here (default: standard output)"
    )
    csv_parser.add_argument("--config", type=Path, metavar="FILE", help="config (its store)")
    csv_parser.add_argument(
        "--store",
        type=Path,
        metavar="PATH",
        help=f"SQLite store (default: the config's, else {default_store_path()})",
    )
    csv_parser.set_defaults(handler=run)


def _store_path(args: argparse.Namespace) -> Path:
    if args.store is not None:
        return Path(args.store).expanduser()
    config = optional_config(args.config)
    return Path(config.store_path if config is not None else default_store_path()).expanduser()


def _cell(value: object) -> str | int | float:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return value
    return str(value)


def _iso(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC).isoformat(timespec="seconds")


def daily_rows(
    rows: Sequence[Row[MorningPayload]], intervals: bool
) -> Iterator[list[str | int | float]]:
    """The header, then one row per morning reading."""
    columns = DAILY_COLUMNS[:INTERVALS_COLUMNS] if intervals else DAILY_COLUMNS
    yield [name for name, _ in columns]
    for row in rows:
        morning = row.payload
        out: list[str | int | float] = []
        for name, key in columns:
            value = getattr(morning, key)
            # A rejected reading's numbers are not believed: intervals.icu gets no value.
            if not morning.accepted and name in ("restingHR", "hrv", "lnRMSSD"):
                value = None
            out.append(_cell(value))
        yield out


def session_rows(rows: Sequence[Row[SessionPayload]]) -> Iterator[list[str | int | float]]:
    """The header, then one row per session."""
    yield [name for name, _ in SESSION_COLUMNS]
    for row in rows:
        session = row.payload
        end = row.ts_ns
        start = end - round(session.duration_s * 1e9) if math.isfinite(session.duration_s) else None
        cells: list[str | int | float] = []
        for name, key in SESSION_COLUMNS:
            if name == "start_utc":
                cells.append(_iso(start) if start is not None else "")
            elif name == "end_utc":
                cells.append(_iso(end))
            elif name == "device":
                cells.append(_cell(row.device))
            else:
                cells.append(_cell(getattr(session, key or "")))
        yield cells


def lab_rows(rows: Sequence[Row[LabPayload]]) -> Iterator[list[str | int | float]]:
    """The header, then one row per lab entry (each marker fills its own value column)."""
    yield [name for name, _ in LAB_COLUMNS]
    for row in rows:
        lab = row.payload
        yield [
            _iso(row.ts_ns) if key is None else _cell(getattr(lab, key)) for _, key in LAB_COLUMNS
        ]


@contextmanager
def _output(out: Path | None) -> Iterator[IO[str]]:
    if out is None:
        yield sys.stdout
        return
    try:
        with out.expanduser().open("w", encoding="utf-8", newline="") as handle:
            yield handle
    except OSError as exc:
        raise CliError(f"--out {out}: cannot write ({exc.strerror}); check the path") from None


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer export csv``."""
    if args.start and args.end and args.start > args.end:
        raise CliError(f"--from {args.start} is after --to {args.end}; swap them")
    store_path = _store_path(args)
    if not store_path.is_file():
        raise CliError(
            f"--store {store_path}: no such store; `run`, `morning` or `import` fill one"
        )
    try:
        with Store(store_path, read_only=True) as store:
            if args.what == "daily":
                mornings = store.morning_history(args.athlete, args.start, args.end)
                table, count = list(daily_rows(mornings, args.intervals)), len(mornings)
            else:
                since = _day_ns(args.start) if args.start else None
                until = _day_ns(args.end + dt.timedelta(days=1)) if args.end else None
                if args.what == "labs":
                    labs = store.lab_entries(args.athlete, since, until)
                    table, count = list(lab_rows(labs)), len(labs)
                else:
                    sessions = store.sessions(args.athlete, since, until)
                    table, count = list(session_rows(sessions)), len(sessions)
    except StoreError as exc:
        raise CliError(f"--store {store_path}: {exc}") from None
    with _output(args.out) as handle:
        csv.writer(handle, lineterminator="\n").writerows(table)
    if args.out is not None:
        print(f"{count} {args.what} rows of {args.athlete}: {args.out}")
    elif count == 0:
        print(f"no {args.what} rows of {args.athlete} in {store_path}", file=sys.stderr)
    return 0


def _day_ns(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()) * 10**9
