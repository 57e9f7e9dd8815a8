"""The configuration file: one TOML file, validated at start, secrets kept out of sight.

Sections (every one optional; see :data:`EXAMPLE_CONFIG`, which ``redox-streamer config
init`` writes with comments):

``[store]``
    ``path`` of the SQLite store (default: the user data dir, see
    :func:`streamer.store.default_store_path`).
``[mqtt]``
    ``url`` (``mqtt://host:1883`` or ``mqtts://host:8883`` for TLS), ``username``,
    ``password``, ``base_topic``, ``client_id`` (the start of the client id: each process
    adds its host, pid and a random part), ``protocol`` (``"3.1.1"`` or ``"5"``),
    ``ha_discovery``, ``ha_prefix``, ``keepalive_s`` (5–3600 s), ``publish_timeout_s``
    (0.1–300 s); ``[mqtt.tls]``
    ``ca_file`` (the CA the broker's certificate must chain to; default: the system CAs),
    ``cert_file`` and ``key_file`` (a client certificate), ``insecure`` (skips the
    host-name check ONLY; the chain is still verified). The publisher, ``notify`` and
    ``doctor`` give these one meaning (:mod:`streamer.sinks.mqtt_connect`); ``[mqtt.cli]``
    ``username`` and ``password``: the account the commands that talk to a running ``run``
    (``session``, ``rpe``, ``status``, ``doctor``) log in with (default: ``[mqtt]``'s; a
    broker that ties client ids to accounts, like the shipped mosquitto, needs its own,
    see :meth:`MqttConfig.for_cli`; or ``REDOX_MQTT_CLI_USERNAME`` and
    ``REDOX_MQTT_CLI_PASSWORD``). No section: no MQTT.
``[influx]``
    ``url``, ``api`` (``"v1"``: ``/write`` with ``db``, ``rp``, ``username``, ``password``;
    ``"v2"``: ``/api/v2/write`` with ``org``, ``bucket``, ``token``), ``create_database``
    (v1), ``batch_size`` (1–100 000 points), ``flush_interval_s`` (0.01–3600 s),
    ``timeout_s`` (0.1–300 s). No section: no InfluxDB.

Every number has such a range (a value far outside one passes a type check and then breaks a
sink for good), and ids (athletes', devices') are checked by one function,
:func:`id_problem`, that ``pair`` and ``replay --athlete`` use too.
``[rules]``
    Rule-threshold overrides for everyone, names of
    :class:`processors.rules.RuleThresholds` (e.g. ``rhr_creep_delta_bpm = 6``).
``[team]``
    ``registry`` (team mode's ``gateway`` and ``worker``): true reads athletes, devices and
    thresholds from the club's central registry in NATS (:mod:`streamer.team.registry`,
    written by ``redox-streamer registry push``) and follows its changes; false reads this
    file's. Default: the registry when this file names no athletes and has no ``[rules]``
    (a Pi's file holds only its own things), this file's otherwise.
``[[athletes]]``
    ``id`` (topic-safe: letters, digits, ``_``, ``-``), ``name``, ``profile``
    (:data:`processors.profiles.PROFILES`), ``[athletes.rules]`` overrides, and
    ``[[athletes.devices]]`` with ``kind`` (one of :data:`devices.models.STREAMABLE_KINDS`:
    strap, smo2, grip, power, spo2), ``address`` and/or ``name``, optional ``model`` (which
    product of that kind, e.g. ``"activ5"``; default: the one its ``name`` identifies, else
    the device tells when it is first seen), ``id`` (topic segment; default the kind) and
    ``role``.

Secrets may come from the environment instead of the file, which then wins:
``REDOX_MQTT_USERNAME``, ``REDOX_MQTT_PASSWORD``, ``REDOX_INFLUX_USERNAME``,
``REDOX_INFLUX_PASSWORD``, ``REDOX_INFLUX_TOKEN``. ``REDOX_CONFIG`` names the file when no
path is given. Secrets are :class:`Secret` objects: their ``repr``/``str`` are masked, so a
logged config never shows them.

Validation collects every problem; :class:`ConfigError` lists them, each naming the key and
the fix, e.g. ``influx.api: expected 'v1' or 'v2', got 'v3' — set api = "v1" for InfluxDB
1.x /write or "v2" for /api/v2/write``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import math
import os
import re
import tomllib
import urllib.parse
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

import platformdirs

from devices.kinds import DeviceKind
from devices.models import STREAMABLE_KINDS, DeviceModel, candidate_models, models_of
from processors.profiles import PROFILES, thresholds_for
from processors.rules import RuleThresholds
from streamer.errors import CliError
from streamer.store import APP_NAME, default_store_path
from streamer.topics import DEFAULT_BASE, DEFAULT_HA_PREFIX, RESERVED_LEVELS

ENV_CONFIG: Final = "REDOX_CONFIG"
ENV_SECRETS: Final = {
    "mqtt.username": "REDOX_MQTT_USERNAME",
    "mqtt.password": "REDOX_MQTT_PASSWORD",
    "mqtt.cli.username": "REDOX_MQTT_CLI_USERNAME",
    "mqtt.cli.password": "REDOX_MQTT_CLI_PASSWORD",
    "influx.username": "REDOX_INFLUX_USERNAME",
    "influx.password": "REDOX_INFLUX_PASSWORD",
    "influx.token": "REDOX_INFLUX_TOKEN",
}
_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
ID_RULE: Final = "1-64 letters (A-Z, a-z), digits, '_' or '-'"
"""What an athlete or device id may hold: it is an MQTT topic level and an InfluxDB tag
taken as is, so nothing is rewritten (``a/b`` and ``a_b`` must not meet in one topic)."""


def id_problem(value: object) -> str | None:
    """Why ``value`` is not an athlete or device id (None: it is one). The one check of ids
    the config, ``pair`` and ``replay --athlete`` share."""
    if not isinstance(value, str):
        return f"expected a string, got {value!r}"
    if _ID_RE.fullmatch(value) is None:  # fullmatch: "alice\n" is not "alice"
        return f"{value!r} is not a topic-safe id — use {ID_RULE}"
    return None


def athlete_id_arg(text: str) -> str:
    """``argparse`` type of an ``--athlete ID`` flag: the id, or a one-line refusal."""
    problem = id_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def date_arg(text: str) -> dt.date:
    """``argparse`` type of a ``YYYY-MM-DD`` flag (``--date``, ``--from``, ``--to``)."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD") from None


