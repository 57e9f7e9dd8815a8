"""Daily values exported by other HRV apps → :class:`DailyValue` rows, labelled by source.

Read: HRV4Training's CSV export (the columns GoldenCheetah's HRV importer also reads:
``date`` or ``timestamp_measurement``, ``HR``, ``rMSSD``, and more; ``-`` for no value).
HRV4Training measures a 60-s morning reading, supine or seated, on waking; its ``rMSSD``
(ms) and ``HR`` (bpm) are the same measurement as a morning reading here (ESCO_FLATT_2014:
60-s lnRMSSD agrees with the 5-min value at rest in athletes), so they are pooled into the
athlete's morning history, labelled with their source. Nothing is converted across
metrics: SDNN, the app's "recovery points" and its subjective scores are not read.
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

FORMATS: Final = ("hrv4training",)

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
