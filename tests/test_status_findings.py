"""``redox-streamer status`` for issue 14's additions: an open ``hr_grip_flat`` with its own
48 h back-off end (no week of cut volume), the open ``info`` findings (the last session's
``power_plateau``, a ``gsh_gssg_high`` draw) and the last lab entry per marker — the
histories fed through ``run``'s path (the pipeline into :class:`AthleteState` over a
store), then read by the command as it reads a store, in text and JSON."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from processors.labs import LabMarker, LabTiming
from streamer.athlete.events import LabEntry
from streamer.cli import main
from streamer.commands.status import Broker, as_json, as_text, athlete_status
from streamer.results import Kind, Result, StatusPayload
from streamer.store import Store
from tests.test_hormetic_rules import (
    BASE_DAYS,
    DAY0,
    EVERY_OTHER_DAY,
    NS,
    baseline,
    day_ns,
    feed,
    grip_test,
    morning,
    plateau_history,
)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _lab(day: int, marker: LabMarker, value: float, timing: LabTiming | None) -> tuple[str, object]:
    return ("command", LabEntry(day_ns(day, 7.5), marker, value, timing))


def _post(day: int, ratio: float) -> tuple[str, object]:
    """A GSH:GSSG drawn 45 min after a session, at 10:00."""
    return ("command", LabEntry(day_ns(day, 10), LabMarker.GSH_GSSG, ratio, LabTiming.POST_45MIN))


@dataclass(frozen=True)
class History:
    """The store, and what the last `run` over it published."""

    path: Path
    published: list[Result]


@pytest.fixture
def history(tmp_path: Path) -> History:
    """hr_grip_flat raised on day d+2; a power plateau at the last session (d−2); lab
    entries: an over-supplemented fasted GSH:GSSG, a later post-session one, dROMs, a strip."""
    path = tmp_path / "history.db"
    feed(path, baseline())
    d = BASE_DAYS
    flat = [[200 + (i % 2)] * 10 for i in range(len(EVERY_OTHER_DAY))]
    feed(path, plateau_history([d - 22 + x for x in EVERY_OTHER_DAY], flat, [5.0] * 11))
    results = feed(
        path,
        morning(d, 55.0)
        + morning(d + 1, 56.0)
        + grip_test(d + 1, 50.0)
        + morning(d + 2, 55.0)
        + [
            _lab(d + 2, LabMarker.GSH_GSSG, 450.0, LabTiming.FASTED),
            _lab(d + 2, LabMarker.DROMS, 300.0, LabTiming.PRE_TRAINING),
            _lab(d + 2, LabMarker.LIPID_DIPSTICK, 0.0, None),
        ]
        # A post-session draw later that day: newest entry, but not a resting one, so the
        # finding stands on the fasted draw.
        + [
            (
                "command",
                LabEntry(day_ns(d + 2, 10), LabMarker.GSH_GSSG, 200.0, LabTiming.POST_45MIN),
            )
        ],
    )
    return History(path, results)


def test_the_retained_status_has_the_back_off_end_and_no_week_of_cut_volume(
    history: History,
) -> None:
    d = BASE_DAYS
    statuses = [r.payload_as(StatusPayload) for r in history.published if r.kind is Kind.STATUS]
    raised = next(s for s in statuses if "hr_grip_flat" in s.open_alerts)
    assert raised.state == "pull_back"
    assert raised.pull_back_since == (DAY0 + dt.timedelta(days=d + 2)).isoformat()
    assert raised.volume_cut_until is None
    end = dt.datetime.fromtimestamp(day_ns(d + 2, 7) / NS + 48 * 3600, tz=dt.UTC)
    assert raised.back_off_until == end.isoformat(timespec="minutes")
    # Each lab entry that is its marker's newest republished it with its value.
    assert statuses[-1].labs["gsh_gssg"].value == 200.0
    assert statuses[-1].back_off_until == raised.back_off_until


def test_status_shows_the_back_off_end_findings_and_last_labs(history: History) -> None:
    d = BASE_DAYS
    now = day_ns(d + 2, 12)
    with Store(history.path, read_only=True) as store:
        status = athlete_status(store, "ann", "Ann", [], now)
    (alert,) = status.alerts
    assert alert.rule == "hr_grip_flat"
    assert alert.volume_cut_until is None  # its advice is 48 h of lower intensity
    back_off = day_ns(d + 2, 7) + 48 * 3600 * NS
    assert alert.back_off_until_ts_ns == back_off
    assert status.pull_back is not None
    assert status.pull_back.back_off_until_ts_ns == back_off
    assert status.pull_back.volume_cut_until is None
    assert [f.rule for f in status.findings] == ["power_plateau", "gsh_gssg_high"]
    assert status.findings[1].date == (DAY0 + dt.timedelta(days=d + 2)).isoformat()
    labs = dict(status.labs)
    assert sorted(labs) == ["droms", "gsh_gssg", "lipid_dipstick"]
    assert (labs["gsh_gssg"].value, labs["gsh_gssg"].timing) == (200.0, "post-45min")
    assert labs["gsh_gssg"].band == "post_session"
    assert (labs["droms"].value, labs["droms"].timing) == (300.0, "pre-training")
    assert labs["lipid_dipstick"].band == "negative"

    broker = Broker(configured=False)
    end = dt.datetime.fromtimestamp(back_off / 1e9, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = _flat(as_text([status], broker, now))
    assert f"back off intensity until {end}" in text
    assert "cut volume" not in text
    # Once on the training line, once in the alert's own message: no third time.
    assert text.count(f"back off intensity until {end}") == 2
    assert "findings power_plateau (info," in text
    assert "gsh_gssg_high (info," in text
    assert "GSH:GSSG 450:1 (fasted): likely over-supplemented" in text
    day = status.findings[1].date
    assert f"labs droms 300 CARR U pre-training, no_baseline ({day})" in text
    assert f"gsh_gssg 200:1 post-45min, post_session ({day})" in text
    assert f"lipid_dipstick, negative ({day})" in text

    data = as_json([status], broker, history.path, now)
    (athlete,) = data["athletes"]  # type: ignore[misc]
    assert athlete["open_alerts"][0]["back_off_until"].startswith(  # type: ignore[index]
        dt.datetime.fromtimestamp(back_off / 1e9, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M")
    )
    assert athlete["pull_back"]["volume_cut_until"] is None  # type: ignore[index]
    assert athlete["labs"]["gsh_gssg"]["value"] == 200.0  # type: ignore[index]
    assert athlete["labs"]["gsh_gssg"]["date"] == day  # type: ignore[index]
    assert [f["rule"] for f in athlete["findings"]] == [  # type: ignore[index]
        "power_plateau",
        "gsh_gssg_high",
    ]


def test_the_command_prints_them_and_nothing_when_there_are_none(
    history: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "none.toml"
    config.write_text("")
    argv = ["status", "--store", str(history.path), "--config", str(config), "--json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    (athlete,) = data["athletes"]
    assert sorted(athlete["labs"]) == ["droms", "gsh_gssg", "lipid_dipstick"]
    empty = tmp_path / "empty.db"
    feed(empty, morning(0, 50.0))
    assert main(["status", "--store", str(empty), "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "findings" not in text
    assert "labs" not in text
