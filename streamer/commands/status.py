"""``redox-streamer status``: where each athlete stands and how their devices are doing.

Per athlete, from the local store (opened read-only, so it works beside a running ``run``):
the baseline's status and days, the last morning reading and the band after it, the open
alerts with when each was raised, and where the athlete stands on pulling back
(:class:`PullBack`: "pull back since D" while a pull-back alert is open, with the end of
its week of cut volume; "resume (signals back in band since D)" for
``RESUME_SHOWN_DAYS`` after the last one cleared with the reason ``resume``; an open
``hr_grip_flat`` shows its own 48 h back-off end instead of a week of cut volume), the last
lab entry per marker (value, timing, band, date) and the open ``info`` findings (the last
session's ``power_plateau``, a newest resting GSH:GSSG draw with ``gsh_gssg_high``). Per device,
from the retained ``<base>/<athlete>/<device>/state`` topics that ``run`` publishes
(:mod:`streamer.app.device_state`) on the configured broker: connected or not, battery,
last seen — with ``<base>/bridge/state`` saying whether a ``run`` is streaming now.
Without a broker in the config, or with one that cannot be reached, the athlete part is
still shown and the device part says why it is unknown.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import sys
import textwrap
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiomqtt

from processors import physiology as ph
from processors.alerts import BACK_OFF_UNTIL_KEY
from processors.labs import LabTiming
from processors.rules import CATALOGUE
from streamer.athlete.persistence import saved_alert_book
from streamer.config import Config, MqttConfig, optional_config
from streamer.errors import CliError
from streamer.payloads import BRIDGE_OFFLINE, BRIDGE_ONLINE, decode_payload, iso_time
from streamer.results import (
    DeviceStatePayload,
    JsonValue,
    LabLatest,
    MorningPayload,
    PayloadError,
    published_name,
    to_jsonable,
)
from streamer.sinks.mqtt_connect import (
    MqttTlsError,
    describe_failure,
    mqtt_client,
    probe_topic,
    tls_context,
)
from streamer.store import Store, StoreError, default_store_path
from streamer.topics import Topics

DESCRIPTION = f"""\
Where each athlete stands, from the local store: the baseline (none, provisional or
established, and on how many valid mornings), the last morning reading and the band after
it, the open alerts with when each was raised, and "pull back since D" while a pull-back
alert is open (with the end of its week of ~40% less volume) or "resume (signals back in
band since D)" for {ph.RESUME_SHOWN_DAYS} days after the last one cleared because its signals
were back in their normal band (docs/rules.md "Resume"); an open hr_grip_flat shows the end of
its own 48 h back-off. The last lab entry per marker (value, timing, band, date), and the open
findings: the last session's power_plateau, a GSH:GSSG above 400:1 (gsh_gssg_high). Then each
device's connection, battery
and last-seen time, as `redox-streamer run` last published them (retained) on the
configured MQTT broker; `bridge offline` means no `run` is streaming now.

Works whether or not `run` is running: the store is only read.
"""

EPILOG = """\
examples:
  redox-streamer status
  redox-streamer status --athlete anna
  redox-streamer status --json | jq '.athletes[0].baseline_status'
