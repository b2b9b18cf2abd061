"""The shared scheduler: cadences, alignment, adaptive waits, replay order."""

from __future__ import annotations

from hlcore.engine.clock import ManualClock
from hlcore.engine.scheduler import Scheduler

T0 = 1_769_248_800_000  # a round minute


def test_aligned_jobs_run_at_their_slots_in_replay() -> None:
    clock = ManualClock(T0 + 5_000)
    sched = Scheduler(clock)
    sched.add("snapshots", 60_000, lambda t: None, align_ms=60_000)
    sched.add("health", 60_000, lambda t: None, align_ms=60_000, offset_ms=30_000)
    log = sched.run_until(T0 + 180_000, clock.set)
    assert log == [(T0 + 30_000, "health"), (T0 + 60_000, "snapshots"), (T0 + 90_000, "health"),
                   (T0 + 120_000, "snapshots"), (T0 + 150_000, "health"), (T0 + 180_000, "snapshots")]
    assert clock.now_ms() == T0 + 180_000


def test_a_job_can_ask_for_its_next_wait() -> None:
    clock = ManualClock(T0)
    sched = Scheduler(clock)
    waits = iter([0, 2_000, 4_000, 8_000, 10_000])
    times: list[int] = []

    def tick(at: int) -> int:
        times.append(at - T0)
        return next(waits, 10_000)

    sched.add("tick", 2_000, tick)
    sched.run_until(T0 + 30_000, clock.set)
    assert times == [0, 1, 2_001, 6_001, 14_001, 24_001]  # a zero wait still moves on by 1 ms


def test_same_time_jobs_run_in_the_order_added() -> None:
    clock = ManualClock(T0)
    sched = Scheduler(clock)
    ran: list[str] = []
    sched.add("reconcile", 60_000, lambda t: ran.append("reconcile"))
    sched.add("ingest", 60_000, lambda t: ran.append("ingest"))
    sched.run_due()
    assert ran == ["reconcile", "ingest"]


def test_run_forever_sleeps_until_due_and_stops() -> None:
    clock = ManualClock(T0)
    sched = Scheduler(clock)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(int(seconds * 1000))

    count = {"n": 0}

    def job(at: int) -> None:
        count["n"] += 1
        if count["n"] == 3:
            sched.stop()

    sched.add("j", 10_000, job)
    sched.run_forever(sleep)
    assert count["n"] == 3 and slept == [10.0, 10.0]
