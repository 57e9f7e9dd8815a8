"""``redox-streamer migrate``: single-box SQLite stores → the team's PostgreSQL store.

The work is in :mod:`streamer.team.migrate`; this module parses the flags and prints what
was written.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from streamer.config import Config, load_config
from streamer.errors import CliError

DESCRIPTION = """\
Merge the SQLite stores of single-box installations (`run`) into the team's PostgreSQL
store: mornings by athlete and date, sessions, grip tests and alert events once each,
every topic's seq above every store's, and each athlete's alert book and baselines
recomputed by replaying the merged history through the rules, and what each store had
not yet delivered (its MQTT and InfluxDB outboxes) queued in the outboxes of the athletes'
partitions, for the workers to deliver. Run it before the first worker starts (or with the
workers stopped); it can be run again (rows are merged, not doubled; no queued message is
moved twice).
"""


def register(subparsers: Any) -> None:
    """Add the ``migrate`` sub-command."""
    parser = subparsers.add_parser(
        "migrate",
        help="team mode: merge single-box stores into PostgreSQL",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--postgres", required=True, metavar="DSN", help="postgresql://user[:pw]@host[:port]/db"
    )
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="athletes' profiles and rules (recomputing)"
    )
    parser.add_argument("stores", nargs="+", type=Path, metavar="STORE", help="SQLite stores")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer migrate``."""
    from streamer.team import wire
    from streamer.team.migrate import migrate

    for path in args.stores:
        if not path.is_file():
            raise CliError(f"{path}: no such store file; give the path of a `run` store")
    config = load_config(args.config) if args.config is not None else Config()
    report = migrate(args.postgres, args.stores, config, wire.DEFAULT_PARTITIONS)
    rows = ", ".join(f"{n} {table}" for table, n in report.rows.items())
    print(
        f"merged {len(args.stores)} store(s): {report.athletes} athletes ({rows}); "
        f"{report.topics} topics' seq raised; {report.open_alerts} open alerts recomputed; "
        f"undelivered messages queued: {report.outbox.get('mqtt', 0)} MQTT, "
        f"{report.outbox.get('influx', 0)} InfluxDB"
    )
    return 0