"""

DEFAULT_BROKER_TIMEOUT_S: Final = 5.0
"""Longest wait for the broker: connecting, then the retained device states."""
WIDTH: Final = 80
LABEL: Final = 16  # the label column of the human output, in characters


def register(subparsers: Any) -> None:
    """Add the ``status`` sub-command."""
    parser = subparsers.add_parser(
        "status",
        help="athletes' baselines, alerts and devices now",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--athlete", metavar="ID", help="only this athlete (default: all)")
    parser.add_argument("--json", action="store_true", help="one JSON object, units in names")
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="config: athletes, broker, store (default: $REDOX_CONFIG or the default "
        "config file, if there is one)",
    )
    parser.add_argument(
        "--store",
        type=Path,
        metavar="PATH",
        help=f"SQLite store (default: the config's, else {default_store_path()})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_BROKER_TIMEOUT_S,
        metavar="S",
        help=f"longest wait for the broker, s (default {DEFAULT_BROKER_TIMEOUT_S:g})",
    )
    parser.set_defaults(handler=run)


# --- what is shown -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """An open alert: its rule, severity, what was seen and since when (ns since the epoch)."""

    rule: str
    severity: str
    title: str
    message: str
    since_ts_ns: int
    volume_cut_until: str | None = None  # pull-back: the raised day + 7 (UTC date)
    back_off_until_ts_ns: int | None = None  # hr_grip_flat: the end of its own back-off


@dataclass(frozen=True, slots=True)
class Finding:
    """An open ``info`` finding: its rule, what was seen, and the UTC day of the result."""

    rule: str
    title: str
    message: str
    date: str


@dataclass(frozen=True, slots=True)
class PullBack:
    """Where an athlete stands on pulling back (dates UTC, ``YYYY-MM-DD``).

    ``state`` ``pull_back``: pull-back alerts (``rules``) are open, the first raised on
    ``since``; ``volume_cut_until`` is the latest end of their weeks of cut volume,
    ``back_off_until_ts_ns`` that of a back-off window of a rule's own (``hr_grip_flat``).
    ``resume``: no pull-back alert is open and ``rules`` cleared with the reason
    ``resume`` in the last ``RESUME_SHOWN_DAYS``, the last on ``cleared``; their signals
    are back in band since ``since`` (the latest of theirs); shown until ``shown_until``.
    """

    state: str
    since: str
    rules: tuple[str, ...]
    volume_cut_until: str | None = None
    cleared: str | None = None
    shown_until: str | None = None
    back_off_until_ts_ns: int | None = None


@dataclass(frozen=True, slots=True)
class DeviceState:
    """A device's retained state: its id, the payload, and when it was published (ns)."""

    device: str
    ts_ns: int
    state: DeviceStatePayload


@dataclass
class Broker:
    """What the broker said: ``reachable`` False with ``problem`` when it could not be
    asked; ``bridge`` ``online``/``offline`` (None: never published); the device states."""

    configured: bool
    url: str | None = None
    reachable: bool = False
    problem: str | None = None
    bridge: str | None = None
    states: dict[str, list[DeviceState]] = field(default_factory=dict)  # by athlete id


@dataclass(frozen=True, slots=True)
class AthleteStatus:
    """One athlete's part, from the store (``last``: the last morning reading)."""

    athlete: str
    name: str | None
    last: MorningPayload | None
    last_ts_ns: int | None
    alerts: tuple[OpenAlert, ...]
    devices: tuple[str, ...]  # configured ids, shown even before any state was published
    pull_back: PullBack | None = None  # None: neither pulling back nor resuming
    labs: tuple[tuple[str, LabLatest], ...] = ()  # (marker, its last entry), by marker
    findings: tuple[Finding, ...] = ()


def athlete_status(
    store: Store,
    athlete: str,
    name: str | None,
    devices: Sequence[str],
    now_ns: int | None = None,
) -> AthleteStatus:
    """``athlete``'s part from ``store`` (read-only), as of ``now_ns`` (default: now)."""
    rows = store.morning_history(athlete)
    last = rows[-1] if rows else None
    alerts = open_alerts(store, athlete)
    now = time.time_ns() if now_ns is None else now_ns
    return AthleteStatus(
        athlete,
        name,
        last.payload if last is not None else None,
        last.ts_ns if last is not None else None,
        alerts,
        tuple(devices),
        pull_back_status(store, athlete, alerts, now),
        last_labs(store, athlete),
        open_findings(store, athlete),
    )


def last_labs(store: Store, athlete: str) -> tuple[tuple[str, LabLatest], ...]:
    """The entry taken last of each lab marker (by sample time), ordered by marker."""
    latest: dict[str, LabLatest] = {}
    for row in store.lab_entries(athlete):  # oldest first: the last one per marker wins
        latest[row.payload.marker] = LabLatest.of(row.payload, row.ts_ns)
    return tuple(sorted(latest.items()))


