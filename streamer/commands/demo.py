"""``redox-streamer demo``: emulated athletes and devices through the production path.

1. A store (a temporary directory unless ``--store``), an MQTT broker (an embedded one on
   loopback unless ``--mqtt``), optionally InfluxDB.
2. ``--days`` days of history per athlete replayed fast through the real pipeline,
   processors and sinks (:mod:`streamer.demo.history`): baselines, trends and every kind of
   pull-back alert exist before the live part starts. Days already in the store are
   skipped, so a demo restarted on the same ``--store`` resumes.
3. A live session: per athlete an emulated chest strap, Moxy and power meter (Bumble GATT
   servers on a virtual link) read by the production drivers through bleak, running
   ``--speed`` times faster than real time, for ``--duration`` seconds or until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from devices.emulated import EmulatedWorld
from streamer.app.assembly import App, serving_broker
from streamer.app.live_view import LiveView, ViewModel
from streamer.app.pipeline import Pipeline
from streamer.app.runtime import SpeedClock, emulated_athlete_devices, run_for, running
from streamer.athlete import SessionStart
from streamer.config import AthleteConfig, Config, InfluxConfig, MqttConfig, Secret
from streamer.demo.history import (
    DEFAULT_DAYS,
    MIN_DAYS_FOR_TRENDS,
    POWER,
    HistoryProgress,
    athlete_ids,
    history_dates,
    replay_history,
    scenarios,
)
from streamer.errors import CliError
from streamer.store import Store, StoreError
from streamer.store_lock import hold_store

DEFAULT_ATHLETES = 2
DEFAULT_SPEED = 10.0
HISTORY_HRV_EVERY_S = 60.0
LIVE_HRV_EVERY_S = 5.0

DESCRIPTION = """\
Zero set-up demonstration: emulated athletes wearing emulated devices, through the same
code as real hardware (emulated GATT peripherals -> Bumble -> bleak -> drivers -> codecs ->
pipeline -> processors -> MQTT / InfluxDB / local store).

First --days days of history are replayed fast (mornings, sessions, grip tests), so
baselines, trends and alerts exist: the first athlete over-reaches in the last week and
raises every kind of pull-back alert; the second stays steady. Then a live session runs at
--speed times real time for --duration seconds (default: until Ctrl-C).

Without --mqtt an embedded MQTT broker (MQTT 3.1.1) starts on 127.0.0.1 and its address
is printed, so you can watch the traffic with mosquitto_sub.
"""

EPILOG = """\
examples:
  redox-streamer demo                                  until Ctrl-C, embedded broker
  redox-streamer demo --duration 30 --speed 20         30 s of live session at 20x
  redox-streamer demo --mqtt mqtt://127.0.0.1:1883     publish to your mosquitto
  redox-streamer demo --influx-url http://127.0.0.1:8086 --influx-db redox
  redox-streamer demo --store ./demo.sqlite3           keep the store; re-run resumes

watch it:
  mosquitto_sub -h 127.0.0.1 -p PORT -V mqttv311 -t 'redox/#' -v
