"""Team-mode test helpers: emulated athletes' days as wire messages, the single-box oracle,
publishing to the stream, and reading what a worker wrote to PostgreSQL.

The days are the demo's scenarios (:mod:`streamer.demo.history`): a morning reading and,
every other day, a training session (strap, Moxy, power meter), each device record encoded
back to its characteristic's bytes as a gateway forwards it. Grip tests are left out (the
dynamometer's records are batched by its codec, not one per sample).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

from devices.codecs import CODECS
from devices.recording import RecordedNotification, decode_notification
from devices.records import HeartRateSample, PowerSample, SmO2Sample
from streamer.app.assembly import App
from streamer.app.commands_in import COMMAND_DEVICE
from streamer.athlete.events import (
    GripPhase,
    MorningEnd,
    MorningStart,
    SessionEnd,
    SessionStart,
)
from streamer.config import Config
from streamer.demo.history import Scenario, day_records, scenarios
from streamer.payloads import encode_payload
from streamer.results import Result
from streamer.team import wire
from streamer.topics import Topics

_CHARS = {HeartRateSample: "2a37", SmO2Sample: "moxy", PowerSample: "2a63"}
_MARKERS = (MorningStart, MorningEnd, SessionStart, SessionEnd)


def athlete_days(
    n_athletes: int, days: int, *, first: dt.date = dt.date(2026, 3, 1), sessions: bool = True
) -> dict[str, list[wire.WireMessage]]:
    """Per athlete, ``days`` days of wire messages in record-time order (without
    ``sessions``: the morning readings only)."""
    return scenario_messages(scenarios(n_athletes, days), first=first, with_sessions=sessions)


def scenario_messages(
    plans: Sequence[Scenario],
    *,
    first: dt.date = dt.date(2026, 3, 1),
    with_sessions: bool = True,
    sessions_from: int = 0,
) -> dict[str, list[wire.WireMessage]]:
    """Per athlete of ``plans``, its days from ``first`` on as wire messages in record-time
    order (without ``with_sessions``, or on the days before ``sessions_from``: the morning
    readings only)."""
    out: dict[str, list[wire.WireMessage]] = {}
    for scenario in plans:
        dates = [first + dt.timedelta(days=d) for d in range(len(scenario.days))]
        messages: list[wire.WireMessage] = []
        for n, (plan, day) in enumerate(zip(scenario.days, dates, strict=True)):
            sessions = with_sessions and n >= sessions_from
            for device, record in day_records(scenario, plan, day):
                if not sessions and isinstance(record, SessionStart | GripPhase):
                    break  # mornings only: nothing after the reading
                if isinstance(record, _MARKERS):
                    if not sessions and isinstance(record, SessionStart | SessionEnd):
                        continue
                    messages.append(record)
                    continue
                char = _CHARS.get(type(record))
                if char is None or (not sessions and char != "2a37"):
                    continue
                data = CODECS[char].encode(record)  # type: ignore[arg-type]
                t_ns = int(record.t_ns)  # type: ignore[attr-defined]
                messages.append(RecordedNotification(t_ns, device, char, data))
        out[scenario.athlete] = messages
    return out


def oracle(
    messages: dict[str, list[wire.WireMessage]],
    config: Config | None = None,
    store: str = ":memory:",
    snapshots: dict[str, Any] | None = None,
) -> list[Result]:
    """Durable results of the single-box pipeline (an in-memory SQLite store, or the one at
    ``store``) for the same messages: the notifications decoded by their codecs, device
    events' records as the driver hands them over, the markers as commands are, and a
    grant of a device granted before as the reconnection it is
    (:func:`streamer.team.wire.handover_gap`). The messages are those a worker accepts:
    filter another gateway's records out first. ``snapshots`` receives each athlete's
    :class:`~streamer.athlete.snapshot.AthleteSnapshot` at the end (battery, gaps)."""
    durable: list[Result] = []

    async def run() -> None:
        with App.from_config(config or Config(), store=store) as app:
            for athlete in messages:
                app.athlete(athlete, live=False)
            pipeline = app.pipeline(list(messages), on_result=lambda r: durable.append(r))
            task = asyncio.create_task(pipeline.run())
            granted: set[tuple[str, str]] = set()
            for athlete, items in messages.items():
                for message in items:
                    if isinstance(message, RecordedNotification):
                        record: Any = decode_notification(message)
                        await pipeline.put(athlete, message.device, record)
                    elif isinstance(message, wire.DeviceEvent):
                        await pipeline.put(athlete, message.device, message.record)
                    elif isinstance(message, wire.LeaseGranted):
                        if (athlete, message.device) in granted:
                            gap = wire.handover_gap(athlete, message)
                            await pipeline.put(athlete, message.device, gap)
                        granted.add((athlete, message.device))
                    else:
                        await pipeline.put(athlete, COMMAND_DEVICE, message)
            await pipeline.join()
            pipeline.stop()
            await task
            if snapshots is not None:
                snapshots.update({a: app.states[a].snapshot for a in messages})

    asyncio.run(run())
    return [r for r in durable if not r.kind.is_live]


def result_key(result: Result) -> tuple[str, str, str, int, str]:
    """What makes two results the same: kind, athlete, device, time and fields."""
    import json

    fields = json.dumps(dict(result.fields), sort_keys=True, allow_nan=False)
    return (result.kind.value, result.athlete, result.device or "", result.ts_ns, fields)


async def publish(
    js: Any,
    messages: dict[str, list[wire.WireMessage]],
    *,
    gateway: str = "gw1",
    interleave: bool = True,
    offset: int = 0,
    headers: Iterable[tuple[str, str]] = (),
) -> int:
    """Publish every athlete's messages to ``redox.raw.<athlete>`` (round robin over the
    athletes when ``interleave``), message ids ``<gateway>:1:<offset + n>``; returns how
    many."""
    queues = {a: list(m) for a, m in messages.items()}
    order: list[tuple[str, wire.WireMessage]] = []
    if interleave:
        while any(queues.values()):
            for athlete, items in queues.items():
                if items:
                    order.append((athlete, items.pop(0)))
    else:
        order = [(a, m) for a, items in queues.items() for m in items]
    acks = []
    for n, (athlete, message) in enumerate(order):
        hdrs = {wire.GATEWAY_HEADER: gateway, wire.MSG_ID_HEADER: f"{gateway}:1:{offset + n}"}
        hdrs.update(headers)
        acks.append(js.publish(wire.raw_subject(athlete), wire.encode(message), headers=hdrs))
        if len(acks) >= 256:
            await asyncio.gather(*acks)
            acks = []
    await asyncio.gather(*acks)
    return len(order)


async def ensure_stream(js: Any) -> None:
    """The raw stream and lease bucket, as a gateway makes them."""
    from streamer.team.stream import ensure_stream as make

    await make(js)


def history_rows(dsn: str) -> dict[str, list[tuple[object, ...]]]:
    """The worker's history tables, sorted (athlete, time/date, device, data)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass('alerts')").fetchone() == (None,):
            return {"morning": [], "sessions": [], "alerts": []}  # no worker started yet
        return {
            "morning": conn.execute(
                "SELECT athlete, date, ts_ns, data FROM morning ORDER BY 1, 2"
            ).fetchall(),
            "sessions": conn.execute(
                "SELECT athlete, ts_ns, device, data FROM sessions ORDER BY 1, 2, 3"
            ).fetchall(),
            "alerts": conn.execute(
                "SELECT athlete, ts_ns, rule, state, data FROM alerts ORDER BY 1, 2, 3, 4"
            ).fetchall(),
        }