def open_findings(store: Store, athlete: str) -> tuple[Finding, ...]:
    """The ``info`` findings that stand now: the last session's ``power_plateau`` and a
    ``gsh_gssg_high`` on the newest resting GSH:GSSG draw (findings are never alerts, so
    the alert book does not hold them: the latest result that decides each does)."""
    out: list[Finding] = []
    sessions = store.sessions(athlete)
    if sessions and sessions[-1].payload.power_plateau:
        last = sessions[-1]
        change = last.payload.power_change_pct
        text = (
            f"power at matched effort flat ({change:+.1f}%) over "
            f"{ph.POWER_PLATEAU_WINDOW_DAYS} days of logged sessions"
            if change is not None
            else f"power at matched effort flat over {ph.POWER_PLATEAU_WINDOW_DAYS} days"
        )
        out.append(Finding("power_plateau", _title("power_plateau"), text, _day(last.ts_ns)))
    resting = [
        row
        for row in store.lab_entries(athlete)
        if row.payload.marker == "gsh_gssg"
        and row.payload.timing is not None
        and LabTiming(row.payload.timing).resting
    ]
    if resting and resting[-1].payload.finding == "gsh_gssg_high":
        lab = resting[-1].payload
        text = f"GSH:GSSG {lab.gsh_gssg_ratio:.0f}:1 ({lab.timing}): likely over-supplemented"
        out.append(Finding("gsh_gssg_high", _title("gsh_gssg_high"), text, _day(resting[-1].ts_ns)))
    return tuple(out)


def pull_back_status(
    store: Store, athlete: str, alerts: Sequence[OpenAlert], now_ns: int
) -> PullBack | None:
    """``pull_back`` while a pull-back alert is open; else ``resume`` when pull-back alerts
    cleared with the reason ``resume`` within ``RESUME_SHOWN_DAYS`` before ``now_ns``."""
    pulling = [a for a in alerts if a.severity == "pull_back"]
    if pulling:
        cuts = [a.volume_cut_until for a in pulling if a.volume_cut_until]
        back_offs = [a.back_off_until_ts_ns for a in pulling if a.back_off_until_ts_ns]
        return PullBack(
            "pull_back",
            _day(min(a.since_ts_ns for a in pulling)),
            tuple(a.rule for a in pulling),
            volume_cut_until=max(cuts) if cuts else None,
            back_off_until_ts_ns=max(back_offs) if back_offs else None,
        )
    shown_from = now_ns - ph.RESUME_SHOWN_DAYS * 86_400 * 1_000_000_000
    resumed = [
        (row.ts_ns, row.payload)
        for row in store.alerts(athlete, since_ns=shown_from, until_ns=now_ns + 1)
        if row.state == "cleared"
    ]
    resumed = [
        (t, p) for t, p in resumed if p.severity == "pull_back" and p.clear_reason == "resume"
    ]
    if not resumed:
        return None
    last_ns = max(t for t, _ in resumed)
    since_ns = max(
        p.resume_since_ts_ns if p.resume_since_ts_ns is not None else t for t, p in resumed
    )
    shown_until = last_ns + ph.RESUME_SHOWN_DAYS * 86_400 * 1_000_000_000
    return PullBack(
        "resume",
        _day(since_ns),
        tuple(dict.fromkeys(p.rule for _, p in resumed)),
        cleared=_day(last_ns),
        shown_until=_day(shown_until),
    )


def _day(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC).date().isoformat()


def open_alerts(store: Store, athlete: str) -> tuple[OpenAlert, ...]:
    """The open alerts: the alert book ``run`` keeps, else the raised events not cleared."""
    book = saved_alert_book(store, athlete)
    if book is not None:  # else the event history tells what is open
        return tuple(
            OpenAlert(
                a.rule_id,
                a.severity.value,
                _title(a.rule_id),
                a.message,
                a.raised_at_ns,
                None if (cut := a.volume_cut_until()) is None else cut.isoformat(),
                _back_off_ns(a.evidence),
            )
            for a in book.open_alerts()
        )
    open_by_rule: dict[str, OpenAlert] = {}
    for row in store.alerts(athlete):
        if row.state == "cleared":
            open_by_rule.pop(row.rule, None)
        elif row.state == "raised":
            alert = row.payload
            since = alert.raised_ts_ns if alert.raised_ts_ns is not None else row.ts_ns
            open_by_rule[row.rule] = OpenAlert(
                row.rule,
                alert.severity,
                _title(row.rule),
                alert.message,
                since,
                alert.volume_cut_until,
                _back_off_ns(alert.evidence),
            )
    return tuple(open_by_rule[r] for r in sorted(open_by_rule))


def _back_off_ns(evidence: Mapping[str, float]) -> int | None:
    """The end of a rule's own back-off window (its ``back_off_until_s`` evidence), ns."""
    until_s = evidence.get(BACK_OFF_UNTIL_KEY)
    return None if until_s is None else round(until_s * 1e9)