"""


def register(subparsers: Any) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="emulated athletes and devices end to end, no hardware, no servers",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--athletes",
        type=int,
        default=DEFAULT_ATHLETES,
        metavar="N",
        help=f"emulated athletes (default {DEFAULT_ATHLETES})",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=DEFAULT_DAYS,
        metavar="D",
        help=f"days of history replayed first (default {DEFAULT_DAYS}; "
        f"trends and their alerts need >= {MIN_DAYS_FOR_TRENDS})",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="seconds of live session (default: until Ctrl-C)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=DEFAULT_SPEED,
        metavar="X",
        help=f"emulated seconds per real second (default {DEFAULT_SPEED:g})",
    )
    parser.add_argument(
        "--mqtt",
        metavar="URL",
        help="broker URL, mqtt://[user:pass@]host[:port] or mqtts://…; "
        "default: an embedded broker on 127.0.0.1",
    )
    influx = parser.add_argument_group("InfluxDB (optional)")
    influx.add_argument("--influx-url", metavar="URL", help="e.g. http://127.0.0.1:8086")
    influx.add_argument("--influx-db", metavar="DB", help="database (v1 API, /write)")
    influx.add_argument("--influx-bucket", metavar="B", help="bucket (v2 API)")
    influx.add_argument("--influx-org", metavar="O", help="organisation (v2 API)")
    influx.add_argument("--influx-token", metavar="T", help="token (v2 API)")
    parser.add_argument(
        "--store",
        type=Path,
        metavar="PATH",
        help="SQLite store file (default: a new temporary directory)",
    )
    parser.add_argument(
        "--plain", action="store_true", help="plain periodic lines instead of the live table"
    )
    parser.set_defaults(handler=run)


def _check(args: argparse.Namespace) -> None:
    if not 1 <= args.athletes <= 200:
        raise CliError(f"--athletes {args.athletes}: give 1 to 200 athletes")
    if not 0 <= args.days <= 365:
        raise CliError(f"--days {args.days}: give 0 to 365 days of history")
    if args.duration is not None and not args.duration > 0:
        raise CliError(
            f"--duration {args.duration:g}: give a number of seconds > 0, "
            "or leave it out to run until Ctrl-C"
        )
    if not 0.1 <= args.speed <= 1000:
        raise CliError(f"--speed {args.speed:g}: give 0.1 to 1000 (emulated s per real s)")
    if args.influx_url is None and any(
        (args.influx_db, args.influx_bucket, args.influx_org, args.influx_token)
    ):
        raise CliError(
            "--influx-db/--influx-bucket/--influx-org/--influx-token need --influx-url URL"
        )


def influx_config(args: argparse.Namespace) -> InfluxConfig | None:
    """The InfluxDB the flags name, or None."""
    if args.influx_url is None:
        return None
    v2 = any((args.influx_bucket, args.influx_org, args.influx_token))
    if v2 and not (args.influx_bucket and args.influx_org and args.influx_token):
        raise CliError(
            "the InfluxDB v2 API needs all of --influx-bucket, --influx-org and "
            "--influx-token (or use --influx-db DB for the v1 API)"
        )
    if v2 and args.influx_db:
        raise CliError(
            "give --influx-db (v1 API) or --influx-bucket/--influx-org/"
            "--influx-token (v2 API), not both"
        )
    if not v2 and not args.influx_db:
        raise CliError(
            "--influx-url needs --influx-db DB (v1 API) or --influx-bucket B "
            "--influx-org O --influx-token T (v2 API)"
        )
    # Credentials in the URL (http://user:pw@host) become the v1 API's user and password.
    try:
        if v2:
            return InfluxConfig.from_url(
                args.influx_url,
                api="v2",
                org=args.influx_org,
                bucket=args.influx_bucket,
                token=Secret(args.influx_token),
            )
        return InfluxConfig.from_url(
            args.influx_url, api="v1", db=args.influx_db, create_database=True
        )
    except ValueError as exc:
        raise CliError(f"--influx-url: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer demo``."""
    _check(args)
    mqtt_config: MqttConfig | None = None
    if args.mqtt:
        try:
            mqtt_config = MqttConfig.from_url(args.mqtt)
        except ValueError as exc:
            raise CliError(f"--mqtt: {exc}") from None
    with contextlib.ExitStack() as stack:
        if args.store is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="redox-demo-")))
            store_path = directory / "redox.sqlite3"
            note = f"store: {store_path} (temporary; pass --store PATH to keep it)"
        else:
            store_path = args.store
            note = f"store: {store_path}"
        print(note, flush=True)
        stack.enter_context(hold_store(store_path, "demo"))
        try:
            store = stack.enter_context(Store(store_path))
        except StoreError as exc:
            raise CliError(f"--store: {exc}") from None
        influx = influx_config(args)
        if influx is not None:
            print(f"InfluxDB: {influx.url}", flush=True)  # never the URL's password
        ids = athlete_ids(args.athletes)
        config = Config(
            athletes=tuple(AthleteConfig(id=a, name=a) for a in ids),
            mqtt=mqtt_config,
            influx=influx,
            store_path=store_path,
        )
        return asyncio.run(_demo(args, config, store))


