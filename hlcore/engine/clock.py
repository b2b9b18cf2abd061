"""The only place hlcore reads time. Live uses the system clock; replay scripts it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    """Wall-clock time in epoch milliseconds (live runs only)."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to: drills, tests and benchmarks."""

    def __init__(self, start_ms: int = 0):
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def set(self, now_ms: int) -> None:
        if now_ms < self._now:
            raise ValueError(f"time cannot go backwards ({now_ms} < {self._now})")
        self._now = now_ms

    def advance(self, ms: int) -> int:
        self.set(self._now + ms)
        return self._now
