"""``redox-streamer session start|end``: mark a training session for a running ``run``.

Online (a ``run`` listens: the retained ``<base>/bridge/commands`` says ``online``; or, in
team mode, a gateway's ``<base>/gateway/<id>/state`` does) the command is published on
``<base>/<athlete>/set/session`` and ``run`` — or one team gateway — turns it into the
session markers among the device samples (:mod:`streamer.app.commands_in`). Offline (no
``run``, no broker, or no ``[mqtt]`` in the config) there is no device data to frame, so a
session cannot be started or ended; what works offline is the RPE (``redox-streamer rpe``),
which amends the last stored session. :mod:`streamer.commands.rpe` shares this module.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any, Final

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from streamer.app.commands_in import (
    COMMAND_TTL_S,
    COMMANDS_ONLINE,
    RPE,
    SESSION,
    CommandError,
    SessionCommand,
    check_rpe,
    check_tags,
    command_topic,
    commands_state_topic,
    envelope,
)
from streamer.config import Config, MqttConfig, load_config
from streamer.errors import CliError
from streamer.payloads import BRIDGE_ONLINE
from streamer.sinks.mqtt_connect import (
    MqttTlsError,
    describe_failure,
    mqtt_client,
    probe_topic,
    read_retained,
    tls_context,
)
from streamer.topics import Topics

GATEWAY_ONLINE: Final = b"online"
"""What a team gateway's retained availability topic says while it is up."""

PROBE_TIMEOUT_S: Final = 5.0
"""Longest wait for the broker to tell whether a ``run`` listens."""

DESCRIPTION = """\
Start or end a training session of an athlete in a running `redox-streamer run`: SmO2
efforts and power between start and end make the session, and its summary (recovery
time, mean power, RPE) feeds the session rules. Give the RPE (0-10, CR-10: how hard the
whole session was) at the end, or later with `redox-streamer rpe`.

It reaches `run` over MQTT (the config's [mqtt]: <base>/<athlete>/set/session; it logs in
with the [mqtt.cli] account when the config names one, else [mqtt]'s) — or, in team mode,
any `redox-streamer gateway` online, which puts it into the athlete's stream. Without a
running `run` or gateway there are no device samples to frame: it says so and exits 1 (an RPE
still works offline: `redox-streamer rpe`).
"""

EPILOG = """\
examples:
  redox-streamer session start --athlete anna --tag intervals
  redox-streamer session end --athlete anna --rpe 7
"""


def register(subparsers: Any) -> None:
    """Add the ``session`` sub-command."""
    parser = subparsers.add_parser(
        "session",
        help="start or end a training session in a running `run`",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=("start", "end"), help="start or end the session")
    add_common(parser)
    parser.add_argument(
        "--rpe", type=float, metavar="0-10", help="perceived exertion of the session (CR-10)"
    )
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="WORD",
        help="label the session (repeatable), e.g. --tag intervals",
    )
    parser.set_defaults(handler=run)


def add_common(parser: argparse.ArgumentParser) -> None:
    """``--athlete`` and ``--config``, shared with ``rpe``."""
    parser.add_argument("--athlete", required=True, metavar="ID", help="the athlete's id")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="config file (default: $REDOX_CONFIG or the user config dir)",
    )


