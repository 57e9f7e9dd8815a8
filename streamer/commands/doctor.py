"""``redox-streamer doctor``: is everything the streamer needs in place?

Checks, each printed as one line with what to do when it fails:

* the config file is valid (and what it asks for);
* the devices ``run`` will stream (configured, and paired in the registry);
* the Bluetooth adapter is usable: a 1-s bleak scan, its failure explained (no adapter,
  powered off, permission denied, BlueZ not running) — needed when there are devices;
* the MQTT broker accepts a connection (when configured or given with ``--mqtt``);
* InfluxDB answers ``/ping`` and accepts a write with no points to the configured
  database or bucket (it exists; the credentials may write);
* the local store opens and is sound (file checks and ``PRAGMA quick_check``).

Exit status 0 when everything needed is fine, 1 when something needed fails.
"""

from __future__ import annotations

import argparse
import asyncio
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from devices.discovery import BluetoothUnavailableError, discover
from devices.registry import DeviceRegistry, RegistryError
from streamer.config import (
    Config,
    ConfigError,
    InfluxConfig,
    MqttConfig,
    load_config,
    resolve_config_path,
)
from streamer.errors import CliError
from streamer.payloads import BRIDGE_ONLINE
from streamer.sinks import influx, mqtt
from streamer.sinks.mqtt_connect import (
    MqttTlsError,
    describe_failure,
    mqtt_client,
    probe_topic,
    process_client_id,
    read_retained,
    tls_context,
)
from streamer.sinks.outbox import Outbox
from streamer.store import Store, StoreCorruptError, StoreError, salvage_hint
from streamer.store_lock import holder
from streamer.topics import Topics

BLUETOOTH_SYSFS = Path("/sys/class/bluetooth")
BLUETOOTH_SCAN_S = 1.0
"""Length of doctor's test scan: enough to see the adapter scan, not to find devices."""
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
    parser.add_argument(
        "--registry",
        type=Path,
        metavar="FILE",
        help="paired-devices registry (default: the user config dir)",
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


def check_bluetooth(needed: bool, scanner_kwargs: Mapping[str, Any] | None = None) -> Check:
    """A usable Bluetooth adapter (:func:`bluetooth_check` on the real radio)."""
    adapters = (
        sorted(p.name for p in BLUETOOTH_SYSFS.glob("hci*")) if BLUETOOTH_SYSFS.is_dir() else []
    )
    return asyncio.run(bluetooth_check(needed, scanner_kwargs, adapters))


async def bluetooth_check(
    needed: bool,
    scanner_kwargs: Mapping[str, Any] | None = None,
    adapters: Sequence[str] = (),
) -> Check:
    """A usable Bluetooth adapter: a short scan through bleak (an adapter the kernel lists,
    ``adapters``, may still be powered off, blocked, or out of reach of BlueZ or of this
    user).

    ``scanner_kwargs`` go to ``BleakScanner`` (a test's backend); the real radio without.
    """
    listed = f"adapter {', '.join(adapters)}" if adapters else "no adapter in the kernel's list"
    try:
        async with asyncio.timeout(BLUETOOTH_SCAN_S + 4):
            found = await discover(BLUETOOTH_SCAN_S, scanner_kwargs=scanner_kwargs)
    except BluetoothUnavailableError as exc:
        detail, _, fix = str(exc).partition(" — ")
        return Check("bluetooth", False, f"{detail} [{listed}]", fix, needed=needed)
    except TimeoutError:
        return Check(
            "bluetooth",
            False,
            f"a {BLUETOOTH_SCAN_S:g} s scan did not end within {BLUETOOTH_SCAN_S + 4:g} s "
            f"[{listed}]",
            "restart BlueZ (`sudo systemctl restart bluetooth`) and check `bluetoothctl show`",
            needed=needed,
        )
    where = f"{', '.join(adapters)}: " if adapters else ""
    return Check(
        "bluetooth",
        True,
        f"{where}scan works ({len(found)} devices in {BLUETOOTH_SCAN_S:g} s)",
        needed=needed,
    )


async def _mqtt(config: MqttConfig) -> str:
    """Log in as the broker's users that ``run`` and the commands need; what was checked.

    The ``[mqtt.cli]`` account first (the one ``doctor`` itself is meant to use beside a
    running ``run``); then ``run``'s own account, unless a streamer is online with it
    (retained ``<base>/bridge/state`` ``online``): on a broker that ties client ids to
    accounts a second login would throw that streamer off, and its being online already
    shows the account works.
    """
    # The publisher's and the notifier's factory: the same TLS (CA, client certificate,
    # insecure), credentials and protocol.
    cli = config.for_cli()
    async with mqtt_client(
        cli,
        tls=tls_context(cli),
        timeout_s=CHECK_TIMEOUT_S,
        identifier=process_client_id("doctor"),
    ) as client:
        if cli is config:
            return "accepts connections"
        topics = Topics(config.base_topic, config.ha_prefix)
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S / 2):
                retained = await read_retained(
                    client, [topics.bridge_state], probe_topic(topics.base, "doctor")
                )
        except TimeoutError:
            return (
                f"accepts connections as {cli.username}, but its probe on "
                f"{topics.base}/bridge/probe/# did not come back (the ACL?); "
                f"{config.username} not checked"
            )
    if any(m.payload == BRIDGE_ONLINE for m in retained):
        return (
            f"accepts connections as {cli.username}; {config.username} is logged in by the "
            "running streamer (not checked again: a second login would throw it off)"
        )
    async with mqtt_client(
        config,
        tls=tls_context(config),
        timeout_s=CHECK_TIMEOUT_S,
        identifier=process_client_id("doctor"),
    ):
        pass
    return f"accepts connections as {cli.username} and as {config.username}"


