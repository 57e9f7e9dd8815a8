"""The trend report: its numbers equal the store's, its picture is drawn, its page is whole.

The main store is the demo history replayed through the real pipeline (one over-reaching
athlete, 28 days), so the report is checked against what the pipeline itself recorded;
small stores built with the store's write methods pin the edge cases and the CLI.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import html
import itertools
import math
import re
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib import image as mpimg

from processors.alerts import AlertBook, RuleEvaluation
from processors.rules import CATALOGUE, RuleThresholds
from streamer.app.pipeline import Pipeline
from streamer.athlete import AthleteState, alert_payload
from streamer.cli import main
from streamer.demo.history import history_dates, replay_history, scenarios
from streamer.report.figure import PNG_SIZE_PX, RED, SKY, png_bytes
from streamer.report.gather import (
    ReportData,
    ReportError,
    alert_spans,
    gather_report,
    known_athletes,
    write_report,
)
from streamer.report.page import render_html
from streamer.results import GripPayload, MorningPayload
from streamer.store import AlertRow, Store

TODAY = dt.date(2025, 3, 1)
DAYS = 28
ATHLETE = "athlete1"


def _ns(day: dt.date, hour: float = 0.0) -> int:
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    return int(midnight.timestamp() * 1e9) + round(hour * 3600e9)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """28 days of the over-reaching scenario through the real pipeline into a store file."""
    path = tmp_path_factory.mktemp("report") / "store.sqlite3"

    async def run() -> None:
        with Store(path) as store:
            pipeline = Pipeline(
                lambda a: AthleteState(a, store, live=False, hrv_every_s=60.0), store
            )
            task = asyncio.create_task(pipeline.run())
            await replay_history(pipeline.put, scenarios(1, DAYS), history_dates(DAYS, TODAY))
            await pipeline.join()
            pipeline.stop()
            await task

    asyncio.run(run())
    return path


@pytest.fixture(scope="module")
def report(replayed: Path) -> ReportData:
    with Store(replayed) as store:
        return gather_report(store, ATHLETE, DAYS)


@pytest.fixture(scope="module")
def png(report: ReportData) -> bytes:
    return png_bytes(report)


# --- the numbers against the store ---------------------------------------------------------


def test_window_ends_on_the_last_stored_morning_and_has_one_point_per_day(
    replayed: Path,
    report: ReportData,
) -> None:
    with Store(replayed) as store:
        last = store.morning_history(ATHLETE)[-1].date
    assert report.end.isoformat() == last
    assert report.start == report.end - dt.timedelta(days=DAYS - 1)
    assert [m.day for m in report.mornings] == [
        report.start + dt.timedelta(days=i) for i in range(DAYS)
    ]


def test_morning_values_and_bands_equal_what_the_pipeline_stored(
    replayed: Path,
    report: ReportData,
) -> None:
    with Store(replayed) as store:
        rows = {r.date: r.data for r in store.morning_history(ATHLETE)}
    compared = 0
    for point in report.mornings:
        row = rows[point.day.isoformat()]
        assert point.accepted is row["accepted"]
        pairs = [
            (point.ln_rmssd, row["ln_rmssd"]),
            (point.resting_hr_bpm, row["resting_hr_bpm"]),
            (point.ln_band_low, row["ln_rmssd_band_low"]),
            (point.ln_band_high, row["ln_rmssd_band_high"]),
            (point.ln_baseline_mean, row["ln_rmssd_baseline_mean"]),
            (point.ln_7d_mean, row["ln_rmssd_7d_mean"]),
            (point.rhr_baseline_median_bpm, row["rhr_baseline_median_bpm"]),
            (point.rhr_7d_mean_bpm, row["rhr_7d_mean_bpm"]),
        ]
        for ours, stored in pairs:
            if stored is None:
                assert ours is None
            else:
                assert isinstance(stored, float)
                assert ours == pytest.approx(stored, rel=1e-12)
                compared += 1
    assert sum(m.ln_band_low is not None for m in report.mornings) >= 6  # the last week
    assert compared >= 4 * DAYS


def test_the_rejected_morning_is_kept_as_rejected_with_its_reason(report: ReportData) -> None:
    rejected = [m for m in report.mornings if m.recorded and not m.accepted]
    assert len(rejected) == 1
    assert rejected[0].ln_rmssd is None
    assert rejected[0].reject_reason


def test_sessions_and_grip_tests_equal_the_stores_rows(
    replayed: Path,
    report: ReportData,
) -> None:
    with Store(replayed) as store:
        sessions = store.sessions(ATHLETE)
        grips = store.grip_tests(ATHLETE)
    assert [s.recovery_s for s in report.sessions] == [r.data["recovery_s"] for r in sessions]
    assert [g.drop_pct for g in report.grips] == [r.data["drop_pct"] for r in grips]
    assert [g.grip_class for g in report.grips] == [r.data["class"] for r in grips]
    assert report.grips[-1].grip_class == "grip_spillover"
    last = report.grips[-1].last_drop
    assert last is not None
    drops = grips[-1].data["drops_pct"]
    assert isinstance(drops, dict)
    assert last == (30.0, drops["30"])
    # The over-reaching week: the last sessions are slower than the 120-s line.
    assert all(s.recovery_s is not None and s.recovery_s > 120 for s in report.sessions[-3:])


def test_open_alerts_are_the_alert_books_and_carry_the_catalogue_advice(
    replayed: Path,
    report: ReportData,
) -> None:
    with Store(replayed) as store:
        saved = store.load_alert_book(ATHLETE)
    assert saved is not None
    book = AlertBook.from_dict(saved)
    assert [a.rule for a in report.open_alerts] == [a.rule_id for a in book.open_alerts()]
    assert {a.rule for a in report.open_alerts} == {
        "hrv_downtrend",
        "rhr_creep",
        "smo2_slow_recovery",
        "rpe_power_mismatch",
        "grip_spillover",
        # Morning HR above its day-to-day noise on the last days, grip flat on session days.
        "hr_grip_flat",
        "gsh_gssg_low",
        "droms_rise",
        "lipid_dipstick_positive",
    }
    for alert in report.open_alerts:
        assert alert.advice == CATALOGUE[alert.rule].advice
        assert alert.title == CATALOGUE[alert.rule].title
    assert report.status == "pull_back"
    # Nothing cleared: a grip_signal is its grip test's class, never an alert span.
    assert [s.rule for s in report.alerts if s.cleared is not None] == []
    assert "grip_signal" in {g.grip_class for g in report.grips}


# --- the picture ----------------------------------------------------------------------------


def _pixels(data: bytes, tmp_path: Path) -> npt.NDArray[np.float32]:
    path = tmp_path / "report.png"
    path.write_bytes(data)
    return np.asarray(mpimg.imread(path))


def _near(image: npt.NDArray[np.float32], colour: str, tol: float = 0.02) -> int:
    rgb = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(image[..., :3] - rgb) < tol).all(axis=-1).sum())


def test_png_has_the_fixed_size_and_is_not_blank(png: bytes, tmp_path: Path) -> None:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = _pixels(png, tmp_path)
    width, height = PNG_SIZE_PX
    assert image.shape[:2] == (height, width)
    grey = image[..., :3].mean(axis=-1)
    assert float(grey.var()) > 0.01
    assert float((grey < 0.9).mean()) > 0.03  # ink, not a white page with a title


def test_png_draws_the_band_and_the_readings_below_it(png: bytes, tmp_path: Path) -> None:
    image = _pixels(png, tmp_path)
    # The band is sky blue at 35 % over white; readings below it, slow sessions and
    # pull-back alerts are vermilion.
    sky = np.array([int(SKY[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    band = 0.35 * sky + 0.65
    band_hex = "#" + "".join(f"{round(c * 255):02x}" for c in band)
    # ~1,950 band pixels with ten panels (the resume line crosses the band): far from none.
    assert _near(image, band_hex) > 1500
    assert _near(image, RED) > 2000


def test_the_report_of_a_window_without_any_baseline_is_still_drawn(
    tmp_path: Path,
    replayed: Path,
) -> None:
    with Store(replayed) as store:
        # The first three days: no morning has the three valid days before it that even a
        # provisional baseline needs (docs/rules.md).
        early = gather_report(store, ATHLETE, 3, end=TODAY - dt.timedelta(days=DAYS - 2))
        later = gather_report(store, ATHLETE, 7, end=TODAY - dt.timedelta(days=20))
    assert early.mornings
    assert all(m.ln_band_low is None for m in early.mornings)
    assert any(m.ln_band_low is not None for m in later.mornings)  # provisional from day 4
    assert early.open_alerts  # the book is current, even for an old window
    write_report(early, tmp_path / "early.png")
    assert _pixels((tmp_path / "early.png").read_bytes(), tmp_path).shape[:2] == (
        PNG_SIZE_PX[1],
        PNG_SIZE_PX[0],
    )


def test_a_provisional_band_is_drawn_apart_and_named_as_such(replayed: Path) -> None:
    from streamer.report.figure import render_figure

    with Store(replayed) as store:
        # Days 4–10 of the history: a band from the days before each, not yet established.
        young = gather_report(store, ATHLETE, 7, end=TODAY - dt.timedelta(days=DAYS - 10))
    statuses = {m.baseline_status for m in young.mornings if m.ln_band_low is not None}
    assert statuses == {"provisional"}
    figure = render_figure(young)
    labels = [
        t.get_text() for ax in figure.axes for lg in [ax.get_legend()] if lg for t in lg.get_texts()
    ]
    assert "provisional band (few days: wider, no alerts)" in labels
    assert not any(label.startswith("normal band") for label in labels)  # none established yet


# --- the page -------------------------------------------------------------------------------


def test_html_page_holds_the_athlete_latest_value_and_every_open_alert_with_advice(
    report: ReportData,
    png: bytes,
) -> None:
    page = render_html(report, png)
    latest = report.latest_morning
    assert latest is not None
    assert latest.ln_rmssd is not None
    assert f"<h1>{ATHLETE} — recovery report</h1>" in page
    assert f"<b>{latest.ln_rmssd:.2f}</b>" in page
    assert latest.ln_rmssd < 3.7  # the over-reaching week ends low
    for alert in report.open_alerts:
        assert f"<code>{alert.rule}</code>" in page
        assert html.escape(alert.advice) in page
        assert html.escape(alert.message) in page


def test_html_page_is_self_contained_with_the_picture_embedded(
    report: ReportData,
    png: bytes,
) -> None:
    page = render_html(report, png)
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match is not None
    embedded = base64.b64decode(match.group(1))
    assert embedded == png
    width, height = struct.unpack(">II", embedded[16:24])  # IHDR
    assert (width, height) == PNG_SIZE_PX
    for external in ("http://", "https://", "<script", "<link", "@import", "url("):
        assert external not in page


def test_html_escapes_what_comes_from_the_store(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        _fill(store, "a<b>", days=3)
        store.add_alert(
            "a<b>",
            _ns(dt.date(2025, 1, 2), 8),
            "rhr_creep",
            "raised",
            {
                "rule": "rhr_creep",
                "severity": "pull_back",
                "state": "raised",
                "message": "HR <script>alert(1)</script>",
                "advice": "rest & eat",
            },
        )
        data = gather_report(store, "a<b>", 3)
    page = render_html(data, b"\x89PNG")
    assert "<script" not in page
    assert "a&lt;b&gt;" in page
    assert "rest &amp; eat" in page


# --- small stores built by hand -------------------------------------------------------------


def _fill(
    store: Store,
    athlete: str,
    *,
    days: int,
    first: dt.date = dt.date(2025, 1, 1),
    ln: float = 4.0,
    rhr: float = 50.0,
    reject: int | None = None,
) -> list[dt.date]:
    """Mornings alternating ln ± 0.1 and rhr ± 1 (as the pipeline stores them)."""
    dates = [first + dt.timedelta(days=i) for i in range(days)]
    for i, day in enumerate(dates):
        sign = 1 if i % 2 else -1
        accepted = i != reject
        reading = MorningPayload(
            date=day.isoformat(),
            ln_rmssd=ln + 0.1 * sign if accepted else None,
            rmssd_ms=math.exp(ln + 0.1 * sign) if accepted else None,
            resting_hr_bpm=rhr + sign if accepted else None,
            artifacts_pct=1.0 if accepted else 12.0,
            corrected_pct=1.0 if accepted else None,
            n_beats=300,
            accepted=accepted,
            reject_reason=None if accepted else "too many artefacts (12% of beats)",
            ln_rmssd_baseline_mean=None,
            ln_rmssd_baseline_sd=None,
            ln_rmssd_band_low=None,
            ln_rmssd_band_high=None,
            ln_rmssd_7d_mean=None,
            ln_rmssd_cv_pct=None,
            rhr_baseline_median_bpm=None,
            rhr_7d_mean_bpm=None,
        )
        store.save_morning(athlete, day, _ns(day, 6.5), reading.fields())
    return dates


def test_thresholds_set_the_band_width(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        _fill(store, "anna", days=40)
        narrow = gather_report(store, "anna", 5)
        wide = gather_report(store, "anna", 5, thresholds=RuleThresholds(normal_band_sd=1.0))
    for n, w in zip(narrow.mornings, wide.mornings, strict=True):
        assert n.ln_band_low is not None
        assert n.ln_band_high is not None
        assert w.ln_band_low is not None
        assert w.ln_band_high is not None
        assert w.ln_band_high - w.ln_band_low == pytest.approx(2 * (n.ln_band_high - n.ln_band_low))
        assert n.ln_baseline_mean == pytest.approx(4.0, abs=0.01)


def test_only_accepted_mornings_feed_the_trends(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        _fill(store, "anna", days=3, reject=2)
        data = gather_report(store, "anna", 3)
    last = data.mornings[-1]
    assert (last.recorded, last.accepted, last.ln_rmssd) == (True, False, None)
    assert last.reject_reason == "too many artefacts (12% of beats)"
    assert last.ln_7d_mean is None  # two accepted values: fewer than the 3 it needs
    assert data.latest_morning is data.mornings[1]


def test_an_alert_still_open_from_before_the_window_spans_it_and_old_cleared_ones_do_not(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        dates = _fill(store, "anna", days=30)
        for day, rule, state in [
            (dates[2], "grip_signal", "raised"),
            (dates[3], "grip_signal", "cleared"),
            (dates[5], "rhr_creep", "raised"),
        ]:
            store.add_alert(
                "anna", _ns(day, 8), rule, state, {"rule": rule, "state": state, "severity": "info"}
            )
        data = gather_report(store, "anna", 7)
    assert [(s.rule, s.cleared) for s in data.alerts] == [("rhr_creep", None)]
    assert data.alerts[0].raised.date() == dates[5] < data.start
    # No alert book saved: what is open comes from the events.
    assert [a.rule for a in data.open_alerts] == ["rhr_creep"]


def test_a_store_with_grip_tests_only_reports_them(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        day = dt.date(2025, 1, 10)
        grip = GripPayload(
            mvc_kg=50.0,
            peak_kg=43.0,
            drop_pct=14.0,
            minutes_after=0.0,
            threshold_pct=11.7,
            threshold_basis="personal",
            grip_class="grip_signal",
            noise_cv_pct=5.0,
            drops_pct={"0": 14.0, "5": 6.0, "15": 1.0, "30": 0.5},
        )
        store.add_grip_test("anna", _ns(day, 17), grip.fields())
        data = gather_report(store, "anna", 14)
    assert data.end == day
    assert [(g.drop_pct, g.grip_class, g.last_drop) for g in data.grips] == [
        (14.0, "grip_signal", (30.0, 0.5))
    ]
    assert data.latest_morning is None
    assert data.status == "ok"
    assert png_bytes(data).startswith(b"\x89PNG")


def test_nothing_stored_for_the_athlete_is_a_report_error(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store, pytest.raises(ReportError, match="anna"):
        gather_report(store, "anna")


def test_known_athletes_lists_every_athlete_with_history_without_writing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite3"
    with Store(path) as store:
        _fill(store, "zoe", days=1)
        store.add_session("anna", 1, {"recovery_s": 50.0})
        store.add_alert("bob", 1, "rhr_creep", "raised", {})
    before = path.stat().st_mtime_ns
    assert known_athletes(path) == ["anna", "bob", "zoe"]
    assert path.stat().st_mtime_ns == before


_RULES = st.sampled_from(["hrv_downtrend", "rhr_creep", "grip_signal"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_RULES, st.sampled_from(["raised", "cleared"])), max_size=30))
def test_alert_spans_of_a_rule_never_overlap_and_only_the_last_may_be_open(
    events: list[tuple[str, str]],
) -> None:
    rows = [
        AlertRow("anna", (i + 1) * 10**9, rule, state, {"severity": "warning"})
        for i, (rule, state) in enumerate(events)
    ]
    spans = alert_spans(rows)
    assert len(spans) == sum(state == "raised" for _, state in events)
    for rule in {r for r, _ in events}:
        mine = [s for s in spans if s.rule == rule]
        for earlier, later in itertools.pairwise(mine):
            assert earlier.cleared is not None
            assert earlier.cleared <= later.raised
        assert all(s.cleared is None or s.cleared > s.raised for s in mine)
        assert all(s.cleared is not None for s in mine[:-1])


# --- the command ----------------------------------------------------------------------------


@pytest.fixture
def no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the user's own config file out of the command's way."""
    monkeypatch.setenv("REDOX_CONFIG", str(tmp_path / "absent.toml"))


