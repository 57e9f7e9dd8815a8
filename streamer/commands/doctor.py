"""``redox-streamer doctor``: is everything the streamer needs in place?

Checks, each printed as one line with what to do when it fails:

* the config file is valid (and what it asks for);
* a Bluetooth adapter exists (``/sys/class/bluetooth``, else a 1-s bleak scan) — needed
  when athletes have devices;
* the MQTT broker accepts a connection (when configured or given with ``--mqtt``);
* InfluxDB answers ``/ping`` (when configured or given with ``--influx-url``);
* the local store opens.

Exit status 0 when everything needed is fine, 1 when something needed fails.
"""

from __future__ import annotations

import argparse
import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from streamer.config import (
    Config,
    ConfigError,
    InfluxConfig,
    MqttConfig,
    load_config,
    resolve_config_path,
)
from streamer.errors import CliError
from streamer.sinks import influx, mqtt
from streamer.sinks.mqtt_connect import (
    MqttTlsError,
    describe_failure,
    mqtt_client,
    process_client_id,
    tls_context,
)
from streamer.sinks.outbox import Outbox
from streamer.store import Store, StoreError
from streamer.store_lock import holder

BLUETOOTH_SYSFS = Path("/sys/class/bluetooth")
CHECK_TIMEOUT_S = 3.0

DESCRIPTION = """\
Check what redox-streamer needs: a valid config file, a Bluetooth adapter, the MQTT broker,
InfluxDB and the local store. Each line says OK, FAIL or SKIP, and after a FAIL what to do.
Exits 1 when something needed fails.
"""

EPILOG = """\
examples:
  redox-streamer doctor                            the default config file
  redox-streamer doctor --config ~/redox.toml
  redox-streamer doctor --mqtt mqtt://127.0.0.1:1883 --influx-url http://127.0.0.1:8086
"""


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome: ``ok`` True/False, or None when skipped (not needed)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""
    needed: bool = True

    def line(self) -> str:
        """``OK    name: detail`` (with ``→ fix`` after a failure or a warning)."""
        # A failure that only matters for later (no config yet) warns instead of failing.
        mark = "SKIP" if self.ok is None else "OK" if self.ok else "FAIL" if self.needed else "WARN"
        text = f"{mark:<5} {self.name}: {self.detail}"
        if self.ok is False and self.fix:
            text += f"\n      → {self.fix}"
        return text


def register(subparsers: Any) -> None:
    """Add the ``doctor`` sub-command."""
    parser = subparsers.add_parser(
        "doctor",
        help="check Bluetooth, broker, InfluxDB, config and store",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="config file (default: $REDOX_CONFIG or the user config dir)",
    )
    parser.add_argument("--mqtt", metavar="URL", help="check this broker instead")
    parser.add_argument("--influx-url", metavar="URL", help="check this InfluxDB instead")
    parser.add_argument(
        "--no-bluetooth", action="store_true", help="do not look for a Bluetooth adapter"
    )
    parser.set_defaults(handler=run)


def check_config(path: Path | None) -> tuple[Check, Config | None]:
    """Load and validate the config file."""
    file = resolve_config_path(path)
    try:
        config = load_config(file)
    except ConfigError as exc:
        missing = not file.exists()
        detail = f"no config file at {file} (the demo needs none)" if missing else str(exc)
        return (
            Check(
                "config",
                False,
                detail,
                f"create one with `redox-streamer config init --path {file}`"
                if missing
                else "fix the keys named above, then run `redox-streamer config check`",
                needed=not missing or path is not None,
            ),
            None,
        )
    devices = sum(len(a.devices) for a in config.athletes)
    return (
        Check("config", True, f"{file}: {len(config.athletes)} athletes, {devices} devices"),
        config,
    )


def check_bluetooth(needed: bool) -> Check:
    """A Bluetooth adapter: the kernel's list, else a short bleak scan."""
    adapters = (
        sorted(p.name for p in BLUETOOTH_SYSFS.glob("hci*")) if BLUETOOTH_SYSFS.is_dir() else []
    )
    if adapters:
        return Check("bluetooth", True, f"adapter {', '.join(adapters)}", needed=needed)
    try:
        from bleak import BleakScanner

        found = asyncio.run(asyncio.wait_for(BleakScanner.discover(timeout=1.0), 5.0))
    except Exception as exc:  # bleak raises many kinds when there is no adapter or BlueZ
        return Check(
            "bluetooth",
            False,
            f"no adapter usable ({type(exc).__name__}: {exc})",
            "plug in or enable a Bluetooth LE adapter (`bluetoothctl show`; start bluetoothd; "
            "in a container pass the host's D-Bus); `redox-streamer demo` needs none",
            needed=needed,
        )
    return Check("bluetooth", True, f"scan works ({len(found)} devices in 1 s)", needed=needed)