def _title(rule: str) -> str:
    spec = CATALOGUE.get(rule)
    return spec.title if spec is not None else rule


# --- the broker ----------------------------------------------------------------------------


async def read_broker(config: MqttConfig | None, timeout_s: float) -> Broker:
    """The retained device states and bridge state on ``config``'s broker.

    Knowing when every retained message has arrived: after subscribing, this client
    publishes a probe to itself; the broker delivers a client's messages in order, so the
    probe comes after the retained ones. ``timeout_s`` bounds the whole exchange (a broker
    whose ACL drops the probe: what arrived by then)."""
    if config is None:
        return Broker(configured=False)
    # The [mqtt.cli] account: never `run`'s own, which a broker tying client ids to
    # accounts (the shipped mosquitto) would take from the running `run`.
    config = config.for_cli()
    broker = Broker(configured=True, url=config.url)
    topics = Topics(config.base_topic, config.ha_prefix)
    probe = probe_topic(topics.base, "status")
    client_id = f"redox-status-{uuid.uuid4().hex[:8]}"  # never the streamer's own id
    try:
        tls = tls_context(config)
        client = mqtt_client(config, tls=tls, timeout_s=timeout_s, identifier=client_id)
        async with asyncio.timeout(timeout_s):
            async with client:
                broker.reachable = True
                await client.subscribe(topics.device_states, qos=1)
                await client.subscribe(topics.bridge_state, qos=1)
                await client.subscribe(probe, qos=1)
                await client.publish(probe, b"", qos=1)
                async for message in client.messages:
                    topic = str(message.topic)
                    if topic == probe:
                        break
                    payload = message.payload
                    data = payload if isinstance(payload, bytes) else str(payload).encode()
                    if topic == topics.bridge_state:
                        broker.bridge = data.decode(errors="replace")
                    elif data:  # an empty retained message clears the topic
                        _add_state(broker, topic, data)
    except TimeoutError:
        broker.problem = (
            f"device states may be incomplete: the broker did not echo this client's probe "
            f"within {timeout_s:g} s (does its ACL let {config.username or 'this user'} use "
            f"{topics.base}/bridge/probe/#?)"
            if broker.reachable
            else f"no answer within {timeout_s:g} s"
        )
    except (aiomqtt.MqttError, OSError, MqttTlsError) as exc:
        broker.reachable = False
        broker.problem = describe_failure(config, exc)[:200]
    return broker


def _add_state(broker: Broker, topic: str, data: bytes) -> None:
    try:
        body = decode_payload(data)
        state = DeviceStatePayload.from_fields(body)
    except (ValueError, PayloadError):
        return  # not a redox device state (another program on the topic): not ours to show
    athlete, device, ts_ns = body.get("athlete"), body.get("device"), body.get("ts_ns")
    if isinstance(athlete, str) and isinstance(ts_ns, int):
        name = device if isinstance(device, str) else topic.split("/")[-2]
        broker.states.setdefault(athlete, []).append(DeviceState(name, ts_ns, state))


# --- the command ---------------------------------------------------------------------------


def _config(args: argparse.Namespace) -> Config:
    return optional_config(args.config) or Config()


def run(args: argparse.Namespace) -> int:
    """Entry point of ``redox-streamer status``."""
    if not args.timeout > 0:
        raise CliError(f"--timeout {args.timeout:g}: give seconds > 0")
    config = _config(args)
    store_path = Path(args.store or config.store_path).expanduser()
    if not store_path.is_file():
        raise CliError(
            f"--store {store_path}: no such store; `run`, `morning` or `import` fill one"
        )
    configured = {a.id: a for a in config.athletes}
    now_ns = time.time_ns()
    try:
        with Store(store_path, read_only=True) as store:
            known = list(dict.fromkeys([*configured, *store.athletes()]))
            if args.athlete is not None and args.athlete not in known:
                raise CliError(
                    f"--athlete {args.athlete}: not in the config nor in {store_path}; "
                    f"known: {', '.join(known) or 'none yet'}"
                )
            ids = [args.athlete] if args.athlete is not None else known
            athletes = []
            for athlete_id in ids:
                cfg = configured.get(athlete_id)
                devices = [d.id for d in cfg.devices] if cfg is not None else []
                athletes.append(
                    athlete_status(store, athlete_id, cfg.name if cfg else None, devices, now_ns)
                )
    except StoreError as exc:
        raise CliError(f"--store {store_path}: {exc}") from None
    broker = asyncio.run(read_broker(config.mqtt, args.timeout))
    if args.json:
        print(json.dumps(as_json(athletes, broker, store_path, now_ns), indent=2))
    else:
        sys.stdout.write(as_text(athletes, broker, now_ns))
    return 0


