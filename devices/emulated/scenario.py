"""The emulated world's scenario: what each emulated athlete's body does, day by day.

A scenario file (TOML, ``run --emulated --emulated-scenario FILE``) gives per athlete the
physiological state of a day, which the emulators then produce as ordinary GATT
notifications for the production drivers: the chest strap's heart rate and RMSSD, the
Moxy's recovery time constant and the effort schedule it and the power meter share, the
power meter's effort and rest watts, and the grip dynamometer's MVC and its post-session
drop::

    # Every day unless a day says otherwise.
    [athletes.ann]
    hr_bpm = 52                 # the strap's mean heart rate (bpm)
    rmssd_ms = 85               # … and its beat-to-beat variability (RMSSD, ms)

    [athletes.ann.days.0]       # 0: the day the emulated clock starts in; -1 the day before;
    hr_bpm = 60                 # or an ISO date ("2026-12-01")
    rmssd_ms = 40
    smo2_recovery_tau_s = 60    # SmO2 recovers with τ = 60 s (T95 ≈ 3τ)
    effort_rest_s = 300         # efforts of effort_work_s (60 s) every work + rest seconds
    power_effort_w = 240        # watts during efforts …
    power_rest_w = 110          # … and between them
    grip_mvc_kg = 48            # the squeeze's peak (kg) …
    grip_drop = 0.2             # … 20% lower from grip_drop_at_s emulated seconds after the
    grip_drop_at_s = 150        # dynamometer starts (the session just ended) …
    # grip_recovery_tau_s = 600 # … recovering with this τ (s); left out: not within the day

A day's state is read when the emulators are made, for the date of the world's one clock
(:mod:`devices.emulated.clock`) then: a run that crosses midnight keeps the state of the
day it started in. Days before the live one are not emulated live: a test writes them as
files from :meth:`Scenario.day` and imports them (``redox-streamer import``), the same gate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.emulated.activ5 import Activ5Sensor
from devices.emulated.moxy import MoxySensor
from devices.emulated.peripheral import EmulatedPeripheral
from devices.emulated.power import PowerMeter
from devices.emulated.signals import DEFAULT_SCHEDULE, RRParameters, SmO2Parameters
from devices.emulated.strap import ChestStrap
from devices.emulated.tindeq import TindeqProgressor


class ScenarioError(ValueError):
    """A scenario file that cannot be used: one line naming the file, the key and the fix."""


@dataclass(frozen=True, slots=True)
class DayState:
    """One athlete's body on one day; None: the emulator's default."""

    hr_bpm: float | None = None
    rmssd_ms: float | None = None
    smo2_recovery_tau_s: float | None = None
    effort_work_s: float | None = None
    effort_rest_s: float | None = None
    power_effort_w: float | None = None
    power_rest_w: float | None = None
    grip_mvc_kg: float | None = None
    grip_drop: float | None = None
    grip_drop_at_s: float | None = None
    grip_recovery_tau_s: float | None = None

    def over(self, base: DayState) -> DayState:
        """This day's values, the ``base``'s where this day leaves one out."""
        return DayState(
            **{
                f.name: getattr(self, f.name)
                if getattr(self, f.name) is not None
                else getattr(base, f.name)
                for f in dataclasses.fields(self)
            }
        )


_RANGES: Mapping[str, tuple[float, float, str]] = {
    "hr_bpm": (30.0, 200.0, "bpm"),
    "rmssd_ms": (0.0, 300.0, "ms"),
    "smo2_recovery_tau_s": (1.0, 3600.0, "s"),
    "effort_work_s": (5.0, 3600.0, "s"),
    "effort_rest_s": (0.0, 3600.0, "s"),
    "power_effort_w": (0.0, 2500.0, "W"),
    "power_rest_w": (0.0, 2500.0, "W"),
    "grip_mvc_kg": (1.0, 150.0, "kg"),
    "grip_drop": (0.0, 0.9, "(fraction of the MVC)"),
    "grip_drop_at_s": (0.0, 86_400.0, "s"),
    "grip_recovery_tau_s": (1.0, 86_400.0, "s"),
}


def _day_state(data: Mapping[str, Any], where: str) -> DayState:
    values: dict[str, float] = {}
    for key, value in data.items():
        if key == "days":
            continue
        if key not in _RANGES:
            known = ", ".join(_RANGES)
            raise ScenarioError(f"{where}.{key}: unknown key; known: {known}")
        low, high, unit = _RANGES[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ScenarioError(f"{where}.{key}: give a number ({low:g}–{high:g} {unit})")
        if not (math.isfinite(value) and low <= value <= high):
            raise ScenarioError(f"{where}.{key} = {value}: give {low:g}–{high:g} {unit}")
        values[key] = float(value)
    return DayState(**values)


def _day_key(key: str, where: str) -> int | dt.date:
    try:
        return int(key)
    except ValueError:
        pass
    try:
        return dt.date.fromisoformat(key)
    except ValueError:
        raise ScenarioError(
            f"{where}.days.{key}: name a day by its offset from the first (0, -1, …) or its "
            "ISO date (2026-12-01)"
        ) from None


@dataclass(frozen=True, slots=True)
class Scenario:
    """Per athlete: the state of every day (``base``) and of named days (by offset from the
    world's first day, or by date)."""

    athletes: Mapping[str, tuple[DayState, Mapping[int | dt.date, DayState]]]
    source: str = "<scenario>"

    @classmethod
    def parse(cls, text: str, source: str = "<scenario>") -> Scenario:
        """A scenario from TOML text; :class:`ScenarioError` names the bad key."""
        try:
            root = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"{source}: not TOML: {exc}") from None
        unknown = set(root) - {"athletes"}
        if unknown:
            raise ScenarioError(
                f"{source}: unknown section {sorted(unknown)[0]!r}; use [athletes.ID]"
            )
        athletes: dict[str, tuple[DayState, Mapping[int | dt.date, DayState]]] = {}
        for athlete, data in root.get("athletes", {}).items():
            where = f"{source}: athletes.{athlete}"
            if not isinstance(data, dict):
                raise ScenarioError(f"{where}: give a table ([athletes.{athlete}])")
            base = _day_state(data, where)
            days: dict[int | dt.date, DayState] = {}
            for key, day in data.get("days", {}).items():
                if not isinstance(day, dict):
                    raise ScenarioError(f"{where}.days.{key}: give a table")
                days[_day_key(key, where)] = _day_state(day, f"{where}.days.{key}")
            athletes[athlete] = (base, days)
        return cls(athletes, source)

    @classmethod
    def load(cls, path: Path) -> Scenario:
        """A scenario file; :class:`ScenarioError` names the file and the bad key."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(f"{path}: cannot read the scenario: {exc.strerror}") from None
        return cls.parse(text, str(path))

    def day(self, athlete: str, date: dt.date, first_day: dt.date) -> DayState:
        """``athlete``'s state on ``date`` (``first_day``: the world's day 0); an athlete
        or day the scenario does not name is the emulators' defaults."""
        if athlete not in self.athletes:
            return DayState()
        base, days = self.athletes[athlete]
        named = days.get(date) or days.get((date - first_day).days)
        return base if named is None else named.over(base)