KEEPALIVE_MAX_S: Final = 3600
"""``mqtt.keepalive_s`` at most (s): a dead broker is noticed within 1.5 times this."""
TIMEOUT_MAX_S: Final = 300.0
"""``mqtt.publish_timeout_s`` and ``influx.timeout_s`` at most (s): a wait longer than five
minutes for one answer is a hung server, and the sink must move on to retrying."""
BATCH_SIZE_MAX: Final = 100_000
"""``influx.batch_size`` at most (points): about 10 MB of line protocol per write, well
under the servers' request limits (InfluxDB 1.x: 25 MB by default)."""
FLUSH_INTERVAL_MAX_S: Final = 3600.0
"""``influx.flush_interval_s`` at most (s): results older than an hour are not "live"."""
MqttProtocol = Literal["3.1.1", "5"]
InfluxApi = Literal["v1", "v2"]


def default_config_path() -> Path:
    """``<user config dir>/redox-streamer/config.toml`` (platformdirs)."""
    return platformdirs.user_config_path(APP_NAME) / "config.toml"


class ConfigError(CliError):
    """The configuration is invalid; ``problems`` lists each bad key with its fix."""

    def __init__(self, problems: Sequence[str], source: str = "config") -> None:
        self.problems = list(problems)
        self.source = source
        if len(self.problems) == 1:  # the common case reads as one line
            super().__init__(f"{source}: {self.problems[0]}")
            return
        lines = "\n  ".join(self.problems)
        super().__init__(f"{source}: {len(self.problems)} problems:\n  {lines}")


@dataclass(frozen=True, slots=True)
class Secret:
    """A password or token: masked in ``repr``/``str``/f-strings; :meth:`reveal` gives it."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        """The secret itself — only for handing to a client library."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"


def _mask(secret: Secret | None) -> str:
    return "(not set)" if secret is None else "*** (set)"


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """A paired device: its kind, how to find it (address and/or advertised name) and,
    optionally, which model of that kind it is."""

    id: str
    kind: DeviceKind
    address: str | None = None
    name: str | None = None
    role: str | None = None
    model: str | None = None

    @property
    def device_models(self) -> tuple[DeviceModel, ...]:
        """The models it may be: ``model`` if given, else the one ``name`` identifies, else
        every model of its kind (:func:`devices.models.candidate_models`); give them to
        :func:`devices.drivers.driver_for`, which asks the device when there are several."""
        return candidate_models(self.kind, model=self.model, name=self.name)

    @property
    def device_model(self) -> DeviceModel | None:
        """The model to drive it as when the configuration says (see :attr:`device_models`);
        ``None`` when only the device can tell (a grip device given by address alone)."""
        models = self.device_models
        return models[0] if len(models) == 1 else None


def paired_device_id(kind: DeviceKind, address: str | None, taken: Collection[str]) -> str:
    """The id of a device paired to an athlete beside ``taken`` ids, as ``run`` and
    ``registry push`` both name it: its kind; when taken, ``<kind>-<last 4 hex digits of
    the address>``; when that is taken too, that with ``-2``, ``-3``…"""
    if kind.value not in taken:
        return kind.value
    tail = (address or "")[-5:].replace(":", "")
    base = f"{kind.value}-{tail}" if tail else kind.value
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


