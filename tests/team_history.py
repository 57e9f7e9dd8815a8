"""Weeks of history for the team simulation, made cheaply and through the real paths.

The pull-back rules need a baseline (d−35 … d−8, ≥ 14 valid mornings), so a simulation of
two live days raises no alert unless the athletes come with weeks of history. Streaming
those weeks through gateways, NATS and workers would cost minutes; a club that moves to
team mode does not do that either. It migrates: its single-box stores go into PostgreSQL
with ``redox-streamer migrate`` before the workers start. So does the simulation:

* :func:`window_scenarios` — the demo's scenarios (:mod:`streamer.demo.history`), the
  over-reaching athletes in turn shifted so that the *live* days (the last two) raise
  pull-back and warning alerts and clear some: ``over_reaching`` as the demo has it
  (``rhr_creep`` and ``rpe_power_mismatch`` raised on the last day), ``recovering`` (back
  in band for the last two days: ``hrv_downtrend`` clears on the first, the session
  warnings on the last day's normal session), ``late`` (the over-reaching week one day
  later: ``smo2_slow_recovery`` and ``hrv_downtrend`` raised live) and ``resuming`` (back
  in band for the last four days: ``rhr_creep`` clears with ``resume`` on the third
  morning in band, two of them from the migrated history);
* :func:`split_days` — each athlete's messages into the history days and the live days;
* :func:`make_store` — the history through the single-box pipeline (``th.oracle``: the
  ``App`` of ``run``) into a SQLite store; only the last ``session_days`` of the history
  keep their sessions (a session costs ~0.25 s of CPU here, a morning ~0.02 s; with
  fewer than four sessions before the live ones ``rpe_power_mismatch`` does not clear);
* :func:`migrate` — the real ``redox-streamer migrate`` of that store into PostgreSQL;
* :func:`oracle` — the single box going on from a copy of the same store with the live
  days, and :func:`store_rows`, its whole history as :func:`th.history_rows` reads
  PostgreSQL's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from streamer.demo.history import DEFAULT_DAYS, DayPlan, Scenario, scenarios
from streamer.results import AlertsPayload, Result
from streamer.team import wire
from tests import team_worker_helpers as th

ROOT = Path(__file__).resolve().parents[1]
FIRST: Final = dt.date(2026, 3, 1)
"""The first day of every athlete's history."""
LIVE_DAYS: Final = 2
"""The last days of a simulation, streamed live through gateways, NATS and workers."""
BACK_DAYS: Final = {"recovering": 2, "resuming": 4}
"""Days back in band after the over-reaching week, per variant (see the module docstring)."""
VARIANTS: Final = ("over_reaching", "recovering", "late", "resuming")
"""The over-reaching athletes' variants, in turn (the steady ones stay as the demo has them)."""

Messages = dict[str, list[wire.WireMessage]]
Rows = dict[str, list[tuple[object, ...]]]
"""History tables as :func:`tests.team_worker_helpers.history_rows` reads them."""