def oracle_rows(results: Sequence[Result]) -> dict[str, list[tuple[object, ...]]]:
    """The oracle's results as the worker's history rows (:func:`history_rows`)."""
    import json

    from streamer.team.pg_store import PgStore  # noqa: F401  (the same row shapes)

    def dumps(data: object) -> str:
        return json.dumps(data, separators=(",", ":"), allow_nan=False)

    morning, sessions, alerts = [], [], []
    for r in results:
        p = r.payload
        from streamer.results import AlertsPayload, MorningPayload, SessionPayload

        if isinstance(p, MorningPayload):
            day = p.date or dt.datetime.fromtimestamp(r.ts_ns / 1e9, dt.UTC).date().isoformat()
            morning.append((r.athlete, day, r.ts_ns, dumps(dict(r.fields))))
        elif isinstance(p, SessionPayload):
            sessions.append((r.athlete, r.ts_ns, r.device or "", dumps(dict(r.fields))))
        elif isinstance(p, AlertsPayload):
            e = p.event
            alerts.append((r.athlete, r.ts_ns, e.rule, e.state, dumps(e.fields())))
    # A morning of the same date and a session of the same key replace the earlier row.
    by_day = {(a, d): (a, d, t, x) for a, d, t, x in morning}
    by_session = {(a, t, dev): (a, t, dev, x) for a, t, dev, x in sessions}
    return {
        "morning": sorted(by_day.values()),
        "sessions": sorted(by_session.values()),
        "alerts": sorted(alerts),
    }


def expected_messages(results: Sequence[Result]) -> set[tuple[str, str]]:
    """(topic, payload without seq) of every durable result, as MQTT carries it."""
    topics = Topics()
    out = set()
    for r in results:
        body = json.loads(encode_payload(r, 0))
        body.pop("seq")
        out.add((topics.for_result(r), json.dumps(body, sort_keys=True)))
    return out


class SeqRule:
    """Durable results as a consumer following ``docs/topics.md``'s ``seq`` rule keeps them
    — (topic, payload without ``seq``), a resend with the same ``seq`` dropped — and the
    facts: resends, resends that differed, results under a second seq (duplicates), seqs
    going back."""

    def __init__(self) -> None:
        self.kept: set[tuple[str, str]] = set()
        self.facts = {"resends": 0, "changed_resends": 0, "backwards": 0, "doubles": 0}
        self._last: dict[str, int] = {}
        self._seen: dict[tuple[str, int], bytes] = {}

    def take(self, topic: str, payload: bytes, body: dict[str, object], seq: int) -> None:
        """One durable message: ``body`` is its JSON without ``seq``."""
        if (topic, seq) in self._seen:
            self.facts["resends"] += 1
            self.facts["changed_resends"] += self._seen[(topic, seq)] != payload
            return
        if seq <= self._last.get(topic, -1):
            self.facts["backwards"] += 1
        self._last[topic] = seq
        self._seen[(topic, seq)] = payload
        key = (topic, json.dumps(body, sort_keys=True))
        self.facts["doubles"] += key in self.kept
        self.kept.add(key)