@dataclass(frozen=True, slots=True)
class AthleteConfig:
    """An athlete: id (topic segment), display name, profile, overrides, devices."""

    id: str
    name: str
    profile: str = "default"
    rules: Mapping[str, float | int] = field(default_factory=dict)
    devices: tuple[DeviceConfig, ...] = ()

    def device(self, kind: DeviceKind) -> DeviceConfig | None:
        """The first device of ``kind``, if any."""
        return next((d for d in self.devices if d.kind is kind), None)


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Where and how to publish. ``tls`` is on for ``mqtts://`` URLs or a ``[mqtt.tls]``."""

    host: str
    port: int = 1883
    username: str | None = None
    password: Secret | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False
    base_topic: str = DEFAULT_BASE
    client_id: str | None = None
    protocol: MqttProtocol = "3.1.1"
    ha_discovery: bool = False
    ha_prefix: str = DEFAULT_HA_PREFIX
    keepalive_s: int = 30
    publish_timeout_s: float = 5.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    cli_username: str | None = None
    cli_password: Secret | None = None

    def for_cli(self) -> MqttConfig:
        """These settings with the ``[mqtt.cli]`` account, if one is set: what ``session``,
        ``rpe``, ``status`` and ``doctor`` log in with beside a running ``run``.

        A broker that replaces client ids by user names (the shipped mosquitto's
        ``use_username_as_clientid``) lets one connection per account stand: a command
        logging in with ``run``'s own account would throw ``run`` off. Without
        ``[mqtt.cli]`` (one account for everything, on a broker that keeps client ids
        apart) these are the settings as they are.
        """
        if self.cli_username is None:
            return self
        return replace(self, username=self.cli_username, password=self.cli_password, client_id=None)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MqttConfig:
        """From ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://…`` plus options.

        ``ValueError`` names what is wrong with the URL.
        """
        problems: list[str] = []
        parsed = _parse_mqtt_url(url, "mqtt.url", problems)
        if parsed is None:
            raise ValueError(problems[0])
        values: dict[str, Any] = dict(parsed)
        values.update(options)
        if isinstance(values.get("password"), str):
            values["password"] = Secret(values["password"])
        return cls(**values)

    @property
    def url(self) -> str:
        """The broker URL without credentials (safe to print)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    """Where and how to write points: the v1 ``/write`` or the v2 ``/api/v2/write`` API."""

    url: str
    api: InfluxApi = "v1"
    db: str | None = None
    rp: str | None = None
    username: str | None = None
    password: Secret | None = None
    org: str | None = None
    bucket: str | None = None
    token: Secret | None = None
    create_database: bool = False
    batch_size: int = 5000
    flush_interval_s: float = 1.0
    timeout_s: float = 10.0
    max_buffer_points: int = 100_000
    outbox_max_points: int = 5_000_000
    retry_min_s: float = 0.5
    retry_max_s: float = 30.0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> InfluxConfig:
        """From ``http[s]://[user[:password]@]host[:port][/path]`` (a command-line flag)
        plus options.

        Credentials in the URL become ``username``/``password`` (HTTP basic auth on the v1
        API), percent-escapes decoded, and leave the URL, so :attr:`url` is safe to print.
        ``ValueError`` names what is wrong, with any password masked.
        """
        parsed = urllib.parse.urlsplit(url)
        try:
            parsed.port  # noqa: B018 -- raises for a port that is not a number
        except ValueError:
            raise ValueError(f"the port in {redact_url(url)!r} is not a number 1–65535") from None
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"expected http://host:8086 or https://…, got {redact_url(url)!r}")
        values: dict[str, Any] = {"url": strip_credentials(url).rstrip("/")}
        if parsed.username:
            values["username"] = urllib.parse.unquote(parsed.username)
        if parsed.password:
            values["password"] = Secret(urllib.parse.unquote(parsed.password))
        values.update(options)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration."""

    athletes: tuple[AthleteConfig, ...] = ()
    mqtt: MqttConfig | None = None
    influx: InfluxConfig | None = None
    store_path: Path = field(default_factory=default_store_path)
    rules: Mapping[str, float | int] = field(default_factory=dict)
    source: Path | None = None
    team_registry: bool | None = None
    """``[team] registry``: None when the file does not say (see :attr:`uses_registry`)."""

    @property
    def uses_registry(self) -> bool:
        """Team mode reads athletes, devices and thresholds from the central registry: as
        ``[team] registry`` says, else when this file names no athletes and no ``[rules]``
        (a file that does keeps meaning what it says)."""
        if self.team_registry is not None:
            return self.team_registry
        return not self.athletes and not self.rules

    def athlete(self, athlete_id: str) -> AthleteConfig:
        """The athlete with ``athlete_id`` (``KeyError`` if none)."""
        for a in self.athletes:
            if a.id == athlete_id:
                return a
        raise KeyError(athlete_id)

    def thresholds_for(self, athlete_id: str) -> RuleThresholds:
        """The rule thresholds of an athlete: profile defaults, then ``[rules]``, then the
        athlete's own ``[athletes.rules]``."""
        a = self.athlete(athlete_id)
        return thresholds_for(a.profile, {**self.rules, **a.rules})


# --- reading TOML with errors that name the key -------------------------------------------------