def load(args: argparse.Namespace) -> Config:
    """The config, with ``--athlete`` checked against it."""
    config = load_config(args.config)
    known = [a.id for a in config.athletes]
    if args.athlete not in known:
        raise CliError(
            f"--athlete {args.athlete}: not in {config.source} "
            f"(configured: {', '.join(known) or 'none'})"
        )
    return config


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer session``."""
    try:
        command = SessionCommand(
            args.action,
            None if args.rpe is None else check_rpe(args.rpe),
            check_tags(args.tag),
        )
    except CommandError as exc:
        raise CliError(str(exc)) from None
    config = load(args)
    if config.mqtt is None or not asyncio.run(
        send_if_listening(config.mqtt, args.athlete, SESSION, command.payload())
    ):
        where = (
            "no [mqtt] in the config" if config.mqtt is None else "no `run` or team gateway listens"
        )
        print(
            f"redox-streamer session: session {args.action} for {args.athlete} not sent: "
            f"{where} — start `redox-streamer run` (with [mqtt]); an RPE works offline: "
            f"`redox-streamer rpe --athlete {args.athlete} VALUE`",
            file=sys.stderr,
        )
        return 1
    print(f"session {args.action} sent to the running `run` for {args.athlete}")
    return 0


async def send_if_listening(config: MqttConfig, athlete: str, command: str, payload: bytes) -> bool:
    """Publish ``payload`` on the athlete's ``command`` topic if a ``run`` or a team
    gateway listens (QoS 1, not retained); False when none does or the broker cannot be
    reached.

    Logs in with the ``[mqtt.cli]`` account (:meth:`MqttConfig.for_cli`): never ``run``'s
    own, which a broker tying ids to accounts would take from ``run``. A ``run`` listens
    while the retained ``<base>/bridge/commands`` and ``<base>/bridge/state`` both say
    ``online`` (a ``run`` killed says ``offline`` on the second by its Last Will; a
    publisher without a listener clears the first when it connects). In team mode there is
    no bridge: a gateway listens while its retained ``<base>/gateway/<id>/state`` says
    ``online`` (its Last Will says ``offline``), and the broker hands the command to one of
    the gateways online (their shared subscription, :mod:`streamer.team.gateway_mqtt`),
    which puts it into the athlete's stream.

    The payload goes in an :func:`~streamer.app.commands_in.envelope` (an id, so that a copy
    the broker resends is applied once, and the time sent, so that a command older than
    :data:`~streamer.app.commands_in.COMMAND_TTL_S` is not applied). The broker
    acknowledges it once it holds it: a ``run`` reconnecting at that moment gets it from
    its persistent session when it is back. Under MQTT 5 the message also expires in the
    broker after ``COMMAND_TTL_S``.
    """
    topics = Topics(config.base_topic, config.ha_prefix)
    online = {commands_state_topic(topics): COMMANDS_ONLINE, topics.bridge_state: BRIDGE_ONLINE}
    gateways = gateway_states_filter(topics.base)
    cli = config.for_cli()
    try:
        tls = await asyncio.to_thread(tls_context, cli)
        client = mqtt_client(cli, tls=tls, timeout_s=PROBE_TIMEOUT_S)
        async with asyncio.timeout(PROBE_TIMEOUT_S), client:
            probe = probe_topic(topics.base, "cli")
            retained = await read_retained(client, [*online, gateways], probe)
            said = {str(m.topic): m.payload for m in retained}
            run_listens = all(said.get(topic) == state for topic, state in online.items())
            gateway_listens = any(
                m.topic.matches(gateways) and m.payload == GATEWAY_ONLINE for m in retained
            )
            listening = run_listens or gateway_listens
            if listening:
                await client.publish(
                    command_topic(topics, athlete, command),
                    envelope(payload),
                    qos=1,
                    properties=_expiring() if cli.protocol == "5" else None,
                )
            return listening
    except (aiomqtt.MqttError, OSError, TimeoutError, MqttTlsError) as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else describe_failure(cli, exc)
        who = cli.username or "(anonymous)"
        print(f"MQTT {cli.url} as {who}: {reason}: working offline", file=sys.stderr)
        return False


def gateway_states_filter(base: str) -> str:
    """``<base>/gateway/+/state``: every team gateway's availability topic (the one
    :func:`streamer.team.gateway.availability_topic` names; not imported from there, which
    would load nats-py into every CLI command)."""
    return f"{base}/gateway/+/state"


def publish_rpe(config: MqttConfig, athlete: str, rpe: float) -> bool:
    """Send an RPE to a listening ``run``; False when none listens."""
    return asyncio.run(send_if_listening(config, athlete, RPE, f"{rpe:g}".encode()))


def _expiring() -> Properties:
    """MQTT 5 PUBLISH properties: the broker drops the command after ``COMMAND_TTL_S``."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.MessageExpiryInterval = COMMAND_TTL_S
    return props
