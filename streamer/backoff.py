"""Retry policy as data: exponential back-off with jitter, shared by the network sinks."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry ``attempt`` (0-based): ``initial_s · factor^attempt``, capped at
    ``max_s``, then lowered by a random share of up to ``jitter`` (0–1) so that many
    clients that lost the same server do not come back in lock-step."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (0 < self.initial_s <= self.max_s and self.factor >= 1 and 0 <= self.jitter <= 1):
            raise ValueError(
                f"invalid back-off {self}: need 0 < initial_s <= max_s, "
                "factor >= 1, 0 <= jitter <= 1"
            )

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``attempt``."""
        base = min(self.max_s, self.initial_s * self.factor ** min(attempt, 64))
        share = (rng or random).random() * self.jitter
        return base * (1.0 - share)