class _Table:
    """One TOML table being read: typed getters that record problems with the key's path."""

    def __init__(self, data: Mapping[str, Any], path: str, problems: list[str]) -> None:
        self.data = data
        self.path = path
        self.problems = problems
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def problem(self, name: str, text: str) -> None:
        key = f"{self.key(name)}: "
        # One problem per key: the first says what is wrong with it (a second, such as
        # "missing" after "expected a string", would only repeat it).
        if not any(p.startswith(key) for p in self.problems):
            self.problems.append(key + text)

    def _get(self, name: str) -> Any:
        self.seen.add(name)
        return self.data.get(name)

    def text(
        self, name: str, default: str | None = None, *, required: bool = False, example: str = "..."
    ) -> str | None:
        value = self._get(name)
        if value is None:
            if required:
                self.problem(name, f'missing — add {name} = "{example}"')
            return default
        if not isinstance(value, str):
            self.problem(name, f'expected a string, got {value!r} — write {name} = "{value}"')
            return default
        return value

    def choice(self, name: str, choices: Sequence[str], default: str, hint: str) -> str:
        value = self._get(name)
        if value is None:
            return default
        if not isinstance(value, str) or value not in choices:
            expected = " or ".join(repr(c) for c in choices)
            self.problem(name, f"expected {expected}, got {value!r} — {hint}")
            return default
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self._get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(name, f"expected true or false, got {value!r} — write {name} = true")
            return default
        return value

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float,
        maximum: float,
        integer: bool = False,
        unit: str = "",
    ) -> float:
        """A number from ``minimum`` to ``maximum`` (both allowed): every numeric setting has
        a range, because one far outside it (a keepalive of 19 h, a timeout of 1e300 s)
        passes a type check and then breaks a sink for good."""
        value = self._get(name)
        if value is None:
            return default
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and integer and isinstance(value, float) and not value.is_integer():
            ok = False
        if not ok or not math.isfinite(value) or not minimum <= value <= maximum:
            what = "a whole number" if integer else "a number"
            self.problem(
                name,
                f"expected {what} from {minimum:g} to {maximum:g}{unit}, got {value!r} — "
                f"write e.g. {name} = {default:g}",
            )
            return default
        return float(value)

    def path_value(self, name: str) -> Path | None:
        text = self.text(name)
        return Path(text).expanduser() if text else None

    def table(self, name: str) -> _Table | None:
        value = self._get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(name, f"expected a table [{self.key(name)}], got {value!r}")
            return None
        return _Table(value, self.key(name), self.problems)

    def tables(self, name: str) -> list[_Table]:
        value = self._get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.problem(name, f"expected [[{self.key(name)}]] tables")
            return []
        return [_Table(v, f"{self.key(name)}[{i}]", self.problems) for i, v in enumerate(value)]

    def finish(self) -> None:
        """Report keys nobody read (typos), suggesting the closest known one."""
        for name in self.data:
            if name not in self.seen:
                close = difflib.get_close_matches(name, sorted(self.seen), n=1)
                hint = f"did you mean {close[0]!r}?" if close else "remove it"
                self.problem(name, f"unknown key — {hint}")


def _parse_mqtt_url(url: str, key: str, problems: list[str]) -> dict[str, Any] | None:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("mqtt", "mqtts"):
        problems.append(
            f"{key}: expected mqtt://host:1883 or mqtts://host:8883, got "
            f"{redact_url(url)!r} — the scheme must be mqtt or mqtts"
        )
        return None
    try:
        port = parsed.port
    except ValueError:
        problems.append(f"{key}: the port in {redact_url(url)!r} is not a number 1–65535")
        return None
    if not parsed.hostname:
        problems.append(f"{key}: no host in {redact_url(url)!r} — e.g. mqtt://127.0.0.1:1883")
        return None
    tls = parsed.scheme == "mqtts"
    out: dict[str, Any] = {
        "host": parsed.hostname,
        "port": port or (8883 if tls else 1883),
        "tls": tls,
    }
    if parsed.username:
        out["username"] = urllib.parse.unquote(parsed.username)
    if parsed.password:
        out["password"] = Secret(urllib.parse.unquote(parsed.password))
    return out


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.password is None:
        return url
    user, _, _ = parsed.netloc.rpartition("@")[0].partition(":")
    host = parsed.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parsed._replace(netloc=f"{user}:***@{host}"))


