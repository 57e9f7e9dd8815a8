"""``redox-streamer config``: write a commented example config, or check one."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from streamer.config import (
    ENV_CONFIG,
    ENV_SECRETS,
    EXAMPLE_CONFIG,
    Config,
    load_config,
    resolve_config_path,
    summary,
)
from streamer.errors import CliError
from streamer.store_lock import write_private

DESCRIPTION = f"""\
The configuration is one TOML file: athletes and their devices, MQTT, InfluxDB, rule
thresholds, where the local store lives. Without a --path the file is ${ENV_CONFIG} if
set, else {resolve_config_path(env={})}.

  init    write a commented example (refuses to overwrite without --force)
  check   validate it and print a summary, secrets masked; every problem names its key
          and the fix. Exit status 0 when valid, 2 when not.

Secrets may be kept out of the file, in the environment:
  {", ".join(sorted(ENV_SECRETS.values()))}
"""

EPILOG = """\
examples:
  redox-streamer config init                       example at the default place
  redox-streamer config init --path ./redox.toml   somewhere else
  redox-streamer config check --path ./redox.toml
  REDOX_MQTT_PASSWORD=s3cret redox-streamer config check
"""


def register(subparsers: Any) -> None:
    """Add the ``config`` sub-command with ``init`` and ``check``."""
    parser = subparsers.add_parser(
        "config",
        help="write an example config file, or check one",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    init = actions.add_parser(
        "init",
        help="write a commented example config",
        description="Write a commented example config file (TOML) to edit.",
        epilog="example:\n  redox-streamer config init --path ./redox.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("--path", type=Path, help="where to write it (default: see `config -h`)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(handler=_init)
    check = actions.add_parser(
        "check",
        help="validate a config file and print a summary (secrets masked)",
        description="Validate a config file; list every problem with its fix, or print a "
        "summary with secrets masked.",
        epilog="example:\n  redox-streamer config check --path ./redox.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("--path", type=Path, help="the file to check (default: see `config -h`)")
    check.add_argument(
        "--registry",
        type=Path,
        metavar="FILE",
        help="paired-devices registry to list (default: the user config dir)",
    )
    check.set_defaults(handler=_check)


def _init(args: argparse.Namespace) -> int:
    path = resolve_config_path(args.path)
    if path.exists() and not args.force:
        raise CliError(f"{path} exists; add --force to overwrite it, or --path to write elsewhere")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, EXAMPLE_CONFIG)  # 0600: it will hold passwords and athletes
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}; choose another --path") from exc
    option = "" if args.path is None else f" --config {path}"
    print(
        f"wrote {path}\nedit it (MQTT, InfluxDB, athletes), then, in order:\n"
        f"  redox-streamer config check{'' if args.path is None else f' --path {path}'}\n"
        "  redox-streamer scan                                   your devices in range\n"
        f"  redox-streamer pair add --athlete alice --kind strap{option}\n"
        f"  redox-streamer doctor{option}\n"
        f"  redox-streamer run{option}"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    config = load_config(args.path)  # a ConfigError is a CliError: printed, exit 2
    print(f"{config.source}: valid")
    for line in summary(config):
        print(f"  {line}")
    for line in _paired(config, args.registry):
        print(f"  {line}")
    return 0


def _paired(config: Config, registry_path: Path | None) -> list[str]:
    """What `run` streams besides the config's devices: the paired ones of its athletes."""
    from devices.registry import DeviceRegistry, RegistryError

    try:
        registry = DeviceRegistry.load(registry_path)
    except RegistryError as exc:
        return [f"paired devices: {exc}"]
    lines = []
    for athlete in config.athletes:
        paired = [d for d in registry if d.athlete == athlete.id]
        if paired:
            items = ", ".join(f"{d.kind.value} {d.address}" for d in paired)
            lines.append(f"paired to {athlete.id} ({registry.path}): {items}")
        elif not athlete.devices:
            lines.append(
                f"{athlete.id} has no devices yet: `redox-streamer pair add --athlete "
                f"{athlete.id} --kind strap` (see `redox-streamer scan`)"
            )
    return lines
