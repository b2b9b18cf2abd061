"""Pure pieces of the monitor's ingestion jobs: S6 transient-collapse boundaries (§4.4), the run
status words read from the policy (§2), and retries on the injected clock before a deadline (§4.2)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from hlcore.adapters.http import API_ERROR, EXCHANGE_ERROR, RATE_LIMITED, VenueError
from hlcore.adapters.hyperliquid.parse import parse_leaderboard
from hlcore.engine.clock import ManualClock
from hlcore.jobs.monitor import RunStatuses, with_retries
from hlcore.jobs.monitor.snapshots import is_transient_collapse
from hlcore.jobs.monitor.universe import measure, rank

RATIOS = {"collapse_ratio": 0.01, "recovery_ratio": 0.50}


@pytest.mark.parametrize(("t0", "t1", "t2", "eps", "dirty"), [
    (1.0, 0.0, 1.0, 0.0001, True),        # the drill-10 flap
    (1.0, None, 1.0, 0.0001, True),       # NULL at t1 is a collapse
    (-2.0, 0.0, -2.0, 0.001, True),       # shorts alike
    (1.0, 0.0, 0.0, 0.0001, False),       # a real close: no recovery
    (1.0, 0.0, None, 0.0001, False),      # t2 unknown: no recovery
    (1.0, 0.0, 0.5, 0.0001, False),       # recovery must exceed 50 % of t0
    (1.0, 0.0, 0.5001, 0.0001, True),
    (1.0, 0.01, 1.0, 0.0001, False),      # t1 must be below 1 % of t0
    (1.0, 0.0099, 1.0, 0.0001, True),
    (0.01, 0.0, 0.01, 0.01, False),       # |t0| must exceed ε_abs
    (None, 0.0, 1.0, 0.01, False),        # no position known at t0
])
def test_transient_collapse_boundaries(t0: Any, t1: Any, t2: Any, eps: float, dirty: bool) -> None:
    assert is_transient_collapse(t0, t1, t2, epsilon_abs=eps, **RATIOS) is dirty


def test_run_statuses_come_from_the_policy(default_policy: Any) -> None:
    statuses = RunStatuses.from_policy(default_policy)
    assert statuses.usable == {"success", "partial"}
    assert statuses.full == "success"
    assert statuses.all == {"success", "partial", "failed"}


class Calls:
    def __init__(self, results: list[Any], clock: ManualClock, latency_ms: int = 0):
        self.results = results
        self.clock = clock
        self.latency_ms = latency_ms
        self.n = 0

    def __call__(self) -> Any:
        self.n += 1
        self.clock.advance(self.latency_ms)
        return self.results.pop(0)


def _sleep(clock: ManualClock, log: list[float]) -> Any:
    def sleep(seconds: float) -> None:
        log.append(seconds)
        clock.advance(round(seconds * 1000))
    return sleep


def test_retries_follow_the_delays_and_stop_at_a_non_retryable_error() -> None:
    clock, slept = ManualClock(0), []
    boom = VenueError(EXCHANGE_ERROR, "HTTP 500", status=500)
    calls = Calls([boom, boom, VenueError(API_ERROR, "HTTP 400", status=400), "never"], clock)
    out = with_retries(calls, delays_sec=[0.5, 1.5, 4.0], jitter_ms=0, clock=clock, sleep=_sleep(clock, slept),
                       rng=random.Random(1))
    assert (calls.n, slept, out.result.code) == (3, [0.5, 1.5], API_ERROR)


def test_retry_after_beats_a_shorter_delay_and_429s_are_counted() -> None:
    clock, slept = ManualClock(0), []
    limited = VenueError(RATE_LIMITED, "HTTP 429", status=429, retry_after_ms=3000)
    calls = Calls([limited, "ok"], clock)
    out = with_retries(calls, delays_sec=[0.5], jitter_ms=250, clock=clock, sleep=_sleep(clock, slept),
                       rng=random.Random(1))
    assert (out.result, out.attempts, out.rate_limited, slept) == ("ok", 2, 1, [3.0])


def test_jitter_is_drawn_from_the_injected_rng() -> None:
    clock, slept = ManualClock(0), []
    boom = VenueError(EXCHANGE_ERROR, "HTTP 500", status=500)
    with_retries(Calls([boom, "ok"], clock), delays_sec=[0.5], jitter_ms=250, clock=clock,
                 sleep=_sleep(clock, slept), rng=random.Random(42))
    expected = (500 + random.Random(42).uniform(0, 250)) / 1000
    assert slept == [pytest.approx(expected)]


def test_no_retry_whose_wait_would_reach_the_deadline() -> None:
    clock, slept = ManualClock(54_000), []
    boom = VenueError(EXCHANGE_ERROR, "HTTP 500", status=500)
    calls = Calls([boom, boom, boom, boom], clock)
    out = with_retries(calls, delays_sec=[0.5, 1.5, 4.0], jitter_ms=0, clock=clock, sleep=_sleep(clock, slept),
                       rng=random.Random(1), deadline_ms=55_000)
    assert (calls.n, slept, out.attempts) == (2, [0.5], 2)
    late = with_retries(Calls(["ok"], clock), delays_sec=[0.5], jitter_ms=0, clock=ManualClock(55_000),
                        sleep=_sleep(clock, slept), rng=random.Random(1), deadline_ms=55_000)
    assert (late.result, late.attempts) == (None, 0)


def _board(pnls: dict[str, Any]) -> Any:
    rows = [{"ethAddress": a, "accountValue": "1", "windowPerformances": [["month", {"pnl": str(p)}]]}
            for a, p in pnls.items()]
    return parse_leaderboard({"leaderboardRows": rows})


def test_rank_breaks_ties_by_wallet_id_and_measure_counts_churn() -> None:
    a, b, c, d = ("0x" + ch * 40 for ch in "abcd")
    parsed = _board({d: 5, c: 7, b: 7, a: 1})
    assert [(m.wallet_id, m.rank) for m in rank(parsed.rows, 3)] == [(b, 1), (c, 2), (d, 3)]
    m, members = measure(parsed, [a, b, c], 3)
    assert (m.n_received, m.n_kept, m.entered, m.exited, m.churn_pct, m.has_prior) == (4, 3, 1, 1, 2 / 3 * 100, True)
    assert m.ids_ok and m.ranks_ok and len(members) == 3
    dup, _ = measure(_board({a: 1, a.upper().replace("0X", "0x"): 2}), [], 3)
    assert dup.ids_ok is False
