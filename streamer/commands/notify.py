"""``redox-streamer notify``: alerts on MQTT → desktop pop-ups, a command, or a webhook."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import urllib.parse
from pathlib import Path
from typing import Any

import platformdirs

from streamer.config import ConfigError, MqttConfig, Secret, load_config
from streamer.errors import CliError, note_stop_signal
from streamer.notify.channels import (
    Channel,
    CommandChannel,
    DesktopChannel,
    WebhookChannel,
    parse_headers,
)
from streamer.notify.model import SEVERITY_RANK
from streamer.notify.notifier import (
    DEFAULT_MIN_SEVERITY,
    Notifier,
    SeenStore,
    default_client_id,
    run_notifier,
)
from streamer.store_lock import hold_store

DESCRIPTION = """\
Subscribe to <base>/+/alerts (QoS 1, persistent session) and turn every newly raised
alert at least as severe as --min-severity (default: warning and pull_back) into a
notification, with its advice text: a desktop pop-up, a command of yours, and/or an HTTP
webhook (ntfy-style). Each alert is notified ONCE per channel,
even across restarts and reconnects: what was delivered is kept in a small state file.
A delivery that fails is retried the next time the alert is seen.

The broker comes from --mqtt, else from the [mqtt] section of the config file. With the
shipped mosquitto ACL (deploy/mosquitto/acl) log in as user redox-notify, which may read
alerts but publish nothing. The password may come from REDOX_MQTT_PASSWORD instead of
the command line (where other users could see it in `ps`).

--exec CMD runs CMD with /bin/sh for each notification: the alert as one JSON object on
standard input, and REDOX_ATHLETE, REDOX_RULE, REDOX_SEVERITY, REDOX_STATE, REDOX_TITLE,
REDOX_MESSAGE, REDOX_ADVICE, REDOX_SOURCE, REDOX_RAISED_TS_NS, REDOX_CLEARED_TS_NS,
REDOX_VOLUME_CUT_UNTIL, REDOX_CLEAR_REASON (`resume`: the signals are back in band),
REDOX_TOPIC in its environment. A non-zero exit status counts as not delivered.