def peripheral_options(cls: type[EmulatedPeripheral], state: DayState) -> dict[str, Any]:
    """Constructor keywords that make an emulator of class ``cls`` produce ``state``
    (those it has no use for are left out; an unknown class gets none)."""
    s = state
    schedule = dataclasses.replace(
        DEFAULT_SCHEDULE,
        work_s=s.effort_work_s if s.effort_work_s is not None else DEFAULT_SCHEDULE.work_s,
        rest_s=s.effort_rest_s if s.effort_rest_s is not None else DEFAULT_SCHEDULE.rest_s,
    )
    out: dict[str, Any] = {}
    if issubclass(cls, ChestStrap) and (s.hr_bpm is not None or s.rmssd_ms is not None):
        default = RRParameters()
        out["rr_params"] = dataclasses.replace(
            default,
            mean_hr_bpm=s.hr_bpm if s.hr_bpm is not None else default.mean_hr_bpm,
            rmssd_ms=s.rmssd_ms if s.rmssd_ms is not None else default.rmssd_ms,
        )
    elif issubclass(cls, MoxySensor):
        out["schedule"] = schedule
        if s.smo2_recovery_tau_s is not None:
            out["params"] = SmO2Parameters(recovery_tau_s=s.smo2_recovery_tau_s)
    elif issubclass(cls, PowerMeter):
        out["schedule"] = schedule
        if s.power_effort_w is not None:
            out["effort_w"] = s.power_effort_w
        if s.power_rest_w is not None:
            out["rest_w"] = s.power_rest_w
    elif issubclass(cls, TindeqProgressor | Activ5Sensor):
        if s.grip_mvc_kg is not None:
            out["peak_kg"] = s.grip_mvc_kg
        if s.grip_drop:
            tau = s.grip_recovery_tau_s if s.grip_recovery_tau_s is not None else math.inf
            at_s = s.grip_drop_at_s if s.grip_drop_at_s is not None else 0.0
            out["session_drop"] = (s.grip_drop, tau, at_s)
    return out