async def _demo(args: argparse.Namespace, config: Config, store: Store) -> int:
    async with contextlib.AsyncExitStack() as stack:
        notes: list[str] = []
        config, broker = await stack.enter_async_context(serving_broker(config))
        if broker is not None:
            print(
                f"embedded MQTT broker (MQTT 3.1.1) on {broker.address.host}:"
                f"{broker.address.port}; watch it with:\n  {broker.address.watch_command()}",
                flush=True,
            )
            notes.append(f"watch: {broker.address.watch_command()}")
        else:
            assert config.mqtt is not None
            print(f"MQTT broker: {config.mqtt.url}", flush=True)
        ids = [a.id for a in config.athletes]
        # History is replayed without live samples, in coarser HRV windows.
        app = App.from_config(config, store=store, live=False, hrv_every_s=HISTORY_HRV_EVERY_S)
        states = app.states
        pipeline = app.pipeline(ids)
        progress = HistoryProgress(total_days=len(ids) * args.days)
        model = ViewModel(
            title=f"redox-streamer demo — {len(ids)} athletes, {args.days} days of history, "
            f"live at {args.speed:g}x",
            pipeline_status=pipeline.status,
            snapshots={a: states[a].snapshot for a in ids},
            history=progress,
            notes=notes,
            phase="replaying history",
        )
        view = LiveView(model, force_plain=args.plain)
        async with running(pipeline, view) as pipeline_task:
            if args.days:
                done = {a: {r.date for r in store.morning_history(a)} for a in ids}
                await replay_history(
                    pipeline.put,
                    scenarios(len(ids), args.days),
                    history_dates(args.days),
                    progress=progress,
                    skip=lambda a, d: d.isoformat() in done[a],
                )
                await pipeline.join()
            if not pipeline.stopping:
                for state in states.values():
                    state.live = True
                    state.hrv_every_s = LIVE_HRV_EVERY_S
                world = await stack.enter_async_context(EmulatedWorld())
                clock = SpeedClock(args.speed)
                for index, athlete in enumerate(ids):
                    devices = await emulated_athlete_devices(
                        world, pipeline, athlete, index=index, speed=args.speed, clock=clock
                    )
                    model.devices[athlete] = [(d.device_id, d.driver) for d in devices]  # type: ignore[index]
                    pipeline.offer(athlete, POWER, SessionStart(clock.now_ns()))
                model.phase = f"live session at {args.speed:g}x"
                await run_for(pipeline, args.duration)
            model.phase = "stopping: flushing to the sinks"
            pipeline.stop()
            await pipeline_task
    _summary(pipeline, store, ids, temporary=args.store is None)
    return 0


def _summary(pipeline: Pipeline, store: Store, ids: list[str], *, temporary: bool) -> None:
    status = pipeline.status()
    raised = [a for a in store.alerts() if a.state == "raised"]
    by_rule: dict[str, int] = {}
    for alert in raised:
        by_rule[alert.rule] = by_rule.get(alert.rule, 0) + 1
    print("summary:")
    print(f"  results stored: {status.durable}; samples shed: {status.shed_total}")
    print(
        "  alerts raised: " + (", ".join(f"{r} x{n}" for r, n in sorted(by_rule.items())) or "none")
    )
    for name, sink in status.sink_status.items():
        depth = sink.get("outbox_depth")
        if depth is not None:
            print(f"  {name}: {depth} messages left in the outbox (delivered at next start)")
    # The next thing an athlete wants is the picture of those weeks; the default store is a
    # temporary directory, gone when the demo ends.
    if temporary:
        print(
            "next: keep the history with --store demo.sqlite3, then `redox-streamer report "
            f"--store demo.sqlite3 --athlete {ids[0]} --out weeks.png` draws it"
        )
    else:
        print(
            f"next: `redox-streamer report --store {store.path} --athlete {ids[0]} "
            "--out weeks.png` draws these weeks"
        )
    sys.stdout.flush()
