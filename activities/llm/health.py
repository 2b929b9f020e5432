"""Which models failed recently, so a call starts at the first healthy candidate.

Per worker and in memory: it only reorders a tier's candidates and never skips
one, so a stale mark costs at most one extra request, never an answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


class HealthBoard:
    def __init__(self, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._cooldown = cooldown_s
        self._clock = clock
        self._down_until: dict[str, float] = {}

    def down(self, label: str, retry_after: float | None = None) -> None:
        self._down_until[label] = self._clock() + (retry_after if retry_after is not None else self._cooldown)

    def up(self, label: str) -> None:
        self._down_until.pop(label, None)

    def healthy(self, label: str) -> bool:
        return self._down_until.get(label, 0.0) <= self._clock()

    def order(self, candidates: Sequence[tuple[str, T]]) -> list[tuple[str, T]]:
        """Healthy candidates in configured order, then the others, soonest to recover first."""
        healthy = [c for c in candidates if self.healthy(c[0])]
        resting = sorted((c for c in candidates if not self.healthy(c[0])), key=lambda c: self._down_until[c[0]])
        return healthy + resting