--webhook URL POSTs the message and advice as plain UTF-8 text with headers Title,
Priority (1-5: 4 for a raised pull_back, 3 warning, 2 info or cleared) and Tags (emoji
short code, rule id, athlete): the format of ntfy (https://ntfy.sh), so
--webhook https://ntfy.sh/<your-topic> reaches the ntfy phone app. Any 2xx is success.
"""

EPILOG = """\
examples:
  redox-streamer notify --mqtt mqtt://redox-notify@pi.local --desktop
  REDOX_MQTT_PASSWORD=... redox-streamer notify --mqtt mqtt://redox-notify@pi.local \\
      --webhook https://ntfy.sh/my-team-alerts
  redox-streamer notify --mqtt mqtt://127.0.0.1:1883 --cleared \\
      --exec 'jq -r .title >> ~/alerts.log'
  redox-streamer notify --webhook https://ntfy.example.org/redox \\
      --webhook-header 'Authorization: Bearer tk_...'      (broker from the config file)
"""

_LOGGER = logging.getLogger("streamer.notify.notifier")


def register(subparsers: Any) -> None:
    """Add the ``notify`` sub-command."""
    parser = subparsers.add_parser(
        "notify",
        help="turn alerts on MQTT into desktop, command or webhook notifications",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    broker = parser.add_argument_group("broker")
    broker.add_argument(
        "--mqtt",
        metavar="URL",
        help="mqtt[s]://[user[:password]@]host[:port] (default: the config file's [mqtt] url)",
    )
    broker.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        help="config file to take [mqtt] from when --mqtt is not given",
    )
    broker.add_argument(
        "--username", help="MQTT user (default: from the URL, REDOX_MQTT_USERNAME or the config)"
    )
    broker.add_argument("--password", help="MQTT password (better: REDOX_MQTT_PASSWORD)")
    broker.add_argument(
        "--base",
        metavar="TOPIC",
        help="base topic the streamer publishes under (default: the config's, else 'redox')",
    )
    broker.add_argument(
        "--client-id",
        metavar="ID",
        help="MQTT client id of the persistent session (default: derived "
        "from the host name and the state file; a broker that ties ids to accounts, like "
        "the shipped mosquitto, uses the user name instead)",
    )
    where = parser.add_argument_group("where notifications go (at least one)")
    where.add_argument(
        "--desktop",
        action="store_true",
        help="desktop pop-up via notify-send (printed when it is missing)",
    )
    where.add_argument(
        "--exec",
        dest="exec_cmd",
        metavar="CMD",
        help="run CMD per notification: JSON on stdin, REDOX_* variables",
    )
    where.add_argument(
        "--webhook", metavar="URL", help="POST each notification to URL (ntfy format)"
    )
    where.add_argument(
        "--webhook-header",
        metavar="'NAME: VALUE'",
        action="append",
        default=[],
        help="extra HTTP header for --webhook (repeatable), e.g. 'Authorization: Bearer tk_...'",
    )
    what = parser.add_argument_group("what and how")
    what.add_argument(
        "--min-severity",
        choices=tuple(SEVERITY_RANK),
        default=DEFAULT_MIN_SEVERITY,
        help="notify alerts at least this severe (default: %(default)s; info findings such "
        "as grip_signal ask for no change)",
    )
    what.add_argument("--cleared", action="store_true", help="also notify when an alert clears")
    what.add_argument(
        "--state",
        metavar="FILE",
        type=Path,
        default=default_state_path(),
        help="where delivered alerts are remembered (default: %(default)s)",
    )
    what.add_argument(
        "-q", "--quiet", action="store_true", help="log only problems, not each notification"
    )
    parser.set_defaults(handler=run)


def default_state_path() -> Path:
    """``<user state dir>/redox-streamer/notify-state.json`` (platformdirs)."""
    return platformdirs.user_state_path("redox-streamer") / "notify-state.json"


def _mqtt_config(args: argparse.Namespace) -> MqttConfig:
    if args.mqtt:
        try:
            mqtt = MqttConfig.from_url(args.mqtt)
        except ValueError as exc:
            raise CliError(f"--mqtt: {exc}") from None
    else:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            raise CliError(f"no --mqtt given and the config file cannot be used: {exc}") from None
        if config.mqtt is None:
            raise CliError(
                "no --mqtt given and the config file has no [mqtt] section: pass "
                "--mqtt mqtt://host:1883"
            )
        mqtt = config.mqtt
    username = args.username or mqtt.username or os.environ.get("REDOX_MQTT_USERNAME")
    password = args.password or os.environ.get("REDOX_MQTT_PASSWORD")
    overrides: dict[str, Any] = {"username": username or None}
    if password:
        overrides["password"] = Secret(password)
    if args.base:
        overrides["base_topic"] = args.base
    return dataclasses.replace(mqtt, **overrides)


def _channels(args: argparse.Namespace) -> list[Channel]:
    channels: list[Channel] = []
    if args.desktop:
        channels.append(DesktopChannel())
    if args.exec_cmd:
        channels.append(CommandChannel(args.exec_cmd))
    if args.webhook:
        url = urllib.parse.urlsplit(args.webhook)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise CliError(
                f"--webhook {args.webhook!r} is not an http(s):// URL, e.g. "
                "https://ntfy.sh/my-alerts"
            )
        try:
            headers = parse_headers(args.webhook_header)
        except ValueError as exc:
            raise CliError(
                f"--webhook-header: {exc}, e.g. 'Authorization: Bearer tk_...'"
            ) from None
        channels.append(WebhookChannel(args.webhook, headers))
    elif args.webhook_header:
        raise CliError("--webhook-header needs --webhook URL")
    if not channels:
        raise CliError("say where notifications go: --desktop, --exec CMD and/or --webhook URL")
    return channels


def run(args: argparse.Namespace) -> int:
    """Run the notifier until SIGINT/SIGTERM; the CLI then exits 128 + the signal (130,
    143), as every long-running command does."""
    mqtt = _mqtt_config(args)
    channels = _channels(args)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s notify: %(message)s",
        datefmt="%H:%M:%S",
    )
    with hold_store(args.state, "notify"):
        seen = SeenStore(args.state)
        notifier = Notifier(
            channels, seen, include_cleared=args.cleared, min_severity=args.min_severity
        )
        client_id = args.client_id or default_client_id(args.state)
        asyncio.run(_main(mqtt, notifier, client_id))
    stats = notifier.stats
    _LOGGER.info(
        "stopped: %d delivered, %d failed, %d already delivered",
        stats.delivered,
        stats.failed,
        stats.duplicates,
    )
    return 0


async def _main(mqtt: MqttConfig, notifier: Notifier, client_id: str) -> None:
    task = asyncio.create_task(run_notifier(mqtt, notifier, client_id=client_id))
    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        note_stop_signal(sig)  # the CLI exits 128 + sig once the notifier has stopped
        task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    with contextlib.suppress(asyncio.CancelledError):
        await task
