"""``redox-streamer report``: an athlete's last weeks from the local store, as PNG or HTML."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from processors.rules import DEFAULT_THRESHOLDS, RuleThresholds
from streamer.config import Config, optional_config
from streamer.errors import CliError
from streamer.report.gather import (
    DEFAULT_DAYS,
    OUTPUT_SUFFIXES,
    ReportError,
    gather_report,
    known_athletes,
    write_report,
)
from streamer.store import Store, StoreError, default_store_path

DESCRIPTION = """\
Draw an athlete's last weeks from the local store (the SQLite file the pipeline writes):

  - morning lnRMSSD with its normal band (baseline mean ± 0.5·SD of days d-35 … d-8)
    and the 7-day mean; readings below the band in red, rejected readings as crosses;
  - morning resting HR with its baseline median and the creep line (median + 5 bpm);
  - SmO2 recovery time per session against the 120-s slow-recovery line;
  - grip drop per test, coloured by class (normal, grip_signal, grip_spillover);
  - every alert, marked where it was raised and as a raised → cleared timeline.

--out FILE.png writes the picture; --out FILE.html a self-contained page (the picture
embedded, the open alerts with their advice, the last readings as tables) that opens
offline in any browser. Dates are UTC; the window ends on the athlete's last day with
data. With a config file (--config, $REDOX_CONFIG or the default one), its store path
and the athlete's rule thresholds (profile and overrides) are used.
"""

EPILOG = """\
examples:
  redox-streamer demo --store demo.sqlite3 --duration 10     make a store to look at
  redox-streamer report --store demo.sqlite3 --athlete athlete1 --out athlete1.png
  redox-streamer report --athlete anna --days 42 --out ~/anna.html
  redox-streamer report --config pi.toml --athlete anna --out anna.png
"""

START_HINT = (
    "record data with `redox-streamer run`, or make a demo store with "
    "`redox-streamer demo --store demo.sqlite3` and pass --store demo.sqlite3"
)


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of days, got {text!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"the report covers at least 1 day, got {days}")
    return days


def register(subparsers: Any) -> None:
    """Add the ``report`` sub-command."""
    parser = subparsers.add_parser(
        "report",
        help="picture of an athlete's last weeks (PNG or HTML) from the local store",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--athlete", metavar="ID", help="athlete id (default: the only athlete in the store)"
    )
    parser.add_argument(
        "--days",
        type=_days,
        default=DEFAULT_DAYS,
        metavar="N",
        help=f"days shown, ending on the last day with data (default {DEFAULT_DAYS})",
    )
    parser.add_argument(
        "--store",
        type=Path,
        metavar="PATH",
        help=f"SQLite store file (default: the config's store.path, else {default_store_path()})",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="config file for the store path and the athlete's rule "
        "thresholds (default: $REDOX_CONFIG or the default file, "
        "if it exists)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="output file: .png (picture) or .html (self-contained page)",
    )
    parser.set_defaults(handler=run)


def _config(args: argparse.Namespace) -> Config | None:
    """The config named by --config (must exist), else the default one if it exists."""
    return optional_config(args.config)


def _thresholds(config: Config | None, athlete: str) -> RuleThresholds:
    if config is None:
        return DEFAULT_THRESHOLDS
    try:
        return config.thresholds_for(athlete)
    except KeyError:
        return DEFAULT_THRESHOLDS  # an athlete of a demo or an old config: default rules


def _check_out(out: Path) -> Path:
    out = out.expanduser()
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise CliError(
            f"--out {out}: write the report as .png (a picture) or .html (a page "
            f"with the picture and tables), not {out.suffix or 'no suffix'!r}"
        )
    if not out.parent.is_dir():
        raise CliError(
            f"--out {out}: the directory {out.parent} does not exist; create it "
            "or choose another path"
        )
    return out


def _choose_athlete(requested: str | None, known: list[str], store: Path) -> str:
    if not known:
        raise CliError(f"the store {store} holds no readings yet: {START_HINT}")
    if requested is None:
        if len(known) == 1:
            return known[0]
        raise CliError(
            f"the store {store} holds {len(known)} athletes ({', '.join(known)}): "
            "choose one with --athlete"
        )
    if requested not in known:
        raise CliError(
            f"--athlete {requested!r}: no readings of that athlete in {store}; "
            f"known athletes: {', '.join(known)}"
        )
    return requested


def run(args: argparse.Namespace) -> int:
    """Gather the athlete's data from the store and write the report file."""
    out = _check_out(args.out)
    config = _config(args)
    store_path = (
        args.store
        if args.store is not None
        else config.store_path
        if config is not None
        else default_store_path()
    )
    store_path = Path(store_path).expanduser()
    if not store_path.is_file():
        # Opening would create an empty store: say where the data should come from instead.
        raise CliError(f"--store {store_path}: no such store file; {START_HINT}")
    try:
        athlete = _choose_athlete(args.athlete, known_athletes(store_path), store_path)
        with Store(store_path, read_only=True) as store:
            data = gather_report(store, athlete, args.days, thresholds=_thresholds(config, athlete))
    except (StoreError, ReportError) as exc:
        raise CliError(f"--store {store_path}: {exc}") from None
    try:
        write_report(data, out)
    except OSError as exc:
        raise CliError(
            f"--out {out}: cannot write the report ({exc.strerror}); check the "
            "path and its permissions"
        ) from None
    print(
        f"report of {athlete}, {data.start.isoformat()} to {data.end.isoformat()} "
        f"({data.days} days, {len(data.open_alerts)} open alerts): {out}"
    )
    return 0