def check_mqtt(config: MqttConfig | None) -> Check:
    """The broker accepts a connection (with the configured credentials and TLS)."""
    if config is None:
        return Check(
            "mqtt", None, "no broker configured (results stay in the local store)", needed=False
        )
    try:
        checked = asyncio.run(asyncio.wait_for(_mqtt(config), 2 * CHECK_TIMEOUT_S + 1))
    except (aiomqtt.MqttError, OSError, TimeoutError, MqttTlsError) as exc:
        return Check(
            "mqtt",
            False,
            f"{config.url}: {describe_failure(config, exc)}",
            "start the broker (`systemctl start mosquitto`), check host/port, "
            "username/password ([mqtt], and [mqtt.cli] if set) and TLS in [mqtt]; "
            "results wait in the outbox meanwhile",
        )
    return Check("mqtt", True, f"{config.url} {checked}")


def check_influx(config: InfluxConfig | None) -> Check:
    """InfluxDB answers ``GET /ping``, and a write with no points is accepted: the
    database (v1; and its retention policy) or bucket (v2) exists and the credentials may
    write to it — what ``run`` needs, checked without writing anything."""
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
    if not (config.db if config.api == "v1" else config.bucket):
        return Check(
            "influxdb",
            True,
            f"{config.url} answers (version {version}); name its database in [influx] to "
            "check that writes are accepted",
        )
    target = (
        f"database {config.db!r}" + (f" rp {config.rp!r}" if config.rp else "")
        if config.api == "v1"
        else f"bucket {config.bucket!r} (org {config.org!r})"
    )
    write_url, headers = influx.write_endpoint(config)
    request = urllib.request.Request(write_url, data=b"", headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=CHECK_TIMEOUT_S) as response:
            code, text = int(response.status), ""
    except urllib.error.HTTPError as exc:
        code, text = int(exc.code), exc.read().decode("utf-8", "replace").strip()[:200]
    except (urllib.error.URLError, OSError) as exc:
        return Check(
            "influxdb",
            False,
            f"{config.url} answers /ping but a write failed: {getattr(exc, 'reason', exc)}",
            "check [influx] url and the server's log",
        )
    if 200 <= code < 300:
        return Check("influxdb", True, f"{config.url} (version {version}): {target} accepts writes")
    if code == 404 and config.api == "v1" and config.create_database:
        return Check(
            "influxdb",
            True,
            f"{config.url} (version {version}): {target} does not exist yet; `run` creates "
            "it (create_database = true)",
        )
    return Check(
        "influxdb",
        False,
        f"{config.url} refuses writes to {target}: HTTP {code} {text}".rstrip(),
        influx.refusal_hint(code, config, text)
        + "; until then `run` keeps every point in the outbox",
    )


def check_store(path: Path) -> Check:
    """The SQLite store opens (created if missing), its files and pages are sound (checked
    before it is written: a damaged store is named with the salvage command), and its
    outbox depths; a store another process holds (a running ``run``) is only read, and its
    holder named."""
    held = holder(path)
    try:
        with Store(path, read_only=held is not None) as store:
            detail = (
                f"{path} (outboxes: MQTT {Outbox(store, mqtt.OUTBOX).depth()}, "
                f"InfluxDB {Outbox(store, influx.OUTBOX).depth()}"
                + (f"; in use by {held.describe()})" if held else ")")
            )
    except StoreCorruptError as exc:  # vetted and quick_check'ed before anything is written
        return Check("store", False, exc.problem, salvage_hint(path))
    except StoreError as exc:
        return Check("store", False, str(exc), "set [store] path to a writable file")
    return Check("store", True, detail)


def check_devices(config: Config, registry: DeviceRegistry) -> Check:
    """The devices ``run`` will stream: the config's and the paired ones of its athletes."""
    from streamer.commands.run import paired_devices

    devices = paired_devices(config, registry)
    listed = "; ".join(
        f"{athlete}: " + ", ".join(f"{d.id} {d.address or repr(d.name)}" for d in items)
        for athlete, items in devices.items()
        if items
    )
    if not listed:
        return Check(
            "devices",
            False,
            "none to stream (no [[athletes.devices]] in the config, none paired in "
            f"{registry.path} for its athletes)",
            "find them with `redox-streamer scan`, then `redox-streamer pair add --athlete ID "
            "--kind strap`",
            needed=False,
        )
    return Check("devices", True, listed)


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
    needs_bluetooth = config is None
    if config is not None:
        try:
            registry = DeviceRegistry.load(args.registry)
        except RegistryError as exc:
            checks.append(Check("devices", False, str(exc), "fix or remove the registry file"))
            needs_bluetooth = True
        else:
            devices = check_devices(config, registry)
            checks.append(devices)
            needs_bluetooth = devices.ok is True
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