@pytest.fixture
def two_athletes(tmp_path: Path) -> Path:
    path = tmp_path / "two.sqlite3"
    with Store(path) as store:
        _fill(store, "anna", days=30)
        _fill(store, "bob", days=5)
        # What the pipeline does on a raise: the book's transition, the event, the book.
        spec = CATALOGUE["rhr_creep"]
        book = AlertBook("anna")
        at = _ns(dt.date(2025, 1, 29), 7)
        raised = book.update(
            RuleEvaluation(
                "rhr_creep", spec.severity, True, "Resting HR is up.", spec.advice, spec.source
            ),
            at,
        )
        assert raised is not None
        store.add_alert("anna", at, "rhr_creep", "raised", alert_payload(raised))
        store.save_alert_book("anna", book.to_dict())
    return path


def test_cli_writes_a_png_for_the_named_athlete(
    two_athletes: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_config: None,
) -> None:
    out = tmp_path / "anna.png"
    status = main(
        [
            "report",
            "--store",
            str(two_athletes),
            "--athlete",
            "anna",
            "--days",
            "14",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    said = capsys.readouterr().out
    assert "report of anna, 2025-01-17 to 2025-01-30 (14 days, 1 open alerts)" in said


def test_cli_html_uses_the_config_store_and_the_athletes_thresholds(
    two_athletes: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = tmp_path / "redox.toml"
    config.write_text(
        f'[store]\npath = "{two_athletes}"\n\n[[athletes]]\nid = "anna"\n'
        "[athletes.rules]\nnormal_band_sd = 1.0\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("REDOX_CONFIG", str(config))
    out = tmp_path / "anna.html"
    assert main(["report", "--athlete", "anna", "--out", str(out)]) == 0
    with Store(two_athletes) as store:
        wide = gather_report(store, "anna", thresholds=RuleThresholds(normal_band_sd=1.0))
    last = wide.mornings[-1]
    assert last.ln_band_low is not None
    assert last.ln_band_high is not None
    page = out.read_text(encoding="utf-8")
    assert f"{last.ln_band_low:.2f}–{last.ln_band_high:.2f}" in page
    assert html.escape(CATALOGUE["rhr_creep"].advice) in page


@pytest.mark.usefixtures("no_config")
def test_cli_unknown_athlete_lists_the_known_ones(
    two_athletes: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(
        [
            "report",
            "--store",
            str(two_athletes),
            "--athlete",
            "carl",
            "--out",
            str(tmp_path / "x.png"),
        ]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert "--athlete 'carl'" in err
    assert "known athletes: anna, bob" in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.usefixtures("no_config")
def test_cli_without_athlete_in_a_shared_store_asks_for_one(
    two_athletes: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["report", "--store", str(two_athletes), "--out", str(tmp_path / "x.png")]) == 2
    assert "anna, bob" in capsys.readouterr().err


@pytest.mark.usefixtures("no_config")
def test_cli_empty_or_missing_store_says_how_to_get_data(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = tmp_path / "missing.sqlite3"
    assert main(["report", "--store", str(missing), "--out", str(tmp_path / "x.png")]) == 2
    assert "redox-streamer demo --store" in capsys.readouterr().err
    assert not missing.exists()  # reading never creates a store
    empty = tmp_path / "empty.sqlite3"
    Store(empty).close()
    assert main(["report", "--store", str(empty), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "holds no readings" in err
    assert "redox-streamer demo" in err


@pytest.mark.usefixtures("no_config")
@pytest.mark.parametrize("name", ["report.pdf", "report", "report.png.txt"])
def test_cli_refuses_an_output_that_is_neither_png_nor_html(
    two_athletes: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    assert (
        main(
            [
                "report",
                "--store",
                str(two_athletes),
                "--athlete",
                "anna",
                "--out",
                str(tmp_path / name),
            ]
        )
        == 2
    )
    assert ".png" in capsys.readouterr().err
    assert not (tmp_path / name).exists()


def test_cli_help_teaches_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    text = capsys.readouterr().out
    for needed in ("examples:", "--out", "--athlete", "normal band", ".html"):
        assert needed in text
