"""Daily values exported by other HRV apps → :class:`DailyValue` rows, labelled by source.

HRV4Training's CSV export (the columns GoldenCheetah's HRV importer also reads:
``date`` or ``timestamp_measurement``, ``HR``, ``rMSSD``, and more; ``-`` for no value).
HRV4Training measures a 60-s morning reading, supine or seated, on waking; its ``rMSSD``
(ms) and ``HR`` (bpm) are the same measurement as a morning reading here (ESCO_FLATT_2014:
60-s lnRMSSD agrees with the 5-min value at rest in athletes), so they are pooled into the
athlete's morning history, labelled with their source. Nothing is converted across
metrics: SDNN, the app's "recovery points" and its subjective scores are not read.

Elite HRV's CSV export. The app itself exports raw RR text files only (``import rr``
reads those); the CSV of computed values comes from Elite HRV's web dashboard
(elitehrv.com/faq: "Data exported from the web dashboard is in the processed and
calculated form"). Where its format comes from:

* a real export, GoldenCheetah/GoldenCheetah ``test/hrvmeasures/ElitHRV_Export -
  2017-10-02.csv`` (contributed with pull request #2641, "HRV Measures - Direct import
  from EliteHRV CSV files"), header ``Member,Date,Datetime,Type,HRV,lnRmssd,Rmssd,Nn50,
  Pnn50,Sdnn,Score,Indication,Balance,Rolling Avg HRV,HRV CV,HR,Rolling Avg HR``; one
  row per reading, ``Datetime`` as ``2017-09-06 06:23:22`` (local time, no zone), ``Type``
  ``readiness`` on every row. GoldenCheetah's reader (``src/FileIO/HrvMeasuresCsvImport.cpp``)
  takes ``Datetime`` as ISO 8601, ``Rmssd`` as rMSSD, ``Sdnn`` as SDNN and ``HR``;
* a later header, quoted in a comment of a Swift importer that the code index returned
  without naming its repository: ``Member,Type,Position,Breathing Pattern,Date Time
  Start,Date Time End,Duration,Tags,Notes,Value 1,Value 2,Value 3,HRV,Morning Readiness,
  Balance,HRV CV,HR,lnRmssd,Rmssd,Nn50,Pnn50,Sdnn,Low Frequency Power,High Frequency
  Power,LF/HF Ratio,Total Power``. No row of it was found, so its date format and its
  ``Type`` values are not known: ISO 8601 dates are read, anything else is refused naming
  the line.

Read from it: ``Rmssd`` (ms) and ``HR`` (bpm, the reading's mean rate), dated by
``Datetime`` or ``Date Time Start``. Only Morning Readiness readings (``Type``
``readiness``, or ``morning readiness``) are the same measurement as a morning reading
here — a short resting reading on waking, sitting or lying the same way each day
(help.elitehrv.com "How To Take a Morning Readiness Reading"; ESCO_FLATT_2014 as above) —
so only they are pooled; any other reading type is rejected with its type named. The
``HRV`` column is Elite HRV's score, a scaled ln(rMSSD) (in the real export HRV ≈
lnRmssd × 15.4, i.e. ln(rMSSD)/6.5 × 100, rounded): it is never read as rMSSD nor
converted back, and a row with a score but no ``Rmssd`` is rejected saying so. ``Sdnn``,
``lnRmssd`` (derivable, so not stored twice), the readiness ``Score``/``Morning
Readiness``, ``Indication``, ``Balance``, rolling averages and frequency powers are not
read. A team export holds several members' rows: ``member`` picks one.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from streamer.files.text import read_text
from streamer.importing.model import ImportFileError

FORMATS: Final = ("hrv4training", "elitehrv")

_DATE_COLUMNS: Final = ("date", "timestamp_measurement")


@dataclass(frozen=True, slots=True)
class DailyValue:
    """One day's morning values measured by another app.

    ``rmssd_ms`` (ms) and ``resting_hr_bpm`` (bpm) are None when the export has none; ``line``
    is the CSV line they came from, for messages.
    """

    source: str
    day: dt.date
    rmssd_ms: float | None
    resting_hr_bpm: float | None
    path: Path
    line: int
    not_pooled: str | None = None
    """Why this row is not the same measurement as a morning reading here (then it is
    rejected, with this reason), or None."""


def _number(text: str) -> float | None:
    text = text.strip()
    if text in ("", "-", "NA", "nan"):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _day(text: str) -> dt.date:
    text = text.strip()
    try:
        return dt.datetime.fromisoformat(text).date()
    except ValueError:
        return dt.date.fromisoformat(text[:10])


def read_hrv4training(path: Path) -> list[DailyValue]:
    """The morning values of an HRV4Training CSV export, in file order.

    Raises :class:`ImportFileError` naming the file and line when the header lacks a date
    or ``rMSSD`` column, or a row's date or number cannot be read.
    """
    text = read_text(path, ImportFileError, "HRV4Training's CSV export")
    lines = text.splitlines()
    if not lines:
        raise ImportFileError(f"{path}: the file is empty; expected HRV4Training's CSV export")
    delimiter = ";" if lines[0].count(";") > lines[0].count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    names = [n.strip() for n in reader.fieldnames or []]
    date_col = next((n for n in _DATE_COLUMNS if n in names), None)
    if date_col is None or "rMSSD" not in names:
        raise ImportFileError(
            f"{path}, line 1: not an HRV4Training export (needs a 'date' and an 'rMSSD' "
            f"column; found {', '.join(names[:8]) or 'none'})"
        )
    out: list[DailyValue] = []
    for number, row in enumerate(reader, start=2):
        clean = {k.strip(): (v or "") for k, v in row.items() if k is not None}
        try:
            day = _day(clean[date_col])
        except ValueError:
            raise ImportFileError(
                f"{path}, line {number}: {clean[date_col]!r} is not a date (YYYY-MM-DD)"
            ) from None
        try:
            rmssd = _number(clean.get("rMSSD", ""))
            hr = _number(clean.get("HR", ""))
        except ValueError:
            raise ImportFileError(
                f"{path}, line {number}: rMSSD {clean.get('rMSSD')!r} or HR "
                f"{clean.get('HR')!r} is not a number"
            ) from None
        if rmssd is not None and not 1.0 <= rmssd <= 1000.0:
            raise ImportFileError(
                f"{path}, line {number}: rMSSD {rmssd:g} ms is not a resting value (1–1000 ms)"
            )
        if hr is not None and not 20.0 <= hr <= 250.0:
            raise ImportFileError(f"{path}, line {number}: HR {hr:g} bpm is not a resting rate")
        out.append(DailyValue("hrv4training", day, rmssd, hr, path, number))
    return out


_ELITE_DATE_COLUMNS: Final = ("Datetime", "Date Time Start")
_ELITE_MORNING_TYPES: Final = frozenset({"readiness", "morning readiness"})
"""``Type`` values of a Morning Readiness reading: ``readiness`` in the real export; the
app's own name for the reading, in case a later export spells it out."""


