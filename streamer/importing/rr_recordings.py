"""RR exports → :class:`RrRecording`: the intervals and when the recording began.

Two layouts are read:

* **one interval per line** (Elite HRV's raw export, Kubios' RR text, ``analyze rr``'s
  files; ms or s, ``#`` comments), read by :func:`streamer.files.rr.read_rr_file`. Such files
  carry no clock, so the start is, in this order: ``--date``; a ``#`` comment holding a
  date and time (``# 2026-11-03 06:45:12``); the file name (Elite HRV names each export
  ``2026-11-03 06-45-12.txt``).
* **timestamped CSV** with a header naming an RR column and a time column: Polar Sensor
  Logger (``Phone timestamp;RR-interval [ms]``), HRV Logger (``date,rr,since start``). The
  start is the first beat's time minus its interval.

Times without a zone are wall-clock time in ``tz`` (default: this machine's zone). A date
without a time is taken as noon UTC of that day, so the reading is filed on that date in
every zone from UTC−11 to UTC+11 (mornings are filed by the UTC date of their start, as
live ones are).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
import statistics
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from processors import physiology as phys
from streamer.files.rr import Unit, read_rr_file
from streamer.files.text import read_text
from streamer.importing.model import ImportFileError, RrRecording

_STAMP: Final = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T _]+(?P<h>\d{2})[:.\-]?(?P<m>\d{2})(?:[:.\-]?(?P<s>\d{2})(?:\.\d+)?)?)?"
)
"""A date with an optional time, as in ISO 8601 and in exported file names."""

_DELIMITERS: Final = ";,\t"


def zone(name: str | None) -> dt.tzinfo:
    """The zone named ``name`` (IANA, e.g. ``Europe/Oslo``), or this machine's when None."""
    if name is None:
        local = dt.datetime.now().astimezone().tzinfo
        return local if local is not None else dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ImportFileError(
            f"--tz {name!r}: not a known time zone; use an IANA name such as Europe/Oslo or UTC"
        ) from None


def start_of_day(day: dt.date) -> int:
    """ns since the epoch of noon UTC on ``day`` (a date with no time of day)."""
    return int(dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC).timestamp()) * 10**9


def _stamp_ns(match: re.Match[str], tz: dt.tzinfo) -> int:
    day = dt.date.fromisoformat(match["date"])
    if match["h"] is None:
        return start_of_day(day)
    wall = dt.datetime.combine(
        day, dt.time(int(match["h"]), int(match["m"]), int(match["s"] or 0)), tzinfo=tz
    )
    return round(wall.timestamp() * 1e9)


def _search_stamp(text: str, tz: dt.tzinfo) -> int | None:
    match = _STAMP.search(text)
    if match is None:
        return None
    try:
        return _stamp_ns(match, tz)
    except ValueError:  # 2026-13-45: looks like a date, is not one
        return None


def read_rr_recording(
    path: Path,
    *,
    date: dt.date | None = None,
    unit: Unit = "auto",
    tz: dt.tzinfo = dt.UTC,
) -> RrRecording:
    """The RR recording of ``path`` (see the module docstring for the layouts).

    Raises :class:`ImportFileError` (or :class:`~streamer.files.rr.RrFileError`) naming the
    file and the line when it cannot be read or when its start cannot be found.
    """
    text = read_text(path, ImportFileError, "RR intervals (one per line, or a timestamped CSV)")
    header = _first_data_line(text)
    if header is not None and any(c.isalpha() for c in header) and not header.startswith("#"):
        return _read_timestamped_csv(path, text, date=date, unit=unit, tz=tz)
    rr = read_rr_file(path, unit=unit)
    values = tuple(float(v) for v in rr.rr_ms)
    if date is not None:
        return RrRecording(path, start_of_day(date), values, "--date")
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            start = _search_stamp(line, tz)
            if start is not None:
                return RrRecording(path, start, values, "first line")
    start = _search_stamp(path.name, tz)
    if start is not None:
        return RrRecording(path, start, values, "file name")
    raise ImportFileError(
        f"{path}: no date for this reading (the file has no timestamp and its name no "
        "YYYY-MM-DD); pass --date YYYY-MM-DD, or rename it like '2026-11-03 06-45-12.txt'"
    )


def _first_data_line(text: str) -> str | None:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return None


def _read_timestamped_csv(
    path: Path, text: str, *, date: dt.date | None, unit: Unit, tz: dt.tzinfo
) -> RrRecording:
    lines = [line for line in text.splitlines() if line.strip()]
    head = lines[0]
    delimiter = max(_DELIMITERS, key=head.count)
    names = [n.strip().lower() for n in head.split(delimiter)]
    rr_col = next((i for i, n in enumerate(names) if re.search(r"\brr\b|rr[-_ ]interval", n)), None)
    time_col = next(
        (i for i, n in enumerate(names) if re.search(r"timestamp|date|time", n) and i != rr_col),
        None,
    )
    if rr_col is None:
        raise ImportFileError(
            f"{path}, line 1: no RR column in the header {head!r}; expected one interval per "
            "line, or a CSV with an 'RR' column (Polar Sensor Logger, HRV Logger)"
        )
    values: list[float] = []
    first_time: int | None = None
    reader = csv.reader(io.StringIO("\n".join(lines[1:])), delimiter=delimiter)
    for number, row in enumerate(reader, start=2):
        try:
            value = float(row[rr_col])
        except (ValueError, IndexError):
            raise ImportFileError(
                f"{path}, line {number}: no RR value in column {rr_col + 1} ({names[rr_col]!r})"
            ) from None
        if not math.isfinite(value) or value <= 0:
            raise ImportFileError(
                f"{path}, line {number}: RR {row[rr_col]!r} is not a positive interval"
            )
        if first_time is None and time_col is not None and time_col < len(row):
            first_time = _search_stamp(row[time_col], tz)
        values.append(value)
    if not values:
        raise ImportFileError(f"{path}: the header is there but no RR value follows it")
    scale = 1000.0 if _unit_of(values, names[rr_col], unit) == "s" else 1.0
    rr_ms = tuple(v * scale for v in values)
    out_of_range = next(
        (i for i, v in enumerate(rr_ms) if not phys.RR_FILE_MIN_MS <= v <= phys.RR_FILE_MAX_MS),
        None,
    )
    if out_of_range is not None:
        raise ImportFileError(
            f"{path}, line {out_of_range + 2}: {values[out_of_range]:g} is not a possible RR "
            f"interval (allowed {phys.RR_FILE_MIN_MS:g}–{phys.RR_FILE_MAX_MS:g} ms); check --unit"
        )
    if date is not None:
        return RrRecording(path, start_of_day(date), rr_ms, "--date")
    if first_time is not None:
        return RrRecording(path, first_time - round(rr_ms[0] * 1e6), rr_ms, "timestamps")
    start = _search_stamp(path.name, tz)
    if start is not None:
        return RrRecording(path, start, rr_ms, "file name")
    raise ImportFileError(
        f"{path}: no date for this reading (no time column with dates, none in the file "
        "name); pass --date YYYY-MM-DD"
    )


def _unit_of(values: list[float], column: str, unit: Unit) -> str:
    if unit != "auto":
        return unit
    if "[ms]" in column or "(ms)" in column:
        return "ms"
    if "[s]" in column or "(s)" in column:
        return "s"
    return "s" if statistics.median(values) < phys.RR_UNIT_SECONDS_BELOW else "ms"