# --- JSON ----------------------------------------------------------------------------------


def as_json(
    athletes: Sequence[AthleteStatus], broker: Broker, store_path: Path, now_ns: int
) -> dict[str, JsonValue]:
    """The whole status as one JSON object (units in the names; see ``--help``)."""
    return {
        "store": str(store_path),
        "broker": {
            "configured": broker.configured,
            "url": broker.url,
            "reachable": broker.reachable,
            "problem": broker.problem,
            "bridge": broker.bridge,
        },
        "athletes": [_athlete_json(a, broker, now_ns) for a in athletes],
    }


def _athlete_json(a: AthleteStatus, broker: Broker, now_ns: int) -> dict[str, JsonValue]:
    m = a.last
    reading: JsonValue = None
    band: JsonValue = None
    if m is not None:
        reading = {
            "date": m.date,
            "ts_ns": a.last_ts_ns,
            "accepted": m.accepted,
            "reject_reason": m.reject_reason,
            "ln_rmssd": _num(m.ln_rmssd),
            "rmssd_ms": _num(m.rmssd_ms),
            "resting_hr_bpm": _num(m.resting_hr_bpm),
            "source": m.source,
        }
        if m.ln_rmssd_band_low is not None and m.ln_rmssd_band_high is not None:
            band = {
                "date": m.date,
                "ln_rmssd_band_low": _num(m.ln_rmssd_band_low),
                "ln_rmssd_band_high": _num(m.ln_rmssd_band_high),
                "ln_rmssd_baseline_mean": _num(m.ln_rmssd_baseline_mean),
            }
    devices: JsonValue = None
    if broker.reachable:
        devices = [
            {
                "device": d.device,
                "state_ts_ns": d.ts_ns,
                **d.state.fields(),
                "last_seen_age_s": _age_s(d.state.last_seen_ts_ns, now_ns),
            }
            for d in _device_states(a, broker)
        ]
        devices += [
            {
                "device": name,
                "state_ts_ns": None,
                **dict.fromkeys(_STATE_KEYS),
                "connection": "unknown",  # no state published for it yet
                "last_seen_age_s": None,
            }
            for name in _silent(a, broker)
        ]
    return {
        "athlete": a.athlete,
        "name": a.name,
        "baseline_status": m.baseline_status if m is not None else "none",
        "baseline_days": m.baseline_days if m is not None else 0,
        "baseline_note": m.baseline_note if m is not None else None,
        "last_reading": reading,
        "band": band,
        "open_alerts": [
            {
                "rule": x.rule,
                "severity": x.severity,
                "title": x.title,
                "message": x.message,
                "since_ts_ns": x.since_ts_ns,
                "since_time": iso_time(x.since_ts_ns),
                "volume_cut_until": x.volume_cut_until,
                "back_off_until": _iso_or_none(x.back_off_until_ts_ns),
            }
            for x in a.alerts
        ],
        "pull_back": None if a.pull_back is None else _pull_back_json(a.pull_back),
        "labs": {marker: to_jsonable(lab) for marker, lab in a.labs},
        "findings": [
            {"rule": f.rule, "title": f.title, "message": f.message, "date": f.date}
            for f in a.findings
        ],
        "devices": devices,
    }


def _pull_back_json(p: PullBack) -> dict[str, JsonValue]:
    return {
        "state": p.state,
        "since_date": p.since,
        "rules": list(p.rules),
        "volume_cut_until": p.volume_cut_until,
        "back_off_until": _iso_or_none(p.back_off_until_ts_ns),
        "cleared_date": p.cleared,
        "shown_until": p.shown_until,
        "text": pull_back_text(p),
    }


