"""Reading SmO2 recordings: Moxy PC-software exports and plain CSV files.

Accepted layouts (recognised by their header row; blank lines and lines starting with ``#``
are skipped):

* **Moxy export**: a few header lines (firmware, LUT part numbers), then the header
  ``mm-dd,hh:mm:ss,SmO2 Live,SmO2 Averaged,THb,Lap,Session Ct`` and one row per sample. We
  read the clock and the *live* SmO2; the device's averaged column is a trailing mean that
  delays every edge by ~4 s and is ignored. The clock has whole seconds: rows sharing a
  second (a Moxy set to sample faster than 1 Hz) are spread evenly over it, and a clock that
  goes back (midnight) adds a day.
* **CSV**: a header naming a ``time`` column and an SmO2 column ``smo2`` (or ``smo2_live``),
  optionally ``power_w`` (W) and ``hr_bpm`` (bpm); other columns are ignored. ``time`` is in
  seconds, or an ``hh:mm:ss`` clock. Empty power/HR cells are missing samples.

Times are returned in seconds from the first sample. Refused, with the line number and what
to do: a file that is not text, has no recognised header, a row with too few cells, a value
that is not a number (or not finite), SmO2 outside 0-100%, a negative power or HR, times that
do not increase, or fewer than two samples.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from processors.errors import InputError
from processors.oxygenation import FloatArray
from streamer.files.text import read_text

MOXY_HEADER = ("mm-dd", "hh:mm:ss", "SmO2 Live", "SmO2 Averaged", "THb", "Lap", "Session Ct")
_SMO2_COLUMNS = ("smo2", "smo2_live")
_DAY_S = 86_400.0


class SmO2FileError(InputError, ValueError):
    """An SmO2 file cannot be read; the message names the file, the line and the fix."""


@dataclass(frozen=True, slots=True, eq=False)
class SmO2File:
    """An SmO2 recording: times (s from the first sample), live SmO2 (%), optional activity.

    ``power`` and ``hr`` are (times s, values) on the same time base, or None when the file
    has no such column. ``lines[i]`` is the file line of sample ``i``.
    """

    path: Path
    layout: Literal["moxy", "csv"]
    t_s: FloatArray
    smo2_pct: FloatArray
    power: tuple[FloatArray, FloatArray] | None
    hr: tuple[FloatArray, FloatArray] | None
    lines: tuple[int, ...]


def read_smo2_file(path: str | Path) -> SmO2File:
    """Read a Moxy export or an SmO2 CSV (see the module docstring for layouts and refusals)."""
    path = Path(path)
    text = read_text(path, SmO2FileError, "a Moxy export or a CSV with a time,smo2 header")

    rows = [
        (number, [cell.strip() for cell in cells])
        for number, cells in enumerate(csv.reader(text.splitlines()), start=1)
        if cells and any(c.strip() for c in cells) and not cells[0].lstrip().startswith("#")
    ]
    for i, (_, cells) in enumerate(rows):
        if tuple(cells[: len(MOXY_HEADER)]) == MOXY_HEADER:
            return _read_moxy(path, rows[i + 1 :])
        lowered = [c.lower() for c in cells]
        if "time" in lowered and any(c in lowered for c in _SMO2_COLUMNS):
            return _read_csv(path, lowered, rows[i + 1 :])
    raise SmO2FileError(
        f"{path}: no header found; expected a Moxy PC-software export (header "
        f"{','.join(MOXY_HEADER)}) or a CSV whose header names time and smo2 columns"
    )


def _number(path: Path, line: int, cell: str, what: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        shown = cell if len(cell) <= 40 else cell[:37] + "..."
        raise SmO2FileError(f"{path}, line {line}: {what} {shown!r} is not a number") from None
    if not math.isfinite(value):
        raise SmO2FileError(f"{path}, line {line}: {what} {cell!r} is not a finite number")
    return value


def _clock(path: Path, line: int, cell: str) -> float:
    parts = cell.split(":")
    try:
        h, m, s = (float(p) for p in parts) if len(parts) == 3 else (math.nan,) * 3
    except ValueError:
        h = m = s = math.nan
    if not (0 <= h < 24 and 0 <= m < 60 and 0 <= s < 61):
        raise SmO2FileError(f"{path}, line {line}: time {cell!r} is not a clock time hh:mm:ss")
    return 3600.0 * h + 60.0 * m + s


def _smo2(path: Path, line: int, cell: str) -> float:
    value = _number(path, line, cell, "SmO2")
    if not 0.0 <= value <= 100.0:
        raise SmO2FileError(
            f"{path}, line {line}: SmO2 {value:g} is outside 0-100%; check the column"
        )
    return value


def _cells(path: Path, line: int, cells: list[str], need: int) -> None:
    if len(cells) < need:
        raise SmO2FileError(
            f"{path}, line {line}: {len(cells)} cell(s), the header has {need}; "
            "the file is cut or not comma-separated"
        )


def _unwrap_clock(times: list[float]) -> list[float]:
    """Seconds of day → seconds since the first row: midnight adds a day, rows that share
    a whole second are spread evenly over it."""
    out: list[float] = []
    day = 0.0
    for i, t in enumerate(times):
        if i and t + day < out[-1] - 1.0:
            day += _DAY_S
        out.append(t + day)
    spread = list(out)
    i = 0
    while i < len(out):
        j = i
        while j + 1 < len(out) and out[j + 1] == out[i]:
            j += 1
        for k in range(i, j + 1):
            spread[k] = out[i] + (k - i) / (j - i + 1)
        i = j + 1
    return spread


def _increasing(path: Path, t: list[float], lines: list[int]) -> None:
    for i in range(1, len(t)):
        if t[i] <= t[i - 1]:
            raise SmO2FileError(
                f"{path}, line {lines[i]}: time does not increase (same as or before line "
                f"{lines[i - 1]}); sort the rows by time"
            )


def _finish(
    path: Path,
    layout: Literal["moxy", "csv"],
    t: list[float],
    smo2: list[float],
    lines: list[int],
    power: tuple[list[float], list[float]] | None = None,
    hr: tuple[list[float], list[float]] | None = None,
) -> SmO2File:
    if len(t) < 2:
        raise SmO2FileError(
            f"{path}: {len(t)} sample(s) after the header; an SmO2 recording needs many more"
        )
    _increasing(path, t, lines)
    t0 = t[0]

    def series(
        pair: tuple[list[float], list[float]] | None,
    ) -> tuple[FloatArray, FloatArray] | None:
        if pair is None:
            return None
        return np.asarray(pair[0], dtype=np.float64) - t0, np.asarray(pair[1], dtype=np.float64)

    return SmO2File(
        path=path,
        layout=layout,
        t_s=np.asarray(t, dtype=np.float64) - t0,
        smo2_pct=np.asarray(smo2, dtype=np.float64),
        power=series(power),
        hr=series(hr),
        lines=tuple(lines),
    )


def _read_moxy(path: Path, rows: list[tuple[int, list[str]]]) -> SmO2File:
    clock: list[float] = []
    smo2: list[float] = []
    lines: list[int] = []
    for line, cells in rows:
        _cells(path, line, cells, 3)
        clock.append(_clock(path, line, cells[1]))
        smo2.append(_smo2(path, line, cells[2]))
        lines.append(line)
    return _finish(path, "moxy", _unwrap_clock(clock), smo2, lines)


def _read_csv(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> SmO2File:
    i_time = header.index("time")
    i_smo2 = next(header.index(c) for c in _SMO2_COLUMNS if c in header)
    optional = {name: header.index(name) for name in ("power_w", "hr_bpm") if name in header}
    need = max(i_time, i_smo2, *optional.values()) + 1
    t: list[float] = []
    smo2: list[float] = []
    lines: list[int] = []
    # Activity samples as (row index, value): their times are the rows' times once known.
    activity: dict[str, list[tuple[int, float]]] = {n: [] for n in optional}
    first = rows[0][1][i_time] if rows and len(rows[0][1]) > i_time else ""
    is_clock = ":" in first
    for line, cells in rows:
        _cells(path, line, cells, need)
        cell = cells[i_time]
        t.append(_clock(path, line, cell) if is_clock else _number(path, line, cell, "time"))
        smo2.append(_smo2(path, line, cells[i_smo2]))
        lines.append(line)
        for name, col in optional.items():
            if not cells[col]:
                continue  # a missing activity sample
            value = _number(path, line, cells[col], name)
            if value < 0:
                raise SmO2FileError(f"{path}, line {line}: {name} {value:g} is negative")
            activity[name].append((len(t) - 1, value))
    if is_clock:
        t = _unwrap_clock(t)
    series = {
        name: ([t[i] for i, _ in pairs], [v for _, v in pairs]) for name, pairs in activity.items()
    }
    return _finish(path, "csv", t, smo2, lines, series.get("power_w"), series.get("hr_bpm"))
