"""What an import reads and what it reports: recordings with their times, outcomes, errors."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

from devices.records import HeartRateSample, PowerSample, SmO2Sample
from streamer.errors import StreamerError


class ImportFileError(StreamerError):
    """A file cannot be imported; the message names the file, the record and the fix."""


@dataclass(frozen=True, slots=True, eq=False)
class RrRecording:
    """One RR recording found in a file.

    ``start_ns`` is when its first interval began (ns since the epoch, UTC); ``start_from``
    says where that time came from (``--date``, ``file name``, ``first line``,
    ``timestamps``, ``FIT file``), so a summary can show a guessed date as such.
    """

    source: Path
    start_ns: int
    rr_ms: tuple[float, ...]
    start_from: str

    @property
    def end_ns(self) -> int:
        """When its last interval ended (ns since the epoch)."""
        return self.start_ns + round(sum(self.rr_ms) * 1e6)


ActivitySample: TypeAlias = HeartRateSample | PowerSample | SmO2Sample
"""What a FIT activity carries into a session: the records live devices produce."""


@dataclass(frozen=True, slots=True, eq=False)
class FitActivity:
    """One FIT activity: its span (ns since the epoch) and its samples in time order.

    ``rr_ms`` are the activity's RR intervals from its ``hrv`` messages (empty when it has
    none); the heart-rate samples in ``samples`` already carry them, beat by beat.
    """

    source: Path
    start_ns: int
    end_ns: int
    samples: tuple[ActivitySample, ...]
    rr_ms: tuple[float, ...]
    sport: str | None = None

    def count(self) -> dict[str, int]:
        """How many samples of each kind (for the summary): ``{"HeartRateSample": n, ...}``."""
        return dict(Counter(type(s).__name__ for s in self.samples))


Outcome: TypeAlias = Literal["accepted", "rejected", "duplicate"]


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    """What became of one recording: ``accepted`` (a reading or session stored),
    ``rejected`` (by the quality gate: ``reason`` says why), or ``duplicate`` (already
    stored: nothing changed)."""

    source: Path
    day: dt.date
    outcome: Outcome
    reason: str = ""


@dataclass(slots=True)
class ImportSummary:
    """Every recording's outcome, in the order they were processed."""

    outcomes: list[ImportOutcome] = field(default_factory=list)

    def counts(self) -> dict[Outcome, int]:
        """Recordings per outcome (all three keys present)."""
        found = Counter(o.outcome for o in self.outcomes)
        return {k: found.get(k, 0) for k in ("accepted", "rejected", "duplicate")}

    def line(self) -> str:
        """One line: ``12 accepted, 2 rejected, 3 duplicate``."""
        return ", ".join(f"{n} {k}" for k, n in self.counts().items())