def pull_back_text(p: PullBack) -> str:
    """One line: "pull back since D …" or "resume (signals back in band since D) …"."""
    rules = ", ".join(p.rules)
    if p.state == "pull_back":
        cut = (
            f"; cut volume ~{ph.PULL_BACK_VOLUME_CUT:.0%} until {p.volume_cut_until}"
            if p.volume_cut_until
            else ""
        )
        if p.back_off_until_ts_ns is not None:
            cut += f"; back off intensity until {_when(p.back_off_until_ts_ns)}"
        return f"pull back since {p.since} ({rules}){cut}"
    return f"resume (signals back in band since {p.since}), slowly: {rules} cleared {p.cleared}"


def _iso_or_none(ts_ns: int | None) -> str | None:
    return None if ts_ns is None else iso_time(ts_ns)


_STATE_KEYS: Final = tuple(published_name(f) for f in dataclasses.fields(DeviceStatePayload))


def _num(value: float | None) -> float | None:
    return None if value is None or value != value else round(value, 4)


def _age_s(ts_ns: int | None, now_ns: int) -> float | None:
    return None if ts_ns is None else round(max(0, now_ns - ts_ns) / 1e9, 1)


def _device_states(a: AthleteStatus, broker: Broker) -> list[DeviceState]:
    """The athlete's device states, configured devices first, newest state per device."""
    latest: dict[str, DeviceState] = {}
    for d in broker.states.get(a.athlete, ()):
        if d.device not in latest or d.ts_ns > latest[d.device].ts_ns:
            latest[d.device] = d
    order = {name: i for i, name in enumerate(a.devices)}
    return sorted(latest.values(), key=lambda d: (order.get(d.device, len(order)), d.device))


def _silent(a: AthleteStatus, broker: Broker) -> list[str]:
    """Configured devices without any published state."""
    seen = {d.device for d in broker.states.get(a.athlete, ())}
    return [name for name in a.devices if name not in seen]


# --- text ----------------------------------------------------------------------------------


def as_text(athletes: Sequence[AthleteStatus], broker: Broker, now_ns: int) -> str:
    """The whole status for a terminal, readable at 80 columns."""
    out: list[str] = []
    if not athletes:
        out.append("no athletes in the config or the store yet")
    for a in athletes:
        if out:
            out.append("")
        out.extend(_athlete_text(a, broker, now_ns))
    out.append("")
    out.extend(_wrap("broker", _broker_line(broker)))
    return "\n".join(out) + "\n"


def _wrap(label: str, text: str) -> list[str]:
    """``label`` then ``text`` wrapped to :data:`WIDTH`, continuation lines indented."""
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=f"  {label:<{LABEL - 2}}",
        subsequent_indent=" " * LABEL,
        break_on_hyphens=False,
    ) or [f"  {label}"]


def _athlete_text(a: AthleteStatus, broker: Broker, now_ns: int) -> list[str]:
    out = [a.athlete + (f" — {a.name}" if a.name and a.name != a.athlete else "")]
    m = a.last
    if m is None:
        out.extend(_wrap("baseline", "none: no morning reading stored yet"))
    else:
        days = f"{m.baseline_days} valid morning{'s' if m.baseline_days != 1 else ''}"
        out.extend(_wrap("baseline", f"{m.baseline_status}, {days}"))
        if m.baseline_note:
            out.extend(_wrap("", m.baseline_note))
        out.extend(_wrap("last reading", _reading_text(m)))
        if m.ln_rmssd_band_low is not None and m.ln_rmssd_band_high is not None:
            today = dt.datetime.fromtimestamp(now_ns / 1e9, tz=dt.UTC).date().isoformat()
            when = "today" if m.date == today else m.date
            text = (
                f"lnRMSSD {m.ln_rmssd_band_low:.2f}–{m.ln_rmssd_band_high:.2f} "
                f"({m.baseline_status}, {when})"
            )
            if m.accepted and m.ln_rmssd is not None and m.ln_rmssd == m.ln_rmssd:
                low, high = m.ln_rmssd_band_low, m.ln_rmssd_band_high
                where = "below" if m.ln_rmssd < low else "above" if m.ln_rmssd > high else "in"
                text += f": the reading is {where} it"
            out.extend(_wrap("band", text))
        else:
            out.extend(_wrap("band", "none yet"))
    if a.pull_back is not None:
        out.extend(_wrap("training", pull_back_text(a.pull_back)))
    if not a.alerts:
        out.extend(_wrap("alerts", "none open"))
    for i, x in enumerate(a.alerts):
        text = f"{x.rule} ({x.severity}) since {_when(x.since_ts_ns)}: {x.message}"
        out.extend(_wrap("alerts" if i == 0 else "", text))
    for i, f in enumerate(a.findings):
        out.extend(_wrap("findings" if i == 0 else "", f"{f.rule} (info, {f.date}): {f.message}"))
    for i, (marker, lab) in enumerate(a.labs):
        out.extend(_wrap("labs" if i == 0 else "", _lab_text(marker, lab)))
    out.extend(_devices_text(a, broker, now_ns))
    return out


