"""``redox-streamer store``: check the local store, or salvage a damaged one.

``check`` vets the files and runs SQLite's full ``integrity_check`` on a read-only
connection (the store is not written, its WAL not replayed into it). ``salvage`` moves a
damaged store aside and builds a new one from what is readable in it; ``run`` and the
other commands refuse a damaged store and name this command.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from streamer.config import ConfigError, load_config, resolve_config_path
from streamer.errors import CliError
from streamer.store import (
    Store,
    check_store_file,
    default_store_path,
    salvage_hint,
    salvage_store,
)

DESCRIPTION = """\
The local store is one SQLite file (history, alert state, sequence numbers, the sinks'
outboxes). Without PATH it is the config's [store] path (--config, $REDOX_CONFIG or the
user config file), else the default place.

  check     is it sound? Vets the files and runs SQLite's integrity_check read-only.
            Exit status 0 when sound, 1 when damaged.
  salvage   move a damaged store aside (<name>.damaged-<UTC time>, with its -wal) and
            build a new one at PATH from every row still readable; each topic's seq then
            starts above the clock, so no consumer drops what follows. Refuses a sound
            store unless --force.
Stop `redox-streamer run` first: it holds the store open.
"""

EPILOG = """\
examples:
  redox-streamer store check
  redox-streamer store check ~/.local/share/redox-streamer/redox.sqlite3
  redox-streamer store salvage ~/.local/share/redox-streamer/redox.sqlite3
"""


def register(subparsers: Any) -> None:
    """Add the ``store`` sub-command with ``check`` and ``salvage``."""
    parser = subparsers.add_parser(
        "store",
        help="check the local store, or salvage a damaged one",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="store_action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="vet the store files and run SQLite's integrity check (read-only)",
        description="Vet the store files and run SQLite's integrity_check read-only; exit "
        "status 0 when sound, 1 when damaged.",
    )
    salvage = actions.add_parser(
        "salvage",
        help="move a damaged store aside and keep what is readable in a new one",
        description="Move a damaged store aside and build a new one from what is readable.",
    )
    salvage.add_argument(
        "--force", action="store_true", help="salvage even a store that checks sound"
    )
    for action, handler in ((check, _check), (salvage, _salvage)):
        action.add_argument("path", nargs="?", type=Path, metavar="PATH", help="the store file")
        action.add_argument(
            "--config", type=Path, metavar="FILE", help="take the store path from this config"
        )
        action.set_defaults(handler=handler)


def store_path(path: Path | None, config: Path | None) -> Path:
    """PATH as given, else the config's store path, else the default store path."""
    if path is not None:
        return path.expanduser()
    file = resolve_config_path(config)
    if config is None and not file.exists():
        return default_store_path()
    try:
        return load_config(file).store_path
    except ConfigError as exc:
        raise CliError(f"{exc}; or give the store file as PATH") from None


def _check(args: argparse.Namespace) -> int:
    path = store_path(args.path, args.config)
    found = check_store_file(path)
    if found.problems:
        more = f" (+{len(found.problems) - 1} more)" if len(found.problems) > 1 else ""
        print(f"DAMAGED {path}: {found.problems[0]}{more}")
        print(f"  → {salvage_hint(path)}")
        return 1
    outboxes = ", ".join(f"{k} {v}" for k, v in (found.outboxes or {}).items()) or "none"
    print(
        f"OK {path}: sound (integrity_check), schema {found.schema_version}, "
        f"{found.topics} topics numbered, waiting in outboxes: {outboxes}"
    )
    return 0


def _salvage(args: argparse.Namespace) -> int:
    path = store_path(args.path, args.config)
    if not args.force:
        found = check_store_file(path)
        if not found.problems:
            raise CliError(
                f"the store {path} is sound: nothing to salvage (add --force to rebuild it anyway)"
            )
    result = salvage_store(path)
    print(f"moved the damaged store to {result.moved_to}")
    kept = ", ".join(f"{table} {n}" for table, n in sorted(result.kept.items()) if n) or "none"
    print(f"new store {path}: rows kept: {kept}")
    for what in result.unreadable:
        print(f"  unreadable: {what}")
    print(
        f"seq: {result.reseeded} topics continue above the clock "
        "(consumers that drop a seq not greater than the last lose nothing)"
    )
    Store(path).close()  # the new store opens: files vetted, quick_check passed
    return 0