def strip_credentials(url: str) -> str:
    """``url`` without ``user[:password]@`` (credentials travel apart from the address)."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parsed._replace(netloc=host))


def _secret(t: _Table, name: str, env: Mapping[str, str]) -> Secret | None:
    from_env = env.get(ENV_SECRETS[t.key(name)])
    from_file = t.text(name)
    value = from_env if from_env else from_file
    return Secret(value) if value else None


def _plain_from_env(t: _Table, name: str, env: Mapping[str, str]) -> str | None:
    from_env = env.get(ENV_SECRETS[t.key(name)])
    return from_env if from_env else t.text(name)


def _read_mqtt(t: _Table, env: Mapping[str, str]) -> MqttConfig | None:
    if not t.flag("enabled", True):
        t.seen.update(t.data)
        return None
    url = t.text("url", required=True, example="mqtt://127.0.0.1:1883")
    base = _parse_mqtt_url(url, t.key("url"), t.problems) if url else None
    username = _plain_from_env(t, "username", env)
    password = _secret(t, "password", env)
    cli_username: str | None = None
    cli_password: Secret | None = None
    # The table, or only REDOX_MQTT_CLI_USERNAME (a container's environment).
    cli_table = t.table("cli")
    if cli_table is None and env.get(ENV_SECRETS[t.key("cli.username")]):
        cli_table = _Table({}, t.key("cli"), t.problems)
    if cli_table is not None:
        cli_username = _plain_from_env(cli_table, "username", env)
        cli_password = _secret(cli_table, "password", env)
        if cli_username is None:
            cli_table.problem(
                "username",
                "missing: name the account the commands log in with, e.g. "
                'username = "redox-cli" (or REDOX_MQTT_CLI_USERNAME)',
            )
        cli_table.finish()
    tls_table = t.table("tls")
    tls_on = bool(base and base["tls"]) or tls_table is not None
    ca = cert = key = None
    insecure = False
    if tls_table is not None:
        ca = tls_table.path_value("ca_file")
        cert = tls_table.path_value("cert_file")
        key = tls_table.path_value("key_file")
        insecure = tls_table.flag("insecure", False)
        for name, p in (("ca_file", ca), ("cert_file", cert), ("key_file", key)):
            if p is not None and not p.is_file():
                tls_table.problem(name, f"file {p} not found — give the path of a PEM file")
        if key is not None and cert is None:
            tls_table.problem(
                "cert_file", "missing: key_file needs its cert_file (client certificate, PEM)"
            )
        tls_table.finish()
    base_topic = t.text("base_topic", DEFAULT_BASE) or DEFAULT_BASE
    if any(c in base_topic for c in "+#") or not base_topic.strip("/ "):
        t.problem(
            "base_topic",
            f"{base_topic!r} is not a topic — use letters, digits and "
            "'/' between levels, e.g. base_topic = \"redox\"",
        )
    ha_prefix = t.text("ha_prefix", DEFAULT_HA_PREFIX) or DEFAULT_HA_PREFIX
    protocol = t.choice(
        "protocol",
        ("3.1.1", "5"),
        "3.1.1",
        'set protocol = "3.1.1" (any broker, and the demo\'s) or "5"',
    )
    config = MqttConfig(
        host=base["host"] if base else "invalid",
        port=base["port"] if base else 1883,
        username=username if username is not None else (base or {}).get("username"),
        password=password if password is not None else (base or {}).get("password"),
        tls=tls_on,
        ca_file=ca,
        cert_file=cert,
        key_file=key,
        tls_insecure=insecure,
        base_topic=base_topic,
        client_id=t.text("client_id"),
        protocol="5" if protocol == "5" else "3.1.1",
        ha_discovery=t.flag("ha_discovery", False),
        ha_prefix=ha_prefix,
        keepalive_s=int(
            t.number("keepalive_s", 30, minimum=5, maximum=KEEPALIVE_MAX_S, integer=True, unit=" s")
        ),
        publish_timeout_s=t.number(
            "publish_timeout_s", 5.0, minimum=0.1, maximum=TIMEOUT_MAX_S, unit=" s"
        ),
        cli_username=cli_username,
        cli_password=cli_password,
    )
    if config.password is not None and config.username is None:
        t.problem(
            "username",
            'a password is set but no username — add username = "..." (or REDOX_MQTT_USERNAME)',
        )
    t.finish()
    return config


def _read_influx(t: _Table, env: Mapping[str, str]) -> InfluxConfig | None:
    if not t.flag("enabled", True):
        t.seen.update(t.data)
        return None
    url = t.text("url", required=True, example="http://127.0.0.1:8086") or ""
    if url:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            t.problem("url", f"expected http://host:8086 or https://…, got {redact_url(url)!r}")
        if parsed.password:
            t.problem("url", "put credentials in username/password (or token), not in the URL")
    api = t.choice(
        "api",
        ("v1", "v2"),
        "v1",
        'set api = "v1" for InfluxDB 1.x /write or "v2" for /api/v2/write',
    )
    db = t.text("db")
    rp = t.text("rp")
    username = _plain_from_env(t, "username", env)
    password = _secret(t, "password", env)
    org = t.text("org")
    bucket = t.text("bucket")
    token = _secret(t, "token", env)
    if api == "v1" and not db:
        t.problem("db", 'missing for api = "v1" — add db = "redox" (the InfluxDB database)')
    if api == "v2":
        if not bucket:
            t.problem("bucket", 'missing for api = "v2" — add bucket = "redox"')
        if not org:
            t.problem(
                "org",
                'missing for api = "v2" — add org = "your-org" (InfluxDB 2 '
                "organisation; any value for VictoriaMetrics)",
            )
    if password is not None and username is None:
        t.problem("username", 'a password is set but no username — add username = "..."')
    config = InfluxConfig(
        url=url.rstrip("/"),
        api="v2" if api == "v2" else "v1",
        db=db,
        rp=rp,
        username=username,
        password=password,
        org=org,
        bucket=bucket,
        token=token,
        create_database=t.flag("create_database", False),
        batch_size=int(
            t.number("batch_size", 5000, minimum=1, maximum=BATCH_SIZE_MAX, integer=True)
        ),
        flush_interval_s=t.number(
            "flush_interval_s", 1.0, minimum=0.01, maximum=FLUSH_INTERVAL_MAX_S, unit=" s"
        ),
        timeout_s=t.number("timeout_s", 10.0, minimum=0.1, maximum=TIMEOUT_MAX_S, unit=" s"),
    )
    t.finish()
    return config


def _check_rules(t: _Table) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for name, value in t.data.items():
        t.seen.add(name)
        try:
            RuleThresholds().with_overrides({name: value})
        except (ValueError, TypeError) as exc:
            t.problem(name, f"{exc} — see the [rules] section of `redox-streamer config init`")
            continue
        out[name] = value
    return out


def _read_device(t: _Table, used: set[str]) -> DeviceConfig | None:
    kind_text = t.text("kind", required=True, example="strap")
    kind: DeviceKind | None = None
    if kind_text is not None:
        streamable = ", ".join(k.value for k in DeviceKind if k in STREAMABLE_KINDS)
        try:
            kind = DeviceKind.parse(kind_text)
        except ValueError:
            t.problem("kind", f"unknown device kind {kind_text!r}; expected one of: {streamable}")
        # Only kinds with a model: what passes here, `run` can drive and emulate.
        if kind is not None and kind not in STREAMABLE_KINDS:
            t.problem(
                "kind",
                f"{kind.value!r} cannot be streamed — say what it is: {streamable}",
            )
            kind = None
    model = t.text("model")
    if model is not None and kind is not None:
        try:
            model = candidate_models(kind, model=model)[0].name
        except ValueError:
            choices = ", ".join(m.name for m in models_of(kind))
            t.problem("model", f"{model!r} is not a {kind.value} model — use one of: {choices}")
    address = t.text("address")
    name = t.text("name")
    if not address and not name:
        t.problem(
            "address",
            'give address = "AA:BB:CC:DD:EE:FF" or name = "Polar H10 '
            '1A2B3C" so the device can be found (see `redox-streamer scan`)',
        )
    dev_id = t.text("id")
    if dev_id is None and kind is not None:
        dev_id = kind.value
        n = 2
        while dev_id in used:
            dev_id = f"{kind.value}{n}"
            n += 1
    if dev_id is not None and (problem := id_problem(dev_id)) is not None:
        t.problem("id", problem)
    elif dev_id is not None and dev_id in used:
        t.problem("id", f"{dev_id!r} is used twice for this athlete — give each device its own id")
    role = t.text("role")
    t.finish()
    if kind is None or dev_id is None:
        return None
    used.add(dev_id)
    return DeviceConfig(dev_id, kind, address, name, role, model)


def _read_athlete(
    t: _Table, global_rules: Mapping[str, float | int], ids: set[str]
) -> AthleteConfig | None:
    athlete_id = t.text("id", required=True, example="alice")
    if athlete_id is not None:
        if (problem := id_problem(athlete_id)) is not None:
            t.problem("id", f"{problem} (the display name goes in name = ...)")
        elif athlete_id in ids:
            t.problem("id", f"{athlete_id!r} is used by two athletes — ids must be unique")
        elif athlete_id in RESERVED_LEVELS:
            t.problem(
                "id",
                f"{athlete_id!r} names the service topics <base>/{athlete_id}/… — give the "
                f"athlete another id (e.g. {athlete_id}1; the display name goes in name = ...)",
            )
        ids.add(athlete_id)
    name = t.text("name", athlete_id) or athlete_id or ""
    profile = t.text("profile", "default") or "default"
    if profile not in PROFILES:
        t.problem(
            "profile", f"unknown profile {profile!r} — use one of {', '.join(sorted(PROFILES))}"
        )
        profile = "default"
    rules_table = t.table("rules")
    rules = _check_rules(rules_table) if rules_table else {}
    used: set[str] = set()
    devices = [d for dt in t.tables("devices") if (d := _read_device(dt, used)) is not None]
    t.finish()
    if athlete_id is None:
        return None
    try:
        thresholds_for(profile, {**global_rules, **rules})
    except ValueError as exc:
        t.problem("rules", f"{exc} (profile {profile!r} with [rules] and this athlete's overrides)")
    return AthleteConfig(athlete_id, name, profile, rules, tuple(devices))


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Validate TOML ``text``; ``ConfigError`` lists every problem, each with its fix.

    ``env`` (default ``os.environ``) supplies the secret overrides; ``base_dir`` resolves a
    relative ``store.path`` (default: the current directory).
    """
    environ = os.environ if env is None else env
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc} — fix the syntax at that line"], source) from exc
    except RecursionError:  # tomllib recurses per nesting level: a = [[[[...]]]]
        raise ConfigError(["not valid TOML: nested too deeply — fix the file"], source) from None
    problems: list[str] = []
    root = _Table(data, "", problems)
    store_table = root.table("store")
    store_path = default_store_path()
    if store_table is not None:
        p = store_table.path_value("path")
        if p is not None:
            store_path = p if p.is_absolute() else (base_dir or Path.cwd()) / p
        store_table.finish()
    mqtt_table = root.table("mqtt")
    mqtt = _read_mqtt(mqtt_table, environ) if mqtt_table is not None else None
    influx_table = root.table("influx")
    influx = _read_influx(influx_table, environ) if influx_table is not None else None
    rules_table = root.table("rules")
    rules = _check_rules(rules_table) if rules_table is not None else {}
    team_table = root.table("team")
    team_registry: bool | None = None
    if team_table is not None:
        if "registry" in team_table.data:
            team_registry = team_table.flag("registry", False)
        team_table.finish()
    ids: set[str] = set()
    athletes = tuple(
        a for at in root.tables("athletes") if (a := _read_athlete(at, rules, ids)) is not None
    )
    root.finish()
    if problems:
        raise ConfigError(problems, source)
    return Config(
        athletes,
        mqtt,
        influx,
        store_path,
        rules,
        Path(source) if source != "<config>" else None,
        team_registry,
    )