def _when(text: str) -> dt.datetime:
    """An Elite HRV time: ISO 8601 with a space or ``T`` (``2017-09-06 06:23:22``)."""
    return dt.datetime.fromisoformat(text.strip())


def read_elitehrv(path: Path, member: str | None = None) -> list[DailyValue]:
    """The readings of an Elite HRV CSV export (its web dashboard's), oldest first.

    Morning Readiness readings carry their ``Rmssd`` (ms) and ``HR`` (bpm); other reading
    types come back with ``not_pooled`` saying why. ``member`` picks one member's rows of a
    team export; a file with several members and no ``member`` is refused. Raises
    :class:`ImportFileError` naming the file and line when the header lacks a date or
    ``Rmssd`` column, or a row's date or number cannot be read.
    """
    text = read_text(path, ImportFileError, "Elite HRV's CSV export")
    if not text.strip():
        raise ImportFileError(f"{path}: the file is empty; expected Elite HRV's CSV export")
    reader = csv.DictReader(io.StringIO(text))
    names = [n.strip() for n in reader.fieldnames or []]
    date_col = next((n for n in _ELITE_DATE_COLUMNS if n in names), None)
    if date_col is None or "Rmssd" not in names:
        raise ImportFileError(
            f"{path}, line 1: not an Elite HRV export (needs a 'Datetime' or 'Date Time "
            f"Start' and an 'Rmssd' column; found {', '.join(names[:8]) or 'none'})"
        )
    rows: list[tuple[int, dict[str, str]]] = []
    for number, row in enumerate(reader, start=2):
        clean = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if any(clean.values()):  # a blank line is no reading
            rows.append((number, clean))
    members = sorted({r.get("Member", "") for _, r in rows} - {""})
    if member is not None:
        if member not in members:
            raise ImportFileError(
                f"{path}: no readings of member {member!r} (members: "
                f"{', '.join(members) or 'none named'}); give --member as the file spells it"
            )
        rows = [(n, r) for n, r in rows if r.get("Member") == member]
    elif len(members) > 1:
        raise ImportFileError(
            f"{path}: readings of {len(members)} members ({', '.join(members[:5])}); "
            "pick one with --member NAME"
        )
    out: list[tuple[dt.datetime, DailyValue]] = []
    for number, clean in rows:
        try:
            when = _when(clean[date_col])
        except ValueError:
            raise ImportFileError(
                f"{path}, line {number}: {date_col} {clean[date_col]!r} is not a date and "
                "time (YYYY-MM-DD hh:mm:ss)"
            ) from None
        try:
            rmssd = _number(clean.get("Rmssd", ""))
            hr = _number(clean.get("HR", ""))
        except ValueError:
            raise ImportFileError(
                f"{path}, line {number}: Rmssd {clean.get('Rmssd')!r} or HR "
                f"{clean.get('HR')!r} is not a number"
            ) from None
        if rmssd is not None and not 1.0 <= rmssd <= 1000.0:
            raise ImportFileError(
                f"{path}, line {number}: Rmssd {rmssd:g} ms is not a resting value (1–1000 ms)"
            )
        if hr is not None and not 20.0 <= hr <= 250.0:
            raise ImportFileError(f"{path}, line {number}: HR {hr:g} bpm is not a resting rate")
        kind = clean.get("Type", "")
        reason: str | None = None
        if kind.lower() not in _ELITE_MORNING_TYPES:
            reason = (
                f"a {kind or 'untyped'!r} reading, not a Morning Readiness one: not pooled "
                "into the morning baseline"
            )
        elif rmssd is None and clean.get("HRV"):
            # The score is a scaled ln(rMSSD): reading it as rMSSD would be a wrong metric.
            reason = "no Rmssd (the HRV score is a scaled lnRMSSD and is never read as rMSSD)"
        # Naive times are the reading's local wall time; its date is the day it is filed on.
        value = DailyValue("elitehrv", when.date(), rmssd, hr, path, number, reason)
        out.append((when.replace(tzinfo=None), value))
    # Oldest first, so a day's first Morning Readiness reading is the one pooled.
    return [v for _, v in sorted(out, key=lambda item: item[0])]