def window_scenarios(n_athletes: int, days: int = DEFAULT_DAYS) -> list[Scenario]:
    """``n_athletes`` scenarios of ``days`` days: the demo's, the over-reaching athletes
    (``athlete1``, ``athlete3``, …) in turn the :data:`VARIANTS` (see the module
    docstring); the steady ones as the demo has them."""
    out = []
    stock = scenarios(n_athletes, days)
    late = scenarios(n_athletes, days + 1)
    for index, scenario in enumerate(stock):
        if scenario.kind != "over_reaching":
            out.append(scenario)
            continue
        variant = VARIANTS[(index // 2) % len(VARIANTS)]
        if variant == "late":
            cut = late[index]
            out.append(dataclasses.replace(cut, kind="late", days=cut.days[:days]))
        elif variant in BACK_DAYS:
            back = scenarios(n_athletes, days - BACK_DAYS[variant])[index]
            out.append(_back_in_band(back, days, variant))
        else:
            out.append(scenario)
    return out


def _back_in_band(over: Scenario, days: int, kind: str) -> Scenario:
    """``over`` (over-reaching in its last week) followed by days back in band: the mornings
    of its normal block again (days 5… : past the demo's rejected morning on day 4), a
    session every other day like the others, with a quick SmO2 recovery and the usual
    power and RPE."""
    normal = [p for p in over.days[5:] if p.session is not None]
    back = []
    for n, day in enumerate(range(len(over.days), days)):
        source = over.days[5 + n]
        # A session every other day, ending on the last day as the demo's do.
        session = normal[n].session if (days - 1 - day) % 2 == 0 else None
        back.append(
            DayPlan(day, source.rmssd_ms, source.resting_hr_bpm, source.ectopic_rate, session, None)
        )
    return dataclasses.replace(
        over,
        kind=kind,
        description=f"over-reaching, then back in band for the last {days - len(over.days)} days",
        days=(*over.days, *back),
    )


def day_of(message: wire.WireMessage) -> int:
    """The day of ``message`` counted from :data:`FIRST` (UTC)."""
    return (dt.datetime.fromtimestamp(message.t_ns / 1e9, dt.UTC).date() - FIRST).days


def split_days(
    messages: Mapping[str, Sequence[wire.WireMessage]], history_days: int
) -> tuple[Messages, Messages]:
    """Each athlete's messages before day ``history_days`` (the history) and from it on
    (the live days)."""
    history: Messages = {}
    live: Messages = {}
    for athlete, items in messages.items():
        history[athlete] = [m for m in items if day_of(m) < history_days]
        live[athlete] = [m for m in items if day_of(m) >= history_days]
    return history, live


def prepare(
    workdir: Path,
    n_athletes: int,
    history_days: int,
    live_days: int = LIVE_DAYS,
    *,
    session_days: int = 8,
    keep_s: float | None = None,
) -> tuple[Messages, Path]:
    """``n_athletes`` athletes' :func:`window_scenarios` over ``history_days`` +
    ``live_days`` days: the history made into a single-box store in ``workdir`` (sessions
    only in its last ``session_days`` days), and the live days' messages. ``keep_s``: every
    session cut to its first ``keep_s`` record seconds (``team_sim.trim_sessions``)."""
    from tests.team_sim import trim_sessions

    plans = window_scenarios(n_athletes, history_days + live_days)
    messages = th.scenario_messages(plans, first=FIRST, sessions_from=history_days - session_days)
    if keep_s is not None:
        messages = trim_sessions(messages, keep_s)
    history, live = split_days(messages, history_days)
    store = workdir / "history.sqlite3"
    workdir.mkdir(parents=True, exist_ok=True)
    make_store(store, history)
    return live, store


def make_store(path: Path, history: Messages) -> None:
    """A single-box SQLite store at ``path`` holding ``history``, made by the single-box
    pipeline (the ``App`` that ``run`` assembles)."""
    th.oracle(history, store=str(path))


def migrate(dsn: str, store: Path) -> str:
    """``redox-streamer migrate --postgres DSN STORE`` (the real command, in a process of
    its own as an operator runs it); its output line."""
    done = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "migrate", "--postgres", dsn, str(store)],
        capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"migrate {store} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def oracle(store: Path, live: Messages, copy: Path) -> tuple[list[Result], Rows]:
    """The single box going on from a copy (at ``copy``) of the history ``store`` with the
    ``live`` messages: its durable results, and its whole history as rows
    (:func:`store_rows`)."""
    shutil.copyfile(store, copy)
    results = th.oracle(live, store=str(copy))
    return results, store_rows(copy)


def store_rows(path: Path) -> Rows:
    """A SQLite store's history tables in the shape of :func:`th.history_rows`."""

    def dumps(text: str) -> str:
        return json.dumps(json.loads(text), separators=(",", ":"), allow_nan=False)

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        morning = db.execute("SELECT athlete, date, ts_ns, data FROM morning").fetchall()
        sessions = db.execute("SELECT athlete, ts_ns, device, data FROM sessions").fetchall()
        alerts = db.execute("SELECT athlete, ts_ns, rule, state, data FROM alerts").fetchall()
    return {
        "morning": sorted((a, d, t, dumps(x)) for a, d, t, x in morning),
        "sessions": sorted((a, t, dev or "", dumps(x)) for a, t, dev, x in sessions),
        "alerts": sorted((a, t, r, s, dumps(x)) for a, t, r, s, x in alerts),
    }


def alert_events(results: Sequence[Result]) -> list[tuple[str, int, str, str]]:
    """(athlete, day from :data:`FIRST`, rule, state) of every alert event in ``results``."""
    out = []
    for r in results:
        if isinstance(r.payload, AlertsPayload):
            e = r.payload.event
            day = (dt.datetime.fromtimestamp(r.ts_ns / 1e9, dt.UTC).date() - FIRST).days
            out.append((r.athlete, day, e.rule, str(e.state)))
    return out