def parse_athlete(
    data: object, *, rules: Mapping[str, float | int] | None = None, source: str = "<athlete>"
) -> AthleteConfig:
    """One ``[[athletes]]`` table given as data (an entry of the team's central registry),
    validated by the very code that reads the file's; ``ConfigError`` lists its problems.

    ``rules``: the ``[rules]`` it is judged with (its thresholds must be valid under them).
    """
    if not isinstance(data, dict):
        raise ConfigError([f"expected an [[athletes]] table, got {type(data).__name__}"], source)
    problems: list[str] = []
    athlete = _read_athlete(_Table(data, "athletes", problems), rules or {}, set())
    if problems or athlete is None:
        raise ConfigError(problems or ["athletes: not an athlete"], source)
    return athlete


def parse_rules(data: object, *, source: str = "<rules>") -> dict[str, float | int]:
    """A ``[rules]`` table given as data, validated as the file's; ``ConfigError`` if not."""
    if not isinstance(data, dict):
        raise ConfigError([f"expected a [rules] table, got {type(data).__name__}"], source)
    problems: list[str] = []
    rules = _check_rules(_Table(data, "rules", problems))
    if problems:
        raise ConfigError(problems, source)
    return rules


def athlete_data(athlete: AthleteConfig) -> dict[str, Any]:
    """``athlete`` as its ``[[athletes]]`` table would hold it (every device id written
    out): what :func:`parse_athlete` reads back to an equal :class:`AthleteConfig`."""
    devices: list[dict[str, str]] = []
    for d in athlete.devices:
        fields = {"id": d.id, "kind": d.kind.value, "address": d.address, "name": d.name}
        fields |= {"role": d.role, "model": d.model}
        devices.append({k: v for k, v in fields.items() if v is not None})
    data: dict[str, Any] = {"id": athlete.id, "name": athlete.name, "profile": athlete.profile}
    if athlete.rules:
        data["rules"] = dict(athlete.rules)
    if devices:
        data["devices"] = devices
    return data