_LAB_UNITS: Final = {"gsh_gssg": ":1", "droms": " CARR U"}


def _lab_text(marker: str, lab: LabLatest) -> str:
    """``gsh_gssg 180:1 fasted, trained (2026-11-03)``; the dipstick by its band alone."""
    if marker == "lipid_dipstick" or lab.value is None:
        value = ""
    else:
        value = f" {lab.value:g}{_LAB_UNITS.get(marker, '')}"
    timing = f" {lab.timing}" if lab.timing else ""
    return f"{marker}{value}{timing}, {lab.band or 'no band'} ({lab.date})"


def _reading_text(m: MorningPayload) -> str:
    parts = [f"{m.date}:"]
    if m.ln_rmssd is not None and m.ln_rmssd == m.ln_rmssd:
        rmssd = f" (RMSSD {m.rmssd_ms:.0f} ms)" if m.rmssd_ms is not None else ""
        parts.append(f"lnRMSSD {m.ln_rmssd:.2f}{rmssd},")
    if m.resting_hr_bpm is not None and m.resting_hr_bpm == m.resting_hr_bpm:
        parts.append(f"resting HR {m.resting_hr_bpm:.0f} bpm,")
    parts.append("accepted" if m.accepted else f"REJECTED ({m.reject_reason or 'quality'})")
    if m.source != "rr":
        parts.append(f"[from {m.source}]")
    return " ".join(parts)


def _devices_text(a: AthleteStatus, broker: Broker, now_ns: int) -> list[str]:
    if not broker.reachable:
        return _wrap("devices", "unknown (see broker below)")
    states = _device_states(a, broker)
    silent = _silent(a, broker)
    if not states and not silent:
        return _wrap("devices", "none published (no `run` has streamed this athlete)")
    out: list[str] = []
    for i, d in enumerate(states):
        out.extend(_wrap("devices" if i == 0 else "", _device_text(d, now_ns)))
    for j, name in enumerate(silent):
        label = "devices" if not states and j == 0 else ""
        out.extend(_wrap(label, f"{name}: no state published yet"))
    return out


def _device_text(d: DeviceState, now_ns: int) -> str:
    s = d.state
    battery = f"battery {s.battery_pct}%" if s.battery_pct is not None else "battery –"
    seen = (
        f"last seen {_ago(s.last_seen_ts_ns, now_ns)}"
        if s.last_seen_ts_ns is not None
        else "never seen"
    )
    connection = s.connection
    if connection == "stopped":
        connection += f" {_ago(d.ts_ns, now_ns)}"  # when `run` ended
    text = f"{d.device}: {connection}, {battery}, {seen}"
    if s.problem:
        text += f" — {s.problem}"
    return text


def _ago(ts_ns: int, now_ns: int) -> str:
    age = max(0.0, (now_ns - ts_ns) / 1e9)
    if age < 120:
        return f"{age:.0f} s ago"
    if age < 2 * 3600:
        return f"{age / 60:.0f} min ago"
    if age < 2 * 86400:
        return f"{age / 3600:.0f} h ago"
    return f"on {_when(ts_ns)}"


def _when(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / 1e9, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _broker_line(broker: Broker) -> str:
    if not broker.configured:
        return "no broker configured: device state unknown (add [mqtt] to the config)"
    if not broker.reachable:
        return f"broker unreachable: device state unknown ({broker.url}: {broker.problem})"
    if broker.bridge == BRIDGE_ONLINE.decode():
        bridge = "a `run` is streaming (bridge online)"
    elif broker.bridge == BRIDGE_OFFLINE.decode():
        bridge = "no `run` is streaming (bridge offline): device states are the last ones"
    else:
        bridge = "no `run` has published here yet"
    return f"{broker.url}: {bridge}" + (f"; {broker.problem}" if broker.problem else "")