async def _mqtt(config: MqttConfig) -> None:
    # The publisher's and the notifier's factory: the same TLS (CA, client certificate,
    # insecure), credentials and protocol.
    async with mqtt_client(
        config,
        tls=tls_context(config),
        timeout_s=CHECK_TIMEOUT_S,
        identifier=process_client_id("doctor"),
    ):
        pass


def check_mqtt(config: MqttConfig | None) -> Check:
    """The broker accepts a connection (with the configured credentials and TLS)."""
    if config is None:
        return Check(
            "mqtt", None, "no broker configured (results stay in the local store)", needed=False
        )
    try:
        asyncio.run(asyncio.wait_for(_mqtt(config), CHECK_TIMEOUT_S + 1))
    except (aiomqtt.MqttError, OSError, TimeoutError, MqttTlsError) as exc:
        return Check(
            "mqtt",
            False,
            f"{config.url}: {describe_failure(config, exc)}",
            "start the broker (`systemctl start mosquitto`), check host/port, "
            "username/password and TLS in [mqtt]; results wait in the outbox meanwhile",
        )
    return Check("mqtt", True, f"{config.url} accepts connections")


def check_influx(config: InfluxConfig | None) -> Check:
    """InfluxDB answers ``GET /ping`` with 204 (or 200)."""
    if config is None:
        return Check("influxdb", None, "not configured", needed=False)
    url = f"{config.url.rstrip('/')}/ping"
    try:
        with urllib.request.urlopen(url, timeout=CHECK_TIMEOUT_S) as response:
            status = int(response.status)
            version = response.headers.get("X-Influxdb-Version", "?")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check(
            "influxdb",
            False,
            f"{url}: {reason}",
            "start InfluxDB (`systemctl start influxdb`) and check [influx] url; "
            "points wait in the outbox meanwhile",
        )
    if status not in (200, 204):
        return Check(
            "influxdb",
            False,
            f"{url} answered HTTP {status}",
            "is this an InfluxDB (or VictoriaMetrics) URL?",
        )
    return Check("influxdb", True, f"{config.url} answers (version {version})")


def check_store(path: Path) -> Check:
    """The SQLite store opens (created if missing) and reports its outbox depths; a store
    another process holds (a running ``run``) is only read, and its holder named."""
    held = holder(path)
    try:
        with Store(path, read_only=held is not None) as store:
            detail = (
                f"{path} (outboxes: MQTT {Outbox(store, mqtt.OUTBOX).depth()}, "
                f"InfluxDB {Outbox(store, influx.OUTBOX).depth()}"
                + (f"; in use by {held.describe()})" if held else ")")
            )
    except StoreError as exc:
        return Check("store", False, str(exc), "set [store] path to a writable file")
    return Check("store", True, detail)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer doctor``."""
    checks: list[Check] = []
    config_check, config = check_config(args.config)
    checks.append(config_check)
    mqtt = config.mqtt if config else None
    if args.mqtt:
        try:
            mqtt = MqttConfig.from_url(args.mqtt)
        except ValueError as exc:
            raise CliError(f"--mqtt: {exc}") from None
    influx = config.influx if config else None
    if args.influx_url:
        try:
            influx = InfluxConfig.from_url(args.influx_url)  # credentials leave the URL
        except ValueError as exc:
            raise CliError(f"--influx-url: {exc}") from None
    needs_bluetooth = config is None or any(a.devices for a in config.athletes)
    if args.no_bluetooth:
        checks.append(Check("bluetooth", None, "not checked (--no-bluetooth)", needed=False))
    else:
        checks.append(check_bluetooth(needs_bluetooth))
    checks.append(check_mqtt(mqtt))
    checks.append(check_influx(influx))
    if config is not None:
        checks.append(check_store(config.store_path))
    for check in checks:
        print(check.line(), flush=True)
    failed = [c for c in checks if c.ok is False and c.needed]
    if failed:
        print(
            f"{len(failed)} needed check(s) failed: {', '.join(c.name for c in failed)}", flush=True
        )
        return 1
    print("everything needed is in place")
    return 0
