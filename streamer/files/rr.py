"""Reading RR-interval files: one interval per line, milliseconds or seconds.

Accepted layout: one number per line; blank lines and lines starting with ``#`` are
skipped. The unit is detected unless given: when the median value is below
:data:`~processors.physiology.RR_UNIT_SECONDS_BELOW` (10) the file is in seconds, otherwise
in milliseconds (no RR interval lasts 10 ms and none lasts 10 s). PhysioNet exports such as
``nsr2db/nsrNNN_rr_secs.txt`` start with the time of the first beat, not an interval:
pass ``first_line_is_start=True`` for those.

Refused, with the line number: a file that is not text, holds no value, holds a line that
is not a number, or a value that is zero, negative, not finite, or outside
:data:`~processors.physiology.RR_FILE_MIN_MS` .. :data:`~processors.physiology.RR_FILE_MAX_MS`
once in milliseconds. Values inside those limits but outside the plausible heartbeat range
are kept: cleaning treats them as artefacts or gaps.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

import numpy as np

from processors import physiology as phys
from processors.errors import InputError
from processors.rr_clean import FloatArray
from streamer.files.text import read_text

Unit: TypeAlias = Literal["auto", "ms", "s"]
UNITS: tuple[Unit, ...] = ("auto", "ms", "s")
_TO_MS = {"ms": 1.0, "s": 1000.0}


class RrFileError(InputError, ValueError):
    """An RR file cannot be read; the message names the file, the line and the fix."""


@dataclass(frozen=True, slots=True, eq=False)
class RrFile:
    """The intervals of an RR file in milliseconds, the unit found, and the start time.

    ``start_s`` is the first line's value in seconds when the file starts with a time
    (``first_line_is_start``), else ``None``. ``lines[i]`` is the file line of interval ``i``.
    """

    path: Path
    rr_ms: FloatArray
    unit: Literal["ms", "s"]
    unit_detected: bool
    start_s: float | None
    lines: tuple[int, ...]


def read_rr_file(
    path: str | Path, *, unit: Unit = "auto", first_line_is_start: bool = False
) -> RrFile:
    """Read an RR file (see the module docstring for the format and the refusals)."""
    path = Path(path)
    if unit not in UNITS:
        raise RrFileError(f"unknown unit {unit!r}; use one of {', '.join(UNITS)}")
    text = read_text(path, RrFileError, "one RR interval per line")

    values: list[float] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        try:
            value = float(token)
        except ValueError:
            shown = token if len(token) <= 40 else token[:37] + "..."
            raise RrFileError(
                f"{path}, line {number}: {shown!r} is not a number; expected one RR interval "
                "per line (ms or s)"
            ) from None
        if not math.isfinite(value):
            raise RrFileError(f"{path}, line {number}: {token!r} is not a finite number")
        values.append(value)
        lines.append(number)

    start_value: float | None = None
    if first_line_is_start:
        if not values:
            raise RrFileError(f"{path}: the file holds no value, not even a start time")
        start_value, start_line = values.pop(0), lines.pop(0)
        if start_value < 0:
            raise RrFileError(f"{path}, line {start_line}: start time {start_value:g} is negative")
    if not values:
        raise RrFileError(
            f"{path}: no RR intervals found; expected one interval per line (ms or s)"
        )

    for value, number in zip(values, lines, strict=True):
        if value <= 0:
            raise RrFileError(
                f"{path}, line {number}: interval {value:g} is "
                f"{'zero' if value == 0 else 'negative'}; RR intervals must be positive"
            )

    detected = unit == "auto"
    resolved: Literal["ms", "s"]
    if unit == "auto":
        resolved = "s" if statistics.median(values) < phys.RR_UNIT_SECONDS_BELOW else "ms"
    else:
        resolved = unit
    scale = _TO_MS[resolved]
    start_s = None if start_value is None else start_value * scale / 1000.0

    rr = np.asarray(values, dtype=np.float64) * scale
    bad = (rr < phys.RR_FILE_MIN_MS) | (rr > phys.RR_FILE_MAX_MS)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        how = "detected" if detected else "given"
        hint = (
            "if the first line is the time of the first beat (PhysioNet exports), pass "
            "--first-line-is-start"
            if i == 0 and not first_line_is_start and rr[i] > phys.RR_FILE_MAX_MS
            else "check the unit (--unit ms or --unit s)"
        )
        raise RrFileError(
            f"{path}, line {lines[i]}: {values[i]:g} {resolved} ({how} unit) is "
            f"{rr[i]:g} ms, not a possible RR interval (allowed {phys.RR_FILE_MIN_MS:g}–"
            f"{phys.RR_FILE_MAX_MS:g} ms); {hint}"
        )
    return RrFile(
        path=path,
        rr_ms=rr,
        unit=resolved,
        unit_detected=detected,
        start_s=start_s,
        lines=tuple(lines),
    )
