"""The one scheduler live and replay share: jobs at cadences, woken by whatever moves the clock.

Live, `run_forever` sleeps until the next job is due; in replay the scripted clock advances and
`run_until` runs exactly what is due, in the same order. A job may return how long it wants to
wait before its next run (the copy-trader loop's adaptive sleep); otherwise its cadence applies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hlcore.engine.clock import Clock

JobFn = Callable[[int], "int | None"]


@dataclass
class Job:
    name: str
    every_ms: int
    run: JobFn
    next_at: int
    order: int
    runs: int = field(default=0)


class Scheduler:
    def __init__(self, clock: Clock):
        self.clock = clock
        self.jobs: list[Job] = []
        self.stopped = False

    def add(self, name: str, every_ms: int, run: JobFn, *, first_at: int | None = None,
            align_ms: int | None = None, offset_ms: int = 0) -> Job:
        """Add a job. `align_ms` + `offset_ms` pin runs to wall-clock slots (e.g. every minute at
        second 30); otherwise it first runs at `first_at` (default: now)."""
        now = self.clock.now_ms()
        if align_ms:
            start = now - now % align_ms + offset_ms
            first = start if start >= now else start + align_ms
        else:
            first = now if first_at is None else first_at
        job = Job(name, every_ms, run, first, len(self.jobs))
        self.jobs.append(job)
        return job

    def next_due(self) -> Job | None:
        return min(self.jobs, key=lambda j: (j.next_at, j.order), default=None)

    def run_due(self) -> list[str]:
        """Run every job due at the current time (earliest first); return their names."""
        ran: list[str] = []
        now = self.clock.now_ms()
        while not self.stopped:
            job = self.next_due()
            if job is None or job.next_at > now:
                break
            wait = job.run(job.next_at)
            job.runs += 1
            job.next_at = max(job.next_at + (job.every_ms if wait is None else wait), job.next_at + 1)
            ran.append(job.name)
        return ran

    def run_until(self, end_ms: int, advance_to: Callable[[int], None]) -> list[tuple[int, str]]:
        """Replay: move the clock to each due time up to `end_ms` and run what is due."""
        log: list[tuple[int, str]] = []
        while not self.stopped:
            job = self.next_due()
            if job is None or job.next_at > end_ms:
                break
            if job.next_at > self.clock.now_ms():
                advance_to(job.next_at)
            log.extend((self.clock.now_ms(), name) for name in self.run_due())
        if end_ms > self.clock.now_ms():
            advance_to(end_ms)
        return log

    def run_forever(self, sleep: Callable[[float], None], max_runs: int | None = None) -> None:
        """Live: sleep until the next job is due, run it; stop on `stop()` or after `max_runs`."""
        runs = 0
        while not self.stopped and (max_runs is None or runs < max_runs):
            job = self.next_due()
            if job is None:
                return
            delay = job.next_at - self.clock.now_ms()
            if delay > 0:
                sleep(delay / 1000)
            runs += len(self.run_due())

    def stop(self) -> None:
        self.stopped = True