def resolve_config_path(
    path: Path | str | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """``path``, else ``$REDOX_CONFIG``, else :func:`default_config_path`."""
    environ = os.environ if env is None else env
    if path is not None:
        return Path(path).expanduser()
    if environ.get(ENV_CONFIG):
        return Path(environ[ENV_CONFIG]).expanduser()
    return default_config_path()


def load_config(path: Path | str | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file (see :func:`resolve_config_path`).

    A missing file is an error that says how to create one.
    """
    file = resolve_config_path(path, env)
    try:
        text = file.read_text(encoding="utf-8-sig")  # -sig: a BOM (Notepad) is not TOML
    except FileNotFoundError:
        raise ConfigError(
            [f"file not found — create one with `redox-streamer config init --path {file}`"],
            str(file),
        ) from None
    except OSError as exc:
        raise ConfigError(
            [f"cannot read it ({exc.strerror}) — check the path and its permissions"], str(file)
        ) from exc
    except UnicodeDecodeError as exc:
        line = text_line_of(file, exc.start)
        raise ConfigError(
            [
                f"line {line}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}) — a config "
                "is TOML in UTF-8: save it as UTF-8, or is this the right file?"
            ],
            str(file),
        ) from None
    return parse_config(text, source=str(file), env=env, base_dir=file.parent)


def optional_config(path: Path | str | None = None) -> Config | None:
    """The config at ``path`` (a flag: it must exist), else the one ``$REDOX_CONFIG`` or the
    default location names when that file exists, else None — for the commands that work
    without a config (``report``, ``status``, ``import``, ``export``)."""
    if path is not None:
        return load_config(path)
    found = resolve_config_path()
    return load_config(found) if found.is_file() else None


def text_line_of(file: Path, offset: int) -> int:
    """The 1-based line of byte ``offset`` in ``file`` (for an error naming where)."""
    try:
        return file.read_bytes()[:offset].count(b"\n") + 1
    except OSError:
        return 1


def summary(config: Config) -> list[str]:
    """A human summary of ``config`` with every secret masked (``config check``)."""
    lines = [f"store: {config.store_path}"]
    m = config.mqtt
    if m is None:
        lines.append("mqtt: off (no [mqtt] section)")
    else:
        tls = ""
        if m.tls:
            unchecked = ", host name not checked" if m.tls_insecure else ""
            tls = f", TLS (ca {m.ca_file or 'system'}{unchecked})"
        lines.append(
            f"mqtt: {m.url}, MQTT {m.protocol}, base topic {m.base_topic!r}, user "
            f"{m.username or '(none)'}, password {_mask(m.password)}{tls}, Home Assistant "
            f"discovery {'on' if m.ha_discovery else 'off'}"
        )
        if m.cli_username is not None:
            lines.append(
                f"mqtt.cli: session, rpe, status and doctor log in as {m.cli_username}, "
                f"password {_mask(m.cli_password)}"
            )
    i = config.influx
    if i is None:
        lines.append("influx: off (no [influx] section)")
    elif i.api == "v1":
        lines.append(
            f"influx: {i.url} v1 /write db {i.db!r} rp {i.rp or '(default)'!r}, user "
            f"{i.username or '(none)'}, password {_mask(i.password)}, batch "
            f"{i.batch_size} / {i.flush_interval_s:g} s"
        )
    else:
        lines.append(
            f"influx: {i.url} v2 /api/v2/write org {i.org!r} bucket {i.bucket!r}, "
            f"token {_mask(i.token)}, batch {i.batch_size} / {i.flush_interval_s:g} s"
        )
    if config.team_registry is not None:
        where = "the central registry" if config.team_registry else "this file"
        lines.append(f"team: gateways and workers read athletes from {where}")
    if config.rules:
        lines.append("rules: " + ", ".join(f"{k} = {v}" for k, v in sorted(config.rules.items())))
    if not config.athletes:
        lines.append("athletes: none — add [[athletes]] tables (see `config init`)")
    for a in config.athletes:
        devices = ", ".join(
            f"{d.id} ({d.kind.value} {_model_text(d)} {d.address or d.name})" for d in a.devices
        )
        overrides = f", overrides {dict(a.rules)}" if a.rules else ""
        lines.append(
            f"athlete {a.id} ({a.name}), profile {a.profile}{overrides}: {devices or 'no devices'}"
        )
    return lines


def _model_text(device: DeviceConfig) -> str:
    models = device.device_models
    if len(models) == 1:
        return models[0].name
    return f"{' or '.join(m.name for m in models)}: the device tells when first seen"


EXAMPLE_CONFIG: Final = """\
# redox-streamer configuration (TOML). Check it with: redox-streamer config check
# Every section is optional. Without [mqtt] and [influx] results are kept in the local
# store only. Secrets may come from the environment instead of this file:
#   REDOX_MQTT_USERNAME, REDOX_MQTT_PASSWORD, REDOX_INFLUX_USERNAME,
#   REDOX_INFLUX_PASSWORD, REDOX_INFLUX_TOKEN

[store]
# SQLite file with history, alert state and the outboxes (default: user data dir).
# path = "~/.local/share/redox-streamer/redox.sqlite3"

[mqtt]
url = "mqtt://127.0.0.1:1883"          # mqtts://host:8883 for TLS
# username = "redox"
# password = "change-me"               # better: REDOX_MQTT_PASSWORD
base_topic = "redox"                   # topics: redox/<athlete>/morning, ...
# client_id = "redox-streamer-pi"     # start of the id; each process adds -host-pid-random
protocol = "3.1.1"                     # "3.1.1" (any broker) or "5"
ha_discovery = false                   # Home Assistant MQTT discovery
# ha_prefix = "homeassistant"
# keepalive_s = 30                     # 5-3600 s
# publish_timeout_s = 5                # 0.1-300 s: wait this long for a PUBACK, then reconnect
# [mqtt.cli]                           # the account `session`, `rpe`, `status` and `doctor`
# username = "redox-cli"               # log in with beside a running `run` (default: the one
# password = "change-me"               # above); the shipped mosquitto needs it (one
#                                      # connection per account). REDOX_MQTT_CLI_PASSWORD
# [mqtt.tls]                           # with mqtts:// (or to force TLS)
# ca_file = "/etc/ssl/certs/my-ca.pem" # the broker's certificate must chain to this CA;
#                                      # omit to trust the system CAs. Always verified:
#                                      # a broker that fails is refused before the login
# cert_file = "/etc/redox/client.pem"  # client certificate, if the broker asks for one
# key_file = "/etc/redox/client.key"   # its key (omit if cert_file holds it)
# insecure = false                     # true skips ONLY the host-name check (certificate
#                                      # names another host); the CA check stays on

[influx]
url = "http://127.0.0.1:8086"
api = "v1"                             # "v1": /write (InfluxDB 1.x, 2.x with DBRP, 3.x,
                                       # VictoriaMetrics); "v2": /api/v2/write
db = "redox"                           # v1
# rp = "autogen"                       # v1 retention policy (default: the database's)
# username = "redox"                   # v1
# password = "change-me"               # v1; better: REDOX_INFLUX_PASSWORD
# create_database = false              # v1: CREATE DATABASE at start if missing
# org = "my-org"                       # v2
# bucket = "redox"                     # v2
# token = "..."                        # v2; better: REDOX_INFLUX_TOKEN
batch_size = 5000                      # points per write (1-100000)
flush_interval_s = 1.0                 # write at least this often (0.01-3600 s)
# timeout_s = 10                       # 0.1-300 s

[rules]
# Threshold overrides for everyone (defaults: docs/rules.md). For example:
# rhr_creep_delta_bpm = 6              # resting HR rise that counts, bpm
# smo2_slow_recovery_s = 120           # SmO2 recovery time that is slow, s
# grip_spillover_min = 30              # grip still down after this many minutes

# [team]                               # team mode (gateway, worker)
# registry = true                      # athletes, devices and thresholds from the club's
#                                      # central registry (`redox-streamer registry push`);
#                                      # the default when this file names no
#                                      # athletes and has no [rules]

[[athletes]]
id = "alice"                           # topic segment: letters, digits, _ and -
name = "Alice"
profile = "default"                    # default | older | elite
# [athletes.rules]                     # this athlete's own overrides
# hi_spacing_h = 60

# Devices: pair them, so no address needs typing here —
#   redox-streamer scan                                   what is in range
#   redox-streamer pair add --athlete alice --kind strap  the one unpaired strap in range
# or list them here, by address (from `scan`) or by advertised name:
# [[athletes.devices]]
# kind = "strap"                       # strap | smo2 | grip | power | spo2
# address = "C4:11:22:33:44:55"        # and/or: name = "Polar H10 1A2B3C4D"
# id = "strap"                         # topic segment (default: the kind)
# model = "heart_rate"                 # which product, when the kind has several:
#                                      # grip: tindeq | activ5 (default: from the name,
#                                      # else the device tells when first seen)
# role = "left vastus lateralis"       # where it sits, when the kind does not say
"""
